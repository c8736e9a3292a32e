// Backend credentials injected into the upstream request (contract §4.6,
// fixed). A route's credentials are its own: the token service publishes
// each as KV `secret:<path>#<name>`, and the route's *_ref fields name
// exactly that. A reference that does not carry its route's path is refused,
// and Worker env bindings are never consulted — v2.7 let any route author
// name any binding or any other route's secret (the usage ingest key
// included) and send it to a host of their choosing. A credential that
// cannot be resolved stops the request (502) instead of forwarding it
// unauthenticated.

import { readJson } from "./kv.js";

/** Thrown when a route's backend credentials cannot be produced. */
export class CredentialsError extends Error {}

/** A secret's own name, after "<path>#" (as the token service validates it). */
const SECRET_NAME = /^[A-Za-z0-9_]{1,64}$/;

/**
 * @param {unknown} ref a reference from the route's auth config
 * @param {string} routeKey the route's path (its key in the routes map)
 * @param {Record<string, any>} env
 * @returns {Promise<string>}
 */
async function resolveSecret(ref, routeKey, env) {
  if (typeof ref !== "string" || ref === "") throw new CredentialsError("auth config lacks a reference name");
  const own = routeKey + "#";
  if (!ref.startsWith(own) || !SECRET_NAME.test(ref.slice(own.length))) {
    throw new CredentialsError(`reference ${JSON.stringify(ref)} is not one of this route's secrets (<path>#<name>)`);
  }
  const stored = await readJson(env.TOKENS, "secret:" + ref);
  if (stored && typeof stored.value === "string" && stored.value !== "") return stored.value;
  throw new CredentialsError(`secret ${JSON.stringify(ref)} not found in KV`);
}

/** @param {string} s */
function base64Utf8(s) {
  let bin = "";
  for (const b of new TextEncoder().encode(s)) bin += String.fromCharCode(b);
  return btoa(bin);
}

/**
 * Sets the route's backend credentials on `headers`.
 * Types: "bearer" {token_ref}, "api-key" {key_ref, header_name = "X-API-Key"},
 * "basic" {username_ref, password_ref}; none/"none"/"" set nothing. An
 * unknown type fails closed (v2.7 forwarded without credentials).
 * @param {{key: string, auth: import("./routes.js").RouteAuth | null}} route the matched route
 * @param {Record<string, any>} env
 * @param {Headers} headers the upstream request's headers
 */
export async function applyBackendAuth({ key, auth }, env, headers) {
  if (!auth || auth.type === undefined || auth.type === null || auth.type === "" || auth.type === "none") return;
  const config = auth.config && typeof auth.config === "object" ? /** @type {Record<string, unknown>} */ (auth.config) : {};
  switch (auth.type) {
    case "bearer": {
      headers.set("Authorization", "Bearer " + (await resolveSecret(config.token_ref, key, env)));
      return;
    }
    case "api-key": {
      const name = typeof config.header_name === "string" && config.header_name !== "" ? config.header_name : "X-API-Key";
      const value = await resolveSecret(config.key_ref, key, env);
      try {
        headers.set(name, value);
      } catch {
        throw new CredentialsError(`header_name ${JSON.stringify(name)} is not a valid header name`);
      }
      return;
    }
    case "basic": {
      const [user, pass] = await Promise.all([resolveSecret(config.username_ref, key, env), resolveSecret(config.password_ref, key, env)]);
      headers.set("Authorization", "Basic " + base64Utf8(`${user}:${pass}`));
      return;
    }
    default:
      throw new CredentialsError(`unknown backend auth type ${JSON.stringify(auth.type)}`);
  }
}
