// The feedback widget in a real browser (headless Chromium from Debian's package,
// driven by playwright-core): a real loomd on a loopback port, the example app
// examples/calc-web served by this script from another origin with a strict CSP
// of its own, and the widget embedded there with its one tag. Checks that
//   - feedback filed through the widget arrives in loomd with the page's context
//     (URL, user agent, app version, viewport, the console error and the
//     unhandled rejection with their stacks);
//   - the page's CSS does not reach into the widget;
//   - "My reports" shows the item's status as it changes;
//   - a title and a resolution holding <img onerror> and </script> show as text
//     and nothing executes;
//   - a page of an origin the token does not allow is refused (by the preflight
//     in the browser, with a clear 403 for a direct request);
//   - the widget fits a phone-width screen;
//   - what it filed appears in the dashboard's feedback inbox, with its context.
// Screenshots go to $LOOM_ARTIFACTS. Exit 77 (ctest: skipped) when chromium or
// playwright-core is missing, except under CI=true, where that is a failure.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';

import { env, binDir, srcDir, artifacts, chromiumPath, chromium, check, passed, startLoomd } from './harness.mjs';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-widget-test-'));
const dataDir = path.join(tmp, 'data');
fs.mkdirSync(artifacts, { recursive: true });

function loom(...args) {
  return execFileSync(path.join(binDir, 'loom'), args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}


// Serves examples/calc-web with the widget's tag pointed at `loomUrl` and `token`.
function startApp(loomUrl, tokenNow) {
  const dir = path.join(srcDir, 'examples', 'calc-web');
  const types = { '.html': 'text/html; charset=utf-8', '.css': 'text/css', '.js': 'text/javascript' };
  const server = http.createServer((req, res) => {
    const name = req.url === '/' ? 'index.html' : path.basename(new URL(req.url, 'http://x').pathname);
    const file = path.join(dir, name);
    if (!fs.existsSync(file)) {
      res.writeHead(404).end();
      return;
    }
    let body = fs.readFileSync(file);
    if (name === 'index.html') {
      body = body.toString().replace('http://127.0.0.1:7700/widget.js', `${loomUrl}/widget.js`).replace('REPORTER_TOKEN', tokenNow());
    }
    res.writeHead(200, {
      'Content-Type': types[path.extname(name)] || 'application/octet-stream',
      // A strict app: no inline script or style; scripts and requests to loomd only.
      'Content-Security-Policy': `default-src 'self'; script-src 'self' ${loomUrl}; connect-src 'self' ${loomUrl}; style-src 'self'`,
    });
    res.end(body);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

async function api(loomUrl, token, method, target, body, headers = {}) {
  const r = await fetch(loomUrl + target, {
    method,
    headers: Object.assign({ Authorization: `Bearer ${token}` }, body ? { 'Content-Type': 'application/json' } : {}, headers),
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch (e) { /* not JSON */ }
  return { status: r.status, json, text, headers: r.headers };
}

// A POST with an Origin header as a browser would send it (fetch may not set one).
function postWithOrigin(loomUrl, token, origin, body) {
  const u = new URL(loomUrl + '/v1/feedback');
  const data = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST', headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json', Origin: origin, 'Content-Length': Buffer.byteLength(data) } }, (res) => {
      let text = '';
      res.on('data', (d) => { text += d; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, text }));
    });
    req.on('error', reject);
    req.end(data);
  });
}

// Sets an item's status and resolution as its task's progress would (the task
// store writes the same two columns), straight into loomd's SQLite file.
function setStatus(id, status, resolution) {
  return execFileSync('python3', ['-c', `
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=10)
db.execute("UPDATE feedback SET status=?, resolution=? WHERE id=?", (sys.argv[2], sys.argv[3], int(sys.argv[4])))
db.commit()
`, path.join(dataDir, 'loom.db'), status, resolution, String(id)], { encoding: 'utf8' });
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(artifacts, name), fullPage: false });
}

async function fileThroughWidget(page, text, contact) {
  const open = page.getByRole('button', { name: 'Feedback' });
  if (await open.isVisible()) await open.click();
  await page.getByRole('tab', { name: 'New report' }).click();
  await page.locator('#loom-text').fill(text);
  if (contact) await page.locator('#loom-contact').fill(contact);
  await page.getByRole('button', { name: 'Send' }).click();
  const status = page.locator('loom-feedback form .status');
  await status.filter({ hasText: /Thank you|Not sent/ }).waitFor({ timeout: 10000 });
  return status.textContent();
}

const XSS = `<img src=x onerror="window.__pwned='img';alert('img')"></script><script>window.__pwned='script'</script> crash`;

