// app.js — the dashboard: one MqhubClient (mqhub.js) to the server that served
// this page, a stats subscription (a {"push": "stats"} snapshot once a second,
// docs/protocol.md "Extensions") rendered on five pages, and a live tail of a
// topic through a push subscription. Rates are the difference of totals
// between two snapshots. Errors are shown in the red bar, never swallowed.
// Login: a server with credentials answers UNAUTHORIZED; the form takes a
// token (root or a user's), kept in sessionStorage — never a cookie, so a
// cross-site request carries nothing — and sent in hello. A named user's
// stats are restricted by the server to the names it may list; what it may
// not do is answered FORBIDDEN and shown as "not allowed".
import {MqhubClient, bodyText} from './mqhub.js';
import {sparkline, lineChart, formatNumber, formatAge, formatCountdown} from './charts.js';

const HISTORY = 120;
const $ = (sel) => document.querySelector(sel);
const params = new URLSearchParams(location.search);
if (params.has('token')) { // ?token= once: keep it in the tab, not in the URL and history
  sessionStorage.setItem('mqhub-token', params.get('token'));
  params.delete('token');
  const rest = params.toString();
  history.replaceState(null, '', `${location.pathname}${rest ? `?${rest}` : ''}${location.hash}`);
}
const state = {
  token: sessionStorage.getItem('mqhub-token') || null,
  prev: null, last: null,
  history: new Map(),           // queue -> backlog values
  rates: {in: [], out: []},
  queueRates: new Map(),        // queue -> {in, out}
  errors: new Map(),            // source -> text
  tail: {topic: null, sub: null, running: false, count: 0},
};

// ------------------------------------------------------------------ helpers
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v; else if (k === 'text') e.textContent = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

// FORBIDDEN: the identity may not do this; say so plainly.
function errorText(err) {
  return err.code === 'FORBIDDEN' ? `not allowed: ${err.message.replace(/^FORBIDDEN: /, '')}` : err.message;
}

function showError(source, text) {
  if (text) state.errors.set(source, text); else state.errors.delete(source);
  const box = $('#errors');
  box.hidden = state.errors.size === 0;
  box.textContent = [...state.errors].map(([s, t]) => `${s}: ${t}`).join('\n');
}

function setConn(text, cls) {
  const c = $('#conn');
  c.textContent = text;
  c.className = `conn ${cls}`;
}

// ------------------------------------------------------------------ pages
function route() {
  const page = (location.hash || '#overview').slice(1);
  for (const s of document.querySelectorAll('.page')) s.hidden = s.id !== `page-${page}`;
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.dataset.page === page);
  if (state.last) render(state.last);
}
window.addEventListener('hashchange', route);

function sum(list, key) {
  return list.reduce((a, q) => a + ((q.stats && q.stats[key]) || 0), 0);
}

function updateRates(snap) {
  const prev = state.prev;
  if (prev) {
    const dt = Math.max(0.001, (snap.ts - prev.ts) / 1000);
    const before = new Map(prev.queues.map((q) => [q.name, q.stats || {}]));
    let tin = 0, tout = 0;
    for (const q of snap.queues) {
      const b = before.get(q.name), s = q.stats || {};
      const r = b ? {in: Math.max(0, (s.sent_total - b.sent_total) / dt),
                     out: Math.max(0, (s.received_total - b.received_total) / dt)} : {in: 0, out: 0};
      state.queueRates.set(q.name, r);
      tin += r.in; tout += r.out;
    }
    push(state.rates.in, tin); push(state.rates.out, tout);
  }
  for (const q of snap.queues) {
    if (!state.history.has(q.name)) state.history.set(q.name, []);
    push(state.history.get(q.name), (q.stats && q.stats.ready) || 0);
  }
}

function push(arr, v) {
  arr.push(v);
  if (arr.length > HISTORY) arr.shift();
}

