#!/usr/bin/env node
// local-cloudflare: one process for `make dev` and tests — the gateway Worker
// in workerd plus the Cloudflare KV REST API over its KV namespace (and, with
// --compat-worker-port, the v2.7 stand-in Worker on the same namespace).
// Prints one JSON line with the URLs to stdout when ready (and nothing else
// to stdout); logs go to stderr. Exits on SIGTERM/SIGINT, when its parent
// dies, and when stdin (a pipe from the parent) closes.

import fs from "node:fs";
import { parseConfig, USAGE } from "./lib/config.js";
import { startLocalCloudflare } from "./lib/local-cloudflare.js";

const parent = process.ppid; // before anything slow: a parent that dies during start-up still counts

let config;
try {
  config = parseConfig(process.argv.slice(2), process.env);
} catch (err) {
  process.stderr.write(`local-cloudflare: ${err.message}\n\n${USAGE}`);
  process.exit(2);
}
if (config.help) {
  process.stderr.write(USAGE);
  process.exit(0);
}

let running;
try {
  running = await startLocalCloudflare(config);
} catch (err) {
  process.stderr.write(`local-cloudflare: cannot start: ${err?.stack ?? err}\n`);
  process.exit(1);
}

process.stdout.on("error", () => {}); // a reader that went away must not kill us with EPIPE
process.stdout.write(
  JSON.stringify({
    cloudflare_api: running.cloudflareApi,
    worker: running.worker,
    ...(running.compatWorker ? { compat_worker: running.compatWorker } : {}),
    admin: running.admin,
    account_id: config.accountId,
    namespace_id: config.namespaceId,
  }) + "\n",
);

let stopping = false;
/** @param {string} why */
async function shutdown(why) {
  if (stopping) return;
  stopping = true;
  process.stderr.write(`local-cloudflare: stopping (${why})\n`);
  setTimeout(() => process.exit(1), 5000).unref(); // never outlive a stuck dispose
  const started = Date.now();
  try {
    await running.close();
  } catch (err) {
    process.stderr.write(`local-cloudflare: error while stopping: ${err}\n`);
  }
  process.stderr.write(`local-cloudflare: stopped in ${Date.now() - started} ms\n`);
  process.exit(0);
}

// Miniflare's own handlers kill workerd and exit at once with 128+signal;
// ours dispose of everything and exit 0. (Its "exit" hook stays, as a backstop.)
process.removeAllListeners("SIGTERM");
process.removeAllListeners("SIGINT");
process.on("SIGTERM", () => shutdown("SIGTERM"));
process.on("SIGINT", () => shutdown("SIGINT"));

// A parent that dies without signalling us: its pipe to our stdin closes…
const stdinIsPipe = (() => {
  try {
    const st = fs.fstatSync(0);
    return st.isFIFO() || st.isSocket();
  } catch {
    return false;
  }
})();
if (config.exitOnStdinClose === "always" || (config.exitOnStdinClose === "auto" && stdinIsPipe)) {
  process.stdin.on("end", () => shutdown("stdin closed"));
  process.stdin.on("error", () => shutdown("stdin error"));
  process.stdin.resume();
}
// …and we are re-parented.
setInterval(() => {
  if (process.ppid !== parent) shutdown("parent process exited");
}, 1000).unref();
