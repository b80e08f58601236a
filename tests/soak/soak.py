"""soak.py: one real mqhubd under normal traffic and every hostile client of
issue 12 at once, for a bounded time; reports the slowest ping and the largest
RSS, and fails if the daemon died, an acknowledged message was lost, a ping took
longer than --max-ping, RSS passed --max-rss-mib, or SIGTERM did not end it with 0.

Usage: python3 soak.py MQHUBD [--duration 600] [--max-ping 2.0] [--max-rss-mib 512]
                        [--hostile all|none|NAME,...] [--config 'TEXT for config.lua']
(--hostile and --config narrow a failure down: which client, which setting.)

What runs, each client in its own thread (the prober in its own process, so the
clients' Python work does not delay its pings), every loop bounded by the
duration and every socket with a timeout, all on loopback:
  normal    producers (send, send_batch, publish) and consumers (receive +
            delete) as the named user `app`; a push subscriber that acks; a
            WebSocket (MessagePack) producer; /metrics scrapes with the token.
            Every body carries an id: after the hostile phase the consumers
            drain, and every acknowledged send and publish must have been
            received (queues) and pushed (push subscription).
  hostile   a push subscriber of the busy topic that never reads; slow-loris
            (half a frame, then silence); a 16 MiB frame header then bytes
            trickling; frames over max_frame and bodies over max_msg_size;
            malformed MessagePack and `dd ff ff ff ff` (TCP and WebSocket);
            unknown ops, wrong types, bad and invalid-UTF-8 names, a user's
            FORBIDDEN; wrong-token hellos (from 127.0.0.2, so the per-address
            throttle does not slow the others' hellos); a hook looping over C
            string functions; fill + purge / delete of a big queue; WebSocket
            upgrades with a foreign Origin; pipelined /healthz; connection floods
            past max_connections.
  prober    a fresh authenticated TCP connection every 100 ms: ping round trip
            (max, p99); mqhubd's VmRSS every second.
The figures go to docs/benchmarks.md ("Soak"); docs/operations.md says how to run it.
"""
import argparse
import asyncio
import collections
import multiprocessing
import os
import random
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request

import msgpack
import websockets

ROOT_TOKEN = "soak-root-token-0123456789abcdef"
APP_TOKEN = "soak-app-token-0123456789abcdef"
MAX_CONNECTIONS = 256
FRAME_TIMEOUT = 10
WRITE_TIMEOUT = 10
HIGH_WATER = 1024 * 1024
MAX_FRAME = 16 * 1024 * 1024
NORMAL_QUEUES = ["norm.q0", "norm.q1", "norm.tq", "norm.ws"]
BUSY_TOPIC = "norm.busy"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status(pid, field):
    """@field of /proc/<pid>/status in KiB (VmRSS, VmHWM), or 0."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def fd_count(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return -1


# ------------------------------------------------------------------ the daemon

class Hub:
    def __init__(self, mqhubd, extra=""):
        self.dir = tempfile.mkdtemp(prefix="mqhub-soak-", dir=os.environ.get("TMPDIR", "/tmp"))
        self.tcp, self.raft, self.ws = free_port(), free_port(), free_port()
        conf = os.path.join(self.dir, "config.lua")
        with open(conf, "w") as f:
            f.write('node { id = 1, data = "%s/data", raft = "127.0.0.1:%d" }\n' % (self.dir, self.raft))
            f.write('transport "tcp" { listen = "127.0.0.1:%d", max_connections = %d, '
                    'frame_timeout = %d, write_timeout = %d, high_water = %d }\n'
                    % (self.tcp, MAX_CONNECTIONS, FRAME_TIMEOUT, WRITE_TIMEOUT, HIGH_WATER))
            f.write('transport "websocket" { listen = "127.0.0.1:%d" }\n' % self.ws)
            f.write('log { level = "warn" }\n')
            f.write('auth { token = "%s" }\n' % ROOT_TOKEN)
            f.write(extra + "\n")
        self.logpath = os.path.join(self.dir, "mqhubd.log")
        self.log = open(self.logpath, "w")
        self.proc = subprocess.Popen([mqhubd, "--config", conf], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("mqhubd exited at start: " + self.read_log())
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/readyz" % self.ws, timeout=2) as r:
                    if r.status == 200:
                        return
            except (OSError, urllib.error.HTTPError):
                pass
            time.sleep(0.05)
        raise RuntimeError("mqhubd not ready: " + self.read_log())

    def read_log(self):
        with open(self.logpath, errors="replace") as f:
            return f.read()

    def stop(self):
        """SIGTERM; the exit status (-9 when it had to be killed)."""
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return -9


# ------------------------------------------------------------------ TCP client

class Closed(Exception):
    pass


class Refused(Closed):
    """Closed before the hello was answered: at max_connections (a flood)."""


class Conn:
    """One TCP connection speaking the framed protocol. call() waits for the
    reply with its id; pushes arriving meanwhile go to self.pushes."""

    def __init__(self, port, token=None, src=None, timeout=10.0):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                          source_address=(src, 0) if src else None)
        self.s.settimeout(timeout)
        self.next_id = 0
        self.pushes = collections.deque(maxlen=10000)
        self.stash = {}
        if token:
            try:
                r = self.call("hello", version=1, token=token)
            except (Closed, ConnectionResetError, BrokenPipeError) as e:
                raise Refused(str(e))
            if not r.get("ok"):
                raise Closed("hello: %s" % r.get("code"))

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass

    def send_raw(self, data):
        self.s.sendall(data)

    def send_frame(self, payload):
        self.s.sendall(struct.pack(">I", len(payload)) + payload)

    def send(self, op, _bin_type=True, **kw):
        self.next_id += 1
        req = {"op": op, "id": self.next_id}
        req.update(kw)
        self.send_frame(msgpack.packb(req, use_bin_type=_bin_type))
        return self.next_id

    def recv_exact(self, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = self.s.recv(min(n - len(buf), 1 << 20))
            if not chunk:
                raise Closed("closed by server")
            buf += chunk
        return bytes(buf)

    def read(self):
        n = struct.unpack(">I", self.recv_exact(4))[0]
        return msgpack.unpackb(self.recv_exact(n), raw=False, strict_map_key=False)

    def wait(self, rid):
        if rid in self.stash:
            return self.stash.pop(rid)
        while True:
            m = self.read()
            if "push" in m:
                self.pushes.append(m)
            elif m.get("id") == rid:
                return m
            elif "id" in m:
                self.stash[m["id"]] = m
            else:
                return m  # an error frame without id: the connection is closing

    def call(self, op, **kw):
        return self.wait(self.send(op, **kw))


def must(conn, op, **kw):
    r = conn.call(op, **kw)
    if not r.get("ok"):
        raise RuntimeError("%s %r: %s %s" % (op, kw, r.get("code"), r.get("error")))
    return r


def is_closed(sock, within):
    """True when the server closes @sock (EOF or reset) within @within s."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        r, _, _ = select.select([sock], [], [], max(0.0, deadline - time.monotonic()))
        if not r:
            return False
        try:
            if not sock.recv(65536):
                return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except OSError:
            return True
    return False


