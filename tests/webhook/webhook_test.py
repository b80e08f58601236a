"""webhook_test.py: the webhook delivery plugin (docs/webhook.md) against a
real single-node mqhubd and a local HTTP receiver (whook.py), over loopback.

Scenarios, each on its own topic of one daemon (webhook timeout = 2 s,
max_inflight = 4):
  flaky      500 twice then 200: three POSTs, acknowledged once (stats)
  formats    JSON body fields and headers; SIMPLIFIED raw body; a body that
             is not UTF-8 (base64); a tag that would split the header
  dead       a closed port exhausts a short retry policy: dead_letter_queue
  slow       an endpoint that never answers, one that never accepts and one
             that dribbles its answer are each cut at the timeout
  bounded    20 messages to an endpoint holding each request 0.3 s: never
             more than max_inflight POSTs at once, all acknowledged
  replayed   a retry interval shorter than the POST: the redeliveries of a
             message whose POST still runs are not POSTed again
  hostile    a 100 MB answer, a redirect to file://, an answer that is not
             HTTP: the node keeps answering pings, its RSS stays bounded,
             nothing is followed
  paging     1003 http subscriptions over 3 topics (two list pages): each
             gets its message
  https      a receiver whose certificate the configured ca_file signed gets
             its message; one with a forged (self-signed) certificate gets
             nothing, the message is not acknowledged
  proxies    the daemon runs with http_proxy/https_proxy/ALL_PROXY pointing
             at a closed port: no delivery goes there (no proxy unless
             configured)
  shutdown   SIGTERM while a POST is in flight: a prompt, clean exit (no
             leak under ASan)
  lifecycle  a deleted subscription is no longer delivered; a URL changed
             with subscription.set is used from then on
Usage: webhook_test.py <mqhubd>"""
import base64
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from whook import Deaf, Hub, Receiver, free_port, make_pki, rss_kib, wait_for  # noqa: E402

TIMEOUT_S = 2
MAX_INFLIGHT = 4


def stats(c, topic, name):
    return c.must("subscription.get", topic=topic, name=name)["stats"]


def make_sub(c, topic, name, url, fmt="json", retry=None, dlq=None):
    c.must("topic.create", name=topic)
    kw = {"topic": topic, "name": name, "endpoint": {"http": url, "format": fmt}}
    if retry:
        kw["retry"] = retry
    if dlq:
        kw["dead_letter_queue"] = dlq
    c.must("subscription.create", **kw)


def test_flaky(c, rx):
    url = rx.url("/flaky")
    make_sub(c, "t_flaky", "s", url,
             retry={"strategy": "backoff", "interval_ms": 200, "max_attempts": 5})
    pub = c.must("publish", topic="t_flaky", body=b"third time lucky", tags=["a", "b"])
    wait_for("3 POSTs to /flaky", lambda: rx.count("/flaky") >= 3, 20)
    wait_for("the ack", lambda: stats(c, "t_flaky", "s")["acked_total"] == 1, 10)
    time.sleep(1.0)  # nothing more arrives once acknowledged
    st = stats(c, "t_flaky", "s")
    hits = rx.hits_for("/flaky")
    assert len(hits) == 3, "expected exactly 3 POSTs, got %d" % len(hits)
    assert st["acked_total"] == 1 and st["pending"] == 0 and st["dead_lettered_total"] == 0, st
    ids = {h.headers["x-cmq-request-id"] for h in hits}
    assert len(ids) == 3, "request ids must differ per POST: %r" % ids
    for h in hits:
        assert h.headers["x-cmq-message-id"] == pub["msg_id"], h.headers
    print("flaky: 3 POSTs (500, 500, 200), acked_total 1, pending 0; spacing %.2f s, %.2f s"
          % (hits[1].at - hits[0].at, hits[2].at - hits[1].at))


