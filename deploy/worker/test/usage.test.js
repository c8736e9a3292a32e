// Usage reporting: events, batching, HMAC signatures, retries; and the
// per-isolate negative cache's lifetime. Run in workerd (Miniflare).

import { test, describe, before, after, beforeEach } from "node:test";
import assert from "node:assert/strict";
import { Backend, startWorker, newToken, badChecksumToken, sha256Hex, isoIn } from "./support/harness.js";

const SECRET = "usage-ingest-secret-for-tests";
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** Routes and tokens every instance gets. */
async function seed(gw, backend) {
  await gw.putRoutes({
    "/api/image": { url: `${backend.origin}/image`, tags: ["media"] },
    "/api/other": { url: `${backend.origin}/other`, tags: [] },
    "/api/nocreds": { url: `${backend.origin}/x`, tags: [], auth: { type: "bearer", config: { token_ref: "/api/nocreds#ABSENT" } } },
    "/api/fail": { url: `${backend.origin}/redirect`, tags: [] },
  });
  const tokens = { all: newToken(), image: newToken(), expired: newToken() };
  await gw.putToken(tokens.all, { scopes: ["*"], expires_at: null });
  await gw.putToken(tokens.image, { scopes: ["image"], expires_at: isoIn(3_600_000) });
  await gw.putToken(tokens.expired, { scopes: ["*"], expires_at: isoIn(-1000, { naive: true }) });
  return tokens;
}

describe("signed, batched usage reports", () => {
  let backend, gw, tokens;
  before(async () => {
    backend = await new Backend({ ingestSecret: SECRET }).start();
    gw = await startWorker({
      bindings: {
        TOKEN_MANAGER_BACKEND: backend.origin + "/",
        USAGE_INGEST_SECRET: SECRET,
        USAGE_FLUSH_DELAY_MS: "150",
        USAGE_RETRY_BASE_MS: "50",
      },
    });
    tokens = await seed(gw, backend);
  });
  after(async () => {
    await gw?.close();
    await backend?.close();
  });
  beforeEach(() => {
    backend.usagePosts.length = 0;
    backend.usageReplies.length = 0;
  });

  const call = (path, key, init = {}) => gw.fetch(path, { ...init, headers: { "X-API-Key": key, ...init.headers } });

  test("one event per forwarded request, with every field, signed over timestamp and body", async () => {
    const started = Date.now();
    const res = await call("/api/image/pic?x=1", tokens.all, {
      method: "POST",
      body: "{}",
      headers: { "User-Agent": "n8n-test", "CF-Connecting-IP": "203.0.113.7" },
    });
    assert.equal(res.status, 200);
    await res.body?.cancel();
    await backend.waitFor(() => backend.usagePosts.length === 1, 5000, "the usage post");
    const post = backend.usagePosts[0];
    assert.equal(post.headers["content-type"], "application/json");
    assert.match(post.headers["x-tm-timestamp"], /^\d{10}$/);
    assert.match(post.headers["x-tm-signature"], /^v1=[0-9a-f]{64}$/);
    assert.equal(post.signatureValid, true, "the backend can verify the HMAC");
    assert.deepEqual(Object.keys(post.json), ["events"]);
    const [event] = post.json.events;
    assert.match(event.event_id, UUID);
    assert.equal(event.token_hash, sha256Hex(tokens.all));
    assert.equal(event.route, "/api/image");
    assert.ok(event.timestamp >= started - 1000 && event.timestamp <= Date.now() + 1000, "epoch ms");
    assert.equal(event.response_status, 200);
    assert.ok(Number.isInteger(event.response_time_ms) && event.response_time_ms >= 0);
    assert.equal(event.ip_address, "203.0.113.7");
    assert.equal(event.user_agent, "n8n-test");
    assert.equal(event.request_method, "POST");
    assert.equal(event.error_message, null);
  });

  test("non-2xx upstream answers carry error_message HTTP <status>", async () => {
    const res = await call("/api/fail?status=302&to=/elsewhere", tokens.all, { redirect: "manual" });
    assert.equal(res.status, 302);
    await backend.waitFor(() => backend.events.length === 1);
    assert.equal(backend.events[0].response_status, 302);
    assert.equal(backend.events[0].error_message, "HTTP 302");
  });

  test("events of concurrent requests share a post", async () => {
    const n = 8;
    const responses = await Promise.all(Array.from({ length: n }, (_, i) => call(`/api/image/${i}`, tokens.all)));
    for (const r of responses) await r.body?.cancel();
    await backend.waitFor(() => backend.events.length === n, 5000, `${n} events`);
    assert.ok(backend.usagePosts.length < n, `${backend.usagePosts.length} posts for ${n} events`);
    assert.ok(backend.usagePosts.every((p) => p.signatureValid));
    assert.equal(new Set(backend.events.map((e) => e.event_id)).size, n, "distinct event ids");
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(backend.events.length, n, "nothing posted twice");
  });

  test("gateway rejections of a known token are reported and marked; unknown keys are not", async () => {
    const expired = await call("/api/image/x", tokens.expired);
    const denied = await call("/api/other/x", tokens.image);
    const notFound = await call("/nowhere", tokens.all);
    const noCreds = await call("/api/nocreds/x", tokens.all);
    assert.deepEqual([expired.status, denied.status, notFound.status, noCreds.status], [401, 403, 404, 502]);
    await call("/api/image/x", "unknown-key");
    await call("/api/image/x", badChecksumToken());
    await gw.fetch("/api/image/x");
    await backend.waitFor(() => backend.events.length >= 4, 5000, "4 events");
    await new Promise((r) => setTimeout(r, 300));
    const byStatus = Object.fromEntries(backend.events.map((e) => [e.response_status, e]));
    assert.equal(backend.events.length, 4, "missing, unknown and malformed keys are not reported");
    assert.deepEqual(
      [401, 403, 404, 502].map((s) => [byStatus[s].route, byStatus[s].error_message, byStatus[s].response_time_ms]),
      [
        [null, "gateway: Token Expired", 0],
        ["/api/other", "gateway: Permission Denied", 0],
        [null, "gateway: Route Not Found", 0],
        ["/api/nocreds", "gateway: Bad Gateway", 0],
      ],
    );
    assert.equal(byStatus[401].token_hash, sha256Hex(tokens.expired));
  });

  test("a 503 from the backend is retried with the same events, freshly signed", async () => {
    backend.usageReplies.push(503);
    await (await call("/api/image/x", tokens.all)).body?.cancel();
    await backend.waitFor(() => backend.usagePosts.length === 2, 5000, "the retry");
    const [first, second] = backend.usagePosts;
    assert.equal(second.body, first.body, "same body, same event ids: the backend deduplicates");
    assert.ok(first.signatureValid && second.signatureValid);
    assert.ok(second.at - first.at >= 20, "after a backoff");
  });

  test("429 and dropped connections are retried; other 4xx are not", async () => {
    backend.usageReplies.push(429, "drop");
    await (await call("/api/image/x", tokens.all)).body?.cancel();
    await backend.waitFor(() => backend.usagePosts.length === 3, 4000, "two retries");

    backend.usagePosts.length = 0;
    backend.usageReplies.push(400);
    await (await call("/api/image/x", tokens.all)).body?.cancel();
    await backend.waitFor(() => backend.usagePosts.length === 1);
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(backend.usagePosts.length, 1, "a 400 is final");
    assert.match(gw.logText(), /rejected 1 event\(s\) with HTTP 400/);
  });

  test("gives up after three attempts", async () => {
    backend.usageReplies.push(500, 502, 503, 504);
    await (await call("/api/image/x", tokens.all)).body?.cancel();
    await backend.waitFor(() => backend.usagePosts.length === 3, 4000, "three attempts");
    await new Promise((r) => setTimeout(r, 600));
    assert.equal(backend.usagePosts.length, 3);
    assert.match(gw.logText(), /dropped 1 event\(s\) after retries/);
  });
});