# ------------------------------------------------------------------ the soak

class Soak:
    def __init__(self, hub, duration):
        self.hub = hub
        self.duration = duration
        self.t0 = time.monotonic()
        self.stop_hostile = threading.Event()
        self.stop_producers = threading.Event()
        self.stop_consumers = threading.Event()
        self.lock = threading.Lock()
        self.codes = collections.Counter()      # (client, code) seen by hostile clients
        self.unexpected = collections.Counter()  # (client, what) that the docs do not say
        self.notes = collections.defaultdict(list)  # client -> figures (close times, ...)
        self.sent_q = {q: set() for q in NORMAL_QUEUES}  # acknowledged body ids per queue
        self.unacked_sends = 0
        self.published = set()
        self.received = collections.Counter()   # (queue, id) -> receptions
        self.deleted = set()                     # (queue, id) deleted ok
        self.redelivered_after_delete = []
        self.pushed = set()
        self.push_deliveries = 0
        self.normal_errors = collections.Counter()
        self.counts = collections.Counter()
        self.threads = []

    # --- bookkeeping
    def code(self, client, code):
        with self.lock:
            self.codes[(client, code)] += 1

    def odd(self, client, what):
        with self.lock:
            self.unexpected[(client, what)] += 1

    def note(self, client, value):
        with self.lock:
            self.notes[client].append(value)

    def count(self, what, n=1):
        with self.lock:
            self.counts[what] += n

    def run_thread(self, name, fn, group):
        def body():
            try:
                fn()
            except Exception:
                with self.lock:
                    self.normal_errors["crash:" + name] += 1
                print("soak: client %s failed:\n%s" % (name, traceback.format_exc()), file=sys.stderr)
        t = threading.Thread(target=body, name=name, daemon=True)
        t.group_name = group
        t.start()
        self.threads.append(t)

    def conn(self, token=ROOT_TOKEN, src=None, timeout=10.0):
        return Conn(self.hub.tcp, token, src=src, timeout=timeout)

    def reconnecting(self, stop, name, token, fn):
        """Run fn(conn) in a loop until @stop, reconnecting after a failure
        (counted in normal_errors) with a short pause."""
        while not stop.is_set():
            c = None
            try:
                c = self.conn(token)
                fn(c)
            except (OSError, Closed, RuntimeError, msgpack.ExtraData, ValueError) as e:
                with self.lock:
                    self.normal_errors["%s: %s" % (name, type(e).__name__)] += 1
                stop.wait(0.2)
            finally:
                if c:
                    c.close()

    # --- setup
    def setup(self):
        c = self.conn()
        must(c, "user.create", name="app", token=APP_TOKEN,
             grants=[{"verb": v, "pattern": "norm*"} for v in ("send", "receive", "publish", "subscribe")])
        for q in NORMAL_QUEUES:
            must(c, "queue.create", name=q, attrs={"visibility_timeout": 20})
        must(c, "topic.create", name=BUSY_TOPIC, attrs={"retention": 300})
        must(c, "subscription.create", topic=BUSY_TOPIC, name="toq", endpoint={"queue": "norm.tq"})
        must(c, "subscription.create", topic=BUSY_TOPIC, name="push", endpoint={"push": True},
             retry={"strategy": "backoff", "max_attempts": 1000, "interval_ms": 2000})
        must(c, "subscription.create", topic=BUSY_TOPIC, name="stall", endpoint={"push": True})
        must(c, "script.load", name="cloop", source=C_LOOP_HOOK)
        must(c, "queue.create", name="hx.hooked", attrs={"hook": "cloop"})
        c.close()

    # --- normal traffic
    def producer(self, pid):
        n = 0
        rng = random.Random(pid)

        def loop(c):
            nonlocal n
            while not self.stop_producers.is_set():
                kind = rng.random()
                if kind < 0.4:
                    q = "norm.q%d" % (n % 2)
                    n += 1
                    bid = "p%d-%d" % (pid, n)
                    r = c.call("send", queue=q, body=body_of(bid, rng))
                    self.acked_send(q, bid, r)
                elif kind < 0.6:
                    q = "norm.q%d" % (n % 2)
                    ids = []
                    for _ in range(16):
                        n += 1
                        ids.append("p%d-%d" % (pid, n))
                    r = c.call("send_batch", queue=q, msgs=[{"body": body_of(i, rng)} for i in ids])
                    if r.get("ok"):
                        for i, res in zip(ids, r["results"]):
                            self.acked_send(q, i, {"ok": "msg_id" in res, "code": res.get("code")})
                    else:
                        self.acked_send(q, None, r)
                else:
                    n += 1
                    bid = "t%d-%d" % (pid, n)
                    r = c.call("publish", topic=BUSY_TOPIC, body=body_of(bid, rng))
                    if r.get("ok"):
                        with self.lock:
                            self.published.add(bid)
                    else:
                        with self.lock:
                            self.normal_errors["publish " + str(r.get("code"))] += 1
                if rng.random() < 0.05:
                    self.stop_producers.wait(0.05)
        self.reconnecting(self.stop_producers, "producer", APP_TOKEN, loop)

    def acked_send(self, q, bid, r):
        with self.lock:
            if r.get("ok"):
                self.sent_q[q].add(bid)
            else:
                self.normal_errors["send " + str(r.get("code"))] += 1

    def consumer(self, q):
        def loop(c):
            while not self.stop_consumers.is_set():
                r = c.call("receive", queue=q, max=32, wait=1)
                if not r.get("ok"):
                    with self.lock:
                        self.normal_errors["receive " + str(r.get("code"))] += 1
                    continue
                msgs = r["msgs"]
                if not msgs:
                    continue
                keys = []
                with self.lock:
                    for m in msgs:
                        k = (q, id_of(m["body"]))
                        if k in self.deleted:
                            self.redelivered_after_delete.append(k)
                        self.received[k] += 1
                        keys.append(k)
                d = c.call("delete", queue=q, receipts=[m["receipt"] for m in msgs])
                if not d.get("ok"):
                    with self.lock:
                        self.normal_errors["delete " + str(d.get("code"))] += 1
                    continue
                with self.lock:
                    for k, res in zip(keys, d["results"]):
                        if res.get("ok"):
                            self.deleted.add(k)
                        else:
                            self.normal_errors["delete " + str(res.get("code"))] += 1
        self.reconnecting(self.stop_consumers, "consumer " + q, APP_TOKEN, loop)

    def push_subscriber(self):
        def loop(c):
            must(c, "subscribe", topic=BUSY_TOPIC, subscription="push", credit=256)
            while not self.stop_consumers.is_set():
                try:
                    m = c.read()
                except socket.timeout:
                    continue
                if m.get("push") != "messages":
                    continue
                seqs = []
                with self.lock:
                    for msg in m["msgs"]:
                        self.pushed.add(id_of(msg["body"]))
                        self.push_deliveries += 1
                        seqs.append(msg["seq"])
                c.send("ack", topic=BUSY_TOPIC, subscription="push", seqs=seqs)
                c.send("credit", topic=BUSY_TOPIC, subscription="push", n=len(seqs))
        self.reconnecting(self.stop_consumers, "push subscriber", APP_TOKEN, loop)

    def ws_producer(self):
        url = "ws://127.0.0.1:%d/?token=%s" % (self.hub.ws, APP_TOKEN)

        lags = collections.deque(maxlen=400)  # (when, how late) of the watch below

        async def watch():
            """How late this thread's event loop wakes up: a pong that arrives
            while it is stalled is not seen in time (the client's keepalive
            then fails the connection itself with 1011)."""
            while True:
                t = time.monotonic()
                await asyncio.sleep(0.1)
                lags.append((time.monotonic(), time.monotonic() - t - 0.1))

        async def go():
            n = 0
            watcher = asyncio.ensure_future(watch())
            while not self.stop_producers.is_set():
                try:
                    async with websockets.connect(url, subprotocols=["mqhub.v1.msgpack"],
                                                  max_size=None, open_timeout=10) as ws:
                        while not self.stop_producers.is_set():
                            n += 1
                            bid = "w-%d" % n
                            await ws.send(msgpack.packb({"op": "send", "id": n, "queue": "norm.ws",
                                                         "body": body_of(bid, random)}))
                            while True:
                                r = msgpack.unpackb(await asyncio.wait_for(ws.recv(), 10), raw=False)
                                if r.get("id") == n:
                                    break
                            self.acked_send("norm.ws", bid, r)
                            await asyncio.sleep(0.01)
                except (OSError, asyncio.TimeoutError, websockets.WebSocketException) as e:
                    what = type(e).__name__
                    if isinstance(e, websockets.ConnectionClosed):  # codes and reasons: received, sent
                        what += " %s %s" % (close_text(e.rcvd), close_text(e.sent))
                    stalled = max([lag for when, lag in lags if when > time.monotonic() - 30] + [0.0])
                    with self.lock:
                        self.normal_errors["ws producer: " + what] += 1
                    self.note("ws producer: its loop stalled s (30 s before an error)", stalled)
                    await asyncio.sleep(0.2)
            watcher.cancel()
        asyncio.run(go())

    def metrics_scraper(self):
        while not self.stop_hostile.is_set():
            t = time.monotonic()
            req = urllib.request.Request("http://127.0.0.1:%d/metrics" % self.hub.ws,
                                         headers={"Authorization": "Bearer " + ROOT_TOKEN})
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    r.read()
                    self.count("metrics scrapes ok")
                self.note("metrics scrape s", time.monotonic() - t)
            except (OSError, urllib.error.HTTPError) as e:
                with self.lock:
                    self.normal_errors["metrics: %s" % e] += 1
            self.stop_hostile.wait(2)

    # --- hostile clients
    def hostile(self, name, fn, pause):
        """Run fn() until the hostile phase ends; connection-level failures
        count as the code CLOSED / TIMEOUT-CLIENT."""
        while not self.stop_hostile.is_set():
            try:
                fn()
            except socket.timeout:
                self.code(name, "client-timeout")
            except Refused:
                self.code(name, "refused (flood at max_connections)")
            except (Closed, ConnectionError, BrokenPipeError):
                self.code(name, "closed")
            except OSError as e:
                self.code(name, "oserror " + (e.strerror or str(e)))
            except UnicodeDecodeError:
                self.odd(name, "reply not valid UTF-8")
            self.stop_hostile.wait(pause)

    def h_stall_subscriber(self):
        """Subscribe with a huge credit, never read. The server stops pushing
        at high_water and closes after write_timeout. Its FIN cannot reach a
        socket whose window is zero, so a ping is written every second without
        reading anything: once the server closed, the ping is answered with a
        reset. Gives up after 120 s."""
        c = self.conn(timeout=5)
        try:
            r = c.call("subscribe", topic=BUSY_TOPIC, subscription="stall", credit=1000000)
            self.code("stall-subscriber", r.get("code", "ok"))
            ping = msgpack.packb({"op": "ping", "id": 0})
            ping = struct.pack(">I", len(ping)) + ping
            t = time.monotonic()
            while not self.stop_hostile.wait(1):
                state = c.s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]
                try:
                    if state == 1:  # ESTABLISHED
                        c.s.setblocking(False)
                        c.s.send(ping)
                except BlockingIOError:
                    pass  # the server does not read either (it stopped at high_water)
                except OSError:
                    state = 7
                finally:
                    c.s.setblocking(True)
                if state != 1:
                    self.note("stall-subscriber closed after s", time.monotonic() - t)
                    self.code("stall-subscriber", "closed by server")
                    break
                if time.monotonic() - t > 120:
                    self.code("stall-subscriber", "still open after 120 s")
                    break
        finally:
            c.close()

    def h_slow_loris(self):
        socks = []
        t = time.monotonic()
        for _ in range(8):
            s = socket.create_connection(("127.0.0.1", self.hub.tcp), timeout=5)
            s.sendall(struct.pack(">I", 200) + b"\x85" + b"\xa2op" * 10)
            socks.append(s)
        closed = 0
        for s in socks:
            if is_closed(s, max(0.1, FRAME_TIMEOUT + 15 - (time.monotonic() - t))):
                closed += 1
            s.close()
        self.note("slow-loris closed after s", time.monotonic() - t)
        self.code("slow-loris", "closed %d/8" % closed)

    def h_trickle(self):
        s = socket.create_connection(("127.0.0.1", self.hub.tcp), timeout=5)
        t = time.monotonic()
        try:
            s.sendall(struct.pack(">I", MAX_FRAME))
            closed = False
            while time.monotonic() - t < FRAME_TIMEOUT + 20 and not self.stop_hostile.is_set():
                try:
                    s.sendall(b"\x00" * 1024)
                except OSError:
                    closed = True
                    break
                if is_closed(s, 0.2):
                    closed = True
                    break
            if not closed:
                if not self.stop_hostile.is_set():
                    self.code("trickle-16MiB", "not closed")
                return
            self.note("trickle closed after s", time.monotonic() - t)
            self.code("trickle-16MiB", "closed")
        finally:
            s.close()

    def bad_frame(self, name, frame, want, hello=True):
        """@frame (bytes after the length) or a raw byte string; expect the
        error frame @want then a close."""
        c = self.conn(ROOT_TOKEN if hello else None, timeout=5)
        try:
            if not hello:  # accepted, not refused at max_connections: an op says so
                try:
                    r = c.call("ping")
                except (Closed, ConnectionError):
                    raise Refused("before hello")
                self.code(name + " before hello", r.get("code", "ok"))
            c.send_raw(frame)
            try:
                m = c.read()
                code = m.get("code", "ok")
            except (Closed, ConnectionError):
                code = "closed-without-error"
            self.code(name, code)
            if code != want:
                self.odd(name, "got %s, want %s" % (code, want))
            if not is_closed(c.s, 5):
                self.odd(name, "not closed after %s" % want)
        finally:
            c.close()

    def h_malformed(self):
        L = lambda b: struct.pack(">I", len(b)) + b
        rng = random.Random()
        garbage = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
        cases = [
            ("array32", L(b"\xdd\xff\xff\xff\xff"), "BAD_REQUEST"),
            ("map32-huge", L(b"\xdf\xff\xff\xff\xff"), "BAD_REQUEST"),
            ("not-a-map", L(msgpack.packb([1, 2, 3])), "BAD_REQUEST"),
            ("trailing", L(msgpack.packb({"op": "ping", "id": 1}) + b"\xc0"), "BAD_REQUEST"),
            ("no-id", L(msgpack.packb({"op": "ping"})), "BAD_REQUEST"),
            ("truncated", L(msgpack.packb({"op": "ping", "id": 1})[:-2]), "BAD_REQUEST"),
            ("garbage", L(b"\x82" + garbage), "BAD_REQUEST"),
            ("over-max-frame", struct.pack(">I", MAX_FRAME + 1) + b"\x80", "FRAME_TOO_LARGE"),
            ("4GiB-header", struct.pack(">I", 0xFFFFFFFF), "FRAME_TOO_LARGE"),
        ]
        for name, frame, want in cases:
            if self.stop_hostile.is_set():
                return
            if name == "garbage":
                # random bytes may happen to decode; only the close matters
                c = self.conn(timeout=5)
                try:
                    c.send_raw(frame)
                    try:
                        self.code("malformed", c.read().get("code", "ok"))
                    except (Closed, ConnectionError):
                        self.code("malformed", "closed")
                finally:
                    c.close()
                continue
            self.bad_frame("malformed " + name, frame, want, hello=(name != "array32" or rng.random() < 0.5))

    def h_oversized_body(self):
        c = self.conn(timeout=10)
        try:
            r = c.call("send", queue="norm.q0", body=b"x" * (65536 + 1))
            self.code("oversized-body", r.get("code", "ok"))
            r = c.call("send", queue="norm.q0", body=b"x" * 100, attrs={"a": "y" * 70000})
            self.code("oversized-attrs", r.get("code", "ok"))
            r = c.call("ping")
            if not r.get("ok"):
                self.odd("oversized-body", "ping after TOO_LARGE failed")
        finally:
            c.close()

    def h_bad_requests(self):
        c = self.conn(timeout=10)
        u = self.conn(APP_TOKEN, timeout=10)
        try:
            cases = [
                ("unknown-op", lambda: c.call("no.such.op"), "UNKNOWN_OP"),
                ("unknown-op-utf8", lambda: c.wait(c.send(b"op\xff\xfe", _bin_type=False)), "UNKNOWN_OP"),
                ("wrong-type", lambda: c.call("send", queue=12, body=b"x"), "BAD_REQUEST"),
                ("wrong-type-body", lambda: c.call("send", queue="norm.q0", body={"a": 1}), "BAD_REQUEST"),
                ("missing-field", lambda: c.call("queue.get"), "BAD_REQUEST"),
                ("wait-too-long", lambda: c.call("receive", queue="norm.q0", wait=31), "BAD_REQUEST"),
                ("bad-name", lambda: c.call("queue.create", name="-bad name/"), "BAD_NAME"),
                ("long-name", lambda: c.call("queue.create", name="a" * 65), "BAD_NAME"),
                ("utf8-name", lambda: c.wait(c.send("queue.get", _bin_type=False, name=b"bad\xff\xc3(")), "BAD_NAME"),
                ("utf8-topic", lambda: c.wait(c.send("publish", _bin_type=False, topic=b"\xed\xa0\x80x",
                                                     body=b"x")), "BAD_NAME"),
                ("not-found", lambda: c.call("queue.get", name="no.such.queue"), "NOT_FOUND"),
                ("forbidden", lambda: u.call("queue.purge", name="norm.q0"), "FORBIDDEN"),
                ("forbidden-user", lambda: u.call("user.list"), "FORBIDDEN"),
                ("bad-receipt", lambda: c.call("delete", queue="norm.q0", receipts=["nope"]), None),
                ("too-many-tags", lambda: c.call("publish", topic="hx.none", body=b"x",
                                                 tags=["a"] * 6), None),
            ]
            for name, fn, want in cases:
                if self.stop_hostile.is_set():
                    return
                r = fn()
                code = r.get("code", "ok")
                if name == "bad-receipt" and r.get("ok"):
                    code = r["results"][0].get("code", "ok")
                self.code("bad-request " + name, code)
                if want and code != want:
                    self.odd("bad-request " + name, "got %s, want %s" % (code, want))
                if "id" not in r:
                    self.odd("bad-request " + name, "connection closed")
                    return
            if not c.call("ping").get("ok"):
                self.odd("bad-request", "ping failed after the bad requests")
        finally:
            c.close()
            u.close()

    def h_wrong_token(self):
        c = Conn(self.hub.tcp, None, src="127.0.0.2", timeout=10)
        try:
            for i in range(10):
                if self.stop_hostile.is_set():
                    return
                t = time.monotonic()
                r = c.call("hello", version=1, token="wrong-%d" % random.randrange(1 << 30))
                self.note("wrong-token hello s", time.monotonic() - t)
                self.code("wrong-token", r.get("code", "ok"))
                r = c.call("queue.list")
                self.code("wrong-token then op", r.get("code", "ok"))
                self.stop_hostile.wait(0.2)
        finally:
            c.close()

    def h_hook(self):
        c = self.conn(timeout=30)
        try:
            ids = [c.send("send", queue="hx.hooked", body=b"y" * 1024) for _ in range(3)]
            for i in ids:
                r = c.wait(i)
                self.code("c-loop hook send", r.get("code", "ok"))
            if random.random() < 0.05:
                self.code("c-loop hook purge", c.call("queue.purge", name="hx.hooked").get("code", "ok"))
        finally:
            c.close()

    def h_big_queue(self):
        c = self.conn(timeout=60)
        try:
            must(c, "queue.create", name="hx.big")
            body = b"z" * 200
            batch = [{"body": body}] * 256
            # pipelined, at most 8 batches outstanding
            pending = collections.deque()
            for _ in range(200):  # 51,200 messages
                if self.stop_hostile.is_set():
                    break
                pending.append(c.send("send_batch", queue="hx.big", msgs=batch))
                if len(pending) >= 8:
                    self.code("big-queue fill", c.wait(pending.popleft()).get("code", "ok"))
            while pending:
                self.code("big-queue fill", c.wait(pending.popleft()).get("code", "ok"))
            op = "queue.purge" if random.random() < 0.5 else "queue.delete"
            t = time.monotonic()
            r = c.call(op, name="hx.big")
            self.note(op + " s", time.monotonic() - t)
            self.code("big-queue " + op, r.get("code", "ok"))
        finally:
            c.close()

    def h_foreign_origin(self):
        s = socket.create_connection(("127.0.0.1", self.hub.ws), timeout=5)
        try:
            s.sendall(("GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                       "Sec-WebSocket-Version: 13\r\nOrigin: http://evil.example\r\n\r\n"
                       % self.hub.ws).encode())
            data = s.recv(4096)
            status = data.split(b"\r\n", 1)[0].decode(errors="replace")
            self.code("foreign-origin", status.split(" ", 2)[1] if " " in status else "closed")
        finally:
            s.close()

    def h_ws_bad(self):
        url = "ws://127.0.0.1:%d/?token=%s" % (self.hub.ws, ROOT_TOKEN)

        async def go():
            async with websockets.connect(url, subprotocols=["mqhub.v1.msgpack"], open_timeout=10) as ws:
                await ws.send(b"\xdd\xff\xff\xff\xff")
                r = msgpack.unpackb(await asyncio.wait_for(ws.recv(), 10), raw=False)
                self.code("ws array32", r.get("code", "ok"))
                try:
                    await asyncio.wait_for(ws.recv(), 10)
                    self.odd("ws array32", "not closed")
                except websockets.ConnectionClosed as e:
                    self.code("ws array32 close", str(e.code))
        try:
            asyncio.run(go())
        except (asyncio.TimeoutError, websockets.WebSocketException) as e:
            self.code("ws array32", type(e).__name__)

    def h_pipelined_healthz(self):
        s = socket.create_connection(("127.0.0.1", self.hub.ws), timeout=5)
        try:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 4)
            data, deadline = b"", time.monotonic() + 10
            while data.count(b"ok\n") < 4 and time.monotonic() < deadline:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            n = data.count(b"HTTP/1.1 200")
            self.code("pipelined-healthz", "%d/4 answered" % n)
            if n != 4:
                self.odd("pipelined-healthz", "%d of 4 answered" % n)
        finally:
            s.close()

    def h_flood(self):
        socks = []
        t = time.monotonic()
        try:
            for _ in range(MAX_CONNECTIONS + 40):
                try:
                    socks.append(socket.create_connection(("127.0.0.1", self.hub.tcp), timeout=5))
                except OSError as e:
                    self.code("flood", "connect " + (e.strerror or str(e)))
                    break
            time.sleep(0.5)
            refused = 0
            for s in socks:
                r, _, _ = select.select([s], [], [], 0)
                if r:
                    try:
                        if not s.recv(1):
                            refused += 1
                    except OSError:
                        refused += 1
            self.note("flood refused", refused)
            self.code("flood", "refused>0" if refused else "none refused")
            self.stop_hostile.wait(1.0)
        finally:
            for s in socks:
                s.close()
            self.note("flood held s", time.monotonic() - t)

    # --- the run
    def start_all(self, only=None):
        """Start the clients; @only: the hostile clients to run (None: all)."""
        for i in range(2):
            self.run_thread("producer%d" % i, lambda i=i: self.producer(i), "normal")
        for q in NORMAL_QUEUES:
            self.run_thread("consumer " + q, lambda q=q: self.consumer(q), "normal")
        self.run_thread("push subscriber", self.push_subscriber, "normal")
        self.run_thread("ws producer", self.ws_producer, "normal")
        self.run_thread("metrics", self.metrics_scraper, "normal")
        hostile = [
            ("stall-subscriber", self.h_stall_subscriber, 1),
            ("slow-loris", self.h_slow_loris, 1),
            ("trickle", self.h_trickle, 1),
            ("malformed", self.h_malformed, 0.5),
            ("oversized", self.h_oversized_body, 0.5),
            ("bad-requests", self.h_bad_requests, 0.2),
            ("wrong-token", self.h_wrong_token, 0.5),
            ("hook", self.h_hook, 1),
            ("big-queue", self.h_big_queue, 5),
            ("foreign-origin", self.h_foreign_origin, 0.5),
            ("ws-bad", self.h_ws_bad, 1),
            ("healthz", self.h_pipelined_healthz, 0.5),
            ("flood", self.h_flood, 20),
        ]
        for name, fn, pause in hostile:
            if only is not None and name not in only:
                continue
            self.run_thread(name, lambda name=name, fn=fn, pause=pause: self.hostile(name, fn, pause),
                            "hostile")

    def join(self, group, timeout, skip=()):
        """Join the threads of @group whose names do not start with @skip;
        the names of those still running after @timeout s."""
        mine = [t for t in self.threads if t.group_name == group and not t.name.startswith(tuple(skip))]
        deadline = time.monotonic() + timeout
        for t in mine:
            t.join(max(0.1, deadline - time.monotonic()))
        return [t.name for t in mine if t.is_alive()]

    def missing(self):
        """Acknowledged ids not yet received: per queue, and pushes."""
        with self.lock:
            got = collections.defaultdict(set)
            for (q, i) in self.received:
                got[q].add(i)
            miss = {q: self.sent_q[q] - got[q] for q in NORMAL_QUEUES if q != "norm.tq"}
            miss["norm.tq"] = self.published - got["norm.tq"]
            miss["push"] = self.published - self.pushed
            return miss


