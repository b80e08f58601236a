// pages/topic.js — #/topic/NAME: one topic as a console. Its stats and
// attrs (topic.get, every 2 s), publish (body, tags, key, attrs), and its
// subscriptions (subscription.get each): endpoint, filter, pending (the lag,
// highlighted above a threshold the operator sets), acked, failed; per
// subscription rewind (subscription.rewind {time}) and delete, both behind a
// confirmation; a form to create one (queue, push or http endpoint, tags,
// binding keys, from); peek (topic.peek) at the retained messages or at a
// push subscription's pending ones, bodies as text or hex, never as markup.
// Every answer or refusal is shown where it was asked.
import {formatNumber, formatTime, formatDuration} from '../format.js';
import {run, card, table, button, parseAttrs, syncRows, bodyPreview, attrsText} from './common.js';
import {filterSummary, endpointText, subFigures} from './subs.js';

const SHOWN_SUBS = 200; // subscription.get per refresh at most
let page = null;

// A datetime-local input an hour before the page was opened (a fixed value:
// rows rebuilt each refresh must compare equal).
function rewindInput(id) {
  return {id, type: 'datetime-local', step: '1',
          value: new Date(page.opened - 3600e3 - new Date().getTimezoneOffset() * 60e3).toISOString().slice(0, 19)};
}

async function rewind(ctx, sub, when) {
  const t = new Date(when.value).getTime();
  const out = page.subResult;
  if (!Number.isFinite(t)) { out.hidden = false; out.className = 'result bad'; out.textContent = 'pick a time'; return; }
  if (!await ctx.confirm({title: `Rewind subscription ${sub.name} of ${page.name}?`, confirmText: 'Rewind',
    text: `Every retained message of ${page.name} published at or after ${formatTime(t)} that matches the ` +
          `filter of ${sub.name} is delivered to it again.`})) return;
  await run(ctx, out, 'subscription.rewind', async () => {
    const r = await ctx.request('subscription.rewind', {topic: page.name, name: sub.name, time: t});
    await load(ctx);
    return `Rewound ${sub.name}: ${r.rewound} message${r.rewound === 1 ? '' : 's'} again.`;
  });
}

async function remove(ctx, sub) {
  if (!await ctx.confirm({title: `Delete subscription ${sub.name} of ${page.name}?`, confirmText: 'Delete',
    typeName: sub.name,
    text: `${sub.name} stops receiving ${page.name}'s messages; its ${formatNumber(sub.stats.pending ?? 0)} ` +
          'pending messages are dropped. This cannot be undone.'})) return;
  await run(ctx, page.subResult, 'subscription.delete', async () => {
    await ctx.request('subscription.delete', {topic: page.name, name: sub.name});
    await load(ctx);
    return `Deleted subscription ${sub.name}.`;
  });
}

function subRow(ctx, sub) {
  const {el} = ctx;
  const s = sub.stats || {};
  const snapTopic = ctx.last && (ctx.last.topics || []).find((x) => x.name === page.name);
  const f = subFigures(sub, snapTopic && (snapTopic.subscriptions || []).find((x) => x.name === sub.name));
  const lagging = (f.pending || 0) > Number(page.threshold.value || 0);
  const when = el('input', rewindInput(`rewind-${sub.name}`));
  return el('tr', {class: lagging ? 'sub lag' : 'sub', 'data-sub': sub.name},
    el('td', {text: sub.name}), el('td', {text: endpointText(sub)}), el('td', {text: filterSummary(sub)}),
    el('td', {class: 'num pending', text: formatNumber(f.pending ?? 0),
              title: [f.queue ? `waiting in queue ${f.queue}` : '', lagging ? 'over the lag threshold' : '']
                .filter(Boolean).join('; ')}),
    el('td', {class: 'num', text: formatNumber(s.matched_total)}),
    el('td', {class: 'num', text: formatNumber(f.acked), title: f.queue ? `deleted from queue ${f.queue}` : ''}),
    el('td', {class: 'num', text: formatNumber(s.failed_total)}),
    el('td', {class: 'actions'}, when, button(ctx, `rewind-go-${sub.name}`, 'Rewind…', () => rewind(ctx, sub, when), 'danger sub-rewind'),
      button(ctx, `delete-${sub.name}`, 'Delete…', () => remove(ctx, sub), 'danger sub-delete')));
}

