// The inbox pages: feedback (grouped with its duplicates, filtered by repo,
// kind and status), escalations with their answer forms, and the fleet.
import { api, all } from './api.js';
import { h, clear, errorBox, fmtTime, fmtDuration } from './dom.js';

const FEEDBACK_STATUSES = ['new', 'duplicate', 'triaged', 'unroutable', 'in_progress', 'in_review',
  'merged', 'rejected', 'failed', 'answered', 'cancelled'];

export async function feedbackPage(main, query) {
  const kind = query.get('kind') || '';
  const status = query.get('status') || '';
  const repo = query.get('repo') || '';
  const select = (name, value, options, label) => h('label', {}, label, ' ',
    h('select', { name, onchange: (ev) => {
      const q = new URLSearchParams(location.hash.split('?')[1] || '');
      if (ev.target.value) q.set(name, ev.target.value);
      else q.delete(name);
      location.hash = `#/feedback?${q}`;
    } }, h('option', { value: '', text: 'all', selected: !value }),
    options.map((o) => h('option', { value: o, text: o, selected: o === value }))));
  let repos = [];
  try {
    repos = (await api('GET', '/v1/repos')).items.map((r) => r.name);
  } catch (e) {
    repos = [];
  }
  const filters = h('form', { class: 'filters', 'aria-label': 'Filter feedback', onsubmit: (ev) => ev.preventDefault() },
    select('repo', repo, repos, 'Repository'),
    select('kind', kind, ['bug', 'feature', 'question'], 'Kind'),
    select('status', status, FEEDBACK_STATUSES, 'Status'));
  const list = h('div', {});
  main.append(h('section', { class: 'card' }, h('h1', { text: 'Feedback' }), filters, list));
  const q = new URLSearchParams();
  if (kind) q.set('kind', kind);
  if (status) q.set('status', status);
  if (repo) q.set('repo', repo);
  let items;
  try {
    items = await all(`/v1/feedback?${q}`);
  } catch (e) {
    list.append(errorBox(e));
    return;
  }
  // Duplicates under the item they duplicate (when it is on this page).
  const byId = new Map(items.map((i) => [i.id, { item: i, dups: [] }]));
  const roots = [];
  for (const i of items) {
    const parent = i.duplicate_of && byId.get(i.duplicate_of);
    if (parent) parent.dups.push(i);
    else roots.push(byId.get(i.id));
  }
  roots.reverse();
  if (roots.length === 0) {
    list.append(h('p', { class: 'muted', text: 'No feedback matches.' }));
    return;
  }
  list.append(h('ul', { class: 'feedback-list' }, roots.map(({ item, dups }) => h('li', { dataset: { id: item.id } },
    h('div', { class: 'row' },
      h('span', { class: `pill kind-${item.kind}`, text: item.kind }),
      h('strong', { class: 'title', text: item.title }),
      h('span', { class: 'pill', text: item.status }),
      h('span', { class: 'reporters', text: `${item.reporter_count} reporter${item.reporter_count === 1 ? '' : 's'}` }),
      item.task_id ? h('a', { href: `#/task/${item.task_id}`, text: `task #${item.task_id}` }) : null),
    h('p', { class: 'muted', text: `#${item.id} · ${item.repo || 'no repository'} · ${fmtTime(item.created_at)}${item.reporter ? ' · ' + item.reporter : ''}` }),
    h('details', {}, h('summary', { text: 'details' }),
      h('p', { class: 'body', text: item.body }),
      item.url || item.app_version ? h('p', { class: 'muted', text: [item.url, item.app_version && `version ${item.app_version}`].filter(Boolean).join(' · ') }) : null,
      item.logs ? h('pre', { class: 'output', text: item.logs }) : null,
      item.stack_trace ? h('pre', { class: 'output', text: item.stack_trace }) : null,
      item.resolution ? h('p', { class: 'resolution', text: item.resolution }) : null),
    dups.length ? h('details', { class: 'dups' }, h('summary', { text: `${dups.length} duplicate${dups.length === 1 ? '' : 's'}` }),
      h('ul', {}, dups.map((d) => h('li', {}, h('span', { text: `#${d.id} ` }), h('span', { class: 'title', text: d.title }),
        h('span', { class: 'muted', text: ` · ${d.reporter_count} reporter${d.reporter_count === 1 ? '' : 's'}` }))))) : null))));
}

