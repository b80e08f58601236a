// app.js — the dashboard's frame: one MqhubClient (mqhub.js) to the server that
// served this page, the login, the red error bar, the confirmation modal, the
// stats subscription (a {"push": "stats"} snapshot once a second,
// docs/protocol.md "Extensions") and a hash router that shows one page module
// of www/pages/ at a time. Start from start() and route(). On a follower the
// requests and the stats come from the leader's dashboard (follow.js; the
// header says so in #data-from).
//
// Login: a server with credentials answers UNAUTHORIZED; the form takes a
// token (root or a user's), kept in sessionStorage — never a cookie, so a
// cross-site request carries nothing — and sent in hello. What an identity
// may not do is answered FORBIDDEN and shown as "not allowed: ...".
//
// ---- Page registration API (also in docs/dashboard.md "Writing a page") ----
// A page is an ES module in www/pages/ whose default export is
//
//   export default {
//     route: 'queue',        // first hash segment: #/queue/jobs shows it with
//                            //   params ['jobs'] (segments URI-decoded)
//     nav: 'Queues' | null,  // text of its link in the header (#/<route>), or
//                            //   null for a page reached by links (a queue's page)
//     navFor: 'queues',      // optional: the nav link lit while it is shown
//     mount(view, ctx, params) {},  // build the page into @view (an empty
//                            //   <section id="page-<route>">) on every visit
//     stats(snap, ctx) {},   // optional: each stats push while it is shown
//     observe(snap, ctx) {}, // optional: each stats push, shown or not (history)
//     leave(ctx) {},         // optional: when another page is shown
//   };
//
// and is added to PAGES below (one import, one entry; the order is the nav's).
// ctx, the same object for every page:
//   ctx.client             the MqhubClient (ctx.client.info: the hello answer)
//   ctx.request(op, args)  a request; rejects with MqhubError (.code)
//   ctx.act(source, fn)    runs async fn; its error goes to the red bar under
//                          @source, cleared by its next success or when the
//                          page is left
//   ctx.confirm({title, text, confirmText?, typeName?}) → Promise<bool>: a
//                          modal naming the object and the effect; with
//                          typeName the button is enabled once it is typed
//   ctx.showError(source, text|null) (cleared when the page is left too),
//   ctx.errorText(err) (FORBIDDEN explained)
//   ctx.last / ctx.prev    the newest and the previous stats snapshot
//   ctx.every(ms, fn)      a timer cleared when the page is left
//   ctx.go(route, ...params) / ctx.href(route, ...params)   navigation
//   ctx.el(tag, {class, text, ...attributes}, ...children)  DOM (never innerHTML)
// Numbers are formatted with www/format.js only.
import {MqhubClient} from './mqhub.js';
import {Follower} from './follow.js';
import {formatCountdown} from './format.js';
import overview from './pages/overview.js';
import queues from './pages/queues.js';
import queue from './pages/queue.js';
import topics from './pages/topics.js';
import topic from './pages/topic.js';
import scripts from './pages/scripts.js';
import blocks from './pages/blocks.js';
import tail from './pages/tail.js';
import nodes from './pages/nodes.js';
import connections from './pages/connections.js';

const PAGES = [overview, nodes, connections, queues, queue, topics, topic, scripts, blocks, tail];
const $ = (sel) => document.querySelector(sel);
const params = new URLSearchParams(location.search);
if (params.has('token')) { // ?token= once: keep it in the tab, not in the URL and history
  sessionStorage.setItem('mqhub-token', params.get('token'));
  params.delete('token');
  const rest = params.toString();
  history.replaceState(null, '', `${location.pathname}${rest ? `?${rest}` : ''}${location.hash}`);
}
const errors = new Map(); // source -> text
let current = null;       // {page, timers}
let token = sessionStorage.getItem('mqhub-token') || null;

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v; else if (k === 'text') e.textContent = v; else e.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

// FORBIDDEN: the identity may not do this; say so plainly.
function errorText(err) {
  return err.code === 'FORBIDDEN' ? `not allowed: ${err.message.replace(/^FORBIDDEN: /, '')}` : err.message;
}

function showError(source, text) {
  if (text) errors.set(source, text); else errors.delete(source);
  const box = $('#errors');
  box.hidden = errors.size === 0;
  box.textContent = [...errors].map(([s, t]) => `${s}: ${t}`).join('\n');
}

function setConn(text, cls) {
  const c = $('#conn');
  c.textContent = text;
  c.className = `conn ${cls}`;
}

// The confirmation modal: resolves true only on the confirm button.
function confirmModal({title, text, confirmText = 'Confirm', typeName = null}) {
  const dlg = $('#confirm');
  const input = el('input', {id: 'confirm-type', autocomplete: 'off', placeholder: typeName || ''});
  const ok = el('button', {type: 'button', id: 'confirm-ok', class: 'danger', text: confirmText});
  const cancel = el('button', {type: 'button', id: 'confirm-cancel', text: 'Cancel'});
  ok.disabled = !!typeName;
  input.addEventListener('input', () => { ok.disabled = input.value !== typeName; });
  dlg.replaceChildren(el('h3', {text: title}), el('p', {id: 'confirm-text', text}),
    typeName ? el('label', {}, `Type ${typeName} to confirm: `, input) : '',
    el('div', {class: 'buttons'}, cancel, ok));
  dlg.showModal();
  if (typeName) input.focus(); else cancel.focus();
  return new Promise((resolve) => {
    const done = (v) => { dlg.close(); resolve(v); };
    ok.addEventListener('click', () => done(true));
    cancel.addEventListener('click', () => done(false));
    dlg.addEventListener('cancel', () => resolve(false), {once: true}); // Escape
  });
}

