// The composite trace as HTML: the stage → call tree, the structured
// tables strategies write into their stage texts (council, vote, cascade),
// and a renderer for any event text with markdown tables in it.

import { h, table, scrollTable, badge } from './dom.js';
import { markdownBlocks } from './timeline.js';
import { ms, usd, tokens } from './format.js';

/** An event text: plain lines kept as written, markdown tables as <table>. */
export function markdown(text) {
  return h('div', { class: 'md' },
    markdownBlocks(text).map((b) =>
      b.type === 'table'
        ? scrollTable(table(b.headers, b.rows, { class: 'md-table' }), 'table from a stage text')
        : b.text.trim() ? h('p', { class: 'md-text' }, b.text) : null));
}

const STATUS = { ok: ['ok', 'ok'], failed: ['failed', 'err'], limit: ['limit', 'warn'] };

function callItem(b) {
  const [text, kind] = STATUS[b.status];
  return h('li', { class: `tree-call status-${b.status}`, 'data-call': b.id, 'data-model': b.model, tabindex: '-1' },
    h('div', { class: 'tree-call-head' },
      badge(text, kind),
      h('strong', null, b.model),
      h('span', { class: 'muted' }, `at ${ms(b.start_ms)}`),
      h('span', null, ms(b.duration_ms)),
      h('span', { title: 'prompt → completion tokens' }, tokens(b.prompt_tokens, b.completion_tokens)),
      h('span', null, usd(b.cost)),
      b.call?.deployment ? h('span', { class: 'muted' }, `via ${b.call.deployment}`) : null),
    b.error ? h('p', { class: 'tree-error' }, b.error) : null,
    b.preview ? h('p', { class: 'preview' }, b.preview) : null);
}

/** Stage → its events and calls, in time order. `into` is the #trace-tree element. */
export function traceTree(into, layout) {
  into.replaceChildren(
    ...layout.stages.map((st, si) => {
      const items = [
        ...st.events.map((e) => ({ at: e.at_ms, order: e.id, el: h('li', { class: 'tree-event' }, h('span', { class: 'muted at' }, ms(e.at_ms)), markdown(e.text)) })),
        ...layout.bars.filter((b) => b.stage === si).map((b) => ({ at: b.start_ms, order: b.id, el: callItem(b) })),
      ].sort((a, b) => a.at - b.at || a.order - b.order);
      const facts = `${ms(st.start_ms)} → ${ms(st.end_ms)} · ${st.calls} call${st.calls === 1 ? '' : 's'}`;
      return h('li', { class: `tree-stage hue-${si % 6}`, 'data-stage': st.name },
        h('h3', null, h('span', { class: 'stage-dot', 'aria-hidden': 'true' }), st.name, ' ', h('span', { class: 'muted small' }, facts)),
        h('ol', { class: 'tree-items' }, items.map((x) => x.el)));
    }));
}

/** The council's anonymisation map, ranking and reviewers. */
export function councilView(c) {
  const parts = [h('h3', null, 'Council')];
  if (c.map.length) {
    parts.push(h('h4', null, 'Anonymisation'),
      scrollTable(table(['Shown to reviewers as', 'Council member'], c.map.map((m) => [`Response ${m.label}`, m.model]), { id: 'anonymization-map' }), 'anonymisation map'));
  }
  if (c.ranking) {
    const rows = c.ranking.rows.map((r) => h('tr', { class: r.place === 1 ? 'winner' : null },
      h('td', null, String(r.place)), h('td', null, r.response), h('td', null, r.member), h('td', null, r.mean_rank.toFixed(2))));
    parts.push(h('h4', null, `Aggregate ranking (${c.ranking.usable} usable ranking${c.ranking.usable === 1 ? '' : 's'}, lower mean rank is better)`),
      scrollTable(table(['Place', 'Response', 'Member', 'Mean rank'], rows, { id: 'ranking-table' }), 'aggregate ranking'));
  }
  if (c.reviewers.length) {
    parts.push(h('h4', null, 'Reviewers'),
      scrollTable(table(['Reviewer', 'Model', 'Ranked', 'Weight'],
        c.reviewers.map((r) => [`reviewer ${r.reviewer}`, r.model, r.order.join(' > '), `${r.weight.toFixed(2)}${r.note ? ` (${r.note})` : ''}`]),
        { id: 'reviewer-table' }), 'reviewer rankings'));
  }
  return h('section', { class: 'card structured' }, parts);
}

/** Self-consistency's vote. */
export function voteView(v) {
  const rows = v.rows.map((r, i) => h('tr', { class: i === 0 && v.winner ? 'winner' : null },
    h('td', null, r.answer), h('td', null, String(r.votes)), h('td', null, r.samples.join(', '))));
  const w = v.winner;
  return h('section', { class: 'card structured' },
    h('h3', null, 'Vote'),
    scrollTable(table(['Answer', 'Votes', 'Samples'], rows, { id: 'vote-table' }), 'vote'),
    w ? h('p', null, 'Winner: ', h('strong', null, w.answer), ` with ${w.votes} of ${w.of} votes${w.tie ? ' (a tie, won by the answer given first)' : ''}; answered with sample ${w.sample}.`) : null);
}

/** The cascade's tiers and the accepted one. */
export function cascadeView(c) {
  const kinds = { accepted: 'ok', escalated: 'warn', failed: 'err', pending: 'muted' };
  const a = c.accepted;
  return h('section', { class: 'card structured' },
    h('h3', null, 'Cascade'),
    h('p', { id: 'cascade-accepted', class: a ? 'accepted' : 'not-accepted' },
      a ? ['Accepted: ', h('strong', null, `tier ${a.tier}`), ' — ', h('strong', null, a.model ?? '?'), a.reason ? ` (${a.reason})` : '']
        : 'No tier was accepted.'),
    scrollTable(table(['Tier', 'Model', 'Outcome', 'Why'],
      c.tiers.map((t) => [String(t.tier), t.model ?? '?', badge(t.outcome, kinds[t.outcome]), t.reason ?? '']),
      { id: 'cascade-tiers' }), 'cascade tiers'));
}