// An answer form for one escalation. A secret typed in is read once, the field
// is emptied before the request leaves, and neither the form nor the page keep
// or show it again: the answer shown is loomd's, which names the secret only.
function answerForm(e, onAnswered) {
  const status = h('div', { role: 'status' });
  const send = async (body) => {
    status.replaceChildren();
    try {
      const answered = await api('POST', `/v1/escalations/${e.id}/answer`, body);
      onAnswered(answered);
    } catch (err) {
      status.replaceChildren(errorBox(err));
    }
  };
  const forms = [];
  if (e.kind === 'api_key' || e.secret_name) {
    const name = h('input', { id: `sn-${e.id}`, value: e.secret_name || '', autocomplete: 'off', spellcheck: 'false' });
    const value = h('input', { id: `sv-${e.id}`, type: 'password', autocomplete: 'off', spellcheck: 'false' });
    forms.push(h('form', { class: 'answer', onsubmit: (ev) => {
      ev.preventDefault();
      const secret = { name: name.value.trim(), value: value.value };
      value.value = '';
      if (!secret.value) {
        status.replaceChildren(errorBox('Type the secret\'s value.'));
        return;
      }
      send({ secret });
    } },
    h('label', { for: `sn-${e.id}`, text: 'Secret name' }), name,
    h('label', { for: `sv-${e.id}`, text: 'Value (sent once, stored encrypted, never shown)' }), value,
    h('button', { type: 'submit', class: 'primary', text: 'Send the secret' })));
  }
  if (['approval', 'gpu', 'network', 'infrastructure'].includes(e.kind)) {
    const reason = h('input', { id: `dr-${e.id}`, placeholder: 'reason, to deny' });
    forms.push(h('form', { class: 'answer', onsubmit: (ev) => ev.preventDefault() },
      h('div', { class: 'row' },
        h('button', { type: 'button', class: 'primary', text: 'Approve', onclick: () => send({ approve: true }) }),
        h('label', { for: `dr-${e.id}`, class: 'sr-only', text: 'Reason to deny' }), reason,
        h('button', { type: 'button', class: 'danger', text: 'Deny', onclick: () => send({ deny: true, reason: reason.value.trim() }) }))));
  }
  const text = h('textarea', { id: `at-${e.id}`, rows: 2 });
  forms.push(h('form', { class: 'answer', onsubmit: (ev) => {
    ev.preventDefault();
    send({ text: text.value.trim() });
  } }, h('label', { for: `at-${e.id}`, text: e.kind === 'question' ? 'Answer' : 'Or answer in words' }), text,
  h('button', { type: 'submit', text: 'Send the answer' })));
  return h('div', {}, forms, status);
}

function answerText(a) {
  if (!a) return '';
  if (typeof a === 'string') return a;
  return a.text || JSON.stringify(a);
}

export async function escalationsPage(main, query) {
  const state = query.get('state') === 'all' ? 'all' : 'open';
  const list = h('div', {});
  main.append(h('section', { class: 'card' },
    h('div', { class: 'row spread' }, h('h1', { text: 'Escalations' }),
      h('a', { href: state === 'open' ? '#/escalations?state=all' : '#/escalations', text: state === 'open' ? 'show answered too' : 'open only' })),
    list));
  let items;
  try {
    items = await all(`/v1/escalations?state=${state}`);
  } catch (e) {
    list.append(errorBox(e));
    return;
  }
  if (items.length === 0) {
    list.append(h('p', { class: 'muted', text: 'Nothing waits for an answer.' }));
    return;
  }
  list.append(h('ul', { class: 'escalations' }, items.map((e) => {
    const li = h('li', { dataset: { id: e.id } });
    const drawAnswered = (x) => {
      clear(li).append(h('div', { class: 'row' }, h('span', { class: 'pill', text: x.kind }), h('strong', { text: `#${x.id}` }),
        x.task_id ? h('a', { href: `#/task/${x.task_id}`, text: `task #${x.task_id}` }) : null, h('span', { class: 'pill ok', text: 'answered' })),
      h('p', { class: 'summary', text: x.summary }),
      h('p', { class: 'answer-text', text: answerText(x.answer) }));
    };
    if (e.state !== 'open') drawAnswered(e);
    else {
      li.append(h('div', { class: 'row' }, h('span', { class: 'pill warn', text: e.kind }), h('strong', { text: `#${e.id}` }),
        e.task_id ? h('a', { href: `#/task/${e.task_id}`, text: `task #${e.task_id}` }) : null,
        h('span', { class: 'muted', text: `${e.raised_by} · ${fmtTime(e.created_at)}` })),
      h('p', { class: 'summary', text: e.summary }),
      answerForm(e, drawAnswered));
    }
    return li;
  })));
}

