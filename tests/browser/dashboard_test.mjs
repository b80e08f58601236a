// dashboard_test.mjs: the dashboard in headless Chromium against a real mqhubd
// (started here on free loopback ports). Checks: the page loads with no console
// errors, a queue created with the CLI shows up, its backlog follows sends, the
// live tail shows a published message within a second, the blocks page shows
// the block a risk script (scripts/risk/merchant_spike.lua, loaded with the
// CLI as a topic hook) sets, with its reason and a ticking countdown. A page
// served from another origin (a tiny HTTP server on another loopback port)
// cannot open the hub's WebSocket (docs/security.md "Safe defaults"). On a
// hub with a root token the dashboard asks for a token, and a user's token
// shows only that user's queues.
// Screenshots go to $ARTIFACTS.
import {execFileSync} from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import {fileURLToPath} from 'node:url';

import {check, finish, freePort, openBrowser, startHub, stopHub} from './lib.mjs';

const {MQHUB_CLI, ARTIFACTS} = process.env;
const RISK_SCRIPT = fileURLToPath(new URL('../../scripts/risk/merchant_spike.lua', import.meta.url));

function cli(hub, ...args) {
  const auth = hub.token ? ['--token', hub.token] : [];
  return execFileSync(MQHUB_CLI, ['--server', hub.server, ...auth, ...args],
    {encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe']});
}

// A CLI command that must fail: its error output.
function cliFails(hub, ...args) {
  try {
    cli(hub, ...args);
  } catch (err) {
    return String(err.stderr || '') + String(err.stdout || '');
  }
  throw new Error(`mqhub ${args.join(' ')} succeeded`);
}

const hub = await startHub('browser');
const browser = await openBrowser(800);
const {context, page, consoleErrors} = browser;

try {
  await check('dashboard loads and connects', async () => {
    await page.goto(`${hub.base}/#overview`);
    await page.waitForSelector('#conn.up', {timeout: 5000});
    await page.waitForSelector('#cards .card', {timeout: 5000});
    await page.screenshot({path: path.join(ARTIFACTS, 'overview.png')});
  });

  await check('a queue created with the CLI shows up, backlog follows sends', async () => {
    cli(hub, 'queue', 'create', 'photos');
    await page.goto(`${hub.base}/#queues`);
    const cell = 'td.backlog[data-queue="photos"]';
    await page.waitForFunction((s) => document.querySelector(s)?.textContent === '0', cell, {timeout: 5000});
    for (let i = 0; i < 3; i++) cli(hub, 'send', 'photos', `photo-${i}`);
    await page.waitForFunction((s) => document.querySelector(s)?.textContent === '3', cell, {timeout: 5000});
    await page.screenshot({path: path.join(ARTIFACTS, 'queues.png')});
  });

  await check('live tail shows a published message within a second', async () => {
    cli(hub, 'topic', 'create', 'payments');
    await page.goto(`${hub.base}/#tail`);
    await page.waitForSelector('#tail-topic option[value="payments"]', {state: 'attached', timeout: 5000});
    await page.click('#tail-create');
    await page.waitForSelector('#tail-sub option[value="dashboard-tail"]', {state: 'attached', timeout: 5000});
    await page.selectOption('#tail-sub', 'dashboard-tail');
    await page.click('#tail-toggle');
    await page.waitForFunction(() => document.querySelector('#tail-toggle').textContent === 'Pause', null, {timeout: 5000});
    cli(hub, 'publish', 'payments', 'merchant 42 paid 9.99');
    const t0 = Date.now();
    await page.waitForFunction(() => [...document.querySelectorAll('#tail td.body')]
      .some((td) => td.textContent === 'merchant 42 paid 9.99'), null, {timeout: 1000});
    console.log(`  (shown ${Date.now() - t0} ms after publish returned)`);
    await page.screenshot({path: path.join(ARTIFACTS, 'tail.png')});
  });

  await check('topics page shows the topic, its subscription and its lag', async () => {
    await page.goto(`${hub.base}/#topics`);
    const row = page.locator('.topic[data-topic="payments"] tr', {has: page.locator('td:text-is("dashboard-tail")')});
    await row.locator('td:nth-child(2):text-is("push")').waitFor({timeout: 5000});
    await row.locator('td:nth-child(4)', {hasText: 'matched_total 1'}).waitFor({timeout: 5000});
    // an http subscription shows its URL (nothing listens there: no webhook plugin here)
    cli(hub, 'sub', 'create', 'payments', 'to-ledger', '--http', 'http://127.0.0.1:9/ledger', '--format', 'simplified');
    const http = page.locator('.topic[data-topic="payments"] tr', {has: page.locator('td:text-is("to-ledger")')});
    await http.locator('td:nth-child(2):text-is("http http://127.0.0.1:9/ledger (simplified)")').waitFor({timeout: 5000});
    await page.screenshot({path: path.join(ARTIFACTS, 'topics.png')});
  });

  await check('the blocks page shows a block created by a risk script', async () => {
    await page.goto(`${hub.base}/#blocks`);
    await page.waitForFunction(() => document.querySelector('#blocks-empty')?.textContent === 'No active blocks.' &&
      !document.querySelector('#blocks-empty').hidden, null, {timeout: 5000});
    cli(hub, 'script', 'load', 'merchant_spike', RISK_SCRIPT);
    cli(hub, 'topic', 'create', 'risk-alerts');
    cli(hub, 'topic', 'create', 'card-payments', '--hook', 'merchant_spike');
    cli(hub, 'publish', 'card-payments', 'small', '--attr', 'merchant=m-12', '--attr', 'amount=20');
    // 5000 in a minute from a merchant without history: the hook blocks the
    // merchant and refuses this payment.
    const refused = cliFails(hub, 'publish', 'card-payments', 'big', '--attr', 'merchant=m-77', '--attr', 'amount=5000');
    if (!/BLOCKED/.test(refused)) throw new Error(`the spike was not refused: ${refused}`);
    const row = 'tr.block[data-attr="merchant"][data-value="m-77"]';
    await page.waitForSelector(row, {timeout: 3000});
    const reason = await page.textContent(`${row} td.reason`);
    if (!/^volume 5000 in 60 s is over 5 x the usual rate/.test(reason)) throw new Error(`reason: ${reason}`);
    if (await page.locator('tr.block').count() !== 1) throw new Error('a block for a merchant without a spike');
    const first = await page.textContent(`${row} td.countdown`);
    if (!/^(10:00|9:5\d)$/.test(first)) throw new Error(`countdown of a 600 s block: ${first}`);
    await page.waitForFunction(([s, t]) => document.querySelector(s)?.textContent !== t,
      [`${row} td.countdown`, first], {timeout: 2500});
    console.log(`  (countdown ${first} -> ${await page.textContent(`${row} td.countdown`)})`);
    const again = cliFails(hub, 'publish', 'card-payments', 'more', '--attr', 'merchant=m-77', '--attr', 'amount=1');
    if (!/BLOCKED/.test(again)) throw new Error(`a blocked merchant's payment was accepted: ${again}`);
    await page.screenshot({path: path.join(ARTIFACTS, 'blocks.png')});
  });

  await check('a page from another origin cannot open the WebSocket', async () => {
    const port = await freePort();
    const wsUrl = hub.base.replace('http:', 'ws:') + '/';
    const html = `<!doctype html><title>waiting</title><script>
      const ws = new WebSocket(${JSON.stringify(wsUrl)}, 'mqhub.v1.json');
      ws.onopen = () => {
        ws.send(JSON.stringify({op: 'queue.create', id: 1, name: 'hijacked'}));
        document.title = 'opened';
      };
      ws.onclose = () => { if (document.title !== 'opened') document.title = 'refused'; };
    </script>`;
    const server = http.createServer((req, res) => {
      res.writeHead(200, {'content-type': 'text/html'});
      res.end(html);
    });
    await new Promise((r) => server.listen(port, '127.0.0.1', r));
    const other = await context.newPage(); // its console error is expected: not counted
    try {
      await other.goto(`http://127.0.0.1:${port}/`);
      await other.waitForFunction(() => document.title !== 'waiting', null, {timeout: 5000});
      const title = await other.title();
      if (title !== 'refused') throw new Error(`the foreign page's WebSocket: ${title}`);
    } finally {
      await other.close();
      server.close();
    }
    const err = cliFails(hub, 'queue', 'get', 'hijacked');
    if (!/NOT_FOUND/.test(err)) throw new Error(`queue get hijacked: ${err}`);
    const log = fs.readFileSync(path.join(hub.dir, 'mqhubd.log'), 'utf8');
    if (!log.includes(`Origin \\"http://127.0.0.1:${port}\\" is not in allowed_origins`))
      throw new Error(`no refusal in the log:\n${log}`);
  });

  await check('login: a user token shows only that user\'s queues', async () => {
    const root = 'root-token-for-the-browser-test';
    const secured = await startHub('browser', `auth { token = "${root}" }\n`);
    secured.token = root;
    const other = await context.newPage(); // UNAUTHORIZED before login is expected
    try {
      cli(secured, 'queue', 'create', 'alice.jobs');
      cli(secured, 'queue', 'create', 'secret.jobs');
      cli(secured, 'user', 'add', 'alice', '--user-token', 'alice-token-0123456789abcdef',
          '--grant', 'send:alice*');
      await other.goto(`${secured.base}/#queues`);
      await other.waitForSelector('#login:not([hidden])', {timeout: 5000});
      await other.fill('#token', 'alice-token-0123456789abcdef');
      await other.click('#login button[type=submit]');
      await other.waitForSelector('#conn.up', {timeout: 5000});
      await other.waitForSelector('td.backlog[data-queue="alice.jobs"]', {timeout: 5000});
      if (await other.locator('td.backlog[data-queue="secret.jobs"]').count() !== 0)
        throw new Error('a queue alice may not see is shown');
      const who = await other.textContent('#who');
      if (who !== 'user alice') throw new Error(`who: ${who}`);
      if (await other.isHidden('#restricted')) throw new Error('no restricted notice');
      if (await other.evaluate(() => document.cookie) !== '') throw new Error('a cookie was set');
      await other.screenshot({path: path.join(ARTIFACTS, 'login-user.png')});
    } finally {
      await other.close();
      await stopHub(secured);
    }
  });

  await check('no console errors', async () => {
    if (consoleErrors.length) throw new Error(consoleErrors.join('\n'));
  });
} finally {
  await browser.close();
  await stopHub(hub);
}
finish();
