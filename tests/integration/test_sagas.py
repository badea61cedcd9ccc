#!/usr/bin/python3
"""Order sagas over HTTP on the real broker: flashsale-api, flashsale-inventory,
flashsale-orders and flashsale-payments, with a "day" of one second.

    test_sagas.py BUILD_DIR SCENARIO
    SCENARIO: lifecycle | payment_failure | expiry | cancel | multi_item | timer_while_down | crash
              | forget

Each scenario ends by checking the log: inventory re-derived with the tests' own rules (no
oversell, conservation), and every reservation committed or released at most once."""
import collections
import json
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fsharness import System, derive  # noqa: E402
from test_core import expect  # noqa: E402

DAY = {"FLASHSALE_DAY_SECONDS": "1", "FLASHSALE_RETURN_WINDOW_DAYS": "3"}


def wait_status(s, token, oid, want, timeout=20):
    """Long-polls GET /api/orders/{id}?wait= until the status is in `want`."""
    want = (want,) if isinstance(want, str) else want
    deadline = time.time() + timeout
    while True:
        st, _, o = s.request("GET", "/api/orders/%s?wait=2" % oid, token=token)
        assert st == 200, (st, o)
        if o["status"] in want:
            return o
        assert time.time() < deadline, "order %s stuck in %s, wanted %s" % (oid, o["status"], want)


def wait_until(cond, what, timeout=10):
    """Polls cond() until true; fails naming what never happened."""
    deadline = time.time() + timeout
    while not cond():
        assert time.time() < deadline, what
        time.sleep(0.2)


def stock(s, pid):
    st, _, b = s.request("GET", "/api/products/%s/stock" % pid)
    assert st == 200
    return b


def check_reservations(s):
    """Every reservation line is committed or released at most once (in the end: once)."""
    events = s.dump("inventory.events")
    _, _, _, problems = derive(events)
    assert not problems, problems[:5]
    outcomes = collections.Counter()
    reserved = set()
    for r in events:
        v = r.get("value") or {}
        key = (v.get("order_id"), v.get("item_index"))
        if r.get("type") == "StockReserved":
            reserved.add(key)
        elif r.get("type") in ("ReservationCommitted", "ReservationReleased"):
            outcomes[key] += 1
    doubled = [k for k, n in outcomes.items() if n > 1]
    assert not doubled, "reservations settled twice: %s" % doubled[:5]
    return reserved, outcomes


def scenario_lifecycle(bindir):
    with System(bindir, sagas=True, saga_env=DAY) as s:
        pid = s.create_product(stock=5, price=2500, name="lifecycle")
        _, tok = s.member()
        o = expect(s.order(tok, pid, 2), 201)
        oid = o["order_id"]
        wait_status(s, tok, oid, "RESERVED")
        st, _, paid = s.request("POST", "/api/orders/%s/payment" % oid, {"method": "CARD"}, tok)
        assert st == 200 and paid["status"] == "PAID" and paid["amount"] == 5000, (st, paid)
        assert stock(s, pid)["sold"] == 2 or wait_status(s, tok, oid, ("PAID", "SHIPPING", "DELIVERED"))
        expect(s.request("POST", "/api/orders/%s/payment" % oid, None, tok), 409, "ORDER_ALREADY_PAID")
        o = wait_status(s, tok, oid, "SHIPPING")  # D+1
        expect(s.request("POST", "/api/orders/%s/cancel" % oid, None, tok), 409, "ORDER_ALREADY_SHIPPED")
        o = wait_status(s, tok, oid, "DELIVERED")  # D+2
        expect(s.request("POST", "/api/orders/%s/cancel" % oid, None, tok), 409, "ORDER_ALREADY_SHIPPED")
        statuses = [h["status"] for h in o["history"]]
        assert statuses[-5:] == ["RESERVED", "PAYING", "PAID", "SHIPPING", "DELIVERED"], statuses
        # another member cannot act on it; only an admin completes a return
        expect(s.request("POST", "/api/orders/%s/return" % oid, None, s.member()[1]), 404, "ORDER_NOT_FOUND")
        st, _, r = s.request("POST", "/api/orders/%s/return" % oid, {}, tok)
        assert st == 200 and r["status"] == "RETURN_REQUESTED", (st, r)
        expect(s.request("POST", "/api/orders/%s/return/complete" % oid, None, tok), 403, "FORBIDDEN")
        before = stock(s, pid)
        st, _, r = s.request("POST", "/api/orders/%s/return/complete" % oid, {"restock": True}, s.admin)
        assert st == 200 and r["status"] == "RETURNED", (st, r)
        wait_until(lambda: stock(s, pid)["available"] == before["available"] + 2,
                   "returned units never restocked")
        refunds = [p for p in s.dump("payments.events")
                   if p.get("type") == "RefundSucceeded" and p["value"]["order_id"] == oid]
        assert len(refunds) == 1, refunds
        kinds = [n["value"]["kind"] for n in s.dump("notifications")  # (the shared topic also holds
                 if n.get("value") and n["value"]["params"].get("order_id") == oid]  # malformed records)
        for k in ("ORDER_RESERVED", "ORDER_PAID", "ORDER_SHIPPED", "ORDER_DELIVERED", "REFUNDED"):
            assert k in kinds, (k, kinds)
        # a second order, delivered, then the return window (3 days = 3 s) closes
        o2 = expect(s.order(tok, pid, 1), 201)["order_id"]
        expect(s.request("POST", "/api/orders/%s/payment" % o2, {}, tok), 200)
        wait_status(s, tok, o2, "DELIVERED")
        time.sleep(3.5)
        expect(s.request("POST", "/api/orders/%s/return" % o2, {}, tok), 409, "RETURN_WINDOW_CLOSED")
        check_reservations(s)
        print("lifecycle: RESERVED -> PAYING -> PAID -> SHIPPING (D+1) -> DELIVERED (D+2) -> "
              "RETURN_REQUESTED -> RETURNED with refund and restock; notifications %s" % sorted(set(kinds)))


