"""Test harness for flashsale over real HTTP and the real broker.

Starts flashsale-inventory processors and a flashsale-api against the test run's Kafka,
PostgreSQL and Redis (environment from infra/test.sh), mints HS256 tokens itself (an
implementation independent of the project's), sends many requests at once with asyncio,
reads topics back with flashsale-dump, and re-derives inventory state from the event log
with its own rules (independent of the C decision code)."""
import asyncio
import base64
import collections
import hashlib
import hmac
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def client_addr(i):
    """The i-th of many distinct loopback client addresses (127.1.0.1, 127.1.0.2, ...): a
    crowd of buyers comes from many addresses, and the edge counts its limits per address."""
    return "127.%d.%d.%d" % (1 + i // 62500, (i // 250) % 250, i % 250 + 1)


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def mint(secret, sub, role, ttl=3600, now=None):
    now = int(now if now is not None else time.time())
    head = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64url(json.dumps({"sub": sub, "role": role, "iat": now, "exp": now + ttl}).encode())
    sig = hmac.new(secret.encode(), ("%s.%s" % (head, body)).encode(), hashlib.sha256).digest()
    return "%s.%s.%s" % (head, body, b64url(sig))


# Every response the harness's requests get is recorded, when FLASHSALE_OPENAPI_RECORD_DIR is
# set (infra/test.sh sets it), as one JSON object per line in a file of this process's own;
# after the integration tests, tests/openapi/validate-responses.mjs checks them all against
# docs/openapi.json. A burst's thousands of alike answers are kept up to RECORD_PER_KIND
# per method, status and path shape.
RECORD_PER_KIND = 200
_record_file = None
_record_counts = collections.Counter()


def _path_kind(path):
    segs = path.split("?")[0].split("/")
    return "/".join(s if len(s) < 20 and not any(c.isdigit() for c in s) else "*" for s in segs)


def record_response(method, path, status, content_type, body):
    """Appends one response to this process's record file (no-op unless recording)."""
    global _record_file
    d = os.environ.get("FLASHSALE_OPENAPI_RECORD_DIR")
    if not d or not status:
        return
    kind = (method, status, _path_kind(path))
    _record_counts[kind] += 1
    if _record_counts[kind] > RECORD_PER_KIND:
        return
    if _record_file is None:
        os.makedirs(d, exist_ok=True)
        _record_file = open(os.path.join(d, "%d-%s.jsonl" % (os.getpid(), uuid.uuid4().hex[:8])), "a")
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    _record_file.write(json.dumps({"method": method, "path": path, "status": status,
                                   "content_type": content_type or "", "body": body}) + "\n")
    _record_file.flush()


_ports_given = set()


def free_port():
    """A free port below Linux's ephemeral range (32768-60999), where no client's connection
    can take it between now and a service's (re)start: bind(0) gave ports from that range,
    and a restarted service could find its port taken by some connection's local end. Never
    one given before in this process, nor one of the suite's own instances (infra/test.sh's
    FLASHSALE_*_PORT, a Kafka node's next ports too)."""
    import random
    rnd = random.SystemRandom()  # (a test's random.seed() must not fix the sequence)
    fixed = set()
    for k, v in os.environ.items():
        if k.startswith("FLASHSALE_") and k.endswith("_PORT") and v.isdigit():
            fixed.update(range(int(v), int(v) + 8))
    for _ in range(1000):
        p = rnd.randint(20000, 32700)
        if p in _ports_given or p in fixed:
            continue
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", p))
        except OSError:
            continue
        finally:
            s.close()
        _ports_given.add(p)
        return p
    raise RuntimeError("no free port in 20000-32700")


def until(what, cond, timeout=10.0, every=0.02):
    """cond()'s first true value, asked every EVERY s; AssertionError after TIMEOUT s."""
    deadline = time.time() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.time() > deadline:
            raise AssertionError("timed out (%g s) waiting for: %s" % (timeout, what))
        time.sleep(every)


def audit(bindir, *args):
    """flashsale-audit with args: its exit status, its summary, its JSON report."""
    out = "/tmp/audit-%s.json" % uuid.uuid4().hex[:8]
    r = subprocess.run([os.path.join(bindir, "projections", "flashsale-audit"), "--json", out] + list(args),
                       capture_output=True, timeout=300)
    report = json.load(open(out))
    os.unlink(out)
    return r.returncode, r.stdout.decode(), report


def alive(pid):
    """The process exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def ppid(pid):
    """The process's parent, or None when it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def percentile(values, p):
    if not values:
        return 0.0
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


class System:
    """An API and inventory processors on the test broker."""

    def __init__(self, bindir, processors=("inv-a",), api_env=None, proc_env=None, sagas=False,
                 saga_env=None, payments_env=None, edge_env=None):
        self.bindir = bindir
        self.secret = os.environ["FLASHSALE_JWT_SECRET"]
        self.logdir = os.path.join(os.environ.get("FLASHSALE_RUN_DIR", "/tmp"), "logs")
        os.makedirs(self.logdir, exist_ok=True)
        self.api_env = dict(api_env or {})
        self.proc_env = dict(proc_env or {})
        self.procs = {}
        self._log_start = {}  # log path -> its size when this System first wrote to it
        self.names = list(processors)
        self.sagas = sagas
        self.saga_env = dict(saga_env or {})
        self.payments_env = dict(payments_env or {})
        self.api = None
        self.port = None       # the edge (nginx): what clients use
        self.api_port = None   # the API itself, behind the edge
        self.sse_port = None   # the API's event-stream listener (GET /api/events), behind the edge
        self.edge_env = dict(edge_env or {})
        self.edge_dir = None
        self.admin = mint(self.secret, "admin-%s" % uuid.uuid4().hex[:8], "admin")

    # --- processes -------------------------------------------------------------------
    def _spawn(self, exe, env, logname):
        path = os.path.join(self.logdir, logname)
        self._log_start.setdefault(path, os.path.getsize(path) if os.path.exists(path) else 0)
        log = open(path, "ab")
        return subprocess.Popen(exe if isinstance(exe, list) else [exe], env=env, stdout=log, stderr=log)

    def start_processor(self, name):
        # snapshots often, so that every restart in the suite rebuilds from one and its tail
        env = dict(FLASHSALE_SNAPSHOT_EVENTS="100", FLASHSALE_SNAPSHOT_INTERVAL_MS="1000")
        env.update(os.environ, FLASHSALE_INSTANCE_ID=name, **self.proc_env)
        self.procs[name] = self._spawn(
            os.path.join(self.bindir, "inventory-processor", "flashsale-inventory"), env,
            "test-%s.log" % name)

    def start_projector(self, target="postgres", rebuild=False):
        """Process names: "projector" (postgres) and "projector-redis"."""
        exe = os.path.join(self.bindir, "projections", "flashsale-projector")
        name = "projector" if target == "postgres" else "projector-" + target
        self.procs[name] = self._spawn([exe, "--target", target] + (["--rebuild"] if rebuild else []),
                                       dict(os.environ), "test-%s.log" % name)

    def sql(self, query):
        """Rows of a query on the test PostgreSQL, as lists of strings."""
        out = subprocess.run(["psql", os.environ["FLASHSALE_PG_URL"], "-At", "-F", "|", "-c", query],
                             capture_output=True, check=True, timeout=60).stdout.decode()
        return [line.split("|") for line in out.splitlines() if line]

    def start_notifier(self, spool, env=None, name="notifier"):
        exe = os.path.join(self.bindir, "notifier", "flashsale-notifier")
        e = dict(os.environ, FLASHSALE_SPOOL_DIR=spool, **(env or {}))
        self.procs[name] = self._spawn(exe, e, "test-%s.log" % name)

    def kafka(self, action):
        """Stops or starts the test broker ("stop" / "start")."""
        subprocess.run([os.path.join(ROOT, "infra", "flashsale.sh"), "kafka-" + action], check=True,
                       capture_output=True, timeout=180)

    def redis(self, *args):
        """One redis-cli command on the test Redis; its output lines (--raw)."""
        env = dict(os.environ, REDISCLI_AUTH=os.environ.get("FLASHSALE_REDIS_PASSWORD", ""))
        out = subprocess.run(["redis-cli", "-h", os.environ.get("FLASHSALE_REDIS_HOST", "127.0.0.1"),
                              "-p", os.environ.get("FLASHSALE_REDIS_PORT", "6379"), "--no-auth-warning",
                              "--raw"] + [str(a) for a in args],
                             capture_output=True, check=True, timeout=60, env=env).stdout.decode()
        return out.splitlines()

    def start_saga(self, which):
        """which: "orders" or "payments" """
        exe = os.path.join(self.bindir, "sagas", "flashsale-" + which)
        extra = self.saga_env if which == "orders" else self.payments_env
        env = dict(os.environ, FLASHSALE_INSTANCE_ID=which + "-1", **extra)
        self.procs[which] = self._spawn(exe, env, "test-%s.log" % which)

    def stop_processor(self, name, sig=signal.SIGTERM):
        p = self.procs[name]
        p.send_signal(sig)
        try:
            rc = p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()  # never leave a process behind to disturb later tests
            p.wait()
            raise AssertionError("processor %s did not stop within 60 s of %s" % (name, sig))
        finally:
            del self.procs[name]
        if sig == signal.SIGTERM:
            assert rc == 0, "processor %s exited %s after SIGTERM" % (name, rc)

    def edge(self, action):
        """Starts or stops this system's edge (infra/edge.sh: "start", "stop")."""
        env = dict(os.environ, FLASHSALE_EDGE_DIR=self.edge_dir, FLASHSALE_EDGE_PORT=str(self.port),
                   FLASHSALE_API_PORT=str(self.api_port), FLASHSALE_SSE_PORT=str(self.sse_port),
                   FLASHSALE_ORDER_PORT=str(self.order_port), FLASHSALE_EDGE_LOG_DIR=self.logdir,
                   **self.edge_env)
        r = subprocess.run([os.path.join(ROOT, "infra", "edge.sh"), action], env=env,
                           capture_output=True, timeout=60)
        if r.returncode:
            raise SystemExit("edge %s failed: %s" % (action, r.stderr.decode(errors="replace")))

    def start(self):
        for n in self.names:
            self.start_processor(n)
        if self.sagas:
            self.start_saga("orders")
            self.start_saga("payments")
        # (free_port never gives a port twice)
        self.port, self.api_port, self.sse_port, self.order_port = (free_port() for _ in range(4))
        if self.api_env.get("FLASHSALE_ORDER_PORT") == "0":  # no front: civetweb takes orders
            self.order_port = 0
        self.edge_dir = os.path.join(os.environ.get("FLASHSALE_RUN_DIR", "/tmp"), "edge-%d" % self.port)
        self.edge("start")
        # the API as infra/flashsale.sh runs it: behind the edge, which it trusts for the
        # client's address, with kept-alive upstream connections outliving the edge's
        env = dict(os.environ, FLASHSALE_HTTP_PORT=str(self.api_port), FLASHSALE_HTTP_THREADS="1000",
                   FLASHSALE_HTTP_QUEUE="20000", FLASHSALE_TRUSTED_PROXIES="127.0.0.1",
                   FLASHSALE_HTTP_KEEPALIVE_MS="60000", FLASHSALE_SSE_PORT=str(self.sse_port),
                   FLASHSALE_ORDER_PORT=str(self.order_port))
        env.update(self.api_env)
        self.api = self._spawn(os.path.join(self.bindir, "command-api", "flashsale-api"), env,
                               "test-api.log")
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if self.request("GET", "/readyz")[0] == 200:
                    return self
            except OSError:
                pass
            if self.api.poll() is not None:
                raise SystemExit("flashsale-api exited with %s" % self.api.returncode)
            time.sleep(0.2)
        raise SystemExit("flashsale-api not ready in 60 s")

    def stop(self):
        if self.edge_dir:
            self.edge("stop")
        if self.api and self.api.poll() is None:
            self.api.send_signal(signal.SIGTERM)
            try:
                self.api.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.api.kill()
                self.api.wait()
        errors = []
        for n in list(self.procs):
            try:
                self.stop_processor(n)
            except AssertionError as e:  # stop the others first, then report
                errors.append(str(e))
        assert not errors, "; ".join(errors)

    def __enter__(self):
        return self.start()

    def print_problems(self, per_log=15):
        """The warnings and errors the services logged since this System started them (the
        logs are shared by the whole run), last per_log of each log: the evidence a failed
        test leaves in ctest's output, which CI shows. Refused connections are left out."""
        for path, start in sorted(self._log_start.items()):
            try:
                with open(path, "rb") as f:
                    f.seek(start)
                    lines = f.read().decode(errors="replace").splitlines()
            except OSError:
                continue
            bad = [l for l in lines if ('"level":"warn"' in l or '"level":"error"' in l)
                   and "Connection refused" not in l and "brokers are down" not in l]
            if bad:
                print("== %s: %d warnings/errors since the test started its service; the last %d:"
                      % (os.path.basename(path), len(bad), min(per_log, len(bad))), file=sys.stderr)
                for l in bad[-per_log:]:
                    print("   " + l[:400], file=sys.stderr)

    def __exit__(self, *exc):
        if exc[0] is not None and not issubclass(exc[0], KeyboardInterrupt):
            try:
                self.print_problems()
            except Exception as e:  # never hide the test's own failure
                print("(could not read the service logs: %s)" % e, file=sys.stderr)
        try:
            self.stop()
        finally:
            for p in self.procs.values():
                p.kill()
                p.wait()
            if self.api and self.api.poll() is None:
                self.api.kill()
                self.api.wait()
            if self.edge_dir:
                self.edge("stop")

    # --- HTTP ------------------------------------------------------------------------
    def request(self, method, path, body=None, token=None, headers=None, raw=None, source=None,
                direct=False, timeout=30):
        """One request through the edge (direct: to the API itself), from the source address
        `source` (a loopback address; default 127.0.0.1)."""
        c = http.client.HTTPConnection("127.0.0.1", self.api_port if direct else self.port, timeout=timeout,
                                       source_address=(source, 0) if source else None)
        h = dict(headers or {})
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        if token:
            h["Authorization"] = "Bearer " + token
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        text = r.read()
        c.close()
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = text.decode(errors="replace")
        record_response(method, path, r.status, r.getheader("Content-Type"), parsed)
        return r.status, dict(r.getheaders()), parsed

    def member(self, name=None):
        name = name or "member-%s" % uuid.uuid4().hex[:12]
        return name, mint(self.secret, name, "member")

    def create_product(self, stock, limit=0, starts=None, ends=None, price=1000, name="item"):
        body = {"name": name, "price": price, "stock": stock, "per_user_limit": limit,
                "sale_starts_at": starts if starts is not None else "2020-01-01T00:00:00Z"}
        if ends is not None:
            body["sale_ends_at"] = ends
        status, _, out = self.request("POST", "/api/products", body, self.admin)
        assert status in (201, 202), (status, out)
        pid = out["product_id"]
        deadline = time.time() + 60
        while status == 202:  # accepted, not yet decided (e.g. during a rebalance): poll
            assert time.time() < deadline, "product %s never appeared" % pid
            time.sleep(0.2)
            status = 201 if self.request("GET", "/api/products/" + pid)[0] == 200 else 202
        return pid

    def order(self, token, product_id, quantity=1, headers=None):
        return self.request("POST", "/api/orders", {"product_id": product_id, "quantity": quantity},
                            token, headers)

    def burst(self, reqs, spread_s=0.0):
        """reqs: list of (path, body dict, token). All in flight at once (or started evenly
        over spread_s seconds), through the edge, request i from client_addr(i). Returns a
        list of (status, parsed body, seconds)."""
        return asyncio.run(self._burst(reqs, spread_s))

    async def _one(self, path, body, token, extra, delay, source):
        if delay:
            await asyncio.sleep(delay)
        data = json.dumps(body).encode()
        head = ("POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                "Authorization: Bearer %s\r\nContent-Length: %d\r\nConnection: close\r\n%s\r\n"
                % (path, token, len(data), extra or "")).encode()
        t0 = time.monotonic()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port, local_addr=(source, 0))
            writer.write(head + data)
            await writer.drain()
            resp = await reader.read()
            writer.close()
        except OSError as e:
            return 0, str(e), time.monotonic() - t0
        dt = time.monotonic() - t0
        head_end = resp.find(b"\r\n\r\n")
        status = int(resp.split(b" ", 2)[1]) if resp.startswith(b"HTTP/") else 0
        try:
            parsed = json.loads(resp[head_end + 4:]) if head_end >= 0 else None
        except ValueError:
            parsed = None
        if head_end >= 0 and status:
            ctype = ""
            for hl in resp[:head_end].split(b"\r\n")[1:]:
                name, _, value = hl.partition(b":")
                if name.strip().lower() == b"content-type":
                    ctype = value.strip().decode(errors="replace")
            body = parsed if parsed is not None else resp[head_end + 4:].decode(errors="replace")
            record_response("POST", path, status, ctype, body)
        return status, parsed, dt

    async def _burst(self, reqs, spread_s):
        n = len(reqs)
        tasks = []
        for i, r in enumerate(reqs):
            path, body, token = r[:3]
            extra = r[3] if len(r) > 3 else None
            tasks.append(self._one(path, body, token, extra, spread_s * i / n if spread_s else 0,
                                   client_addr(i)))
        return await asyncio.gather(*tasks)

    # --- the log ---------------------------------------------------------------------
    def dump(self, topic):
        out = subprocess.run([os.path.join(self.bindir, "tools", "flashsale-dump"), topic],
                             capture_output=True, check=True, timeout=300)
        return [json.loads(l) for l in out.stdout.decode().splitlines() if l.strip()]

    def wait_all_decided(self, timeout=120):
        """Waits until every ReserveStock in inventory.commands has a decision."""
        deadline = time.time() + timeout
        while True:
            cmds = [r for r in self.dump("inventory.commands") if r.get("type") == "ReserveStock"]
            events = self.dump("inventory.events")
            decided = {r["value"]["order_id"] for r in events
                       if r.get("type") in ("StockReserved", "StockRejected")}
            # (or refused unread: an order older than the deduplication window, CommandRejected)
            answered = {(r["partition"], r["value"].get("command_offset")) for r in events
                        if r.get("type") == "CommandRejected"}
            missing = [c["value"]["order_id"] for c in cmds if c["value"]["order_id"] not in decided
                       and (c["partition"], c["offset"]) not in answered]
            if not missing:
                return len(cmds)
            if time.time() > deadline:
                raise AssertionError("%d commands never decided, e.g. %s" % (len(missing), missing[:3]))
            time.sleep(1)


