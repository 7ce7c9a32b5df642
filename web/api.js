// Talking to loomd: JSON in and out, the session cookie sent by the browser,
// and on every request that changes state the session's CSRF token in
// X-Loom-CSRF (loomd refuses such a cookie request without it).
let session = null;

export class ApiError extends Error {
  constructor(status, message, field, body) {
    super(message);
    this.status = status;
    this.field = field;
    this.body = body;
  }
}

export function currentSession() {
  return session;
}

export async function api(method, path, body) {
  const headers = {};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && session) headers['X-Loom-CSRF'] = session.csrf;
  const r = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
    cache: 'no-store',
  });
  const text = await r.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch (e) {
    json = null;
  }
  if (!r.ok) {
    const err = (json && json.error) || {};
    if (r.status === 401 && path !== '/v1/session') {
      session = null;
      window.dispatchEvent(new CustomEvent('loom-signed-out'));
    }
    throw new ApiError(r.status, err.message || `loomd answered ${r.status}`, err.field, json);
  }
  return json;
}

// Every item of a paged list (docs/api.md "Lists").
export async function all(path, limit = 500) {
  const items = [];
  let after = 0;
  const sep = path.includes('?') ? '&' : '?';
  for (;;) {
    const page = await api('GET', `${path}${sep}after=${after}&limit=${limit}`);
    items.push(...page.items);
    if (page.next_after === null || page.next_after === undefined) return items;
    after = page.next_after;
  }
}

export async function loadSession() {
  try {
    session = await api('GET', '/v1/session');
  } catch (e) {
    session = null;
  }
  return session;
}

export async function signIn(token) {
  session = await api('POST', '/v1/session', { token });
  return session;
}

export async function signOut() {
  try {
    await api('DELETE', '/v1/session');
  } finally {
    session = null;
  }
}
