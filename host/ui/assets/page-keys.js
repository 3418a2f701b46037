// Keys: virtual keys, teams, users and spend through the LiteLLM-compatible
// management API (/key/*, /team/*, /user/list, /global/spend/report). Admins
// manage; a virtual key sees its own /key/info; without a master key the
// store is off and the page says so.

import { api } from './api.js';
import { h, s, notice, show, scrollTable, badge, dl } from './dom.js';
import { barChart } from './charts.js';
import * as f from './format.js';

export function mount(main, { session }) {
  const root = h('section', { id: 'keys', class: 'page' });
  main.append(root);
  const ready = () => (root.dataset.ready = 'true');
  if (!session.features?.keys) {
    root.append(h('h1', null, 'Keys'),
      notice('Virtual keys are off on this gateway: the key store opens only when a master key is configured (general_settings.master_key or CONCLAVE_MASTER_KEY). Every caller is let in without a key.', 'info'));
    ready();
    return null;
  }
  if (session.role !== 'admin') {
    ownKey(root).finally(ready);
    return null;
  }
  return admin(root, ready);
}

// ---- a virtual key's own view ------------------------------------------------

async function ownKey(root) {
  root.append(h('h1', null, 'Your key'));
  const body = h('div', { class: 'stack' });
  root.append(body);
  try {
    // No ?key=: the gateway answers for the calling key, so the key stays out of the URL.
    const { info: k } = await api('/key/info');
    const svg = s('svg', { 'data-chart': 'spend-own-models', class: 'chart' });
    show(body,
      h('section', { class: 'card' }, dl([
        ['Alias', k.key_alias ?? '—'], ['Key', h('span', { class: 'mono' }, k.key_name)],
        ['Spend', f.usd(k.spend)], ['Budget', budget(k)], ['Resets', k.budget_reset_at ? f.when(k.budget_reset_at) : null],
        ['Limits', limits(k)], ['Models', k.models?.length ? k.models.join(', ') : 'every model'],
        ['Team', k.team_id], ['User', k.user_id], ['Expires', k.expires ? f.when(k.expires) : 'never'],
        ['State', k.blocked ? badge('blocked', 'err') : badge('active', 'ok')],
      ])),
      h('section', { class: 'card' }, h('h2', null, 'Spend per model'), h('div', { class: 'chart-box' }, svg)));
    barChart(svg, Object.entries(k.model_spend ?? {}).map(([label, value]) => ({ label, value })), { fmt: f.usd, label: 'Spend per model' });
  } catch (e) {
    show(body, notice(`Could not load your key: ${e.message}`, 'error'));
  }
}

// ---- the admin's view ----------------------------------------------------------

const numOrNull = (v) => (v.trim() === '' ? null : Number(v));
const listOf = (v) => v.split(',').map((x) => x.trim()).filter(Boolean);

/** Every page of a paged list. */
async function allPages(path, pick, size = 100) {
  const out = [];
  for (let page = 1; page <= 50; page++) {
    const d = await api(`${path}${path.includes('?') ? '&' : '?'}page=${page}&page_size=${size}`);
    out.push(...pick(d));
    if (!(d.total_pages > page)) break;
  }
  return out;
}

