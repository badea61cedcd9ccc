#!/usr/bin/python3
"""The read models (flashsale-projector --target postgres and --target redis) over the real
log, in one system:
- after a burst with payments (30 % failing), expiries, cancels and returns, with both
  projectors SIGKILLed twice mid-stream and restarted, PostgreSQL's products, orders,
  history and payments and Redis's products, orders and histories equal what the log says
  (re-derived here, independently of the projectors): nothing applied twice, nothing
  skipped; and flashsale-audit --read-models agrees; every order's channel (fs:order:<id>)
  carried each of its transitions in order, the last message naming the status the log
  ends with; each order's `created` is its decision's time, and the product set names
  every product;
- Redis flushed: the API answers from PostgreSQL meanwhile, the Redis projector notices and
  rebuilds, and the API answers from Redis again with the same state;
- Redis --rebuild: a new generation is built while the old one serves, then switched to;
- Redis hung: the circuit breaker sends reads to PostgreSQL after a few failures instead of
  a timeout per request;
- evolution: a projector built with a newer ProductDefined (an added defaulted field)
  rebuilds PostgreSQL from the older events, equal again.
Usage: test_projector.py BUILD_DIR"""
import collections
import contextlib
import json
import os
import subprocess
import random
import signal
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fsharness import System, derive, mint  # noqa: E402


def expected(s, products):
    """What the read model must hold for these products and their orders, from the log."""
    prods, _, _, problems = derive(s.dump("inventory.events"))
    assert not problems, problems[:3]
    want_products = {p: (prods[p]["stock"], prods[p]["available"], prods[p]["reserved"], prods[p]["sold"])
                     for p in products}
    mine = set(products)
    orders = {}
    for r in s.dump("inventory.events"):
        v = r.get("value") or {}
        if r.get("type") in ("StockReserved", "StockRejected") and v.get("product_id") in mine \
                and v.get("item_count", 1) == 1:
            orders.setdefault(v["order_id"], "RESERVED" if r["type"] == "StockReserved" else "REJECTED")
    transitions = collections.Counter()
    for r in s.dump("orders.events"):
        v = r.get("value") or {}
        if r.get("type") == "OrderStatusChanged" and v["order_id"] in orders:
            orders[v["order_id"]] = v["status"]
            if v["previous"] != v["status"]:
                transitions[v["order_id"]] += 1
    payments = collections.Counter(r["value"]["order_id"] for r in s.dump("payments.events")
                                   if r["value"]["order_id"] in orders)
    return want_products, orders, transitions, payments


def read_model(s, products, orders):
    plist = ",".join("'%s'" % p for p in products)
    got_products = {r[0]: tuple(int(x) for x in r[1:]) for r in
                    s.sql("SELECT product_id, stock, available, reserved, sold FROM products"
                          " WHERE product_id IN (%s)" % plist)}
    olist = ",".join("'%s'" % o for o in orders) or "''"
    got_orders = dict(s.sql("SELECT order_id, status FROM orders WHERE order_id IN (%s)" % olist))
    hist = collections.Counter(r[0] for r in s.sql(
        "SELECT order_id FROM order_status_history WHERE order_id IN (%s)" % olist))
    pays = collections.Counter(r[0] for r in s.sql(
        "SELECT order_id FROM payments WHERE order_id IN (%s)" % olist))
    return got_products, got_orders, hist, pays


def converge(s, products, timeout=90):
    deadline = time.time() + timeout
    while True:
        want = expected(s, products)
        got = read_model(s, products, want[1])
        if got == want:
            return want
        if time.time() > deadline:
            for name, w, g in zip(("products", "orders", "history", "payments"), want, got):
                if w != g:
                    diff = {k: (w.get(k), g.get(k)) for k in set(w) | set(g) if w.get(k) != g.get(k)}
                    print("%s differ (log, read model): %s" % (name, list(diff.items())[:5]))
            raise AssertionError("the read model never matched the log")
        time.sleep(1)