async function load(ctx, p = page) { // p: the visit that asked
  const t = await ctx.request('topic.get', {name: p.name});
  const st = t.stats || {};
  p.cards.replaceChildren(card(ctx, 'published total', formatNumber(st.published_total)),
    card(ctx, 'retained', formatNumber(st.retained)), card(ctx, 'subscriptions', formatNumber(t.subscriptions.length)),
    card(ctx, 'seq range', `${st.first_seq ?? '–'} … ${st.last_seq ?? '–'}`, 'long'),
    card(ctx, 'retention', formatDuration(t.attrs.retention * 1000), 'long'),
    card(ctx, 'hook', t.attrs.hook || 'none', 'long'));
  const names = t.subscriptions.slice(0, SHOWN_SUBS);
  const subs = await Promise.all(names.map((n) =>
    ctx.request('subscription.get', {topic: p.name, name: n}).catch((err) => ({name: n, stats: {}, error: err}))));
  syncRows(p.subs, subs, (s) => s.name, (s) => subRow(ctx, s));
  p.subsEmpty.hidden = subs.length > 0;
  const pushSubs = subs.filter((x) => x.endpoint && !x.endpoint.queue).map((x) => x.name);
  const choices = ['', ...pushSubs];
  if ([...p.peekFrom.options].map((o) => o.value).join() !== choices.join()) {
    const keep = p.peekFrom.value;
    p.peekFrom.replaceChildren(...choices.map((n) => ctx.el('option', {value: n,
      text: n ? `pending of ${n}` : 'retained messages'})));
    if (choices.includes(keep)) p.peekFrom.value = keep;
  }
  p.more.hidden = t.subscriptions.length <= SHOWN_SUBS;
  p.more.textContent = `${t.subscriptions.length - SHOWN_SUBS} more subscriptions are not shown.`;
}

function publishSection(ctx) {
  const {el} = ctx;
  const body = el('textarea', {id: 'publish-body', rows: '3', placeholder: 'message body'});
  const tags = el('input', {id: 'publish-tags', placeholder: 'tags, comma separated (≤ 5)'});
  const key = el('input', {id: 'publish-key', placeholder: 'routing key'});
  const attrs = el('input', {id: 'publish-attrs', placeholder: 'attrs: k=v, k=v'});
  const out = el('p', {id: 'publish-result', class: 'result', hidden: ''});
  const go = () => run(ctx, out, 'publish', async () => {
    const args = {topic: page.name, body: body.value};
    const tg = tags.value.split(',').map((s) => s.trim()).filter(Boolean);
    if (tg.length) args.tags = tg;
    if (key.value) args.key = key.value;
    const a = parseAttrs(attrs.value);
    if (Object.keys(a).length) args.attrs = a;
    const r = await ctx.request('publish', args);
    await load(ctx);
    return `Published: msg_id ${r.msg_id}, seq ${r.seq}, matched ${r.delivered} subscription${r.delivered === 1 ? '' : 's'}.`;
  });
  return el('div', {}, el('h2', {text: 'Publish'}),
    el('div', {class: 'form-grid'}, body, el('div', {class: 'toolbar'}, tags, key, attrs,
      button(ctx, 'publish-go', 'Publish', go))), out);
}