function admin(root, ready) {
  const msg = h('div', { id: 'keys-msg', 'aria-live': 'polite' });
  const newKey = h('div', { id: 'new-key-box', 'aria-live': 'polite' });
  const keysBody = h('tbody');
  const teamsBody = h('tbody');
  const usersBody = h('tbody');
  const auditBody = h('tbody');
  const charts = { keys: chartSvg('spend-keys'), teams: chartSvg('spend-teams'), models: chartSvg('spend-models') };
  const teamOptions = h('datalist', { id: 'team-options' });
  const userOptions = h('datalist', { id: 'user-options' });
  const durations = h('datalist', { id: 'duration-options' }, ['1h', '1d', '7d', '30d', '1mo'].map((v) => h('option', { value: v })));
  let state = { keys: [], teams: [], users: [] };

  // Create a key.
  const field = (id, label, attrs = {}) => h('div', { class: 'field' }, h('label', { for: id }, label), h('input', { id, name: id, type: 'text', autocomplete: 'off', ...attrs }));
  const createError = h('p', { class: 'form-error', role: 'alert' });
  const createForm = h('form', { id: 'key-create-form', class: 'form-grid', 'aria-label': 'Create a key' },
    field('key-alias', 'Alias', { required: true, placeholder: 'alice-laptop' }),
    field('key-models', 'Models (comma-separated; empty = all)', { placeholder: 'gpt-4o, demo-moa' }),
    field('key-max-budget', 'Max budget (USD)', { type: 'number', min: '0', step: 'any', inputmode: 'decimal' }),
    field('key-budget-duration', 'Budget period', { list: 'duration-options', placeholder: '30d' }),
    field('key-rpm-limit', 'Requests per minute', { type: 'number', min: '0', step: '1' }),
    field('key-tpm-limit', 'Tokens per minute', { type: 'number', min: '0', step: '1' }),
    field('key-team-id', 'Team id', { list: 'team-options' }),
    field('key-user-id', 'User id', { list: 'user-options' }),
    h('div', { class: 'field field-buttons' }, h('button', { type: 'submit', id: 'key-create-submit', class: 'btn btn-primary' }, 'Create key')),
    createError, teamOptions, userOptions, durations);
  createForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const v = (id) => createForm.elements.namedItem(id).value.trim();
    const body = { key_alias: v('key-alias') };
    if (v('key-models')) body.models = listOf(v('key-models'));
    for (const [id, name] of [['key-max-budget', 'max_budget'], ['key-rpm-limit', 'rpm_limit'], ['key-tpm-limit', 'tpm_limit']]) {
      if (v(id) !== '') body[name] = Number(v(id));
    }
    for (const [id, name] of [['key-budget-duration', 'budget_duration'], ['key-team-id', 'team_id'], ['key-user-id', 'user_id']]) {
      if (v(id)) body[name] = v(id);
    }
    createError.textContent = '';
    const submit = createForm.querySelector('#key-create-submit');
    submit.disabled = true;
    try {
      const made = await api('/key/generate', { method: 'POST', body });
      createForm.reset();
      showNewKey(made);
      await load();
    } catch (err) {
      createError.textContent = `Could not create the key: ${err.message}`;
    } finally {
      submit.disabled = false;
    }
  });

  function showNewKey(made) {
    const value = h('code', { id: 'new-key-value', class: 'secret', tabindex: '0' }, made.key);
    const copied = h('span', { class: 'muted', role: 'status' });
    const copy = h('button', { type: 'button', id: 'new-key-copy', class: 'btn' }, 'Copy');
    copy.addEventListener('click', async () => {
      try {
        await navigator.clipboard.writeText(made.key);
        copied.textContent = 'Copied.';
      } catch {
        // No clipboard (plain http, permissions): select the text to copy by hand.
        const range = document.createRange();
        range.selectNodeContents(value);
        const sel = getSelection();
        sel.removeAllRanges();
        sel.addRange(range);
        copied.textContent = 'Selected: press Ctrl+C (⌘C) to copy.';
      }
    });
    show(newKey, h('section', { class: 'card new-key' },
      h('h2', null, `New key${made.key_alias ? ` “${made.key_alias}”` : ''}`),
      h('p', null, 'Copy it now: it is shown this once and cannot be read again.'),
      h('div', { class: 'secret-row' }, value, copy, copied),
      h('button', { type: 'button', class: 'btn btn-quiet', onclick: () => newKey.replaceChildren() }, 'Done')));
    copy.focus();
  }

  // Row actions (event delegation on the keys table).
  keysBody.addEventListener('click', async (e) => {
    const btn = e.target.closest('button[data-action]');
    if (!btn) return;
    const tr = btn.closest('tr');
    const k = state.keys.find((x) => x.token === tr.dataset.token);
    if (!k) return;
    const name = k.key_alias ?? k.key_name;
    switch (btn.dataset.action) {
      case 'block':
      case 'unblock':
        await act(`/key/${btn.dataset.action}`, { key: k.token }, `${btn.dataset.action === 'block' ? 'Blocked' : 'Unblocked'} ${name}.`);
        break;
      case 'delete':
        confirmDelete(tr, k);
        break;
      case 'confirm-delete':
        await act('/key/delete', { keys: [k.token] }, `Deleted ${name}.`);
        break;
      case 'cancel-delete':
        renderKeys();
        keysBody.querySelector(`tr[data-token="${k.token}"] [data-action="delete"]`)?.focus();
        break;
      case 'edit':
        editRow(tr, k);
        break;
    }
  });

  async function act(path, body, done) {
    try {
      await api(path, { method: 'POST', body });
      show(msg, notice(done, 'ok'));
    } catch (err) {
      show(msg, notice(err.message, 'error'));
    }
    await load();
  }

  function confirmDelete(tr, k) {
    const cell = tr.querySelector('td.actions');
    const yes = h('button', { type: 'button', class: 'btn btn-danger', 'data-action': 'confirm-delete' }, 'Delete');
    show(cell, h('span', { class: 'confirm' }, `Delete ${k.key_alias ?? k.key_name}? `, yes,
      h('button', { type: 'button', class: 'btn', 'data-action': 'cancel-delete' }, 'Cancel')));
    yes.focus();
  }

  function editRow(tr, k) {
    keysBody.querySelector('tr.edit-row')?.remove();
    const input = (name, label, value, attrs = {}) => h('div', { class: 'field' },
      h('label', { for: `edit-${name}` }, label),
      h('input', { id: `edit-${name}`, name, type: 'text', value: value ?? '', autocomplete: 'off', ...attrs }));
    const err = h('p', { class: 'form-error', role: 'alert' });
    const form = h('form', { id: 'key-edit-form', class: 'form-grid', 'aria-label': `Edit ${k.key_alias ?? k.key_name}` },
      input('key_alias', 'Alias', k.key_alias),
      input('models', 'Models (comma-separated; empty = all)', (k.models ?? []).join(', ')),
      input('max_budget', 'Max budget (USD)', k.max_budget, { type: 'number', min: '0', step: 'any' }),
      input('budget_duration', 'Budget period', k.budget_duration, { list: 'duration-options' }),
      input('rpm_limit', 'Requests per minute', k.rpm_limit, { type: 'number', min: '0', step: '1' }),
      input('tpm_limit', 'Tokens per minute', k.tpm_limit, { type: 'number', min: '0', step: '1' }),
      h('div', { class: 'field field-buttons' },
        h('button', { type: 'submit', class: 'btn btn-primary', id: 'key-edit-save' }, 'Save'),
        h('button', { type: 'button', class: 'btn', onclick: () => { row.remove(); tr.querySelector('[data-action="edit"]')?.focus(); } }, 'Cancel')),
      err);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const v = (n) => form.elements.namedItem(n).value;
      // An emptied field clears the setting (null), as the update route reads it.
      const body = {
        key: k.token,
        key_alias: v('key_alias').trim() || null,
        models: listOf(v('models')),
        max_budget: numOrNull(v('max_budget')),
        budget_duration: v('budget_duration').trim() || null,
        rpm_limit: numOrNull(v('rpm_limit')),
        tpm_limit: numOrNull(v('tpm_limit')),
      };
      try {
        await api('/key/update', { method: 'POST', body });
        show(msg, notice(`Saved ${body.key_alias ?? k.key_name}.`, 'ok'));
        await load();
      } catch (ex) {
        err.textContent = ex.message;
      }
    });
    const row = h('tr', { class: 'edit-row' }, h('td', { colspan: '9' }, form));
    tr.after(row);
    form.querySelector('input').focus();
  }

  // Create a team.
  const teamError = h('p', { class: 'form-error', role: 'alert' });
  const teamForm = h('form', { id: 'team-create-form', class: 'form-grid', 'aria-label': 'Create a team' },
    field('team-alias', 'Team name', { required: true }),
    field('team-id', 'Team id (optional)'),
    field('team-max-budget', 'Max budget (USD)', { type: 'number', min: '0', step: 'any' }),
    field('team-models', 'Models (comma-separated)'),
    h('div', { class: 'field field-buttons' }, h('button', { type: 'submit', id: 'team-create-submit', class: 'btn btn-primary' }, 'Create team')),
    teamError);
  teamForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const v = (id) => teamForm.elements.namedItem(id).value.trim();
    const body = { team_alias: v('team-alias') };
    if (v('team-id')) body.team_id = v('team-id');
    if (v('team-max-budget')) body.max_budget = Number(v('team-max-budget'));
    if (v('team-models')) body.models = listOf(v('team-models'));
    teamError.textContent = '';
    try {
      await api('/team/new', { method: 'POST', body });
      teamForm.reset();
      show(msg, notice(`Created team ${body.team_alias}.`, 'ok'));
      await load();
    } catch (err) {
      teamError.textContent = `Could not create the team: ${err.message}`;
    }
  });

  root.append(
    h('div', { class: 'page-head' }, h('h1', null, 'Keys'),
      h('div', { class: 'head-end' }, h('button', { type: 'button', class: 'btn', onclick: () => load() }, '↻ Refresh'))),
    msg, newKey,
    h('section', { class: 'card' }, h('h2', null, 'Create a key'), createForm),
    h('section', { class: 'card' }, h('h2', null, 'Keys'),
      scrollTable(h('table', { id: 'keys-table', class: 'data-table' },
        h('thead', null, h('tr', null, ['Alias', 'Key', 'Team / user', 'Models', 'Spend', 'Budget', 'Limits', 'State', 'Actions'].map((c) => h('th', { scope: 'col' }, c)))),
        keysBody), 'Keys')),
    h('section', { class: 'card' }, h('h2', null, 'Spend'),
      h('div', { class: 'chart-grid' },
        h('div', null, h('h3', null, 'Per key'), h('div', { class: 'chart-box' }, charts.keys)),
        h('div', null, h('h3', null, 'Per team'), h('div', { class: 'chart-box' }, charts.teams)),
        h('div', null, h('h3', null, 'Per model (last 30 days)'), h('div', { class: 'chart-box' }, charts.models)))),
    h('section', { class: 'card' }, h('h2', null, 'Teams'),
      scrollTable(h('table', { id: 'teams-table', class: 'data-table' },
        h('thead', null, h('tr', null, ['Team', 'Id', 'Members', 'Models', 'Spend', 'Budget', 'State'].map((c) => h('th', { scope: 'col' }, c)))),
        teamsBody), 'Teams'),
      h('h3', null, 'Create a team'), teamForm),
    h('section', { class: 'card' }, h('h2', null, 'Users'),
      scrollTable(h('table', { id: 'users-table', class: 'data-table' },
        h('thead', null, h('tr', null, ['User', 'Role', 'Email', 'Teams', 'Spend', 'Budget'].map((c) => h('th', { scope: 'col' }, c)))),
        usersBody), 'Users')),
    h('section', { class: 'card' }, h('h2', null, 'Audit log'),
      h('p', { class: 'muted' }, 'The latest changes through the management and admin APIs, newest first (GET /audit).'),
      scrollTable(h('table', { id: 'audit-table', class: 'data-table' },
        h('thead', null, h('tr', null, ['When', 'Who', 'Action', 'What', 'Object'].map((c) => h('th', { scope: 'col' }, c)))),
        auditBody), 'Audit log')));

  function renderKeys() {
    const rows = state.keys.map((k) => h('tr', { 'data-key-alias': k.key_alias ?? '', 'data-token': k.token, class: k.blocked ? 'blocked' : null },
      h('td', null, k.key_alias ? h('strong', null, k.key_alias) : h('span', { class: 'muted' }, '—')),
      h('td', { class: 'mono nowrap' }, k.key_name),
      h('td', null, [k.team_id, k.user_id].filter(Boolean).join(' / ') || '—'),
      h('td', null, k.models?.length ? k.models.join(', ') : h('span', { class: 'muted' }, 'all')),
      h('td', { class: 'num' }, f.usd(k.spend)),
      h('td', null, budget(k)),
      h('td', null, limits(k)),
      h('td', null, k.blocked ? badge('blocked', 'err') : badge('active', 'ok')),
      h('td', { class: 'actions nowrap' },
        h('button', { type: 'button', class: 'btn btn-small', 'data-action': 'edit', 'aria-label': `Edit ${k.key_alias ?? k.key_name}` }, 'Edit'),
        k.blocked
          ? h('button', { type: 'button', class: 'btn btn-small', 'data-action': 'unblock', 'aria-label': `Unblock ${k.key_alias ?? k.key_name}` }, 'Unblock')
          : h('button', { type: 'button', class: 'btn btn-small', 'data-action': 'block', 'aria-label': `Block ${k.key_alias ?? k.key_name}` }, 'Block'),
        h('button', { type: 'button', class: 'btn btn-small btn-danger', 'data-action': 'delete', 'aria-label': `Delete ${k.key_alias ?? k.key_name}` }, 'Delete'))));
    keysBody.replaceChildren(...(rows.length ? rows : [h('tr', null, h('td', { colspan: '9', class: 'muted' }, 'No keys yet.'))]));
  }

  function renderRest(report) {
    teamsBody.replaceChildren(...(state.teams.length ? state.teams.map((t) => h('tr', { 'data-team-id': t.team_id },
      h('td', null, h('strong', null, t.team_alias ?? '—')), h('td', { class: 'mono' }, t.team_id),
      h('td', null, (t.members ?? []).join(', ') || '—'), h('td', null, t.models?.length ? t.models.join(', ') : 'all'),
      h('td', { class: 'num' }, f.usd(t.spend)), h('td', null, budget(t)),
      h('td', null, t.blocked ? badge('blocked', 'err') : badge('active', 'ok')))) : [h('tr', null, h('td', { colspan: '7', class: 'muted' }, 'No teams yet.'))]));
    usersBody.replaceChildren(...(state.users.length ? state.users.map((u) => h('tr', { 'data-user-id': u.user_id },
      h('td', { class: 'mono' }, u.user_id), h('td', null, u.user_role ?? '—'), h('td', null, u.user_email ?? '—'),
      h('td', null, (u.teams ?? []).join(', ') || '—'), h('td', { class: 'num' }, f.usd(u.spend)), h('td', null, budget(u)))) : [h('tr', null, h('td', { colspan: '6', class: 'muted' }, 'No users yet.'))]));
    teamOptions.replaceChildren(...state.teams.map((t) => h('option', { value: t.team_id }, t.team_alias ?? t.team_id)));
    userOptions.replaceChildren(...state.users.map((u) => h('option', { value: u.user_id })));
    barChart(charts.keys, state.keys.map((k) => ({ label: k.key_alias ?? k.key_name, value: k.spend ?? 0 })), { fmt: f.usd, label: 'Spend per key' });
    barChart(charts.teams, state.teams.map((t) => ({ label: t.team_alias ?? t.team_id, value: t.spend ?? 0 })), { fmt: f.usd, label: 'Spend per team', cls: 'bar-b' });
    const perModel = new Map();
    for (const day of report ?? []) for (const m of day.models ?? []) perModel.set(m.model_group, (perModel.get(m.model_group) ?? 0) + (m.spend ?? 0));
    barChart(charts.models, [...perModel].map(([label, value]) => ({ label, value })), { fmt: f.usd, label: 'Spend per model group', cls: 'bar-c' });
  }

  function renderAudit(rows) {
    auditBody.replaceChildren(...(rows.length ? rows.map((r) => h('tr', { 'data-audit-action': r.action, 'data-object-id': r.object_id },
      h('td', null, f.when(r.updated_at)), h('td', null, r.changed_by), h('td', null, r.action),
      h('td', null, AUDITED[r.table_name] ?? r.table_name), h('td', { class: 'mono' }, shortId(r.object_id)))) : [h('tr', null, h('td', { colspan: '5', class: 'muted' }, 'No changes recorded.'))]));
  }

  async function load() {
    const [keys, teams, users, report, audit] = await Promise.allSettled([
      allPages('/key/list?return_full_object=true', (d) => d.keys ?? []),
      api('/team/list'),
      allPages('/user/list', (d) => d.users ?? []),
      api('/global/spend/report'),
      api('/audit?page_size=50'),
    ]);
    renderAudit(audit.status === 'fulfilled' ? audit.value.audit_logs ?? [] : []);
    const failed = [keys, teams, users, report, audit].filter((r) => r.status === 'rejected').map((r) => r.reason?.message);
    if (failed.length) show(msg, notice(`Some of the key store could not be read: ${[...new Set(failed)].join('; ')}`, 'error'));
    state = {
      keys: keys.status === 'fulfilled' ? keys.value.filter((k) => k && typeof k === 'object') : state.keys,
      teams: teams.status === 'fulfilled' && Array.isArray(teams.value) ? teams.value : state.teams,
      users: users.status === 'fulfilled' ? users.value : state.users,
    };
    renderKeys();
    renderRest(report.status === 'fulfilled' ? report.value : []);
  }

  load().finally(ready);
  return null;
}

