// Responses the gateway writes itself: the contract's JSON error shape
// (§4.2: pretty-printed {"error","message"} with CORS headers) and the
// answer to a browser's CORS preflight.

/** Headers every gateway-generated response carries (contract §4.2). */
const CORS_HEADERS = {
  "Access-Control-Allow-Origin": "*",
  "Access-Control-Allow-Methods": "GET, POST, PUT, DELETE, OPTIONS",
  "Access-Control-Allow-Headers": "*",
};

/** Methods a preflight may ask for: §4.2's list plus PATCH and HEAD, which the gateway forwards too. */
const PREFLIGHT_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

/**
 * @typedef {object} GatewayError
 * @property {number} status
 * @property {string} error   short name: the contract's strings where one exists
 * @property {string} message human-readable detail; never a stack trace or a token's scopes
 */

/**
 * A gateway error as a response: JSON pretty-printed with 2-space indentation.
 * @param {GatewayError} e
 * @returns {Response}
 */
export function jsonError({ status, error, message }) {
  return new Response(JSON.stringify({ error, message }, null, 2), {
    status,
    headers: { "Content-Type": "application/json", ...CORS_HEADERS },
  });
}

/**
 * A CORS preflight is an OPTIONS request that names the method it wants to
 * use; it never carries credentials, so it is answered here, not forwarded.
 * @param {Request} request
 */
export function isPreflight(request) {
  return request.method === "OPTIONS" && request.headers.has("Access-Control-Request-Method");
}

/** @param {Request} request */
export function preflight(request) {
  const requested = request.headers.get("Access-Control-Request-Headers");
  return new Response(null, {
    status: 204,
    headers: {
      ...CORS_HEADERS,
      "Access-Control-Allow-Methods": PREFLIGHT_METHODS,
      // "*" does not cover Authorization for browsers; echoing the request does.
      "Access-Control-Allow-Headers": requested || "*",
      "Access-Control-Max-Age": "86400",
    },
  });
}

/** @param {number} status @param {string} error @param {string} message @returns {GatewayError} */
const err = (status, error, message) => ({ status, error, message });

/** The gateway's own errors, by cause. */
export const errors = {
  missingKey: () => err(401, "Missing API Key", "Please provide X-API-Key header"),
  invalidKey: () => err(401, "Invalid API Key", "The provided API Key is invalid or has been revoked"),
  expired: () => err(401, "Token Expired", "The API Key has expired"),
  routesNotConfigured: () => err(500, "Routes Not Configured", "No routes have been configured"),
  /** @param {string} pathname */
  routeNotFound: (pathname) => err(404, "Route Not Found", `No route configured for ${pathname}`),
  /** @param {string} what the service name, or the route key when it has none */
  permissionDenied: (what) => err(403, "Permission Denied", `Token does not have permission for '${what}'`),
  credentialsMissing: () => err(502, "Bad Gateway", "Backend credentials are not configured"),
  routeMisconfigured: () => err(502, "Bad Gateway", "The route's backend URL is not valid"),
  upstreamUnreachable: () => err(502, "Bad Gateway", "The backend service could not be reached"),
  upstreamTimeout: () => err(504, "Gateway Timeout", "The backend service did not respond in time"),
  internal: () => err(500, "Internal Server Error", "An unexpected error occurred"),
};