def test_formats(c, rx):
    make_sub(c, "t_fmt", "js", rx.url("/ok-json"))
    make_sub(c, "t_fmt2", "raw", rx.url("/ok-raw"), fmt="simplified")
    t0 = int(time.time())
    p1 = c.must("publish", topic="t_fmt", body="héllo wörld".encode(), tags=["red", "x,y\r\nX-Evil: 1"])
    p2 = c.must("publish", topic="t_fmt", body=b"\xff\xfe\x00binary")
    p3 = c.must("publish", topic="t_fmt2", body=b"raw \x00\xff body", tags=["only"])
    wait_for("2 JSON POSTs", lambda: len(rx.hits_for("/ok-json")) >= 2, 20)
    wait_for("1 raw POST", lambda: len(rx.hits_for("/ok-raw")) >= 1, 20)
    js = {h.headers["x-cmq-message-id"]: h for h in rx.hits_for("/ok-json")}
    h1 = js[p1["msg_id"]]
    assert h1.headers["Content-Type"] == "application/json", h1.headers
    doc = json.loads(h1.body)
    assert set(doc) == {"TopicOwner", "topicName", "subscriptionName", "msgId", "msgBody",
                        "publishTime"}, doc
    assert doc["topicName"] == "t_fmt" and doc["subscriptionName"] == "js", doc
    assert doc["msgId"] == p1["msg_id"] and doc["msgBody"] == "héllo wörld", doc
    assert abs(doc["publishTime"] - t0) <= 5, doc
    # A tag that would end the header line is escaped, never a header of its own.
    assert h1.headers["x-cmq-message-tag"] == "red,x%2Cy%0D%0AX-Evil: 1", h1.headers
    assert "X-Evil" not in h1.headers, h1.headers
    doc2 = json.loads(js[p2["msg_id"]].body)
    assert doc2["msgBodyEncoding"] == "base64", doc2
    assert base64.b64decode(doc2["msgBody"]) == b"\xff\xfe\x00binary", doc2
    assert "x-cmq-message-tag" not in js[p2["msg_id"]].headers
    raw = rx.hits_for("/ok-raw")[0]
    assert raw.body == b"raw \x00\xff body", raw.body
    assert raw.headers["Content-Type"] == "text/plain", raw.headers
    assert raw.headers["x-cmq-message-id"] == p3["msg_id"], raw.headers
    assert raw.headers["x-cmq-message-tag"] == "only", raw.headers
    wait_for("acks", lambda: stats(c, "t_fmt", "js")["acked_total"] == 2 and
             stats(c, "t_fmt2", "raw")["acked_total"] == 1, 10)
    print("formats: JSON fields/headers, base64 for non-UTF-8, SIMPLIFIED raw body: ok")


def test_dead(c, rx):
    closed = free_port()  # nothing listens there
    c.must("queue.create", name="dlq_dead")
    make_sub(c, "t_dead", "s", "http://127.0.0.1:%d/hook" % closed,
             retry={"strategy": "backoff", "interval_ms": 100, "max_attempts": 3}, dlq="dlq_dead")
    t0 = time.time()
    pub = c.must("publish", topic="t_dead", body=b"nobody home")
    wait_for("dead-lettered", lambda: stats(c, "t_dead", "s")["dead_lettered_total"] == 1, 20)
    r = c.must("receive", queue="dlq_dead", max=1, wait=5)
    assert len(r["msgs"]) == 1 and r["msgs"][0]["body"] == b"nobody home", r
    attrs = r["msgs"][0].get("attrs") or {}
    assert attrs.get("mqhub.topic") == "t_dead" and attrs.get("mqhub.subscription") == "s", r
    st = stats(c, "t_dead", "s")
    assert st["pending"] == 0 and st["acked_total"] == 0, st
    print("dead: connection refused x3 -> dead_letter_queue after %.2f s (msg %s)"
          % (time.time() - t0, pub["msg_id"]))


