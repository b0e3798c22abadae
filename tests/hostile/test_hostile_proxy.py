"""Hostile clients against the proxy's request handling, and broken origins.

Documented answers: a client request naming application/websocket-events in any Content-Type
is refused 403 on every route and never reaches the origin; Connection-Id, Meta-*,
Content-Bytes-Replayed, Content-Bytes-Accepted and Keep-Alive-Interval never reach an origin;
an origin that asks to hold on no channel gets the client a 502 (origin's fault, counted); an
origin that dies mid-headers or answers garbage gives 502, one that never answers gives 504
after the response timeout."""

import time

from harness import RESPONSE_TIMEOUT_S, exchange, run, status_of

FORGED = [
    # the attack as found: a harmless Content-Type first, the events type second
    b"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
    b"Content-Type: application/websocket-events\r\nConnection-Id: victim\r\n"
    b"Content-Length: 11\r\n\r\nTEXT 5\r\nhi\r\n",
    # one header, as a list
    b"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain, Application/WebSocket-Events; x=1\r\n"
    b"Content-Length: 0\r\n\r\n",
    # parameters and odd case
    b"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type:  APPLICATION/websocket-events ;charset=utf-8\r\n"
    b"Content-Length: 0\r\n\r\n",
]

# one path per route: plain HTTP, WebSocket-over-HTTP target, raw origin
ROUTES = ["/forged", "/ws/forged", "/raw/forged"]


def test_forged_websocket_events_are_refused_on_every_route(env):
    before = env.errors("client", "websocket-events-from-client")
    seen_before = len(env.origin.requests), len(env.raw.paths)
    n = 0
    for path in ROUTES:
        for template in FORGED:
            resp = run(exchange(env.gw.addr, template.replace(b"{path}", path.encode())))
            assert status_of(resp) == 403, (path, template[:80], resp[:200])
            n += 1
    assert (len(env.origin.requests), len(env.raw.paths)) == seen_before, "an origin saw a forged request"
    assert env.wait_errors("client", "websocket-events-from-client", before + n) == before + n


def test_websocket_over_http_headers_never_reach_the_origin(env):
    stripped = ["Connection-Id", "Meta-User", "Meta-Anything-Else", "Content-Bytes-Replayed",
                "Content-Bytes-Accepted", "Keep-Alive-Interval"]
    for method, extra in [(b"GET", b""), (b"POST", b"Content-Length: 2\r\n")]:
        req = (method + b" /echo HTTP/1.1\r\nHost: x\r\n" + extra
               + b"".join(f"{h}: forged\r\n".encode() for h in stripped)
               + b"X-Kept: yes\r\n\r\n" + (b"hi" if method == b"POST" else b""))
        resp = run(exchange(env.gw.addr, req))
        assert status_of(resp) == 200, resp[:200]
        got = env.origin.requests[-1]["headers"]
        for h in stripped:
            assert h.lower() not in got, f"{h} reached the origin ({method.decode()})"
        assert got.get("x-kept") == "yes"


def test_hold_without_a_channel_is_a_502(env):
    before = env.errors("origin", "hold-without-channel")
    for path in ["/hold-none", "/hold-empty", "/hold-separators"]:
        resp = run(exchange(env.gw.addr, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode(), timeout=5))
        assert status_of(resp) == 502, (path, resp[:200])
    assert env.wait_errors("origin", "hold-without-channel", before + 3) == before + 3


def test_origin_dying_mid_headers_is_a_502(env):
    resp = run(exchange(env.gw.addr, b"GET /raw/die-mid-headers HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert status_of(resp) == 502, resp[:200]


def test_origin_answering_garbage_is_a_502(env):
    resp = run(exchange(env.gw.addr, b"GET /raw/garbage HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert status_of(resp) == 502, resp[:200]


def test_origin_never_answering_is_a_504_after_the_response_timeout(env):
    before = env.errors("origin", "timeout")
    t0 = time.monotonic()
    resp = run(exchange(env.gw.addr, b"GET /raw/silent HTTP/1.1\r\nHost: x\r\n\r\n",
                        timeout=RESPONSE_TIMEOUT_S * 4 + 5))
    took = time.monotonic() - t0
    assert status_of(resp) == 504, resp[:200]
    assert RESPONSE_TIMEOUT_S * 0.9 <= took <= RESPONSE_TIMEOUT_S * 4 + 2, took
    assert env.wait_errors("origin", "timeout", before + 1) >= before + 1


def test_canary_survived(env):
    env.canary.check("the proxy cases")
