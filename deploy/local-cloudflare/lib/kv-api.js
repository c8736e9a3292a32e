// The Cloudflare REST endpoints for Workers KV that the token service's
// cloudflare-go client calls, served from the KV namespace of the Worker
// that Miniflare hosts — so the Worker sees every write at once — plus a
// small admin API for tests (fault injection, request log).
//
// Paths (under /client/v4, as with api.cloudflare.com):
//   GET    /accounts/:a/storage/kv/namespaces[/:ns]
//   GET    /accounts/:a/storage/kv/namespaces/:ns/keys?prefix=&limit=&cursor=
//   GET    /accounts/:a/storage/kv/namespaces/:ns/values/:key        raw value bytes
//   PUT    /accounts/:a/storage/kv/namespaces/:ns/values/:key        raw body or multipart (value, metadata); ?expiration=&expiration_ttl=
//   DELETE /accounts/:a/storage/kv/namespaces/:ns/values/:key
//   GET    /accounts/:a/storage/kv/namespaces/:ns/metadata/:key
//   PUT    /accounts/:a/storage/kv/namespaces/:ns/bulk               [{key, value, base64?, expiration?, expiration_ttl?, metadata?}]
//   DELETE /accounts/:a/storage/kv/namespaces/:ns/bulk               ["key", …]
//   POST   /accounts/:a/storage/kv/namespaces/:ns/bulk/delete        ["key", …]
//   POST   /accounts/:a/storage/kv/namespaces/:ns/bulk/get           {keys, type?, withMetadata?}
//   GET    /user/tokens/verify, /accounts/:a/tokens/verify
// Every answer but a value read is Cloudflare's JSON envelope.

const MAX_BODY = 100 * 1024 * 1024; // Cloudflare's request limit for bulk writes
const MAX_BULK = 10_000;
const MAX_KEY_BYTES = 512;
const REQUEST_LOG_MAX = 10_000;

/** @param {unknown} result @param {object} [extra] */
const ok = (result, extra = {}) => ({ success: true, errors: [], messages: [], result, ...extra });
/** @param {number} code @param {string} message */
const fail = (code, message) => ({ success: false, errors: [{ code, message }], messages: [], result: null });

class ApiError extends Error {
  /** @param {number} status @param {number} code @param {string} message */
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}
const badRequest = (message) => new ApiError(400, 10001, message);

/**
 * @param {import("node:http").ServerResponse} res @param {number} status @param {unknown} body @param {Record<string, string>} [headers]
 */
function sendJson(res, status, body, headers = {}) {
  res.writeHead(status, { "Content-Type": "application/json", ...headers });
  res.end(JSON.stringify(body));
}

/** @param {import("node:http").IncomingMessage} req @returns {Promise<Buffer>} */
function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on("data", (c) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new ApiError(413, 10011, "request body too large"));
        req.destroy();
      } else chunks.push(c);
    });
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

/** A Buffer's own bytes as an ArrayBuffer (a Buffer's .buffer is a shared pool). @param {Buffer} b */
const arrayBufferOf = (b) => b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);

/** @param {string} s */
function decode(s) {
  try {
    return decodeURIComponent(s);
  } catch {
    throw badRequest("malformed percent-encoding in path");
  }
}

/** Cloudflare's key rules: 1–512 bytes, not "." or "..". @param {unknown} key */
function checkKey(key) {
  if (typeof key !== "string" || key === "") throw badRequest("key must be a non-empty string");
  if (key === "." || key === "..") throw badRequest(`illegal key name ${JSON.stringify(key)}`);
  if (Buffer.byteLength(key) > MAX_KEY_BYTES) throw badRequest(`key longer than ${MAX_KEY_BYTES} bytes`);
  return key;
}

/** @param {unknown} v @param {string} name */
function optionalInt(v, name) {
  if (v === undefined || v === null || v === "") return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw badRequest(`${name} must be a non-negative integer`);
  return n;
}

