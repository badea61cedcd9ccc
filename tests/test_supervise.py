#!/usr/bin/python3
"""infra/supervise.sh, the supervisor infra/flashsale.sh runs every service under, with small
shell scripts for services: a killed or failing service is started again (at once, then with
a growing wait while it keeps dying early; what it left behind in its process group killed
first), a clean exit ends the supervision, SIGTERM stops
it without a restart (passed on to the service, or ending a wait between restarts), SIGHUP is
ignored, and the pid file names the service while it runs (and only then).

Usage: test_supervise.py REPOSITORY_ROOT"""
import calendar
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

SUPERVISE = os.path.join(os.path.abspath(sys.argv[1]), "infra", "supervise.sh")
# (the integration harness's process helpers: it imports nothing but the standard library)
sys.path.insert(0, os.path.join(os.path.abspath(sys.argv[1]), "tests", "integration"))
from fsharness import alive, until  # noqa: E402


def ts(line):
    """A supervisor line's time (UTC, ms), in seconds since the epoch."""
    return calendar.timegm(time.strptime(line["ts"][:19], "%Y-%m-%dT%H:%M:%S")) + float("0" + line["ts"][19:-1])


class Sup:
    """One supervisor of SCRIPT (sh -c), in a directory of its own: the service appends its
    pid to `starts` as it starts."""

    def __init__(self, script, env=None):
        self.dir = tempfile.mkdtemp(prefix="fs-supervise-")
        self.pidfile = os.path.join(self.dir, "svc.pid")
        self.starts_file = os.path.join(self.dir, "starts")
        self.logf = open(os.path.join(self.dir, "log"), "ab")
        self.proc = subprocess.Popen(
            [SUPERVISE, "svc", self.pidfile, "--", "sh", "-c", "echo $$ >>starts; " + script],
            cwd=self.dir, stdin=subprocess.DEVNULL, stdout=self.logf, stderr=subprocess.STDOUT,
            env=dict(os.environ, **(env or {})), start_new_session=True)

    def starts(self):
        try:
            return [int(l) for l in open(self.starts_file).read().split()]
        except OSError:
            return []

    def pid(self):
        try:
            return int(open(self.pidfile).read())
        except (OSError, ValueError):
            return None

    def lines(self):
        out = []
        for l in open(os.path.join(self.dir, "log")):
            if l.startswith("{"):
                j = json.loads(l)  # every line the supervisor writes is one JSON object
                assert j["svc"] == "supervisor" and j["service"] == "svc" and j["ts"].endswith("Z"), j
                out.append(j)
        return out

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        # the supervisor's group, then each service's own (and what it left behind there)
        for g in [self.proc.pid] + self.starts():
            try:
                os.killpg(g, signal.SIGKILL)
            except OSError:
                pass
        self.proc.wait()
        self.logf.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def test_killed_service_restarted_at_once():
    with Sup("exec sleep 1000") as s:
        first = until("the first start", lambda: s.starts() and s.pid())
        assert s.starts() == [first], (s.starts(), first)
        os.kill(first, signal.SIGKILL)
        second = until("a second start", lambda: len(s.starts()) == 2 and s.pid() != first and s.pid())
        assert second == s.starts()[1] and alive(second)
        [line] = s.lines()
        assert line["level"] == "error" and line["signal"] == "KILL", line
        assert line["restart_in_ms"] == 0 and line["deaths_in_a_row"] == 1 and line["left_behind_killed"] is False, line
        assert s.proc.poll() is None, "the supervisor ended"


