#!/usr/bin/python3
"""The inventory's windows set through the log (flashsale-admin retention), on the real broker
with the inventory processor, the API and both projectors:
  - before: a ReserveStock of an order made 3 minutes ago (a record forged with Apache Avro
    for Python, its id a UUIDv7 of that time) is decided, as the default window is a day;
  - `flashsale-admin retention --dedup-window 1m --sold-memory 10m` exits 0 and reports a
    RetentionSet on every partition, which inventory.events holds; bad windows exit 2 and
    write nothing, and a forged SetRetention out of range is refused (CommandRejected);
  - after: such an order is refused (CommandRejected, INVALID), not decided, and a buyer
    through the API is still served;
  - the processor, SIGKILLed and restarted, rebuilds the windows from its log (its log line)
    and still refuses such an order;
  - `--defaults` sets a day again, and the refusal point does not move back: such an order is
    still refused (a line once forgotten is never decided);
  - no reader dead-letters the new records, and flashsale-audit replays the whole log and
    passes.
Usage: test_retention.py BUILD_DIR"""
import json
import os
import signal
import subprocess
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fsharness import System  # noqa: E402
from test_audit import audit, encode  # noqa: E402
from test_core import expect  # noqa: E402


def uuid7_at(ms):
    """A UUIDv7 string whose time is ms (RFC 9562)."""
    b = bytearray(ms.to_bytes(6, "big") + os.urandom(10))
    b[6] = 0x70 | (b[6] & 0x0F)
    b[8] = 0x80 | (b[8] & 0x3F)
    return str(uuid.UUID(bytes=bytes(b)))


def admin(bindir, *args):
    r = subprocess.run([os.path.join(bindir, "tools", "flashsale-admin"), "retention"] + list(args),
                       capture_output=True, timeout=120)
    lines = [json.loads(l) for l in r.stdout.decode().splitlines() if l.strip()]
    return r.returncode, lines, r.stderr.decode()


def produce(bindir, topic, key, payload, event_type):
    path = "/tmp/retention-%s.bin" % uuid.uuid4().hex[:8]
    with open(path, "wb") as f:
        f.write(payload)
    try:
        subprocess.run([os.path.join(bindir, "tests", "produce_raw"), topic, key, "--file", path, event_type],
                       check=True, timeout=60)
    finally:
        os.unlink(path)


def answer_of(s, match, timeout=30):
    """The committed inventory event answering the first command for which match(record) holds."""
    deadline = time.time() + timeout
    while True:
        cmds = [r for r in s.dump("inventory.commands") if match(r)]
        if cmds:
            c = cmds[0]
            evs = [e for e in s.dump("inventory.events")
                   if e["partition"] == c["partition"] and (e.get("value") or {}).get("command_offset") == c["offset"]]
            if evs:
                return evs[0]
        assert time.time() < deadline, "no answer within %d s (command found: %s)" % (timeout, bool(cmds))
        time.sleep(0.5)


def old_order(s, bindir, product, age_ms=180000):
    """Forges a ReserveStock of an order made age_ms ago, sent now; returns its answer."""
    now = int(time.time() * 1000)
    order = uuid7_at(now - age_ms)
    payload = encode("inventory/ReserveStock.avsc", {
        "order_id": order, "product_id": product, "member_id": "retention-%s" % uuid.uuid4().hex[:8],
        "quantity": 1, "item_index": 0, "item_count": 1, "idempotency_key": None,
        "requested_at": now, "accept_by": None})
    produce(bindir, "inventory.commands", product, payload, "ReserveStock")
    return answer_of(s, lambda r: r.get("type") == "ReserveStock" and r["value"]["order_id"] == order)


