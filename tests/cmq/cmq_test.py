"""cmq_test.py: the CMQ transport (docs/cmq.md) over real HTTP against a real
mqhubd. Usage: python3 cmq_test.py MQHUBD [unittest args]. One daemon for the
whole run (cmqhub.py); each test uses its own queue and topic names."""
import json
import sys
import threading
import time
import unittest

from cmqhub import CmqHub, Client, SECRET_ID

MQHUBD = None
HUB = None


def setUpModule():
    global HUB
    HUB = CmqHub(MQHUBD)


def tearDownModule():
    HUB.check_clean_exit()


class Base(unittest.TestCase):
    def setUp(self):
        self.c = Client(HUB.cmq_port)

    def tearDown(self):
        self.c.close()

    def ok(self, action, **params):
        r = self.c.call(action, **params)
        self.assertEqual(r["code"], 0, r)
        self.assertIn("requestId", r)
        return r

    def err(self, code, action, client=None, **params):
        r = (client or self.c).call(action, **params)
        self.assertEqual(r["code"], code, r)
        self.assertTrue(r["message"].startswith("("), r)
        return r


class Queues(Base):
    def test_create_list_get_set_delete(self):
        self.ok("CreateQueue", queueName="ql-a", visibilityTimeout=10, maxMsgHeapNum=1000000,
                rewindSeconds=60)
        self.err(4460, "CreateQueue", queueName="ql-a")
        self.ok("CreateQueue", queueName="ql-b")
        r = self.ok("ListQueue", searchWord="ql-", limit=1, offset=1)
        self.assertEqual(r["totalCount"], 2)
        self.assertEqual(r["queueList"], [{"queueId": "ql-b", "queueName": "ql-b"}])
        a = self.ok("GetQueueAttributes", queueName="ql-a")
        self.assertEqual((a["visibilityTimeout"], a["maxMsgHeapNum"], a["rewindSeconds"]),
                         (10, 1000000, 60))
        self.assertIn("rewindmsgNum", a)
        self.assertIsInstance(a["createTime"], int)
        self.ok("SetQueueAttributes", queueName="ql-a", pollingWaitSeconds=3)
        self.assertEqual(self.ok("GetQueueAttributes", queueName="ql-a")["pollingWaitSeconds"], 3)
        self.err(4000, "SetQueueAttributes", queueName="ql-a", pollingWaitSeconds=31)
        self.ok("DeleteQueue", queueName="ql-a")
        self.err(4440, "DeleteQueue", queueName="ql-a")
        self.err(4440, "GetQueueAttributes", queueName="ql-a")
        self.err(4000, "NoSuchAction")

    def test_send_receive_delete_and_stale_receipt(self):
        self.ok("CreateQueue", queueName="qs", visibilityTimeout=1)
        body = "a+b c&d=e%f@g ü 漢字"
        mid = self.ok("SendMessage", queueName="qs", msgBody=body)["msgId"]
        m = self.ok("ReceiveMessage", queueName="qs", pollingWaitSeconds=1)
        self.assertEqual((m["msgBody"], m["msgId"], m["dequeueCount"]), (body, mid, 1))
        for k in ("enqueueTime", "nextVisibleTime", "firstDequeueTime"):
            self.assertLess(abs(m[k] - time.time()), 60, k)
        time.sleep(1.5)  # the lock expires: the old receipt is stale
        m2 = self.ok("ReceiveMessage", queueName="qs", pollingWaitSeconds=1)
        self.err(4430, "DeleteMessage", queueName="qs", receiptHandle=m["receiptHandle"])
        self.ok("DeleteMessage", queueName="qs", receiptHandle=m2["receiptHandle"])
        self.err(7000, "ReceiveMessage", queueName="qs", pollingWaitSeconds=0)
        self.err(4000, "SendMessage", queueName="qs", msgBody="")
        self.err(4440, "SendMessage", queueName="nope", msgBody="x")

    def test_batches_and_limits(self):
        self.ok("CreateQueue", queueName="qb")
        bodies = {"msgBody.%d" % i: "m%d" % i for i in range(1, 17)}
        r = self.ok("BatchSendMessage", queueName="qb", **bodies)
        self.assertEqual(len(r["msgList"]), 16)
        self.err(4000, "BatchSendMessage", queueName="qb",
                 **{"msgBody.%d" % i: "x" for i in range(1, 18)})
        self.err(4000, "BatchSendMessage", queueName="qb", **{"msgBody.1": "x", "msgBody.3": "y"})
        self.ok("BatchSendMessage", queueName="qb", **{"msgBody.0": "z0", "msgBody.1": "z1"})
        self.err(4000, "BatchReceiveMessage", queueName="qb", numOfMsg=17)
        r = self.ok("BatchReceiveMessage", queueName="qb", numOfMsg=16, pollingWaitSeconds=1)
        self.assertEqual(len(r["msgInfoList"]), 16)
        handles = {"receiptHandle.%d" % (i + 1): m["receiptHandle"]
                   for i, m in enumerate(r["msgInfoList"])}
        self.ok("BatchDeleteMessage", queueName="qb", **handles)
        r = self.err(6010, "BatchDeleteMessage", queueName="qb", **handles)
        self.assertEqual(len(r["errorList"]), 16)
        self.assertEqual(r["errorList"][0]["code"], 4430)
        self.assertIn("receiptHandle", r["errorList"][0])
        # never waits for a full batch
        t = time.time()
        r = self.ok("BatchReceiveMessage", queueName="qb", numOfMsg=16, pollingWaitSeconds=5)
        self.assertEqual(len(r["msgInfoList"]), 2)
        self.assertLess(time.time() - t, 2)

    def test_long_poll_wakeup_and_timeout(self):
        self.ok("CreateQueue", queueName="qp")
        t = time.time()
        self.err(7000, "ReceiveMessage", queueName="qp", pollingWaitSeconds=2)
        self.assertGreaterEqual(time.time() - t, 1.8)

        def later():
            time.sleep(0.5)
            c = Client(HUB.cmq_port)
            c.call("SendMessage", queueName="qp", msgBody="wake")
            c.close()
        th = threading.Thread(target=later)
        t = time.time()
        th.start()
        m = self.ok("ReceiveMessage", queueName="qp", pollingWaitSeconds=10)
        th.join()
        self.assertEqual(m["msgBody"], "wake")
        self.assertLess(time.time() - t, 5)
        self.err(4000, "ReceiveMessage", queueName="qp", pollingWaitSeconds=31)

    def test_rewind(self):
        self.ok("CreateQueue", queueName="qr0")
        self.err(6050, "RewindQueue", queueName="qr0", startConsumeTime=int(time.time()) - 10)
        self.ok("CreateQueue", queueName="qr", rewindSeconds=600)
        start = int(time.time()) - 1
        self.ok("SendMessage", queueName="qr", msgBody="one")
        m = self.ok("ReceiveMessage", queueName="qr", pollingWaitSeconds=1)
        self.ok("DeleteMessage", queueName="qr", receiptHandle=m["receiptHandle"])
        self.assertEqual(self.ok("GetQueueAttributes", queueName="qr")["rewindMsgNum"], 1)
        self.ok("RewindQueue", queueName="qr", startConsumeTime=start)
        self.assertEqual(self.ok("ReceiveMessage", queueName="qr", pollingWaitSeconds=1)["msgBody"], "one")

    def test_heap_full_and_too_large(self):
        self.ok("CreateQueue", queueName="qf", maxMsgHeapNum=1, maxMsgSize=1024)
        self.ok("SendMessage", queueName="qf", msgBody="a")
        self.err(4410, "SendMessage", queueName="qf", msgBody="b")
        self.ok("CreateQueue", queueName="qt", maxMsgSize=1024)
        self.err(4400, "SendMessage", queueName="qt", msgBody="x" * 2000)

    def test_one_mib_body(self):
        self.ok("CreateQueue", queueName="qm", maxMsgSize=1048576)
        body = ("+&=%@ab" * 200000)[:1048576 - 16] + "ü漢字"  # 1 MiB of UTF-8
        self.assertEqual(len(body.encode()), 1048576 - 16 + 8)
        self.ok("SendMessage", queueName="qm", msgBody=body)
        self.assertEqual(self.ok("ReceiveMessage", queueName="qm", pollingWaitSeconds=1)["msgBody"], body)


