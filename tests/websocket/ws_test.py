"""ws_test.py: the WebSocket transport against a real mqhubd (docs/websocket.md).
Usage: python3 ws_test.py MQHUBD [unittest args]. Each test class starts its
own daemon on free loopback ports (wshub.py)."""
import asyncio
import base64
import json
import os
import ssl
import struct
import subprocess
import sys
import time
import unittest

import msgpack
import websockets

from wshub import Hub, parse_prometheus

MQHUBD = None


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def vm_peak(pid):
    """The peak virtual memory of process @pid in bytes (Linux), else None."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmPeak:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class Json:
    """A JSON-subprotocol connection with request ids."""

    def __init__(self, ws):
        self.ws, self.next_id, self.pushes = ws, 1, []

    async def req(self, op, **args):
        rid = self.next_id
        self.next_id += 1
        await self.ws.send(json.dumps(dict(args, op=op, id=rid)))
        while True:
            msg = json.loads(await asyncio.wait_for(self.ws.recv(), 10))
            if msg.get("id") == rid:
                return msg
            self.pushes.append(msg)


class Mp(Json):
    """The same over mqhub.v1.msgpack (binary frames)."""

    async def req(self, op, **args):
        rid = self.next_id
        self.next_id += 1
        await self.ws.send(msgpack.packb(dict(args, op=op, id=rid), use_bin_type=True))
        while True:
            data = await asyncio.wait_for(self.ws.recv(), 10)
            assert isinstance(data, bytes), "msgpack subprotocol answers in binary frames"
            msg = msgpack.unpackb(data, raw=False)
            if msg.get("id") == rid:
                return msg
            self.pushes.append(msg)


async def queue_ops(conn, name, body, check_body):
    """Every queue op of docs/protocol.md; returns nothing, asserts."""
    r = await conn.req("hello", version=1, client="ws_test")
    assert r["ok"] and r["server"] == "mqhub" and r["max_frame"] > 0, r
    assert (await conn.req("ping"))["ok"]
    assert (await conn.req("queue.create", name=name, attrs={"visibility_timeout": 5}))["ok"]
    assert (await conn.req("queue.set", name=name, attrs={"visibility_timeout": 7}))["ok"]
    got = await conn.req("queue.get", name=name)
    assert got["ok"] and got["attrs"]["visibility_timeout"] == 7, got
    assert name in (await conn.req("queue.list", prefix=name))["queues"]
    sent = await conn.req("send", queue=name, body=body, attrs={"k": "v"})
    assert sent["ok"] and sent["seq"] == 1, sent
    batch = await conn.req("send_batch", queue=name, msgs=[{"body": "b1"}, {"body": "b2"}])
    assert [x["seq"] for x in batch["results"]] == [2, 3], batch
    rec = await conn.req("receive", queue=name, max=3)
    assert len(rec["msgs"]) == 3, rec
    check_body(rec["msgs"][0])
    assert rec["msgs"][0]["attrs"] == {"k": "v"}
    cv = await conn.req("change_visibility", queue=name, receipt=rec["msgs"][1]["receipt"], timeout=60)
    assert cv["ok"] and cv["next_visible_at"] > 0, cv
    d = await conn.req("delete", queue=name, receipts=[m["receipt"] for m in rec["msgs"]])
    assert all(x["ok"] for x in d["results"]), d
    stale = await conn.req("delete", queue=name, receipts=["1.1.1"])
    assert stale["results"][0]["code"] == "INVALID_RECEIPT", stale
    assert (await conn.req("queue.rewind", name=name, seq=1))["ok"]
    assert (await conn.req("queue.purge", name=name))["ok"]
    bad = await conn.req("no.such.op")
    assert bad["ok"] is False and bad["code"] == "UNKNOWN_OP", bad
    missing = await conn.req("queue.get", name="nope-" + name)
    assert missing["code"] == "NOT_FOUND", missing
    assert (await conn.req("queue.delete", name=name))["ok"]


class Protocol(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.hub = Hub(MQHUBD, ws_extra=", send_buffer = 65536",
                      extra="limits { max_frame = 262144 }\n")

    @classmethod
    def tearDownClass(cls):
        rc = cls.hub.stop()
        cls.hub.cleanup()
        assert rc == 0, "mqhubd exit status %s" % rc

    def test_json_queue_ops(self):
        async def go():
            async with websockets.connect(self.hub.url, subprotocols=["mqhub.v1.json"]) as ws:
                self.assertEqual(ws.subprotocol, "mqhub.v1.json")

                def check(m):
                    self.assertEqual(m["body"], "héllo ✓")
                await queue_ops(Json(ws), "wsjson", "héllo ✓", check)
        run(go())

    def test_json_binary_body(self):
        async def go():
            async with websockets.connect(self.hub.url, subprotocols=["mqhub.v1.json"]) as ws:
                c = Json(ws)
                await c.req("queue.create", name="wsbin")
                await c.req("send", queue="wsbin", body_base64="AP/+")
                m = (await c.req("receive", queue="wsbin"))["msgs"][0]
                self.assertEqual(m["body_base64"], "AP/+")
                self.assertNotIn("body", m)
                bad = await c.req("send", queue="wsbin", body_base64="%%%")
                self.fail("bad base64 must close: %r" % bad)
        with self.assertRaises(websockets.ConnectionClosed) as cm:
            run(go())
        self.assertEqual(cm.exception.code, 1007)

    def test_msgpack_queue_ops(self):
        async def go():
            async with websockets.connect(self.hub.url, subprotocols=["mqhub.v1.msgpack"]) as ws:
                self.assertEqual(ws.subprotocol, "mqhub.v1.msgpack")

                def check(m):
                    self.assertEqual(m["body"], b"\x00\xffraw")
                await queue_ops(Mp(ws), "wsmp", b"\x00\xffraw", check)
        run(go())

    def test_bad_json_closes(self):
        async def go():
            async with websockets.connect(self.hub.url, subprotocols=["mqhub.v1.json"]) as ws:
                await ws.send("{not json")
                err = json.loads(await ws.recv())
                self.assertEqual(err["code"], "BAD_REQUEST")
                self.assertNotIn("id", err)
                await ws.recv()
        with self.assertRaises(websockets.ConnectionClosed) as cm:
            run(go())
        self.assertEqual(cm.exception.code, 1007)

    def test_bad_msgpack_closes(self):
        async def go():
            async with websockets.connect(self.hub.url, subprotocols=["mqhub.v1.msgpack"]) as ws:
                await ws.send(b"\xc1garbage")
                err = msgpack.unpackb(await ws.recv(), raw=False)
                self.assertEqual(err["code"], "BAD_REQUEST")
                await ws.recv()
        with self.assertRaises(websockets.ConnectionClosed) as cm:
            run(go())
        self.assertEqual(cm.exception.code, 1007)

    def test_huge_count_msgpack_closes(self):
        """A few bytes announcing a huge array or map: the size guard refuses
        it before msgpack-c allocates for the announced count (before the
        fix, 5 bytes made mqhubd reserve gigabytes). BAD_REQUEST without an
        id, close 1007, and the daemon serves the next connection."""
        frames = [b"\xdd\xff\xff\xff\xff",                           # array32 of 2^32-1
                  b"\xdd\x0f\xff\xff\xff",                           # array32 of 2^28-1
                  b"\xdf\x00\xff\xff\xff",                           # map32 of 2^24-1
                  b"\x82\xa2op\xa4ping\xa2id\xdd\x0f\xff\xff\xff"]  # inside a request
        proto = ["mqhub.v1.msgpack"]
        before = vm_peak(self.hub.proc.pid)
        for frame in frames:
            async def go():
                async with websockets.connect(self.hub.url, subprotocols=proto) as ws:
                    await ws.send(frame)
                    err = msgpack.unpackb(await ws.recv(), raw=False)
                    self.assertEqual(err["code"], "BAD_REQUEST")
                    self.assertEqual(err["error"],
                                     "the frame is not one complete MessagePack value")
                    self.assertNotIn("id", err)
                    await ws.recv()
            with self.assertRaises(websockets.ConnectionClosed) as cm:
                run(go())
            self.assertEqual(cm.exception.code, 1007, frame)

        async def healthy():
            async with websockets.connect(self.hub.url, subprotocols=proto) as ws:
                self.assertTrue((await Mp(ws).req("ping"))["ok"])
        run(healthy())
        self.assertIsNone(self.hub.proc.poll(), "mqhubd died")
        if before is not None:
            grew = vm_peak(self.hub.proc.pid) - before
            self.assertLess(grew, 512 << 20, "mqhubd reserved %d MiB" % (grew >> 20))

    def test_oversized_frame_closes(self):
        async def go():
            async with websockets.connect(self.hub.url, subprotocols=["mqhub.v1.json"],
                                          max_size=None) as ws:
                await ws.send(json.dumps({"op": "ping", "id": 1, "pad": "x" * 300000}))
                err = json.loads(await ws.recv())
                self.assertEqual(err["code"], "FRAME_TOO_LARGE")
                await ws.recv()
        with self.assertRaises(websockets.ConnectionClosed) as cm:
            run(go())
        self.assertEqual(cm.exception.code, 1009)

    def test_fragmented_message(self):
        async def go():
            async with websockets.connect(self.hub.url, subprotocols=["mqhub.v1.json"]) as ws:
                text = json.dumps({"op": "ping", "id": 9, "pad": "y" * 100000})
                await ws.send(iter([text[:40000], text[40000:80000], text[80000:]]))
                self.assertEqual(json.loads(await ws.recv()), {"id": 9, "ok": True})
        run(go())

    def test_slow_consumer_is_closed(self):
        async def go():
            async with websockets.connect(self.hub.url, subprotocols=["mqhub.v1.json"]) as c:
                fast = Json(c)
                await fast.req("queue.create", name="wsslow", attrs={"max_msg_size": 65536})
                await fast.req("send", queue="wsslow", body="z" * 60000)
            # A client that asks for ~36 MB of replies and reads nothing.
            ws = await websockets.connect(self.hub.url, subprotocols=["mqhub.v1.json"],
                                          max_queue=1, read_limit=4096, write_limit=1 << 20)
            closed = False
            try:
                for i in range(600):
                    await ws.send(json.dumps({"op": "receive", "id": i + 1, "queue": "wsslow",
                                              "visibility": 0}))
                await asyncio.sleep(5)  # the server gives up on it within a few seconds
                while True:
                    await asyncio.wait_for(ws.recv(), 10)
            except websockets.ConnectionClosed:
                closed = True
            self.assertTrue(closed)
        run(go())
        status, text, _ = self.hub.http("/metrics")
        fam = parse_prometheus(text)
        closed = fam["mqhub_websocket_slow_clients_closed_total"]["samples"][0][2]
        self.assertGreaterEqual(closed, 1)
        self.assertEqual(self.hub.http("/healthz")[0], 200)

    def test_stats_push(self):
        async def go():
            async with websockets.connect(self.hub.url, subprotocols=["mqhub.v1.json"]) as ws:
                c = Json(ws)
                await c.req("queue.create", name="wsstats")
                await c.req("send", queue="wsstats", body="1")
                r = await c.req("stats.subscribe", interval_ms=1000)
                self.assertTrue(r["ok"])
                self.assertEqual(r["interval_ms"], 1000)
                deadline = time.time() + 5
                while time.time() < deadline:
                    msg = c.pushes.pop(0) if c.pushes else json.loads(
                        await asyncio.wait_for(ws.recv(), 5))
                    if msg.get("push") == "stats":
                        q = [x for x in msg["queues"] if x["name"] == "wsstats"]
                        if q and q[0]["stats"]["ready"] == 1:
                            self.assertIn("cluster", msg)
                            return
                self.fail("no stats push with the queue")
        run(go())

    def test_push_subscription_with_credit(self):
        async def go():
            async with websockets.connect(self.hub.url, subprotocols=["mqhub.v1.json"]) as ws:
                c = Json(ws)
                if (await c.req("topic.create", name="wstopic")).get("code") == "UNKNOWN_OP":
                    self.skipTest("topics are not implemented in this build yet")
                r = await c.req("subscription.create", topic="wstopic", name="tail",
                                endpoint={"push": True})
                self.assertTrue(r["ok"], r)
                self.assertTrue((await c.req("subscribe", topic="wstopic", subscription="tail",
                                             credit=1))["ok"])
                for i in range(3):
                    self.assertTrue((await c.req("publish", topic="wstopic", body="m%d" % i))["ok"])
                got = []
                deadline = time.time() + 5
                while len(got) < 3 and time.time() < deadline:
                    msg = c.pushes.pop(0) if c.pushes else json.loads(
                        await asyncio.wait_for(ws.recv(), 5))
                    if msg.get("push") == "messages":
                        self.assertLessEqual(len(msg["msgs"]), 1, "credit window exceeded")
                        for m in msg["msgs"]:
                            got.append(m["body"])
                            await c.req("ack", topic="wstopic", subscription="tail", seqs=[m["seq"]])
                            await c.req("credit", topic="wstopic", subscription="tail", n=1)
                self.assertEqual(got, ["m0", "m1", "m2"])
        run(go())

    def test_http_endpoints(self):
        status, body, headers = self.hub.http("/healthz")
        self.assertEqual((status, body), (200, "ok\n"))
        status, body, _ = self.hub.http("/readyz")
        self.assertEqual(status, 200, body)
        self.assertTrue(body.startswith("ready"))
        status, body, headers = self.hub.http("/")
        self.assertEqual(status, 200)
        self.assertIn("script-src 'self'", headers["content-security-policy"])
        self.assertNotIn("<script>", body)
        status, _, headers = self.hub.http("/mqhub.js")
        self.assertIn("javascript", headers["content-type"])
        self.assertEqual(self.hub.http("/no-such-file")[0], 404)

    def test_metrics_parse(self):
        hook = ('function on_message(msg) if msg.body == "boom" then error("boom") end '
                'return true end')

        async def go():
            async with websockets.connect(self.hub.url, subprotocols=["mqhub.v1.json"]) as ws:
                c = Json(ws)
                r = await c.req("script.load", name="wscount", source=hook)
                self.assertTrue(r["ok"], r)
                await c.req("queue.create", name="wsmetrics", attrs={"hook": "wscount"})
                for body in ("x", "boom", "x"):
                    self.assertTrue((await c.req("send", queue="wsmetrics", body=body))["ok"])
                await c.req("topic.create", name="wsmtopic")
                r = await c.req("subscription.create", topic="wsmtopic", name="audit",
                                endpoint={"push": True})
                self.assertTrue(r["ok"], r)
                for _ in range(2):
                    self.assertTrue((await c.req("publish", topic="wsmtopic", body="p"))["ok"])
                # Scraped while this WebSocket and one TCP connection are open,
                # before and after requests of both transports.
                def scrape():
                    return asyncio.get_running_loop().run_in_executor(
                        None, self.hub.http, "/metrics")
                rd, tcp = await asyncio.open_connection("127.0.0.1", self.hub.tcp)
                try:
                    await asyncio.sleep(0.2)
                    before = (await scrape())[1]
                    for i, op in enumerate(("hello", "ping", "ping", "ping")):
                        body = msgpack.packb({"op": op, "id": i + 1, "version": 1})
                        tcp.write(struct.pack(">I", len(body)) + body)
                        n = struct.unpack(">I", await asyncio.wait_for(rd.readexactly(4), 5))[0]
                        reply = msgpack.unpackb(await rd.readexactly(n), raw=False)
                        self.assertTrue(reply["ok"], reply)
                    self.assertTrue((await c.req("ping"))["ok"])
                    return before, await scrape()
                finally:
                    tcp.close()
        before, (status, text, headers) = run(go())
        self.assertEqual(status, 200)
        self.assertIn("version=0.0.4", headers["content-type"])
        fam = parse_prometheus(text)

        def value(family, **labels):
            got = [v for _, l, v in fam[family]["samples"] if l == labels]
            self.assertEqual(len(got), 1, "%s%r in %r" % (family, labels, fam[family]))
            return got[0]
        self.assertEqual(value("mqhub_script_calls_total", script="wscount"), 3)
        self.assertEqual(value("mqhub_script_errors_total", script="wscount"), 1)
        self.assertEqual(fam["mqhub_script_calls_total"]["type"], "counter")
        self.assertGreaterEqual(value("mqhub_connections", transport="websocket"), 1)
        self.assertGreaterEqual(value("mqhub_connections", transport="tcp"), 1)
        self.assertGreaterEqual(value("mqhub_sessions_open", transport="tcp"), 1)
        # The client connection and the collector's own session.
        self.assertGreaterEqual(value("mqhub_sessions_open", transport="websocket"), 2)
        self.assertGreaterEqual(value("mqhub_raft_commit_index"), 1)
        self.assertGreaterEqual(value("mqhub_raft_applied_index"), 1)
        self.assertEqual(value("mqhub_topic_published_total", topic="wsmtopic"), 2)
        self.assertEqual(value("mqhub_subscription_matched_total", topic="wsmtopic",
                               subscription="audit"), 2)
        self.assertEqual(value("mqhub_subscription_pending", topic="wsmtopic",
                               subscription="audit"), 2)
        ready = [v for _, l, v in fam["mqhub_queue_messages"]["samples"]
                 if l == {"queue": "wsmetrics", "state": "ready"}]
        self.assertEqual(ready, [3.0])
        sent = [v for _, l, v in fam["mqhub_queue_sent_total"]["samples"] if l["queue"] == "wsmetrics"]
        self.assertEqual(sent, [3.0])
        self.assertEqual(fam["mqhub_queue_sent_total"]["type"], "counter")
        self.assertGreaterEqual(fam["mqhub_raft_term"]["samples"][0][2], 1)
        self.assertEqual(fam["mqhub_raft_is_leader"]["samples"][0][2], 1)
        hist = fam["mqhub_request_duration_seconds"]
        self.assertEqual(hist["type"], "histogram")
        old = parse_prometheus(before)["mqhub_request_duration_seconds"]["samples"]
        for transport in ("tcp", "websocket"):
            samples = [(n, l, v) for n, l, v in hist["samples"] if l["transport"] == transport]
            buckets = [v for n, _, v in samples if n.endswith("_bucket")]
            self.assertEqual(len(buckets), 13, transport)
            self.assertEqual(buckets, sorted(buckets), "histogram buckets are cumulative")
            count = [v for n, _, v in samples if n.endswith("_count")][0]
            self.assertEqual(buckets[-1], count)
            self.assertGreaterEqual([v for n, _, v in samples if n.endswith("_sum")][0], 0)
            was = [v for n, l, v in old
                   if n.endswith("_count") and l == {"transport": transport}][0]
            # tcp: hello + 3 pings; websocket: a ping and the scrape's snapshot.
            self.assertGreaterEqual(count - was, 4 if transport == "tcp" else 1, transport)
        self.assertIn("mqhub_connections", fam)
        self.assertGreaterEqual(fam["mqhub_requests_total"]["samples"][0][2], 4)


async def raw_handshake(port):
    """A WebSocket client by hand (asyncio streams), so that it can do what no
    library does: never answer a ping. Returns (reader, writer) after the 101."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(("GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                  "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqhub.v1.json\r\n\r\n"
                  % (port, key)).encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


