// pages/connections.js — #/connections: the leader's sessions (connection.list)
// and consumers (consumer.list; docs/protocol.md "Connections and
// consumers"): transport, peer, identity, subscriptions, long polls, in
// flight, bytes. A search box filters both tables (any column's text), a
// click on a column head sorts by it (again: the other way). Refreshed every
// REFRESH_MS while shown.
import {formatNumber, formatBytes, formatTime} from '../format.js';

const REFRESH_MS = 1000;

const identity = (c) => (c.user ? `user ${c.user}` : c.identity);
// Columns: head, value for sorting and searching, cell text, numeric.
const CONN_COLS = [
  ['#', (c) => c.connection, (c) => String(c.connection), true],
  ['transport', (c) => c.transport, (c) => c.transport],
  ['peer', (c) => c.peer, (c) => c.peer],
  ['identity', identity, identity],
  ['connected', (c) => c.connected_at, (c) => formatTime(c.connected_at)],
  ['requests', (c) => c.requests, (c) => formatNumber(c.requests), true],
  ['bytes in', (c) => c.bytes_in, (c) => formatBytes(c.bytes_in), true],
  ['bytes out', (c) => c.bytes_out, (c) => formatBytes(c.bytes_out), true],
  ['in flight', (c) => c.inflight, (c) => formatNumber(c.inflight), true],
  ['long polls', (c) => c.parked, (c) => formatNumber(c.parked), true],
  ['subscriptions', (c) => subsText(c), (c) => subsText(c)],
];
const CONS_COLS = [
  ['#', (c) => c.connection, (c) => String(c.connection), true],
  ['kind', (c) => c.kind, (c) => c.kind],
  ['queue / subscription', (c) => target(c), (c) => target(c)],
  ['transport', (c) => c.transport, (c) => c.transport],
  ['peer', (c) => c.peer, (c) => c.peer],
  ['identity', identity, identity],
  ['long polls', (c) => c.parked ?? 0, (c) => (c.kind === 'receive' ? formatNumber(c.parked) : '–'), true],
  ['credit', (c) => c.credit ?? 0, (c) => (c.kind === 'push' ? formatNumber(c.credit) : '–'), true],
  ['in flight', (c) => c.inflight ?? 0, (c) => (c.kind === 'push' ? formatNumber(c.inflight) : '–'), true],
];

function subsText(c) {
  return (c.subscriptions || []).map((s) => `${s.topic}/${s.subscription} (${s.inflight} in flight, ${s.credit} credit)`)
    .join(', ');
}

function target(c) {
  return c.kind === 'push' ? `${c.topic}/${c.subscription}` : c.queue;
}

// A sortable, searchable table: returns {node, set(rows, total)}.
function table(el, id, cols, state) {
  const body = el('tbody');
  const total = el('span', {class: 'muted'});
  const heads = cols.map(([h], i) => {
    const th = el('th', {class: 'sortable', text: h, 'data-col': String(i)});
    th.addEventListener('click', () => {
      state.desc = state.col === i ? !state.desc : cols[i][3] === true;
      state.col = i;
      view.set(view.rows, view.total);
    });
    return th;
  });
  const view = {rows: [], total: 0, total_el: total};
  view.node = el('div', {class: 'scroll'}, el('table', {id}, el('thead', {}, el('tr', {}, ...heads)), body));
  view.set = (rows, all) => {
    view.rows = rows;
    view.total = all;
    const q = state.search.trim().toLowerCase();
    const shown = rows.filter((r) => !q || cols.some(([, key]) => String(key(r) ?? '').toLowerCase().includes(q)));
    if (state.col !== null) {
      const key = cols[state.col][1];
      shown.sort((a, b) => {
        const x = key(a), y = key(b);
        const c = typeof x === 'number' && typeof y === 'number' ? x - y : String(x ?? '').localeCompare(String(y ?? ''));
        return state.desc ? -c : c;
      });
    }
    heads.forEach((th, i) => {
      th.classList.toggle('sorted', i === state.col);
      th.textContent = cols[i][0] + (i === state.col ? (state.desc ? ' ▼' : ' ▲') : '');
    });
    total.textContent = `(${shown.length} shown of ${all})`;
    body.replaceChildren(...shown.map((r) => el('tr', {class: r.self ? 'self' : null},
      ...cols.map(([, , text, num]) => el('td', {class: num ? 'num' : null, text: text(r) ?? '–'})))));
  };
  return view;
}

function mount(view, ctx) {
  const {el} = ctx;
  const cstate = {col: null, desc: false, search: ''};
  const kstate = {col: null, desc: false, search: ''};
  const conns = table(el, 'connection-list', CONN_COLS, cstate);
  const cons = table(el, 'consumer-list', CONS_COLS, kstate);
  const search = el('input', {type: 'search', id: 'connection-search', placeholder: 'search peer, identity, queue…'});
  search.addEventListener('input', () => {
    cstate.search = kstate.search = search.value;
    conns.set(conns.rows, conns.total);
    cons.set(cons.rows, cons.total);
  });
  view.append(el('div', {class: 'toolbar'}, search),
    el('h2', {}, 'Connections ', conns.total_el), conns.node,
    el('h2', {}, 'Consumers ', cons.total_el,
       el('small', {text: ' (receives waiting as long polls; push subscribers)'})), cons.node);
  const load = () => ctx.act('connections', async () => {
    const [c, k] = await Promise.all([ctx.request('connection.list', {}), ctx.request('consumer.list', {})]);
    conns.set(c.connections, c.total);
    cons.set(k.consumers, k.total);
  });
  load();
  ctx.every(REFRESH_MS, load);
}

export default {route: 'connections', nav: 'Connections', mount};