class Auth(Base):
    def test_signatures(self):
        self.ok("CreateQueue", queueName="qa")
        for method in ("GET", "POST"):
            for sha256 in (False, True):
                c = Client(HUB.cmq_port, method=method, sha256=sha256)
                self.assertEqual(c.call("SendMessage", queueName="qa", msgBody="@x y")["code"], 0)
                c.close()
        # the Python SDK's POST quirk: @-values left out of the signed string
        self.assertEqual(self.c.call("SendMessage", queueName="qa", msgBody="@a", skip_at=True)["code"], 0)
        g = Client(HUB.cmq_port, method="GET")
        self.err(4100, "SendMessage", client=g, queueName="qa", msgBody="@a", skip_at=True)
        g.close()
        # a query param longer than 8 KiB is read whole (it once ended the
        # param list silently: "wrong Signature"), and a later one still counts
        g = Client(HUB.cmq_port, method="GET")
        long_body = "L" * 20000
        self.assertEqual(g.call("SendMessage", queueName="qa", msgBody=long_body)["code"], 0)
        g.close()
        got = []
        for _ in range(50):  # the queue holds the 6 messages sent above
            r = self.c.call("ReceiveMessage", queueName="qa", pollingWaitSeconds=0)
            if r["code"] != 0:
                break
            got.append(r["msgBody"])
            self.ok("DeleteMessage", queueName="qa", receiptHandle=r["receiptHandle"])
        self.assertIn(long_body, got)
        # any path is served, signed as received
        p = Client(HUB.cmq_port, path="/other")
        self.assertEqual(p.call("SendMessage", queueName="qa", msgBody="x")["code"], 0)
        p.close()

    def test_failures(self):
        self.err(4100, "ListQueue", sign_override="AAAA")
        self.err(4100, "ListQueue", timestamp=int(time.time()) - 1000)
        bad = Client(HUB.cmq_port, secret_id="AKIDother")
        self.err(4100, "ListQueue", client=bad)
        bad.close()
        bad = Client(HUB.cmq_port, secret_key="wrong")
        self.err(4100, "ListQueue", client=bad)
        bad.close()

    def test_http_level(self):
        st, body = self.c.raw("POST", "/v2/index.php", "x" * (5 << 20))
        self.assertEqual(st, 413)
        c = Client(HUB.cmq_port)
        st, body = c.raw("POST", "/v2/index.php", "a=%zz")
        self.assertEqual((st, json.loads(body)["code"]), (200, 4000))
        c.close()