def redis_model(s, products, orders):
    """Redis's products, order statuses and history lengths, read in one script call each."""
    script = ("local g = redis.call('GET', 'fs:rm:gen') if not g then return {} end local out = {} "
              "for i, id in ipairs(ARGV) do out[i] = redis.call('%s', 'fs:rm:' .. g .. '%s' .. id%s) end "
              "return out")
    def call(cmd, key, extra, ids):
        if not ids:
            return []
        lines = s.redis("EVAL", script % (cmd, key, extra), 0, *ids)
        return lines
    prods = {}
    for p in products:
        vals = s.redis("HMGET", "fs:rm:%s:p:%s" % (current_gen(s), p), "stock", "available", "reserved", "sold")
        if all(vals):
            prods[p] = tuple(int(x) for x in vals)
    ids = sorted(orders)
    statuses = call("HGET", ":o:", ", 'status'", ids)
    lens = call("LLEN", ":h:", "", ids)
    got_orders = {o: st for o, st in zip(ids, statuses) if st}
    hist = collections.Counter({o: int(n) for o, n in zip(ids, lens) if int(n)})
    return prods, got_orders, hist


def current_gen(s):
    g = s.redis("GET", "fs:rm:gen")
    return g[0] if g and g[0] else "none"


def converge_redis(s, products, timeout=90):
    deadline = time.time() + timeout
    while True:
        want_products, orders, transitions, _ = expected(s, products)
        got = redis_model(s, products, orders)
        if got == (want_products, orders, transitions):
            return want_products, orders
        if time.time() > deadline:
            for name, w, g in zip(("products", "orders", "history"), (want_products, orders, transitions), got):
                if w != g:
                    diff = {k: (w.get(k), g.get(k)) for k in set(w) | set(g) if w.get(k) != g.get(k)}
                    print("redis %s differ (log, read model): %s" % (name, list(diff.items())[:5]))
            raise AssertionError("the Redis read model never matched the log")
        time.sleep(1)


def cancels_and_returns(s, reqs, results, product):
    """Cancels paid orders before they ship (refund and restock) and returns delivered ones
    (admin completes with restock). Returns (cancelled, returned)."""
    placed = [(b["order_id"], r[2]) for r, (st, b, _) in zip(reqs, results) if st == 201]
    cancelled = returned = 0
    for _ in range(20):
        if cancelled >= 3:
            break
        _, tok = s.member()
        st, _, o = s.order(tok, product)
        assert st == 201, (st, o)
        deadline = time.time() + 20
        while o["status"] in ("PENDING", "RESERVED", "PAYING"):
            assert time.time() < deadline, o
            st, _, o = s.request("GET", "/api/orders/%s?wait=2" % o["order_id"], token=tok)
        if o["status"] != "PAID":
            continue  # payment failed, or already shipping

        st, _, b = s.request("POST", "/api/orders/%s/cancel" % o["order_id"], None, tok)
        assert st == 200 or (st == 409 and b["error"]["code"] == "ORDER_ALREADY_SHIPPED"), (st, b)
        cancelled += st == 200
    deadline = time.time() + 20
    for oid, tok in placed[:200]:
        if returned >= 8 or time.time() > deadline:
            break
        st, _, o = s.request("GET", "/api/orders/%s" % oid, token=tok)
        assert st == 200, (st, o)
        if o["status"] != "DELIVERED":
            continue
        st, _, b = s.request("POST", "/api/orders/%s/return" % oid, {}, tok)
        if st == 409 and b["error"]["code"] == "RETURN_WINDOW_CLOSED":
            continue
        assert st == 200 and b["status"] == "RETURN_REQUESTED", (st, b)
        st, _, b = s.request("POST", "/api/orders/%s/return/complete" % oid, {"restock": True}, s.admin)
        assert st == 200 and b["status"] == "RETURNED", (st, b)
        returned += 1
    return cancelled, returned


