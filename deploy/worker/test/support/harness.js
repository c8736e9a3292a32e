// Test harness: runs a Worker in workerd through Miniflare, next to a real
// HTTP server on 127.0.0.1 that plays every backend (and the Token Manager
// usage endpoint) and records what it receives.

import http from "node:http";
import { readFileSync } from "node:fs";
import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { fileURLToPath } from "node:url";
import { EventEmitter } from "node:events";
import zlib from "node:zlib";
import { Miniflare } from "miniflare";

export const WORKER_DIR = fileURLToPath(new URL("../..", import.meta.url));

/** The compatibility_date of wrangler.toml, so tests run what is deployed. */
export function compatibilityDate() {
  const toml = readFileSync(new URL("../../wrangler.toml", import.meta.url), "utf8");
  const m = /^compatibility_date\s*=\s*"([^"]+)"/m.exec(toml);
  if (!m) throw new Error("wrangler.toml has no compatibility_date");
  return m[1];
}

// ---- tokens (an implementation independent of the Worker's, on Node's zlib.crc32) ----

const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

function randomBase62(n) {
  let out = "";
  while (out.length < n) {
    for (const b of randomBytes(n)) if (b < 248 && out.length < n) out += BASE62[b % 62];
  }
  return out;
}

/** @param {string} random */
export function base62Checksum(random) {
  let v = zlib.crc32(random);
  let out = "";
  for (let i = 0; i < 6; i++) {
    out = BASE62[v % 62] + out;
    v = Math.floor(v / 62);
  }
  return out;
}

/** A new-format token: ntk_ + 32 base62 + 6-char base62 CRC32. */
export function newToken() {
  const random = randomBase62(32);
  return "ntk_" + random + base62Checksum(random);
}

/** The shape of a new-format token with a wrong checksum. */
export function badChecksumToken() {
  const t = newToken();
  const last = t.at(-1);
  return t.slice(0, -1) + (last === "0" ? "1" : "0");
}

/** A v2.7 token: ntk_ + secrets.token_urlsafe(32) (43 base64url chars). */
export function legacyToken() {
  return "ntk_" + randomBytes(32).toString("base64url");
}

export const sha256Hex = (s) => createHash("sha256").update(s, "utf8").digest("hex");

// ---- the backend server ----

/**
 * One node http server for every upstream of the tests:
 *   POST /api/usage-log  the usage endpoint (records, verifies signatures, answers from `usageReplies`)
 *   /hang…               never answers
 *   /redirect…?status=&to=  answers 3xx with Location `to` ("{self}" = this server's origin)
 *   /stream…             emits "chunk" for every body chunk as it arrives
 *   anything else        echoes the request as JSON
 */
export class Backend extends EventEmitter {
  constructor({ ingestSecret = "" } = {}) {
    super();
    this.ingestSecret = ingestSecret;
    /** @type {{method: string, url: string, headers: http.IncomingHttpHeaders, body: Buffer}[]} */
    this.requests = [];
    /** @type {{headers: http.IncomingHttpHeaders, body: string, json: any, signatureValid: boolean | null, at: number}[]} */
    this.usagePosts = [];
    /** replies to the next usage posts: a status, or "drop" to cut the connection ([503] = fail once); then 200 */
    this.usageReplies = [];
    this.server = http.createServer((req, res) => this.#handle(req, res));
    this.sockets = new Set();
    this.server.on("connection", (s) => {
      this.sockets.add(s);
      s.on("close", () => this.sockets.delete(s));
    });
  }

  async start() {
    await new Promise((r) => this.server.listen(0, "127.0.0.1", r));
    this.origin = `http://127.0.0.1:${this.server.address().port}`;
    return this;
  }

  async close() {
    for (const s of this.sockets) s.destroy();
    await new Promise((r) => this.server.close(r));
  }

  /** All usage events received so far, in order. */
  get events() {
    return this.usagePosts.flatMap((p) => (Array.isArray(p.json?.events) ? p.json.events : [p.json]));
  }

  /** Waits until `predicate()` holds (polling), or fails after `ms`. */
  async waitFor(predicate, ms = 5000, what = "condition") {
    const until = Date.now() + ms;
    while (!predicate()) {
      if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  #handle(req, res) {
    const url = new URL(req.url, this.origin);
    if (url.pathname.startsWith("/hang")) {
      this.requests.push({ method: req.method, url: req.url, headers: req.headers, body: Buffer.alloc(0) });
      return; // never answer
    }
    if (url.pathname.startsWith("/stream")) {
      req.on("data", (c) => this.emit("chunk", c));
    }
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      if (req.method === "POST" && url.pathname === "/api/usage-log") return this.#usage(req, res, body);
      this.requests.push({ method: req.method, url: req.url, headers: req.headers, body });
      if (url.pathname.startsWith("/redirect")) {
        const to = (url.searchParams.get("to") ?? "/").replace("{self}", this.origin);
        res.writeHead(Number(url.searchParams.get("status") ?? 302), {
          Location: to,
          "Set-Cookie": "session=abc; Path=/",
          "X-Upstream": "redirect",
        });
        return res.end("moved");
      }
      res.writeHead(200, { "Content-Type": "application/json", "X-Upstream": "echo" });
      res.end(
        JSON.stringify({
          method: req.method,
          url: req.url,
          headers: req.headers,
          bodyLength: body.length,
          bodySha256: createHash("sha256").update(body).digest("hex"),
          body: body.length <= 4096 ? body.toString("utf8") : null,
        }),
      );
    });
  }