def test_what_a_dead_service_left_behind_is_killed():
    # a forking service (nginx: a killed master leaves its workers serving, holding its
    # socket) runs in a process group of its own; the supervisor kills what is left in it
    # before the next start, and when it stops
    with Sup("sleep 1000 & echo $! >>left; exec sleep 1000") as s:
        first = until("the first start", lambda: s.starts() and s.pid())
        left = until("the first leftover", lambda: os.path.exists(os.path.join(s.dir, "left")) and
                     [int(p) for p in open(os.path.join(s.dir, "left")).read().split()])[0]
        assert os.getpgid(first) == first and os.getpgid(left) == first, "not a group of its own"
        assert os.getpgid(first) != os.getpgid(s.proc.pid)
        os.kill(first, signal.SIGKILL)
        second = until("a second start", lambda: len(s.starts()) == 2 and s.pid() != first and s.pid())
        until("the first start's leftover gone", lambda: not alive(left), timeout=5)
        [line] = s.lines()
        assert line["signal"] == "KILL" and line["left_behind_killed"] is True, line
        left2 = until("the second leftover", lambda: len(open(os.path.join(s.dir, "left")).read().split()) == 2 and
                      int(open(os.path.join(s.dir, "left")).read().split()[1]))
        assert alive(left2)
        s.proc.send_signal(signal.SIGTERM)
        assert s.proc.wait(timeout=10) == 0
        until("the second start and its leftover gone", lambda: not alive(second) and not alive(left2), timeout=5)


def test_quick_deaths_back_off():
    with Sup("exit 3") as s:
        until("three deaths", lambda: len(s.lines()) >= 3, timeout=15)
        lines = s.lines()[:3]
        assert [l["status"] for l in lines] == [3, 3, 3], lines
        assert [l["deaths_in_a_row"] for l in lines] == [1, 2, 3], lines
        assert [l["restart_in_ms"] for l in lines] == [0, 500, 1000], lines
        # the wait is kept: the third death comes at least 0.5 s after the second (a lower
        # bound, which a slow machine cannot break)
        t = [ts(l) for l in lines]
        assert t[2] - t[1] >= 0.45, t


def test_a_steady_run_starts_the_count_again():
    with Sup("sleep 0.3; exit 1", env={"FLASHSALE_SUPERVISE_STEADY_MS": "200"}) as s:
        until("three deaths", lambda: len(s.lines()) >= 3)
        lines = s.lines()[:3]
        assert all(l["deaths_in_a_row"] == 1 and l["restart_in_ms"] == 0 for l in lines), lines


def test_clean_exit_ends_the_supervision():
    with Sup("sleep 0.2; exit 0") as s:
        assert s.proc.wait(timeout=10) == 0
        assert len(s.starts()) == 1, s.starts()
        assert not os.path.exists(s.pidfile), "the pid file outlived the service"
        [line] = s.lines()
        assert line["level"] == "info" and line["status"] == 0, line


def test_sigterm_is_passed_on_and_nothing_restarts():
    # the service takes its time to stop, as the API drains: the supervisor waits for it
    with Sup("trap 'echo term >>got; sleep 0.5; echo done >>got; exit 0' TERM; : >ready; sleep 1000 & wait") as s:
        pid = until("the start", lambda: s.starts() and s.pid())
        until("the service's trap", lambda: os.path.exists(os.path.join(s.dir, "ready")))
        s.proc.send_signal(signal.SIGTERM)
        assert s.proc.wait(timeout=10) == 0
        # read as soon as the supervisor is gone: "done" is there only if it waited
        assert open(os.path.join(s.dir, "got")).read() == "term\ndone\n", "the supervisor did not wait for its service"
        assert not alive(pid)
        assert s.starts() == [pid], s.starts()
        assert not os.path.exists(s.pidfile)
        assert s.lines() == [], s.lines()


def test_sigterm_ends_a_wait_between_restarts():
    with Sup("exit 3") as s:
        line = until("a wait of 1 s", lambda: [l for l in s.lines() if l["restart_in_ms"] == 1000], timeout=15)[0]
        n = len(s.starts())  # the wait has begun: no start until it ends
        t0 = time.time()
        s.proc.send_signal(signal.SIGTERM)
        assert s.proc.wait(timeout=10) == 0
        took = time.time() - t0
        print("  (the SIGTERM came %.2f s into the 1 s wait and ended it after %.2f s)" % (t0 - ts(line), took))
        if t0 - ts(line) < 0.9:  # else this machine was too slow to tell
            assert len(s.starts()) == n, "started again after SIGTERM"
            assert took < 0.8, "the wait went on after SIGTERM (or this machine took 0.8 s to deliver it)"
        assert not os.path.exists(s.pidfile)


