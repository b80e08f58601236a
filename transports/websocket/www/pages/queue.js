// pages/queue.js — #/queue/NAME: one queue as a console. Counts (queue.get,
// refreshed every second, with its dead-letter queue's backlog), a chart of
// messages per second in, out, redelivered and dead-lettered over 5 minutes
// (full at once from the hub's ring, stats.history {queue}, then extended
// from consecutive counts; from the counts only when the hub keeps no ring
// for this queue — the note under the chart says which), its settings
// (editable: queue.set with the changed attrs), its consumers (consumer.list
// {queue}), peek (queue.peek: bodies shown as text or hex, truncated, never
// as markup), a test message (send), and the destructive actions purge,
// delete (type the name), redrive (queue.redrive, repeated while the server
// says `next`) and rewind (queue.rewind {time}), each behind a confirmation
// naming the queue and the effect, each showing the server's answer.
import {timeChart, historyRates} from '../charts.js';
import {formatNumber, formatAge, formatTime} from '../format.js';
import {run, bodyPreview, attrsText, parseAttrs, card, table, button} from './common.js';

const SPAN = 300e3; // the chart's 5 minutes
// Chart series: [key, label, color, queue.get counter, stats.history field].
const SERIES = [['in', 'in', '#2563eb', 'sent_total', 'sent'], ['out', 'out', '#16a34a', 'received_total', 'received'],
  ['redelivered', 'redelivered', '#d97706', 'redelivered_total', 'redelivered'],
  ['dead', 'dead-lettered', '#b91c1c', 'dead_lettered_total', 'dead_lettered']];
// Editable attrs: [name, label, unit]. `ordered` cannot change (shown only).
const ATTRS = [['visibility_timeout', 'visibility timeout', 's'], ['polling_wait', 'polling wait', 's'],
  ['max_msg_size', 'max message size', 'bytes'], ['retention', 'retention', 's'],
  ['rewind_window', 'rewind window', 's'], ['max_backlog', 'max backlog (0: unbounded)', 'messages'],
  ['delay', 'delivery delay', 's']];

let page = null; // {name, view parts, rates, last}

function settingsForm(ctx, q) {
  const {el} = ctx;
  const a = q.attrs || {};
  const dl = a.dead_letter || {};
  const inputs = new Map();
  const rows = ATTRS.map(([k, label, unit]) => {
    const input = el('input', {type: 'number', min: '0', name: k, value: String(a[k] ?? '')});
    inputs.set(k, input);
    return el('tr', {}, el('th', {text: label}), el('td', {}, input, ` ${unit}`));
  });
  const dlq = el('input', {name: 'dead_letter.queue', value: dl.queue || '', placeholder: 'none'});
  const dlMax = el('input', {type: 'number', min: '1', max: '1000', name: 'dead_letter.max_receives',
                             value: String(dl.max_receives ?? '')});
  const out = el('p', {id: 'queue-settings-result', class: 'result', hidden: ''});
  const save = button(ctx, 'queue-save', 'Save settings', () => run(ctx, out, 'queue.set', async () => {
    const attrs = {};
    for (const [k, input] of inputs)
      if (input.value !== String(a[k] ?? '')) attrs[k] = Number(input.value);
    if (dlq.value !== (dl.queue || '') || dlMax.value !== String(dl.max_receives ?? ''))
      attrs.dead_letter = dlq.value ? {queue: dlq.value, max_receives: Number(dlMax.value || 5)} : null;
    if (!Object.keys(attrs).length) return 'Nothing changed.';
    await ctx.request('queue.set', {name: q.name, attrs});
    await load(ctx);
    return `Saved: ${Object.keys(attrs).join(', ')}.`;
  }));
  return el('div', {id: 'queue-settings'}, el('div', {class: 'scroll'}, el('table', {class: 'form'},
    el('tbody', {}, ...rows,
      el('tr', {}, el('th', {text: 'dead-letter queue'}), el('td', {}, dlq, ' after ', dlMax, ' receives')),
      el('tr', {}, el('th', {text: 'ordered'}), el('td', {text: a.ordered ? 'yes (cannot change)' : 'no'})),
      el('tr', {}, el('th', {text: 'created / modified'}),
         el('td', {text: `${formatTime(q.created_at)} / ${formatTime(q.modified_at)}`}))))),
    save, out);
}

