// The task board: every task in a column of its state. Built in one document
// fragment and put in the page at once (1,000 tasks paint in well under a
// second; bench/RESULTS.md). The time from navigation to the board's first
// paint is left in <body data-board-paint-ms> for the browser test to read.
import { all } from './api.js';
import { h, clear, STATES, statePill, errorBox, onLeave } from './dom.js';

function card(t) {
  const href = t.state === 'review' ? `#/review/${t.id}` : `#/task/${t.id}`;
  return h('li', { class: 'task-card', dataset: { id: t.id } },
    h('a', { href },
      h('span', { class: 'id', text: `#${t.id}` }), ' ',
      h('span', { class: 'title', text: t.title })),
    h('div', { class: 'meta', text: `${t.repo} · ${t.kind} · ${t.steps} steps` }));
}

// The board is read again every kRefreshMs while it is open.
const kRefreshMs = 5000;

export async function boardPage(main) {
  const started = performance.now();
  await drawBoard(main);
  requestAnimationFrame(() => requestAnimationFrame(() => {
    document.body.dataset.boardPaintMs = String(Math.round(performance.now()));
    document.body.dataset.boardRenderMs = String(Math.round(performance.now() - started));
  }));
  const timer = setInterval(() => {
    if (!document.hidden) drawBoard(main).catch(() => {});
  }, kRefreshMs);
  onLeave(() => clearInterval(timer));
}

async function drawBoard(main) {
  let tasks;
  try {
    tasks = await all('/v1/tasks');
  } catch (e) {
    clear(main).append(errorBox(e));
    return;
  }
  const byState = new Map(STATES.map(([s]) => [s, []]));
  for (const t of tasks) {
    if (!byState.has(t.state)) byState.set(t.state, []);
    byState.get(t.state).push(t);
  }
  const frag = document.createDocumentFragment();
  const board = h('div', { class: 'board' });
  for (const [state, list] of byState) {
    // Newest first within a column: what moved last is what one looks for.
    list.reverse();
    board.append(h('section', { class: `column col-${state}`, 'aria-label': `${state}: ${list.length}` },
      h('h2', {}, statePill(state), h('span', { class: 'count', text: String(list.length) })),
      list.length ? h('ul', {}, list.map(card)) : h('p', { class: 'muted empty', text: 'none' })));
  }
  frag.append(h('div', { class: 'row spread' },
    h('h1', { text: 'Tasks' }), h('span', { class: 'muted', text: `${tasks.length} tasks` })), board);
  clear(main).append(frag);
}
