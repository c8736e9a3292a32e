// Reading the values the Token Manager writes into the TOKENS namespace.

/**
 * A KV value parsed as JSON; null when absent or not JSON (logged). KV
 * errors themselves propagate: an outage is a 500, not an "invalid key".
 * @param {KVNamespace} kv
 * @param {string} key
 * @returns {Promise<any>}
 */
export async function readJson(kv, key) {
  const text = await kv.get(key);
  if (text === null) return null;
  try {
    return JSON.parse(text);
  } catch {
    console.error(`gateway: KV value ${key} is not valid JSON`);
    return null;
  }
}