def main(bindir):
    with System(bindir, sagas=True,
                saga_env={"FLASHSALE_DAY_SECONDS": "1", "FLASHSALE_AUTO_PAY": "1",
                          "FLASHSALE_RETURN_WINDOW_DAYS": "120"},  # returns stay possible on a slow run
                payments_env={"FLASHSALE_PAYMENT_SUCCESS_PERCENT": "70"},
                proc_env={"FLASHSALE_PAYMENT_WINDOW_MS": "3000"}) as s, contextlib.ExitStack() as cleanup:
        sub = subscribe_orders(s, cleanup)
        s.start_projector("postgres")
        s.start_projector("redis")
        products = [s.create_product(stock=150, price=700, name="projected-%d" % i) for i in range(5)]
        rnd = random.Random(3)
        reqs = [("/api/orders", {"product_id": rnd.choice(products), "quantity": 1}, s.member()[1])
                for _ in range(1500)]

        def killer():
            for _ in range(2):
                for name, target in (("projector", "postgres"), ("projector-redis", "redis")):
                    time.sleep(0.8)
                    s.stop_processor(name, signal.SIGKILL)
                    print("  SIGKILL flashsale-projector --target %s" % target)
                    time.sleep(0.3)
                    s.start_projector(target)
        t = threading.Thread(target=killer)
        t.start()
        results = s.burst(reqs, spread_s=4.0)
        t.join()
        assert all(st in (201, 202, 409) for st, _, _ in results), collections.Counter(st for st, _, _ in results)
        s.wait_all_decided()
        products.append(s.create_product(stock=30, price=700, name="cancelled-after-payment"))
        cancelled, returned = cancels_and_returns(s, reqs, results, products[-1])
        print("  %d orders cancelled, %d returned" % (cancelled, returned))
        assert cancelled >= 1 and returned >= 1, (cancelled, returned)
        # expiries: the saga restarted without auto-pay; unpaid orders pass their deadline
        s.stop_processor("orders")
        s.saga_env["FLASHSALE_AUTO_PAY"] = "0"
        s.start_saga("orders")
        for _ in range(3):
            st, _, o = s.order(s.member()[1], products[-1])
            assert st == 201, (st, o)
        time.sleep(6)  # the 3 s payment window, then the saga's timer
        want_products, orders, transitions, payments = converge(s, products)
        n_hist = sum(transitions.values())
        print("postgres: read model equals the log after 2 SIGKILLs: %d products, %d orders "
              "(%s), %d history rows, %d payment rows"
              % (len(want_products), len(orders), dict(collections.Counter(orders.values())),
                 n_hist, sum(payments.values())))
        statuses = collections.Counter(orders.values())
        for must in ("PAYMENT_FAILED", "CANCELLED", "RETURNED", "DELIVERED", "REJECTED", "EXPIRED"):
            assert statuses[must] >= 1, (must, statuses)
        stored = s.sql("SELECT count(*) FROM projector_offsets WHERE projector = 'postgres'")
        assert int(stored[0][0]) >= 3, stored  # offsets live in PostgreSQL
        converge_redis(s, products)
        print("redis: read model equals the log after 2 SIGKILLs (generation %s)" % current_gen(s))
        check_published(sub, orders, transition_statuses(s, orders))
        check_created(s, products, orders)
        audit(s, bindir, len(orders) + len(products))
        check_lists(s, products, orders)
        redis_flushed(s, products, orders)
        redis_rebuild(s, products, orders)
        breaker(s, products, orders)
        evolution(s, bindir, products)


def subscribe_orders(s, cleanup):
    """Every message published on fs:order:<id> from now on, into a file (redis-cli PSUBSCRIBE:
    it flushes each message). Returns (process, path) once subscribed; `cleanup` (an ExitStack)
    kills the process if the test ends before check_published stops it."""
    path = os.path.join(s.logdir, "order-channels.txt")
    env = dict(os.environ, REDISCLI_AUTH=os.environ.get("FLASHSALE_REDIS_PASSWORD", ""))
    with open(path, "wb") as out:
        proc = subprocess.Popen(["redis-cli", "-h", os.environ.get("FLASHSALE_REDIS_HOST", "127.0.0.1"),
                                 "-p", os.environ.get("FLASHSALE_REDIS_PORT", "6379"), "--no-auth-warning",
                                 "--raw", "PSUBSCRIBE", "fs:order:*"], stdout=out, env=env)
    cleanup.callback(lambda: proc.poll() is None and (proc.kill(), proc.wait()))
    deadline = time.time() + 10
    while True:
        with open(path) as f:
            if len(f.read().splitlines()) >= 3:  # psubscribe, the pattern, 1
                break
        assert proc.poll() is None and time.time() < deadline, "redis-cli PSUBSCRIBE did not subscribe"
        time.sleep(0.05)
    return proc, path


