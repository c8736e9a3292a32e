// The fake Cloudflare KV REST API, in process: paths, envelope, auth,
// pagination, bulk, faults — and that the hosted Worker sees every write.

import { test, before, after, beforeEach } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { createHash } from "node:crypto";
import zlib from "node:zlib";
import { startLocalCloudflare } from "../lib/local-cloudflare.js";
import { parseConfig } from "../lib/config.js";

const TOKEN = "test-api-token";
const ACCOUNT = "acc-1";
const NS = "ns-tokens";

let lc, upstream, base;

before(async () => {
  upstream = http.createServer((req, res) => {
    res.writeHead(200, { "Content-Type": "application/json" });
    res.end(JSON.stringify({ url: req.url, auth: req.headers.authorization ?? null }));
  });
  await new Promise((r) => upstream.listen(0, "127.0.0.1", r));
  const config = parseConfig(["--api-port", "0", "--worker-port", "0", "--account-id", ACCOUNT, "--namespace-id", NS, "--api-token", TOKEN], {
    TOKEN_MANAGER_BACKEND: "http://127.0.0.1:1", // usage posts fail quietly
    UPSTREAM_KEY: "from-env", // backend credentials live in KV, never in the environment
    PATH: "not a worker var",
  });
  assert.equal(config.vars.UPSTREAM_KEY, undefined);
  assert.equal(config.vars.PATH, undefined);
  lc = await startLocalCloudflare(config);
  base = `${lc.cloudflareApi}/accounts/${ACCOUNT}/storage/kv/namespaces/${NS}`;
});

after(async () => {
  await lc?.close();
  await new Promise((r) => upstream?.close(r));
});

beforeEach(async () => {
  await fetch(`${lc.admin}/faults`, { method: "DELETE" });
});

/** A call as cloudflare-go makes it. */
function cf(path, init = {}) {
  return fetch(path.startsWith("http") ? path : base + path, {
    ...init,
    headers: { Authorization: `Bearer ${TOKEN}`, ...init.headers },
  });
}

/** Asserts Cloudflare's JSON envelope and returns it. */
async function envelope(res, status, success = status < 400) {
  assert.equal(res.status, status);
  assert.equal(res.headers.get("content-type"), "application/json");
  const body = await res.json();
  assert.deepEqual(Object.keys(body).filter((k) => k !== "result_info").sort(), ["errors", "messages", "result", "success"]);
  assert.equal(body.success, success);
  if (!success) {
    assert.ok(body.errors.length > 0 && typeof body.errors[0].code === "number" && typeof body.errors[0].message === "string");
  }
  return body;
}

/** cloudflare-go v0 escapes keys with url.PathEscape; encodeURIComponent escapes at least as much. */
const esc = encodeURIComponent;

test("the start-up URLs", () => {
  assert.match(lc.cloudflareApi, /^http:\/\/127\.0\.0\.1:\d+\/client\/v4$/);
  assert.match(lc.worker, /^http:\/\/127\.0\.0\.1:\d+\/$/);
  assert.equal(lc.compatWorker, undefined, "no compat Worker unless asked for");
});

test("authentication: a missing or wrong Bearer token gets a 401 envelope", async () => {
  const none = await fetch(base + "/keys");
  assert.equal((await envelope(none, 401)).errors[0].code, 10000);
  await envelope(await fetch(base + "/keys", { headers: { Authorization: "Bearer wrong" } }), 401);
  await envelope(await fetch(base + "/keys", { headers: { "X-Auth-Key": TOKEN } }), 401);
  const verify = await envelope(await cf(`${lc.cloudflareApi}/user/tokens/verify`), 200);
  assert.equal(verify.result.status, "active");
});