def client_frame(opcode, payload):
    """One final client frame, masked (RFC 6455 5.3); payload under 126 bytes."""
    mask = os.urandom(4)
    return (bytes([0x80 | opcode, 0x80 | len(payload)]) + mask +
            bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))


async def read_frame(reader):
    """One server frame (servers do not mask): (opcode, payload)."""
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", await reader.readexactly(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", await reader.readexactly(8))[0]
    return b0 & 0x0F, await reader.readexactly(n)


class Keepalive(unittest.TestCase):
    """ping_interval 1 s, idle_timeout 3 s: the server pings a quiet client
    every second and hangs up one that has not answered for 3 s."""

    @classmethod
    def setUpClass(cls):
        cls.hub = Hub(MQHUBD, ws_extra=", ping_interval = 1, idle_timeout = 3")

    @classmethod
    def tearDownClass(cls):
        rc = cls.hub.stop()
        cls.hub.cleanup()
        assert rc == 0, "mqhubd exit status %s" % rc

    def test_silent_client_is_closed(self):
        async def go():
            reader, writer = await raw_handshake(self.hub.ws)
            t0, pings = time.monotonic(), 0
            try:
                while time.monotonic() - t0 < 10:
                    opcode, _ = await asyncio.wait_for(read_frame(reader), 10)
                    pings += opcode == 0x9
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()
            return pings, time.monotonic() - t0
        pings, elapsed = run(go())
        self.assertGreaterEqual(pings, 1, "the server pings a quiet client")
        self.assertGreaterEqual(elapsed, 2.5, "closed before the idle timeout")
        self.assertLess(elapsed, 6, "not closed after the idle timeout")

    def test_busy_client_is_not_pinged(self):
        """A client that sends all the time is alive: the server does not ping
        it (and keeps it past idle_timeout although it answers no ping), and
        each of its own pings, sent nonstop, gets a pong with that ping's
        payload. lws 4.1.6 builds its pings in the buffer of a pong waiting to
        be sent: a client's keepalive saw a wrong pong and closed with 1011."""
        async def go():
            reader, writer = await raw_handshake(self.hub.ws)
            server_pings, pongs, bad, n = 0, 0, [], 0
            t0 = time.monotonic()
            try:
                while time.monotonic() - t0 < 4.5:
                    n += 1
                    tag = struct.pack("!I", n)
                    writer.write(client_frame(0x9, tag) +
                                 client_frame(0x1, json.dumps({"op": "ping", "id": n}).encode()))
                    got_reply = got_pong = False
                    while not (got_reply and got_pong):
                        opcode, payload = await asyncio.wait_for(read_frame(reader), 5)
                        server_pings += opcode == 0x9
                        if opcode == 0xA:
                            got_pong = True
                            pongs += 1
                            if payload != tag:
                                bad.append((n, payload))
                        got_reply |= opcode == 0x1 and json.loads(payload).get("id") == n
                        self.assertNotEqual(opcode, 0x8, "closed after %.1f s" % (time.monotonic() - t0))
                    await asyncio.sleep(0.001)
            finally:
                writer.close()
            return server_pings, pongs, bad
        server_pings, pongs, bad = run(go())
        self.assertGreater(pongs, 100)
        self.assertEqual(bad, [], "pongs without their ping's payload")
        self.assertEqual(server_pings, 0, "the server pinged a client that sends all the time")

    def test_answering_client_is_kept(self):
        async def go():
            async with websockets.connect(self.hub.url, subprotocols=["mqhub.v1.json"],
                                          ping_interval=None) as ws:
                await asyncio.sleep(4.5)  # quiet, but the library answers the pings
                self.assertEqual((await Json(ws).req("ping"))["ok"], True)
        run(go())


