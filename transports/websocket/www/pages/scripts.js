// pages/scripts.js — #/scripts (and #/scripts/NAME with its source shown):
// the loaded Lua scripts (script.list, then script.get each for its users,
// counters and last error), a source view, loading a new version (script.load
// from a textarea; the answer names the version), delete (confirm; the
// server refuses while a hook or filter uses it and says which), and a
// backtest form (script.test over a topic's retained messages since a time)
// showing what the script would have done.
import {formatNumber, formatTime} from '../format.js';
import {run, table, button, syncRows} from './common.js';

let page = null;

async function load(ctx, p = page) { // p: the visit that asked
  const {el} = ctx;
  const r = await ctx.request('script.list', {});
  const full = await Promise.all(r.scripts.map((s) =>
    ctx.request('script.get', {name: s.name}).catch(() => ({...s, stats: s, users: []}))));
  p.scripts = full;
  syncRows(p.list, full, (s) => s.name, (s) => {
    const st = s.stats || {};
    return el('tr', {class: 'script', 'data-script': s.name},
      el('td', {}, el('a', {href: ctx.href('scripts', s.name), text: s.name})),
      el('td', {class: 'num', text: String(s.version)}),
      el('td', {text: (s.users || []).join(', ') || 'unused'}),
      el('td', {class: 'num', text: formatNumber(st.calls)}), el('td', {class: 'num', text: formatNumber(st.errors)}),
      el('td', {class: 'num', text: formatNumber(st.refused)}), el('td', {class: 'num', text: formatNumber(st.blocks)}),
      el('td', {class: 'error', text: st.last_error ? `${st.last_error} (${formatTime(st.last_error_at)})` : ''}));
  });
  p.empty.hidden = full.length > 0;
  const names = full.map((s) => s.name);
  if ([...p.testName.options].map((o) => o.value).join() !== names.join())
    p.testName.replaceChildren(...names.map((n) => el('option', {value: n, text: n})));
  if (p.selected) p.testName.value = p.selected;
}

function showSource(ctx, name) {
  const {el} = ctx;
  page.selected = name;
  const s = page.scripts.find((x) => x.name === name);
  if (!s) {
    page.source.replaceChildren(el('p', {class: 'empty', text: `No script named ${name}.`}));
    return;
  }
  const out = el('p', {id: 'script-delete-result', class: 'result', hidden: ''});
  const del = async () => {
    if (!await ctx.confirm({title: `Delete script ${name}?`, confirmText: 'Delete', typeName: name,
      text: `Script ${name} (version ${s.version}) and its hub.state are deleted. The server refuses while a hook ` +
            'or filter uses it.'})) return;
    if (await run(ctx, out, 'script.delete', async () => {
      await ctx.request('script.delete', {name});
      return `Deleted script ${name}.`;
    })) { page.selected = null; await load(ctx); }
  };
  const edit = () => { page.loadName.value = name; page.loadSource.value = s.source; page.loadSource.focus(); };
  page.source.replaceChildren(el('h2', {}, `Source of ${name} `, el('small', {text: `version ${s.version}`})),
    el('pre', {id: 'script-source', class: 'source', text: s.source}),
    el('div', {class: 'toolbar'}, button(ctx, 'script-edit', 'Edit as a new version', edit),
      button(ctx, 'script-delete', 'Delete…', del, 'danger')), out);
}

function loadSection(ctx) {
  const {el} = ctx;
  page.loadName = el('input', {id: 'script-name', placeholder: 'name'});
  page.loadSource = el('textarea', {id: 'script-text', rows: '10', spellcheck: 'false',
                                    placeholder: 'function on_message(msg) return true end'});
  const out = el('p', {id: 'script-load-result', class: 'result', hidden: ''});
  const go = () => run(ctx, out, 'script.load', async () => {
    const r = await ctx.request('script.load', {name: page.loadName.value, source: page.loadSource.value});
    await load(ctx);
    return `Loaded ${page.loadName.value}: version ${r.version}.`;
  });
  return el('div', {}, el('h2', {text: 'Load a script (a new version replaces the old one)'}),
    page.loadName, page.loadSource, el('div', {class: 'toolbar'}, button(ctx, 'script-load', 'Load', go)), out);
}

function testSection(ctx) {
  const {el} = ctx;
  page.testName = el('select', {id: 'test-script'});
  const topic = el('input', {id: 'test-topic', placeholder: 'topic'});
  const since = el('input', {id: 'test-since', type: 'datetime-local', step: '1',
    value: new Date(Date.now() - 3600e3 - new Date().getTimezoneOffset() * 60e3).toISOString().slice(0, 19)});
  const out = el('p', {id: 'test-result', class: 'result', hidden: ''});
  const blocks = table(ctx, 'test-blocks', ['attribute', 'value', 'reason', 'until']);
  blocks.wrap.hidden = true;
  const go = () => run(ctx, out, 'script.test', async () => {
    const r = await ctx.request('script.test', {name: page.testName.value, topic: topic.value,
                                                since: new Date(since.value).getTime() || 0});
    blocks.body.replaceChildren(...r.blocks.map((b) => el('tr', {}, el('td', {text: b.attr}),
      el('td', {text: b.value}), el('td', {text: b.reason || ''}), el('td', {text: formatTime(b.until)}))));
    blocks.wrap.hidden = r.blocks.length === 0;
    return `${r.kind} ${page.testName.value} over ${r.messages} messages: ${r.calls} calls, ${r.errors} errors, ` +
      `${r.refused} refused, ${r.matched} matched, ${r.publishes} publishes, ${r.blocks.length} blocks. Nothing was changed.`;
  });
  return el('div', {}, el('h2', {}, 'Backtest ', el('small', {text: 'what a script would have done on a topic\'s retained messages'})),
    el('div', {class: 'toolbar'}, page.testName, topic, el('label', {}, 'since ', since),
      button(ctx, 'test-go', 'Run backtest', go)), out, blocks.wrap);
}

function mount(view, ctx, [name]) {
  const {el} = ctx;
  const list = table(ctx, 'scripts', ['script', 'version', 'used by', 'calls', 'errors', 'refused', 'blocks', 'last error']);
  page = {list: list.body, scripts: [], selected: name || null, source: el('div', {id: 'script-view'}),
          empty: el('p', {class: 'empty', text: 'No scripts loaded. Load one below or with mqhub script load NAME FILE.'})};
  view.append(el('h2', {text: 'Scripts'}), list.wrap, page.empty, page.source, loadSection(ctx), testSection(ctx));
  ctx.act('script.list', async () => {
    await load(ctx);
    if (name) showSource(ctx, name);
  });
  ctx.every(2000, () => ctx.act('script.list', () => load(ctx)));
}

export default {route: 'scripts', nav: 'Scripts', mount};
