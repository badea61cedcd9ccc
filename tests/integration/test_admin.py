#!/usr/bin/python3
"""The operator routes over real HTTP (through the edge), with the inventory processor, the
sagas and both projectors on the test broker:
  - every route answers 401 without a token and 403 to a member, before anything else;
  - GET /api/admin/overview counts the decisions of a few orders (in total and per second
    while they are recent), reports both projections' lag once the projectors have spoken,
    the Redis breaker closed, and the dead letters;
  - GET /api/admin/dead-letters lists a malformed command the processor dead-lettered, with
    its reason, source topic and key, newest first, and bounds ?limit;
  - POST /api/admin/audit runs flashsale-audit for a product and answers OK with the
    product's counters after a few orders (paid, expired), 404 for an unknown product, 400
    without one, and 409 AUDIT_RUNNING while another audit runs (held open by a wrapper of
    the audit that waits for the test's signal); an audit that finds violations (the wrapper
    stands in for flashsale-audit, writing a report with two) answers VIOLATION with the
    list and the audit's own lines, and the API logs which ones it found.
Usage: test_admin.py BUILD_DIR"""
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fsharness import System  # noqa: E402
from test_core import expect  # noqa: E402
from test_sagas import DAY, wait_status  # noqa: E402

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def poll(what, fn, timeout=30):
    deadline = time.time() + timeout
    while True:
        got = fn()
        if got:
            return got
        assert time.time() < deadline, "never: %s" % what
        time.sleep(0.2)


def auth_checks(s):
    _, member = s.member()
    routes = (("GET", "/api/admin/overview", None), ("GET", "/api/admin/dead-letters", None),
              ("POST", "/api/admin/audit", {"product_id": "x"}))
    for method, path, body in routes:
        expect(s.request(method, path, body), 401, "UNAUTHENTICATED")
        expect(s.request(method, path, body, "not.a.token"), 401, "INVALID_TOKEN")
        expect(s.request(method, path, body, member), 403, "FORBIDDEN")
    expect(s.request("DELETE", "/api/admin/overview", token=s.admin), 405, "METHOD_NOT_ALLOWED")
    print("admin routes: 401 without a valid token, 403 for a member, 405 for another method")


def overview(s):
    return expect(s.request("GET", "/api/admin/overview", token=s.admin), 200)


