// pages/list.js — the paged, searchable, sortable list the Queues and Topics
// pages share: one `queue.list` / `topic.list` request with `stats: true`,
// `match`, `sort`, `desc`, `offset`, `limit` per refresh (docs/protocol.md
// "Lists with stats"), so 10,000 names cost the browser and the hub one page
// of rows, never a request per name. Start from pagedList(). The search,
// sort and page outlive a visit to another page (kept per list id).

import {syncRows} from './common.js';

const saved = new Map(); // list id -> {match, sort, desc, offset, limit}

// opts: {id, op, key (reply field), sorts: [[value, label]], columns: [label]
// (a table #id; without columns a <div id=id> holds the rows), row(item, ctx)
// -> <tr> (or any element), empty: text, refreshMs, onRows(items) before the
// rows are made, drawn(items, rows) after (rows unchanged since the last
// refresh are kept: common.js syncRows)}. Returns {refresh()}.
export function pagedList(view, ctx, opts) {
  const {el} = ctx;
  const st = saved.get(opts.id) || {match: '', sort: opts.sorts[0][0], desc: false, offset: 0, limit: 50};
  saved.set(opts.id, st);
  const search = el('input', {id: `${opts.id}-search`, type: 'search', placeholder: 'search names', value: st.match});
  const sort = el('select', {id: `${opts.id}-sort`},
    ...opts.sorts.map(([v, label]) => el('option', {value: v, text: label, selected: v === st.sort ? '' : null})));
  const desc = el('input', {id: `${opts.id}-desc`, type: 'checkbox', checked: st.desc ? '' : null});
  const size = el('select', {id: `${opts.id}-limit`},
    ...[20, 50, 100, 500].map((n) => el('option', {value: String(n), text: `${n} a page`, selected: n === st.limit ? '' : null})));
  const prev = el('button', {id: `${opts.id}-prev`, type: 'button', text: '‹ prev'});
  const next = el('button', {id: `${opts.id}-next`, type: 'button', text: 'next ›'});
  const range = el('span', {id: `${opts.id}-range`, class: 'muted'});
  const body = opts.columns ? el('tbody') : el('div', {id: opts.id});
  const holder = opts.columns ? el('div', {class: 'scroll'}, el('table', {id: opts.id},
    el('thead', {}, el('tr', {}, ...opts.columns.map((h) => el('th', {text: h})))), body)) : body;
  const empty = el('p', {class: 'empty', id: `${opts.id}-empty`, hidden: ''});
  view.append(el('div', {class: 'toolbar'}, search, el('label', {}, 'sort ', sort),
      el('label', {}, desc, ' descending'), size, prev, next, range),
    holder, empty);
  let seq = 0; // answers of older requests (a slow page behind a new search) are dropped
  async function refresh() {
    const mine = ++seq;
    await ctx.act(opts.op, async () => {
      const r = await ctx.request(opts.op, {stats: true, match: st.match || undefined, sort: st.sort,
                                            desc: st.desc, offset: st.offset, limit: st.limit});
      if (mine !== seq) return;
      const items = r[opts.key];
      if (st.offset > 0 && st.offset >= r.total) { // the list shrank under the page
        st.offset = Math.max(0, r.total - st.limit);
        refresh();
        return;
      }
      if (opts.onRows) opts.onRows(items);
      const rows = syncRows(body, items, (it) => it.name, (it) => opts.row(it, ctx));
      if (opts.drawn) opts.drawn(items, rows);
      range.textContent = r.total ? `${st.offset + 1}–${st.offset + items.length} of ${r.total}` : '0 of 0';
      prev.disabled = st.offset === 0;
      next.disabled = st.offset + items.length >= r.total;
      empty.hidden = r.total > 0;
      empty.textContent = st.match ? `Nothing matches "${st.match}".` : opts.empty;
    });
  }
  let timer = null;
  search.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(() => { st.match = search.value; st.offset = 0; refresh(); }, 200);
  });
  sort.addEventListener('change', () => { st.sort = sort.value; st.offset = 0; refresh(); });
  desc.addEventListener('change', () => { st.desc = desc.checked; st.offset = 0; refresh(); });
  size.addEventListener('change', () => { st.limit = Number(size.value); st.offset = 0; refresh(); });
  prev.addEventListener('click', () => { st.offset = Math.max(0, st.offset - st.limit); refresh(); });
  next.addEventListener('click', () => { st.offset += st.limit; refresh(); });
  refresh();
  ctx.every(opts.refreshMs || 1000, refresh);
  return {refresh};
}
