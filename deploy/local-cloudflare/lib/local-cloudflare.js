// Local Cloudflare: the gateway Worker in workerd (Miniflare) on one port,
// and the Cloudflare KV REST API over that Worker's KV namespace on another.

import http from "node:http";
import path from "node:path";
import { readFileSync } from "node:fs";
import { Miniflare } from "miniflare";
import { createApiHandler } from "./kv-api.js";
import { Faults } from "./faults.js";

/**
 * @typedef {object} Options
 * @property {string} host                 listen address of both servers
 * @property {number} apiPort              Cloudflare API port (0 = any free port)
 * @property {number} workerPort           Worker port (0 = any free port)
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

/**
 * Starts both servers.
 * @param {Options} options
 * @returns {Promise<{cloudflareApi: string, worker: string, admin: string, mf: Miniflare, close: () => Promise<void>}>}
 */
export async function startLocalCloudflare(options) {
  const { main, compatibilityDate } = readWranglerToml(options.workerDir);
  const mf = new Miniflare({
    modules: true,
    modulesRoot: options.workerDir,
    scriptPath: path.join(options.workerDir, main),
    modulesRules: [{ type: "ESModule", include: ["**/*.js"] }],
    compatibilityDate,
    cf: false, // a placeholder Request.cf: never fetch Cloudflare's (no network here)
    kvNamespaces: { TOKENS: options.namespaceId },
    kvPersist: options.persist ?? false,
    bindings: options.vars,
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
    const kv = await mf.getKVNamespace("TOKENS");
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
