// --compat-worker-port: the v2.7 stand-in Worker (worker/compat/v27-worker.js)
// hosted next to this project's Worker, with the same vars and the same TOKENS
// namespace — a token and routes written through the KV REST API are honoured
// by both on their very next request, and they really are two Workers.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { createHash } from "node:crypto";
import zlib from "node:zlib";
import path from "node:path";
import { tmpdir } from "node:os";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { startLocalCloudflare } from "../lib/local-cloudflare.js";
import { parseConfig } from "../lib/config.js";

const TOKEN = "compat-api-token";
const ACCOUNT = "acc-compat";
const NS = "ns-compat";
const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

let lc, upstream, origin, base;
/** usage posts the Workers sent to TOKEN_MANAGER_BACKEND */
const usagePosts = [];

/** A new-format key (ntk_ + 32 base62 + base62 CRC32), which both Workers accept. */
function newKey(random) {
  let v = zlib.crc32(random);
  let sum = "";
  for (let i = 0; i < 6; i++, v = Math.floor(v / 62)) sum = BASE62[v % 62] + sum;
  return `ntk_${random}${sum}`;
}
const sha256 = (s) => createHash("sha256").update(s).digest("hex");

before(async () => {
  // Plays every backend (echoes the request) and the usage endpoint (records it).
  upstream = http.createServer((req, res) => {
    let body = "";
    req.setEncoding("utf8").on("data", (d) => (body += d));
    req.on("end", () => {
      if (req.method === "POST" && req.url === "/api/usage-log") usagePosts.push({ headers: req.headers, json: JSON.parse(body) });
      res.writeHead(200, { "Content-Type": "application/json" });
      res.end(JSON.stringify({ url: req.url, auth: req.headers.authorization ?? null, apiKey: req.headers["x-api-key"] ?? null }));
    });
  });
  await new Promise((r) => upstream.listen(0, "127.0.0.1", r));
  origin = `http://127.0.0.1:${upstream.address().port}`;
  const config = parseConfig(
    ["--api-port", "0", "--worker-port", "0", "--compat-worker-port", "0", "--account-id", ACCOUNT, "--namespace-id", NS, "--api-token", TOKEN],
    {
      TOKEN_MANAGER_BACKEND: origin,
      USAGE_INGEST_SECRET: "ingest-secret",
      USAGE_FLUSH_DELAY_MS: "10",
    },
  );
  assert.equal(config.compatWorkerPort, 0);
  lc = await startLocalCloudflare(config);
  base = `${lc.cloudflareApi}/accounts/${ACCOUNT}/storage/kv/namespaces/${NS}`;
});

after(async () => {
  await lc?.close();
  await new Promise((r) => upstream?.close(r));
});

/** A KV REST API call as cloudflare-go makes it; asserts success. */
async function cf(path, init = {}) {
  const res = await fetch(base + path, { ...init, headers: { Authorization: `Bearer ${TOKEN}`, ...init.headers } });
  assert.equal(res.status, 200, `${init.method ?? "GET"} ${path}: ${await res.clone().text()}`);
  return res.json();
}

const call = (workerUrl, path, key) => fetch(new URL(path, workerUrl), { headers: { "X-API-Key": key, "User-Agent": "compat-e2e" } });

test("the compat Worker has its own URL, on the same host", () => {
  assert.match(lc.compatWorker, /^http:\/\/127\.0\.0\.1:\d+\/$/);
  assert.match(lc.worker, /^http:\/\/127\.0\.0\.1:\d+\/$/);
  assert.notEqual(lc.compatWorker, lc.worker);
  assert.ok(!lc.cloudflareApi.startsWith(lc.compatWorker));
});

