// The dashboard in a real browser (headless Chromium from Debian's package,
// driven by playwright-core), against a real loomd with one agent slot, real
// git and bubblewrap, and a scripted model (a replay server in this script, as
// orchestrator/replay_model.h replays: the reply is chosen by how many assistant
// messages the request holds). Checks that
//   - a token signs in, for an httpOnly cookie the page's scripts cannot read;
//   - a demo task is followed live on its task page (Server-Sent Events) until
//     it reaches review;
//   - the review page shows the diff (unified and side by side), the feedback
//     with its reporter count, the verification, usage and cost, the transcript;
//   - a line comment on the diff sends the task back to the agent (the model's
//     next request holds it), and after its second turn an approve merges it;
//   - an escalation answered with a secret: the secret is nowhere in the page
//     or in any request the page makes afterwards;
//   - a feedback title and a model reply holding <img onerror> and </script>
//     show as text and nothing executes;
//   - the board with 1,000 tasks paints in under a second;
//   - the pages fit a phone-width screen.
// Screenshots go to $LOOM_ARTIFACTS. Exit 77 (ctest: skipped) when chromium or
// playwright-core is missing, except under CI=true, where that is a failure.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';

import { env, binDir, srcDir, artifacts, chromiumPath, chromium, check, passed, startLoomd } from './harness.mjs';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-dashboard-test-'));
// A root loomd's sandbox uid must pass through to the task trees (docs/security.md).
fs.chmodSync(tmp, 0o711);
fs.mkdirSync(artifacts, { recursive: true });
const XSS = `<img src=x onerror="window.__pwned='img'"></script><script>window.__pwned='script'</script>`;
const SECRET = 'sk-rates-7f3a9c1e5b2d8460';

function loom(...args) {
  return execFileSync(path.join(binDir, 'loom'), args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}


// The scripted model: examples/calc-demo.json's conversation (its first reply
// holding markup), then the agent's turn after the review's line comment.
function startModel() {
  const demo = JSON.parse(fs.readFileSync(path.join(srcDir, 'examples', 'calc-demo.json'), 'utf8'));
  const steps = demo.replay.conversations[0].replies.map((r) => JSON.parse(JSON.stringify(r.message)));
  steps[0].content = `I'll start by looking at the repository layout. ${XSS}`;
  steps.push(
    { content: 'The reviewer asks for the docstring to say how the mean is computed.', tool_calls: [{ name: 'replace_in_file', arguments: { path: 'calc.py', old: '"""The arithmetic mean. Raises ValueError for an empty list."""', new: '"""The arithmetic mean (sum / count). Raises ValueError for an empty list."""' } }] },
    { content: 'Done.', tool_calls: [{ name: 'finish', arguments: { summary: 'Say how average() computes the mean' } }] });
  const requests = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => { body += d; });
    req.on('end', () => {
      if (req.method === 'GET' && req.url === '/v1/models') {
        res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ object: 'list', data: [{ id: 'replay', object: 'model' }] }));
        return;
      }
      let parsed = {};
      try { parsed = JSON.parse(body); } catch (e) { /* answered 500 below */ }
      requests.push(parsed);
      const step = (parsed.messages || []).filter((m) => m.role === 'assistant').length;
      const s = steps[step];
      if (!s) {
        res.writeHead(500).end('{"error":"past the end of the script"}');
        return;
      }
      const message = { role: 'assistant', content: s.content };
      if (s.tool_calls) message.tool_calls = s.tool_calls.map((tc, n) => ({ id: `call_${step}_${n}`, type: 'function', function: { name: tc.name, arguments: JSON.stringify(tc.arguments) } }));
      // Slow enough for the page to watch the steps arrive.
      setTimeout(() => res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({
        id: `replay-${step}`, object: 'chat.completion', model: 'replay',
        choices: [{ index: 0, message, finish_reason: s.tool_calls ? 'tool_calls' : 'stop' }],
        usage: { prompt_tokens: Math.floor(body.length / 4), completion_tokens: 40, total_tokens: Math.floor(body.length / 4) + 40 },
      })), 500);
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, requests, url: `http://127.0.0.1:${server.address().port}/v1` })));
}

