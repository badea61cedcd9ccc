#!/usr/bin/python3
"""Kafka, PostgreSQL and Redis under their supervisors (infra/supervise.sh, as infra/flashsale.sh starts
them), on the suite's own instances (infra/test.sh's run directory):

- Redis SIGKILLed: started again at once, with what it had acknowledged a second before
  (its AOF, fsynced every second), and its supervisor says so in its log;
- the broker SIGKILLed: started again, listed among the brokers again, every partition of
  every topic led again, and its replicas in sync again (flashsale-topics leaders);
- PostgreSQL's postmaster SIGKILLed: started again once its backends have left (each
  watches the postmaster), a committed row there after its crash recovery;
- `flashsale.sh redis-stop`: stopped for good (supervisor and server gone, nothing started
  again), until `flashsale.sh start --infra-only` starts it.

Holds the broker lock: nothing else of the suite runs meanwhile. Leaves everything running.
Usage: test_infra_restart.py BUILD_DIR"""
import json
import os
import signal
import subprocess
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fsharness import ROOT, alive, ppid, until  # noqa: E402
FLASH = os.path.join(ROOT, "infra", "flashsale.sh")
RUN = os.environ["FLASHSALE_RUN_DIR"]
BUILD = os.path.abspath(sys.argv[1])


def pid_of(name):
    try:
        p = int(open(os.path.join(RUN, "pids", name + ".pid")).read())
    except (OSError, ValueError):
        return None
    return p if alive(p) else None


def supervisor_lines(log, offset):
    with open(log, errors="replace") as f:
        f.seek(offset)
        return [json.loads(l) for l in f if l.startswith("{") and '"svc":"supervisor"' in l]


def redis(*args):
    r = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", os.environ["FLASHSALE_REDIS_PORT"], *args],
                       env=dict(os.environ, REDISCLI_AUTH=os.environ["FLASHSALE_REDIS_PASSWORD"]),
                       capture_output=True, text=True, timeout=10)
    return r.stdout.strip() if r.returncode == 0 else None


def all_led(node):
    """The killed node is among the brokers again, every partition of every topic has a
    leader, and (replicated) every replica on the node is in sync again."""
    r = subprocess.run([os.path.join(BUILD, "tools", "flashsale-topics"), "leaders"],
                       capture_output=True, text=True, timeout=60)
    if r.returncode:
        return False
    lines = [json.loads(l) for l in r.stdout.splitlines() if l.startswith("{")]
    nodes = {l["node"] for l in lines if "node" in l and "topic" not in l}
    parts = [l for l in lines if "topic" in l]
    return (node in nodes and len(parts) > 0 and all(p["leader"] >= 0 for p in parts)
            and all(node in p["isrs"] for p in parts if node in p["replicas"]))


def test_redis_killed():
    log = os.path.join(RUN, "logs", "redis.log")
    offset = os.path.getsize(log)
    key, value = "test:infra-restart:" + uuid.uuid4().hex, uuid.uuid4().hex
    assert redis("SET", key, value) == "OK"
    time.sleep(1.5)  # appendfsync everysec: on disk within a second
    old = pid_of("redis")
    assert old, "Redis does not run"
    t0 = time.monotonic()
    os.kill(old, signal.SIGKILL)
    new = until("Redis started again", lambda: (pid_of("redis") not in (None, old)) and redis("PING") == "PONG"
                and pid_of("redis"), 30)
    print("  Redis killed: answering again after %.2f s (pid %d -> %d)" % (time.monotonic() - t0, old, new))
    assert redis("GET", key) == value, "Redis lost what it had written to its AOF"
    redis("DEL", key)
    [line] = supervisor_lines(log, offset)
    assert line["service"] == "redis" and line["signal"] == "KILL" and line["restart_in_ms"] == 0, line


def test_broker_killed():
    name = "kafka" if os.path.exists(os.path.join(RUN, "pids", "kafka.pid")) else "kafka-1"
    node = 1
    log = os.path.join(RUN, "logs", name + ".out")
    offset = os.path.getsize(log)
    old = pid_of(name)
    assert old, "the broker does not run"
    t0 = time.monotonic()
    os.kill(old, signal.SIGKILL)
    new = until("a new broker process", lambda: pid_of(name) not in (None, old) and pid_of(name), 60)
    t1 = time.monotonic()
    until("every partition led again, the node in sync", lambda: all_led(node), 180)
    print("  broker killed: a new process after %.2f s, every partition led again after %.2f s (pid %d -> %d)"
          % (t1 - t0, time.monotonic() - t0, old, new))
    [line] = supervisor_lines(log, offset)
    assert line["service"] == name and line["signal"] == "KILL", line


def psql(sql):
    env = dict(os.environ)
    url = env["FLASHSALE_PG_URL"]
    r = subprocess.run(["psql", url, "-tAqc", sql], capture_output=True, text=True, timeout=30)
    return r.stdout.strip() if r.returncode == 0 else None


def test_postgres_killed():
    log = os.path.join(RUN, "logs", "postgres.log")
    offset = os.path.getsize(log)
    marker = uuid.uuid4().hex
    assert psql("CREATE TABLE IF NOT EXISTS test_infra_restart (v text); "
                "INSERT INTO test_infra_restart VALUES ('%s')" % marker) is not None
    old = pid_of("postgres")
    assert old, "PostgreSQL does not run"
    # its backends and workers (each a session of its own: they leave by themselves once
    # they see the postmaster gone, and a new postmaster starts only then)
    backends = [int(d) for d in os.listdir("/proc") if d.isdigit() and alive(int(d)) and ppid(int(d)) == old]
    assert backends, "the postmaster has no children"
    t0 = time.monotonic()
    os.kill(old, signal.SIGKILL)
    new = until("PostgreSQL started again", lambda: pid_of("postgres") not in (None, old) and psql("SELECT 1") == "1"
                and pid_of("postgres"), 120)
    print("  postmaster killed: answering again after %.2f s (pid %d -> %d)" % (time.monotonic() - t0, old, new))
    assert not any(alive(p) for p in backends), "the killed postmaster's processes outlived it"
    assert psql("SELECT v FROM test_infra_restart WHERE v = '%s'" % marker) == marker, "a committed row was lost"
    psql("DROP TABLE test_infra_restart")
    # (then, maybe, a start or two refused while the old backends were still leaving)
    assert line_kill(supervisor_lines(log, offset), "postgres"), supervisor_lines(log, offset)


def line_kill(lines, service):
    return lines and lines[0]["service"] == service and lines[0]["signal"] == "KILL"


def test_redis_stop_is_for_good():
    sup = int(open(os.path.join(RUN, "pids", "redis.supervisor.pid")).read())
    server = pid_of("redis")
    subprocess.run([FLASH, "redis-stop"], check=True, timeout=60, capture_output=True)
    assert not alive(sup) and not alive(server)
    time.sleep(1.0)
    assert pid_of("redis") is None and redis("PING") is None, "Redis started again after redis-stop"
    subprocess.run([FLASH, "start", "--infra-only"], check=True, timeout=300, capture_output=True)
    assert redis("PING") == "PONG" and alive(int(open(os.path.join(RUN, "pids", "redis.supervisor.pid")).read()))


def main():
    for t in (test_redis_killed, test_postgres_killed, test_broker_killed, test_redis_stop_is_for_good):
        print("==", t.__name__, flush=True)
        t()
    print("infra restart: all passed")


if __name__ == "__main__":
    main()