def check_published(sub, orders, history):
    """Each order's channel carried one message per write the projector applied, in order: the
    statuses of the order's transitions in the log appear among its messages in that order
    (other writes, the inventory's decision and a line's progress, add messages), and the last
    message names the status the log ends with."""
    proc, path = sub
    time.sleep(1)
    proc.terminate()
    proc.wait(10)
    with open(path) as f:
        lines = f.read().splitlines()
    got = collections.defaultdict(list)
    i = 0
    while i < len(lines):
        if lines[i] == "pmessage" and i + 3 < len(lines):
            channel, m = lines[i + 2], json.loads(lines[i + 3])
            assert channel == "fs:order:" + m["order_id"], (channel, m)
            got[m["order_id"]].append(m["status"])
            i += 4
        else:
            i += 1

    def within(want, seen):  # want is a subsequence of seen
        it = iter(seen)
        return all(any(x == y for y in it) for x in want)
    missing = {o: (history[o], got[o]) for o in orders if not within(history[o], got[o])}
    wrong = {o: (orders[o], got[o]) for o in orders if not got[o] or got[o][-1] != orders[o]}
    assert not missing, "a transition was not published (transitions, messages): %s" % list(missing.items())[:5]
    assert not wrong, "last message is not the final status (status, messages): %s" % list(wrong.items())[:5]
    print("redis pub/sub: %d messages on %d order channels, every transition published in order, the "
          "last naming the final status" % (sum(len(v) for v in got.values()), len(orders)))


def check_created(s, products, orders):
    """Redis's product set names every product, and each order's `created` is the time of its
    decision: the write that makes an order's hash sets it (the decision, or the saga's first
    snapshot, which carries the decision's time), later ones leave it."""
    listed = set(s.redis("ZRANGE", "fs:rm:%s:products" % current_gen(s), 0, -1))
    assert set(products) <= listed, ("products missing from the set", set(products) - listed)
    decided = {}
    for r in s.dump("inventory.events"):
        v = r.get("value") or {}
        if r.get("type") in ("StockReserved", "StockRejected") and v.get("order_id") in orders:
            decided.setdefault(v["order_id"], int(v["occurred_at"]))
    ids = sorted(decided)
    got = s.redis("EVAL", "local g = redis.call('GET', 'fs:rm:gen') local out = {} "
                  "for i, id in ipairs(ARGV) do out[i] = redis.call('HGET', 'fs:rm:' .. g .. ':o:' .. id, "
                  "'created') or '' end return out", 0, *ids)
    bad = {o: (decided[o], c) for o, c in zip(ids, got) if c != str(decided[o])}
    assert len(got) == len(ids) and not bad, ("created (decision, redis)", list(bad.items())[:5])
    print("redis: %d products in the set; %d orders created at their decision's time" % (len(products), len(ids)))


def transition_statuses(s, orders):
    """Each order's statuses, transition by transition, as orders.events has them."""
    out = collections.defaultdict(list)
    for r in s.dump("orders.events"):
        v = r.get("value") or {}
        if r.get("type") == "OrderStatusChanged" and v["order_id"] in orders and v["previous"] != v["status"]:
            out[v["order_id"]].append(v["status"])
    return out


def audit(s, bindir, rows):
    report = os.path.join(s.logdir, "audit-read-models.json")
    out = subprocess.run([os.path.join(bindir, "projections", "flashsale-audit"), "--read-models",
                          "--json", report], capture_output=True, timeout=300)
    print(out.stdout.decode())
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    rep = json.load(open(report))
    for store in ("postgres", "redis"):
        assert rep["read_models"][store]["compared"] and rep["read_models"][store]["differences"] == 0, rep
        assert rep["read_models"][store]["rows"] >= rows, (rows, rep["read_models"])  # and earlier tests


def some_order(s, orders):
    """An order of this test, its member's token and its status."""
    oid = sorted(orders)[0]
    member = s.sql("SELECT member_id FROM orders WHERE order_id = '%s'" % oid)[0][0]
    return oid, mint(os.environ["FLASHSALE_JWT_SECRET"], member, "member"), orders[oid]


