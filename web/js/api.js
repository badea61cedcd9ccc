// The API client of the storefront and the console: JSON over fetch, with the session's
// tokens.
//
// Tokens live in memory and in sessionStorage (one browser tab, gone when it closes; never
// localStorage, never a cookie). An answer 401 to a request made with an access token is
// retried once after POST /api/auth/refresh rotated the pair; two requests failing at once
// share one refresh (the server revokes the whole session when a refresh token is used twice).
// Errors come back as ApiError with the API's stable code (`error.code`), never thrown for
// an answer the caller expects (see `call`'s `ok` list).

const KEY = 'flashsale.session';
let session = load();
let refreshing = null;
const listeners = new Set();

function load() {
  try {
    return JSON.parse(sessionStorage.getItem(KEY)) || null;
  } catch {
    return null;
  }
}

function save(s) {
  session = s;
  if (s) sessionStorage.setItem(KEY, JSON.stringify(s));
  else sessionStorage.removeItem(KEY);
  for (const fn of listeners) fn(session);
}

/** The current session {access_token, refresh_token, member_id, role, email} or null. */
export function currentSession() {
  return session;
}

/** fn(session|null) after every login, refresh and logout. */
export function onSessionChange(fn) {
  listeners.add(fn);
}

export class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `HTTP ${status}`);
    this.status = status;
    this.code = e.code || (status === 0 ? 'NETWORK' : `HTTP_${status}`);
    this.body = body;
  }
}

async function raw(method, path, body, headers, token) {
  const h = { Accept: 'application/json', ...(headers || {}) };
  if (body !== undefined) h['Content-Type'] = 'application/json';
  if (token) h.Authorization = `Bearer ${token}`;
  let r;
  try {
    r = await fetch(path, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    return { status: 0, body: null, headers: new Headers() };
  }
  let parsed = null;
  const text = await r.text();
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  return { status: r.status, body: parsed, headers: r.headers };
}

/** Rotates the token pair once for everyone waiting; false when the session is over. */
export async function refresh() {
  if (!session || !session.refresh_token) return false;
  if (!refreshing) {
    const rt = session.refresh_token;
    refreshing = raw('POST', '/api/auth/refresh', { refresh_token: rt }).then((r) => {
      refreshing = null;
      if (r.status === 200 && r.body) {
        save({ ...session, ...r.body });
        return true;
      }
      if (r.status === 401) save(null); // reused, revoked or expired: log in again
      return false;
    });
  }
  return refreshing;
}

/**
 * One request. Returns {status, body, headers} when the status is 2xx or listed in `ok`,
 * throws ApiError otherwise. auth: send the access token (refreshing once on 401).
 */
export async function call(method, path, { body, headers, auth = true, ok = [] } = {}) {
  const token = auth && session ? session.access_token : null;
  let r = await raw(method, path, body, headers, token);
  if (r.status === 401 && token && (await refresh())) {
    r = await raw(method, path, body, headers, session.access_token);
  }
  if ((r.status >= 200 && r.status < 300) || ok.includes(r.status)) return r;
  throw new ApiError(r.status, r.body);
}

export async function login(email, password, device) {
  const r = await call('POST', '/api/auth/login', { body: { email, password, device }, auth: false });
  save({ ...r.body, email: email.trim().toLowerCase() });
  return r.body;
}

export async function logout() {
  try {
    if (session) await call('POST', '/api/auth/logout', { ok: [401] });
  } finally {
    save(null);
  }
}

/** A fresh idempotency key (the API keeps one answer per key and member for 24 h). */
export function newKey() {
  return crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random().toString(16).slice(2)}`;
}