const ctx = {
  client: null, last: null, prev: null, el, errorText,
  showError(source, text) { // a page's: cleared when the page is left
    if (current) current.sources.add(source);
    showError(source, text);
  },
  confirm: confirmModal,
  request: (op, args) => ctx.client.request(op, args),
  async act(source, fn) {
    const mine = current;
    try {
      const r = await fn();
      showError(source, null);
      return r;
    } catch (err) {
      if (mine === current) { // an answer for a page left since is not news
        mine.sources.add(source);
        showError(source, errorText(err));
      }
      return undefined;
    }
  },
  every(ms, fn) {
    if (current) current.timers.push(setInterval(fn, ms));
  },
  href: (route, ...args) => `#/${[route, ...args.map(encodeURIComponent)].join('/')}`,
  go: (route, ...args) => { location.hash = ctx.href(route, ...args); },
};

// #/queue/jobs (and the older #queues): route 'queue', params ['jobs']. A
// segment that is not valid percent-encoding (a hand-typed hash) is kept as
// it is rather than breaking the page.
function decodeSegment(p) {
  try {
    return decodeURIComponent(p);
  } catch {
    return p;
  }
}

function parseHash() {
  const parts = (location.hash || '').replace(/^#\/?/, '').split('/').filter((p) => p !== '').map(decodeSegment);
  return {route: parts.length ? parts[0] : 'overview', args: parts.slice(1)};
}

function route() {
  const {route: name, args} = parseHash();
  const page = PAGES.find((p) => p.route === name) || overview;
  if (current) {
    for (const t of current.timers) clearInterval(t);
    for (const source of current.sources) showError(source, null);
    if (current.page.leave) current.page.leave(ctx);
  }
  current = {page, timers: [], sources: new Set()};
  const view = el('section', {id: `page-${page.route}`, class: 'page'});
  $('main').replaceChildren(view);
  const lit = page.navFor || page.route;
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.dataset.page === lit);
  if (ctx.client && ctx.client.info) mountCurrent(view, args);
  else current.pending = () => mountCurrent(view, args);
}

function mountCurrent(view, args) {
  current.pending = null;
  current.page.mount(view, ctx, args);
  if (ctx.last && current.page.stats) current.page.stats(ctx.last, ctx);
}

function onStats(snap) {
  ctx.prev = ctx.last;
  ctx.last = snap;
  const errs = snap.errors || {};
  // Unknown ops are shown on their page; other failures in the red bar.
  // FORBIDDEN sections (a restricted user) are explained on their page.
  const shown = Object.entries(errs).filter(([op, e]) =>
    !e.startsWith('UNKNOWN_OP') && !e.startsWith('FORBIDDEN') && op !== 'hello');
  showError('server', shown.map(([op, e]) => `${op}: ${e}`).join('\n'));
  for (const p of PAGES) if (p.observe) p.observe(snap, ctx);
  if (current && !current.pending && current.page.stats) current.page.stats(snap, ctx);
}

function wsUrl() {
  const u = new URL(location.href);
  u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
  u.pathname = '/';
  u.search = '';
  u.hash = '';
  return u.toString();
}

function buildNav() {
  $('nav').replaceChildren(...PAGES.filter((p) => p.nav).map((p) =>
    el('a', {href: ctx.href(p.route), 'data-page': p.route, text: p.nav})));
}

async function start() {
  buildNav();
  window.addEventListener('hashchange', route);
  route();
  const client = new MqhubClient(wsUrl(), {token});
  ctx.client = client;
  // Data (requests, stats) come from the leader's dashboard when this node
  // follows (follow.js); ctx.client is that client.
  const follower = new Follower(client, {token, onStats,
    onSwitch: (c) => { ctx.client = c; },
    onNote: (text, warn) => { $('#data-from').textContent = text; $('#data-from').classList.toggle('warn', warn); }});
  client.on('open', async (info) => {
    setConn(`connected · node ${info.node}`, 'up');
    $('#who').textContent = info.user ? `user ${info.user}` : token ? 'root' : '';
    $('#logout').hidden = !token;
    showError('connection', null);
    try {
      const sub = await follower.follow();
      if (current && current.pending) current.pending();
      $('#restricted').hidden = !sub.restricted;
      $('#restricted').textContent = sub.restricted
        ? `Showing only the queues and topics ${info.user ? `user ${info.user}` : 'this identity'} may see.` : '';
    } catch (err) {
      if (current && current.pending) current.pending();
      showError('stats', errorText(err));
    }
  });
  client.on('close', (ev) => {
    setConn('disconnected, retrying…', 'down');
    showError('connection', ev.reason || `connection closed (${ev.code})`);
  });
  client.on('error', (err) => showError('client', err.message));
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
      if (token) { // a stored token was refused: forget it
        sessionStorage.removeItem('mqhub-token');
        token = null;
        $('#login-error').hidden = false;
        $('#login-error').textContent = 'That token was refused.';
      }
      return;
    }
    showError('connection', err.message);
  }
}

start();
