"""ws_limits_test.py: WebSocket limits against hostile clients (issue 12,
docs/websocket.md "Limits"): JSON nested too deep or with too many values is
refused before parsing, fast, while other clients are answered; pipelined
GET /healthz are each answered; 10000 pipelined sends pass the in-flight cap;
a push subscriber that never reads is paused (bounded daemon memory) and closed
after write_timeout; an unfinished message is closed after frame_timeout; the
input budget, the in-flight cap and max_connections (also below the open-file
limit) hold, refusals logged.
Usage: python3 ws_limits_test.py MQHUBD [unittest args]."""
import asyncio
import json
import os
import re
import socket
import struct
import sys
import time
import unittest

import msgpack
import websockets

from wshub import Hub, parse_prometheus

MQHUBD = None
MIB = 1 << 20


def run(coro, timeout=60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def proc_status(pid, key):
    """A /proc/PID/status figure in bytes (VmRSS, VmHWM)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def sanitized(pid):
    """True when process @pid runs with AddressSanitizer (its quarantine holds
    freed memory: RSS figures are not comparable between runs)."""
    with open("/proc/%d/maps" % pid) as f:
        return "libasan" in f.read()


def metric(hub, name):
    fam = parse_prometheus(hub.http("/metrics")[1])
    return fam[name]["samples"][0][2] if name in fam else 0


def wait_log(hub, pattern, seconds):
    """The first match of @pattern in the daemon's log within @seconds, or None."""
    deadline = time.monotonic() + seconds
    while True:
        m = re.search(pattern, hub.read_log())
        if m or time.monotonic() > deadline:
            return m
        time.sleep(0.1)


def client_frame(opcode, payload, fin=True):
    """One masked client frame."""
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0xFE]) + struct.pack("!H", n)
    else:
        head += bytes([0xFF]) + struct.pack("!Q", n)
    key = os.urandom(4)
    keys = int.from_bytes((key * (n // 4 + 1))[:n], "big")
    return head + key + (int.from_bytes(payload, "big") ^ keys).to_bytes(n, "big")


class Raw:
    """A WebSocket client by hand on a blocking socket: it can stop reading,
    leave a message unfinished, or send only part of a frame."""

    def __init__(self, port, proto="mqhub.v1.json", rcvbuf=None):
        self.s = socket.socket()
        if rcvbuf:
            self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.s.settimeout(10)
        self.s.connect(("127.0.0.1", port))
        self.s.sendall(("GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: %s\r\n\r\n"
                        % (port, proto)).encode())
        self.head = b""
        while not self.head.endswith(b"\r\n\r\n"):
            c = self.s.recv(1)
            if not c:
                break
            self.head += c

    def exact(self, n):
        data = b""
        while len(data) < n:
            c = self.s.recv(n - len(data))
            if not c:
                raise ConnectionError("closed")
            data += c
        return data

    def frame(self):
        """(opcode, payload) of the next server frame."""
        b0, b1 = self.exact(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self.exact(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self.exact(8))[0]
        return b0 & 0x0F, self.exact(n)

    def close_code(self):
        """Read until the close frame: its code (None: the socket ended first)."""
        try:
            while True:
                op, payload = self.frame()
                if op == 0x8:
                    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
        except (ConnectionError, socket.timeout):
            return None

    def drain(self, seconds):
        """Read and discard until the socket ends; the bytes read, or None if
        it is still open after @seconds."""
        total, deadline = 0, time.monotonic() + seconds
        self.s.settimeout(1)
        while time.monotonic() < deadline:
            try:
                c = self.s.recv(1 << 20)
            except socket.timeout:
                continue
            except ConnectionError:
                return total
            if not c:
                return total
            total += len(c)
        return None

    def close(self):
        self.s.close()


class Limits(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.hub = Hub(MQHUBD)

    @classmethod
    def tearDownClass(cls):
        rc = cls.hub.stop()
        cls.hub.cleanup()
        assert rc == 0, "mqhubd exit status %s" % rc

    def refused(self, text, want):
        """Send @text on one connection while another pings: BAD_REQUEST naming
        @want, close 1007, and the other client's ping answered quickly."""
        async def go():
            async with websockets.connect(self.hub.url, subprotocols=["mqhub.v1.json"],
                                          max_size=None) as other, \
                    websockets.connect(self.hub.url, subprotocols=["mqhub.v1.json"],
                                       max_size=None) as ws:
                t0 = time.monotonic()
                await ws.send(text)
                await other.send(json.dumps({"op": "ping", "id": 1}))
                pong = json.loads(await asyncio.wait_for(other.recv(), 20))
                ping_s = time.monotonic() - t0
                err = json.loads(await asyncio.wait_for(ws.recv(), 20))
                took = time.monotonic() - t0
                with self.assertRaises(websockets.ConnectionClosed) as cm:
                    await asyncio.wait_for(ws.recv(), 20)
                return pong, ping_s, err, took, cm.exception.code
        pong, ping_s, err, took, code = run(go())
        print("%d bytes: %s in %.3f s, other client's ping %.3f s" %
              (len(text), err.get("error"), took, ping_s), file=sys.stderr)
        self.assertTrue(pong["ok"])
        self.assertEqual(err["code"], "BAD_REQUEST")
        self.assertIn(want, err["error"])
        self.assertEqual(code, 1007)
        self.assertLess(took, 5.0, "refusing took too long")

    def test_deeply_nested_json(self):
        n = 4 * 1024 * 1024
        self.refused('{"op": "ping", "id": 1, "x": ' + "[" * n + "]" * n + "}", "nested deeper")

    def test_huge_flat_json(self):
        text = '{"op": "ping", "id": 1, "x": [' + ",".join(["1"] * 3000000) + "]}"
        self.refused(text, "more than")

    def test_pipelined_healthz(self):
        with socket.create_connection(("127.0.0.1", self.hub.ws), timeout=10) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 3)
            data, deadline = b"", time.monotonic() + 10
            while data.count(b"ok\n") < 3 and time.monotonic() < deadline:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        self.assertEqual(data.count(b"HTTP/1.1 200"), 3, data[:300])

    def test_unfinished_http_head(self):
        """Slow-loris before the upgrade: a request head never finished, and a
        connection that says nothing, are closed by lws (10 s on lws 4.1.6)."""
        with socket.create_connection(("127.0.0.1", self.hub.ws), timeout=30) as a, \
                socket.create_connection(("127.0.0.1", self.hub.ws), timeout=30) as b:
            a.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
            t0 = time.monotonic()
            self.assertEqual(a.recv(100), b"")
            self.assertEqual(b.recv(100), b"")
            took = time.monotonic() - t0
        print("unfinished HTTP head closed after %.1f s" % took, file=sys.stderr)
        self.assertLess(took, 25)

    def test_close_after_queued_replies(self):
        """200 pings and a bad request written at once: every pong, then the
        BAD_REQUEST, then close 1007 (the close waits for the queued replies)."""
        c = Raw(self.hub.ws)
        c.s.sendall(b"".join(client_frame(0x1, json.dumps({"op": "ping", "id": i}).encode())
                             for i in range(200)) + client_frame(0x1, b"{not json"))
        replies = []
        while True:
            op, payload = c.frame()
            if op == 0x8:
                code = struct.unpack("!H", payload[:2])[0]
                break
            replies.append(json.loads(payload))
        c.close()
        self.assertEqual([r.get("id") for r in replies[:200]], list(range(200)))
        self.assertEqual(replies[200]["code"], "BAD_REQUEST")
        self.assertEqual(len(replies), 201)
        self.assertEqual(code, 1007)

    def test_pipelined_sends_pass_the_inflight_cap(self):
        """10000 sends written at once (above max_inflight 4096): reading
        pauses and resumes, every one is answered, in order of ids."""
        async def go():
            async with websockets.connect(self.hub.url, subprotocols=["mqhub.v1.msgpack"],
                                          max_size=None) as ws:
                await ws.send(msgpack.packb({"op": "queue.create", "id": 0, "name": "pipe"}))
                await ws.recv()
                t0 = time.monotonic()
                for i in range(1, 10001):
                    await ws.send(msgpack.packb({"op": "send", "id": i, "queue": "pipe",
                                                 "body": b"x"}))
                ids = set()
                while len(ids) < 10000:
                    r = msgpack.unpackb(await asyncio.wait_for(ws.recv(), 30))
                    self.assertTrue(r["ok"], r)
                    ids.add(r["id"])
                return time.monotonic() - t0
        took = run(go(), 120)
        print("10000 pipelined sends answered in %.2f s" % took, file=sys.stderr)


def publish_200mib(hub, subscriber):
    """Publish 200 MiB (12800 bodies of 16 KiB in publish_batch of 16) to a
    topic with a push subscription, with (@subscriber) a raw client subscribed
    with a credit of 1000000 that never reads, set up before. Returns (seconds,
    peak RSS of mqhubd in bytes, the Raw subscriber or None)."""
    body, per_batch, batches = b"p" * 16384, 16, 800
    sub = None

    async def go():
        nonlocal sub
        async with websockets.connect(hub.url, subprotocols=["mqhub.v1.msgpack"],
                                      max_size=None) as ws:
            async def req(**m):
                await ws.send(msgpack.packb(m))
                return msgpack.unpackb(await asyncio.wait_for(ws.recv(), 30))
            assert (await req(op="topic.create", id=1, name="big"))["ok"]
            assert (await req(op="subscription.create", id=2, topic="big", name="tail",
                              endpoint={"push": True}))["ok"]
            if subscriber:
                sub = Raw(hub.ws, "mqhub.v1.msgpack", rcvbuf=4096)
                sub.s.sendall(client_frame(0x2, msgpack.packb(
                    {"op": "subscribe", "id": 1, "topic": "big", "subscription": "tail",
                     "credit": 1000000})))
            t0, sent, done, window = time.monotonic(), 0, 0, 8
            while done < batches:
                while sent < batches and sent - done < window:
                    await ws.send(msgpack.packb({"op": "publish_batch", "id": 100 + sent,
                                                 "topic": "big",
                                                 "msgs": [{"body": body}] * per_batch}))
                    sent += 1
                r = msgpack.unpackb(await asyncio.wait_for(ws.recv(), 60))
                assert r["ok"], r
                done += 1
            return time.monotonic() - t0
    took = run(go(), 300)
    return took, proc_status(hub.proc.pid, "VmHWM"), sub


class PushPause(unittest.TestCase):
    """A push subscriber with a credit far above what it reads: pushes pause at
    half of send_buffer instead of growing the daemon, and the connection is
    closed after write_timeout. The hub itself holds what is published (raft
    log, snapshot copy, Kyoto Cabinet: ~480 MiB peak for 200 MiB stored on the
    test machine), so the bound is against the same publish without the
    subscriber, on a daemon of its own."""

    def test_subscriber_that_never_reads(self):
        control = Hub(MQHUBD, ws_extra=", write_timeout = 3")
        try:
            took0, hwm0, _ = publish_200mib(control, False)
        finally:
            rc0 = control.stop()
            control.cleanup()
        self.assertEqual(rc0, 0)
        hub = Hub(MQHUBD, ws_extra=", write_timeout = 3")
        try:
            took, hwm, sub = publish_200mib(hub, True)
            closed = wait_log(hub, r"closing \S+: it does not read \(output above half of "
                              r"send_buffer for write_timeout 3 s\)", 20)
            got = sub.drain(15)
            sub.close()
            timeouts = metric(hub, "mqhub_websocket_timeout_closes_total")
            overflows = metric(hub, "mqhub_websocket_slow_clients_closed_total")
            asan = sanitized(hub.proc.pid)
        finally:
            rc = hub.stop()
            hub.cleanup()
        print("200 MiB published: without a subscriber %.1f s, peak RSS %d MiB; with one that "
              "never reads %.1f s, peak RSS %d MiB, %s bytes reached its socket"
              % (took0, hwm0 >> 20, took, hwm >> 20, got), file=sys.stderr)
        self.assertEqual(rc, 0)
        self.assertIsNotNone(closed, "no write_timeout close logged")
        self.assertIsNotNone(got, "the subscriber's connection was not closed")
        self.assertLess(got, 48 * MIB, "more than send_buffer + socket buffers reached it")
        if not asan:
            self.assertLess(hwm, hwm0 + 128 * MIB, "mqhubd grew with the subscriber's backlog")
        self.assertGreaterEqual(timeouts, 1)
        self.assertEqual(overflows, 0, "paused, not overflowed")


    def test_subscriber_that_pauses_gets_everything(self):
        """send_buffer 1 MiB: a subscriber that stops reading while 10 MiB are
        published is paused, not closed; when it reads again pushes resume
        (session_writable 1) and every message arrives once."""
        hub = Hub(MQHUBD, ws_extra=", send_buffer = 1048576")
        n, body = 2560, b"r" * 4096
        small = socket.socket()  # a 4 KiB receive buffer: the kernel holds little
        small.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        small.connect(("127.0.0.1", hub.ws))

        async def go():
            async with websockets.connect(hub.url, subprotocols=["mqhub.v1.msgpack"], sock=small,
                                          max_size=None, max_queue=1, read_limit=4096) as sub, \
                    websockets.connect(hub.url, subprotocols=["mqhub.v1.msgpack"],
                                       max_size=None) as pub:
                async def req(ws, **m):
                    await ws.send(msgpack.packb(m))
                    return msgpack.unpackb(await asyncio.wait_for(ws.recv(), 30))
                assert (await req(pub, op="topic.create", id=1, name="pause"))["ok"]
                assert (await req(pub, op="subscription.create", id=2, topic="pause",
                                  name="s", endpoint={"push": True}))["ok"]
                assert (await req(sub, op="subscribe", id=3, topic="pause", subscription="s",
                                  credit=1000000))["ok"]
                for i in range(n // 16):
                    await pub.send(msgpack.packb({"op": "publish_batch", "id": 10 + i,
                                                  "topic": "pause",
                                                  "msgs": [{"body": body}] * 16}))
                for i in range(n // 16):
                    assert msgpack.unpackb(await asyncio.wait_for(pub.recv(), 60))["ok"]
                await asyncio.sleep(1)
                seqs = set()
                while len(seqs) < n:
                    m = msgpack.unpackb(await asyncio.wait_for(sub.recv(), 20))
                    seqs.update(x["seq"] for x in m.get("msgs", []))
                return len(seqs)
        try:
            got = run(go(), 120)
            overflows = metric(hub, "mqhub_websocket_slow_clients_closed_total")
        finally:
            rc = hub.stop()
            hub.cleanup()
        self.assertEqual(got, n)
        self.assertEqual(overflows, 0)
        self.assertEqual(rc, 0)


class Guards(unittest.TestCase):
    """frame_timeout, input_budget and the in-flight cap, on small settings."""

    @classmethod
    def setUpClass(cls):
        cls.hub = Hub(MQHUBD, ws_extra=", frame_timeout = 2, input_budget = 400000, "
                      "max_inflight = 4", extra="limits { max_frame = 262144 }\n")

    @classmethod
    def tearDownClass(cls):
        rc = cls.hub.stop()
        cls.hub.cleanup()
        assert rc == 0, "mqhubd exit status %s" % rc

    def test_unfinished_fragmented_message(self):
        c = Raw(self.hub.ws)
        t0 = time.monotonic()
        c.s.sendall(client_frame(0x1, b'{"op": "ping", ', fin=False))
        code = c.close_code()
        took = time.monotonic() - t0
        c.close()
        print("unfinished message closed after %.2f s (frame_timeout 2)" % took, file=sys.stderr)
        self.assertEqual(code, 1008)
        self.assertGreaterEqual(took, 1.9)
        self.assertLess(took, 8)
        self.assertIsNotNone(wait_log(self.hub, r"left a message unfinished "
                                      r"\(frame_timeout 2 s\)", 5))

    def test_trickled_frame(self):
        """A frame header announcing 200000 bytes, then a few: closed the same way."""
        c = Raw(self.hub.ws)
        t0 = time.monotonic()
        full = client_frame(0x1, b"x" * 200000)
        c.s.sendall(full[:1000])
        code = c.close_code()
        took = time.monotonic() - t0
        c.close()
        self.assertEqual(code, 1008)
        self.assertGreaterEqual(took, 1.9)
        self.assertLess(took, 8)

    def test_input_budget(self):
        """Two unfinished messages of 200000 bytes pass input_budget 400000: the
        second connection is closed (1013), the first finishes its message."""
        a, b = Raw(self.hub.ws), Raw(self.hub.ws)
        text = json.dumps({"op": "ping", "id": 7, "pad": "y" * 200000}).encode()
        a.s.sendall(client_frame(0x1, text[:200000], fin=False))
        time.sleep(0.3)
        b.s.sendall(client_frame(0x1, text[:200000], fin=False))
        code_b = b.close_code()
        a.s.sendall(client_frame(0x0, text[200000:]))
        op, reply = a.frame()
        a.close()
        b.close()
        self.assertEqual(code_b, 1013)
        self.assertEqual(json.loads(reply), {"id": 7, "ok": True})
        self.assertIsNotNone(wait_log(self.hub, r"would pass input_budget", 5))
        self.assertGreaterEqual(metric(self.hub, "mqhub_websocket_input_budget_closes_total"), 1)

    def test_inflight_cap(self):
        """max_inflight 4: four parked receives, then a ping: the ping is not read
        until two receives are answered (half the cap), then it is answered."""
        async def go():
            async with websockets.connect(self.hub.url, subprotocols=["mqhub.v1.json"]) as ws, \
                    websockets.connect(self.hub.url, subprotocols=["mqhub.v1.json"]) as other:
                await other.send(json.dumps({"op": "queue.create", "id": 1, "name": "lp"}))
                self.assertTrue(json.loads(await other.recv())["ok"])
                for i in range(1, 5):
                    await ws.send(json.dumps({"op": "receive", "id": i, "queue": "lp",
                                              "wait": 20}))
                await ws.send(json.dumps({"op": "ping", "id": 99}))
                with self.assertRaises(asyncio.TimeoutError):
                    await asyncio.wait_for(ws.recv(), 1.5)
                for i in range(2):
                    await other.send(json.dumps({"op": "send", "id": 10 + i, "queue": "lp",
                                                 "body": "m%d" % i}))
                    self.assertTrue(json.loads(await other.recv())["ok"])
                got = [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(3)]
                self.assertEqual([len(r["msgs"]) for r in got[:2]], [1, 1], got)
                self.assertEqual(got[2], {"id": 99, "ok": True})
        run(go())


class ConnectionCap(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.hub = Hub(MQHUBD, ws_extra=", max_connections = 3")

    @classmethod
    def tearDownClass(cls):
        rc = cls.hub.stop()
        cls.hub.cleanup()
        assert rc == 0, "mqhubd exit status %s" % rc

    def test_refused_past_max_connections(self):
        time.sleep(0.5)  # the readiness probes' sockets are gone

        async def go():
            conns = [await websockets.connect(self.hub.url, subprotocols=["mqhub.v1.json"])
                     for _ in range(3)]
            try:
                with self.assertRaises(websockets.InvalidStatusCode) as cm:
                    await websockets.connect(self.hub.url, subprotocols=["mqhub.v1.json"])
                self.assertEqual(cm.exception.status_code, 503)
                await conns[0].send(json.dumps({"op": "ping", "id": 1}))
                self.assertTrue(json.loads(await conns[0].recv())["ok"])
            finally:
                for c in conns:
                    await c.close()
            await asyncio.sleep(0.5)
            async with websockets.connect(self.hub.url, subprotocols=["mqhub.v1.json"]) as ws:
                await ws.send(json.dumps({"op": "ping", "id": 2}))
                self.assertTrue(json.loads(await ws.recv())["ok"])
        run(go())
        self.assertIsNotNone(wait_log(self.hub, r"refusing 127\.0\.0\.1:\d+: 3 connections "
                                      r"open \(max_connections 3\)", 5))
        self.assertGreaterEqual(metric(self.hub, "mqhub_websocket_connections_refused_total"), 1)


class BadLimits(unittest.TestCase):
    def test_out_of_range_refuses_to_start(self):
        for extra, words in ((", write_timeout = 0", "write_timeout and frame_timeout"),
                             (", input_budget = 1000", "input_budget (>= max_frame)"),
                             (", max_inflight = \"many\"", "max_inflight must be an integer")):
            with self.assertRaises(RuntimeError) as cm:
                Hub(MQHUBD, ws_extra=extra)
            self.assertIn(words, str(cm.exception))


class FdLimit(unittest.TestCase):
    """Under an open-file limit of 160, max_connections becomes 96: sockets
    past it are refused (logged), accept() never meets EMFILE, and the daemon
    serves again once they are gone."""

    @classmethod
    def setUpClass(cls):
        cls.hub = Hub(MQHUBD, nofile=160)

    @classmethod
    def tearDownClass(cls):
        rc = cls.hub.stop()
        cls.hub.cleanup()
        assert rc == 0, "mqhubd exit status %s" % rc

    def test_fd_limit(self):
        self.assertIn("max_connections 96 (the open-file limit is 160)", self.hub.read_log())
        time.sleep(0.5)
        socks, upgraded = [], 0
        try:
            for _ in range(120):
                r = Raw(self.hub.ws)
                socks.append(r)
                upgraded += r.head.startswith(b"HTTP/1.1 101")
        finally:
            for r in socks:
                r.close()
        print("%d of 120 connections upgraded under max_connections 96" % upgraded,
              file=sys.stderr)
        self.assertLessEqual(upgraded, 96)
        self.assertGreaterEqual(upgraded, 90)
        time.sleep(0.5)
        self.assertEqual(self.hub.http("/healthz")[0], 200)
        log = self.hub.read_log()
        self.assertIn("refusing", log)
        self.assertNotIn("Too many open files", log)


if __name__ == "__main__":
    MQHUBD = sys.argv.pop(1)
    unittest.main()
