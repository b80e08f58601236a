"""metrics_test.py: /metrics and /readyz told honestly (issue 16).

- /metrics passes a strict Prometheus text-format checker written here: a
  # HELP line then a # TYPE line for every family, each family once, samples
  only inside their family, well-formed labels, and values without float
  noise (integers as integers, fractions with at most 6 decimals, no
  exponents); then the process, build and raft families are checked for
  plausible values, and the per-subscription series stay under their cap
  (500, the most pending first) with the rest counted.
- A member of a 3-node cluster started alone answers /readyz with 503
  "waiting for quorum (1 of 3 ...)", and reports 3 voters and no leader in
  /metrics.
Hostile: a scraper that sends a request and never reads the (large)
answer, next to a well-behaved one that still gets a whole answer.
"""
import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import shutil
import signal
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


if __name__ == "__main__":
    MQHUBD = sys.argv.pop(1) if len(sys.argv) > 1 else os.environ.get("MQHUBD")
    unittest.main(verbosity=2)