class Connections(unittest.TestCase):
    def test_max_connections(self):
        hub = CmqHub(MQHUBD, cmq_extra=", max_connections = 2")
        try:
            for _ in range(2):  # closed connections free their places
                cs = [Client(hub.cmq_port) for _ in range(2)]
                self.assertEqual([c.call("ListQueue")["code"] for c in cs], [0, 0])
                extra = Client(hub.cmq_port)
                with self.assertRaises(OSError):
                    extra.call("ListQueue")
                extra.close()
                for c in cs:
                    c.close()
                time.sleep(0.3)
        finally:
            hub.check_clean_exit()


class Topics(Base):
    def test_topic_crud(self):
        self.ok("CreateTopic", topicName="tc", filterType=1, maxMsgSize=65536)
        self.err(4460, "CreateTopic", topicName="tc")
        self.err(4000, "CreateTopic", topicName="tc2", filterType=3)
        self.assertEqual(self.ok("ListTopic", searchWord="tc")["topicList"],
                         [{"topicId": "tc", "topicName": "tc"}])
        self.ok("SetTopicAttributes", topicName="tc", maxMsgSize=2048)
        a = self.ok("GetTopicAttributes", topicName="tc")
        self.assertEqual(a["maxMsgSize"], 2048)
        self.ok("CreateQueue", queueName="tc-q")
        self.ok("Subscribe", topicName="tc", subscriptionName="s", protocol="queue",
                endpoint="tc-q", notifyContentFormat="SIMPLIFIED")
        self.err(4490, "Subscribe", topicName="tc", subscriptionName="s", protocol="queue",
                 endpoint="tc-q", notifyContentFormat="SIMPLIFIED")
        self.err(4000, "Subscribe", topicName="tc", subscriptionName="h", protocol="email",
                 endpoint="http://127.0.0.1:1/")
        self.err(4000, "Subscribe", topicName="tc", subscriptionName="j", protocol="queue",
                 endpoint="tc-q", notifyContentFormat="JSON")
        r = self.err(4000, "DeleteTopic", topicName="tc")
        self.assertIn("(10540)", r["message"])
        r = self.ok("ListSubscriptionByTopic", topicName="tc")
        self.assertEqual(r["totalCount"], 1)
        self.assertEqual(r["subscriptionList"][0]["endpoint"], "tc-q")
        s = self.ok("GetSubscriptionAttributes", topicName="tc", subscriptionName="s")
        self.assertEqual((s["protocol"], s["protocal"], s["filterTags"], s["bindingKey"]),
                         ("queue", "queue", [], []))
        self.ok("SetSubscriptionAttributes", topicName="tc", subscriptionName="s",
                notifyStrategy="BACKOFF_RETRY")
        self.ok("SetSubscriptionAttributes", topicName="tc", subscriptionName="s",
                **{"filterTag.1": "new"})
        self.ok("clearSubscriptionFiltertags", topicName="tc", subscriptionName="s")
        self.ok("Unsubscribe", topicName="tc", subscriptionName="s")
        self.err(4440, "Unsubscribe", topicName="tc", subscriptionName="s")
        self.ok("DeleteTopic", topicName="tc")
        self.err(4440, "GetTopicAttributes", topicName="tc")

    def drain(self, queue):
        out = []
        while True:
            r = self.c.call("BatchReceiveMessage", queueName=queue, numOfMsg=16, pollingWaitSeconds=0)
            if r["code"] == 7000:
                return sorted(out)
            self.assertEqual(r["code"], 0, r)
            out += [m["msgBody"] for m in r["msgInfoList"]]
            self.ok("BatchDeleteMessage", queueName=queue,
                    **{"receiptHandle.%d" % (i + 1): m["receiptHandle"]
                       for i, m in enumerate(r["msgInfoList"])})

    def test_routing_keys(self):
        self.ok("CreateTopic", topicName="tr", filterType=2)
        for q, key in (("tr-star", "a.*.c"), ("tr-hash", "a.#")):
            self.ok("CreateQueue", queueName=q)
            self.ok("Subscribe", topicName="tr", subscriptionName=q, protocol="queue", endpoint=q,
                    notifyContentFormat="SIMPLIFIED", **{"bindingKey.1": key})
        self.ok("PublishMessage", topicName="tr", msgBody="abc", routingKey="a.b.c")
        self.ok("PublishMessage", topicName="tr", msgBody="ab", routingKey="a.b")
        self.err(6030, "PublishMessage", topicName="tr", msgBody="none", routingKey="x.y")
        self.ok("BatchPublishMessage", topicName="tr", routingKey="a.x.c",
                **{"msgBody.1": "b1", "msgBody.2": "b2"})
        self.assertEqual(self.drain("tr-star"), ["abc", "b1", "b2"])
        self.assertEqual(self.drain("tr-hash"), ["ab", "abc", "b1", "b2"])

    def test_tags(self):
        self.ok("CreateTopic", topicName="tt", filterType=1)
        self.ok("CreateQueue", queueName="tt-red")
        self.ok("Subscribe", topicName="tt", subscriptionName="red", protocol="queue",
                endpoint="tt-red", notifyContentFormat="SIMPLIFIED", **{"filterTag.1": "red"})
        self.ok("PublishMessage", topicName="tt", msgBody="r", **{"msgTag.1": "red", "msgTag.2": "x"})
        self.err(6030, "PublishMessage", topicName="tt", msgBody="b", **{"msgTag.1": "blue"})
        self.err(4000, "PublishMessage", topicName="tt", msgBody="b",
                 **{"msgTag.%d" % i: "t" for i in range(1, 7)})
        self.err(4000, "BatchPublishMessage", topicName="tt",
                 **{"msgBody.%d" % i: "t" for i in range(1, 18)})
        self.assertEqual(self.drain("tt-red"), ["r"])
        s = self.ok("GetSubscriptionAttributes", topicName="tt", subscriptionName="red")
        self.assertEqual((s["filterTag"], s["filterTags"]), (["red"], ["red"]))
        self.ok("ClearSubscriptionFilterTags", topicName="tt", subscriptionName="red")
        s = self.ok("GetSubscriptionAttributes", topicName="tt", subscriptionName="red")
        self.assertEqual((s["filterTag"], s["filterTags"]), ([], []))