class Auth(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.hub = Hub(MQHUBD, token="s3cret")

    @classmethod
    def tearDownClass(cls):
        rc = cls.hub.stop()
        cls.hub.cleanup()
        assert rc == 0, "mqhubd exit status %s" % rc

    def test_hello_token(self):
        async def go():
            async with websockets.connect(self.hub.url, subprotocols=["mqhub.v1.json"]) as ws:
                c = Json(ws)
                self.assertEqual((await c.req("queue.list"))["code"], "UNAUTHORIZED")
                self.assertEqual((await c.req("stats.subscribe"))["code"], "UNAUTHORIZED")
                self.assertEqual((await c.req("hello", version=1, token="wrong"))["code"],
                                 "UNAUTHORIZED")
                self.assertTrue((await c.req("hello", version=1, token="s3cret"))["ok"])
                self.assertTrue((await c.req("queue.list"))["ok"])
        run(go())

    def test_query_token(self):
        async def go():
            async with websockets.connect(self.hub.url + "?token=s3cret",
                                          subprotocols=["mqhub.v1.msgpack"]) as ws:
                self.assertTrue((await Mp(ws).req("queue.list"))["ok"])
        run(go())

    def test_wrong_query_token_closes(self):
        async def go():
            async with websockets.connect(self.hub.url + "?token=nope",
                                          subprotocols=["mqhub.v1.json"]) as ws:
                err = json.loads(await ws.recv())
                self.assertEqual(err["code"], "UNAUTHORIZED")
                await ws.recv()
        with self.assertRaises(websockets.ConnectionClosed) as cm:
            run(go())
        self.assertEqual(cm.exception.code, 1008)

    def test_metrics_need_token(self):
        self.assertEqual(self.hub.http("/metrics")[0], 401)
        status, text, _ = self.hub.http("/metrics", {"Authorization": "Bearer s3cret"})
        self.assertEqual(status, 200)
        parse_prometheus(text)
        self.assertEqual(self.hub.http("/metrics?token=s3cret")[0], 200)
        self.assertEqual(self.hub.http("/healthz")[0], 200)
        self.assertEqual(self.hub.http("/readyz")[0], 200)


class Origins(unittest.TestCase):
    """Cross-site WebSocket hijacking: an upgrade whose Origin is not the
    dashboard's own (or in allowed_origins) is refused with 403 and logged;
    clients that send no Origin are served."""

    @classmethod
    def setUpClass(cls):
        cls.hub = Hub(MQHUBD)
        cls.custom = Hub(MQHUBD, ws_extra=', allowed_origins = "https://dash.example, '
                         'http://ops.example:8080"')

    @classmethod
    def tearDownClass(cls):
        for hub in (cls.hub, cls.custom):
            rc = hub.stop()
            hub.cleanup()
            assert rc == 0, "mqhubd exit status %s" % rc

    def opens(self, hub, origin):
        async def go():
            async with websockets.connect(hub.url, origin=origin,
                                          subprotocols=["mqhub.v1.json"]) as ws:
                return (await Json(ws).req("ping"))["ok"]
        try:
            return run(go())
        except websockets.InvalidStatusCode as e:
            self.assertEqual(e.status_code, 403)
            return False

    def test_foreign_origin_refused(self):
        for origin in ("http://evil.example", "http://127.0.0.1:%d" % (self.hub.ws + 1),
                       "https://127.0.0.1:%d" % self.hub.ws, "null"):
            self.assertFalse(self.opens(self.hub, origin), origin)
        log = self.hub.read_log()
        self.assertIn('WebSocket upgrade refused (403): Origin \\"http://evil.example\\" is '
                      'not in allowed_origins', log)

    def test_own_origin_and_none_accepted(self):
        for origin in (None, "http://127.0.0.1:%d" % self.hub.ws,
                       "http://localhost:%d" % self.hub.ws, "http://[::1]:%d" % self.hub.ws):
            self.assertTrue(self.opens(self.hub, origin), origin)

    def test_allowed_origins_replace_the_default(self):
        self.assertTrue(self.opens(self.custom, "https://dash.example"))
        self.assertTrue(self.opens(self.custom, "http://ops.example:8080"))
        self.assertTrue(self.opens(self.custom, None))
        self.assertFalse(self.opens(self.custom, "http://127.0.0.1:%d" % self.custom.ws))
        self.assertFalse(self.opens(self.custom, "https://dash.example.evil"))

    def test_http_is_not_affected(self):
        status, _, _ = self.hub.http("/healthz", {"Origin": "http://evil.example"})
        self.assertEqual(status, 200)

    def test_bad_allowed_origins_refuses_to_start(self):
        with self.assertRaises(RuntimeError) as cm:
            Hub(MQHUBD, ws_extra=', allowed_origins = "dash.example/"')
        self.assertIn("allowed_origins: \"dash.example/\" is not an origin", str(cm.exception))


USER_TOKEN = "alice-token-0123456789abcdef"
ADMIN_TOKEN = "ops-token-0123456789abcdef"


class Permissions(unittest.TestCase):
    """The WebSocket row of the permission matrix (docs/security.md): a user's
    denied send / publish is FORBIDDEN and changes nothing, an allowed one
    succeeds, over both subprotocols. Also what a user sees: stats pushes
    restricted to its names, and /metrics only for admin on *. At most one
    wrong token here: more would throttle every hello from 127.0.0.1."""

    @classmethod
    def setUpClass(cls):
        cls.hub = Hub(MQHUBD, token="root-token-for-ws-permissions")

        async def go():
            async with websockets.connect(cls.hub.url, subprotocols=["mqhub.v1.json"]) as ws:
                root = Json(ws)
                assert (await root.req("hello", version=1, token=cls.hub.token))["ok"]
                for op, name in (("queue.create", "payments.in"), ("queue.create", "other.q"),
                                 ("topic.create", "pay.t1"), ("topic.create", "other.t")):
                    r = await root.req(op, name=name)
                    assert r["ok"], r
                r = await root.req("user.create", name="alice", token=USER_TOKEN,
                                   grants=[{"verb": "send", "pattern": "payments*"},
                                           {"verb": "publish", "pattern": "pay.t*"}])
                assert r["ok"], r
                r = await root.req("user.create", name="ops", token=ADMIN_TOKEN,
                                   grants=[{"verb": "admin", "pattern": "*"}])
                assert r["ok"], r
        run(go())

    @classmethod
    def tearDownClass(cls):
        rc = cls.hub.stop()
        cls.hub.cleanup()
        assert rc == 0, "mqhubd exit status %s" % rc

    def test_matrix(self):
        user_token = USER_TOKEN

        async def go():
            async with websockets.connect(self.hub.url, subprotocols=["mqhub.v1.json"]) as ws:
                root = Json(ws)
                assert (await root.req("hello", version=1, token=self.hub.token))["ok"]
                for proto, cls in (("mqhub.v1.json", Json), ("mqhub.v1.msgpack", Mp)):
                    async with websockets.connect(self.hub.url, subprotocols=[proto]) as uws:
                        u = cls(uws)
                        r = await u.req("hello", version=1, token=user_token)
                        self.assertTrue(r["ok"] and r.get("user") == "alice", r)
                        r = await u.req("send", queue="payments.in", body="ok")
                        self.assertTrue(r["ok"], r)
                        r = await u.req("send", queue="other.q", body="no")
                        self.assertEqual(r["code"], "FORBIDDEN", r)
                        self.assertIn("alice", r["error"])
                        self.assertIn("other.q", r["error"])
                        r = await u.req("publish", topic="pay.t1", body="ok")
                        self.assertTrue(r["ok"], r)
                        r = await u.req("publish", topic="other.t", body="no")
                        self.assertEqual(r["code"], "FORBIDDEN", r)
                        r = await u.req("queue.purge", name="payments.in")
                        self.assertEqual(r["code"], "FORBIDDEN", r)
                        names = [q if isinstance(q, str) else q["name"]
                                 for q in (await u.req("queue.list"))["queues"]]
                        self.assertEqual(names, ["payments.in"])
                # Nothing changed by the refusals; the allowed ones happened.
                q = await root.req("queue.get", name="other.q")
                self.assertEqual(q["stats"]["sent_total"], 0, q)
                q = await root.req("queue.get", name="payments.in")
                self.assertEqual(q["stats"]["sent_total"], 2, q)
                t = await root.req("topic.get", name="other.t")
                self.assertEqual(t["stats"]["published_total"], 0, t)
                t = await root.req("topic.get", name="pay.t1")
                self.assertEqual(t["stats"]["published_total"], 2, t)
        run(go())

    def test_stats_only_what_the_user_may_see(self):
        async def pushes(token, n):
            async with websockets.connect(self.hub.url, subprotocols=["mqhub.v1.json"]) as ws:
                c = Json(ws)
                assert (await c.req("hello", version=1, token=token))["ok"]
                sub = await c.req("stats.subscribe", interval_ms=100)
                self.assertTrue(sub["ok"], sub)
                got = [p for p in c.pushes if p.get("push") == "stats"]
                while len(got) < n:
                    msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    if msg.get("push") == "stats":
                        got.append(msg)
                return sub, got[-1]

        sub, snap = run(pushes(USER_TOKEN, 2))
        self.assertTrue(sub["restricted"])
        self.assertEqual([q["name"] for q in snap["queues"]], ["payments.in"])
        self.assertEqual([t["name"] for t in snap["topics"]], ["pay.t1"])
        self.assertNotIn("blocks", snap)
        self.assertIn("FORBIDDEN", snap["errors"]["block.list"])
        sub, snap = run(pushes(ADMIN_TOKEN, 1))
        self.assertFalse(sub["restricted"])
        self.assertEqual(sorted(q["name"] for q in snap["queues"]), ["other.q", "payments.in"])

    def test_metrics_credentials(self):
        status, _, headers = self.hub.http("/metrics")
        self.assertEqual(status, 401)
        self.assertEqual(headers.get("www-authenticate"), 'Bearer realm="mqhub"')
        self.assertEqual(self.hub.http("/metrics", {"Authorization": "Bearer wrong-token"})[0],
                         401)
        for token in (self.hub.token, ADMIN_TOKEN):
            status, text, _ = self.hub.http("/metrics", {"Authorization": "Bearer " + token})
            self.assertEqual(status, 200)
            parse_prometheus(text)
        status, text, _ = self.hub.http("/metrics", {"Authorization": "Bearer " + USER_TOKEN})
        self.assertEqual(status, 403, text)
        self.assertIn("admin", text)


class Tls(unittest.TestCase):
    def test_wss(self):
        d = os.environ.get("TMPDIR", "/tmp")
        cert, key = os.path.join(d, "ws-test-%d.crt" % os.getpid()), os.path.join(
            d, "ws-test-%d.key" % os.getpid())
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", cert],
                       check=True, capture_output=True)
        hub = None
        try:
            hub = TlsHub(MQHUBD, cert, key)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE

            async def go():
                async with websockets.connect(hub.url.replace("ws:", "wss:"), ssl=ctx,
                                              subprotocols=["mqhub.v1.json"]) as ws:
                    self.assertTrue((await Json(ws).req("hello", version=1))["ok"])
            run(go())
        finally:
            if hub:
                hub.cleanup()
            for f in (cert, key):
                if os.path.exists(f):
                    os.unlink(f)


class TlsHub(Hub):
    """Hub whose readiness probe speaks HTTPS."""

    def __init__(self, mqhubd, cert, key):
        self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self._ctx.check_hostname = False
        self._ctx.verify_mode = ssl.CERT_NONE
        super().__init__(mqhubd, ws_extra=', tls_cert = "%s", tls_key = "%s"' % (cert, key))

    def http(self, path, headers=None):
        import urllib.request
        req = urllib.request.Request(self.http_base.replace("http:", "https:") + path)
        with urllib.request.urlopen(req, timeout=5, context=self._ctx) as r:
            return r.status, r.read().decode(), dict(r.headers)


if __name__ == "__main__":
    MQHUBD = sys.argv.pop(1) if len(sys.argv) > 1 else os.environ.get("MQHUBD")
    unittest.main(verbosity=2)