let loomd;
let app;
let browser;
try {
  const admin = loom('token', 'bootstrap', '--data-dir', dataDir);
  const started = await startLoomd(dataDir, ['agents=0'], 'loomd.log');
  loomd = started.proc;
  const loomUrl = started.url;
  // Changes the database while loomd is stopped (as its task's progress would
  // change an item: the task store writes the same columns), then starts it
  // again on the same port.
  const restartWith = async (change) => {
    loomd.kill('SIGTERM');
    await loomd.stopped;
    change();
    loomd = (await startLoomd(dataDir, ['agents=0'], 'loomd.log', loomUrl.replace('http://', ''))).proc;
  };
  let reporter = '';
  app = await startApp(loomUrl, () => reporter);
  const allowed = `http://127.0.0.1:${app.address().port}`;
  const appUrl = `${allowed}/`;
  // The admin's set-up, as docs/widget.md says it.
  const made = JSON.parse(loom('--server', loomUrl, '--token', admin, '--json', 'token', 'create', '--role', 'reporter', '--name', 'calc-web', '--origin', 'https://calc.example'));
  reporter = made.token;
  const updated = loom('--server', loomUrl, '--token', admin, 'token', 'update', String(made.id), '--origin', allowed, '--origin', 'https://calc.example');
  check(updated.includes(allowed), 'loom token update sets the origins the token is allowed from', updated);

  const widget = await fetch(loomUrl + '/widget.js');
  check(widget.status === 200 && widget.headers.get('content-type') === 'text/javascript; charset=utf-8', 'loomd serves /widget.js as JavaScript', widget.headers.get('content-type'));

  browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args: ['--no-sandbox'] });
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const dialogs = [];
  const pageErrors = [];
  page.on('dialog', (d) => { dialogs.push(d.message()); d.dismiss(); });
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  const cspViolations = [];
  page.on('console', (m) => { if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text()); });

  await page.goto(appUrl);
  await page.getByRole('button', { name: 'Feedback' }).waitFor();
  await shot(page, '01-app-with-widget.png');

  // The app fails: a console.error and an unhandled rejection.
  await page.locator('#numbers').fill('');
  await page.locator('#average').click();
  await page.waitForFunction(() => document.getElementById('result').textContent === 'Error');
  await page.waitForTimeout(200);

  await page.getByRole('button', { name: 'Feedback' }).click();
  await shot(page, '02-form.png');
  const fontSize = await page.locator('#loom-text').evaluate((el) => getComputedStyle(el).fontSize);
  const family = await page.locator('#loom-text').evaluate((el) => getComputedStyle(el).fontFamily);
  check(fontSize === '14px' && !/Georgia/.test(family), "the app's CSS does not reach into the widget", { fontSize, family });
  await page.getByRole('button', { name: 'Close' }).click();

  const sent = await fileThroughWidget(page, 'Average of no numbers shows Error\nClear the numbers and press Average.', 'ana@example.com');
  await shot(page, '03-sent.png');
  const m = sent.match(/report #(\d+)/);
  check(m, 'the widget files the report and shows its id', sent);
  const id = Number(m[1]);

  const item = (await api(loomUrl, admin, 'GET', `/v1/feedback/${id}`)).json;
  check(item.kind === 'bug' && item.title === 'Average of no numbers shows Error', 'the item arrives with its kind and title', item);
  check(item.app_version === '1.4.2' && item.url === appUrl && item.reporter === 'ana@example.com', 'with the app version, the page URL and the contact', item);
  const ctx = item.context || {};
  check(/Chrome/.test(ctx.user_agent) && ctx.viewport && ctx.viewport.width === 1280, 'with the user agent and the viewport', ctx);
  const errs = ctx.errors || [];
  const consoleErr = errs.find((e) => e.type === 'console.error');
  const rejection = errs.find((e) => e.type === 'unhandledrejection');
  check(consoleErr && /average\(\) of an empty list/.test(consoleErr.message) && /average/.test(consoleErr.stack), 'with the console error and its stack', errs);
  check(rejection && /could not save the result/.test(rejection.message) && rejection.stack, 'with the unhandled rejection and its stack', errs);
  check(/calc failed/.test(item.logs || '') && /average/.test(item.stack_trace || ''), 'with the errors in logs and the last stack as stack_trace', { logs: item.logs, stack: item.stack_trace });

  // A title that is markup, filed through the widget; a resolution that is markup
  // from the server: both must show as text.
  const xssSent = await fileThroughWidget(page, XSS);
  const xssId = Number((xssSent.match(/report #(\d+)/) || [])[1]);
  check(xssId > 0, 'a title holding markup is filed', xssSent);
  await restartWith(() => setStatus(id, 'in_review', `Fixed in review: <img src=x onerror="window.__pwned='resolution'"> </script>`));
  await page.getByRole('tab', { name: 'My reports' }).click();
  const first = page.locator(`loom-feedback li[data-id="${id}"]`);
  await first.waitFor();
  await page.locator(`loom-feedback li[data-id="${xssId}"]`).waitFor();
  await page.waitForTimeout(300);
  await shot(page, '04-my-reports.png');
  check((await first.locator('.pill').textContent()) === 'Fixed, in review', '"My reports" shows the status as it changed', await first.textContent());
  check((await page.locator(`loom-feedback li[data-id="${xssId}"] .title`).textContent()) === XSS, 'the markup title shows as text');
  check((await first.locator('.resolution').textContent()).includes('<img src=x onerror='), 'the markup resolution shows as text');
  check(await page.locator('loom-feedback img, loom-feedback script').count() === 0, 'no element was made of the markup');
  check(await page.evaluate(() => window.__pwned) === undefined && dialogs.length === 0, 'nothing executed', { dialogs });
  await restartWith(() => setStatus(id, 'merged', ''));
  await page.getByRole('tab', { name: 'New report' }).click();
  await page.getByRole('tab', { name: 'My reports' }).click();
  await page.locator(`loom-feedback li[data-id="${id}"] .pill`).filter({ hasText: /^Fixed$/ }).waitFor();
  check((await first.locator('.pill').textContent()) === 'Fixed', 'and again when it is merged');
  check(cspViolations.length === 0 && pageErrors.every((e) => /could not save|empty list/.test(e)), "the widget keeps to the app's strict CSP", { cspViolations, pageErrors });

  // Another origin (localhost is not 127.0.0.1 to a browser) is not allowed.
  const before = (await api(loomUrl, admin, 'GET', '/v1/feedback?limit=100')).json.items.length;
  const other = await context.newPage();
  await other.goto(`http://localhost:${app.address().port}/`);
  const refusedText = await fileThroughWidget(other, 'From a site that is not allowed');
  await shot(other, '05-refused-origin.png');
  check(/Not sent/.test(refusedText), 'a page of an unlisted origin cannot file', refusedText);
  const after = (await api(loomUrl, admin, 'GET', '/v1/feedback?limit=100')).json.items.length;
  check(after === before, 'and nothing was stored', { before, after });
  const direct = await postWithOrigin(loomUrl, reporter, `http://localhost:${app.address().port}`, { kind: 'bug', title: 't', body: 'b' });
  check(direct.status === 403 && !direct.headers['access-control-allow-origin'] && /may not be used from pages of/.test(direct.text), 'a direct request from that origin gets a clear 403 without CORS headers', direct);
  const own = (await api(loomUrl, reporter, 'GET', '/v1/feedback')).json.items.map((i) => i.id).sort();
  check(JSON.stringify(own) === JSON.stringify([id, xssId].sort()), "the reporter token lists only its own items", own);

  // The items filed through the widget, in the dashboard's feedback inbox.
  const desk = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const dash = await desk.newPage();
  dash.on('dialog', (d) => { dialogs.push(d.message()); d.dismiss(); });
  await dash.goto(`${loomUrl}/`);
  await dash.getByLabel('Token').fill(admin);
  await dash.getByRole('button', { name: 'Sign in' }).click();
  await dash.getByRole('navigation', { name: 'Pages' }).waitFor();
  await dash.goto(`${loomUrl}/#/feedback`);
  await dash.locator(`.feedback-list li[data-id="${xssId}"]`).waitFor();
  await dash.locator(`.feedback-list li[data-id="${id}"] summary`).first().click();
  await shot(dash, '07-dashboard-feedback.png');
  check(/calc failed/.test(await dash.locator(`.feedback-list li[data-id="${id}"]`).textContent()), 'with the console errors the widget captured');
  check((await dash.locator(`.feedback-list li[data-id="${id}"] .title`).textContent()) === 'Average of no numbers shows Error', 'what the widget filed appears in the dashboard');
  check((await dash.locator(`.feedback-list li[data-id="${xssId}"] .title`).textContent()) === XSS && await dash.locator('main img, main script').count() === 0 && dialogs.length === 0, 'its markup title shows there as text and nothing runs');

  // A phone.
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  const p2 = await phone.newPage();
  await p2.goto(appUrl);
  await p2.getByRole('button', { name: 'Feedback' }).click();
  const box = await p2.locator('loom-feedback .panel').boundingBox();
  await shot(p2, '06-phone.png');
  check(box && box.x >= 0 && box.x + box.width <= 390 && box.y >= 0, 'the form fits a phone-width screen', box);

  console.log(`screenshots in ${artifacts}`);
  console.log(`${passed} passed, 0 failed`);
} catch (e) {
  console.error(`FAILED: ${e.stack || e}`);
  console.log(`${passed} passed, 1 failed (screenshots and loomd.log in ${artifacts})`);
  process.exitCode = 1;
} finally {
  if (browser) await browser.close().catch(() => {});
  if (app) app.close();
  if (loomd) {
    loomd.kill('SIGTERM');
    await loomd.stopped;
  }
  fs.rmSync(tmp, { recursive: true, force: true });
}
