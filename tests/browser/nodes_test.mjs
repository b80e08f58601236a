// nodes_test.mjs: the Nodes, Overview and Connections pages and "follow the
// leader" in headless Chromium against a real 3-node cluster (started here on
// free loopback ports; each node has its dashboard and its `http` address in
// the peers table). Checks:
// - after 20 s of load, the overview opened on the leader has full charts at
//   once (the hub's history rings, stats.history), every rate chart non-empty;
// - the nodes page lists 3 nodes, the leader marked, every node up with its
//   own memory, data size, uptime and version (node.info from that node);
// - a follower's dashboard shows the leader's data (the queues made through
//   the leader) and says so in the header;
// - the connections page lists the test's own consumers and filters by search;
// - leadership moved (cluster.transfer): a follower's page follows the new
//   leader within seconds;
// - kill -9 of a follower: its row says "unreachable" within a few seconds;
// - no console errors.
// Screenshots go to $ARTIFACTS (nodes.png, overview-history.png,
// follower.png, nodes-down.png, nodes-connections.png).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import {check, finish, freePort, openBrowser, sleep, spawnHub} from './lib.mjs';

const {ARTIFACTS} = process.env;
const LOAD_SECONDS = 20;

async function startCluster() {
  const root = fs.mkdtempSync(path.join(process.env.TMPDIR || os.tmpdir(), 'mqhub-nodes-'));
  const nodes = [];
  for (let id = 1; id <= 3; id++)
    nodes.push({id, tcp: await freePort(), raft: await freePort(), ws: await freePort()});
  for (const n of nodes) {
    n.dir = path.join(root, `n${n.id}`);
    fs.mkdirSync(n.dir);
    fs.writeFileSync(path.join(n.dir, 'cluster.secret'), 'nodes-test-cluster-secret-0123456789\n', {mode: 0o600});
    const peers = nodes.filter((p) => p !== n).map((p) =>
      `  [${p.id}] = { raft = "127.0.0.1:${p.raft}", client = "127.0.0.1:${p.tcp}", http = "127.0.0.1:${p.ws}" },`);
    fs.writeFileSync(path.join(n.dir, 'config.lua'),
      `node { id = ${n.id}, data = "${n.dir}/data", raft = "127.0.0.1:${n.raft}", ` +
      `client = "127.0.0.1:${n.tcp}", cluster_secret_file = "cluster.secret" }\n` +
      `transport "tcp" { listen = "127.0.0.1:${n.tcp}" }\n` +
      `transport "websocket" { listen = "127.0.0.1:${n.ws}", dashboard = true }\n` +
      `peers {\n${peers.join('\n')}\n}\nlog { level = "warn" }\n`);
    n.proc = spawnHub(n.dir, path.join(n.dir, 'config.lua'));
    n.base = `http://127.0.0.1:${n.ws}`;
    n.server = `127.0.0.1:${n.tcp}`;
  }
  for (let i = 0; i < 300; i++) { // ready: every node knows the leader
    const ready = await Promise.all(nodes.map((n) =>
      fetch(`${n.base}/readyz`).then((r) => r.status === 200, () => false)));
    if (ready.every(Boolean)) return {root, nodes};
    await sleep(100);
  }
  throw new Error(`cluster not ready: ${nodes.map((n) =>
    fs.readFileSync(path.join(n.dir, 'mqhubd.log'), 'utf8')).join('\n---\n')}`);
}

// The leader: /readyz of any node names its client address.
async function leaderOf(cluster) {
  const text = await (await fetch(`${cluster.nodes[0].base}/readyz`)).text();
  const m = /leader (\S+),/.exec(text);
  const n = m && cluster.nodes.find((x) => x.server === m[1]);
  if (!n) throw new Error(`no leader in /readyz: ${text}`);
  return n;
}