def main(bindir):
    with System(bindir) as s:
        s.start_projector("postgres")
        s.start_projector("redis")
        product = s.create_product(stock=100, name="retention")
        dead_before = len(s.dump("deadletter"))

        ev = old_order(s, bindir, product)
        assert ev["type"] == "StockReserved", ev
        print("before: an order made 3 minutes ago is decided (%s)" % ev["type"])

        # bad windows: refused by the tool, nothing written
        n_set = len([r for r in s.dump("inventory.commands") if r.get("type") == "SetRetention"])
        for bad in (["--dedup-window", "10s", "--sold-memory", "10m"],
                    ["--dedup-window", "1m", "--sold-memory", "3651d"],
                    ["--dedup-window", "1x", "--sold-memory", "10m"],
                    ["--dedup-window", "1m"]):
            rc, _, err = admin(bindir, *bad)
            assert rc == 2, (bad, rc, err)
        assert len([r for r in s.dump("inventory.commands") if r.get("type") == "SetRetention"]) == n_set

        rc, lines, err = admin(bindir, "--dedup-window", "1m", "--sold-memory", "10m", "--actor", "test-ops")
        assert rc == 0, (rc, lines, err)
        summary = lines[-1]
        nparts = summary["partitions"]
        assert summary == {"dedup_window_ms": 60000, "sold_memory_ms": 600000, "partitions": nparts,
                           "set": nparts, "unanswered": 0}, summary
        assert sorted(l["partition"] for l in lines[:-1]) == list(range(nparts)), lines
        assert all(l["answer"] == "RetentionSet" for l in lines[:-1]), lines
        sets = {}
        for e in s.dump("inventory.events"):
            if e.get("type") == "RetentionSet":
                sets[e["partition"]] = e
        assert sorted(sets) == list(range(nparts)), sets
        for l in lines[:-1]:
            v = sets[l["partition"]]["value"]
            assert (v["dedup_window_ms"], v["sold_memory_ms"], v["actor_id"]) == (60000, 600000, "test-ops"), v
            assert v["command_offset"] == l["command_offset"], (v, l)
        print("flashsale-admin retention: RetentionSet on all %d partitions" % nparts)

        # a forged SetRetention out of range is refused by the processor
        payload = encode("inventory/SetRetention.avsc", {"dedup_window_ms": 1000, "sold_memory_ms": 600000,
                                                         "actor_id": "forger", "requested_at": int(time.time() * 1000)})
        produce(bindir, "inventory.commands", product, payload, "SetRetention")
        ev = answer_of(s, lambda r: r.get("type") == "SetRetention" and r["value"]["actor_id"] == "forger")
        assert ev["type"] == "CommandRejected" and ev["value"]["command_type"] == "SetRetention", ev

        ev = old_order(s, bindir, product)
        assert ev["type"] == "CommandRejected" and ev["value"]["reason"] == "INVALID", ev
        assert "deduplication window" in ev["value"]["detail"], ev
        _, tok = s.member()
        expect(s.order(tok, product), 201)
        print("after: an order made 3 minutes ago is refused (%s), a buyer is served" % ev["value"]["detail"])

        # the windows are rebuilt from the log by the next owner
        log = os.path.join(s.logdir, "test-inv-a.log")
        mark = os.path.getsize(log)
        s.stop_processor("inv-a", signal.SIGKILL)
        s.start_processor("inv-a")
        deadline = time.time() + 60
        rebuilt = None
        while rebuilt is None:
            with open(log, "rb") as f:
                f.seek(mark)
                for l in f.read().decode(errors="replace").splitlines():
                    if '"partitions rebuilt"' in l:
                        rebuilt = json.loads(l)
            assert rebuilt or time.time() < deadline, "the restarted processor did not rebuild"
            time.sleep(0.5)
        got = {r["partition"]: (r["dedup_window_ms"], r["sold_memory_ms"]) for r in rebuilt["retention"]}
        assert got == {p: (60000, 600000) for p in range(nparts)}, rebuilt
        ev = old_order(s, bindir, product)
        assert ev["type"] == "CommandRejected", ev
        print("rebuilt after SIGKILL: windows %s, an old order still refused" % sorted(set(got.values())))

        # back to the defaults: the refusal point stays, the old order stays refused
        rc, lines, err = admin(bindir, "--defaults")
        assert rc == 0 and lines[-1]["set"] == nparts, (rc, lines, err)
        assert lines[-1]["dedup_window_ms"] == 86400000 and lines[-1]["sold_memory_ms"] == 45 * 86400000
        ev = old_order(s, bindir, product)
        assert ev["type"] == "CommandRejected", ev
        print("defaults again: an order made 3 minutes ago is still refused")

        # nothing dead-lettered by any reader; the audit replays all of it
        time.sleep(3)  # (the projectors read the new records)
        dead = s.dump("deadletter")[dead_before:]
        assert not dead, dead[:3]
        n = -1
        while n != len(s.dump("inventory.events")):
            n = len(s.dump("inventory.events"))
            time.sleep(1)
        rc, out, rep = audit(bindir)
        assert rc == 0 and rep["ok"], "audit failed:\n%s%s" % (out, json.dumps(rep["violations"][:5], indent=1))
        print("audit: OK, %d commands replayed" % rep["replayed"])
    print("test_retention: OK")


if __name__ == "__main__":
    main(sys.argv[1])
