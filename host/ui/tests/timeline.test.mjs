import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  UNSTAGED, callStatus, stagesOf, layoutTrace, matchCallCosts, markdownBlocks, parseMarkdownTable,
  councilFromTrace, votesFromTrace, cascadeFromTrace, parseReasoning, nodesFromEvents,
} from '../assets/timeline.js';
import { councilTrace, voteTrace, cascadeTrace, cascadeAcceptedTrace, moaFailuresTrace, callsFor } from './fixtures.mjs';

const rootNode = (duration_ms = 100) => ({ id: 0, parent_id: null, step: 'strategy', model: 'p', start_ms: 0, duration_ms, error: null });
const stage = (id, step, start_ms, preview = 'x') => ({ id, parent_id: 0, step, model: null, start_ms, duration_ms: 0, preview, error: null });
const call = (id, parent_id, model, start_ms, duration_ms, error = null) => ({ id, parent_id, step: 'llm_call', model, start_ms, duration_ms, error });

test('concurrent calls get separate rows, in start order', () => {
  const l = layoutTrace(councilTrace(), []);
  const s1 = l.bars.filter((b) => l.stages[b.stage].name === 'stage 1: answers');
  assert.deepEqual(s1.map((b) => b.model), ['demo-proposer-a', 'demo-proposer-b']);
  assert.deepEqual(s1.map((b) => b.lane_row), [0, 1]);
  assert.notEqual(s1[0].row, s1[1].row);
  assert.equal(l.stages[0].row_count, 2);
  // five samples drawn together: five rows
  const v = layoutTrace(voteTrace(), []);
  assert.equal(v.stages.find((s) => s.name === 'samples').row_count, 5);
  assert.equal(new Set(v.bars.map((b) => b.row)).size, 5);
});

test('sequential calls share a row; rows are numbered lane after lane', () => {
  const nodes = [rootNode(), stage(1, 'work', 0), call(2, 1, 'a', 0, 10), call(3, 1, 'b', 10, 5), call(4, 1, 'c', 20, 5)];
  const l = layoutTrace(nodes);
  assert.equal(l.rows.length, 1);
  assert.deepEqual(l.bars.map((b) => b.row), [0, 0, 0]);
  // a call starting before the previous one ended goes to a second row, and
  // a later one returns to the first free row
  const overlap = layoutTrace([rootNode(), stage(1, 'w', 0), call(2, 1, 'a', 0, 10), call(3, 1, 'b', 5, 10), call(4, 1, 'c', 11, 2)]);
  assert.deepEqual(overlap.bars.map((b) => b.lane_row), [0, 1, 0]);
  // the cascade: tier call then verifier, one row; the next tier its own lane
  const c = layoutTrace(cascadeTrace());
  assert.deepEqual(c.stages.map((s) => [s.name, s.row_count, s.first_row]), [['tier 1', 1, 0], ['tier 2', 1, 1]]);
  assert.deepEqual(c.rows, [{ stage: 0, index: 0 }, { stage: 1, index: 0 }]);
});

test('nested stages: calls under several events of one stage are one lane', () => {
  const l = layoutTrace(cascadeTrace());
  const tier1 = l.bars.filter((b) => b.stage === 0);
  // the tier call hangs under "asking", the verifier under "answered": one stage
  assert.deepEqual(tier1.map((b) => b.model), ['demo-tier-small', 'demo-verifier']);
  assert.equal(l.stages[0].events.length, 4);
  assert.equal(l.stages[0].calls, 2);
});

test('stages are grouped by name in order of first appearance, spans from first event to last call end', () => {
  const l = layoutTrace(councilTrace());
  assert.deepEqual(l.stages.map((s) => s.name), ['stage 1: answers', 'stage 2: rankings', 'stage 3: synthesis']);
  const s1 = l.stages[0];
  assert.equal(s1.start_ms, 0.4);
  assert.equal(s1.end_ms, 253.3); // last event after the calls
  assert.equal(l.stages[2].start_ms, 356.6);
  assert.equal(l.stages[2].end_ms, 356.9 + 455.1);
  assert.equal(l.duration_ms, 812.4); // the root's duration, past the last call's end
  assert.deepEqual(l.root, { profile: 'council_demo', duration_ms: 812.4, error: null });
  // a stage name used again later stays one lane, at its first place
  const again = stagesOf([rootNode(), stage(1, 'a', 0), stage(2, 'b', 1), stage(3, 'a', 2)]);
  assert.deepEqual(again.map((s) => [s.name, s.events.length]), [['a', 2], ['b', 1]]);
});

