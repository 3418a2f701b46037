// Overview: traffic, errors, latency, tokens and spend over the last hour or
// day, from GET /ui/api/overview, redrawn every 3 s.

import { api, poll } from './api.js';
import { h, s, notice, show, debounce } from './dom.js';
import { timeChart } from './charts.js';
import * as f from './format.js';

const REFRESH_MS = 3000;
let windowChoice = '1h'; // kept while the tab lives

const CHARTS = [
  { id: 'rps', title: 'Requests per second' },
  { id: 'errors', title: 'Error rate' },
  { id: 'latency', title: 'Latency', legend: [['p50', 'c-a'], ['p99', 'c-b']] },
  { id: 'tokens', title: 'Tokens', legend: [['prompt', 'c-a'], ['completion', 'c-b']] },
  { id: 'spend', title: 'Spend' },
];

export function mount(main, { session }) {
  const svgs = {};
  const values = {};
  const status = h('div', { class: 'page-status', 'aria-live': 'polite' });
  const toggle = h('div', { class: 'segmented', role: 'group', 'aria-label': 'Time window' },
    ['1h', '1d'].map((w) => h('button', { type: 'button', class: 'btn', 'data-window': w, 'aria-pressed': String(w === windowChoice), onclick: () => pick(w) },
      w === '1h' ? 'Last hour' : 'Last day')));
  const tiles = h('div', { class: 'tiles' });
  const grid = h('div', { class: 'chart-grid' },
    CHARTS.map((c) => {
      svgs[c.id] = s('svg', { 'data-chart': c.id, class: 'chart', role: 'img', 'aria-label': c.title });
      values[c.id] = h('span', { class: 'chart-value' });
      return h('section', { class: 'card chart-card' },
        h('header', { class: 'chart-head' }, h('h2', null, c.title), values[c.id]),
        c.legend ? h('ul', { class: 'legend' }, c.legend.map(([t, cls]) => h('li', null, h('span', { class: `swatch ${cls}`, 'aria-hidden': 'true' }), t))) : null,
        h('div', { class: 'chart-box' }, svgs[c.id]));
    }));
  const root = h('section', { id: 'overview', class: 'page' },
    h('div', { class: 'page-head' },
      h('h1', null, 'Overview'),
      toggle),
    session.role === 'key' ? h('p', { class: 'muted' }, 'Your own requests only.') : null,
    status, tiles, grid);
  main.append(root);

  let last = null;
  let seq = 0;
  async function load() {
    const mine = ++seq;
    try {
      const data = await api(`/ui/api/overview?window=${windowChoice}`);
      if (mine !== seq) return; // a newer load (window switch) won
      last = data;
      status.replaceChildren();
      draw(data);
    } catch (e) {
      if (mine === seq) show(status, notice(`Could not load the overview: ${e.message}`, 'error'));
    } finally {
      root.dataset.ready = 'true';
    }
  }

  function draw(d) {
    const b = d.buckets ?? [];
    const t = d.totals ?? {};
    const step = d.bucket_seconds || 60;
    const times = b.map((x) => x.t);
    const col = (k) => b.map((x) => x[k] ?? 0);
    show(tiles,
      tile('Requests/s', f.rate(t.rps), 'over the last minute'),
      tile('Requests', f.int(t.requests), `in the last ${windowChoice === '1h' ? 'hour' : 'day'}`),
      tile('Error rate', f.pct(t.error_rate), `${f.int(t.errors)} errors`),
      tile('Latency p50', f.ms(t.p50_ms), `p99 ${f.ms(t.p99_ms)}`),
      tile('Tokens', f.compact(t.prompt_tokens + t.completion_tokens), `${f.int(t.prompt_tokens)} prompt, ${f.int(t.completion_tokens)} completion`),
      tile('Spend', f.usd(t.cost), `${f.int(d.in_flight)} in flight now`));
    values.rps.textContent = `${f.rate(t.rps)} /s now`;
    values.errors.textContent = f.pct(t.error_rate);
    values.latency.textContent = `p50 ${f.ms(t.p50_ms)} · p99 ${f.ms(t.p99_ms)}`;
    values.tokens.textContent = f.int((t.prompt_tokens ?? 0) + (t.completion_tokens ?? 0));
    values.spend.textContent = f.usd(t.cost);
    timeChart(svgs.rps, { times, step, label: 'Requests per second over time', fmt: f.compact, tip: (v) => `${f.rate(v)} req/s`,
      series: [{ label: 'requests/s', values: col('requests').map((n) => n / step), cls: 'c-a', kind: 'line', area: true }] });
    timeChart(svgs.errors, { times, step, label: 'Error rate over time', fmt: (v) => `${+(v * 100).toFixed(1)}%`, tip: f.pct,
      series: [{ label: 'errors (≥ 400)', values: b.map((x) => (x.requests ? x.errors / x.requests : null)), cls: 'c-err', kind: 'line', area: true },
        { label: 'server errors (≥ 500)', values: b.map((x) => (x.requests ? x.server_errors / x.requests : null)), cls: 'c-err2', kind: 'line' }] });
    timeChart(svgs.latency, { times, step, label: 'Latency percentiles over time', fmt: (v) => (v === 0 ? '0' : v >= 1000 ? `${+(v / 1000).toPrecision(3)}s` : `${+v.toPrecision(3)}ms`), tip: f.ms,
      series: [{ label: 'p50', values: b.map((x) => x.p50_ms), cls: 'c-a', kind: 'line' }, { label: 'p99', values: b.map((x) => x.p99_ms), cls: 'c-b', kind: 'line' }] });
    timeChart(svgs.tokens, { times, step, label: 'Tokens over time', fmt: f.compact, tip: f.int,
      series: [{ label: 'prompt', values: col('prompt_tokens'), cls: 'c-a', kind: 'bar' }, { label: 'completion', values: col('completion_tokens'), cls: 'c-b', kind: 'bar' }] });
    timeChart(svgs.spend, { times, step, label: 'Spend over time', fmt: (v) => (v === 0 ? '$0' : `$${+v.toPrecision(2)}`), tip: f.usd,
      series: [{ label: 'spend', values: col('cost'), cls: 'c-c', kind: 'bar' }] });
  }

  function pick(w) {
    if (w === windowChoice) return;
    windowChoice = w;
    for (const btn of toggle.querySelectorAll('button')) btn.setAttribute('aria-pressed', String(btn.dataset.window === w));
    load();
  }

  const onResize = debounce(() => last && draw(last), 150);
  window.addEventListener('resize', onResize);
  const stop = poll(load, REFRESH_MS);
  return () => {
    stop();
    window.removeEventListener('resize', onResize);
  };
}

function tile(label, value, note) {
  return h('div', { class: 'tile' }, h('div', { class: 'tile-label' }, label), h('div', { class: 'tile-value' }, value), note ? h('div', { class: 'tile-note' }, note) : null);
}
