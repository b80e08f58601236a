"""cmq_node_sdk_test.py: the npm package cmq-sdk 2.1.0 (a real Node client of
Tencent CMQ, unmodified) against a real mqhubd's CMQ transport, over http and
over https (TLS with a test CA, given to Node with NODE_EXTRA_CA_CERTS): a
queue and topic workload (node/workload.js). The SDK hard-codes the cloud's
host names; node/redirect.js, loaded with --require, sends this process's
connections for them to the hub's loopback port (docs/cmq.md "Pointing a CMQ
program at mqhub").

The package is installed by tools/install-deps.sh (the install step, where
the network is allowed) into NODE_DEPS, the source tree's .deps/node/; the test
itself never reaches a registry. When node or the package is missing it
prints SKIP with the command that installs it and exits SKIP_CODE (CTest's
SKIP_RETURN_CODE: shown as skipped, not passed).
Usage: python3 cmq_node_sdk_test.py MQHUBD NODE_DEPS [unittest args]."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

from cmqhub import CmqHub, SECRET_ID, SECRET_KEY
from cmqpki import make_pki

HERE = os.path.dirname(os.path.abspath(__file__))
VERSION = "2.1.0"
SKIP_CODE = 77
INSTALL = "tools/install-deps.sh"
MQHUBD = PREFIX = None


def missing():
    """None when node and cmq-sdk VERSION under PREFIX are there, else why not."""
    have = os.path.join(PREFIX, "node_modules", "cmq-sdk", "package.json")
    if shutil.which("node") is None:
        return "node is not installed (Debian package nodejs)"
    try:
        with open(have) as f:
            version = json.load(f).get("version")
    except (OSError, ValueError):
        return "cmq-sdk is not installed in %s" % PREFIX
    if version != VERSION:
        return "cmq-sdk %s in %s, want %s" % (version, PREFIX, VERSION)
    return None


class NodeSdk(unittest.TestCase):
    def workload(self, hub, scheme, env=None):
        """Run workload.js against @hub; its JSON result."""
        hosts = ["cmq-%s-gz.api.%s" % (kind, "qcloud.com" if scheme == "https" else "tencentyun.com")
                 for kind in ("queue", "topic")]
        env = dict(os.environ, **(env or {}))
        env["CMQ_REDIRECT"] = ",".join("%s=127.0.0.1:%d" % (h, hub.cmq_port) for h in hosts)
        env["NODE_PATH"] = os.path.join(PREFIX, "node_modules")
        r = subprocess.run(["node", "--require", os.path.join(HERE, "node", "redirect.js"),
                            os.path.join(HERE, "node", "workload.js"), SECRET_ID, SECRET_KEY, scheme],
                           capture_output=True, text=True, timeout=120, env=env)
        self.assertEqual(r.returncode, 0, r.stderr + r.stdout)
        return json.loads(r.stdout.strip().splitlines()[-1])

    def check(self, out, scheme):
        self.assertEqual(out["queueId"], "node.%s.q" % scheme)
        self.assertTrue(out["msgId"])
        self.assertEqual(out["batchSent"], 3)
        self.assertEqual(out["received"], ["b1", "b2", "b3", "hello from node"])
        self.assertEqual(out["left"], 0)
        self.assertEqual(out["listed"], ["node.%s.q" % scheme])
        self.assertEqual(out["blue"], 6030)  # matched no subscription, as CMQ answers
        self.assertEqual(out["fanned"], ["a red one", "red 2", "red 3"])
        self.assertEqual(out["emptyReceive"], "7000")
        self.assertEqual(out["subscriptions"], 1)

    def test_http(self):
        hub = CmqHub(MQHUBD)
        try:
            self.check(self.workload(hub, "http"), "http")
        finally:
            hub.check_clean_exit()

    def test_https(self):
        tmp = tempfile.mkdtemp(prefix="mqhub-cmq-node-", dir=os.environ.get("TMPDIR", "/tmp"))
        try:
            make_pki(tmp, ["DNS:cmq-queue-gz.api.qcloud.com", "DNS:cmq-topic-gz.api.qcloud.com"])
            hub = CmqHub(MQHUBD, cmq_extra=', tls_cert = "%s/server.pem", tls_key = "%s/server.key"'
                         % (tmp, tmp))
            try:
                out = self.workload(hub, "https", {"NODE_EXTRA_CA_CERTS": tmp + "/ca.pem"})
                self.check(out, "https")
            finally:
                hub.check_clean_exit()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    MQHUBD = sys.argv.pop(1)
    PREFIX = os.path.abspath(sys.argv.pop(1))
    why = missing()
    if why:
        print("SKIP: %s; install it with: %s (as root; the install step is the only "
              "one that uses the network)" % (why, os.path.normpath(os.path.join(HERE, "..", "..", INSTALL))))
        sys.exit(SKIP_CODE)
    unittest.main(verbosity=2)
