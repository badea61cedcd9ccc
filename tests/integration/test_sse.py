#!/usr/bin/python3
"""GET /api/events (server-sent events) over real sockets, through the edge (nginx), with the
inventory processor and the order sagas running:

- a stream of a product starts with `retry:` and the product's current stock, then sees each
  reservation: every one within 100 ms of its decision (the decision's time is the Kafka
  record time of its StockReserved, written by the processor when it decided);
- a member's stream sees that member's order go RESERVED then PAID; another member's stream
  and an anonymous stream on the same product never see it;
- Last-Event-ID (header, and ?last_event_id=) replays exactly the events missed, in order;
  an id the server cannot resume from gives the current state instead;
- heartbeats (FLASHSALE_SSE_HEARTBEAT_S=1 here) arrive on an idle stream;
- bounds: a third stream of one member (per-member limit 2 here) and a fifth from one address
  (per-address limit 4 here) get 429 TOO_MANY_STREAMS with Retry-After, while other members
  and addresses are served; closing a stream frees its place;
- errors: an unknown or malformed product id 400 INVALID_FIELD, too many products 400, a bad
  or expired token 401; the API's own port answers 307 to the event listener;
- /metrics counts the open streams.
Usage: test_sse.py BUILD_DIR"""
import json
import os
import socket
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fsharness import System, mint  # noqa: E402

DAY = {"FLASHSALE_DAY_SECONDS": "3600"}
API_ENV = {"FLASHSALE_SSE_HEARTBEAT_S": "1", "FLASHSALE_SSE_PER_MEMBER": "2",
           "FLASHSALE_SSE_PER_ADDR": "4"}


class Stream:
    """One event stream read on a thread of its own: `events` collects (arrival wall time
    in ms, {"id", "event", "data"}), `comments` the comment lines, `retry` the retry field."""

    def __init__(self, port, path, token=None, last_event_id=None, source="127.0.0.1"):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(source, 0))
        head = "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n" % path
        if token:
            head += "Authorization: Bearer %s\r\n" % token
        if last_event_id:
            head += "Last-Event-ID: %s\r\n" % last_event_id
        self.sock.sendall((head + "\r\n").encode())
        self.status, self.headers, self.body = None, {}, b""
        self.events, self.comments, self.retry = [], [], None
        self.lock = threading.Condition()
        self.closed = False
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = self.sock.recv(65536)
            assert chunk, "the stream closed before its header"
            buf += chunk
        head, rest = buf.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        self.status = int(lines[0].split(" ")[1])
        for line in lines[1:]:
            k, v = line.split(":", 1)
            self.headers[k.strip().lower()] = v.strip()
        if self.status != 200:
            n = int(self.headers.get("content-length", "0"))
            while len(rest) < n:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                rest += chunk
            self.body = json.loads(rest) if rest else None
            self.sock.close()
            return
        self.chunked = self.headers.get("transfer-encoding", "").lower() == "chunked"
        self.raw = rest
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _body_bytes(self):
        """Yields the body's bytes (de-chunked when the edge sends chunks)."""
        data = self.raw
        while True:
            if not self.chunked:
                if data:
                    yield data
                data = b""
            else:
                while True:
                    i = data.find(b"\r\n")
                    if i < 0:
                        break
                    size = int(data[:i].split(b";")[0], 16)
                    if size == 0:
                        return
                    if len(data) < i + 2 + size + 2:
                        break
                    yield data[i + 2:i + 2 + size]
                    data = data[i + 2 + size + 2:]
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            data += chunk

    def _run(self):
        text = ""
        cur = {}
        try:
            for b in self._body_bytes():
                text += b.decode()
                while "\n" in text:
                    line, text = text.split("\n", 1)
                    now = time.time() * 1000
                    with self.lock:
                        if line == "":
                            if "event" in cur:
                                cur["data"] = json.loads(cur["data"])
                                self.events.append((now, cur))
                            cur = {}
                            self.lock.notify_all()
                        elif line.startswith(":"):
                            self.comments.append((now, line))
                            self.lock.notify_all()
                        else:
                            k, _, v = line.partition(":")
                            v = v[1:] if v.startswith(" ") else v
                            if k == "retry":
                                self.retry = int(v)
                            else:
                                cur[k] = v
        finally:
            with self.lock:
                self.closed = True
                self.lock.notify_all()

    def wait(self, pred, timeout=10, what="an event"):
        """Waits until pred(events) is true; returns its value."""
        deadline = time.time() + timeout
        with self.lock:
            while True:
                r = pred([e for _, e in self.events])
                if r:
                    return r
                left = deadline - time.time()
                assert left > 0 and not self.closed, "no %s in %s s; got %s" % (
                    what, timeout, [e for _, e in self.events][-10:])
                self.lock.wait(left)

    def of(self, kind):
        with self.lock:
            return [e for _, e in self.events if e["event"] == kind]

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        if self.status == 200:
            self.thread.join(5)


