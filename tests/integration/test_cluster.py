#!/usr/bin/python3
"""Three brokers: one node SIGKILLed in the middle of a sale, twice (issue: faults under load).

    test_cluster.py BUILD_DIR

Starts a cluster of its own beside the suite's: three KRaft nodes on loopback
(FLASHSALE_KAFKA_NODES=3 in infra/flashsale.sh: every topic with three replicas,
min.insync.replicas 2, producers acks=all), PostgreSQL and Redis, in a run directory of its
own. On it: an inventory processor, the order saga with auto-pay, the payment provider, the
API behind the edge. A sale of ~150 orders/s over 40 s on ten products, 70 % of them on one
hot product, and meanwhile:

  1. the node leading the hot product's partition of inventory.commands is SIGKILLed, and
     started again 10 s later;
  2. once it is back in sync, the node coordinating the inventory processor's transactions
     (the leader of its __transaction_state partition) is SIGKILLed, and started again.

Checks: every order the API acknowledged (201, 202, or a refusal naming the order) has
exactly one decision in the log, no order line has two, nothing sold beyond stock, the sale
went on after each kill (orders sent after it were decided), and flashsale-audit passes
(replay, invariants, orders, answers). Prints the failover time of each kill: from the kill
to the first decided answer of an order sent after it, and the longest stretch without any
decided answer."""
import collections
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fsharness import ROOT, System, derive, percentile  # noqa: E402
from test_core import acknowledged_ids  # noqa: E402

FLASH = os.path.join(ROOT, "infra", "flashsale.sh")


def port_free(p):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_range(start, n):
    p = start
    while not all(port_free(p + k) for k in range(n)):
        p += n
    return p


def java_hash(s):
    """String.hashCode of the JVM: where the broker puts a transactional id."""
    h = 0
    for ch in s:
        h = (31 * h + ord(ch)) & 0xFFFFFFFF
    return h - (1 << 32) if h & 0x80000000 else h


class Cluster:
    """The three-node cluster, PostgreSQL and Redis of this test."""

    def __init__(self, bindir):
        self.bindir = bindir
        self.run = tempfile.mkdtemp(prefix="flashsale-cluster-")
        os.chmod(self.run, 0o755)
        kafka = free_range(21092, 6)  # below the ephemeral range (32768-60999): see fsharness.free_port
        pg = free_range(kafka + 6, 1)
        redis = free_range(pg + 1, 1)
        self.env = dict(os.environ, FLASHSALE_RUN_DIR=self.run, FLASHSALE_BUILD_DIR=bindir,
                        FLASHSALE_KAFKA_NODES="3", FLASHSALE_KAFKA_PORT=str(kafka),
                        FLASHSALE_KAFKA_CONTROLLER_PORT=str(kafka + 1),
                        FLASHSALE_PG_PORT=str(pg), FLASHSALE_REDIS_PORT=str(redis),
                        FLASHSALE_KAFKA_HEAP="512m")

    def infra(self, *args, timeout=300):
        r = subprocess.run([FLASH] + list(args), env=self.env, capture_output=True, timeout=timeout)
        assert r.returncode == 0, (args, r.stdout.decode()[-2000:], r.stderr.decode()[-3000:])
        return r.stdout.decode()

    def start(self):
        self.infra("start", "--infra-only")
        with open(os.path.join(self.run, "env")) as f:  # export NAME='value' lines
            for line in f:
                if line.startswith("export "):
                    k, v = line[7:].rstrip("\n").split("=", 1)
                    self.env[k] = v.strip("'")
        assert self.env["FLASHSALE_REPLICATION"] == "3", self.env["FLASHSALE_REPLICATION"]
        os.environ.update({k: v for k, v in self.env.items() if k.startswith("FLASHSALE_")})
        return self

    def stop(self):
        try:
            self.infra("stop")
        finally:
            loc = os.path.join(self.run, "postgres.location")
            if os.path.exists(loc):
                d = open(loc).read().strip()
                if d.startswith("/var/tmp/flashsale-pg-"):
                    shutil.rmtree(d, ignore_errors=True)
            shutil.rmtree(self.run, ignore_errors=True)

    def leaders(self, *topics):
        out = subprocess.run([os.path.join(self.bindir, "tools", "flashsale-topics"), "leaders"] + list(topics),
                             env=self.env, capture_output=True, check=True, timeout=60).stdout.decode()
        rows = [json.loads(l) for l in out.splitlines() if l.strip()]
        return {(r["topic"], r["partition"]): r for r in rows if "topic" in r}

    def wait_in_sync(self, node, timeout=90):
        """Until the node is back in the in-sync replicas of every partition it holds."""
        deadline = time.time() + timeout
        while True:
            parts = self.leaders()
            lagging = [k for k, r in parts.items() if node in r["replicas"] and node not in r["isrs"]]
            if not lagging:
                return
            assert time.time() < deadline, "node %d not in sync after %d s: %s" % (node, timeout, lagging[:5])
            time.sleep(1)


