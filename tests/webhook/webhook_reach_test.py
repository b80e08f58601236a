"""webhook_reach_test.py: the webhook plugin's reach control, allow_networks /
deny_networks (docs/webhook.md "Reach"), against real single-node mqhubd
processes and a local HTTP receiver (whook.py), over loopback. No packet
leaves the machine: the addresses refused are refused before any connect.

Scenarios, one daemon each:
  default   no setting: the loopback receiver is delivered; URLs naming the
            cloud metadata address (169.254.169.254), the same address
            IPv4-mapped ([::ffff:169.254.169.254]) and 0.0.0.0 are refused
            at once (no connect timeout), dead-lettered after their attempts
  deny      deny_networks = "127.0.0.0/8,::1/128": the receiver gets nothing
            by address (127.0.0.1), by a host name resolving to it
            (localhost), or IPv4-mapped ([::ffff:127.0.0.1]); each message is
            dead-lettered; the log says why, rate-limited (a flood of
            refusals makes few lines)
  allow     allow_networks = "10.0.0.0/8", not holding the receiver: nothing
            delivered; then the daemon restarted with allow_networks naming
            127.0.0.0/8 delivers the same, still pending, message (a refusal
            is retried like any failure, so a config change repairs it)
Usage: webhook_reach_test.py <mqhubd>"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from whook import Hub, Receiver, wait_for  # noqa: E402

SHORT = {"strategy": "backoff", "interval_ms": 100, "max_attempts": 3}


def stats(c, topic, name):
    return c.must("subscription.get", topic=topic, name=name)["stats"]


def make_sub(c, topic, url, retry=SHORT, dlq=None):
    c.must("topic.create", name=topic)
    kw = {"topic": topic, "name": "s", "endpoint": {"http": url}, "retry": retry}
    if dlq:
        c.must("queue.create", name=dlq)
        kw["dead_letter_queue"] = dlq
    c.must("subscription.create", **kw)


def expect_dead(c, topic, dlq, body):
    wait_for("%s dead-lettered" % topic,
             lambda: stats(c, topic, "s")["dead_lettered_total"] == 1, 30)
    r = c.must("receive", queue=dlq, max=1, wait=5)
    assert len(r["msgs"]) == 1 and r["msgs"][0]["body"] == body, r
    st = stats(c, topic, "s")
    assert st["acked_total"] == 0 and st["pending"] == 0, st


def refusal_lines(node):
    return [ln for ln in node.read_log().splitlines()
            if "refused by allow_networks/deny_networks" in ln]


def run(mqhubd, cfg, fn):
    hub = Hub(mqhubd, "scan_interval = 1, timeout = 5, " + cfg)
    ok = False
    try:
        node = hub.leader()
        c = node.conn(timeout=30)
        fn(hub, node, c)
        c.close()
        hub.check_clean_exit()
        ok = True
    finally:
        if not ok:
            print(hub.logs(), file=sys.stderr)
        hub.cleanup()


def test_default(mqhubd, rx):
    def body(hub, node, c):
        make_sub(c, "t_ok", rx.url("/default-ok"))
        c.must("publish", topic="t_ok", body=b"internal services still work")
        wait_for("the loopback delivery", lambda: stats(c, "t_ok", "s")["acked_total"] == 1, 20)
        t0 = time.time()
        targets = {"t_meta": "http://169.254.169.254/latest/meta-data/",
                   "t_meta6": "http://[::ffff:169.254.169.254]/latest/meta-data/",
                   "t_zero": "http://0.0.0.0:%d/default-zero" % rx.port}
        for topic, url in targets.items():
            make_sub(c, topic, url, dlq="dlq_" + topic)
            c.must("publish", topic=topic, body=topic.encode())
        for topic in targets:
            expect_dead(c, topic, "dlq_" + topic, topic.encode())
        took = time.time() - t0
        # Refused before connecting: three attempts 100 ms apart, never the 5 s timeout.
        assert took < 4.5, "refusals took %.2f s" % took
        assert rx.count("/default-zero") == 0, rx.counts
        lines = refusal_lines(node)
        assert any("169.254.169.254" in ln for ln in lines), lines
        print("default: loopback delivered; 169.254.169.254, [::ffff:169.254.169.254] and "
              "0.0.0.0 refused and dead-lettered in %.2f s; %d log lines" % (took, len(lines)))
    run(mqhubd, "", body)


def test_deny(mqhubd, rx):
    def body(hub, node, c):
        t0 = time.time()
        targets = {"t_addr": rx.url("/deny-addr"),
                   "t_name": "http://localhost:%d/deny-name" % rx.port,
                   "t_mapped": "http://[::ffff:127.0.0.1]:%d/deny-mapped" % rx.port}
        for topic, url in targets.items():
            make_sub(c, topic, url, dlq="dlq_" + topic)
            c.must("publish", topic=topic, body=topic.encode())
        for topic in targets:
            expect_dead(c, topic, "dlq_" + topic, topic.encode())
        for path in ("/deny-addr", "/deny-name", "/deny-mapped"):
            assert rx.count(path) == 0, rx.counts
        # A hostile manager floods refusals: 30 messages, 3 attempts each.
        make_sub(c, "t_flood", rx.url("/deny-flood"),
                 retry={"strategy": "backoff", "interval_ms": 50, "max_attempts": 3})
        for i in range(30):
            c.must("publish", topic="t_flood", body=b"f%d" % i)
        wait_for("the flood dropped",
                 lambda: stats(c, "t_flood", "s")["dropped_total"] == 30, 30)
        assert rx.count("/deny-flood") == 0, rx.counts
        lines = refusal_lines(node)
        assert any("address 127.0.0.1 refused" in ln for ln in lines), lines
        # 99 refusals: one line per 10 s at most.
        took = time.time() - t0
        assert 1 <= len(lines) <= 1 + int(took / 10), "%d refusal lines in %.1f s:\n%s" % (
            len(lines), took, "\n".join(lines))
        print("deny: by address, by name (localhost) and IPv4-mapped: nothing received, "
              "dead-lettered; 99 refusals in %.1f s logged in %d line(s)" % (took, len(lines)))
    run(mqhubd, 'deny_networks = "127.0.0.0/8, ::1/128"', body)


def test_allow(mqhubd, rx):
    slow = {"strategy": "backoff", "interval_ms": 500, "max_attempts": 1000}
    hub = Hub(mqhubd, 'scan_interval = 1, timeout = 5, allow_networks = "10.0.0.0/8"')
    ok = False
    try:
        node = hub.leader()
        c = node.conn(timeout=30)
        make_sub(c, "t_allow", rx.url("/allow"), retry=slow)
        c.must("publish", topic="t_allow", body=b"after the fix")
        wait_for("a refusal", lambda: refusal_lines(node), 20)
        time.sleep(1.5)
        assert rx.count("/allow") == 0, rx.counts
        assert stats(c, "t_allow", "s")["acked_total"] == 0
        c.close()
        hub.check_clean_exit()
        # The operator fixes the setting; the message is still pending.
        cfg = os.path.join(node.dir, "config.lua")
        with open(cfg) as f:
            text = f.read()
        with open(cfg, "w") as f:
            f.write(text.replace('"10.0.0.0/8"', '"10.0.0.0/8,127.0.0.0/8"'))
        node.start()
        node = hub.leader()
        c = node.conn(timeout=30)
        wait_for("the delivery after the fix",
                 lambda: stats(c, "t_allow", "s")["acked_total"] == 1, 30)
        assert rx.count("/allow") == 1, rx.counts
        c.close()
        hub.check_clean_exit()
        ok = True
        print("allow: a receiver outside allow_networks got nothing; after the setting "
              "was fixed and the daemon restarted, the pending message was delivered")
    finally:
        if not ok:
            print(hub.logs(), file=sys.stderr)
        hub.cleanup()


def main():
    mqhubd = sys.argv[1]
    rx = Receiver()
    try:
        test_default(mqhubd, rx)
        test_deny(mqhubd, rx)
        test_allow(mqhubd, rx)
    finally:
        rx.close()
    print("webhook_reach_test: ok")


if __name__ == "__main__":
    main()