function peekSection(ctx) {
  const {el} = ctx;
  const max = el('input', {id: 'topic-peek-max', type: 'number', min: '1', max: '256', value: '20'});
  const from = el('input', {id: 'topic-peek-seq', placeholder: 'from seq (first)'});
  const hex = el('input', {id: 'topic-peek-hex', type: 'checkbox'});
  const out = el('p', {id: 'topic-peek-result', class: 'result', hidden: ''});
  const t = table(ctx, 'topic-peek', ['seq', 'msg_id', 'published', 'key', 'tags', 'attrs', 'body']);
  let msgs = [];
  const draw = () => t.body.replaceChildren(...msgs.map((m) => el('tr', {class: 'peek-msg', 'data-seq': String(m.seq)},
    el('td', {class: 'num', text: String(m.seq)}), el('td', {text: m.msg_id}), el('td', {text: formatTime(m.published_at)}),
    el('td', {text: m.key || ''}), el('td', {}, ...(m.tags || []).map((x) => el('span', {class: 'tag', text: x}))),
    el('td', {text: attrsText(m.attrs)}), el('td', {class: 'body', text: bodyPreview(m, hex.checked)}))));
  hex.addEventListener('change', draw);
  const go = () => run(ctx, out, 'topic.peek', async () => {
    const args = {topic: page.name, max: Number(max.value)};
    if (page.peekFrom.value) args.subscription = page.peekFrom.value;
    if (from.value) args.from = Number(from.value);
    const r = await ctx.request('topic.peek', args);
    msgs = r.msgs;
    draw();
    from.value = r.next ? String(r.next) : '';
    return `${r.msgs.length} ${args.subscription ? `pending message${r.msgs.length === 1 ? '' : 's'} of ${args.subscription}`
      : `retained message${r.msgs.length === 1 ? '' : 's'}`}` +
      (r.next ? `; more from seq ${r.next} (press Peek again)` : '') + ' · nothing was delivered or acknowledged';
  });
  return el('div', {}, el('h2', {}, 'Peek ', el('small', {text: 'retained messages, or what a push subscription has pending'})),
    el('div', {class: 'toolbar'}, page.peekFrom, el('label', {}, 'max ', max), from, el('label', {}, hex, ' hex'),
      button(ctx, 'topic-peek-go', 'Peek', go)), out, t.wrap);
}

function createSection(ctx) {
  const {el} = ctx;
  const name = el('input', {id: 'sub-name', placeholder: 'name'});
  const kind = el('select', {id: 'sub-kind'}, ...['queue', 'push', 'http'].map((k) => el('option', {value: k, text: k})));
  const target = el('input', {id: 'sub-target', placeholder: 'queue name or http URL'});
  const tags = el('input', {id: 'sub-tags', placeholder: 'filter tags, comma separated'});
  const keys = el('input', {id: 'sub-keys', placeholder: 'binding keys, comma separated'});
  const from = el('select', {id: 'sub-from'}, el('option', {value: 'latest', text: 'from now on'}),
    el('option', {value: 'earliest', text: 'from the oldest retained'}));
  const out = el('p', {id: 'sub-create-result', class: 'result', hidden: ''});
  const list = (s) => s.split(',').map((x) => x.trim()).filter(Boolean);
  const go = () => run(ctx, out, 'subscription.create', async () => {
    const endpoint = kind.value === 'queue' ? {queue: target.value} : kind.value === 'http' ? {http: target.value} : {push: true};
    const args = {topic: page.name, name: name.value, endpoint, from: from.value};
    if (list(tags.value).length) args.filter_tags = list(tags.value);
    if (list(keys.value).length) args.binding_keys = list(keys.value);
    await ctx.request('subscription.create', args);
    await load(ctx);
    return `Created subscription ${name.value}.`;
  });
  return el('div', {}, el('h2', {text: 'Create a subscription'}),
    el('div', {class: 'toolbar'}, name, kind, target, tags, keys, from, button(ctx, 'sub-create', 'Create', go)), out);
}

function mount(view, ctx, [name]) {
  const {el} = ctx;
  const subs = table(ctx, 'topic-subs', ['subscription', 'endpoint', 'filter', 'pending (lag)', 'matched', 'acked',
                                         'failed', 'rewind to / delete']);
  page = {name, opened: Date.now(), cards: el('div', {class: 'cards', id: 'topic-cards'}), subs: subs.body,
          threshold: el('input', {id: 'lag-threshold', class: 'short', type: 'number', min: '0', value: '1000'}),
          peekFrom: el('select', {id: 'topic-peek-from'}),
          subResult: el('p', {id: 'sub-result', class: 'result', hidden: ''}),
          subsEmpty: el('p', {class: 'empty', text: 'No subscriptions: published messages are only retained.'}),
          more: el('p', {class: 'muted', hidden: ''})};
  view.append(el('p', {}, el('a', {href: ctx.href('topics'), text: '‹ Topics'})),
    el('h2', {class: 'object'}, 'Topic ', el('span', {id: 'topic-name', text: name})),
    page.cards, publishSection(ctx),
    el('h2', {}, 'Subscriptions ', el('small', {}, 'pending above ', page.threshold, ' is highlighted')),
    subs.wrap, page.subsEmpty, page.more, page.subResult, createSection(ctx), peekSection(ctx));
  const refresh = () => ctx.act(`topic ${name}`, () => load(ctx));
  refresh();
  ctx.every(2000, refresh);
}

export default {route: 'topic', nav: null, navFor: 'topics', mount};
