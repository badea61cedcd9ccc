#!/usr/bin/python3
"""The flash-sale core over HTTP on the real broker (issue: products, the partitioned
inventory processor, order placement with an immediate answer).

    test_core.py BUILD_DIR SCENARIO
    SCENARIO: burst | rules | idempotency | bad_input | crash | rebalance | dead_letter |
              answers_crash | outage | late_copy | producer_fatal | notifier_dead_letter

Every scenario ends by re-deriving inventory from inventory.events (fsharness.derive, its
own rules) and checking: no oversell, no undersell, conservation, event counters equal the
re-derived state, and every order the API acknowledged has exactly one decision."""
import collections
import json
import os
import signal
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fsharness import System, audit, derive, mint, percentile  # noqa: E402


def check_log(sys_, acknowledged=(), stock_of=None):
    events = sys_.dump("inventory.events")
    products, decisions, holdings, problems = derive(events)
    assert not problems, "\n".join(problems[:10])
    for oid in acknowledged:
        assert decisions[(oid, 0)] == 1, "order %s has %d decisions" % (oid, decisions[(oid, 0)])
    doubled = [o for o, n in decisions.items() if n > 1]
    assert not doubled, "order lines with several decisions: %s" % doubled[:5]
    for pid, st in (stock_of or {}).items():
        p = products[pid]
        assert p["reserved"] + p["sold"] <= p["stock"], (pid, p)
    return products, decisions, holdings


def summarize(name, results, wall):
    statuses = collections.Counter(s for s, _, _ in results)
    lat = [dt * 1000 for _, _, dt in results]
    print("%s: %d requests in %.2f s (%.0f/s); statuses %s; latency ms p50 %.1f p99 %.1f max %.1f"
          % (name, len(results), wall, len(results) / wall, dict(statuses), percentile(lat, 50),
             percentile(lat, 99), max(lat)))
    if statuses[0]:  # no HTTP answer at all: say why (connect refused, reset, ...)
        why = collections.Counter(str(b)[:80] for st, b, _ in results if st == 0)
        print("  %d requests without an HTTP answer: %s" % (statuses[0], why.most_common(3)))
    return statuses


def scenario_burst(bindir):
    with System(bindir) as s:
        pid = s.create_product(stock=100, limit=1, name="burst")
        members = [s.member() for _ in range(10000)]
        reqs = [("/api/orders", {"product_id": pid, "quantity": 1}, tok) for _, tok in members]
        t0 = time.monotonic()
        results = s.burst(reqs)
        statuses = summarize("burst 10,000 members / 100 units", results, time.monotonic() - t0)
        reserved = [b for st, b, _ in results if st == 201]
        sold_out = [b for st, b, _ in results if st == 409 and b["error"]["code"] == "SOLD_OUT"]
        assert len(reserved) == 100, statuses
        assert len(sold_out) == 9900, statuses
        assert statuses[201] + statuses[409] == 10000, "other statuses: %s" % statuses
        owners = collections.Counter(b["order_id"] for b in reserved)
        assert len(owners) == 100
        acknowledged = [b["order_id"] for b in reserved] + \
                       [b["error"]["order_id"] for b in sold_out if "order_id" in b["error"]]
        products, decisions, holdings = check_log(s, acknowledged, {pid: 100})
        p = products[pid]
        assert (p["available"], p["reserved"], p["sold"]) == (0, 100, 0), p
        assert max(n for (prod, _), n in holdings.items() if prod == pid) == 1
        st, _, stock = s.request("GET", "/api/products/%s/stock" % pid)
        assert st == 200 and stock["available"] == 0 and stock["reserved"] == 100, stock
        print("burst: 100 RESERVED, 9,900 SOLD_OUT (%d decided by the processor, %d by the "
              "sold-out fast path); log re-derived: available 0, reserved 100"
              % (len(acknowledged) - 100, 9900 - (len(acknowledged) - 100)))


def expect(resp, status, code=None):
    st, _, body = resp
    assert st == status, "expected %d %s, got %d %s" % (status, code, st, body)
    if code:
        assert body["error"]["code"] == code, "expected %s, got %s" % (code, body)
    return body


def scenario_rules(bindir):
    with System(bindir) as s:
        _, tok = s.member()
        limited = s.create_product(stock=10, limit=2, name="limited")
        a = expect(s.order(tok, limited), 201)
        assert a["status"] == "RESERVED" and a["pay_by"].endswith("Z")
        expect(s.order(tok, limited), 201)
        expect(s.order(tok, limited), 409, "LIMIT_EXCEEDED")
        expect(s.order(tok, limited, 3), 422, "INVALID_QUANTITY")  # above the product's limit

        later = s.create_product(stock=5, starts=int((time.time() + 3600) * 1000), name="later")
        expect(s.order(tok, later), 409, "NOT_ON_SALE")
        ended = s.create_product(stock=5, starts="2020-01-01T00:00:00Z",
                                 ends="2021-01-01T00:00:00+09:00", name="ended")
        expect(s.order(tok, ended), 409, "NOT_ON_SALE")

        paused = s.create_product(stock=5, name="paused")
        st, _, body = s.request("POST", "/api/products/%s/pause" % paused, None, s.admin)
        assert st == 200 and body["paused"] is True and body["status"] == "PAUSED", body
        expect(s.order(tok, paused), 409, "PAUSED")
        st, _, body = s.request("POST", "/api/products/%s/resume" % paused, None, s.admin)
        assert st == 200 and body["paused"] is False
        expect(s.order(tok, paused), 201)

        small = s.create_product(stock=2, name="small")
        expect(s.order(s.member()[1], small, 2), 201)
        expect(s.order(s.member()[1], small), 409, "SOLD_OUT")
        st, _, body = s.request("POST", "/api/products/%s/restock" % small, {"quantity": 3}, s.admin)
        assert st == 200 and body["available"] == 3 and body["stock"] == 5, body
        expect(s.order(s.member()[1], small), 201)  # restock lets new buyers in
        expect(s.order(s.member()[1], small, 5), 409, "INSUFFICIENT_STOCK")

        st, _, body = s.request("PATCH", "/api/products/%s" % small,
                                {"name": "renamed", "price": 500}, s.admin)
        assert st == 200 and body["name"] == "renamed" and body["price"] == 500, body
        st, _, body = s.request("GET", "/api/products/%s" % small)
        assert st == 200 and body["name"] == "renamed" and body["available"] == 2, body

        # order reads: owner, admin, another member
        st, _, o = s.request("GET", "/api/orders/%s" % a["order_id"], token=tok)
        assert st == 200 and o["status"] == "RESERVED" and len(o["history"]) == 2, o
        st, _, o = s.request("GET", "/api/orders/%s" % a["order_id"], token=s.admin)
        assert st == 200
        expect(s.request("GET", "/api/orders/%s" % a["order_id"], token=s.member()[1]), 404,
               "ORDER_NOT_FOUND")
        check_log(s, [a["order_id"]])
        print("rules: limit, not-on-sale (before and after the window), pause/resume, sold out, "
              "restock, insufficient stock, update, order visibility: all as specified")