/** @param {unknown} v */
function parseJsonArray(v) {
  let parsed;
  try {
    parsed = JSON.parse(v.toString("utf8"));
  } catch {
    throw badRequest("request body is not valid JSON");
  }
  if (!Array.isArray(parsed)) throw badRequest("request body must be a JSON array");
  if (parsed.length > MAX_BULK) throw badRequest(`at most ${MAX_BULK} items per bulk request`);
  return parsed;
}

/**
 * Put options in Miniflare's form; Miniflare enforces KV's own limits
 * (expiration_ttl ≥ 60, expiration ≥ 60 s ahead, metadata ≤ 1024 bytes).
 * @param {{expiration?: unknown, expiration_ttl?: unknown, metadata?: unknown}} o
 */
function putOptions(o) {
  /** @type {{expiration?: number, expirationTtl?: number, metadata?: unknown}} */
  const opts = {};
  const expiration = optionalInt(o.expiration, "expiration");
  const ttl = optionalInt(o.expiration_ttl, "expiration_ttl");
  if (expiration) opts.expiration = expiration;
  if (ttl) opts.expirationTtl = ttl;
  if (o.metadata !== undefined && o.metadata !== null) opts.metadata = o.metadata;
  return opts;
}

/**
 * @param {object} deps
 * @param {any} deps.kv              the hosted Worker's KV namespace (Miniflare getKVNamespace)
 * @param {string} deps.accountId
 * @param {string} deps.namespaceId
 * @param {string} deps.apiToken
 * @param {import("./faults.js").Faults} deps.faults
 * @param {boolean} [deps.verbose]  log every call to stderr
 */
