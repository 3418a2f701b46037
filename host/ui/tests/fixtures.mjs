// Composite traces shaped as the host records them (host/src/strategy/trace.rs)
// with the stage texts the bundled strategies really write (strategies/*/src/lib.rs,
// their markdown tables from the SDK's markdown_table).

let nextId = 0;
const root = (profile, duration_ms, error = null) => {
  nextId = 1;
  return { id: 0, parent_id: null, step: 'strategy', model: profile, start_ms: 0, duration_ms, prompt_tokens: null, completion_tokens: null, preview: null, error };
};
const ev = (step, start_ms, preview) => ({ id: nextId++, parent_id: 0, step, model: null, start_ms, duration_ms: 0, prompt_tokens: null, completion_tokens: null, preview, error: null });
const call = (parent_id, model, start_ms, duration_ms, preview, error = null, tokens = [12, 20]) => ({
  id: nextId++, parent_id, step: 'llm_call', model, start_ms, duration_ms,
  prompt_tokens: error ? null : tokens[0], completion_tokens: error ? null : tokens[1], preview: error ? null : preview, error,
});

/** demo-council: two members answer together, two reviewers rank, the chairman writes. */
export function councilTrace() {
  const nodes = [root('council_demo', 812.4)];
  const s1 = ev('stage 1: answers', 0.4, 'asking 2 council member(s)');
  nodes.push(s1,
    call(s1.id, 'demo-proposer-a', 0.6, 151.2, 'Proposer A thinks the answer to "life" is 42.'),
    call(s1.id, 'demo-proposer-b', 0.6, 252.0, 'Proposer B would answer "life" with a careful 42.'),
    ev('stage 1: answers', 253.1, 'demo-proposer-a answered: Proposer A thinks the answer to "life" is 42.'),
    ev('stage 1: answers', 253.2, 'demo-proposer-b answered: Proposer B would answer "life" with a careful 42.'),
    ev('stage 1: answers', 253.3, 'anonymized as Response A = demo-proposer-a, Response B = demo-proposer-b'));
  const s2 = ev('stage 2: rankings', 253.5, 'asking 2 reviewer(s)');
  nodes.push(s2,
    call(s2.id, 'demo-reviewer-a', 253.8, 2.1, 'Response A is short but right; Response B explains why.\n\nFINAL RANKING:\n1. Response B\n2. Response A'),
    call(s2.id, 'demo-reviewer-b', 253.8, 101.7, 'Both are correct; B is clearer.\n\nFINAL RANKING:\n1. Response B\n2. Response A'),
    ev('stage 2: rankings', 356.0, 'reviewer 1 (demo-reviewer-a) answered: Response A is short but right; Response B explains why. FINAL RANKING: 1. Response B 2. Response A'),
    ev('stage 2: rankings', 356.1, 'reviewer 2 (demo-reviewer-b) answered: Both are correct; B is clearer. FINAL RANKING: 1. Response B 2. Response A'),
    ev('stage 2: rankings', 356.2, 'reviewer 1 (demo-reviewer-a) ranked B > A (weight 1.00)'),
    ev('stage 2: rankings', 356.3, 'reviewer 2 (demo-reviewer-b) ranked B > A (weight 1.00)'),
    ev('stage 2: rankings', 356.4,
      'aggregate of 2 usable ranking(s), by mean rank (lower is better):\n' +
      '| place | response | member | mean rank |\n| --- | --- | --- | --- |\n' +
      '| 1 | Response B | demo-proposer-b | 1.00 |\n| 2 | Response A | demo-proposer-a | 2.00 |'));
  const s3 = ev('stage 3: synthesis', 356.6, 'demo-chairman writes the answer from 2 answer(s) and 2 review(s)');
  nodes.push(s3, call(s3.id, 'demo-chairman', 356.9, 455.1, 'After hearing the council and its reviews: the answer is 42.', null, [240, 14]));
  return nodes;
}

/** demo-vote: five samples over two samplers, then the vote. */
export function voteTrace() {
  const nodes = [root('vote_demo', 31.0)];
  const s = ev('samples', 0.3, 'drawing 5 sample(s)');
  nodes.push(s);
  const models = ['demo-sampler-a', 'demo-sampler-b', 'demo-sampler-a', 'demo-sampler-b', 'demo-sampler-a'];
  models.forEach((m, i) => nodes.push(call(s.id, m, 0.5, 20 + i * 2, m.endsWith('a') ? `Counting carefully (sample ${i + 1}).\nANSWER: 42` : 'A slip somewhere gives ANSWER: 41.')));
  models.forEach((m, i) => nodes.push(ev('samples', 29 + i * 0.1, `sample ${i + 1} (${m}) answered: ${m.endsWith('a') ? `Counting carefully (sample ${i + 1}). ANSWER: 42` : 'A slip somewhere gives ANSWER: 41.'}`)));
  nodes.push(ev('vote', 30.0,
    '| answer | votes | samples |\n| --- | --- | --- |\n| 42 | 3 | 1, 3, 5 |\n| 41 | 2 | 2, 4 |\n' +
    'winner: "42" with 3 of 5 vote(s); answering with sample 1'));
  return nodes;
}

