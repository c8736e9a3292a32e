// Usage reporting: one event per request, batched per isolate, posted signed
// to the Token Manager backend (POST /api/usage-log) from ctx.waitUntil.
//
// Batching: events join the isolate's open batch; the batch is sent when it
// holds USAGE_BATCH_MAX events or USAGE_FLUSH_DELAY_MS after its first event,
// whichever comes first. Every request hands ctx.waitUntil the promise of the
// batch that carries its own event, so no request can finish before its
// event was posted (or given up on after the retries).
//
// Signing: X-TM-Timestamp: <unix seconds>, X-TM-Signature: v1=<hex
// HMAC-SHA256(USAGE_INGEST_SECRET, "<timestamp>.<raw body>")>, body
// {"events":[…]}. Without USAGE_INGEST_SECRET each event is posted bare and
// unsigned, exactly as v2.7 did (a v2.7 backend understands only that; the
// new backend accepts it only when configured to).

/**
 * @typedef {object} UsageEvent
 * @property {string} event_id          random UUID; the backend deduplicates retries by it
 * @property {string} token_hash
 * @property {string | null} route      the matched route key (null when no route matched)
 * @property {number} timestamp         epoch ms
 * @property {number} response_status
 * @property {number} response_time_ms  time spent waiting for the upstream's headers (0 for gateway rejections)
 * @property {string | null} ip_address
 * @property {string | null} user_agent
 * @property {string} request_method
 * @property {string | null} error_message null for 2xx; "HTTP <status>" for other upstream answers; "gateway: …" for the gateway's own rejections
 */

/**
 * @typedef {object} UsageConfig
 * @property {string} url
 * @property {string} secret
 * @property {number} batchMax
 * @property {number} flushDelayMs
 * @property {number} maxAttempts
 * @property {number} attemptTimeoutMs
 * @property {number} retryBaseMs
 * @property {number} budgetMs
 */

/**
 * @param {unknown} value @param {number} fallback @param {number} min
 */
function intVar(value, fallback, min) {
  const n = typeof value === "number" ? value : Number.parseInt(String(value ?? ""), 10);
  return Number.isFinite(n) && n >= min ? n : fallback;
}

/**
 * @param {Record<string, any>} env
 * @returns {UsageConfig}
 */
export function usageConfig(env) {
  const backend = String(env.TOKEN_MANAGER_BACKEND || "https://tapi.blocktempo.ai").replace(/\/+$/, "");
  return {
    url: backend + "/api/usage-log",
    secret: typeof env.USAGE_INGEST_SECRET === "string" ? env.USAGE_INGEST_SECRET : "",
    batchMax: intVar(env.USAGE_BATCH_MAX, 50, 1),
    flushDelayMs: intVar(env.USAGE_FLUSH_DELAY_MS, 250, 0),
    maxAttempts: intVar(env.USAGE_MAX_ATTEMPTS, 3, 1),
    attemptTimeoutMs: intVar(env.USAGE_TIMEOUT_MS, 5000, 1),
    retryBaseMs: intVar(env.USAGE_RETRY_BASE_MS, 250, 0),
    // All posts and retries of one batch end within this budget: well
    // inside the 30 s that waitUntil grants after the response.
    budgetMs: 20_000,
  };
}

/**
 * @typedef {object} Batch
 * @property {UsageEvent[]} events
 * @property {Promise<void>} done
 * @property {() => void} resolve
 * @property {ReturnType<typeof setTimeout> | undefined} timer
 */

/** @type {Batch | null} the isolate's open batch */
let open = null;
let warnedUnsigned = false;
/** @type {{secret: string, key: Promise<CryptoKey>} | null} */
let hmacKey = null;

/**
 * Adds an event to the isolate's batch and keeps the request alive until
 * that batch has been sent.
 * @param {{waitUntil(p: Promise<unknown>): void}} ctx
 * @param {Record<string, any>} env
 * @param {UsageEvent} event
 */
export function recordUsage(ctx, env, event) {
  const config = usageConfig(env);
  if (!open) {
    /** @type {() => void} */
    let resolve = () => {};
    const done = new Promise((r) => (resolve = r));
    const batch = /** @type {Batch} */ ({ events: [], done, resolve, timer: undefined });
    batch.timer = setTimeout(() => seal(batch, config), config.flushDelayMs);
    open = batch;
  }
  const batch = open;
  batch.events.push(event);
  if (batch.events.length >= config.batchMax) seal(batch, config);
  ctx.waitUntil(batch.done);
}