test("a token and routes written through the KV REST API are honoured by both Workers", async () => {
  const key = newKey("C0mpatE2eTestKey00000000000000Ab");
  const hash = sha256(key);
  // Routes first (v6 style: "/" unescaped is fine too), then the token in a bulk write — as the token service does.
  await cf(`/values/routes`, {
    method: "PUT",
    body: JSON.stringify({
      "/api/image": { url: `${origin}/image-svc`, tags: ["media"], auth: { type: "bearer", config: { token_ref: "/api/image#UPSTREAM_KEY" } } },
    }),
  });
  await cf(`/bulk`, {
    method: "PUT",
    body: JSON.stringify([
      { key: "secret:/api/image#UPSTREAM_KEY", value: JSON.stringify({ value: "from-kv" }) },
      {
        key: `token:${hash}`,
        value: JSON.stringify({ name: "e2e", team_id: "t", scopes: ["image"], created_at: "2026-01-01T00:00:00.123456789Z", expires_at: null }),
      },
    ]),
  });

  // Both see the write on their very next request, and both take the route's own credential from KV.
  for (const w of [lc.worker, lc.compatWorker]) {
    const res = await call(w, "/api/image/pic?s=1", key);
    assert.equal(res.status, 200, w);
    const echo = await res.json();
    assert.equal(echo.url, "/image-svc/pic?s=1", w);
    assert.equal(echo.auth, "Bearer from-kv", w);
  }

  // Two different Workers: this project's matches routes by path segment, v2.7 by string prefix.
  const ours = await call(lc.worker, "/api/images/x", key);
  assert.equal(ours.status, 404);
  assert.equal((await ours.json()).error, "Route Not Found");
  const v27 = await call(lc.compatWorker, "/api/images/x", key);
  assert.equal(v27.status, 200);
  assert.equal((await v27.json()).url, "/image-svcs/x", "v2.7: string-prefix matching");

  // Both use TOKEN_MANAGER_BACKEND for usage: a signed batch from ours, a bare unsigned event from v2.7.
  const until = Date.now() + 5000;
  const bare = () => usagePosts.find((p) => p.json.token_hash === hash);
  const signed = () => usagePosts.find((p) => Array.isArray(p.json.events) && p.json.events.some((e) => e.token_hash === hash));
  while (!(bare() && signed()) && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
  assert.ok(bare(), "v2.7 usage event");
  assert.equal(bare().headers["x-tm-signature"], undefined);
  assert.equal(bare().json.route, "/api/image");
  assert.ok(signed(), "signed usage batch");
  assert.match(signed().headers["x-tm-signature"], /^v1=[0-9a-f]{64}$/);

  // A revocation through the API is seen by both at once.
  await cf(`/bulk/delete`, { method: "POST", body: JSON.stringify([`token:${hash}`]) });
  for (const w of [lc.worker, lc.compatWorker]) {
    const res = await call(w, "/api/image/pic", key);
    assert.equal(res.status, 401, w);
    assert.equal((await res.json()).error, "Invalid API Key", w);
  }
});

test("without the option there is no compat Worker", async () => {
  const config = parseConfig(["--api-port", "0", "--worker-port", "0"], { LOCAL_CF_COMPAT_WORKER_PORT: "" });
  assert.equal(config.compatWorkerPort, undefined);
  const plain = await startLocalCloudflare(config);
  try {
    assert.equal(plain.compatWorker, undefined);
    assert.equal("compatWorker" in plain, false);
  } finally {
    await plain.close();
  }
});

test("a Worker folder without compat/v27-worker.js cannot host the compat Worker", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "lc-no-compat-"));
  try {
    writeFileSync(path.join(dir, "wrangler.toml"), 'main = "index.js"\ncompatibility_date = "2026-04-01"\n');
    writeFileSync(path.join(dir, "index.js"), "export default { fetch: () => new Response('ok') };\n");
    const config = parseConfig(["--api-port", "0", "--worker-port", "0", "--compat-worker-port", "0", "--worker-dir", dir], {});
    await assert.rejects(startLocalCloudflare(config), /compat\/v27-worker\.js does not exist/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("config: --compat-worker-port and LOCAL_CF_COMPAT_WORKER_PORT", () => {
  const p = (argv, env = {}) => parseConfig(argv, env).compatWorkerPort;
  assert.equal(p([]), undefined);
  assert.equal(p([], { LOCAL_CF_COMPAT_WORKER_PORT: "" }), undefined);
  assert.equal(p([], { LOCAL_CF_COMPAT_WORKER_PORT: "0" }), 0);
  assert.equal(p([], { LOCAL_CF_COMPAT_WORKER_PORT: "8789" }), 8789);
  assert.equal(p(["--compat-worker-port", "8790"], { LOCAL_CF_COMPAT_WORKER_PORT: "8789" }), 8790, "the flag wins");
  assert.equal(p(["--compat-worker-port="], { LOCAL_CF_COMPAT_WORKER_PORT: "8789" }), undefined, "an empty flag turns it off");
  for (const bad of ["abc", "-1", "65536", "1.5"]) {
    assert.throws(() => p([`--compat-worker-port=${bad}`]), /--compat-worker-port must be a port number/, bad);
    assert.throws(() => p([], { LOCAL_CF_COMPAT_WORKER_PORT: bad }), /--compat-worker-port must be a port number/, bad);
  }
  assert.throws(() => p(["--compat-worker-port", "8787"]), /already the Worker port/);
  assert.throws(() => p(["--compat-worker-port", "9000", "--api-port", "9000"]), /already the API port/);
  assert.equal(p(["--compat-worker-port", "0", "--worker-port", "0"]), 0, "0 twice is fine: any free port each");
});