describe("a full batch is sent at once", () => {
  let backend, gw, tokens;
  before(async () => {
    backend = await new Backend({ ingestSecret: SECRET }).start();
    gw = await startWorker({
      bindings: { TOKEN_MANAGER_BACKEND: backend.origin, USAGE_INGEST_SECRET: SECRET, USAGE_BATCH_MAX: "3", USAGE_FLUSH_DELAY_MS: "20000" },
    });
    tokens = await seed(gw, backend);
  });
  after(async () => {
    await gw?.close();
    await backend?.close();
  });

  test("USAGE_BATCH_MAX events go out without waiting for the flush delay", async () => {
    const started = Date.now();
    const responses = await Promise.all([1, 2, 3].map((i) => gw.fetch(`/api/image/${i}`, { headers: { "X-API-Key": tokens.all } })));
    for (const r of responses) await r.body?.cancel();
    await backend.waitFor(() => backend.usagePosts.length === 1, 5000, "the full batch");
    assert.ok(Date.now() - started < 5000);
    assert.equal(backend.usagePosts[0].json.events.length, 3);
    assert.equal(backend.usagePosts[0].signatureValid, true);
  });
});

describe("without USAGE_INGEST_SECRET (v2.7 compatibility)", () => {
  let backend, gw, tokens;
  before(async () => {
    backend = await new Backend().start();
    gw = await startWorker({
      bindings: { TOKEN_MANAGER_BACKEND: backend.origin, USAGE_FLUSH_DELAY_MS: "50", NEGATIVE_CACHE_TTL_MS: "1000" },
    });
    tokens = await seed(gw, backend);
  });
  after(async () => {
    await gw?.close();
    await backend?.close();
  });

  test("events are posted bare and unsigned, one per post, with a warning logged once", async () => {
    const responses = await Promise.all([1, 2].map((i) => gw.fetch(`/api/image/${i}`, { headers: { "X-API-Key": tokens.all } })));
    for (const r of responses) await r.body?.cancel();
    await backend.waitFor(() => backend.usagePosts.length === 2, 5000, "two posts");
    await (await gw.fetch(`/api/image/3`, { headers: { "X-API-Key": tokens.all } })).body?.cancel();
    await backend.waitFor(() => backend.usagePosts.length === 3, 5000, "third post");
    for (const post of backend.usagePosts) {
      assert.equal(post.headers["x-tm-signature"], undefined);
      assert.equal(post.headers["x-tm-timestamp"], undefined);
      assert.equal(post.json.token_hash, sha256Hex(tokens.all), "the v2.7 single-event body");
      assert.equal(post.json.route, "/api/image");
    }
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(gw.logText().match(/USAGE_INGEST_SECRET is not set/g)?.length, 1);
  });

  test("the negative cache forgets an unknown key after NEGATIVE_CACHE_TTL_MS", async () => {
    const key = newToken();
    assert.equal((await gw.fetch("/api/image/x", { headers: { "X-API-Key": key } })).status, 401);
    await gw.putToken(key, { scopes: ["*"], expires_at: null });
    assert.equal((await gw.fetch("/api/image/x", { headers: { "X-API-Key": key } })).status, 401, "still cached");
    await new Promise((r) => setTimeout(r, 1100));
    const res = await gw.fetch("/api/image/x", { headers: { "X-API-Key": key } });
    assert.equal(res.status, 200);
    await res.body?.cancel();
  });
});
