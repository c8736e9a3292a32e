// Everything about the client's API key before and after the KV lookup: the
// checksum pre-check of new-format tokens, the lookup hash, the per-isolate
// negative cache, and expiry.

const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/**
 * New-format tokens (contract §6 successor, ARCHITECTURE "Tokens and the
 * edge"): "ntk_" + 32 random base62 chars + 6-char base62 CRC32 of those 32.
 * v2.7 tokens ("ntk_" + 43 base64url chars) never have this shape.
 */
const NEW_TOKEN = /^ntk_([0-9A-Za-z]{32})([0-9A-Za-z]{6})$/;

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/**
 * CRC-32/IEEE of an ASCII string, as Go's hash/crc32.ChecksumIEEE.
 * @param {string} s ASCII only (the caller has matched [0-9A-Za-z])
 */
export function crc32(s) {
  let c = 0xffffffff;
  for (let i = 0; i < s.length; i++) c = CRC_TABLE[(c ^ s.charCodeAt(i)) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/**
 * The 6-char checksum: CRC32 in base62, most significant digit first, zero-padded.
 * @param {string} random the token's 32 random chars
 */
export function checksum(random) {
  let v = crc32(random);
  let out = "";
  for (let i = 0; i < 6; i++) {
    out = BASE62[v % 62] + out;
    v = Math.floor(v / 62);
  }
  return out;
}

/**
 * "bad-checksum" when the key has exactly the new format's shape but its
 * checksum is wrong: it cannot be a token, so it costs no KV read. Everything
 * else ("ok": a valid new-format token, "other": v2.7 or imported formats)
 * goes to the KV lookup.
 * @param {string} key
 * @returns {"ok" | "bad-checksum" | "other"}
 */
export function checkFormat(key) {
  const m = NEW_TOKEN.exec(key);
  if (!m) return "other";
  return checksum(m[1]) === m[2] ? "ok" : "bad-checksum";
}

/**
 * Lookup hash: lowercase hex SHA-256 of the UTF-8 bytes of the whole key (contract §4.1 step 2).
 * @param {string} key
 */
export async function sha256Hex(key) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(key));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * A bounded per-isolate memory of hashes that KV did not know, so that a
 * client hammering the gateway with one unknown key costs one KV read per
 * TTL, not one per request. Bounded in size (oldest entries are evicted
 * first) and in time (entries live `ttlMs`); a token created meanwhile
 * becomes usable at most `ttlMs` later, well within KV's own ~60 s
 * propagation (KV caches misses at the edge as well).
 */
export class NegativeCache {
  /** @param {number} maxEntries */
  constructor(maxEntries) {
    this.maxEntries = maxEntries;
    /** @type {Map<string, number>} hash → time (ms) the entry expires */
    this.entries = new Map();
  }

  /** @param {string} hash @param {number} now */
  has(hash, now) {
    const until = this.entries.get(hash);
    if (until === undefined) return false;
    if (until > now) return true;
    this.entries.delete(hash);
    return false;
  }

  /** @param {string} hash @param {number} now @param {number} ttlMs */
  add(hash, now, ttlMs) {
    if (ttlMs <= 0 || this.maxEntries <= 0) return;
    this.entries.delete(hash); // re-insert at the young end
    this.entries.set(hash, now + ttlMs);
    while (this.entries.size > this.maxEntries) {
      // Map iterates in insertion order: the first key is the oldest.
      this.entries.delete(this.entries.keys().next().value);
    }
  }
}

const ISO_TIMESTAMP =
  /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?)?\s*(Z|[+-]\d{2}(?::?\d{2})?)?$/i;

/**
 * Parses the timestamps KV values carry: v2.7's naive ISO 8601 without an
 * offset (Python isoformat(), microseconds, meant as UTC) and RFC 3339 with
 * "Z" or an offset (the Go token service).
 * @param {string} value
 * @returns {number} epoch ms, NaN when it is not such a timestamp
 */
export function parseTimestamp(value) {
  const m = ISO_TIMESTAMP.exec(value.trim());
  if (!m) return NaN;
  const [, y, mo, d, h = "0", mi = "0", s = "0", frac = "", zone] = m;
  const ms = Number((frac + "000").slice(0, 3));
  const t = Date.UTC(+y, +mo - 1, +d, +h, +mi, +s, ms);
  const back = new Date(t);
  if (back.getUTCMonth() !== +mo - 1 || back.getUTCDate() !== +d || +h > 23 || +mi > 59 || +s > 60) return NaN;
  if (!zone || zone.toUpperCase() === "Z") return t;
  const sign = zone[0] === "-" ? -1 : 1;
  const digits = zone.slice(1).replace(":", "");
  const offsetMin = Number(digits.slice(0, 2)) * 60 + Number(digits.slice(2) || "0");
  return t - sign * offsetMin * 60_000;
}

/**
 * Whether a token's `expires_at` has passed. null/absent/"" means never.
 * A value that is present but not a timestamp counts as expired: the
 * gateway fails closed where v2.7 (Invalid Date < now is false) let it in.
 * @param {unknown} expiresAt
 * @param {number} now epoch ms
 */
export function isExpired(expiresAt, now) {
  if (expiresAt === null || expiresAt === undefined || expiresAt === "") return false;
  const t = typeof expiresAt === "string" ? parseTimestamp(expiresAt) : NaN;
  if (Number.isNaN(t)) {
    console.error(`gateway: token has an unreadable expires_at (${JSON.stringify(expiresAt)}); treated as expired`);
    return true;
  }
  return t < now;
}
