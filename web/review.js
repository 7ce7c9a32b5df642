// The review page of a task in review: the diff with line comments, the
// verification and the FAIL_TO_PASS evidence, the feedback it came from, what
// it used and cost, the agent's transcript, and the decisions (approve/merge,
// request changes with a comment and line comments, reject with a reason). The
// API decides who may do what (a requester cannot approve their own task): its
// refusal is shown as it says it.
import { api, all } from './api.js';
import { h, clear, statePill, errorBox, fmtDuration, fmtMoney } from './dom.js';
import { parseUnified, renderDiff } from './diff.js';
import { renderTranscript, renderEvent } from './transcript.js';

function section(title, ...body) {
  return h('section', { class: 'card' }, h('h2', { text: title }), body);
}

function verification(review) {
  const v = review.verification;
  const parts = [];
  if (v && v.outcome) parts.push(renderEvent({ type: 'test_run', seq: 0, data: v }));
  else parts.push(h('p', { class: 'muted', text: 'No test run on the branch was recorded.' }));
  const ftp = review.fail_to_pass;
  if (ftp) {
    parts.push(h('h3', { text: 'FAIL_TO_PASS' }),
      h('p', {}, 'The agent\'s tests ', (ftp.tests || []).map((t) => h('code', { text: t })), ' failed on the base tree:'));
    if (ftp.base) parts.push(renderEvent({ type: 'test_run', seq: 0, data: { tree: 'base', argv: ftp.argv || '', outcome: ftp.base } }));
  }
  return parts;
}

function feedbackList(items) {
  if (!items || items.length === 0) return h('p', { class: 'muted', text: 'Not made from feedback.' });
  return h('ul', { class: 'feedback-list' }, items.map((f) => h('li', {},
    h('div', {}, h('span', { class: `pill kind-${f.kind}`, text: f.kind }), ' ', h('strong', { text: f.title }),
      h('span', { class: 'muted', text: ` · #${f.id} · ${f.reporter_count} reporter${f.reporter_count === 1 ? '' : 's'}` })),
    h('p', { class: 'body', text: f.body }))));
}

function costTable(review) {
  const u = review.usage || {};
  const c = review.cost || {};
  const p = c.prices || {};
  const row = (k, v, note) => h('tr', {}, h('th', { scope: 'row', text: k }), h('td', { text: v }), h('td', { class: 'muted', text: note || '' }));
  return h('table', { class: 'kv' },
    row('Tokens', `${u.prompt_tokens ?? 0} in, ${u.completion_tokens ?? 0} out`, `${fmtMoney(c.tokens)} at $${p.per_million_prompt_tokens}/$${p.per_million_completion_tokens} per 1M`),
    row('Model time', fmtDuration(u.model_ms)),
    row('Sandbox CPU time', fmtDuration(u.sandbox_cpu_ms), `${fmtMoney(c.cpu)} at $${p.per_cpu_hour} per CPU hour`),
    row('GPU time', fmtDuration(u.sandbox_gpu_ms), `${fmtMoney(c.gpu)} at $${p.per_gpu_hour} per GPU hour`),
    row('Cost', fmtMoney(c.total), 'prices: cost.* in loomd\'s config'));
}