def scenario_payment_failure(bindir):
    with System(bindir, sagas=True, saga_env=DAY,
                payments_env={"FLASHSALE_PAYMENT_SUCCESS_PERCENT": "0"}) as s:
        pid = s.create_product(stock=1, name="declined")
        _, tok = s.member()
        oid = expect(s.order(tok, pid), 201)["order_id"]
        expect(s.order(s.member()[1], pid), 409, "SOLD_OUT")
        st, _, body = s.request("POST", "/api/orders/%s/payment" % oid, {}, tok)
        assert st == 409 and body["error"]["code"] == "PAYMENT_FAILED", (st, body)
        o = wait_status(s, tok, oid, "PAYMENT_FAILED")
        attempts = [p for p in s.dump("payments.events") if p["value"]["order_id"] == oid]
        assert 1 <= len(attempts) <= 3, attempts  # bounded retries of retriable declines
        wait_until(lambda: stock(s, pid)["available"] == 1,  # compensation freed the unit
                   "the declined order's unit was never freed")
        expect(s.order(s.member()[1], pid), 201)  # ... and the next buyer takes it
        expect(s.request("POST", "/api/orders/%s/cancel" % oid, None, tok), 409, "ORDER_CLOSED")
        reserved, outcomes = check_reservations(s)
        assert outcomes[(oid, 0)] == 1
        print("payment failure: %d attempt(s) declined, reservation released, next buyer served; status %s"
              % (len(attempts), o["status"]))


def scenario_expiry(bindir):
    with System(bindir, sagas=True, saga_env=DAY,
                proc_env={"FLASHSALE_PAYMENT_WINDOW_MS": "2000"}) as s:
        pid = s.create_product(stock=1, name="expiry")
        _, tok = s.member()
        o = expect(s.order(tok, pid), 201)
        o = wait_status(s, tok, o["order_id"], "EXPIRED", timeout=15)
        assert o["reason"] == "DEADLINE_PASSED", o
        wait_until(lambda: stock(s, pid)["available"] == 1, "the expired unit was never freed")
        expect(s.request("POST", "/api/orders/%s/payment" % o["order_id"], {}, tok), 409, "ORDER_NOT_RESERVED")
        check_reservations(s)
        print("expiry: unpaid reservation released at its deadline; the unit is on sale again")


