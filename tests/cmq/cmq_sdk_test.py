"""cmq_sdk_test.py: the official Tencent CMQ Python SDK, unmodified, from
../shared/cmq-python-sdk (beside the checkout; never copied into the tree),
against a real mqhubd's CMQ transport: a queue and a topic workload.
Usage: python3 cmq_sdk_test.py MQHUBD. When the SDK is absent it prints SKIP
with the reason and exits SKIP_CODE (CTest's SKIP_RETURN_CODE: shown as
skipped, not passed), starting no daemon."""
import importlib.util
import logging
import os
import sys
import time
import types
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SDK = os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared", "cmq-python-sdk"))
MQHUBD = None
HUB = None
SKIP_CODE = 77

if os.path.isdir(os.path.join(SDK, "cmq")):
    sys.path.insert(0, SDK)
    if importlib.util.find_spec("mailcap") is None:  # gone in Python 3.13; the SDK imports it
        sys.modules["mailcap"] = types.ModuleType("mailcap")
    logging.getLogger("CMQ_python_sdk").addHandler(logging.NullHandler())  # no log file in cwd
    from cmq.account import Account
    from cmq.cmq_exception import CMQServerException
    from cmq.queue import Message, QueueMeta
    from cmq.subscription import SubscriptionMeta
    from cmq.topic import Message as TopicMessage, TopicMeta
else:
    Account = None

from cmqhub import CmqHub, SECRET_ID, SECRET_KEY  # noqa: E402


def setUpModule():
    global HUB
    HUB = CmqHub(MQHUBD)


def tearDownModule():
    HUB.check_clean_exit()


class Sdk(unittest.TestCase):
    def account(self, sign=None, method="POST"):
        a = Account(HUB.endpoint, SECRET_ID, SECRET_KEY)
        if sign:
            a.set_sign(sign)
        a.get_client().set_method(method)
        return a

    def code(self, fn, *args):
        try:
            fn(*args)
        except CMQServerException as e:
            return e.code
        return 0

    def test_queue_workload(self):
        for n, (sign, method) in enumerate((("sha1", "POST"), ("sha256", "GET"))):
            acc = self.account(sign, method)
            q = acc.get_queue("sdk-q%d" % n)
            meta = QueueMeta()
            meta.rewindSeconds = 600
            q.create(meta)
            self.assertEqual(self.code(q.create, meta), 4460)
            self.assertIn("sdk-q%d" % n, [e["queueName"] for e in acc.list_queue("sdk-")[1]])
            got = QueueMeta()
            q.get_attributes()
            meta.visibilityTimeout = 40
            q.set_attributes(meta)
            got = q.get_attributes()
            self.assertEqual(got.visibilityTimeout, 40)
            str(got)
            start = int(time.time()) - 1
            self.assertTrue(q.send_message(Message("@ops done + & = % ü")).msgId)
            ids = q.batch_send_message([Message("b%d" % i) for i in range(5)])
            self.assertEqual(len(ids), 5)
            m = q.receive_message(1)
            self.assertEqual(m.msgBody, "@ops done + & = % ü")
            str(m)
            q.delete_message(m.receiptHandle)
            self.assertEqual(self.code(q.delete_message, m.receiptHandle), 4430)
            ms = q.batch_receive_message(16, 1)
            self.assertEqual(sorted(x.msgBody for x in ms), ["b%d" % i for i in range(5)])
            q.batch_delete_message([x.receiptHandle for x in ms])
            self.assertEqual(self.code(q.receive_message, 1), 7000)
            q.rewindQueue(start)
            self.assertEqual(len(q.batch_receive_message(16, 1)), 6)
            q.delete()
            self.assertEqual(self.code(q.get_attributes), 4440)

    def test_topic_workload(self):
        acc = self.account()
        for name in ("sdk-tq-red", "sdk-tq-key"):
            acc.get_queue(name).create(QueueMeta())
        t = acc.get_topic("sdk-t")
        tm = TopicMeta()
        t.create(tm)
        t.get_attributes()
        tm.maxMsgSize = 4096
        t.set_attributes(tm)
        self.assertEqual(t.get_attributes().maxMsgSize, 4096)
        self.assertIn("sdk-t", [e["topicName"] for e in acc.list_topic("sdk")[1]])
        for name, tags, keys in (("sdk-tq-red", ["red"], []), ("sdk-tq-key", [], ["a.#"])):
            s = acc.get_subscription("sdk-t", name)
            sm = SubscriptionMeta()
            sm.Endpoint, sm.Protocal, sm.NotifyContentFormat = name, "queue", "SIMPLIFIED"
            sm.FilterTag, sm.bindingKey = tags, keys
            s.create(sm)
            got = s.get_attributes()
            str(got)
            self.assertEqual((got.Protocal, got.FilterTag, got.bindingKey), ("queue", tags, keys))
        self.assertEqual(acc.get_subscription("sdk-t", "sdk-tq-key").clearFilterTags(), None)
        total, subs, _ = t.list_subscription()
        self.assertEqual(total, 2)
        t.publish_message(TopicMessage("red one", ["red"]))
        t.publish_message(TopicMessage("keyed"), "a.b")
        t.batch_publish_message([TopicMessage("k1"), TopicMessage("k2")], [], "a.c")
        self.assertEqual(self.code(t.publish_message, TopicMessage("none", ["blue"])), 6030)
        self.assertEqual(acc.get_queue("sdk-tq-red").receive_message(1).msgBody, "red one")
        got = acc.get_queue("sdk-tq-key").batch_receive_message(16, 1)
        self.assertEqual(sorted(m.msgBody for m in got), ["k1", "k2", "keyed"])
        self.assertEqual(self.code(t.delete), 4000)
        for name in ("sdk-tq-red", "sdk-tq-key"):
            acc.get_subscription("sdk-t", name).delete()
        t.delete()
        self.assertEqual(self.code(t.get_attributes), 4440)


if __name__ == "__main__":
    MQHUBD = sys.argv.pop(1)
    if Account is None:
        print("SKIP: the CMQ Python SDK is not at %s (a checkout of Tencent's "
              "cmq-python-sdk, beside this source tree)" % SDK)
        sys.exit(SKIP_CODE)
    unittest.main(verbosity=2)
