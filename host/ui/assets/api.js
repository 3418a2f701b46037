// Talking to the gateway: the key (sessionStorage only, sent as a bearer
// header, never in a URL), JSON calls whose failures become ApiError with
// the server's own message, and polling that pauses in a hidden tab.

const STORE = 'conclave.key';

export const key = {
  get: () => sessionStorage.getItem(STORE) || '',
  set: (k) => sessionStorage.setItem(STORE, k),
  clear: () => sessionStorage.removeItem(STORE),
};

/** A failed call: `status` 0 for a network failure; `message` is the server's error.message. */
export class ApiError extends Error {
  constructor(status, message, code = null) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let onUnauthorized = () => {};
/** Called when a call is refused with 401 (the key was deleted, blocked, expired). */
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

export function authHeaders(extra = {}) {
  const k = key.get();
  return k ? { ...extra, authorization: `Bearer ${k}` } : extra;
}

/** The error an answer carries, as an ApiError. */
export async function errorOf(res) {
  let message = `${res.status} ${res.statusText}`.trim();
  let code = null;
  try {
    const body = await res.json();
    if (body?.error?.message) message = body.error.message;
    code = body?.error?.code ?? body?.error?.type ?? null;
  } catch {
    /* not JSON: keep the status line */
  }
  return new ApiError(res.status, message, code);
}

/**
 * A JSON call. `body` is sent as JSON; a 401 also tells the app (back to the
 * login form) unless `quiet401`. Throws ApiError.
 */
export async function api(path, { method = 'GET', body, signal, quiet401 = false } = {}) {
  const headers = authHeaders(body === undefined ? {} : { 'content-type': 'application/json' });
  let res;
  try {
    res = await fetch(path, { method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    if (e?.name === 'AbortError') throw e;
    throw new ApiError(0, 'The gateway cannot be reached (network error).');
  }
  if (!res.ok) {
    const err = await errorOf(res);
    if (res.status === 401 && !quiet401) onUnauthorized(err);
    throw err;
  }
  if (res.status === 204) return null;
  try {
    return await res.json();
  } catch {
    throw new ApiError(res.status, 'The gateway sent an answer that is not JSON.');
  }
}

/** A query string from an object, leaving out empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v != null && v !== '') q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : '';
}

/**
 * Runs `fn` now and then every `ms` after the previous run finished; skips
 * runs while the tab is hidden. Returns stop().
 */
export function poll(fn, ms) {
  let timer = null;
  let stopped = false;
  const run = async () => {
    if (stopped) return;
    if (!document.hidden) {
      try {
        await fn();
      } catch {
        /* fn shows its own errors */
      }
    }
    if (!stopped) timer = setTimeout(run, ms);
  };
  run();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