def stock_of(pid, available):
    """pred: the first stock event of pid with that many available."""
    return lambda evs: next((e for e in evs if e["event"] == "stock" and e["data"]["product_id"] == pid
                             and e["data"]["available"] == available), None)


def order_statuses(stream, oid):
    return [e["data"]["status"] for e in stream.of("order") if e["data"]["order_id"] == oid]


def expect_error(st, status, code):
    assert st.status == status, (st.status, st.body)
    assert st.body["error"]["code"] == code, st.body
    assert st.body["error"]["request_id"], st.body


def stream_gauge(s):
    st, _, text = s.request("GET", "/metrics")
    assert st == 200, st
    for line in text.splitlines():
        if line.startswith('flashsale_sse_streams{kind="all"}'):
            return int(float(line.rsplit(" ", 1)[1]))
    raise AssertionError("no flashsale_sse_streams gauge in /metrics")


def wait_no_streams(s):
    """Waits up to 5 s until the server counts no stream (every client closed)."""
    deadline = time.time() + 5
    while stream_gauge(s) and time.time() < deadline:
        time.sleep(0.05)
    assert stream_gauge(s) == 0, "a stream is still counted after every client closed"


def test_latency(s):
    pid = s.create_product(stock=50)
    st = Stream(s.port, "/api/events?product=" + pid)
    assert st.status == 200, st.body
    assert st.headers["content-type"].startswith("text/event-stream"), st.headers
    assert st.headers.get("cache-control") == "no-cache", st.headers
    first = st.wait(stock_of(pid, 50), what="the current stock")
    assert st.retry == 2000, st.retry
    assert first["data"] == {**first["data"], "reserved": 0, "sold": 0, "stock": 50, "sale_status": "ON_SALE"}
    assert first["id"], first
    orders = {}
    for i in range(10):
        name, tok = s.member()
        code, _, body = s.order(tok, pid)
        assert code == 201 and body["status"] == "RESERVED", (code, body)
        ev = st.wait(stock_of(pid, 49 - i), what="the stock after reservation %d" % (i + 1))
        assert ev["data"]["reserved"] == i + 1 and ev["data"]["stock"] == 50, ev
        with st.lock:
            arrived = next(t for t, e in st.events if e is ev)
        orders[body["order_id"]] = arrived
    decided = {r["value"]["order_id"]: r["timestamp"] for r in s.dump("inventory.events")
               if r.get("type") == "StockReserved" and r["value"]["order_id"] in orders}
    assert set(decided) == set(orders), "decisions missing from the log"
    lat = sorted(orders[o] - decided[o] for o in orders)
    print("decision -> event on the stream (through the edge), ms: %s" % ["%.1f" % x for x in lat])
    assert lat[-1] <= 100, "a reservation reached the stream %.1f ms after its decision" % lat[-1]
    ids = [e["id"] for e in st.of("stock")]
    assert len(set(ids[1:])) == len(ids) - 1, ids  # every live event numbered once
    st.close()
    return pid


