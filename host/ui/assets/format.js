// How numbers, times and money are written on every page.

const nf = new Intl.NumberFormat(undefined);

export const isNum = (v) => typeof v === 'number' && Number.isFinite(v);

/** 1234 -> "1,234" (locale grouping); "—" when absent. */
export function int(v) {
  return isNum(v) ? nf.format(Math.round(v)) : '—';
}

/** Milliseconds as "850 ms", "1.24 s", "2 min 5 s". */
export function ms(v) {
  if (!isNum(v)) return '—';
  if (v === 0) return '0 ms';
  if (v < 1) return `${v.toFixed(2)} ms`;
  if (v < 1000) return `${Math.round(v)} ms`;
  if (v < 60_000) return `${(v / 1000).toFixed(v < 10_000 ? 2 : 1)} s`;
  const m = Math.floor(v / 60_000);
  return `${m} min ${Math.round((v % 60_000) / 1000)} s`;
}

/** Dollars with enough digits to tell small costs apart: "$0.00042", "$1.25". */
export function usd(v) {
  if (!isNum(v)) return '—';
  if (v === 0) return '$0';
  const a = Math.abs(v);
  if (a >= 0.01) return `$${v.toFixed(2)}`;
  // Two significant digits, trailing zeros dropped: $0.0012, $0.00015.
  const digits = Math.min(10, 1 - Math.floor(Math.log10(a)));
  return `$${v.toFixed(digits).replace(/(\.\d*?[1-9])0+$/, '$1')}`;
}

/** A 0..1 ratio as a percentage. */
export function pct(v) {
  if (!isNum(v)) return '—';
  const p = v * 100;
  return `${p === 0 || p >= 10 ? p.toFixed(0) : p.toFixed(1)}%`;
}

/** A rate per second. */
export function rate(v) {
  if (!isNum(v)) return '—';
  return v >= 10 ? v.toFixed(0) : v >= 1 ? v.toFixed(1) : v.toFixed(2);
}

/** Compact counts for chart axes: 1.2k, 3.4M. */
export function compact(v) {
  if (!isNum(v)) return '';
  const a = Math.abs(v);
  if (a >= 1e6) return `${+(v / 1e6).toFixed(1)}M`;
  if (a >= 1e3) return `${+(v / 1e3).toFixed(1)}k`;
  return `${+v.toFixed(a < 1 && a > 0 ? 2 : 0)}`;
}

const pad = (n, w = 2) => String(n).padStart(w, '0');

/** Unix seconds as local "HH:MM:SS", with the date when not today. */
export function time(unix) {
  if (!isNum(unix)) return '—';
  const d = new Date(unix * 1000);
  const hms = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  return d.toDateString() === new Date().toDateString() ? hms : `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${hms}`;
}

/** Unix seconds as local "HH:MM". */
export function hhmm(unix) {
  const d = new Date(unix * 1000);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** An RFC 3339 string or unix seconds as a local date and time. */
export function when(v) {
  if (v == null || v === '') return '—';
  const t = typeof v === 'number' ? v : Date.parse(v) / 1000;
  return Number.isNaN(t) ? String(v) : time(t);
}

/** "in 4 s" / "12 s ago" relative to now. */
export function relative(unix) {
  if (!isNum(unix)) return '';
  const d = unix - Date.now() / 1000;
  const a = Math.abs(d);
  const text = a < 60 ? `${Math.round(a)} s` : a < 3600 ? `${Math.round(a / 60)} min` : a < 86400 ? `${(a / 3600).toFixed(1)} h` : `${Math.round(a / 86400)} d`;
  return d >= 0 ? `in ${text}` : `${text} ago`;
}

/** Prompt and completion tokens as "12 → 34". */
export function tokens(p, c) {
  if (!isNum(p) && !isNum(c)) return '—';
  return `${int(p ?? 0)} → ${int(c ?? 0)}`;
}
