// console_test.mjs: the dashboard as a console (docs/dashboard.md), in headless
// Chromium against a real mqhubd started here on free loopback ports. Checks:
// 1,200 queues page, search and sort by backlog with one queue.list request a
// refresh and no per-queue request; a queue's page peeks the bodies sent
// (a hostile `<img onerror>` body is shown as text, never run), sends a test
// message, purges only after the confirmation (cancel changes nothing),
// redrives a dead-letter queue, rewinds, and deletes after the name is typed;
// a topic's page publishes, highlights a lagging subscription, rewinds,
// deletes and creates subscriptions; scripts load (versions), show their
// source, backtest and delete; a block is lifted; a user without the right is
// shown "not allowed"; a 400 px wide window has no page-wide horizontal
// scroll; no console errors. Screenshots go to $ARTIFACTS (console-*.png).
import fs from 'node:fs';
import path from 'node:path';
import {fileURLToPath} from 'node:url';

import {check, expect, finish, openBrowser, startHub, stopHub} from './lib.mjs';

const {ARTIFACTS} = process.env;
const RISK_SCRIPT = fs.readFileSync(fileURLToPath(new URL('../../scripts/risk/merchant_spike.lua', import.meta.url)), 'utf8');
const HOSTILE = '<img src=x onerror="window.__pwned=1">';
const N_QUEUES = 1200;

// A driver tab on the hub's origin with its own MqhubClient (www/mqhub.js):
// requests the test makes itself (setup, and checking what the page did).
async function driver(context, hub, token = null) {
  const p = await context.newPage();
  await p.goto(`${hub.base}/mqhub.js`);
  await p.evaluate(async ([url, tok]) => {
    const {MqhubClient} = await import('/mqhub.js');
    window.hub = new MqhubClient(url, {token: tok, reconnect: false});
    await window.hub.connect();
  }, [hub.base.replace('http:', 'ws:') + '/', token]);
  return {
    page: p,
    // Resolves with the response; rejects with an Error carrying the server's .code.
    req: async (op, args = {}) => {
      const r = await p.evaluate(([o, a]) => window.hub.request(o, a)
        .then((ok) => ({ok}), (err) => ({code: err.code, message: err.message})), [op, args]);
      if (r.ok) return r.ok;
      throw Object.assign(new Error(r.message), {code: r.code});
    },
    // Many requests pipelined on the one connection; resolves when all are answered.
    many: (reqs) => p.evaluate((list) => Promise.all(list.map(([o, a]) => window.hub.request(o, a))).then((r) => r.length), reqs),
  };
}

const hub = await startHub('console');
const browser = await openBrowser(900);
const {context, page, consoleErrors} = browser;
const sentOps = []; // every request the dashboard tab sends: [op, args]
page.on('websocket', (ws) => ws.on('framesent', (f) => {
  try { const m = JSON.parse(f.payload); if (m.op) sentOps.push(m); } catch { /* not JSON */ }
}));
const shot = (name, p = page) => p.screenshot({path: path.join(ARTIFACTS, `console-${name}.png`), fullPage: false});
const text = (sel) => page.textContent(sel);
async function waitText(sel, re, timeout = 5000) {
  try {
    await page.waitForFunction(([s, src]) => new RegExp(src).test(document.querySelector(s)?.textContent || ''),
      [sel, re.source], {timeout});
  } catch (err) {
    throw new Error(`${sel} never matched ${re}: "${await page.textContent(sel).catch(() => '(absent)')}"`);
  }
}
const qget = async (d, name) => (await d.req('queue.get', {name})).stats;

