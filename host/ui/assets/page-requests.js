// Requests: the newest requests kept in memory (GET /ui/api/requests),
// polled every second, with filters that map to the query parameters.
// Rows are kept by id between polls so focus and scroll stay put.

import { api, poll, query } from './api.js';
import { h, notice, show, scrollTable, debounce } from './dom.js';
import * as f from './format.js';
import { statusBadge, cacheBadge, caller, model } from './summary.js';

const REFRESH_MS = 1000;
const STATUS_FILTER = /^(ok|error|[1-5]xx|[1-5]\d\d)$/;
const SINCE = { '5m': 300, '1h': 3600, '1d': 86400, all: null };
// Filters survive a visit to a request's page and back.
const filters = { model: '', status: '', key: '', since: 'all' };

export function mount(main, { session }) {
  const input = (id, name, label, list, hint) => h('div', { class: 'field' },
    h('label', { for: id }, label),
    h('input', { id, name, type: 'text', list, value: filters[name], autocomplete: 'off', spellcheck: 'false', placeholder: hint }));
  const statusList = h('datalist', { id: 'status-options' }, ['ok', 'error', '2xx', '4xx', '5xx', '429', '499'].map((v) => h('option', { value: v })));
  const modelList = h('datalist', { id: 'model-options' });
  const keyList = h('datalist', { id: 'key-options' });
  const since = h('select', { id: 'filter-since', name: 'since', value: filters.since },
    h('option', { value: '5m' }, 'Last 5 minutes'), h('option', { value: '1h' }, 'Last hour'),
    h('option', { value: '1d' }, 'Last day'), h('option', { value: 'all' }, 'All kept'));
  const form = h('form', { class: 'filters', id: 'requests-filters', 'aria-label': 'Filter requests' },
    input('filter-model', 'model', 'Model', 'model-options', 'any'),
    input('filter-status', 'status', 'Status', 'status-options', 'ok, error, 5xx, 429…'),
    session.role === 'key' ? null : input('filter-key', 'key', 'Key', 'key-options', 'alias, sk-…abcd, master'),
    h('div', { class: 'field' }, h('label', { for: 'filter-since' }, 'Time'), since),
    h('div', { class: 'field field-buttons' },
      h('button', { type: 'submit', id: 'filter-apply', class: 'btn btn-primary' }, 'Apply'),
      h('button', { type: 'button', class: 'btn', onclick: clear }, 'Clear')),
    statusList, modelList, keyList);
  const pause = h('button', { type: 'button', class: 'btn btn-quiet', 'aria-pressed': 'false', onclick: togglePause }, 'Pause updates');
  const meta = h('span', { class: 'muted', 'aria-live': 'off' });
  const msg = h('div', { 'aria-live': 'polite' });
  const tbody = h('tbody');
  const tableEl = h('table', { id: 'requests-table', class: 'data-table' },
    h('caption', { class: 'sr-only' }, 'Requests, newest first; Enter on a row opens it'),
    h('thead', null, h('tr', null, ['Time', 'Model', 'Caller', 'Status', 'Duration', 'Tokens', 'Cost', 'Cache', 'Attempts', 'Request'].map((c) => h('th', { scope: 'col' }, c)))),
    tbody);
  const empty = h('p', { class: 'muted empty', hidden: true }, 'No request matches.');
  const root = h('section', { id: 'requests', class: 'page' },
    h('div', { class: 'page-head' }, h('h1', null, 'Requests'), h('div', { class: 'head-end' }, meta, pause)),
    form, msg, scrollTable(tableEl, 'Requests table'), empty);
  main.append(root);

  // Apply as the user types (debounced), on change, and on submit. A status
  // the gateway would refuse (half typed) is not sent.
  const statusInput = form.elements.namedItem('status');
  const apply = () => {
    const status = statusInput.value.trim().toLowerCase();
    if (status && !STATUS_FILTER.test(status)) {
      statusInput.setAttribute('aria-invalid', 'true');
      show(msg, notice('Status: ok, error, 1xx to 5xx, or a status code such as 429.', 'info'));
      return;
    }
    statusInput.removeAttribute('aria-invalid');
    for (const name of ['model', 'status', 'key', 'since']) {
      const el = form.elements.namedItem(name);
      if (el) filters[name] = el.value.trim();
    }
    filters.status = status;
    load();
  };
  const typed = debounce(apply, 350);
  form.addEventListener('input', (e) => (e.target === since ? apply() : typed()));
  form.addEventListener('change', apply);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    apply();
  });
  function clear() {
    Object.assign(filters, { model: '', status: '', key: '', since: 'all' });
    for (const name of ['model', 'status', 'key']) {
      const el = form.elements.namedItem(name);
      if (el) el.value = '';
    }
    since.value = 'all';
    load();
  }

  let paused = false;
  function togglePause() {
    paused = !paused;
    pause.setAttribute('aria-pressed', String(paused));
    if (!paused) load();
  }

  // Opening a row: click anywhere on it, or Enter when it has focus.
  const open = (tr) => tr && (location.hash = `#/requests/${encodeURIComponent(tr.dataset.requestId)}`);
  tbody.addEventListener('click', (e) => {
    if (e.target.closest('a')) return; // the link navigates by itself
    open(e.target.closest('tr[data-request-id]'));
  });
  tbody.addEventListener('keydown', (e) => {
    const tr = e.target.closest('tr[data-request-id]');
    if (!tr || e.target !== tr) return;
    if (e.key === 'Enter') open(tr);
    else if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
      e.preventDefault();
      (e.key === 'ArrowDown' ? tr.nextElementSibling : tr.previousElementSibling)?.focus();
    }
  });

  // Clients choose request ids and may reuse one: a row is one request,
  // known by its id and start time together.
  const rowKey = (r) => `${r.id}\u0000${r.time}`;
  const rows = new Map(); // rowKey -> {tr, sig}
  const seen = { models: new Set(), keys: new Set() };
  let seq = 0;

  async function load(fromPoll = false) {
    if (fromPoll && paused) return;
    const mine = ++seq;
    const s = SINCE[filters.since];
    const q = query({ model: filters.model, status: filters.status, key: filters.key, since: s ? (Date.now() / 1000 - s).toFixed(3) : '', limit: 100 });
    try {
      const data = await api(`/ui/api/requests${q}`);
      if (mine !== seq) return;
      msg.replaceChildren();
      render(data.requests ?? []);
      meta.textContent = `${data.requests?.length ?? 0} shown · ${f.int(data.kept)} of ${f.int(data.capacity)} kept in memory`;
    } catch (e) {
      if (mine === seq) show(msg, notice(`Could not load requests: ${e.message}`, 'error'));
    } finally {
      root.dataset.ready = 'true';
    }
  }

  function render(list) {
    const ids = new Set(list.map(rowKey));
    for (const [id, row] of rows) {
      if (!ids.has(id)) {
        row.tr.remove();
        rows.delete(id);
      }
    }
    // Insert or update in order without moving rows that are already in
    // place (moving a focused row would drop its focus).
    let at = tbody.firstElementChild;
    for (const r of list) {
      const sig = JSON.stringify(r);
      let row = rows.get(rowKey(r));
      if (!row) {
        row = { tr: h('tr', { 'data-request-id': r.id, tabindex: '0' }), sig: '' };
        rows.set(rowKey(r), row);
      }
      if (row.sig !== sig) {
        row.sig = sig;
        row.tr.replaceChildren(...cells(r));
        row.tr.setAttribute('aria-label', `${f.time(r.time)} ${r.model} status ${r.status}`);
      }
      if (row.tr !== at) tbody.insertBefore(row.tr, at);
      else at = at.nextElementSibling;
      if (r.model) seen.models.add(r.model);
      if (r.model_group) seen.models.add(r.model_group);
      if (r.key_alias) seen.keys.add(r.key_alias);
      if (r.caller) seen.keys.add(r.caller);
    }
    empty.hidden = list.length > 0;
    fillList(modelList, seen.models);
    fillList(keyList, seen.keys);
  }

  const stop = poll(() => load(true), REFRESH_MS);
  return stop;
}

function cells(r) {
  const td = (content, cls) => h('td', { class: cls }, content);
  return [
    td(h('time', { datetime: new Date(r.time * 1000).toISOString() }, f.time(r.time)), 'nowrap'),
    td(model(r)),
    td(caller(r)),
    td(statusBadge(r.status, r.error)),
    td(h('span', { title: r.ttft_ms != null ? `first token after ${f.ms(r.ttft_ms)}` : null }, f.ms(r.duration_ms)), 'num'),
    td(f.tokens(r.prompt_tokens, r.completion_tokens), 'num nowrap'),
    td(f.usd(r.cost), 'num'),
    td(cacheBadge(r.cache)),
    td(r.attempts > 1 ? h('strong', { title: 'retries or fallbacks' }, String(r.attempts)) : String(r.attempts ?? '—'), 'num'),
    td(h('a', { href: `#/requests/${encodeURIComponent(r.id)}`, tabindex: '-1', class: 'mono' }, r.id.length > 14 ? `${r.id.slice(0, 12)}…` : r.id)),
  ];
}

function fillList(list, values) {
  if (list.childElementCount === values.size) return;
  list.replaceChildren(...[...values].sort().map((v) => h('option', { value: v })));
}