def derive(events):
    """Re-derives inventory from inventory.events in log order (per partition), checking
    the invariants on the way. Returns (products, decisions per (order, line), holdings,
    problems); a single-item order is line 0."""
    products = {}
    decisions = collections.Counter()
    holdings = collections.Counter()
    problems = []
    for r in sorted(events, key=lambda r: (r["partition"], r["offset"])):
        t, v = r.get("type"), r.get("value") or {}
        pid = v.get("product_id")
        p = products.get(pid)
        if t == "ProductDefined":
            products[pid] = {"stock": v["stock"], "available": v["stock"], "reserved": 0, "sold": 0}
            continue
        if t == "RetentionSet":
            continue  # the partition's windows (flashsale-admin retention): no product, no unit
        if p is None:
            if t in ("StockRejected", "CommandRejected"):
                decisions[(v.get("order_id"), v.get("item_index", 0))] += t == "StockRejected"
                continue
            problems.append("%s for unknown product %s" % (t, pid))
            continue
        q = v.get("quantity", 0)
        if t == "ProductRestocked":
            p["stock"] += q
            p["available"] += q
        elif t == "StockReserved":
            decisions[(v["order_id"], v.get("item_index", 0))] += 1
            if q > p["available"]:
                problems.append("oversell: order %s took %d with %d available" % (v["order_id"], q, p["available"]))
            p["available"] -= q
            p["reserved"] += q
            holdings[(pid, v["member_id"])] += q
        elif t == "StockRejected":
            decisions[(v["order_id"], v.get("item_index", 0))] += 1
            if v["reason"] == "SOLD_OUT" and p["available"] != 0:
                problems.append("undersell: order %s refused SOLD_OUT with %d available" % (v["order_id"], p["available"]))
        elif t == "ReservationCommitted":
            p["reserved"] -= q
            p["sold"] += q
        elif t == "ReservationReleased":
            p["reserved"] -= q
            p["available"] += q
            holdings[(pid, v["member_id"])] -= q
        if min(p["available"], p["reserved"], p["sold"]) < 0:
            problems.append("negative counter on %s after %s" % (pid, t))
        if p["available"] + p["reserved"] + p["sold"] != p["stock"]:
            problems.append("conservation broken on %s after %s" % (pid, t))
        if t in ("StockReserved", "ReservationCommitted", "ReservationReleased", "ProductRestocked"):
            if (v.get("available"), v.get("reserved"), v.get("sold")) != (p["available"], p["reserved"], p["sold"]):
                problems.append("event counters of %s at %d/%d differ from the re-derived state" % (t, r["partition"], r["offset"]))
    return products, decisions, holdings, problems
