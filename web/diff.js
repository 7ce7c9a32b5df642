// A unified diff (git's) drawn per file, unified or side by side, with simple
// syntax colouring, large files collapsed, and a button on each line of the
// branch's version to comment on it. Lines are text nodes in spans: a diff of
// hostile code stays text.
import { h, clear } from './dom.js';

// Files with more changed lines than this start collapsed.
export const kCollapseLines = 300;

// "diff --git a/x b/x\n..." -> [{path, hunks: [{header, lines: [{kind, old, new, text}]}]}]
export function parseUnified(unified) {
  const files = [];
  let file = null;
  let hunk = null;
  let oldNo = 0;
  let newNo = 0;
  for (const line of (unified || '').split('\n')) {
    if (line.startsWith('diff --git ')) {
      const m = line.match(/^diff --git a\/(.*) b\/(.*)$/);
      file = { path: m ? m[2] : line.slice(11), hunks: [], meta: [] };
      files.push(file);
      hunk = null;
      continue;
    }
    if (!file) continue;
    const at = line.match(/^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@(.*)$/);
    if (at) {
      oldNo = Number(at[1]);
      newNo = Number(at[2]);
      hunk = { header: line, lines: [] };
      file.hunks.push(hunk);
      continue;
    }
    if (!hunk) {
      const plus = line.match(/^\+\+\+ b\/(.*)$/);
      if (plus) file.path = plus[1];
      file.meta.push(line);
      continue;
    }
    if (line.startsWith('+')) hunk.lines.push({ kind: 'add', old: null, new: newNo++, text: line.slice(1) });
    else if (line.startsWith('-')) hunk.lines.push({ kind: 'del', old: oldNo++, new: null, text: line.slice(1) });
    else if (line.startsWith(' ')) hunk.lines.push({ kind: 'ctx', old: oldNo++, new: newNo++, text: line.slice(1) });
    else if (line.startsWith('\\')) hunk.lines.push({ kind: 'meta', old: null, new: null, text: line });
  }
  return files;
}

const KEYWORDS = {
  py: 'and as assert async await break class continue def del elif else except False finally for from global if import in is lambda None nonlocal not or pass raise return True try while with yield self',
  js: 'async await break case catch class const continue default delete do else export extends false finally for from function if import in instanceof let new null return super switch this throw true try typeof undefined var void while yield',
  c: 'auto bool break case char class const constexpr continue default delete do double else enum explicit extern false float for if inline int long namespace new nullptr override private protected public return short signed sizeof static struct switch template this throw true try typedef typename union unsigned using virtual void volatile while include define',
  sh: 'if then else elif fi for while do done case esac function in return local export set',
};
const LANG = { py: 'py', js: 'js', mjs: 'js', ts: 'js', c: 'c', cc: 'c', cpp: 'c', h: 'c', hpp: 'c', go: 'c', rs: 'c', java: 'c', sh: 'sh' };
const keywordSets = Object.fromEntries(Object.entries(KEYWORDS).map(([k, v]) => [k, new Set(v.split(' '))]));

function langOf(path) {
  const ext = (path.split('.').pop() || '').toLowerCase();
  return LANG[ext] || null;
}

// Code as spans: keywords, strings, comments, numbers. A line at a time (a
// string or comment across lines is coloured on its first line only).
export function colour(text, lang) {
  const span = h('span', { class: 'code' });
  if (!lang) {
    span.textContent = text;
    return span;
  }
  const comment = lang === 'py' || lang === 'sh' ? '#' : '//';
  const re = /("(?:[^"\\]|\\.)*"?|'(?:[^'\\]|\\.)*'?|`(?:[^`\\]|\\.)*`?)|(#.*|\/\/.*)|(\b\d[\d_.xXa-fA-F]*\b)|([A-Za-z_][A-Za-z0-9_]*)/g;
  let last = 0;
  let m;
  while ((m = re.exec(text)) !== null) {
    if (m.index > last) span.append(text.slice(last, m.index));
    let cls = null;
    if (m[1]) cls = 'tok-str';
    else if (m[2] && m[2].startsWith(comment)) cls = 'tok-com';
    else if (m[3]) cls = 'tok-num';
    else if (m[4] && keywordSets[lang].has(m[4])) cls = 'tok-kw';
    if (m[2] && !m[2].startsWith(comment)) {
      // '#' in C or '//' in Python: not a comment; colour nothing and go on.
      span.append(m[0][0]);
      re.lastIndex = m.index + 1;
      last = m.index + 1;
      continue;
    }
    span.append(cls ? h('span', { class: cls, text: m[0] }) : m[0]);
    last = m.index + m[0].length;
  }
  if (last < text.length) span.append(text.slice(last));
  return span;
}

