// KV values in the shapes the Go token service writes — RFC 3339 "Z"
// timestamps (Go's RFC3339Nano, up to nanoseconds), extra fields on tokens,
// routes and secrets — must still work with the v2.7 Worker that is deployed
// today (compat/v27-worker.js, contract §4 to the letter) and with this
// project's Worker. Each case runs against both. (The end-to-end version,
// with KV written by the real token service, runs the same stand-in in
// deploy/local-cloudflare with --compat-worker-port.)

import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Backend, startWorker, newToken, legacyToken, sha256Hex } from "./support/harness.js";

/** Go: time.Now().UTC().Add(d).Format(time.RFC3339Nano) — nanoseconds, trailing zeros trimmed, "Z". */
function goRFC3339Nano(deltaMs) {
  return new Date(Date.now() + deltaMs).toISOString().replace(/\.(\d{3})Z$/, ".$1456789Z");
}

/**
 * `token:<hash>` as the Go token service writes it: the contract's fields
 * plus new ones (which v2.7 ignores).
 */
function goToken(scopes, expiresInMs) {
  return {
    name: "n8n-image-workflow",
    team_id: "backend-team",
    scopes,
    created_at: goRFC3339Nano(-86_400_000),
    expires_at: expiresInMs === null ? null : goRFC3339Nano(expiresInMs),
    status: "active",
    token_id: "42",
    key_version: 2,
    updated_at: goRFC3339Nano(0),
  };
}

/** `routes` as the Go token service writes it: entries carry extra fields, auth configs too. */
function goRoutes(origin) {
  const extra = (id) => ({ id, name: `route ${id}`, description: "written by the Go token service", updated_at: goRFC3339Nano(0) });
  return {
    "/api/image": { url: `${origin}/image-svc`, tags: ["media"], ...extra("1") },
    "/api/openai": {
      url: `${origin}/openai/v1`,
      tags: ["ai", "external"],
      auth: { type: "bearer", config: { token_ref: "/api/openai#OPENAI_API_KEY", secret_version: 3 } },
      ...extra("2"),
    },
    "/api/intern": {
      url: `${origin}/intern`,
      tags: [],
      auth: { type: "api-key", config: { key_ref: "/api/intern#INTERNAL_KEY", header_name: "X-Internal-Key" } },
      ...extra("3"),
    },
    "/api/legacy": {
      url: `${origin}/legacy`,
      tags: ["media"],
      auth: { type: "basic", config: { username_ref: "/api/legacy#SVC_USER", password_ref: "/api/legacy#SVC_PASS" } },
      ...extra("4"),
    },
    "/api/plain": `${origin}/plain`,
  };
}

/** `secret:<route path>#<name>` as the Go token service writes it. */
const goSecret = (value) => JSON.stringify({ value, route_id: "2", updated_at: goRFC3339Nano(0) });