/** demo-cascade: the small tier is rejected by the verifier, the large (last) tier answers. */
export function cascadeTrace({ lastFails = false } = {}) {
  const nodes = [root('cascade_demo', 460.0, lastFails ? 'Upstream("every tier failed")' : null)];
  const t1 = ev('tier 1', 0.2, 'asking demo-tier-small');
  nodes.push(t1, call(t1.id, 'demo-tier-small', 0.4, 12.0, 'Probably 42?'));
  const answered = ev('tier 1', 12.6, 'demo-tier-small answered: Probably 42?');
  nodes.push(answered, call(answered.id, 'demo-verifier', 12.8, 9.5, 'VERDICT: NO. The draft hedges instead of answering.'),
    ev('tier 1', 22.5, 'verifier demo-verifier rejected it: VERDICT: NO. The draft hedges instead of answering.'),
    ev('tier 1', 22.6, 'not accepted; escalating'));
  const t2 = ev('tier 2', 22.8, 'demo-tier-large is the last tier; its answer is accepted as it is');
  nodes.push(t2, call(t2.id, 'demo-tier-large', 23.0, 430.0, 'FINAL: the answer to "life" is 42.', lastFails ? 'Upstream("boom")' : null));
  return nodes;
}

/** A cascade whose first tier is accepted by its rule. */
export function cascadeAcceptedTrace() {
  const nodes = [root('cascade_demo', 20.0)];
  const t1 = ev('tier 1', 0.2, 'asking demo-tier-small');
  nodes.push(t1, call(t1.id, 'demo-tier-small', 0.4, 12.0, 'FINAL: 42'),
    ev('tier 1', 12.6, 'demo-tier-small answered: FINAL: 42'),
    ev('tier 1', 12.7, 'accepted the answer of demo-tier-small (rule: matches ^FINAL:)'));
  return nodes;
}

/** demo-moa with three proposers: one fails upstream, one is stopped by the call limit. */
export function moaFailuresTrace() {
  const nodes = [root('moa_demo', 420.0)];
  const p = ev('proposals', 0.3, 'asking 3 proposer(s)');
  nodes.push(p,
    call(p.id, 'demo-proposer-a', 0.5, 150.0, 'Proposer A thinks the answer is 42.'),
    call(p.id, 'demo-flaky', 0.5, 30.0, null, 'Upstream("the flaky demo deployment is down")'),
    call(p.id, 'demo-proposer-b', 0.5, 0, null, 'LimitExceeded("the profile allows 2 model calls per request")'),
    ev('proposals', 151.0, 'demo-proposer-a answered: Proposer A thinks the answer is 42.'),
    ev('proposals', 151.1, 'demo-flaky failed and is left out: upstream error: the flaky demo deployment is down'),
    ev('proposals', 151.2, 'demo-proposer-b failed and is left out: limit exceeded: the profile allows 2 model calls per request'));
  const a = ev('aggregation', 151.5, 'demo-aggregator writes the answer from 1 proposal(s)');
  nodes.push(a, call(a.id, 'demo-aggregator', 151.7, 268.0, 'Having weighed both proposals, the combined answer is 42.'));
  return nodes;
}

/** The sub-call summaries of a trace (as /ui/api/requests/{id} lists them), costed. */
export function callsFor(nodes, requestTime, id = 'req') {
  return nodes
    .filter((n) => n.step === 'llm_call')
    .map((n, i) => ({
      id: `${id}-call-${i}`,
      time: requestTime + (n.start_ms + 1.5) / 1000,
      route: '/v1/chat/completions',
      model: n.model,
      model_group: n.model,
      deployment: n.model.replace(/^demo-/, 'mock-'),
      profile: nodes[0].model,
      composite: false,
      caller: 'master', key_alias: null, user_id: null, team_id: null,
      status: n.error ? (n.error.startsWith('LimitExceeded') ? 429 : 502) : 200,
      error: n.error ? 'upstream_error' : null,
      stream: false,
      duration_ms: n.duration_ms,
      ttft_ms: null, overhead_ms: 0.2,
      prompt_tokens: n.prompt_tokens, completion_tokens: n.completion_tokens,
      cost: n.error ? 0 : 0.0001 * (i + 1),
      cache: 'none', attempts: 1, fallback: null, parent_id: id,
    }));
}
