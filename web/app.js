// The dashboard's entry module: the session, the header, and a router over the
// location's hash (#/board, #/task/7, #/review/7, #/feedback?kind=bug,
// #/escalations, #/fleet), so loomd serves one page and every view is a
// link. Every text from the server is set with textContent, never as HTML
// (dom.js).
import { loadSession, signIn, signOut, currentSession } from './api.js';
import { h, clear, errorBox, leaveView } from './dom.js';
import { boardPage } from './board.js';
import { taskPage } from './task.js';
import { reviewPage } from './review.js';
import { feedbackPage, escalationsPage, fleetPage } from './inbox.js';

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const who = document.getElementById('who');
const signoutButton = document.getElementById('signout');
const health = document.getElementById('health');

function showSignIn(message) {
  leaveView();
  nav.hidden = true;
  signoutButton.hidden = true;
  who.textContent = '';
  clear(main);
  const token = h('input', { id: 'token', type: 'password', autocomplete: 'off', spellcheck: 'false', required: true });
  const status = h('div', { role: 'status' }, message ? errorBox(message) : null);
  main.append(h('section', { class: 'card signin' },
    h('h1', { text: 'Sign in' }),
    h('p', { class: 'muted', text: 'With an engineer or admin token (loom token create --role engineer). It is exchanged for a session cookie and not kept by the page.' }),
    h('form', { onsubmit: async (ev) => {
      ev.preventDefault();
      const value = token.value;
      token.value = '';
      try {
        await signIn(value);
        if (!location.hash || location.hash === '#/signin') location.hash = '#/board';
        route();
      } catch (e) {
        status.replaceChildren(errorBox(e));
      }
    } },
    h('label', { for: 'token', text: 'Token' }), token,
    h('button', { type: 'submit', class: 'primary', text: 'Sign in' })),
    status));
  token.focus();
}

async function route() {
  leaveView();
  const session = currentSession();
  if (!session) return showSignIn();
  nav.hidden = false;
  signoutButton.hidden = false;
  who.textContent = `${session.name || 'token ' + session.token_id} (${session.role})`;
  const [path, queryString] = (location.hash.slice(1) || '/board').split('?');
  const query = new URLSearchParams(queryString || '');
  const parts = path.split('/').filter(Boolean);
  for (const a of nav.querySelectorAll('a')) {
    a.toggleAttribute('aria-current', a.getAttribute('href') === `#/${parts[0]}`);
    if (a.hasAttribute('aria-current')) a.setAttribute('aria-current', 'page');
  }
  // Each view draws into a container of its own: a view still loading when the
  // next one opens draws into a container no longer in the page.
  const view = h('div', { class: 'view' });
  main.replaceChildren(view);
  const id = Number(parts[1]);
  try {
    if (parts[0] === 'task' && id > 0) await taskPage(view, id);
    else if (parts[0] === 'review' && id > 0) await reviewPage(view, id);
    else if (parts[0] === 'feedback') await feedbackPage(view, query);
    else if (parts[0] === 'escalations') await escalationsPage(view, query);
    else if (parts[0] === 'fleet') await fleetPage(view);
    else await boardPage(view);
  } catch (e) {
    view.append(errorBox(e));
  }
}

async function checkHealth() {
  try {
    const r = await fetch('/healthz', { cache: 'no-store' });
    health.textContent = r.ok ? '● loomd is up' : `loomd answered ${r.status}`;
    health.className = r.ok ? 'pill ok' : 'pill bad';
  } catch (e) {
    health.textContent = '✕ loomd does not answer';
    health.className = 'pill bad';
  }
}

signoutButton.addEventListener('click', async () => {
  await signOut().catch(() => {});
  showSignIn();
});
window.addEventListener('loom-signed-out', () => showSignIn('Your session ended: sign in again.'));
window.addEventListener('hashchange', route);

checkHealth();
setInterval(checkHealth, 30000);
await loadSession();
route();
