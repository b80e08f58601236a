"""history_test.py: stats.history and node.info, the WebSocket transport's
dashboard ops (docs/protocol.md "Stats pushes"), against a real mqhubd
(wshub.py): the hub's rings fill once a second with no page open, carry every
rate (sent, received, deleted, published, delivered, acked, redelivered,
dead-lettered) and gauge; a queue's own rings; queue.get's redelivered_total
and dead_lettered_total; node.info's figures (also over a hostile data dir:
symlink loop, link to /, sparse file, a tree past the walk's cap); and hostile
requests (a missing queue, a forged or huge queue name, before the token's
hello, a user without the grant, 300 history requests pipelined).
Usage: python3 history_test.py MQHUBD [unittest args]."""
import asyncio
import json
import os
import sys
import time
import unittest

import websockets

from wshub import Hub, parse_prometheus

MQHUBD = None
TOKEN = "root-token-for-history-test"
USER_TOKEN = "alice-token-for-history-test"
MONITOR_TOKEN = "watch-token-for-history-test"


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


class Json:
    """A JSON-subprotocol connection with request ids; pushes are kept."""

    def __init__(self, ws):
        self.ws, self.next_id, self.pushes = ws, 1, []

    async def req(self, op, **args):
        rid = self.next_id
        self.next_id += 1
        await self.ws.send(json.dumps(dict(args, op=op, id=rid)))
        return await self.wait(rid)

    async def wait(self, rid):
        while True:
            msg = json.loads(await asyncio.wait_for(self.ws.recv(), 10))
            if msg.get("id") == rid:
                return msg
            self.pushes.append(msg)


async def connect(hub, token=TOKEN):
    ws = await websockets.connect(hub.url, subprotocols=["mqhub.v1.json"], max_size=None)
    c = Json(ws)
    if token is not None:
        r = await c.req("hello", version=1, token=token)
        assert r["ok"], r
    return c


def last(hist, field):
    """The newest per-second point's value of @field."""
    return hist["seconds"][-1][1 + hist["fields"].index(field)]


