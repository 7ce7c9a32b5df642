// Small helpers to build the page. Text is only ever set as textContent (or as
// text nodes): nothing from the server, a model, a test or a reporter is parsed
// as HTML anywhere in the dashboard.

// h('div', {class: 'x', onclick: fn, 'aria-label': 'y'}, 'text', child, [more])
export function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'text') node.textContent = String(value);
    else if (key.startsWith('on') && typeof value === 'function') node.addEventListener(key.slice(2), value);
    else if (key === 'value') node.value = value;
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  append(node, children);
  return node;
}

export function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// What the current view must stop (a timer, a stream) when the next one opens.
const leaving = [];
export function onLeave(fn) {
  leaving.push(fn);
}
export function leaveView() {
  while (leaving.length) leaving.pop()();
}

export function clear(node) {
  while (node.firstChild) node.firstChild.remove();
  return node;
}

export function fmtTime(ms) {
  if (!ms) return '';
  return new Date(ms).toLocaleString(undefined, { dateStyle: 'short', timeStyle: 'medium' });
}

export function fmtDuration(ms) {
  if (ms === undefined || ms === null) return '–';
  if (ms < 1000) return `${ms} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

export function fmtMoney(usd) {
  if (usd === undefined || usd === null) return '–';
  return usd < 0.01 ? `$${usd.toFixed(5)}` : `$${usd.toFixed(2)}`;
}

// The task states, in board order, with the words people read.
export const STATES = [
  ['queued', 'Queued'], ['running', 'Running'], ['verifying', 'Verifying'],
  ['blocked', 'Blocked'], ['review', 'In review'], ['changes_requested', 'Changes requested'],
  ['answered', 'Answered'], ['merged', 'Merged'], ['rejected', 'Rejected'],
  ['failed', 'Failed'], ['cancelled', 'Cancelled'],
];
const STATE_LABELS = Object.fromEntries(STATES);

// A state as a pill: colour (a colour-blind-safe palette, app.css) and a
// symbol, so the state never rests on colour alone.
const STATE_SYMBOLS = {
  queued: '○', running: '▶', verifying: '◐', blocked: '■', review: '◆',
  changes_requested: '↺', answered: '✓', merged: '✓', rejected: '✕', failed: '✕', cancelled: '–',
};
export function statePill(state) {
  return h('span', { class: `pill state-${state}`, text: `${STATE_SYMBOLS[state] || '?'} ${STATE_LABELS[state] || state}` });
}

export function errorBox(error) {
  return h('p', { class: 'error', role: 'alert', text: error && error.message ? error.message : String(error) });
}
