// Test entry: the gateway, with its TOKENS binding wrapped so that every KV
// call it makes for a request is listed in the response header
// x-test-kv-ops (e.g. ["get token:ab12…","get routes"]). A request header
// x-test-kv-throw: <key> makes reads of that key fail like a KV outage.
// The wrapper runs in workerd with the gateway; the gateway code is unchanged.

import gateway from "../../src/index.js";

export default {
  async fetch(request, env, ctx) {
    const ops = [];
    const failKey = request.headers.get("x-test-kv-throw");
    const TOKENS = new Proxy(env.TOKENS, {
      get(target, prop) {
        const value = Reflect.get(target, prop);
        if (typeof value !== "function") return value;
        return (...args) => {
          ops.push(`${String(prop)} ${args[0]}`);
          if (failKey !== null && args[0] === failKey) throw new Error(`injected KV failure reading ${failKey}`);
          return value.apply(target, args);
        };
      },
    });
    const res = await gateway.fetch(request, { ...env, TOKENS }, ctx);
    const out = new Response(res.body, res);
    out.headers.set("x-test-kv-ops", JSON.stringify(ops));
    return out;
  },
};