def test_slow(c, rx):
    c.must("queue.create", name="dlq_slow")
    # The retry interval is longer than the timeout, so each attempt is one POST.
    make_sub(c, "t_slow", "s", rx.url("/slow"),
             retry={"strategy": "backoff", "interval_ms": 3000, "max_attempts": 2},
             dlq="dlq_slow")
    c.must("publish", topic="t_slow", body=b"are you there")
    wait_for("the client to give up on /slow", lambda: len(rx.slow_closed_after) >= 1, 20)
    cut = rx.slow_closed_after[0]
    assert TIMEOUT_S - 0.5 <= cut <= TIMEOUT_S + 3, "cut after %.2f s, timeout %d s" % (
        cut, TIMEOUT_S)
    wait_for("dead-lettered", lambda: stats(c, "t_slow", "s")["dead_lettered_total"] == 1, 30)
    assert rx.count("/slow") == 2, rx.count("/slow")
    print("slow: POST cut after %.2f s (timeout %d s), 2 attempts, then dead-lettered"
          % (cut, TIMEOUT_S))
    # Never accepted (never read), and an answer dribbled one byte at a time.
    deaf = Deaf()
    try:
        retry = {"strategy": "backoff", "interval_ms": 3000, "max_attempts": 1}
        make_sub(c, "t_deaf", "s", deaf.url("/hook"), retry=retry)
        make_sub(c, "t_dribble", "s", rx.url("/dribble"), retry=retry)
        t0 = time.time()
        c.must("publish", topic="t_deaf", body=b"x" * 60000)
        c.must("publish", topic="t_dribble", body=b"y")
        wait_for("both dropped", lambda: stats(c, "t_deaf", "s")["dropped_total"] == 1 and
                 stats(c, "t_dribble", "s")["dropped_total"] == 1, 30)
        took = time.time() - t0
        wait_for("the dribbler to notice", lambda: len(rx.raw_after) >= 1, 20)
        dribbled = rx.raw_after[0][1]
        assert dribbled <= TIMEOUT_S + 3, "dribbled for %.2f s" % dribbled
        assert stats(c, "t_deaf", "s")["acked_total"] == 0
        print("slow: a port that never accepts and a dribbled answer: failed at the timeout "
              "(dribble cut after %.2f s), dropped after their one attempt (%.2f s)"
              % (dribbled, took))
    finally:
        deaf.close()


def test_bounded(c, rx):
    make_sub(c, "t_hold", "s", rx.url("/hold"))
    t0 = time.time()
    for i in range(20):
        c.must("publish", topic="t_hold", body=b"m%d" % i)
    wait_for("20 acks", lambda: stats(c, "t_hold", "s")["acked_total"] == 20, 60)
    took = time.time() - t0
    assert rx.max_active["/hold"] <= MAX_INFLIGHT, "max concurrent POSTs %d > %d" % (
        rx.max_active["/hold"], MAX_INFLIGHT)
    assert rx.count("/hold") == 20, rx.count("/hold")
    print("bounded: 20 POSTs held 0.3 s each, at most %d at once (max_inflight %d), %.2f s"
          % (rx.max_active["/hold"], MAX_INFLIGHT, took))


def test_replayed(c, rx):
    # Retried every 50 ms while each POST takes 0.3 s: the engine hands the
    # message back several times during the POST; only one POST is made.
    make_sub(c, "t_replay", "s", rx.url("/hold-replay"),
             retry={"strategy": "backoff", "interval_ms": 50, "max_attempts": 100})
    c.must("publish", topic="t_replay", body=b"once")
    wait_for("the ack", lambda: stats(c, "t_replay", "s")["acked_total"] == 1, 20)
    time.sleep(0.5)
    assert rx.count("/hold-replay") == 1, rx.count("/hold-replay")
    print("replayed: redeliveries during a running POST did not start another one")


def ping_ms(c):
    t = time.time()
    c.must("ping")
    return (time.time() - t) * 1000


