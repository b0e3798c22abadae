"""Response holds (long-polling) compared between Pushpin and Gripway: a published
http-response (code, reason, headers layered over the origin's hold response, body), a code
without a reason, `body-patch`, the JSON instruct form, `hint` (the origin is asked again),
and the timeout response after `Grip-Timeout` (both raise 1 to the 5 s minimum)."""

import json
import threading
import time

from compat_servers import Reply

HOLD_BODY = b'{"messages": []}\n'


def hold_response(extra=(), body=HOLD_BODY, status=200, reason="OK"):
    """Origin handler: a response hold on the channel named by the last path segment."""

    def handle(req):
        channel = req["path"].rsplit("/", 1)[1]
        return Reply(status, reason, [("Content-Type", "application/json"), ("X-Origin", "hold"),
                                      ("X-Override", "origin"), ("Grip-Hold", "response"),
                                      ("Grip-Channel", channel), *extra], body)
    return handle


def answer_poll(t, path, fmt, origin=None, limit=10.0):
    """Send the long-poll, then publish `fmt` (an http-response format) every 0.2 s until the
    response head arrives (the hold subscribes at a moment the client cannot see; items without
    an id are simply not delivered before that). Returns (head, body)."""
    channel = path.rsplit("/", 1)[1]
    c = t.open_unread("GET", path)
    try:
        deadline = time.monotonic() + limit
        while True:
            assert time.monotonic() < deadline, f"{t.name}: long-poll never answered"
            t.publish_items({"channel": channel, "formats": {"http-response": fmt}})
            try:
                c.read_head(limit=0.2)
                break
            except TimeoutError:
                continue
        return c.head, c.read_body()
    finally:
        c.close()


def same_response(res):
    (ph, pb), (gh, gb) = res["pushpin"], res["gripway"]
    assert (gh.status, gh.reason) == (ph.status, ph.reason)
    assert gh.comparable() == ph.comparable()
    assert gb == pb
    return ph, pb


def test_published_response_inherits_hold_headers(origin, both, chan):
    prefix = origin.route(hold_response())
    fmt = {"code": 201, "reason": "Made It", "headers": {"X-Override": "pushed", "X-New": "n"},
           "body": "pushed body\n"}
    head, body = same_response(both(lambda t: answer_poll(t, prefix + chan + t.name, fmt)))
    assert (head.status, head.reason, body) == (201, "Made It", b"pushed body\n")
    assert head.get("x-override") == "pushed" and head.get("x-origin") == "hold"
    assert head.get("content-type") == "application/json"


def test_published_code_without_reason_and_body_bin(origin, both, chan):
    prefix = origin.route(hold_response())
    fmt = {"code": 404, "body-bin": "AAEC/w=="}
    head, body = same_response(both(lambda t: answer_poll(t, prefix + chan + t.name, fmt)))
    assert (head.status, head.reason, body) == (404, "Not Found", b"\x00\x01\x02\xff")


def test_body_patch(origin, both, chan):
    prefix = origin.route(hold_response(body=b'{"messages": [], "n": 1}\n'))
    fmt = {"body-patch": [{"op": "add", "path": "/messages/-", "value": "hi"},
                          {"op": "replace", "path": "/n", "value": 2}]}
    head, body = same_response(both(lambda t: answer_poll(t, prefix + chan + t.name, fmt)))
    assert json.loads(body) == {"messages": ["hi"], "n": 2}


def test_json_instruct_response_hold(origin, both, chan):
    def handle(req):
        channel = req["path"].rsplit("/", 1)[1]
        instruct = {"hold": {"mode": "response", "channels": [{"name": channel}], "timeout": 30},
                    "response": {"code": 200, "headers": {"Content-Type": "text/plain",
                                                          "X-Json": "yes"}, "body": "timeout\n"}}
        return Reply(200, "OK", [("Content-Type", "application/grip-instruct")],
                     json.dumps(instruct))

    prefix = origin.route(handle)
    fmt = {"headers": {"X-Pushed": "1"}, "body": "news\n"}
    head, body = same_response(both(lambda t: answer_poll(t, prefix + chan + t.name, fmt)))
    assert (head.status, body, head.get("x-json"), head.get("x-pushed")) == (200, b"news\n", "yes", "1")


def test_hint_asks_origin_again(origin, both, chan):
    def handle(req):
        channel = req["path"].rsplit("/", 1)[1]
        seen = len(origin.seen(req["path"]))
        if seen == 1:
            return hold_response()(req)
        return Reply(200, "OK", [("Content-Type", "text/plain")], f"fresh {seen} {channel}\n")

    prefix = origin.route(handle)
    res = both(lambda t: answer_poll(t, prefix + chan + t.name, {"action": "hint"}))
    (ph, pb), (gh, gb) = res["pushpin"], res["gripway"]
    assert (gh.status, gh.reason) == (ph.status, ph.reason) == (200, "OK")
    assert gh.comparable() == ph.comparable()
    assert pb == f"fresh 2 {chan}pushpin\n".encode()
    assert gb == f"fresh 2 {chan}gripway\n".encode()


def test_timeout_response_and_minimum(origin, both, chan):
    """Grip-Timeout: 1 is raised to 5 s by both; the timeout response is the origin's own
    response minus Grip headers, with Grip-Status applied. Two polls per server at once."""
    plain = origin.route(hold_response([("Grip-Timeout", "1")], body=b"timed out\n"))
    status = origin.route(hold_response([("Grip-Timeout", "1"), ("Grip-Status", "304 Nothing New")],
                                        body=b""))

    def run(t):
        out = {}

        def one(key, path):
            start = time.monotonic()
            with t.open("GET", path, timeout=15) as c:
                out[key] = (c.head, c.read_body(), time.monotonic() - start)

        threads = [threading.Thread(target=one, args=(k, p + chan + t.name + k))
                   for k, p in (("plain", plain), ("status", status))]
        for th in threads:
            th.start()
        for th in threads:
            th.join(20)
        return out

    res = both(run)
    for key in ("plain", "status"):
        (ph, pb, pt), (gh, gb, gt) = res["pushpin"][key], res["gripway"][key]
        assert (gh.status, gh.reason) == (ph.status, ph.reason), key
        assert gh.comparable() == ph.comparable(), key
        assert gb == pb, key
        assert 4.0 <= pt <= 7.5 and 4.0 <= gt <= 7.5, (key, pt, gt)
    assert res["pushpin"]["plain"][1] == b"timed out\n"
    assert (res["pushpin"]["status"][0].status, res["pushpin"]["status"][0].reason) == (304, "Nothing New")