def redis_flushed(s, products, orders):
    """Redis loses everything: PostgreSQL answers meanwhile; the projector rebuilds Redis."""
    oid, tok, status = some_order(s, orders)
    st, _, o = s.request("GET", "/api/orders/%s" % oid, token=tok)
    assert st == 200 and o["freshness"]["source"] == "redis" and o["status"] == status, o
    s.stop_processor("projector-redis")  # so that "meanwhile" lasts long enough to look at
    before = current_gen(s)
    s.redis("FLUSHALL")
    st, _, o = s.request("GET", "/api/orders/%s" % oid, token=tok)
    assert st == 200 and o["freshness"]["source"] == "postgres" and o["status"] == status, o
    assert len(o["history"]) >= 2, o
    st, _, p = s.request("GET", "/api/products/%s/stock" % products[0])
    assert st == 200 and p["freshness"]["source"] == "postgres", p
    assert isinstance(p["freshness"]["projection_lag_ms"], int), p
    s.start_projector("redis")
    deadline = time.time() + 60
    while True:
        st, _, o = s.request("GET", "/api/orders/%s" % oid, token=tok)
        if st == 200 and o["freshness"]["source"] == "redis":
            break
        assert time.time() < deadline, "Redis was never rebuilt: %s" % o
        time.sleep(0.5)
    assert o["status"] == status, o
    converge_redis(s, products, timeout=30)
    print("redis flushed (generation %s): answered from postgres meanwhile, rebuilt as generation %s, "
          "equal to the log" % (before, current_gen(s)))


def redis_rebuild(s, products, orders):
    """--rebuild writes a new generation while the old one keeps serving, then switches."""
    oid, tok, status = some_order(s, orders)
    before = current_gen(s)
    s.stop_processor("projector-redis")
    s.start_projector("redis", rebuild=True)
    served, deadline = 0, time.time() + 60
    while current_gen(s) == before:
        st, _, o = s.request("GET", "/api/orders/%s" % oid, token=tok)
        assert st == 200 and o["freshness"]["source"] == "redis" and o["status"] == status, o
        served += 1
        assert time.time() < deadline, "the rebuilt generation was never switched to"
        time.sleep(0.05)
    deadline = time.time() + 30
    while s.redis("EXISTS", "fs:rm:%s:offsets" % before) != ["0"]:
        assert time.time() < deadline, "the old generation was never removed"
        time.sleep(0.5)
    converge_redis(s, products, timeout=30)
    st, _, o = s.request("GET", "/api/orders/%s" % oid, token=tok)
    assert st == 200 and o["freshness"]["source"] == "redis" and o["status"] == status, o
    print("redis --rebuild: generation %s served %d reads while %s was built; switched, old keys "
          "removed, equal to the log" % (before, served, current_gen(s)))


def metric(s, name):
    text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % s.port, timeout=10).read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError("no metric " + name)


def breaker(s, products, orders):
    """Redis hangs (CLIENT PAUSE): a few reads pay the timeout, then the breaker skips Redis."""
    oid, tok, status = some_order(s, orders)
    fails0 = metric(s, "flashsale_redis_read_failures_total")
    s.redis("CLIENT", "PAUSE", "6000", "ALL")
    n = 12
    sources = []
    for _ in range(n):
        st, _, o = s.request("GET", "/api/orders/%s" % oid, token=tok)
        assert st == 200 and o["status"] == status, (st, o)
        sources.append(o["freshness"]["source"])
    assert metric(s, "flashsale_redis_breaker_open") == 1
    fails = metric(s, "flashsale_redis_read_failures_total") - fails0
    # the API's threads each fail once at most before the breaker opens; then no more tries
    assert sources.count("postgres") == n and fails < n, (sources, fails)
    s.redis("CLIENT", "UNPAUSE")
    deadline = time.time() + 20
    while True:  # half open: one probe succeeds and Redis answers again
        st, _, o = s.request("GET", "/api/orders/%s" % oid, token=tok)
        if o["freshness"]["source"] == "redis":
            break
        assert time.time() < deadline, o
        time.sleep(0.5)
    print("breaker: Redis paused: %d reads from postgres with %d Redis failures, then back to redis"
          % (n, int(fails)))


