// Draws a layout from timeline.js as an SVG waterfall: a time axis, the
// whole run on top, then one lane per stage (its span and its events as
// ticks) with the stage's calls as bars, concurrent calls stacked in rows.
// Shared by the request page and the playground.

import { s, h } from './dom.js';
import { ms, usd, int, isNum } from './format.js';
import { widthOf } from './charts.js';

const PAD_L = 10;
const PAD_R = 14;
const AXIS_H = 24;
const ROOT_H = 34;
const TITLE_H = 20;
const SPAN_H = 16;
const ROW_H = 26;
const BAR_H = 18;
const LANE_PAD = 8;
const CHAR_W = 6.4; // average width of a character of the 11px label font
const HUES = 6;

/** A round step for about `target` time ticks over `total` ms. */
function timeStep(total, target) {
  const raw = total / Math.max(1, target);
  const mag = 10 ** Math.floor(Math.log10(raw || 1));
  return [1, 2, 5, 10].map((m) => m * mag).find((x) => x >= raw) ?? raw;
}

function tickLabel(t, step) {
  if (t === 0) return '0';
  if (step < 1000) return `${+t.toFixed(step < 1 ? 2 : 0)} ms`;
  return `${+(t / 1000).toFixed(step < 10_000 ? (step < 1000 ? 2 : 1) : 0)} s`;
}

/** The hover text of a call. */
export function callTitle(b) {
  const lines = [`${b.model} — ${b.status === 'ok' ? 'ok' : b.status === 'limit' ? 'stopped by a limit' : 'failed'}`];
  lines.push(`${ms(b.duration_ms)} (at ${ms(b.start_ms)} → ${ms(b.end_ms)})`);
  if (isNum(b.prompt_tokens) || isNum(b.completion_tokens)) lines.push(`tokens: ${int(b.prompt_tokens)} prompt, ${int(b.completion_tokens)} completion`);
  if (isNum(b.cost)) lines.push(`cost: ${usd(b.cost)}`);
  if (b.error) lines.push(`error: ${b.error}`);
  if (b.preview) lines.push('', b.preview.length > 400 ? `${b.preview.slice(0, 400)}…` : b.preview);
  return lines.join('\n');
}

const MARK = { ok: '', failed: '✕ ', limit: '⊘ ' };

function barText(b) {
  const what = b.status === 'failed' ? ' · failed' : b.status === 'limit' ? ' · limit' : '';
  return `${MARK[b.status]}${b.model} · ${ms(b.duration_ms)}${what}`;
}

const fit = (text, px) => {
  const n = Math.floor(px / CHAR_W);
  if (n >= text.length) return text;
  return n >= 6 ? `${text.slice(0, n - 1)}…` : null;
};

/**
 * Labels one row of bars: inside a bar when it fits; else beside it. Bars
 * too short for their own label, one after another, share one label
 * ("a · 12 ms → b · 10 ms") placed after the last of them (or before the
 * first), cut short only when nothing else fits.
 */
function labelRow(geo, by, rightEdge) {
  let freeFrom = PAD_L; // where the previous label or bar ends
  let pending = [];
  const put = (owner, x, anchor, cls, text) => {
    owner.g.append(s('text', { class: `bar-label ${cls}`, x, y: by + 13, 'text-anchor': anchor }, text));
  };
  // Places the pending bars' shared label before `limit`; false when it does not fit whole.
  const flush = (limit, cut) => {
    if (!pending.length) return true;
    const first = pending[0];
    const last = pending[pending.length - 1];
    const text = pending.map((p) => barText(p.b)).join(' → ');
    const tw = text.length * CHAR_W;
    if (last.x1 + 6 + tw <= limit) {
      put(last, last.x1 + 6, 'start', 'out', text);
      freeFrom = last.x1 + 10 + tw;
    } else if (first.x0 - 6 - tw >= freeFrom) {
      put(first, first.x0 - 6, 'end', 'out', text);
      freeFrom = last.x1 + 4;
    } else if (cut) {
      const short = fit(text, limit - last.x1 - 6);
      if (short) put(last, last.x1 + 6, 'start', 'out', short);
      freeFrom = limit;
    } else {
      return false;
    }
    pending = [];
    return true;
  };
  for (const p of geo) {
    const text = barText(p.b);
    if (text.length * CHAR_W + 12 <= p.x1 - p.x0) {
      flush(p.x0 - 4, true);
      put(p, p.x0 + 6, 'start', 'in', text);
      freeFrom = p.x1 + 4;
    } else {
      if (pending.length && !flush(p.x0 - 4, false)) {
        pending.push(p);
        continue;
      }
      pending = [p];
    }
  }
  flush(rightEdge, true);
}

