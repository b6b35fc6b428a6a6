// The JSON API with the session cookie. Writes carry the CSRF token the session hands out; a 401 means the
// session ended, so the page goes back to the login (and returns here afterwards).

let csrf = null;

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function setCsrf(token) {
  csrf = token;
}

export function qs(params = {}) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== null && v !== undefined && v !== "") p.set(k, String(v));
  }
  const s = p.toString();
  return s ? `?${s}` : "";
}

export function toLogin() {
  const next = location.pathname + location.search;
  location.assign(`/ui/login?next=${encodeURIComponent(next)}`);
}

async function request(method, path, body, { redirectOn401 = true } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && csrf) headers["X-CSRF-Token"] = csrf;
  let resp;
  try {
    resp = await fetch(path, {
      method, headers, credentials: "same-origin", body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(0, "network", "ColdTrace cannot be reached (network or server down)");
  }
  if (resp.status === 401 && redirectOn401) {
    toLogin();
    throw new ApiError(401, "session_expired", "the session has ended; log in again");
  }
  if (resp.status === 204) return null;
  const type = resp.headers.get("content-type") || "";
  const data = type.includes("json") ? await resp.json() : await resp.text();
  if (!resp.ok) {
    const err = data && data.error ? data.error : null;
    let msg = err ? err.message : `HTTP ${resp.status}`;
    if (!err && data && Array.isArray(data.detail)) msg = data.detail.map((d) => d.msg).join("; ");
    throw new ApiError(resp.status, err ? err.code : `http_${resp.status}`, msg);
  }
  return data;
}

export const api = {
  get: (path, params) => request("GET", path + qs(params)),
  post: (path, body = {}, opts) => request("POST", path, body, opts),
  put: (path, body = {}) => request("PUT", path, body),
  patch: (path, body = {}) => request("PATCH", path, body),
  del: (path) => request("DELETE", path),
  probe: (path) => request("GET", path, undefined, { redirectOn401: false }),
};

/** GET that resolves to null on 404 (an optional part of the API that may not exist). */
export async function getOptional(path, params) {
  try {
    return await api.get(path, params);
  } catch (e) {
    if (e.status === 404 || e.status === 405) return null;
    throw e;
  }
}