class Subscriptions(Base):
    """Subscriptions that change in place, http endpoints, the times and
    attributes CMQ returns (docs/cmq.md "Subscriptions")."""

    def drain(self, queue):
        return Topics.drain(self, queue)

    def test_set_filters_in_place(self):
        self.ok("CreateTopic", topicName="sf", filterType=1)
        self.ok("CreateQueue", queueName="sf-q")
        self.ok("Subscribe", topicName="sf", subscriptionName="s", protocol="queue",
                endpoint="sf-q", notifyContentFormat="SIMPLIFIED", **{"filterTag.1": "red"})
        self.ok("PublishMessage", topicName="sf", msgBody="r1", **{"msgTag.1": "red"})
        self.ok("SetSubscriptionAttributes", topicName="sf", subscriptionName="s",
                **{"filterTag.1": "blue", "bindingKey.1": "x.#"})
        s = self.ok("GetSubscriptionAttributes", topicName="sf", subscriptionName="s")
        self.assertEqual((s["filterTag"], s["bindingKey"]), (["blue"], ["x.#"]))
        self.err(6030, "PublishMessage", topicName="sf", msgBody="r2", routingKey="x.1",
                 **{"msgTag.1": "red"})
        self.ok("PublishMessage", topicName="sf", msgBody="b1", routingKey="x.1",
                **{"msgTag.1": "blue"})
        self.ok("ClearSubscriptionFilterTags", topicName="sf", subscriptionName="s")
        s = self.ok("GetSubscriptionAttributes", topicName="sf", subscriptionName="s")
        self.assertEqual((s["filterTag"], s["bindingKey"]), ([], ["x.#"]))
        self.ok("PublishMessage", topicName="sf", msgBody="g1", routingKey="x.2",
                **{"msgTag.1": "green"})
        # what was delivered before the change stays; nothing came twice
        self.assertEqual(self.drain("sf-q"), ["b1", "g1", "r1"])
        # hostile: a missing subscription, a JSON format for a queue, a bad strategy
        self.err(4440, "SetSubscriptionAttributes", topicName="sf", subscriptionName="nope",
                 **{"filterTag.1": "a"})
        self.err(4440, "ClearSubscriptionFilterTags", topicName="sf", subscriptionName="nope")
        self.err(4440, "SetSubscriptionAttributes", topicName="nope", subscriptionName="s",
                 notifyStrategy="BACKOFF_RETRY")
        r = self.err(4000, "SetSubscriptionAttributes", topicName="sf", subscriptionName="s",
                     notifyContentFormat="JSON")
        self.assertIn("(10640)", r["message"])
        self.err(4000, "SetSubscriptionAttributes", topicName="sf", subscriptionName="s",
                 notifyStrategy="SOMETIMES")
        self.err(4000, "SetSubscriptionAttributes", topicName="sf", subscriptionName="s",
                 **{"filterTag.1": "t" * 65})
        s = self.ok("GetSubscriptionAttributes", topicName="sf", subscriptionName="s")
        self.assertEqual((s["filterTag"], s["bindingKey"]), ([], ["x.#"]))

    def test_times_filter_type_notify(self):
        before = int(time.time())
        self.ok("CreateTopic", topicName="st", filterType=2)
        self.ok("CreateQueue", queueName="st-q")
        self.ok("Subscribe", topicName="st", subscriptionName="s", protocol="queue",
                endpoint="st-q", notifyContentFormat="SIMPLIFIED",
                notifyStrategy="BACKOFF_RETRY")
        after = int(time.time())
        t = self.ok("GetTopicAttributes", topicName="st")
        q = self.ok("GetQueueAttributes", queueName="st-q")
        s = self.ok("GetSubscriptionAttributes", topicName="st", subscriptionName="s")
        self.assertEqual(t["filterType"], 2)
        for a in (t, q, s):
            self.assertTrue(before - 1 <= a["createTime"] <= after + 1, a)
            self.assertEqual(a["lastModifyTime"], a["createTime"], a)
        self.assertEqual((s["notifyStrategy"], s["notifyContentFormat"]),
                         ("BACKOFF_RETRY", "SIMPLIFIED"))
        self.ok("CreateTopic", topicName="st1")  # filterType absent: 1
        self.assertEqual(self.ok("GetTopicAttributes", topicName="st1")["filterType"], 1)
        time.sleep(1.1)
        self.ok("SetSubscriptionAttributes", topicName="st", subscriptionName="s",
                notifyStrategy="EXPONENTIAL_DECAY_RETRY")
        self.ok("SetTopicAttributes", topicName="st", maxMsgSize=2048)
        self.ok("SetQueueAttributes", queueName="st-q", pollingWaitSeconds=1)
        s2 = self.ok("GetSubscriptionAttributes", topicName="st", subscriptionName="s")
        self.assertEqual(s2["notifyStrategy"], "EXPONENTIAL_DECAY_RETRY")
        self.assertEqual(s2["createTime"], s["createTime"])
        self.assertGreater(s2["lastModifyTime"], s2["createTime"])
        t2 = self.ok("GetTopicAttributes", topicName="st")
        self.assertGreater(t2["lastModifyTime"], t2["createTime"])
        q2 = self.ok("GetQueueAttributes", queueName="st-q")
        self.assertGreater(q2["lastModifyTime"], q2["createTime"])

    def test_subscribe_http(self):
        self.ok("CreateTopic", topicName="sh")
        self.ok("Subscribe", topicName="sh", subscriptionName="w", protocol="http",
                endpoint="http://127.0.0.1:9/hook?x=1", notifyStrategy="BACKOFF_RETRY",
                notifyContentFormat="SIMPLIFIED")
        s = self.ok("GetSubscriptionAttributes", topicName="sh", subscriptionName="w")
        self.assertEqual((s["protocol"], s["protocal"], s["endpoint"], s["notifyStrategy"],
                          s["notifyContentFormat"]),
                         ("http", "http", "http://127.0.0.1:9/hook?x=1", "BACKOFF_RETRY",
                          "SIMPLIFIED"))
        # CMQ's defaults: EXPONENTIAL_DECAY_RETRY and JSON
        self.ok("Subscribe", topicName="sh", subscriptionName="d", protocol="http",
                endpoint="https://127.0.0.1:9/d")
        s = self.ok("GetSubscriptionAttributes", topicName="sh", subscriptionName="d")
        self.assertEqual((s["notifyStrategy"], s["notifyContentFormat"]),
                         ("EXPONENTIAL_DECAY_RETRY", "JSON"))
        self.ok("SetSubscriptionAttributes", topicName="sh", subscriptionName="d",
                notifyContentFormat="SIMPLIFIED")
        s = self.ok("GetSubscriptionAttributes", topicName="sh", subscriptionName="d")
        self.assertEqual((s["endpoint"], s["notifyContentFormat"]),
                         ("https://127.0.0.1:9/d", "SIMPLIFIED"))
        r = self.ok("ListSubscriptionByTopic", topicName="sh")
        self.assertEqual(sorted((x["subscriptionName"], x["protocol"])
                                for x in r["subscriptionList"]), [("d", "http"), ("w", "http")])
        # a published message is pending for them (delivered by the webhook plugin)
        self.ok("PublishMessage", topicName="sh", msgBody="m")
        s = self.ok("GetSubscriptionAttributes", topicName="sh", subscriptionName="w")
        self.assertEqual(s["msgCount"], 1)
        # hostile endpoints and params: refused, nothing created
        for bad in ("ftp://127.0.0.1/x", "http://", "http://a b/", "http://a/\x01",
                    "http://a/" + "x" * 1100):
            r = self.err(4000, "Subscribe", topicName="sh", subscriptionName="bad",
                         protocol="http", endpoint=bad)
            self.assertIn("endpoint.http", r["message"])
        self.err(4000, "Subscribe", topicName="sh", subscriptionName="bad", protocol="http",
                 endpoint="http://a/", notifyContentFormat="XML")
        self.err(4000, "Subscribe", topicName="sh", subscriptionName="bad", protocol="http",
                 endpoint="http://a/", notifyStrategy="NEVER")
        self.err(4440, "GetSubscriptionAttributes", topicName="sh", subscriptionName="bad")
        self.err(4490, "Subscribe", topicName="sh", subscriptionName="w", protocol="http",
                 endpoint="http://127.0.0.1:9/hook?x=1")

    def test_batch_refusal_accepts_nothing(self):
        self.ok("CreateQueue", queueName="sb-q", maxMsgSize=1024, maxMsgHeapNum=3)
        r = self.err(4400, "BatchSendMessage", queueName="sb-q",
                     **{"msgBody.1": "a", "msgBody.2": "x" * 1025, "msgBody.3": "c"})
        self.assertIn("msgBody.2", r["message"])
        self.err(7000, "ReceiveMessage", queueName="sb-q", pollingWaitSeconds=0)
        self.ok("SendMessage", queueName="sb-q", msgBody="one")
        r = self.err(4410, "BatchSendMessage", queueName="sb-q",
                     **{"msgBody.1": "a", "msgBody.2": "b", "msgBody.3": "c"})
        self.assertIn("room for 2", r["message"])
        self.assertEqual(self.ok("GetQueueAttributes", queueName="sb-q")["activeMsgNum"], 1)
        self.ok("BatchSendMessage", queueName="sb-q", **{"msgBody.1": "a", "msgBody.2": "b"})
        self.assertEqual(self.ok("GetQueueAttributes", queueName="sb-q")["activeMsgNum"], 3)
        self.ok("CreateTopic", topicName="sb", maxMsgSize=1024)
        self.ok("CreateQueue", queueName="sb-tq")
        self.ok("Subscribe", topicName="sb", subscriptionName="s", protocol="queue",
                endpoint="sb-tq", notifyContentFormat="SIMPLIFIED")
        self.err(4400, "BatchPublishMessage", topicName="sb",
                 **{"msgBody.1": "a", "msgBody.2": "x" * 1025})
        self.err(4000, "BatchPublishMessage", topicName="sb", routingKey="k" * 256,
                 **{"msgBody.1": "a", "msgBody.2": "b"})
        self.err(4000, "BatchPublishMessage", topicName="sb",
                 **{"msgBody.1": "a", "msgTag.1": "t" * 65})
        self.assertEqual(self.ok("GetTopicAttributes", topicName="sb")["msgCount"], 0)
        self.assertEqual(self.drain("sb-tq"), [])
        self.ok("BatchPublishMessage", topicName="sb", **{"msgBody.1": "a", "msgBody.2": "b"})
        self.assertEqual(self.drain("sb-tq"), ["a", "b"])


if __name__ == "__main__":
    MQHUBD = sys.argv.pop(1)
    unittest.main(verbosity=2)
