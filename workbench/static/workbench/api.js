// @ts-check
// The public REST API, with the session cookie and Django's CSRF token.

export class ApiError extends Error {
  /**
   * @param {number} status the HTTP status, 0 when the server was not reached
   * @param {string} code the API's error code (docs/api.md)
   * @param {string} message
   * @param {Record<string, string[]>} [fields] what was wrong with each field
   * @param {number | null} [retryAfter]
   */
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
/** @param {unknown} error */
export function retriable(error) {
  return error instanceof ApiError && (error.status === 0 || error.status === 429 || error.status >= 500);
}

/** @param {number} ms */
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * What went wrong, as an ApiError: the API's own, or anything else thrown (a bug, a
 * refused fetch) with its message, so a `catch` can always say why.
 * @param {unknown} error
 * @returns {ApiError}
 */
export function asApiError(error) {
  if (error instanceof ApiError) return error;
  return new ApiError(0, "client", error instanceof Error ? error.message : String(error));
}

/**
 * Run `request` (a function returning a promise) until it succeeds, at most `attempts`
 * times, while it fails in a retriable way: after Retry-After if the server gave one, else
 * after an exponential, jittered backoff. The caller keeps whatever makes the retries the
 * same request (an Idempotency-Key made once, outside `request`).
 * @template T
 * @param {() => Promise<T>} request
 * @param {{attempts?: number, baseMs?: number, maxMs?: number}} [options]
 * @returns {Promise<T>}
 */
export async function withRetries(request, { attempts = 4, baseMs = 400, maxMs = 8000 } = {}) {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await request();
    } catch (error) {
      if (attempt >= attempts || !(error instanceof ApiError) || !retriable(error)) throw error;
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
 * `keepalive` lets a request outlive the page (a draft saved while it unloads). The body is
 * JSON as the server sent it: its shape is the operation's (types/workbench.d.ts).
 * @param {string} method
 * @param {string} path
 * @param {unknown} [body]
 * @param {CallOptions} [options]
 * @returns {Promise<any>}
 */
export async function api(method, path, body, options = {}) {
  return (await call(method, path, body, options)).data;
}

/** @typedef {{headers?: Record<string, string>, keepalive?: boolean}} CallOptions */

/**
 * @param {string} method
 * @param {string} path
 * @param {unknown} [body]
 * @param {CallOptions} [options]
 * @returns {Promise<{data: any, response: Response}>}
 */
async function call(method, path, body, { headers = {}, keepalive = false } = {}) {
  /** @type {Record<string, string>} */
  const sent = { Accept: "application/json", ...headers };
  /** @type {RequestInit} */
  const init = { method, credentials: "same-origin", keepalive, headers: sent };
  if (method !== "GET") sent["X-CSRFToken"] = csrfToken();
  if (body !== undefined) {
    sent["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    throw new ApiError(0, "network", "The server cannot be reached; try again in a moment.");
  }
  if (response.status === 204) return { data: null, response };
  /** @type {any} */
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

/**
 * The path and query of a `Link` header's rel="next" (it is absolute, from the Host).
 * @param {string | null} header
 */
function nextLink(header) {
  const found = /<([^>]+)>;\s*rel="next"/.exec(header || "");
  if (!found) return null;
  const url = new URL(found[1], location.href);
  return url.pathname + url.search;
}

/**
 * Every item of a list whose pages are JSON arrays chained by `Link: <…>; rel="next"`.
 * @param {string} path
 * @returns {Promise<any[]>}
 */
export async function apiList(path, { maxPages = 50 } = {}) {
  /** @type {any[]} */
  const items = [];
  /** @type {string | null} */
  let next = path;
  for (let page = 0; next && page < maxPages; page += 1) {
    const { data, response } = await call("GET", next);
    items.push(...data);
    next = nextLink(response.headers.get("Link"));
  }
  return items;
}

/**
 * Every page of a cursor-paginated list, oldest first.
 * @param {string} path
 * @returns {Promise<any[]>}
 */
export async function apiAll(path, { maxPages = 40 } = {}) {
  /** @type {any[]} */
  const items = [];
  /** @type {string | null} */
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
