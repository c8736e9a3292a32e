// The routing table (KV key `routes`): matching a request path to a route,
// the scope check, building the upstream URL, and rewriting redirects that
// point back at the upstream.

/**
 * @typedef {{type?: unknown, config?: unknown}} RouteAuth
 * @typedef {object} Route
 * @property {string} key      the routing table key, e.g. "/api/openai"
 * @property {string} prefix   the key without trailing slashes ("" for "/"): what matching compares
 * @property {unknown} url     the backend base URL as stored (validated when used)
 * @property {string[]} tags
 * @property {RouteAuth | null} auth
 */

/**
 * Turns the stored `routes` map into Route records, longest key first.
 * Values are either v2.7's legacy string (the URL) or an object
 * {url, tags, auth?}; other fields are ignored. A value of any other type
 * still takes part in matching (so it cannot let a shorter key capture its
 * paths) and fails as misconfigured when used.
 * @param {unknown} raw the parsed JSON value of `routes`
 * @returns {Route[]}
 */
export function parseRoutes(raw) {
  if (!raw || typeof raw !== "object" || Array.isArray(raw)) return [];
  /** @type {Route[]} */
  const routes = [];
  for (const [key, value] of Object.entries(raw)) {
    const prefix = key.replace(/\/+$/, "");
    if (typeof value === "string") {
      routes.push({ key, prefix, url: value, tags: [], auth: null });
    } else if (value && typeof value === "object") {
      const tags = Array.isArray(value.tags) ? value.tags.filter((t) => typeof t === "string") : [];
      const auth = value.auth && typeof value.auth === "object" ? value.auth : null;
      routes.push({ key, prefix, url: value.url, tags, auth });
    } else {
      routes.push({ key, prefix, url: null, tags: [], auth: null });
    }
  }
  // Longest prefix wins; of "/a" and "/a/" (same prefix) the exact key is tried first.
  routes.sort((a, b) => b.prefix.length - a.prefix.length || a.key.length - b.key.length);
  return routes;
}

/**
 * The route for a request path, matched on path-segment boundaries: key
 * "/api/image" matches "/api/image" and "/api/image/…" but not "/api/images".
 * The path is compared as the client sent it (percent-encoded), like v2.7.
 * @param {Route[]} routes sorted as parseRoutes returns them
 * @param {string} pathname
 */
export function matchRoute(routes, pathname) {
  for (const route of routes) {
    if (pathname === route.prefix || pathname.startsWith(route.prefix + "/")) return route;
  }
  return null;
}

/**
 * The service a route belongs to for scope checks: the second non-empty
 * segment of its key ("/api/openai" → "openai"), null for one-segment keys.
 * @param {string} key
 */
export function serviceName(key) {
  return key.split("/").filter(Boolean)[1] ?? null;
}

/**
 * Contract §4.1 step 7: "*", the route's service name, or "tag:<t>" for one of its tags.
 * @param {unknown} scopes the token's `scopes`
 * @param {Route} route
 */
export function isAllowed(scopes, route) {
  const list = Array.isArray(scopes) ? scopes : [];
  if (list.includes("*")) return true;
  const service = serviceName(route.key);
  if (service !== null && list.includes(service)) return true;
  return list.some((s) => typeof s === "string" && s.startsWith("tag:") && route.tags.includes(s.slice(4)));
}

/**
 * The route's backend URL, parsed; null when it is not an http(s) URL.
 * @param {Route} route
 */
export function backendBase(route) {
  if (typeof route.url !== "string") return null;
  try {
    const u = new URL(route.url);
    return u.protocol === "http:" || u.protocol === "https:" ? u : null;
  } catch {
    return null;
  }
}

/** @param {string} pathname */
const trimSlashes = (pathname) => pathname.replace(/\/+$/, "");

/**
 * The upstream URL: the backend base URL with the part of the request path
 * after the route key appended on a segment boundary (one slash, never two
 * or none), and the request's query string appended to any the base has.
 * Request "/api/openai/chat/completions?x=1" on key "/api/openai" with base
 * "https://api.openai.com/v1" → "https://api.openai.com/v1/chat/completions?x=1".
 * @param {URL} base    from backendBase
 * @param {Route} route the matched route
 * @param {URL} requestUrl
 */
export function upstreamUrl(base, route, requestUrl) {
  const target = new URL(base.href);
  const rest = requestUrl.pathname.slice(route.prefix.length); // "" or "/…"
  if (rest) target.pathname = trimSlashes(base.pathname) + rest;
  const query = [base.search.slice(1), requestUrl.search.slice(1)].filter(Boolean).join("&");
  target.search = query ? "?" + query : "";
  target.hash = "";
  return target;
}

/**
 * Maps a 3xx Location back onto the gateway (contract §4.3, fixed):
 * - an absolute URL (or a "/path") on the backend's host whose path lies
 *   under the backend's base path → the same resource through the gateway:
 *   the request's own scheme and host, then the route key, then the path
 *   below the base path, query and fragment;
 * - everything else (another host, a path outside the base path, relative
 *   references, unparsable values) → unchanged.
 * @param {string} location the upstream's Location header
 * @param {URL} base        the route's backend URL
 * @param {Route} route
 * @param {URL} requestUrl  the URL the client asked the gateway for
 * @returns {string}
 */
export function rewriteLocation(location, base, route, requestUrl) {
  const absolute = /^[a-z][a-z0-9+.-]*:/i.test(location);
  const rootRelative = location.startsWith("/") && !location.startsWith("//");
  if (!absolute && !rootRelative) return location; // relative or scheme-relative: leave to the client
  let loc;
  try {
    loc = new URL(location, base);
  } catch {
    return location;
  }
  if (loc.protocol !== "http:" && loc.protocol !== "https:") return location;
  if (loc.hostname !== base.hostname) return location;
  const basePath = trimSlashes(base.pathname);
  let rest;
  if (loc.pathname === basePath) rest = "";
  else if (loc.pathname.startsWith(basePath + "/")) rest = loc.pathname.slice(basePath.length);
  else return location; // outside the backend's base path: no gateway path reaches it
  const path = route.prefix + rest || "/";
  return `${requestUrl.protocol}//${requestUrl.host}${path}${loc.search}${loc.hash}`;
}
