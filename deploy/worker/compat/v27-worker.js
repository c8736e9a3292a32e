// A stand-in for the v2.7 Worker (worker/src/worker.js), written to the
// letter of spec/rest-contract.md §4 — its bugs included: string-prefix
// route matching, the client's X-API-Key and all other headers forwarded,
// env-first secret lookup, silent forwarding when a secret is missing,
// stack traces in 500s, unsigned single-event usage posts. It proves that
// KV values written by the Go token service still work with the Worker that
// is deployed today: test/v27-compat.test.js runs it on hand-made KV values,
// and deploy/local-cloudflare hosts it (--compat-worker-port) next to this
// project's Worker, on the same TOKENS namespace, for the Go end-to-end test
// whose KV the real token service writes. Not deployed; not this project's
// Worker; not imported by src/ (wrangler never bundles it).

function jsonResponse(status, body) {
  return new Response(JSON.stringify(body, null, 2), {
    status,
    headers: {
      "Content-Type": "application/json",
      "Access-Control-Allow-Origin": "*",
      "Access-Control-Allow-Methods": "GET, POST, PUT, DELETE, OPTIONS",
      "Access-Control-Allow-Headers": "*",
    },
  });
}

function errorResponse(status, error, message) {
  return jsonResponse(status, { error, message });
}

async function sha256(text) {
  const buf = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(buf))
    .map((b) => b.toString(16).padStart(2, "0"))
    .join("");
}

// §4.6: env first, then KV secret:<ref>; undefined when not found.
async function getSecret(env, ref) {
  if (!ref) return undefined;
  if (env[ref]) return env[ref];
  const stored = await env.TOKENS.get("secret:" + ref, "json");
  return stored ? stored.value : undefined;
}

async function applyBackendAuth(headers, auth, env) {
  if (!auth || !auth.type || auth.type === "none") return;
  const config = auth.config || {};
  try {
    if (auth.type === "bearer") {
      const token = await getSecret(env, config.token_ref);
      if (token) headers.set("Authorization", "Bearer " + token);
    } else if (auth.type === "api-key") {
      const key = await getSecret(env, config.key_ref);
      if (key) headers.set(config.header_name || "X-API-Key", key);
    } else if (auth.type === "basic") {
      const user = await getSecret(env, config.username_ref);
      const pass = await getSecret(env, config.password_ref);
      if (user && pass) headers.set("Authorization", "Basic " + btoa(user + ":" + pass));
    }
  } catch (e) {
    // swallowed (§4.6)
  }
}

// §4.3
function rewriteLocationHeader(location, routeUrl, routeKey, gatewayHost) {
  try {
    if (location.startsWith("http://") || location.startsWith("https://")) {
      const loc = new URL(location);
      const backend = new URL(routeUrl);
      if (loc.hostname === backend.hostname) {
        return "https://" + gatewayHost + routeKey + loc.pathname + loc.search + loc.hash;
      }
      return location;
    }
    if (location.startsWith("/")) return "https://" + gatewayHost + routeKey + location;
    return location;
  } catch (e) {
    return location;
  }
}

async function logUsage(env, data) {
  try {
    const res = await fetch((env.TOKEN_MANAGER_BACKEND || "https://tapi.blocktempo.ai") + "/api/usage-log", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(data),
      signal: AbortSignal.timeout(5000),
    });
    if (!res.ok) console.error("usage log failed", res.status);
  } catch (e) {
    console.error("usage log error", e);
  }
}

export default {
  async fetch(request, env, ctx) {
    try {
      const url = new URL(request.url);

      // 1. API key
      const apiKey = request.headers.get("X-API-Key");
      if (!apiKey) return errorResponse(401, "Missing API Key", "Please provide X-API-Key header");

      // 2.-3. hash + lookup
      const tokenHash = await sha256(apiKey);
      const tokenData = await env.TOKENS.get("token:" + tokenHash, "json");
      if (!tokenData) return errorResponse(401, "Invalid API Key", "The provided API Key is invalid or has been revoked");

      // 4. expiry
      if (tokenData.expires_at && new Date(tokenData.expires_at) < new Date()) {
        return errorResponse(401, "Token Expired", "The API Key has expired");
      }

      // 5. routes
      const routes = await env.TOKENS.get("routes", "json");
      if (!routes || Object.keys(routes).length === 0) {
        return errorResponse(500, "Routes Not Configured", "No routes have been configured");
      }

      // 6. match: longest key first, pure string prefix
      const keys = Object.keys(routes).sort((a, b) => b.length - a.length);
      let routeKey = null;
      for (const key of keys) {
        if (url.pathname.startsWith(key)) {
          routeKey = key;
          break;
        }
      }
      if (!routeKey) return errorResponse(404, "Route Not Found", "No route configured for " + url.pathname);
      const routeValue = routes[routeKey];
      let backendUrl, tags, auth;
      if (typeof routeValue === "string") {
        backendUrl = routeValue;
        tags = [];
        auth = null;
      } else {
        backendUrl = routeValue.url;
        tags = routeValue.tags || [];
        auth = routeValue.auth || null;
      }

      // 7. scopes
      const scopes = tokenData.scopes || [];
      const serviceName = routeKey.split("/").filter(Boolean)[1] || null;
      let allowed = scopes.includes("*");
      if (!allowed && serviceName && scopes.includes(serviceName)) allowed = true;
      if (!allowed) {
        for (const scope of scopes) {
          if (scope.startsWith("tag:") && tags.includes(scope.slice(4))) {
            allowed = true;
            break;
          }
        }
      }
      if (!allowed) {
        return errorResponse(403, "Permission Denied",
          `Token does not have permission for '${serviceName}'. Available scopes: ${scopes.join(", ")}`);
      }

      // 8. upstream URL (string concatenation)
      const targetUrl = backendUrl + url.pathname.slice(routeKey.length) + url.search;

      // 9. headers: copy all, then backend auth
      const headers = new Headers(request.headers);
      await applyBackendAuth(headers, auth, env);

      // 10. body for POST/PUT/PATCH, buffered
      let body = null;
      if (["POST", "PUT", "PATCH"].includes(request.method)) body = await request.arrayBuffer();

      // 11. forward
      const start = Date.now();
      const upstream = await fetch(new Request(targetUrl, { method: request.method, headers, body, redirect: "manual" }));
      const responseTime = Date.now() - start;

      // 12. redirects
      let response = upstream;
      if (upstream.status >= 300 && upstream.status < 400 && upstream.headers.get("Location")) {
        const newHeaders = new Headers(upstream.headers);
        newHeaders.set("Location", rewriteLocationHeader(upstream.headers.get("Location"), backendUrl, routeKey, url.hostname));
        response = new Response(upstream.body, { status: upstream.status, statusText: upstream.statusText, headers: newHeaders });
      }

      // 13. usage
      ctx.waitUntil(
        logUsage(env, {
          token_hash: tokenHash,
          route: routeKey,
          timestamp: Date.now(),
          response_status: response.status,
          response_time_ms: responseTime,
          ip_address: request.headers.get("cf-connecting-ip"),
          user_agent: request.headers.get("user-agent"),
          request_method: request.method,
          error_message: response.status >= 200 && response.status < 300 ? null : "HTTP " + response.status,
        }),
      );

      return response;
    } catch (error) {
      return jsonResponse(500, { error: "Internal Server Error", message: error.message, stack: error.stack });
    }
  },
};