async function load(ctx, p = page) { // p: the visit that asked
  const q = await ctx.request('queue.get', {name: p.name});
  const dlqName = q.attrs && q.attrs.dead_letter && q.attrs.dead_letter.queue;
  let dlq = null;
  if (dlqName) dlq = await ctx.request('queue.get', {name: dlqName}).catch(() => null);
  const s = q.stats || {};
  const now = Date.now();
  if (p.last) {
    const dt = Math.max(0.001, (now - p.last.t) / 1000);
    for (const [k, , , counter] of SERIES) {
      const pts = p.rates[k];
      pts.push([now, Math.max(0, ((s[counter] ?? 0) - (p.last.s[counter] ?? 0)) / dt)]);
      while (pts.length && pts[0][0] < now - SPAN) pts.shift();
    }
  }
  p.last = {t: now, s};
  const {el} = ctx;
  p.cards.replaceChildren(
    card(ctx, 'ready (backlog)', formatNumber(s.ready), 'q-ready'),
    card(ctx, 'in flight', formatNumber(s.inflight), 'q-inflight'),
    card(ctx, 'delayed', formatNumber(s.delayed), 'q-delayed'),
    card(ctx, 'retained (rewindable)', formatNumber(s.retained), 'q-retained'),
    card(ctx, 'oldest message', formatAge(s.oldest_age_ms)),
    card(ctx, 'sent total', formatNumber(s.sent_total)),
    card(ctx, 'received total', formatNumber(s.received_total)),
    el('div', {class: 'card'}, el('div', {class: 'label', text: 'dead-letter queue'}),
      dlqName ? el('div', {class: 'value long q-dead'}, el('a', {href: ctx.href('queue', dlqName), text: dlqName}),
                   ` · ${dlq ? formatNumber(dlq.stats.ready) : '?'} ready`)
              : el('div', {class: 'value long', text: 'none'})));
  timeChart(p.chart, SERIES.map(([k, label, color]) => ({label, color, points: p.rates[k]})),
            {spanMs: SPAN, now, label: 'last 5 min'});
  if (!p.settingsShown) {
    p.settings.replaceChildren(settingsForm(ctx, q));
    p.settingsShown = true;
  }
}

// The hub's per-second ring for this queue, when it keeps one: the chart
// starts full. Points after it come from consecutive counts (load()).
async function loadHistory(ctx, p = page) { // p: the visit that asked
  try {
    const h = await ctx.request('stats.history', {queue: p.name});
    const r = historyRates(h, 'seconds', SERIES.map((x) => x[4]));
    for (const [k, , , , field] of SERIES) p.rates[k] = r[field] || [];
    p.histNote.textContent = 'from the hub\'s history, then live';
  } catch (err) {
    p.histNote.textContent = `live from now on (no history: ${ctx.errorText(err)})`;
  }
}

async function loadConsumers(ctx, p = page) { // p: the visit that asked
  const {el} = ctx;
  const r = await ctx.request('consumer.list', {queue: p.name});
  p.consumers.replaceChildren(...r.consumers.map((c) => el('tr', {},
    el('td', {class: 'num', text: String(c.connection)}), el('td', {text: c.transport}), el('td', {text: c.peer}),
    el('td', {text: c.user ? `user ${c.user}` : c.identity}), el('td', {class: 'num', text: formatNumber(c.parked)}))));
  p.consumersEmpty.hidden = r.consumers.length > 0;
}

