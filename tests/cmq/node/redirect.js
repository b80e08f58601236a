'use strict';
// redirect.js: a `node --require` hook for the cmq-sdk test (cmq_node_sdk_test.py).
// cmq-sdk 2.1.0 hard-codes its endpoint (http://cmq-queue-gz.api.tencentyun.com,
// https://cmq-topic-gz.api.qcloud.com, ...), port 80 or 443. Inside this one test
// process, the connections that Node's HTTP(S) agents open to the names listed in
// CMQ_REDIRECT ("name=127.0.0.1:port,...") go to that loopback address instead:
// no DNS lookup, no /etc/hosts. The request itself is unchanged, so the Host
// header (which the SDK signs) and, for https, the TLS server name stay the
// SDK's own.
const http = require('http');
const https = require('https');

const targets = new Map();
for (const entry of (process.env.CMQ_REDIRECT || '').split(',').filter(Boolean)) {
  const [name, addr] = entry.split('=');
  const colon = addr.lastIndexOf(':');
  targets.set(name, { host: addr.slice(0, colon), port: Number(addr.slice(colon + 1)) });
}

for (const Agent of [http.Agent, https.Agent]) {
  const create = Agent.prototype.createConnection;
  Agent.prototype.createConnection = function redirected(options, cb) {
    const to = targets.get(options.host);
    if (to === undefined) {
      throw new Error(`cmq-sdk test: refusing a connection to ${options.host} (not redirected)`);
    }
    return create.call(this, { ...options, host: to.host, port: to.port }, cb);
  };
}
