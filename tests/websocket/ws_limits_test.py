"""ws_limits_test.py: WebSocket limits against hostile clients (issue 12,
docs/websocket.md "Limits"): JSON nested too deep or with too many values is
refused before parsing, fast, while other clients are answered; pipelined
GET /healthz are each answered.
Usage: python3 ws_limits_test.py MQHUBD [unittest args]."""
import asyncio
import json
import socket
import sys
import time
import unittest

import websockets

from wshub import Hub

MQHUBD = None


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


class Limits(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.hub = Hub(MQHUBD)

    @classmethod
    def tearDownClass(cls):
        rc = cls.hub.stop()
        cls.hub.cleanup()
        assert rc == 0, "mqhubd exit status %s" % rc

    def refused(self, text, want):
        """Send @text on one connection while another pings: BAD_REQUEST naming
        @want, close 1007, and the other client's ping answered quickly."""
        async def go():
            async with websockets.connect(self.hub.url, subprotocols=["mqhub.v1.json"],
                                          max_size=None) as other, \
                    websockets.connect(self.hub.url, subprotocols=["mqhub.v1.json"],
                                       max_size=None) as ws:
                t0 = time.monotonic()
                await ws.send(text)
                await other.send(json.dumps({"op": "ping", "id": 1}))
                pong = json.loads(await asyncio.wait_for(other.recv(), 20))
                ping_s = time.monotonic() - t0
                err = json.loads(await asyncio.wait_for(ws.recv(), 20))
                took = time.monotonic() - t0
                with self.assertRaises(websockets.ConnectionClosed) as cm:
                    await asyncio.wait_for(ws.recv(), 20)
                return pong, ping_s, err, took, cm.exception.code
        pong, ping_s, err, took, code = run(go())
        print("%d bytes: %s in %.3f s, other client's ping %.3f s" %
              (len(text), err.get("error"), took, ping_s), file=sys.stderr)
        self.assertTrue(pong["ok"])
        self.assertEqual(err["code"], "BAD_REQUEST")
        self.assertIn(want, err["error"])
        self.assertEqual(code, 1007)
        self.assertLess(took, 5.0, "refusing took too long")

    def test_deeply_nested_json(self):
        n = 4 * 1024 * 1024
        self.refused('{"op": "ping", "id": 1, "x": ' + "[" * n + "]" * n + "}", "nested deeper")

    def test_huge_flat_json(self):
        text = '{"op": "ping", "id": 1, "x": [' + ",".join(["1"] * 3000000) + "]}"
        self.refused(text, "more than")

    def test_pipelined_healthz(self):
        with socket.create_connection(("127.0.0.1", self.hub.ws), timeout=10) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 3)
            data, deadline = b"", time.monotonic() + 10
            while data.count(b"ok\n") < 3 and time.monotonic() < deadline:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        self.assertEqual(data.count(b"HTTP/1.1 200"), 3, data[:300])


if __name__ == "__main__":
    MQHUBD = sys.argv.pop(1)
    unittest.main()
