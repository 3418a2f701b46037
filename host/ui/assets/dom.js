// Building DOM without innerHTML: every text lands in a text node, so data
// from the API can never become markup (and the strict CSP stays happy).

const SVG_NS = 'http://www.w3.org/2000/svg';

function build(el, attrs, children) {
  append(el, children); // first, so a <select>'s value can pick one of its options
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v == null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.setAttribute('class', Array.isArray(v) ? v.filter(Boolean).join(' ') : v);
    else if (k in PROPS && !(el instanceof SVGElement)) el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  return el;
}

// Set as properties, not attributes (a form's live state).
const PROPS = { value: 1, checked: 1, selected: 1, disabled: 1, hidden: 1 };

/** Appends children: nodes, strings and numbers (as text), arrays; skips null/false. */
export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** An HTML element: h('a', {href: '#/x', class: 'btn'}, 'text', child, ...). */
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** An SVG element, same call shape as h(). */
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

/** A <table> with a header row; `rows` are arrays of cells (nodes or text) or ready <tr>s. */
export function table(headers, rows, attrs = {}) {
  return h('table', attrs,
    h('thead', null, h('tr', null, headers.map((x) => h('th', { scope: 'col' }, x)))),
    h('tbody', null, rows.map((r) => (r instanceof Node ? r : h('tr', null, r.map((c) => h('td', null, c)))))));
}

/** A table inside a wrapper that scrolls sideways on narrow screens. */
export function scrollTable(t, label) {
  return h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': label }, t);
}

/** A message box; kind: 'error' | 'info' | 'ok'. */
export function notice(text, kind = 'info') {
  return h('p', { class: `notice notice-${kind}`, role: kind === 'error' ? 'alert' : 'status' }, text);
}

/** A status badge. */
export function badge(text, kind = 'muted', title = null) {
  return h('span', { class: `badge badge-${kind}`, title }, text);
}

/** A definition list from [term, value] pairs (null values skipped). */
export function dl(pairs, attrs = {}) {
  return h('dl', { class: 'facts', ...attrs },
    pairs.filter(([, v]) => v != null && v !== '').map(([k, v]) => h('div', null, h('dt', null, k), h('dd', null, v))));
}

/** Replaces what a container shows. */
export function show(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** fn, called once `ms` after the last of a burst of calls. */
export function debounce(fn, ms) {
  let t = null;
  return (...args) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...args), ms);
  };
}