export async function fleetPage(main) {
  let f;
  const box = h('div', {});
  main.append(h('h1', { text: 'Fleet' }), box);
  try {
    f = await api('GET', '/v1/fleet');
  } catch (e) {
    box.append(errorBox(e));
    return;
  }
  const m = f.model || {};
  const health = m.healthy === true ? ['ok', '● healthy'] : m.healthy === false ? ['bad', '✕ unreachable'] : ['', '– not used'];
  const slots = [];
  for (let i = 0; i < (f.agents.slots || 0); ++i) {
    const t = f.agents.working[i];
    slots.push(h('li', { class: `slot ${t ? 'busy' : 'idle'}` }, h('strong', { text: `Slot ${i + 1}` }), ' ',
      t ? h('a', { href: `#/task/${t.task_id}`, text: `#${t.task_id} ${t.title}` }) : h('span', { class: 'muted', text: 'idle' }),
      t ? h('span', { class: 'muted', text: ` · ${t.state} · ${t.steps} steps · ${t.tokens} tokens` }) : null));
  }
  const q = f.queue || {};
  box.append(
    h('section', { class: 'card' }, h('h2', { text: `Agent slots · ${f.agents.busy} of ${f.agents.slots} busy` }),
      slots.length ? h('ul', { class: 'slots' }, slots) : h('p', { class: 'muted', text: 'No agent slots: loomd takes feedback only (agents = 0).' })),
    h('section', { class: 'card' }, h('h2', { text: 'Model endpoint' }),
      h('p', {}, h('span', { class: `pill ${health[0]}`, text: health[1] }), ' ', h('code', { text: m.url || '' }), h('span', { class: 'muted', text: ` ${m.model || ''}` })),
      h('p', { class: 'muted', text: `${m.detail || ''}${m.latency_ms !== undefined ? ' · ' + fmtDuration(m.latency_ms) : ''}` }),
      (m.endpoints || []).length > 1 ? h('ul', { class: 'replicas' }, m.endpoints.map((e) => h('li', {},
        h('span', { class: `pill ${e.up ? 'ok' : 'bad'}`, text: e.up ? '● up' : '✕ down' }), ' ', h('code', { text: e.url }),
        h('span', { class: 'muted', text: ` · ${e.requests} request(s)${e.up ? '' : ' · ' + e.last_error}` })))) : null,
      h('p', { text: `In flight: ${m.in_flight ?? 0} task(s) calling it · waiting for a slot: ${m.waiting ?? 0}` })),
    h('section', { class: 'card' }, h('h2', { text: 'Queue' }),
      h('table', { class: 'kv' }, Object.entries(q).map(([k, v]) => h('tr', {}, h('th', { scope: 'row', text: k }), h('td', { text: String(v) }))))),
    h('section', { class: 'card' }, h('h2', { text: 'Sandbox' }),
      h('p', { text: `${f.sandbox.kind} · ${f.sandbox.slots} slot(s) · ${f.sandbox.runs_in_progress} task(s) using one` })),
    h('section', { class: 'card' }, h('h2', { text: 'Feedback widget' }),
      h('p', { text: 'Apps let their users file feedback with one tag. Create a reporter token allowed from the app\'s origin:' }),
      h('pre', {}, h('code', { text: 'loom token create --role reporter --name my-app --origin https://app.example' })),
      h('p', { text: 'then add to the app\'s pages:' }),
      h('pre', {}, h('code', { text: `<script src="${location.origin}/widget.js" data-token="REPORTER_TOKEN" data-app-version="1.4.2"></script>` }))));
}
