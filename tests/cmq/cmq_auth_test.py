"""cmq_auth_test.py: the CMQ port's security (docs/cmq.md "Identity",
"Replays", "TLS"; docs/security.md) against a real mqhubd with a root token:
SecretIds of a credentials file run as named users (the CMQ row of the
permission matrix: each verb x an allowed and a denied name, a refusal is
4102 naming the verb and the name, changes nothing and reaches no raft
segment), grant / revoke / delete apply to an open connection, the replay
cache (replays refused, bounded memory), and hostile clients: a replayed
request, a forged signature with a real SecretId, another user's SecretId,
oversized or missing Nonces, a group-readable credentials file; the single
secret_id form with `user` and with `secret_key_file`. Then TLS on the CMQ
port: https with a test CA (this file's client, urllib, the official Python
SDK when present), plaintext refused, TLS 1.1 refused, TLS 1.2 and 1.3
served, a silent client closed, client certificates required with tls_ca
(none or another CA's refused).
Usage: python3 cmq_auth_test.py MQHUBD MQHUB [unittest args]."""
import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse
import urllib.request

from cmqhub import CmqHub, Client, SECRET_ID, SECRET_KEY, sign
from cmqpki import make_pki
from wshub import Hub, free_port  # on sys.path through cmqhub

HERE = os.path.dirname(os.path.abspath(__file__))
SDK = os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared", "cmq-python-sdk"))
MQHUBD = MQHUB = None
ROOT = "root-token-for-the-cmq-auth-test"
VERBS = ("send", "receive", "publish", "subscribe", "manage")
# user -> (SecretId, SecretKey); each verb's user holds only that verb on pay*
CREDS = {v: ("AKID%s01" % v, "key-of-%s-0123456789abcdef" % v) for v in VERBS}
CREDS["late"] = ("AKIDlate01", "key-of-late-0123456789abcdef")
NO_ACCESS = 4102


def scratch_dir(prefix):
    return tempfile.mkdtemp(prefix=prefix, dir=os.environ.get("TMPDIR", "/tmp"))


def write_creds(path, mode=0o600):
    with open(path, "w") as f:
        f.write("# SecretId  user  SecretKey\n\n")
        for user, (sid, key) in sorted(CREDS.items()):
            f.write("%s\t%s   %s\n" % (sid, user, key))
    os.chmod(path, mode)


