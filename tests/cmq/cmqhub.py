"""cmqhub.py: a real mqhubd with the CMQ transport for the CMQ tests (the
daemon itself comes from tests/websocket/wshub.py: temp dir, free loopback
ports, ready when /readyz says so), and a small signed CMQ client over
http.client (one keep-alive connection, GET or POST, HmacSHA1/HmacSHA256)."""
import base64
import hashlib
import hmac
import http.client
import json
import os
import random
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "websocket"))
from wshub import Hub, free_port  # noqa: E402

SECRET_ID = "AKIDmqhubTEST"
SECRET_KEY = "s3cr3t-key/with+chars="


class CmqHub(Hub):
    def __init__(self, mqhubd, token=None, cmq_extra="", extra=""):
        self.cmq_port = free_port()
        cfg = 'transport "cmq" { listen = "127.0.0.1:%d", secret_id = "%s", secret_key = "%s"%s }\n' % (
            self.cmq_port, SECRET_ID, SECRET_KEY, cmq_extra)
        Hub.__init__(self, mqhubd, token=token, extra=cfg + extra)
        self.endpoint = "http://127.0.0.1:%d" % self.cmq_port

    def check_clean_exit(self):
        """Stop the daemon; fail unless it exited 0 without a sanitizer report."""
        rc = self.stop()
        log = self.read_log()
        self.cleanup()
        if rc != 0 or "Sanitizer" in log:
            raise AssertionError("mqhubd exited %s:\n%s" % (rc, log[-4000:]))


def sign(key, method, host, path, params, sha256=False, skip_at=False):
    """CMQ's signature, computed as the SDKs do (Python's hmac)."""
    items = {k: v for k, v in params.items() if not (skip_at and str(v).startswith("@"))}
    src = method + host + path + "?" + "&".join(
        k.replace("_", ".") + "=" + str(items[k]) for k in sorted(items))
    digest = hmac.new(key.encode(), src.encode("utf-8"),
                      hashlib.sha256 if sha256 else hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


class Client:
    """Signed CMQ requests over one keep-alive connection."""

    def __init__(self, port, method="POST", sha256=False, secret_id=SECRET_ID,
                 secret_key=SECRET_KEY, path="/v2/index.php"):
        self.port, self.method, self.sha256 = port, method, sha256
        self.secret_id, self.secret_key, self.path = secret_id, secret_key, path
        self.host = "127.0.0.1:%d" % port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=45)

    def params(self, action, params, timestamp=None):
        p = {k: str(v) for k, v in params.items()}
        p.update({"Action": action, "SecretId": self.secret_id, "Nonce": str(random.randint(1, 2**62)),
                  "Timestamp": str(int(time.time()) if timestamp is None else timestamp),
                  "RequestClient": "mqhub-test"})
        if self.sha256:
            p["SignatureMethod"] = "HmacSHA256"
        return p

    def raw(self, method, path, body=None, headers=None):
        self.conn.request(method, path, body, headers or {})
        r = self.conn.getresponse()
        return r.status, r.read()

    def call(self, action, timestamp=None, sign_override=None, skip_at=False, **params):
        p = self.params(action, params, timestamp)
        p["Signature"] = sign_override or sign(self.secret_key, self.method, self.host, self.path,
                                               p, self.sha256, skip_at)
        data = urllib.parse.urlencode(p)
        if self.method == "GET":
            status, body = self.raw("GET", self.path + "?" + data)
        else:
            status, body = self.raw("POST", self.path, data)
        assert status == 200, (status, body)
        return json.loads(body)

    def close(self):
        self.conn.close()
