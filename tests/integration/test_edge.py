#!/usr/bin/python3
"""The edge (nginx, infra/edge.sh) in front of the API, over real sockets, with the API sized
as `make run` sizes it (128 threads). Client addresses are loopback addresses of their own
(127.x.y.z), so the edge's per-address limits see many clients, as they would in a sale.

- slow clients: 2,000 connections from one address (partial headers, nothing at all, or a
  body that stops) leave the API untouched: a client at another address is answered in well
  under 200 ms meanwhile, the API never sees one of them, and the edge closes every one by
  its timeouts (or refuses it past the per-address connection limit);
- a connection flood: 10,000 connections opened at once are all answered 200, none reset;
- real client addresses: the API's per-address limits count the address the edge saw; a
  forged X-Forwarded-For is overwritten by the edge, and ignored when sent straight to the
  API from an untrusted peer;
- the edge's own limit per address answers 429 RATE_LIMITED with Retry-After in the API's
  error format while other addresses go on;
- X-Request-Id kept or generated and the same in the API's answer; one JSON object per
  access-log line; bodies over the limit refused by the edge (413 BODY_TOO_LARGE); /metrics
  only for the configured addresses; the API away: 502 UPSTREAM_UNAVAILABLE, not a hang;
- a crashed edge: its supervisor starts nginx again (the workers a killed master left
  behind killed first, as they hold its socket), and its stop leaves nothing running.
Usage: test_edge.py BUILD_DIR"""
import http.client
import json
import os
import select
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fsharness import ROOT, System, alive, client_addr, ppid  # noqa: E402

MAKE_RUN_API = {"FLASHSALE_HTTP_THREADS": "128", "FLASHSALE_HTTP_QUEUE": "4096"}


def api_requests(s):
    """The API's own count of requests answered (all routes), read straight from the API."""
    st, _, text = s.request("GET", "/metrics", direct=True)
    assert st == 200, st
    total = 0
    for line in text.splitlines():
        if line.startswith("flashsale_http_requests_total{"):
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def catalogue(s):
    """The catalogue's tables are the PostgreSQL projector's: start it and wait for them."""
    s.start_projector("postgres")
    deadline = time.time() + 60
    while s.request("GET", "/api/products?limit=1", source="127.0.9.1")[0] != 200:
        assert time.time() < deadline, "the read model never appeared"
        time.sleep(0.3)
    return s


def timed(s, path, source):
    t0 = time.monotonic()
    st, _, body = s.request("GET", path, source=source)
    return st, time.monotonic() - t0, body


