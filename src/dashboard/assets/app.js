// The queuectl dashboard page. Plain JS, no dependencies, served by the binary.
// Every value from the store reaches the page through textContent (the el()
// helper below); nothing is ever assigned to innerHTML, so a job that prints
// <script> shows it as text. Views poll the JSON API once a second.
'use strict';

const API = '/api/v1/';
const STATES = ['pending', 'processing', 'completed', 'failed', 'dead', 'cancelled'];
const PAGE = 50;
let session = { actions: false, signed_in: false };
let view = null;       // { refresh(), chart? }
let busy = false;      // a refresh is in flight
let generation = 0;    // bumped on navigation, so late answers are dropped

// el('td', {class: 'num'}, 'text', child, ...): children are nodes or text.
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  return node;
}

async function api(path) {
  const res = await fetch(API + path, { credentials: 'same-origin', cache: 'no-store' });
  const body = await res.json().catch(() => ({ error: res.statusText }));
  if (!res.ok) throw new Error(body.error || res.statusText);
  return body;
}

async function post(path, body) {
  const res = await fetch(API + path, {
    method: 'POST',
    credentials: 'same-origin',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body || {}),
  });
  const answer = await res.json().catch(() => ({ error: res.statusText }));
  if (!res.ok) throw new Error(answer.error || res.statusText);
  return answer;
}

function showError(message) {
  const box = document.getElementById('error');
  box.textContent = message || '';
  box.hidden = !message;
}

function canAct() { return session.actions && session.signed_in; }

// Runs an action, shows its error if any, and refreshes the view at once.
async function act(path, body) {
  try {
    await post(path, body);
    showError('');
  } catch (e) {
    showError(e.message);
  }
  tick(true);
}

function stateBadge(state) { return el('span', { class: 'state ' + state }, state); }

function age(seconds) {
  if (seconds === null || seconds === undefined) return 'none';
  const s = Math.floor(seconds);
  if (s < 60) return s + 's';
  if (s < 3600) return Math.floor(s / 60) + 'm' + String(s % 60).padStart(2, '0') + 's';
  return Math.floor(s / 3600) + 'h' + String(Math.floor(s / 60) % 60).padStart(2, '0') + 'm';
}

function when(ts) { return ts ? ts.replace('T', ' ').replace(/\.\d+Z$/, 'Z') : ''; }

function jobLink(id) { return el('a', { href: '#/job/' + encodeURIComponent(id), class: 'mono' }, id); }

function table(headers, rows, empty) {
  if (!rows.length) return el('p', { class: 'muted' }, empty || 'Nothing here.');
  return el('table', {},
    el('thead', {}, el('tr', {}, headers.map(h => el('th', { class: h.num ? 'num' : null }, h.label || h)))),
    el('tbody', {}, rows));
}

function replace(node, ...children) {
  node.replaceChildren(...children.flat(Infinity).filter(c => c !== null && c !== undefined));
}

// ---- session (sign in with the token; the cookie is HttpOnly) ----

async function loadSession() {
  try { session = await api('session'); } catch (e) { showError(e.message); }
  renderSession();
}

function renderSession() {
  const box = document.getElementById('session');
  if (!session.actions) { replace(box, el('span', { class: 'muted', id: 'read-only' }, 'read-only')); return; }
  if (session.signed_in) {
    replace(box, el('span', {}, 'signed in'),
      el('button', { id: 'logout', onclick: async () => { await post('logout').catch(() => {}); await loadSession(); route(); } }, 'Sign out'));
    return;
  }
  const input = el('input', { id: 'token', type: 'password', placeholder: 'token', autocomplete: 'current-password' });
  const form = el('form', { id: 'login-form', onsubmit: async (ev) => {
    ev.preventDefault();
    try { await post('login', { token: input.value }); showError(''); } catch (e) { showError(e.message); }
    await loadSession();
    route();
  } }, input, el('button', { id: 'login', type: 'submit' }, 'Sign in'));
  replace(box, form);
}