export function createApiHandler({ kv, accountId, namespaceId, apiToken, faults, verbose = false }) {
  /** @type {{at: string, method: string, path: string, key?: string, status: number | null, fault?: string}[]} */
  const requestLog = [];

  /** KV storage calls of one namespace. @param {string[]} segs after /namespaces/:ns @param {string} method */
  async function namespaceCall(req, res, segs, method, query, entry) {
    const [first, ...restSegs] = segs;
    // values/:key — v0 escapes the key ("a%2Fb"), v6 does not ("a/b"): take the rest of the path.
    if ((first === "values" || first === "metadata") && restSegs.length > 0) {
      const key = checkKey(decode(restSegs.join("/")));
      entry.key = key;
      if (first === "metadata") {
        if (method !== "GET") throw new ApiError(405, 10000, "method not allowed");
        const { value, metadata } = await kv.getWithMetadata(key, "arrayBuffer");
        if (value === null) throw new ApiError(404, 10009, "get: 'key not found'");
        return sendJson(res, 200, ok(metadata ?? null));
      }
      if (method === "GET") {
        const value = await kv.get(key, "arrayBuffer");
        if (value === null) throw new ApiError(404, 10009, "get: 'key not found'");
        res.writeHead(200, { "Content-Type": "application/octet-stream" });
        return res.end(Buffer.from(value));
      }
      if (method === "PUT") {
        const body = await readBody(req);
        const type = req.headers["content-type"] ?? "";
        let value = arrayBufferOf(body);
        let metadata;
        if (type.startsWith("multipart/form-data")) {
          let form;
          try {
            form = await new Request("http://local/", { method: "PUT", headers: { "content-type": type }, body }).formData();
          } catch {
            throw badRequest("malformed multipart body");
          }
          const v = form.get("value");
          if (v === null) throw badRequest("multipart body lacks a value field");
          value = typeof v === "string" ? v : await v.arrayBuffer();
          const m = form.get("metadata");
          if (m !== null) {
            try {
              metadata = JSON.parse(typeof m === "string" ? m : await m.text());
            } catch {
              throw badRequest("metadata must be JSON");
            }
          }
        }
        await put(key, value, putOptions({ expiration: query.get("expiration"), expiration_ttl: query.get("expiration_ttl"), metadata }));
        return sendJson(res, 200, ok({}));
      }
      if (method === "DELETE") {
        await kv.delete(key);
        return sendJson(res, 200, ok({}));
      }
      throw new ApiError(405, 10000, "method not allowed");
    }
    if (first === "keys" && restSegs.length === 0) {
      if (method !== "GET") throw new ApiError(405, 10000, "method not allowed");
      const limit = optionalInt(query.get("limit"), "limit") ?? 1000;
      if (limit < 10 || limit > 1000) throw badRequest("limit must be between 10 and 1000");
      const opts = { limit, prefix: query.get("prefix") || undefined, cursor: query.get("cursor") || undefined };
      let page;
      try {
        page = await kv.list(opts);
      } catch (err) {
        throw badRequest(`list keys: ${err.message}`);
      }
      const result = page.keys.map((k) => {
        /** @type {{name: string, expiration?: number, metadata?: unknown}} */
        const o = { name: k.name };
        if (k.expiration !== undefined) o.expiration = k.expiration;
        if (k.metadata !== undefined) o.metadata = k.metadata;
        return o;
      });
      const cursor = page.list_complete ? "" : page.cursor;
      return sendJson(res, 200, ok(result, { result_info: { count: result.length, cursor } }));
    }
    if (first === "bulk" && restSegs.length === 0 && method === "PUT") {
      const items = parseJsonArray(await readBody(req));
      const writes = items.map((item, i) => {
        if (!item || typeof item !== "object") throw badRequest(`item ${i}: not an object`);
        const key = checkKey(item.key);
        if (typeof item.value !== "string") throw badRequest(`item ${i}: value must be a string`);
        const value = item.base64 ? arrayBufferOf(Buffer.from(item.value, "base64")) : item.value;
        return { key, value, opts: putOptions(item) };
      });
      for (const w of writes) await put(w.key, w.value, w.opts);
      return sendJson(res, 200, ok({ successful_key_count: writes.length, unsuccessful_keys: [] }));
    }
    if (first === "bulk" && ((restSegs.length === 0 && method === "DELETE") || (restSegs.join("/") === "delete" && method === "POST"))) {
      const keys = parseJsonArray(await readBody(req)).map(checkKey);
      for (const key of keys) await kv.delete(key);
      return sendJson(res, 200, ok({ successful_key_count: keys.length, unsuccessful_keys: [] }));
    }
    if (first === "bulk" && restSegs.join("/") === "get" && method === "POST") {
      let body;
      try {
        body = JSON.parse((await readBody(req)).toString("utf8"));
      } catch {
        throw badRequest("request body is not valid JSON");
      }
      if (!Array.isArray(body?.keys) || body.keys.length > 100) throw badRequest("keys must be an array of at most 100 names");
      const values = {};
      for (const key of body.keys.map(checkKey)) {
        const { value, metadata } = await kv.getWithMetadata(key, "text");
        let v = value;
        if (v !== null && body.type === "json") {
          try {
            v = JSON.parse(v);
          } catch {
            throw badRequest(`value of ${key} is not JSON`);
          }
        }
        values[key] = body.withMetadata ? { value: v, metadata: metadata ?? null } : v;
      }
      return sendJson(res, 200, ok({ values }));
    }
    throw new ApiError(404, 7003, "Could not route to the requested path");
  }

  /** @param {string} key @param {string | ArrayBuffer} value @param {object} opts */
  async function put(key, value, opts) {
    try {
      await kv.put(key, value, opts);
    } catch (err) {
      throw badRequest(`write ${key}: ${err.message}`);
    }
  }

  /** The /client/v4 API. */
  async function api(req, res, path, query, entry) {
    const fault = faults.take(req.method, path);
    if (fault) {
      entry.fault = fault.kind;
      if (fault.kind === "drop") return req.socket.destroy();
      if (fault.kind === "hang") {
        if (fault.hang_ms === undefined) return; // never answer; the socket closes with the client or the server
        await new Promise((r) => setTimeout(r, fault.hang_ms));
        if (res.destroyed) return;
      } else {
        const status = Number(fault.kind);
        const headers = fault.retry_after !== undefined ? { "Retry-After": String(fault.retry_after) } : {};
        const body = status === 429 ? fail(971, "Please wait and consider throttling your request speed") : fail(10000 + (status % 1000), `injected fault: HTTP ${status}`);
        return sendJson(res, status, body, headers);
      }
    }
    if (req.headers.authorization !== `Bearer ${apiToken}`) throw new ApiError(401, 10000, "Authentication error");

    const segs = path.split("/").slice(1); // path starts with "/"
    if (req.method === "GET" && (path === "/user/tokens/verify" || (segs[0] === "accounts" && segs[2] === "tokens" && segs[3] === "verify" && segs.length === 4))) {
      return sendJson(res, 200, ok({ id: "local-token", status: "active" }));
    }
    if (segs[0] !== "accounts" || segs[2] !== "storage" || segs[3] !== "kv" || segs[4] !== "namespaces") {
      throw new ApiError(404, 7003, "Could not route to the requested path");
    }
    if (decode(segs[1]) !== accountId) throw new ApiError(404, 10013, `account ${decode(segs[1])} not found`);
    const namespace = { id: namespaceId, title: "TOKENS (local)", supports_url_encoding: true };
    if (segs.length === 5) {
      if (req.method !== "GET") throw new ApiError(405, 10000, "method not allowed");
      return sendJson(res, 200, ok([namespace], { result_info: { page: 1, per_page: 20, count: 1, total_count: 1 } }));
    }
    if (decode(segs[5]) !== namespaceId) throw new ApiError(404, 10013, "namespace not found");
    if (segs.length === 6) {
      if (req.method !== "GET") throw new ApiError(405, 10000, "method not allowed");
      return sendJson(res, 200, ok(namespace));
    }
    return namespaceCall(req, res, segs.slice(6), req.method, query, entry);
  }

  /** Test controls under /__admin. */
  async function admin(req, res, path) {
    if (path === "/__admin/health" && req.method === "GET") return sendJson(res, 200, { ok: true });
    if (path === "/__admin/faults") {
      if (req.method === "GET") return sendJson(res, 200, { pending: faults.rules });
      if (req.method === "DELETE") {
        faults.clear();
        return sendJson(res, 200, { pending: [] });
      }
      if (req.method === "POST") {
        let body;
        try {
          body = JSON.parse((await readBody(req)).toString("utf8"));
          faults.add(body);
        } catch (err) {
          return sendJson(res, 400, { error: err.message });
        }
        return sendJson(res, 200, { pending: faults.rules });
      }
    }
    if (path === "/__admin/requests") {
      if (req.method === "GET") return sendJson(res, 200, { requests: requestLog });
      if (req.method === "DELETE") {
        requestLog.length = 0;
        return sendJson(res, 200, { requests: [] });
      }
    }
    return sendJson(res, 404, { error: `no admin endpoint ${req.method} ${path}` });
  }

  /** @param {import("node:http").IncomingMessage} req @param {import("node:http").ServerResponse} res */
  return async function handle(req, res) {
    // The raw path: WHATWG URL parsing would resolve "." and ".." segments inside keys.
    const [rawPath, rawQuery = ""] = (req.url ?? "/").split(/\?(.*)/s, 2);
    const query = new URLSearchParams(rawQuery);
    if (rawPath.startsWith("/__admin/")) return admin(req, res, rawPath).catch((err) => sendJson(res, 500, { error: String(err) }));
    if (!rawPath.startsWith("/client/v4/")) return sendJson(res, 404, fail(7003, "Could not route to the requested path"));

    const path = rawPath.slice("/client/v4".length);
    const entry = { at: new Date().toISOString(), method: req.method ?? "", path, status: /** @type {number|null} */ (null) };
    requestLog.push(entry);
    if (requestLog.length > REQUEST_LOG_MAX) requestLog.shift();
    res.on("finish", () => (entry.status = res.statusCode));
    res.on("close", () => {
      entry.status = res.headersSent ? res.statusCode : null;
      if (verbose) process.stderr.write(`local-cloudflare: ${entry.method} ${path} → ${entry.status ?? entry.fault ?? "no answer"}\n`);
    });
    try {
      await api(req, res, path, query, entry);
    } catch (err) {
      if (err instanceof ApiError) return sendJson(res, err.status, fail(err.code, err.message));
      process.stderr.write(`local-cloudflare: ${req.method} ${path}: ${err?.stack ?? err}\n`);
      if (!res.headersSent) sendJson(res, 500, fail(10001, "internal error"));
    }
  };
}
