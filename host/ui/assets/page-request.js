// One request (GET /ui/api/requests/{id}): summary, timings, attempts and
// body; for a composite run its timeline, its stage → call tree and what
// the strategy decided (council ranking, vote, cascade tier).

import { api, query } from './api.js';
import { h, s, notice, show, table, scrollTable, dl, debounce } from './dom.js';
import * as f from './format.js';
import { statusBadge, cacheBadge, caller, model } from './summary.js';
import { layoutTrace, councilFromTrace, votesFromTrace, cascadeFromTrace } from './timeline.js';
import { drawTimeline, legend } from './timeline-svg.js';
import { traceTree, councilView, voteView, cascadeView } from './trace-view.js';

export function mount(main, { session, params }) {
  const id = params.id;
  const body = h('div', { class: 'stack' }, h('p', { class: 'loading' }, 'Loading…'));
  const root = h('section', { id: 'request-detail', class: 'page', 'data-request-id': id },
    h('p', { class: 'crumbs' }, h('a', { href: '#/requests' }, '← Requests')),
    h('h1', null, 'Request ', h('span', { class: 'mono id' }, id)),
    body);
  main.append(root);
  let redraw = null;
  const onResize = debounce(() => redraw?.(), 150);
  window.addEventListener('resize', onResize);
  const controller = new AbortController();

  (async () => {
    try {
      const d = await api(`/ui/api/requests/${encodeURIComponent(id)}`, { signal: controller.signal });
      redraw = render(body, d);
    } catch (e) {
      if (e.name === 'AbortError') return;
      if (e.status === 404) await gone(body, id, session, controller.signal);
      else show(body, notice(`Could not load this request: ${e.message}`, 'error'));
    } finally {
      root.dataset.ready = 'true';
    }
  })();

  return () => {
    controller.abort();
    window.removeEventListener('resize', onResize);
  };
}

function render(into, d) {
  const r = d.request;
  const sections = [summary(r), timings(r)];
  let redraw = null;
  if (Array.isArray(d.trace)) {
    const run = composite(d);
    sections.push(run.el);
    redraw = run.redraw;
  }
  sections.push(attempts(d));
  sections.push(requestBody(d));
  show(into, ...sections);
  redraw?.();
  return redraw;
}

function summary(r) {
  return h('section', { class: 'card' },
    h('div', { class: 'summary-head' }, statusBadge(r.status, r.error), h('strong', { class: 'summary-model' }, model(r)),
      r.error ? h('span', { class: 'err-text' }, r.error) : null),
    dl([
      ['Started', f.time(r.time)],
      ['Route', r.route],
      ['Model group', r.model_group],
      ['Deployment', r.deployment],
      ['Profile', r.profile],
      ['Caller', caller(r)],
      ['User', r.user_id],
      ['Team', r.team_id],
      ['Streamed', r.stream ? 'yes' : 'no'],
      ['Tokens', f.tokens(r.prompt_tokens, r.completion_tokens)],
      ['Cost', f.usd(r.cost)],
      ['Cache', cacheBadge(r.cache)],
      ['Attempts', String(r.attempts ?? '—')],
      ['Fallback', r.fallback],
      ['Part of', r.parent_id ? h('a', { href: `#/requests/${encodeURIComponent(r.parent_id)}` }, r.parent_id) : null],
    ]));
}

/** Duration, time to first token and gateway overhead, with a bar to scale. */
function timings(r) {
  const total = r.duration_ms || 0;
  const bar = h('div', { class: 'timing-bar', 'aria-hidden': 'true' });
  if (total > 0) {
    const seg = (cls, from, to) => {
      const el = h('span', { class: cls });
      el.style.left = `${(from / total) * 100}%`;
      el.style.width = `${Math.max(0.5, ((to - from) / total) * 100)}%`;
      bar.append(el);
    };
    if (f.isNum(r.overhead_ms)) seg('seg-overhead', 0, Math.min(total, r.overhead_ms));
    if (f.isNum(r.ttft_ms)) seg('seg-wait', f.isNum(r.overhead_ms) ? Math.min(total, r.overhead_ms) : 0, Math.min(total, r.ttft_ms));
    seg('seg-body', f.isNum(r.ttft_ms) ? Math.min(total, r.ttft_ms) : 0, total);
  }
  return h('section', { class: 'card' },
    h('h2', null, 'Timings'),
    dl([
      ['Duration', f.ms(r.duration_ms)],
      ['First token', f.isNum(r.ttft_ms) ? f.ms(r.ttft_ms) : null],
      ['Gateway overhead', f.isNum(r.overhead_ms) ? f.ms(r.overhead_ms) : null],
    ]),
    bar,
    h('ul', { class: 'legend' },
      f.isNum(r.overhead_ms) ? h('li', null, h('span', { class: 'swatch seg-overhead' }), 'gateway overhead') : null,
      f.isNum(r.ttft_ms) ? h('li', null, h('span', { class: 'swatch seg-wait' }), 'waiting for the first token') : null,
      h('li', null, h('span', { class: 'swatch seg-body' }), f.isNum(r.ttft_ms) ? 'answer' : 'request')));
}