def test_member_orders(s, pid):
    a, tok_a = s.member()
    b, tok_b = s.member()
    sa = Stream(s.port, "/api/events?product=" + pid, token=tok_a, source="127.0.7.1")
    sb = Stream(s.port, "/api/events?product=" + pid, token=tok_b, source="127.0.7.2")
    anon = Stream(s.port, "/api/events?product=" + pid, source="127.0.7.3")
    for x in (sa, sb, anon):
        assert x.status == 200, x.body
        x.wait(lambda evs: any(e["event"] == "stock" for e in evs), what="the current stock")
    code, _, body = s.order(tok_a, pid)
    assert code == 201, body
    oid = body["order_id"]
    sa.wait(lambda evs: "RESERVED" in [e["data"]["status"] for e in evs if e["event"] == "order"
                                       and e["data"]["order_id"] == oid], what="RESERVED")
    last_id = sa.of("order")[-1]["id"]
    sa.close()  # the member goes away, the order is paid meanwhile, the member comes back
    code, _, paid = s.request("POST", "/api/orders/%s/payment" % oid, {"method": "CARD"}, tok_a)
    assert code == 200 and paid["status"] == "PAID", (code, paid)
    sa2 = Stream(s.port, "/api/events?product=" + pid, token=tok_a, last_event_id=last_id, source="127.0.7.1")
    assert sa2.status == 200, sa2.body
    sa2.wait(lambda evs: "PAID" in [e["data"]["status"] for e in evs if e["event"] == "order"
                                    and e["data"]["order_id"] == oid], what="PAID (replayed)")
    # a fresh stream of the member sees it live as well: RESERVED then PAID on one stream
    sa3 = Stream(s.port, "/api/events?product=" + pid, token=tok_a, source="127.0.7.4")
    code, _, body2 = s.order(tok_a, pid)
    assert code == 201, body2
    o2 = body2["order_id"]
    s.request("POST", "/api/orders/%s/payment" % o2, {}, tok_a)
    sa3.wait(lambda evs: "PAID" in [e["data"]["status"] for e in evs if e["event"] == "order"
                                    and e["data"]["order_id"] == o2], what="PAID live")
    seen = order_statuses(sa3, o2)
    assert seen.index("RESERVED") < seen.index("PAID"), seen
    for e in sa3.of("order"):
        assert set(e["data"]) >= {"order_id", "status", "version", "at"}, e
    time.sleep(0.5)  # whatever else was to come has come
    for other in (sb, anon):
        assert not [e for e in other.of("order")], ("another member's order leaked", other.of("order"))
        # they did see the stock move (the same product)
        assert len(other.of("stock")) >= 2, other.of("stock")
    for x in (sa2, sa3, sb, anon):
        x.close()


def test_resume(s, pid):
    time.sleep(0.5)  # the previous payments' stock changes have all been fanned out
    st = Stream(s.port, "/api/events?product=" + pid, source="127.0.8.1")
    cur = st.wait(lambda evs: next((e for e in evs if e["event"] == "stock"), None), what="the stock")
    start_avail = cur["data"]["available"]
    last = cur["id"]
    st.close()
    # no stream attached while the events are missed: the hub is not woken for them, and
    # catches up from the ring when the next stream attaches
    wait_no_streams(s)
    for _ in range(3):  # missed while away
        code, _, body = s.order(s.member()[1], pid)
        assert code == 201, body
    # the header
    r = Stream(s.port, "/api/events?product=" + pid, last_event_id=last, source="127.0.8.1")
    r.wait(stock_of(pid, start_avail - 3), what="the replayed events")
    # (a late change of another kind, e.g. a sale committed, keeps available as it was)
    got = [e["data"]["available"] for e in r.of("stock") if e["data"]["available"] < start_avail]
    assert got[:3] == [start_avail - 1, start_avail - 2, start_avail - 3], got
    seqs = [int(e["id"].rsplit("-", 1)[1]) for e in r.of("stock")]
    assert seqs == sorted(seqs) and seqs[0] > int(last.rsplit("-", 1)[1]), (last, seqs)
    # the query parameter, from the middle
    mid = next(e["id"] for e in r.of("stock") if e["data"]["available"] == start_avail - 1)
    q = Stream(s.port, "/api/events?product=%s&last_event_id=%s" % (pid, mid), source="127.0.8.2")
    q.wait(stock_of(pid, start_avail - 3), what="the replayed events (query)")
    got = [e["data"]["available"] for e in q.of("stock")]
    assert got[:2] == [start_avail - 2, start_avail - 3], got  # nothing before the id again
    # an id this server never gave: the current state
    u = Stream(s.port, "/api/events?product=" + pid, last_event_id="zzzz-5", source="127.0.8.3")
    cur = u.wait(lambda evs: next((e for e in evs if e["event"] == "stock"), None), what="the state")
    assert cur["data"]["available"] == start_avail - 3, cur
    for x in (r, q, u):
        x.close()


def test_fresh_after_quiet(s, pid):
    """A stream without Last-Event-ID, the first after events pushed with none attached: its
    state is the current one and nothing older follows it (the hub caught up before it
    attached, instead of fanning out from where it had stopped)."""
    wait_no_streams(s)
    for _ in range(3):
        code, _, body = s.order(s.member()[1], pid)
        assert code == 201, body
    time.sleep(0.5)  # every stock change of those orders is in the ring
    f = Stream(s.port, "/api/events?product=" + pid, source="127.0.8.4")
    state = f.wait(lambda evs: next((e for e in evs if e["event"] == "stock"), None), what="the state")
    time.sleep(0.5)  # whatever would follow it has come
    stock = f.of("stock")
    assert all(e["data"]["available"] == state["data"]["available"] for e in stock), \
        ("older stock values after the state", [e["data"]["available"] for e in stock])
    f.close()