def test_sigterm_at_any_moment_leaves_no_service_running():
    # SIGTERM at a random moment of a start or a restart (the service dies every ~50 ms):
    # the supervisor ends, and every service it started has ended too (none left running
    # unsupervised, none started after it)
    random.seed(7)
    for i in range(30):
        with Sup("exec sleep 1000" if i % 2 else "sleep 0.05; exit 3") as s:
            time.sleep(random.uniform(0, 0.15))
            s.proc.send_signal(signal.SIGTERM)
            rc = s.proc.wait(timeout=10)
            # a SIGTERM before bash has set its trap ends it at once, before any start
            assert rc == 0 or (rc == -signal.SIGTERM and not s.starts()), (i, rc, s.starts())
            time.sleep(0.05)
            left = [p for p in s.starts() if alive(p)]
            assert not left, "round %d: services left running after SIGTERM: %s" % (i, left)
            assert not os.path.exists(s.pidfile), "round %d: the pid file outlived the supervision" % i


def test_sighup_is_ignored():
    with Sup("exec sleep 1000") as s:
        pid = until("the start", lambda: s.starts() and s.pid())
        os.kill(pid, signal.SIGHUP)
        os.kill(s.proc.pid, signal.SIGHUP)
        time.sleep(0.3)
        assert alive(pid) and s.proc.poll() is None
        assert s.starts() == [pid]


def test_pid_file_identity_without_a_supervisor():
    """infra/lib.sh's fs_read_pid, for a service's pid file whose supervisor's file is stale:
    the process it names counts only if it began before the file was written; one begun
    later was given the number afterwards (a reboot, say) and is not ours to stop."""
    lib = os.path.join(os.path.dirname(SUPERVISE), "lib.sh")
    d = tempfile.mkdtemp(prefix="fs-pidfile-")
    other = subprocess.Popen(["sleep", "30"])
    try:
        pidf = os.path.join(d, "svc.pid")
        with open(os.path.join(d, "svc.supervisor.pid"), "w") as f:
            f.write("999999999\n")  # no such process: a stale supervisor's file
        with open(pidf, "w") as f:
            f.write("%d\n" % other.pid)

        def read_pid():
            r = subprocess.run(["bash", "-c", 'source "$0"; fs_read_pid "$1"', lib, pidf],
                               capture_output=True, text=True)
            return r.stdout.strip() if r.returncode == 0 else None
        assert read_pid() == str(other.pid)  # begun before its file: ours
        old = time.time() - 3600
        os.utime(pidf, (old, old))  # the file an hour older than the process it names
        assert read_pid() is None
        with open(os.path.join(d, "svc.supervisor.pid"), "w") as f:
            f.write("%d\n" % other.pid)  # a live process that is no supervisor: still stale
        assert read_pid() is None
    finally:
        other.kill()
        other.wait()
        shutil.rmtree(d, ignore_errors=True)


def test_usage():
    r = subprocess.run([SUPERVISE, "svc", "/tmp/x.pid", "sleep", "1"], capture_output=True, text=True)
    assert r.returncode == 2 and "usage" in r.stderr, r
    r = subprocess.run([SUPERVISE, "svc", "/tmp/x.pid", "--", "true"], capture_output=True, text=True,
                       env=dict(os.environ, FLASHSALE_SUPERVISE_STEADY_MS="soon"))
    assert r.returncode == 2 and "FLASHSALE_SUPERVISE_STEADY_MS" in r.stderr, r


if __name__ == "__main__":
    tests = [v for k, v in sorted(globals().items()) if k.startswith("test_")]
    for t in tests:
        t0 = time.time()
        t()
        print("ok %s (%.1f s)" % (t.__name__, time.time() - t0))
    print("%d tests passed" % len(tests))