def scenario_idempotency(bindir):
    with System(bindir) as s:
        pid = s.create_product(stock=50, name="idem")
        member, tok = s.member()
        key = "idem-" + uuid.uuid4().hex
        reqs = [("/api/orders", {"product_id": pid, "quantity": 1}, tok,
                 "Idempotency-Key: %s\r\n" % key)] * 5
        results = s.burst(reqs)
        ids = {b.get("order_id") for st, b, _ in results}
        assert all(st == 201 for st, _, _ in results), results
        assert len(ids) == 1, "five concurrent requests made %d orders" % len(ids)
        again = expect(s.order(tok, pid, headers={"Idempotency-Key": key}), 201)
        assert again["order_id"] in ids
        expect(s.order(tok, pid, 2, headers={"Idempotency-Key": key}), 422, "IDEMPOTENCY_KEY_REUSED")
        # the same key of another member is another order
        other = expect(s.order(s.member()[1], pid, headers={"Idempotency-Key": key}), 201)
        assert other["order_id"] not in ids
        cmds = [r for r in s.dump("inventory.commands")
                if r.get("type") == "ReserveStock" and r["value"]["member_id"] == member]
        assert len(cmds) == 1, "%d ReserveStock commands for one idempotent order" % len(cmds)
        products, _, holdings = check_log(s, ids)
        assert holdings[(pid, member)] == 1
        print("idempotency: 5 concurrent + 1 later request with one key -> one order, one command")


def scenario_bad_input(bindir):
    with System(bindir) as s:
        pid = s.create_product(stock=5, limit=2, name="bad-input")
        member, tok = s.member()
        mine = expect(s.order(tok, pid), 201)["order_id"]
        before = len(s.dump("inventory.commands"))
        J = {"Content-Type": "application/json"}
        cases = [
            (s.request("POST", "/api/orders", raw=b"{not json", headers=dict(J, Authorization="Bearer " + tok)), 400, "BAD_JSON"),
            (s.request("POST", "/api/orders", raw=b"[1,2]", headers=dict(J, Authorization="Bearer " + tok)), 400, "BAD_JSON"),
            (s.request("POST", "/api/orders", {"product_id": pid, "quantity": "1"}, tok), 400, "INVALID_FIELD"),
            (s.request("POST", "/api/orders", {"product_id": 42, "quantity": 1}, tok), 400, "INVALID_FIELD"),
            (s.request("POST", "/api/orders", {"quantity": 1}, tok), 400, "MISSING_FIELD"),
            (s.request("POST", "/api/orders", {"product_id": pid}, tok), 400, "MISSING_FIELD"),
            (s.request("POST", "/api/orders", {"product_id": pid, "quantity": 0}, tok), 422, "INVALID_QUANTITY"),
            (s.request("POST", "/api/orders", {"product_id": pid, "quantity": -3}, tok), 422, "INVALID_QUANTITY"),
            (s.request("POST", "/api/orders", {"product_id": pid, "quantity": 3}, tok), 422, "INVALID_QUANTITY"),
            # bounds that keep every order amount inside int64 (price 1e11, quantity 1e6)
            (s.request("POST", "/api/orders", {"items": [{"product_id": pid, "quantity": 1000001}]}, tok), 422, "INVALID_QUANTITY"),
            (s.request("POST", "/api/products", {"name": "x", "price": 100000000001, "stock": 1, "sale_starts_at": 0}, s.admin), 422, "PRICE_TOO_HIGH"),
            (s.request("POST", "/api/products", {"name": "x\r\nBcc: all", "price": 1, "stock": 1, "sale_starts_at": 0}, s.admin), 400, "INVALID_FIELD"),
            (s.request("POST", "/api/orders", raw=b'{"product_id":"' + b"x" * 20000 + b'"}', headers=dict(J, Authorization="Bearer " + tok)), 413, "BODY_TOO_LARGE"),
            (s.request("POST", "/api/orders", raw=b'{"product_id":"a","quantity":1}', headers={"Content-Type": "text/plain", "Authorization": "Bearer " + tok}), 415, "UNSUPPORTED_MEDIA_TYPE"),
            (s.request("POST", "/api/orders", {"product_id": pid, "quantity": 1}), 401, "UNAUTHENTICATED"),
            (s.request("POST", "/api/orders", {"product_id": pid, "quantity": 1}, mint(s.secret, member, "member", ttl=-10)), 401, "TOKEN_EXPIRED"),
            (s.request("POST", "/api/orders", {"product_id": pid, "quantity": 1}, mint("forged-secret-forged-secret-forged!", member, "member")), 401, "INVALID_TOKEN"),
            (s.request("POST", "/api/orders", {"product_id": pid, "quantity": 1}, tok[:-3] + "abc"), 401, "INVALID_TOKEN"),
            (s.request("POST", "/api/orders", {"product_id": str(uuid.uuid4()), "quantity": 1}, tok), 404, "PRODUCT_NOT_FOUND"),
            (s.request("POST", "/api/orders", {"product_id": pid, "quantity": 1}, tok, {"Idempotency-Key": "k" * 200}), 400, "INVALID_HEADER"),
            (s.request("POST", "/api/products", {"name": "x", "price": 1, "stock": 1, "sale_starts_at": 0}, tok), 403, "FORBIDDEN"),
            (s.request("POST", "/api/products/%s/restock" % pid, {"quantity": 1}, tok), 403, "FORBIDDEN"),
            (s.request("POST", "/api/products", {"price": 1, "stock": 1, "sale_starts_at": 0}, s.admin), 400, "MISSING_FIELD"),
            (s.request("POST", "/api/products", {"name": "x", "price": 1, "stock": -1, "sale_starts_at": 0}, s.admin), 400, "INVALID_FIELD"),
            (s.request("POST", "/api/products", {"name": "x", "price": 1, "stock": 1, "sale_starts_at": "yesterday"}, s.admin), 400, "INVALID_FIELD"),
            (s.request("POST", "/api/products", {"name": "x", "price": 1, "stock": 1, "sale_starts_at": "2026-01-02T00:00:00Z", "sale_ends_at": "2026-01-01T00:00:00Z"}, s.admin), 400, "INVALID_FIELD"),
            (s.request("POST", "/api/products/%s/restock" % pid, {"quantity": 0}, s.admin), 400, "INVALID_FIELD"),
            (s.request("POST", "/api/products/%s/restock" % uuid.uuid4(), {"quantity": 1}, s.admin), 404, "PRODUCT_NOT_FOUND"),
            (s.request("GET", "/api/products/%s" % uuid.uuid4()), 404, "PRODUCT_NOT_FOUND"),
            (s.request("GET", "/api/orders/%s" % mine, token=s.member()[1]), 404, "ORDER_NOT_FOUND"),
            (s.request("GET", "/api/orders/%s" % mine), 401, "UNAUTHENTICATED"),
            (s.request("DELETE", "/api/orders", token=tok), 405, "METHOD_NOT_ALLOWED"),
            (s.request("GET", "/api/nothing-here"), 404, "NOT_FOUND"),
        ]
        for i, (resp, status, code) in enumerate(cases):
            st, headers, body = resp
            assert st == status and isinstance(body, dict) and body["error"]["code"] == code, \
                "case %d: expected %d %s, got %d %s" % (i, status, code, st, body)
            assert body["error"]["request_id"] and body["error"]["message"], body
            assert headers.get("Content-Type") == "application/json"
        after = len(s.dump("inventory.commands"))
        assert after == before, "bad input produced %d records to Kafka" % (after - before)
        print("bad input: %d cases answered with the right status and code; nothing produced" % len(cases))


