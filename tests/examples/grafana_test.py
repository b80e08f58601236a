#!/usr/bin/env python3
"""grafana_test.py: examples/grafana/mqhub-dashboard.json cannot drift from the
exporter. The JSON parses; every PromQL expression of its panels and
variables names only mqhub_* series that a real node's /metrics serves (a
node with queues, a topic, a queue and a push subscription, messages sent,
received and published), and the labels the expressions select or group on exist on those
series. With promtool (Debian `prometheus`) every expression must parse too,
and the README's scrape config must be valid.

    grafana_test.py BUILD_DIR
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "websocket"))
import wshub  # noqa: E402

BUILD = sys.argv.pop(1) if len(sys.argv) > 1 else os.path.join(ROOT, "build")
DASHBOARD = os.path.join(ROOT, "examples", "grafana", "mqhub-dashboard.json")
README = os.path.join(ROOT, "examples", "grafana", "README.md")
# Labels Prometheus adds at scrape time, and the histogram's bucket bound.
SCRAPE_LABELS = {"instance", "job", "le"}


def expressions(dash):
    """Every PromQL text of the dashboard: panel targets (rows included) and
    query variables."""
    out = []

    def panels(ps):
        for p in ps:
            out.extend(t["expr"] for t in p.get("targets", []) if t.get("expr"))
            panels(p.get("panels", []))
    panels(dash["panels"])
    for v in dash["templating"]["list"]:
        if v.get("type") == "query":
            q = v["query"]
            out.append(q["query"] if isinstance(q, dict) else q)
    return out


def concrete(expr):
    """The expression with Grafana's variables replaced as a query would be."""
    expr = re.sub(r'=~"\$\w+"', '=~".*"', expr)
    m = re.fullmatch(r"label_values\((\w+), *(\w+)\)", expr)
    return m.group(1) if m else expr


NAME = re.compile(r"\b(mqhub_[a-zA-Z0-9_]+)\b")
SELECTOR = re.compile(r"\b(mqhub_[a-zA-Z0-9_]+)\{([^}]*)\}")
MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')
BY = re.compile(r"\bby\s*\(([^)]*)\)")


class Dashboard(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(DASHBOARD) as f:
            cls.dash = json.load(f)
        cls.exprs = expressions(cls.dash)
        mqhubd = os.path.join(BUILD, "apps", "mqhubd", "mqhubd")
        cli = os.path.join(BUILD, "apps", "mqhub", "mqhub")
        cls.hub = wshub.Hub(mqhubd)
        try:
            # the hub's temp dir as XDG_CONFIG_HOME: no saved context of the
            # developer's applies
            env = dict(os.environ, XDG_CONFIG_HOME=os.path.join(cls.hub.dir, "config-home"))
            env.pop("MQHUB_CONTEXT", None)
            run = lambda *a: subprocess.run(  # noqa: E731
                [cli, "--server", "127.0.0.1:%d" % cls.hub.tcp, *a], check=True,
                stdout=subprocess.DEVNULL, timeout=30, env=env)
            run("queue", "create", "jobs")
            run("queue", "create", "copies")
            run("send", "jobs", "one")
            run("send", "jobs", "two")
            run("recv", "jobs")
            run("topic", "create", "events")
            run("sub", "create", "events", "copy", "--queue", "copies")
            run("sub", "create", "events", "live", "--push")  # has a lag: pending
            run("publish", "events", "hello")
            cls.families = cls.scrape_with_subscription()
        except Exception:
            cls.hub.cleanup()
            raise
        cls.samples = {}
        for fam in cls.families.values():
            for name, labels, _ in fam["samples"]:
                cls.samples.setdefault(name, []).append(labels)

    @classmethod
    def scrape_with_subscription(cls):
        """/metrics once the push subscription made above is in it (the
        exporter's snapshot may predate it): at most 10 s."""
        deadline = time.time() + 10
        while True:
            status, text, _ = cls.hub.http("/metrics")
            assert status == 200, status
            families = wshub.parse_prometheus(text)
            if any(labels.get("subscription") == "live" for f in families.values()
                   for _, labels, _ in f["samples"]):
                return families
            if time.time() > deadline:
                raise AssertionError("no series of subscription 'live' within 10 s:\n" + text)
            time.sleep(0.2)

    @classmethod
    def tearDownClass(cls):
        cls.hub.cleanup()

    def test_shape(self):
        self.assertEqual(self.dash["uid"], "mqhub-overview")
        ids = [p["id"] for p in self.dash["panels"]]
        self.assertEqual(len(ids), len(set(ids)), "panel ids must be unique")
        self.assertGreaterEqual(len(self.exprs), 30)
        for p in self.dash["panels"]:
            g = p["gridPos"]
            self.assertLessEqual(g["x"] + g["w"], 24, p["title"])

    def test_names_exist(self):
        used = set()
        for e in self.exprs:
            used |= set(NAME.findall(e))
        print("%d expressions use %d metric names; /metrics serves %d series names"
              % (len(self.exprs), len(used), len(self.samples)))
        missing = sorted(n for n in used if n not in self.samples)
        self.assertEqual(missing, [], "used by the dashboard, absent from /metrics")

    def test_labels_exist(self):
        for e in self.exprs:
            for name, matchers in SELECTOR.findall(e):
                series = self.samples.get(name, [])
                for label, op, value in MATCHER.findall(matchers):
                    if label in SCRAPE_LABELS:
                        continue
                    have = {s.get(label) for s in series if label in s}
                    self.assertTrue(have, "%s has no label %s (%s)" % (name, label, e))
                    if op == "=":
                        self.assertIn(value, have, "%s{%s=%r} (%s)" % (name, label, value, e))
            for group in BY.findall(e):
                labels = {x.strip() for x in group.split(",")} - SCRAPE_LABELS
                names = NAME.findall(e)
                for label in labels:
                    self.assertTrue(any(label in s for n in names
                                        for s in self.samples.get(n, [])),
                                    "no series of %s has label %s" % (names, label))

    @unittest.skipUnless(shutil.which("promtool"), "promtool not installed")
    def test_promql_parses(self):
        with tempfile.TemporaryDirectory() as d:
            rules = os.path.join(d, "rules.yml")
            with open(rules, "w") as f:
                f.write("groups:\n  - name: dashboard\n    rules:\n")
                for i, e in enumerate(self.exprs):
                    f.write("      - record: dashboard_expr_%d\n        expr: %s\n"
                            % (i, json.dumps(concrete(e))))
            r = subprocess.run(["promtool", "check", "rules", rules], capture_output=True,
                               text=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    @unittest.skipUnless(shutil.which("promtool"), "promtool not installed")
    def test_readme_scrape_config(self):
        with open(README) as f:
            text = f.read()
        blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
        self.assertEqual(len(blocks), 1)
        self.assertIn('"127.0.0.1:6281", "127.0.0.1:6282", "127.0.0.1:6283"', blocks[0])
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "prometheus.yml")
            with open(path, "w") as f:
                f.write(blocks[0])
            r = subprocess.run(["promtool", "check", "config", path], capture_output=True,
                               text=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