function renderOverview(snap) {
  const cl = snap.cluster || {};
  const cards = [
    ['node', cl.node ?? '–'], ['role', cl.role ?? '–'], ['leader', cl.leader ?? 'none'],
    ['term', cl.term ?? '–'], ['commit / applied', `${cl.commit_index ?? '–'} / ${cl.last_applied ?? '–'}`],
    ['queues', snap.queues.length], ['topics', snap.topics.length],
    ['backlog (ready)', formatNumber(sum(snap.queues, 'ready'))],
    ['in flight', formatNumber(sum(snap.queues, 'inflight'))],
    ['sent total', formatNumber(sum(snap.queues, 'sent_total'))],
    ['received total', formatNumber(sum(snap.queues, 'received_total'))],
    ['WebSocket clients', snap.transport ? snap.transport.connections : '–'],
  ];
  $('#cards').replaceChildren(...cards.map(([l, v]) =>
    el('div', {class: 'card'}, el('div', {class: 'label', text: l}),
       el('div', {class: String(v).length > 10 ? 'value long' : 'value', text: String(v)}))));
  lineChart($('#rates'), [{label: 'in', color: '#2563eb', values: state.rates.in},
                          {label: 'out', color: '#16a34a', values: state.rates.out}], HISTORY);
  const nodes = cl.nodes || [];
  $('#nodes tbody').replaceChildren(...nodes.map((n) => el('tr', {},
    el('td', {text: String(n.id)}), el('td', {text: n.address || ''}),
    el('td', {text: n.role || ''}), el('td', {class: 'num', text: String(n.match_index ?? '')}))));
}

function renderQueues(snap) {
  $('#queues-empty').hidden = snap.queues.length > 0;
  const rows = snap.queues.map((q) => {
    const s = q.stats || {}, r = state.queueRates.get(q.name) || {in: 0, out: 0};
    const canvas = el('canvas', {class: 'spark', width: '160', height: '28'});
    const row = el('tr', {'data-queue': q.name},
      el('td', {text: q.name}),
      el('td', {class: 'num backlog', 'data-queue': q.name, text: String(s.ready ?? '–')}),
      el('td', {class: 'num', text: String(s.inflight ?? '–')}),
      el('td', {class: 'num', text: String(s.delayed ?? '–')}),
      el('td', {class: 'num', text: formatAge(s.oldest_age_ms)}),
      el('td', {class: 'num', text: formatNumber(r.in)}),
      el('td', {class: 'num', text: formatNumber(r.out)}),
      el('td', {}, q.error ? el('span', {class: 'muted', text: q.error}) : canvas));
    return {row, canvas, values: state.history.get(q.name) || []};
  });
  $('#queues tbody').replaceChildren(...rows.map((r) => r.row));
  for (const r of rows) sparkline(r.canvas, r.values, '#2563eb', HISTORY);
}

function filterSummary(sub) {
  const parts = [];
  if (sub.filter_tags && sub.filter_tags.length) parts.push(`tags ${sub.filter_tags.join(', ')}`);
  if (sub.binding_keys && sub.binding_keys.length) parts.push(`keys ${sub.binding_keys.join(', ')}`);
  if (sub.filter_script) parts.push(`script ${sub.filter_script}`);
  return parts.join(' · ') || 'everything';
}

function endpointText(sub) {
  const e = sub.endpoint || {};
  if (e.http) return `http ${e.http}${e.format === 'simplified' ? ' (simplified)' : ''}`;
  return e.queue ? `queue ${e.queue}` : e.push ? 'push' : '';
}

function statsText(stats) {
  return Object.entries(stats || {}).filter(([, v]) => typeof v === 'number')
    .map(([k, v]) => `${k} ${formatNumber(v)}`).join(' · ');
}