def cli(hub, *args):
    """The mqhub CLI as root against @hub's TCP port; its parsed JSON output."""
    r = subprocess.run([MQHUB, "--server", "127.0.0.1:%d" % hub.tcp, "--token", ROOT, "--json"]
                       + list(args), capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise AssertionError("mqhub %s: %s%s" % (" ".join(args), r.stdout, r.stderr))
    return json.loads(r.stdout) if r.stdout.strip() else None


def data_has(hub, needle):
    """Whether @needle is in any file of the data directory (the raft log)."""
    for root, _, files in os.walk(os.path.join(hub.dir, "data")):
        for name in files:
            try:
                with open(os.path.join(root, name), "rb") as f:
                    if needle.encode() in f.read():
                        return True
            except OSError:
                pass
    return False


def as_user(hub, user, **kw):
    sid, key = CREDS[user]
    return Client(hub.cmq_port, secret_id=sid, secret_key=key, **kw)


def signed_form(client, action, **params):
    p = client.params(action, params)
    p["Signature"] = sign(client.secret_key, "POST", client.host, client.path, p)
    return p


class Base(unittest.TestCase):
    def ok(self, client, action, **params):
        r = client.call(action, **params)
        self.assertEqual(r["code"], 0, r)
        return r

    def err(self, code, client, action, *words, **params):
        r = client.call(action, **params)
        self.assertEqual(r["code"], code, r)
        for w in words:
            self.assertIn(w, r["message"], r)
        return r


class Identity(Base):
    """SecretIds mapped to named users, over one daemon."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = scratch_dir("mqhub-cmq-auth-")
        creds = os.path.join(cls.tmp, "cmq.credentials")
        write_creds(creds)
        cls.hub = CmqHub(MQHUBD, token=ROOT, cmq_extra=', credentials_file = "%s"' % creds)
        root = Client(cls.hub.cmq_port)
        for q in ("pay.q", "other.q"):
            assert root.call("CreateQueue", queueName=q)["code"] == 0
            assert root.call("SendMessage", queueName=q, msgBody="seed")["code"] == 0
        for t, q in (("pay.t", "pay.q"), ("other.t", "other.q")):
            assert root.call("CreateTopic", topicName=t)["code"] == 0
            r = root.call("Subscribe", topicName=t, subscriptionName=t + ".s", protocol="queue",
                          endpoint=q, notifyContentFormat="SIMPLIFIED")
            assert r["code"] == 0, r
        root.close()
        for v in VERBS:
            cli(cls.hub, "user", "add", v, "--grant", "%s:pay*" % v)

    @classmethod
    def tearDownClass(cls):
        cls.hub.check_clean_exit()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.root = Client(self.hub.cmq_port)

    def tearDown(self):
        self.root.close()

    def test_matrix(self):
        """Each verb's action on an allowed (pay.*) and a denied (other.*) name;
        the refusals change nothing and reach no raft segment."""
        actions = {  # verb -> (action, name param, the names, extra params)
            "send": ("SendMessage", "queueName", ("pay.q", "other.q"), {"msgBody": "%s"}),
            "receive": ("ReceiveMessage", "queueName", ("pay.q", "other.q"),
                        {"pollingWaitSeconds": 0}),
            "publish": ("PublishMessage", "topicName", ("pay.t", "other.t"), {"msgBody": "%s"}),
            "subscribe": ("ListSubscriptionByTopic", "topicName", ("pay.t", "other.t"), {}),
            "manage": ("SetQueueAttributes", "queueName", ("pay.q", "other.q"),
                       {"pollingWaitSeconds": 3}),
        }
        cross = {"send": "receive", "receive": "send", "publish": "send",
                 "subscribe": "publish", "manage": "send"}
        for verb, (action, field, (allowed, denied), extra) in actions.items():
            c = as_user(self.hub, verb)
            for name, want in ((allowed, 0), (denied, NO_ACCESS)):
                marker = "marker-%s-%s-%d" % (verb, name, time.time_ns())
                params = {k: (v % marker if v == "%s" else v) for k, v in extra.items()}
                params[field] = name
                r = c.call(action, **params)
                self.assertEqual(r["code"], want, (verb, name, r))
                if want:
                    self.assertIn("user '%s'" % verb, r["message"])
                    self.assertIn("'%s'" % name, r["message"])
                    self.assertTrue(r["message"].startswith("(10032)"), r)
                if "msgBody" in extra:
                    self.assertEqual(data_has(self.hub, marker), want == 0, (verb, name))
            # a verb grants only itself: the send user may not receive, ...
            other = cross[verb]
            o_action, o_field, (o_allowed, _), o_extra = actions[other]
            params = {k: (v % "x" if v == "%s" else v) for k, v in o_extra.items()}
            params[o_field] = o_allowed
            self.err(NO_ACCESS, c, o_action, "user '%s'" % verb, **params)
            c.close()
        m = as_user(self.hub, "manage")
        self.err(NO_ACCESS, m, "CreateTopic", "other.new", topicName="other.new")
        self.ok(m, "CreateTopic", topicName="pay.new")
        m.close()
        # nothing of the refusals happened
        q = self.ok(self.root, "GetQueueAttributes", queueName="other.q")
        self.assertEqual((q["activeMsgNum"], q["inactiveMsgNum"], q["pollingWaitSeconds"]),
                         (1, 0, 0), q)
        self.assertEqual(self.ok(self.root, "GetTopicAttributes", topicName="other.t")["msgCount"], 0)
        self.assertEqual(self.root.call("GetTopicAttributes", topicName="other.new")["code"], 4440)
        q = self.ok(self.root, "GetQueueAttributes", queueName="pay.q")
        self.assertEqual(q["pollingWaitSeconds"], 3, q)
        # ListQueue shows a user only the names it holds a grant on
        s = as_user(self.hub, "send")
        r = self.ok(s, "ListQueue")
        self.assertEqual([x["queueName"] for x in r["queueList"]], ["pay.q"])
        s.close()

    def test_changes_apply_to_an_open_connection(self):
        c = as_user(self.hub, "late")
        self.err(4100, c, "SendMessage", "late", "does not exist", queueName="pay.q", msgBody="a")
        cli(self.hub, "user", "add", "late")
        self.err(NO_ACCESS, c, "SendMessage", "send", "pay.q", queueName="pay.q", msgBody="b")
        cli(self.hub, "user", "grant", "late", "send", "pay.q")
        self.ok(c, "SendMessage", queueName="pay.q", msgBody="c")
        cli(self.hub, "user", "revoke", "late", "send", "pay.q")
        self.err(NO_ACCESS, c, "SendMessage", queueName="pay.q", msgBody="d")
        cli(self.hub, "user", "del", "late")
        self.err(4100, c, "SendMessage", "does not exist", queueName="pay.q", msgBody="e")
        cli(self.hub, "user", "add", "late", "--grant", "send:pay*")
        self.ok(c, "SendMessage", queueName="pay.q", msgBody="f")
        # the same connection, signed with another SecretId: that one's identity
        c.secret_id, c.secret_key = CREDS["receive"]
        self.err(NO_ACCESS, c, "SendMessage", "user 'receive'", queueName="pay.q", msgBody="g")
        c.secret_id, c.secret_key = SECRET_ID, SECRET_KEY  # the root form: every right
        self.ok(c, "CreateQueue", queueName="root.q")
        self.ok(c, "SendMessage", queueName="root.q", msgBody="h")
        self.ok(c, "ReceiveMessage", queueName="root.q", pollingWaitSeconds=0)
        c.close()

    def test_hostile(self):
        c = as_user(self.hub, "send")
        # a replayed request: the same signed form again, on this and another connection
        form = urllib.parse.urlencode(signed_form(c, "SendMessage", queueName="pay.q",
                                                  msgBody="replay-me"))
        before = self.ok(self.root, "GetQueueAttributes", queueName="pay.q")["activeMsgNum"]
        self.assertEqual(json.loads(c.raw("POST", c.path, form)[1])["code"], 0)
        fresh = as_user(self.hub, "send")
        for conn in (c, fresh):
            r = json.loads(conn.raw("POST", conn.path, form)[1])
            self.assertEqual(r["code"], 4100, r)
            self.assertIn("replayed request", r["message"])
        fresh.close()
        after = self.ok(self.root, "GetQueueAttributes", queueName="pay.q")["activeMsgNum"]
        self.assertEqual(after, before + 1)
        # a forged signature with a real SecretId; another user's SecretId with this key
        self.err(4100, c, "SendMessage", "wrong Signature", sign_override="AAAAAAAAAAAAAAAAAAAA",
                 queueName="pay.q", msgBody="forged")
        other = Client(self.hub.cmq_port, secret_id=CREDS["manage"][0], secret_key=CREDS["send"][1])
        self.err(4100, other, "SendMessage", "wrong Signature", queueName="pay.q", msgBody="x")
        other.close()
        self.assertFalse(data_has(self.hub, "forged"))
        # Nonces: oversized, not a number, missing
        for nonce in ("9" * 21, "1" * 200000, "12a", ""):
            p = c.params("ListQueue", {})
            p["Nonce"] = nonce
            p["Signature"] = sign(c.secret_key, "POST", c.host, c.path, p)
            r = json.loads(c.raw("POST", c.path, urllib.parse.urlencode(p))[1])
            self.assertEqual(r["code"], 4100, (len(nonce), r))
            self.assertIn("Nonce", r["message"])
        p = c.params("ListQueue", {})
        del p["Nonce"]
        p["Signature"] = sign(c.secret_key, "POST", c.host, c.path, p)
        self.assertEqual(json.loads(c.raw("POST", c.path, urllib.parse.urlencode(p))[1])["code"],
                         4100)
        # many distinct requests pass (each SDK call has a new Nonce)
        for i in range(50):
            self.ok(c, "ListQueue")
        c.close()


class ReplayCache(Base):
    def test_bounded(self):
        """replay_cache_max 1000: 1000 requests signed 100 s ago fill it; the
        next one evicts the oldest, so requests signed at or before that time
        are refused (a replay of an evicted one among them), current ones pass."""
        hub = CmqHub(MQHUBD, token=ROOT, cmq_extra=", replay_cache_max = 1000")
        try:
            c = Client(hub.cmq_port)
            old = int(time.time()) - 100
            p = c.params("ListQueue", {}, timestamp=old)
            p["Signature"] = sign(c.secret_key, "POST", c.host, c.path, p)
            first = urllib.parse.urlencode(p)
            self.assertEqual(json.loads(c.raw("POST", c.path, first)[1])["code"], 0)
            t0 = time.time()
            for _ in range(999):
                self.ok(c, "ListQueue", timestamp=old)
            print("999 signed requests in %.2f s" % (time.time() - t0))
            self.err(4100, c, "ListQueue", "older than the replay cache", timestamp=old)
            r = json.loads(c.raw("POST", c.path, first)[1])
            self.assertEqual(r["code"], 4100, r)
            self.ok(c, "ListQueue")
            self.ok(c, "ListQueue", timestamp=old + 1)
            c.close()
        finally:
            hub.check_clean_exit()


class Config(unittest.TestCase):
    def refused(self, cmq_extra, *words):
        saved = os.environ.get("TMPDIR")
        os.environ["TMPDIR"] = self.tmp  # the refused daemon's dir goes with ours
        try:
            with self.assertRaises(RuntimeError) as e:
                CmqHub(MQHUBD, token=ROOT, cmq_extra=cmq_extra)
        finally:
            if saved is None:
                del os.environ["TMPDIR"]
            else:
                os.environ["TMPDIR"] = saved
        for w in words:
            self.assertIn(w, str(e.exception))

    def test_refusals(self):
        tmp = self.tmp = scratch_dir("mqhub-cmq-cfg-")
        try:
            creds = os.path.join(tmp, "group-readable")
            write_creds(creds, 0o640)
            self.refused(', credentials_file = "%s"' % creds, creds, "chmod 600")
            bad = os.path.join(tmp, "short-key")
            with open(bad, "w") as f:
                f.write("AKIDx alice short\n")
            os.chmod(bad, 0o600)
            self.refused(', credentials_file = "%s"' % bad, bad + ":1", "shorter than 16")
            self.refused(', tls_cert = "/nonexistent.pem"', "tls_cert and tls_key go together")
            key = os.path.join(tmp, "root.key")
            with open(key, "w") as f:
                f.write("a-root-key-from-a-file-0123\n")
            os.chmod(key, 0o600)
            # CmqHub's config has secret_key: a second key for the SecretId is refused
            self.refused(', secret_key_file = "%s"' % key, "secret_id goes with one of")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


class KeyFile(Base):
    def test_secret_key_file(self):
        """The root form's key from secret_key_file (owner-only) instead of the config."""
        tmp = scratch_dir("mqhub-cmq-key-")
        try:
            key = os.path.join(tmp, "root.key")
            with open(key, "w") as f:
                f.write("a-root-key-from-a-file-0123\n")
            os.chmod(key, 0o600)
            hub = KeyFileHub(MQHUBD, key)
            try:
                c = Client(hub.cmq_port, secret_key="a-root-key-from-a-file-0123")
                self.ok(c, "CreateQueue", queueName="kf.q")
                c.close()
                c = Client(hub.cmq_port)  # the config-less default key is not it
                self.err(4100, c, "ListQueue", "wrong Signature")
                c.close()
            finally:
                hub.check_clean_exit()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


class KeyFileHub(CmqHub):
    """CmqHub's config without secret_key: secret_key_file instead."""

    def __init__(self, mqhubd, key_file):
        self.cmq_port = free_port()
        cfg = 'transport "cmq" { listen = "127.0.0.1:%d", secret_id = "%s", secret_key_file = "%s" }\n' % (
            self.cmq_port, SECRET_ID, key_file)
        Hub.__init__(self, mqhubd, token=ROOT, extra=cfg)
        self.endpoint = "http://127.0.0.1:%d" % self.cmq_port


class SingleFormUser(Base):
    def test_secret_id_with_user(self):
        """secret_id + secret_key + user: that SecretId runs as the user, not root."""
        hub = CmqHub(MQHUBD, token=ROOT, cmq_extra=', user = "solo"')
        try:
            c = Client(hub.cmq_port)
            self.err(4100, c, "CreateQueue", "user 'solo'", "does not exist", queueName="solo.q")
            cli(hub, "user", "add", "solo", "--grant", "manage:solo*")
            self.ok(c, "CreateQueue", queueName="solo.q")
            self.err(NO_ACCESS, c, "CreateQueue", "user 'solo'", queueName="other.q")
            self.err(NO_ACCESS, c, "SendMessage", "send", queueName="solo.q", msgBody="x")
            c.close()
        finally:
            hub.check_clean_exit()


class TlsClient(Client):
    def __init__(self, port, ctx, **kw):
        Client.__init__(self, port, **kw)
        self.conn.close()
        self.conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=45, context=ctx)


