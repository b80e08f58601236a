"""webhook_bench.py: webhook delivery throughput (docs/benchmarks.md
"Webhook delivery"), not a test: one mqhubd with webhook.so, one http
subscription to a local keep-alive HTTP/1.1 receiver (asyncio, answers 200 at
once). N messages are published first (batches of 256), then the
subscription is created with from = "earliest", so the whole backlog is
pending at once; timed from the first POST (the scan that picks the
subscription up) until every message is acknowledged.
Prints messages/s, POSTs received, and mqhubd's CPU time and RSS.
Usage: webhook_bench.py <mqhubd> [N] [window] [max_inflight]"""
import asyncio
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from whook import Hub, rss_kib, wait_for  # noqa: E402


class FastReceiver:
    """HTTP/1.1 keep-alive, 200 with an empty body for every request."""

    def __init__(self):
        self.count = 0
        self.port = None
        ready = threading.Event()
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.run, args=(ready,), daemon=True).start()
        ready.wait(10)

    def run(self, ready):
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(
            asyncio.start_server(self.serve, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()

    async def serve(self, reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                n = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        n = int(line.split(b":", 1)[1])
                if n:
                    await reader.readexactly(n)
                self.count += 1
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    mqhubd = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
    window = int(sys.argv[3]) if len(sys.argv) > 3 else 16
    inflight = int(sys.argv[4]) if len(sys.argv) > 4 else 256
    rx = FastReceiver()
    hub = Hub(mqhubd, "scan_interval = 1, window = %d, max_inflight = %d" % (window, inflight))
    try:
        node = hub.leader()
        c = node.conn(timeout=60)
        c.must("topic.create", name="bench")
        body = b"x" * 200
        for i in range(0, n, 256):
            c.must("publish_batch", topic="bench",
                   msgs=[{"body": body} for _ in range(min(256, n - i))])
        c.must("subscription.create", topic="bench", name="s", **{"from": "earliest"},
               endpoint={"http": "http://127.0.0.1:%d/hook" % rx.port, "format": "json"})
        wait_for("the first POST", lambda: rx.count > 0, 30, 0.005)
        t0, cpu0, rss0 = time.time(), cpu_s(node.proc.pid), rss_kib(node.proc.pid)
        wait_for("all acknowledged", lambda: c.must("subscription.get", topic="bench", name="s")
                 ["stats"]["pending"] == 0, 600, 0.05)
        took = time.time() - t0
        cpu = cpu_s(node.proc.pid) - cpu0
        print("webhook bench: %d messages of 200 B, window %d, max_inflight %d: %.2f s, "
              "%.0f msg/s; %d POSTs; mqhubd CPU %.2f s (%.0f us/msg), RSS %d -> %d KiB"
              % (n, window, inflight, took, n / took, rx.count, cpu, cpu / n * 1e6, rss0,
                 rss_kib(node.proc.pid)))
        c.close()
        hub.check_clean_exit()
    finally:
        hub.cleanup()


if __name__ == "__main__":
    main()
