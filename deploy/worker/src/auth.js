// Backend credentials injected into the upstream request (contract §4.6,
// fixed): a route names its credentials by reference; a reference resolves to
// a Worker secret only when the operator allowlisted it, otherwise to KV
// `secret:<ref>`. A credential that cannot be resolved stops the request
// (502) instead of forwarding it unauthenticated.

import { readJson } from "./kv.js";

/** Thrown when a route's backend credentials cannot be produced. */
export class CredentialsError extends Error {}

/**
 * Names of Worker secrets/vars a route may reference (var BACKEND_SECRET_NAMES,
 * comma-separated). v2.7 let a route reference any binding — the usage
 * ingest secret included — and point at a host of its author's choosing.
 * @param {Record<string, unknown>} env
 */
function allowedEnvNames(env) {
  const raw = typeof env.BACKEND_SECRET_NAMES === "string" ? env.BACKEND_SECRET_NAMES : "";
  return new Set(raw.split(",").map((s) => s.trim()).filter(Boolean));
}

/**
 * @param {unknown} ref a reference name from the route's auth config
 * @param {Record<string, any>} env
 * @returns {Promise<string>}
 */
async function resolveSecret(ref, env) {
  if (typeof ref !== "string" || ref === "") throw new CredentialsError("auth config lacks a reference name");
  if (allowedEnvNames(env).has(ref) && typeof env[ref] === "string" && env[ref] !== "") return env[ref];
  const stored = await readJson(env.TOKENS, "secret:" + ref);
  if (stored && typeof stored.value === "string" && stored.value !== "") return stored.value;
  throw new CredentialsError(`secret ${JSON.stringify(ref)} not found (KV secret:<ref>, or a Worker secret listed in BACKEND_SECRET_NAMES)`);
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
 * @param {import("./routes.js").RouteAuth | null} auth
 * @param {Record<string, any>} env
 * @param {Headers} headers the upstream request's headers
 */
export async function applyBackendAuth(auth, env, headers) {
  if (!auth || auth.type === undefined || auth.type === null || auth.type === "" || auth.type === "none") return;
  const config = auth.config && typeof auth.config === "object" ? /** @type {Record<string, unknown>} */ (auth.config) : {};
  switch (auth.type) {
    case "bearer": {
      headers.set("Authorization", "Bearer " + (await resolveSecret(config.token_ref, env)));
      return;
    }
    case "api-key": {
      const name = typeof config.header_name === "string" && config.header_name !== "" ? config.header_name : "X-API-Key";
      const value = await resolveSecret(config.key_ref, env);
      try {
        headers.set(name, value);
      } catch {
        throw new CredentialsError(`header_name ${JSON.stringify(name)} is not a valid header name`);
      }
      return;
    }
    case "basic": {
      const [user, pass] = await Promise.all([resolveSecret(config.username_ref, env), resolveSecret(config.password_ref, env)]);
      headers.set("Authorization", "Basic " + base64Utf8(`${user}:${pass}`));
      return;
    }
    default:
      throw new CredentialsError(`unknown backend auth type ${JSON.stringify(auth.type)}`);
  }
}
