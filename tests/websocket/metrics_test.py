"""metrics_test.py: /metrics and /readyz told honestly (issue 16).

- /metrics passes a strict Prometheus text-format checker written here: a
  # HELP line then a # TYPE line for every family, each family once, samples
  only inside their family, well-formed labels, and values without float
  noise (integers as integers, fractions with at most 6 decimals, no
  exponents); then the process, build and raft families are checked for
  plausible values, and the per-subscription series stay under their cap
  (500, the most pending first) with the rest counted.
- The raft families are consistent (applied <= commit <= last index, term
  >= 1, a leader change counted), and with frequent snapshots the snapshot
  index, age and the log since it follow (RaftSnapshot).
- Every plugin's counters are exported without a list in the exporter: the
  CMQ transport's after a forged request, the TCP transport's after an
  oversized frame, the webhook plugin's after deliveries (PluginCounters).
- A member of a 3-node cluster started alone answers /readyz with 503
  "waiting for quorum (1 of 3 ...)", and reports 3 voters and no leader in
  /metrics; in a whole 3-node cluster each follower logs "ready: leader node
  N" once, the last node left "waiting for quorum" once (FollowerLog).
Hostile: a scraper that sends a request and never reads the (large)
answer, next to a well-behaved one that still gets a whole answer; clients
that use up the open-file limit, so that the WebSocket listener meets EMFILE
(ListenerAtFdLimit: no busy loop, a bounded log, still serving).
"""
import asyncio
import http.server
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import shutil
import signal
import threading
import time
import unittest
import urllib.request

import websockets

from wshub import Hub, free_port, parse_prometheus

MQHUBD = None
SUB_CAP = 500

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_VALUE = re.compile(r"^(-?[0-9]+(\.[0-9]{1,6})?|\+Inf|-Inf|NaN)$")


def check_text(text):
    """The strict checks parse_prometheus does not make: HELP before TYPE
    for every family, once each, and values without float noise. Returns
    the parsed families."""
    families = parse_prometheus(text)
    lines = text.splitlines()
    helped = set()
    for n, line in enumerate(lines):
        if line.startswith("# HELP "):
            parts = line.split(" ", 3)
            if len(parts) != 4 or not re.fullmatch(_NAME, parts[2]) or not parts[3].strip():
                raise ValueError("line %d: bad HELP line %r" % (n + 1, line))
            if parts[2] in helped:
                raise ValueError("line %d: HELP for %s twice" % (n + 1, parts[2]))
            if n + 1 >= len(lines) or not lines[n + 1].startswith("# TYPE %s " % parts[2]):
                raise ValueError("line %d: HELP of %s not followed by its TYPE" % (n + 1, parts[2]))
            helped.add(parts[2])
        elif line.startswith("# TYPE "):
            name = line.split(" ")[2]
            if name not in helped:
                raise ValueError("line %d: family %s without HELP" % (n + 1, name))
        elif line and not line.startswith("#"):
            value = line.rsplit(" ", 1)[1]
            if not _VALUE.match(value):
                raise ValueError("line %d: value with float noise or exponent: %r" % (n + 1, line))
    return families


def value(families, name, **labels):
    for fam in families.values():
        for sname, slabels, v in fam["samples"]:
            if sname == name and all(slabels.get(k) == w for k, w in labels.items()):
                return v
    raise KeyError("%s%s not in the scrape" % (name, labels))


class CheckerSelfTest(unittest.TestCase):
    """The checker refuses what it must refuse."""

    def test_refuses(self):
        good = "# HELP a_total the a\n# TYPE a_total counter\na_total 5\n"
        check_text(good)
        for bad in ("# TYPE a_total counter\na_total 5\n",                  # no HELP
                    "# HELP a_total x\n# TYPE a_total counter\na_total 0.30000000000000004\n",
                    "# HELP a_total x\n# TYPE a_total counter\na_total 1e+06\n",
                    "# HELP a_total x\n# TYPE a_total counter\nb_total 1\n",   # outside its family
                    "# HELP a x\n# TYPE a gauge\na{l=\"1} 1\n"):                 # broken label
            with self.assertRaises(ValueError, msg=bad):
                check_text(bad)


