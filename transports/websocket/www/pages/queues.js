// pages/queues.js — #/queues: every queue the identity may see, a page at a
// time (list.js: search, sort by backlog and the other counts, paging), each
// linking to its page (#/queue/NAME). Rates in and out and the backlog
// sparkline come from consecutive refreshes of the rows shown.
import {pagedList} from './list.js';
import {sparkline} from '../charts.js';
import {formatNumber, formatAge} from '../format.js';

const HISTORY = 120;
const seen = new Map(); // queue -> {t, sent, received, in, out, backlog: [ready]} of rows shown

function track(rows) {
  const now = Date.now(), shown = new Set();
  for (const q of rows) {
    shown.add(q.name);
    const s = seen.get(q.name) || {t: now, sent: q.sent_total, received: q.received_total, in: 0, out: 0, backlog: []};
    const dt = (now - s.t) / 1000;
    if (dt >= 0.5) {
      s.in = Math.max(0, (q.sent_total - s.sent) / dt);
      s.out = Math.max(0, (q.received_total - s.received) / dt);
      Object.assign(s, {t: now, sent: q.sent_total, received: q.received_total});
    }
    s.backlog.push(q.ready);
    if (s.backlog.length > HISTORY) s.backlog.shift();
    seen.set(q.name, s);
  }
  for (const name of seen.keys()) if (!shown.has(name)) seen.delete(name);
}

function row(q, ctx) {
  const {el} = ctx;
  const s = seen.get(q.name) || {in: 0, out: 0, backlog: []};
  const canvas = el('canvas', {class: 'spark', width: '160', height: '28'});
  const tr = el('tr', {'data-queue': q.name},
    el('td', {}, el('a', {href: ctx.href('queue', q.name), text: q.name})),
    el('td', {class: 'num backlog', 'data-queue': q.name, text: String(q.ready)}),
    el('td', {class: 'num', text: formatNumber(q.inflight)}),
    el('td', {class: 'num', text: formatNumber(q.delayed)}),
    el('td', {class: 'num', text: q.dead_letter_queue ? formatNumber(q.dead) : '–',
              title: q.dead_letter_queue ? `ready in ${q.dead_letter_queue}` : 'no dead-letter queue'}),
    el('td', {class: 'num', text: formatAge(q.oldest_age_ms)}),
    el('td', {class: 'num', text: formatNumber(s.in)}),
    el('td', {class: 'num', text: formatNumber(s.out)}),
    el('td', {}, canvas));
  return tr;
}

// Rows kept from the last refresh keep their canvas: draw every one again.
function drawn(items, rows) {
  items.forEach((q, i) => {
    const canvas = rows[i].querySelector('canvas.spark');
    if (canvas) sparkline(canvas, (seen.get(q.name) || {backlog: []}).backlog, '#2563eb', HISTORY);
  });
}

function mount(view, ctx) {
  const {el} = ctx;
  view.append(el('h2', {}, 'Queues ', el('small', {text: 'backlog = ready messages; in-flight = received, not deleted yet'})));
  pagedList(view, ctx, {
    id: 'queues', op: 'queue.list', key: 'queues',
    sorts: [['name', 'name'], ['ready', 'backlog'], ['inflight', 'in flight'], ['delayed', 'delayed'],
            ['oldest', 'oldest message'], ['dead', 'dead letters'], ['sent', 'sent total']],
    columns: ['queue', 'backlog', 'in-flight', 'delayed', 'dead letters', 'oldest', 'in/s', 'out/s', 'backlog, last 2 min'],
    empty: 'No queues yet. Create one with mqhub queue create NAME.',
    onRows: track, row, drawn,
  });
}

export default {route: 'queues', nav: 'Queues', mount};
