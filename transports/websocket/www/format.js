// format.js — the one place the dashboard turns numbers into text; every page
// formats counts, rates, bytes, durations, ages and times with these, so the
// same figure reads the same everywhere. Start from formatNumber (counts:
// "950", "12.3k", "4.5M") and formatRate ("12.3/s"). A missing value (null,
// undefined, NaN) is "–" in every formatter.

const MISSING = '–';
const missing = (v) => v === null || v === undefined || Number.isNaN(v);

// Counts: exact below 10,000, then "12.3k", "4.5M", "1.2G"; fractions get
// one decimal ("0.5").
export function formatNumber(v) {
  if (missing(v)) return MISSING;
  const a = Math.abs(v);
  if (a >= 1e9) return `${(v / 1e9).toFixed(1)}G`;
  if (a >= 1e6) return `${(v / 1e6).toFixed(1)}M`;
  if (a >= 1e4) return `${(v / 1e3).toFixed(1)}k`;
  return Number.isInteger(v) ? String(v) : v.toFixed(1);
}

// Per-second rates: "0/s", "3.5/s", "12.3k/s".
export function formatRate(v) {
  return missing(v) ? MISSING : `${formatNumber(v)}/s`;
}

// Sizes in bytes, binary units: "512 B", "1.5 KiB", "20.0 MiB".
export function formatBytes(v) {
  if (missing(v)) return MISSING;
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0, x = v;
  while (Math.abs(x) >= 1024 && i < units.length - 1) { x /= 1024; i++; }
  return i === 0 ? `${x} B` : `${x.toFixed(1)} ${units[i]}`;
}

// A length of time in ms: "850 ms", "4.2 s", "3 min 5 s", "2 h 10 min", "3 d 4 h".
export function formatDuration(ms) {
  if (missing(ms)) return MISSING;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.floor(s % 60)} s`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h} h ${m % 60} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

// The age of something (the oldest message): a duration, "–" when there is none (0).
export function formatAge(ms) {
  return ms ? formatDuration(ms) : MISSING;
}

// A countdown to an end @ms away, ticking by the second: "4:59", "1:02:03",
// "3 d 4 h" beyond a day, "ended" once it is over.
export function formatCountdown(ms) {
  if (missing(ms)) return MISSING;
  if (ms <= 0) return 'ended';
  const s = Math.ceil(ms / 1000);
  const two = (n) => String(n).padStart(2, '0');
  if (s >= 86400) return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
  if (s >= 3600) return `${Math.floor(s / 3600)}:${two(Math.floor((s % 3600) / 60))}:${two(s % 60)}`;
  return `${Math.floor(s / 60)}:${two(s % 60)}`;
}

// A point in time (ms since the epoch): local "2026-12-03 09:30:10".
export function formatTime(ms) {
  if (missing(ms) || !ms) return MISSING;
  const d = new Date(ms);
  const two = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ` +
         `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
}
