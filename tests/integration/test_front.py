#!/usr/bin/python3
"""The API's order front (command-api/src/front.h): POST /api/orders on an event loop, over
real sockets, against the test run's Kafka, PostgreSQL and Redis.

- through the edge, POST /api/orders reaches the front (its request counter moves) and is
  answered 201; GETs of orders still reach civetweb;
- straight to the front: kept-alive connections, pipelined requests answered in order, an
  Idempotency-Key answered with the same order, Prefer: respond-async, a checkout (run on a
  worker thread), and every refusal in the API's JSON error format with its stable code:
  401, 400 BAD_JSON, 415, 405 with Allow, 404, 411 (chunked), 413, 431, a malformed request
  line, and what a proxy might read differently (a Content-Length twice or not as digits, a
  header name with a space, a bare LF): 400; the refusals that leave the stream unreadable
  close the connection; requests followed by the client's FIN are all answered (also when
  the FIN is read with them), HTTP/1.0 is answered and closed;
- slow and idle clients: 200 connections that never finish their header are closed by the
  request timeout while another client is answered meanwhile; an idle kept-alive
  connection is closed; past the connection limit a client gets 503 and the others go on;
- a client that goes away while its order waits leaves the front serving the next;
- a stop (SIGTERM) drains: no new connection, a request read during the drain and a checkout
  no worker has taken up yet are answered 503 UNAVAILABLE with Connection: close, and every
  order whose command was produced still gets its answer (here its decision, which comes
  after the stop began); the log holds no order of the drain's buyer that was not answered.
Usage: test_front.py BUILD_DIR"""
import json
import os
import select
import signal
import socket
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fsharness import System  # noqa: E402


def raw_request(token, body, method="POST", path="/api/orders", extra=None, ctype="application/json"):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    head = "%s %s HTTP/1.1\r\nHost: t\r\n" % (method, path)
    if token:
        head += "Authorization: Bearer %s\r\n" % token
    if ctype:
        head += "Content-Type: %s\r\n" % ctype
    head += "Content-Length: %d\r\n" % len(data)
    for k, v in (extra or {}).items():
        head += "%s: %s\r\n" % (k, v)
    return head.encode() + b"\r\n" + data


class Conn:
    """A raw connection that reads whole responses (status, headers, parsed body)."""

    def __init__(self, port, timeout=10):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        self.s.sendall(data)

    def _fill(self):
        chunk = self.s.recv(65536)
        if not chunk:
            raise EOFError("closed by the server")
        self.buf += chunk

    def response(self):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
        n = int(headers.get("content-length", "0"))
        while len(self.buf) < n:
            self._fill()
        body, self.buf = self.buf[:n], self.buf[n:]
        return status, headers, json.loads(body) if body else None

    def closed_by_server(self, within):
        """True when the server closes the connection within `within` seconds."""
        self.s.settimeout(within)
        try:
            while True:
                if not self.s.recv(65536):
                    return True
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True

    def close(self):
        self.s.close()


def front_requests(s):
    st, _, text = s.request("GET", "/metrics", direct=True)
    assert st == 200, st
    for line in text.splitlines():
        if line.startswith("flashsale_order_front_requests_total "):
            return int(float(line.split()[1]))
    raise AssertionError("no flashsale_order_front_requests_total in /metrics")


def expect_error(status, headers, body, want_status, code):
    assert status == want_status, (status, body)
    assert headers.get("content-type") == "application/json", headers
    assert body["error"]["code"] == code, body
    assert body["error"]["request_id"], body