test("unknown namespace, account or path: 404 envelope", async () => {
  await envelope(await cf(`${lc.cloudflareApi}/accounts/${ACCOUNT}/storage/kv/namespaces/other/keys`), 404);
  await envelope(await cf(`${lc.cloudflareApi}/accounts/other/storage/kv/namespaces/${NS}/keys`), 404);
  await envelope(await cf(`${lc.cloudflareApi}/zones`), 404);
  const ns = await envelope(await cf(`${lc.cloudflareApi}/accounts/${ACCOUNT}/storage/kv/namespaces/${NS}`), 200);
  assert.equal(ns.result.id, NS);
  const list = await envelope(await cf(`${lc.cloudflareApi}/accounts/${ACCOUNT}/storage/kv/namespaces`), 200);
  assert.deepEqual(list.result.map((n) => n.id), [NS]);
});

test("values: raw PUT, GET, DELETE with escaped keys", async () => {
  const keys = ["token:abc123", "secret:a/b c?#%", "..x", "ünï"];
  for (const key of keys) {
    const put = await cf(`/values/${esc(key)}`, { method: "PUT", body: `value of ${key}`, headers: { "Content-Type": "application/octet-stream" } });
    await envelope(put, 200);
    const get = await cf(`/values/${esc(key)}`);
    assert.equal(get.status, 200);
    assert.equal(await get.text(), `value of ${key}`);
  }
  // cloudflare-go v6 does not escape "/": the rest of the path is the key.
  await envelope(await cf(`/values/plain/slash`, { method: "PUT", body: "v6" }), 200);
  assert.equal(await (await cf(`/values/${esc("plain/slash")}`)).text(), "v6");

  const missing = await envelope(await cf(`/values/${esc("nope")}`), 404);
  assert.equal(missing.errors[0].code, 10009);
  await envelope(await cf(`/values/${esc("token:abc123")}`, { method: "DELETE" }), 200);
  await envelope(await cf(`/values/${esc("token:abc123")}`), 404);
  await envelope(await cf(`/values/${esc("token:abc123")}`, { method: "DELETE" }), 200, true); // deleting nothing is fine
  // "." and ".." are not keys; sent raw, as Go's client does (fetch would resolve them as path segments).
  for (const dots of [".", ".."]) {
    const raw = await new Promise((resolve, reject) => {
      const u = new URL(base);
      const options = { host: u.hostname, port: u.port, path: `${u.pathname}/values/${dots}`, method: "PUT", headers: { Authorization: `Bearer ${TOKEN}` } };
      const req = http.request(options, (res) => {
        let body = "";
        res.on("data", (d) => (body += d));
        res.on("end", () => resolve({ status: res.statusCode, body: JSON.parse(body) }));
      });
      req.on("error", reject);
      req.end("x");
    });
    assert.equal(raw.status, 400, dots);
    assert.match(raw.body.errors[0].message, /illegal key name/);
  }
  await envelope(await cf(`/values/${esc("k".repeat(513))}`, { method: "PUT", body: "x" }), 400);
});

test("values: multipart PUT with metadata and expiration_ttl", async () => {
  const form = new FormData();
  form.set("value", "multipart value");
  form.set("metadata", JSON.stringify({ by: "v6" }));
  await envelope(await cf(`/values/${esc("mp:one")}?expiration_ttl=3600`, { method: "PUT", body: form }), 200);
  assert.equal(await (await cf(`/values/${esc("mp:one")}`)).text(), "multipart value");
  const meta = await envelope(await cf(`/metadata/${esc("mp:one")}`), 200);
  assert.deepEqual(meta.result, { by: "v6" });
  const list = await envelope(await cf(`/keys?prefix=mp:`), 200);
  assert.equal(list.result.length, 1);
  assert.equal(list.result[0].name, "mp:one");
  assert.deepEqual(list.result[0].metadata, { by: "v6" });
  assert.ok(Math.abs(list.result[0].expiration - (Date.now() / 1000 + 3600)) < 60);
  await envelope(await cf(`/values/${esc("mp:ttl")}?expiration_ttl=10`, { method: "PUT", body: "x" }), 400, false); // KV's minimum is 60 s
});

