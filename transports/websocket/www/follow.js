// follow.js — the dashboard follows the leader (docs/dashboard.md "Any node
// of a cluster"). Reads, stats and pushes are the leader's (a follower's hub
// answers NOT_LEADER and its stats would show an empty hub), so a page served
// by a follower takes its data from the leader's own dashboard: the home
// client (to the node that served the page) asks cluster.status, finds the
// node with leader: true and its `http` address, and opens a second client
// there; every request and the stats subscription go to it. The header says
// where the data come from ("node 2 (follower); data from leader node 1").
// Without a leader, or a leader without a dashboard (no `http` in the peers
// table), the data stay this node's and the header says why.
// Start from Follower.follow(): app.js calls it after the home hello, and it
// is called again when the data client's snapshots say it no longer leads or
// its connection drops (at most every RECHECK_MS).
// The leader's dashboard accepts this page's origin because the page comes
// from a member of the same cluster (ws.c: member dashboards are allowed
// origins).
import {MqhubClient} from './mqhub.js';

const RECHECK_MS = 3000;

export class Follower {
  // @home: the connected MqhubClient of this page's server. @onStats(snap) for
  // every snapshot of the data client; @onSwitch(client) when the data client
  // changes; @onNote(text, warn) for the header.
  constructor(home, {token, onStats, onSwitch, onNote}) {
    Object.assign(this, {home, token, onStats, onSwitch, onNote});
    this.data = home;
    this.checkedAt = 0;
    this.busy = null;
    home.on('stats', (snap) => this.snapshot(home, snap));
  }

  // Choose the data client and subscribe it to stats; resolves with the
  // stats.subscribe answer ({interval_ms, restricted}).
  follow() {
    if (!this.busy) this.busy = this.choose().finally(() => { this.busy = null; });
    return this.busy;
  }

  async choose() {
    this.checkedAt = Date.now();
    let st;
    try {
      st = await this.home.request('cluster.status', {});
    } catch (err) {
      return this.use(this.home, `this node (cluster.status: ${err.message})`, true);
    }
    const self = `node ${st.node} (${st.role})`;
    if (st.role === 'leader') return this.use(this.home, self, false);
    const leader = (st.nodes || []).find((n) => n.leader);
    if (!leader) return this.use(this.home, `${self}; no leader known: waiting for quorum`, true);
    if (!leader.http) {
      return this.use(this.home, `${self}; the leader, node ${leader.id}, has no dashboard ` +
                      '(no http address): showing this node only', true);
    }
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${leader.http}/`;
    const note = `${self}; data from leader node ${leader.id}`;
    if (this.data !== this.home && this.data.url === url) return this.use(this.data, note, false);
    const c = new MqhubClient(url, {token: this.token, maxBackoff: RECHECK_MS});
    try {
      await c.connect();
    } catch (err) {
      c.close();
      return this.use(this.home, `${self}; leader node ${leader.id}'s dashboard ` +
                      `${leader.http} does not answer (${err.message})`, true);
    }
    c.on('stats', (snap) => this.snapshot(c, snap));
    c.on('close', () => { if (c === this.data) this.recheck(); });
    c.on('open', () => { // reconnected by itself: stats again
      if (c === this.data) c.request('stats.subscribe', {interval_ms: 1000}).catch(() => {});
    });
    return this.use(c, note, false);
  }

  async use(client, note, warn) {
    const old = this.data;
    this.data = client;
    if (old !== client) {
      if (old !== this.home) old.close();
      else old.request('stats.unsubscribe', {}).catch(() => {});
      this.onSwitch(client);
    }
    this.onNote(note, warn);
    return client.request('stats.subscribe', {interval_ms: 1000});
  }

  // A snapshot from @client: shown when it is the data client; one that says
  // its node is not the leader (or cannot reach it) makes us look again.
  snapshot(client, snap) {
    if (client !== this.data) return;
    this.onStats(snap);
    const role = snap.cluster && snap.cluster.role;
    if (role !== 'leader') this.recheck();
  }

  recheck() {
    if (Date.now() - this.checkedAt < RECHECK_MS) return;
    this.follow().catch((err) => this.onNote(`cannot follow the leader: ${err.message}`, true));
  }
}
