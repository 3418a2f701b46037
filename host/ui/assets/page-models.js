// Models: each group's deployments with their live state (GET /ui/api/models,
// every 3 s), the composite profiles, the last reload, and a Reload button
// (POST /admin/reload) when the caller may reload.

import { api, poll } from './api.js';
import { h, notice, show, scrollTable, badge, dl } from './dom.js';
import * as f from './format.js';

const REFRESH_MS = 3000;

export function mount(main) {
  const msg = h('div', { 'aria-live': 'polite' });
  const config = h('div');
  const deployments = h('tbody');
  const profiles = h('tbody');
  const reloadResult = h('div', { id: 'reload-result', 'aria-live': 'polite' });
  const reloadButton = h('button', { type: 'button', id: 'reload-button', class: 'btn btn-primary', hidden: true, onclick: reload }, '↻ Reload config');
  const root = h('section', { id: 'models', class: 'page' },
    h('div', { class: 'page-head' }, h('h1', null, 'Models'), h('div', { class: 'head-end' }, reloadButton)),
    reloadResult, msg, config,
    h('section', { class: 'card' },
      h('h2', null, 'Deployments'),
      scrollTable(h('table', { id: 'models-table', class: 'data-table' },
        h('thead', null, h('tr', null, ['Group', 'Deployment', 'Provider', 'Upstream model', 'State', 'Latency', 'In flight', 'Last error', 'Last check'].map((c) => h('th', { scope: 'col' }, c)))),
        deployments), 'Deployments')),
    h('section', { class: 'card' },
      h('h2', null, 'Composite profiles'),
      scrollTable(h('table', { id: 'profiles-table', class: 'data-table' },
        h('thead', null, h('tr', null, ['Model name', 'Profile', 'Strategy', 'Source', 'Component hash', 'Loaded'].map((c) => h('th', { scope: 'col' }, c)))),
        profiles), 'Composite profiles')));
  main.append(root);

  async function load() {
    try {
      const d = await api('/ui/api/models');
      msg.replaceChildren();
      draw(d);
    } catch (e) {
      show(msg, notice(`Could not load the models: ${e.message}`, 'error'));
    } finally {
      root.dataset.ready = 'true';
    }
  }

  function draw(d) {
    reloadButton.hidden = !d.can_reload;
    const rows = [];
    for (const g of d.groups ?? []) {
      g.deployments.forEach((dep, i) => {
        rows.push(h('tr', { 'data-deployment': dep.id, 'data-state': dep.state },
          h('td', null, i === 0 ? h('strong', null, g.name) : h('span', { class: 'muted' }, g.name)),
          h('td', { class: 'mono' }, dep.id),
          h('td', null, dep.provider),
          h('td', null, dep.model),
          h('td', null, stateBadge(dep)),
          h('td', { class: 'num' }, f.ms(dep.latency_ms)),
          h('td', { class: 'num' }, f.int(dep.in_flight)),
          h('td', { class: 'wrap' }, dep.last_error ? h('span', { class: 'err-text', title: f.time(dep.last_error.at) }, `${dep.last_error.message} (${f.relative(dep.last_error.at)})`) : h('span', { class: 'muted' }, '—')),
          h('td', { class: 'wrap' }, dep.last_check
            ? h('span', { class: dep.last_check.error ? 'err-text' : null, title: dep.last_check.error ?? null },
              `${f.relative(dep.last_check.at)} · ${dep.last_check.error ? 'failed' : f.ms(dep.last_check.latency_ms)}`)
            : h('span', { class: 'muted' }, '—'))));
      });
    }
    if (!rows.length) rows.push(h('tr', null, h('td', { colspan: '9', class: 'muted' }, 'No deployments.')));
    deployments.replaceChildren(...rows);
    const prows = (d.profiles ?? []).map((p) => h('tr', { 'data-profile': p.name },
      h('td', null, h('strong', null, p.model_name)), h('td', null, p.name), h('td', null, p.strategy),
      h('td', { class: 'mono small' }, p.source), h('td', { class: 'mono small', title: p.hash }, short(p.hash)), h('td', null, f.when(p.loaded_at))));
    profiles.replaceChildren(...(prows.length ? prows : [h('tr', null, h('td', { colspan: '6', class: 'muted' }, 'No composite profiles.'))]));
    const lr = d.last_reload;
    const le = d.last_reload_error;
    show(config, h('section', { class: 'card' },
      dl([
        ['Config', d.config != null ? h('span', { class: 'mono' }, d.config) : null],
        ['Version', d.version != null ? String(d.version) : null],
        ['Loaded', f.when(d.loaded_at)],
        ['Reloads', d.reloads ? `${f.int(d.reloads.ok)} ok, ${f.int(d.reloads.failed)} failed` : null],
        ['Last reload', lr ? outcome(lr) : 'none since start'],
        ['Last failed reload', le && le.time !== lr?.time ? outcome(le) : null],
      ])));
  }

  async function reload() {
    reloadButton.disabled = true;
    show(reloadResult, notice('Reloading…', 'info'));
    try {
      const r = await api('/admin/reload', { method: 'POST' });
      show(reloadResult, notice(`Reloaded: ${describe(r)}`, r?.ok === false ? 'error' : 'ok'));
    } catch (e) {
      show(reloadResult, notice(`Reload failed: ${e.message}`, 'error'));
    } finally {
      reloadButton.disabled = false;
      load();
    }
  }

  return poll(load, REFRESH_MS);
}

function stateBadge(dep) {
  if (dep.state === 'healthy') return badge('healthy', 'ok');
  if (dep.state === 'cooling') {
    const until = dep.cooling_until;
    return badge(until ? `cooling until ${f.time(until)} (${f.relative(until)})` : 'cooling', 'err');
  }
  if (dep.state === 'rate_limited') return badge('rate-limited', 'warn');
  return badge(dep.state ?? 'unknown', 'muted');
}

function outcome(o) {
  return h('span', null, badge(o.ok ? 'ok' : 'failed', o.ok ? 'ok' : 'err'), ` ${f.when(o.time)} · ${o.trigger ?? ''}${o.message ? ` · ${o.message}` : ''}${f.isNum(o.duration_ms) ? ` · ${f.ms(o.duration_ms)}` : ''}`);
}

function describe(r) {
  if (!r || typeof r !== 'object') return 'done';
  const parts = [r.message ?? r.result ?? 'done'];
  if (f.isNum(r.duration_ms)) parts.push(f.ms(r.duration_ms));
  return parts.join(' · ');
}

const short = (hash) => (hash && hash.length > 16 ? `${hash.slice(0, 12)}…` : hash ?? '—');
