"""Pass-through (no GRIP instructions) compared between Pushpin and Gripway: status code,
custom reason phrase, repeated Set-Cookie headers, body bytes, an origin 404, a HEAD
request, a request body, and an origin that is down (502)."""

from compat_servers import Reply


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
    from compat_servers import DEAD_PREFIX
    res = both(lambda t: t.fetch("GET", DEAD_PREFIX + "x"))
    print(res)
    same(res)