function composite(d) {
  const layout = layoutTrace(d.trace, d.calls ?? [], { requestTime: d.request.time });
  const svg = s('svg', { id: 'trace-timeline', class: 'timeline' });
  const tree = h('ol', { id: 'trace-tree', class: 'trace-tree' });
  traceTree(tree, layout);
  // A bar picked on the timeline: show its entry in the tree.
  svg.addEventListener('timeline-select', (e) => {
    const item = tree.querySelector(`[data-call="${e.detail}"]`);
    if (!item) return;
    item.scrollIntoView({ block: 'center', behavior: 'smooth' });
    item.focus({ preventScroll: true });
    item.classList.remove('flash');
    void item.offsetWidth; // restart the highlight animation
    item.classList.add('flash');
  });
  const structured = [];
  const council = councilFromTrace(d.trace);
  if (council) structured.push(councilView(council));
  const votes = votesFromTrace(d.trace);
  if (votes) structured.push(voteView(votes));
  const cascade = cascadeFromTrace(d.trace);
  if (cascade) structured.push(cascadeView(cascade));
  const error = d.composite_error ?? layout.root?.error;
  const unmatched = (d.calls ?? []).length - layout.bars.filter((b) => b.call).length;
  const el = h('section', { class: 'stack composite' },
    h('h2', null, `Composite run${layout.root?.profile ? `: ${layout.root.profile}` : ''}`),
    error ? notice(`The run failed: ${error}`, 'error') : null,
    h('section', { class: 'card' },
      h('div', { class: 'card-head' }, h('h3', null, 'Timeline'),
        h('span', { class: 'muted' }, `${layout.stages.length} stages · ${layout.bars.length} calls · ${f.ms(layout.duration_ms)} · ${f.usd(sum(layout.bars.map((b) => b.cost)))}`)),
      h('p', { class: 'muted small' }, 'Hover or focus a bar for its tokens, cost and answer; Enter shows it in the tree below.'),
      h('div', { class: 'timeline-wrap' }, svg),
      legend()),
    structured.length ? h('div', { class: 'structured-grid' }, structured) : null,
    h('section', { class: 'card' },
      h('h3', null, 'Stages and calls'),
      unmatched > 0 ? h('p', { class: 'muted small' }, `${unmatched} sub-call record(s) could not be matched to a trace node.`) : null,
      tree));
  return { el, redraw: () => drawTimeline(svg, layout) };
}

const sum = (xs) => (xs.some(f.isNum) ? xs.reduce((a, x) => a + (f.isNum(x) ? x : 0), 0) : null);

function attempts(d) {
  const list = d.attempts ?? [];
  const rows = list.map((a) => [a.deployment, a.model_group, statusBadge(a.status, a.error_class), a.error_class ?? '', a.error ?? '', f.ms(a.duration_ms)]);
  if (rows.length === 0) rows.push(h('tr', null, h('td', { colspan: '6', class: 'muted' }, 'No upstream attempts recorded.')));
  return h('section', { class: 'card' },
    h('h2', null, 'Attempts'),
    scrollTable(table(['Deployment', 'Group', 'Status', 'Error class', 'Error', 'Duration'], rows, { id: 'request-attempts', class: 'data-table' }), 'Attempts'),
    d.attempts_omitted ? h('p', { class: 'muted small' }, `${d.attempts_omitted} more attempt(s) not kept.`) : null);
}

function requestBody(d) {
  if (d.request_body == null) {
    return h('section', { class: 'card' }, h('h2', null, 'Request body'), h('p', { class: 'muted' }, 'Not recorded (request logs are off, or this request had no body).'));
  }
  let text = d.request_body;
  try {
    if (!d.request_body_truncated) text = JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    /* shown as sent */
  }
  return h('section', { class: 'card' },
    h('h2', null, 'Request body'),
    d.request_body_truncated ? h('p', { class: 'muted small' }, 'Cut at 64 KiB.') : null,
    h('pre', { id: 'request-body', class: 'code', tabindex: '0' }, text));
}

/** A request no longer in memory: what the spend log still has (admins). */
async function gone(into, id, session, signal) {
  const parts = [notice('This request is not in memory any more (only the newest are kept).', 'info')];
  if (session.role === 'admin' && session.features?.keys) {
    try {
      const rows = await api(`/spend/logs${query({ request_id: id })}`, { signal });
      if (Array.isArray(rows) && rows.length) {
        parts.push(h('section', { class: 'card' }, h('h2', null, 'From the spend log'),
          scrollTable(table(['Kind', 'Model', 'Deployment', 'Status', 'Tokens', 'Spend', 'Started', 'Latency'],
            rows.map((x) => [x.call_type, x.model, x.model_id ?? '', statusBadge(x.status_code), f.tokens(x.prompt_tokens, x.completion_tokens), f.usd(x.spend), f.when(x.startTime), f.ms(x.latency_ms)]),
            { class: 'data-table', id: 'spend-log-rows' }), 'Spend log rows')));
      } else {
        parts.push(h('p', { class: 'muted' }, 'The spend log has no row for it either.'));
      }
    } catch (e) {
      if (e.name === 'AbortError') return;
      parts.push(notice(`The spend log could not be read: ${e.message}`, 'error'));
    }
  }
  show(into, ...parts);
}