def main(bindir):
    checks = 0
    api_env = {"FLASHSALE_ORDER_REQUEST_TIMEOUT_MS": "1500", "FLASHSALE_ORDER_IDLE_S": "2",
               "FLASHSALE_ORDER_MAX_CONNS": "400", "FLASHSALE_RATE_ORDER_MEMBER_PER_S": "0",
               "FLASHSALE_RATE_ORDER_IP_PER_S": "0"}
    with System(bindir, api_env=api_env, sagas=True) as s:
        pid = s.create_product(stock=100000)
        port = s.order_port
        _, tok = s.member()

        # --- through the edge -------------------------------------------------------------
        before = front_requests(s)
        for _ in range(5):
            st, _, out = s.order(tok, pid)
            assert st == 201 and out["status"] == "RESERVED", (st, out)
        assert front_requests(s) - before == 5, "the edge did not send the orders to the front"
        st, _, got = s.request("GET", "/api/orders/" + out["order_id"], token=tok)  # civetweb's
        assert st == 200 and got["order_id"] == out["order_id"], (st, got)
        assert front_requests(s) - before == 5, "a GET reached the front"
        st, _, got = s.request("GET", "/api/orders", token=tok)  # civetweb's too (a read model)
        assert st != 405, (st, got)
        checks += 2

        # --- kept alive, and pipelined ----------------------------------------------------
        c = Conn(port)
        ids = set()
        for _ in range(20):
            c.send(raw_request(tok, {"product_id": pid, "quantity": 1}))
            st, h, out = c.response()
            assert st == 201 and "connection" not in h, (st, h, out)
            ids.add(out["order_id"])
        assert len(ids) == 20
        rids = ["pipe-%d-%s" % (i, uuid.uuid4().hex[:6]) for i in range(5)]
        c.send(b"".join(raw_request(tok, {"product_id": pid, "quantity": 1}, extra={"X-Request-Id": r})
                        for r in rids))
        got = [c.response() for _ in rids]
        assert [h["x-request-id"] for _, h, _ in got] == rids, "pipelined answers out of order"
        assert all(st == 201 for st, _, _ in got), got
        assert len({out["order_id"] for _, _, out in got}) == 5
        checks += 2

        # --- Idempotency-Key, respond-async, checkout ---------------------------------------
        key = uuid.uuid4().hex
        c.send(raw_request(tok, {"product_id": pid, "quantity": 2}, extra={"Idempotency-Key": key}))
        st1, _, first = c.response()
        c.send(raw_request(tok, {"product_id": pid, "quantity": 2}, extra={"Idempotency-Key": key}))
        st2, _, again = c.response()
        assert st1 == 201 and st2 == 201 and first["order_id"] == again["order_id"], (first, again)
        c.send(raw_request(tok, {"product_id": pid, "quantity": 1}, extra={"Prefer": "respond-async"}))
        st, h, out = c.response()
        assert st in (201, 202), (st, out)
        if st == 202:
            assert out["status"] == "PENDING" and h["location"] == "/api/orders/" + out["order_id"], (h, out)
        c.send(raw_request(tok, {"items": [{"product_id": pid, "quantity": 1}]}))
        st, _, out = c.response()
        assert st == 201 and out["status"] == "RESERVED" and len(out["items"]) == 1, (st, out)
        checks += 3

        # --- refusals on a connection that stays usable -------------------------------------
        c.send(raw_request(None, {"product_id": pid, "quantity": 1}))
        expect_error(*c.response(), 401, "UNAUTHENTICATED")
        c.send(raw_request(tok, b"{not json"))
        expect_error(*c.response(), 400, "BAD_JSON")
        c.send(raw_request(tok, b"x=1", ctype="text/plain"))
        expect_error(*c.response(), 415, "UNSUPPORTED_MEDIA_TYPE")
        c.send(raw_request(tok, {"product_id": pid, "quantity": 0}))
        expect_error(*c.response(), 422, "INVALID_QUANTITY")
        c.send(raw_request(tok, b"", method="GET", ctype=None))
        st, h, out = c.response()
        expect_error(st, h, out, 405, "METHOD_NOT_ALLOWED")
        assert h["allow"] == "POST", h
        c.send(raw_request(tok, {}, path="/api/products"))
        expect_error(*c.response(), 404, "NOT_FOUND")
        c.send(raw_request(tok, {"product_id": pid, "quantity": 1}))  # still served
        assert c.response()[0] == 201
        c.close()
        checks += 7

        # --- refusals that close the connection ---------------------------------------------
        closing = [
            (b"POST /api/orders HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
             411, "LENGTH_REQUIRED"),
            (b"POST /api/orders HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n{",
             413, "BODY_TOO_LARGE"),
            (b"POST /api/orders HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", 431, "HEADERS_TOO_LARGE"),
            (b"POST /api/orders HTTP/1.1\r\n" + b"".join(b"X-H%d: 1\r\n" % i for i in range(70)) + b"\r\n",
             431, "HEADERS_TOO_LARGE"),
            (b"HELLO\r\n\r\n", 400, "BAD_REQUEST"),
            (b"POST /api/orders HTTP/1.1\r\nContent-Length: -5\r\n\r\n", 400, "BAD_REQUEST"),
            (b"POST /api/orders HTTP/1.1\r\nContent-Length: +2\r\n\r\n{}", 400, "BAD_REQUEST"),
            # what a proxy in front might read differently (request smuggling): refused
            (b"POST /api/orders HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 40\r\n\r\n{}",
             400, "BAD_REQUEST"),
            (b"POST /api/orders HTTP/1.1\r\nContent-Length : 2\r\n\r\n{}", 400, "BAD_REQUEST"),
            (b"POST /api/orders HTTP/1.1\nContent-Length: 2\r\n\r\n{}", 400, "BAD_REQUEST"),
        ]
        for data, want, code in closing:
            c = Conn(port)
            try:
                c.send(data)
            except OSError:
                pass  # the server may answer and close before it has read everything
            st, h, out = c.response()
            expect_error(st, h, out, want, code)
            assert h.get("connection") == "close", h
            assert c.closed_by_server(5), "connection left open after %d" % want
            c.close()
        checks += len(closing)

        # --- a request followed by the client's FIN is answered; HTTP/1.0 closes; stray CRLF -
        c = Conn(port)
        c.send(b"\r\n" + raw_request(tok, {"product_id": pid, "quantity": 1}))
        c.s.shutdown(socket.SHUT_WR)
        st, h, out = c.response()  # (the FIN is read at the wake after the answer, as a rule)
        assert st == 201, (st, h, out)
        assert c.closed_by_server(5)
        c.close()

        def pipelined_then_fin(prefix, fill=None):
            """Two pipelined requests and the FIN in one go: both answered 201, in order, as
            two orders, then the close. fill: pad them to exactly that many bytes and send
            them corked (below). Returns the two answers' headers."""
            c = Conn(port)
            rids = ["%s-%d-%s" % (prefix, i, uuid.uuid4().hex[:6]) for i in range(2)]
            reqs = [raw_request(tok, {"product_id": pid, "quantity": 1}, extra={"X-Request-Id": r}) for r in rids]
            if fill:
                c.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
                pad = fill - sum(len(r) for r in reqs) - len("X-Pad: \r\n")
                assert pad > 0, pad
                reqs[0] = raw_request(tok, {"product_id": pid, "quantity": 1},
                                      extra={"X-Request-Id": rids[0], "X-Pad": "p" * pad})
                assert sum(len(r) for r in reqs) == fill
            c.send(b"".join(reqs))
            c.s.shutdown(socket.SHUT_WR)
            got = [c.response() for _ in rids]
            assert [h["x-request-id"] for _, h, _ in got] == rids, got
            assert all(st == 201 for st, _, _ in got), got
            assert got[0][2]["order_id"] != got[1][2]["order_id"], got
            assert c.closed_by_server(5)
            c.close()
            return [h for _, h, _ in got]

        pipelined_then_fin("fin")
        # the same when the requests fill the server's first read exactly (4,096 bytes), so
        # that the FIN is read in the same wake, before the first answer: the first answer
        # keeps the connection, the last says close. TCP_CORK holds the bytes until the
        # shutdown, which then sends them with the FIN in one segment: the server does not
        # read the requests before the FIN is there (unless this process stalls for the
        # cork's ceiling, 200 ms, between the two calls).
        first, last = pipelined_then_fin("fill", fill=4096)
        assert first.get("connection") != "close", first
        assert last.get("connection") == "close", last  # the FIN was read with them
        c = Conn(port)
        c.send(raw_request(tok, {"product_id": pid, "quantity": 1}).replace(b"HTTP/1.1", b"HTTP/1.0", 1))
        st, h, out = c.response()
        assert st == 201 and h.get("connection") == "close", (st, h, out)
        assert c.closed_by_server(5)
        c.close()
        checks += 4

        # --- a client that goes away while its order waits ----------------------------------
        for _ in range(20):
            c = Conn(port)
            c.send(raw_request(tok, {"product_id": pid, "quantity": 1}))
            c.close()
        c = Conn(port)
        c.send(raw_request(tok, {"product_id": pid, "quantity": 1}))
        assert c.response()[0] == 201
        c.close()
        checks += 1

        # --- slow, idle, and too many -------------------------------------------------------
        slow = []
        for _ in range(200):
            k = Conn(port)
            k.send(b"POST /api/orders HTTP/1.1\r\nHost: t\r\nContent-Le")
            slow.append(k)
        c = Conn(port)
        c.send(raw_request(tok, {"product_id": pid, "quantity": 1}))
        assert c.response()[0] == 201, "an order was not answered while 200 clients were slow"
        assert all(k.closed_by_server(10) for k in slow), "a slow client was not closed by the timeout"
        for k in slow:
            k.close()
        checks += 2
        assert c.closed_by_server(6), "an idle kept-alive connection was not closed"
        c.close()
        checks += 1

        held = [Conn(port) for _ in range(400)]
        extra = Conn(port)
        st, h, out = extra.response()
        expect_error(st, h, out, 503, "UNAVAILABLE")
        assert h.get("retry-after") == "1", h
        extra.close()
        held[0].send(raw_request(tok, {"product_id": pid, "quantity": 1}))
        assert held[0].response()[0] == 201, "a held connection was not served past the limit"
        for k in held:
            k.close()
        time.sleep(0.5)
        c = Conn(port)
        c.send(raw_request(tok, {"product_id": pid, "quantity": 1}))
        assert c.response()[0] == 201
        c.close()
        checks += 2

        s.wait_all_decided()
    # the stop's drain, on a system of its own: one worker, so that a second checkout waits
    # for it; decisions waited for long enough to outlast the processor's pause
    with System(bindir, sagas=True, api_env=dict(api_env, FLASHSALE_ORDER_IDLE_S="6", FLASHSALE_ORDER_WORKERS="1",
                                                 FLASHSALE_DECISION_WAIT_MS="10000")) as s:
        checks += drain(s, s.order_port, s.create_product(stock=100000))
    print("order front: %d checks passed" % checks)