class History(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.hub = Hub(MQHUBD, token=TOKEN)

    @classmethod
    def tearDownClass(cls):
        rc = cls.hub.stop()
        cls.hub.cleanup()
        assert rc == 0, "mqhubd exit status %s" % rc

    async def wait_history(self, c, pred, what, queue=None, timeout=10):
        deadline = time.time() + timeout
        while True:
            h = await c.req("stats.history", **({"queue": queue} if queue else {}))
            self.assertTrue(h["ok"], h)
            if h["seconds"] and pred(h):
                return h
            if time.time() > deadline:
                self.fail("%s: not seen in %d s; newest point %s of %s" %
                          (what, timeout, h["seconds"][-1:], h["fields"]))
            await asyncio.sleep(0.3)

    def test_rates_and_rings(self):
        """Every figure of the hub's history moves with the load that makes it,
        without any stats subscriber; a queue's own rings; the counters of
        queue.get behind redelivered and dead-lettered."""
        async def go():
            c = await connect(self.hub)
            base = await self.wait_history(c, lambda h: True, "a first point")
            fields = base["fields"]
            for f in ("sent", "received", "deleted", "published", "delivered", "acked",
                      "redelivered", "dead_lettered", "backlog", "inflight", "delayed",
                      "pending"):
                self.assertIn(f, fields)
            before = {f: last(base, f) for f in fields}
            for name, attrs in (("h.dlq", {}), ("h.work", {"visibility_timeout": 1,
                                "dead_letter": {"queue": "h.dlq", "max_receives": 2}})):
                r = await c.req("queue.create", name=name, attrs=attrs)
                self.assertTrue(r["ok"], r)
            for i in range(5):
                self.assertTrue((await c.req("send", queue="h.work", body="m%d" % i))["ok"])
            r = await c.req("receive", queue="h.work", max=2)
            self.assertEqual(len(r["msgs"]), 2, r)
            r = await c.req("delete", queue="h.work", receipts=[r["msgs"][0]["receipt"]])
            self.assertTrue(r["ok"] and r["results"][0]["ok"], r)
            # The second one is left to time out: received again (a
            # redelivery), then moved to h.dlq at its third delivery.
            await asyncio.sleep(1.3)
            seen = 0
            deadline = time.time() + 10
            while time.time() < deadline:
                q = (await c.req("queue.get", name="h.work"))["stats"]
                if q["dead_lettered_total"] >= 1:
                    break
                r = await c.req("receive", queue="h.work", max=10)
                seen += len(r.get("msgs", []))
                await asyncio.sleep(1.2)
            q = (await c.req("queue.get", name="h.work"))["stats"]
            self.assertGreaterEqual(q["redelivered_total"], 1, q)
            self.assertGreaterEqual(q["dead_lettered_total"], 1, q)
            dlq = (await c.req("queue.get", name="h.dlq"))["stats"]
            self.assertGreaterEqual(dlq["ready"], q["dead_lettered_total"], dlq)
            # Push: a topic, a push subscription, 6 publishes, all acked.
            self.assertTrue((await c.req("topic.create", name="h.t"))["ok"])
            r = await c.req("subscription.create", topic="h.t", name="s",
                            endpoint={"push": True})
            self.assertTrue(r["ok"], r)
            r = await c.req("subscribe", topic="h.t", subscription="s", credit=100)
            self.assertTrue(r["ok"], r)
            for i in range(6):
                self.assertTrue((await c.req("publish", topic="h.t", body="p%d" % i))["ok"])
            got = []
            deadline = time.time() + 10
            while len(got) < 6 and time.time() < deadline:
                for p in c.pushes:
                    if p.get("push") == "messages":
                        got += p["msgs"]
                c.pushes = [p for p in c.pushes if p.get("push") != "messages"]
                if len(got) < 6:
                    try:
                        c.pushes.append(json.loads(await asyncio.wait_for(c.ws.recv(), 2)))
                    except asyncio.TimeoutError:
                        pass
            self.assertEqual(len(got), 6, got)
            r = await c.req("ack", topic="h.t", subscription="s",
                            seqs=[m["seq"] for m in got])
            self.assertTrue(r["ok"], r)

            def moved(h):
                d = {f: last(h, f) - before[f] for f in fields}
                return (d["sent"] >= 5 and d["received"] >= 3 and d["deleted"] >= 1
                        and d["published"] >= 6 and d["delivered"] >= 6 and d["acked"] >= 6
                        and d["redelivered"] >= 1 and d["dead_lettered"] >= 1)
            h = await self.wait_history(c, moved, "every counter moved")
            print("hub history: %d per-second points, %d per-minute, newest %s" %
                  (len(h["seconds"]), len(h["minutes"]), h["seconds"][-1]))
            ts = [p[0] for p in h["seconds"]]
            self.assertEqual(ts, sorted(ts))
            self.assertLess(abs(ts[-1] - time.time() * 1000), 5000)
            gaps = [b - a for a, b in zip(ts, ts[1:])]
            self.assertTrue(gaps and max(gaps) < 5000, gaps)
            self.assertGreaterEqual(len(h["minutes"]), 1)
            self.assertEqual(len(h["minutes"][-1]), 1 + len(fields))
            # Gauges: what queue.get says now (h.dlq holds the moved ones).
            qs = [(await c.req("queue.get", name=n))["stats"] for n in ("h.work", "h.dlq")]
            h = await self.wait_history(
                c, lambda h: last(h, "backlog") == sum(s["ready"] for s in qs), "backlog")
            # A queue's own rings.
            qh = await self.wait_history(c, lambda h: h["seconds"][-1][
                1 + h["fields"].index("sent")] >= 5, "queue h.work's rings", queue="h.work")
            for f in ("ready", "inflight", "delayed", "sent", "received", "deleted",
                      "redelivered", "dead_lettered"):
                self.assertIn(f, qh["fields"])
            self.assertGreaterEqual(last(qh, "dead_lettered"), 1)
            await c.ws.close()
            # The same counters in /metrics.
            status, text, _ = self.hub.http("/metrics", {"Authorization": "Bearer " + TOKEN})
            self.assertEqual(status, 200)
            fam = parse_prometheus(text)

            def value(family, **labels):
                return [v for _, l, v in fam[family]["samples"] if l == labels][0]
            self.assertGreaterEqual(value("mqhub_push_delivered_total"), 6)
            self.assertGreaterEqual(value("mqhub_queue_redelivered_total", queue="h.work"), 1)
            self.assertGreaterEqual(value("mqhub_queue_dead_lettered_total", queue="h.work"), 1)
            self.assertGreater(value("mqhub_data_dir_bytes"), 0)
            self.assertGreater(value("mqhub_disk_size_bytes"), value("mqhub_disk_free_bytes"))
        run(go())

    def test_review_fixes(self):
        """oldest_age_ms leaves delayed messages out; a queue-endpoint
        subscription's entry in the stats push carries its queue's figures."""
        async def go():
            c = await connect(self.hub)
            self.assertTrue((await c.req("queue.create", name="h.late"))["ok"])
            self.assertTrue((await c.req("send", queue="h.late", body="later", delay=600))["ok"])
            await asyncio.sleep(1.1)
            st = (await c.req("queue.get", name="h.late"))["stats"]
            self.assertEqual((st["delayed"], st["oldest_age_ms"]), (1, 0), st)
            self.assertTrue((await c.req("send", queue="h.late", body="now"))["ok"])
            await asyncio.sleep(0.3)
            st = (await c.req("queue.get", name="h.late"))["stats"]
            self.assertTrue(0 < st["oldest_age_ms"] < 1000, st)
            self.assertTrue((await c.req("queue.create", name="h.inbox"))["ok"])
            self.assertTrue((await c.req("topic.create", name="h.news"))["ok"])
            r = await c.req("subscription.create", topic="h.news", name="to-inbox",
                            endpoint={"queue": "h.inbox"})
            self.assertTrue(r["ok"], r)
            for i in range(3):
                self.assertTrue((await c.req("publish", topic="h.news", body="n%d" % i))["ok"])
            r = await c.req("receive", queue="h.inbox", max=1)
            self.assertTrue((await c.req("delete", queue="h.inbox",
                                         receipts=[r["msgs"][0]["receipt"]]))["ok"])
            self.assertTrue((await c.req("stats.subscribe", interval_ms=1000))["ok"])
            deadline = time.time() + 10
            while True:
                msg = c.pushes.pop(0) if c.pushes else json.loads(
                    await asyncio.wait_for(c.ws.recv(), 5))
                if msg.get("push") != "stats":
                    continue
                t = [x for x in msg["topics"] if x["name"] == "h.news"]
                eq = t and t[0]["subscriptions"][0].get("endpoint_queue")
                if eq == {"name": "h.inbox", "ready": 2, "inflight": 0, "delayed": 0,
                          "deleted_total": 1}:
                    break
                self.assertLess(time.time(), deadline, "endpoint_queue: %s" % eq)
            await c.ws.close()
        run(go())

    def test_node_info(self):
        """node.info: this node's figures, from this node."""
        async def go():
            c = await connect(self.hub)
            await asyncio.sleep(1.2)  # a first snapshot carries the raft figures
            r = await c.req("node.info")
            self.assertTrue(r["ok"], r)
            print("node.info:", {k: v for k, v in r.items() if k not in ("ok", "id")})
            self.assertEqual(r["node"], 1)
            self.assertEqual(r["role"], "leader")
            self.assertRegex(r["version"], r"^\d+\.\d+")
            self.assertGreater(r["uptime_ms"], 0)
            self.assertLess(abs(r["start_ms"] + r["uptime_ms"] - time.time() * 1000), 5000)
            self.assertGreater(r["rss_bytes"], 1 << 20)
            self.assertGreater(r["open_fds"], 3)
            self.assertGreater(r["data_bytes"], 0)
            self.assertGreater(r["disk_total_bytes"], r["disk_free_bytes"])
            self.assertGreater(r["disk_free_bytes"], 0)
            self.assertGreaterEqual(r["term"], 1)
            self.assertGreaterEqual(r["commit_index"], r["last_applied"])
            await c.ws.close()
        run(go())

    def test_node_info_hostile_data_dir(self):
        """node.info's data_bytes over a data dir an attacker (or a careless
        operator) filled: a symlink loop and a symlink to / are not followed,
        a sparse file counts what it takes, a tree past 10,000 entries is not
        walked (-1, and mqhub_data_dir_bytes absent), 200 node.info pipelined
        reuse one walk a second."""
        hub = Hub(MQHUBD, token=TOKEN)
        try:
            data = os.path.join(hub.dir, "data")
            os.symlink(".", os.path.join(data, "loop"))
            os.symlink("/", os.path.join(data, "root"))
            with open(os.path.join(data, "sparse"), "wb") as f:
                f.truncate(1 << 40)  # 1 TiB long, a few blocks on disk

            async def info():
                c = await connect(hub)
                r = await c.req("node.info")
                self.assertTrue(r["ok"], r)
                await c.ws.close()
                return r

            time.sleep(1.1)  # past the walk the hub made at start, if any
            small = run(info())["data_bytes"]
            print("data_bytes with a loop, a link to / and a 1 TiB sparse file:", small)
            self.assertGreater(small, 0)
            self.assertLess(small, 1 << 30)
            tree = os.path.join(data, "tree")
            os.mkdir(tree)
            for i in range(10001):
                open(os.path.join(tree, "f%05d" % i), "w").close()
            time.sleep(1.1)

            async def many():
                c = await connect(hub)
                t0 = time.time()
                for i in range(200):
                    await c.ws.send(json.dumps({"op": "node.info", "id": 5000 + i}))
                got = []
                while len(got) < 200:
                    msg = json.loads(await asyncio.wait_for(c.ws.recv(), 30))
                    if msg.get("id", 0) >= 5000:
                        got.append(msg)
                print("200 node.info pipelined over 10,001 files: %.2f s" % (time.time() - t0))
                await c.ws.close()
                return got
            for r in run(many()):
                self.assertTrue(r["ok"], r)
                self.assertEqual(r["data_bytes"], -1, r)
            time.sleep(1.1)
            status, text, _ = hub.http("/metrics", {"Authorization": "Bearer " + TOKEN})
            self.assertEqual(status, 200)
            self.assertNotIn("mqhub_data_dir_bytes ", text)
            self.assertIn("mqhub_disk_free_bytes ", text)
        finally:
            hub.cleanup()

    def test_hostile(self):
        """A missing queue, forged and huge names, before the hello, a user
        without the grant, 300 requests pipelined: each answered, the
        connection kept, nothing else disturbed."""
        async def go():
            root = await connect(self.hub)
            r = await root.req("stats.history", queue="no-such-queue")
            self.assertEqual(r["code"], "NOT_FOUND", r)
            for bad in (42, ["a"], {"x": 1}, "", "q" * 100000):
                r = await root.req("stats.history", queue=bad)
                self.assertEqual(r["code"], "BAD_REQUEST", (bad if len(str(bad)) < 20 else
                                                            "long", r))
            r = await root.req("stats.history", queue="bad name with spaces/")
            self.assertIn(r["code"], ("BAD_NAME", "BAD_REQUEST"), r)
            self.assertTrue((await root.req("ping"))["ok"])
            # 300 pipelined: all answered, in order of ids.
            ids = list(range(1000, 1300))
            for i in ids:
                await root.ws.send(json.dumps({"op": "stats.history", "id": i}))
            got = set()
            t0 = time.time()
            while len(got) < len(ids):
                msg = json.loads(await asyncio.wait_for(root.ws.recv(), 10))
                if msg.get("id") in ids:
                    self.assertTrue(msg["ok"], msg)
                    got.add(msg["id"])
            print("300 pipelined stats.history answered in %.2f s" % (time.time() - t0))
            # A scraper asking /metrics in a loop gathers a snapshot each time:
            # the per-second ring still takes about one point a second.
            n0 = len((await root.req("stats.history"))["seconds"])
            t0 = time.time()
            for _ in range(40):
                status, _, _ = self.hub.http("/metrics", {"Authorization": "Bearer " + TOKEN})
                self.assertEqual(status, 200)
                await asyncio.sleep(0.05)
            spent = time.time() - t0
            n1 = len((await root.req("stats.history"))["seconds"])
            print("40 scrapes in %.2f s: %d points added" % (spent, n1 - n0))
            self.assertLessEqual(n1 - n0, int(spent / 0.9) + 2)
            self.assertGreaterEqual(n1 - n0, 1)  # time still moves on
            # Before the token's hello.
            anon = await connect(self.hub, token=None)
            for op, args in (("stats.history", {}), ("stats.history", {"queue": "h.x"}),
                             ("node.info", {})):
                r = await anon.req(op, **args)
                self.assertEqual(r["code"], "UNAUTHORIZED", (op, r))
            await anon.ws.close()
            # A named user: its own queue's history, not the hub's nor another's.
            self.assertTrue((await root.req("queue.create", name="alice.q"))["ok"])
            self.assertTrue((await root.req("queue.create", name="other.q"))["ok"])
            r = await root.req("user.create", name="alice", token=USER_TOKEN,
                               grants=[{"verb": "send", "pattern": "alice.*"}])
            self.assertTrue(r["ok"], r)
            r = await root.req("user.create", name="watch", token=MONITOR_TOKEN,
                               grants=[{"verb": "monitor", "pattern": "*"}])
            self.assertTrue(r["ok"], r)
            u = await connect(self.hub, token=USER_TOKEN)
            self.assertEqual((await u.req("stats.history"))["code"], "FORBIDDEN")
            self.assertEqual((await u.req("node.info"))["code"], "FORBIDDEN")
            self.assertEqual((await u.req("stats.history", queue="other.q"))["code"],
                             "FORBIDDEN")
            r = await u.req("stats.history", queue="alice.q")
            self.assertTrue(r["ok"], r)
            await u.ws.close()
            m = await connect(self.hub, token=MONITOR_TOKEN)
            self.assertTrue((await m.req("stats.history"))["ok"])
            self.assertTrue((await m.req("node.info"))["ok"])
            await m.ws.close()
            await root.ws.close()
        run(go())


if __name__ == "__main__":
    MQHUBD = sys.argv.pop(1) if len(sys.argv) > 1 else os.environ.get("MQHUBD")
    unittest.main(verbosity=2)