def decided_times(results, t0, spread_s):
    """(sent, answered) monotonic times of the orders answered with a decision."""
    n = len(results)
    out = []
    for i, (st, _, dt) in enumerate(results):
        if st in (201, 409):
            sent = t0 + spread_s * i / n
            out.append((sent, sent + dt))
    return out


def failover(kill_at, decided):
    after = [a for s, a in decided if s >= kill_at]
    return (min(after) - kill_at) if after else None


def keep_logs(cluster):
    """On failure: the cluster's logs copied where they outlive it, and the processor's last
    lines and errors printed."""
    src = os.path.join(cluster.run, "logs")
    dst = "/tmp/flashsale-cluster-logs-%d" % int(time.time())
    shutil.copytree(src, dst, ignore_dangling_symlinks=True, dirs_exist_ok=True)
    print("cluster: logs kept in %s" % dst)
    for name in ("test-inv-a.log", "test-orders.log", "test-api.log"):
        path = os.path.join(src, name)
        if os.path.exists(path):
            lines = open(path, errors="replace").read().splitlines()
            bad = [l for l in lines if '"level":"error"' in l or '"level":"warn"' in l]
            print("--- %s: %d warnings/errors, last ones:" % (name, len(bad)))
            print("\n".join(l[:400] for l in bad[-15:]))


def main(bindir):
    cluster = Cluster(bindir).start()
    try:
        run_sale(cluster, bindir)
    except BaseException:
        keep_logs(cluster)
        raise
    finally:
        cluster.stop()