/**
 * Draws `layout` into `svg` (children replaced). Each lane is
 * `g[data-stage]`, each call `g[data-call][data-model][data-status]`,
 * focusable; Enter or a click on a call fires `timeline-select` (detail:
 * the call's node id) on the svg.
 */
export function drawTimeline(svg, layout, { live = false } = {}) {
  const width = Math.max(300, widthOf(svg.parentElement, 800));
  const plotW = width - PAD_L - PAD_R;
  const total = Math.max(layout.duration_ms, 1);
  const x = (t) => PAD_L + (Math.max(0, t) / total) * plotW;
  const pid = svg.id || 'timeline';
  const laneH = (st) => TITLE_H + SPAN_H + st.row_count * ROW_H + LANE_PAD;
  const height = AXIS_H + ROOT_H + layout.stages.reduce((a, st) => a + laneH(st), 0) + 6;
  const out = [];

  out.push(s('defs', null,
    s('pattern', { id: `${pid}-hatch`, width: 6, height: 6, patternUnits: 'userSpaceOnUse', patternTransform: 'rotate(45)' },
      s('rect', { class: 'hatch-bg', width: 6, height: 6 }),
      s('line', { class: 'hatch-line', x1: 0, y1: 0, x2: 0, y2: 6 }))));

  // Lane backgrounds first, so the grid lines show through them.
  const backgrounds = s('g', { class: 'tl-backgrounds', 'aria-hidden': 'true' });
  out.push(backgrounds);

  // Time axis: labels on top, grid lines through every lane.
  const step = timeStep(total, Math.floor(plotW / 90));
  const axis = s('g', { class: 'tl-axis', 'aria-hidden': 'true' });
  for (let t = 0; t <= total + 1e-9; t += step) {
    const xt = x(t);
    axis.append(s('line', { class: 'grid', x1: xt, x2: xt, y1: AXIS_H - 4, y2: height }));
    axis.append(s('text', { class: 'axis', x: xt, y: AXIS_H - 8, 'text-anchor': t === 0 ? 'start' : 'middle' }, tickLabel(t, step)));
  }
  out.push(axis);

  // The whole run.
  if (layout.root) {
    const r = layout.root;
    const y = AXIS_H + 6;
    const label = `${r.profile ?? 'run'} · ${ms(layout.duration_ms)}${live ? ' so far' : ''}${r.error ? ` · failed: ${r.error}` : ''}`;
    out.push(s('g', { class: `tl-root${r.error ? ' failed' : ''}` },
      s('title', null, r.error ? `the run failed: ${r.error}` : `the whole run: ${ms(layout.duration_ms)}`),
      s('rect', { x: x(0), y, width: Math.max(2, x(layout.duration_ms) - x(0)), height: 6, rx: 3 }),
      s('text', { class: 'root-label', x: x(0), y: y + 19 }, fit(label, plotW) ?? '')));
  }

  let y = AXIS_H + ROOT_H;
  layout.stages.forEach((st, si) => {
    const hue = `hue-${si % HUES}`;
    const lane = s('g', { class: `tl-lane ${hue}`, 'data-stage': st.name });
    const lh = laneH(st);
    backgrounds.append(s('rect', { class: `lane-bg${si % 2 ? ' odd' : ''}`, x: 0, y, width, height: lh }));
    const facts = [`${st.events.length} event${st.events.length === 1 ? '' : 's'}`];
    if (st.calls) facts.push(`${st.calls} call${st.calls === 1 ? '' : 's'}`);
    facts.push(ms(st.end_ms - st.start_ms));
    lane.append(s('text', { class: 'lane-title', x: PAD_L, y: y + 14 },
      s('tspan', { class: 'stage-name' }, st.name),
      s('tspan', { class: 'stage-facts' }, `  ${facts.join(' · ')}`),
      st.failed ? s('tspan', { class: 'stage-failed' }, ` · ${st.failed} not ok`) : null));
    // The stage's span, and each of its events as a tick on it.
    const sy = y + TITLE_H + 5;
    lane.append(s('rect', { class: 'span', x: x(st.start_ms), y: sy, width: Math.max(3, x(st.end_ms) - x(st.start_ms)), height: 6, rx: 3 }));
    for (const e of st.events) {
      lane.append(s('g', { class: 'event' },
        s('title', null, `${ms(e.at_ms)} — ${e.text}`),
        s('rect', { x: x(e.at_ms) - 1.5, y: sy - 4, width: 3, height: 14, rx: 1 })));
    }
    // Calls, row by row; then their labels where they fit.
    const bars = layout.bars.filter((b) => b.stage === si);
    for (let k = 0; k < st.row_count; k++) {
      const row = bars.filter((b) => b.lane_row === k).sort((a, b) => a.start_ms - b.start_ms);
      const by = y + TITLE_H + SPAN_H + k * ROW_H + (ROW_H - BAR_H) / 2;
      const geo = row.map((b) => {
        const bx = x(b.start_ms);
        const g = s('g', {
          class: `call status-${b.status}`, 'data-call': b.id, 'data-model': b.model, 'data-status': b.status,
          tabindex: '0', role: 'button', 'aria-label': `${barText(b)}, in ${st.name}`,
        },
        s('title', null, callTitle(b)),
        s('rect', { class: 'bar', x: bx, y: by, width: Math.max(3, x(b.end_ms) - bx), height: BAR_H, rx: 3, fill: b.status === 'limit' ? `url(#${pid}-hatch)` : null }));
        lane.append(g);
        return { b, g, x0: bx, x1: bx + Math.max(3, x(b.end_ms) - bx) };
      });
      labelRow(geo, by, width - 2);
    }
    out.push(lane);
    y += lh;
  });

  if (layout.stages.length === 0) {
    out.push(s('text', { class: 'axis', x: PAD_L, y: AXIS_H + ROOT_H + 14 }, live ? 'waiting for the first stage…' : 'no stages were traced'));
  }

  svg.replaceChildren(...out);
  svg.setAttribute('viewBox', `0 0 ${width} ${Math.max(height, AXIS_H + ROOT_H + 24)}`);
  svg.setAttribute('width', String(width));
  svg.setAttribute('height', String(Math.max(height, AXIS_H + ROOT_H + 24)));
  svg.setAttribute('role', 'group');
  svg.setAttribute('aria-label', `Timeline: ${layout.stages.length} stages, ${layout.bars.length} calls, ${ms(layout.duration_ms)}`);
  if (!svg.dataset.wired) {
    svg.dataset.wired = '1';
    const pick = (ev) => {
      const g = ev.target.closest?.('g[data-call]');
      if (g) svg.dispatchEvent(new CustomEvent('timeline-select', { detail: Number(g.dataset.call) }));
    };
    svg.addEventListener('click', pick);
    svg.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' || ev.key === ' ') {
        if (ev.target.closest?.('g[data-call]')) ev.preventDefault();
        pick(ev);
      }
    });
  }
}

/** The legend under a timeline (HTML, so it wraps on a phone). */
export function legend() {
  const item = (cls, text) => h('li', null, h('span', { class: `swatch ${cls}`, 'aria-hidden': 'true' }), text);
  return h('ul', { class: 'tl-legend', 'aria-label': 'Timeline legend' },
    item('sw-ok', 'call'), item('sw-failed', '✕ failed call'), item('sw-limit', '⊘ stopped by a limit'),
    item('sw-event', 'stage event'), item('sw-span', 'stage span'));
}