function peekSection(ctx) {
  const {el} = ctx;
  const max = el('input', {id: 'peek-max', type: 'number', min: '1', max: '256', value: '20'});
  const from = el('input', {id: 'peek-from', placeholder: 'seq or msg_id (first)'});
  const hex = el('input', {id: 'peek-hex', type: 'checkbox'});
  const out = el('p', {id: 'peek-result', class: 'result', hidden: ''});
  const t = table(ctx, 'peek', ['seq', 'msg_id', 'enqueued', 'receives', 'attrs', 'body']);
  let msgs = [];
  const draw = () => t.body.replaceChildren(...msgs.map((m) => el('tr', {class: 'peek-msg', 'data-seq': String(m.seq)},
    el('td', {class: 'num', text: String(m.seq)}), el('td', {text: m.msg_id}),
    el('td', {text: formatTime(m.enqueued_at)}), el('td', {class: 'num', text: String(m.receive_count)}),
    el('td', {text: [attrsText(m.attrs), ...(m.tags || []).map((x) => `#${x}`)].filter(Boolean).join(' ')}),
    el('td', {class: 'body', text: bodyPreview(m, hex.checked)}))));
  hex.addEventListener('change', draw);
  const peek = () => run(ctx, out, 'queue.peek', async () => {
    const args = {queue: page.name, max: Number(max.value)};
    if (from.value) args.from = /^\d+$/.test(from.value) ? Number(from.value) : from.value;
    const r = await ctx.request('queue.peek', args);
    msgs = r.msgs;
    draw();
    if (r.next) from.value = String(r.next);
    return `${r.msgs.length} ready message${r.msgs.length === 1 ? '' : 's'}` +
      (r.next ? `; more from seq ${r.next} (press Peek again)` : '') + ' · nothing was locked or counted';
  });
  return el('div', {}, el('h2', {}, 'Peek ', el('small', {text: 'ready messages, without receiving them'})),
    el('div', {class: 'toolbar'}, el('label', {}, 'max ', max), el('label', {}, 'from ', from),
      el('label', {}, hex, ' hex'), button(ctx, 'peek-go', 'Peek', peek)), out, t.wrap);
}

function publishSection(ctx) {
  const {el} = ctx;
  const body = el('textarea', {id: 'send-body', rows: '3', placeholder: 'message body'});
  const attrs = el('textarea', {id: 'send-attrs', rows: '2', placeholder: 'attrs: key=value per line'});
  const delay = el('input', {id: 'send-delay', type: 'number', min: '0', max: '3600', placeholder: '0'});
  const group = el('input', {id: 'send-group', placeholder: 'group (ordered queues)'});
  const out = el('p', {id: 'send-result', class: 'result', hidden: ''});
  const send = () => run(ctx, out, 'send', async () => {
    const args = {queue: page.name, body: body.value};
    const a = parseAttrs(attrs.value);
    if (Object.keys(a).length) args.attrs = a;
    if (delay.value) args.delay = Number(delay.value);
    if (group.value) args.group = group.value;
    const r = await ctx.request('send', args);
    return `Sent: msg_id ${r.msg_id}, seq ${r.seq}.`;
  });
  return el('div', {}, el('h2', {text: 'Send a test message'}),
    el('div', {class: 'form-grid'}, body, attrs, el('div', {class: 'toolbar'}, el('label', {}, 'delay ', delay, ' s'), group,
      button(ctx, 'send-go', 'Send', send))), out);
}

