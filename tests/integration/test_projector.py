#!/usr/bin/python3
"""The PostgreSQL read model (flashsale-projector --target postgres) over the real log:
after orders with payments, failures and expiries, its products, orders, history and
payments equal what the log says (re-derived here, independently of the projector); and
with the projector SIGKILLed twice mid-stream and restarted, no event is applied twice and
none is skipped. Usage: test_projector.py BUILD_DIR"""
import collections
import os
import random
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fsharness import System, derive  # noqa: E402


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


def main(bindir):
    with System(bindir, sagas=True,
                saga_env={"FLASHSALE_DAY_SECONDS": "1", "FLASHSALE_AUTO_PAY": "1"},
                payments_env={"FLASHSALE_PAYMENT_SUCCESS_PERCENT": "70"},
                proc_env={"FLASHSALE_PAYMENT_WINDOW_MS": "3000"}) as s:
        s.start_projector()
        products = [s.create_product(stock=150, price=700, name="projected-%d" % i) for i in range(5)]
        rnd = random.Random(3)
        reqs = [("/api/orders", {"product_id": rnd.choice(products), "quantity": 1}, s.member()[1])
                for _ in range(1500)]

        def killer():
            for _ in range(2):
                time.sleep(1.5)
                s.stop_processor("projector", signal.SIGKILL)
                print("  SIGKILL flashsale-projector")
                time.sleep(0.3)
                s.start_projector()
        t = threading.Thread(target=killer)
        t.start()
        results = s.burst(reqs, spread_s=4.0)
        t.join()
        assert all(st in (201, 202, 409) for st, _, _ in results), collections.Counter(st for st, _, _ in results)
        s.wait_all_decided()
        time.sleep(3)  # let payments, shipping and delivery settle
        want_products, orders, transitions, payments = converge(s, products)
        n_hist = sum(transitions.values())
        print("projector: read model equals the log after 2 SIGKILLs: %d products, %d orders "
              "(%s), %d history rows, %d payment rows"
              % (len(want_products), len(orders), dict(collections.Counter(orders.values())),
                 n_hist, sum(payments.values())))
        stored = s.sql("SELECT count(*) FROM projector_offsets WHERE projector = 'postgres'")
        assert int(stored[0][0]) >= 3, stored  # offsets live in PostgreSQL
        check_lists(s, products, orders)


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