// ---- views ----

function overview(main) {
  const cards = el('div', { class: 'cards', id: 'counts' });
  const oldest = el('p', { id: 'oldest' });
  const chart = svg('svg', { class: 'chart', id: 'throughput', viewBox: '0 0 1200 180' });
  const chartNote = el('p', { class: 'muted', id: 'throughput-total' });
  const queues = el('div', { id: 'overview-queues' });
  const hosts = el('div', { id: 'overview-hosts' });
  replace(main, el('h1', {}, 'Overview'), cards, oldest,
    el('h2', {}, 'Throughput, last hour (attempts per minute)'), chart, chartNote,
    el('div', { class: 'grid2' }, el('div', {}, el('h2', {}, 'Queues'), queues),
      el('div', {}, el('h2', {}, 'Workers by host'), hosts)));
  let chartAt = 0, queuesAt = 0;
  return {
    async refresh(gen) {
      // Per-queue counts read every job: every 5 s; the rest every second.
      const withQueues = Date.now() - queuesAt > 5000;
      const data = await api(withQueues ? 'overview' : 'overview?queues=0');
      if (gen !== generation) return;
      if (withQueues) queuesAt = Date.now();
      replace(cards, [...STATES, 'total'].map(s => el('a', { class: 'card', href: s === 'total' ? '#/jobs' : '#/jobs?state=' + s },
        el('div', { class: 'n', id: 'count-' + s }, data.counts[s]), el('div', { class: 'label' }, s))));
      replace(oldest, 'Oldest ready job waiting: ', el('strong', {}, age(data.oldest_pending_age_seconds)),
        ' · workers: ' + data.workers.live + ' live, ' + data.workers.busy + ' busy, ' + data.workers.idle + ' idle');
      if (data.queues) replace(queues, table(['Queue', { label: 'Pending', num: 1 }, { label: 'Running', num: 1 }, { label: 'Dead', num: 1 }, 'Paused'],
        data.queues.map(q => el('tr', {}, el('td', {}, el('a', { href: '#/jobs?queue=' + encodeURIComponent(q.name) }, q.name)),
          el('td', { class: 'num' }, q.pending), el('td', { class: 'num' }, q.running), el('td', { class: 'num' }, q.dead),
          el('td', {}, q.paused ? 'paused' : ''))), 'No queues yet.'));
      replace(hosts, table(['Host', { label: 'Live', num: 1 }, { label: 'Busy', num: 1 }, { label: 'Idle', num: 1 }],
        data.hosts.map(h => el('tr', {}, el('td', {}, h.host), el('td', { class: 'num' }, h.live),
          el('td', { class: 'num' }, h.busy), el('td', { class: 'num' }, h.idle))), 'No live workers.'));
      // The chart reads the attempt history: every 10 s is plenty for per-minute bars.
      if (Date.now() - chartAt > 10000) {
        chartAt = Date.now();
        const t = await api('throughput');
        if (gen === generation) drawChart(chart, chartNote, t);
      }
    },
  };
}

function drawChart(chart, note, t) {
  const n = t.succeeded.length;
  const totals = t.succeeded.map((s, i) => s + t.other[i]);
  const max = Math.max(1, ...totals);
  const w = 1200 / n, h = 150;
  const nodes = [];
  for (let i = 0; i < n; i++) {
    const okH = h * t.succeeded[i] / max, badH = h * t.other[i] / max;
    nodes.push(svg('rect', { class: 'ok', x: i * w + 1, y: 10 + h - okH, width: Math.max(1, w - 2), height: okH }));
    nodes.push(svg('rect', { class: 'bad', x: i * w + 1, y: 10 + h - okH - badH, width: Math.max(1, w - 2), height: badH }));
  }
  const label = svg('text', { x: 4, y: 12 });
  label.textContent = 'max ' + max + '/min';
  const left = svg('text', { x: 4, y: 176 }); left.textContent = '-60 min';
  const right = svg('text', { x: 1170, y: 176 }); right.textContent = 'now';
  chart.replaceChildren(...nodes, label, left, right);
  const ok = t.succeeded.reduce((a, b) => a + b, 0), bad = t.other.reduce((a, b) => a + b, 0);
  note.textContent = ok + ' succeeded, ' + bad + ' failed or interrupted in the last hour';
}