def run_orders_with(s, products, n, during, spread_s):
    """n orders from n members on random products over spread_s seconds, calling during()
    from another thread meanwhile."""
    import random
    rnd = random.Random(42)
    reqs = [("/api/orders", {"product_id": rnd.choice(products), "quantity": 1}, s.member()[1])
            for _ in range(n)]
    t = threading.Thread(target=during)
    t.start()
    t0 = time.monotonic()
    results = s.burst(reqs, spread_s=spread_s)
    wall = time.monotonic() - t0
    t.join()
    return results, wall


def acknowledged_ids(results):
    ids = []
    for st, b, _ in results:
        if st in (201, 202):
            ids.append(b["order_id"])
        elif st in (404, 409) and isinstance(b, dict) and "order_id" in b.get("error", {}):
            ids.append(b["error"]["order_id"])
    return ids


def scenario_crash(bindir):
    with System(bindir, api_env={"FLASHSALE_DECISION_WAIT_MS": "1500"}) as s:
        products = [s.create_product(stock=500, name="crash-%d" % i) for i in range(10)]

        def rebuilt():
            try:
                with open(os.path.join(s.logdir, "test-inv-a.log")) as f:
                    return sum('"partitions rebuilt"' in l for l in f)
            except OSError:
                return 0

        def killer():
            for k in range(2):
                time.sleep(3.0)
                s.stop_processor("inv-a", signal.SIGKILL)
                print("  SIGKILL %d of the inventory processor" % (k + 1))
                time.sleep(0.5)
                before = rebuilt()
                s.start_processor("inv-a")
                # the next kill only once this start has rebuilt (on a slow machine a rebuild
                # took longer than the 3 s between kills, and a kill in the middle of it
                # leaves no rebuild to check below)
                deadline = time.time() + 30
                while rebuilt() == before and time.time() < deadline:
                    time.sleep(0.1)
        # over 20 s (1,000/s): at 2,500 connections/s the thread-per-connection front queued
        # requests ~20 s and sometimes closed 1,000 unanswered (the edge issue owns that)
        results, wall = run_orders_with(s, products, 20000, killer, spread_s=20.0)
        statuses = summarize("crash: 20,000 orders on 10 products, processor killed twice", results, wall)
        assert statuses[0] == 0 and statuses[500] == 0, statuses
        acked = acknowledged_ids(results)
        n_cmds = s.wait_all_decided()
        products_state, decisions, _ = check_log(s, acked, {p: 500 for p in products})
        sold = sum(products_state[p]["reserved"] + products_state[p]["sold"] for p in products)
        assert sold == 5000, "reserved+sold %d, expected all 5,000 units taken" % sold
        # the restarts rebuilt from snapshots (the harness has the processor cut them often)
        rebuilds = [json.loads(l) for l in open(os.path.join(s.logdir, "test-inv-a.log"))
                    if '"partitions rebuilt"' in l]
        assert len(rebuilds) >= 3 and all(r["from_snapshot"] >= 1 for r in rebuilds[-2:]), rebuilds
        # ... cut by a child process while the decisions went on (FLASHSALE_SNAPSHOT_CHILD);
        # one cut in place only after a child that failed or was not forked, which the log says
        log = [json.loads(l) for l in open(os.path.join(s.logdir, "test-inv-a.log"))
               if '"snapshot' in l]
        cut = [r for r in log if r.get("msg") == "snapshot"]
        failed = sum(r.get("msg", "").startswith("snapshot child") for r in log)
        in_place = sum(r["fork_ms"] == 0 for r in cut)
        assert cut and in_place < len(cut) and in_place <= failed, (in_place, failed, cut[:3])
        print("crash: restarts rebuilt from snapshots: %s" % [(r["from_snapshot"], r["events"], r["ms"])
                                                              for r in rebuilds[-2:]])
        print("crash: %d acknowledged orders (%d answered 202 during the kills), %d commands, "
              "each with exactly one decision; 5,000 of 5,000 units reserved, none beyond stock"
              % (len(acked), statuses[202], n_cmds))


def scenario_rebalance(bindir):
    with System(bindir, processors=("inv-a", "inv-b"),
                api_env={"FLASHSALE_DECISION_WAIT_MS": "1500"}) as s:
        products = [s.create_product(stock=400, name="rebalance-%d" % i) for i in range(10)]

        def bounce():
            time.sleep(2.0)
            s.stop_processor("inv-b", signal.SIGTERM)
            print("  inv-b stopped (SIGTERM); its partitions move to inv-a after the session timeout")
            time.sleep(8.0)
            s.start_processor("inv-b")
            print("  inv-b started again: partitions split again")
        results, wall = run_orders_with(s, products, 12000, bounce, spread_s=14.0)
        statuses = summarize("rebalance: 12,000 orders, one of two processors stopped and started",
                             results, wall)
        assert statuses[0] == 0 and statuses[500] == 0, statuses
        acked = acknowledged_ids(results)
        n_cmds = s.wait_all_decided()
        products_state, _, _ = check_log(s, acked, {p: 400 for p in products})
        sold = sum(products_state[p]["reserved"] + products_state[p]["sold"] for p in products)
        assert sold == 4000, sold
        logs = open(os.path.join(s.logdir, "test-inv-a.log")).read()
        assert logs.count('"partitions assigned"') >= 2, "inv-a never saw a rebalance"
        print("rebalance: %d acknowledged orders, %d commands, one decision each; 4,000 of 4,000 "
              "units reserved" % (len(acked), n_cmds))


