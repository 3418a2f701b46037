// How one request summary's fields are shown, in the live table and on the
// request's own page.

import { h, badge } from './dom.js';

/** The status as a coloured badge (the error code as its hover text). */
export function statusBadge(status, error = null) {
  const kind = status == null ? 'muted' : status === 499 ? 'muted' : status >= 500 ? 'err' : status >= 400 ? 'warn' : 'ok';
  const title = status === 499 ? 'the client went away' : error;
  return badge(status == null ? '—' : String(status), kind, title);
}

export function cacheBadge(cache) {
  if (!cache || cache === 'none') return h('span', { class: 'muted' }, '—');
  return badge(cache, cache === 'hit' ? 'ok' : 'muted');
}

/** Who asked: the key's alias when it has one, else its label. */
export function caller(r) {
  return r.key_alias ? h('span', { title: r.caller }, r.key_alias) : r.caller ?? '—';
}

/** The model asked, with the composite profile or the fallback group that answered. */
export function model(r) {
  return h('span', { class: 'model-cell' },
    r.composite ? h('span', { class: 'composite-mark', title: `composite profile ${r.profile ?? ''}`.trim() }, '◆ ') : null,
    r.model ?? '—',
    r.fallback ? h('span', { class: 'muted', title: 'answered by a fallback group' }, ` → ${r.fallback}`) : null);
}
