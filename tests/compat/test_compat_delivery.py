"""Delivery semantics of published items compared between Pushpin and Gripway, seen by a
held stream: de-duplication by id, prev-id ordering (an out-of-order pair is delivered in
order; a missing predecessor is waited for, then given up on), all-or-nothing requests, and
content-bin."""

import time

from compat_http import stream_item
from compat_servers import Reply

OPEN = b"open\n"


def stream_origin(origin):
    return origin.route(lambda req: Reply(200, "OK", [
        ("Content-Type", "text/plain"), ("Grip-Hold", "stream"),
        ("Grip-Channel", req["path"].rsplit("/", 1)[1])], OPEN))


def run_stream(origin, both, chan, publish, until, limit=10.0):
    """Open a stream per server, call publish(target, channel), read until `until`; returns
    {server: (decoded body, seconds from the first publish to `until`)}."""
    prefix = stream_origin(origin)

    def run(t):
        channel = chan + t.name
        with t.open("GET", prefix + channel) as c:
            c.read_until(OPEN)
            start = time.monotonic()
            publish(t, channel)
            c.read_until(until, limit=limit)
            return c.body, time.monotonic() - start

    return both(run)


def test_same_id_delivered_once(origin, both, chan):
    def publish(t, ch):
        t.publish_items(stream_item(ch, "a\n", id="dup-1"))
        t.publish_items(stream_item(ch, "a\n", id="dup-1"))
        t.publish_items(stream_item(ch, "a\n", id="dup-1"), stream_item(ch, "end\n", id="dup-2"))

    res = run_stream(origin, both, chan, publish, b"end\n")
    assert res["pushpin"][0] == res["gripway"][0] == OPEN + b"a\nend\n"


def test_same_id_on_other_channel_not_deduplicated(origin, both, chan):
    def publish(t, ch):
        t.publish_items(stream_item(ch + "-other", "x\n", id="shared-id"))
        t.publish_items(stream_item(ch, "a\n", id="shared-id"), stream_item(ch, "end\n"))

    res = run_stream(origin, both, chan, publish, b"end\n")
    assert res["pushpin"][0] == res["gripway"][0] == OPEN + b"a\nend\n"


def test_prev_id_out_of_order_pair_delivered_in_order(origin, both, chan):
    def publish(t, ch):
        t.publish_items(stream_item(ch, "0\n", id="0"))
        t.publish_items(stream_item(ch, "2\n", id="2", **{"prev-id": "1"}))
        t.publish_items(stream_item(ch, "1\n", id="1", **{"prev-id": "0"}))

    res = run_stream(origin, both, chan, publish, b"2\n")
    assert res["pushpin"][0] == res["gripway"][0] == OPEN + b"0\n1\n2\n"
    assert res["pushpin"][1] < 2 and res["gripway"][1] < 2  # released by the predecessor


def test_prev_id_missing_predecessor_waits_then_delivers(origin, both, chan):
    """Both wait for the missing predecessor (Pushpin message_wait=5000 ms, Gripway
    order_wait_ms=5000), then deliver what they hold."""
    def publish(t, ch):
        t.publish_items(stream_item(ch, "0\n", id="0"))
        t.publish_items(stream_item(ch, "2\n", id="2", **{"prev-id": "1"}))

    res = run_stream(origin, both, chan, publish, b"2\n", limit=9)
    assert res["pushpin"][0] == res["gripway"][0] == OPEN + b"0\n2\n"
    for name, (_, took) in res.items():
        assert 3.5 <= took <= 7.5, (name, took)


def test_prev_id_on_fresh_channel_is_not_held(origin, both, chan):
    """With no id seen yet on the channel there is nothing to wait for."""
    def publish(t, ch):
        t.publish_items(stream_item(ch, "5\n", id="5", **{"prev-id": "4"}))

    res = run_stream(origin, both, chan, publish, b"5\n")
    assert res["pushpin"][0] == res["gripway"][0] == OPEN + b"5\n"
    assert res["pushpin"][1] < 2 and res["gripway"][1] < 2


def test_request_with_bad_item_publishes_nothing(origin, both, chan):
    def publish(t, ch):
        head, _ = t.publish({"items": [stream_item(ch, "good\n"),
                                       {"channel": ch, "formats": {"http-stream": {}}}]})
        assert head.status == 400
        t.publish_items(stream_item(ch, "end\n"))

    res = run_stream(origin, both, chan, publish, b"end\n")
    assert res["pushpin"][0] == res["gripway"][0] == OPEN + b"end\n"


def test_content_bin_and_order_within_request(origin, both, chan):
    def publish(t, ch):
        t.publish_items({"channel": ch, "formats": {"http-stream": {"content-bin": "AP8BCg=="}}},
                        stream_item(ch, "b\n"), stream_item(ch, "c\n"))

    res = run_stream(origin, both, chan, publish, b"c\n")
    assert res["pushpin"][0] == res["gripway"][0] == OPEN + b"\x00\xff\x01\nb\nc\n"