def scenario_cancel(bindir):
    with System(bindir, sagas=True, saga_env={"FLASHSALE_DAY_SECONDS": "30"}) as s:
        pid = s.create_product(stock=4, price=1000, name="cancel")
        _, tok = s.member()
        a = expect(s.order(tok, pid), 201)["order_id"]
        wait_status(s, tok, a, "RESERVED")
        st, _, o = s.request("POST", "/api/orders/%s/cancel" % a, None, tok)
        assert st == 200 and o["status"] == "CANCELLED", (st, o)
        b = expect(s.order(tok, pid), 201)["order_id"]
        expect(s.request("POST", "/api/orders/%s/payment" % b, {}, tok), 200)
        st, _, o = s.request("POST", "/api/orders/%s/cancel" % b, None, tok)
        assert st == 200 and o["status"] == "CANCELLED", (st, o)
        expect(s.request("POST", "/api/orders/%s/cancel" % b, None, tok), 409, "ORDER_CLOSED")
        deadline = time.time() + 10
        while True:
            st_ = stock(s, pid)
            refunded = [p for p in s.dump("payments.events")
                        if p.get("type") == "RefundSucceeded" and p["value"]["order_id"] == b]
            # the paid unit comes back by restock: stock 5, 4 on sale, the sale stays counted
            if (st_["stock"], st_["available"], st_["sold"]) == (5, 4, 1) and refunded:
                break
            assert time.time() < deadline, (st_, refunded)
            time.sleep(0.3)
        check_reservations(s)
        print("cancel: reserved -> released; paid -> restocked and refunded; cancelled twice -> 409")


def scenario_multi_item(bindir):
    with System(bindir, sagas=True, saga_env=DAY) as s:
        p1 = s.create_product(stock=3, price=100, name="m1")
        p2 = s.create_product(stock=3, price=200, name="m2")
        gone = s.create_product(stock=1, price=300, name="m3")
        expect(s.order(s.member()[1], gone), 201)  # sold out now
        _, tok = s.member()
        st, _, body = s.request("POST", "/api/orders", {"items": [
            {"product_id": p1, "quantity": 1}, {"product_id": p2, "quantity": 2},
            {"product_id": gone, "quantity": 1}]}, tok)
        assert st == 409 and body["error"]["code"] == "CHECKOUT_REJECTED", (st, body)
        assert "ITEM_2_SOLD_OUT" in body["error"]["message"], body
        failed = body["error"]["order_id"]
        wait_until(lambda: (stock(s, p1)["available"], stock(s, p2)["available"]) == (3, 3),
                   "lines of a rejected checkout still reserved")
        st, _, o = s.request("POST", "/api/orders", {"items": [
            {"product_id": p1, "quantity": 1}, {"product_id": p2, "quantity": 1}]}, tok)
        assert st == 201 and o["status"] in ("RESERVED", "PAYING"), (st, o)
        assert o["amount"] == 300, o
        st, _, paid = s.request("POST", "/api/orders/%s/payment" % o["order_id"], {}, tok)
        assert st == 200 and paid["status"] == "PAID", paid
        reserved, outcomes = check_reservations(s)
        for key in [k for k in reserved if k[0] == failed]:
            assert outcomes[key] == 1, "line %s of the rejected checkout not released" % (key,)
        print("multi-item: one sold-out line rejects the checkout and releases the others; "
              "a full checkout reserves and pays all lines")


def scenario_multi_return(bindir):
    """A delivered two-line order is returned and restocked: each line's units are given back
    and the member no longer holds either product, so a per-member limit of 1 lets them buy
    each again (before, the second line's restock was applied to line 0, and the member kept
    "holding" the second product: LIMIT_EXCEEDED on the next purchase)."""
    with System(bindir, sagas=True, saga_env=DAY) as s:
        p1 = s.create_product(stock=3, price=100, limit=1, name="r1")
        p2 = s.create_product(stock=3, price=200, limit=1, name="r2")
        _, tok = s.member()
        st, _, o = s.request("POST", "/api/orders", {"items": [
            {"product_id": p1, "quantity": 1}, {"product_id": p2, "quantity": 1}]}, tok)
        assert st == 201, (st, o)
        oid = o["order_id"]
        expect(s.request("POST", "/api/orders/%s/payment" % oid, {}, tok), 200)
        wait_status(s, tok, oid, "DELIVERED")
        expect(s.request("POST", "/api/orders/%s/return" % oid, {}, tok), 200)
        st, _, r = s.request("POST", "/api/orders/%s/return/complete" % oid, {"restock": True}, s.admin)
        assert st == 200 and r["status"] == "RETURNED", (st, r)
        wait_until(lambda: (stock(s, p1)["available"], stock(s, p2)["available"]) == (3, 3),
                   "returned lines never restocked")
        for pid in (p1, p2):
            st, _, again = s.order(tok, pid)
            assert st == 201, ("a returned line still counts against the member's limit", pid, st, again)
        union = lambda x: x.get("string") if isinstance(x, dict) else x  # Avro JSON: {"string": ...}
        restocks = [e["value"] for e in s.dump("inventory.events")
                    if e.get("type") == "ProductRestocked" and union(e["value"].get("order_id")) == oid]
        assert sorted((e["product_id"] == p2, e["item_index"]) for e in restocks) == [(False, 0), (True, 1)], restocks
        print("multi-item return: both lines restocked under their own index; the member buys each again")