test('failed and limit-stopped calls are marked', () => {
  const l = layoutTrace(moaFailuresTrace());
  const by = Object.fromEntries(l.bars.map((b) => [b.model, b]));
  assert.equal(by['demo-proposer-a'].status, 'ok');
  assert.equal(by['demo-flaky'].status, 'failed');
  assert.match(by['demo-flaky'].error, /flaky/);
  assert.equal(by['demo-proposer-b'].status, 'limit');
  assert.equal(l.stages[0].failed, 2);
  assert.equal(callStatus({ error: 'Timeout' }), 'failed');
  assert.equal(callStatus({ error: null }), 'ok');
  assert.equal(callStatus({}), 'ok');
});

test('empty and odd input', () => {
  const empty = { root: null, stages: [], rows: [], bars: [], duration_ms: 0 };
  assert.deepEqual(layoutTrace(null), empty);
  assert.deepEqual(layoutTrace(undefined, undefined), empty);
  assert.deepEqual(layoutTrace([]), empty);
  assert.deepEqual(stagesOf(null), []);
  // only a root
  const r = layoutTrace([rootNode(50)]);
  assert.equal(r.duration_ms, 50);
  assert.equal(r.stages.length, 0);
  // a call with no parent, one under the root, one under a missing node: the unstaged lane
  const odd = layoutTrace([rootNode(0), call(1, null, 'x', 0, 0), call(2, 0, 'y', 5, 0), call(3, 99, 'z', 9, 1)]);
  assert.deepEqual(odd.stages.map((s) => s.name), [UNSTAGED]);
  assert.equal(odd.bars.length, 3);
  assert.equal(odd.duration_ms, 10);
  // zero durations starting together still get their own rows; missing numbers are 0
  const zero = layoutTrace([rootNode(0), stage(1, 's', 0), call(2, 1, 'a', 0, 0), call(3, 1, 'b', 0, 0), { id: 4, parent_id: 1, step: 'llm_call', model: null }]);
  assert.deepEqual(zero.bars.map((b) => b.lane_row), [0, 1, 2]);
  assert.equal(zero.bars[2].model, '?');
  assert.equal(zero.duration_ms, 0);
  // no root node; junk entries skipped
  const noRoot = layoutTrace([null, stage(1, 's', 3), call(2, 1, 'a', 4, 6)]);
  assert.equal(noRoot.root, null);
  assert.equal(noRoot.duration_ms, 10);
});

test('extendStages runs each lane on to the next one (live runs)', () => {
  const nodes = nodesFromEvents([{ stage: 'a', text: 'one', at_ms: 5 }, { stage: 'b', text: 'two', at_ms: 40 }], { profile: 'p', elapsed_ms: 90 });
  const l = layoutTrace(nodes, [], { extendStages: true });
  assert.deepEqual(l.stages.map((s) => [s.start_ms, s.end_ms]), [[5, 40], [40, 90]]);
  assert.equal(l.duration_ms, 90);
});

test('call costs are matched by model and nearest start, each call once', () => {
  const t = 1_700_000_000;
  const nodes = voteTrace();
  const calls = callsFor(nodes, t);
  const matched = matchCallCosts(nodes, calls, t);
  assert.equal(matched.size, 5);
  assert.equal(new Set(matched.values()).size, 5);
  for (const [id, c] of matched) assert.equal(c.model, nodes.find((n) => n.id === id).model);
  const l = layoutTrace(councilTrace(), callsFor(councilTrace(), t), { requestTime: t });
  assert.ok(l.bars.every((b) => typeof b.cost === 'number'));
  // nearest start wins when one model is called twice
  const two = [rootNode(), stage(1, 's', 0), call(2, 1, 'm', 0, 5), call(3, 1, 'm', 100, 5)];
  const cs = [{ id: 'late', model: 'm', time: t + 0.101, cost: 2 }, { id: 'early', model: 'm', time: t + 0.001, cost: 1 }];
  const m2 = matchCallCosts(two, cs, t);
  assert.equal(m2.get(2).id, 'early');
  assert.equal(m2.get(3).id, 'late');
  assert.equal(matchCallCosts(two, [], t).size, 0);
  assert.equal(matchCallCosts(null, cs, t).size, 0);
});

test('markdown tables: parsed from any text, escaped bars kept, text around split off', () => {
  const text = 'before\n| a | b |\n| --- | :---: |\n| 1 | x \\| y |\n|2|3|\nafter';
  assert.deepEqual(parseMarkdownTable(text), { headers: ['a', 'b'], rows: [['1', 'x | y'], ['2', '3']] });
  assert.deepEqual(markdownBlocks(text).map((b) => b.type), ['text', 'table', 'text']);
  assert.equal(markdownBlocks(text)[2].text, 'after');
  assert.equal(parseMarkdownTable('no table | here'), null);
  assert.equal(parseMarkdownTable('| a | b |\nno separator'), null);
  assert.equal(parseMarkdownTable(null), null);
  assert.deepEqual(parseMarkdownTable('| h |\n|---|'), { headers: ['h'], rows: [] });
});

