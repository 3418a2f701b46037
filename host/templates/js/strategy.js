// {{name}}: a conclave composite strategy.
//
// Topology: {model, params?}, the model that answers and request params of
// its own. Settings: system_prompt (optional), put before the conversation.
//
// WIT names are camelCase in JS (params-json -> paramsJson), an `option` is a
// value or undefined, and a `result` is a return value or a thrown error.

import { respond, trace } from 'conclave:strategy/host@0.1.0';

// {model, params, systemPrompt}; throws a string naming the offending key.
function parse(topologyJson, settingsJson) {
  let topology, settings;
  try {
    topology = JSON.parse(topologyJson || '{}');
    settings = JSON.parse(settingsJson || '{}');
  } catch (e) {
    throw `topology: not JSON: ${e.message}`;
  }
  const model = topology?.model;
  if (typeof model !== 'string' || model === '') {
    throw 'model: missing (the model that answers, e.g. {model: gpt-4o-mini})';
  }
  const params = topology.params ?? {};
  if (typeof params !== 'object' || Array.isArray(params)) throw 'params: must be an object';
  const systemPrompt = settings?.system_prompt;
  if (systemPrompt != null && typeof systemPrompt !== 'string') {
    throw 'settings.system_prompt: must be a string';
  }
  return { model, params, systemPrompt };
}

// `validate -> result<_, string>`: return for ok, throw the string for err.
export function validate(topologyJson, settingsJson) {
  parse(topologyJson, settingsJson);
}

// `run -> result<chat-response, error>`: return the response, or throw an
// `error` variant such as {tag: 'invalid-request', val: '...'}.
export function run(inv) {
  let config;
  try {
    config = parse(inv.topologyJson, inv.settingsJson);
  } catch (message) {
    throw { tag: 'invalid-request', val: String(message) };
  }
  const messages = [...inv.request.messages];
  if (config.systemPrompt != null) {
    trace('prepare', 'adding the system prompt from the settings');
    let at = 0;
    while (at < messages.length && messages[at].role === 'system') at++;
    messages.splice(at, 0, {
      role: 'system',
      content: config.systemPrompt,
      name: undefined,
      toolCallId: undefined,
      toolCallsJson: undefined,
    });
  }
  // The client's params (tools included), then the node's own.
  const params = { ...(inv.request.paramsJson ? JSON.parse(inv.request.paramsJson) : {}), ...config.params };
  trace('answer', `asking ${config.model}`);
  // respond() streams the answer to the client when it asked for a stream. A
  // failed call throws its error variant (as `e.payload`); rethrown, it fails
  // the run with that error.
  try {
    return respond({
      model: config.model,
      messages,
      paramsJson: Object.keys(params).length ? JSON.stringify(params) : undefined,
    });
  } catch (e) {
    throw e?.payload ?? e;
  }
}