def scenario_timer_while_down(bindir):
    with System(bindir, sagas=True, saga_env=DAY,
                proc_env={"FLASHSALE_PAYMENT_WINDOW_MS": "3000"}) as s:
        pid = s.create_product(stock=2, name="timer")
        _, tok = s.member()
        oid = expect(s.order(tok, pid), 201)["order_id"]
        wait_status(s, tok, oid, "RESERVED")
        s.stop_processor("orders", signal.SIGTERM)
        time.sleep(4.5)  # the payment deadline passes while the saga is down
        st, _, o = s.request("GET", "/api/orders/%s" % oid, token=tok)
        assert o["status"] == "RESERVED", o
        s.start_saga("orders")
        o = wait_status(s, tok, oid, "EXPIRED", timeout=20)
        time.sleep(2)
        expired = [r for r in s.dump("orders.events")  # the transition, not line updates
                   if r.get("type") == "OrderStatusChanged" and r["value"]["order_id"] == oid
                   and r["value"]["status"] == "EXPIRED" and r["value"]["previous"] == "RESERVED"]
        assert len(expired) == 1, "the timer fired %d times" % len(expired)
        check_reservations(s)
        print("timer while down: the deadline passed during the outage; fired exactly once on restart")


def scenario_crash(bindir):
    with System(bindir, sagas=True,
                saga_env={"FLASHSALE_DAY_SECONDS": "1", "FLASHSALE_AUTO_PAY": "1"},
                payments_env={"FLASHSALE_PAYMENT_SUCCESS_PERCENT": "70"},
                proc_env={"FLASHSALE_PAYMENT_WINDOW_MS": "4000"},
                api_env={"FLASHSALE_DECISION_WAIT_MS": "1500"}) as s:
        products = [s.create_product(stock=300, price=1000, name="saga-crash-%d" % i) for i in range(10)]

        def killer():
            for which in ("orders", "payments", "orders"):
                time.sleep(2.0)
                s.stop_processor(which, signal.SIGKILL)
                print("  SIGKILL flashsale-%s" % which)
                time.sleep(0.5)
                s.start_saga(which)
        import random
        rnd = random.Random(7)
        reqs = [("/api/orders", {"product_id": rnd.choice(products), "quantity": 1}, s.member()[1])
                for _ in range(5000)]
        t = threading.Thread(target=killer)
        t.start()
        results = s.burst(reqs, spread_s=6.0)
        t.join()
        statuses = collections.Counter(st for st, _, _ in results)
        assert statuses[0] == 0 and statuses[500] == 0, statuses
        s.wait_all_decided()
        terminal = {"DELIVERED", "PAYMENT_FAILED", "EXPIRED", "REJECTED"}
        deadline = time.time() + 90
        while True:
            last = {}
            for r in s.dump("orders.events"):
                if r.get("type") == "OrderStatusChanged":
                    last[r["value"]["order_id"]] = r["value"]["status"]
            mine = set(products)  # other scenarios' orders share the log: judge ours
            reserved_ids = {r["value"]["order_id"] for r in s.dump("inventory.events")
                            if r.get("type") == "StockReserved" and r["value"]["product_id"] in mine}
            pending = [o for o in reserved_ids if last.get(o) not in terminal]
            if not pending:
                break
            assert time.time() < deadline, "%d orders not terminal, e.g. %s" % (
                len(pending), [(o, last.get(o)) for o in pending[:5]])
            time.sleep(2)
        reserved, outcomes = check_reservations(s)
        unsettled = [k for k in reserved if k[0] in reserved_ids and outcomes[k] != 1]
        assert not unsettled, "reservations never committed or released: %s" % unsettled[:5]
        products_state, _, _, _ = derive(s.dump("inventory.events"))
        for p in products:
            st_ = products_state[p]
            assert st_["reserved"] == 0 and st_["available"] + st_["sold"] == st_["stock"] == 300, st_
        final = collections.Counter(last[o] for o in reserved_ids)
        print("saga crash: %d orders (HTTP %s); orders and payments SIGKILLed and restarted; "
              "every reserved order terminal %s; every reservation settled exactly once"
              % (len(results), dict(statuses), dict(final)))


