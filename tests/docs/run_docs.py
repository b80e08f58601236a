#!/usr/bin/env python3
"""run_docs.py: run the documentation's runnable examples in order, the way a
newcomer meets them, against one fresh mqhubd (CTest docs_examples, label docs).

    run_docs.py SOURCE_DIR BUILD_DIR [--keep] [--list] [--block-timeout S]
                [--cflags FLAGS]

The convention for a runnable block (README.md and docs/*.md): an HTML comment
on the line just before the opening fence. It does not show when the Markdown
is rendered.

    <!-- runnable -->                  a ```sh or ```bash block, run as it is
    <!-- runnable: interrupt 3 -->     likewise, and Ctrl-C (SIGINT to the
                                       block's process group) after 3 s, for
                                       a block that ends in `mqhub tail` or
                                       `recv --follow`; the block must still
                                       exit 0
    <!-- runnable: file NAME -->       any block: saved as NAME in the working
                                       directory (ports substituted), for the
                                       runnable blocks after it (a C program
                                       that the next block compiles and runs)
    <!-- runnable: config NAME -->     a ```lua mqhubd configuration: saved as
                                       NAME, a second mqhubd is started with
                                       it (its own data directory and ports),
                                       must get ready, answer ping, hold every
                                       declared queue and topic, serve the
                                       dashboard when it declares one, and
                                       stop with exit 0 on SIGTERM

A Lua script in scripts/ may carry runnable commands in its header comment:
a line starting `-- Try it (runnable` and then the commands, each on a line
starting `--   ` (three spaces), up to the first line that does not; they run
as one sh block after the docs.

Blocks that need something else (a cluster, a browser, root, another host,
an input to type) stay unmarked and are never run.

How it runs (start reading at main()):
- One mqhubd, started like `make run` (TCP + WebSocket/dashboard, nothing
  declared) but with a temp data directory and free loopback ports. The docs
  keep the default ports: in every runnable block each `127.0.0.1:PORT` or
  `localhost:PORT` with PORT in 6200-6399 is replaced by a free port, the same
  one for the same PORT throughout the run (6200, 6280, 6300 are the hub's TCP,
  WebSocket and raft ports); MQHUB_SERVER names the hub's TCP port, so the CLI
  without --server finds it.
- The working directory is a temp folder holding `scripts`, `examples`,
  `tools` and `include` (links into the source tree) and `build` (a link to
  BUILD_DIR), so the docs' relative paths (`scripts/risk/...`,
  `export PATH=$PWD/build/...`) work as in a clone after `make build`; PATH
  has the build's mqhub and mqhubd; MQHUB_TOKEN and MQHUB_CONTEXT are unset
  and XDG_CONFIG_HOME is the folder .config in it, so the CLI's saved
  contexts (docs/cli.md) are the docs' own, never the developer's.
  CFLAGS is empty, or --cflags: a sanitizer build passes its -fsanitize flags,
  so a program the docs compile (`cc $CFLAGS ...`) can load its libmqhub.
- Files in a fixed order: README.md, then the docs in the order a reader
  follows the README's links (DOC_ORDER), then any other docs/*.md by name,
  then the headers of scripts/**/*.lua by path. Blocks in file order.
- Each block is its own `bash` with `set -eo pipefail` and `set -v`
  (commands are echoed before their output), so shell variables and `cd` do
  not carry over from one block to the next (write each block to stand
  alone; files in the working directory do carry over), and a timeout
  (BLOCK_TIMEOUT seconds, or --block-timeout). It runs in a process group of
  its own, killed when the block ends: nothing a block starts in the
  background outlives it. The hub must still be running after each block.
- The first failing block ends the run: its file and the line of its
  opening fence, its exit code, its output and the tail of the hub's log are
  printed, and the exit code is 1.
  With everything passing it prints the count of runnable blocks per file.
The temp folder is removed unless --keep (or a failure) keeps it; --list only
prints the runnable blocks found.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

DOC_ORDER = ["README.md", "docs/topics.md", "docs/cli.md", "docs/scripting.md",
             "docs/client.md", "docs/websocket.md", "docs/dashboard.md", "docs/metrics.md",
             "docs/operations.md"]
BLOCK_TIMEOUT = 60
MARKER = re.compile(r"^<!--\s*runnable(?::\s*(.*?))?\s*-->\s*$")
FENCE = re.compile(r"^```(\w*)")
DOC_PORT = re.compile(r"\b(127\.0\.0\.1|localhost):(6[23]\d\d)\b")


class Block:
    """One runnable fenced block: where it is, its kind and its text."""

    def __init__(self, path, line, lang, options, text):
        self.path, self.line, self.lang, self.text = path, line, lang, text
        self.kind, self.arg = "run", None
        words = options.split() if options else []
        if words and words[0] in ("interrupt", "config", "file") and len(words) == 2:
            self.kind, self.arg = words
        elif words:
            raise SystemExit("%s:%d: unknown runnable option %r" % (path, line, options))
        want = {"config": ("lua",), "file": (lang,)}.get(self.kind, ("sh", "bash"))
        if lang not in want:
            raise SystemExit("%s:%d: a runnable%s block must be ```%s, not ```%s"
                             % (path, line, ": " + options if options else "", want[0], lang))

    def where(self):
        return "%s:%d" % (self.path, self.line)


def docs_blocks(source):
    """Every runnable block of the docs, in DOC_ORDER then by name."""
    names = [n for n in DOC_ORDER if os.path.exists(os.path.join(source, n))]
    names += sorted("docs/" + n for n in os.listdir(os.path.join(source, "docs"))
                    if n.endswith(".md") and "docs/" + n not in names)
    blocks = []
    for name in names:
        with open(os.path.join(source, name), encoding="utf-8") as f:
            lines = f.read().split("\n")
        i = 0
        while i < len(lines):
            m = MARKER.match(lines[i])
            fence = FENCE.match(lines[i + 1]) if m and i + 1 < len(lines) else None
            if m and not fence:
                raise SystemExit("%s:%d: a runnable marker must be followed by a fence"
                                 % (name, i + 1))
            if not m:
                i += 1
                continue
            end = i + 2
            while end < len(lines) and not lines[end].startswith("```"):
                end += 1
            if end == len(lines):
                raise SystemExit("%s:%d: the runnable block is never closed" % (name, i + 2))
            blocks.append(Block(name, i + 2, fence.group(1), m.group(1),
                                "\n".join(lines[i + 2:end]) + "\n"))
            i = end + 1
    return blocks


def script_blocks(source):
    """The runnable header lines of scripts/**/*.lua, one block per file."""
    blocks = []
    top = os.path.join(source, "scripts")
    for root, dirs, files in sorted(os.walk(top)):
        dirs.sort()
        for name in sorted(f for f in files if f.endswith(".lua")):
            rel = os.path.relpath(os.path.join(root, name), source)
            with open(os.path.join(source, rel), encoding="utf-8") as f:
                lines = f.read().split("\n")
            start = next((i for i, l in enumerate(lines) if l.startswith("-- Try it (runnable")),
                         None)
            if start is None:
                continue
            body = []
            for l in lines[start + 1:]:
                if not l.startswith("--   "):
                    break
                body.append(l[5:])
            if not body:
                raise SystemExit("%s:%d: a runnable header without commands" % (rel, start + 1))
            blocks.append(Block(rel, start + 2, "sh", None, "\n".join(body) + "\n"))
    return blocks


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Ports:
    """Doc port -> free loopback port, one each, stable for the run."""

    def __init__(self, preset):
        self.map = dict(preset)

    def substitute(self, text):
        def repl(m):
            port = int(m.group(2))
            if port not in self.map:
                self.map[port] = free_port()
            return "%s:%d" % (m.group(1), self.map[port])
        return DOC_PORT.sub(repl, text)


def wait_ready(proc, tcp, env, log_path, what):
    """Until `mqhub queue list` answers on @tcp (a leader exists); 30 s."""
    deadline = time.time() + 30
    while time.time() < deadline:
        if proc.poll() is not None:
            fail(what + " exited with code %d before it was ready" % proc.returncode,
                 "", log_path)
        r = subprocess.run(["mqhub", "--server", "127.0.0.1:%d" % tcp, "--timeout", "1000",
                            "queue", "list"], env=env, capture_output=True)
        if r.returncode == 0:
            return
        time.sleep(0.1)
    fail(what + " was not ready within 30 s", "", log_path)


def log_tail(log_path, n=30):
    try:
        with open(log_path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def fail(why, output, log_path):
    print("\nFAILED: " + why, flush=True)
    if output:
        print("--- its output ---\n" + output.rstrip())
    print("--- the last lines of %s ---\n%s" % (log_path, log_tail(log_path).rstrip()),
          flush=True)
    raise SystemExit(1)


def start_hub(work, ports, env):
    """The run's hub: like `make run` on free ports, data under @work."""
    conf = os.path.join(work, ".hub", "mqhub.conf")
    os.makedirs(os.path.dirname(conf))
    with open(conf, "w") as f:
        f.write('node { id = 1, data = "%s/.hub/data", raft = "127.0.0.1:%d" }\n'
                % (work, ports.map[6300]))
        f.write('transport "tcp" { listen = "127.0.0.1:%d" }\n' % ports.map[6200])
        f.write('transport "websocket" { listen = "127.0.0.1:%d" }\n' % ports.map[6280])
    log_path = os.path.join(work, ".hub", "mqhubd.log")
    with open(log_path, "w") as log:
        proc = subprocess.Popen(["mqhubd", "--config", conf], env=env, cwd=work,
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_ready(proc, ports.map[6200], env, log_path, "the hub")
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc, log_path


def stop(proc, what, log_path):
    """SIGTERM, wait 15 s; a daemon that does not stop cleanly fails the run."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            fail(what + " did not stop within 15 s of SIGTERM", "", log_path)
    if proc.returncode != 0:
        fail(what + " exited with code %d on SIGTERM" % proc.returncode, "", log_path)


def run_shell(block, text, work, env, hub_log, timeout):
    """Run one sh block; its output is printed as it comes."""
    script = "set -eo pipefail\nset -v\n" + text
    proc = subprocess.Popen(["bash", "-c", script], cwd=work, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    interrupt_at = time.time() + int(block.arg) if block.kind == "interrupt" else None
    deadline = time.time() + timeout
    os.set_blocking(proc.stdout.fileno(), False)
    out = []
    while True:
        chunk = proc.stdout.read()
        if chunk:
            out.append(chunk.decode(errors="replace"))
            sys.stdout.write(out[-1])
            sys.stdout.flush()
        if proc.poll() is not None and not chunk:
            break
        if interrupt_at and time.time() >= interrupt_at:
            print("^C  (the runner presses Ctrl-C)", flush=True)
            try:
                os.killpg(proc.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
            interrupt_at = None
        if time.time() >= deadline:
            kill_group(proc.pid)
            proc.wait()
            fail("%s: the block did not finish within %d s" % (block.where(), timeout),
                 "".join(out), hub_log)
        time.sleep(0.02)
    kill_group(proc.pid)
    if proc.returncode != 0:
        fail("%s: the block exited with code %d" % (block.where(), proc.returncode),
             "".join(out), hub_log)


def kill_group(pgid):
    """SIGKILL what is left of a block's process group (its background jobs)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def declared(text, kind):
    return re.findall(r'^\s*%s\s+"([^"]+)"' % kind, text, re.M)


def run_config(block, text, work, env):
    """Start a second mqhubd with the block as its configuration and check it."""
    path = os.path.join(work, block.arg)
    with open(path, "w") as f:
        f.write(text)
    data = tempfile.mkdtemp(prefix="conf-data-", dir=work)
    log_path = os.path.join(work, block.arg + ".log")
    tcp = re.search(r'transport\s+"tcp"\s*{[^}]*listen\s*=\s*"127\.0\.0\.1:(\d+)"', text)
    ws = re.search(r'transport\s+"websocket"\s*{[^}]*listen\s*=\s*"127\.0\.0\.1:(\d+)"', text)
    if not tcp:
        fail("%s: the configuration has no loopback tcp transport to check it with"
             % block.where(), "", log_path)
    print("$ mqhubd --config %s --data %s" % (block.arg, os.path.basename(data)), flush=True)
    with open(log_path, "w") as log:
        proc = subprocess.Popen(["mqhubd", "--config", path, "--data", data], env=env,
                                cwd=work, stdout=log, stderr=subprocess.STDOUT)
    try:
        server = ["mqhub", "--server", "127.0.0.1:" + tcp.group(1)]
        wait_ready(proc, int(tcp.group(1)), env, log_path, "mqhubd --config " + block.arg)
        checks = [server + ["ping"]]
        checks += [server + ["queue", "get", q] for q in declared(text, "queue")]
        checks += [server + ["topic", "get", t] for t in declared(text, "topic")]
        for argv in checks:
            r = run_until_ok(argv, env, work)
            print("$ " + " ".join(argv[3:]) + "\n" + r.stdout + r.stderr, end="", flush=True)
            if r.returncode != 0:
                fail("%s: `%s` exited with code %d" % (block.where(), " ".join(argv[3:]),
                                                       r.returncode),
                     r.stdout + r.stderr, log_path)
        if ws:
            url = "http://127.0.0.1:%s/" % ws.group(1)
            try:
                with urllib.request.urlopen(url, timeout=10) as resp:
                    page = resp.read()
            except OSError as e:
                fail("%s: GET %s: %s" % (block.where(), url, e), "", log_path)
            print("$ curl %s -> %d, %d bytes" % (url, resp.status, len(page)), flush=True)
            if resp.status != 200 or b"<html" not in page.lower():
                fail("%s: the dashboard at %s is not served" % (block.where(), url), "",
                     log_path)
    finally:
        stop(proc, "mqhubd --config " + block.arg, log_path)


def run_until_ok(argv, env, work):
    """Run @argv until it exits 0, for up to 10 s. mqhubd answers clients
    before it has applied the queues and topics its configuration declares
    (a race seen as NOT_FOUND a few ms after start), so a declared object may
    need a moment to appear; the wait is printed when there was one."""
    t0 = time.time()
    while True:
        r = subprocess.run(argv, env=env, cwd=work, capture_output=True, text=True)
        if r.returncode == 0 or time.time() - t0 > 10:
            break
        time.sleep(0.05)
    if time.time() - t0 > 0.05:
        print("(after %.0f ms)" % ((time.time() - t0) * 1000), flush=True)
    return r


def make_workdir(source, build):
    work = tempfile.mkdtemp(prefix="mqhub-docs-", dir=os.environ.get("TMPDIR", "/tmp"))
    for name in ("scripts", "examples", "tools", "include"):
        os.symlink(os.path.join(source, name), os.path.join(work, name))
    os.symlink(build, os.path.join(work, "build"))
    return work


def main():
    argv, opts = sys.argv[1:], {"--block-timeout": str(BLOCK_TIMEOUT), "--cflags": ""}
    for name in opts:
        if name in argv:
            i = argv.index(name)
            opts[name] = argv[i + 1]
            del argv[i:i + 2]
    timeout = int(opts["--block-timeout"])
    args = [a for a in argv if not a.startswith("--")]
    if len(args) != 2:
        raise SystemExit(__doc__.split("\n\n")[1])
    source, build = (os.path.abspath(a) for a in args)
    blocks = docs_blocks(source) + script_blocks(source)
    counts = {}
    for b in blocks:
        counts[b.path] = counts.get(b.path, 0) + 1
    if "--list" in sys.argv:
        for b in blocks:
            print("%s  %s%s" % (b.where(), b.kind, " " + b.arg if b.arg else ""))
        return
    work = make_workdir(source, build)
    env = dict(os.environ)
    env.pop("MQHUB_TOKEN", None)
    env.pop("MQHUB_CONTEXT", None)
    env["XDG_CONFIG_HOME"] = os.path.join(work, ".config")
    env["CFLAGS"] = opts["--cflags"]
    env["PATH"] = "%s/apps/mqhub:%s/apps/mqhubd:%s" % (build, build, env.get("PATH", ""))
    ports = Ports({6200: free_port(), 6280: free_port(), 6300: free_port()})
    env["MQHUB_SERVER"] = "127.0.0.1:%d" % ports.map[6200]
    print("docs: %d runnable blocks; working in %s; hub on 127.0.0.1:%d (dashboard %d)"
          % (len(blocks), work, ports.map[6200], ports.map[6280]), flush=True)
    hub, hub_log = start_hub(work, ports, env)
    try:
        for n, b in enumerate(blocks, 1):
            print("\n=== [%d/%d] %s%s" % (n, len(blocks), b.where(),
                                       " (%s %s)" % (b.kind, b.arg) if b.arg else ""),
                  flush=True)
            if b.kind == "config":
                run_config(b, Ports({}).substitute(b.text), work, env)
            elif b.kind == "file":
                with open(os.path.join(work, b.arg), "w") as f:
                    f.write(ports.substitute(b.text))
                print("saved as " + b.arg, flush=True)
            else:
                run_shell(b, ports.substitute(b.text), work, env, hub_log, timeout)
            if hub.poll() is not None:
                fail("%s: the hub exited with code %d during the block"
                     % (b.where(), hub.returncode), "", hub_log)
        stop(hub, "the hub", hub_log)
    except BaseException:  # a failed block, a bug here, Ctrl-C: no hub left behind
        if hub.poll() is None:
            hub.kill()
            hub.wait()
        print("kept for a look: " + work, flush=True)
        raise
    print("\nall %d runnable blocks passed:" % len(blocks))
    for path, c in counts.items():
        print("  %-22s %d" % (path, c))
    if "--keep" in sys.argv:
        print("kept: " + work)
    else:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