def scenario_dead_letter(bindir):
    """Malformed records on inventory.commands go to the dead-letter topic with a reason;
    one too large to copy there is logged where it is; the processor keeps deciding orders."""
    import subprocess
    with System(bindir) as s:
        pid = s.create_product(stock=10, name="dead-letter")
        raw = os.path.join(bindir, "tests", "produce_raw")
        # this test's dead letters only (keyed by its product): other tests of the suite
        # dead-letter commands too, and the dump is ordered by partition, not by time
        ours = lambda r: r["headers"].get("dlq-topic") == "inventory.commands" and r["key"] == pid  # noqa: E731
        before = len([r for r in s.dump("deadletter") if ours(r)])
        # 1: not Avro at all; 2: Avro single-object header with an unknown fingerprint;
        # 3: a valid record of an *event* schema (SalePaused) sent as a command
        subprocess.run([raw, "inventory.commands", pid, "--hex", "7b226e6f74223a2261767266227d"], check=True)
        subprocess.run([raw, "inventory.commands", pid, "--hex", "c301" + "00" * 8 + "0a0b0c"], check=True)
        # a well-formed record of an event schema, from the interop sample writer
        samples = os.path.join(s.logdir, "dlq-samples")
        os.makedirs(samples, exist_ok=True)
        subprocess.run([os.path.join(bindir, "tests", "interop_write_samples"), samples], check=True,
                       capture_output=True)
        ev_bytes = os.path.join(samples, "flashsale.inventory.SalePaused.bin")
        subprocess.run([raw, "inventory.commands", pid, "--file", ev_bytes, "SalePaused"], check=True)
        # 4: a record whose copy with the dlq-* headers is too large to write (the client's
        # message.max.bytes, 1,000,000): logged where it is, and the partition goes on
        big = os.path.join(samples, "too-large.bin")
        with open(big, "wb") as f:
            f.write(b"x" * 999800)
        subprocess.run([raw, "inventory.commands", pid, "--file", big], check=True)
        _, tok = s.member()
        expect(s.order(tok, pid), 201)  # the processor is still deciding, after all four
        # the dead letters are written in the processor's transaction, readable once it
        # commits, while the 201 comes at the decision, before that commit: wait for them
        deadline = time.time() + 30
        while True:
            dead = [r for r in s.dump("deadletter") if ours(r)]
            if len(dead) - before >= 3 or time.time() > deadline:
                break
            time.sleep(0.2)
        assert len(dead) - before == 3, "expected 3 dead letters, got %d" % (len(dead) - before)
        reasons = [r["headers"]["dlq-reason"] for r in dead[-3:]]
        assert any("magic" in x for x in reasons), reasons
        assert any("unknown schema fingerprint" in x for x in reasons), reasons
        assert any("not an inventory command" in x for x in reasons), reasons
        for r in dead[-3:]:
            assert r["headers"]["dlq-partition"] and r["headers"]["dlq-offset"] and r["key"] == pid
        too_large = [json.loads(line) for f in os.listdir(s.logdir) if f.startswith("test-inv-")
                     for line in open(os.path.join(s.logdir, f))
                     if "dead letter too large to write" in line]
        assert any(j.get("bytes") == 999800 and j.get("topic") == "inventory.commands" for j in too_large), \
            "the record too large to dead-letter was not logged: %s" % too_large[-3:]
        check_log(s)
        print("dead letter: 3 malformed commands dead-lettered with reasons %s; orders still decided"
              % reasons)


def committed_decisions(s):
    """order id -> (status, reason, pay_by ms, record timestamp) of its committed decision."""
    out = {}
    for r in s.dump("inventory.events"):
        v = r.get("value") or {}
        if r.get("type") in ("StockReserved", "StockRejected") and v.get("item_count", 1) <= 1:
            out.setdefault(v["order_id"], ("RESERVED" if r["type"] == "StockReserved" else "REJECTED",
                                           v.get("reason", "") if r["type"] == "StockRejected" else "",
                                           v.get("pay_by", 0) if r["type"] == "StockReserved" else 0,
                                           r["timestamp"]))
    return out


