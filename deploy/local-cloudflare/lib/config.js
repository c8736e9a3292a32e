// Configuration of the local-cloudflare process: flags override environment
// variables, which override defaults. The CF_* names are the token service's,
// so one environment configures both.

import path from "node:path";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";

const DEFAULT_WORKER_DIR = fileURLToPath(new URL("../../worker", import.meta.url));

/** Worker vars passed through from the environment when set. */
const WORKER_VARS = [
  "TOKEN_MANAGER_BACKEND",
  "USAGE_INGEST_SECRET",
  "UPSTREAM_TIMEOUT_MS",
  "NEGATIVE_CACHE_TTL_MS",
  "USAGE_BATCH_MAX",
  "USAGE_FLUSH_DELAY_MS",
  "USAGE_MAX_ATTEMPTS",
  "USAGE_TIMEOUT_MS",
  "USAGE_RETRY_BASE_MS",
];

export const USAGE = `Usage: node server.js [flags]

Hosts the gateway Worker in workerd (Miniflare) and serves the Cloudflare KV
REST API over its KV namespace. Prints one JSON line to stdout when ready:
  {"cloudflare_api":"http://HOST:P/client/v4","worker":"http://HOST:Q/","admin":"http://HOST:P/__admin",...}
(plus "compat_worker":"http://HOST:R/" when --compat-worker-port is given).

Flags (environment variable in brackets):
  --host ADDR              listen address (LOCAL_CF_HOST, default 127.0.0.1)
  --api-port N             Cloudflare API port, 0 = any free (LOCAL_CF_API_PORT, default 8788)
  --worker-port N          Worker port, 0 = any free (LOCAL_CF_WORKER_PORT, default 8787)
  --compat-worker-port N   also host the v2.7 stand-in Worker (WORKER_DIR/compat/v27-worker.js)
                           on this port, with the same vars and the same TOKENS namespace;
                           0 = any free (LOCAL_CF_COMPAT_WORKER_PORT, default: not started)
  --account-id ID          (CF_ACCOUNT_ID, default local-account)
  --namespace-id ID        the TOKENS namespace id (CF_KV_NAMESPACE_ID, default local-tokens)
  --api-token TOKEN        the accepted Bearer token (CF_API_TOKEN, default local-dev-token)
  --var NAME=VALUE         a Worker var or secret; repeatable. Also taken from the environment:
                           ${WORKER_VARS.join(", ")}.
                           TOKEN_MANAGER_BACKEND defaults to http://127.0.0.1:8000.
  --persist DIR            keep KV data in DIR across restarts (LOCAL_CF_PERSIST; default memory only)
  --faults JSON            fault rules active from the start (LOCAL_CF_FAULTS), e.g.
                           '[{"kind":"429","count":2,"retry_after":1}]'
  --worker-dir DIR         the Worker (wrangler.toml's main) (LOCAL_CF_WORKER_DIR, default ../worker)
  --exit-on-stdin-close M  auto|always|never (LOCAL_CF_EXIT_ON_STDIN_CLOSE, default auto:
                           only when stdin is a pipe or socket)
  --verbose                log every API call to stderr (LOCAL_CF_VERBOSE=1)
  --help
`;

/** @param {string | undefined} v @param {string} name */
function port(v, name) {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new Error(`${name} must be a port number (0-65535), got ${JSON.stringify(v)}`);
  return n;
}

/**
 * @param {string[]} argv without node and the script
 * @param {Record<string, string | undefined>} env
 * @returns {{help: true} | (import("./local-cloudflare.js").Options & {help: false, exitOnStdinClose: "auto"|"always"|"never"})}
 */
export function parseConfig(argv, env) {
  const { values } = parseArgs({
    args: argv,
    options: {
      host: { type: "string" },
      "api-port": { type: "string" },
      "worker-port": { type: "string" },
      "compat-worker-port": { type: "string" },
      "account-id": { type: "string" },
      "namespace-id": { type: "string" },
      "api-token": { type: "string" },
      var: { type: "string", multiple: true },
      persist: { type: "string" },
      faults: { type: "string" },
      "worker-dir": { type: "string" },
      "exit-on-stdin-close": { type: "string" },
      verbose: { type: "boolean" },
      help: { type: "boolean" },
    },
    strict: true,
  });
  if (values.help) return { help: true };

  /** @type {Record<string, string>} */
  const vars = { TOKEN_MANAGER_BACKEND: "http://127.0.0.1:8000" };
  for (const name of WORKER_VARS) if (env[name] !== undefined) vars[name] = env[name];
  for (const spec of values.var ?? []) {
    const eq = spec.indexOf("=");
    if (eq <= 0) throw new Error(`--var expects NAME=VALUE, got ${JSON.stringify(spec)}`);
    vars[spec.slice(0, eq)] = spec.slice(eq + 1);
  }

  let faults = [];
  const faultsJson = values.faults ?? env.LOCAL_CF_FAULTS;
  if (faultsJson) {
    try {
      faults = JSON.parse(faultsJson);
    } catch {
      throw new Error("--faults / LOCAL_CF_FAULTS must be JSON (a rule or an array of rules)");
    }
  }

  // The v2.7 stand-in: off unless a port is given (an empty flag or variable counts as unset).
  const compatPort = values["compat-worker-port"] ?? env.LOCAL_CF_COMPAT_WORKER_PORT;
  const compatWorkerPort = compatPort === undefined || compatPort === "" ? undefined : port(compatPort, "--compat-worker-port");

  const apiPort = port(values["api-port"] ?? env.LOCAL_CF_API_PORT ?? "8788", "--api-port");
  const workerPort = port(values["worker-port"] ?? env.LOCAL_CF_WORKER_PORT ?? "8787", "--worker-port");
  if (compatWorkerPort && (compatWorkerPort === apiPort || compatWorkerPort === workerPort)) {
    throw new Error(`--compat-worker-port ${compatWorkerPort} is already the ${compatWorkerPort === apiPort ? "API" : "Worker"} port`);
  }

  const exitOnStdinClose = values["exit-on-stdin-close"] ?? env.LOCAL_CF_EXIT_ON_STDIN_CLOSE ?? "auto";
  if (!["auto", "always", "never"].includes(exitOnStdinClose)) throw new Error("--exit-on-stdin-close must be auto, always or never");

  return {
    help: false,
    host: values.host ?? env.LOCAL_CF_HOST ?? "127.0.0.1",
    apiPort,
    workerPort,
    compatWorkerPort,
    workerDir: path.resolve(values["worker-dir"] ?? env.LOCAL_CF_WORKER_DIR ?? DEFAULT_WORKER_DIR),
    accountId: values["account-id"] ?? env.CF_ACCOUNT_ID ?? "local-account",
    namespaceId: values["namespace-id"] ?? env.CF_KV_NAMESPACE_ID ?? "local-tokens",
    apiToken: values["api-token"] ?? env.CF_API_TOKEN ?? "local-dev-token",
    vars,
    persist: (values.persist ?? env.LOCAL_CF_PERSIST) || undefined,
    faults: Array.isArray(faults) ? faults : [faults],
    verbose: values.verbose ?? env.LOCAL_CF_VERBOSE === "1",
    exitOnStdinClose: /** @type {"auto"|"always"|"never"} */ (exitOnStdinClose),
  };
}
