"""Stream holds (`Grip-Hold: stream`) compared between Pushpin and Gripway: the SSE byte
stream after the head (initial body plus published http-stream content, chunking decoded),
the `close` action, `Grip-Status`, `Grip-Expose-Headers`, the JSON `application/grip-instruct`
form, `Grip-Keep-Alive` data, and an HTTP/1.0 client (no chunking, close at the end)."""

import json
import time

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


@pytest.mark.parametrize("grip_status", ["404 Not Found", "202 Accepted Later", "201", "410"])
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


KEEP_ALIVES = [  # (Grip-Keep-Alive header, the bytes it stands for)
    (r":\n\n; format=cstring; timeout=1", b":\n\n"),
    ("AAE=; format=base64; timeout=1", b"\x00\x01"),
    ("ping; timeout=1; mode=interval", b"ping"),
]


def test_keep_alive_data(origin, both, chan):
    """Same keep-alive bytes, each written as its own chunk, for the cstring, base64 and raw
    formats (three streams per server at once). Timing differs on purpose: Pushpin subtracts
    a random 0-999 ms from every period (ref §1.4), so with timeout=1 it sends one every
    ~0.5 s; Gripway keeps the configured period."""
    prefixes = [origin.route(hold_stream([("Grip-Keep-Alive", h)])) for h, _ in KEEP_ALIVES]

    def run(t):
        conns = [t.open("GET", p + chan + t.name) for p in prefixes]
        try:
            time.sleep(2.6)
            out = []
            for c, (_, data) in zip(conns, KEEP_ALIVES):
                c.read_until(SSE_OPEN + data, limit=2)
                out.append((c.body, c.decoder.chunk_sizes))
            return out
        finally:
            for c in conns:
                c.close()

    res = both(run)
    for name, results in res.items():
        for (body, sizes), (header, data) in zip(results, KEEP_ALIVES):
            n = (len(body) - len(SSE_OPEN)) // len(data)
            assert body == SSE_OPEN + data * n, (name, header)
            assert sizes[1:] == [len(data)] * n, (name, header)  # one chunk per keep-alive
            assert n >= 1, (name, header, n)
    # Gripway: one per second, so at most 3 in the 2.6 s window (Pushpin sends ~5)
    for (body, _), (_, data) in zip(res["gripway"], KEEP_ALIVES):
        assert (len(body) - len(SSE_OPEN)) // len(data) <= 3


@pytest.mark.parametrize("status,grip_status", [(204, None), (200, "204"), (200, "304")])
def test_stream_hold_bodyless_status(origin, both, chan, status, grip_status):
    extra = [("Grip-Status", grip_status)] if grip_status else []
    prefix = origin.route(hold_stream(extra, body=b"", status=status, reason="X"))

    def run(t):
        with t.open("GET", prefix + chan + t.name) as c:
            time.sleep(0.2)
            t.publish_items(stream_item(chan + t.name, MSG1))
            return c.head, c.read_raw_for(0.8)

    res = both(run)
    for name in ("pushpin", "gripway"):  # gripway also writes b"1a\r\nevent: ..." after the head
        head, after = res[name]
        assert head.get("transfer-encoding") is None and after == b"", (name, head, after)


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