test("bulk: PUT with base64 and metadata, DELETE bulk and POST bulk/delete", async () => {
  const binary = Buffer.from([0, 1, 2, 250, 255]);
  const put = await envelope(
    await cf(`/bulk`, {
      method: "PUT",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify([
        { key: "bulk:text", value: '{"json":true}' },
        { key: "bulk:bin", value: binary.toString("base64"), base64: true },
        { key: "bulk:meta", value: "m", metadata: { v: 1 }, expiration_ttl: 120 },
      ]),
    }),
    200,
  );
  assert.equal(put.result.successful_key_count, 3);
  assert.equal(await (await cf(`/values/${esc("bulk:text")}`)).text(), '{"json":true}');
  assert.deepEqual(Buffer.from(await (await cf(`/values/${esc("bulk:bin")}`)).arrayBuffer()), binary);
  const got = await envelope(
    await cf(`/bulk/get`, { method: "POST", body: JSON.stringify({ keys: ["bulk:text", "bulk:none"], type: "json" }) }),
    200,
  );
  assert.deepEqual(got.result.values, { "bulk:text": { json: true }, "bulk:none": null });

  await envelope(await cf(`/bulk`, { method: "DELETE", headers: { "Content-Type": "application/json" }, body: JSON.stringify(["bulk:text"]) }), 200);
  await envelope(await cf(`/bulk/delete`, { method: "POST", body: JSON.stringify(["bulk:bin", "bulk:meta"]) }), 200);
  const left = await envelope(await cf(`/keys?prefix=bulk:`), 200);
  assert.deepEqual(left.result, []);

  await envelope(await cf(`/bulk`, { method: "PUT", body: "not json" }), 400);
  await envelope(await cf(`/bulk`, { method: "PUT", body: JSON.stringify({ key: "x" }) }), 400);
  await envelope(await cf(`/bulk`, { method: "PUT", body: JSON.stringify([{ key: "x", value: 1 }]) }), 400);
});

test("keys: prefix and real cursor pagination", async () => {
  const items = Array.from({ length: 25 }, (_, i) => ({ key: `page:${String(i).padStart(2, "0")}`, value: String(i) }));
  await envelope(await cf(`/bulk`, { method: "PUT", body: JSON.stringify(items) }), 200);
  await envelope(await cf(`/values/${esc("pagf")}`, { method: "PUT", body: "not in the prefix" }), 200);

  const names = [];
  let cursor = "";
  let pages = 0;
  do {
    const q = new URLSearchParams({ prefix: "page:", limit: "10", ...(cursor ? { cursor } : {}) });
    const page = await envelope(await cf(`/keys?${q}`), 200);
    pages++;
    assert.equal(page.result_info.count, page.result.length);
    names.push(...page.result.map((k) => k.name));
    cursor = page.result_info.cursor;
    assert.equal(typeof cursor, "string");
  } while (cursor !== "");
  assert.equal(pages, 3);
  assert.deepEqual(names, items.map((i) => i.key));

  const all = await envelope(await cf(`/keys`), 200);
  assert.ok(all.result.length >= 26 && all.result_info.cursor === "");
  await envelope(await cf(`/keys?limit=5`), 400);
  await envelope(await cf(`/keys?limit=1001`), 400);
});

