// pages/blocks.js — #/blocks: the active risk blocks (block.list, from each
// stats snapshot): attribute, value, reason, the script that set it, a
// countdown to its end (app.js ticks every .countdown), and "Lift", which
// deletes the block (block.delete) after a confirmation.
import {formatCountdown} from '../format.js';
import {syncRows} from './common.js';

function mount(view, ctx) {
  const {el} = ctx;
  view.append(el('h2', {}, 'Active blocks ', el('small', {text: 'messages whose attribute matches are refused until the block ends'})),
    el('div', {class: 'scroll'}, el('table', {id: 'blocks'},
      el('thead', {}, el('tr', {}, ...['attribute', 'value', 'reason', 'set by', 'ends in', ''].map((h) => el('th', {text: h})))),
      el('tbody'))),
    el('p', {class: 'empty', id: 'blocks-empty', hidden: ''}),
    el('p', {class: 'result', id: 'blocks-result', hidden: ''}));
}

async function lift(ctx, b) {
  const ok = await ctx.confirm({title: `Lift the block on ${b.attr}=${b.value}?`,
    text: `Messages carrying ${b.attr}=${b.value} will be accepted again at once (the block would end in ` +
          `${formatCountdown(b.until - Date.now())}).`, confirmText: 'Lift block'});
  if (!ok) return;
  await ctx.act('block.delete', async () => {
    await ctx.request('block.delete', {attr: b.attr, value: b.value});
    const res = document.querySelector('#blocks-result');
    res.hidden = false;
    res.textContent = `Lifted the block on ${b.attr}=${b.value}.`;
    document.querySelector(`tr.block[data-attr="${CSS.escape(b.attr)}"][data-value="${CSS.escape(b.value)}"]`)?.remove();
  });
}

function stats(snap, ctx) {
  const {el} = ctx;
  const err = snap.errors && snap.errors['block.list'];
  const blocks = snap.blocks || [];
  const empty = document.querySelector('#blocks-empty');
  empty.hidden = !err && blocks.length > 0;
  empty.textContent = err ? `Blocks are not available: ${err}` : 'No active blocks.';
  syncRows(document.querySelector('#blocks tbody'), blocks, (b) => `${b.attr}=${b.value}`, (b) => {
    const button = el('button', {type: 'button', class: 'lift danger', text: 'Lift'});
    button.addEventListener('click', () => lift(ctx, b));
    return el('tr', {class: 'block', 'data-attr': b.attr, 'data-value': b.value},
      el('td', {text: b.attr}), el('td', {text: b.value}), el('td', {class: 'reason', text: b.reason || ''}),
      el('td', {text: b.script || ''}),
      el('td', {class: 'countdown', 'data-until': String(b.until), text: formatCountdown(b.until - Date.now())}),
      el('td', {}, button));
  }, (b) => JSON.stringify(b));
}

export default {route: 'blocks', nav: 'Blocks', mount, stats};