def test_heartbeat(s, pid):
    st = Stream(s.port, "/api/events?product=" + pid, source="127.0.9.1")
    deadline = time.time() + 5
    with st.lock:
        while not st.comments and time.time() < deadline:
            st.lock.wait(0.2)
        hb = list(st.comments)
    assert hb and hb[0][1].startswith(": hb "), hb
    assert abs(int(hb[0][1].split()[2]) - time.time() * 1000) < 5000, hb
    st.close()


def test_limits(s, pid):
    _, tok = s.member()
    one = Stream(s.port, "/api/events?product=" + pid, token=tok, source="127.0.10.1")
    two = Stream(s.port, "/api/events", token=tok, source="127.0.10.2")
    assert one.status == 200 and two.status == 200, (one.body, two.body)
    three = Stream(s.port, "/api/events", token=tok, source="127.0.10.3")
    expect_error(three, 429, "TOO_MANY_STREAMS")
    assert int(three.headers["retry-after"]) >= 1, three.headers
    other = Stream(s.port, "/api/events", token=s.member()[1], source="127.0.10.3")
    assert other.status == 200, other.body  # another member is served
    one.close()
    deadline = time.time() + 5
    while True:  # its place is free once the server saw it go
        again = Stream(s.port, "/api/events", token=tok, source="127.0.10.4")
        if again.status == 200 or time.time() > deadline:
            break
        time.sleep(0.1)
    assert again.status == 200, again.body
    # per address
    held = [Stream(s.port, "/api/events?product=" + pid, source="127.0.11.1") for _ in range(4)]
    assert all(h.status == 200 for h in held), [h.body for h in held]
    fifth = Stream(s.port, "/api/events?product=" + pid, source="127.0.11.1")
    expect_error(fifth, 429, "TOO_MANY_STREAMS")
    elsewhere = Stream(s.port, "/api/events?product=" + pid, source="127.0.11.2")
    assert elsewhere.status == 200, elsewhere.body
    assert stream_gauge(s) >= 8, stream_gauge(s)
    for x in held + [two, other, again, elsewhere]:
        x.close()
    wait_no_streams(s)


def test_errors(s, pid):
    expect_error(Stream(s.port, "/api/events?product=" + str(uuid.uuid4())), 400, "INVALID_FIELD")
    expect_error(Stream(s.port, "/api/events?product=a%20b"), 400, "INVALID_FIELD")
    expect_error(Stream(s.port, "/api/events?product=%s&product=%s" % (pid, uuid.uuid4())), 400, "INVALID_FIELD")
    many = "&".join("product=p%d" % i for i in range(51))
    expect_error(Stream(s.port, "/api/events?" + many), 400, "INVALID_FIELD")
    expect_error(Stream(s.port, "/api/events?product=" + pid, token="not.a.token"), 401, "INVALID_TOKEN")
    forged = mint("another secret of at least thirty-two characters", "m-1", "member")
    expect_error(Stream(s.port, "/api/events", token=forged), 401, "INVALID_TOKEN")
    old = mint(s.secret, "m-1", "member", ttl=60, now=time.time() - 3600)
    expect_error(Stream(s.port, "/api/events", token=old), 401, "TOKEN_EXPIRED")
    st, h, body = s.request("POST", "/api/events")
    assert st == 405, (st, body)
    st, h, body = s.request("GET", "/api/events?product=" + pid, direct=True)
    assert st == 307 and h["Location"].endswith(":%d/api/events?product=%s" % (s.sse_port, pid)), (st, h)


def main():
    bindir = sys.argv[1]
    with System(bindir, sagas=True, saga_env=DAY, api_env=API_ENV) as s:
        pid = test_latency(s)
        print("ok latency")
        test_member_orders(s, pid)
        print("ok member orders")
        test_resume(s, pid)
        print("ok resume")
        test_fresh_after_quiet(s, pid)
        print("ok fresh stream after a quiet spell")
        test_heartbeat(s, pid)
        print("ok heartbeat")
        test_errors(s, pid)
        print("ok errors")
        test_limits(s, pid)
        print("ok limits")
    print("ok")


if __name__ == "__main__":
    main()