C_LOOP_HOOK = """function on_message(msg)
  local s = msg.body:rep(1024)
  for i = 1, 1000000 do utf8.len(s) s:find('y', 1, true) s:upper() s:gsub('y', 'z') end
  return true
end
"""


def close_text(frame):
    """A WebSocket close frame as 'code "reason"' ('-': none)."""
    if frame is None:
        return "-"
    return "%d %r" % (frame.code, frame.reason) if frame.reason else str(frame.code)


def body_of(bid, rng):
    return ("%s|" % bid).encode() + b"." * rng.randrange(0, 2048)


def id_of(body):
    return bytes(body).split(b"|", 1)[0].decode()


# ------------------------------------------------------------------ prober

def probe_once(port, pings, hellos, failures):
    """One fresh connection: hello (timed), ping (timed). False when the
    connection was refused (closed at once: max_connections during a flood)."""
    c = None
    try:
        c = Conn(port, None, timeout=10)
        th = time.monotonic()
        r = c.call("hello", version=1, token=ROOT_TOKEN)
        hellos.append(time.monotonic() - th)
        if not r.get("ok"):
            failures["hello " + str(r.get("code"))] += 1
            return True
        tp = time.monotonic()
        r = c.call("ping")
        dt = time.monotonic() - tp
        if not r.get("ok"):
            failures["ping " + str(r.get("code"))] += 1
            return True
        pings.append(dt)
        return True
    except (Closed, ConnectionResetError, BrokenPipeError):
        return False
    except socket.timeout:
        failures["timeout (10 s)"] += 1
        pings.append(10.0)
        return True
    except OSError as e:
        failures["oserror " + (e.strerror or str(e))] += 1
        return True
    finally:
        if c:
            c.close()