function actionsSection(ctx) {
  const {el} = ctx;
  const name = page.name;
  const out = el('p', {id: 'action-result', class: 'result', hidden: ''});
  const to = el('input', {id: 'redrive-to', placeholder: 'to (default: each message\'s source)'});
  const since = el('input', {id: 'rewind-time', type: 'datetime-local', step: '1',
    value: new Date(Date.now() - 3600e3 - new Date().getTimezoneOffset() * 60e3).toISOString().slice(0, 19)});
  const purge = async () => {
    if (!await ctx.confirm({title: `Purge queue ${name}?`, confirmText: 'Purge',
      text: `Every message of ${name} (ready, in flight and delayed) is removed at once. This cannot be undone.`})) return;
    await run(ctx, out, 'queue.purge', async () => {
      await ctx.request('queue.purge', {name});
      await load(ctx);
      return `Purged ${name}.`;
    });
  };
  const del = async () => {
    if (!await ctx.confirm({title: `Delete queue ${name}?`, confirmText: 'Delete', typeName: name,
      text: `The queue ${name}, its settings and all its messages are deleted. This cannot be undone.`})) return;
    if (await run(ctx, out, 'queue.delete', async () => {
      await ctx.request('queue.delete', {name});
      return `Deleted ${name}.`;
    })) ctx.go('queues');
  };
  const redrive = async () => {
    const target = to.value.trim();
    if (!await ctx.confirm({title: `Redrive dead-letter queue ${name}?`, confirmText: 'Redrive',
      text: `The ready messages of ${name} are moved back to ${target || 'the queue each came from'}, in order.`})) return;
    await run(ctx, out, 'queue.redrive', async () => {
      let moved = 0, kept = 0, r = {};
      const args = {queue: name};
      if (target) args.to = target;
      for (let i = 0; i < 1000; i++) { // bounded: 1000 commands of up to 1000 records
        r = await ctx.request('queue.redrive', args);
        moved += r.moved; kept += r.kept;
        if (r.next === undefined) break;
        args.from = r.next;
      }
      await load(ctx);
      return `Redrive: moved ${moved}, kept ${kept}, remaining ${r.remaining}.`;
    });
  };
  const rewind = async () => {
    const t = new Date(since.value).getTime();
    if (!Number.isFinite(t)) { out.hidden = false; out.className = 'result bad'; out.textContent = 'pick a time'; return; }
    if (!await ctx.confirm({title: `Rewind queue ${name}?`, confirmText: 'Rewind',
      text: `Every retained message of ${name} enqueued at or after ${formatTime(t)} becomes ready again ` +
            '(consumers will receive them again).'})) return;
    await run(ctx, out, 'queue.rewind', async () => {
      const r = await ctx.request('queue.rewind', {name, time: t});
      await load(ctx);
      return `Rewound ${r.rewound} message${r.rewound === 1 ? '' : 's'}.`;
    });
  };
  return el('div', {}, el('h2', {text: 'Actions'}),
    el('div', {class: 'toolbar'}, button(ctx, 'purge', 'Purge…', purge, 'danger'),
      button(ctx, 'delete', 'Delete…', del, 'danger')),
    el('div', {class: 'toolbar'}, to, button(ctx, 'redrive', 'Redrive…', redrive, 'danger'),
      el('span', {class: 'muted', text: 'for a dead-letter queue: move its messages back'})),
    el('div', {class: 'toolbar'}, el('label', {}, 'rewind to ', since), button(ctx, 'rewind', 'Rewind…', rewind, 'danger'),
      el('span', {class: 'muted', text: 'retained messages since then become ready again'})),
    out);
}

function mount(view, ctx, [name]) {
  const {el} = ctx;
  const consumers = table(ctx, 'queue-consumers', ['connection', 'transport', 'peer', 'identity', 'long polls']);
  page = {name, rates: {in: [], out: [], redelivered: [], dead: []}, last: null, settingsShown: false,
          histNote: el('p', {id: 'queue-history', class: 'muted'}),
          cards: el('div', {class: 'cards', id: 'queue-cards'}),
          chart: el('canvas', {id: 'queue-rates', class: 'chart', width: '900', height: '200'}),
          settings: el('div'), consumers: consumers.body,
          consumersEmpty: el('p', {class: 'empty', text: 'No consumer is waiting on this queue (receives parked as long polls).'})};
  view.append(el('p', {}, el('a', {href: ctx.href('queues'), text: '‹ Queues'})),
    el('h2', {class: 'object'}, 'Queue ', el('span', {id: 'queue-name', text: name})),
    page.cards, actionsSection(ctx), el('h2', {text: 'Messages per second'}), page.chart, page.histNote,
    peekSection(ctx), publishSection(ctx),
    el('h2', {text: 'Consumers'}), consumers.wrap, page.consumersEmpty,
    el('h2', {text: 'Settings'}), page.settings);
  const refresh = () => ctx.act(`queue ${name}`, () => load(ctx));
  loadHistory(ctx).then(refresh);
  ctx.every(1000, refresh);
  const refreshConsumers = () => ctx.act('consumer.list', () => loadConsumers(ctx));
  refreshConsumers();
  ctx.every(3000, refreshConsumers);
}

export default {route: 'queue', nav: null, navFor: 'queues', mount};
