// charts.js — small canvas charts, no library (plain 2D canvas): a sparkline,
// a line chart of the last N samples (lineChart), and a chart on a time axis
// (timeChart) for the hub's history rings. historyRates() turns a
// stats.history answer (docs/protocol.md: {fields, seconds, minutes}, counters
// as they are) into per-second rates and gauges a chart can draw.
// Numbers are formatted by format.js.
import {formatNumber, formatRate} from './format.js';

function prepare(canvas) {
  const ratio = globalThis.devicePixelRatio || 1;
  const w = canvas.clientWidth || canvas.width, h = canvas.clientHeight || canvas.height;
  if (canvas.width !== Math.round(w * ratio)) canvas.width = Math.round(w * ratio);
  if (canvas.height !== Math.round(h * ratio)) canvas.height = Math.round(h * ratio);
  const ctx = canvas.getContext('2d');
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, w, h);
  return {ctx, w, h};
}

function path(ctx, values, max, x0, y0, w, h, slots) {
  ctx.beginPath();
  values.forEach((v, i) => {
    const x = x0 + (slots <= 1 ? w : (i + slots - values.length) * w / (slots - 1));
    const y = y0 + h - (max > 0 ? v / max * h : 0);
    if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
  });
  ctx.stroke();
}

export function sparkline(canvas, values, color = '#2563eb', slots = 120) {
  const {ctx, w, h} = prepare(canvas);
  if (values.length === 0) return;
  const max = Math.max(1, ...values);
  ctx.strokeStyle = color;
  ctx.lineWidth = 1.5;
  path(ctx, values, max, 1, 2, w - 2, h - 4, slots);
}

// The y grid with @max's labels; returns the plot area.
function grid(ctx, w, h, max, fmt) {
  const pad = {l: 52, r: 10, t: 22, b: 18};
  ctx.font = '11px system-ui, sans-serif';
  ctx.fillStyle = '#6b7280';
  ctx.strokeStyle = '#e5e7eb';
  ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const y = pad.t + (h - pad.t - pad.b) * i / 4;
    ctx.beginPath(); ctx.moveTo(pad.l, y); ctx.lineTo(w - pad.r, y); ctx.stroke();
    ctx.fillText(fmt(max * (4 - i) / 4), 4, y + 4);
  }
  return {x: pad.l, y: pad.t, w: w - pad.l - pad.r, h: h - pad.t - pad.b, bottom: h - 4};
}

// The legend across the top: "■ label: last value".
function legend(ctx, series, fmt, x0) {
  let lx = x0;
  for (const s of series) {
    ctx.fillStyle = s.color;
    const text = `■ ${s.label}: ${fmt(s.last ?? 0)}`;
    ctx.fillText(text, lx, 14);
    lx += Math.max(110, ctx.measureText(text).width + 16);
  }
}

// series: [{label, color, values}], one value per second; the y axis starts at 0.
export function lineChart(canvas, series, slots = 120) {
  const {ctx, w, h} = prepare(canvas);
  const max = Math.max(1, ...series.flatMap((s) => s.values));
  const area = grid(ctx, w, h, max, formatNumber);
  ctx.fillText(`last ${slots} s`, area.x, area.bottom);
  legend(ctx, series.map((s) => ({...s, last: s.values.at(-1)})), formatRate, area.x);
  for (const s of series) {
    ctx.strokeStyle = s.color;
    ctx.lineWidth = 2;
    if (s.values.length) path(ctx, s.values, max, area.x, area.y, area.w, area.h, slots);
  }
}

// A chart on a time axis: series [{label, color, points: [[t ms, value]]}]
// over the @spanMs before @now; @fmt formats the axis and legend (formatRate
// for rates, formatNumber for gauges). The canvas gets data-points = the
// number of points drawn (what a test can read).
export function timeChart(canvas, series, {spanMs, now = Date.now(), fmt = formatRate, label = ''} = {}) {
  const {ctx, w, h} = prepare(canvas);
  const from = now - spanMs;
  const shown = series.map((s) => ({...s, points: s.points.filter(([t]) => t >= from && t <= now)}));
  const max = Math.max(1, ...shown.flatMap((s) => s.points.map(([, v]) => v)));
  const area = grid(ctx, w, h, max, fmt === formatRate ? formatNumber : fmt);
  ctx.fillText(label, area.x, area.bottom);
  const clock = (t) => new Date(t).toTimeString().slice(0, 5);
  ctx.fillText(clock(from), area.x + 120, area.bottom);
  ctx.fillText(clock(now), area.x + area.w - 32, area.bottom);
  legend(ctx, shown.map((s) => ({...s, last: s.points.at(-1)?.[1]})), fmt, area.x);
  let drawn = 0;
  for (const s of shown) {
    ctx.strokeStyle = s.color;
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    s.points.forEach(([t, v], i) => {
      const x = area.x + (t - from) / spanMs * area.w;
      const y = area.y + area.h - v / max * area.h;
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.stroke();
    drawn += s.points.length;
  }
  canvas.dataset.points = String(drawn);
}

// From a stats.history answer, the rows of @which ('seconds' | 'minutes') as
// {field: [[t, value]]}: counters (names in @counters) become per-second
// rates between consecutive points (a counter that went down — a restart, a
// new leader — gives no point), the other fields are kept as they are.
export function historyRates(hist, which, counters) {
  const rows = (hist && hist[which]) || [];
  const out = {};
  (hist ? hist.fields : []).forEach((f, k) => {
    const col = k + 1;
    out[f] = [];
    rows.forEach((row, i) => {
      if (!counters.includes(f)) { out[f].push([row[0], row[col]]); return; }
      if (i === 0) return;
      const prev = rows[i - 1], dt = (row[0] - prev[0]) / 1000;
      if (dt > 0 && row[col] >= prev[col]) out[f].push([row[0], (row[col] - prev[col]) / dt]);
    });
  });
  return out;
}
