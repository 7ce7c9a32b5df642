// What both browser tests need (dashboard_test.mjs, widget_test.mjs): where the
// build and the sources are, where screenshots go, playwright-core's chromium
// (exit 77, ctest's "skipped", when it or the browser is missing, except under
// CI=true, where that is a failure), and check(), which counts what passed.
import { spawn } from 'node:child_process';
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

// Starts loomd on `dataDir` with `settings` (KEY=VALUE for --set), its output
// appended to `logName` among the artifacts; resolves with { proc, url } once
// it listens. proc.stopped resolves when it exits.
export function startLoomd(dataDir, settings, logName, listen = '127.0.0.1:0') {
  return new Promise((resolve, reject) => {
    const log = fs.createWriteStream(path.join(artifacts, logName), { flags: 'a' });
    const args = ['--data-dir', dataDir, '--listen', listen];
    for (const s of settings) args.push('--set', s);
    const p = spawn(path.join(binDir, 'loomd'), args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let seen = '';
    const timer = setTimeout(() => reject(new Error('loomd did not start in 20 s:\n' + seen)), 20000);
    const onData = (d) => {
      log.write(d);
      seen += d.toString();
      const m = seen.match(/listening on (http:\/\/127\.0\.0\.1:\d+)/);
      if (m) {
        clearTimeout(timer);
        resolve({ proc: p, url: m[1] });
      }
    };
    p.stdout.on('data', onData);
    p.stderr.on('data', onData);
    p.on('exit', (code) => reject(new Error(`loomd exited with ${code}:\n${seen}`)));
    p.stopped = new Promise((res) => p.on('exit', res));
  });
}
