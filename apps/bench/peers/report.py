#!/usr/bin/env python3
"""report.py: the side-by-side tables and chart from run.sh's JSON lines.

Reads the results (one JSON object per driver phase: peer.c's report()),
rewrites the part of docs/benchmarks.md between <!-- peers:begin --> and
<!-- peers:end --> (appended at the end when the markers are missing) and
writes the SVG bar chart. Python 3 standard library only.
Start at main(); tables() builds the Markdown, svg() the chart.
"""
import argparse
import datetime
import html
import json
import os
import platform
import re
import subprocess

BEGIN, END = "<!-- peers:begin -->", "<!-- peers:end -->"
PHASES = ("produce", "consume", "both")
# (system, nodes, label in the tables)
ROWS = (
    ("mqhub", 1, "mqhub, 1 node (fsync before ack)"),
    ("redis", 1, "Redis 7 Streams, `appendfsync always`"),
    ("rabbitmq", 1, "RabbitMQ quorum queue, 1 node"),
    ("nats", 1, "NATS JetStream R1 (not fsync'd)"),
    ("mqhub", 3, "mqhub, 3 nodes (fsync before ack)"),
    ("rabbitmq", 3, "RabbitMQ quorum queue R3"),
    ("nats", 3, "NATS JetStream R3 (not fsync'd)"),
)
RATIOS = (
    ("1 node ÷ Redis Streams `appendfsync always`", 1, "redis", 1),
    ("1 node ÷ RabbitMQ quorum queue", 1, "rabbitmq", 1),
    ("3 nodes ÷ RabbitMQ quorum R3", 3, "rabbitmq", 3),
    ("3 nodes ÷ NATS JetStream R3 (not fsync'd)", 3, "nats", 3),
)
COLORS = {"mqhub": "#2b6cb0", "redis": "#c53030", "rabbitmq": "#dd6b20", "nats": "#2f855a"}


def load(path):
    res = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                r = json.loads(line)
                res[(r["system"], r["nodes"], r["phase"])] = r
    return res


def machine():
    model = "?"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        m = re.search(r"^Model name:\s*(.+)$", out, re.M)
        model = m.group(1).strip() if m else model
    except OSError:
        pass
    ram = "?"
    with open("/proc/meminfo") as f:
        m = re.search(r"MemTotal:\s*(\d+) kB", f.read())
        ram = "%.1f GiB" % (int(m.group(1)) / 1048576) if m else ram
    return "%d cores (`nproc`), %s, %s RAM, Linux %s" % (
        os.cpu_count() or 0, model, ram, platform.release())


def fmt(v):
    return "—" if v is None else "{:,.0f}".format(v)


def rate(res, system, nodes, phase):
    r = res.get((system, nodes, phase))
    return r["rate"] if r else None


def tables(res, args):
    out = []
    w = lambda s="": out.append(s)  # noqa: E731
    w("## Side by side with RabbitMQ, NATS and Redis")
    w()
    w("Written by `make bench-peers` (apps/bench/peers/run.sh; the method and the drivers: "
      "apps/bench/peers/README.md). Do not edit by hand: the next run rewrites it.")
    w()
    w("- Date: %s; each phase %s s at most; raw results: `%s`." % (
        datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        args.duration, os.path.basename(args.results)))
    w("- Machine: %s; load average (1/5/15 min) %s at the start, %s at the end." % (
        machine(), args.load_start, args.load_end))
    if float(args.duration) < 10:
        w("- **A short run** (phases under 10 s): a check that everything works, not "
          "figures to quote; `make bench-peers` on a quiet machine replaces them.")
    w("- Method: 1 KiB bodies; 4 producers + 4 consumers, each with 64 unconfirmed messages; "
      "`produce` into an empty queue, `consume` draining what `produce` left, `both` together "
      "on a fresh queue (its rate: the smaller of in and out); every server on loopback on this one machine. A send counts when "
      "the server confirmed it (mqhub, Redis, RabbitMQ: after fsync; NATS: after the write, "
      "its default `sync_interval` fsyncs every 2 minutes). A consume counts when its "
      "delete/ack was answered (mqhub delete, Redis XACK+XDEL, NATS AckSync of the batch's "
      "last message); AMQP has no answer to basic.ack, so RabbitMQ's is checked after the "
      "phase against what left the queue (its ready count) and lowered to it.")
    w()
    w("| msgs/s | produce | consume | both | p50 / p99 send→ack, produce (ms) |")
    w("| --- | ---: | ---: | ---: | --- |")
    for system, nodes, label in ROWS:
        p = res.get((system, nodes, "produce"))
        if not any((system, nodes, ph) in res for ph in PHASES):
            continue
        lat = "%.1f / %.1f" % (p["p50_ms"], p["p99_ms"]) if p else "—"
        w("| %s | %s | %s | %s | %s |" % (label, *(fmt(rate(res, system, nodes, ph))
                                               for ph in PHASES), lat))
    w()
    w("| mqhub ÷ peer, window 64 | produce | consume | both |")
    w("| --- | ---: | ---: | ---: |")
    for label, n, peer, pn in RATIOS:
        cells = []
        for ph in PHASES:
            a, b = rate(res, "mqhub", n, ph), rate(res, peer, pn, ph)
            cells.append("%.2f" % (a / b) if a and b else "—")
        w("| %s | %s |" % (label, " | ".join(cells)))
    w()
    w("| one in flight, 3 nodes | msgs/s | p50 (ms) | p99 (ms) | mqhub ÷ peer |")
    w("| --- | ---: | ---: | ---: | ---: |")
    mq = rate(res, "mqhub", 3, "window1")
    for system, label in (("mqhub", "mqhub"), ("rabbitmq", "RabbitMQ quorum R3"),
                          ("nats", "NATS JetStream R3 (not fsync'd)")):
        r = res.get((system, 3, "window1"))
        if not r:
            continue
        ratio = "%.2f" % (mq / r["rate"]) if system != "mqhub" and mq and r["rate"] else ""
        w("| %s | %s | %.2f | %.2f | %s |" % (label, fmt(r["rate"]), r["p50_ms"], r["p99_ms"],
                                              ratio))
    w()
    w("![msgs/s per system and phase](images/peers.svg)")
    return "\n".join(out)