function jobRows(jobs, withActions) {
  return jobs.map(j => el('tr', { 'data-id': j.id },
    el('td', {}, jobLink(j.id)), el('td', {}, stateBadge(j.state)), el('td', {}, j.queue),
    el('td', { class: 'cmd mono', title: j.command }, j.command),
    el('td', { class: 'num' }, j.attempts + '/' + (j.max_retries + 1)), el('td', {}, when(j.updated_at)),
    withActions ? el('td', {}, jobButtons(j)) : null));
}

function jobButtons(j) {
  if (!canAct()) return null;
  const finished = ['completed', 'dead', 'cancelled'].includes(j.state);
  const id = encodeURIComponent(j.id);
  return el('span', { class: 'actions' },
    finished ? el('button', { class: 'retry', onclick: () => act('jobs/' + id + '/retry') }, 'Retry') : null,
    !finished ? el('button', { class: 'cancel danger', onclick: () => act('jobs/' + id + '/cancel') }, 'Cancel') : null);
}

function jobList(main, params, dlq) {
  let offset = Number(params.get('offset') || 0);
  const state = el('select', { id: 'filter-state' }, el('option', { value: '' }, 'any state'),
    STATES.map(s => el('option', { value: s, selected: params.get('state') === s }, s)));
  const queue = el('input', { id: 'filter-queue', placeholder: 'queue', value: params.get('queue') || '' });
  const prefix = el('input', { id: 'filter-prefix', placeholder: 'id starts with…', value: params.get('prefix') || '' });
  const apply = () => {
    const q = new URLSearchParams();
    if (!dlq && state.value) q.set('state', state.value);
    if (queue.value) q.set('queue', queue.value);
    if (prefix.value) q.set('prefix', prefix.value);
    location.hash = (dlq ? '#/dlq' : '#/jobs') + (q.toString() ? '?' + q : '');
  };
  const filters = el('form', { class: 'filters', onsubmit: (ev) => { ev.preventDefault(); apply(); } },
    dlq ? null : state, queue, prefix, el('button', { type: 'submit' }, 'Filter'));
  const list = el('div', { id: 'job-list' });
  const pager = el('div', { class: 'pager' });
  const extra = [];
  if (!dlq && canAct()) extra.push(enqueueForm());
  replace(main, el('h1', {}, dlq ? 'Dead letter queue' : 'Jobs'), extra, filters, list, pager);
  if (!dlq) state.addEventListener('change', apply);
  return {
    async refresh(gen) {
      const q = new URLSearchParams();
      for (const k of ['state', 'queue', 'prefix']) if (params.get(k) && !(dlq && k === 'state')) q.set(k, params.get(k));
      q.set('limit', PAGE); q.set('offset', offset);
      const data = await api((dlq ? 'dlq?' : 'jobs?') + q);
      if (gen !== generation) return;
      replace(list, table(['Id', 'State', 'Queue', 'Command', { label: 'Attempts', num: 1 }, 'Updated', canAct() ? 'Actions' : null].filter(Boolean),
        jobRows(data.jobs, canAct()), dlq ? 'No dead jobs.' : 'No jobs match.'));
      const to = offset + data.jobs.length;
      replace(pager,
        el('button', { id: 'prev', disabled: offset === 0, onclick: () => { offset = Math.max(0, offset - PAGE); tick(true); } }, '‹ Newer'),
        el('span', { class: 'muted', id: 'page-info' }, (data.jobs.length ? (offset + 1) + '–' + to : '0') + ' of ' + data.total),
        el('button', { id: 'next', disabled: !data.more, onclick: () => { offset += PAGE; tick(true); } }, 'Older ›'));
    },
  };
}

