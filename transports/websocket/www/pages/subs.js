// pages/subs.js — how the Topics and Topic pages describe a subscription:
// its endpoint, a summary of its filter and its numeric stats (for a queue
// endpoint: that queue's, see subFigures).
import {formatNumber} from '../format.js';

export function filterSummary(sub) {
  const parts = [];
  if (sub.filter_tags && sub.filter_tags.length) parts.push(`tags ${sub.filter_tags.join(', ')}`);
  if (sub.binding_keys && sub.binding_keys.length) parts.push(`keys ${sub.binding_keys.join(', ')}`);
  if (sub.filter_script) parts.push(`script ${sub.filter_script}`);
  return parts.join(' · ') || 'everything';
}

export function endpointText(sub) {
  const e = sub.endpoint || {};
  if (e.http) return `http ${e.http}${e.format === 'simplified' ? ' (simplified)' : ''}`;
  return e.queue ? `queue ${e.queue}` : e.push ? 'push' : '';
}

export function statsText(stats) {
  return Object.entries(stats || {}).filter(([, v]) => typeof v === 'number')
    .map(([k, v]) => `${k} ${formatNumber(v)}`).join(' · ');
}

// pending and acked of @sub (a subscription.get result or a snapshot entry):
// its own, or for a queue endpoint, which has none (its messages wait in the
// queue), the queue's backlog and deletes from the snapshot's endpoint_queue.
export function subFigures(sub, snapEntry) {
  const q = (snapEntry || sub).endpoint_queue;
  const s = sub.stats || sub;
  if (!(sub.endpoint && sub.endpoint.queue) || !q) return {pending: s.pending, acked: s.acked_total, queue: null};
  return {pending: (q.ready || 0) + (q.inflight || 0) + (q.delayed || 0), acked: q.deleted_total, queue: q.name};
}
