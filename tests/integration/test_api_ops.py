#!/usr/bin/python3
"""flashsale-api operations endpoints over real HTTP, against the test run's Kafka,
PostgreSQL and Redis: /healthz, /readyz (ready, and not ready with Retry-After when a
dependency is unreachable), /metrics counting requests, JSON errors for unknown routes,
request id echo, and a clean exit on SIGTERM. Usage: test_api_ops.py PATH_TO_FLASHSALE_API"""
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fsharness import free_port  # noqa: E402


def get(port, path, headers=None):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def start(exe, env_extra):
    port = free_port()
    env = dict(os.environ, FLASHSALE_HTTP_PORT=str(port), **env_extra)
    p = subprocess.Popen([exe], env=env, stderr=subprocess.PIPE)
    for _ in range(100):
        try:
            if get(port, "/healthz")[0] == 200:
                return p, port
        except OSError:
            pass
        time.sleep(0.1)
    p.kill()
    raise SystemExit("flashsale-api did not start: %s" % p.stderr.read().decode())


def wait_ready(port, want, seconds=15, until=lambda body: True):
    """Polls /readyz until it answers `want` with a body for which `until` holds."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        status, headers, body = get(port, "/readyz")
        if status == want and until(json.loads(body)):
            return status, headers, json.loads(body)
        time.sleep(0.2)
    raise AssertionError("readyz never answered %d (last %d %s)" % (want, status, body))


def main(exe):
    checks = 0
    p, port = start(exe, {})
    try:
        status, headers, body = wait_ready(port, 200)
        assert body["status"] == "ready", body
        for dep in ("kafka", "postgres", "redis"):
            assert body[dep]["status"] == "ok", body
        checks += 1

        status, headers, body = get(port, "/api/no-such-thing", {"X-Request-Id": "test-req-42"})
        err = json.loads(body)["error"]
        assert status == 404 and err["code"] == "NOT_FOUND", (status, body)
        assert err["request_id"] == "test-req-42" and headers["X-Request-Id"] == "test-req-42"
        assert headers["Content-Type"] == "application/json"
        checks += 1
        status, headers, body = get(port, "/healthz", {"X-Request-Id": "bad id with spaces"})
        assert status == 200 and headers["X-Request-Id"] != "bad id with spaces"
        checks += 1

        status, _, body = get(port, "/metrics")
        text = body.decode()
        assert status == 200
        assert 'flashsale_http_requests_total{route="other",status="404"} 1' in text, text
        assert 'flashsale_http_requests_total{route="readyz",status="200"}' in text, text
        checks += 1

        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=10) == 0
        logs = p.stderr.read().decode().splitlines()
        for line in logs:
            if line.strip():
                try:
                    json.loads(line)
                except ValueError:
                    raise AssertionError("non-JSON log line: %r" % line)
        checks += 1
    finally:
        if p.poll() is None:
            p.kill()

    # Redis unreachable: not ready, with Retry-After, naming the failed dependency.
    p, port = start(exe, {"FLASHSALE_REDIS_PORT": str(free_port())})
    try:
        # (before its first round of checks every dependency reads "down")
        status, headers, body = wait_ready(port, 503, until=lambda b: b["kafka"]["status"] == "ok")
        assert headers.get("Retry-After") == "1", headers
        assert body["redis"]["status"] == "down" and body["kafka"]["status"] == "ok", body
        checks += 1
    finally:
        p.kill()
        p.wait()

    # A bad setting stops the process with one line naming variable and value.
    r = subprocess.run([exe], env=dict(os.environ, FLASHSALE_HTTP_PORT="http"),
                       capture_output=True, timeout=10)
    line = json.loads(r.stderr.decode().strip().splitlines()[-1])
    assert r.returncode == 2 and 'FLASHSALE_HTTP_PORT="http"' in line["error"], r.stderr
    checks += 1
    print("api ops: %d checks passed" % checks)


if __name__ == "__main__":
    main(sys.argv[1])
