"""webhook_cluster_test.py: a change of leader during webhook delivery loses
nothing. Three real mqhubd nodes (each loading webhook.so), one http
subscription to a local receiver that holds every POST 0.3 s (so POSTs are in
flight when the leader changes). Two rounds of 150 messages:
  transfer  after 50 publishes (and 10 POSTs seen), cluster.transfer moves
            the leadership; the old leader keeps running as a follower (its
            plugin is told NOT_LEADER and stops; the new one's takes over)
  kill      after 50 publishes (and 10 POSTs), the leader is SIGKILLed
Every publish answered ok must reach the receiver at least once, and the
subscription ends with nothing pending.
Usage: webhook_cluster_test.py <mqhubd>"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from whook import Closed, Hub, Receiver, wait_for  # noqa: E402

ROUND = 150
CHANGE_AFTER = 50


def change_leader(hub, node, how):
    """Move the leadership away from @node: 'transfer' or 'kill'."""
    if how == "kill":
        node.kill()
        return
    target = next(nd for nd in hub.nodes if nd is not node and nd.running())
    c = node.conn()
    try:
        r = c.call("cluster.transfer", node=target.id)
        assert r.get("ok"), r
    finally:
        c.close()


def publish_round(hub, node, rx, base, how):
    """Publish ROUND messages from @base on, following the leader, changing it
    (@how) midway; the msg_ids answered ok."""
    c, acked, i, changed = node.conn(), {}, 0, None
    seen0 = rx.count("/hold")
    while i < ROUND:
        if i == CHANGE_AFTER and changed is None:
            # Mid-delivery: some POSTs done, some in flight, most still pending.
            wait_for("deliveries", lambda: rx.count("/hold") >= seen0 + 10, 30, 0.01)
            changed = time.time()
            print("%s: leader node %d after %d publishes and %d POSTs"
                  % (how, node.id, i, rx.count("/hold") - seen0))
            change_leader(hub, node, how)
        try:
            r = c.call("publish", topic="t", body=b"m%d" % (base + i))
        except (OSError, Closed):
            r = {"code": "CLOSED"}
        if r.get("ok"):
            acked[r["msg_id"]] = i
            i += 1
            continue
        if r.get("code") not in ("NOT_LEADER", "UNAVAILABLE", "TIMEOUT", "CLOSED"):
            raise AssertionError("publish: %r" % r)
        # TIMEOUT: the outcome is unknown; publishing again is fine here (the
        # receiver only has to see every publish answered ok).
        c.close()
        node = hub.leader(timeout=30)
        c = node.conn()
    c.close()
    print("%s: %d published; new leader node %d (%.2f s after the change)"
          % (how, len(acked), node.id, time.time() - changed))
    return acked, node


def check_delivered(node, rx, acked, how, t0):
    def seen():
        got = {h.headers.get("x-cmq-message-id") for h in rx.hits_for("/hold")}
        return all(m in got for m in acked)
    wait_for("every published message at the receiver", seen, 90, 0.2)
    c = node.conn()
    wait_for("nothing pending", lambda: c.must("subscription.get", topic="t", name="s")
             ["stats"]["pending"] == 0, 30, 0.2)
    c.close()
    hits = rx.hits_for("/hold")
    dup = len(hits) - len({h.headers["x-cmq-message-id"] for h in hits})
    print("%s: all %d published so far delivered (%.1f s); %d POSTs in all, %d duplicates "
          "(at-least-once across the changes)" % (how, len(acked), time.time() - t0,
                                                 len(hits), dup))


def main():
    mqhubd = sys.argv[1]
    rx = Receiver()
    hub = Hub(mqhubd, "scan_interval = 1, window = 16, timeout = 5, max_inflight = 16", n=3)
    ok = False
    try:
        leader = hub.leader()
        c = leader.conn()
        c.must("topic.create", name="t")
        c.must("subscription.create", topic="t", name="s",
               endpoint={"http": rx.url("/hold"), "format": "json"},
               retry={"strategy": "backoff", "interval_ms": 1000, "max_attempts": 1000})
        c.close()
        acked = {}
        for n, how in enumerate(("transfer", "kill")):
            t0 = time.time()
            got, leader = publish_round(hub, leader, rx, n * ROUND, how)
            acked.update(got)
            check_delivered(leader, rx, acked, how, t0)
        rx.close()
        hub.check_clean_exit()
        ok = True
    finally:
        if not ok:
            print(hub.logs(), file=sys.stderr)
        rx.close()
        hub.cleanup()
    print("webhook_cluster_test: ok")


if __name__ == "__main__":
    main()