// Load through the leader for @seconds, from a tab of its own (the page's
// mqhub.js client; Node 20 has no WebSocket): sends, receives, deletes,
// publishes pushed to a consumer that acks, redeliveries and dead letters (a
// queue whose receives time out). The tab stays open: its push consumer is
// listed on the connections page.
async function load(tab, leader, seconds) {
  await tab.goto(`${leader.base}/mqhub.js`);
  return tab.evaluate(async (seconds) => {
    const {MqhubClient} = await import('/mqhub.js');
    const c = new MqhubClient(`ws://${location.host}/`, {reconnect: false});
    window.loadClient = c;
    await c.connect();
    await c.request('queue.create', {name: 'orders'});
    await c.request('queue.create', {name: 'orders.dlq'});
    await c.request('queue.create', {name: 'flaky', attrs: {visibility_timeout: 1,
      dead_letter: {queue: 'orders.dlq', max_receives: 2}}});
    await c.request('topic.create', {name: 'events'});
    await c.request('subscription.create', {topic: 'events', name: 'audit', endpoint: {push: true}});
    await c.subscribe('events', 'audit', {credit: 50}, () => {});
    const end = Date.now() + seconds * 1000;
    let i = 0;
    while (Date.now() < end) {
      for (let k = 0; k < 5; k++) {
        await c.request('send', {queue: 'orders', body: `order ${i++}`});
        await c.request('publish', {topic: 'events', body: `event ${i}`});
      }
      const r = await c.request('receive', {queue: 'orders', max: 4});
      if (r.msgs.length) await c.request('delete', {queue: 'orders', receipts: r.msgs.map((m) => m.receipt)});
      await c.request('send', {queue: 'flaky', body: `flaky ${i}`});
      await c.request('receive', {queue: 'flaky', max: 10}); // never deleted: redelivered, then dead-lettered
      await new Promise((r) => setTimeout(r, 200));
    }
    return i;
  }, seconds);
}

const cluster = await startCluster();
const browser = await openBrowser(900);
const {context, page, consoleErrors} = browser;
const loader = await context.newPage();