function renderTopics(snap) {
  const err = snap.errors && snap.errors['topic.list'];
  const empty = $('#topics-empty');
  empty.hidden = !err && snap.topics.length > 0;
  empty.textContent = err ? `Topics are not available: ${err}` : 'No topics yet. Create one with mqhub topic create NAME.';
  $('#topics').replaceChildren(...snap.topics.map((t) => {
    const subs = (t.subscriptions || []).map((s) => typeof s === 'string' ? {name: s} : s);
    return el('div', {class: 'topic', 'data-topic': t.name},
      el('h3', {text: t.name}),
      el('div', {class: 'muted', text: t.error || statsText(t.stats)}),
      el('table', {}, el('thead', {}, el('tr', {}, ...['subscription', 'endpoint', 'filter', 'stats (lag)']
        .map((h) => el('th', {text: h})))),
      el('tbody', {}, ...subs.map((s) => el('tr', {},
        el('td', {text: s.name}), el('td', {text: endpointText(s)}),
        el('td', {text: filterSummary(s)}), el('td', {text: statsText(s.stats || s)}))))));
  }));
}

function renderBlocks(snap) {
  const err = snap.errors && snap.errors['block.list'];
  const blocks = snap.blocks || [];
  const empty = $('#blocks-empty');
  empty.hidden = !err && blocks.length > 0;
  empty.textContent = err ? `Blocks are not available: ${err}` : 'No active blocks.';
  $('#blocks tbody').replaceChildren(...blocks.map((b) => el('tr', {class: 'block', 'data-attr': b.attr, 'data-value': b.value},
    el('td', {text: b.attr}), el('td', {text: b.value}), el('td', {class: 'reason', text: b.reason || ''}),
    el('td', {text: b.script || ''}),
    el('td', {class: 'countdown', 'data-until': String(b.until), text: formatCountdown(b.until - Date.now())}))));
}

function renderTailChoices(snap) {
  const err = snap.errors && snap.errors['topic.list'];
  const empty = $('#tail-empty');
  empty.hidden = !err && snap.topics.length > 0;
  empty.textContent = err ? `Live tail needs topics: ${err}` : 'No topics yet.';
  const topicSel = $('#tail-topic');
  const topics = snap.topics.map((t) => t.name);
  if ([...topicSel.options].map((o) => o.value).join() !== topics.join())
    topicSel.replaceChildren(...topics.map((n) => el('option', {value: n, text: n})));
  if (state.tail.topic && topics.includes(state.tail.topic)) topicSel.value = state.tail.topic;
  const t = snap.topics.find((x) => x.name === topicSel.value);
  const subs = ((t && t.subscriptions) || []).map((s) => typeof s === 'string' ? {name: s} : s)
    .filter((s) => !s.endpoint || s.endpoint.push).map((s) => s.name);
  const subSel = $('#tail-sub');
  if ([...subSel.options].map((o) => o.value).join() !== subs.join())
    subSel.replaceChildren(...subs.map((n) => el('option', {value: n, text: n})));
  if (state.tail.sub && subs.includes(state.tail.sub)) subSel.value = state.tail.sub;
}

function render(snap) {
  const errors = snap.errors || {};
  // Unknown ops are shown on their page; other failures in the red bar.
  // FORBIDDEN sections (a restricted user) are explained on their page.
  const shown = Object.entries(errors).filter(([op, e]) =>
    !e.startsWith('UNKNOWN_OP') && !e.startsWith('FORBIDDEN') && op !== 'hello');
  showError('server', shown.map(([op, e]) => `${op}: ${e}`).join('\n'));
  const page = (location.hash || '#overview').slice(1);
  if (page === 'overview') renderOverview(snap);
  if (page === 'queues') renderQueues(snap);
  if (page === 'topics') renderTopics(snap);
  if (page === 'blocks') renderBlocks(snap);
  if (page === 'tail') renderTailChoices(snap);
}

// ------------------------------------------------------------------ tail
function addTailRow(m) {
  const body = $('#tail tbody');
  body.prepend(el('tr', {class: 'tail-msg'},
    el('td', {text: new Date(m.published_at || Date.now()).toLocaleTimeString()}),
    el('td', {class: 'num', text: String(m.seq)}), el('td', {text: m.key || ''}),
    el('td', {}, ...(m.tags || []).map((t) => el('span', {class: 'tag', text: t}))),
    el('td', {class: 'body', text: bodyText(m)})));
  while (body.children.length > 200) body.lastChild.remove();
  state.tail.count++;
  $('#tail-state').textContent = `${state.tail.count} messages`;
}