function enqueueForm() {
  const command = el('input', { name: 'command', id: 'enqueue-command', placeholder: 'shell command to enqueue', required: true });
  const queue = el('input', { name: 'queue', id: 'enqueue-queue', placeholder: 'queue (default)' });
  return el('form', { class: 'enqueue', onsubmit: async (ev) => {
    ev.preventDefault();
    const job = { command: command.value };
    if (queue.value) job.queue = queue.value;
    await act('jobs', job);
    command.value = '';
  } }, command, queue, el('button', { type: 'submit', id: 'enqueue' }, 'Enqueue'));
}

function jobPage(main, id) {
  const title = el('h1', {}, 'Job ', el('span', { class: 'mono', id: 'job-id' }, id));
  const buttons = el('div', { class: 'actions', id: 'job-actions' });
  const props = el('dl', { class: 'props' });
  const attempts = el('div', { id: 'attempts' });
  const outputTitle = el('h2', {}, 'Output');
  const output = el('pre', { id: 'job-output' });
  const follow = el('label', {}, el('input', { type: 'checkbox', id: 'follow', checked: true }), ' follow');
  replace(main, title, buttons, props, el('h2', {}, 'Attempts'), attempts, outputTitle, follow, output);
  const enc = encodeURIComponent(id);
  let outputKey = null;
  return {
    async refresh(gen) {
      const job = await api('jobs/' + enc);
      if (gen !== generation) return;
      replace(buttons, jobButtons(job));
      const rows = [
        ['State', stateBadge(job.state)], ['Command', el('code', { id: 'job-command' }, job.command)],
        ['Queue', job.queue], ['Priority', job.priority], ['Attempts', job.attempts + ' of ' + (job.max_retries + 1)],
        ['Created', when(job.created_at)], ['Updated', when(job.updated_at)], ['Next run', when(job.next_run_at)],
        ['Timeout', job.timeout_ms ? job.timeout_ms / 1000 + ' s' : ''], ['Unique key', job.unique_key],
        ['Runs after', (job.after || []).join(', ')], ['Directory', job.cwd], ['Worker', job.worker],
        ['Last error', job.last_error],
      ];
      replace(props, rows.filter(([, v]) => v !== null && v !== undefined && v !== '')
        .map(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
      replace(attempts, table(['#', 'Outcome', 'Exit', 'Started', { label: 'Duration', num: 1 }, 'Host', 'Error'],
        job.history.map(a => el('tr', {}, el('td', {}, a.attempt), el('td', {}, a.outcome),
          el('td', {}, a.signal_name || (a.exit_code ?? '')), el('td', {}, when(a.started_at)),
          el('td', { class: 'num' }, a.duration_ms === null ? '' : (a.duration_ms / 1000).toFixed(2) + ' s'),
          el('td', {}, a.host || ''), el('td', {}, a.error || ''))), 'No attempt has finished yet.'));
      // A finished job's output no longer changes: read it once, not every second.
      const finished = ['completed', 'dead', 'cancelled'].includes(job.state);
      const key = job.state + ':' + job.history.length;
      if (finished && outputKey === key) return;
      const out = await api('jobs/' + enc + '/output');
      if (gen !== generation) return;
      outputKey = finished && !out.running ? key : null;
      outputTitle.textContent = out.attempt ? 'Output of attempt ' + out.attempt + (out.running ? ' (running)' : '') : 'Output';
      // textContent: the job's bytes are shown as text, whatever they hold.
      if (output.textContent !== out.output) {
        output.textContent = out.output;
        if (document.getElementById('follow').checked) output.scrollTop = output.scrollHeight;
      }
    },
  };
}

function queuesPage(main) {
  const list = el('div', { id: 'queue-list' });
  replace(main, el('h1', {}, 'Queues'), list);
  return {
    async refresh(gen) {
      const data = await api('queues');
      if (gen !== generation) return;
      replace(list, table(['Queue', ...STATES.map(s => ({ label: s, num: 1 })), 'Concurrency', 'Paused', canAct() ? 'Actions' : null].filter(Boolean),
        data.queues.map(q => {
          const name = encodeURIComponent(q.name);
          const limit = el('input', { type: 'number', min: 1, class: 'limit', placeholder: 'none', value: q.concurrency ?? '' });
          return el('tr', { 'data-queue': q.name }, el('td', {}, el('a', { href: '#/jobs?queue=' + name }, q.name)),
            STATES.map(s => el('td', { class: 'num' }, q[s])),
            el('td', {}, q.concurrency === null ? 'no limit' : q.concurrency), el('td', {}, q.paused ? 'paused' : ''),
            canAct() ? el('td', {}, el('span', { class: 'actions' },
              q.paused ? el('button', { class: 'resume', onclick: () => act('queues/' + name + '/resume') }, 'Resume')
                : el('button', { class: 'pause', onclick: () => act('queues/' + name + '/pause') }, 'Pause'),
              limit, el('button', { class: 'set-limit', onclick: () => act('queues/' + name + '/concurrency', { limit: limit.value ? Number(limit.value) : null }) }, 'Set limit'))) : null);
        }), 'No queues yet.'));
    },
    // Typing a limit must not be wiped by the next refresh.
    pauseWhileEditing: true,
  };
}

function workersPage(main) {
  const list = el('div', { id: 'worker-list' });
  replace(main, el('h1', {}, 'Workers'), list);
  return {
    async refresh(gen) {
      const data = await api('workers');
      if (gen !== generation) return;
      replace(list, table(['Id', 'Host', { label: 'Pid', num: 1 }, 'State', 'Job', 'Started', 'Heartbeat'],
        data.workers.map(w => el('tr', {}, el('td', { class: 'mono' }, w.id), el('td', {}, w.host), el('td', { class: 'num' }, w.pid),
          el('td', {}, w.state), el('td', {}, w.job ? jobLink(w.job) : ''), el('td', {}, when(w.started_at)),
          el('td', {}, when(w.heartbeat_at)))), 'No live workers.'));
    },
  };
}

// ---- routing and the refresh loop ----

function route() {
  generation++;
  const hash = location.hash.replace(/^#/, '') || '/';
  const [path, query] = hash.split('?');
  const params = new URLSearchParams(query || '');
  const main = document.getElementById('main');
  const parts = path.split('/').filter(Boolean);
  let name = parts[0] || 'overview';
  if (name === 'job' && parts[1]) view = jobPage(main, decodeURIComponent(parts.slice(1).join('/')));
  else if (name === 'jobs') view = jobList(main, params, false);
  else if (name === 'dlq') view = jobList(main, params, true);
  else if (name === 'queues') view = queuesPage(main);
  else if (name === 'workers') view = workersPage(main);
  else { name = 'overview'; view = overview(main); }
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.dataset.view === name || (name === 'job' && a.dataset.view === 'jobs'));
  busy = false;
  tick(true);
}

async function tick(force) {
  if (!view || (busy && !force)) return;
  // A page in a background tab does not poll: it catches up when shown again.
  if (!force && document.hidden) return;
  if (!force && view.pauseWhileEditing && document.activeElement && document.activeElement.matches('input')) return;
  busy = true;
  const gen = generation;
  try {
    await view.refresh(gen);
    if (gen === generation) {
      document.getElementById('updated').textContent = 'Updated ' + new Date().toLocaleTimeString();
      if (document.getElementById('error').dataset.stale) showError('');
    }
  } catch (e) {
    const box = document.getElementById('error');
    showError(e.message);
    box.dataset.stale = '1';
  } finally {
    if (gen === generation) busy = false;
  }
}

window.addEventListener('hashchange', route);
document.addEventListener('visibilitychange', () => { if (!document.hidden) tick(true); });
document.addEventListener('DOMContentLoaded', async () => {
  await loadSession();
  route();
  setInterval(() => tick(false), 1000);
});
