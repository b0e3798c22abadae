"""Recovery with real client and origin libraries, unchanged: an `httpx-sse` client that
reconnects with `Last-Event-ID` while a publisher keeps publishing; origins written with
`gripcontrol` that give a `prev-id` (a stream and a long-poll), as Pushpin origins do; and a
gripcontrol origin that keeps its own items and recovers a stream through a `Grip-Link` next
link with `Grip-Last`, the Pushpin way. Every wait is bounded."""

import json
import threading
import time

import httpx
import pytest
import requests
from gripcontrol import (
    Channel,
    GripPubControl,
    HttpResponseFormat,
    HttpStreamFormat,
    Response,
    create_grip_channel_header,
    create_hold_response,
    validate_sig,
)
from httpx_sse import connect_sse
from pubcontrol import Item

SIG_KEY = "changeme"


def sse_origin(channel):
    """An origin that knows nothing of history: every request gets the same SSE hold."""

    def handle(req):
        return 200, [("Content-Type", "text/event-stream"), ("Grip-Hold", "stream"),
                     ("Grip-Channel", create_grip_channel_header([Channel(channel)]))], ": ready\n\n"

    return handle


def event(n):
    return f"id: e{n}\ndata: e{n}\n\n"


def settled(gw, n):
    """A publish is acknowledged once queued: wait until history holds `n` items."""
    assert gw.wait_metric("gripway_history_items", float(n)), gw.log[-20:]


def test_httpx_sse_reconnects_with_last_event_id_under_a_steady_publisher(start_gripway, start_origin,
                                                                          tmp_config):
    origin = start_origin(sse_origin("steady"))
    total = 300
    # history holds every item, so a client that falls far behind (its reconnect pace against
    # the publisher's, on a busy machine) still has no gap: what is asserted is the hand-over,
    # not the bound (test_httpx_sse_is_told_of_a_gap covers that)
    conf = tmp_config(f"[history]\nmax_items = {total + 100}\n")
    gw = start_gripway("--config", conf, "--route", f"* {origin.addr}")
    pub = GripPubControl({"control_uri": gw.control_uri})
    errors = []

    def publisher():
        try:
            for n in range(total):
                pub.publish_http_stream("steady", event(n), id=f"e{n}", blocking=True)
                time.sleep(0.002)
        except Exception as e:  # reported by the test, not lost in the thread
            errors.append(e)

    seen, gaps, connections = [], [], 0
    # read a few events, drop the connection, reconnect with the last id: header and query
    # parameter in turn, as EventSource and as a client that cannot set headers would
    per_connection = [1, 7, 3, 12, 5, 20, 2]
    deadline = time.monotonic() + 60
    thread = threading.Thread(target=publisher, daemon=True)
    with httpx.Client(timeout=10) as client:
        while not seen or seen[-1] != f"e{total - 1}":
            assert time.monotonic() < deadline, f"never caught up: {seen[-3:]}"
            url, headers = gw.url("/events"), {}
            if seen and connections % 2:
                url += f"?lastEventId={seen[-1]}"
            elif seen:
                headers["Last-Event-ID"] = seen[-1]
            want = per_connection[connections % len(per_connection)]
            connections += 1
            with connect_sse(client, "GET", url, headers=headers) as source:
                assert source.response.status_code == 200
                assert source.response.headers["content-type"].startswith("text/event-stream")
                if connections == 1:  # the publisher starts once the first client listens
                    assert gw.wait_metric("gripway_subscriptions", 1.0)
                    thread.start()
                got = 0
                for sse in source.iter_sse():
                    if sse.event == "history-gap":
                        gaps.append(sse.data)
                        continue
                    assert sse.id == sse.data, sse
                    seen.append(sse.data)
                    got += 1
                    if got == want or sse.data == f"e{total - 1}":
                        break
    thread.join(30)
    assert not errors, errors
    assert not gaps, gaps
    assert seen == [f"e{n}" for n in range(total)], "no gap, no duplicate, in order"
    assert connections > 20, connections
    recovered = gw.metric('gripway_history_recoveries_total{result="after"}')
    assert recovered and recovered > 0, "some reconnects were served from history"