def nice_step(x):
    """The smallest of 1, 2, 5 x 10^k that is >= x."""
    k = 1
    while k * 10 <= x:
        k *= 10
    while k > x * 10:
        k /= 10
    for m in (1, 2, 5, 10):
        if m * k >= x:
            return m * k
    return 10 * k


def svg(res):
    rows = [(s, n, lbl) for s, n, lbl in ROWS if any((s, n, ph) in res for ph in PHASES)]
    vals = [rate(res, s, n, ph) or 0 for s, n, _ in rows for ph in PHASES]
    step = nice_step(max(vals + [1]) / 5)
    ticks = int(-(-max(vals + [1]) // step))
    top = step * ticks
    bar, gap, left, height, plot = 14, 30, 60, 300, 240
    group = len(rows) * bar + gap
    width = left + group * len(PHASES) + 280
    o = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
         'font-family="sans-serif" font-size="11">' % (width, height),
         '<rect width="100%" height="100%" fill="white"/>',
         '<text x="%d" y="16" font-size="13">msgs/s, 1 KiB, 4+4 clients, window 64</text>' % left]
    base = 30 + plot
    for i in range(ticks + 1):
        v = step * i
        y = base - plot * i / ticks
        o.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/>' % (
            left, left + group * len(PHASES), y, y))
        o.append('<text x="%d" y="%.1f" text-anchor="end">%s</text>' % (left - 4, y + 4, fmt(v)))
    for pi, ph in enumerate(PHASES):
        x0 = left + pi * group + gap / 2
        for ri, (s, n, _) in enumerate(rows):
            v = rate(res, s, n, ph) or 0
            h = plot * v / top
            op = "1" if n == 1 else "0.6"
            o.append('<rect x="%.1f" y="%.1f" width="%d" height="%.1f" fill="%s" '
                     'fill-opacity="%s"><title>%s %d node(s) %s: %s</title></rect>' % (
                         x0 + ri * bar, base - h, bar - 2, h, COLORS[s], op, s, n, ph, fmt(v)))
        o.append('<text x="%.1f" y="%d" text-anchor="middle">%s</text>' % (
            x0 + len(rows) * bar / 2, base + 16, ph))
    lx = left + group * len(PHASES) + 10
    for ri, (s, n, lbl) in enumerate(rows):
        y = 40 + ri * 18
        o.append('<rect x="%d" y="%d" width="12" height="12" fill="%s" fill-opacity="%s"/>' % (
            lx, y - 10, COLORS[s], "1" if n == 1 else "0.6"))
        o.append('<text x="%d" y="%d">%s</text>' % (lx + 16, y, html.escape(lbl.replace("`", ""))))
    o.append("</svg>")
    return "\n".join(o) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", required=True)
    ap.add_argument("--doc", required=True)
    ap.add_argument("--svg", required=True)
    ap.add_argument("--duration", default="10")
    ap.add_argument("--load-start", default="?")
    ap.add_argument("--load-end", default="?")
    args = ap.parse_args()
    res = load(args.results)
    section = "%s\n%s\n%s" % (BEGIN, tables(res, args), END)
    with open(args.doc) as f:
        doc = f.read()
    if BEGIN in doc and END in doc:
        doc = doc[:doc.index(BEGIN)] + section + doc[doc.index(END) + len(END):]
    else:
        doc = doc.rstrip("\n") + "\n\n" + section + "\n"
    with open(args.doc, "w") as f:
        f.write(doc)
    os.makedirs(os.path.dirname(args.svg), exist_ok=True)
    with open(args.svg, "w") as f:
        f.write(svg(res))


if __name__ == "__main__":
    main()