  #usage(req, res, body) {
    const text = body.toString("utf8");
    let json = null;
    try {
      json = JSON.parse(text);
    } catch {}
    this.usagePosts.push({ headers: req.headers, body: text, json, signatureValid: this.#verify(req.headers, text), at: Date.now() });
    const status = this.usageReplies.shift() ?? 200;
    if (status === "drop") return req.socket.destroy(); // a network error for the client
    const headers = { "Content-Type": "application/json" };
    if (status === 429) headers["Retry-After"] = "0";
    res.writeHead(status, headers);
    res.end(JSON.stringify(status === 200 ? { status: "logged" } : { detail: "nope" }));
  }

  /** The verification the Go usage service performs: HMAC-SHA256(secret, "<ts>.<body>"), fresh timestamp. */
  #verify(headers, body) {
    const ts = headers["x-tm-timestamp"];
    const sig = headers["x-tm-signature"];
    if (!ts || !sig) return null;
    if (!/^\d+$/.test(ts) || Math.abs(Date.now() / 1000 - Number(ts)) > 300) return false;
    if (!sig.startsWith("v1=")) return false;
    const want = createHmac("sha256", this.ingestSecret).update(`${ts}.${body}`).digest();
    const got = Buffer.from(sig.slice(3), "hex");
    return got.length === want.length && timingSafeEqual(got, want);
  }
}

// ---- the Worker ----

/**
 * Starts a Worker in workerd. By default the gateway behind the probe entry
 * (test/support/probe-entry.js), which reports the Worker's KV reads.
 * @param {{script?: string, bindings?: Record<string, string>}} options
 */
export async function startWorker({ script = "test/support/probe-entry.js", bindings = {} } = {}) {
  const logs = [];
  const collect = (stream) => {
    stream.setEncoding("utf8");
    stream.on("data", (d) => logs.push(d));
  };
  const mf = new Miniflare({
    modules: true,
    modulesRoot: WORKER_DIR,
    scriptPath: WORKER_DIR + script,
    modulesRules: [{ type: "ESModule", include: ["**/*.js"] }],
    compatibilityDate: compatibilityDate(),
    cf: false, // a placeholder Request.cf: never fetch Cloudflare's
    kvNamespaces: { TOKENS: "tokens-test" },
    bindings,
    handleRuntimeStdio: (stdout, stderr) => {
      collect(stdout);
      collect(stderr);
    },
  });
  const kv = await mf.getKVNamespace("TOKENS");
  return {
    mf,
    kv,
    logs,
    /** Everything the Worker logged so far, as one string. */
    logText: () => logs.join(""),
    /** @param {string} path @param {RequestInit} [init] */
    fetch: (path, init) => mf.dispatchFetch(new URL(path, "http://gateway.test").href, { redirect: "manual", ...init }),
    /** @param {string} token @param {object} data */
    putToken: (token, data) => kv.put("token:" + sha256Hex(token), JSON.stringify(data)),
    /** @param {object} routes */
    putRoutes: (routes) => kv.put("routes", JSON.stringify(routes)),
    /** @param {string} name @param {string} value */
    putSecret: (name, value) => kv.put("secret:" + name, JSON.stringify({ value })),
    close: () => mf.dispose(),
  };
}

/** The KV operations the probe entry saw for one response. */
export function kvOps(res) {
  return JSON.parse(res.headers.get("x-test-kv-ops") ?? "null");
}

/** An ISO timestamp `deltaMs` from now, naive (v2.7: no "Z") or RFC 3339. */
export function isoIn(deltaMs, { naive = false, micro = false } = {}) {
  const s = new Date(Date.now() + deltaMs).toISOString(); // 2026-01-01T00:00:00.000Z
  const withMicro = micro ? s.replace(/\.(\d{3})Z$/, ".$1456Z") : s;
  return naive ? withMicro.replace(/Z$/, "") : withMicro;
}