def log_lines(path, offset, msg):
    """The JSON log lines with message msg written to path after byte offset."""
    out = []
    with open(path, "rb") as f:
        f.seek(offset)
        for line in f:
            try:
                j = json.loads(line)
            except ValueError:
                continue
            if j.get("msg") == msg:
                out.append(j)
    return out


def scenario_forget(bindir):
    """Ended orders leave the sagas' memory FLASHSALE_SAGA_ENDED_MEMORY_MS after their end (and
    payment results FLASHSALE_PAYMENT_RESULT_MEMORY_MS after their request), by the clock of the
    inputs read: a sale goes on in the background, as it would. Live orders stay; a restart's
    rebuild leaves out what may be forgotten; a command on a forgotten order gets the answer
    the saga gave while it held it."""
    memory = {"FLASHSALE_LOG_LEVEL": "debug"}
    with System(bindir, sagas=True,
                saga_env=dict(DAY, FLASHSALE_RETURN_WINDOW_DAYS="1", FLASHSALE_SAGA_ENDED_MEMORY_MS="3000",
                              **memory),
                payments_env=dict(FLASHSALE_PAYMENT_RESULT_MEMORY_MS="3000", **memory)) as s:
        orders_log = os.path.join(s.logdir, "test-orders.log")
        payments_log = os.path.join(s.logdir, "test-payments.log")
        o0, p0 = os.path.getsize(orders_log), os.path.getsize(payments_log)
        pid = s.create_product(stock=10, price=1000, name="forget")
        background = s.create_product(stock=100000, price=100, name="forget-background")
        stop = threading.Event()

        def sale():  # inputs keep coming: an order and its payment every 0.3 s
            while not stop.is_set():
                _, t = s.member()
                st, _, b = s.order(t, background)
                if st == 201:
                    s.request("POST", "/api/orders/%s/payment" % b["order_id"], {}, t)
                stop.wait(0.3)
        bg = threading.Thread(target=sale, daemon=True)
        bg.start()
        try:
            _, tok = s.member()
            cancelled = expect(s.order(tok, pid), 201)["order_id"]
            wait_status(s, tok, cancelled, "RESERVED")
            st, _, o = s.request("POST", "/api/orders/%s/cancel" % cancelled, None, tok)
            assert st == 200 and o["status"] == "CANCELLED", (st, o)
            delivered = expect(s.order(tok, pid), 201)["order_id"]
            expect(s.request("POST", "/api/orders/%s/payment" % delivered, {}, tok), 200)
            wait_status(s, tok, delivered, "DELIVERED")  # D+2 with a day of one second
            expect(s.request("POST", "/api/orders/%s/cancel" % delivered, None, tok), 409,
                   "ORDER_ALREADY_SHIPPED")  # held: the saga's own answer
            live = expect(s.order(tok, pid), 201)["order_id"]
            wait_status(s, tok, live, "RESERVED")

            def forgotten():
                return {j["order_id"] for j in log_lines(orders_log, o0, "order forgotten")}
            # CANCELLED: its end + 3 s; DELIVERED: delivery + a return window of 1 s + 3 s
            wait_until(lambda: {cancelled, delivered} <= forgotten(),
                       "ended orders never forgotten: %s" % (forgotten() & {cancelled, delivered}), timeout=30)
            assert live not in forgotten(), "a live order was forgotten"
            wait_until(lambda: any(j["key"] == delivered + "#1"
                                   for j in log_lines(payments_log, p0, "payment result forgotten")),
                       "the payment result was never forgotten", timeout=30)
            # the saga no longer knows them; the API answers what the saga said while it did
            expect(s.request("POST", "/api/orders/%s/cancel" % delivered, None, tok), 409,
                   "ORDER_ALREADY_SHIPPED")
            expect(s.request("POST", "/api/orders/%s/return" % delivered, None, tok), 409,
                   "RETURN_WINDOW_CLOSED")
            expect(s.request("POST", "/api/orders/%s/payment" % cancelled, {}, tok), 409,
                   "ORDER_NOT_RESERVED")
            # the live order is whole: it pays, ships and is delivered
            expect(s.request("POST", "/api/orders/%s/payment" % live, {}, tok), 200)
            # a restart reads the whole log again but does not hold what it may forget
            o1, p1 = os.path.getsize(orders_log), os.path.getsize(payments_log)
            for which in ("orders", "payments"):
                s.stop_processor(which, signal.SIGTERM)
                s.start_saga(which)
            wait_until(lambda: log_lines(orders_log, o1, "orders rebuilt"), "orders never rebuilt", 30)
            wait_until(lambda: log_lines(payments_log, p1, "results rebuilt"), "payments never rebuilt", 30)
            rebuilt = log_lines(orders_log, o1, "orders rebuilt")[-1]
            assert rebuilt["left_out"] >= 2 and rebuilt["held"] < rebuilt["snapshots"], rebuilt
            prebuilt = log_lines(payments_log, p1, "results rebuilt")[-1]
            assert prebuilt["left_out"] >= 1 and prebuilt["held"] < prebuilt["events"], prebuilt
            wait_status(s, tok, live, "DELIVERED")  # its timers were re-armed from the rebuild
            wait_until(lambda: live in forgotten(), "the delivered order was never forgotten", timeout=30)
        finally:
            stop.set()
            bg.join(timeout=30)
        check_reservations(s)
        print("forget: a cancelled and a delivered order forgotten, commands on them answered as "
              "before; the live one kept, paid, delivered after a restart, then forgotten; rebuilt: "
              "orders %s, payments %s" % (rebuilt, prebuilt))