def scenario_answers_crash(bindir):
    """Answer at the decision: the processor sends each decision to the waiting API before its
    transaction commits. Its crash point SIGKILLs it between sending and committing, again and
    again under load (each run dies at a random commit; restarted at once). Every answer the
    API gave must equal the decision that finally committed: zero differences, counted both
    from the HTTP answers and from orders.answers, and some of those answers must have come
    from a transaction that was then killed (answered before the committed copy existed).
    Then, with a healthy processor: read your writes (GET right after 201 shows RESERVED) and
    the payment accepted at once."""
    import random
    import subprocess
    rnd = random.Random(11)
    with System(bindir, sagas=True, api_env={"FLASHSALE_DECISION_WAIT_MS": "3000"}) as s:
        # six products that last the whole run (so commands keep coming) and two that sell out
        stocks = [1000] * 6 + [100] * 2
        products = [s.create_product(stock=n, name="answers-%d" % i) for i, n in enumerate(stocks)]
        s.stop_processor("inv-a")
        s.proc_env["FLASHSALE_CRASH_BEFORE_COMMIT"] = str(rnd.randint(2, 8))
        s.start_processor("inv-a")
        crashes = []
        done = threading.Event()

        def crasher():
            while not done.is_set():
                p = s.procs["inv-a"]
                if p.poll() is not None:  # died at its crash point
                    crashes.append(p.returncode)
                    s.proc_env["FLASHSALE_CRASH_BEFORE_COMMIT"] = str(rnd.randint(2, 8)) if len(crashes) < 8 else "0"
                    s.start_processor("inv-a")
                time.sleep(0.02)
        t = threading.Thread(target=crasher)
        t.start()
        try:
            import random as _r
            r2 = _r.Random(5)
            reqs = [("/api/orders", {"product_id": r2.choice(products), "quantity": 1}, s.member()[1])
                    for _ in range(6000)]
            t0 = time.monotonic()
            results = s.burst(reqs, spread_s=14.0)
            wall = time.monotonic() - t0
        finally:
            done.set()
            t.join()
        statuses = summarize("answers under crashes: 6,000 orders on 8 products", results, wall)
        assert len(crashes) >= 3, "the crash point fired only %d times" % len(crashes)
        assert all(rc == -signal.SIGKILL for rc in crashes), crashes
        if s.proc_env.get("FLASHSALE_CRASH_BEFORE_COMMIT") != "0" or s.procs["inv-a"].poll() is not None:
            if s.procs["inv-a"].poll() is None:
                s.stop_processor("inv-a", signal.SIGKILL)
            else:
                del s.procs["inv-a"]
            s.proc_env["FLASHSALE_CRASH_BEFORE_COMMIT"] = "0"
            s.start_processor("inv-a")
        s.wait_all_decided()
        committed = committed_decisions(s)
        diffs, compared = [], 0
        for st, b, _ in results:
            if st == 201:
                oid, got = b["order_id"], ("RESERVED", "")
            elif st in (404, 409) and isinstance(b, dict) and "order_id" in b.get("error", {}):
                oid, got = b["error"]["order_id"], ("REJECTED", b["error"]["code"])
            else:
                continue
            compared += 1
            want = committed.get(oid)
            if not want or want[:2] != got:
                diffs.append((oid, got, want))
        assert not diffs, "%d answers differ from the committed decisions, e.g. %s" % (len(diffs), diffs[:3])
        assert compared >= 4000, (compared, statuses)  # (fast-path SOLD_OUT answers name no order)
        answers = [r for r in s.dump("orders.answers") if r.get("type") == "OrderAnswered"]
        ours = {oid for st, b, _ in results for oid in
                ([b["order_id"]] if st == 201 else [b["error"]["order_id"]] if st in (404, 409) and
                 isinstance(b, dict) and "order_id" in b.get("error", {}) else [])}
        before_commit, rec_diffs = 0, []
        for r in answers:
            v = r["value"]
            if v["order_id"] not in ours or v["status"] == "PENDING":
                continue
            want = committed.get(v["order_id"])
            if not want or (want[0], want[1], want[2]) != (v["status"], v["reason"], v["pay_by"]):
                rec_diffs.append((v, want))
            elif v["source"] == "reply" and v["answered_at"] < want[3]:
                before_commit += 1  # answered from a decision whose transaction was killed
        assert not rec_diffs, "%d recorded answers differ, e.g. %s" % (len(rec_diffs), rec_diffs[:2])
        assert before_commit >= 1, "no answer came from a killed transaction: the test did not test"
        audit = subprocess.run([os.path.join(bindir, "projections", "flashsale-audit"), "--no-read-models"],
                               capture_output=True, text=True, timeout=600)
        assert audit.returncode == 0, audit.stdout[-3000:] + audit.stderr[-2000:]
        line = [l for l in audit.stdout.splitlines() if "answers:" in l]
        assert line and " 0 difference(s)" in line[0], audit.stdout
        products_state, _, _ = check_log(s, [], dict(zip(products, stocks)))
        print("answers: %d processor kills before commit; %d HTTP answers and %d recorded answers "
              "equal the committed decisions (0 differences), %d of them given from a transaction "
              "that was then killed; audit: %s" % (len(crashes), compared, len(answers), before_commit,
                                                   line[0].strip()))

        # read your writes, and the payment accepted right after the 201
        pid = s.create_product(stock=10, name="answers-ryw")
        for _ in range(5):
            _, tok = s.member()
            body = expect(s.order(tok, pid), 201)
            st, _, o = s.request("GET", "/api/orders/%s" % body["order_id"], token=tok)
            assert st == 200 and o["status"] == "RESERVED", (st, o)
            st, _, paid = s.request("POST", "/api/orders/%s/payment" % body["order_id"], {}, tok)
            assert st == 200 and paid["status"] == "PAID", (st, paid)
        print("answers: read your writes (RESERVED at once) and payment accepted, 5 of 5")