def prober(port, pid, stop, out, interval):
    """Own process: every @interval s a fresh connection, hello, one timed ping;
    VmRSS every second. Puts a dict of figures on @out at @stop."""
    pings, hellos, refused, failures, rss = [], [], 0, collections.Counter(), []
    last_rss = 0.0
    while not stop.is_set():
        t = time.monotonic()
        if t - last_rss >= 1.0:
            rss.append(proc_status(pid, "VmRSS"))
            last_rss = t
        if not probe_once(port, pings, hellos, failures):
            refused += 1
        stop.wait(max(0.0, interval - (time.monotonic() - t)))
    out.put({"pings": pings, "hellos": hellos, "refused": refused,
             "failures": dict(failures), "rss": rss})


# ------------------------------------------------------------------ main

def pct(values, p):
    if not values:
        return 0.0
    v = sorted(values)
    return v[min(len(v) - 1, int(len(v) * p))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mqhubd")
    ap.add_argument("--duration", type=float, default=600, help="seconds of the hostile phase")
    ap.add_argument("--drain", type=float, default=120, help="seconds allowed to drain")
    ap.add_argument("--max-ping", type=float, default=2.0, help="seconds; fail above")
    ap.add_argument("--max-rss-mib", type=float, default=512, help="fail above")
    ap.add_argument("--config", default="", metavar="TEXT",
                    help="appended to mqhubd's config.lua, e.g. 'snapshot { threshold = 1024 }'")
    ap.add_argument("--hostile", default="all",
                    help="comma-separated hostile clients to run (all, none, or names: stall-subscriber, "
                         "slow-loris, trickle, malformed, oversized, bad-requests, wrong-token, hook, "
                         "big-queue, foreign-origin, ws-bad, healthz, flood)")
    args = ap.parse_args()

    hub = Hub(args.mqhubd, args.config)
    reasons = []
    soak = None
    try:
        soak = Soak(hub, args.duration)
        soak.setup()
        fds0, rss0 = fd_count(hub.pid), proc_status(hub.pid, "VmRSS")
        stop_probe = multiprocessing.Event()
        probe_out = multiprocessing.Queue()
        probe = multiprocessing.Process(target=prober, args=(hub.tcp, hub.pid, stop_probe, probe_out, 0.1))
        probe.start()
        soak.start_all(None if args.hostile == "all" else
                       set() if args.hostile == "none" else set(args.hostile.split(",")))
        t_end = time.monotonic() + args.duration
        last_report = time.monotonic()
        while time.monotonic() < t_end and hub.proc.poll() is None:
            time.sleep(1)
            if time.monotonic() - last_report >= 30:
                last_report = time.monotonic()
                with soak.lock:
                    print("soak: %4.0f s, RSS %d MiB, fds %d, sent %d, received %d, pushed %d"
                          % (time.monotonic() - soak.t0, proc_status(hub.pid, "VmRSS") // 1024,
                             fd_count(hub.pid), sum(len(s) for s in soak.sent_q.values()) + len(soak.published),
                             sum(soak.received.values()), soak.push_deliveries), file=sys.stderr, flush=True)
        print("soak: hostile phase over, draining", file=sys.stderr, flush=True)
        soak.stop_hostile.set()
        soak.stop_producers.set()
        left_h = soak.join("hostile", 60)
        left_n = soak.join("normal", 30, skip=("consumer", "push"))
        drain_t0 = time.monotonic()
        while time.monotonic() - drain_t0 < args.drain and hub.proc.poll() is None:
            if not any(soak.missing().values()):
                break
            time.sleep(0.5)
        drain_s = time.monotonic() - drain_t0
        soak.stop_consumers.set()
        soak.join("normal", 20)
        time.sleep(1)  # let the daemon close what the clients closed
        fds1, rss_end, hwm = fd_count(hub.pid), proc_status(hub.pid, "VmRSS"), proc_status(hub.pid, "VmHWM")
        anon_end, file_end = proc_status(hub.pid, "RssAnon"), proc_status(hub.pid, "RssFile")
        stop_probe.set()
        try:
            pr = probe_out.get(timeout=30)
        except Exception:
            pr = {"pings": [], "hellos": [], "refused": 0, "failures": {"prober lost": 1}, "rss": []}
        probe.join(10)
        alive = hub.proc.poll() is None
        rc = hub.stop()

        # ---- figures
        miss = soak.missing()
        sent = sum(len(s) for s in soak.sent_q.values())
        pings = pr["pings"]
        max_ping, p99 = (max(pings) if pings else 0.0), pct(pings, 0.99)
        max_rss = max(pr["rss"] + [rss_end, rss0]) / 1024.0
        print("\n== mqhub soak: %.0f s hostile phase, drain %.1f s ==" % (args.duration, drain_s))
        rows = [
            ("pings (fresh connection every 100 ms)", "%d" % len(pings)),
            ("max ping", "%.1f ms (bound %.0f ms; target 100 ms)" % (max_ping * 1000, args.max_ping * 1000)),
            ("p99 ping", "%.1f ms" % (p99 * 1000)),
            ("p50 ping", "%.1f ms" % (pct(pings, 0.5) * 1000)),
            ("pings over 100 ms", "%d" % sum(1 for p in pings if p > 0.1)),
            ("max / p99 hello", "%.1f / %.1f ms" % (max(pr["hellos"] or [0]) * 1000, pct(pr["hellos"], 0.99) * 1000)),
            ("prober connections refused (flood)", "%d" % pr["refused"]),
            ("prober failures", "%s" % (pr["failures"] or "none")),
            ("RSS start / max / end / VmHWM", "%d / %.0f / %d / %d MiB (bound %.0f MiB)"
             % (rss0 // 1024, max_rss, rss_end // 1024, hwm // 1024, args.max_rss_mib)),
            ("RssAnon / RssFile at the end", "%d / %d MiB (RssFile: the KC file's 64 MiB map)"
             % (anon_end // 1024, file_end // 1024)),
            ("open fds start / end", "%d / %d" % (fds0, fds1)),
            ("sends acknowledged (queues)", "%d (%s)" % (sent, ", ".join(
                "%s %d" % (q, len(s)) for q, s in soak.sent_q.items() if q != "norm.tq"))),
            ("publishes acknowledged", "%d" % len(soak.published)),
            ("messages received (queues)", "%d" % sum(soak.received.values())),
            ("duplicates received (queues)", "%d" % sum(n - 1 for n in soak.received.values() if n > 1)),
            ("received again after a delete ok", "%d" % len(soak.redelivered_after_delete)),
            ("push deliveries / distinct", "%d / %d" % (soak.push_deliveries, len(soak.pushed))),
            ("lost (acknowledged, never received)", ", ".join("%s %d" % (k, len(v)) for k, v in miss.items())),
            ("normal-traffic errors", "%s" % (dict(soak.normal_errors) or "none")),
            ("counts", "%s" % dict(soak.counts)),
        ]
        w = max(len(r[0]) for r in rows)
        for k, v in rows:
            print("%-*s  %s" % (w, k, v))
        print("\nhostile clients: codes seen")
        for (client, code), n in sorted(soak.codes.items()):
            print("  %-34s %-28s %d" % (client, code, n))
        if soak.unexpected:
            print("\nhostile clients: not as documented")
            for (client, what), n in sorted(soak.unexpected.items()):
                print("  %-34s %-40s %d" % (client, what, n))
        print("\ntimings")
        for k, v in sorted(soak.notes.items()):
            print("  %-30s n=%d min=%.3f max=%.3f" % (k, len(v), min(v), max(v)))
        warn = collections.Counter()
        for line in hub.read_log().splitlines():
            level = re.search(r"level=(\w+)", line)
            msg = re.sub(r"[0-9]+", "N", line.split("msg=", 1)[-1])[:90]
            if level and level.group(1) != "info":
                warn["%s: %s" % (level.group(1), msg)] += 1
        print("\nmqhubd log lines (by first words)")
        for k, n in warn.most_common(25):
            print("  %6d  %s" % (n, k))

        # ---- verdict
        if not alive:
            reasons.append("mqhubd died during the soak (status %s)" % hub.proc.returncode)
        elif rc != 0:
            reasons.append("mqhubd exited %s on SIGTERM" % rc)
        lost = {k: sorted(v)[:5] for k, v in miss.items() if v}
        if lost:
            reasons.append("acknowledged messages lost: %s" % lost)
        if soak.redelivered_after_delete:
            reasons.append("messages received again after their delete succeeded: %s"
                           % soak.redelivered_after_delete[:5])
        if max_ping > args.max_ping:
            reasons.append("max ping %.3f s > %.3f s" % (max_ping, args.max_ping))
        if max(max_rss, hwm / 1024.0) > args.max_rss_mib:
            reasons.append("RSS %.0f MiB > %.0f MiB" % (max(max_rss, hwm / 1024.0), args.max_rss_mib))
        if not pings:
            reasons.append("the prober got no ping through")
        if left_h or left_n:
            reasons.append("clients did not stop: %s" % (left_h + left_n))
        crashes = [k for k in soak.normal_errors if k.startswith("crash:")]
        if crashes:
            reasons.append("soak clients crashed: %s" % crashes)
    except Exception:
        traceback.print_exc()
        reasons.append("soak harness error")
        if hub.proc.poll() is not None:
            reasons.append("mqhubd exited %s" % hub.proc.returncode)
    finally:
        if hub.proc.poll() is None:
            hub.stop()
        hub.log.close()
    if reasons:
        print("\nSOAK FAILED:\n  " + "\n  ".join(reasons))
        print("mqhubd log and data kept in %s" % hub.dir)
        return 1
    print("\nSOAK PASSED")
    shutil.rmtree(hub.dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