def test_slow_clients(bindir):
    with System(bindir, processors=(), api_env=MAKE_RUN_API) as s:
        catalogue(s)
        for _ in range(3):  # warm: the pool's connections, the edge's upstream connections
            assert timed(s, "/api/products?limit=5", "127.0.3.1")[0] == 200
        before = api_requests(s)
        bad = "127.0.2.1"
        socks = []  # (kind, socket, opened at)
        t_open = time.monotonic()
        for i in range(2000):
            c = socket.socket()
            c.bind((bad, 0))
            c.setblocking(True)
            c.settimeout(10)
            c.connect(("127.0.0.1", s.port))
            kind = ("header", "idle", "body")[i % 3]
            if kind == "header":  # a request line and half a header, then nothing
                c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            elif kind == "body":  # a whole header announcing 1,000 bytes, then 10 of them
                c.sendall(b"POST /api/members HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                          b"Content-Length: 1000\r\n\r\n{\"email\":")
            socks.append((kind, c, time.monotonic()))
        opened = time.monotonic() - t_open
        print("2,000 slow connections from %s opened in %.2f s" % (bad, opened))

        # meanwhile, another client is answered at once
        times = []
        for i in range(10):
            for path in ("/healthz", "/api/products?limit=5"):
                st, dt, body = timed(s, path, "127.0.3.%d" % (i + 1))
                assert st == 200, (path, st, body)
                times.append(dt)
        med, worst = statistics.median(times), max(times)
        print("another address during the attack: median %.1f ms, worst %.1f ms over %d requests"
              % (med * 1000, worst * 1000, len(times)))
        assert med < 0.2 and worst < 1.0, (med, worst)
        # the API saw none of the slow requests: only ours (20) and its metrics reads
        seen = api_requests(s) - before
        assert seen <= 22, "the API was handed %d requests; ours were 20" % seen

        # the edge closes every slow connection by its timeouts (header and body: 5 s), or at
        # once with 429 when the address holds more open requests than its limit (256)
        closed_after, answers = {}, {}
        live = {c.fileno(): (k, c, t) for k, c, t in socks}
        ep = select.epoll()
        for fd in live:
            ep.register(fd, select.EPOLLIN)
        deadline = time.monotonic() + 20
        while live and time.monotonic() < deadline:
            for fd, _ in ep.poll(0.5):
                k, c, t = live[fd]
                try:
                    data = c.recv(65536)
                except (ConnectionResetError, socket.timeout):
                    data = b""
                if data:
                    answers.setdefault(k, []).append(data.split(b" ", 2)[1] if data.startswith(b"HTTP/") else data[:20])
                    continue
                closed_after.setdefault(k, []).append(time.monotonic() - t)
                ep.unregister(fd)
                c.close()
                del live[fd]
        ep.close()
        for _, c, _ in live.values():
            c.close()
        assert not live, "%d slow connections still open after 20 s" % len(live)
        refused = [a for a in answers.get("body", []) if a == b"429"]
        print("closed: %s; answered: %s" % (
            {k: (len(v), round(min(v), 1), round(max(v), 1)) for k, v in closed_after.items()},
            {k: len(v) for k, v in answers.items()}))
        # header and idle ones were closed by the header timeout, not before it
        for k in ("header", "idle"):
            assert min(closed_after[k]) >= 3.0, (k, min(closed_after[k]))
            assert not answers.get(k), (k, answers.get(k)[:3])
        # bodies: at most the per-address limit waited for their rest; the others got 429
        n_body = sum(1 for k, _, _ in socks if k == "body")
        assert len(refused) == n_body - 256, (len(refused), n_body)
        assert all(a in (b"429", b"408", b"400") for a in answers.get("body", [])), answers.get("body")[:5]
        assert api_requests(s) - before <= 23  # (the count above, and still none of theirs)


def flood(s, path, n):
    """n connections opened at once, one request each, each from an address of its own, by
    the C load generator (a client in Python is too slow to send 10,000 requests promptly: it
    was itself cut off by the edge's header timeout)."""
    out = os.path.join(s.logdir, "flood-%s.json" % uuid.uuid4().hex[:8])
    r = subprocess.run([os.path.join(s.bindir, "perf", "flashsale-load"), "--url", "http://127.0.0.1:%d" % s.port,
                        "--path", path, "--connections", str(n), "--requests", str(n), "--close",
                        "--sources", str(n), "--json", out, "--quiet"], capture_output=True, timeout=300)
    # (1: a request had no answer, a reset or a 5xx; its summary is on stdout. It once failed
    # so in the full suite, with nothing on stderr, and the test said no more: now it names
    # the statuses and what the edge logged as errors meanwhile)
    res = {}
    if os.path.exists(out):
        try:
            res = json.load(open(out))
        except ValueError as e:
            res = {"status": "its summary file is unreadable: %s" % e}
        os.unlink(out)
    if r.returncode != 0:
        elog = os.path.join(s.logdir, "edge-error.log")
        tail = open(elog, errors="replace").read().splitlines()[-10:] if os.path.exists(elog) else []
        raise AssertionError("flashsale-load exited %d: statuses %s; %s%s; the edge's error log ends:\n%s"
                             % (r.returncode, res.get("status"), r.stdout.decode(), r.stderr.decode(),
                                "\n".join(tail)))
    assert "status" in res and "errors" in res, "flashsale-load wrote no usable summary: %r" % (res,)
    return res


def test_connection_flood(bindir):
    with System(bindir, processors=(), api_env=MAKE_RUN_API) as s:
        catalogue(s)
        for path in ("/healthz", "/api/products?limit=5"):
            res = flood(s, path, 10000)
            print("10,000 connections at once on %s: status %s, %d errors (no answer, reset), %.2f s, p99 %.0f ms"
                  % (path, res["status"], res["errors"], res["seconds"], res["latency_ms"]["p99"]))
            assert res["status"] == {"200": 10000} and res["errors"] == 0, res["status"]
        assert s.request("GET", "/readyz")[0] == 200


def signup(s, source=None, direct=False, xff=None):
    body = {"email": "edge-%s@example.com" % uuid.uuid4().hex[:12], "password": "correct horse battery",
            "name": "Edge"}
    h = {"X-Forwarded-For": xff} if xff else None
    st, hdr, out = s.request("POST", "/api/members", body, headers=h, source=source, direct=direct)
    return st, hdr, out


def test_client_addresses_and_limits(bindir):
    edge_env = {"FLASHSALE_EDGE_RATE_PER_ADDR": "5", "FLASHSALE_EDGE_BURST_PER_ADDR": "10",
                "FLASHSALE_EDGE_METRICS_ALLOW": "127.0.0.1"}
    api_env = dict(MAKE_RUN_API, FLASHSALE_RATE_SIGNUP_IP_PER_MIN="3")
    with System(bindir, processors=(), api_env=api_env, edge_env=edge_env) as s:
        catalogue(s)
        # the API counts sign-ups per address: the address the edge saw
        sts = [signup(s, "127.0.4.1")[0] for _ in range(3)]
        assert sts == [201] * 3, sts
        st, hdr, out = signup(s, "127.0.4.1")
        assert st == 429 and out["error"]["code"] == "RATE_LIMITED" and int(hdr["Retry-After"]) >= 1, (st, out)
        assert signup(s, "127.0.4.2")[0] == 201  # another client of the same edge
        # a forged header through the edge is replaced by the address the edge saw
        assert signup(s, "127.0.4.3", xff="127.0.4.1")[0] == 201
        sts = [signup(s, "127.0.4.1", xff="10.%d.0.1" % i)[0] for i in range(2)]
        assert sts == [429, 429], sts
        # straight to the API from a peer that is not a trusted proxy: the header is ignored
        sts = [signup(s, "127.0.4.4", direct=True, xff="10.9.%d.1" % i)[0] for i in range(5)]
        assert sts == [201, 201, 201, 429, 429], sts
        # the API's log names the client it counted
        log = open(os.path.join(s.logdir, "test-api.log")).read().splitlines()
        limited = [json.loads(l) for l in log if '"rate limited"' in l]
        clients = {l.get("client") for l in limited}
        assert {"127.0.4.1", "127.0.4.4"} <= clients and not any(c.startswith("10.") for c in clients), clients

        # the edge's own limit: 5/s with a burst of 10 per address
        sts = [s.request("GET", "/api/products?limit=1", source="127.0.5.1") for _ in range(40)]
        limited = [r for r in sts if r[0] == 429]
        assert len(limited) >= 20, [r[0] for r in sts]
        st, hdr, out = limited[0]
        assert out["error"]["code"] == "RATE_LIMITED" and hdr["Retry-After"] == "1", (hdr, out)
        assert hdr["X-Request-Id"] == out["error"]["request_id"]
        assert s.request("GET", "/api/products?limit=1", source="127.0.5.2")[0] == 200
        # probes are never limited
        assert all(s.request("GET", "/healthz", source="127.0.5.1")[0] == 200 for _ in range(30))

        # /metrics: only the configured addresses (here 127.0.0.1 alone)
        assert s.request("GET", "/metrics", source="127.0.0.1")[0] == 200
        st, _, out = s.request("GET", "/metrics", source="127.0.6.1")
        assert st == 403 and out["error"]["code"] == "FORBIDDEN", (st, out)


def test_member_write_budget(bindir):
    """One token cannot occupy the server with writes: profile changes and order actions
    share one bucket per subject (here 1/s, burst 5), whatever address they come from."""
    api_env = dict(MAKE_RUN_API, FLASHSALE_RATE_MEMBER_WRITE_PER_S="1", FLASHSALE_RATE_MEMBER_WRITE_BURST="5")
    with System(bindir, processors=(), api_env=api_env) as s:
        catalogue(s)
        _, tok = s.member()
        calls = [("PATCH", "/api/members/me", {"name": "x"}),
                 ("POST", "/api/orders/%s/cancel" % uuid.uuid4(), {})]
        sts = [s.request(m, p, b, tok, source=client_addr(i))[0] for i, (m, p, b) in
               enumerate(calls[i % 2] for i in range(12))]
        assert 429 not in sts[:5] and sts[5:].count(429) >= 6, sts
        st, hdr, out = s.request("PATCH", "/api/members/me", {"name": "x"}, tok)
        assert st == 429 and out["error"]["code"] == "RATE_LIMITED" and int(hdr["Retry-After"]) >= 1, (st, out)
        # another member is not affected, and reads are not counted
        _, other = s.member()
        assert s.request("PATCH", "/api/members/me", {"name": "x"}, other)[0] != 429
        assert s.request("GET", "/api/members/me", token=tok)[0] != 429


def test_request_ids_logs_and_errors(bindir):
    with System(bindir, processors=(), api_env=MAKE_RUN_API) as s:
        st, hdr, out = s.request("GET", "/api/nothing-here", headers={"X-Request-Id": "edge-test-42"})
        assert st == 404 and hdr["X-Request-Id"] == "edge-test-42" and out["error"]["request_id"] == "edge-test-42"
        c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
        c.request("GET", "/api/nothing-here", headers={"X-Request-Id": "edge-test-43"})
        r = c.getresponse()
        r.read()
        ids = r.msg.get_all("X-Request-Id")
        c.close()
        assert ids == ["edge-test-43"], ids  # once: the edge's, not the API's as well
        st, hdr, out = s.request("GET", "/api/nothing-here", headers={"X-Request-Id": "bad id with spaces"})
        rid = hdr["X-Request-Id"]
        assert st == 404 and rid != "bad id with spaces" and out["error"]["request_id"] == rid, (hdr, out)
        st, hdr, out = s.request("GET", "/api/nothing-here")
        assert len(hdr["X-Request-Id"]) == 32 and out["error"]["request_id"] == hdr["X-Request-Id"]

        # a body over 16 KiB never reaches the API
        st, _, out = s.request("POST", "/api/members", raw=b"{" + b" " * 20000 + b"}",
                               headers={"Content-Type": "application/json"})
        assert st == 413 and out["error"]["code"] == "BODY_TOO_LARGE", (st, out)

        # one JSON object per access-log line, with the request id and the client
        time.sleep(1.5)  # the log is flushed every second
        lines = open(os.path.join(s.logdir, "edge-access.log")).read().splitlines()
        recs = [json.loads(l) for l in lines]
        mine = [r for r in recs if r["request_id"] == "edge-test-42"]
        assert mine and mine[-1]["status"] == 404 and mine[-1]["client"] == "127.0.0.1", mine
        assert mine[-1]["upstream_status"] == "404" and mine[-1]["service"] == "edge"

        catalogue(s)
        # the API away: a prompt 502 in the API's format, then the API back, then 200
        s.api.terminate()
        s.api.wait(timeout=30)
        t0 = time.monotonic()
        st, hdr, out = s.request("GET", "/api/products?limit=1")
        assert st == 502 and out["error"]["code"] == "UPSTREAM_UNAVAILABLE", (st, out)
        assert time.monotonic() - t0 < 5


def edge_pids(s):
    """(master, its workers), the master as nginx's pid file names it once it serves and its
    supervisor's record agrees; None while there is no such master."""
    try:
        master, sup_master = (int(open(os.path.join(s.edge_dir, f)).read()) for f in ("nginx.pid", "master.pid"))
    except (OSError, ValueError):
        return None
    if master != sup_master or not alive(master):
        return None
    return master, [p for p in all_pids() if ppid(p) == master]


def all_pids():
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def edge_back(s, old_master, timeout=20):
    """Until a new master serves /healthz through the edge; (master, workers, seconds)."""
    t0 = time.monotonic()
    while True:
        p = edge_pids(s)
        if p and p[0] != old_master and p[1]:
            try:
                if s.request("GET", "/healthz")[0] == 200:
                    return p[0], p[1], time.monotonic() - t0
            except OSError:
                pass
        assert time.monotonic() - t0 < timeout, "the edge not back within %d s of its crash" % timeout
        time.sleep(0.05)


def test_edge_restarted_after_a_crash(bindir):
    with System(bindir, processors=(), api_env=MAKE_RUN_API) as s:
        sup = int(open(os.path.join(s.edge_dir, "supervisor.pid")).read())
        errlog = os.path.join(s.logdir, "edge-error.log")  # (earlier tests' edges wrote there too)
        errlog_from = os.path.getsize(errlog)
        master, workers = edge_pids(s)
        assert workers and all(os.getpgid(w) == master for w in workers), workers
        # the master alone: its workers go on serving (with reuseport, beside the next
        # master's, under the old configuration, past every stop); the supervisor kills them,
        # then starts nginx again
        os.kill(master, signal.SIGKILL)
        master2, workers2, took = edge_back(s, master)
        assert not any(alive(w) for w in workers), "the killed master's workers outlived it"
        print("  master killed: a new one served after %.2f s" % took)
        # master and workers at once: nothing serves until the supervisor has started it again
        os.killpg(master2, signal.SIGKILL)
        master3, workers3, took = edge_back(s, master2)
        # (the second death within 10 s of the first start: the supervisor waits 0.5 s)
        print("  master and workers killed: a new one served after %.2f s" % took)
        env = dict(os.environ, FLASHSALE_EDGE_DIR=s.edge_dir, FLASHSALE_EDGE_LOG_DIR=s.logdir)
        assert subprocess.run([os.path.join(ROOT, "infra", "edge.sh"), "status"], env=env).returncode == 0
        with open(errlog) as f:
            f.seek(errlog_from)
            sup_lines = [json.loads(l) for l in f if l.startswith("{") and '"svc":"supervisor"' in l]
        assert [l["signal"] for l in sup_lines] == ["KILL", "KILL"], sup_lines
        assert sup_lines[0]["left_behind_killed"] is True, sup_lines
        # the edge's stop (at the end of the with block) ends its supervisor and nginx
    assert not alive(sup) and not alive(master3) and not any(alive(w) for w in workers3), "the edge outlived its stop"


def main():
    bindir = sys.argv[1]
    for t in (test_slow_clients, test_connection_flood, test_client_addresses_and_limits,
              test_member_write_budget, test_request_ids_logs_and_errors, test_edge_restarted_after_a_crash):
        print("==", t.__name__, flush=True)
        t(bindir)
    print("edge: all passed")


if __name__ == "__main__":
    main()
