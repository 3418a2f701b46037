"""critic: a draft model answers, a reviewer model improves the draft.

Topology (in the profile's config):
    draft:    {model, params?}   writes the first answer
    reviewer: {model, params?}   improves it; its answer is the final one
    settings: {reviewer_instructions?}   replaces the built-in review prompt

Built with componentize-py against the `strategy` world of wit/strategy.wit;
see README.md.
"""

import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import host
from wit_world.imports.types import (
    ChatRequest,
    ChatResponse,
    Error_InvalidRequest,
    Invocation,
    Message,
)

REVIEW = (
    "Another assistant wrote the draft answer below to the user's latest message. "
    "Review it critically: fix mistakes, fill gaps, cut what is unnecessary. "
    "Reply with the improved answer only, addressed to the user; do not mention "
    "the draft or the review."
)

# Request fields only the final stage may use: the draft gets no tools.
FINAL_ONLY = ("tools", "tool_choice", "parallel_tool_calls", "functions", "function_call", "stream_options")


def parse(topology_json: str, settings_json: str):
    """The draft and reviewer nodes and the settings; raises ValueError naming the key path."""
    try:
        topology = json.loads(topology_json or "{}")
        settings = json.loads(settings_json or "{}")
    except ValueError as e:
        raise ValueError(f"topology: not JSON: {e}")
    if not isinstance(topology, dict):
        raise ValueError("topology: must be an object")
    nodes = {}
    for key in ("draft", "reviewer"):
        node = topology.get(key)
        if not isinstance(node, dict):
            raise ValueError(f"{key}: missing (a node such as {{model: gpt-4o-mini}})")
        if not isinstance(node.get("model"), str) or not node["model"]:
            raise ValueError(f"{key}.model: missing")
        if not isinstance(node.get("params", {}), dict):
            raise ValueError(f"{key}.params: must be an object")
        nodes[key] = node
    if not isinstance(settings, dict):
        raise ValueError("settings: must be an object")
    instructions = settings.get("reviewer_instructions", REVIEW)
    if not isinstance(instructions, str):
        raise ValueError("settings.reviewer_instructions: must be a string")
    return nodes["draft"], nodes["reviewer"], instructions


def request(node: dict, messages: list, base: dict) -> ChatRequest:
    """A request to `node`: the `base` params, then the node's own (node wins)."""
    params = {**base, **node.get("params", {})}
    return ChatRequest(node["model"], messages, json.dumps(params) if params else None)


def preview(text: str, n: int = 160) -> str:
    return text if len(text) <= n else text[:n] + "…"


class WitWorld(wit_world.WitWorld):
    def validate(self, topology_json: str, settings_json: str) -> None:
        try:
            parse(topology_json, settings_json)
        except ValueError as e:
            raise Err(str(e))

    def run(self, inv: Invocation) -> ChatResponse:
        try:
            draft, reviewer, instructions = parse(inv.topology_json, inv.settings_json)
        except ValueError as e:
            raise Err(Error_InvalidRequest(str(e)))
        client = inv.request
        params = json.loads(client.params_json) if client.params_json else {}
        stage_params = {k: v for k, v in params.items() if k not in FINAL_ONLY}

        host.trace("draft", f"asking {draft['model']} for a draft")
        # A failed call raises Err(error); letting it propagate fails the run
        # with that error.
        first = host.complete(request(draft, client.messages, stage_params))
        host.trace("draft", f"{first.model} drafted: {preview(first.content)}")

        host.trace("review", f"{reviewer['model']} improves the draft")
        system = Message("system", f"{instructions}\n\n### Draft\n{first.content}", None, None, None)
        messages = list(client.messages)
        split = 0
        while split < len(messages) and messages[split].role == "system":
            split += 1
        messages.insert(split, system)
        # respond() streams the reviewer's tokens to the client when it asked
        # for a stream; its result is the final answer.
        return host.respond(request(reviewer, messages, params))
