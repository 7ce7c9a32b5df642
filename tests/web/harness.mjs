// What both browser tests need (dashboard_test.mjs, widget_test.mjs): where the
// build and the sources are, where screenshots go, playwright-core's chromium
// (exit 77, ctest's "skipped", when it or the browser is missing, except under
// CI=true, where that is a failure), and check(), which counts what passed.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';

export const env = process.env;
export const binDir = env.LOOM_BIN_DIR;
export const srcDir = env.LOOM_SOURCE_DIR;
export const artifacts = env.LOOM_ARTIFACTS || fs.mkdtempSync(path.join(os.tmpdir(), 'loom-web-'));
export const chromiumPath = env.LOOM_CHROMIUM || '/usr/bin/chromium';

export function skip(why) {
  if (env.CI === 'true') {
    console.error(`FAILED: ${why} (under CI=true the browser tests must run)`);
    process.exit(1);
  }
  console.log(`SKIPPED: ${why}`);
  process.exit(77);
}

if (!fs.existsSync(chromiumPath)) skip(`no browser at ${chromiumPath}: ./scripts/setup.sh --tests installs Debian's chromium`);
export let chromium;
try {
  chromium = createRequire(path.join(env.LOOM_WEB_TEST_MODULES || '.', 'loader.js'))('playwright-core').chromium;
} catch (e) {
  skip(`playwright-core is not installed in ${env.LOOM_WEB_TEST_MODULES}: ./scripts/setup.sh --tests installs it`);
}

export let passed = 0;
export function check(cond, what, detail) {
  if (!cond) throw new Error(`${what}${detail === undefined ? '' : ': ' + (typeof detail === 'string' ? detail : JSON.stringify(detail))}`);
  passed += 1;
  console.log(`ok - ${what}`);
}
