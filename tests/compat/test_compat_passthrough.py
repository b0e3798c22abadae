"""Pass-through (no GRIP instructions) compared between Pushpin and Gripway: status code,
custom reason phrase, repeated Set-Cookie headers, body bytes, an origin 404, a HEAD
request, a request body, an origin that is down (502), an HTTP/1.0 client, origin framing,
a gzip-encoded origin body, and oversized or malformed requests."""

import gzip

import compat_http as ch
from compat_servers import DEAD_PREFIX, Reply


def same(res):
    """Assert both servers gave the client the same status, reason, headers and body."""
    (ph, pb), (gh, gb) = res["pushpin"], res["gripway"]
    assert (gh.status, gh.reason) == (ph.status, ph.reason)
    assert gh.comparable() == ph.comparable()
    assert gb == pb


def test_status_reason_set_cookies_body(origin, both):
    body = b"plain body \x00\xff bytes\n"
    prefix = origin.route(lambda req: Reply(
        201, "Very Created", [("Content-Type", "application/octet-stream"),
                              ("Set-Cookie", "a=1; Path=/"), ("Set-Cookie", "b=2; HttpOnly"),
                              ("X-Custom", "x1"), ("Cache-Control", "no-store")], body))
    res = both(lambda t: t.fetch("GET", prefix + "thing"))
    same(res)
    head, got = res["gripway"]
    assert (head.status, head.reason, got) == (201, "Very Created", body)
    assert head.get_all("set-cookie") == ["a=1; Path=/", "b=2; HttpOnly"]


def test_origin_404(origin, both):
    prefix = origin.route(lambda req: Reply(404, "Not Found", [("Content-Type", "text/plain")],
                                            "nothing here\n"))
    res = both(lambda t: t.fetch("GET", prefix + "missing"))
    same(res)
    assert res["pushpin"][0].status == 404


def test_head_request(origin, both):
    prefix = origin.route(lambda req: Reply(200, "OK", [("Content-Type", "text/plain"),
                                                        ("X-Method", req["method"])], "0123456789"))
    res = both(lambda t: t.fetch("HEAD", prefix))
    same(res)
    ph = res["pushpin"][0]
    assert ph.get("x-method") == "HEAD" and res["pushpin"][1] == b""


def test_post_body_reaches_origin(origin, both):
    prefix = origin.route(lambda req: Reply(200, "OK", [("Content-Type", "text/plain")],
                                            b"got " + req["body"]))
    res = both(lambda t: t.fetch("POST", prefix, headers=[("Content-Type", "text/plain")],
                                 body=b"payload-" + t.name.encode()))
    assert res["pushpin"][1] == b"got payload-pushpin"
    assert res["gripway"][1] == b"got payload-gripway"
    assert res["gripway"][0].status == res["pushpin"][0].status == 200


def test_unknown_status_reason(origin, both):
    prefix = origin.route(lambda req: Reply(599, "Odd Status", [("Content-Type", "text/plain")],
                                            "odd\n"))
    same(both(lambda t: t.fetch("GET", prefix)))


def test_origin_down_is_502(both):
    res = both(lambda t: t.fetch("GET", DEAD_PREFIX + "x"))
    same(res)
    assert res["pushpin"][0].status == 502 and res["pushpin"][1] == b"Error while proxying to origin.\n"


def test_http10_client(origin, both):
    prefix = origin.route(lambda req: Reply(200, "OK", [("Content-Type", "text/plain")], "plain\n"))

    def run(t):
        with t.open("GET", prefix, version="HTTP/1.0") as c:
            return c.head, c.read_body(), c.closed_within(2)

    res = both(run)
    (ph, pb, pc), (gh, gb, gc) = res["pushpin"], res["gripway"]
    assert (ph.version, ph.status, pb, pc) == (gh.version, gh.status, gb, gc) == ("HTTP/1.0", 200, b"plain\n", True)
    assert gh.comparable() == ph.comparable()


def test_origin_framing_is_not_behaviour(origin, both):
    """A chunked origin body and an EOF-delimited one reach the client with the same bytes;
    the framing may differ (Pushpin re-frames small bodies with Content-Length)."""
    chunked = origin.route(lambda req: Reply(raw=b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                                                 b"Transfer-Encoding: chunked\r\n\r\n"
                                                 b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"))
    eof = origin.route(lambda req: Reply(raw=b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                                             b"Connection: close\r\n\r\nuntil eof\n"))
    for path, body in ((chunked, b"hello world"), (eof, b"until eof\n")):
        res = both(lambda t: t.fetch("GET", path))
        same(res)
        assert res["gripway"][1] == body


def test_gzip_from_origin(origin, both):
    """Intended difference, from Pushpin's HTTP client rather than GRIP: Pushpin's zurl asks
    the origin for compressed content itself and hands the client the decoded body (no
    Content-Encoding); Gripway relays the origin's bytes and Content-Encoding unchanged.
    Both remove the client's own Accept-Encoding before the origin sees it."""
    packed = gzip.compress(b"hello gzip\n", mtime=0)
    prefix = origin.route(lambda req: Reply(200, "OK", [("Content-Type", "text/plain"),
                                                        ("Content-Encoding", "gzip")], packed))
    res = both(lambda t: t.fetch("GET", prefix, headers=[("Accept-Encoding", "gzip")]))
    (ph, pb), (gh, gb) = res["pushpin"], res["gripway"]
    assert ph.status == gh.status == 200
    assert (ph.get("content-encoding"), pb) == (None, b"hello gzip\n")
    assert (gh.get("content-encoding"), gb) == ("gzip", packed)


def test_oversized_and_malformed_requests(origin, both):
    """Intended difference: with a request head over Pushpin's client_buffer_size (8192)
    or a malformed request line, Pushpin (condure) drops the connection without a response;
    Gripway answers (a 20 kB header is within its limit; garbage gets a 400)."""
    prefix = origin.route(lambda req: Reply(200, "OK", [], "ok\n"))

    def run(t):
        out = {}
        for name, raw in (("big", f"GET {prefix} HTTP/1.1\r\nHost: x\r\nX-Compat-Server: {t.name}\r\n"
                                  f"X-Big: {'a' * 20000}\r\n\r\n".encode()),
                          ("garbage", b"GARBAGE\r\n\r\n")):
            with ch.Conn(t.addr, timeout=5) as c:
                c.send(raw)
                try:
                    out[name] = c.read_head(limit=5).status
                except ConnectionError:
                    out[name] = "closed"
        return out

    res = both(run)
    assert res["pushpin"] == {"big": "closed", "garbage": "closed"}
    assert res["gripway"] == {"big": 200, "garbage": 400}
