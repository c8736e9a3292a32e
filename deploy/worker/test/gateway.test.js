// The gateway's request pipeline, run in workerd (Miniflare) against a real
// backend server on 127.0.0.1.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { createHash, randomBytes } from "node:crypto";
import { Backend, startWorker, kvOps, newToken, badChecksumToken, legacyToken, sha256Hex, isoIn, base62Checksum } from "./support/harness.js";

/** @type {Backend} */
let backend;
/** @type {Awaited<ReturnType<typeof startWorker>>} */
let gw;
let token; // scopes ["*"]

before(async () => {
  backend = await new Backend({ ingestSecret: "ingest-secret" }).start();
  gw = await startWorker({
    bindings: {
      TOKEN_MANAGER_BACKEND: backend.origin,
      USAGE_INGEST_SECRET: "ingest-secret",
      USAGE_FLUSH_DELAY_MS: "10",
      // Worker bindings a route might try to name: never consulted, even
      // one named exactly like the route's own reference.
      "/api/bearer-env#ENV_BEARER": "must-not-leak-env",
      OTHER_BACKEND_KEY: "must-not-leak",
      UPSTREAM_TIMEOUT_MS: "500",
      NEGATIVE_CACHE_TTL_MS: "60000",
    },
  });
  const o = backend.origin;
  await gw.putRoutes({
    "/api/image": { url: `${o}/image-svc`, tags: ["media"] },
    "/api/v1": { url: `${o}/v1-general/`, tags: [] },
    "/api/v1/special": { url: `${o}/v1-special`, tags: [] },
    "/api/legacy": `${o}/legacy-svc`,
    "/api/query": { url: `${o}/q?fixed=1`, tags: [] },
    "/api/openai": { url: `${o}/openai`, tags: ["ai"] },
    "/solo": { url: `${o}/solo`, tags: ["solo-tag"] },
    // A route's references name its own secrets: "<its path>#<name>".
    "/api/bearer-kv": { url: `${o}/auth`, tags: [], auth: { type: "bearer", config: { token_ref: "/api/bearer-kv#KV_BEARER" } } },
    "/api/bearer-env": { url: `${o}/auth`, tags: [], auth: { type: "bearer", config: { token_ref: "/api/bearer-env#ENV_BEARER" } } },
    "/api/bearer-leak": { url: `${o}/auth`, tags: [], auth: { type: "bearer", config: { token_ref: "OTHER_BACKEND_KEY" } } },
    "/api/bearer-ingest": { url: `${o}/auth`, tags: [], auth: { type: "bearer", config: { token_ref: "USAGE_INGEST_SECRET" } } },
    "/api/bearer-foreign": { url: `${o}/auth`, tags: [], auth: { type: "bearer", config: { token_ref: "/api/bearer-kv#KV_BEARER" } } },
    "/api/bearer-kv-x": { url: `${o}/auth`, tags: [], auth: { type: "bearer", config: { token_ref: "/api/bearer-kv#KV_BEARER" } } },
    "/api/bearer-odd": { url: `${o}/auth`, tags: [], auth: { type: "bearer", config: { token_ref: "/api/bearer-odd#../bearer-kv#KV_BEARER" } } },
    "/api/bearer-missing": { url: `${o}/auth`, tags: [], auth: { type: "bearer", config: { token_ref: "/api/bearer-missing#NOWHERE" } } },
    "/api/apikey-custom": { url: `${o}/auth`, tags: [], auth: { type: "api-key", config: { key_ref: "/api/apikey-custom#KV_KEY", header_name: "X-Internal-Key" } } },
    "/api/apikey-default": { url: `${o}/auth`, tags: [], auth: { type: "api-key", config: { key_ref: "/api/apikey-default#KV_KEY" } } },
    "/api/basic": { url: `${o}/auth`, tags: [], auth: { type: "basic", config: { username_ref: "/api/basic#USER", password_ref: "/api/basic#KV_PASS" } } },
    "/api/basic-half": { url: `${o}/auth`, tags: [], auth: { type: "basic", config: { username_ref: "/api/basic-half#USER", password_ref: "/api/basic-half#NOWHERE" } } },
    "/api/none": { url: `${o}/auth`, tags: [], auth: { type: "none", config: {} } },
    "/api/weird-auth": { url: `${o}/auth`, tags: [], auth: { type: "custom", config: {} } },
    "/api/redir": { url: `${o}/redirect/base`, tags: [] },
    "/api/redir-root": { url: `${o}`, tags: [] },
    "/api/stream": { url: `${o}/stream`, tags: [] },
    "/api/hang": { url: `${o}/hang`, tags: [] },
    "/api/down": { url: "http://127.0.0.1:1/nothing", tags: [] },
    "/api/badurl": { url: "not a url", tags: [] },
    "/api/ftp": { url: "ftp://example.com/x", tags: [] },
  });
  await gw.putSecret("/api/bearer-kv#KV_BEARER", "kv-bearer-value");
  await gw.putSecret("/api/apikey-custom#KV_KEY", "kv-key-value");
  await gw.putSecret("/api/apikey-default#KV_KEY", "kv-default-key-value");
  await gw.putSecret("/api/basic#USER", "kv-user");
  await gw.putSecret("/api/basic#KV_PASS", "pässword");
  await gw.putSecret("/api/basic-half#USER", "kv-user");
  // v2.7-style global names, as a v2.7 deployment left them in KV.
  await gw.putSecret("OTHER_BACKEND_KEY", "must-not-leak-kv");
  await gw.putSecret("USAGE_INGEST_SECRET", "must-not-leak-kv");
  token = newToken();
  await gw.putToken(token, { name: "all", team_id: "t", scopes: ["*"], created_at: isoIn(0), expires_at: null });
});