/** @param {Batch} batch @param {UsageConfig} config */
function seal(batch, config) {
  if (open !== batch) return; // already sealed
  open = null;
  clearTimeout(batch.timer);
  send(batch.events, config)
    .catch((err) => console.error("usage: sending failed", String(err)))
    .finally(batch.resolve);
}

/** Concurrent posts of unsigned single events: the Workers limit on open connections per request is 6. */
const UNSIGNED_PARALLEL = 6;

/** @param {UsageEvent[]} events @param {UsageConfig} config */
async function send(events, config) {
  const deadline = Date.now() + config.budgetMs;
  if (config.secret) {
    await post(JSON.stringify({ events }), events.length, config, deadline);
    return;
  }
  if (!warnedUnsigned) {
    warnedUnsigned = true;
    console.warn("usage: USAGE_INGEST_SECRET is not set; posting unsigned v2.7-style events");
  }
  for (let i = 0; i < events.length; i += UNSIGNED_PARALLEL) {
    await Promise.all(events.slice(i, i + UNSIGNED_PARALLEL).map((e) => post(JSON.stringify(e), 1, config, deadline)));
  }
}

/**
 * @param {string} secret @param {string} message
 * @returns {Promise<string>} lowercase hex
 */
async function hmacHex(secret, message) {
  if (!hmacKey || hmacKey.secret !== secret) {
    const key = crypto.subtle.importKey("raw", new TextEncoder().encode(secret), { name: "HMAC", hash: "SHA-256" }, false, [
      "sign",
    ]);
    hmacKey = { secret, key };
  }
  const sig = await crypto.subtle.sign("HMAC", await hmacKey.key, new TextEncoder().encode(message));
  return [...new Uint8Array(sig)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** @param {string} text a 2xx response body */
function reportsError(text) {
  try {
    return JSON.parse(text)?.status === "error";
  } catch {
    return false;
  }
}

/** @param {number} ms */
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * POSTs one body, retrying network errors, timeouts, 5xx and 429 with
 * exponential backoff (or the server's Retry-After), at most maxAttempts
 * times and before the batch's deadline. Other 4xx are final. Each attempt
 * is signed afresh, so its timestamp is current.
 * @param {string} body @param {number} count events in it (for logs) @param {UsageConfig} config @param {number} deadline epoch ms
 */
async function post(body, count, config, deadline) {
  let last = "";
  for (let attempt = 1; attempt <= config.maxAttempts && Date.now() < deadline; attempt++) {
    /** @type {Record<string, string>} */
    const headers = { "Content-Type": "application/json" };
    if (config.secret) {
      const ts = String(Math.floor(Date.now() / 1000));
      headers["X-TM-Timestamp"] = ts;
      headers["X-TM-Signature"] = "v1=" + (await hmacHex(config.secret, `${ts}.${body}`));
    }
    let retryAfterMs = 0;
    try {
      const res = await fetch(config.url, {
        method: "POST",
        headers,
        body,
        signal: AbortSignal.timeout(Math.min(config.attemptTimeoutMs, Math.max(1, deadline - Date.now()))),
      });
      const text = await res.text();
      if (res.ok) {
        // A v2.7 backend reports failures as 200 {"status":"error"}; nothing to retry there.
        if (reportsError(text)) console.error(`usage: backend refused ${count} event(s): ${text.slice(0, 200)}`);
        return;
      }
      last = `HTTP ${res.status}`;
      if (res.status !== 429 && res.status < 500) {
        console.error(`usage: backend rejected ${count} event(s) with HTTP ${res.status}: ${text.slice(0, 200)}`);
        return;
      }
      const ra = Number.parseInt(res.headers.get("Retry-After") ?? "", 10);
      if (Number.isFinite(ra) && ra >= 0) retryAfterMs = ra * 1000;
    } catch (err) {
      last = String(err);
    }
    if (attempt === config.maxAttempts) break;
    const backoff = config.retryBaseMs * 2 ** (attempt - 1) * (0.5 + Math.random());
    const wait = Math.max(retryAfterMs, backoff);
    if (Date.now() + wait >= deadline) break;
    await sleep(wait);
  }
  console.error(`usage: dropped ${count} event(s) after retries (last: ${last})`);
}