def test_httpx_sse_is_told_of_a_gap(start_gripway, start_origin, tmp_config):
    origin = start_origin(sse_origin("short"))
    gw = start_gripway("--config", tmp_config("[history]\nmax_items = 3\n"), "--route", f"* {origin.addr}")
    pub = GripPubControl({"control_uri": gw.control_uri})
    for n in range(10):
        pub.publish_http_stream("short", event(n), id=f"e{n}", blocking=True)
    assert gw.wait_metric('gripway_history_evictions_total{reason="count"}', 7.0)
    with httpx.Client(timeout=10) as client:
        with connect_sse(client, "GET", gw.url("/events"), headers={"Last-Event-ID": "e2"}) as source:
            got = []
            for sse in source.iter_sse():
                got.append((sse.event, sse.data))
                if sse.data == "e9":
                    break
    assert got == [("history-gap", json.dumps({"channel": "short", "last-event-id": "e2"}, separators=(",", ":"))),
                   ("message", "e7"), ("message", "e8"), ("message", "e9")]


def signed(handle):
    def checked(req):
        if not validate_sig(req["headers"].get("grip-sig", ""), SIG_KEY):
            return 403, [("Content-Type", "text/plain")], "not from a GRIP proxy\n"
        return handle(req)
    return checked


def read_until(chunks, needle, got=b"", limit=10.0):
    deadline = time.monotonic() + limit
    while needle not in got:
        assert time.monotonic() < deadline, f"no {needle!r} in {got!r}"
        got += next(chunks)
    return got


def publish_chain(pub, channel, first, last, fmt):
    """Items `first`..`last` on `channel`, each naming the one before as its prev-id."""
    for n in range(first, last + 1):
        prev = f"{channel}{n - 1}" if n > 0 else None
        pub.publish(channel, Item(fmt(n), id=f"{channel}{n}", prev_id=prev), blocking=True)


def test_gripcontrol_stream_with_prev_id_gets_what_it_missed_then_live_items(start_gripway, start_origin):
    # the origin's answer reflects item st3; st4 and st5 were published after it
    origin = start_origin(signed(lambda req: (
        200, [("Content-Type", "text/plain"), ("Grip-Hold", "stream"),
              ("Grip-Channel", create_grip_channel_header([Channel("st", prev_id="st3")]))],
        "start\n")))
    gw = start_gripway("--route", f"* {origin.addr}")
    pub = GripPubControl({"control_uri": gw.control_uri})
    publish_chain(pub, "st", 0, 5, lambda n: HttpStreamFormat(f"st{n};"))
    settled(gw, 6)
    r = requests.get(gw.url("/s"), stream=True, timeout=10)
    chunks = r.iter_content(chunk_size=None)
    got = read_until(chunks, b"st5;")
    assert gw.wait_metric("gripway_subscriptions", 1.0)
    publish_chain(pub, "st", 6, 6, lambda n: HttpStreamFormat(f"st{n};"))
    got = read_until(chunks, b"st6;", got)
    r.close()
    assert got == b"start\nst4;st5;st6;", got
    assert len(origin.requests) == 1


def test_gripcontrol_long_poll_with_prev_id_history_kept_is_answered_at_once(start_gripway, start_origin):
    origin = start_origin(signed(lambda req: (
        200, [("Content-Type", "application/grip-instruct")],
        create_hold_response(Channel("lp", prev_id="lp3"),
                             Response(headers={"Content-Type": "text/plain"}, body="timeout\n"), timeout=60))))
    gw = start_gripway("--route", f"* {origin.addr}")
    pub = GripPubControl({"control_uri": gw.control_uri})
    publish_chain(pub, "lp", 0, 5, lambda n: HttpResponseFormat(body=f"lp{n}\n"))
    settled(gw, 6)
    started = time.monotonic()
    r = requests.get(gw.url("/poll"), timeout=10)
    assert time.monotonic() - started < 2, "answered at once, not held"
    assert r.status_code == 200
    assert r.text == "lp4\n", "the item after the origin's prev-id"
    assert r.headers["Content-Type"] == "text/plain"
    assert len(origin.requests) == 1, "the origin was not asked again"


