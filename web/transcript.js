// A task's event log as a readable conversation: the instructions, the agent's
// reasoning, each tool call and its result folded, test runs highlighted, the
// reviewers' comments and the state changes between. Shared by the live task
// page and the review page. Everything is text (dom.js).
import { h, fmtDuration, fmtTime } from './dom.js';

function parseArgs(text) {
  if (typeof text !== 'string') return text;
  try {
    return JSON.parse(text);
  } catch (e) {
    return text;
  }
}

function pretty(value) {
  if (typeof value === 'string') return value;
  return JSON.stringify(value, null, 2);
}

// One line of a call's arguments for its folded summary.
function brief(args) {
  if (args === null || args === undefined) return '';
  if (typeof args !== 'object') return String(args).slice(0, 80);
  const parts = [];
  for (const [k, v] of Object.entries(args)) {
    const s = typeof v === 'string' ? v : JSON.stringify(v);
    parts.push(`${k}: ${s.length > 40 ? s.slice(0, 40) + '…' : s}`);
    if (parts.length === 2) break;
  }
  return parts.join(', ');
}

function folded(summaryClass, summary, body, open = false) {
  return h('details', { class: summaryClass, open },
    h('summary', {}, summary),
    h('pre', { class: 'output', text: body }));
}

function runBlock(e, label) {
  const d = e.data || {};
  const o = d.outcome || {};
  const passed = o.exit_code === 0 && !o.limit;
  const argv = Array.isArray(d.argv) ? d.argv.join(' ') : String(d.argv || '');
  const verdict = passed ? 'passed' : o.limit ? `stopped: ${o.limit}` : `failed (exit ${o.exit_code ?? 'signal ' + o.signal})`;
  const out = [o.stdout, o.stderr].filter(Boolean).join('\n');
  return h('div', { class: `event run ${label === 'test' ? 'test-run' : ''} ${passed ? 'pass' : 'fail'}` },
    h('div', { class: 'run-head' },
      h('strong', { text: label === 'test' ? `Test run on the ${d.tree || 'branch'}` : `Command on the ${d.tree || 'branch'}` }),
      ' ', h('span', { class: `verdict ${passed ? 'pass' : 'fail'}`, text: passed ? '✓ passed' : `✕ ${verdict}` }),
      h('span', { class: 'muted', text: ` · ${fmtDuration(o.wall_ms)} wall, ${fmtDuration(o.cpu_ms)} CPU` })),
    h('code', { class: 'argv', text: argv }),
    folded('run-output', 'output', out || '(no output)', !passed && label === 'test'));
}

export function renderEvent(e) {
  const node = renderEventNode(e);
  if (node && e.seq) node.dataset.seq = e.seq;
  return node;
}

function renderEventNode(e) {
  const d = e.data || {};
  const when = h('span', { class: 'when', text: `#${e.seq} · ${fmtTime(e.created_at)}` });
  switch (e.type) {
    case 'prompt':
      return h('div', { class: 'event msg user', dataset: { seq: e.seq } },
        h('div', { class: 'who' }, h('strong', { text: 'Task' }), when),
        h('div', { class: 'text', text: d.user || '' }),
        folded('system', 'system prompt', d.system || ''));
    case 'llm_reply': {
      const m = d.message || {};
      const calls = Array.isArray(m.tool_calls) ? m.tool_calls : [];
      return h('div', { class: 'event msg assistant', dataset: { seq: e.seq } },
        h('div', { class: 'who' }, h('strong', { text: 'Agent' }),
          h('span', { class: 'muted', text: ` · ${fmtDuration(d.ms)} · ${(d.prompt_tokens || 0) + (d.completion_tokens || 0)} tokens` }), when),
        m.content ? h('div', { class: 'text', text: m.content }) : null,
        calls.map((c) => {
          const fn = c.function || {};
          const args = parseArgs(fn.arguments);
          return folded('tool-call', h('span', {}, h('code', { text: fn.name || '?' }), ' ', h('span', { class: 'muted', text: brief(args) })), pretty(args));
        }));
    }
    case 'tool_result': {
      const isTests = d.name === 'run_tests';
      return h('div', { class: `event tool-result ${isTests ? 'test-run' : ''} ${d.error ? 'fail' : ''}`, dataset: { seq: e.seq } },
        folded('result', h('span', {}, `result of `, h('code', { text: d.name || '?' }), d.error ? h('span', { class: 'verdict fail', text: ' error' }) : null,
          h('span', { class: 'muted', text: ` · ${fmtDuration(d.ms)}` })), d.content === undefined ? pretty(d) : String(d.content)));
    }
    case 'test_run':
      return runBlock(e, 'test');
    case 'command_run':
      return runBlock(e, 'command');
    case 'state':
      return h('div', { class: 'event state-change', dataset: { seq: e.seq } },
        h('span', { text: `${d.from || ''} → ${d.to || ''}` }), d.reason ? h('span', { class: 'muted', text: ` — ${d.reason}` }) : null, when);
    case 'review_comment':
      return h('div', { class: 'event msg reviewer', dataset: { seq: e.seq } },
        h('div', { class: 'who' }, h('strong', { text: 'Reviewer' }), when),
        d.comment ? h('div', { class: 'text', text: d.comment }) : null,
        Array.isArray(d.comments) ? h('ul', { class: 'line-comments' }, d.comments.map((c) =>
          h('li', {}, h('code', { text: `${c.path}:${c.line}` }), ' ', h('span', { text: c.body })))) : null);
    case 'fail_to_pass':
      return h('div', { class: 'event note' }, h('strong', { text: 'FAIL_TO_PASS evidence' }), when,
        folded('detail', 'details', pretty(d)));
    case 'command_started':
    case 'edit_started':
      return null;
    default:
      return h('div', { class: `event note type-${e.type}`, dataset: { seq: e.seq } },
        h('strong', { text: e.type }), ' ', h('span', { text: d.text || d.what || d.error || '' }), when,
        (d.text || d.what || d.error) ? null : folded('detail', 'details', pretty(d)));
  }
}

export function renderTranscript(events) {
  return h('div', { class: 'transcript' }, events.map(renderEvent));
}
