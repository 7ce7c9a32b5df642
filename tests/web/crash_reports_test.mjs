// Crash reports from Sentry's official SDKs, unmodified, installed from npm:
// a real loomd on loopback, a DSN made with `loom dsn create`, and
//   - @sentry/node in three runs of a small app (three users) that dies of the
//     same uncaught TypeError, and an app with an unhandled promise rejection;
//   - @sentry/browser (bundled by esbuild for the page) in headless Chromium,
//     on a page of another origin, where a click handler throws.
// Checks through loomd's API that each crash is one feedback item, grouped and
// counted (occurrences, distinct users, releases), with the right frames, and
// scrubbed (no email, card number or user id reaches the item).
// Exit 77 (ctest: skipped) when chromium or the npm packages are missing,
// except under CI=true, where that is a failure.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';

import { env, binDir, artifacts, chromiumPath, chromium, check, passed, skip, startLoomd } from './harness.mjs';

const modules = env.LOOM_WEB_TEST_MODULES || '.';
const requireModule = createRequire(path.join(modules, 'loader.js'));
let esbuild;
try {
  requireModule.resolve('@sentry/node');
  requireModule.resolve('@sentry/browser');
  esbuild = requireModule('esbuild');
} catch (e) {
  skip(`@sentry/node, @sentry/browser or esbuild is not installed in ${modules}: ./scripts/setup.sh --tests installs them`);
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-crash-test-'));
const dataDir = path.join(tmp, 'data');
fs.mkdirSync(artifacts, { recursive: true });

function loom(...args) {
  return execFileSync(path.join(binDir, 'loom'), args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}

// Runs `source` as a CommonJS app with the SDK on its require path; resolves
// with its exit code and output.
function runApp(name, source, extraEnv) {
  const file = path.join(tmp, name);
  fs.writeFileSync(file, source);
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [file], {
      env: { ...process.env, NODE_PATH: modules, ...extraEnv },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    const timer = setTimeout(() => p.kill('SIGKILL'), 30000);
    p.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

const CRASHING_APP = `
const Sentry = require('@sentry/node');
Sentry.init({ dsn: process.env.SENTRY_DSN, release: 'calc@1.0.0', environment: 'test' });
Sentry.setUser({ id: process.env.APP_USER, email: process.env.APP_USER + '@example.com' });
Sentry.addBreadcrumb({ category: 'calc', message: 'averaging the scores of ' + process.env.APP_USER + '@example.com' });
function average(xs) {
  return xs.reduce((a, b) => a + b) / xs.length;
}
setTimeout(() => {
  console.log(average([]));
}, 10);
`;

const REJECTING_APP = `
const Sentry = require('@sentry/node');
Sentry.init({ dsn: process.env.SENTRY_DSN, release: 'calc@1.0.0' });
async function charge(card) {
  throw new Error('payment declined for card ' + card + ' of alice@example.com');
}
charge('4111 1111 1111 1111');
setTimeout(async () => {
  await Sentry.flush(5000);
  process.exit(0);
}, 300);
`;

// The page: the SDK bundle, Sentry.init with the DSN, and app.js whose click
// handler throws.
function startPage(dsn, bundle) {
  const appJs = `
function showCart(cart) {
  return cart.items.length;
}
document.getElementById('cart').addEventListener('click', function onCartClick() {
  document.getElementById('count').textContent = showCart(null);
});
`;
  const html = `<!doctype html><html><head><meta charset="utf-8"><title>shop</title>
<script src="/sentry.js"></script>
<script>Sentry.init({ dsn: ${JSON.stringify(dsn)}, release: 'shop@2.0.0' });</script>
</head><body><button id="cart">Cart</button><span id="count"></span>
<script src="/app.js"></script></body></html>`;
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x').pathname;
    const files = { '/': [html, 'text/html'], '/sentry.js': [bundle, 'text/javascript'], '/app.js': [appJs, 'text/javascript'] };
    const f = files[url];
    if (!f) {
      res.writeHead(404);
      return res.end();
    }
    res.writeHead(200, { 'Content-Type': f[1] + '; charset=utf-8' });
    res.end(f[0]);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

async function items(loomUrl, admin) {
  const r = await fetch(loomUrl + '/v1/feedback?limit=200', { headers: { Authorization: 'Bearer ' + admin } });
  return (await r.json()).items;
}

async function waitFor(what, fn, ms = 15000) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    last = await fn();
    if (last) return last;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${what}`);
}

let loomd;
let page;
let browser;
try {
  const admin = loom('token', 'bootstrap', '--data-dir', dataDir);
  const started = await startLoomd(dataDir, ['agents=0'], 'crash-loomd.log');
  loomd = started.proc;
  const loomUrl = started.url;
  const dsn = loom('--server', loomUrl, '--token', admin, 'dsn', 'create', '--repo', 'calc');
  check(/^http:\/\/[0-9a-f]{32}@127\.0\.0\.1:\d+\/\d+$/.test(dsn), 'loom dsn create prints a DSN in the form the SDKs take', dsn);

  // @sentry/node: the same uncaught crash from three users.
  for (const user of ['u-alice', 'u-bob', 'u-carol']) {
    const r = await runApp('calc.cjs', CRASHING_APP, { SENTRY_DSN: dsn, APP_USER: user });
    check(r.code !== 0 && r.out.includes('Reduce of empty array'), `the node app of ${user} died of its uncaught TypeError`, r.out.slice(-500));
  }
  const crash = await waitFor('the grouped node crash', async () =>
    (await items(loomUrl, admin)).find((i) => i.title.startsWith('TypeError: Reduce of empty array') && i.crash && i.crash.occurrences === 3));
  check(crash.crash.users === 3 && crash.reporter_count === 3, 'three users crashing the same way are one item with 3 occurrences and 3 users', crash.crash);
  check(crash.crash.releases.length === 1 && crash.crash.releases[0].release === 'calc@1.0.0', 'the release is recorded', crash.crash.releases);
  check(crash.app_version === 'calc@1.0.0' && crash.repo === 'calc' && crash.kind === 'bug', 'the item is a bug on the DSN\'s repository with the app version', crash);
  check(/at average \([^)]*calc\.cjs:7:\d+\)/.test(crash.stack_trace), 'the stack trace names the in-app frame average() in calc.cjs at its line', crash.stack_trace);
  check(crash.stack_trace.includes('>') && crash.stack_trace.includes('xs.reduce((a, b) => a + b)'), 'the in-app frame carries its source line', crash.stack_trace);
  check(crash.logs && crash.logs.includes('averaging the scores of [email]'), 'the breadcrumbs are kept, scrubbed', crash.logs);
  const all = JSON.stringify(await items(loomUrl, admin));
  for (const leak of ['u-alice@example.com', 'u-alice', 'u-bob', 'u-carol']) {
    const at = all.indexOf(leak);
    check(at < 0, `no email or user id of the app's users is stored (${leak})`, all.slice(Math.max(0, at - 300), at + 100));
  }

  // @sentry/node: an unhandled promise rejection.
  const rej = await runApp('pay.cjs', REJECTING_APP, { SENTRY_DSN: dsn });
  check(rej.code === 0, 'the rejecting app flushed and exited', rej.out.slice(-500));
  const rejected = await waitFor('the rejection', async () =>
    (await items(loomUrl, admin)).find((i) => i.title.startsWith('Error: payment declined')));
  check(rejected.title === 'Error: payment declined for card [card] of [email]', 'the rejection is an item with the card number and email scrubbed', rejected.title);
  check(/at charge \([^)]*pay\.cjs:\d+:\d+\)/.test(rejected.stack_trace), 'its trace names charge() in pay.cjs', rejected.stack_trace);
  check(rejected.body.includes('unhandled') && rejected.body.includes('onunhandledrejection'), 'its body says it was an unhandled rejection', rejected.body);

  // @sentry/browser in Chromium: a click handler that throws, on another origin.
  const bundle = esbuild.buildSync({
    entryPoints: [requireModule.resolve('@sentry/browser')],
    bundle: true, format: 'iife', globalName: 'Sentry', write: false, platform: 'browser', logLevel: 'error',
  }).outputFiles[0].text;
  page = await startPage(dsn, bundle);
  const pageUrl = `http://127.0.0.1:${page.address().port}/`;
  browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args: ['--no-sandbox'] });
  const tab = await browser.newPage();
  const sent = [];
  tab.on('response', (r) => { if (r.url().includes('/envelope/')) sent.push(r.status()); });
  // Two visits (the SDK drops an error identical to its previous one within a
  // page, so the second click of one visit would not be sent).
  for (let visit = 0; visit < 2; ++visit) {
    await tab.goto(pageUrl);
    await tab.click('#cart');
    await tab.evaluate(() => Sentry.flush(5000));
  }
  check(sent.length >= 1 && sent.every((s) => s === 200), 'the browser SDK\'s envelopes were answered 200 (with CORS)', sent);
  const web = await waitFor('the browser crash', async () =>
    (await items(loomUrl, admin)).find((i) => i.title.includes("reading 'items'") && i.crash && i.crash.occurrences === 2))
    .catch(async (e) => {
      throw new Error(e.message + ': ' + JSON.stringify((await items(loomUrl, admin)).map((i) => [i.title, i.crash])));
    });
  check(web.title === "TypeError: Cannot read properties of null (reading 'items')", 'the browser crash of two visits is one item', web.title);
  check(/at showCart \(\/app\.js:3:\d+\)/.test(web.stack_trace), 'its frames name showCart in /app.js (no host or port), at its line', web.stack_trace);
  check(/at (HTMLButtonElement\.)?onCartClick \(\/app\.js:6:\d+\)/.test(web.stack_trace), 'and the click handler that called it', web.stack_trace);
  // The page's host is an IP address here, so it is scrubbed like any other.
  const scrubbedUrl = `http://[ip]:${page.address().port}/`;
  check(web.app_version === 'shop@2.0.0' && web.url === scrubbedUrl, 'it carries the release and the page URL (its IP address scrubbed)', [web.app_version, web.url]);

  console.log(`${passed} passed, 0 failed`);
} catch (e) {
  console.error(`FAILED: ${e.stack || e}`);
  console.log(`${passed} passed, 1 failed (loomd's log in ${artifacts})`);
  process.exitCode = 1;
} finally {
  if (browser) await browser.close().catch(() => {});
  if (page) page.close();
  if (loomd) {
    loomd.kill('SIGTERM');
    await loomd.stopped;
  }
  fs.rmSync(tmp, { recursive: true, force: true });
}