class Tls(Base):
    @classmethod
    def setUpClass(cls):
        cls.tmp = scratch_dir("mqhub-cmq-tls-")
        make_pki(cls.tmp)
        cls.hub = CmqHub(MQHUBD, token=ROOT, cmq_extra=', tls_cert = "%s", tls_key = "%s"' % (
            os.path.join(cls.tmp, "server.pem"), os.path.join(cls.tmp, "server.key")))
        cls.ctx = ssl.create_default_context(cafile=os.path.join(cls.tmp, "ca.pem"))

    @classmethod
    def tearDownClass(cls):
        cls.hub.check_clean_exit()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def pem(cls, name):
        return os.path.join(cls.tmp, name)

    def test_https(self):
        c = TlsClient(self.hub.cmq_port, self.ctx)
        self.ok(c, "CreateQueue", queueName="tls.q")
        self.ok(c, "SendMessage", queueName="tls.q", msgBody="over TLS")
        self.assertEqual(self.ok(c, "ReceiveMessage", queueName="tls.q",
                                 pollingWaitSeconds=1)["msgBody"], "over TLS")
        self.assertEqual(c.conn.sock.version() in ("TLSv1.2", "TLSv1.3"), True)
        c.close()
        # urllib over https with the CA, the signature over the Host it sends
        host = "127.0.0.1:%d" % self.hub.cmq_port
        p = Client(self.hub.cmq_port).params("ListQueue", {})
        p["Signature"] = sign(SECRET_KEY, "POST", host, "/v2/index.php", p)
        req = urllib.request.Request("https://%s/v2/index.php" % host,
                                     data=urllib.parse.urlencode(p).encode())
        with urllib.request.urlopen(req, timeout=10, context=self.ctx) as r:
            self.assertEqual(json.loads(r.read())["code"], 0)

    def test_plaintext_refused(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.hub.cmq_port, timeout=10)
        with self.assertRaises((OSError, http.client.HTTPException)):
            conn.request("POST", "/v2/index.php", "Action=ListQueue")
            conn.getresponse().read()
        conn.close()
        c = TlsClient(self.hub.cmq_port, self.ctx)  # still serving
        self.ok(c, "ListQueue")
        c.close()

    def test_silent_client_closed(self):
        """A client that connects and never starts its handshake is closed:
        libwebsockets drops a connection that sent nothing after 10 s (as on
        the plaintext port; header_timeout does not shorten that)."""
        t0 = time.time()
        with socket.create_connection(("127.0.0.1", self.hub.cmq_port), timeout=20) as s:
            self.assertEqual(s.recv(1), b"")
        print("silent TLS client closed after %.1f s" % (time.time() - t0))
        self.assertLess(time.time() - t0, 15)

    def s_client(self, *args, **kw):
        return subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % self.hub.cmq_port,
                               "-CAfile", self.pem("ca.pem"), "-brief"] + list(args),
                              input="", capture_output=True, text=True, timeout=30, **kw)

    def test_protocol_versions(self):
        time.sleep(1.1)  # past the second of any earlier refusal: this one is logged
        old = self.s_client("-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0")
        self.assertNotEqual(old.returncode, 0, old.stdout + old.stderr)
        self.assertNotIn("Protocol version: TLSv1.1", old.stdout + old.stderr)
        for v in ("1_2", "1_3"):
            r = self.s_client("-tls" + v)
            self.assertIn("Protocol version: TLSv" + v.replace("_", "."), r.stdout + r.stderr)
        self.assertIn("TLS from 127.0.0.1 refused: protocol version (a client older than TLS 1.2?)",
                      self.hub.read_log())

    @unittest.skipUnless(os.path.isdir(os.path.join(SDK, "cmq")),
                         "the CMQ Python SDK is not at %s" % SDK)
    def test_python_sdk_over_https(self):
        """The unmodified SDK with an https endpoint (its default CA check, the
        test CA through SSL_CERT_FILE), in a child so the variable stays there."""
        prog = (
            "import importlib.util, logging, sys, types\n"
            "sys.path.insert(0, sys.argv[1])\n"
            "if importlib.util.find_spec('mailcap') is None: sys.modules['mailcap'] = types.ModuleType('mailcap')\n"
            "logging.getLogger('CMQ_python_sdk').addHandler(logging.NullHandler())\n"
            "from cmq.account import Account\n"
            "from cmq.queue import Message, QueueMeta\n"
            "a = Account(sys.argv[2], sys.argv[3], sys.argv[4])\n"
            "q = a.get_queue('sdk.tls')\n"
            "q.create(QueueMeta())\n"
            "q.send_message(Message('sdk over https'))\n"
            "m = q.receive_message(1)\n"
            "q.delete_message(m.receiptHandle)\n"
            "print(m.msgBody)\n")
        env = dict(os.environ, SSL_CERT_FILE=self.pem("ca.pem"))
        r = subprocess.run([sys.executable, "-c", prog, SDK, "https://127.0.0.1:%d" % self.hub.cmq_port,
                            SECRET_ID, SECRET_KEY], capture_output=True, text=True, timeout=60,
                           env=env, cwd=self.tmp)
        self.assertEqual((r.returncode, r.stdout.strip()), (0, "sdk over https"), r.stderr)

    def test_client_certificates(self):
        hub = CmqHub(MQHUBD, token=ROOT, cmq_extra=', tls_cert = "%s", tls_key = "%s", '
                     'tls_ca = "%s"' % (self.pem("server.pem"), self.pem("server.key"),
                                        self.pem("ca.pem")))
        try:
            c = TlsClient(hub.cmq_port, self.ctx)
            with self.assertRaises((OSError, http.client.HTTPException)):
                c.call("ListQueue")
            c.close()
            deadline = time.time() + 5
            while "refused: certificate required" not in hub.read_log() and time.time() < deadline:
                time.sleep(0.05)
            self.assertIn("TLS from 127.0.0.1 refused: certificate required (the client sent none)",
                          hub.read_log())
            ctx = ssl.create_default_context(cafile=self.pem("ca.pem"))
            ctx.load_cert_chain(self.pem("client.pem"), self.pem("client.key"))
            c = TlsClient(hub.cmq_port, ctx)
            self.ok(c, "ListQueue")
            c.close()
            other = os.path.join(self.tmp, "other")  # a client certificate of another CA
            os.mkdir(other)
            make_pki(other)
            ctx = ssl.create_default_context(cafile=self.pem("ca.pem"))
            ctx.load_cert_chain(os.path.join(other, "client.pem"), os.path.join(other, "client.key"))
            c = TlsClient(hub.cmq_port, ctx)
            with self.assertRaises((OSError, http.client.HTTPException)):
                c.call("ListQueue")
            c.close()
        finally:
            hub.check_clean_exit()


if __name__ == "__main__":
    MQHUBD = sys.argv.pop(1)
    MQHUB = sys.argv.pop(1)
    unittest.main(verbosity=2)