def main(bindir):
    real_audit = os.path.join(bindir, "projections", "flashsale-audit")
    tmp = tempfile.mkdtemp(prefix="fs-admin-")
    mark, go = os.path.join(tmp, "running"), os.path.join(tmp, "go")
    wrapper = os.path.join(tmp, "audit-wrapper")
    violate = os.path.join(tmp, "violate")
    with open(wrapper, "w") as f:  # holds an audit open until the test says go (when asked to)
        f.write("#!/bin/sh\nif [ -e %s ]; then touch %s; while [ ! -e %s ]; do sleep 0.1; done; fi\n"
                # asked to find violations: the report flashsale-audit writes when it does
                "if [ -e %s ]; then while [ $# -gt 0 ]; do [ \"$1\" = --json ] && report=$2; shift; done\n"
                "  cp %s \"$report\"; echo 'VIOLATION oversell order o-1'; echo 'VIOLATION: 2 violation(s)'; exit 1; fi\n"
                "exec %s \"$@\"\n" % (os.path.join(tmp, "hold"), mark, go, violate, violate, real_audit))
    os.chmod(wrapper, 0o755)
    with System(bindir, sagas=True, saga_env=DAY, proc_env={"FLASHSALE_PAYMENT_WINDOW_MS": "2000"},
                api_env={"FLASHSALE_AUDIT_BIN": wrapper}) as s:
        s.start_projector("postgres")
        s.start_projector("redis")
        auth_checks(s)

        # --- overview: decisions, lag, breaker --------------------------------------------------
        before = overview(s)
        for k in ("decisions_per_second", "decisions_total", "projection_lag_ms", "breaker", "dead_letters", "at"):
            assert k in before, before
        assert RFC3339.match(before["at"]), before
        pid = s.create_product(stock=5, name="admin-audit")
        t0 = time.time()
        buyers = [s.member() for _ in range(3)]
        orders = [expect(s.order(tok, pid), 201)["order_id"] for _, tok in buyers]
        expect(s.order(s.member()[1], pid, quantity=3), 409, "INSUFFICIENT_STOCK")  # a decision too
        # the audit's history (below): one paid, one cancelled, one left to expire. Paid and
        # cancelled at once, within the 2 s payment window, not after the sections between
        (_, tok_a), (_, tok_b), (_, tok_c) = buyers
        expect(s.request("POST", "/api/orders/%s/payment" % orders[0], {}, tok_a), 200)
        expect(s.request("POST", "/api/orders/%s/cancel" % orders[1], None, tok_b), 200)
        after = poll("the overview counting 4 decisions",
                     lambda: (lambda o: o if o["decisions_total"] >= before["decisions_total"] + 4 else None)(overview(s)))
        if time.time() - t0 < 8:  # all four are within the last 10 s
            assert after["decisions_per_second"] >= 0.4, after
        assert after["breaker"]["state"] == "closed", after
        lagged = poll("both projections reporting their lag",
                      lambda: (lambda o: o if all(isinstance(o["projection_lag_ms"][k], int)
                                                  for k in ("postgres", "redis")) else None)(overview(s)))
        print("overview: %d decisions in total (+%d), %.1f/s, lag %s, breaker %s"
              % (after["decisions_total"], after["decisions_total"] - before["decisions_total"],
                 after["decisions_per_second"], lagged["projection_lag_ms"], after["breaker"]["state"]))

        # --- dead letters ---------------------------------------------------------------------
        dead0 = overview(s)["dead_letters"]["total"]
        key = "admin-dlq-%d" % os.getpid()
        subprocess.run([os.path.join(bindir, "tests", "produce_raw"), "inventory.commands", key, "--hex",
                        "7b226e6f74223a2261767266227d"], check=True)
        listed = poll("the dead letter listed", lambda: [
            d for d in expect(s.request("GET", "/api/admin/dead-letters?limit=200", token=s.admin), 200)["items"]
            if d["key"] == key])
        d = listed[0]
        assert d["topic"] == "deadletter" and d["source_topic"] == "inventory.commands", d
        assert d["reason"] and RFC3339.match(d["at"]) and d["offset"] >= 0, d
        poll("the overview counting it", lambda: overview(s)["dead_letters"]["total"] >= dead0 + 1)
        one = expect(s.request("GET", "/api/admin/dead-letters?limit=1", token=s.admin), 200)["items"]
        assert len(one) == 1 and one[0]["key"] == key, one  # newest first
        page = expect(s.request("GET", "/api/admin/dead-letters", token=s.admin), 200)["items"]
        assert 1 <= len(page) <= 20 and page[0]["key"] == key, page
        assert all(page[i]["at"] >= page[i + 1]["at"] for i in range(len(page) - 1)), page
        for bad in ("0", "201", "abc", "-1", ""):
            expect(s.request("GET", "/api/admin/dead-letters?limit=" + bad, token=s.admin), 400, "INVALID_PARAMETER")
        print("dead letters: %s dead-lettered (%s), listed newest first; limit bounded" % (key, d["reason"]))

        # --- audit ----------------------------------------------------------------------------
        wait_status(s, tok_c, orders[2], "EXPIRED", timeout=15)
        wait_status(s, tok_a, orders[0], "DELIVERED", timeout=15)
        n = -1
        while n != len(s.dump("inventory.events")):  # quiet: nothing in flight
            n = len(s.dump("inventory.events"))
            time.sleep(1)
        expect(s.request("POST", "/api/admin/audit", {}, s.admin), 400, "MISSING_FIELD")
        expect(s.request("POST", "/api/admin/audit", {"product_id": "no-such-product"}, s.admin), 404,
               "PRODUCT_NOT_FOUND")
        out = expect(s.request("POST", "/api/admin/audit", {"product_id": pid}, s.admin, timeout=330), 200)
        assert out["verdict"] == "OK" and out["violations"] == 0, out
        assert out["product_id"] == pid and out["duration_ms"] > 0, out
        assert out["product"] == {"product_id": pid, "stock": 5, "available": 4, "reserved": 0, "sold": 1}, out
        assert "OK: 0 violation(s)" in out["summary"], out["summary"]
        for store in ("postgres", "redis"):  # --read-models: both compared, no difference
            assert out["read_models"][store]["compared"] and out["read_models"][store]["differences"] == 0, out
        print("audit: %s in %d ms\n%s" % (out["verdict"], out["duration_ms"], out["summary"]))

        # one at a time: an audit held open by the wrapper, a second one refused
        open(os.path.join(tmp, "hold"), "w").close()
        first = {}
        t = threading.Thread(target=lambda: first.update(r=s.request(
            "POST", "/api/admin/audit", {"product_id": pid}, s.admin, timeout=330)))
        t.start()
        poll("the first audit running", lambda: os.path.exists(mark))
        expect(s.request("POST", "/api/admin/audit", {"product_id": pid}, s.admin), 409, "AUDIT_RUNNING")
        open(go, "w").close()
        t.join(330)
        assert not t.is_alive()
        out = expect(first["r"], 200)
        assert out["verdict"] == "OK", out
        os.unlink(os.path.join(tmp, "hold"))
        expect(s.request("POST", "/api/admin/audit", {"product_id": pid}, s.admin, timeout=330), 200)
        print("audit: one at a time (409 AUDIT_RUNNING while another runs), then free again")

        # an audit that finds violations: the verdict, the list and where they are logged
        found = [{"check": "oversell", "order_id": "o-1", "product_id": pid, "partition": 0, "offset": 7,
                  "detail": "sold %d of %d" % (i + 6, 5)} for i in range(2)]
        with open(violate, "w") as f:
            json.dump({"violation_count": 2, "violations": found, "product": None, "read_models": None}, f)
        out = expect(s.request("POST", "/api/admin/audit", {"product_id": pid}, s.admin, timeout=330), 200)
        os.unlink(violate)
        assert out["verdict"] == "VIOLATION" and out["violations"] == 2, out
        assert out["violation_list"] == found, out
        assert "VIOLATION oversell order o-1" in out["summary"] and "VIOLATION: 2 violation(s)" in out["summary"], out
        logged = [json.loads(l) for l in open(os.path.join(s.logdir, "test-api.log"), errors="replace")
                  if '"audit found violations"' in l]
        assert logged and logged[-1]["product_id"] == pid and logged[-1]["violations"] == 2, logged
        assert logged[-1]["first"] == found and logged[-1]["level"] == "warn", logged[-1]
        print("audit: a VIOLATION verdict carries the list and the audit's lines, and the API logs which")
    print("admin: all checks passed")


if __name__ == "__main__":
    main(sys.argv[1])
