#!/usr/bin/env python3
"""runner_test.py: run_docs.py against hostile documentation (CTest
docs_runner, label docs). Each case is a throwaway source tree (README.md,
docs/*.md) run by run_docs.py with the real mqhubd of BUILD_DIR:

- a failing block stops the run at once, naming its file and line, with its
  output, and the blocks after it never run;
- a block that never finishes (a `tail` nobody stops) is killed at the block
  timeout and fails the run, well before the test's own timeout;
- a block that leaves a process in the background does not leave it running;
- a block that stops the hub fails the run at that block;
- malformed markers (no fence, unclosed, wrong language, unknown option) are
  refused with file:line before anything runs;
- a passing tree: the default ports are substituted (the dashboard answers
  on "127.0.0.1:6280"), a `file` block is saved for the next one, an
  `interrupt` block ends with Ctrl-C and exit 0, and the counts are printed.

    runner_test.py SOURCE_DIR BUILD_DIR
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RUNNER = os.path.join(HERE, "run_docs.py")
FAILED = []


def tree(files):
    root = tempfile.mkdtemp(prefix="mqhub-docs-test-", dir=os.environ.get("TMPDIR", "/tmp"))
    os.makedirs(os.path.join(root, "docs"))
    for name, text in files.items():
        with open(os.path.join(root, name), "w") as f:
            f.write(text)
    return root


def run(build, files, *extra, timeout=120):
    root = tree(files)
    t0 = time.time()
    r = subprocess.run([sys.executable, RUNNER, root, build] + list(extra),
                       capture_output=True, text=True, timeout=timeout)
    shutil.rmtree(root, ignore_errors=True)
    for line in r.stdout.splitlines():
        if line.startswith("kept for a look: "):
            shutil.rmtree(line.split(": ", 1)[1], ignore_errors=True)
    return r.returncode, r.stdout + r.stderr, time.time() - t0


def check(name, cond, out):
    print("%s: %s" % ("ok" if cond else "FAIL", name), flush=True)
    if not cond:
        FAILED.append(name)
        print("--- output ---\n" + out)


def block(text, option=""):
    marker = "<!-- runnable%s -->\n" % (": " + option if option else "")
    return marker + "```sh\n" + text + "```\n\n"


def main():
    build = os.path.abspath(sys.argv[2])

    rc, out, _ = run(build, {
        "README.md": "# t\n\n" + block("mqhub ping\n") + block("echo before\nfalse\n")
                     + block("echo never-runs-this\n")})
    check("a failing block stops the run and names README.md:9 (its fence)",
          rc == 1 and "FAILED: README.md:9: the block exited with code 1" in out
          and "before" in out and "never-runs-this" not in out, out)

    rc, out, took = run(build, {"README.md": block("mqhub topic create t1\n"
                                                   "mqhub sub create t1 s --push\n"
                                                   "mqhub tail t1 --sub s\n")},
                        "--block-timeout", "3")
    check("a block that never finishes fails at the block timeout (%.1f s)" % took,
          rc == 1 and "did not finish within 3 s" in out and took < 60, out)

    stray = "mqhub-docs-stray-%d" % os.getpid()
    rc, out, _ = run(build, {"README.md": block("(exec -a %s sleep 300) &\necho started\n"
                                                % stray)})
    time.sleep(0.5)
    left = subprocess.run(["pgrep", "-f", stray], capture_output=True, text=True).stdout
    check("a background process of a block does not outlive it",
          rc == 0 and "started" in out and left.strip() == "", out + "\npgrep: " + left)

    rc, out, _ = run(build, {"README.md": block(
        "mqhub ping\nkill $(pgrep -f \"mqhubd --config $PWD/.hub/\")\nsleep 1\n")})
    check("a block that stops the hub fails the run at that block",
          rc == 1 and "README.md:2: the hub exited" in out, out)

    bad = {
        "no fence": ("<!-- runnable -->\ntext\n", "README.md:1: a runnable marker must be"),
        "unclosed": ("<!-- runnable -->\n```sh\nmqhub ping\n", "README.md:2: the runnable block"),
        "wrong language": ("<!-- runnable -->\n```c\nint x;\n```\n",
                           "README.md:2: a runnable block must be ```sh"),
        "unknown option": ("<!-- runnable: twice -->\n```sh\nls\n```\n",
                           "README.md:2: unknown runnable option"),
    }
    for name, (text, want) in bad.items():
        rc, out, _ = run(build, {"README.md": text})
        check("malformed marker refused (%s)" % name, rc != 0 and want in out, out)

    rc, out, _ = run(build, {
        "README.md": block("mqhub queue create q1\nmqhub send q1 hello\n"),
        "docs/a.md": "<!-- runnable: file hello.sh -->\n```sh\n"
                     "curl -fsS http://127.0.0.1:6280/healthz\n```\n\n"
                     + block("bash hello.sh\n")
                     + block("mqhub recv q1 --follow\n", "interrupt 2")})
    check("a passing tree: ports substituted, file saved, Ctrl-C ends a follow",
          rc == 0 and "\nok\n" in out and "hello" in out
          and "all 4 runnable blocks passed" in out and "docs/a.md" in out, out)

    print("%d failed" % len(FAILED))
    sys.exit(1 if FAILED else 0)


if __name__ == "__main__":
    main()