def evolution(s, bindir, products):
    """A projector built with ProductDefined + a defaulted field reads the older events."""
    nxt = os.path.join(bindir, "tests", "flashsale-projector-next")
    old = subprocess.run([os.path.join(bindir, "projections", "flashsale-projector"), "--schemas"],
                         capture_output=True, check=True).stdout.decode().split("\n")
    new = subprocess.run([nxt, "--schemas"], capture_output=True, check=True).stdout.decode().split("\n")
    fp = lambda lines, role: [l.split()[1] for l in lines
                              if l.startswith("flashsale.inventory.ProductDefined ") and l.endswith(role)]
    assert fp(old, "reader") == fp(new, "writer") and fp(new, "reader") != fp(old, "reader"), (old, new)
    s.stop_processor("projector")
    log = os.path.join(s.logdir, "test-projector-next.log")
    s.procs["projector"] = s._spawn([nxt, "--target", "postgres", "--rebuild"], dict(os.environ),
                                    "test-projector-next.log")
    deadline = time.time() + 120
    while "caught up with the log" not in open(log).read():  # emptied, then replayed
        assert time.time() < deadline, open(log).read()[-2000:]
        time.sleep(0.5)
    want = converge(s, products)
    dead = [r for r in s.dump("deadletter") if r["headers"].get("dlq-topic") in
            ("inventory.events", "orders.events", "payments.events")]
    assert not dead, dead[:3]
    print("evolution: projector with ProductDefined %s (reader) rebuilt postgres from %s events: "
          "%d products, %d orders equal to the log" % (fp(new, "reader")[0], fp(old, "reader")[0],
                                                        len(want[0]), len(want[1])))


def check_lists(s, products, orders):
    """GET /api/orders (own, newest first, paged) and GET /api/products over the read model."""
    buyer, tok = s.member()
    fresh = s.create_product(stock=10, price=100, name="listed")  # the burst may have sold out the others
    products = products + [fresh]
    mine = []
    for _ in range(3):
        st, _, body = s.order(tok, fresh)
        assert st == 201, (st, body)
        mine.append(body["order_id"])
    deadline = time.time() + 30
    while True:
        st, _, page1 = s.request("GET", "/api/orders?limit=2", token=tok)
        assert st == 200, (st, page1)
        if len(page1["items"]) == 2 and page1["items"][0]["order_id"] == mine[-1]:
            break
        assert time.time() < deadline, page1
        time.sleep(0.5)
    assert [o["order_id"] for o in page1["items"]] == [mine[2], mine[1]], page1
    st, _, page2 = s.request("GET", "/api/orders?limit=2&cursor=%s" % page1["next_cursor"], token=tok)
    assert st == 200 and [o["order_id"] for o in page2["items"]] == [mine[0]], page2
    assert page2["next_cursor"] is None
    # nobody else's orders, and no anonymous listing
    _, other = s.member()
    st, _, none = s.request("GET", "/api/orders", token=other)
    assert st == 200 and none["items"] == [], none
    st, _, err = s.request("GET", "/api/orders")
    assert st == 401 and err["error"]["code"] == "UNAUTHENTICATED"
    for bad in ("limit=0", "limit=101", "limit=x", "cursor=not-a-cursor"):
        st, _, err = s.request("GET", "/api/orders?" + bad, token=tok)
        assert st == 400 and err["error"]["code"] == "INVALID_PARAMETER", (bad, st, err)
    # the catalogue, paged to the end, holds this test's products with the log's counters
    seen, cursor = {}, None
    while True:
        st, _, pg = s.request("GET", "/api/products?limit=100" + ("&cursor=" + cursor if cursor else ""))
        assert st == 200, pg
        seen.update({p["product_id"]: p for p in pg["items"]})
        cursor = pg["next_cursor"]
        if not cursor:
            break
    want, _, _, _ = expected(s, products)
    for p in products:
        assert p in seen, p
        st, _, live = s.request("GET", "/api/products/%s/stock" % p)
        assert seen[p]["stock"] == live["stock"], (seen[p], live)
    print("lists: own orders newest first across pages, nobody else's; catalogue of %d products" % len(seen))


if __name__ == "__main__":
    main(sys.argv[1])
    print("projector: PASS")
