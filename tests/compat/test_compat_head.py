"""HEAD requests on held responses compared between Pushpin and Gripway: a stream hold and a
long-poll answered by a publish. The heads match; Pushpin then writes the published content
after the head of a HEAD response, Gripway does not."""

import time

from compat_http import stream_item
from test_compat_longpoll import hold_response, publish_until_answered
from test_compat_stream import MSG1, hold_stream


def test_head_on_stream_hold(origin, both, chan):
    """Same head. Intended difference: Pushpin then writes published content as chunks after
    the head of a HEAD response (which has no body, RFC 9110 §9.3.2), corrupting the
    connection; Gripway writes nothing."""
    prefix = origin.route(hold_stream())

    def run(t):
        with t.open("HEAD", prefix + chan + t.name) as c:
            time.sleep(0.2)
            t.publish_items(stream_item(chan + t.name, MSG1))
            return c.head, c.read_raw_for(0.8)

    res = both(run)
    (ph, pafter), (gh, gafter) = res["pushpin"], res["gripway"]
    assert (ph.status, ph.reason) == (gh.status, gh.reason) == (200, "OK")
    assert ph.comparable() == gh.comparable()
    assert pafter == b"1a\r\n" + MSG1.encode() + b"\r\n"
    assert gafter == b""


def test_head_on_long_poll(origin, both, chan):
    """Same head (status, headers, Content-Length of the published body)."""
    prefix = origin.route(hold_response())

    def run(t):
        with t.open_unread("HEAD", prefix + chan + t.name) as c:
            head = publish_until_answered(t, c, chan + t.name,
                                          {"code": 201, "headers": {"X-P": "1"}, "body": "pushed\n"})
            return head, c.read_raw_for(0.5)

    res = both(run)
    (ph, pafter), (gh, gafter) = res["pushpin"], res["gripway"]
    assert (ph.status, ph.reason) == (gh.status, gh.reason) == (201, "Created")
    assert ph.comparable() == gh.comparable()
    assert ph.get("content-length") == gh.get("content-length") == "7"
    # Intended difference, as for streams: Pushpin writes the published body after the head
    # of a HEAD response; Gripway sends the head only.
    assert (pafter, gafter) == (b"pushed\n", b"")
