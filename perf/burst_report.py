#!/usr/bin/python3
"""Reads one perf/burst.sh run (perf/out/*-STAMP.*), checks the invariants on the log with
the test harness's independent re-derivation, and prints the figures side by side plus a
breakdown of where the orders' time went. Usage: burst_report.py OUTDIR STAMP PRODUCT STOCK N"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
from fsharness import derive, percentile  # noqa: E402


def main(out, stamp, pid, stock, n):
    stock, n = int(stock), int(n)
    trivial = json.load(open(os.path.join(out, "trivial-%s.json" % stamp)))
    burst = json.load(open(os.path.join(out, "burst-%s.json" % stamp)))
    events = [json.loads(l) for l in open(os.path.join(out, "events-%s.jsonl" % stamp))]
    cmds = [json.loads(l) for l in open(os.path.join(out, "commands-%s.jsonl" % stamp))]
    products, decisions, holdings, problems = derive(events)
    p = products[pid]
    reserved_http = burst["outcomes"].get("201 RESERVED", 0)
    ok = (not problems and p["reserved"] == stock and p["available"] == 0 and reserved_http == stock
          and all(v == 1 for v in decisions.values())
          and sum(burst["outcomes"].values()) == n
          and set(burst["outcomes"]) <= {"201 RESERVED", "409 SOLD_OUT"})
    # where the time went, per decided order: API stamp (requested_at) -> command in the log
    # -> decision in the log
    cmd_ts = {c["value"]["order_id"]: (c["value"]["requested_at"], c["timestamp"]) for c in cmds
              if c.get("type") == "ReserveStock" and c["value"]["product_id"] == pid}
    to_log, to_decision = [], []
    for e in events:
        if e.get("type") in ("StockReserved", "StockRejected") and e["value"]["order_id"] in cmd_ts:
            req_at, cmd_at = cmd_ts[e["value"]["order_id"]]
            to_log.append(cmd_at - req_at)
            to_decision.append(e["timestamp"] - req_at)
    L = burst["latency_ms"]
    T = trivial["latency_ms"]
    print()
    print("| %d requests, all at once | seconds to last answer | requests/s | p50 ms | p99 ms | max ms |" % n)
    print("|---|---|---|---|---|---|")
    print("| trivial endpoint (GET /healthz, same server) | %.2f | %.0f | %.1f | %.1f | %.1f |"
          % (trivial["seconds"], trivial["requests_per_s"], T["p50"], T["p99"], T["max"]))
    print("| flashsale order burst (%d units) | %.2f | %.0f | %.1f | %.1f | %.1f |"
          % (stock, burst["seconds"], burst["requests_per_s"], L["p50"], L["p99"], L["max"]))
    print()
    print("ratio burst/trivial requests/s: %.2f" % (burst["requests_per_s"] / trivial["requests_per_s"]))
    print("outcomes: %s" % burst["outcomes"])
    print("orders that reached Kafka: %d (the rest were answered SOLD_OUT by the API's view)" % len(cmd_ts))
    if to_log:
        print("time of the orders that reached Kafka, from the API's stamp (ms): "
              "to the command's log time p50 %.0f p99 %.0f; to the decision's log time p50 %.0f p99 %.0f"
              % (percentile(to_log, 50), percentile(to_log, 99), percentile(to_decision, 50),
                 percentile(to_decision, 99)))
    print("invariants on the log: %s" % ("OK (exactly %d reserved, no oversell, no undersell, "
                                          "one decision per order)" % stock if ok else "FAILED %s" % problems[:5]))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