after(async () => {
  await gw?.close();
  await backend?.close();
});

/** GET through the gateway with `key` (default: the "*" token). */
const get = (path, key = token, init = {}) => gw.fetch(path, { ...init, headers: { "X-API-Key": key, ...init.headers } });

async function assertError(res, status, error, message) {
  assert.equal(res.status, status);
  assert.equal(res.headers.get("content-type"), "application/json");
  assert.equal(res.headers.get("access-control-allow-origin"), "*");
  assert.equal(res.headers.get("access-control-allow-methods"), "GET, POST, PUT, DELETE, OPTIONS");
  assert.equal(res.headers.get("access-control-allow-headers"), "*");
  const text = await res.text();
  assert.match(text, /^\{\n  "error": /, "pretty-printed with 2 spaces");
  const body = JSON.parse(text);
  assert.deepEqual(Object.keys(body).sort(), ["error", "message"]);
  assert.equal(body.error, error);
  if (message !== undefined) assert.equal(body.message, message);
  assert.doesNotMatch(text, /stack|at .*\.js|Error:/);
  return body;
}

// ---- key checks before any KV read ----

test("missing X-API-Key: 401 without any KV read", async () => {
  const res = await gw.fetch("/api/image/x");
  assert.deepEqual(kvOps(res), []);
  await assertError(res, 401, "Missing API Key", "Please provide X-API-Key header");
});

test("new-format key with a wrong checksum: 401 without any KV read", async () => {
  const bad = badChecksumToken();
  assert.equal(bad.length, 42);
  const res = await get("/api/image/x", bad);
  assert.deepEqual(kvOps(res), []);
  await assertError(res, 401, "Invalid API Key", "The provided API Key is invalid or has been revoked");
});

test("tokens checksummed by Go's hash/crc32 pass the pre-check; any altered checksum does not", async () => {
  // Printed by a Go program using crc32.ChecksumIEEE and the token service's base62 encoding.
  const fromGo = [
    "ntk_000000000000000000000000000000002wjyrI",
    "ntk_zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz4W8LJS",
    "ntk_Q3v9xLm2pR7tYb1KdE0sWfHa8cNjU4oZ1FEnJW",
    "ntk_aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1eF1wtQ4P",
  ];
  for (const key of fromGo) {
    assert.equal(base62Checksum(key.slice(4, 36)), key.slice(36), "the harness agrees with Go");
    const res = await get("/api/image/x", key);
    assert.deepEqual(kvOps(res), ["get token:" + sha256Hex(key)], key);
    await assertError(res, 401, "Invalid API Key");
    for (let i = 36; i < 42; i++) {
      const altered = key.slice(0, i) + (key[i] === "A" ? "B" : "A") + key.slice(i + 1);
      const bad = await get("/api/image/x", altered);
      assert.deepEqual(kvOps(bad), [], altered);
      await bad.body?.cancel();
    }
  }
});

test("unknown key with a valid checksum: one KV read, then remembered by the negative cache", async () => {
  const unknown = newToken();
  const first = await get("/api/image/x", unknown);
  assert.deepEqual(kvOps(first), ["get token:" + sha256Hex(unknown)]);
  await assertError(first, 401, "Invalid API Key");
  const second = await get("/api/image/x", unknown);
  assert.deepEqual(kvOps(second), [], "second attempt is answered from the negative cache");
  await assertError(second, 401, "Invalid API Key");
  // Garbage of any other shape still goes to KV (v2.7 and imported tokens have other formats).
  const other = await get("/api/image/x", "not-a-token");
  assert.deepEqual(kvOps(other), ["get token:" + sha256Hex("not-a-token")]);
  await assertError(other, 401, "Invalid API Key");
});

test("valid new-format and legacy v2.7 tokens reach the upstream", async () => {
  const legacy = legacyToken();
  assert.equal(legacy.length, 47);
  await gw.putToken(legacy, { name: "old", team_id: "t", scopes: ["image"], created_at: "2025-11-08T07:12:45.118762", expires_at: null });
  for (const key of [token, legacy]) {
    const res = await get("/api/image/pic?size=2", key);
    assert.equal(res.status, 200);
    assert.deepEqual(kvOps(res), ["get token:" + sha256Hex(key), "get routes"]);
    const echo = await res.json();
    assert.equal(echo.url, "/image-svc/pic?size=2");
  }
});

// ---- expiry ----

test("expiry: naive (v2.7) and RFC 3339 timestamps, null, unreadable", async () => {
  const cases = [
    { expires_at: isoIn(-60_000, { naive: true, micro: true }), status: 401 },
    { expires_at: isoIn(-60_000), status: 401 },
    { expires_at: isoIn(-60_000, { micro: true }), status: 401 },
    { expires_at: "2020-01-01T08:00:00+08:00", status: 401 },
    { expires_at: isoIn(3_600_000, { naive: true, micro: true }), status: 200 },
    { expires_at: isoIn(3_600_000), status: 200 },
    { expires_at: null, status: 200 },
    { expires_at: undefined, status: 200 },
    { expires_at: "soon", status: 401 },
  ];
  for (const c of cases) {
    const key = newToken();
    await gw.putToken(key, { name: "x", team_id: "t", scopes: ["*"], created_at: isoIn(0), expires_at: c.expires_at });
    const res = await get("/api/image/x", key);
    assert.equal(res.status, c.status, `expires_at=${c.expires_at}`);
    if (c.status === 401) await assertError(res, 401, "Token Expired", "The API Key has expired");
    else await res.body?.cancel();
  }
  // A naive timestamp means UTC: 30 minutes ago in UTC is expired whatever the host's zone.
  const key = newToken();
  await gw.putToken(key, { scopes: ["*"], expires_at: isoIn(-30 * 60_000, { naive: true }) });
  await assertError(await get("/api/image/x", key), 401, "Token Expired");
});

// ---- routing ----

test("route matching respects path-segment boundaries", async () => {
  for (const [path, upstream] of [
    ["/api/image", "/image-svc"],
    ["/api/image/", "/image-svc/"],
    ["/api/image/a/b", "/image-svc/a/b"],
  ]) {
    const res = await get(path);
    assert.equal(res.status, 200, path);
    assert.equal((await res.json()).url, upstream, path);
  }
  for (const path of ["/api/images", "/api/imageXYZ", "/api/images/1", "/api"]) {
    await assertError(await get(path), 404, "Route Not Found", `No route configured for ${path}`);
  }
});

test("the longest matching route key wins", async () => {
  const special = await get("/api/v1/special/x");
  assert.equal((await special.json()).url, "/v1-special/x");
  const general = await get("/api/v1/specialist");
  assert.equal((await general.json()).url, "/v1-general/specialist", "no double slash from the base's trailing slash");
  const bare = await get("/api/v1");
  assert.equal((await bare.json()).url, "/v1-general/");
});

test("upstream URL: legacy string routes, query strings kept and merged", async () => {
  const legacy = await get("/api/legacy/items?a=1&b=two");
  assert.equal((await legacy.json()).url, "/legacy-svc/items?a=1&b=two");
  const merged = await get("/api/query/x?b=2");
  assert.equal((await merged.json()).url, "/q/x?fixed=1&b=2");
  const encoded = await get("/api/image/a%20b/%C3%A9");
  assert.equal((await encoded.json()).url, "/image-svc/a%20b/%C3%A9");
});

test("routes missing → 500 Routes Not Configured; invalid backend URLs → 502", async () => {
  await assertError(await get("/api/badurl/x"), 502, "Bad Gateway");
  await assertError(await get("/api/ftp/x"), 502, "Bad Gateway");
  const saved = await gw.kv.get("routes");
  await gw.kv.delete("routes");
  try {
    await assertError(await get("/api/image/x"), 500, "Routes Not Configured", "No routes have been configured");
    await gw.kv.put("routes", "{}");
    await assertError(await get("/api/image/x"), 500, "Routes Not Configured");
  } finally {
    await gw.kv.put("routes", saved);
  }
});

// ---- scopes ----

test("scopes: *, service (second segment of the route key), tag:<t>; 403 does not list scopes", async () => {
  const service = newToken();
  await gw.putToken(service, { scopes: ["image", "tag:ai", "secret-scope-name"], expires_at: null });
  assert.equal((await get("/api/image/x", service)).status, 200, "service scope");
  assert.equal((await get("/api/openai/chat", service)).status, 200, "tag scope");
  const denied = await assertError(await get("/api/legacy/x", service), 403, "Permission Denied", "Token does not have permission for 'legacy'");
  assert.doesNotMatch(denied.message, /image|tag:ai|secret-scope-name|Available/);

  // A one-segment key has no service: only "*" or a tag reaches it.
  const soloService = newToken();
  await gw.putToken(soloService, { scopes: ["solo"], expires_at: null });
  await assertError(await get("/solo/x", soloService), 403, "Permission Denied", "Token does not have permission for '/solo'");
  const soloTag = newToken();
  await gw.putToken(soloTag, { scopes: ["tag:solo-tag"], expires_at: null });
  assert.equal((await get("/solo/x", soloTag)).status, 200);
  assert.equal((await get("/solo/x")).status, 200, "* reaches everything");

  const none = newToken();
  await gw.putToken(none, { name: "no scopes", expires_at: null });
  await assertError(await get("/api/image/x", none), 403, "Permission Denied");
});

// ---- headers and backend credentials ----

test("the client's X-API-Key and cf-* headers are not forwarded; others are", async () => {
  const res = await get("/api/image/x", token, {
    headers: { "cf-ray": "abc123", "CF-IPCountry": "XX", "cf-connecting-ip": "203.0.113.7", Cookie: "a=b", "X-Custom": "kept", Authorization: "Bearer client" },
  });
  const { headers } = await res.json();
  assert.equal(headers["x-api-key"], undefined);
  assert.equal(headers["cf-ray"], undefined);
  assert.equal(headers["cf-ipcountry"], undefined);
  assert.equal(headers["cf-connecting-ip"], undefined);
  assert.equal(headers.cookie, "a=b");
  assert.equal(headers["x-custom"], "kept");
  assert.equal(headers.authorization, "Bearer client", "no backend auth configured: the client's own Authorization passes");
  assert.ok(!JSON.stringify(headers).includes(token), "the gateway token reaches the upstream nowhere");
});

test("backend credentials: bearer, api-key and basic, each from its route's own KV secret", async () => {
  const seen = async (path) => {
    const res = await get(path, token, { headers: { Authorization: "Bearer client-own" } });
    assert.equal(res.status, 200, path);
    return (await res.json()).headers;
  };
  assert.equal((await seen("/api/bearer-kv")).authorization, "Bearer kv-bearer-value");
  const custom = await seen("/api/apikey-custom");
  assert.equal(custom["x-internal-key"], "kv-key-value");
  assert.equal(custom["x-api-key"], undefined);
  assert.equal((await seen("/api/apikey-default"))["x-api-key"], "kv-default-key-value", "the backend's key, never the client's");
  const basic = (await seen("/api/basic")).authorization;
  assert.equal(Buffer.from(basic.replace(/^Basic /, ""), "base64").toString("utf8"), "kv-user:pässword");
  assert.equal((await seen("/api/none")).authorization, "Bearer client-own");
});

test("credentials that cannot be resolved, or are not the route's own: 502, and nothing reaches the upstream", async () => {
  const before = backend.requests.length;
  const refused = [
    "/api/bearer-missing", // its own name, no value in KV
    "/api/bearer-env", // only a Worker binding of that name: env is never read
    "/api/bearer-leak", // a bare (v2.7) name: a binding and a KV secret exist
    "/api/bearer-ingest", // the usage ingest key
    "/api/bearer-foreign", // another route's secret
    "/api/bearer-kv-x", // ...whose path this route's path merely extends
    "/api/bearer-odd", // its own path, then a name that is no secret name
    "/api/basic-half",
    "/api/weird-auth",
  ];
  for (const path of refused) {
    await assertError(await get(path), 502, "Bad Gateway", "Backend credentials are not configured");
  }
  assert.equal(backend.requests.length, before, "no request was forwarded");
  assert.doesNotMatch(gw.logText(), /must-not-leak|ingest-secret|kv-bearer-value/);
});

// ---- redirects ----

test("redirects back to the backend are mapped onto the gateway", async () => {
  const o = backend.origin;
  const cases = [
    // [Location sent by the upstream, Location expected from the gateway]
    [`{self}/redirect/base/next?x=1#frag`, "http://gateway.test/api/redir/next?x=1#frag"],
    [`{self}/redirect/base`, "http://gateway.test/api/redir"],
    [`/redirect/base/login`, "http://gateway.test/api/redir/login"],
    [`https://other.example/x`, "https://other.example/x"],
    [`relative/path`, "relative/path"],
    [`//evil.example/x`, "//evil.example/x"],
    [`/outside/base`, "/outside/base"],
    [`{self}/outside/base`, `${o}/outside/base`],
  ];
  for (const [to, want] of cases) {
    const res = await get(`/api/redir/go?status=302&to=${encodeURIComponent(to)}`);
    assert.equal(res.status, 302, to);
    assert.equal(res.headers.get("location"), want, to);
    assert.equal(res.headers.get("set-cookie"), "session=abc; Path=/", "other headers survive the rewrite");
    assert.equal(res.headers.get("x-upstream"), "redirect");
    assert.equal(await res.text(), "moved");
  }
  // A backend without a base path; 307 and 301 too; the request's scheme and port are kept.
  const root = await gw.fetch(`https://gw.example:8443/api/redir-root/redirect/x?status=307&to=${encodeURIComponent("/somewhere?q=1")}`, {
    headers: { "X-API-Key": token },
  });
  assert.equal(root.status, 307);
  assert.equal(root.headers.get("location"), "https://gw.example:8443/api/redir-root/somewhere?q=1");
  const moved = await get(`/api/redir-root/redirect/x?status=301&to=${encodeURIComponent(o + "/")}`);
  assert.equal(moved.headers.get("location"), "http://gateway.test/api/redir-root/");
});

// ---- bodies ----

test("request bodies are forwarded for every method that has one", async () => {
  const big = randomBytes(3 * 1024 * 1024);
  const put = await get("/api/image/upload", token, { method: "PUT", body: big, headers: { "Content-Type": "application/octet-stream" } });
  const echo = await put.json();
  assert.equal(echo.method, "PUT");
  assert.equal(echo.bodyLength, big.length);
  assert.equal(echo.bodySha256, createHash("sha256").update(big).digest("hex"));
  for (const method of ["POST", "PATCH", "DELETE", "OPTIONS"]) {
    const res = await get("/api/image/x", token, { method, body: `payload-${method}` });
    const e = await res.json();
    assert.equal(e.method, method);
    assert.equal(e.body, `payload-${method}`, method);
  }
  const head = await get("/api/image/x", token, { method: "HEAD" });
  assert.equal(head.status, 200);
});

test("request bodies are streamed: the upstream sees the first chunk before the client sends the rest", async () => {
  const url = new URL("/api/stream/upload", await gw.mf.ready);
  const firstChunk = new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error("upstream did not receive the first chunk while the request was still open")), 5000);
    backend.once("chunk", (c) => {
      clearTimeout(t);
      resolve(c.toString());
    });
  });
  const response = new Promise((resolve, reject) => {
    const req = http.request(url, { method: "POST", headers: { "X-API-Key": token, "Transfer-Encoding": "chunked" } }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d) => (body += d));
      res.on("end", () => resolve({ status: res.statusCode, body }));
    });
    req.on("error", reject);
    req.write("first-chunk;");
    firstChunk.then(
      () => req.end("second-chunk"),
      (err) => {
        req.destroy();
        reject(err);
      },
    );
  });
  assert.equal(await firstChunk, "first-chunk;");
  const { status, body } = await response;
  assert.equal(status, 200);
  assert.equal(JSON.parse(body).body, "first-chunk;second-chunk");
});