let d;
try {
  d = await driver(context, hub);

  await check(`${N_QUEUES} queues: paged, searched, sorted by backlog, no per-queue requests`, async () => {
    const t0 = Date.now();
    const names = Array.from({length: N_QUEUES}, (_, i) => `bulk-${String(i).padStart(4, '0')}`);
    await d.many(names.map((name) => ['queue.create', {name}]));
    const sends = [];
    for (let i = 0; i < 12; i++) sends.push(['send', {queue: 'bulk-0500', body: `b${i}`}]);
    for (let i = 0; i < 7; i++) sends.push(['send', {queue: 'bulk-0007', body: `b${i}`}]);
    await d.many(sends);
    console.log(`  (${N_QUEUES} queues created and 19 sends in ${Date.now() - t0} ms)`);
    await page.goto(`${hub.base}/#/queues`);
    await page.waitForSelector('#conn.up', {timeout: 5000});
    await waitText('#queues-range', new RegExp(`^1–50 of ${N_QUEUES}$`));
    expect(await page.locator('#queues tbody tr').count() === 50, 'a page holds 50 rows');
    sentOps.length = 0;
    await page.fill('#queues-search', 'bulk-05');
    await waitText('#queues-range', /^1–50 of 100$/);
    const shown = await page.$$eval('#queues tbody tr', (rows) => rows.map((r) => r.dataset.queue));
    expect(shown.every((n) => n.startsWith('bulk-05')), `search shows others: ${shown}`);
    await page.selectOption('#queues-sort', 'ready');
    await page.check('#queues-desc');
    await page.fill('#queues-search', 'bulk-0');
    await waitText('#queues-range', /^1–50 of 1000$/);
    await page.waitForFunction(() => document.querySelector('#queues tbody tr')?.dataset.queue === 'bulk-0500', null, {timeout: 5000});
    const top = await page.$$eval('#queues tbody tr', (rows) => rows.slice(0, 2).map((r) => [r.dataset.queue, r.querySelector('td.backlog').textContent]));
    expect(JSON.stringify(top) === JSON.stringify([['bulk-0500', '12'], ['bulk-0007', '7']]), `sorted by backlog: ${JSON.stringify(top)}`);
    await page.click('#queues-next');
    await waitText('#queues-range', /^51–100 of 1000$/);
    await page.click('#queues-prev');
    await waitText('#queues-range', /^1–50 of 1000$/);
    await page.waitForTimeout(1500); // a refresh or two
    const perQueue = sentOps.filter((m) => m.op !== 'queue.list');
    expect(perQueue.length === 0, `requests besides queue.list: ${JSON.stringify(perQueue.slice(0, 3))}`);
    expect(sentOps.every((m) => m.limit === 50), 'every list asks for one page');
    console.log(`  (${sentOps.length} queue.list requests while searching, sorting, paging and refreshing)`);
    await shot('queues');
    await page.fill('#queues-search', ''); // the list state is kept: reset it for later visits
    await page.selectOption('#queues-sort', 'name');
    await page.uncheck('#queues-desc');
  });

  await check('queue page: peek shows bodies as text (hostile body too), send, consumers', async () => {
    await d.req('queue.create', {name: 'orders-dlq'});
    await d.req('queue.create', {name: 'orders', attrs: {rewind_window: 600, dead_letter: {queue: 'orders-dlq', max_receives: 1}}});
    for (const body of ['first order', HOSTILE, 'x'.repeat(1000)]) await d.req('send', {queue: 'orders', body, attrs: {src: 'test'}});
    await page.goto(`${hub.base}/#/queue/orders`);
    await waitText('#queue-cards .q-ready', /^3$/);
    await waitText('#queue-cards .q-dead', /orders-dlq · 0 ready/);
    await page.click('#peek-go');
    await page.waitForSelector('#peek tr.peek-msg', {timeout: 5000});
    const bodies = await page.$$eval('#peek td.body', (tds) => tds.map((t) => t.textContent));
    expect(bodies[0] === 'first order', `body 0: ${bodies[0]}`);
    expect(bodies[1] === HOSTILE, `the hostile body is not shown as text: ${bodies[1]}`);
    expect(bodies[2].startsWith('x'.repeat(300) + '…') && bodies[2].endsWith('(1000 characters)'), `long body not cut: ${bodies[2].length}`);
    expect(await page.locator('#peek img').count() === 0, 'the body became an <img>');
    expect(await page.evaluate(() => window.__pwned) === undefined, 'the hostile body ran');
    await page.check('#peek-hex');
    expect((await text('#peek tr.peek-msg td.body')).startsWith('66 69 72 73 74'), 'hex view');
    await page.uncheck('#peek-hex');
    expect((await qget(d, 'orders')).received_total === 0, 'peek counted a receive');
    // a consumer: a long poll from the driver shows on the page
    const parked = d.req('receive', {queue: 'orders-dlq', wait: 5});
    await page.goto(`${hub.base}/#/queue/orders-dlq`);
    await page.waitForSelector('#queue-consumers tbody tr', {timeout: 6000});
    await parked;
    await page.goto(`${hub.base}/#/queue/orders`);
    await page.fill('#send-body', 'from the dashboard');
    await page.fill('#send-attrs', 'origin=console\npriority=high');
    await page.click('#send-go');
    await waitText('#send-result', /^Sent: msg_id \S+, seq 4\.$/);
    const m = (await d.req('queue.peek', {queue: 'orders', max: 10})).msgs.at(-1);
    expect(m.body === 'from the dashboard' && m.attrs.origin === 'console' && m.attrs.priority === 'high', `sent: ${JSON.stringify(m)}`);
    await page.click('#peek-go');
    await page.waitForFunction(() => document.querySelectorAll('#peek tr.peek-msg').length === 4, null, {timeout: 5000});
    // settings: a change is saved with queue.set; a value out of range is refused
    await page.fill('#queue-settings input[name=visibility_timeout]', '45');
    await page.click('#queue-save');
    await waitText('#queue-settings-result', /^Saved: visibility_timeout\.$/);
    expect((await d.req('queue.get', {name: 'orders'})).attrs.visibility_timeout === 45, 'visibility_timeout not saved');
    await page.fill('#queue-settings input[name=visibility_timeout]', '99999');
    await page.click('#queue-save');
    await waitText('#queue-settings-result', /^BAD_REQUEST: .*visibility_timeout/);
    await page.fill('#queue-settings input[name=visibility_timeout]', '45');
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({path: path.join(ARTIFACTS, 'console-queue.png'), fullPage: true});
  });

  await check('purge asks first: cancel changes nothing, confirm empties', async () => {
    await page.click('#purge');
    await page.waitForSelector('#confirm[open]', {timeout: 2000});
    expect(/orders/.test(await text('#confirm h3')) && /removed/.test(await text('#confirm-text')), 'the modal names the queue and the effect');
    await shot('confirm');
    await page.click('#confirm-cancel');
    await page.waitForTimeout(300);
    expect((await qget(d, 'orders')).ready === 4, 'cancel purged');
    await page.click('#purge');
    await page.click('#confirm-ok');
    await waitText('#action-result', /^Purged orders\.$/);
    expect((await qget(d, 'orders')).ready === 0, 'confirm did not purge');
    await waitText('#queue-cards .q-ready', /^0$/);
  });

  await check('redrive moves dead letters back, rewind brings retained messages back', async () => {
    await d.req('send', {queue: 'orders', body: 'd1'});
    await d.req('send', {queue: 'orders', body: 'd2'});
    const got = await d.req('receive', {queue: 'orders', max: 2, visibility: 60});
    for (const msg of got.msgs) await d.req('change_visibility', {queue: 'orders', receipt: msg.receipt, timeout: 0});
    await d.req('receive', {queue: 'orders', max: 2}); // received once already: moved instead
    expect((await qget(d, 'orders-dlq')).ready === 2, 'no dead letters to redrive');
    await page.goto(`${hub.base}/#/queue/orders-dlq`);
    await waitText('#queue-cards .q-ready', /^2$/);
    await page.click('#redrive');
    await page.waitForSelector('#confirm[open]');
    expect(/back to the queue each came from/.test(await text('#confirm-text')), 'redrive modal');
    await page.click('#confirm-ok');
    await waitText('#action-result', /^Redrive: moved 2, kept 0, remaining 0\.$/);
    expect((await qget(d, 'orders')).ready === 2, 'the messages are not back in orders');
    // rewind: receive and delete both, then bring them back from the rewind window
    const again = await d.req('receive', {queue: 'orders', max: 2});
    await d.req('delete', {queue: 'orders', receipts: again.msgs.map((x) => x.receipt)});
    const before = (await qget(d, 'orders')).retained;
    expect(before >= 2, `retained ${before}`);
    await page.goto(`${hub.base}/#/queue/orders`);
    await page.click('#rewind');
    await page.waitForSelector('#confirm[open]');
    expect(/becomes ready again/.test(await text('#confirm-text')), 'rewind modal');
    await page.click('#confirm-ok');
    await waitText('#action-result', new RegExp(`^Rewound ${before} messages\\.$`));
    expect((await qget(d, 'orders')).ready === before, 'rewind did not make them ready');
  });

  await check('delete needs the name typed, then the queue is gone', async () => {
    await page.goto(`${hub.base}/#/queue/bulk-0001`);
    await page.click('#delete');
    await page.waitForSelector('#confirm[open]');
    expect(await page.isDisabled('#confirm-ok'), 'delete enabled before the name is typed');
    await page.fill('#confirm-type', 'bulk-000');
    expect(await page.isDisabled('#confirm-ok'), 'a wrong name enables delete');
    await page.fill('#confirm-type', 'bulk-0001');
    await page.click('#confirm-ok');
    await page.waitForFunction(() => location.hash === '#/queues', null, {timeout: 5000});
    const gone = await d.req('queue.get', {name: 'bulk-0001'}).catch((e) => e.code);
    expect(gone === 'NOT_FOUND', `queue.get after delete: ${JSON.stringify(gone)}`);
  });

  await check('topic page: publish, lag highlighted, rewind, delete, create a subscription', async () => {
    await d.req('queue.create', {name: 'audit-q'});
    await d.req('topic.create', {name: 'events'});
    await d.req('subscription.create', {topic: 'events', name: 'audit', endpoint: {queue: 'audit-q'}});
    await d.req('subscription.create', {topic: 'events', name: 'slow', endpoint: {push: true}});
    await page.goto(`${hub.base}/#/topic/events`);
    await page.waitForSelector('#topic-subs tr.sub[data-sub="slow"]', {timeout: 5000});
    await page.fill('#publish-body', 'order shipped');
    await page.fill('#publish-tags', 'shipping, eu');
    await page.fill('#publish-key', 'orders.eu.shipped');
    await page.click('#publish-go');
    await waitText('#publish-result', /^Published: msg_id \S+, seq 1, matched 2 subscriptions\.$/);
    const r = await d.req('receive', {queue: 'audit-q'});
    expect(r.msgs[0].body === 'order shipped' && r.msgs[0].tags.join() === 'shipping,eu', `fanned out: ${JSON.stringify(r.msgs[0])}`);
    await page.fill('#lag-threshold', '0');
    await page.waitForSelector('tr.sub.lag[data-sub="slow"]', {timeout: 5000});
    // a queue endpoint's lag is its queue's backlog: the received message is in flight there
    await page.waitForSelector('tr.sub.lag[data-sub="audit"] td.pending[title^="waiting in queue audit-q"]', {timeout: 5000});
    await d.req('delete', {queue: 'audit-q', receipts: [r.msgs[0].receipt]});
    await page.waitForFunction(() => {
      const row = document.querySelector('tr.sub[data-sub="audit"]');
      return row && !row.classList.contains('lag') && row.children[5].textContent === '1';
    }, null, {timeout: 5000});
    await page.click('#rewind-go-slow');
    await page.waitForSelector('#confirm[open]');
    await page.click('#confirm-ok');
    await waitText('#sub-result', /^Rewound slow: 1 message again\.$/);
    await d.req('publish', {topic: 'events', body: HOSTILE, tags: ['x']});
    await page.click('#topic-peek-go');
    await waitText('#topic-peek-result', /^2 retained messages · nothing was delivered/);
    const tb = await page.$$eval('#topic-peek td.body', (tds) => tds.map((t) => t.textContent));
    expect(tb[0] === 'order shipped' && tb[1] === HOSTILE, `topic peek: ${JSON.stringify(tb)}`);
    expect(await page.locator('#topic-peek img').count() === 0, 'a topic body became an <img>');
    await page.selectOption('#topic-peek-from', 'slow');
    await page.click('#topic-peek-go');
    await waitText('#topic-peek-result', /^2 pending messages of slow/);
    await page.click('#delete-audit');
    await page.fill('#confirm-type', 'audit');
    await page.click('#confirm-ok');
    await waitText('#sub-result', /^Deleted subscription audit\.$/);
    await page.waitForFunction(() => !document.querySelector('tr.sub[data-sub="audit"]'), null, {timeout: 5000});
    await page.fill('#sub-name', 'eu-only');
    await page.selectOption('#sub-kind', 'queue');
    await page.fill('#sub-target', 'audit-q');
    await page.fill('#sub-keys', 'orders.eu.*');
    await page.click('#sub-create');
    await waitText('#sub-result', /.*/); // unchanged element; the create answer:
    await waitText('#sub-create-result', /^Created subscription eu-only\.$/);
    const s = await d.req('subscription.get', {topic: 'events', name: 'eu-only'});
    expect(s.endpoint.queue === 'audit-q' && s.binding_keys.join() === 'orders.eu.*', `created: ${JSON.stringify(s)}`);
    await page.waitForSelector('tr.sub[data-sub="eu-only"]', {timeout: 5000});
    await page.screenshot({path: path.join(ARTIFACTS, 'console-topic.png'), fullPage: true});
    // the topics list links to it
    await page.goto(`${hub.base}/#/topics`);
    await page.fill('#topics-search', 'even');
    await page.click('.topic[data-topic="events"] h3 a');
    await page.waitForFunction(() => location.hash === '#/topic/events', null, {timeout: 5000});
  });

  await check('scripts: load two versions, view the source, backtest, delete', async () => {
    const src = 'function filter(msg)\n  for _, t in ipairs(msg.tags or {}) do\n    if t == "eu" then return true end\n  end\n  return false\nend\n';
    await page.goto(`${hub.base}/#/scripts`);
    await page.fill('#script-name', 'eu_filter');
    await page.fill('#script-text', src);
    await page.click('#script-load');
    await waitText('#script-load-result', /^Loaded eu_filter: version 1\.$/);
    await page.click('#script-load');
    await waitText('#script-load-result', /^Loaded eu_filter: version 2\.$/);
    await page.fill('#script-text', 'function filter(msg) return end end');
    await page.click('#script-load');
    await waitText('#script-load-result', /SCRIPT_ERROR/);
    expect((await page.getAttribute('#script-load-result', 'class')).includes('bad'), 'a syntax error is not shown as an error');
    await page.waitForSelector('tr.script[data-script="eu_filter"]', {timeout: 5000});
    await page.click('tr.script[data-script="eu_filter"] a');
    await waitText('#script-source', /if t == "eu" then return true end/);
    await page.selectOption('#test-script', 'eu_filter');
    await page.fill('#test-topic', 'events');
    await page.click('#test-go');
    await waitText('#test-result', /^filter eu_filter over 2 messages: 2 calls, 0 errors, 0 refused, 1 matched, 0 publishes, 0 blocks\. Nothing was changed\.$/);
    await shot('scripts');
    await page.click('#script-delete');
    await page.fill('#confirm-type', 'eu_filter');
    await page.click('#confirm-ok');
    await waitText('#script-delete-result', /^Deleted script eu_filter\.$/);
    const gone = await d.req('script.get', {name: 'eu_filter'}).catch((e) => e.code);
    expect(gone === 'NOT_FOUND', `script.get after delete: ${JSON.stringify(gone)}`);
  });

  await check('a block is lifted from the blocks page', async () => {
    await d.req('script.load', {name: 'merchant_spike', source: RISK_SCRIPT});
    await d.req('topic.create', {name: 'risk-alerts'});
    await d.req('topic.create', {name: 'card-payments', attrs: {hook: 'merchant_spike'}});
    await d.req('publish', {topic: 'card-payments', body: 'small', attrs: {merchant: 'm-12', amount: '20'}});
    const refused = await d.req('publish', {topic: 'card-payments', body: 'big', attrs: {merchant: 'm-77', amount: '5000'}}).catch((e) => e.code);
    expect(refused === 'BLOCKED', `spike: ${JSON.stringify(refused)}`);
    await page.goto(`${hub.base}/#/blocks`);
    const row = 'tr.block[data-attr="merchant"][data-value="m-77"]';
    await page.waitForSelector(row, {timeout: 5000});
    await page.click(`${row} button.lift`);
    await page.waitForSelector('#confirm[open]');
    await page.click('#confirm-cancel');
    expect((await d.req('block.list')).blocks.length === 1, 'cancel lifted the block');
    await page.click(`${row} button.lift`);
    await page.click('#confirm-ok');
    await waitText('#blocks-result', /^Lifted the block on merchant=m-77\.$/);
    expect((await d.req('block.list')).blocks.length === 0, 'the block is still there');
    await page.waitForFunction((s) => !document.querySelector(s), row, {timeout: 5000});
  });

  await check('a 400 px wide window: nav wraps, tables scroll inside, no page-wide scroll', async () => {
    const narrow = await context.newPage();
    narrow.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(`narrow: ${m.text()}`); });
    try {
      await narrow.setViewportSize({width: 400, height: 800});
      for (const hash of ['#/queues', '#/queue/orders', '#/topic/events', '#/scripts']) {
        await narrow.goto(`${hub.base}/${hash}`);
        await narrow.waitForSelector('#conn.up', {timeout: 5000});
        await narrow.waitForTimeout(700);
        const w = await narrow.evaluate(() => document.documentElement.scrollWidth);
        expect(w <= 400, `${hash}: the page is ${w} px wide`);
      }
      await narrow.goto(`${hub.base}/#/queues`);
      await narrow.waitForSelector('#queues tbody tr', {timeout: 5000});
      const nav = await narrow.evaluate(() => document.querySelector('nav').getBoundingClientRect().right);
      expect(nav <= 400, `nav reaches ${nav} px`);
      const table = await narrow.evaluate(() => {
        const s = document.querySelector('#queues').parentElement;
        return [s.scrollWidth, s.clientWidth];
      });
      console.log(`  (queues table ${table[0]} px in a ${table[1]} px scroller)`);
      await shot('narrow', narrow);
    } finally {
      await narrow.close();
    }
  });

  await check('a user without the right sees "not allowed" from the server', async () => {
    const root = 'root-token-for-the-console-test';
    const secured = await startHub('console', `auth { token = "${root}" }\n`);
    const other = await context.newPage(); // UNAUTHORIZED before login is expected: not counted
    try {
      const admin = await driver(context, secured, root);
      await admin.req('queue.create', {name: 'jobs.a'});
      await admin.req('send', {queue: 'jobs.a', body: 'keep me'});
      await admin.req('user.create', {name: 'bob', token: 'bob-token-0123456789abcdef',
                                      grants: [{verb: 'receive', pattern: 'jobs*'}]});
      await other.goto(`${secured.base}/#/queue/jobs.a`);
      await other.waitForSelector('#login:not([hidden])', {timeout: 5000});
      await other.fill('#token', 'bob-token-0123456789abcdef');
      await other.click('#login button[type=submit]');
      await other.waitForSelector('#conn.up', {timeout: 5000});
      await other.click('#purge');
      await other.click('#confirm-ok');
      await other.waitForFunction(() => /^not allowed: /.test(document.querySelector('#action-result')?.textContent || ''), null, {timeout: 5000});
      expect((await other.getAttribute('#action-result', 'class')).includes('bad'), 'the refusal is not marked');
      expect(/not allowed/.test(await other.textContent('#errors')), 'the red bar does not say it');
      expect((await admin.req('queue.get', {name: 'jobs.a'})).stats.ready === 1, 'the refused purge purged');
      await other.screenshot({path: path.join(ARTIFACTS, 'console-forbidden.png')});
      await admin.page.close();
    } finally {
      await other.close();
      await stopHub(secured);
    }
  });

  await check('every sort the lists offer is one the hub knows', async () => {
    for (const list of ['queues', 'topics']) {
      await page.goto(`${hub.base}/#/${list}`);
      const sorts = await page.$$eval(`#${list}-sort option`, (os) => os.map((o) => o.value));
      for (const sort of sorts) {
        const before = sentOps.length;
        await page.selectOption(`#${list}-sort`, sort);
        await waitText(`#${list}-range`, /of \d+$/);
        const reply = await d.req(list === 'queues' ? 'queue.list' : 'topic.list', {stats: true, sort, limit: 1});
        expect(reply.total > 0, `${list} sort ${sort}: ${JSON.stringify(reply)}`);
        expect(sentOps.length > before, `${list} sort ${sort} sent no request`);
      }
      expect(await page.isHidden('#errors'), `${list}: ${await text('#errors')}`);
      await page.selectOption(`#${list}-sort`, 'name');
    }
  });

  await check('a forged hash shows the server\'s answer as text, nothing breaks', async () => {
    await page.goto(`${hub.base}/#/queue/%E0%A4%A`);
    await waitText('#errors', /BAD_NAME/);
    await page.goto(`${hub.base}/#/queue/${encodeURIComponent('<img src=x onerror=window.__pwned=2>')}`);
    await waitText('#queue-name', /^<img src=x onerror=window\.__pwned=2>$/);
    await waitText('#errors', /BAD_NAME/);
    expect(await page.locator('main img').count() === 0, 'the hash became markup');
    expect(await page.evaluate(() => window.__pwned) === undefined, 'the hash ran');
    await page.goto(`${hub.base}/#/no-such-page`); // the overview
    await page.waitForSelector('#page-overview', {timeout: 5000});
    await page.waitForFunction(() => !/BAD_NAME/.test(document.querySelector('#errors').textContent), null, {timeout: 5000});
  });

  await check('no console errors', async () => {
    expect(consoleErrors.length === 0, consoleErrors.join('\n'));
  });
} finally {
  await browser.close();
  await stopHub(hub);
}
finish();