def scenario_outage(bindir):
    """Kafka away: every order is answered 503 with Retry-After within about the decision
    wait (FLASHSALE_COMMAND_TIMEOUT_MS, 2 s), not after tens of seconds, and an order answered
    503 never becomes an order: with the broker back, the log holds exactly the orders that
    were answered 201 or 202 (or 504 ORDER_OUTCOME_UNKNOWN, which may exist), and orders flow
    again.

    Then the broker frozen (SIGSTOP) for 8 s while orders arrive: their requests sit unread in
    the broker's socket and are appended after it resumes, long after the API gave up on them
    (503 or 504). The fence decides each such command TIMED_OUT (appended after its
    accept_by), so no order answered 503 is reserved, whatever the producer reported; and
    every command record carries the broker's append time (LogAppendTime)."""
    with System(bindir) as s:
        pid = s.create_product(stock=100, name="outage")
        member, tok = s.member()
        accepted, unknown = set(), set()

        def place(headers=None):
            st, h, body = s.order(tok, pid, headers=headers)
            if st in (201, 202):
                accepted.add(body["order_id"])
            elif st == 504:
                assert body["error"]["code"] == "ORDER_OUTCOME_UNKNOWN", body
                unknown.add(h["Location"].rsplit("/", 1)[1])
            return st, h, body

        expect(place(), 201)  # the path works, the producer knows the topic's leaders
        s.kafka("stop")
        refused, took = 0, []
        try:
            for i in range(8):
                t0 = time.monotonic()
                st, h, body = place({"Idempotency-Key": "outage-%d" % i})
                took.append(time.monotonic() - t0)
                # a stopped broker has nothing in flight: each failure is definitive
                assert st == 503, (st, body)
                assert body["error"]["code"] == "UNAVAILABLE", body
                assert h.get("Retry-After") == "1", h
                refused += 1
            # a checkout (items: a command to orders.commands, decided by the order saga, with
            # no fence): never "accepted" (202) while Kafka has not confirmed its command
            st, h, body = s.request("POST", "/api/orders", {"items": [{"product_id": pid, "quantity": 1}]}, tok)
            assert st == 504 and body["error"]["code"] == "ORDER_OUTCOME_UNKNOWN", (st, body)
            assert h.get("Location", "").startswith("/api/orders/") and h.get("Retry-After"), h
            print("outage: a checkout answered 504 ORDER_OUTCOME_UNKNOWN (was 202 before its command was durable)")
        finally:
            s.kafka("start")
        print("outage: %d orders answered 503 in %s s" % (refused, " ".join("%.1f" % t for t in took)))
        # the broker back: orders flow again (once the API's producer has reconnected)
        deadline = time.time() + 90
        while place()[0] != 201:
            assert time.time() < deadline, "no order was reserved within 90 s of the broker's return"
            time.sleep(1)
        # the same Idempotency-Keys again: each makes a new order (the 503 released them)
        for i in range(refused):
            expect(place({"Idempotency-Key": "outage-%d" % i}), 201)
        time.sleep(3)  # anything that could have lingered in the producer has long been sent
        ids = {r["value"]["order_id"] for r in s.dump("inventory.commands")
               if r.get("type") == "ReserveStock" and r["value"]["member_id"] == member}
        ghosts = ids - accepted - unknown
        assert not ghosts, "orders in the log that were answered 503: %s" % sorted(ghosts)[:5]
        assert accepted <= ids, "accepted orders missing from the log: %s" % sorted(accepted - ids)[:5]
        s.wait_all_decided(timeout=60)
        check_log(s, accepted)
        print("outage: broker back; the log holds exactly the %d orders answered 201/202 (%d answered "
              "504, %d of them in the log), none of the %d answered 503"
              % (len(accepted), len(unknown), len(unknown & ids), refused))

        # ---- the broker frozen mid-sale ----
        frozen_member, ftok = s.member()
        answers = {}
        lock = threading.Lock()

        def frozen_order(i):
            t0 = time.monotonic()
            st, h, body = s.order(ftok, pid)
            oid = None
            if st in (201, 202):
                oid = body["order_id"]
            elif st == 504:
                oid = h["Location"].rsplit("/", 1)[1]
            with lock:
                answers[i] = (st, body, oid, time.monotonic() - t0)

        s.kafka("pause")
        try:
            workers = []
            for i in range(12):
                w = threading.Thread(target=frozen_order, args=(i,))
                w.start()
                workers.append(w)
                time.sleep(0.25)
            time.sleep(max(0.0, 8 - 12 * 0.25))
        finally:
            s.kafka("resume")
        for w in workers:
            w.join(60)
        statuses = collections.Counter(a[0] for a in answers.values())
        assert set(statuses) <= {503, 504}, statuses  # nothing can be decided while frozen
        for st, body, _, dt in answers.values():
            assert dt < 2.0 + 1.5, "an answer took %.1f s while the broker was frozen" % dt
            if st == 503:  # not taken (nothing is decided while the broker is frozen)
                assert body["error"]["code"] in ("UNAVAILABLE", "ORDER_TIMED_OUT"), body
        deadline = time.time() + 90
        while place()[0] != 201:
            assert time.time() < deadline, "no order was reserved within 90 s of the broker's resumption"
            time.sleep(1)
        time.sleep(3)
        s.wait_all_decided(timeout=60)
        cmds = [r for r in s.dump("inventory.commands") if r.get("type") == "ReserveStock"]
        assert cmds and all(r["timestamp_type"] == "LogAppendTime" for r in cmds), \
            "inventory.commands records without the broker's append time"
        frozen = {r["value"]["order_id"]: r for r in cmds if r["value"]["member_id"] == frozen_member}
        decision = {}
        for r in s.dump("inventory.events"):
            v = r.get("value") or {}
            if r.get("type") in ("StockReserved", "StockRejected") and v.get("order_id") in frozen:
                decision[v["order_id"]] = (r["type"], v.get("reason"))
        # (the 503 answers name no order: the frozen member's orders in the log are traced by
        # the ones that were answered 504 and named)
        named = {a[2] for a in answers.values() if a[2]}
        for oid, r in frozen.items():
            assert oid in decision, "order %s appended after the freeze was never decided" % oid
            accept_by = r["value"].get("accept_by")  # an Avro union in JSON: {"long": ms}
            assert isinstance(accept_by, dict) and accept_by["long"] > 0, r["value"]
            late = r["timestamp"] > accept_by["long"]
            if late:
                assert decision[oid] == ("StockRejected", "TIMED_OUT"), (oid, decision[oid])
            elif oid not in named:
                raise AssertionError("order %s was appended in time but its answer was a 503" % oid)
        fenced = sum(1 for d in decision.values() if d == ("StockRejected", "TIMED_OUT"))
        print("outage: broker frozen 8 s: %d orders answered %s; %d of them reached the log (%d of "
              "those answered 503), %d appended after their deadline and refused TIMED_OUT, %d "
              "reserved (each answered 504)"
              % (len(answers), dict(statuses), len(frozen), sum(1 for o in frozen if o not in named),
                 fenced, sum(1 for d in decision.values() if d[0] == "StockReserved")))


def metric(s, name):
    """The API's value of a counter without labels (/metrics, straight to the API)."""
    st, _, text = s.request("GET", "/metrics", direct=True)
    assert st == 200, st
    values = [l.split()[1] for l in text.splitlines() if l.startswith(name + " ")]
    assert len(values) == 1, (name, values)
    return float(values[0])


