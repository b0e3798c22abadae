"""GRIP instruction parsing compared between Pushpin and Gripway: invalid instructions
(502 "Error while proxying to origin."), Grip headers without a hold (Grip-Status,
Grip-Expose-Headers), lower-case Grip header names, the JSON form without a hold, several
and quoted channel names, empty Grip-Channel elements, prev-id without a next link, and the
default reason phrase for a Grip-Status code."""

import json

import pytest

from compat_http import stream_item
from compat_servers import Reply

BAD_GATEWAY = b"Error while proxying to origin.\n"
HOLD = [("Grip-Hold", "stream"), ("Grip-Channel", "c")]

INVALID = {
    "hold-unknown": [("Grip-Hold", "forever"), ("Grip-Channel", "c")],
    "hold-capitalised": [("Grip-Hold", "Stream"), ("Grip-Channel", "c")],  # values are case-sensitive
    "hold-empty": [("Grip-Hold", ""), ("Grip-Channel", "c")],
    "timeout-not-int": [("Grip-Hold", "response"), ("Grip-Channel", "c"), ("Grip-Timeout", "abc")],
    "timeout-negative": [("Grip-Hold", "response"), ("Grip-Channel", "c"), ("Grip-Timeout", "-3")],
    "status-not-int": HOLD + [("Grip-Status", "abc")],
    "keep-alive-empty": HOLD + [("Grip-Keep-Alive", "; format=raw")],
    "keep-alive-format": HOLD + [("Grip-Keep-Alive", "x; format=hex")],
    "keep-alive-mode": HOLD + [("Grip-Keep-Alive", "x; mode=sometimes")],
}
INVALID_JSON = {
    "instruct-not-200": (404, b'{"hold": {"channels": [{"name": "c"}]}}'),
    "instruct-bad-json": (200, b'{"hold":'),
    "instruct-no-channels": (200, b'{"hold": {"mode": "stream"}}'),
    "instruct-bad-mode": (200, b'{"hold": {"mode": "forever", "channels": [{"name": "c"}]}}'),
}


def fetch_both(origin, both, reply, path="x", **kw):
    prefix = origin.route(lambda req: reply)
    return both(lambda t: t.fetch("GET", prefix + path, **kw))


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_header_instruction_is_502(origin, both, case):
    res = fetch_both(origin, both, Reply(200, "OK", [("Content-Type", "text/plain"), *INVALID[case]], "x"))
    (ph, pb), (gh, gb) = res["pushpin"], res["gripway"]
    assert (ph.status, ph.reason, pb) == (gh.status, gh.reason, gb) == (502, "Bad Gateway", BAD_GATEWAY)
    assert ph.get("content-type") == gh.get("content-type") == "text/plain"


@pytest.mark.parametrize("case", sorted(INVALID_JSON))
def test_invalid_json_instruction_is_502(origin, both, case):
    status, body = INVALID_JSON[case]
    reply = Reply(status, "X", [("Content-Type", "application/grip-instruct")], body)
    res = fetch_both(origin, both, reply)
    (ph, pb), (gh, gb) = res["pushpin"], res["gripway"]
    assert (ph.status, pb) == (gh.status, gb) == (502, BAD_GATEWAY)


def test_grip_headers_without_hold(origin, both):
    """No hold: relayed at once, Grip headers removed, Grip-Status and Grip-Expose-Headers
    applied."""
    reply = Reply(200, "OK", [("Content-Type", "text/plain"), ("X-A", "1"), ("X-B", "2"),
                              ("Grip-Status", "404 Gone Fishing"), ("Grip-Expose-Headers", "X-A")],
                  "body\n")
    res = fetch_both(origin, both, reply)
    (ph, pb), (gh, gb) = res["pushpin"], res["gripway"]
    assert (ph.status, ph.reason, pb) == (gh.status, gh.reason, gb) == (404, "Gone Fishing", b"body\n")
    assert ph.comparable() == gh.comparable() == [("x-a", "1")]


def test_lower_case_grip_header_names(origin, both, chan):
    prefix = origin.route(lambda req: Reply(200, "OK", [
        ("content-type", "text/plain"), ("grip-hold", "stream"),
        ("grip-channel", req["path"].rsplit("/", 1)[1])], "open\n"))

    def run(t):
        with t.open("GET", prefix + chan + t.name) as c:
            c.read_until(b"open\n")
            t.publish_items(stream_item(chan + t.name, "more\n"))
            return c.head.status, c.read_until(b"more\n")

    res = both(run)
    assert res["pushpin"] == res["gripway"] == (200, b"open\nmore\n")


def test_json_instruct_without_hold(origin, both):
    body = json.dumps({"response": {"code": 202, "headers": [["X-J", "1"]], "body": "hi\n"}})
    res = fetch_both(origin, both, Reply(200, "OK", [("Content-Type", "application/grip-instruct")], body))
    (ph, pb), (gh, gb) = res["pushpin"], res["gripway"]
    assert (ph.status, ph.reason, pb) == (gh.status, gh.reason, gb) == (202, "Accepted", b"hi\n")
    assert ph.comparable() == gh.comparable() == [("x-j", "1")]