async function toggleTail(client) {
  const t = state.tail;
  try {
    if (t.running) {
      await client.unsubscribe(t.topic, t.sub);
      t.running = false;
      $('#tail-state').textContent = `paused after ${t.count} messages`;
    } else {
      t.topic = $('#tail-topic').value;
      t.sub = $('#tail-sub').value;
      if (!t.topic || !t.sub) throw new Error('pick a topic and a push subscription first');
      await client.subscribe(t.topic, t.sub, {credit: 50}, addTailRow);
      t.running = true;
      $('#tail-state').textContent = `following ${t.topic}/${t.sub}`;
    }
    $('#tail-toggle').textContent = t.running ? 'Pause' : 'Resume';
    showError('tail', null);
  } catch (err) {
    showError('tail', errorText(err));
  }
}

async function createTail(client) {
  const topic = $('#tail-topic').value;
  try {
    if (!topic) throw new Error('pick a topic first');
    await client.request('subscription.create', {topic, name: 'dashboard-tail',
                                                 endpoint: {push: true}, from: 'latest'})
      .catch((err) => { if (err.code !== 'EXISTS') throw err; });
    state.tail.topic = topic;
    state.tail.sub = 'dashboard-tail';
    showError('tail', null);
  } catch (err) {
    showError('tail', errorText(err));
  }
}

// ------------------------------------------------------------------ start
function wsUrl() {
  const u = new URL(location.href);
  u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
  u.pathname = '/';
  u.search = '';
  u.hash = '';
  return u.toString();
}

async function start() {
  route();
  const client = new MqhubClient(wsUrl(), {token: state.token});
  client.on('open', async (info) => {
    setConn(`connected · node ${info.node}`, 'up');
    $('#who').textContent = info.user ? `user ${info.user}` : state.token ? 'root' : '';
    $('#logout').hidden = !state.token;
    showError('connection', null);
    try {
      const sub = await client.request('stats.subscribe', {interval_ms: 1000});
      $('#restricted').hidden = !sub.restricted;
      $('#restricted').textContent = sub.restricted
        ? `Showing only the queues and topics ${info.user ? `user ${info.user}` : 'this identity'} may see.` : '';
    } catch (err) {
      showError('stats', errorText(err));
    }
  });
  client.on('close', (ev) => {
    setConn('disconnected, retrying…', 'down');
    showError('connection', ev.reason || `connection closed (${ev.code})`);
  });
  client.on('error', (err) => showError('client', err.message));
  client.on('stats', (snap) => {
    state.prev = state.last;
    state.last = snap;
    updateRates(snap);
    render(snap);
  });
  $('#tail-toggle').addEventListener('click', () => toggleTail(client));
  $('#tail-create').addEventListener('click', () => createTail(client));
  $('#tail-topic').addEventListener('change', () => { state.tail.topic = $('#tail-topic').value; });
  $('#login').addEventListener('submit', (ev) => {
    ev.preventDefault();
    sessionStorage.setItem('mqhub-token', $('#token').value);
    location.reload();
  });
  $('#logout').addEventListener('click', () => {
    sessionStorage.removeItem('mqhub-token');
    location.reload();
  });
  setInterval(() => {
    for (const c of document.querySelectorAll('.countdown'))
      c.textContent = formatCountdown(Number(c.dataset.until) - Date.now());
  }, 1000);
  try {
    await client.connect();
  } catch (err) {
    if (err.code === 'UNAUTHORIZED') {
      client.close();
      $('#login').hidden = false;
      setConn('token needed', 'down');
      if (state.token) { // a stored token was refused: forget it
        sessionStorage.removeItem('mqhub-token');
        $('#login-error').hidden = false;
        $('#login-error').textContent = 'That token was refused.';
      }
      return;
    }
    showError('connection', err.message);
  }
}

start();