/** What each audit log table holds, in the page's words. */
const AUDITED = {
  LiteLLM_VerificationToken: 'key',
  LiteLLM_UserTable: 'user',
  LiteLLM_TeamTable: 'team',
  LiteLLM_ProxyModelTable: 'model',
};

/** A key's 64-digit hash shortened; other ids as they are. */
function shortId(id) {
  return /^[0-9a-f]{64}$/.test(id ?? '') ? `${id.slice(0, 10)}…` : id;
}

function chartSvg(name) {
  return s('svg', { 'data-chart': name, class: 'chart' });
}

/** "$1.20 of $20 per 30d", with a meter. */
function budget(x) {
  if (x.max_budget == null) return h('span', { class: 'muted' }, 'no budget');
  return h('span', { class: 'budget' },
    h('meter', { min: '0', max: String(x.max_budget), value: String(Math.min(x.spend ?? 0, x.max_budget)), high: String(x.max_budget * 0.8), optimum: '0', 'aria-label': 'budget used' }),
    ` ${f.usd(x.spend ?? 0)} of ${f.usd(x.max_budget)}${x.budget_duration ? ` per ${x.budget_duration}` : ''}`);
}

function limits(x) {
  const parts = [];
  if (x.rpm_limit != null) parts.push(`${f.int(x.rpm_limit)} rpm`);
  if (x.tpm_limit != null) parts.push(`${f.int(x.tpm_limit)} tpm`);
  if (x.max_parallel_requests != null) parts.push(`${x.max_parallel_requests} parallel`);
  return parts.length ? parts.join(' · ') : h('span', { class: 'muted' }, 'none');
}

