// The live task page: the task's state and its event log as it happens, from
// loomd's Server-Sent Events (GET /v1/tasks/{id}/stream). EventSource
// reconnects by itself and sends Last-Event-ID, so after a dropped connection
// loomd resumes after the last event drawn: nothing is missed or drawn twice
// (an event already on the page is skipped by its sequence number besides).
import { api } from './api.js';
import { h, append, clear, statePill, errorBox, fmtTime, onLeave } from './dom.js';
import { renderEvent } from './transcript.js';

export async function taskPage(main, id) {
  const head = h('div', { class: 'task-head' });
  const live = h('span', { class: 'pill live', 'aria-live': 'polite', text: 'connecting…' });
  const log = h('div', { class: 'transcript', 'aria-live': 'polite', 'aria-relevant': 'additions' });
  const actions = h('div', { class: 'actions' });
  const message = h('div', { role: 'status', class: 'status-line' });
  main.append(h('section', { class: 'card' }, head, actions, message),
    h('section', { class: 'card' }, h('h2', {}, 'Events ', live), log));

  let task;
  const drawHead = () => {
    append(clear(head), [
      h('h1', {}, `Task #${task.id} `, statePill(task.state)),
      h('p', { class: 'title', text: task.title }),
      h('p', { class: 'muted', text: `${task.repo} · ${task.kind} · ${task.steps} steps · ${task.prompt_tokens + task.completion_tokens} tokens · updated ${fmtTime(task.updated_at)}` }),
      task.reason ? h('p', { class: 'reason', text: task.reason }) : null]);
    clear(actions);
    if (task.state === 'review') {
      actions.append(h('a', { class: 'button primary', href: `#/review/${task.id}`, text: 'Review the change' }));
    }
    const stoppable = ['queued', 'running', 'verifying', 'blocked', 'changes_requested'].includes(task.state);
    const retriable = ['failed', 'cancelled'].includes(task.state);
    if (stoppable) actions.append(h('button', { class: 'danger', onclick: () => act('cancel', 'Stop this task? Its sandbox run is killed and its branch removed.') , text: 'Stop' }));
    if (retriable) actions.append(h('button', { onclick: () => act('retry'), text: 'Retry' }));
  };
  const refresh = async () => {
    task = await api('GET', `/v1/tasks/${id}`);
    drawHead();
  };
  const act = async (what, confirmText) => {
    if (confirmText && !window.confirm(confirmText)) return;
    message.textContent = '';
    try {
      task = await api('POST', `/v1/tasks/${id}/${what}`, {});
      drawHead();
      message.textContent = what === 'cancel' ? 'Stopped.' : 'Queued again.';
    } catch (e) {
      message.replaceChildren(errorBox(e));
    }
  };
  try {
    await refresh();
  } catch (e) {
    main.append(errorBox(e));
    return;
  }

  let last = 0;
  const source = new EventSource(`/v1/tasks/${id}/stream`);
  onLeave(() => source.close());
  source.onopen = () => {
    live.textContent = '● live';
    live.className = 'pill live on';
  };
  source.onerror = () => {
    live.textContent = 'reconnecting…';
    live.className = 'pill live';
  };
  source.onmessage = (m) => {
    let e;
    try {
      e = JSON.parse(m.data);
    } catch (err) {
      return;
    }
    if (e.seq <= last) return;
    last = e.seq;
    const node = renderEvent(e);
    if (node) log.append(node);
    // The head's state, steps and tokens follow the log.
    if (e.type === 'state' || e.type === 'llm_reply') refresh().catch(() => {});
  };
}
