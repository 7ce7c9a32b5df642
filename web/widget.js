// Loom's feedback widget. An app adds it to its pages with one tag:
//
//   <script src="https://loom.example/widget.js" data-token="loom_..."
//           data-app-version="1.4.2"></script>
//
// It adds a "Feedback" button and a form (bug, idea or question; the text; an
// optional contact) and posts to /v1/feedback of the origin it was loaded from,
// with the page's context: its address, the user agent, the app version, the
// viewport, and the last console errors and unhandled errors and rejections
// (with their stacks) seen since it loaded. "My reports" shows what became of
// what was sent from this browser. docs/widget.md has the set-up.
//
// Design: everything lives in a shadow root (the page's CSS cannot reach in,
// the widget's cannot leak out), the styles are a constructed stylesheet (not
// subject to the page's style-src), no dependencies, and every text from the
// server or the user is put in the DOM as text, never parsed as HTML.
(() => {
  'use strict';
  const script = document.currentScript;
  if (!script || window.__loomFeedbackWidget) return;
  window.__loomFeedbackWidget = true;

  const base = new URL(script.src, location.href).origin;
  const token = script.dataset.token || '';
  const appVersion = script.dataset.appVersion || '';
  const storeKey = 'loom-feedback:' + base;
  const kMaxErrors = 10;
  const enc = new TextEncoder();

  // Clips `s` to at most `max` bytes of UTF-8 (the API's limits are in bytes).
  const clip = (s, max) => {
    s = String(s == null ? '' : s);
    if (enc.encode(s).length <= max) return s;
    while (s && enc.encode(s).length > max - 3) s = s.slice(0, Math.floor(s.length * 0.9));
    return s + '…';
  };

  // ---- What went wrong on the page: console.error, errors, rejections ----
  const errors = [];
  const describe = (v) => {
    if (v instanceof Error) return `${v.name}: ${v.message}`;
    if (typeof v === 'string') return v;
    try { return JSON.stringify(v); } catch (e) { return String(v); }
  };
  const remember = (type, message, stack) => {
    errors.push({
      type,
      message: clip(message, 1000),
      stack: clip(stack || '', 4000),
      at: new Date().toISOString(),
    });
    if (errors.length > kMaxErrors) errors.shift();
  };
  const consoleError = console.error;
  console.error = function (...args) {
    try {
      const withStack = args.find((a) => a instanceof Error);
      remember('console.error', args.map(describe).join(' '), withStack && withStack.stack);
    } catch (e) { /* never break the app's logging */ }
    return consoleError.apply(this, args);
  };
  window.addEventListener('error', (e) => {
    if (e.error || e.message) remember('error', e.message || describe(e.error), e.error && e.error.stack);
  });
  window.addEventListener('unhandledrejection', (e) => {
    const r = e.reason;
    remember('unhandledrejection', describe(r), r && r.stack);
  });

  // ---- DOM helpers: text only ----
  const h = (tag, props, ...children) => {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k === 'class') el.className = v;
      else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k in el && typeof v !== 'string') el[k] = v;
      else el.setAttribute(k, v);
    }
    for (const c of children) {
      if (c != null) el.append(typeof c === 'string' ? document.createTextNode(c) : c);
    }
    return el;
  };

  const css = `
:host { all: initial; }
* { box-sizing: border-box; font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
.open { position: fixed; right: 16px; bottom: 16px; z-index: 2147483646; border: 0;
  border-radius: 999px; padding: 10px 18px; background: #1f4e8c; color: #fff; font-size: 14px;
  font-weight: 600; cursor: pointer; box-shadow: 0 2px 10px rgba(0,0,0,.25); }
.open:focus-visible, button:focus-visible, textarea:focus-visible, input:focus-visible {
  outline: 3px solid #e69f00; outline-offset: 2px; }
.panel { position: fixed; right: 16px; bottom: 16px; z-index: 2147483647;
  width: min(380px, calc(100vw - 32px)); max-height: calc(100vh - 32px); overflow: auto;
  background: #fff; color: #1b1f24; border: 1px solid #d0d7de; border-radius: 12px;
  box-shadow: 0 8px 30px rgba(0,0,0,.25); font-size: 14px; line-height: 1.4; }
.panel[hidden], .open[hidden], [hidden] { display: none; }
header { display: flex; align-items: center; justify-content: space-between;
  padding: 12px 16px; border-bottom: 1px solid #d0d7de; }
h2 { margin: 0; font-size: 16px; }
.close { border: 0; background: none; font-size: 20px; line-height: 1; cursor: pointer;
  color: #57606a; padding: 4px 8px; }
.tabs { display: flex; gap: 4px; padding: 8px 16px 0; }
.tab { flex: 1; border: 0; border-bottom: 2px solid transparent; background: none;
  padding: 8px; cursor: pointer; color: #57606a; font-size: 14px; }
.tab[aria-selected="true"] { border-bottom-color: #1f4e8c; color: #1b1f24; font-weight: 600; }
form, .reports { padding: 12px 16px 16px; }
.kinds { display: flex; gap: 6px; margin-bottom: 10px; }
.kind { flex: 1; border: 1px solid #d0d7de; background: #f6f8fa; border-radius: 8px;
  padding: 8px 4px; cursor: pointer; font-size: 14px; color: #1b1f24; }
.kind[aria-pressed="true"] { background: #1f4e8c; border-color: #1f4e8c; color: #fff; }
label { display: block; font-weight: 600; margin: 8px 0 4px; }
textarea, input { width: 100%; border: 1px solid #8c959f; border-radius: 8px; padding: 8px;
  font-size: 14px; color: #1b1f24; background: #fff; }
textarea { min-height: 110px; resize: vertical; }
.note { color: #57606a; font-size: 12px; margin: 8px 0 12px; }
.send { width: 100%; border: 0; border-radius: 8px; padding: 10px; background: #1f4e8c;
  color: #fff; font-weight: 600; font-size: 14px; cursor: pointer; }
.send:disabled { opacity: .6; cursor: default; }
.status { margin-top: 10px; min-height: 1.2em; }
.status.ok { color: #0b6b3a; }
.status.bad { color: #a4262c; }
ul { list-style: none; margin: 0; padding: 0; }
li { border: 1px solid #d0d7de; border-radius: 8px; padding: 8px 10px; margin-bottom: 8px; }
.title { font-weight: 600; overflow-wrap: anywhere; }
.meta { display: flex; gap: 8px; align-items: center; margin-top: 4px; color: #57606a;
  font-size: 12px; flex-wrap: wrap; }
.pill { border-radius: 999px; padding: 1px 8px; font-size: 12px; font-weight: 600;
  border: 1px solid currentColor; }
.s-received { color: #57606a; } .s-triaged { color: #0072b2; } .s-working { color: #9a6700; }
.s-review { color: #6f42c1; } .s-done { color: #0b6b3a; } .s-closed { color: #a4262c; }
.resolution { margin-top: 4px; overflow-wrap: anywhere; }
.empty { color: #57606a; }
`;

  // What each feedback status means to the person who sent it, and its colour
  // (the palette stays apart for colour-blind readers; the words say it too).
  const kStatus = {
    new: ['Received', 's-received'],
    duplicate: ['Received (already reported)', 's-received'],
    triaged: ['Triaged', 's-triaged'],
    unroutable: ['Waiting for triage', 's-received'],
    in_progress: ['Being worked on', 's-working'],
    in_review: ['Fixed, in review', 's-review'],
    merged: ['Fixed', 's-done'],
    answered: ['Answered', 's-done'],
    rejected: ['Closed', 's-closed'],
    failed: ['Not fixed yet', 's-closed'],
    cancelled: ['Cancelled', 's-closed'],
  };
  const kKinds = [['bug', 'Bug'], ['feature', 'Idea'], ['question', 'Question']];

  const sentIds = () => {
    try {
      const v = JSON.parse(localStorage.getItem(storeKey) || '[]');
      return Array.isArray(v) ? v.filter((n) => Number.isInteger(n) && n > 0) : [];
    } catch (e) { return []; }
  };
  const rememberSent = (id) => {
    try {
      localStorage.setItem(storeKey, JSON.stringify([id, ...sentIds().filter((n) => n !== id)].slice(0, 20)));
    } catch (e) { /* storage may be off: the report is sent all the same */ }
  };

  const call = async (method, path, body, extraHeaders) => {
    let r;
    try {
      r = await fetch(base + path, {
        method,
        mode: 'cors',
        credentials: 'omit',
        headers: Object.assign({ Authorization: 'Bearer ' + token }, body ? { 'Content-Type': 'application/json' } : {}, extraHeaders || {}),
        body: body ? JSON.stringify(body) : undefined,
      });
    } catch (e) {
      throw new Error('Could not reach the feedback service (or this site may not send feedback to it).');
    }
    let data = null;
    try { data = await r.json(); } catch (e) { /* not JSON */ }
    if (!r.ok) {
      const msg = data && data.error && typeof data.error.message === 'string' ? data.error.message : `the service answered ${r.status}`;
      const err = new Error(msg);
      err.status = r.status;
      throw err;
    }
    return data;
  };

  // The page's context, within the API's limits (context: 32 KB serialised).
  const contextOf = () => {
    const ctx = {
      source: 'loom-widget',
      user_agent: clip(navigator.userAgent, 1000),
      language: clip(navigator.language || '', 40),
      viewport: { width: window.innerWidth, height: window.innerHeight, device_pixel_ratio: window.devicePixelRatio || 1 },
      errors: errors.map((e) => ({ type: e.type, message: e.message, stack: clip(e.stack, 2000), at: e.at })),
    };
    while (ctx.errors.length && enc.encode(JSON.stringify(ctx)).length > 30000) ctx.errors.shift();
    return ctx;
  };

  const build = () => {
    const host = document.createElement('loom-feedback');
    host.style.setProperty('all', 'initial', 'important');
    const root = host.attachShadow({ mode: 'open' });
    if ('adoptedStyleSheets' in root && typeof CSSStyleSheet === 'function' && CSSStyleSheet.prototype.replaceSync) {
      const sheet = new CSSStyleSheet();
      sheet.replaceSync(css);
      root.adoptedStyleSheets = [sheet];
    } else {
      root.append(h('style', {}, css));
    }

    let kind = 'bug';
    const kindButtons = kKinds.map(([value, label]) => h('button', {
      type: 'button', class: 'kind', 'aria-pressed': String(value === kind), 'data-kind': value,
      onclick: () => {
        kind = value;
        for (const b of kindButtons) b.setAttribute('aria-pressed', String(b.dataset.kind === kind));
      },
    }, label));
    const text = h('textarea', { id: 'loom-text', name: 'text', required: true, maxLength: 20000, placeholder: 'What happened, or what would help?' });
    const contact = h('input', { id: 'loom-contact', name: 'contact', type: 'text', maxLength: 200, autocomplete: 'email', placeholder: 'Email or name, if we may ask you more' });
    const status = h('div', { class: 'status', role: 'status', 'aria-live': 'polite' });
    const send = h('button', { type: 'submit', class: 'send' }, 'Send');
    const form = h('form', { novalidate: true },
      h('div', { class: 'kinds', role: 'group', 'aria-label': 'Kind' }, ...kindButtons),
      h('label', { for: 'loom-text' }, 'Your feedback'), text,
      h('label', { for: 'loom-contact' }, 'Contact (optional)'), contact,
      h('p', { class: 'note' }, 'Sent with it: this page\u2019s address, your browser, the app version and recent errors on this page.'),
      send, status);

    const list = h('ul');
    const reportsStatus = h('div', { class: 'status', role: 'status', 'aria-live': 'polite' });
    const reports = h('div', { class: 'reports', hidden: true }, list, reportsStatus);

    const tabNew = h('button', { type: 'button', class: 'tab', role: 'tab', 'aria-selected': 'true' }, 'New report');
    const tabMine = h('button', { type: 'button', class: 'tab', role: 'tab', 'aria-selected': 'false' }, 'My reports');
    const close = h('button', { type: 'button', class: 'close', 'aria-label': 'Close' }, '\u00d7');
    const panel = h('div', { class: 'panel', role: 'dialog', 'aria-label': 'Send feedback', hidden: true },
      h('header', {}, h('h2', {}, 'Send feedback'), close),
      h('div', { class: 'tabs', role: 'tablist' }, tabNew, tabMine),
      form, reports);
    const open = h('button', { type: 'button', class: 'open', 'aria-haspopup': 'dialog', 'aria-expanded': 'false' }, 'Feedback');

    const setStatus = (el, message, cls) => {
      el.textContent = message;
      el.className = 'status' + (cls ? ' ' + cls : '');
    };
    const show = (which) => {
      const mine = which === 'mine';
      tabNew.setAttribute('aria-selected', String(!mine));
      tabMine.setAttribute('aria-selected', String(mine));
      form.hidden = mine;
      reports.hidden = !mine;
      if (mine) loadReports();
    };
    const openPanel = () => {
      panel.hidden = false;
      open.hidden = true;
      open.setAttribute('aria-expanded', 'true');
      text.focus();
    };
    const closePanel = () => {
      panel.hidden = true;
      open.hidden = false;
      open.setAttribute('aria-expanded', 'false');
      open.focus();
    };

    let loads = 0;  // only the latest load fills the list
    const loadReports = async () => {
      const load = ++loads;
      const ids = sentIds();
      if (!ids.length) {
        list.replaceChildren(h('li', { class: 'empty' }, 'Nothing sent from this browser yet.'));
        return;
      }
      setStatus(reportsStatus, 'Loading\u2026');
      const items = await Promise.all(ids.map((id) => call('GET', '/v1/feedback/' + id).catch((e) => (e.status === 404 ? null : { error: e.message }))));
      if (load !== loads) return;
      list.replaceChildren();
      setStatus(reportsStatus, '');
      for (const it of items) {
        if (!it) continue;
        if (it.error) {
          setStatus(reportsStatus, it.error, 'bad');
          continue;
        }
        const [label, cls] = kStatus[it.status] || [String(it.status), 's-received'];
        const when = typeof it.created_at === 'number' ? new Date(it.created_at).toLocaleDateString() : '';
        const kindLabel = (kKinds.find(([v]) => v === it.kind) || [null, String(it.kind)])[1];
        list.append(h('li', { 'data-id': String(it.id) },
          h('div', { class: 'title' }, String(it.title)),
          h('div', { class: 'meta' }, h('span', { class: 'pill ' + cls }, label), h('span', {}, kindLabel), h('span', {}, when)),
          typeof it.resolution === 'string' && it.resolution ? h('div', { class: 'resolution' }, it.resolution) : null));
      }
    };

    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const body = text.value.trim();
      if (!body) {
        setStatus(status, 'Please write what happened first.', 'bad');
        text.focus();
        return;
      }
      const report = {
        kind,
        title: clip(body.split('\n')[0].trim(), 200),
        body: clip(body, 60000),
        url: clip(location.href, 2048),
        context: contextOf(),
      };
      if (appVersion) report.app_version = clip(appVersion, 200);
      if (contact.value.trim()) report.reporter = clip(contact.value.trim(), 200);
      if (errors.length) {
        report.logs = clip(errors.map((x) => `[${x.at}] ${x.type}: ${x.message}${x.stack ? '\n' + x.stack : ''}`).join('\n'), 200000);
        const last = errors.slice().reverse().find((x) => x.stack);
        if (last) report.stack_trace = clip(last.stack, 60000);
      }
      send.disabled = true;
      setStatus(status, 'Sending\u2026');
      const key = (window.crypto && crypto.randomUUID) ? crypto.randomUUID() : String(Date.now()) + Math.random();
      try {
        const r = await call('POST', '/v1/feedback', report, { 'Idempotency-Key': key });
        rememberSent(r.id);
        text.value = '';
        setStatus(status, `Thank you! Sent as report #${r.id}. See it under \u201cMy reports\u201d.`, 'ok');
      } catch (err) {
        setStatus(status, 'Not sent: ' + err.message, 'bad');
      } finally {
        send.disabled = false;
      }
    });
    open.addEventListener('click', openPanel);
    close.addEventListener('click', closePanel);
    tabNew.addEventListener('click', () => show('new'));
    tabMine.addEventListener('click', () => show('mine'));
    panel.addEventListener('keydown', (e) => { if (e.key === 'Escape') closePanel(); });

    root.append(open, panel);
    document.body.append(host);
  };

  if (document.body) build();
  else document.addEventListener('DOMContentLoaded', build);
})();