test('council: anonymisation map, reviewer rankings and aggregate ranking', () => {
  const c = councilFromTrace(councilTrace());
  assert.deepEqual(c.map, [{ label: 'A', model: 'demo-proposer-a' }, { label: 'B', model: 'demo-proposer-b' }]);
  assert.equal(c.ranking.usable, 2);
  assert.deepEqual(c.ranking.rows, [
    { place: 1, response: 'Response B', label: 'B', member: 'demo-proposer-b', mean_rank: 1 },
    { place: 2, response: 'Response A', label: 'A', member: 'demo-proposer-a', mean_rank: 2 },
  ]);
  assert.deepEqual(c.reviewers.map((r) => [r.reviewer, r.model, r.order, r.weight]), [
    [1, 'demo-reviewer-a', ['B', 'A'], 1],
    [2, 'demo-reviewer-b', ['B', 'A'], 1],
  ]);
  const halved = councilFromTrace([rootNode(), stage(1, 'stage 2: rankings', 0, 'reviewer 3 (m) ranked C > A (weight 0.33, 1 unknown or repeated label(s) skipped)')]);
  assert.equal(halved.reviewers[0].weight, 0.33);
  assert.match(halved.reviewers[0].note, /unknown/);
  assert.equal(councilFromTrace(voteTrace()), null);
  assert.equal(councilFromTrace(null), null);
});

test('self-consistency: the vote table and the winner', () => {
  const v = votesFromTrace(voteTrace());
  assert.equal(v.stage, 'vote');
  assert.deepEqual(v.rows, [{ answer: '42', votes: 3, samples: [1, 3, 5] }, { answer: '41', votes: 2, samples: [2, 4] }]);
  assert.deepEqual(v.winner, { answer: '42', votes: 3, of: 5, tie: false, sample: 1 });
  const tie = votesFromTrace([rootNode(), stage(1, 'vote', 0,
    '| answer | votes | samples |\n| --- | --- | --- |\n| say \\"hi\\" | 1 | 1 |\n| b | 1 | 2 |\nwinner: "say \\"hi\\"" with 1 of 2 vote(s) (a tie, won by the answer given first); answering with sample 1')]);
  assert.equal(tie.winner.tie, true);
  assert.equal(tie.winner.answer, 'say "hi"');
  assert.equal(votesFromTrace(councilTrace()), null);
});

test('cascade: the accepted tier', () => {
  const c = cascadeFromTrace(cascadeTrace());
  assert.deepEqual(c.tiers.map((t) => [t.tier, t.model, t.outcome]), [[1, 'demo-tier-small', 'escalated'], [2, 'demo-tier-large', 'accepted']]);
  assert.match(c.tiers[0].reason, /verifier demo-verifier rejected it/);
  assert.equal(c.accepted.model, 'demo-tier-large');
  const first = cascadeFromTrace(cascadeAcceptedTrace());
  assert.equal(first.accepted.tier, 1);
  assert.equal(first.accepted.reason, 'rule: matches ^FINAL:');
  const failed = cascadeFromTrace(cascadeTrace({ lastFails: true }));
  assert.equal(failed.accepted, null);
  assert.equal(failed.tiers[1].outcome, 'failed');
  // the stage may carry its model: "tier 1: demo-tier-small"
  const named = cascadeFromTrace([rootNode(), stage(1, 'tier 1: demo-tier-small', 0, 'demo-tier-small failed (timed out); escalating')]);
  assert.equal(named.tiers[0].model, 'demo-tier-small');
  assert.equal(named.tiers[0].outcome, 'failed');
  assert.equal(cascadeFromTrace(councilTrace()), null);
});

test('reasoning lines become stage events, multi-line texts kept whole', () => {
  const text = '[samples] drawing 5 sample(s)\n[vote] | answer | votes | samples |\n| --- | --- | --- |\n| 42 | 3 | 1 |\nwinner: "42" with 3 of 3 vote(s); answering with sample 1\n[vote] par';
  const { events, rest } = parseReasoning(text);
  assert.deepEqual(events.map((e) => e.stage), ['samples', 'vote']);
  assert.equal(parseMarkdownTable(events[1].text).rows.length, 1);
  assert.equal(rest, '[vote] par');
  assert.deepEqual(parseReasoning('').events, []);
});
