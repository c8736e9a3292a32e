// Local Cloudflare: the gateway Worker in workerd (Miniflare) on one port,
// and the Cloudflare KV REST API over that Worker's KV namespace on another.
// Optionally the v2.7 stand-in Worker (worker/compat/v27-worker.js) on a
// third port, in the same workerd, bound to the same KV namespace — so an
// end-to-end test can check that what the token service writes also works
// with the Worker deployed today.

import http from "node:http";
import path from "node:path";
import { existsSync, readFileSync } from "node:fs";
import { Miniflare } from "miniflare";
import { createApiHandler } from "./kv-api.js";
import { Faults } from "./faults.js";

/**
 * @typedef {object} Options
 * @property {string} host                 listen address of both servers
 * @property {number} apiPort              Cloudflare API port (0 = any free port)
 * @property {number} workerPort           Worker port (0 = any free port)
 * @property {number} [compatWorkerPort]   port of the v2.7 stand-in Worker (0 = any free port; undefined = not started)
 * @property {string} workerDir            folder with wrangler.toml (its `main` and `compatibility_date` are used)
 * @property {string} accountId
 * @property {string} namespaceId          the id of the Worker's TOKENS namespace
 * @property {string} apiToken             the only Bearer token the API accepts
 * @property {Record<string, string>} vars the Worker's vars and secrets
 * @property {string | undefined} persist  folder to keep KV data in across restarts (default: memory only)
 * @property {any[]} faults                fault rules active from the start
 * @property {boolean} verbose             log every API call to stderr
 */

/**
 * `main` and `compatibility_date` from the top of a wrangler.toml (the
 * keys before the first table, which is where wrangler reads them).
 * @param {string} workerDir
 */
export function readWranglerToml(workerDir) {
  const text = readFileSync(path.join(workerDir, "wrangler.toml"), "utf8");
  const top = text.split(/^\s*\[/m)[0];
  const value = (key) => new RegExp(`^\\s*${key}\\s*=\\s*"([^"]*)"`, "m").exec(top)?.[1];
  const main = value("main");
  const compatibilityDate = value("compatibility_date");
  if (!main || !compatibilityDate) throw new Error(`${workerDir}/wrangler.toml lacks main or compatibility_date`);
  return { main, compatibilityDate };
}

/** The v2.7 stand-in, relative to the Worker folder. */
export const COMPAT_WORKER_SCRIPT = "compat/v27-worker.js";
const GATEWAY_NAME = "api-gateway";
const COMPAT_NAME = "v27-compat";

/**
 * Starts the servers: the API, the gateway Worker and, if asked, the v2.7 stand-in.
 * @param {Options} options
 * @returns {Promise<{cloudflareApi: string, worker: string, compatWorker?: string, admin: string, mf: Miniflare, close: () => Promise<void>}>}
 */
export async function startLocalCloudflare(options) {
  const { main, compatibilityDate } = readWranglerToml(options.workerDir);
  const compat = options.compatWorkerPort !== undefined;
  /** @param {string} name @param {string} script */
  const worker = (name, script) => ({
    name,
    modules: true,
    modulesRoot: options.workerDir,
    scriptPath: path.join(options.workerDir, script),
    modulesRules: [{ type: "ESModule", include: ["**/*.js"] }],
    compatibilityDate,
    kvNamespaces: { TOKENS: options.namespaceId }, // the same id: one namespace, seen by every Worker
    bindings: options.vars,
  });
  const workers = [worker(GATEWAY_NAME, main)]; // the first Worker answers on the entry socket (host:port)
  if (compat) {
    const script = path.join(options.workerDir, COMPAT_WORKER_SCRIPT);
    if (!existsSync(script)) throw new Error(`--compat-worker-port: ${script} does not exist`);
    // Its own socket straight into workerd (no Miniflare entry Worker in front).
    workers.push({ ...worker(COMPAT_NAME, COMPAT_WORKER_SCRIPT), unsafeDirectSockets: [{ host: options.host, port: options.compatWorkerPort }] });
  }
  const mf = new Miniflare({
    workers,
    cf: false, // a placeholder Request.cf: never fetch Cloudflare's (no network here)
    kvPersist: options.persist ?? false,
    host: options.host,
    port: options.workerPort,
    // workerd's output (the Worker's console) goes to stderr: stdout carries only the start-up line.
    handleRuntimeStdio: (stdout, stderr) => {
      stdout.pipe(process.stderr, { end: false });
      stderr.pipe(process.stderr, { end: false });
    },
  });
  let server;
  try {
    const workerUrl = await mf.ready;
    const compatUrl = compat ? await mf.unsafeGetDirectURL(COMPAT_NAME) : undefined;
    const kv = await mf.getKVNamespace("TOKENS", GATEWAY_NAME);
    const faults = new Faults();
    faults.add(options.faults);
    const handler = createApiHandler({
      kv,
      accountId: options.accountId,
      namespaceId: options.namespaceId,
      apiToken: options.apiToken,
      faults,
      verbose: options.verbose,
    });
    server = http.createServer(handler);
    const sockets = new Set();
    server.on("connection", (s) => {
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
    });
    await new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen(options.apiPort, options.host, resolve);
    });
    const { port } = /** @type {import("node:net").AddressInfo} */ (server.address());
    const hostInUrl = options.host.includes(":") ? `[${options.host}]` : options.host;
    const origin = `http://${hostInUrl}:${port}`;
    let closing;
    return {
      cloudflareApi: `${origin}/client/v4`,
      worker: workerUrl.href,
      ...(compatUrl ? { compatWorker: compatUrl.href } : {}),
      admin: `${origin}/__admin`,
      mf,
      close() {
        closing ??= (async () => {
          for (const s of sockets) s.destroy(); // hanging faults included
          await new Promise((r) => server.close(() => r()));
          await mf.dispose();
        })();
        return closing;
      },
    };
  } catch (err) {
    server?.close();
    await mf.dispose();
    throw err;
  }
}
