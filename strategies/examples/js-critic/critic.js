// critic: a draft model answers, a reviewer model improves the draft.
//
// Topology (in the profile's config):
//   draft:    {model, params?}   writes the first answer
//   reviewer: {model, params?}   improves it; its answer is the final one
//   settings: {reviewer_instructions?}   replaces the built-in review prompt
//
// Built with componentize-js against the `strategy` world of wit/strategy.wit
// (see build.mjs and README.md). WIT names become camelCase in JS
// (params-json -> paramsJson), an `option` is a value or undefined, and a
// `result` is a return value or a thrown error.

import { complete, respond, trace } from 'conclave:strategy/host@0.1.0';

const REVIEW =
  "Another assistant wrote the draft answer below to the user's latest message. " +
  'Review it critically: fix mistakes, fill gaps, cut what is unnecessary. ' +
  'Reply with the improved answer only, addressed to the user; do not mention ' +
  'the draft or the review.';

// Request fields only the final stage may use: the draft gets no tools.
const FINAL_ONLY = ['tools', 'tool_choice', 'parallel_tool_calls', 'functions', 'function_call', 'stream_options'];

class ConfigError extends Error {}

// The draft and reviewer nodes and the settings; throws ConfigError naming the key path.
function parse(topologyJson, settingsJson) {
  let topology, settings;
  try {
    topology = JSON.parse(topologyJson || '{}');
    settings = JSON.parse(settingsJson || '{}');
  } catch (e) {
    throw new ConfigError(`topology: not JSON: ${e.message}`);
  }
  const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
  if (!isObject(topology)) throw new ConfigError('topology: must be an object');
  const nodes = {};
  for (const key of ['draft', 'reviewer']) {
    const node = topology[key];
    if (!isObject(node)) throw new ConfigError(`${key}: missing (a node such as {model: gpt-4o-mini})`);
    if (typeof node.model !== 'string' || node.model === '') throw new ConfigError(`${key}.model: missing`);
    if (node.params !== undefined && !isObject(node.params)) throw new ConfigError(`${key}.params: must be an object`);
    nodes[key] = node;
  }
  if (!isObject(settings)) throw new ConfigError('settings: must be an object');
  const instructions = settings.reviewer_instructions ?? REVIEW;
  if (typeof instructions !== 'string') throw new ConfigError('settings.reviewer_instructions: must be a string');
  return { draft: nodes.draft, reviewer: nodes.reviewer, instructions };
}

// A request to `node`: the `base` params, then the node's own (node wins).
function request(node, messages, base) {
  const params = { ...base, ...(node.params ?? {}) };
  return {
    model: node.model,
    messages,
    paramsJson: Object.keys(params).length ? JSON.stringify(params) : undefined,
  };
}

function preview(text, n = 160) {
  return text.length <= n ? text : `${text.slice(0, n)}…`;
}

function systemMessage(content) {
  return { role: 'system', content, name: undefined, toolCallId: undefined, toolCallsJson: undefined };
}

// `validate: func(topology-json, settings-json) -> result<_, string>`:
// return normally for ok, throw the string for err.
export function validate(topologyJson, settingsJson) {
  try {
    parse(topologyJson, settingsJson);
  } catch (e) {
    throw e instanceof ConfigError ? e.message : String(e);
  }
}

// `run: func(inv) -> result<chat-response, error>`: return the response, or
// throw an `error` variant such as {tag: 'invalid-request', val: '...'}.
// A failed host call throws its error variant (as `e.payload`); letting it
// propagate fails the run with that error.
export function run(inv) {
  let cfg;
  try {
    cfg = parse(inv.topologyJson, inv.settingsJson);
  } catch (e) {
    throw { tag: 'invalid-request', val: e.message };
  }
  const { draft, reviewer, instructions } = cfg;
  const client = inv.request;
  const params = client.paramsJson ? JSON.parse(client.paramsJson) : {};
  const stageParams = Object.fromEntries(Object.entries(params).filter(([k]) => !FINAL_ONLY.includes(k)));

  trace('draft', `asking ${draft.model} for a draft`);
  const first = call(complete, request(draft, client.messages, stageParams));
  trace('draft', `${first.model} drafted: ${preview(first.content)}`);

  trace('review', `${reviewer.model} improves the draft`);
  const messages = [...client.messages];
  let split = 0;
  while (split < messages.length && messages[split].role === 'system') split++;
  messages.splice(split, 0, systemMessage(`${instructions}\n\n### Draft\n${first.content}`));
  // respond() streams the reviewer's tokens to the client when it asked for
  // a stream; its result is the final answer.
  return call(respond, request(reviewer, messages, params));
}

// Calls a host function; its error is rethrown as the bare variant.
function call(fn, req) {
  try {
    return fn(req);
  } catch (e) {
    throw e?.payload ?? e;
  }
}
