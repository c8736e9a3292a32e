// Token Manager's edge gateway: checks the client's X-API-Key against
// Workers KV, forwards the request to the route's backend with that
// backend's own credentials, and reports usage. Behaviour is the v2.7
// Worker's (spec/rest-contract.md §4) with its known weaknesses fixed; the
// README lists every difference.

import { errors, jsonError, isPreflight, preflight } from "./http.js";
import { checkFormat, sha256Hex, NegativeCache, isExpired } from "./token.js";
import { parseRoutes, matchRoute, isAllowed, serviceName, backendBase, upstreamUrl, rewriteLocation } from "./routes.js";
import { applyBackendAuth, CredentialsError } from "./auth.js";
import { recordUsage } from "./usage.js";
import { readJson } from "./kv.js";

/**
 * @typedef {object} Env
 * @property {KVNamespace} TOKENS                 token:<hash>, routes, secret:<route path>#<name>
 * @property {string} [TOKEN_MANAGER_BACKEND]     base URL of the Token Manager API (usage reports)
 * @property {string} [USAGE_INGEST_SECRET]       secret: HMAC key for usage reports
 * @property {string} [UPSTREAM_TIMEOUT_MS]       wait for the backend's response headers (default 30000)
 * @property {string} [NEGATIVE_CACHE_TTL_MS]     remember unknown keys this long per isolate (default 10000, 0 = off)
 */

/** @typedef {{waitUntil(p: Promise<unknown>): void, passThroughOnException?(): void}} Ctx */

/** @param {unknown} value @param {number} fallback */
function intVar(value, fallback) {
  const n = Number.parseInt(String(value ?? ""), 10);
  return Number.isFinite(n) && n >= 0 ? n : fallback;
}

/** Unknown key hashes this isolate has seen lately (at most 10,000, ~1 MB). */
const unknownKeys = new NegativeCache(10_000);

export default {
  /**
   * @param {Request} request @param {Env} env @param {Ctx} ctx
   * @returns {Promise<Response>}
   */
  async fetch(request, env, ctx) {
    try {
      return await handle(request, env, ctx);
    } catch (err) {
      // Never a stack trace in the response: the detail goes to the logs.
      console.error("gateway: unhandled error", err instanceof Error ? err.stack || err.message : String(err));
      return jsonError(errors.internal());
    }
  },
};

/**
 * Request headers forwarded upstream: all of the client's except its
 * gateway key (X-API-Key) and Cloudflare's own cf-* headers.
 * @param {Headers} incoming
 */
function forwardedHeaders(incoming) {
  const headers = new Headers(incoming);
  const drop = [...headers.keys()].filter((k) => k === "x-api-key" || k.startsWith("cf-"));
  for (const k of drop) headers.delete(k);
  return headers;
}

/**
 * @param {Request} request @param {Env} env @param {Ctx} ctx
 * @returns {Promise<Response>}
 */
async function handle(request, env, ctx) {
  // 1. The key. Nothing below reads KV for a missing or malformed one.
  const apiKey = request.headers.get("X-API-Key");
  if (!apiKey) return isPreflight(request) ? preflight(request) : jsonError(errors.missingKey());
  if (checkFormat(apiKey) === "bad-checksum") return jsonError(errors.invalidKey());

  // 2.–3. Lookup by hash, skipping keys this isolate recently found unknown.
  const hash = await sha256Hex(apiKey);
  const now = Date.now();
  if (unknownKeys.has(hash, now)) return jsonError(errors.invalidKey());
  const token = await readJson(env.TOKENS, "token:" + hash);
  if (!token || typeof token !== "object") {
    unknownKeys.add(hash, now, intVar(env.NEGATIVE_CACHE_TTL_MS, 10_000));
    return jsonError(errors.invalidKey());
  }

  // From here on the token exists: every outcome is reported as usage.
  const url = new URL(request.url);
  /** @param {number} status @param {string | null} route @param {number} timeMs @param {string | null} error */
  const report = (status, route, timeMs, error) =>
    recordUsage(ctx, env, {
      event_id: crypto.randomUUID(),
      token_hash: hash,
      route,
      timestamp: Date.now(),
      response_status: status,
      response_time_ms: timeMs,
      ip_address: request.headers.get("cf-connecting-ip"),
      user_agent: request.headers.get("user-agent"),
      request_method: request.method,
      error_message: error,
    });
  /**
   * A gateway rejection of a known token: reported, marked by its error_message.
   * @param {import("./http.js").GatewayError} e @param {string | null} route @param {number} [timeMs]
   */
  const reject = (e, route, timeMs = 0) => {
    report(e.status, route, timeMs, `gateway: ${e.error}`);
    return jsonError(e);
  };

  // 4. Expiry.
  if (isExpired(token.expires_at, now)) return reject(errors.expired(), null);

  // 5.–7. Route and scopes.
  const routes = parseRoutes(await readJson(env.TOKENS, "routes"));
  if (routes.length === 0) return reject(errors.routesNotConfigured(), null);
  const route = matchRoute(routes, url.pathname);
  if (!route) return reject(errors.routeNotFound(url.pathname), null);
  if (!isAllowed(token.scopes, route)) return reject(errors.permissionDenied(serviceName(route.key) ?? route.key), route.key);

  // 8.–9. Upstream URL and headers.
  const base = backendBase(route);
  if (!base) {
    console.error(`gateway: route ${route.key} has no valid http(s) backend URL`);
    return reject(errors.routeMisconfigured(), route.key);
  }
  const target = upstreamUrl(base, route, url);
  const headers = forwardedHeaders(request.headers);
  try {
    await applyBackendAuth(route, env, headers);
  } catch (err) {
    if (!(err instanceof CredentialsError)) throw err;
    console.error(`gateway: route ${route.key}: ${err.message}`);
    return reject(errors.credentialsMissing(), route.key);
  }

  // 10.–11. Forward, streaming the body, with a deadline for the response headers.
  const timeoutMs = intVar(env.UPSTREAM_TIMEOUT_MS, 30_000);
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), timeoutMs);
  const started = Date.now();
  let upstream;
  try {
    upstream = await fetch(target.href, {
      method: request.method,
      headers,
      body: request.method === "GET" || request.method === "HEAD" ? null : request.body,
      redirect: "manual",
      signal: abort.signal,
    });
  } catch (err) {
    const timedOut = abort.signal.aborted;
    console.error(`gateway: route ${route.key}: upstream ${timedOut ? "timed out" : "failed"}:`, String(err));
    return reject(timedOut ? errors.upstreamTimeout() : errors.upstreamUnreachable(), route.key, Date.now() - started);
  } finally {
    clearTimeout(timer); // the body may stream for as long as it takes
  }
  const elapsed = Date.now() - started;

  // 12. Redirects back to the backend are mapped onto the gateway.
  let response = upstream;
  const location = upstream.headers.get("Location");
  if (upstream.status >= 300 && upstream.status < 400 && location !== null) {
    const rewritten = rewriteLocation(location, base, route, url);
    if (rewritten !== location) {
      const copied = new Headers(upstream.headers); // lesson #0: upstream headers are immutable
      copied.set("Location", rewritten);
      response = new Response(upstream.body, { status: upstream.status, statusText: upstream.statusText, headers: copied });
    }
  }

  // 13. Usage.
  const ok = response.status >= 200 && response.status < 300;
  report(response.status, route.key, elapsed, ok ? null : `HTTP ${response.status}`);
  return response;
}
