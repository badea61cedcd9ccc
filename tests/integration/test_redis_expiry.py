#!/usr/bin/env python3
"""Ended orders leave Redis; PostgreSQL keeps them.

With FLASHSALE_REDIS_ENDED_TTL_MS=4000 for the projectors and the audit: an order the
inventory refused is in Redis with a deadline at once and gone from Redis a few seconds
later, while a live (reserved) order has no deadline; PostgreSQL still holds the refused
one, GET /api/orders/{id} still answers it (from PostgreSQL), and flashsale-audit
--read-models passes, counting it among the expired.

A delivered order (the sagas run with a day of 2 s and a return window of 2 days) ends when
its return window closes: it has no deadline while DELIVERED, the saga's closing snapshot
(reason RETURN_WINDOW_CLOSED) gives it one, and it leaves Redis then, while PostgreSQL and
GET keep it DELIVERED. An order delivered at the same time whose return was requested in
the window stays, with no deadline, past that time.

    test_redis_expiry.py BUILD_DIR
"""
import json
import os
import subprocess
import sys
import time

TTL_MS = 4000
DAY_MS = 2000     # the sagas' day: shipped after one, delivered after two
WINDOW_MS = 4000  # the return window: two such days
os.environ["FLASHSALE_REDIS_ENDED_TTL_MS"] = str(TTL_MS)  # projectors and audit inherit it
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fsharness import System  # noqa: E402


def order_key(s, oid):
    return "fs:rm:%s:o:%s" % (s.redis("GET", "fs:rm:gen")[0], oid)


def wait_for(what, cond, timeout=30):
    deadline = time.time() + timeout
    while not cond():
        assert time.time() < deadline, "timed out waiting for " + what
        time.sleep(0.1)