def scenario_late_answer(bindir):
    """A purchase whose answer is written after the saga's snapshot of its order was applied
    (FLASHSALE_TEST_LATE_ANSWER_MS: the waiter's result is read 1.5 s late): the buyer still
    gets the inventory's decision, 201, and orders.answers records it under the order's id.
    (The snapshot once replaced the decision: a reserved buyer was answered 409 SOLD_OUT and
    the answer recorded with no order id.)"""
    with System(bindir, sagas=True, saga_env=DAY, api_env={"FLASHSALE_TEST_LATE_ANSWER_MS": "1500"}) as s:
        pid = s.create_product(stock=1, name="late-answer")
        buyer, tok = s.member()
        st, _, body = s.order(tok, pid)
        assert st == 201, (st, body)
        oid = body["order_id"]
        expect(s.order(s.member()[1], pid), 409, "SOLD_OUT")
        def answers_of():
            return [r for r in s.dump("orders.answers")
                    if r.get("error") or (r.get("value") or {}).get("product_id") in (pid, "")]
        wait_until(lambda: len(answers_of()) >= 2, "the two answers were never recorded")
        answers = answers_of()
        mine = [r["value"] for r in answers if r.get("value", {}).get("order_id") == oid]
        assert len(mine) == 1 and mine[0]["status"] == "RESERVED" and mine[0]["http_status"] == 201, answers
        snaps = [r for r in s.dump("orders.events")
                 if r.get("type") == "OrderStatusChanged" and r["value"]["order_id"] == oid]
        # the case under test happened: the saga's snapshot was in the log before the answer
        assert snaps and snaps[0]["timestamp"] < mine[0]["answered_at"], (snaps[:1], mine)
        assert all(r.get("value", {}).get("order_id") for r in answers), answers
        check_reservations(s)
        print("late answer: the saga's snapshot %d ms before the answer; the buyer got 201 RESERVED, "
              "recorded under %s" % (mine[0]["answered_at"] - snaps[0]["timestamp"], oid))


if __name__ == "__main__":
    bindir, name = sys.argv[1], sys.argv[2]
    globals()["scenario_" + name](bindir)
    print("sagas %s: PASS" % name)
