// charts.js — small canvas charts drawn from the stats pushes: a sparkline per
// queue and a line chart of rates. No library: plain 2D canvas.

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

// series: [{label, color, values}]; the y axis starts at 0.
export function lineChart(canvas, series, slots = 120) {
  const {ctx, w, h} = prepare(canvas);
  const pad = {l: 48, r: 10, t: 22, b: 18};
  const max = Math.max(1, ...series.flatMap((s) => s.values));
  ctx.font = '11px system-ui, sans-serif';
  ctx.fillStyle = '#6b7280';
  ctx.strokeStyle = '#e5e7eb';
  ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const y = pad.t + (h - pad.t - pad.b) * i / 4;
    ctx.beginPath(); ctx.moveTo(pad.l, y); ctx.lineTo(w - pad.r, y); ctx.stroke();
    ctx.fillText(formatNumber(max * (4 - i) / 4), 4, y + 4);
  }
  ctx.fillText(`last ${slots} s`, pad.l, h - 4);
  let lx = pad.l;
  for (const s of series) {
    ctx.fillStyle = s.color;
    ctx.fillText(`■ ${s.label}: ${formatNumber(s.values.at(-1) ?? 0)}/s`, lx, 14);
    lx += 150;
    ctx.strokeStyle = s.color;
    ctx.lineWidth = 2;
    if (s.values.length) path(ctx, s.values, max, pad.l, pad.t, w - pad.l - pad.r, h - pad.t - pad.b, slots);
  }
}

export function formatNumber(v) {
  if (v >= 1e6) return `${(v / 1e6).toFixed(1)}M`;
  if (v >= 1e4) return `${(v / 1e3).toFixed(1)}k`;
  return Number.isInteger(v) ? String(v) : v.toFixed(1);
}

export function formatAge(ms) {
  if (!ms) return '–';
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${(s / 3600).toFixed(1)} h`;
  return `${(s / 86400).toFixed(1)} d`;
}

// A countdown to an end @ms away, ticking by the second: "4:59", "1:02:03",
// "3 d 4 h" beyond a day, "ended" once it is over.
export function formatCountdown(ms) {
  if (ms <= 0) return 'ended';
  const s = Math.ceil(ms / 1000);
  const two = (n) => String(n).padStart(2, '0');
  if (s >= 86400) return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
  if (s >= 3600) return `${Math.floor(s / 3600)}:${two(Math.floor((s % 3600) / 60))}:${two(s % 60)}`;
  return `${Math.floor(s / 60)}:${two(s % 60)}`;
}