def commands_of(s, member):
    """The order ids of the member's ReserveStock commands in the log."""
    return {r["value"]["order_id"] for r in s.dump("inventory.commands")
            if r.get("type") == "ReserveStock" and r["value"].get("member_id") == member}


def drain(s, port, pid):
    """The stop's drain (the API does not come back). The processor is paused, so that orders
    wait for their decisions when SIGTERM comes; it goes on after the drain began."""
    buyer, tok = s.member()
    idle, answered = [], set()
    for _ in range(5):  # kept alive, answered before the stop
        k = Conn(port)
        k.send(raw_request(tok, {"product_id": pid, "quantity": 1}))
        st, _, out = k.response()
        assert st == 201, (st, out)
        answered.add(out["order_id"])
        idle.append(k)
    proc = s.procs["inv-a"]
    proc.send_signal(signal.SIGSTOP)
    civet = {}
    try:
        waiting = [Conn(port) for _ in range(30)]
        for k in waiting:
            k.send(raw_request(tok, {"product_id": pid, "quantity": 1}))
        # one through civetweb (the API's own port), whose wait needs the front's loop too
        t = threading.Thread(target=lambda: civet.update(r=s.request(
            "POST", "/api/orders", {"product_id": pid, "quantity": 1}, tok, direct=True, timeout=60)))
        t.start()
        running = Conn(port)  # the one worker takes it up and waits in it
        running.send(raw_request(tok, {"items": [{"product_id": pid, "quantity": 1}]}))
        # all of them under way (their commands in the log: the checkout's line is the
        # saga's) before the stop: 5 + 30 + civetweb's + the line
        deadline = time.time() + 60
        while len(commands_of(s, buyer)) < 37:
            assert time.time() < deadline, "the orders did not reach the log"
            time.sleep(0.2)
        queued = Conn(port)  # behind the running checkout: no worker for it
        queued.send(raw_request(tok, {"items": [{"product_id": pid, "quantity": 1}]}))
        time.sleep(0.3)  # (read and queued, or refused by the drain: 503 either way)
        s.api.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        st, h, out = queued.response()  # (refused as the drain begins)
        expect_error(st, h, out, 503, "UNAVAILABLE")
        assert h.get("connection") == "close" and h.get("retry-after") == "1", h
        for k in idle:
            k.send(raw_request(tok, {"product_id": pid, "quantity": 1}))
            st, h, out = k.response()
            expect_error(st, h, out, 503, "UNAVAILABLE")
            assert h.get("connection") == "close", h
            assert k.closed_by_server(5), "a connection answered 503 in the drain stayed open"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
            raise AssertionError("the order front took a new connection while stopping")
        except ConnectionRefusedError:
            pass
        # still waiting: their decisions cannot have come
        ready, _, _ = select.select([k.s for k in waiting + [running]], [], [], 0)
        assert not ready, "an order was answered before its decision could be taken"
    finally:
        proc.send_signal(signal.SIGCONT)
    for k in waiting:
        st, h, out = k.response()
        assert st == 201 and out["status"] == "RESERVED", (st, out)
        assert h.get("connection") == "close", h  # a stopping server keeps no connection
        answered.add(out["order_id"])
    st, _, out = running.response()
    assert st == 201 and out["status"] == "RESERVED", (st, out)
    answered.add(out["order_id"])
    t.join(60)
    st, _, out = civet["r"]
    assert st == 201 and out["status"] == "RESERVED", (st, out)
    answered.add(out["order_id"])
    assert s.api.wait(timeout=30) == 0, "the API did not exit cleanly after its drain"
    # ended by itself once everything was answered, well before FLASHSALE_DRAIN_MS (15 s)
    assert time.monotonic() - stopped_at < 12, "the drain ran to its deadline"
    # every order of the buyer in the log was answered: the five before the stop, the 30
    # that waited through it, civetweb's, the running checkout (its line); not the refused one
    placed = commands_of(s, buyer)
    assert placed == answered and len(answered) == 37, (len(placed), len(answered), placed ^ answered)
    for k in waiting + idle + [running, queued]:
        k.close()
    return 7


if __name__ == "__main__":
    main(sys.argv[1])