def test_hostile(c, rx, pid):
    rss0 = rss_kib(pid)
    c.must("queue.create", name="dlq_redir")
    make_sub(c, "t_huge", "s", rx.url("/huge"))
    make_sub(c, "t_redir", "s", rx.url("/redirect"),
             retry={"strategy": "backoff", "interval_ms": 100, "max_attempts": 2}, dlq="dlq_redir")
    make_sub(c, "t_garbage", "s", rx.url("/garbage"),
             retry={"strategy": "backoff", "interval_ms": 100, "max_attempts": 2})
    for i in range(5):
        c.must("publish", topic="t_huge", body=b"big answer %d" % i)
    c.must("publish", topic="t_redir", body=b"go elsewhere")
    c.must("publish", topic="t_garbage", body=b"speak http")
    pings = []
    deadline = time.time() + 30
    while time.time() < deadline:
        pings.append(ping_ms(c))
        if stats(c, "t_huge", "s")["acked_total"] == 5 and \
                stats(c, "t_redir", "s")["dead_lettered_total"] == 1 and \
                stats(c, "t_garbage", "s")["dropped_total"] == 1:
            break
        time.sleep(0.05)
    assert stats(c, "t_huge", "s")["acked_total"] == 5, stats(c, "t_huge", "s")
    assert stats(c, "t_redir", "s")["dead_lettered_total"] == 1, stats(c, "t_redir", "s")
    assert stats(c, "t_garbage", "s")["acked_total"] == 0, stats(c, "t_garbage", "s")
    assert stats(c, "t_garbage", "s")["dropped_total"] == 1, stats(c, "t_garbage", "s")
    wait_for("every /huge writer to finish", lambda: len(rx.huge_sent) >= 5, 20)
    rss1 = rss_kib(pid)
    sent = max(rx.huge_sent)
    # The receiver may have pushed a few MB into the socket buffers; nowhere near 100 MB.
    assert sent < 32 << 20, "the client read %d bytes of a 100 MB answer" % sent
    assert rss1 - rss0 < 64 << 10, "RSS grew by %d KiB" % (rss1 - rss0)
    assert rx.count("/redirect") == 2 and not rx.hits_for("/etc/passwd"), rx.counts
    assert max(pings) < 2000, "a ping took %.0f ms" % max(pings)
    print("hostile: 5 x 100 MB answers cut (largest write %.1f MiB before the close), "
          "redirect to file:// not followed (2 attempts, dead-lettered), non-HTTP answer "
          "failed; RSS %d -> %d KiB; "
          "%d pings, max %.1f ms" % (sent / 1048576, rss0, rss1, len(pings), max(pings)))


def test_lifecycle(c, rx):
    make_sub(c, "t_life", "s", rx.url("/life-a"))
    c.must("publish", topic="t_life", body=b"one")
    wait_for("the first POST", lambda: rx.count("/life-a") == 1, 20)
    c.must("subscription.set", topic="t_life", name="s",
           endpoint={"http": rx.url("/life-b"), "format": "simplified"})
    time.sleep(2.5)  # the next scans pick the new URL up
    c.must("publish", topic="t_life", body=b"two")
    wait_for("the POST to the new URL", lambda: rx.count("/life-b") == 1, 20)
    assert rx.hits_for("/life-b")[0].body == b"two"
    c.must("subscription.delete", topic="t_life", name="s")
    time.sleep(2.5)
    c.must("subscription.create", topic="t_life", name="other",
           endpoint={"push": True})  # a push subscription is never POSTed
    c.must("publish", topic="t_life", body=b"three")
    time.sleep(2.5)
    assert rx.count("/life-a") == 1 and rx.count("/life-b") == 1, rx.counts
    print("lifecycle: URL change followed, deleted subscription no longer delivered")


