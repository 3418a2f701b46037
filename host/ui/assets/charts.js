// Hand-drawn SVG charts: a time series (lines or stacked bars over the
// overview's buckets) and a horizontal bar chart (spend per key, team,
// model). Colours come from CSS classes, so light and dark mode apply.

import { s } from './dom.js';
import { hhmm } from './format.js';

/** About `count` round tick values from 0 to at least `max`. */
export function niceTicks(max, count = 4) {
  if (!(max > 0)) return [0, 1];
  const raw = max / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((x) => x >= raw);
  const ticks = [];
  for (let v = 0; v < max + step * 0.999; v += step) ticks.push(+v.toPrecision(12));
  return ticks;
}

/** The width to draw at: the element's box, or a fallback when not laid out yet. */
export function widthOf(el, fallback = 600) {
  const w = el?.getBoundingClientRect?.().width ?? 0;
  return Math.max(240, Math.round(w || fallback));
}

const LABEL_STEPS = [300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200];

/**
 * Draws a time series into `svg` (its children are replaced).
 * series: [{label, values (null = no data), cls, kind: 'line'|'bar'}];
 * bar series stack on each other. fmt formats axis values, tip the
 * hover text of one value.
 */
export function timeChart(svg, { times, step, series, fmt = String, tip = fmt, height = 170, label = '' }) {
  const width = widthOf(svg.parentElement);
  const m = { l: 46, r: 8, t: 8, b: 22 };
  const pw = width - m.l - m.r;
  const ph = height - m.t - m.b;
  const n = Math.max(1, times.length);
  const bw = pw / n;
  const bars = series.filter((x) => x.kind === 'bar');
  const lines = series.filter((x) => x.kind !== 'bar');
  const stackTop = (i) => bars.reduce((a, x) => a + (x.values[i] ?? 0), 0);
  let max = 0;
  for (let i = 0; i < times.length; i++) {
    max = Math.max(max, stackTop(i), ...lines.map((x) => x.values[i] ?? 0));
  }
  const ticks = niceTicks(max);
  const top = ticks[ticks.length - 1];
  const y = (v) => m.t + ph - (v / top) * ph;
  const out = [];

  for (const t of ticks) {
    out.push(s('line', { class: 'grid', x1: m.l, x2: width - m.r, y1: y(t), y2: y(t) }));
    out.push(s('text', { class: 'axis', x: m.l - 6, y: y(t) + 4, 'text-anchor': 'end' }, fmt(t)));
  }
  // Time labels on round clock times, as many as fit.
  const span = n * step;
  const every = LABEL_STEPS.find((st) => span / st <= Math.max(2, Math.floor(pw / 70))) ?? 86400;
  times.forEach((t, i) => {
    if (t % every !== 0) return;
    const x = m.l + i * bw;
    out.push(s('line', { class: 'tick', x1: x, x2: x, y1: m.t + ph, y2: m.t + ph + 4 }));
    out.push(s('text', { class: 'axis', x, y: height - 6, 'text-anchor': 'middle' }, hhmm(t)));
  });

  const base = new Array(times.length).fill(0);
  for (const x of bars) {
    const g = s('g', { class: `series ${x.cls}` });
    x.values.forEach((v, i) => {
      if (!(v > 0)) return;
      const y0 = y(base[i]);
      const y1 = y(base[i] + v);
      base[i] += v;
      g.append(s('rect', { x: m.l + i * bw + bw * 0.12, width: Math.max(1, bw * 0.76), y: y1, height: Math.max(0.5, y0 - y1) }));
    });
    out.push(g);
  }
  for (const x of lines) {
    let d = '';
    let pen = false;
    x.values.forEach((v, i) => {
      if (v == null) {
        pen = false;
        return;
      }
      d += `${pen ? 'L' : 'M'}${(m.l + (i + 0.5) * bw).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
    });
    // A point with no neighbour draws no line: give it a dot.
    x.values.forEach((v, i) => {
      if (v != null && x.values[i - 1] == null && x.values[i + 1] == null) {
        out.push(s('circle', { class: `dot ${x.cls}`, cx: m.l + (i + 0.5) * bw, cy: y(v), r: 2.5 }));
      }
    });
    if (x.area && d) {
      const first = x.values.findIndex((v) => v != null);
      const last = x.values.length - 1 - [...x.values].reverse().findIndex((v) => v != null);
      const area = `${d}L${(m.l + (last + 0.5) * bw).toFixed(1)},${y(0)}L${(m.l + (first + 0.5) * bw).toFixed(1)},${y(0)}Z`;
      out.push(s('path', { class: `area ${x.cls}`, d: area }));
    }
    out.push(s('path', { class: `line ${x.cls}`, d }));
  }
  out.push(s('line', { class: 'baseline', x1: m.l, x2: width - m.r, y1: y(0), y2: y(0) }));

  // One hover target per bucket, its title naming every series' value.
  const hits = s('g', { class: 'hits' });
  times.forEach((t, i) => {
    const text = [`${hhmm(t)}–${hhmm(t + step)}`, ...series.map((x) => `${x.label}: ${tip(x.values[i])}`)].join('\n');
    hits.append(s('rect', { class: 'hit', x: m.l + i * bw, y: m.t, width: bw, height: ph }, s('title', null, text)));
  });
  out.push(hits);

  svg.replaceChildren(...out);
  setFrame(svg, width, height, label);
}

function setFrame(svg, width, height, label) {
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.setAttribute('width', '100%');
  svg.setAttribute('height', String(height));
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', label);
}

/** Draws labelled horizontal bars, biggest first. items: [{label, value}]. */
export function barChart(svg, items, { fmt = String, label = '', cls = 'bar-a', max: limit = 12 } = {}) {
  const width = widthOf(svg.parentElement, 400);
  const rows = [...items].filter((x) => x.value > 0).sort((a, b) => b.value - a.value).slice(0, limit);
  const rowH = 24;
  const height = Math.max(1, rows.length) * rowH + 8;
  const labelW = Math.min(170, Math.round(width * 0.38));
  const valueW = 70;
  const pw = width - labelW - valueW - 8;
  const top = Math.max(...rows.map((x) => x.value), 0) || 1;
  const out = [];
  if (rows.length === 0) {
    out.push(s('text', { class: 'axis', x: 4, y: 18 }, 'No spend recorded yet'));
  }
  rows.forEach((x, i) => {
    const y0 = 4 + i * rowH;
    const w = Math.max(2, (x.value / top) * pw);
    const maxChars = Math.floor(labelW / 7);
    const name = x.label.length > maxChars ? `${x.label.slice(0, maxChars - 1)}…` : x.label;
    out.push(s('g', { class: `hbar ${cls}` },
      s('title', null, `${x.label}: ${fmt(x.value)}`),
      s('text', { class: 'label', x: labelW - 6, y: y0 + 15, 'text-anchor': 'end' }, name),
      s('rect', { x: labelW, y: y0 + 3, width: w, height: rowH - 8, rx: 3 }),
      s('text', { class: 'value', x: labelW + w + 6, y: y0 + 15 }, fmt(x.value))));
  });
  svg.replaceChildren(...out);
  setFrame(svg, width, height, label);
}
