// pages/overview.js — #/overview: this node, its role, the leader, raft term
// and indexes, totals, and charts of the hub's rates and gauges over the
// last 10 minutes (per-second points) or hour (per-minute points), switched by
// two buttons. The points come from the hub's own history rings
// (stats.history, docs/protocol.md), kept whether or not a page is open, so
// the charts are full the moment the page opens; they are asked again every
// REFRESH_MS while it is shown. The cluster's nodes are on #/nodes.
import {timeChart, historyRates} from '../charts.js';
import {formatNumber, formatRate} from '../format.js';

const REFRESH_MS = 2000;
const SPANS = {'10 min': {which: 'seconds', ms: 600000}, '1 h': {which: 'minutes', ms: 3600000}};
const COUNTERS = ['sent', 'received', 'deleted', 'published', 'delivered', 'acked',
                  'redelivered', 'dead_lettered'];
// One chart per row: its title, its fields and colours; rates or gauges.
const CHARTS = [
  {id: 'chart-queues', title: 'Queues: messages per second', fmt: formatRate,
   fields: [['sent', '#2563eb'], ['received', '#16a34a'], ['deleted', '#9333ea']]},
  {id: 'chart-topics', title: 'Topics: messages per second', fmt: formatRate,
   fields: [['published', '#2563eb'], ['delivered', '#16a34a'], ['acked', '#9333ea']]},
  {id: 'chart-trouble', title: 'Redelivered and dead-lettered per second', fmt: formatRate,
   fields: [['redelivered', '#d97706'], ['dead_lettered', '#b91c1c']]},
  {id: 'chart-gauges', title: 'Backlog, in flight, delayed, subscription lag', fmt: formatNumber,
   fields: [['backlog', '#2563eb'], ['inflight', '#16a34a'], ['delayed', '#6b7280'], ['pending', '#d97706']]},
];

const state = {span: '10 min', hist: null};

function sum(list, key) {
  return list.reduce((a, q) => a + ((q.stats && q.stats[key]) || 0), 0);
}

function draw() {
  const span = SPANS[state.span];
  const series = historyRates(state.hist, span.which, COUNTERS);
  for (const c of CHARTS) {
    const canvas = document.getElementById(c.id);
    if (!canvas) continue;
    timeChart(canvas, c.fields.map(([f, color]) => ({label: f.replace('_', '-'), color, points: series[f] || []})),
              {spanMs: span.ms, fmt: c.fmt, label: `last ${state.span}`});
  }
}

// The hub's history needs monitor (or admin) on *: a user without it sees
// a note instead of the charts, not an error.
function load(ctx) {
  const note = document.getElementById('history-note');
  if (!note || note.dataset.forbidden) return undefined;
  return ctx.act('history', async () => {
    try {
      state.hist = await ctx.request('stats.history', {});
      draw();
    } catch (err) {
      if (err.code !== 'FORBIDDEN') throw err;
      note.dataset.forbidden = '1';
      note.hidden = false;
      note.textContent = `The rate charts need the monitor grant on * (${ctx.errorText(err)}).`;
    }
  });
}

function mount(view, ctx) {
  const {el} = ctx;
  const buttons = Object.keys(SPANS).map((name) => {
    const b = el('button', {type: 'button', 'data-span': name, text: name,
                            class: name === state.span ? 'active' : null});
    b.addEventListener('click', () => {
      state.span = name;
      for (const o of buttons) o.classList.toggle('active', o === b);
      draw();
    });
    return b;
  });
  view.append(el('div', {class: 'cards', id: 'cards'}),
    el('div', {class: 'toolbar'}, el('h2', {text: 'Rates'}),
       el('span', {class: 'span-switch'}, ...buttons)),
    el('p', {id: 'history-note', class: 'muted', hidden: true}),
    el('div', {class: 'charts'}, ...CHARTS.map((c) => el('div', {},
      el('h2', {}, c.title), el('canvas', {id: c.id, class: 'chart', width: '600', height: '200'})))));
  load(ctx);
  ctx.every(REFRESH_MS, () => load(ctx));
}

function stats(snap, ctx) {
  const {el} = ctx;
  const cl = snap.cluster || {};
  const subs = snap.topics.flatMap((t) => (t.subscriptions || []).filter((s) => s && s.stats));
  const cards = [
    ['node', cl.node ?? '–'], ['role', cl.role ?? '–'], ['leader', cl.leader ?? 'none'],
    ['term', cl.term ?? '–'], ['commit / applied', `${cl.commit_index ?? '–'} / ${cl.last_applied ?? '–'}`],
    ['queues', snap.queues.length], ['topics', snap.topics.length],
    ['backlog (ready)', formatNumber(sum(snap.queues, 'ready'))],
    ['in flight', formatNumber(sum(snap.queues, 'inflight'))],
    ['subscription lag', formatNumber(subs.reduce((a, s) => a + (s.stats.pending || 0), 0))],
    ['sent total', formatNumber(sum(snap.queues, 'sent_total'))],
    ['received total', formatNumber(sum(snap.queues, 'received_total'))],
    ['WebSocket clients', snap.transport ? snap.transport.connections : '–'],
  ];
  const box = document.getElementById('cards');
  if (!box) return;
  box.replaceChildren(...cards.map(([l, v]) =>
    el('div', {class: 'card'}, el('div', {class: 'label', text: l}),
       el('div', {class: String(v).length > 10 ? 'value long' : 'value', text: String(v)}))));
}

export default {route: 'overview', nav: 'Overview', mount, stats};