def test_paging(c, rx):
    n = 1003  # subscription.list pages hold 1000
    t0 = time.time()
    for t in range(3):
        c.must("topic.create", name="t_many%d" % t)
    for i in range(n):
        c.must("subscription.create", topic="t_many%d" % (i % 3), name="s%04d" % i,
               endpoint={"http": rx.url("/many-%d" % i)})
    created = time.time() - t0
    r = c.must("subscription.list", endpoint="http", limit=1000)
    assert r["total"] >= n and len(r["subscriptions"]) == 1000, (r["total"], len(r["subscriptions"]))
    time.sleep(2.5)  # two scans: every subscription is followed
    t1 = time.time()
    for t in range(3):
        c.must("publish", topic="t_many%d" % t, body=b"fan out")

    def all_hit():
        with rx.lock:
            return all(rx.counts["/many-%d" % i] >= 1 for i in range(n))
    wait_for("a POST to each of the %d subscriptions" % n, all_hit, 120, 0.2)
    took = time.time() - t1
    for i in (0, 999, 1000, 1002):
        wait_for("ack of s%04d" % i, lambda: stats(c, "t_many%d" % (i % 3), "s%04d" % i)
                 ["acked_total"] == 1, 20)
    print("paging: %d http subscriptions (created in %.1f s), one message each delivered "
          "in %.2f s at max_inflight %d" % (n, created, took, MAX_INFLIGHT))


def test_https(c, good, forged):
    make_sub(c, "t_tls", "s", good.url("/ok-tls"))
    make_sub(c, "t_forged", "s", forged.url("/ok-tls"),
             retry={"strategy": "backoff", "interval_ms": 100, "max_attempts": 2})
    assert good.url("/").startswith("https://") and forged.url("/").startswith("https://")
    c.must("publish", topic="t_tls", body=b"over tls")
    c.must("publish", topic="t_forged", body=b"to an impostor")
    wait_for("the https ack", lambda: stats(c, "t_tls", "s")["acked_total"] == 1, 20)
    wait_for("the forged one dropped", lambda: stats(c, "t_forged", "s")["dropped_total"] == 1,
             20)
    assert good.hits_for("/ok-tls")[0].body.find(b"over tls") > 0
    assert forged.count("/ok-tls") == 0 and stats(c, "t_forged", "s")["acked_total"] == 0
    print("https: CA-signed receiver delivered; forged certificate refused (2 attempts, "
          "nothing sent)")


def main():
    mqhubd = sys.argv[1]
    pki = tempfile.mkdtemp(prefix="mqhub-webhook-pki-", dir=os.environ.get("TMPDIR", "/tmp"))
    make_pki(pki)
    rx = Receiver()
    tls_good = Receiver(tls=(os.path.join(pki, "server.pem"), os.path.join(pki, "server.key")))
    tls_forged = Receiver(tls=(os.path.join(pki, "forged.pem"), os.path.join(pki, "forged.key")))
    # Any delivery that went through a proxy from the environment would fail.
    closed = "http://127.0.0.1:%d" % free_port()
    hub = Hub(mqhubd, 'scan_interval = 1, window = 16, timeout = %d, max_inflight = %d, '
              'ca_file = "%s/ca.pem"' % (TIMEOUT_S, MAX_INFLIGHT, pki),
              env={"http_proxy": closed, "https_proxy": closed, "HTTPS_PROXY": closed,
                   "ALL_PROXY": closed, "all_proxy": closed})
    ok = False
    try:
        node = hub.leader()
        c = node.conn(timeout=30)
        test_flaky(c, rx)
        test_formats(c, rx)
        test_dead(c, rx)
        test_slow(c, rx)
        test_bounded(c, rx)
        test_replayed(c, rx)
        test_hostile(c, rx, node.proc.pid)
        test_lifecycle(c, rx)
        test_paging(c, rx)
        test_https(c, tls_good, tls_forged)
        make_sub(c, "t_bye", "s", rx.url("/slow-bye"))
        c.must("publish", topic="t_bye", body=b"in flight at shutdown")
        wait_for("the POST in flight", lambda: rx.count("/slow-bye") == 1, 20)
        c.close()
        t0 = time.time()
        hub.check_clean_exit()
        print("shutdown: clean exit in %.2f s with a POST in flight" % (time.time() - t0))
        rx.close()
        ok = True
    finally:
        if not ok:
            print(hub.logs(), file=sys.stderr)
        for r in (rx, tls_good, tls_forged):
            r.close()
        hub.cleanup()
        shutil.rmtree(pki, ignore_errors=True)
    print("webhook_test: ok")


if __name__ == "__main__":
    main()