def test_several_and_quoted_channels(origin, both, chan):
    """Comma-separated and repeated Grip-Channel headers; quotes are part of a header-form
    channel name (ref §10.7)."""
    def handle(req):
        c = req["path"].rsplit("/", 1)[1]
        return Reply(200, "OK", [("Grip-Hold", "stream"), ("Grip-Channel", f"{c}a, {c}b"),
                                 ("Grip-Channel", f'"{c}q"')], "open\n")

    prefix = origin.route(handle)

    def run(t):
        c0 = chan + t.name
        with t.open("GET", prefix + c0) as c:
            c.read_until(b"open\n")
            t.publish_items(stream_item(c0 + "a", "A\n"), stream_item(c0 + "q", "unquoted\n"),
                            stream_item(f'"{c0}q"', "Q\n"), stream_item(c0 + "b", "B\n"))
            for needle in (b"A\n", b"B\n", b"Q\n"):
                c.read_until(needle)
            return c.body

    res = both(run)
    # Order across channels is not part of the contract: Gripway orders per channel only (one
    # shard per channel, see ARCHITECTURE.md), Pushpin happens to keep the request's order.
    assert sorted(res["pushpin"].splitlines()) == sorted(res["gripway"].splitlines()) == \
        [b"A", b"B", b"Q", b"open"]


@pytest.mark.parametrize("header", ["{c}a, {c}b,", "{c}a,,{c}b"])
def test_empty_channel_element_is_skipped(origin, both, chan, header):
    """Pushpin skips an empty element (a trailing comma); so does Gripway since 911743f (it
    used to answer 502, as ref §1.2 suggests)."""
    prefix = origin.route(lambda req: Reply(200, "OK", [
        ("Grip-Hold", "stream"),
        ("Grip-Channel", header.format(c=req["path"].rsplit("/", 1)[1]))], "open\n"))

    def run(t):
        c0 = chan + t.name
        with t.open("GET", prefix + c0) as c:
            status = c.head.status
            c.read_until(b"open\n")
            t.publish_items(stream_item(c0 + "a", "A\n"), stream_item(c0 + "b", "B\n"))
            c.read_until(b"A\n")
            c.read_until(b"B\n")
            return status, sorted(c.body.splitlines())  # order across channels may differ

    res = both(run)
    assert res["pushpin"] == res["gripway"] == (200, [b"A", b"B", b"open"])


def test_stream_prev_id_without_next_link(origin, both):
    """Pushpin treats prev-id on a stream hold without a Grip-Link rel=next as an origin error
    (ref §1.2) and answers with the origin's response as an ordinary, un-held response.
    Gripway keeps history itself, so it holds the stream and serves what followed the prev-id
    from there (with history switched off it answers 502, see the Rust tests)."""
    prefix = origin.route(lambda req: Reply(200, "OK", [
        ("Content-Type", "text/plain"), ("Grip-Hold", "stream"),
        ("Grip-Channel", "c; prev-id=3")], "x\n"))

    def run(t):
        if t.name == "pushpin":
            head, body = t.fetch("GET", prefix + "x")
            return head.status, head.get("content-length"), body
        with t.open("GET", prefix + "x") as c:
            c.read_until(b"x\n")
            return c.head.status, c.head.get("transfer-encoding"), c.body

    res = both(run)
    assert res["pushpin"] == (200, "2", b"x\n")  # complete, not held
    assert res["gripway"] == (200, "chunked", b"x\n")  # held as a stream


def status_line(origin, both, grip_status):
    res = fetch_both(origin, both, Reply(200, "OK", [("Grip-Status", grip_status)], "x"))
    return {n: (h.status, h.reason) for n, (h, _) in res.items()}


@pytest.mark.parametrize("code", ["200", "201", "203", "299", "308", "410", "418", "429", "599"])
def test_default_reason_same(origin, both, code):
    """Same phrase, including 'Undefined Reason' for codes without one (299, 418, 599)."""
    got = status_line(origin, both, code)
    assert got["pushpin"] == got["gripway"]


REASONS_DIFFER = [  # (code, Pushpin 1.36, Gripway)
    ("306", "Reserved", "Undefined Reason"),
    ("413", "Request Entity Too Large", "Content Too Large"),
    ("414", "Request-URI Too Long", "URI Too Long"),
    ("416", "Requested Range Not Satisfiable", "Range Not Satisfiable"),
    ("421", "Undefined Reason", "Misdirected Request"),
    ("422", "Unprocessable Entity", "Unprocessable Content"),
    ("425", "Undefined Reason", "Too Early"),
    ("451", "Undefined Reason", "Unavailable For Legal Reasons"),
]


@pytest.mark.parametrize("code,pushpin_reason,gripway_reason", REASONS_DIFFER)
def test_default_reason_rfc9110(origin, both, code, pushpin_reason, gripway_reason):
    """Intended difference: Gripway's default phrases are RFC 9110's (and the registry's for
    codes Pushpin's older table lacks); Pushpin keeps RFC 2616-era names. Reason phrases carry
    no meaning for clients (RFC 9112 §4)."""
    got = status_line(origin, both, code)
    assert got == {"pushpin": (int(code), pushpin_reason), "gripway": (int(code), gripway_reason)}
