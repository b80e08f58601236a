// pages/nodes.js — #/nodes: every node of the cluster, one row each: id, role
// (leader/follower, and voter/standby/spare in the raft configuration),
// health, replication lag, memory, disk free, data size, uptime, version.
// Membership, the leader and each node's match index come from cluster.status
// (in the stats snapshot: the leader's view when the page follows it,
// follow.js). Each node's own figures come from that node: a client per node
// to its dashboard (its `http` address in cluster.status) asks node.info every
// POLL_MS; a node that does not answer within TIMEOUT_MS, or whose connection
// is down, is "unreachable" (a killed node shows so within a few seconds).
// Lag: the leader's commit index less the node's match index (entries it has
// not stored yet); only the leader knows match indexes. A node behind whose
// match index has not moved for STALL_MS is "stalled" — the raft view, the
// only one for a node without a dashboard (it needs writes to show).
import {MqhubClient} from '../mqhub.js';
import {formatBytes, formatDuration, formatNumber} from '../format.js';

const POLL_MS = 1000;
const TIMEOUT_MS = 2500;
const HEADS = ['node', 'role', 'health', 'lag', 'memory (RSS)', 'disk free', 'data size', 'uptime',
               'version', 'dashboard', 'raft address'];

const STALL_MS = 5000;

// http address -> {client, info, at (ms of the last answer), error}
const peers = new Map();
// node id -> {match, since}: when its match index last moved (or caught up),
// the raft view of a node without a dashboard.
const progress = new Map();

// A node the leader sees behind the commit index with no progress for
// STALL_MS: text saying so, else null.
function stalled(n, lag) {
  const now = Date.now();
  const p = progress.get(n.id);
  if (!p || p.match !== n.match_index || !lag) {
    progress.set(n.id, {match: n.match_index, since: now});
    return null;
  }
  return now - p.since >= STALL_MS ? `no raft progress for ${formatDuration(now - p.since)}` : null;
}

function peer(addr) {
  let p = peers.get(addr);
  if (p) return p;
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const client = new MqhubClient(`${scheme}://${addr}/`, {token: sessionStorage.getItem('mqhub-token'),
                                                          maxBackoff: 2000});
  p = {client, info: null, at: 0, error: 'connecting…', up: false};
  client.on('open', () => { p.up = true; });
  client.on('close', (ev) => { p.up = false; p.error = ev.reason || `connection closed (${ev.code})`; });
  client.connect().catch((err) => { p.error = err.message; });
  peers.set(addr, p);
  return p;
}

function ask(p) {
  if (!p.up) return;
  const timer = new Promise((_, reject) => setTimeout(() => reject(new Error('no answer')), TIMEOUT_MS));
  Promise.race([p.client.request('node.info', {}), timer]).then((info) => {
    p.info = info;
    p.at = Date.now();
    p.error = null;
  }, (err) => {
    // Refused: the node answered (it is up), this identity may not see its
    // figures (node.info needs monitor on *).
    if (err.code === 'FORBIDDEN') Object.assign(p, {info: null, at: Date.now(), forbidden: true});
    p.error = err.message;
  });
}

// Health of node @n: from its own dashboard when it has one, and from raft
// (the leader's match index for it not moving while it is behind).
function health(n, p, lag) {
  const stall = stalled(n, lag);
  if (p && p.at && Date.now() - p.at <= TIMEOUT_MS + POLL_MS)
    return stall ? {state: 'stalled', text: `up, but ${stall}`}
      : {state: 'up', text: p.forbidden ? 'up (its figures need the monitor grant on *)' : 'up'};
  if (p && !p.at && p.error === 'connecting…') return {state: 'unknown', text: 'connecting…'};
  if (p) return {state: 'unreachable', text: `unreachable (${p.error || 'no answer'})`};
  if (stall) return {state: 'stalled', text: `unreachable? ${stall} (no dashboard: no http address)`};
  return {state: 'unknown', text: 'no dashboard (no http address)'};
}

function row(el, n, cl) {
  const p = n.http ? peer(n.http) : null;
  const lag = n.match_index === null || n.match_index === undefined || cl.commit_index === undefined
    ? null : Math.max(0, cl.commit_index - n.match_index);
  const h = health(n, p, lag);
  const info = p && p.info && Date.now() - p.at <= TIMEOUT_MS + POLL_MS ? p.info : null;
  const bad = h.state === 'unreachable' || h.state === 'stalled';
  const raftRole = info ? info.role : (n.leader ? 'leader' : bad ? '?' : 'follower');
  const tr = el('tr', {'data-node': String(n.id), 'data-health': h.state, 'data-role': raftRole,
                       class: bad ? 'down' : null},
    el('td', {text: n.http && n.http === location.host ? `${n.id} (this page)` : String(n.id)}),
    el('td', {class: 'role', text: `${n.leader ? 'leader' : raftRole} · ${n.role || '?'}`}),
    el('td', {class: `health ${h.state === 'up' ? 'up' : bad ? 'down' : ''}`, text: h.text}),
    el('td', {class: 'num', text: lag === null ? '–' : `${formatNumber(lag)} entries`}),
    el('td', {class: 'num', text: info ? formatBytes(info.rss_bytes) : '–'}),
    el('td', {class: 'num', text: info ? formatBytes(info.disk_free_bytes) : '–'}),
    el('td', {class: 'num', text: info ? formatBytes(info.data_bytes) : '–'}),
    el('td', {class: 'num', text: info ? formatDuration(info.uptime_ms) : '–'}),
    el('td', {text: info ? info.version : '–'}),
    el('td', {}, n.http ? el('a', {href: `${location.protocol}//${n.http}/`, text: n.http}) : '–'),
    el('td', {text: n.address || ''}));
  return tr;
}

function render(ctx) {
  const body = document.querySelector('#node-list tbody');
  const cl = (ctx.last && ctx.last.cluster) || {};
  if (!body) return;
  const nodes = cl.nodes || [];
  body.replaceChildren(...nodes.map((n) => row(ctx.el, n, cl)));
  document.getElementById('node-summary').textContent = nodes.length
    ? `${nodes.length} node${nodes.length > 1 ? 's' : ''}; leader: ${cl.leader_id ? `node ${cl.leader_id}` : 'none known'}; ` +
      `term ${cl.term ?? '–'}, commit ${formatNumber(cl.commit_index)}`
    : 'cluster.status lists no node yet';
}

function mount(view, ctx) {
  const {el} = ctx;
  view.append(el('h2', {}, 'Nodes ', el('small', {id: 'node-summary'})),
    el('div', {class: 'scroll'}, el('table', {id: 'node-list'},
      el('thead', {}, el('tr', {}, ...HEADS.map((h) => el('th', {text: h})))), el('tbody'))),
    el('p', {class: 'muted', text: 'Each node\'s figures come from its own dashboard (node.info); ' +
      'lag is the leader\'s commit index less the node\'s match index.'}));
  const poll = () => {
    for (const n of ((ctx.last && ctx.last.cluster) || {}).nodes || []) if (n.http) ask(peer(n.http));
    render(ctx);
  };
  poll();
  ctx.every(POLL_MS, poll);
}

function leave() {
  for (const p of peers.values()) p.client.close();
  peers.clear();
  progress.clear();
}

export default {route: 'nodes', nav: 'Nodes', mount, stats: (snap, ctx) => render(ctx), leave};