// Draws `files` into `root`. `comments` is the review's list of pending line
// comments ({path, line, body}); `onChange` is called when it changes.
export function renderDiff(root, files, meta, mode, comments, onChange) {
  clear(root);
  if (files.length === 0) {
    root.append(h('p', { class: 'muted', text: 'The branch changes no file.' }));
    return;
  }
  for (const file of files) {
    const info = meta.find((f) => f.path === file.path) || {};
    const changed = file.hunks.reduce((n, hk) => n + hk.lines.filter((l) => l.kind !== 'ctx').length, 0);
    const lang = langOf(file.path);
    const body = h('div', { class: 'file-body' });
    const details = h('details', { class: 'file', open: changed <= kCollapseLines, dataset: { path: file.path } },
      h('summary', {},
        h('code', { class: 'path', text: file.path }),
        h('span', { class: 'adds', text: ` +${info.additions ?? ''}` }),
        h('span', { class: 'dels', text: ` −${info.deletions ?? ''}` }),
        info.protected ? h('span', { class: 'pill warn', text: 'protected path' }) : null,
        changed > kCollapseLines ? h('span', { class: 'muted', text: ` · ${changed} changed lines, collapsed: open to read` }) : null),
      body);
    const draw = () => {
      clear(body);
      if (info.binary) {
        body.append(h('p', { class: 'muted', text: 'Binary file.' }));
        return;
      }
      const table = h('table', { class: `diff ${mode}` });
      for (const hunk of file.hunks) {
        table.append(h('tr', { class: 'hunk' }, h('td', { colspan: mode === 'split' ? 4 : 4, text: hunk.header })));
        if (mode === 'split') drawSplit(table, file, hunk, lang, comments, onChange, draw);
        else drawUnified(table, file, hunk, lang, comments, onChange, draw);
      }
      body.append(table);
    };
    // A collapsed file is drawn when opened: a huge diff costs nothing until read.
    if (details.open) draw();
    else details.addEventListener('toggle', () => { if (details.open && !body.firstChild) draw(); });
    root.append(details);
  }
}

function commentButton(file, line, comments, onChange, redraw) {
  return h('button', {
    class: 'add-comment', type: 'button', text: '+',
    'aria-label': `Comment on ${file.path} line ${line}`, title: `Comment on line ${line}`,
    onclick: (ev) => openForm(ev.currentTarget.closest('tr'), file, line, comments, onChange, redraw),
  });
}

function openForm(row, file, line, comments, onChange, redraw) {
  const next = row.nextElementSibling;
  if (next && next.classList.contains('comment-form')) {
    next.querySelector('textarea').focus();
    return;
  }
  const text = h('textarea', { rows: 3, 'aria-label': `Comment on ${file.path} line ${line}`, placeholder: 'What should change here?' });
  const form = h('tr', { class: 'comment-form' }, h('td', { colspan: 4 },
    h('form', {
      onsubmit: (ev) => {
        ev.preventDefault();
        const body = text.value.trim();
        if (!body) return;
        comments.push({ path: file.path, line, body });
        onChange();
        redraw();
      },
    }, text, h('div', { class: 'row' },
      h('button', { type: 'submit', class: 'primary', text: 'Add line comment' }),
      h('button', { type: 'button', text: 'Cancel', onclick: () => form.remove() })))));
  row.after(form);
  text.focus();
}

function commentRows(file, line, comments, onChange, redraw) {
  return comments.filter((c) => c.path === file.path && c.line === line).map((c) =>
    h('tr', { class: 'line-comment' }, h('td', { colspan: 4 },
      h('div', { class: 'bubble' }, h('strong', { text: `Line ${line}: ` }), h('span', { text: c.body }),
        h('button', { type: 'button', class: 'link', text: 'remove', 'aria-label': `Remove the comment on line ${line}`,
          onclick: () => { comments.splice(comments.indexOf(c), 1); onChange(); redraw(); } })))));
}

function drawUnified(table, file, hunk, lang, comments, onChange, redraw) {
  for (const l of hunk.lines) {
    const sign = l.kind === 'add' ? '+' : l.kind === 'del' ? '−' : ' ';
    table.append(h('tr', { class: `line ${l.kind}` },
      h('td', { class: 'no', text: l.old ?? '' }),
      h('td', { class: 'no' }, l.new ?? '', l.new ? commentButton(file, l.new, comments, onChange, redraw) : null),
      h('td', { class: 'sign', text: sign }),
      h('td', { class: 'src' }, colour(l.text, lang))));
    if (l.new) table.append(...commentRows(file, l.new, comments, onChange, redraw));
  }
}

function drawSplit(table, file, hunk, lang, comments, onChange, redraw) {
  // Pairs each run of deletions with the run of additions after it.
  const rows = [];
  let dels = [];
  let adds = [];
  const flush = () => {
    for (let i = 0; i < Math.max(dels.length, adds.length); ++i) rows.push([dels[i] || null, adds[i] || null]);
    dels = [];
    adds = [];
  };
  for (const l of hunk.lines) {
    if (l.kind === 'del') dels.push(l);
    else if (l.kind === 'add') adds.push(l);
    else {
      flush();
      rows.push([l, l]);
    }
  }
  flush();
  for (const [left, right] of rows) {
    table.append(h('tr', { class: 'line split-row' },
      h('td', { class: 'no', text: left ? left.old ?? '' : '' }),
      h('td', { class: `src ${left ? left.kind : 'empty'}` }, left ? colour(left.text, lang) : ''),
      h('td', { class: 'no' }, right ? right.new ?? '' : '', right && right.new ? commentButton(file, right.new, comments, onChange, redraw) : null),
      h('td', { class: `src ${right ? right.kind : 'empty'}` }, right ? colour(right.text, lang) : '')));
    if (right && right.new) table.append(...commentRows(file, right.new, comments, onChange, redraw));
  }
}