def run_sale(cluster, bindir):
    with System(bindir, processors=("inv-a",), sagas=True,
                saga_env={"FLASHSALE_AUTO_PAY": "true"},
                api_env={"FLASHSALE_DECISION_WAIT_MS": "2000"}) as s:
        products = [s.create_product(stock=2000 if i == 0 else 200, name="cluster-%d" % i) for i in range(10)]
        hot = products[0]
        part = [r["partition"] for r in s.dump("inventory.events")
                if r.get("type") == "ProductDefined" and r["value"]["product_id"] == hot][0]
        txn_id = "flashsale-inventory-inv-a"
        txn_part = (java_hash(txn_id) & 0x7FFFFFFF) % 12  # transaction.state.log.num.partitions
        kills = []

        def killer():
            # kill 1 at 8 s, back at 16 s; kill 2 at 40 s (or once node 1 is in sync), back 8 s later
            plan = ((8, "leader of the hot product's partition %d" % part, ("inventory.commands", part)),
                    (40, "transaction coordinator of %s" % txn_id, ("__transaction_state", txn_part)))
            for when, what, key in plan:
                time.sleep(max(0.0, t0 + when - time.monotonic()))
                node = cluster.leaders(key[0])[key]["leader"]
                assert node > 0, (what, key)
                at = time.monotonic()
                cluster.infra("kafka-kill", str(node))
                kills.append((what, node, at))
                print("  %.1f s: SIGKILL node %d, the %s" % (at - t0, node, what))
                time.sleep(8)
                cluster.infra("kafka-start", str(node))
                cluster.wait_in_sync(node)
                print("  %.1f s: node %d started again and back in sync, %.1f s after the kill"
                      % (time.monotonic() - t0, node, time.monotonic() - at))

        rnd = random.Random(7)
        n, spread = 6300, 70.0  # 90 orders/s
        reqs = [("/api/orders", {"product_id": hot if rnd.random() < 0.7 else rnd.choice(products[1:]),
                                 "quantity": 1}, s.member()[1]) for _ in range(n)]
        t0 = time.monotonic() + 0.1
        t = threading.Thread(target=killer)
        t.start()
        results = s.burst(reqs, spread_s=spread)
        t.join()
        statuses = collections.Counter(st for st, _, _ in results)
        lat = [dt * 1000 for _, _, dt in results]
        print("cluster: %d orders over %.0f s; statuses %s; latency ms p50 %.1f p99 %.1f max %.1f"
              % (n, spread, dict(statuses), percentile(lat, 50), percentile(lat, 99), max(lat)))
        # by phase: before the first kill, while a node is away, the rest
        for lo, hi, phase in ((0, kills[0][2] - t0 if kills else spread, "before the first kill"),
                              (kills[0][2] - t0 if kills else spread, spread, "from the first kill on")):
            ph = collections.Counter(st for i, (st, _, _) in enumerate(results) if lo <= spread * i / n < hi)
            lat_ph = [dt * 1000 for i, (_, _, dt) in enumerate(results) if lo <= spread * i / n < hi]
            print("  %s: %s; latency ms p50 %.1f p99 %.1f" % (phase, dict(ph), percentile(lat_ph, 50),
                                                             percentile(lat_ph, 99)))
        assert len(kills) == 2, kills
        assert statuses[500] == 0 and statuses[0] == 0, statuses

        # failover: the sale went on after each kill
        decided = decided_times(results, t0, spread)
        for what, node, at in kills:
            f = failover(at, decided)
            assert f is not None, "no order sent after the kill of the %s was decided" % what
            gaps = [b - a for (_, a), (_, b) in zip(decided, decided[1:]) if a >= at - 1 and b <= at + 30]
            print("cluster: failover after SIGKILL of node %d (%s): first decision of a later order "
                  "%.2f s after the kill; longest stretch without a decided answer %.2f s"
                  % (node, what, f, max(gaps) if gaps else 0.0))

        # no acknowledged loss, nothing doubled, nothing beyond stock
        acked = acknowledged_ids(results)
        n_cmds = s.wait_all_decided(timeout=180)
        events = s.dump("inventory.events")
        state, decisions, _, problems = derive(events)
        assert not problems, "\n".join(problems[:10])
        lost = [o for o in acked if decisions[(o, 0)] != 1]
        assert not lost, "acknowledged orders without exactly one decision: %s" % lost[:5]
        doubled = [o for o, k in decisions.items() if k > 1]
        assert not doubled, doubled[:5]
        for p in products:
            st = state[p]
            assert st["reserved"] + st["sold"] <= st["stock"], (p, st)
        audit = subprocess.run([os.path.join(bindir, "projections", "flashsale-audit"), "--no-read-models"],
                               env=dict(os.environ), capture_output=True, text=True, timeout=600)
        assert audit.returncode == 0, audit.stdout[-3000:] + audit.stderr[-2000:]
        print("cluster: %d acknowledged orders, %d commands, one decision each, none beyond stock "
              "(hot product: %d of 2,000 taken); audit passed"
              % (len(acked), n_cmds, state[hot]["reserved"] + state[hot]["sold"]))


if __name__ == "__main__":
    main(sys.argv[1])
    print("cluster: PASS")
