"""wshub.py: start a real mqhubd for the WebSocket tests — a temp dir, a
generated config on free loopback ports (TCP, raft, WebSocket), optionally
under a lower open-file limit (nofile), wait until /readyz says ready, stop with
SIGTERM (a daemon that does not start leaves nothing behind). Also a strict
Prometheus text-format parser (parse_prometheus) used by the /metrics tests."""
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Hub:
    def __init__(self, mqhubd, token=None, ws_extra="", extra="", nofile=None):
        self.dir = tempfile.mkdtemp(prefix="mqhub-ws-", dir=os.environ.get("TMPDIR", "/tmp"))
        self.tcp, self.raft, self.ws = free_port(), free_port(), free_port()
        self.token = token
        with open(os.path.join(self.dir, "config.lua"), "w") as f:
            f.write('node { id = 1, data = "%s/data", raft = "127.0.0.1:%d" }\n' % (self.dir, self.raft))
            f.write('transport "tcp" { listen = "127.0.0.1:%d" }\n' % self.tcp)
            f.write('transport "websocket" { listen = "127.0.0.1:%d"%s }\n' % (self.ws, ws_extra))
            f.write('log { level = "warn" }\n')
            if token:
                f.write('auth { token = "%s" }\n' % token)
            f.write(extra)
        self.log = open(os.path.join(self.dir, "mqhubd.log"), "w")
        limit = (lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))) \
            if nofile else None
        self.proc = subprocess.Popen([mqhubd, "--config", os.path.join(self.dir, "config.lua")],
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     preexec_fn=limit)
        self.http_base = "http://127.0.0.1:%d" % self.ws
        self.url = "ws://127.0.0.1:%d/" % self.ws
        deadline = time.time() + 15
        while time.time() < deadline:
            if self.proc.poll() is not None:
                self.failed("mqhubd exited: ")
            try:
                if self.http("/readyz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        self.failed("mqhubd not ready: ")

    def failed(self, why):
        """Raise RuntimeError with @why and the daemon's log, leaving nothing
        behind (no process, no temp dir)."""
        text = why + self.read_log()
        self.cleanup()
        raise RuntimeError(text)

    def read_log(self):
        with open(os.path.join(self.dir, "mqhubd.log")) as f:
            return f.read()

    def http(self, path, headers=None):
        req = urllib.request.Request(self.http_base + path, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, r.read().decode(), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(), dict(e.headers)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                rc = self.proc.wait()
        else:
            rc = self.proc.returncode
        self.log.close()
        return rc

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(r"^(%s)(\{(.*)\})? (\S+)$" % _NAME)
_LABEL = re.compile(r'(%s)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)' % r"[a-zA-Z_][a-zA-Z0-9_]*")


def parse_prometheus(text):
    """Parse text format 0.0.4 strictly: every sample belongs to the family of
    the last # TYPE line (histogram suffixes allowed), families appear once,
    labels are well formed, values are floats. Returns
    {family: {"type": t, "samples": [(name, {labels}, value)]}}."""
    families, current = {}, None
    if not text.endswith("\n"):
        raise ValueError("no final newline")
    for n, line in enumerate(text.splitlines(), 1):
        if line.startswith("# TYPE "):
            parts = line.split(" ")
            if len(parts) != 4 or not re.fullmatch(_NAME, parts[2]) or parts[3] not in (
                    "counter", "gauge", "histogram", "summary", "untyped"):
                raise ValueError("line %d: bad TYPE line: %r" % (n, line))
            if parts[2] in families:
                raise ValueError("line %d: family %s twice" % (n, parts[2]))
            current = parts[2]
            families[current] = {"type": parts[3], "samples": []}
            continue
        if line.startswith("#") or line == "":
            continue
        m = _SAMPLE.match(line)
        if not m:
            raise ValueError("line %d: not a sample: %r" % (n, line))
        name, labels_text, value = m.group(1), m.group(3), m.group(4)
        allowed = {current}
        if current and families[current]["type"] == "histogram":
            allowed |= {current + "_bucket", current + "_sum", current + "_count"}
        if name not in allowed:
            raise ValueError("line %d: sample %s outside its family (%s)" % (n, name, current))
        labels, pos = {}, 0
        while labels_text and pos < len(labels_text):
            lm = _LABEL.match(labels_text, pos)
            if not lm:
                raise ValueError("line %d: bad labels %r" % (n, labels_text))
            labels[lm.group(1)] = lm.group(2)
            pos = lm.end()
        families[current]["samples"].append((name, labels, float(value)))
    return families