try {
  const leader = await leaderOf(cluster);
  const followers = cluster.nodes.filter((n) => n !== leader);
  console.log(`leader: node ${leader.id}; load for ${LOAD_SECONDS} s`);
  const sent = await load(loader, leader, LOAD_SECONDS);
  console.log(`     ${sent} sends and publishes`);

  await check('overview charts are full when the page opens after 20 s of load', async () => {
    const t0 = Date.now();
    await page.goto(`${leader.base}/#/overview`);
    await page.waitForFunction(() => Number(document.getElementById('chart-queues')?.dataset.points) > 0,
      null, {timeout: 5000});
    const points = await page.evaluate(() => Object.fromEntries(['chart-queues', 'chart-topics', 'chart-trouble',
      'chart-gauges'].map((id) => [id, Number(document.getElementById(id).dataset.points)])));
    console.log(`     charts drawn ${Date.now() - t0} ms after opening: points per chart`, points);
    // 20 s of per-second points: well over 10 per series at once.
    for (const [id, n] of Object.entries(points))
      if (!(n >= 15)) throw new Error(`${id}: ${n} points right after opening`);
    await page.screenshot({path: path.join(ARTIFACTS, 'overview-history.png')});
    await page.click('.span-switch button[data-span="1 h"]'); // per-minute points: this minute's at least
    await page.waitForFunction(() => Number(document.getElementById('chart-gauges').dataset.points) >= 4,
      null, {timeout: 3000});
    await page.click('.span-switch button[data-span="10 min"]');
  });

  await check('nodes page: 3 nodes, the leader marked, each node\'s own figures', async () => {
    await page.goto(`${leader.base}/#/nodes`);
    await page.waitForFunction(() => document.querySelectorAll('#node-list tbody tr[data-health="up"]').length === 3,
      null, {timeout: 10000});
    const rows = await page.$$eval('#node-list tbody tr', (trs) => trs.map((tr) =>
      [...tr.children].map((td) => td.textContent)));
    console.log('     rows:', JSON.stringify(rows));
    if (rows.length !== 3) throw new Error(`${rows.length} rows`);
    const leaders = rows.filter((r) => r[1].startsWith('leader'));
    if (leaders.length !== 1 || leaders[0][0] !== `${leader.id} (this page)`)
      throw new Error(`leader not marked once on node ${leader.id}: ${JSON.stringify(leaders)}`);
    for (const r of rows) {
      if (!/voter/.test(r[1])) throw new Error(`no voter role: ${r}`);
      if (!/(KiB|MiB|GiB)$/.test(r[4]) || !/(B|KiB|MiB|GiB)$/.test(r[6])) throw new Error(`no memory/data size: ${r}`);
      if (r[7] === '–' || r[8] === '–') throw new Error(`no uptime/version: ${r}`);
    }
    await page.screenshot({path: path.join(ARTIFACTS, 'nodes.png')});
  });

  await check('a follower\'s dashboard shows the leader\'s data and says so', async () => {
    const f = followers[0];
    await page.goto(`${f.base}/#/overview`);
    await page.waitForFunction((id) => document.getElementById('data-from')?.textContent
      .includes(`data from leader node ${id}`), leader.id, {timeout: 10000});
    const note = await page.textContent('#data-from');
    if (!note.startsWith(`node ${f.id} (follower)`)) throw new Error(`header: ${note}`);
    await page.waitForFunction(() => [...document.querySelectorAll('#cards .card')].some((c) =>
      c.textContent.startsWith('queues') && Number(c.querySelector('.value').textContent) >= 3), null, {timeout: 10000});
    await page.waitForFunction(() => Number(document.getElementById('chart-queues')?.dataset.points) >= 15,
      null, {timeout: 5000});
    await page.goto(`${f.base}/#/queues`);
    await page.waitForFunction(() => document.body.textContent.includes('orders.dlq'), null, {timeout: 10000});
    await page.screenshot({path: path.join(ARTIFACTS, 'follower.png')});
  });

  await check('connections page: the consumers, search filters', async () => {
    await page.goto(`${leader.base}/#/connections`);
    await page.waitForFunction(() => document.querySelector('#consumer-list tbody')?.textContent.includes('events/audit'),
      null, {timeout: 10000});
    await page.fill('#connection-search', 'events/audit');
    await page.waitForFunction(() => {
      const rows = [...document.querySelectorAll('#consumer-list tbody tr')];
      return rows.length >= 1 && rows.every((r) => r.textContent.includes('events/audit'));
    }, null, {timeout: 5000});
    await page.click('#connection-list th[data-col="6"]'); // bytes in, largest first
    await page.fill('#connection-search', '');
    await page.screenshot({path: path.join(ARTIFACTS, 'nodes-connections.png')});
  });

  let data = leader; // the leader, once leadership moved
  await check('leadership moves: a follower\'s page follows the new leader', async () => {
    const [f, next] = followers;
    await page.goto(`${f.base}/#/overview`);
    await page.waitForFunction((id) => document.getElementById('data-from')?.textContent
      .includes(`data from leader node ${id}`), leader.id, {timeout: 10000});
    const t0 = Date.now();
    const r = await loader.evaluate((id) => window.loadClient.request('cluster.transfer', {node: id}), next.id);
    if (!r.ok) throw new Error(JSON.stringify(r));
    await page.waitForFunction((id) => document.getElementById('data-from')?.textContent
      .includes(`data from leader node ${id}`), next.id, {timeout: 15000});
    console.log(`     leadership moved to node ${next.id}; the page followed ${Date.now() - t0} ms after the transfer`);
    await page.waitForFunction(() => Number(document.getElementById('chart-queues')?.dataset.points) > 0,
      null, {timeout: 5000});
    data = next;
  });

  await check('kill -9 of a follower: unreachable within a few seconds', async () => {
    const victim = cluster.nodes.find((n) => n !== data && n.proc.signalCode === null);
    await page.goto(`${data.base}/#/nodes`);
    await page.waitForFunction(() => document.querySelectorAll('#node-list tbody tr[data-health="up"]').length === 3,
      null, {timeout: 10000});
    const t0 = Date.now();
    victim.proc.kill('SIGKILL');
    await page.waitForFunction((id) => document.querySelector(`#node-list tr[data-node="${id}"]`)
      ?.dataset.health === 'unreachable', victim.id, {timeout: 8000});
    console.log(`     node ${victim.id} shown unreachable ${Date.now() - t0} ms after kill -9`);
    const up = await page.$$eval('#node-list tbody tr[data-health="up"]', (t) => t.length);
    if (up !== 2) throw new Error(`${up} nodes up after the kill`);
    await page.screenshot({path: path.join(ARTIFACTS, 'nodes-down.png')});
  });

  await check('no console errors', async () => {
    // The killed node's dashboard refuses connections: the browser logs each
    // failed WebSocket to it; nothing else may be an error.
    const victims = cluster.nodes.filter((n) => n.proc.signalCode !== null);
    const other = consoleErrors.filter((e) => !victims.some((v) => e.includes(`127.0.0.1:${v.ws}`)));
    if (other.length) throw new Error(other.join('\n'));
  });
} finally {
  await browser.close();
  // A process killed by a signal has signalCode set and exitCode null.
  const running = cluster.nodes.filter((n) => n.proc.exitCode === null && n.proc.signalCode === null);
  const exited = running.map((n) => new Promise((r) => n.proc.on('exit', r)));
  for (const n of running) n.proc.kill('SIGTERM');
  await Promise.all(exited);
  fs.rmSync(cluster.root, {recursive: true, force: true});
}
finish();
