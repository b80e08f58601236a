// lib.mjs: what the browser tests share. Start from startHub() (a
// single-node mqhubd with its dashboard on free loopback ports, ready when
// its /readyz says so), openBrowser() (Debian's chromium, headless, in a
// throwaway profile, collecting console errors) and check()/expect()/finish()
// (each check counted; the exit code says whether any failed). The paths
// come from run.sh: MQHUBD, CHROMIUM, NODE_PATH.
import {createRequire} from 'node:module';
import {spawn} from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

const require = createRequire(path.join(process.env.NODE_PATH, 'x.js'));
const {chromium} = require('playwright-core');
const {MQHUBD, CHROMIUM} = process.env;
let passed = 0, failed = 0;

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// A loopback port nothing listens on right now.
export function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const {port} = s.address();
      s.close(() => resolve(port));
    });
  });
}

// mqhubd @config (a path) in @dir, its output in dir/mqhubd.log.
export function spawnHub(dir, config) {
  const log = fs.openSync(path.join(dir, 'mqhubd.log'), 'w');
  return spawn(MQHUBD, ['--config', config], {stdio: ['ignore', log, log]});
}

// A single-node hub in a fresh directory (named after @name), @extra
// appended to its config: {dir, proc, base (the dashboard's URL), server
// (the TCP address, for the CLI)}. Waits at most 15 s for /readyz.
export async function startHub(name, extra = '') {
  const dir = fs.mkdtempSync(path.join(process.env.TMPDIR || os.tmpdir(), `mqhub-${name}-`));
  const [tcp, raft, ws] = [await freePort(), await freePort(), await freePort()];
  fs.writeFileSync(path.join(dir, 'config.lua'),
    `node { id = 1, data = "${dir}/data", raft = "127.0.0.1:${raft}" }\n` +
    `transport "tcp" { listen = "127.0.0.1:${tcp}" }\n` +
    `transport "websocket" { listen = "127.0.0.1:${ws}", dashboard = true }\n` +
    `log { level = "warn" }\n` + extra);
  const proc = spawnHub(dir, path.join(dir, 'config.lua'));
  const base = `http://127.0.0.1:${ws}`;
  for (let i = 0; i < 150; i++) {
    try {
      if ((await fetch(`${base}/readyz`)).status === 200) return {dir, proc, base, server: `127.0.0.1:${tcp}`};
    } catch { /* not listening yet */ }
    await sleep(100);
  }
  proc.kill('SIGKILL');
  throw new Error(`mqhubd not ready: ${fs.readFileSync(path.join(dir, 'mqhubd.log'), 'utf8')}`);
}

// SIGTERM, wait for the exit, remove the directory.
export async function stopHub(hub) {
  const exited = new Promise((r) => hub.proc.on('exit', r));
  hub.proc.kill('SIGTERM');
  await exited;
  fs.rmSync(hub.dir, {recursive: true, force: true});
}

// Headless chromium at 1280 x @height: {context, page (its first tab),
// consoleErrors (that tab's console errors and uncaught exceptions),
// close()}.
export async function openBrowser(height) {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'mqhub-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM, headless: true, viewport: {width: 1280, height},
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = context.pages()[0] || await context.newPage();
  const consoleErrors = [];
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
  const close = async () => {
    await context.close();
    fs.rmSync(profile, {recursive: true, force: true});
  };
  return {context, page, consoleErrors, close};
}

// Run one named check: an exception fails it, the run goes on.
export async function check(name, fn) {
  const t0 = Date.now();
  try {
    await fn();
    passed++;
    console.log(`ok   ${name} (${Date.now() - t0} ms)`);
  } catch (err) {
    failed++;
    console.log(`FAIL ${name}: ${err.stack || err}`);
  }
}

export function expect(cond, what) {
  if (!cond) throw new Error(what);
}

// The counts, and the exit: 1 when any check failed.
export function finish() {
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}
