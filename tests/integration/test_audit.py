#!/usr/bin/python3
"""flashsale-audit on the real log: it passes on what the system wrote (this scenario's world
and everything earlier tests left in the shared log), answers "what was the stock of product
X at time T", and fails, naming the order, on a tampered copy of the log holding a forged
oversell and a forged leaked reservation (forged with Apache Avro for Python, independent of
the project's codec). Usage: test_audit.py BUILD_DIR"""
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import avro.io
import avro.schema

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fsharness import System, audit  # noqa: E402
from test_core import expect  # noqa: E402
from test_sagas import DAY, wait_status  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMAS = os.path.join(HERE, "..", "..", "schemas")
sys.path.insert(0, os.path.join(HERE, "..", "interop"))
from decode_with_python_avro import crc64_avro  # noqa: E402


def encode(schema_file, datum):
    schema = avro.schema.parse(open(os.path.join(SCHEMAS, schema_file)).read())
    buf = io.BytesIO()
    avro.io.DatumWriter(schema).write(datum, avro.io.BinaryEncoder(buf))
    fp = crc64_avro(schema.canonical_form.encode()).to_bytes(8, "little")
    return b"\xc3\x01" + fp + buf.getvalue()


def main(bindir):
    # (a decision wait of 10 s: the processor restarted with a crash point below must have
    # its partitions back and answer within it, or the order is 202 and nothing is tested)
    with System(bindir, sagas=True, saga_env=DAY, proc_env={"FLASHSALE_PAYMENT_WINDOW_MS": "2000"},
                api_env={"FLASHSALE_DECISION_WAIT_MS": "10000"}) as s:
        # the read models live too, so that the audit of the real log compares them (whatever
        # earlier tests left in them, the projectors catch up from their stored offsets)
        s.start_projector("postgres")
        s.start_projector("redis")
        roomy = s.create_product(stock=5, limit=2, name="audit-roomy")
        scarce = s.create_product(stock=1, name="audit-scarce")
        _, tok = s.member()
        a = expect(s.order(tok, roomy), 201)["order_id"]
        t_between = int(time.time() * 1000)
        time.sleep(0.3)
        expect(s.request("POST", "/api/orders/%s/payment" % a, {}, tok), 200)
        buyer_b, tok_b = s.member()
        b = expect(s.order(tok_b, scarce), 201)["order_id"]
        expect(s.request("POST", "/api/orders/%s/payment" % b, {}, tok_b), 200)  # sold for good
        expect(s.order(s.member()[1], scarce), 409, "SOLD_OUT")
        expire = expect(s.order(s.member()[1], roomy), 201)["order_id"]
        wait_status(s, s.admin, expire, "EXPIRED", timeout=15)
        wait_status(s, tok, a, "DELIVERED", timeout=15)
        wait_status(s, tok_b, b, "DELIVERED", timeout=15)
        # quiet: the delivered orders' return windows closed (3 shop days of 1 s: the saga's
        # closing snapshot), and no inventory or order event in flight while the audit reads
        # (a snapshot written during it puts the read models ahead of what it read)
        def closed(oid):
            return any(r.get("type") == "OrderStatusChanged" and r["value"]["order_id"] == oid
                       and "RETURN_WINDOW_CLOSED" in json.dumps(r["value"]) for r in s.dump("orders.events"))
        deadline = time.time() + 30
        while not (closed(a) and closed(b)):
            assert time.time() < deadline, "the return windows of the delivered orders never closed"
            time.sleep(0.5)
        # The topics hold every earlier test's orders too, and this test's order saga, started
        # on them with its short shop days, may still be moving some of them on (a shipment,
        # a closing window) a few seconds apart. So: quiet for 3 s, and should the read models
        # still be ahead of what the audit read (written to after it read the log), again.
        def quiet(seconds=3):
            n, since = -1, time.time()
            while time.time() - since < seconds:
                m = len(s.dump("inventory.events")) + len(s.dump("orders.events"))
                if m != n:
                    n, since = m, time.time()
                time.sleep(0.5)

        for _ in range(5):
            quiet()
            rc, out, rep = audit(bindir)
            why = [v.get("why", "") for v in rep.get("read_models", {}).values() if not v.get("compared")]
            if not any(w.startswith("ahead at") for w in why):
                break
            print("audit: the read models moved on after it read the log (%s): again" % "; ".join(why))
        assert rc == 0 and rep["ok"], "audit of the real log failed:\n%s%s" % (out, json.dumps(rep["violations"][:5], indent=1))
        assert rep["replayed"] >= 8, rep  # this scenario alone sends 8 inventory commands
        assert rep["read_models"]["postgres"]["compared"], rep["read_models"]
        print("audit of the real log: OK, %d commands replayed, %d inventory events"
              % (rep["replayed"], rep["read"]["inventory_events"]))

        # Redis moving on while the audit reads its rows (its projector writes a batch's rows,
        # then its offsets; Redis is no snapshot): held by the audit's test hook after it
        # checked the offsets, the test changes a product's row as a projector would, with
        # (1) an offset moved (the batch done meanwhile), or (2) only the batch counter begun
        # (its offsets not written yet at the audit's second read), and puts all back once the
        # audit said it reads again. The changed row must void that attempt, not count as a
        # difference.
        # (The system is quiet here, as for the audit above: a real batch meanwhile would
        # move the counters too. The test's values are far from the projector's own.)
        gen = s.redis("GET", "fs:rm:gen")[0]
        okey, pkey = "fs:rm:%s:offsets" % gen, "fs:rm:%s:p:%s" % (gen, scarce)
        # put back only what is still the test's own value (a projector's write stays)
        cas = "if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) end"

        def audit_while_moved(change, why, held=True):
            """change(stored hash) -> [(key, field, old, new)]; why(stored hash) -> the reason
            the first attempt must give."""
            flat = s.redis("HGETALL", okey)
            stored = dict(zip(flat[::2], flat[1::2]))
            assert stored.get("_begun") and stored.get("_begun") == stored.get("_done"), stored
            avail = s.redis("HGET", pkey, "available")[0]
            changes = [(pkey, "available", avail, str(int(avail) + 7))] + change(stored)
            hold = "/tmp/audit-hold-%s" % uuid.uuid4().hex[:8]
            open(hold, "w").close()
            out_json = hold + ".json"
            if not held:  # changed before the audit starts
                for key, f, old, new in changes:
                    s.redis("HSET", key, f, new)
            p = subprocess.Popen([os.path.join(bindir, "projections", "flashsale-audit"), "--read-models", "--json",
                                  out_json], env=dict(os.environ, FLASHSALE_TEST_AUDIT_HOLD=hold if held else ""),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                deadline = time.time() + 120
                while held and not os.path.exists(hold + ".held"):
                    assert time.time() < deadline and p.poll() is None, "the audit never reached its hold"
                    time.sleep(0.05)
                for key, f, old, new in changes if held else ():
                    s.redis("HSET", key, f, new)
                open(hold + ".go", "w").close()
                err = []
                for line in p.stderr:  # until the first attempt is dropped
                    err.append(line)
                    if "reading again" in line:
                        break
                for key, f, old, new in changes:
                    s.redis("EVAL", cas, 1, key, f, new, old)
                stdout, rest = p.communicate(timeout=300)
                err.append(rest)
                rep = json.load(open(out_json))
            finally:
                if p.poll() is None:
                    p.kill()
                for key, f, old, new in changes:
                    s.redis("EVAL", cas, 1, key, f, new, old)
                for f in (hold, hold + ".held", hold + ".go", out_json):
                    if os.path.exists(f):
                        os.unlink(f)
            err = "".join(err)
            assert p.returncode == 0 and rep["ok"], "a moving Redis counted as violations:\n%s%s" % (stdout, err[-2000:])
            assert "reading again" in err and why(stored) in err, (why(stored), err[-2000:])
            assert rep["read_models"]["redis"]["compared"], rep["read_models"]

        def offset_moved(st):
            field = next(f for f in sorted(st) if not f.startswith("_"))
            return [(okey, field, st[field], str(int(st[field]) + 1000000))]

        def batch_begun(st):
            return [(okey, "_begun", st["_begun"], str(int(st["_begun"]) + 1000000))]

        audit_while_moved(offset_moved, lambda st: "ahead at %s: the projector moved on"
                          % next(f for f in sorted(st) if not f.startswith("_")))
        print("audit while Redis's rows and offsets moved under its reads: the attempt was read again, then OK")
        audit_while_moved(batch_begun, lambda st: "ahead at _begun: the projector moved on")
        print("audit while a batch of Redis's began under its reads (rows, no offsets yet): read again, then OK")
        audit_while_moved(batch_begun, lambda st: "ahead: a batch of the projector was being written (batch %d begun, %s done)"
                          % (int(st["_begun"]) + 1000000, st["_done"]), held=False)
        print("audit of a Redis with a batch begun and not done: read again, then OK")

        # --at on an answer given before its transaction aborted: the buyer is answered at the
        # decision, the processor is killed before the commit, and its restart writes the same
        # decision again, a second later; at a time between the two the stock already holds it
        redo = s.create_product(stock=3, name="audit-redo")
        s.stop_processor("inv-a")
        s.proc_env["FLASHSALE_CRASH_BEFORE_COMMIT"] = "1"
        s.start_processor("inv-a")
        c = expect(s.order(s.member()[1], redo), 201)["order_id"]
        t_answered = int(time.time() * 1000)
        assert s.procs["inv-a"].wait(timeout=30) == -signal.SIGKILL, "the crash point did not fire"
        del s.procs["inv-a"]
        time.sleep(1.2)
        s.proc_env["FLASHSALE_CRASH_BEFORE_COMMIT"] = "0"
        s.start_processor("inv-a")
        s.wait_all_decided()
        written = [r["timestamp"] for r in s.dump("inventory.events")
                   if r.get("type") == "StockReserved" and r["value"]["order_id"] == c]
        assert len(written) == 1 and written[0] > t_answered + 1000, (written, t_answered)
        rc, out, rep = audit(bindir, "--at", str(t_answered), "--product", redo)
        assert rc == 0 and rep["ok"], "audit --at failed:\n%s%s" % (out, json.dumps(rep["violations"][:5], indent=1))
        assert rep["product"]["reserved"] == 1 and rep["product"]["available"] == 2, rep["product"]
        print("audit --at between an answer and its decision's late write (%d ms later): %s"
              % (written[0] - t_answered, rep["product"]))

        # on a live system: orders placed and paid while the audit reads the log (the
        # decisions it reads last must not answer commands it has not read, and commands the
        # processor has not decided yet are pending, not violations)
        live = s.create_product(stock=10000, limit=0, name="audit-live")
        stop = threading.Event()
        placed = []

        def buy():
            while not stop.is_set():
                _, t = s.member()
                st, _, body = s.request("POST", "/api/orders", {"product_id": live, "quantity": 1}, t,
                                        direct=True)
                if st == 201:
                    placed.append(body["order_id"])
                    s.request("POST", "/api/orders/%s/payment" % body["order_id"], {}, t, direct=True)
        buyers = [threading.Thread(target=buy) for _ in range(4)]
        for b_ in buyers:
            b_.start()
        try:
            for i in range(3):
                time.sleep(0.5)
                rc, out, rep = audit(bindir, "--no-read-models")
                assert rc == 0 and rep["ok"], "audit of a live log failed:\n%s%s" % (
                    out, json.dumps(rep["violations"][:5], indent=1))
                print("audit while orders flow (%d placed so far): OK, %d replayed, %d not decided yet"
                      % (len(placed), rep["replayed"], rep["pending_commands"]))
        finally:
            stop.set()
            for b_ in buyers:
                b_.join()
        assert len(placed) >= 10, "the live phase placed only %d orders" % len(placed)

        rc, out, rep = audit(bindir, "--at", str(t_between), "--product", roomy)
        assert rep["product"]["reserved"] == 1 and rep["product"]["sold"] == 0, rep["product"]
        print("audit --at: product %s had %s" % (roomy, rep["product"]))

        # a tampered copy: forged oversell of the sold-out product, forged leaked reservation
        prefix = "tamper-%s." % uuid.uuid4().hex[:8]
        for t in ("inventory.commands", "inventory.events", "orders.events", "orders.answers"):
            subprocess.run([os.path.join(bindir, "tests", "copy_topic"), t, prefix + t], check=True,
                           capture_output=True)
        defined = {r["value"]["product_id"]: r["partition"] for r in s.dump("inventory.events")
                   if r.get("type") == "ProductDefined"}
        now = int(time.time() * 1000)
        forged = {"oversell": ("forged-oversell-" + uuid.uuid4().hex[:6], scarce),
                  "leak": ("forged-leak-" + uuid.uuid4().hex[:6], roomy)}
        for kind, (oid, pid) in forged.items():
            datum = {"order_id": oid, "product_id": pid, "member_id": "mallory", "quantity": 1,
                     "item_index": 0, "item_count": 1, "available": 0, "reserved": 1, "sold": 0,
                     "pay_by": now - 600000, "unit_price": 1000, "command_offset": 999999,
                     "occurred_at": now - 1200000}
            path = "/tmp/%s.bin" % oid
            open(path, "wb").write(encode("inventory/StockReserved.avsc", datum))
            # same partition as the product's other events: its key hashes there
            subprocess.run([os.path.join(bindir, "tests", "produce_raw"), prefix + "inventory.events",
                            pid, "--file", path, "StockReserved"], check=True)
            os.unlink(path)
        # forged answers: a sold-out answer given to the buyer of b (committed: RESERVED), and a
        # sold-out answer "from the view" an hour before the product sold out
        view_oid = "forged-view-" + uuid.uuid4().hex[:6]
        for oid, src, at in ((b, "reply", now), (view_oid, "view", now - 3600000)):
            datum = {"order_id": oid, "member_id": "mallory", "product_id": scarce, "quantity": 1,
                     "status": "REJECTED", "reason": "SOLD_OUT", "pay_by": 0, "source": src,
                     "http_status": 409, "answered_at": at}
            path = "/tmp/%s.bin" % oid
            open(path, "wb").write(encode("orders/OrderAnswered.avsc", datum))
            subprocess.run([os.path.join(bindir, "tests", "produce_raw"), prefix + "orders.answers",
                            oid, "--file", path, "OrderAnswered"], check=True)
            os.unlink(path)
        # and an answer that names no order (what the API once wrote when a saga snapshot
        # overwrote a buyer's decision): it cannot be held to a decision, so it is a violation
        datum = {"order_id": "", "member_id": "", "product_id": "", "quantity": 1, "status": "REJECTED",
                 "reason": "SOLD_OUT", "pay_by": 0, "source": "reply", "http_status": 409, "answered_at": now}
        path = "/tmp/forged-empty-%s.bin" % uuid.uuid4().hex[:6]
        open(path, "wb").write(encode("orders/OrderAnswered.avsc", datum))
        subprocess.run([os.path.join(bindir, "tests", "produce_raw"), prefix + "orders.answers",
                        "", "--file", path, "OrderAnswered"], check=True)
        os.unlink(path)
        rc, out, rep = audit(bindir, "--topic-prefix", prefix)
        assert rc == 1 and not rep["ok"], "the audit accepted a tampered log:\n" + out
        found = {(v["check"], v["order_id"]) for v in rep["violations"]}
        assert ("oversell", forged["oversell"][0]) in found, found
        assert ("leak", forged["leak"][0]) in found, found
        assert ("replay", forged["oversell"][0]) in found, found  # answers no command
        assert ("answers", b) in found and ("answers", view_oid) in found, found
        unreadable = [v for v in rep["violations"] if v["check"] == "answers" and v["order_id"] == ""]
        assert len(unreadable) == 1 and "cannot be read" in unreadable[0]["detail"], unreadable
        assert rep["answers"]["differences"] == 2, rep["answers"]
        forged_ids = {oid for oid, _ in forged.values()} | {b, view_oid, ""}
        others = [v for v in rep["violations"] if v["order_id"] not in forged_ids]
        assert not others, "violations on orders nobody forged: %s" % others[:3]
        print("audit of the tampered copy: exit %d, %d violations, naming %s and %s, and the forged "
              "answers to %s and %s" % (rc, rep["violation_count"], forged["oversell"][0],
                                        forged["leak"][0], b, view_oid))


if __name__ == "__main__":
    main(sys.argv[1])
    print("audit: PASS")
