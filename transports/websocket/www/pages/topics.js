// pages/topics.js — #/topics: the topics a page at a time (list.js: search,
// sort by name, retained or published messages), each linking
// to its page (#/topic/NAME), with its subscriptions (endpoint, filter,
// stats) as the newest stats snapshot holds them (its first 1000 topics).
import {pagedList} from './list.js';
import {filterSummary, endpointText, statsText, subFigures} from './subs.js';
import {formatNumber} from '../format.js';

// A queue endpoint's lag is its queue's backlog (subFigures).
function subStats(s) {
  const f = subFigures(s);
  if (!f.queue) return statsText(s.stats || s);
  return `pending ${formatNumber(f.pending)} (in queue ${f.queue}) · acked ${formatNumber(f.acked)}`;
}

function block(t, ctx) {
  const {el} = ctx;
  const snapTopic = ctx.last && ctx.last.topics.find((x) => x.name === t.name);
  const subs = ((snapTopic && snapTopic.subscriptions) || []).map((s) => typeof s === 'string' ? {name: s} : s);
  return el('div', {class: 'topic', 'data-topic': t.name},
    el('h3', {}, el('a', {href: ctx.href('topic', t.name), text: t.name})),
    el('div', {class: 'muted', text: statsText({retained: t.retained, published_total: t.published_total,
                                                first_seq: t.first_seq, last_seq: t.last_seq}) +
                                     (snapTopic ? ` · ${formatNumber(subs.length)} subscriptions` : '')}),
    subs.length ? el('div', {class: 'scroll'}, el('table', {},
      el('thead', {}, el('tr', {}, ...['subscription', 'endpoint', 'filter', 'stats (lag)'].map((h) => el('th', {text: h})))),
      el('tbody', {}, ...subs.map((s) => el('tr', {},
        el('td', {text: s.name}), el('td', {text: endpointText(s)}),
        el('td', {text: filterSummary(s)}), el('td', {text: subStats(s)})))))) : '');
}

function mount(view, ctx) {
  view.append(ctx.el('h2', {text: 'Topics and subscriptions'}));
  pagedList(view, ctx, {
    id: 'topics', op: 'topic.list', key: 'topics',
    sorts: [['name', 'name'], ['retained', 'retained'], ['published', 'published total']],
    empty: 'No topics yet. Create one with mqhub topic create NAME.',
    row: block,
  });
}

export default {route: 'topics', nav: 'Topics', mount};
