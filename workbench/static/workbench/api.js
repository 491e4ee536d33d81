// The public REST API, with the session cookie and Django's CSRF token.

export class ApiError extends Error {
  constructor(status, code, message, fields = {}, retryAfter = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.fields = fields;
    this.retryAfter = retryAfter; // seconds, from a 429's or 503's Retry-After header
  }
}

/** Whether sending the same request again may succeed: the server was not reached, was
 * busy (429) or failed (5xx). Safe only for reads and for requests with an Idempotency-Key. */
export function retriable(error) {
  return error instanceof ApiError && (error.status === 0 || error.status === 429 || error.status >= 500);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Run `request` (a function returning a promise) until it succeeds, at most `attempts`
 * times, while it fails in a retriable way: after Retry-After if the server gave one, else
 * after an exponential, jittered backoff. The caller keeps whatever makes the retries the
 * same request (an Idempotency-Key made once, outside `request`).
 */
export async function withRetries(request, { attempts = 4, baseMs = 400, maxMs = 8000 } = {}) {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await request();
    } catch (error) {
      if (attempt >= attempts || !retriable(error)) throw error;
      const backoff = error.retryAfter ? error.retryAfter * 1000 : baseMs * 2 ** (attempt - 1);
      await sleep(Math.min(backoff, maxMs) * (0.75 + Math.random() / 2));
    }
  }
}

function csrfToken() {
  const cookie = document.cookie.split("; ").find((part) => part.startsWith("csrftoken="));
  return cookie ? decodeURIComponent(cookie.slice("csrftoken=".length)) : "";
}

/** The session ended (logged out elsewhere, or expired): log in, then come back here. */
export function loginAgain() {
  const next = location.pathname + location.hash;
  location.assign(`/accounts/login/?next=${encodeURIComponent(next)}`);
}

/**
 * Call the API; resolves with the JSON body (null for 204), rejects with an ApiError.
 * `keepalive` lets a request outlive the page (a draft saved while it unloads).
 */
export async function api(method, path, body, options = {}) {
  return (await call(method, path, body, options)).data;
}

async function call(method, path, body, { headers = {}, keepalive = false } = {}) {
  const init = {
    method,
    credentials: "same-origin",
    keepalive,
    headers: { Accept: "application/json", ...headers },
  };
  if (method !== "GET") init.headers["X-CSRFToken"] = csrfToken();
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    throw new ApiError(0, "network", "The server cannot be reached; try again in a moment.");
  }
  if (response.status === 204) return { data: null, response };
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = (data && data.error) || {};
    if (response.status === 401 || error.code === "not_authenticated") loginAgain();
    const retryAfter = Number(response.headers.get("Retry-After")) || null;
    throw new ApiError(
      response.status,
      error.code || `http_${response.status}`,
      error.message || `${response.status} ${response.statusText}`,
      error.fields || {},
      retryAfter,
    );
  }
  return { data, response };
}

/** The path and query of a `Link` header's rel="next" (it is absolute, from the Host). */
function nextLink(header) {
  const found = /<([^>]+)>;\s*rel="next"/.exec(header || "");
  if (!found) return null;
  const url = new URL(found[1], location.href);
  return url.pathname + url.search;
}

/** Every item of a list whose pages are JSON arrays chained by `Link: <…>; rel="next"`. */
export async function apiList(path, { maxPages = 50 } = {}) {
  const items = [];
  let next = path;
  for (let page = 0; next && page < maxPages; page += 1) {
    const { data, response } = await call("GET", next);
    items.push(...data);
    next = nextLink(response.headers.get("Link"));
  }
  return items;
}

/** Every page of a cursor-paginated list, oldest first. */
export async function apiAll(path, { maxPages = 40 } = {}) {
  const items = [];
  let next = path;
  for (let page = 0; next && page < maxPages; page += 1) {
    const data = await api("GET", next);
    items.push(...data.results);
    // `next` is an absolute URL built from the Host header: keep only its path and query.
    const url = data.next ? new URL(data.next, location.href) : null;
    next = url ? url.pathname + url.search : null;
  }
  return items;
}