async function api(loomUrl, token, method, target, body) {
  const r = await fetch(loomUrl + target, {
    method,
    headers: Object.assign({ Authorization: `Bearer ${token}` }, body ? { 'Content-Type': 'application/json' } : {}),
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch (e) { /* not JSON */ }
  return { status: r.status, json, text };
}

function sql(dbPath, script, ...args) {
  return execFileSync('python3', ['-c', `
import sqlite3, sys, time, random
db = sqlite3.connect(sys.argv[1], timeout=10)
args = sys.argv[2:]
${script}
db.commit()
`, dbPath, ...args], { encoding: 'utf8' });
}

async function shot(page, name, fullPage = false) {
  await page.screenshot({ path: path.join(artifacts, name), fullPage });
}

async function signIn(page, url, token) {
  await page.goto(url + '/');
  await page.getByLabel('Token').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('navigation', { name: 'Pages' }).waitFor();
}

async function waitFor(what, fn, timeoutMs = 60000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

let loomd;
let perfLoomd;
let model;
let browser;
let current;
try {
  // A repository: a copy of examples/calc as a git repository.
  const repo = path.join(tmp, 'calc');
  fs.cpSync(path.join(srcDir, 'examples', 'calc'), repo, { recursive: true, filter: (p) => !p.includes('__pycache__') });
  for (const cmd of [['init', '-q', '-b', 'main'], ['add', '-A'], ['-c', 'user.name=t', '-c', 'user.email=t@e', 'commit', '-qm', 'initial']]) {
    execFileSync('git', ['-C', repo, ...cmd]);
  }
  model = await startModel();
  const dataDir = path.join(tmp, 'data');
  const admin = loom('token', 'bootstrap', '--data-dir', dataDir);
  const started = await startLoomd(dataDir, ['agents=1', `llm.url=${model.url}`, 'llm.retries=1', 'feedback.rate_per_minute=0'], 'loomd.log');
  loomd = started.proc;
  const url = started.url;
  const engineer = JSON.parse(loom('--server', url, '--token', admin, '--json', 'token', 'create', '--role', 'engineer', '--name', 'ana')).token;
  const reporter = JSON.parse(loom('--server', url, '--token', admin, '--json', 'token', 'create', '--role', 'reporter', '--name', 'calc-app')).token;
  check((await api(url, admin, 'POST', '/v1/repos', { name: 'calc', path: repo, test_command: 'python3 -m unittest discover -s tests -t . -v' })).status === 201, 'the calc repository is registered');

  browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args: ['--no-sandbox'] });
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  current = page;
  const dialogs = [];
  const pageErrors = [];
  const cspViolations = [];
  page.on('dialog', (d) => { dialogs.push({ type: d.type(), message: d.message() }); d.accept(); });
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.on('console', (m) => { if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text()); });

  // Sign in.
  await page.goto(url + '/');
  await page.getByLabel('Token').waitFor();
  await shot(page, 'd01-sign-in.png');
  await page.getByLabel('Token').fill('loom_not-a-token');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('.error').waitFor();
  check(/unknown or revoked/.test(await page.locator('.error').textContent()), 'a bad token is refused with loomd\'s message');
  await signIn(page, url, engineer);
  const cookies = await context.cookies();
  const sessionCookie = cookies.find((c) => c.name === 'loom_session');
  check(sessionCookie && sessionCookie.httpOnly && sessionCookie.sameSite === 'Strict', 'signing in sets an httpOnly SameSite=Strict cookie', cookies);
  check(await page.evaluate(() => document.cookie) === '', 'which the page\'s scripts cannot read');
  check(!(await page.content()).includes(engineer), 'and the token is not kept in the page');

  // The demo task: feedback (its title holds markup) made into a task the agent works on.
  const fb = await api(url, reporter, 'POST', '/v1/feedback', { kind: 'bug', title: `average() is wrong ${XSS}`, body: 'The report page shows an average of 6.0 for the values 2 and 4; it should be 3.', repo: 'calc', reporter: 'ana' });
  check(fb.status === 201, 'the demo feedback is filed', fb.text);
  await api(url, reporter, 'POST', '/v1/feedback', { kind: 'bug', title: `average() is wrong ${XSS}`, body: 'Same here: 6.0 instead of 3.', repo: 'calc', reporter: 'bo' });
  const taskId = await waitFor('the task', async () => {
    const item = (await api(url, engineer, 'GET', `/v1/feedback/${fb.json.id}`)).json;
    return item && item.task_id;
  });
  await page.reload();
  const card = page.locator(`.task-card[data-id="${taskId}"] a`);
  await card.waitFor();
  await card.click();
  await page.locator('.pill.live.on').waitFor();
  await page.locator('.transcript .msg.assistant').first().waitFor();
  await shot(page, 'd02-task-live.png');
  const seenWhileRunning = await page.locator('.transcript .event').count();
  await page.locator('.task-head .state-review').waitFor({ timeout: 90000 });
  const seenAtReview = await page.locator('.transcript .event').count();
  check(seenAtReview > seenWhileRunning, 'the task page shows events as they happen, until review', { seenWhileRunning, seenAtReview });
  const seqs = await page.locator('.transcript .event[data-seq]').evaluateAll((els) => els.map((e) => Number(e.dataset.seq)));
  const logged = (await api(url, engineer, 'GET', `/v1/tasks/${taskId}/events?limit=5000`)).json.items.filter((e) => !['command_started', 'edit_started'].includes(e.type)).map((e) => e.seq);
  check(JSON.stringify(seqs) === JSON.stringify(logged.filter((s) => s <= Math.max(...seqs))), 'each event once, in order, none missed', { seqs, logged });
  check(await page.locator('.transcript .test-run').count() >= 2, 'test runs are highlighted');
  await shot(page, 'd03-task-in-review.png');

  // The review page.
  await page.getByRole('link', { name: 'Review the change' }).click();
  await page.locator('details.file[data-path="calc.py"]').waitFor();
  await page.locator('.transcript .msg').first().waitFor();
  await shot(page, 'd04-review.png', true);
  await page.locator('details.file[data-path="calc.py"]').evaluate((e) => e.scrollIntoView());
  await shot(page, 'd04b-review-diff.png');
  await page.locator('.transcript .test-run').first().evaluate((e) => e.scrollIntoView());
  await shot(page, 'd04c-review-transcript.png');
  check(await page.locator('table.diff tr.line.add').count() > 0 && await page.locator('table.diff tr.line.del').count() > 0, 'the diff shows added and removed lines');
  check(await page.locator('table.diff .tok-kw').count() > 0, 'with syntax colouring');
  check(/2 reporters/.test(await page.locator('.feedback-list').textContent()), 'the feedback it came from, with its reporter count');
  check(/passed/.test(await page.locator('section:has(h2:text("Verification"))').textContent()), 'the verification passed');
  check(/tests\/test_average\.py/.test(await page.locator('section:has(h2:text("Verification"))').textContent()), 'and the FAIL_TO_PASS evidence names the agent\'s test');
  check(/\$\d/.test(await page.locator('section:has(h2:text("Usage and cost"))').textContent()), 'usage and cost are shown');
  check(await page.locator('.transcript details.tool-call').count() >= 8, 'the transcript folds each tool call');
  await page.getByRole('button', { name: 'Side by side' }).click();
  await page.locator('table.diff.split').first().waitFor();
  await shot(page, 'd05-review-split.png');
  await page.getByRole('button', { name: 'Unified' }).click();

  // The API's refusals are shown as it words them.
  await page.getByRole('button', { name: 'Merge an approved branch' }).click();
  await page.locator('[role=status] .error').waitFor();
  check(/not approved yet/.test(await page.locator('[role=status] .error').textContent()), 'a refused decision shows loomd\'s reason');

  // A line comment sends it back to the agent.
  const line = 13; // """The arithmetic mean...""" in the branch's calc.py
  // With the keyboard: the comment button takes focus and Enter opens the form,
  // whose text box takes the focus.
  await page.getByRole('button', { name: `Comment on calc.py line ${line}`, exact: true }).focus();
  await page.keyboard.press('Enter');
  const box = page.getByRole('textbox', { name: `Comment on calc.py line ${line}` });
  await box.waitFor();
  check(await box.evaluate((e) => e === document.activeElement), 'a line comment can be started from the keyboard');
  await page.keyboard.type('Say how the mean is computed.');
  await page.getByRole('button', { name: 'Add line comment' }).click();
  await page.locator('tr.line-comment').waitFor();
  await page.locator('#rc-comment').fill('One small thing on the docstring.');
  await page.locator('tr.line-comment').evaluate((e) => e.scrollIntoView({ block: 'center' }));
  await shot(page, 'd06-line-comment.png');
  const before = model.requests.length;
  await page.getByRole('button', { name: 'Send back to the agent' }).click();
  await page.waitForURL(new RegExp(`#/task/${taskId}$`));
  await page.locator('.transcript .msg.reviewer').waitFor();
  await page.locator('.task-head .state-review').waitFor({ timeout: 90000 });
  const turn = model.requests.slice(before).map((r) => JSON.stringify(r.messages || [])).join('\n');
  check(/calc\.py:13/.test(turn) && /Say how the mean is computed/.test(turn), 'the line comment reached the agent as its next turn', turn.slice(-600));
  check(/line-comments/.test(await page.locator('.transcript .msg.reviewer').innerHTML()), 'and shows in the transcript');
  await shot(page, 'd07-back-in-review.png');

  // The review page on a phone, while the task is in review.
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  const p2 = await phone.newPage();
  await signIn(p2, url, engineer);
  await p2.goto(`${url}/#/review/${taskId}`);
  await p2.locator('details.file[data-path="calc.py"]').waitFor();
  await shot(p2, 'd12-phone-review.png');
  await p2.getByRole('button', { name: 'Approve and merge' }).scrollIntoViewIfNeeded();
  await shot(p2, 'd13-phone-review-decision.png');
  const reviewWidth = await p2.evaluate(() => document.documentElement.scrollWidth);
  check(reviewWidth <= 391, 'the review page fits a phone-width screen', reviewWidth);

  // Approve: merged.
  await page.goto(`${url}/#/review/${taskId}`);
  await page.getByRole('button', { name: 'Approve and merge' }).click();
  await page.locator('[role=status] .ok').filter({ hasText: 'Merged' }).waitFor();
  await shot(page, 'd08-merged.png');
  check((await api(url, engineer, 'GET', `/v1/tasks/${taskId}`)).json.state === 'merged', 'approving merges the task');
  check(execFileSync('git', ['-C', repo, 'show', 'main:calc.py'], { encoding: 'utf8' }).includes('(sum / count)'), 'with the second turn\'s change on main');

  // The live page across a restart of loomd: the browser reconnects with
  // Last-Event-ID and gets the events written meanwhile, each once.
  await page.goto(`${url}/#/task/${taskId}`);
  await page.locator('.pill.live.on').waitFor();
  const lastSeq = await page.locator('.transcript .event[data-seq]').last().evaluate((e) => Number(e.dataset.seq));
  loomd.kill('SIGTERM');
  await loomd.stopped;
  await page.locator('.pill.live:not(.on)').waitFor();
  sql(path.join(dataDir, 'loom.db'), `
for i in (1, 2):
    db.execute("INSERT INTO events(task_id, seq, type, data, created_at) VALUES(?,?,?,?,?)", (int(args[0]), int(args[1]) + i, 'note', '{"text": "written while the page was away %d"}' % i, int(time.time()*1000)))`, String(taskId), String(lastSeq));
  loomd = (await startLoomd(dataDir, ['agents=1', `llm.url=${model.url}`, 'llm.retries=1', 'feedback.rate_per_minute=0'], 'loomd.log', url.replace('http://', ''))).proc;
  await page.locator('.transcript .event', { hasText: 'written while the page was away 2' }).waitFor({ timeout: 20000 });
  await page.locator('.pill.live.on').waitFor();
  const resumed = await page.locator('.transcript .event[data-seq]').evaluateAll((els) => els.map((e) => Number(e.dataset.seq)));
  check(resumed.slice(-3).join(',') === [lastSeq, lastSeq + 1, lastSeq + 2].join(',') && new Set(resumed).size === resumed.length, 'after a restart the page resumes after Last-Event-ID: nothing missed, nothing twice', resumed.slice(-5));

  // Stop and retry from the task page.
  const fb2 = await api(url, reporter, 'POST', '/v1/feedback', { kind: 'bug', title: 'median() of no values crashes', body: 'median([]) raises instead of saying why.', repo: 'calc' });
  const second = await waitFor('the second task', async () => (await api(url, engineer, 'GET', `/v1/feedback/${fb2.json.id}`)).json.task_id);
  await page.goto(`${url}/#/task/${second}`);
  await page.getByRole('button', { name: 'Stop' }).click();
  await page.locator('.task-head .state-cancelled').waitFor();
  check(dialogs.some((d) => d.type === 'confirm' && /Stop this task/.test(d.message)), 'Stop asks first, then cancels the task');
  // While the slot is still stopping, loomd answers 409 "retry it in a moment",
  // which the page shows; a person clicks again.
  await waitFor('the retry', async () => {
    await page.getByRole('button', { name: 'Retry' }).click();
    await page.locator('.status-line .error, .status-line:text("Queued again.")').first().waitFor();
    if (await page.getByText('Queued again.').isVisible()) return true;
    check(/retry it in a moment/.test(await page.locator('.status-line .error').textContent()), 'a retry too early shows loomd\'s reason');
    await page.waitForTimeout(300);
    return false;
  }, 20000);
  check((await api(url, engineer, 'GET', `/v1/tasks/${second}`)).json.state !== 'cancelled', 'Retry queues it again');
  await page.getByRole('button', { name: 'Stop' }).click();
  await page.locator('.task-head .state-cancelled').waitFor();

  // The markup in the title and the model's reply is text; nothing ran.
  await page.goto(`${url}/#/task/${taskId}`);
  await page.locator('.transcript .msg.assistant').first().waitFor();
  check((await page.locator('.task-head .title').textContent()).includes('<img src=x onerror='), 'the markup title shows as text');
  check((await page.locator('.transcript .msg.assistant .text').first().textContent()).includes('</script><script>'), 'the markup reply shows as text');
  await page.goto(`${url}/#/feedback`);
  await page.locator(`.feedback-list li[data-id="${fb.json.id}"]`).waitFor();
  await shot(page, 'd09-feedback.png');
  check((await page.locator(`.feedback-list li[data-id="${fb.json.id}"] .title`).first().textContent()).includes(XSS), 'and in the feedback inbox');
  check(/1 duplicate/.test(await page.locator(`.feedback-list li[data-id="${fb.json.id}"]`).textContent()), 'with its duplicate grouped under it');
  await page.getByLabel('Kind').selectOption('feature');
  await page.waitForURL(/kind=feature/);
  await page.getByText('No feedback matches.').waitFor();
  await page.getByLabel('Kind').selectOption('bug');
  await page.locator(`.feedback-list li[data-id="${fb.json.id}"]`).waitFor();
  check(/kind=bug/.test(page.url()), 'the feedback inbox filters by kind (and repo and status) in its address');
  check(await page.locator('main img, main script').count() === 0 && await page.evaluate(() => window.__pwned) === undefined && dialogs.every((d) => d.type === 'confirm'), 'nothing executed', { dialogs });

  // An escalation answered with a secret.
  sql(path.join(dataDir, 'loom.db'), `db.execute("INSERT INTO escalations(task_id, kind, summary, secret_name, raised_by, created_at) VALUES(NULL, 'api_key', ?, 'RATES_API_KEY', 'orchestrator', ?)", (args[0], int(time.time()*1000)))`, `The exchange-rate service needs an API key ${XSS}`);
  await page.goto(`${url}/#/escalations`);
  await page.getByLabel(/^Value/).waitFor();
  const later = [];
  let answered = false;
  page.on('request', (r) => { if (answered) later.push(`${r.method()} ${r.url()}\n${JSON.stringify(r.headers())}\n${r.postData() || ''}`); });
  let answerBody = '';
  page.on('request', (r) => { if (/\/answer$/.test(r.url())) answerBody = r.postData() || ''; });
  await page.getByLabel(/^Value/).fill(SECRET);
  await page.getByRole('button', { name: 'Send the secret' }).click();
  await page.locator('.escalations .pill.ok').waitFor();
  answered = true;
  check(answerBody.includes(SECRET), 'the secret is sent once, in the answer');
  await shot(page, 'd10-escalation-answered.png');
  const inPage = async () => {
    const html = await page.content();
    const values = await page.locator('input, textarea').evaluateAll((els) => els.map((e) => e.value).join('\n'));
    return html.includes(SECRET) || values.includes(SECRET);
  };
  check(!(await inPage()), 'the secret is not in the page after the answer');
  await page.goto(`${url}/#/escalations?state=all`);
  await page.locator('.escalations .answer-text').waitFor();
  check(/RATES_API_KEY/.test(await page.locator('.escalations .answer-text').textContent()) && !(await inPage()), 'the answered escalation names the secret, never its value');
  await page.goto(`${url}/#/board`);
  await page.locator('.board').waitFor();
  await page.goto(`${url}/#/fleet`);
  await page.locator('h2:text("Model endpoint")').waitFor();
  await shot(page, 'd11-fleet.png');
  check(/healthy/.test(await page.locator('main').textContent()), 'the fleet shows the model endpoint healthy');
  check(later.length > 0 && later.every((r) => !r.includes(SECRET)), 'no later request carries the secret', later.filter((r) => r.includes(SECRET)));
  check(cspViolations.length === 0 && pageErrors.length === 0, 'no CSP violation or script error', { cspViolations, pageErrors });

  // Sign out: the cookie's session ends.
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByLabel('Token').waitFor();
  const after = await page.evaluate(async () => (await fetch('/v1/tasks')).status);
  check(after === 401, 'signing out ends the session', after);

  // The other pages on a phone.
  current = p2;
  for (const [hash, name] of [['#/board', 'd14-phone-board.png'], [`#/task/${taskId}`, 'd15-phone-task.png'], ['#/feedback', 'd16-phone-feedback.png'], ['#/escalations?state=all', 'd17-phone-escalations.png']]) {
    await p2.goto(`${url}/${hash}`);
    await p2.locator('main > *').first().waitFor();
    await p2.waitForTimeout(300);
    await shot(p2, name);
    const width = await p2.evaluate(() => document.documentElement.scrollWidth);
    check(width <= 391, `${hash} fits a phone-width screen`, width);
  }

  // The board with 1,000 tasks: a loomd of its own, the tasks written into its
  // database as the task store writes them.
  const perfDir = path.join(tmp, 'perf');
  const perfAdmin = loom('token', 'bootstrap', '--data-dir', perfDir);
  sql(path.join(perfDir, 'loom.db'), `
states = ['queued','running','verifying','blocked','review','changes_requested','merged','rejected','failed','cancelled','answered']
now = int(time.time()*1000)
random.seed(7)
db.executemany("INSERT INTO tasks(repo, kind, title, instructions, state, steps, created_at, updated_at) VALUES(?,?,?,?,?,?,?,?)",
  [('app%d' % (i % 5), 'bug', 'Task %d: the report page shows the wrong total for %d values' % (i, i), 'fix it', states[i % len(states)], i % 40, now, now) for i in range(1000)])`);
  const perfStarted = await startLoomd(perfDir, ['agents=0'], 'loomd-perf.log');
  perfLoomd = perfStarted.proc;
  const perfEngineer = JSON.parse(loom('--server', perfStarted.url, '--token', perfAdmin, '--json', 'token', 'create', '--role', 'engineer', '--name', 'perf')).token;
  const desk = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const p3 = await desk.newPage();
  current = p3;
  await signIn(p3, perfStarted.url, perfEngineer);
  const paints = [];
  for (let i = 0; i < 3; ++i) {
    await p3.goto('about:blank');
    await p3.goto(`${perfStarted.url}/#/board`);
    await p3.waitForFunction(() => document.body.dataset.boardPaintMs !== undefined);
    paints.push(Number(await p3.evaluate(() => document.body.dataset.boardPaintMs)));
  }
  check(await p3.locator('.task-card').count() === 1000, 'the board shows 1,000 tasks');
  await shot(p3, 'd18-board-1000.png');
  const best = Math.min(...paints);
  console.log(`board with 1,000 tasks: first paint ${paints.join(', ')} ms after navigation (best ${best})`);
  fs.writeFileSync(path.join(artifacts, 'board-paint-ms.txt'), `${paints.join(' ')}\n`);
  check(best < 1000, 'the board with 1,000 tasks paints in under a second', paints);

  console.log(`screenshots in ${artifacts}`);
  console.log(`${passed} passed, 0 failed`);
} catch (e) {
  if (current) await shot(current, 'failure.png', true).catch(() => {});
  console.error(`FAILED: ${e.stack || e}`);
  console.log(`${passed} passed, 1 failed (screenshots and loomd.log in ${artifacts})`);
  process.exitCode = 1;
} finally {
  if (browser) await browser.close().catch(() => {});
  if (model) model.server.close();
  for (const p of [loomd, perfLoomd]) {
    if (p) {
      p.kill('SIGTERM');
      await p.stopped;
    }
  }
  fs.rmSync(tmp, { recursive: true, force: true });
}
