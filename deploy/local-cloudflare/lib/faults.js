// Fault injection for the fake Cloudflare API: "make the next N matching
// calls fail like this". Rules are consumed in the order they were added.

/**
 * @typedef {object} FaultRule
 * @property {string} kind         "429", "500" (any HTTP status as a string), "hang" or "drop"
 * @property {number} count        how many more calls this rule catches
 * @property {number} [retry_after] seconds, sent as Retry-After (default 1 for 429)
 * @property {number} [hang_ms]    "hang": answer 504 after this long; default: never answer (until the client or the server gives up)
 * @property {string} [method]     only calls with this HTTP method
 * @property {string} [path]       only calls whose path (after /client/v4) contains this string
 */

/**
 * Validates and normalises one rule as given to the admin API or LOCAL_CF_FAULTS.
 * @param {any} raw
 * @returns {FaultRule}
 */
export function parseRule(raw) {
  if (!raw || typeof raw !== "object") throw new Error("a fault rule must be an object");
  const kind = String(raw.kind ?? "");
  if (!["hang", "drop"].includes(kind) && !/^[45]\d\d$/.test(kind)) {
    throw new Error(`fault kind must be an HTTP error status ("429", "500", …), "hang" or "drop"; got ${JSON.stringify(raw.kind)}`);
  }
  const count = raw.count === undefined ? 1 : Number(raw.count);
  if (!Number.isInteger(count) || count < 1) throw new Error("fault count must be a positive integer");
  /** @type {FaultRule} */
  const rule = { kind, count };
  if (raw.retry_after !== undefined) rule.retry_after = Number(raw.retry_after);
  else if (kind === "429") rule.retry_after = 1;
  if (raw.hang_ms !== undefined) rule.hang_ms = Number(raw.hang_ms);
  if (raw.method !== undefined) rule.method = String(raw.method).toUpperCase();
  if (raw.path !== undefined) rule.path = String(raw.path);
  return rule;
}

export class Faults {
  constructor() {
    /** @type {FaultRule[]} */
    this.rules = [];
  }

  /** @param {any} rawOrList one rule or an array of rules */
  add(rawOrList) {
    const list = Array.isArray(rawOrList) ? rawOrList : [rawOrList];
    const parsed = list.map(parseRule); // all or nothing
    this.rules.push(...parsed);
  }

  clear() {
    this.rules.length = 0;
  }

  /**
   * The fault for this call, if a rule catches it (and counts it).
   * @param {string} method @param {string} path
   * @returns {FaultRule | null}
   */
  take(method, path) {
    const i = this.rules.findIndex((r) => (!r.method || r.method === method) && (!r.path || path.includes(r.path)));
    if (i < 0) return null;
    const rule = this.rules[i];
    rule.count -= 1;
    if (rule.count === 0) this.rules.splice(i, 1);
    return rule;
  }
}
