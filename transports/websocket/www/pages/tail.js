// pages/tail.js — #/tail: follow a topic live through a push subscription.
// "new tail subscription" creates dashboard-tail, an ephemeral push
// subscription from now on (deleted by the hub when this tab's session
// closes, docs/protocol.md "Ephemeral push subscriptions"); Start subscribes,
// Pause unsubscribes (messages wait on the subscription). The tail acks what
// it shows. Its state outlives a visit to another page.
import {bodyText} from '../mqhub.js';
import {formatTime} from '../format.js';

const tail = {topic: null, sub: null, running: false, count: 0, rows: []};
const $ = (s) => document.querySelector(s);

function row(ctx, m) {
  const {el} = ctx;
  return el('tr', {class: 'tail-msg'},
    el('td', {text: formatTime(m.published_at || Date.now())}),
    el('td', {class: 'num', text: String(m.seq)}), el('td', {text: m.key || ''}),
    el('td', {}, ...(m.tags || []).map((t) => el('span', {class: 'tag', text: t}))),
    el('td', {class: 'body', text: bodyText(m)}));
}

function addRow(ctx, m) {
  tail.rows.unshift(m);
  if (tail.rows.length > 200) tail.rows.pop();
  tail.count++;
  const body = $('#tail tbody');
  if (!body) return; // another page is shown: kept for the next visit
  body.prepend(row(ctx, m));
  while (body.children.length > 200) body.lastChild.remove();
  $('#tail-state').textContent = `${tail.count} messages`;
}

async function toggle(ctx) {
  await ctx.act('tail', async () => {
    if (tail.running) {
      await ctx.client.unsubscribe(tail.topic, tail.sub);
      tail.running = false;
      $('#tail-state').textContent = `paused after ${tail.count} messages`;
    } else {
      tail.topic = $('#tail-topic').value;
      tail.sub = $('#tail-sub').value;
      if (!tail.topic || !tail.sub) throw new Error('pick a topic and a push subscription first');
      await ctx.client.subscribe(tail.topic, tail.sub, {credit: 50}, (m) => addRow(ctx, m));
      tail.running = true;
      $('#tail-state').textContent = `following ${tail.topic}/${tail.sub}`;
    }
    $('#tail-toggle').textContent = tail.running ? 'Pause' : 'Resume';
  });
}

async function create(ctx) {
  await ctx.act('tail', async () => {
    const topic = $('#tail-topic').value;
    if (!topic) throw new Error('pick a topic first');
    await ctx.request('subscription.create', {topic, name: 'dashboard-tail', endpoint: {push: true},
                                              ephemeral: true, from: 'latest'})
      .catch((err) => { if (err.code !== 'EXISTS') throw err; });
    tail.topic = topic;
    tail.sub = 'dashboard-tail';
  });
}

function mount(view, ctx) {
  const {el} = ctx;
  const createBtn = el('button', {id: 'tail-create', type: 'button',
    title: 'creates dashboard-tail, a push subscription deleted when this tab closes', text: 'new tail subscription'});
  const toggleBtn = el('button', {id: 'tail-toggle', type: 'button', text: tail.running ? 'Pause' : tail.count ? 'Resume' : 'Start'});
  const topicSel = el('select', {id: 'tail-topic'});
  view.append(el('h2', {text: 'Live tail'}),
    el('div', {class: 'toolbar'}, el('label', {}, 'topic ', topicSel),
      el('label', {}, 'push subscription ', el('select', {id: 'tail-sub'})), createBtn, toggleBtn,
      el('span', {id: 'tail-state', class: 'muted', text: tail.count ? `${tail.count} messages` : ''})),
    el('p', {class: 'empty', id: 'tail-empty', hidden: ''}),
    el('div', {class: 'scroll'}, el('table', {id: 'tail'},
      el('thead', {}, el('tr', {}, ...['time', 'seq', 'key', 'tags', 'body'].map((h) => el('th', {text: h})))),
      el('tbody', {}, ...tail.rows.map((m) => row(ctx, m))))));
  toggleBtn.addEventListener('click', () => toggle(ctx));
  createBtn.addEventListener('click', () => create(ctx));
  topicSel.addEventListener('change', () => { tail.topic = topicSel.value; });
}

function stats(snap, ctx) {
  const {el} = ctx;
  const err = snap.errors && snap.errors['topic.list'];
  const empty = $('#tail-empty');
  empty.hidden = !err && snap.topics.length > 0;
  empty.textContent = err ? `Live tail needs topics: ${err}` : 'No topics yet.';
  const topicSel = $('#tail-topic');
  const topics = snap.topics.map((t) => t.name);
  if ([...topicSel.options].map((o) => o.value).join() !== topics.join())
    topicSel.replaceChildren(...topics.map((n) => el('option', {value: n, text: n})));
  if (tail.topic && topics.includes(tail.topic)) topicSel.value = tail.topic;
  const t = snap.topics.find((x) => x.name === topicSel.value);
  const subs = ((t && t.subscriptions) || []).map((s) => typeof s === 'string' ? {name: s} : s)
    .filter((s) => !s.endpoint || s.endpoint.push).map((s) => s.name);
  const subSel = $('#tail-sub');
  if ([...subSel.options].map((o) => o.value).join() !== subs.join())
    subSel.replaceChildren(...subs.map((n) => el('option', {value: n, text: n})));
  if (tail.sub && subs.includes(tail.sub)) subSel.value = tail.sub;
}

export default {route: 'tail', nav: 'Live tail', mount, stats};
