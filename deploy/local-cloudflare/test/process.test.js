// The local-cloudflare process as a Go test runs it: one JSON line on
// stdout, nothing else there, clean exit on SIGTERM/SIGINT and when stdin
// closes, configuration from flags and the environment.

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { createHash } from "node:crypto";
import net from "node:net";

const SERVER = fileURLToPath(new URL("../server.js", import.meta.url));

/** Starts the CLI with stdin as a pipe; resolves with the parsed first stdout line. */
async function start(args = [], env = {}) {
  const child = spawn(process.execPath, [SERVER, "--api-port", "0", "--worker-port", "0", ...args], {
    stdio: ["pipe", "pipe", "pipe"],
    env: { ...process.env, ...env },
  });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (d) => (stdout += d));
  child.stderr.setEncoding("utf8").on("data", (d) => (stderr += d));
  const exited = once(child, "exit");
  const deadline = Date.now() + 15_000;
  while (!stdout.includes("\n")) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`no start-up line; stderr:\n${stderr}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return { child, exited, info: JSON.parse(stdout.split("\n")[0]), stdout: () => stdout, stderr: () => stderr };
}

/** Waits for the exit, failing after `ms`. */
async function exitOf(p, ms = 10_000) {
  const timer = setTimeout(() => p.child.kill("SIGKILL"), ms);
  const [code, signal] = await p.exited;
  clearTimeout(timer);
  if (code !== 0) process.stderr.write(`local-cloudflare exited with ${code ?? signal}; its stderr:\n${p.stderr()}\n`);
  return { code, signal };
}

test("prints one JSON line, keeps stdout clean, exits 0 on SIGTERM", async () => {
  const p = await start([], { CF_API_TOKEN: "env-token", CF_ACCOUNT_ID: "acc", CF_KV_NAMESPACE_ID: "ns" });
  try {
    assert.match(p.info.cloudflare_api, /^http:\/\/127\.0\.0\.1:\d+\/client\/v4$/);
    assert.match(p.info.worker, /^http:\/\/127\.0\.0\.1:\d+\/$/);
    assert.equal(p.info.account_id, "acc");
    assert.equal(p.info.namespace_id, "ns");
    assert.equal("compat_worker" in p.info, false, "no compat Worker unless asked for");

    // The CF_* environment configures the API.
    const res = await fetch(`${p.info.cloudflare_api}/accounts/acc/storage/kv/namespaces/ns/keys`, { headers: { Authorization: "Bearer env-token" } });
    assert.equal(res.status, 200);
    // The Worker answers, and what it logs goes to stderr, not stdout.
    const hash = createHash("sha256").update("anything").digest("hex");
    await fetch(`${p.info.cloudflare_api}/accounts/acc/storage/kv/namespaces/ns/values/token%3A${hash}`, {
      method: "PUT",
      headers: { Authorization: "Bearer env-token" },
      body: "{not json",
    });
    const w = await fetch(new URL("/api/x", p.info.worker), { headers: { "X-API-Key": "anything" } });
    assert.equal(w.status, 401);
    const until = Date.now() + 3000;
    while (!p.stderr().includes("is not valid JSON") && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    assert.match(p.stderr(), /KV value token:[0-9a-f]{64} is not valid JSON/);
  } finally {
    p.child.kill("SIGTERM");
  }
  assert.deepEqual(await exitOf(p), { code: 0, signal: null });
  assert.equal(p.stdout().trim().split("\n").length, 1, `stdout: ${p.stdout()}`);
  assert.match(p.stderr(), /stopping \(SIGTERM\)/);
});

/** Waits until the process answers on its admin API: up and serving, as when a person presses Ctrl-C. */
async function serving(p) {
  assert.equal((await fetch(`${p.info.admin}/health`)).status, 200);
}

test("exits 0 on SIGINT", async () => {
  const p = await start();
  await serving(p);
  p.child.kill("SIGINT");
  assert.deepEqual(await exitOf(p), { code: 0, signal: null });
});

test("exits when its stdin closes (the parent died)", async () => {
  const p = await start();
  await serving(p);
  p.child.stdin.end();
  assert.deepEqual(await exitOf(p), { code: 0, signal: null });
  assert.match(p.stderr(), /stdin closed/);
});

test("fault rules from LOCAL_CF_FAULTS and Worker vars from --var", async () => {
  const p = await start(["--var", "NEGATIVE_CACHE_TTL_MS=0"], {
    CF_API_TOKEN: "t",
    CF_ACCOUNT_ID: "a",
    CF_KV_NAMESPACE_ID: "n",
    LOCAL_CF_FAULTS: JSON.stringify([{ kind: "429", count: 1, retry_after: 2 }]),
  });
  try {
    const url = `${p.info.cloudflare_api}/accounts/a/storage/kv/namespaces/n/keys`;
    const first = await fetch(url, { headers: { Authorization: "Bearer t" } });
    assert.equal(first.status, 429);
    assert.equal(first.headers.get("retry-after"), "2");
    assert.equal((await fetch(url, { headers: { Authorization: "Bearer t" } })).status, 200);
  } finally {
    p.child.kill("SIGTERM");
  }
  assert.equal((await exitOf(p)).code, 0);
});

/** Resolves with the error code of a connection attempt to `url` ("ECONNREFUSED" once nobody listens), or "open". */
function connectTo(url) {
  const u = new URL(url);
  return new Promise((resolve) => {
    const s = net.connect(Number(u.port), u.hostname, () => {
      s.destroy();
      resolve("open");
    });
    s.on("error", (err) => resolve(err.code));
  });
}

test("--compat-worker-port: the v2.7 Worker in the start-up line, on the same KV; SIGTERM stops every socket", async () => {
  const p = await start(["--compat-worker-port", "0"], { CF_API_TOKEN: "t", CF_ACCOUNT_ID: "a", CF_KV_NAMESPACE_ID: "n", LOCAL_CF_COMPAT_WORKER_PORT: "" });
  let urls;
  try {
    assert.deepEqual(Object.keys(p.info), ["cloudflare_api", "worker", "compat_worker", "admin", "account_id", "namespace_id"]);
    assert.match(p.info.compat_worker, /^http:\/\/127\.0\.0\.1:\d+\/$/);
    assert.notEqual(p.info.compat_worker, p.info.worker);
    urls = [p.info.worker, p.info.compat_worker, p.info.cloudflare_api];

    // A token written through the API (v6 style: raw "/"-free key) is valid for the compat Worker at once;
    // with no routes yet, v2.7 answers its own "Routes Not Configured".
    const key = "any-v27-key";
    const hash = createHash("sha256").update(key).digest("hex");
    const put = await fetch(`${p.info.cloudflare_api}/accounts/a/storage/kv/namespaces/n/values/token%3A${hash}`, {
      method: "PUT",
      headers: { Authorization: "Bearer t" },
      body: JSON.stringify({ name: "x", team_id: "x", scopes: ["*"], created_at: "2026-01-01T00:00:00Z", expires_at: null }),
    });
    assert.equal(put.status, 200);
    const res = await fetch(new URL("/api/x", p.info.compat_worker), { headers: { "X-API-Key": key } });
    assert.equal(res.status, 500);
    assert.equal((await res.json()).error, "Routes Not Configured");
    for (const u of urls) assert.equal(await connectTo(u), "open", u);
  } finally {
    p.child.kill("SIGTERM");
  }
  assert.deepEqual(await exitOf(p), { code: 0, signal: null });
  assert.equal(p.stdout().trim().split("\n").length, 1, `stdout: ${p.stdout()}`);
  for (const u of urls) assert.equal(await connectTo(u), "ECONNREFUSED", `${u} still open after exit`);
});

test("LOCAL_CF_COMPAT_WORKER_PORT starts the compat Worker too", async () => {
  const p = await start([], { LOCAL_CF_COMPAT_WORKER_PORT: "0" });
  try {
    assert.match(p.info.compat_worker, /^http:\/\/127\.0\.0\.1:\d+\/$/);
    const res = await fetch(new URL("/api/x", p.info.compat_worker));
    assert.equal(res.status, 401);
    assert.equal((await res.json()).error, "Missing API Key");
  } finally {
    p.child.kill("SIGTERM");
  }
  assert.deepEqual(await exitOf(p), { code: 0, signal: null });
});

test("bad --compat-worker-port / LOCAL_CF_COMPAT_WORKER_PORT: exit 2 with a message", async () => {
  const cases = [
    [["--compat-worker-port", "abc"], {}, /--compat-worker-port must be a port number \(0-65535\), got "abc"/],
    [["--compat-worker-port=-1"], {}, /--compat-worker-port must be a port number/],
    [[], { LOCAL_CF_COMPAT_WORKER_PORT: "70000" }, /--compat-worker-port must be a port number \(0-65535\), got "70000"/],
    [["--compat-worker-port", "8787"], {}, /--compat-worker-port 8787 is already the Worker port/],
    [["--compat-worker-port"], {}, /--compat-worker-port/],
  ];
  await Promise.all(
    cases.map(async ([args, env, message]) => {
      const child = spawn(process.execPath, [SERVER, ...args], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } });
      let stdout = "";
      let stderr = "";
      child.stdout.setEncoding("utf8").on("data", (d) => (stdout += d));
      child.stderr.setEncoding("utf8").on("data", (d) => (stderr += d));
      const [code] = await once(child, "exit");
      assert.equal(code, 2, `${args} ${JSON.stringify(env)}: ${stderr}`);
      assert.match(stderr, message);
      assert.match(stderr, /Usage: node server.js/);
      assert.equal(stdout, "");
    }),
  );
});

test("bad flags: exit 2 with the usage on stderr", async () => {
  const child = spawn(process.execPath, [SERVER, "--api-port", "nope"], { stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.setEncoding("utf8").on("data", (d) => (stderr += d));
  const [code] = await once(child, "exit");
  assert.equal(code, 2);
  assert.match(stderr, /--api-port must be a port number/);
  assert.match(stderr, /Usage: node server.js/);
});
