// dashboard_test.mjs: the dashboard in headless Chromium against a real mqhubd
// (started here on free loopback ports). Checks: the page loads with no console
// errors, a queue created with the CLI shows up, its backlog follows sends, the
// live tail shows a published message within a second (skipped with a message
// while the server has no topics). Screenshots go to $ARTIFACTS.
import {createRequire} from 'node:module';
import {execFileSync, spawn} from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

const require = createRequire(path.join(process.env.NODE_PATH, 'x.js'));
const {chromium} = require('playwright-core');
const {MQHUBD, MQHUB_CLI, CHROMIUM, ARTIFACTS} = process.env;
let passed = 0, failed = 0, skipped = 0;

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const {port} = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function startHub() {
  const dir = fs.mkdtempSync(path.join(process.env.TMPDIR || os.tmpdir(), 'mqhub-browser-'));
  const [tcp, raft, ws] = [await freePort(), await freePort(), await freePort()];
  fs.writeFileSync(path.join(dir, 'config.lua'),
    `node { id = 1, data = "${dir}/data", raft = "127.0.0.1:${raft}" }\n` +
    `transport "tcp" { listen = "127.0.0.1:${tcp}" }\n` +
    `transport "websocket" { listen = "127.0.0.1:${ws}", dashboard = true }\n` +
    `log { level = "warn" }\n`);
  const log = fs.openSync(path.join(dir, 'mqhubd.log'), 'w');
  const proc = spawn(MQHUBD, ['--config', path.join(dir, 'config.lua')], {stdio: ['ignore', log, log]});
  const base = `http://127.0.0.1:${ws}`;
  for (let i = 0; i < 150; i++) {
    try {
      if ((await fetch(`${base}/readyz`)).status === 200) return {dir, proc, base, server: `127.0.0.1:${tcp}`};
    } catch { /* not listening yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`mqhubd not ready: ${fs.readFileSync(path.join(dir, 'mqhubd.log'), 'utf8')}`);
}

function cli(hub, ...args) {
  return execFileSync(MQHUB_CLI, ['--server', hub.server, ...args], {encoding: 'utf8'});
}

async function check(name, fn) {
  try {
    const r = await fn();
    if (r === 'skip') skipped++; else passed++;
    console.log(`${r === 'skip' ? 'SKIP' : 'ok  '} ${name}`);
  } catch (err) {
    failed++;
    console.log(`FAIL ${name}: ${err.stack || err}`);
  }
}

const hub = await startHub();
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'mqhub-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: CHROMIUM, headless: true, viewport: {width: 1280, height: 800},
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const page = context.pages()[0] || await context.newPage();
const consoleErrors = [];
page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
page.on('pageerror', (e) => consoleErrors.push(String(e)));

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
    try {
      cli(hub, 'topic', 'create', 'payments');
    } catch (err) {
      console.log(`  (topics not available: ${String(err.stderr || err).trim()})`);
      return 'skip';
    }
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

  await check('topics and blocks pages render', async () => {
    await page.goto(`${hub.base}/#topics`);
    await page.waitForTimeout(1500);
    await page.screenshot({path: path.join(ARTIFACTS, 'topics.png')});
    await page.goto(`${hub.base}/#blocks`);
    await page.waitForTimeout(1500);
    const empty = await page.textContent('#blocks-empty');
    if (!empty) throw new Error('blocks page shows neither blocks nor an empty state');
    await page.screenshot({path: path.join(ARTIFACTS, 'blocks.png')});
  });

  await check('no console errors', async () => {
    if (consoleErrors.length) throw new Error(consoleErrors.join('\n'));
  });
} finally {
  await context.close();
  hub.proc.kill('SIGTERM');
  await new Promise((r) => hub.proc.on('exit', r));
  fs.rmSync(hub.dir, {recursive: true, force: true});
  fs.rmSync(profile, {recursive: true, force: true});
}
console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(failed ? 1 : 0);