def main(bindir):
    with System(bindir, sagas=True,
                saga_env={"FLASHSALE_DAY_SECONDS": str(DAY_MS // 1000),
                          "FLASHSALE_RETURN_WINDOW_DAYS": str(WINDOW_MS // DAY_MS)}) as s:
        s.start_projector("postgres")
        s.start_projector("redis")
        pid = s.create_product(stock=4, name="expiry")
        a, a_token = s.member()
        b, b_token = s.member()
        st, _, kept = s.order(a_token, pid, 1)
        assert st == 201 and kept["status"] == "RESERVED", (st, kept)
        # one unit left, whatever the view has seen yet: the processor refuses two (never the
        # view's sold-out fast path, which makes no order)
        st, _, refused = s.order(b_token, pid, 4)
        assert st == 409 and refused["error"]["code"] == "INSUFFICIENT_STOCK", (st, refused)
        live, ended = kept["order_id"], refused["error"]["order_id"]
        # two more orders, paid: shipped after a day, delivered after two
        paid = []
        for _ in range(2):
            st, _, o = s.order(a_token, pid, 1)
            assert st == 201, (st, o)
            paid.append(o["order_id"])
            st, _, body = s.request("POST", "/api/orders/%s/payment" % o["order_id"], {}, a_token)
            assert st == 200 and body["status"] == "PAID", (st, body)
        delivered, returning = paid

        wait_for("both orders in Redis",
                 lambda: s.redis("HGET", order_key(s, ended), "status") == ["REJECTED"] and
                 s.redis("HGET", order_key(s, live), "status") == ["RESERVED"])
        pttl_ended = int(s.redis("PTTL", order_key(s, ended))[0])
        pttl_live = int(s.redis("PTTL", order_key(s, live))[0])
        assert 0 < pttl_ended <= TTL_MS, pttl_ended
        assert pttl_live == -1, pttl_live  # a live order never expires
        t0 = time.time()
        wait_for("the ended order to leave Redis",
                 lambda: s.redis("EXISTS", order_key(s, ended)) == ["0"], timeout=TTL_MS / 1000 + 10)
        print("redis expiry: ended order %s left Redis after %.1f s (PTTL was %d ms); live order kept"
              % (ended, time.time() - t0, pttl_ended))
        assert s.redis("EXISTS", order_key(s, live)) == ["1"]

        assert s.sql("SELECT status FROM orders WHERE order_id = '%s'" % ended) == [["REJECTED"]]
        st, _, body = s.request("GET", "/api/orders/" + ended, token=b_token)
        assert st == 200 and body["status"] == "REJECTED", (st, body)
        assert body["freshness"]["source"] == "postgres", body["freshness"]

        # delivered: live (no deadline) until the window closes; a return requested in it
        wait_for("the paid orders to be DELIVERED in Redis",
                 lambda: all(s.redis("HGET", order_key(s, o), "status") == ["DELIVERED"] for o in paid),
                 timeout=3 * DAY_MS / 1000 + 20)
        assert int(s.redis("PTTL", order_key(s, delivered))[0]) == -1
        st, _, body = s.request("POST", "/api/orders/%s/return" % returning, {}, a_token)
        assert st == 200 and body["status"] == "RETURN_REQUESTED", (st, body)
        # the close: the saga's closing snapshot ends the delivered order
        wait_for("the delivered order's closing snapshot in Redis",
                 lambda: s.redis("HGET", order_key(s, delivered), "reason") == ["RETURN_WINDOW_CLOSED"],
                 timeout=WINDOW_MS / 1000 + 20)
        pttl_delivered = int(s.redis("PTTL", order_key(s, delivered))[0])
        assert 0 < pttl_delivered <= TTL_MS, pttl_delivered
        st, _, body = s.request("GET", "/api/orders/" + delivered, token=a_token)
        assert st == 200 and body["status"] == "DELIVERED" and body["reason"] == "RETURN_WINDOW_CLOSED", (st, body)
        t0 = time.time()
        wait_for("the delivered order to leave Redis",
                 lambda: s.redis("EXISTS", order_key(s, delivered)) == ["0"], timeout=TTL_MS / 1000 + 10)
        print("redis expiry: delivered order %s left Redis %.1f s after its return window closed "
              "(PTTL was %d ms)" % (delivered, time.time() - t0, pttl_delivered))
        # the order whose return was requested is live: still there, with no deadline
        assert s.redis("HGET", order_key(s, returning), "status") == ["RETURN_REQUESTED"]
        assert int(s.redis("PTTL", order_key(s, returning))[0]) == -1
        assert s.redis("EXISTS", order_key(s, live)) == ["1"]
        assert s.sql("SELECT status FROM orders WHERE order_id = '%s'" % delivered) == [["DELIVERED"]]
        st, _, body = s.request("GET", "/api/orders/" + delivered, token=a_token)
        assert st == 200 and body["status"] == "DELIVERED", (st, body)
        assert body["freshness"]["source"] == "postgres", body["freshness"]
        st, _, body = s.request("POST", "/api/orders/%s/return" % delivered, {}, a_token)
        assert st == 409 and body["error"]["code"] == "RETURN_WINDOW_CLOSED", (st, body)
        # the return completes: the order ends and gets its deadline, with its whole history
        st, _, body = s.request("POST", "/api/orders/%s/return/complete" % returning, {"restock": True}, s.admin)
        assert st == 200 and body["status"] == "RETURNED", (st, body)
        wait_for("the returned order in Redis",
                 lambda: s.redis("HGET", order_key(s, returning), "status") == ["RETURNED"])
        assert 0 < int(s.redis("PTTL", order_key(s, returning))[0]) <= TTL_MS
        hist = [json.loads(h)["status"] for h in
                s.redis("LRANGE", "fs:rm:%s:h:%s" % (s.redis("GET", "fs:rm:gen")[0], returning), "0", "-1")]
        assert hist[-3:] == ["DELIVERED", "RETURN_REQUESTED", "RETURNED"], hist

        report = os.path.join(s.logdir, "audit-redis-expiry.json")
        out = subprocess.run([os.path.join(bindir, "projections", "flashsale-audit"), "--read-models",
                              "--json", report], capture_output=True, timeout=300)
        print(out.stdout.decode())
        assert out.returncode == 0, out.stdout.decode()[-3000:] + out.stderr.decode()[-2000:]
        rep = json.load(open(report))["read_models"]
        assert rep["redis"]["compared"] and rep["redis"]["differences"] == 0, rep
        assert rep["redis"]["expired"] >= 2, rep  # the refused order and the delivered one

        # The broker, PostgreSQL and Redis are the suite's: leave Redis as the other tests
        # expect it (their audits use the default TTL), a generation rebuilt from the log with
        # the default TTL, which brings back the orders that ended minutes ago.
        os.environ.pop("FLASHSALE_REDIS_ENDED_TTL_MS")
        before = s.redis("GET", "fs:rm:gen")[0]
        s.stop_processor("projector-redis")
        s.start_projector("redis", rebuild=True)
        wait_for("the rebuilt generation", lambda: s.redis("GET", "fs:rm:gen")[0] != before, timeout=240)
        wait_for("the ended orders back in Redis",
                 lambda: all(s.redis("EXISTS", order_key(s, o)) == ["1"] for o in (ended, delivered, returning)),
                 timeout=60)


if __name__ == "__main__":
    main(sys.argv[1])
    print("redis expiry: PASS")
