// follow_test.mjs: www/follow.js's choices in Node.js, without a browser or a
// daemon: the home client is a stand-in answering cluster.status as a node of
// each case would, and WebSocket a stand-in that is refused (the leader's
// dashboard down). Cases: this node leads (its own data); a follower whose
// leader has no http address, a follower without a known leader, a follower
// whose leader's dashboard does not answer (this node's data, the header says
// why, as a warning); a snapshot saying its node no longer leads makes the
// page look again. The live cases (a real leader's dashboard, a leadership
// transfer) are in nodes_test.mjs.
import assert from 'node:assert/strict';

globalThis.location = {protocol: 'http:', host: '127.0.0.1:6282'};
globalThis.WebSocket = class { // every connection refused
  constructor() { setTimeout(() => this.onclose({code: 1006, reason: 'connection refused'}), 0); }
  close() {}
};
const {Follower} = await import(new URL('../../transports/websocket/www/follow.js', import.meta.url));

// A home client answering cluster.status with @status; it records requests.
function home(status) {
  const h = {asked: [], handlers: new Map(),
    on(ev, fn) { h.handlers.set(ev, fn); },
    async request(op) {
      h.asked.push(op);
      if (op === 'cluster.status') return status;
      return {ok: true, interval_ms: 1000};
    }};
  return h;
}

async function follow(status) {
  const h = home(status);
  const seen = {notes: [], switched: null};
  const f = new Follower(h, {token: null, onStats: () => {},
    onSwitch: (c) => { seen.switched = c; },
    onNote: (text, warn) => seen.notes.push({text, warn})});
  await f.follow();
  return {h, f, seen, note: seen.notes.at(-1)};
}

const cases = [
  ['this node leads: its own data', {node: 1, role: 'leader', nodes: [{id: 1, leader: true, http: '127.0.0.1:6281'}]},
    (r) => {
      assert.equal(r.note.text, 'node 1 (leader)');
      assert.equal(r.note.warn, false);
      assert.equal(r.f.data, r.h);
      assert.deepEqual(r.h.asked, ['cluster.status', 'stats.subscribe']);
    }],
  ['the leader has no dashboard', {node: 2, role: 'follower', nodes: [{id: 1, leader: true}, {id: 2, leader: false}]},
    (r) => {
      assert.match(r.note.text, /^node 2 \(follower\); the leader, node 1, has no dashboard/);
      assert.equal(r.note.warn, true);
      assert.equal(r.f.data, r.h);
    }],
  ['no leader known', {node: 3, role: 'follower', nodes: [{id: 1, leader: false}, {id: 3, leader: false}]},
    (r) => {
      assert.equal(r.note.text, 'node 3 (follower); no leader known: waiting for quorum');
      assert.equal(r.note.warn, true);
    }],
  ['the leader\'s dashboard does not answer', {node: 2, role: 'follower',
    nodes: [{id: 1, leader: true, http: '127.0.0.1:1'}]},
    (r) => {
      assert.match(r.note.text, /^node 2 \(follower\); leader node 1's dashboard 127\.0\.0\.1:1 does not answer/);
      assert.equal(r.note.warn, true);
      assert.equal(r.f.data, r.h);
      assert.equal(r.seen.switched, null);
    }],
];

let failed = 0;
for (const [name, status, expect] of cases) {
  try {
    expect(await follow(status));
    console.log(`ok   ${name}`);
  } catch (err) {
    failed++;
    console.log(`FAIL ${name}: ${err.stack || err}`);
  }
}

// A snapshot of the data client saying its node follows now: looked again,
// but not more than once per RECHECK_MS however many snapshots come.
try {
  const r = await follow({node: 1, role: 'leader', nodes: [{id: 1, leader: true}]});
  r.f.checkedAt = 0;
  const before = r.h.asked.filter((op) => op === 'cluster.status').length;
  for (let i = 0; i < 5; i++) r.h.handlers.get('stats')({cluster: {role: 'follower'}});
  await new Promise((res) => setTimeout(res, 10));
  const after = r.h.asked.filter((op) => op === 'cluster.status').length;
  assert.equal(after - before, 1);
  console.log('ok   a snapshot of a node that no longer leads: looked again once');
} catch (err) {
  failed++;
  console.log(`FAIL recheck: ${err.stack || err}`);
}
console.log(failed ? `${failed} failed` : 'all passed');
process.exit(failed ? 1 : 0);