// ---- upstream failures, preflight, internal errors ----

test("upstream unreachable → 502 JSON; no response in time → 504 JSON; no stack traces", async () => {
  await assertError(await get("/api/down/x"), 502, "Bad Gateway", "The backend service could not be reached");
  const started = Date.now();
  await assertError(await get("/api/hang/x"), 504, "Gateway Timeout", "The backend service did not respond in time");
  assert.ok(Date.now() - started < 3000, "UPSTREAM_TIMEOUT_MS applies");
});

test("KV failure → 500 with a generic message, the detail only in the logs", async () => {
  const res = await get("/api/image/x", token, { headers: { "x-test-kv-throw": "routes" } });
  await assertError(res, 500, "Internal Server Error", "An unexpected error occurred");
  await backend.waitFor(() => gw.logText().includes("injected KV failure"), 5000, "the error in the Worker's log");
});

test("CORS preflight is answered with 204; OPTIONS with a key is forwarded", async () => {
  const pre = await gw.fetch("/api/image/x", {
    method: "OPTIONS",
    headers: { Origin: "https://app.example", "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "x-api-key, content-type" },
  });
  assert.equal(pre.status, 204);
  assert.deepEqual(kvOps(pre), []);
  assert.equal(pre.headers.get("access-control-allow-origin"), "*");
  assert.match(pre.headers.get("access-control-allow-methods"), /POST/);
  assert.equal(pre.headers.get("access-control-allow-headers"), "x-api-key, content-type");
  // Without Access-Control-Request-Method it is no preflight: the key is missing.
  await assertError(await gw.fetch("/api/image/x", { method: "OPTIONS" }), 401, "Missing API Key");
  const forwarded = await get("/api/image/x", token, { method: "OPTIONS", headers: { "Access-Control-Request-Method": "GET" } });
  assert.equal((await forwarded.json()).method, "OPTIONS");
});