def scenario_late_copy(bindir):
    """A command in the log twice, the waiter's copy appended after its accept_by: the
    idempotent producer can do that when it re-sends a possibly persisted batch under a new
    epoch. The processor decides the first copy, appended in time, so the order is RESERVED,
    and the API, which hears only of the later append, must not answer 503 ORDER_TIMED_OUT
    (it did: a buyer told "no" while a unit was reserved for them). The copies are made by
    FLASHSALE_TEST_COMMAND_COPY_MS; the processor is paused until both are in the log, as a
    killed broker's outage kept it from deciding."""
    def audited():
        """The audit's summary and its JSON report; it must pass."""
        rc, out, report = audit(bindir, "--no-read-models")
        assert rc == 0, out[-3000:]
        return out, report

    with System(bindir, api_env={"FLASHSALE_TEST_COMMAND_COPY_MS": "2600"}) as s:
        pid = s.create_product(stock=10, name="late copy")
        member, tok = s.member()
        s.wait_all_decided(timeout=60)
        _, before = audited()  # (the topics are the whole run's: other tests may repeat commands too)
        s.procs["inv-a"].send_signal(signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            st, h, body = s.order(tok, pid)
            took = time.monotonic() - t0
        finally:
            s.procs["inv-a"].send_signal(signal.SIGCONT)
        assert st == 202 and body["status"] == "PENDING", (st, body)
        assert h.get("Location") == "/api/orders/" + body["order_id"], h
        oid = body["order_id"]
        assert metric(s, "flashsale_orders_appended_late_total") == 1  # counted, as a sign
        s.wait_all_decided(timeout=60)
        copies = [r for r in s.dump("inventory.commands")
                  if r.get("type") == "ReserveStock" and r["value"]["order_id"] == oid]
        assert len(copies) == 2, copies
        accept_by = copies[0]["value"]["accept_by"]["long"]
        assert copies[0]["timestamp"] <= accept_by < copies[1]["timestamp"], \
            [(c["timestamp"], accept_by) for c in copies]
        committed = committed_decisions(s)
        assert committed[oid][:2] == ("RESERVED", ""), committed.get(oid)
        deadline = time.time() + 30
        while True:  # the order's own view, as the buyer follows the Location
            st, _, o = s.request("GET", "/api/orders/" + oid, token=tok)
            if st == 200 and o["status"] == "RESERVED":
                break
            assert time.time() < deadline, (st, o)
            time.sleep(0.2)
        answers = [r["value"] for r in s.dump("orders.answers")
                   if r.get("type") == "OrderAnswered" and r["value"]["order_id"] == oid]
        assert [(a["status"], a["http_status"]) for a in answers] == [("PENDING", 202)], answers
        out, after = audited()
        line = [l for l in out.splitlines() if "answers:" in l]
        assert line and " 0 difference(s)" in line[0], out
        assert after["repeated_commands"] - before["repeated_commands"] == 1, \
            (before["repeated_commands"], after["repeated_commands"])  # the second copy, counted
        check_log(s, [oid])
        print("late copy: appended in time and again %d ms after accept_by; answered 202 in %.1f s "
              "(not 503), decided RESERVED from the first copy; audit: %s"
              % (copies[1]["timestamp"] - accept_by, took, line[0].strip()))

    # The only copy late (FLASHSALE_TEST_COMMAND_DELAY_MS): refused TIMED_OUT, answered 503
    # from that decision, and its Idempotency-Key freed: the same request again is a new order.
    with System(bindir, api_env={"FLASHSALE_TEST_COMMAND_DELAY_MS": "2600",
                                 "FLASHSALE_DECISION_WAIT_MS": "5000"}) as s:
        pid = s.create_product(stock=10, name="late only")
        member, tok = s.member()
        key = {"Idempotency-Key": "late-" + uuid.uuid4().hex[:8]}
        st, h, body = s.order(tok, pid, headers=key)
        assert st == 503 and body["error"]["code"] == "ORDER_TIMED_OUT", (st, body)
        assert h.get("Retry-After"), h
        st, _, again = s.order(tok, pid, headers=key)  # sent again: a new order, late again
        assert st == 503 and again["error"]["code"] == "ORDER_TIMED_OUT", (st, again)
        s.wait_all_decided(timeout=60)
        mine = [r for r in s.dump("inventory.commands")
                if r.get("type") == "ReserveStock" and r["value"]["member_id"] == member]
        assert len({r["value"]["order_id"] for r in mine}) == 2, mine  # two orders, not one twice
        committed = committed_decisions(s)
        assert all(committed[r["value"]["order_id"]][:2] == ("REJECTED", "TIMED_OUT") for r in mine)
        print("late only: refused TIMED_OUT and answered 503 from the decision; the same "
              "Idempotency-Key again made a second order (the key was freed)")


def resent_answers(s):
    """The API's log lines (since this System started it) of answers recorded again by the
    producer that replaced a failed one."""
    path = os.path.join(s.logdir, "test-api.log")
    with open(path, "rb") as f:
        f.seek(s._log_start[path])
        return [json.loads(l) for l in f.read().decode(errors="replace").splitlines()
                if "recorded by its replacement" in l]


def answers_of(s, ids, timeout=30):
    """How many times each order's answer is in orders.answers, once every one of ids is."""
    deadline = time.time() + timeout
    while True:
        answered = collections.Counter(r["value"]["order_id"] for r in s.dump("orders.answers")
                                       if r.get("type") == "OrderAnswered")
        if set(ids) <= set(answered):
            return answered
        assert time.time() < deadline, "answers not recorded: %s" % sorted(set(ids) - set(answered))
        time.sleep(0.5)


def scenario_producer_fatal(bindir):
    """The API's producers fail fatally, as an idempotent producer does when the broker reports
    a lost sequence (FLASHSALE_TEST_PRODUCER_FATAL_AT=3: at the third order's command, both
    the commands' and the answers' producer). A fatal producer fails every produce from then
    on: before the keeper replaced it, every later order was answered 503 while /readyz
    stayed green. Now the order that met the failure is answered 503 (not placed, its
    Idempotency-Key free again), and within seconds orders are placed and answered again. Every
    answer is recorded once, those the failed producer held by its replacement, and the audit
    finds nothing amiss."""
    # the answers linger 3 s (100 ms by default), so that the first two orders' answers are
    # surely still held by the answers' producer when it fails: they must reach the log by its
    # replacement
    with System(bindir, api_env={"FLASHSALE_TEST_PRODUCER_FATAL_AT": "3",
                                 "FLASHSALE_ANSWERS_LINGER_MS": "3000"}) as s:
        pid = s.create_product(stock=100, name="fatal producer")

        def reserve(n):
            """n orders by new members, each answered 201 RESERVED: their ids."""
            ids = []
            for _ in range(n):
                _, tok = s.member()
                st, _, body = s.order(tok, pid)
                assert st == 201 and body["status"] == "RESERVED", (st, body)
                ids.append(body["order_id"])
            return ids
        placed = reserve(2)
        third, tok3 = s.member()
        key = {"Idempotency-Key": "fatal-" + uuid.uuid4().hex[:8]}
        st, h, body = s.order(tok3, pid, headers=key)
        assert st == 503 and h.get("Retry-After"), (st, h, body)
        t0 = time.monotonic()
        refused = 0
        while True:  # the same request again (its key is free: nothing was placed)
            st, _, body = s.order(tok3, pid, headers=key)
            if st == 201:
                break
            assert st in (503, 429), (st, body)  # 429: the member's retries were too many
            refused += st == 503
            assert time.monotonic() - t0 < 15, "orders still refused %.1f s after the failure" % (
                time.monotonic() - t0)
            time.sleep(0.1 if st == 503 else 1.0)
        recovered = time.monotonic() - t0
        placed.append(body["order_id"])
        after = reserve(5)
        placed += after
        # an order answered as soon as it is durable waits for its delivery report, which the
        # order front hears through the replacement's queue
        _, tok = s.member()
        st, h, body = s.order(tok, pid, headers={"Prefer": "respond-async"})
        assert st == 202 and body["status"] == "PENDING" and h.get("Location"), (st, h, body)
        placed.append(body["order_id"])
        other = s.create_product(stock=1, name="after the failure")  # another command, same producer
        st, _, stock = s.request("GET", "/api/products/%s/stock" % other)
        assert st == 200 and stock["available"] == 1, (st, stock)
        deadline = time.time() + 10
        while True:  # ready again (a check in the failure's window is kept for a second)
            st, _, ready = s.request("GET", "/readyz")
            if st == 200 and ready["kafka"]["status"] == "ok":
                break
            assert time.time() < deadline, (st, ready)
            time.sleep(0.2)
        assert metric(s, "flashsale_kafka_producer_renewals_total") == 2
        answered = answers_of(s, placed)  # the failed producer's unsent ones by its replacement
        assert all(answered[o] == 1 for o in placed), [(o, answered[o]) for o in placed]
        resent = resent_answers(s)
        assert sum(r["answers"] for r in resent) >= 2 and not any(r["not_recorded"] for r in resent), resent
        s.wait_all_decided(timeout=60)
        committed = committed_decisions(s)
        assert all(committed[o][:2] == ("RESERVED", "") for o in placed), [committed.get(o) for o in placed]
        mine = [r for r in s.dump("inventory.commands")
                if r.get("type") == "ReserveStock" and r["value"]["member_id"] == third]
        assert len(mine) == 1, mine  # the refused order was never appended; its retry was, once
        rc, out, _ = audit(bindir, "--no-read-models")
        assert rc == 0, out[-3000:]
        line = [l for l in out.splitlines() if "answers:" in l]
        assert line and " 0 difference(s)" in line[0], out
        check_log(s, placed)
        print("producer fatal: the failing order answered 503, %d retries refused, placed again "
              "%.2f s after its 503; both producers replaced (renewals 2); %d orders after it "
              "reserved and one answered 202 at its delivery report; all %d answers recorded once, %d "
              "of them by the replacement; audit: %s"
              % (refused, recovered, len(after), len(placed), sum(r["answers"] for r in resent),
                 line[0].strip()))

    # The answers' producer alone fails, at the second answer (FLASHSALE_TEST_ANSWERS_FATAL_AT):
    # that answer is refused by it (ERR__FATAL) and the first, lingering, is purged. No buyer
    # notices (every order 201), and both answers reach the log by the replacement.
    with System(bindir, api_env={"FLASHSALE_TEST_ANSWERS_FATAL_AT": "2",
                                 "FLASHSALE_ANSWERS_LINGER_MS": "3000"}) as s:
        pid = s.create_product(stock=10, name="fatal answers")
        placed = []
        for _ in range(4):
            _, tok = s.member()
            st, _, body = s.order(tok, pid)
            assert st == 201 and body["status"] == "RESERVED", (st, body)
            placed.append(body["order_id"])
        answered = answers_of(s, placed)
        assert all(answered[o] == 1 for o in placed), [(o, answered[o]) for o in placed]
        resent = resent_answers(s)
        # the first (purged) and the second (refused), and any later one the keeper had not
        # swapped for yet
        assert sum(r["answers"] for r in resent) >= 2 and not any(r["not_recorded"] for r in resent), resent
        assert metric(s, "flashsale_kafka_producer_renewals_total") == 1
        print("answers' producer fatal: 4 orders reserved; %d answers (held, or refused by the "
              "failed producer) recorded by the replacement, every answer once"
              % sum(r["answers"] for r in resent))


def scenario_notifier_dead_letter(bindir):
    """A reader's dead letters are in the log before it moves past their records
    (fs_kafka_dlq_settle). The notifier, told that its first two dead letters' deliveries
    failed (FLASHSALE_TEST_DLQ_FAIL=2), reads the undecodable record A again until its dead
    letter is in the log: three copies of A's dead letter, all with A's reason (the two it was
    told failed are in the log too), A handled once (read again, it is dead-lettered at once),
    and B, undecodable after A in the same partition, only after them; nothing stops the
    notifier."""
    import subprocess
    with System(bindir) as s:
        key = "notifier-dlq-%s" % uuid.uuid4()
        raw = os.path.join(bindir, "tests", "produce_raw")
        subprocess.run([raw, "notifications", key, "--hex", "7b22"], check=True)  # A
        subprocess.run([raw, "notifications", key, "--hex", "7b23"], check=True)  # B, after A
        src = [r for r in s.dump("notifications") if r["key"] == key]
        assert len(src) == 2, src
        a, b = str(src[0]["offset"]), str(src[1]["offset"])
        spool = os.path.join(s.logdir, "notifier-dlq-spool")
        logp = os.path.join(s.logdir, "test-notifier-dlq.log")
        log_at = os.path.getsize(logp) if os.path.exists(logp) else 0  # (a kept run's log grows)
        # a group of its own (it reads the shared topic from its start, sending earlier tests'
        # notifications to this spool at once); only this test's dead letters told failed
        s.start_notifier(spool, {"FLASHSALE_TEST_DLQ_FAIL": "2", "FLASHSALE_TEST_DLQ_FAIL_KEY": key,
                                 "FLASHSALE_NOTIFIER_GROUP": "notifier-dlq-%s" % uuid.uuid4(),
                                 "FLASHSALE_NOTIFY_RATE_PER_S": "100000"},
                         name="notifier-dlq")
        ours = lambda r: r["headers"].get("dlq-topic") == "notifications" and r["key"] == key  # noqa: E731
        deadline = time.time() + 180
        while True:
            dead = [r for r in s.dump("deadletter") if ours(r)]
            if any(r["headers"]["dlq-offset"] == b for r in dead) or time.time() > deadline:
                break
            time.sleep(0.5)
        offsets = [r["headers"]["dlq-offset"] for r in dead]  # (one partition: in the log's order)
        assert offsets == [a, a, a, b], "dead letters of A (%s) and B (%s): %s" % (a, b, offsets)
        reasons = {r["headers"]["dlq-reason"] for r in dead[:3]}
        assert len(reasons) == 1 and "" not in reasons, "A's copies give other reasons: %s" % reasons
        with open(logp) as f:
            f.seek(log_at)
            log = f.read()
        log = log[:log.rfind("\n") + 1]  # (the notifier is still writing: whole lines only)
        part = src[0]["partition"]
        lines = [j for j in map(json.loads, filter(None, log.splitlines()))
                 if j.get("partition") == part and str(j.get("offset")) in (a, b)]
        retries = [j["offset"] for j in lines if j.get("msg") == "dead letter not in the log; its record is read again"]
        assert retries == [int(a), int(a)], "expected A read again twice: %s" % retries
        # A read again is dead-lettered at once, not decoded (or delivered) a second time
        handled = [(j["partition"], j["offset"]) for j in lines
                   if j.get("msg") == "undecodable notification dead-lettered"]
        assert sorted(handled) == [(part, int(a)), (part, int(b))], "A and B each decoded once: %s" % handled
        assert s.procs["notifier-dlq"].poll() is None, "the notifier stopped"
        s.stop_processor("notifier-dlq")
        print("notifier dead letter: A's dead letter written until the log had it (3 copies, 2 "
              "retries), B's after it; the notifier still running")


if __name__ == "__main__":
    bindir, name = sys.argv[1], sys.argv[2]
    globals()["scenario_" + name](bindir)
    print("core %s: PASS" % name)