test("the Worker sees what the API writes, and revocation at once", async () => {
  const random = "Q3v9xLm2pR7tYb1KdE0sWfHa8cNjU4oZ";
  let v = zlib.crc32(random);
  let sum = "";
  for (let i = 0; i < 6; i++, v = Math.floor(v / 62)) sum = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"[v % 62] + sum;
  const apiKey = `ntk_${random}${sum}`;
  const hash = createHash("sha256").update(apiKey).digest("hex");
  const origin = `http://127.0.0.1:${upstream.address().port}`;

  await envelope(
    await cf(`/values/${esc("routes")}`, {
      method: "PUT",
      body: JSON.stringify({ "/api/svc": { url: `${origin}/svc`, tags: [], auth: { type: "bearer", config: { token_ref: "/api/svc#UPSTREAM_KEY" } } } }),
    }),
    200,
  );
  await envelope(
    await cf(`/bulk`, {
      method: "PUT",
      body: JSON.stringify([
        { key: "secret:/api/svc#UPSTREAM_KEY", value: JSON.stringify({ value: "from-kv" }) },
        { key: `token:${hash}`, value: JSON.stringify({ name: "t", team_id: "x", scopes: ["*"], created_at: "2026-01-01T00:00:00Z", expires_at: null }) },
      ]),
    }),
    200,
  );
  const ok = await fetch(new URL("/api/svc/hello?x=1", lc.worker), { headers: { "X-API-Key": apiKey } });
  assert.equal(ok.status, 200);
  assert.deepEqual(await ok.json(), { url: "/svc/hello?x=1", auth: "Bearer from-kv" });

  await envelope(await cf(`/bulk/delete`, { method: "POST", body: JSON.stringify([`token:${hash}`]) }), 200);
  const revoked = await fetch(new URL("/api/svc/hello", lc.worker), { headers: { "X-API-Key": apiKey } });
  assert.equal(revoked.status, 401);
  assert.equal((await revoked.json()).error, "Invalid API Key");
});

test("faults: 429 with Retry-After, 500, drop, hang — for the next N matching calls", async () => {
  const add = async (rule) => {
    const res = await fetch(`${lc.admin}/faults`, { method: "POST", body: JSON.stringify(rule) });
    assert.equal(res.status, 200);
    return res.json();
  };
  await add({ kind: "429", count: 2, retry_after: 3 });
  for (let i = 0; i < 2; i++) {
    const res = await cf(`/keys`);
    assert.equal(res.headers.get("retry-after"), "3");
    assert.equal((await envelope(res, 429)).errors[0].code, 971);
  }
  await envelope(await cf(`/keys`), 200);

  await add([{ kind: "500" }, { kind: "503", method: "PUT", path: "/bulk" }]);
  await envelope(await cf(`/values/${esc("routes")}`), 500);
  await envelope(await cf(`/keys`), 200, true); // the PUT-only rule does not catch a GET
  await envelope(await cf(`/bulk`, { method: "PUT", body: "[]" }), 503);

  await add({ kind: "drop" });
  await assert.rejects(cf(`/keys`), /fetch failed/);

  await add({ kind: "hang" });
  await assert.rejects(cf(`/keys`, { signal: AbortSignal.timeout(300) }), /timeout|aborted/i);

  await add({ kind: "hang", hang_ms: 300 }); // a slow API: the call still happens
  const started = Date.now();
  await envelope(await cf(`/values/${esc("slow")}`, { method: "PUT", body: "late" }), 200);
  assert.ok(Date.now() - started >= 280);
  assert.equal(await (await cf(`/values/${esc("slow")}`)).text(), "late");

  const pending = await add({ kind: "429", count: 5 });
  assert.equal(pending.pending[0].count, 5);
  assert.deepEqual(await (await fetch(`${lc.admin}/faults`, { method: "DELETE" })).json(), { pending: [] });
  await envelope(await cf(`/keys`), 200);

  const bad = await fetch(`${lc.admin}/faults`, { method: "POST", body: JSON.stringify({ kind: "teapot" }) });
  assert.equal(bad.status, 400);
});

test("the admin request log records calls with decoded keys and statuses", async () => {
  await fetch(`${lc.admin}/requests`, { method: "DELETE" });
  await cf(`/values/${esc("token:log")}`, { method: "PUT", body: "x" });
  await cf(`/values/${esc("token:missing")}`);
  await fetch(base + "/keys");
  const { requests } = await (await fetch(`${lc.admin}/requests`)).json();
  assert.deepEqual(
    requests.map((r) => [r.method, r.key ?? null, r.status]),
    [
      ["PUT", "token:log", 200],
      ["GET", "token:missing", 404],
      ["GET", null, 401],
    ],
  );
  assert.ok(requests.every((r) => r.path.startsWith(`/accounts/${ACCOUNT}/`)));
});