export async function reviewPage(main, id) {
  let review;
  try {
    review = await api('GET', `/v1/reviews/${id}`);
  } catch (e) {
    main.append(errorBox(e), h('p', {}, h('a', { href: `#/task/${id}`, text: 'Open the task page' })));
    return;
  }
  const task = review.task;
  const comments = [];
  let mode = localStorage.getItem('loom.diffMode') === 'split' ? 'split' : 'unified';
  const files = parseUnified(review.diff.unified);
  const diffRoot = h('div', { class: 'diff-files' });
  const pending = h('p', { class: 'muted', 'aria-live': 'polite' });
  const onComments = () => {
    pending.textContent = comments.length === 0 ? 'No line comments yet: use + beside a line of the diff.'
      : `${comments.length} line comment${comments.length === 1 ? '' : 's'} will go with your request for changes.`;
  };
  const draw = () => renderDiff(diffRoot, files, review.diff.files || [], mode, comments, onComments);
  const modeButton = (m, label) => h('button', {
    type: 'button', 'aria-pressed': String(mode === m), text: label,
    onclick: (ev) => {
      mode = m;
      localStorage.setItem('loom.diffMode', m);
      for (const b of ev.currentTarget.parentNode.children) b.setAttribute('aria-pressed', String(b === ev.currentTarget));
      draw();
    },
  });

  const status = h('div', { role: 'status', class: 'status-line' });
  const done = (text) => {
    status.replaceChildren(h('p', { class: 'ok', text }));
    for (const b of decisions.querySelectorAll('button, textarea')) b.disabled = true;
  };
  const decide = async (what, body, after) => {
    status.replaceChildren();
    try {
      const r = await api('POST', `/v1/reviews/${id}/${what}`, body);
      after(r);
    } catch (e) {
      // A merge that conflicts with the target's new commits is a 409 that sent
      // the task back to the agent (docs/api.md).
      const paths = e.body && Array.isArray(e.body.conflicting_paths) ? e.body.conflicting_paths : null;
      if (e.status === 409 && paths) done(`The merge conflicts with newer commits in ${paths.join(', ')}: the task went back to the agent to redo its change.`);
      else status.replaceChildren(errorBox(e));
    }
  };
  const comment = h('textarea', { id: 'rc-comment', rows: 3, placeholder: 'What should the agent change?' });
  const reason = h('textarea', { id: 'rj-reason', rows: 2, placeholder: 'Why is this rejected?' });
  const decisions = h('div', { class: 'decisions' },
    h('div', { class: 'decision' },
      h('h3', { text: 'Approve' }),
      h('p', { class: 'muted', text: 'Merges the branch (or records the approval, when the repository waits for a merger).' }),
      h('div', { class: 'row' },
        h('button', { class: 'primary', type: 'button', text: 'Approve and merge',
          onclick: () => decide('approve', {}, (r) => {
            if (r.merged) done(`Merged (${r.merge}) as ${String(r.commit || '').slice(0, 12)}.`);
            else if (r.approved) {
              status.replaceChildren(h('p', { class: 'ok', text: r.message || 'Approved.' }));
            } else done('Done.');
          }) }),
        h('button', { type: 'button', text: 'Merge an approved branch',
          onclick: () => decide('merge', {}, (r) => done(`Merged (${r.merge}).`)) }))),
    h('form', { class: 'decision', onsubmit: (ev) => {
      ev.preventDefault();
      const body = { comment: comment.value.trim() };
      if (comments.length) body.comments = comments.map((c) => ({ path: c.path, line: c.line, body: c.body }));
      if (!body.comment && !comments.length) {
        status.replaceChildren(errorBox('Write a comment or comment on lines of the diff.'));
        return;
      }
      decide('request-changes', body, () => {
        done('Sent back to the agent with your comments.');
        location.hash = `#/task/${id}`;
      });
    } },
      h('h3', {}, h('label', { for: 'rc-comment', text: 'Request changes' })),
      comment, pending,
      h('button', { type: 'submit', text: 'Send back to the agent' })),
    h('form', { class: 'decision', onsubmit: (ev) => {
      ev.preventDefault();
      if (!reason.value.trim()) {
        status.replaceChildren(errorBox('A rejection needs a reason.'));
        return;
      }
      decide('reject', { reason: reason.value.trim() }, () => done('Rejected.'));
    } },
      h('h3', {}, h('label', { for: 'rj-reason', text: 'Reject' })),
      reason,
      h('button', { type: 'submit', class: 'danger', text: 'Reject' })));

  const transcript = h('div', {}, h('p', { class: 'muted', text: 'Loading the transcript…' }));
  main.append(
    h('section', { class: 'card' },
      h('h1', {}, `Review of task #${task.id} `, statePill(task.state)),
      h('p', { class: 'title', text: task.title }),
      h('p', { class: 'muted' }, `${task.repo} · branch `, h('code', { text: review.diff.branch || '' }), ' · ',
        h('a', { href: `#/task/${task.id}`, text: 'live task page' })),
      review.summary ? h('div', { class: 'summary' }, h('h3', { text: 'The agent\'s summary' }), h('p', { class: 'text', text: review.summary })) : null),
    section('Feedback it came from', feedbackList(review.feedback)),
    h('section', { class: 'card' },
      h('div', { class: 'row spread' }, h('h2', { text: `Diff · ${files.length} file${files.length === 1 ? '' : 's'}` }),
        h('div', { class: 'toggle', role: 'group', 'aria-label': 'Diff layout' }, modeButton('unified', 'Unified'), modeButton('split', 'Side by side'))),
      diffRoot),
    section('Verification', verification(review)),
    section('Usage and cost', costTable(review)),
    section('Decision', decisions, status),
    section('Transcript', transcript));
  draw();
  onComments();
  try {
    const events = await all(`/v1/tasks/${id}/events`, 5000);
    transcript.replaceWith(renderTranscript(events));
  } catch (e) {
    clear(transcript).append(errorBox(e));
  }
}
