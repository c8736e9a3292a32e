// wrangler.toml is what `wrangler deploy` uses: check that wrangler 4 accepts
// it and bundles the Worker with the intended bindings for each environment
// (a dry run: nothing is uploaded, no login needed).

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { WORKER_DIR } from "./support/harness.js";

const run = promisify(execFile);

async function dryRun(env) {
  const out = mkdtempSync(path.join(tmpdir(), "wrangler-dry-"));
  try {
    const { stdout } = await run(path.join(WORKER_DIR, "node_modules/.bin/wrangler"), ["deploy", "--dry-run", "--env", env, "--outdir", out], {
      cwd: WORKER_DIR,
      env: { ...process.env, WRANGLER_SEND_METRICS: "false", CLOUDFLARE_CF_FETCH_ENABLED: "false", NO_COLOR: "1" },
    });
    assert.ok(existsSync(path.join(out, "index.js")), "bundled");
    return stdout;
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

test("production: the v2.7 Worker's name, KV binding TOKENS, the production backend", async () => {
  const out = await dryRun("production");
  assert.match(out, /env\.TOKENS \(REPLACE_WITH_PRODUCTION_KV_NAMESPACE_ID\)\s+KV Namespace/);
  assert.match(out, /env\.TOKEN_MANAGER_BACKEND \("https:\/\/tapi\.blocktempo\.ai"\)/);
  assert.match(out, /env\.UPSTREAM_TIMEOUT_MS/);
  assert.doesNotMatch(out, /BACKEND_SECRET_NAMES/, "routes cannot name Worker bindings");
});

test("dev: the local backend", async () => {
  const out = await dryRun("dev");
  assert.match(out, /env\.TOKENS \(local-tokens\)/);
  assert.match(out, /env\.TOKEN_MANAGER_BACKEND \("http:\/\/127\.0\.0\.1:8000"\)/);
});
