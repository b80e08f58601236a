// pages/common.js — pieces the object pages (queue, topic, scripts) share:
// run() shows the server's answer or refusal next to the button that asked,
// bodyPreview() shows a message body safely (text or hex, truncated; always
// textContent, never markup), attrsText() and parseAttrs() for "k=v" lines,
// card() for a labelled figure, table() for a header and rows.

const PREVIEW = 300; // characters of text, or bytes shown in hex

// Run @fn (async, resolving to a sentence); its answer or its error goes to
// @out (an element, scrolled into view), the error also to the red bar under
// @source.
export async function run(ctx, out, source, fn) {
  out.hidden = false;
  out.className = 'result';
  out.textContent = '…';
  let ok = false;
  try {
    out.textContent = await fn();
    ctx.showError(source, null);
    ok = true;
  } catch (err) {
    out.className = 'result bad';
    out.textContent = ctx.errorText(err);
    ctx.showError(source, ctx.errorText(err));
  }
  out.scrollIntoView({block: 'nearest'});
  return ok;
}

function bodyBytes(msg) {
  if (typeof msg.body_base64 === 'string') return Uint8Array.from(atob(msg.body_base64), (c) => c.charCodeAt(0));
  return new TextEncoder().encode(typeof msg.body === 'string' ? msg.body : '');
}

function hexDump(bytes) {
  return [...bytes.slice(0, PREVIEW)].map((b) => b.toString(16).padStart(2, '0')).join(' ') +
    (bytes.length > PREVIEW ? ` … (${bytes.length} bytes)` : '');
}

// A body as text (binary bodies and @hex as hex), cut at PREVIEW.
export function bodyPreview(msg, hex = false) {
  if (hex || typeof msg.body !== 'string') return hexDump(bodyBytes(msg));
  const s = msg.body;
  return s.length > PREVIEW ? `${s.slice(0, PREVIEW)}… (${s.length} characters)` : s;
}

export function attrsText(attrs) {
  return Object.entries(attrs || {}).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(' ');
}

// "k=v" per line (or separated by commas) into {k: v}; blank lines skipped.
export function parseAttrs(text) {
  const out = {};
  for (const part of text.split(/[\n,]/).map((s) => s.trim()).filter(Boolean)) {
    const i = part.indexOf('=');
    if (i < 1) throw new Error(`"${part}" is not key=value`);
    out[part.slice(0, i).trim()] = part.slice(i + 1).trim();
  }
  return out;
}

export function card(ctx, label, value, cls = '') {
  return ctx.el('div', {class: 'card'}, ctx.el('div', {class: 'label', text: label}),
    ctx.el('div', {class: `value ${cls}`, text: value}));
}

export function table(ctx, id, heads) {
  const body = ctx.el('tbody');
  const t = ctx.el('div', {class: 'scroll'}, ctx.el('table', {id},
    ctx.el('thead', {}, ctx.el('tr', {}, ...heads.map((h) => ctx.el('th', {text: h})))), body));
  return {wrap: t, body};
}

export function button(ctx, id, text, fn, cls = '') {
  const b = ctx.el('button', {type: 'button', id, class: cls, text});
  b.addEventListener('click', fn);
  return b;
}

// Make @parent's children the rows built by @build(item) for @items, keyed by
// @keyOf(item): a row whose markup did not change is kept as it is (so a
// button under the pointer, an input being typed in, stay where they are
// while the page refreshes every second). With @sig(item) rows are the same
// when their signatures are (for rows whose text ticks by itself, like a
// countdown). Returns the rows, in order.
export function syncRows(parent, items, keyOf, build, sig = null) {
  const old = new Map([...parent.children].map((r) => [r.dataset.key, r]));
  const rows = items.map((it) => {
    const key = keyOf(it), prev = old.get(key);
    if (sig && prev && prev.dataset.sig === sig(it)) return prev;
    const fresh = build(it);
    fresh.dataset.key = key;
    if (sig) fresh.dataset.sig = sig(it);
    return !sig && prev && prev.outerHTML === fresh.outerHTML ? prev : fresh;
  });
  if (rows.length !== parent.children.length || rows.some((r, i) => parent.children[i] !== r))
    parent.replaceChildren(...rows);
  return rows;
}
