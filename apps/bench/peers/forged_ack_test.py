#!/usr/bin/env python3
"""forged_ack_test.py BUILD: the CTest entry bench_peers_forged_ack (label bench).

A hostile AMQP 0-9-1 server on loopback (this file: just enough of the
protocol for peer_rabbit's login, queue.declare and confirm mode) answers the
first basic.publish of each connection with basic.ack {delivery_tag 2^64-1,
multiple} and then never confirms again. peer_rabbit must count as confirmed
only the tags it had published, end by itself (the phase's deadline plus its
confirm timeout) and exit 3 (errors: the confirms still missing); a driver
that walks the forged range spins for ever (timeout: 124 here).
"""
import json
import socket
import struct
import subprocess
import sys
import threading
import time

FRAME_END = b"\xce"


def frame(kind, channel, payload):
    return struct.pack(">BHI", kind, channel, len(payload)) + payload + FRAME_END


def method(channel, cls, mid, args=b""):
    return frame(1, channel, struct.pack(">HH", cls, mid) + args)


def shortstr(s):
    return struct.pack(">B", len(s)) + s


def longstr(s):
    return struct.pack(">I", len(s)) + s


def read_exact(conn, n):
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


def serve(conn, deadline):
    conn.settimeout(max(0.1, deadline - time.time()))
    read_exact(conn, 8)  # "AMQP\0\0\x09\x01"
    conn.sendall(method(0, 10, 10, b"\x00\x09" + struct.pack(">I", 0) +
                        longstr(b"PLAIN") + longstr(b"en_US")))
    acked = False
    while time.time() < deadline:
        kind, channel, size = struct.unpack(">BHI", read_exact(conn, 7))
        payload = read_exact(conn, size + 1)[:-1]
        if kind != 1:
            continue  # content headers and bodies
        cls, mid = struct.unpack(">HH", payload[:4])
        if (cls, mid) == (10, 11):  # start-ok -> tune
            conn.sendall(method(0, 10, 30, struct.pack(">HIH", 2047, 131072, 0)))
        elif (cls, mid) == (10, 40):  # connection.open -> open-ok
            conn.sendall(method(0, 10, 41, shortstr(b"")))
        elif (cls, mid) == (20, 10):  # channel.open -> open-ok
            conn.sendall(method(channel, 20, 11, longstr(b"")))
        elif (cls, mid) == (50, 10):  # queue.declare -> declare-ok
            qlen = payload[6]
            queue = payload[7:7 + qlen]
            conn.sendall(method(channel, 50, 11, shortstr(queue) + struct.pack(">II", 0, 0)))
        elif (cls, mid) == (85, 10):  # confirm.select -> select-ok
            conn.sendall(method(channel, 85, 11))
        elif (cls, mid) == (60, 40) and not acked:  # the first publish: the forged ack
            acked = True
            conn.sendall(method(channel, 60, 80, struct.pack(">QB", 2**64 - 1, 1)))
        elif (cls, mid) == (20, 40):  # channel.close -> close-ok
            conn.sendall(method(channel, 20, 41))
        elif (cls, mid) == (10, 50):  # connection.close -> close-ok
            conn.sendall(method(0, 10, 51))
            return


def server(sock, deadline):
    while time.time() < deadline:
        try:
            conn, _ = sock.accept()
        except socket.timeout:
            continue
        threading.Thread(target=guarded, args=(conn, deadline), daemon=True).start()


def guarded(conn, deadline):
    try:
        serve(conn, deadline)
    except (OSError, ConnectionError, struct.error):
        pass
    finally:
        conn.close()


def main():
    build = sys.argv[1]
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.settimeout(0.2)
    port = sock.getsockname()[1]
    threading.Thread(target=server, args=(sock, time.time() + 50), daemon=True).start()
    t0 = time.time()
    p = subprocess.run(["timeout", "40", f"{build}/apps/bench/peer_rabbit", "produce",
                        "--url", f"127.0.0.1:{port}", "--producers", "1", "--window", "8",
                        "--duration", "1"], capture_output=True, text=True)
    took = time.time() - t0
    print(f"peer_rabbit exited {p.returncode} after {took:.1f} s")
    print("stdout:", p.stdout.strip())
    print("stderr:", p.stderr.strip()[:600])
    if p.returncode != 3:
        print("FAIL: expected 3 (ended by itself, errors counted)")
        return 1
    line = json.loads(p.stdout.strip().splitlines()[-1])
    # Only the window published before the forged ack can be counted.
    if not 1 <= line["produced"] <= 8 or line["errors"] < 1:
        print(f"FAIL: produced {line['produced']} (1..8 expected), errors {line['errors']}")
        return 1
    print("ok: the forged ack confirmed only what was published")
    return 0


if __name__ == "__main__":
    sys.exit(main())