class ItemStore:
    """What a Pushpin-style app keeps: its own items, in order, to answer `Grip-Last`."""

    def __init__(self, channel):
        self.channel = channel
        self.items = []  # (id, content)
        self.lock = threading.Lock()

    def add(self, n):
        with self.lock:
            self.items.append((f"{self.channel}{n}", f"{self.channel}{n};"))

    def after(self, last_id):
        with self.lock:
            ids = [i for i, _ in self.items]
            rest = self.items[ids.index(last_id) + 1:] if last_id in ids else list(self.items)
            return rest, (self.items[-1][0] if self.items else None)


def grip_last_id(req):
    value = req["headers"].get("grip-last", "")
    for part in value.split(";")[1:]:
        k, _, v = part.strip().partition("=")
        if k == "last-id":
            return v
    return None


def test_gripcontrol_long_poll_whose_prev_id_history_lost_is_re_requested_with_grip_last(
        start_gripway, start_origin, tmp_config):
    store = ItemStore("lg")

    def handle(req):
        last = grip_last_id(req)
        if last is not None:  # Pushpin's re-request: answer what followed, no hold
            rest, _ = store.after(last)
            return 200, [("Content-Type", "text/plain")], rest[0][1] if rest else "none\n"
        return 200, [("Content-Type", "application/grip-instruct")], create_hold_response(
            Channel("lg", prev_id="lg0"), Response(body="timeout\n"), timeout=60)

    origin = start_origin(signed(handle))
    gw = start_gripway("--config", tmp_config("[history]\nmax_items = 2\n"), "--route", f"* {origin.addr}")
    pub = GripPubControl({"control_uri": gw.control_uri})
    for n in range(4):
        store.add(n)
    publish_chain(pub, "lg", 0, 3, lambda n: HttpResponseFormat(body=f"lg{n};"))
    assert gw.wait_metric('gripway_history_evictions_total{reason="count"}', 2.0)
    r = requests.get(gw.url("/poll"), timeout=10)
    assert r.status_code == 200
    assert r.text == "lg1;", "the origin's answer to Grip-Last"
    assert [req["headers"].get("grip-last") for req in origin.requests] == [None, "lg; last-id=lg0"]


def test_gripcontrol_stream_with_a_next_link_is_recovered_by_its_origin(start_gripway, start_origin):
    store = ItemStore("nl")

    def handle(req):
        last = grip_last_id(req)
        rest, newest = store.after(last) if last is not None else ([], store.after(None)[1])
        body = "".join(c for _, c in rest) if last is not None else "start\n"
        return 200, [("Content-Type", "text/plain"), ("Grip-Hold", "stream"),
                     ("Grip-Channel", create_grip_channel_header([Channel("nl", prev_id=newest)])),
                     # gripcontrol has no helper for Grip-Link: the raw header, as its users write it
                     ("Grip-Link", "</next>; rel=next")], body

    origin = start_origin(signed(handle))
    gw = start_gripway("--route", f"* {origin.addr}")
    pub = GripPubControl({"control_uri": gw.control_uri})
    store.add(0)
    r = requests.get(gw.url("/s"), stream=True, timeout=10)
    chunks = r.iter_content(chunk_size=None)
    got = read_until(chunks, b"start\n")
    assert gw.wait_metric("gripway_subscriptions", 1.0)

    def publish(n):
        pub.publish("nl", Item(HttpStreamFormat(f"nl{n};"), id=f"nl{n}", prev_id=f"nl{n - 1}"), blocking=True)

    store.add(1)
    publish(1)
    got = read_until(chunks, b"nl1;", got)
    # nl2 is stored but its publish is lost; nl3's prev-id does not follow nl1
    store.add(2)
    store.add(3)
    publish(3)
    got = read_until(chunks, b"nl3;", got)
    nexts = [req for req in origin.requests if req["path"] == "/next"]
    assert [req["headers"].get("grip-last") for req in nexts] == ["nl; last-id=nl1"]
    store.add(4)
    publish(4)
    got = read_until(chunks, b"nl4;", got)
    r.close()
    assert got == b"start\nnl1;nl2;nl3;nl4;", got
