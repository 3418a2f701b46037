"""{{name}}: a conclave composite strategy.

Topology: {model, params?}, the model that answers and request params of its
own. Settings: system_prompt (optional), put before the conversation.
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


def parse(topology_json: str, settings_json: str):
    """(model, params, system_prompt); raises ValueError naming the offending key."""
    try:
        topology = json.loads(topology_json or "{}")
        settings = json.loads(settings_json or "{}")
    except ValueError as e:
        raise ValueError(f"topology: not JSON: {e}")
    model = topology.get("model") if isinstance(topology, dict) else None
    if not isinstance(model, str) or not model:
        raise ValueError("model: missing (the model that answers, e.g. {model: gpt-4o-mini})")
    params = topology.get("params") or {}
    if not isinstance(params, dict):
        raise ValueError("params: must be an object")
    system_prompt = settings.get("system_prompt") if isinstance(settings, dict) else None
    if system_prompt is not None and not isinstance(system_prompt, str):
        raise ValueError("settings.system_prompt: must be a string")
    return model, params, system_prompt


class WitWorld(wit_world.WitWorld):
    def validate(self, topology_json: str, settings_json: str) -> None:
        try:
            parse(topology_json, settings_json)
        except ValueError as e:
            raise Err(str(e))

    def run(self, inv: Invocation) -> ChatResponse:
        try:
            model, node_params, system_prompt = parse(inv.topology_json, inv.settings_json)
        except ValueError as e:
            raise Err(Error_InvalidRequest(str(e)))
        messages = list(inv.request.messages)
        if system_prompt is not None:
            host.trace("prepare", "adding the system prompt from the settings")
            at = 0
            while at < len(messages) and messages[at].role == "system":
                at += 1
            messages.insert(at, Message("system", system_prompt, None, None, None))
        # The client's params (tools included), then the node's own.
        params = json.loads(inv.request.params_json) if inv.request.params_json else {}
        params.update(node_params)
        host.trace("answer", f"asking {model}")
        # respond() streams the answer to the client when it asked for a
        # stream; a failed call raises Err(error), which fails the run with it.
        return host.respond(ChatRequest(model, messages, json.dumps(params) if params else None))
