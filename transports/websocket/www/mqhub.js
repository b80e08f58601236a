// mqhub.js — a small mqhub client over WebSocket (subprotocol mqhub.v1.json).
// An ES module for browsers and Node.js (Node >= 22 has a global WebSocket;
// older ones pass one in: new MqhubClient(url, {WebSocket: require('ws')})).
//
//   const c = new MqhubClient('ws://127.0.0.1:6280/', {token});
//   await c.connect();
//   await c.request('queue.create', {name: 'jobs'});
//   const sub = await c.subscribe('payments', 'tail', {credit: 10},
//                                 (msg) => console.log(msg.body));   // acked for you
//   c.on('stats', (s) => ...);  await c.request('stats.subscribe', {interval_ms: 1000});
//
// Requests carry ids and resolve with the response map (rejecting with an
// MqhubError carrying .code on {ok: false}). After a lost connection the client
// reconnects with exponential back-off (0.25 s doubling up to 10 s), says hello
// again and re-subscribes; requests in flight then reject with code
// "DISCONNECTED". Events: 'open', 'close', 'error', 'push' (every push),
// and one per push kind ('stats', 'messages', ...).

export class MqhubError extends Error {
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.code = code;
  }
}

export class MqhubClient {
  constructor(url, options = {}) {
    this.url = url;
    this.token = options.token || null;
    this.WebSocket = options.WebSocket || globalThis.WebSocket;
    this.reconnect = options.reconnect !== false;
    this.maxBackoff = options.maxBackoff || 10000;
    this.nextId = 1;
    this.pending = new Map();
    this.handlers = new Map();
    this.subscriptions = new Map();
    this.backoff = 250;
    this.closed = false;
    this.ws = null;
    this.info = null;
  }

  on(event, fn) {
    if (!this.handlers.has(event)) this.handlers.set(event, new Set());
    this.handlers.get(event).add(fn);
    return () => this.handlers.get(event).delete(fn);
  }

  emit(event, value) {
    for (const fn of this.handlers.get(event) || []) fn(value);
  }

  // Resolves once connected and hello was answered.
  connect() {
    this.closed = false;
    return new Promise((resolve, reject) => {
      const ws = new this.WebSocket(this.url, 'mqhub.v1.json');
      this.ws = ws;
      let opened = false;
      ws.onopen = async () => {
        opened = true;
        try {
          const hello = {version: 1, client: 'mqhub.js'};
          if (this.token) hello.token = this.token;
          this.info = await this.request('hello', hello);
          this.backoff = 250;
          await this.resubscribe();
          this.emit('open', this.info);
          resolve(this.info);
        } catch (err) {
          reject(err);
        }
      };
      ws.onmessage = (ev) => this.onMessage(ev.data);
      ws.onerror = () => this.emit('error', new MqhubError('DISCONNECTED', 'WebSocket error'));
      ws.onclose = (ev) => {
        this.failPending(ev.reason || `closed (${ev.code})`);
        this.emit('close', {code: ev.code, reason: ev.reason});
        if (!opened) reject(new MqhubError('DISCONNECTED', ev.reason || 'cannot connect'));
        if (!this.closed && this.reconnect) this.scheduleReconnect();
      };
    });
  }

  scheduleReconnect() {
    const delay = this.backoff;
    this.backoff = Math.min(this.backoff * 2, this.maxBackoff);
    setTimeout(() => {
      if (!this.closed) this.connect().catch(() => {});
    }, delay);
  }

  close() {
    this.closed = true;
    if (this.ws) this.ws.close(1000, 'bye');
  }

  failPending(reason) {
    for (const {reject} of this.pending.values()) reject(new MqhubError('DISCONNECTED', reason));
    this.pending.clear();
  }

  onMessage(data) {
    let msg;
    try {
      msg = JSON.parse(data);
    } catch (err) {
      this.emit('error', err);
      return;
    }
    if (msg.push !== undefined) {
      if (msg.push === 'messages') this.deliver(msg);
      this.emit('push', msg);
      this.emit(msg.push, msg);
      return;
    }
    const p = this.pending.get(msg.id);
    if (!p) {
      if (msg.ok === false) this.emit('error', new MqhubError(msg.code, msg.error));
      return;
    }
    this.pending.delete(msg.id);
    if (msg.ok) p.resolve(msg);
    else p.reject(Object.assign(new MqhubError(msg.code, msg.error), {response: msg}));
  }

  request(op, args = {}) {
    return new Promise((resolve, reject) => {
      if (!this.ws || this.ws.readyState !== 1) {
        reject(new MqhubError('DISCONNECTED', 'not connected'));
        return;
      }
      const id = this.nextId++;
      this.pending.set(id, {resolve, reject});
      this.ws.send(JSON.stringify({...args, op, id}));
    });
  }

  // Push subscription: @onMessage(msg) per message; it is acked (and one
  // credit granted back) when the handler returns, or when its promise resolves.
  async subscribe(topic, subscription, {credit = 10} = {}, onMessage = () => {}) {
    const key = `${topic}\u0000${subscription}`;
    this.subscriptions.set(key, {topic, subscription, credit, onMessage});
    await this.request('subscribe', {topic, subscription, credit});
    return {unsubscribe: () => this.unsubscribe(topic, subscription)};
  }

  async unsubscribe(topic, subscription) {
    this.subscriptions.delete(`${topic}\u0000${subscription}`);
    return this.request('unsubscribe', {topic, subscription});
  }

  async resubscribe() {
    for (const s of this.subscriptions.values())
      await this.request('subscribe', {topic: s.topic, subscription: s.subscription,
                                       credit: s.credit});
  }

  async deliver(push) {
    const s = this.subscriptions.get(`${push.topic}\u0000${push.subscription}`);
    if (!s) return;
    for (const m of push.msgs || []) {
      try {
        await s.onMessage(m, push);
        await this.request('ack', {topic: push.topic, subscription: push.subscription,
                                   seqs: [m.seq]});
        await this.request('credit', {topic: push.topic, subscription: push.subscription,
                                      n: 1});
      } catch (err) {
        this.emit('error', err);
      }
    }
  }
}

// Decode a message body: the string, or bytes from body_base64.
export function bodyText(msg) {
  if (typeof msg.body === 'string') return msg.body;
  if (typeof msg.body_base64 === 'string') return `(binary, ${atob(msg.body_base64).length} bytes)`;
  return '';
}