for (const [name, script] of [
  ["v2.7 Worker (contract §4)", "compat/v27-worker.js"],
  ["this project's Worker", "src/index.js"],
]) {
  describe(name, () => {
    let backend, gw;
    const tokens = {};

    before(async () => {
      backend = await new Backend({ ingestSecret: "s" }).start();
      gw = await startWorker({
        script,
        bindings: {
          TOKEN_MANAGER_BACKEND: backend.origin,
          ...(script.startsWith("src/") ? { USAGE_INGEST_SECRET: "s", USAGE_FLUSH_DELAY_MS: "10" } : {}),
        },
      });
      await gw.kv.put("routes", JSON.stringify(goRoutes(backend.origin)));
      await gw.kv.put("secret:/api/openai#OPENAI_API_KEY", goSecret("sk-proj-openai"));
      await gw.kv.put("secret:/api/intern#INTERNAL_KEY", goSecret("internal-key"));
      await gw.kv.put("secret:/api/legacy#SVC_USER", goSecret("svc"));
      await gw.kv.put("secret:/api/legacy#SVC_PASS", goSecret("pass"));
      const put = async (label, key, value) => {
        tokens[label] = key;
        await gw.kv.put("token:" + sha256Hex(key), JSON.stringify(value));
      };
      await put("all", newToken(), goToken(["*"], 90 * 86_400_000));
      await put("never", newToken(), goToken(["*"], null));
      await put("expired", newToken(), goToken(["*"], -60_000));
      await put("expiredJustNow", newToken(), goToken(["*"], -1500));
      await put("service", newToken(), goToken(["openai"], 3_600_000));
      await put("tag", newToken(), goToken(["tag:media"], 3_600_000));
      await put("migrated", legacyToken(), goToken(["image"], 3_600_000));
    });
    after(async () => {
      await gw?.close();
      await backend?.close();
    });

    const call = (path, key) => gw.fetch(path, { headers: { "X-API-Key": key, "User-Agent": "compat-test" } });

    test("tokens with RFC 3339 Z timestamps and extra fields are accepted until they expire", async () => {
      for (const label of ["all", "never", "migrated"]) {
        const res = await call("/api/image/pic?s=1", tokens[label]);
        assert.equal(res.status, 200, label);
        assert.equal((await res.json()).url, "/image-svc/pic?s=1");
      }
      for (const label of ["expired", "expiredJustNow"]) {
        const res = await call("/api/image/pic", tokens[label]);
        assert.equal(res.status, 401, label);
        assert.equal((await res.json()).error, "Token Expired");
      }
    });

    test("scopes: *, service and tag", async () => {
      assert.equal((await call("/api/openai/chat", tokens.service)).status, 200);
      assert.equal((await call("/api/image/x", tokens.tag)).status, 200);
      assert.equal((await call("/api/legacy/x", tokens.tag)).status, 200);
      const denied = await call("/api/intern/x", tokens.service);
      assert.equal(denied.status, 403);
      assert.equal((await denied.json()).error, "Permission Denied");
      assert.equal((await call("/api/plain/x", tokens.all)).status, 200, "legacy string route");
    });

    test("backend credentials from KV secrets with extra fields are injected", async () => {
      const bearer = await (await call("/api/openai/chat/completions", tokens.all)).json();
      assert.equal(bearer.url, "/openai/v1/chat/completions");
      assert.equal(bearer.headers.authorization, "Bearer sk-proj-openai");
      const apiKey = await (await call("/api/intern/x", tokens.all)).json();
      assert.equal(apiKey.headers["x-internal-key"], "internal-key");
      const basic = await (await call("/api/legacy/x", tokens.all)).json();
      assert.equal(basic.headers.authorization, "Basic " + Buffer.from("svc:pass").toString("base64"));
    });

    if (script.startsWith("compat/")) {
      test("the stand-in has v2.7's documented bugs (so it is not this project's Worker in disguise)", async () => {
        const prefix = await call("/api/imageXYZ/x", tokens.all);
        assert.equal((await prefix.json()).url, "/image-svcXYZ/x", "string-prefix matching");
        const leaked = await (await call("/api/image/x", tokens.all)).json();
        assert.equal(leaked.headers["x-api-key"], tokens.all, "the client's key is forwarded");
        const denied = await (await call("/api/intern/x", tokens.service)).json();
        assert.match(denied.message, /Available scopes: openai/);
      });
    }

    test("usage is reported for the token's hash", async () => {
      await backend.waitFor(() => backend.events.some((e) => e.token_hash === sha256Hex(tokens.migrated)), 5000, "usage event");
      const event = backend.events.find((e) => e.token_hash === sha256Hex(tokens.all) && e.route === "/api/openai");
      assert.ok(event, "event for /api/openai");
      assert.equal(event.user_agent, "compat-test");
      assert.equal(event.response_status, 200);
      if (script.startsWith("compat/")) {
        assert.ok(backend.usagePosts.every((p) => p.json.token_hash && p.signatureValid === null), "v2.7: bare, unsigned");
      } else {
        assert.ok(backend.usagePosts.every((p) => Array.isArray(p.json.events) && p.signatureValid === true), "signed batches");
      }
    });
  });
}
