"""whook.py: helpers for the webhook plugin's tests (docs/webhook.md) —
real mqhubd nodes (one, or a cluster of three) loading webhook.so, a small
client of the framed TCP protocol (MessagePack), and Receiver, a local HTTP
server whose paths answer as the tests need: /ok, /flaky (500 twice then
200), /fail, /hold (0.3 s then 200), /slow (never answers), /huge (a 100 MB
body), /redirect (302 to file://), /garbage (not HTTP), /dribble (a status
line, then one header byte every 0.2 s); and Deaf, a port that is listening
but never accepts; make_pki() writes a test CA, a server certificate it
signed and a forged (self-signed) one for https receivers. Loopback only,
free ports, temp dirs."""
import collections
import http.server
import os
import select
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time

import msgpack

TOKEN = "webhook-test-root-token-0123456789"
SECRET = "mqhub-webhook-test-cluster-secret-5c2e9a7d41b04f1e"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wait_for(what, fn, timeout, step=0.05):
    """Poll fn() until it returns a true value (returned) or fail after timeout s."""
    deadline = time.time() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.time() > deadline:
            raise AssertionError("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(step)


# ------------------------------------------------------------------ the client

class Closed(Exception):
    pass


class Conn:
    """One TCP connection: call() sends a request and returns its reply."""

    def __init__(self, port, token=TOKEN, timeout=10.0):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.next_id = 0
        if token:
            r = self.call("hello", version=1, token=token)
            if not r.get("ok"):
                raise Closed("hello: %r" % r)

    def close(self):
        self.s.close()

    def _recv(self, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = self.s.recv(n - len(buf))
            if not chunk:
                raise Closed("closed by server")
            buf += chunk
        return bytes(buf)

    def call(self, op, **kw):
        self.next_id += 1
        req = {"op": op, "id": self.next_id}
        req.update(kw)
        data = msgpack.packb(req, use_bin_type=True)
        self.s.sendall(struct.pack(">I", len(data)) + data)
        while True:
            n = struct.unpack(">I", self._recv(4))[0]
            m = msgpack.unpackb(self._recv(n), raw=False, strict_map_key=False)
            if m.get("id") == self.next_id or "id" not in m and "push" not in m:
                return m

    def must(self, op, **kw):
        r = self.call(op, **kw)
        if not r.get("ok"):
            raise AssertionError("%s %r: %s %s" % (op, kw, r.get("code"), r.get("error")))
        return r


# ------------------------------------------------------------------ daemons

class Node:
    """One mqhubd with the TCP transport and webhook.so (config in its dir)."""

    def __init__(self, mqhubd, dir, node_id, tcp, raft, webhook_cfg, peers=None, env=None):
        self.mqhubd, self.dir, self.id, self.tcp, self.raft = mqhubd, dir, node_id, tcp, raft
        self.proc = None
        self.env = dict(os.environ, **(env or {}))
        os.makedirs(dir, exist_ok=True)
        with open(os.path.join(dir, "config.lua"), "w") as f:
            secret = ""
            if peers:
                with open(os.path.join(dir, "cluster.secret"), "w") as s:
                    s.write(SECRET + "\n")
                os.chmod(os.path.join(dir, "cluster.secret"), 0o600)
                secret = ', cluster_secret_file = "cluster.secret"'
            f.write('node { id = %d, data = "%s/data", raft = "127.0.0.1:%d", '
                    'client = "127.0.0.1:%d"%s }\n' % (node_id, dir, raft, tcp, secret))
            f.write('transport "tcp" { listen = "127.0.0.1:%d" }\n' % tcp)
            f.write('transport "webhook" { %s }\n' % webhook_cfg)
            f.write('log { level = "info" }\n')
            f.write('auth { token = "%s" }\n' % TOKEN)
            if peers:
                f.write("peers {\n")
                for pid, (praft, ptcp) in peers.items():
                    if pid != node_id:
                        f.write('  [%d] = { raft = "127.0.0.1:%d", client = "127.0.0.1:%d" },\n'
                                % (pid, praft, ptcp))
                f.write("}\n")

    def start(self):
        self.log = open(os.path.join(self.dir, "mqhubd.log"), "a")
        self.proc = subprocess.Popen([self.mqhubd, "--config",
                                      os.path.join(self.dir, "config.lua")],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=self.env)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        if self.running():
            self.proc.kill()
            self.proc.wait()
        self.log.close()

    def stop(self):
        """SIGTERM; the exit status (-9 when it had to be killed)."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.log.close()
                return -9
        self.log.close()
        return self.proc.returncode

    def read_log(self):
        with open(os.path.join(self.dir, "mqhubd.log"), errors="replace") as f:
            return f.read()

    def conn(self, timeout=10.0):
        return Conn(self.tcp, timeout=timeout)

    def is_leader(self):
        try:
            c = self.conn(timeout=3)
            try:
                r = c.call("cluster.status")
                return r.get("ok") and r.get("role") == "leader"
            finally:
                c.close()
        except (OSError, Closed):
            return False


class Hub:
    """A single node (cluster=1) or three nodes bootstrapping together."""

    def __init__(self, mqhubd, webhook_cfg="scan_interval = 1", n=1, env=None):
        self.dir = tempfile.mkdtemp(prefix="mqhub-webhook-", dir=os.environ.get("TMPDIR", "/tmp"))
        ports = {i: (free_port(), free_port()) for i in range(1, n + 1)}
        self.nodes = [Node(mqhubd, os.path.join(self.dir, "n%d" % i), i, ports[i][1],
                           ports[i][0], webhook_cfg, ports if n > 1 else None, env)
                      for i in range(1, n + 1)]
        for nd in self.nodes:
            nd.start()
        self.leader()

    def leader(self, timeout=30):
        """The node that leads (waiting until one does and serves reads)."""
        def find():
            for nd in self.nodes:
                if not nd.running():
                    continue
                if len(self.nodes) == 1 or nd.is_leader():
                    try:
                        c = nd.conn(timeout=3)
                        ok = c.call("topic.list").get("ok")
                        c.close()
                        if ok:
                            return nd
                    except (OSError, Closed):
                        pass
            for nd in self.nodes:
                if nd.proc is not None and nd.proc.poll() not in (None, -9, -signal.SIGKILL):
                    raise RuntimeError("mqhubd %d exited %s:\n%s" % (nd.id, nd.proc.returncode,
                                                                    nd.read_log()[-4000:]))
            return None
        return wait_for("a leader", find, timeout, 0.1)

    def logs(self):
        return "\n".join("---- node %d\n%s" % (nd.id, nd.read_log()[-6000:]) for nd in self.nodes)

    def check_clean_exit(self):
        """Stop every node; fail unless each exited 0 without a sanitizer report."""
        bad = []
        for nd in self.nodes:
            if nd.proc is None or nd.proc.returncode in (-9, -signal.SIGKILL):
                continue
            rc = nd.stop()
            log = nd.read_log()
            if rc != 0 or "Sanitizer" in log or "runtime error" in log:
                bad.append("node %d exited %s:\n%s" % (nd.id, rc, log[-4000:]))
        if bad:
            raise AssertionError("\n".join(bad))

    def cleanup(self):
        for nd in self.nodes:
            if nd.running():
                nd.kill()
        if not os.environ.get("MQHUB_KEEP_TEST_DIR"):
            shutil.rmtree(self.dir, ignore_errors=True)


# ------------------------------------------------------------------ the receiver

Hit = collections.namedtuple("Hit", "path headers body at")


class Receiver:
    """A threaded HTTP/1.0 server on a free loopback port; every POST is kept in
    self.hits. Behaviour by path (query strings ignored)."""

    HUGE = 100 << 20

    def __init__(self, tls=None):
        """@tls: (certificate file, key file) to serve https."""
        self.lock = threading.Lock()
        self.hits = []
        self.counts = collections.Counter()
        self.active = collections.Counter()      # requests being answered, by path
        self.max_active = collections.Counter()  # the most at once, by path
        self.slow_closed_after = []  # s from a /slow request to the client's close
        self.huge_sent = []          # bytes of /huge written before the client left
        self.raw_after = []          # (path, s) of /garbage and /dribble answers
        self.stop_event = threading.Event()
        rx = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n) if n > 0 else b""
                path = self.path.split("?")[0]
                with rx.lock:
                    rx.hits.append(Hit(path, dict(self.headers.items()), body, time.time()))
                    rx.counts[path] += 1
                    count = rx.counts[path]
                    rx.active[path] += 1
                    rx.max_active[path] = max(rx.max_active[path], rx.active[path])
                    self.counted = True
                try:
                    rx.answer(self, path, count)
                finally:
                    rx.leave(self, path)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.scheme = "http"
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path):
        return "%s://127.0.0.1:%d%s" % (self.scheme, self.port, path)

    def leave(self, h, path):
        """@h's request stops counting as active (once). Called before its
        answer is written: the client may send its next request as soon as it
        reads the answer, before this thread runs again."""
        with self.lock:
            if getattr(h, "counted", False):
                h.counted = False
                self.active[path] -= 1

    def answer(self, h, path, count):
        if path.startswith("/flaky"):
            self.reply(h, 500 if count <= 2 else 200)
        elif path.startswith("/fail"):
            self.reply(h, 500)
        elif path.startswith("/hold"):
            time.sleep(0.3)
            self.leave(h, path)
            self.reply(h, 200)
        elif path.startswith("/slow"):
            self.never_answer(h)
        elif path.startswith("/huge"):
            self.huge(h)
        elif path.startswith("/garbage"):
            self.raw(h, [b"NOT HTTP AT ALL\r\n\r\n"], 0)
        elif path.startswith("/dribble"):
            self.raw(h, [b"HTTP/1.1 200 OK\r\n", b"X-Slow: "] + [b"z"] * 300, 0.2)
        elif path.startswith("/redirect"):
            try:
                h.send_response(302)
                h.send_header("Location", "file:///etc/passwd")
                h.send_header("Content-Length", "0")
                h.end_headers()
            except OSError:
                h.close_connection = True
        else:
            self.reply(h, 200)

    @staticmethod
    def reply(h, status):
        try:
            h.send_response(status)
            h.send_header("Content-Length", "2")
            h.end_headers()
            h.wfile.write(b"ok")
        except OSError:  # the client left (a killed node, a timeout)
            h.close_connection = True

    def never_answer(self, h):
        """Hold the request until the client gives up (or 60 s / stop)."""
        t0 = time.time()
        sock = h.connection
        while not self.stop_event.is_set() and time.time() - t0 < 60:
            r, _, _ = select.select([sock], [], [], 0.1)
            if r:
                try:
                    if not sock.recv(1):
                        break
                except OSError:
                    break
        with self.lock:
            self.slow_closed_after.append(time.time() - t0)
        h.close_connection = True

    def raw(self, h, pieces, pause):
        """Write @pieces as they are (no HTTP framing), @pause s apart, until
        the client leaves; the seconds that took go to self.raw_after."""
        t0 = time.time()
        try:
            for p in pieces:
                if self.stop_event.is_set():
                    break
                h.wfile.write(p)
                h.wfile.flush()
                time.sleep(pause)
        except OSError:
            pass
        with self.lock:
            self.raw_after.append((h.path, time.time() - t0))
        h.close_connection = True

    def huge(self, h):
        sent = 0
        chunk = b"x" * (64 << 10)
        try:
            h.send_response(200)
            h.send_header("Content-Length", str(self.HUGE))
            h.end_headers()
            h.wfile.flush()
            while sent < self.HUGE and not self.stop_event.is_set():
                h.wfile.write(chunk)
                sent += len(chunk)
        except OSError:
            pass
        with self.lock:
            self.huge_sent.append(sent)
        h.close_connection = True

    def count(self, path):
        with self.lock:
            return self.counts[path]

    def hits_for(self, path):
        with self.lock:
            return [x for x in self.hits if x.path == path]

    def close(self):
        if self.stop_event.is_set():
            return
        self.stop_event.set()
        self.server.shutdown()
        self.server.server_close()


class Deaf:
    """A port that is listening but never accepts: connects succeed (the
    kernel's backlog), nothing is ever read or answered."""

    def __init__(self):
        self.s = socket.socket()
        self.s.bind(("127.0.0.1", 0))
        self.s.listen(8)
        self.port = self.s.getsockname()[1]

    def url(self, path="/"):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def close(self):
        self.s.close()


def make_pki(dir):
    """Write ca.pem, server.pem/server.key (signed by the CA, for 127.0.0.1)
    and forged.pem/forged.key (self-signed, also for 127.0.0.1) into @dir."""
    def run(*args):
        subprocess.run(["openssl"] + list(args), cwd=dir, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    with open(os.path.join(dir, "san.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=webhook test CA")
    run("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "san.ext")
    run("req", "-x509", *ec, "-keyout", "forged.key", "-out", "forged.pem", "-days", "2",
        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1")