class Metrics(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.hub = Hub(MQHUBD)

    @classmethod
    def tearDownClass(cls):
        cls.hub.cleanup()

    def test_strict_format_and_families(self):
        async def go():
            async with websockets.connect(self.hub.url, subprotocols=["mqhub.v1.json"]) as ws:
                rid = 0

                async def req(op, **args):
                    nonlocal rid
                    rid += 1
                    await ws.send(json.dumps(dict(args, op=op, id=rid)))
                    while True:
                        msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
                        if msg.get("id") == rid:
                            return msg

                self.assertTrue((await req("topic.create", name="lag"))["ok"])
                # more push subscriptions than the cap; "hot" has pending messages
                self.assertTrue((await req("subscription.create", topic="lag", name="hot",
                                           endpoint={"push": True}))["ok"])
                self.assertTrue((await req("publish", topic="lag", body="x"))["ok"])
                self.assertTrue((await req("publish", topic="lag", body="y"))["ok"])
                for i in range(SUB_CAP + 5):
                    r = await req("subscription.create", topic="lag", name="s%03d" % i,
                                  endpoint={"push": True})
                    self.assertTrue(r["ok"], r)
                await req("queue.create", name="q1")
                await req("send", queue="q1", body="old")
        asyncio.run(asyncio.wait_for(go(), 120))
        time.sleep(0.05)
        t0 = time.time()
        status, text, headers = self.hub.http("/metrics")
        print("scrape with %d subscriptions: %d bytes in %.3f s"
              % (SUB_CAP + 6, len(text), time.time() - t0))
        self.assertEqual(status, 200, text)
        fams = check_text(text)
        for name in ("mqhub_build_info", "mqhub_process_resident_memory_bytes",
                     "mqhub_process_open_fds", "mqhub_process_cpu_seconds_total",
                     "mqhub_process_start_time_seconds", "mqhub_raft_term",
                     "mqhub_raft_commit_index", "mqhub_raft_applied_index",
                     "mqhub_raft_leader_known", "mqhub_raft_voters", "mqhub_connections",
                     "mqhub_subscriptions_not_exported"):
            self.assertIn(name, fams)
        proc = self.hub.proc.pid
        with open("/proc/%d/statm" % proc) as f:
            rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        self.assertGreater(value(fams, "mqhub_process_resident_memory_bytes"), 1 << 20)
        self.assertLess(abs(value(fams, "mqhub_process_resident_memory_bytes") - rss), 64 << 20)
        fds = len(os.listdir("/proc/%d/fd" % proc))
        self.assertLess(abs(value(fams, "mqhub_process_open_fds") - fds), 16)
        start = value(fams, "mqhub_process_start_time_seconds")
        self.assertTrue(time.time() - 600 < start <= time.time() + 1, start)
        self.assertGreaterEqual(value(fams, "mqhub_process_cpu_seconds_total"), 0)
        self.assertEqual(value(fams, "mqhub_build_info"), 1)
        labels = fams["mqhub_build_info"]["samples"][0][1]
        self.assertRegex(labels["version"], r"^[0-9]+\.[0-9]+\.[0-9]+")
        self.assertEqual(value(fams, "mqhub_raft_voters"), 1)
        self.assertEqual(value(fams, "mqhub_raft_leader_known"), 1)
        self.assertGreater(value(fams, "mqhub_raft_applied_index"), SUB_CAP)
        # the subscription series are capped, the most pending kept
        subs = {s[1]["subscription"] for s in fams["mqhub_subscription_pending"]["samples"]}
        self.assertEqual(len(subs), SUB_CAP)
        self.assertIn("hot", subs)
        self.assertEqual(value(fams, "mqhub_subscription_pending", subscription="hot"), 2)
        self.assertEqual(value(fams, "mqhub_subscriptions_not_exported"), 6)
        conns = {s[1]["transport"] for s in fams["mqhub_connections"]["samples"]}
        self.assertEqual(conns, {"tcp", "websocket"})
        self.assertEqual(value(fams, "mqhub_sessions_open", transport="cmq"), 0)  # not loaded
        self.check_raft(fams)
        # a plugin counter, exported without a list: the websocket transport's
        self.assertGreaterEqual(value(fams, "mqhub_websocket_connections_total"), 1)

    def check_raft(self, fams):
        """The raft families: present and consistent with each other."""
        raft = {n: value(fams, n) for n in (
            "mqhub_raft_term", "mqhub_raft_commit_index", "mqhub_raft_applied_index",
            "mqhub_raft_last_index", "mqhub_raft_snapshot_index", "mqhub_raft_log_entries",
            "mqhub_raft_log_bytes", "mqhub_raft_leader_changes_total")}
        print("raft: %s" % raft)
        self.assertGreaterEqual(raft["mqhub_raft_term"], 1)
        self.assertLessEqual(raft["mqhub_raft_applied_index"], raft["mqhub_raft_commit_index"])
        self.assertLessEqual(raft["mqhub_raft_commit_index"], raft["mqhub_raft_last_index"])
        self.assertLessEqual(raft["mqhub_raft_snapshot_index"], raft["mqhub_raft_applied_index"])
        self.assertGreaterEqual(raft["mqhub_raft_leader_changes_total"], 1)
        self.assertEqual(fams["mqhub_raft_leader_changes_total"]["type"], "counter")
        # entries since the snapshot: at most those applied, each at least a byte
        self.assertLessEqual(raft["mqhub_raft_log_entries"], raft["mqhub_raft_applied_index"])
        self.assertGreaterEqual(raft["mqhub_raft_log_bytes"], raft["mqhub_raft_log_entries"])
        self.check_entry_times(fams)
        if raft["mqhub_raft_snapshot_index"] > 0:
            self.assertTrue(0 <= value(fams, "mqhub_raft_snapshot_age_seconds") < 600)
        else:
            self.assertNotIn("mqhub_raft_snapshot_age_seconds", fams)

    def check_entry_times(self, fams):
        """Where an entry's time goes: counted on this (leading) node, which
        answered the test's writes and applied every entry it answered."""
        names = ("mqhub_raft_entries_answered_total", "mqhub_raft_entry_seconds_total",
                 "mqhub_raft_entries_applied_total", "mqhub_raft_apply_seconds_total")
        t = {n: value(fams, n) for n in names}
        print("entry times: %s" % t)
        for n in names:
            self.assertEqual(fams[n]["type"], "counter")
        self.assertGreaterEqual(t["mqhub_raft_entries_answered_total"], 1)
        self.assertGreaterEqual(t["mqhub_raft_entries_applied_total"],
                                t["mqhub_raft_entries_answered_total"])
        self.assertGreater(t["mqhub_raft_entry_seconds_total"], 0)
        self.assertGreater(t["mqhub_raft_apply_seconds_total"], 0)
        # a mean of an hour per entry would mean microseconds read as seconds
        self.assertLess(t["mqhub_raft_entry_seconds_total"] / t["mqhub_raft_entries_answered_total"],
                        60)

    def test_then_scrapers_that_never_read(self):
        """A scraper that asks and never reads does not stop another's answer."""
        hogs = []
        for _ in range(4):
            s = socket.create_connection(("127.0.0.1", self.hub.ws), 5)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            hogs.append(s)
        try:
            t0 = time.time()
            status, text, _ = self.hub.http("/metrics")
            print("scrape next to 4 scrapers that never read: %.3f s" % (time.time() - t0))
            self.assertEqual(status, 200)
            check_text(text)
        finally:
            for s in hogs:
                s.close()


class RaftSnapshot(unittest.TestCase):
    """With snapshots every 64 entries, the snapshot families follow: an
    index at most the applied one, an age, and the log since it below the
    threshold."""

    def test_snapshot_families(self):
        hub = Hub(MQHUBD, extra="snapshot { threshold = 64, trailing = 16, growth = 0 }\n")
        try:
            async def go():
                async with websockets.connect(hub.url, subprotocols=["mqhub.v1.json"]) as ws:
                    await ws.send(json.dumps({"op": "queue.create", "id": 1, "name": "snap"}))
                    await asyncio.wait_for(ws.recv(), 10)
                    for i in range(200):  # one entry each: a reply before the next
                        await ws.send(json.dumps({"op": "send", "id": i + 2, "queue": "snap",
                                                  "body": "m%d" % i}))
                        self.assertTrue(json.loads(await asyncio.wait_for(ws.recv(), 10))["ok"])
            asyncio.run(asyncio.wait_for(go(), 60))
            fams = {}
            deadline = time.time() + 10
            while time.time() < deadline:  # dumps run off the loop: wait for the last
                fams = check_text(hub.http("/metrics")[1])
                snap = value(fams, "mqhub_raft_snapshot_index")
                if snap > 0 and value(fams, "mqhub_raft_applied_index") - snap < 64:
                    break
                time.sleep(0.2)
            snap = value(fams, "mqhub_raft_snapshot_index")
            applied = value(fams, "mqhub_raft_applied_index")
            entries = value(fams, "mqhub_raft_log_entries")
            age = value(fams, "mqhub_raft_snapshot_age_seconds")
            print("snapshot at %d of %d applied, %.3f s old, %d entries (%d bytes) since"
                  % (snap, applied, age, entries, value(fams, "mqhub_raft_log_bytes")))
            self.assertGreater(snap, 0)
            self.assertLessEqual(snap, applied)
            self.assertTrue(0 <= age < 60, age)
            self.assertLess(entries, 64 * 2)
            self.assertLess(entries, applied)
            time.sleep(1.2)  # no writes since: the same snapshot, older
            later = check_text(hub.http("/metrics")[1])
            self.assertEqual(value(later, "mqhub_raft_snapshot_index"), snap)
            self.assertGreaterEqual(value(later, "mqhub_raft_snapshot_age_seconds"), age + 1)
        finally:
            hub.cleanup()


class PluginCounters(unittest.TestCase):
    """Every plugin's counters reach /metrics through the host's list
    (metric_each), with no list of names in the exporter: the CMQ
    transport's after a forged request (a wrong signature), the TCP
    transport's after an oversized frame, the webhook plugin's after a
    delivery to an endpoint that answers 200 and one that answers 500. Each
    is a counter named mqhub_<plugin>_<name>_total with its own HELP, there at
    0 from the start."""

    def test_cmq_and_tcp_counters(self):
        cmq = free_port()
        hub = Hub(MQHUBD, extra='transport "cmq" { listen = "127.0.0.1:%d", '
                                 'secret_id = "AKIDmetrics", secret_key = "k3y-for-metrics" }\n'
                                 % cmq)
        try:
            # declared at 0 by each plugin's init: there before any event
            fams = check_text(hub.http("/metrics")[1])
            for name in ("mqhub_cmq_replays_refused_total", "mqhub_tcp_timeout_closes_total",
                         "mqhub_websocket_connections_refused_total"):
                self.assertEqual(value(fams, name), 0, name)
            body = ("Action=ListQueue&SecretId=AKIDmetrics&Nonce=1&Timestamp=%d"
                    "&Signature=Zm9yZ2Vk" % int(time.time())).encode()
            req = urllib.request.Request("http://127.0.0.1:%d/v2/index.php" % cmq, data=body,
                                         headers={"Content-Type":
                                                  "application/x-www-form-urlencoded"})
            with urllib.request.urlopen(req, timeout=10) as r:
                answer = json.loads(r.read())
            self.assertNotEqual(answer.get("code"), 0, answer)  # refused
            with socket.create_connection(("127.0.0.1", hub.tcp), 5) as s:
                s.sendall((1 << 30).to_bytes(4, "big"))  # a frame over max_frame
                s.settimeout(5)
                try:
                    while s.recv(4096):
                        pass
                except OSError:
                    pass
            status, text, _ = hub.http("/metrics")
            self.assertEqual(status, 200, text)
            fams = check_text(text)
            for name in ("mqhub_cmq_requests_total", "mqhub_cmq_auth_failures_total",
                         "mqhub_cmq_connections_total", "mqhub_tcp_frames_too_large_total"):
                self.assertGreaterEqual(value(fams, name), 1, name)
            for name, fam in fams.items():
                if name.startswith(("mqhub_cmq_", "mqhub_tcp_", "mqhub_websocket_")):
                    self.assertEqual(fam["type"], "counter", name)
                    self.assertTrue(name.endswith("_total"), name)
                    help_line = re.search(r"^# HELP %s (.*)$" % name, text, re.M).group(1)
                    self.assertNotIn("(metric_add)", help_line, name)  # a help of its own
            self.assertEqual(value(fams, "mqhub_sessions_open", transport="cmq"), 0)
        finally:
            hub.cleanup()

    def test_webhook_counters(self):
        """The webhook plugin's: one endpoint answers 200, one 500."""
        class Receiver(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.send_response(200 if self.path == "/ok" else 500)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        rx = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
        threading.Thread(target=rx.serve_forever, daemon=True).start()
        hub = Hub(MQHUBD, extra='transport "webhook" { scan_interval = 1 }\n')
        try:
            async def go():
                async with websockets.connect(hub.url, subprotocols=["mqhub.v1.json"]) as ws:
                    rid = 0

                    async def req(op, **args):
                        nonlocal rid
                        rid += 1
                        await ws.send(json.dumps(dict(args, op=op, id=rid)))
                        while True:
                            msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
                            if msg.get("id") == rid:
                                return msg
                    self.assertTrue((await req("topic.create", name="hooks"))["ok"])
                    for name in ("ok", "bad"):
                        r = await req("subscription.create", topic="hooks", name=name,
                                      endpoint={"http": "http://127.0.0.1:%d/%s"
                                                % (rx.server_address[1], name)},
                                      retry={"strategy": "backoff", "interval_ms": 200,
                                             "max_attempts": 3})
                        self.assertTrue(r["ok"], r)
                    self.assertTrue((await req("publish", topic="hooks", body="x"))["ok"])
            asyncio.run(asyncio.wait_for(go(), 30))
            names = ("mqhub_webhook_delivered_total", "mqhub_webhook_failed_total",
                     "mqhub_webhook_retried_total")
            fams = {}
            deadline = time.time() + 20
            while time.time() < deadline:
                fams = check_text(hub.http("/metrics")[1])
                # declared at 0 from the start: wait until each has counted
                if all(n in fams and value(fams, n) >= 1 for n in names):
                    break
                time.sleep(0.3)
            print("webhook: %s" % {n: fams.get(n, {}).get("samples") for n in names})
            self.assertGreaterEqual(value(fams, "mqhub_webhook_delivered_total"), 1)
            self.assertGreaterEqual(value(fams, "mqhub_webhook_failed_total"), 1)
            self.assertGreaterEqual(value(fams, "mqhub_webhook_retried_total"), 1)
        finally:
            hub.cleanup()
            rx.shutdown()
            rx.server_close()


class Quorum(unittest.TestCase):
    """Node 1 of a 3-node cluster, started alone, waits for quorum."""

    def test_waiting_for_quorum(self):
        d = tempfile.mkdtemp(prefix="mqhub-quorum-", dir=os.environ.get("TMPDIR", "/tmp"))
        tcp, raft, ws = free_port(), free_port(), free_port()
        raft2, raft3 = free_port(), free_port()
        with open(os.path.join(d, "cluster.secret"), "w") as f:
            f.write("mqhub-test-quorum-secret-8c1e5b7a2d9f4e6b0a3c\n")
        os.chmod(os.path.join(d, "cluster.secret"), 0o600)
        with open(os.path.join(d, "config.lua"), "w") as f:
            f.write('node { id = 1, data = "%s/data", raft = "127.0.0.1:%d", '
                    'cluster_secret_file = "cluster.secret" }\n' % (d, raft))
            f.write('peers { [2] = "127.0.0.1:%d", [3] = "127.0.0.1:%d" }\n' % (raft2, raft3))
            f.write('transport "tcp" { listen = "127.0.0.1:%d" }\n' % tcp)
            f.write('transport "websocket" { listen = "127.0.0.1:%d" }\n' % ws)
            f.write('log { level = "info" }\n')
        log = open(os.path.join(d, "mqhubd.log"), "w")
        proc = subprocess.Popen([MQHUBD, "--config", os.path.join(d, "config.lua")],
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            body, status = "", 0
            deadline = time.time() + 20
            while time.time() < deadline and "waiting for quorum" not in body:
                try:
                    with urllib.request.urlopen("http://127.0.0.1:%d/readyz" % ws, timeout=5) as r:
                        status, body = r.status, r.read().decode()
                except urllib.error.HTTPError as e:
                    status, body = e.code, e.read().decode()
                except OSError:
                    pass
                time.sleep(0.1)
            print("readyz alone: %d %s" % (status, body.strip()))
            self.assertEqual(status, 503, body)
            self.assertIn("waiting for quorum (1 of 3", body)
            self.assertIn("2 needed", body)
            time.sleep(1.0)  # still so after elections time out
            try:
                urllib.request.urlopen("http://127.0.0.1:%d/readyz" % ws, timeout=5)
                self.fail("ready without quorum")
            except urllib.error.HTTPError as e:
                self.assertEqual(e.code, 503)
            with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % ws, timeout=5) as r:
                fams = check_text(r.read().decode())
            self.assertEqual(value(fams, "mqhub_raft_voters"), 3)
            self.assertEqual(value(fams, "mqhub_raft_leader_known"), 0)
            self.assertEqual(value(fams, "mqhub_raft_is_leader"), 0)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
            with open(os.path.join(d, "mqhubd.log")) as f:
                self.daemon_log = f.read()
            shutil.rmtree(d, ignore_errors=True)
        self.assertNotRegex(self.daemon_log, r'msg="ready', self.daemon_log)
        self.assertIn("waiting for quorum", self.daemon_log)


class FollowerLog(unittest.TestCase):
    """A 3-node cluster: every follower logs `ready: leader node N (term T)`
    once when it learns of the leader (not at every check); when the last
    other node is gone the one left logs `waiting for quorum` once."""

    def start(self, d, i, rafts):
        tcp, ws = free_port(), free_port()
        with open(os.path.join(d, "n%d.lua" % i), "w") as f:
            f.write('node { id = %d, data = "%s/data%d", raft = "127.0.0.1:%d", '
                    'cluster_secret_file = "cluster.secret" }\n' % (i, d, i, rafts[i]))
            f.write("peers { %s }\n" % ", ".join('[%d] = "127.0.0.1:%d"' % (j, rafts[j])
                                                for j in rafts if j != i))
            f.write('transport "tcp" { listen = "127.0.0.1:%d" }\n' % tcp)
            f.write('transport "websocket" { listen = "127.0.0.1:%d" }\n' % ws)
            f.write('log { level = "info" }\n')
        log = open(os.path.join(d, "n%d.log" % i), "w")
        proc = subprocess.Popen([MQHUBD, "--config", os.path.join(d, "n%d.lua" % i)],
                                stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return proc

    @staticmethod
    def log(d, i):
        with open(os.path.join(d, "n%d.log" % i)) as f:
            return f.read()

    def wait_log(self, d, i, pattern, seconds):
        deadline = time.time() + seconds
        while time.time() < deadline:
            m = re.search(pattern, self.log(d, i))
            if m:
                return m
            time.sleep(0.1)
        self.fail("node %d never logged %r:\n%s" % (i, pattern, self.log(d, i)))

    def told(self, log):
        """The hub's leader lines in order, checked to be changes only: no
        line repeats the one before it (a line per check would)."""
        lines = re.findall(r'msg="(ready: leader node \d+ \(term \d+\)|'
                           r'waiting for quorum: leader node \d+ lost)', log)
        for a, b in zip(lines, lines[1:]):
            self.assertNotEqual(a, b, log)
        return lines

    @staticmethod
    def stop(proc):
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def test_ready_and_lost_logged_once(self):
        d = tempfile.mkdtemp(prefix="mqhub-follow-", dir=os.environ.get("TMPDIR", "/tmp"))
        with open(os.path.join(d, "cluster.secret"), "w") as f:
            f.write("mqhub-test-follower-secret-3f8a1c6e9b2d4a7f0e5c\n")
        os.chmod(os.path.join(d, "cluster.secret"), 0o600)
        rafts = {i: free_port() for i in (1, 2, 3)}
        procs = {}
        try:
            for i in (1, 2, 3):
                procs[i] = self.start(d, i, rafts)
            ready = {i: self.wait_log(d, i, r"ready: leader node (\d+) \(term (\d+)\)", 30)
                     for i in (1, 2, 3)}
            leader = int(ready[1].group(1))  # the first elected (all agree unless re-elected)
            self.assertIn(leader, (1, 2, 3))
            followers = [i for i in (1, 2, 3) if i != leader]
            time.sleep(1.5)  # several leadership checks (every 200 ms) later
            for i in followers:
                told = self.told(self.log(d, i))
                # once, unless a slow machine made another election
                self.assertTrue(1 <= len(told) <= 3, told)
                self.assertTrue(told[0].startswith("ready: leader node"), told)
                self.assertIn("started: listening", self.log(d, i))
            # the leader and one follower go: the last one loses its leader
            last = followers[1]
            self.stop(procs.pop(leader))
            self.stop(procs.pop(followers[0]))
            self.wait_log(d, last, r"waiting for quorum: leader node \d+ lost", 15)
            time.sleep(1.5)
            log = self.log(d, last)
            print("node %d (follower of %d, then alone):\n%s" % (
                last, leader, "\n".join(l for l in log.splitlines()
                                        if "ready:" in l or "waiting for quorum" in l)),
                  file=sys.stderr)
            told = self.told(log)
            self.assertTrue(told[-1].startswith("waiting for quorum: leader node"), told)
            self.assertLessEqual(len(told), 5, told)  # a leader or two, each lost once
            time.sleep(1.0)  # alone: nothing more to tell
            self.assertEqual(self.told(self.log(d, last)), told)
        finally:
            for p in procs.values():
                self.stop(p)
            shutil.rmtree(d, ignore_errors=True)


def cpu_seconds(pid):
    """User + system CPU time of @pid (/proc/PID/stat, clock ticks)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ListenerAtFdLimit(unittest.TestCase):
    """Hostile: clients use up the open-file limit (160: each transport caps
    itself at 96 connections, together they can take more), so the
    WebSocket listener's accept() meets EMFILE with connections waiting.
    The listener pauses (no busy loop: little CPU), logs at most once a
    second with a count, a connected WebSocket client is still served, and
    accepting resumes once descriptors are free."""

    def test_emfile_backs_off(self):
        hub = Hub(MQHUBD, nofile=160)
        tcp_socks, ws_socks = [], []
        try:
            async def ping(ws):
                await ws.send(json.dumps({"op": "ping", "id": 7}))
                return json.loads(await asyncio.wait_for(ws.recv(), 5))

            async def go():
                async with websockets.connect(hub.url, subprotocols=["mqhub.v1.json"]) as ws:
                    self.assertTrue((await ping(ws))["ok"])
                    for _ in range(96):  # the TCP transport's cap
                        tcp_socks.append(socket.create_connection(("127.0.0.1", hub.tcp), 5))
                    for _ in range(60):  # more than the descriptors left
                        ws_socks.append(socket.create_connection(("127.0.0.1", hub.ws), 5))
                    await asyncio.sleep(0.5)
                    log0 = hub.read_log().count("accept on")
                    cpu0, t0 = cpu_seconds(hub.proc.pid), time.time()
                    await asyncio.sleep(3.0)
                    cpu = (cpu_seconds(hub.proc.pid) - cpu0) / (time.time() - t0)
                    t1 = time.time()
                    reply = await ping(ws)
                    print("at the fd limit: %.1f%% CPU, ping in %.3f s, %d accept warnings"
                          % (cpu * 100, time.time() - t1, hub.read_log().count("accept on")),
                          file=sys.stderr)
                    self.assertTrue(reply["ok"], reply)
                    self.assertLess(cpu, 0.5)  # a busy loop would be ~1.0
                    return log0
            log0 = asyncio.run(asyncio.wait_for(go(), 60))
            log = hub.read_log()
            self.assertIn("Too many open files", log)
            self.assertGreaterEqual(log0, 1)
            self.assertLessEqual(log.count("accept on"), 8, log[-3000:])  # ~4 s at the limit
            self.assertRegex(log, r"more failed accepts in the last")
            for s in tcp_socks + ws_socks:
                s.close()
            tcp_socks, ws_socks = [], []
            status = 0
            deadline = time.time() + 10
            while time.time() < deadline and status != 200:
                time.sleep(0.2)
                status = hub.http("/healthz")[0]
            self.assertEqual(status, 200)
        finally:
            for s in tcp_socks + ws_socks:
                s.close()
            hub.cleanup()


if __name__ == "__main__":
    MQHUBD = sys.argv.pop(1) if len(sys.argv) > 1 else os.environ.get("MQHUBD")
    unittest.main(verbosity=2)
