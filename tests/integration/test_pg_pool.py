#!/usr/bin/python3
"""The API's PostgreSQL pool under a catalogue flood, over real HTTP against the test run's
PostgreSQL: 20,000 `GET /api/products?limit=20` at 128 at a time never make the API hold more
connections than its pool (sampled from pg_stat_activity throughout), every request is
answered (200, or 503 UNAVAILABLE with Retry-After when the pool stays busy past the
deadline), other clients (psql) still connect during the flood, and right after it sign-up
and the catalogue answer at once. A second API with a one-connection pool and no wait shows
the 503 path and that it heals the moment the flood stops.
Usage: test_pg_pool.py BUILD_DIR"""
import http.client
import json
import os
import subprocess
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fsharness import System, client_addr  # noqa: E402

CONCURRENCY = 128


def api_connections():
    out = subprocess.run(
        ["psql", os.environ["FLASHSALE_PG_URL"], "-At", "-c",
         "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'flashsale-api'"],
        capture_output=True, timeout=30)
    if out.returncode != 0:
        return None, out.stderr.decode()
    return int(out.stdout.decode().strip()), None


def flood(port, total, path):
    """total GETs of path over CONCURRENCY keep-alive connections; returns a list of
    (status, headers, body) and the seconds taken."""
    results, lock = [], threading.Lock()
    per = [total // CONCURRENCY + (1 if i < total % CONCURRENCY else 0) for i in range(CONCURRENCY)]

    def worker(n, src):
        # each worker is a client of its own address: the edge limits requests per address
        def conn():
            return http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(src, 0))
        mine = []
        c = conn()
        for _ in range(n):
            try:
                c.request("GET", path)
                r = c.getresponse()
                mine.append((r.status, dict(r.getheaders()), r.read()))
                if r.getheader("Connection", "").lower() == "close":
                    c.close()
                    c = conn()
            except (OSError, http.client.HTTPException) as e:
                mine.append((0, {}, str(e).encode()))
                c.close()
                c = conn()
        c.close()
        with lock:
            results.extend(mine)

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(n, client_addr(i))) for i, n in enumerate(per)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, time.monotonic() - t0


class Sampler(threading.Thread):
    """Counts the API's connections in pg_stat_activity until stopped."""

    def __init__(self):
        super().__init__(daemon=True)
        self.samples, self.failures, self.done = [], [], threading.Event()

    def run(self):
        while not self.done.is_set():
            n, err = api_connections()
            if n is None:
                self.failures.append(err)
            else:
                self.samples.append(n)
            time.sleep(0.02)


def signup(system):
    email = "pool-%s@example.com" % uuid.uuid4().hex[:10]
    return system.request("POST", "/api/members",
                          {"email": email, "password": "pool test pw 1", "name": "Pool"})


def wait_read_model(system):
    """The catalogue's tables are the PostgreSQL projector's: start it and wait for them."""
    system.start_projector("postgres")
    deadline = time.time() + 60
    while system.request("GET", "/api/products?limit=1")[0] != 200:
        assert time.time() < deadline, "the read model never appeared"
        time.sleep(0.2)


def main(bindir):
    checks = 0
    pool = 4
    with System(bindir, api_env={
            "FLASHSALE_PG_POOL_SIZE": str(pool), "FLASHSALE_HTTP_THREADS": "512"}) as s:
        wait_read_model(s)
        s.create_product(5, name="pool-flood")
        sampler = Sampler()
        sampler.start()
        results, secs = flood(s.port, 20000, "/api/products?limit=20")
        sampler.done.set()
        sampler.join()
        statuses = {}
        for st, h, body in results:
            statuses[st] = statuses.get(st, 0) + 1
            if st == 503:
                assert h.get("Retry-After") == "1", h
                assert json.loads(body)["error"]["code"] == "UNAVAILABLE", body
            else:
                assert st == 200, (st, body[:200])
        print("flood: %d requests in %.1f s, statuses %s; API connections sampled %d times, max %d"
              % (len(results), secs, statuses, len(sampler.samples), max(sampler.samples or [0])))
        assert len(results) == 20000
        assert not sampler.failures, sampler.failures[:3]  # psql connected every time
        assert len(sampler.samples) >= 10, sampler.samples
        assert max(sampler.samples) <= pool, sampler.samples
        assert max(sampler.samples) >= 1, sampler.samples
        # with a one-second deadline a 4-connection pool serves this flood (queries take ~1 ms)
        assert statuses.get(200, 0) >= 19000, statuses
        checks += 4

        st, _, out = signup(s)
        assert st == 201, (st, out)
        st, _, out = s.request("GET", "/api/products?limit=20")
        assert st == 200 and "items" in out, (st, out)
        checks += 1
        st, _, metrics = s.request("GET", "/metrics")
        assert 'flashsale_pg_pool_connections{state="size"} %d' % pool in metrics, metrics
        checks += 1

    # A pool that cannot keep up: 503 with Retry-After, and healthy again at once after.
    with System(bindir, processors=(), api_env={
            "FLASHSALE_PG_POOL_SIZE": "1", "FLASHSALE_PG_POOL_WAIT_MS": "0",
            "FLASHSALE_HTTP_THREADS": "512"}) as s:
        results, secs = flood(s.port, 4000, "/api/products?limit=20")
        statuses = {}
        for st, h, body in results:
            statuses[st] = statuses.get(st, 0) + 1
            assert st in (200, 503), (st, body[:200])
            if st == 503:
                assert h.get("Retry-After") == "1", h
                assert json.loads(body)["error"]["code"] == "UNAVAILABLE", body
        print("one-connection pool, no wait: %s in %.1f s" % (statuses, secs))
        assert statuses.get(503, 0) > 0 and statuses.get(200, 0) > 0, statuses
        n, _ = api_connections()
        assert n is not None and n <= 1, n
        for _ in range(20):
            st, _, out = s.request("GET", "/api/products?limit=20")
            assert st == 200, (st, out)
        st, _, out = signup(s)
        assert st == 201, (st, out)
        st, _, metrics = s.request("GET", "/metrics")
        timeouts = [l for l in metrics.splitlines() if l.startswith('flashsale_pg_pool_total{event="timeout"}')]
        assert timeouts and int(timeouts[0].split()[-1]) == statuses[503], (timeouts, statuses)
        checks += 3
    print("pg pool: %d checks passed" % checks)


if __name__ == "__main__":
    main(sys.argv[1])
