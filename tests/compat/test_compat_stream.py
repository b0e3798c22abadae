"""Stream holds (`Grip-Hold: stream`) compared between Pushpin and Gripway: the SSE byte
stream after the head (initial body plus published http-stream content, chunking decoded),
the `close` action, `Grip-Status`, `Grip-Expose-Headers`, the JSON `application/grip-instruct`
form, `Grip-Keep-Alive` data, and an HTTP/1.0 client (no chunking, close at the end)."""

import json

import pytest

from compat_http import stream_item
from compat_servers import Reply

SSE_OPEN = b"event: message\ndata: stream open\n\n"
MSG1 = "event: message\ndata: one\n\n"
MSG2 = "id: 2\nevent: update\ndata: {\"two\": 2}\n\n"


def hold_stream(extra_headers=(), body=SSE_OPEN, status=200, reason="OK"):
    """Origin handler: an SSE stream hold on the channel named by the last path segment."""

    def handle(req):
        channel = req["path"].rsplit("/", 1)[1]
        return Reply(status, reason, [("Content-Type", "text/event-stream"),
                                      ("Cache-Control", "no-cache"), ("Grip-Hold", "stream"),
                                      ("Grip-Channel", channel), *extra_headers], body)
    return handle


def test_sse_stream_bytes(origin, both, chan):
    prefix = origin.route(hold_stream([("X-Origin", "kept")]))

    def run(t):
        with t.open("GET", prefix + chan + t.name, headers=[("Accept", "text/event-stream")]) as c:
            c.read_until(SSE_OPEN)
            t.publish_items(stream_item(chan + t.name, MSG1))
            c.read_until(MSG1.encode())
            t.publish_items(stream_item(chan + t.name, MSG2))
            c.read_until(MSG2.encode())
            return c.head, c.body, c.decoder is not None

    res = both(run)
    (ph, pb, pchunked), (gh, gb, gchunked) = res["pushpin"], res["gripway"]
    assert (gh.status, gh.reason) == (ph.status, ph.reason) == (200, "OK")
    assert gh.comparable() == ph.comparable()
    assert "grip-hold" not in {k.lower() for k, _ in gh.headers}
    assert gb == pb == SSE_OPEN + MSG1.encode() + MSG2.encode()
    assert pchunked and gchunked  # HTTP/1.1 streams are chunked by both


def test_close_action_ends_stream(origin, both, chan):
    prefix = origin.route(hold_stream())

    def run(t):
        with t.open("GET", prefix + chan + t.name) as c:
            c.read_until(SSE_OPEN)
            t.publish_items(stream_item(chan + t.name, MSG1))
            c.read_until(MSG1.encode())
            t.publish_items({"channel": chan + t.name, "formats": {"http-stream": {"action": "close"}}})
            body = c.read_body(limit=5)  # returns once the last chunk arrives
            return body, c.decoder.done, c.decoder.chunk_sizes[-1]

    res = both(run)
    assert res["gripway"] == res["pushpin"] == (SSE_OPEN + MSG1.encode(), True, 0)


@pytest.mark.parametrize("grip_status", ["404 Not Found", "202 Accepted Later", "201", "418"])
def test_grip_status_on_stream(origin, both, chan, grip_status):
    prefix = origin.route(hold_stream([("Grip-Status", grip_status)]))

    def run(t):
        with t.open("GET", prefix + chan + t.name) as c:
            c.read_until(SSE_OPEN)
            return c.head

    res = both(run)
    ph, gh = res["pushpin"], res["gripway"]
    assert (gh.status, gh.reason) == (ph.status, ph.reason)
    assert ph.status == int(grip_status.split()[0])
    assert gh.comparable() == ph.comparable()


def test_grip_expose_headers(origin, both, chan):
    prefix = origin.route(hold_stream([("X-Secret", "hidden"), ("X-Public", "shown"),
                                       ("Grip-Expose-Headers", "Content-Type, X-Public")]))

    def run(t):
        with t.open("GET", prefix + chan + t.name) as c:
            c.read_until(SSE_OPEN)
            return c.head

    res = both(run)
    ph, gh = res["pushpin"], res["gripway"]
    assert gh.comparable() == ph.comparable()


def test_json_instruct_stream(origin, both, chan):
    def handle(req):
        channel = req["path"].rsplit("/", 1)[1]
        instruct = {"hold": {"mode": "stream", "channels": [{"name": channel}]},
                    "response": {"code": 200, "reason": "Streaming",
                                 "headers": {"Content-Type": "text/plain", "X-Json": "yes"},
                                 "body": "json open\n"}}
        return Reply(200, "OK", [("Content-Type", "application/grip-instruct")],
                     json.dumps(instruct))

    prefix = origin.route(handle)

    def run(t):
        with t.open("GET", prefix + chan + t.name) as c:
            c.read_until(b"json open\n")
            t.publish_items(stream_item(chan + t.name, "pushed\n"))
            c.read_until(b"pushed\n")
            return c.head, c.body

    res = both(run)
    (ph, pb), (gh, gb) = res["pushpin"], res["gripway"]
    assert (gh.status, gh.reason) == (ph.status, ph.reason) == (200, "Streaming")
    assert gh.comparable() == ph.comparable()
    assert gb == pb == b"json open\npushed\n"


def test_keep_alive_data(origin, both, chan):
    # timeout=1: Pushpin subtracts up to 999 ms of jitter, so the first one comes within ~1 s
    prefix = origin.route(hold_stream([("Grip-Keep-Alive", r":\n\n; format=cstring; timeout=1")]))

    def run(t):
        with t.open("GET", prefix + chan + t.name) as c:
            c.read_until(SSE_OPEN)
            c.read_until(SSE_OPEN + b":\n\n", limit=4)
            return c.body[:len(SSE_OPEN) + 3]

    res = both(run)
    assert res["gripway"] == res["pushpin"] == SSE_OPEN + b":\n\n"


def test_http10_client_stream(origin, both, chan):
    prefix = origin.route(hold_stream())

    def run(t):
        with t.open("GET", prefix + chan + t.name, version="HTTP/1.0") as c:
            t.publish_items(stream_item(chan + t.name, MSG1))
            c.read_until(SSE_OPEN + MSG1.encode())  # raw: no chunk decoding for HTTP/1.0
            t.publish_items({"channel": chan + t.name, "formats": {"http-stream": {"action": "close"}}})
            closed = c.closed_within(5)
            return c.head, c.body, closed

    res = both(run)
    (ph, pb, pc), (gh, gb, gc) = res["pushpin"], res["gripway"]
    assert ph.get("transfer-encoding") is None and gh.get("transfer-encoding") is None
    assert gh.version == ph.version
    assert gh.comparable() == ph.comparable()
    assert gb == pb == SSE_OPEN + MSG1.encode()
    assert gc and pc
