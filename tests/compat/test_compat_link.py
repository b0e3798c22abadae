"""Origin-assisted recovery compared between Pushpin and Gripway (reference §1.7, §2.4):
`Grip-Link; rel=next` paging (a no-hold response with only a next link is followed at once),
a stream's next link fetched on `hint`, after its `timeout`, and when a published item's
prev-id does not follow (with `Grip-Last`), a long-poll whose published item does not follow
its prev-id (re-requested with `Grip-Last`), and `POST /recover`.

Next-link requests carry no client headers, so every path names its server."""

import time

from compat_http import stream_item
from compat_servers import Reply

OPEN = b"stream open\n"


def stream_reply(channel, link, extra=(), body=OPEN):
    return Reply(200, "OK", [("Content-Type", "text/plain"), ("Grip-Hold", "stream"),
                             ("Grip-Channel", channel), ("Grip-Link", link), *extra], body)


def wait_for(pred, limit=10.0):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.05)
    return pred()


def next_requests(origin, prefix, server):
    return [r for r in origin.seen(prefix) if r["path"].startswith(f"{prefix}{server}/next")]


def test_pager_follows_next_links_at_once(origin, both):
    def handle(req):
        page = int(req["path"].rsplit("/", 1)[1])
        base = req["path"].rsplit("/", 1)[0]
        headers = [("Content-Type", "text/plain")]
        if page < 2:
            headers.append(("Grip-Link", f"<{base}/{page + 1}>; rel=next"))
        return Reply(200, "OK", headers, f"page {page}\n")

    prefix = origin.route(handle)

    def run(t):
        with t.open("GET", f"{prefix}{t.name}/0") as c:
            body = c.read_body(limit=10)
            return c.head.status, c.head.get("content-length"), body, c.decoder is not None

    res = both(run)
    assert res["gripway"] == res["pushpin"] == (200, None, b"page 0\npage 1\npage 2\n", True)
    for server in ("pushpin", "gripway"):
        paths = [r["path"].rsplit("/", 1)[1] for r in origin.seen(f"{prefix}{server}/")]
        assert paths == ["0", "1", "2"], (server, paths)


def linked_stream(origin, chan, next_body=b"recovered\n", timeout=None, prev_id=None):
    """Origin: /<prefix><server>/start holds a stream on chan+server with a next link to
    /<prefix><server>/next; the next link answers `next_body` and holds again."""

    def handle(req):
        rest = req["path"][len(prefix):]
        server, what = rest.split("/", 1)
        channel = chan + server
        if prev_id is not None:
            channel += f"; prev-id={prev_id}"
        link = f"<{prefix}{server}/next>; rel=next"
        if timeout is not None:
            link += f"; timeout={timeout}"
        if what.startswith("next"):
            return stream_reply(channel, link, body=next_body)
        return stream_reply(channel, link)

    prefix = origin.route(handle)
    return prefix


def test_hint_fetches_next_link(origin, both, chan):
    prefix = linked_stream(origin, chan)

    def run(t):
        with t.open("GET", f"{prefix}{t.name}/start") as c:
            c.read_until(OPEN)
            t.publish_items({"channel": chan + t.name, "formats": {"http-stream": {"action": "hint"}}})
            c.read_until(b"recovered\n", limit=8)
            t.publish_items(stream_item(chan + t.name, "after\n"))
            return c.read_until(b"after\n")

    res = both(run)
    assert res["gripway"] == res["pushpin"] == OPEN + b"recovered\nafter\n"
    for server in ("pushpin", "gripway"):
        nxt = next_requests(origin, prefix, server)
        assert len(nxt) == 1 and nxt[0]["method"] == "GET", (server, nxt)
        assert "grip-last" not in nxt[0]["h"]


def test_next_link_timeout_polls(origin, both, chan):
    prefix = linked_stream(origin, chan, timeout=2)

    def run(t):
        with t.open("GET", f"{prefix}{t.name}/start") as c:
            c.read_until(OPEN)
            started = time.monotonic()
            c.read_until(b"recovered\n", limit=8)
            return time.monotonic() - started

    res = both(run)
    for server, waited in res.items():
        assert 1.0 <= waited <= 5.0, (server, waited)


def test_stream_prev_id_gap_fetches_next_link_with_grip_last(origin, both, chan):
    prefix = linked_stream(origin, chan, prev_id="p1")

    def run(t):
        c0 = chan + t.name
        with t.open("GET", f"{prefix}{t.name}/start") as c:
            c.read_until(OPEN)
            t.publish_items(stream_item(c0, "two\n", id="p2", **{"prev-id": "p1"}))
            c.read_until(b"two\n")
            # p3 is missing: p4 does not follow
            t.publish_items(stream_item(c0, "four\n", id="p4", **{"prev-id": "p3"}))
            body = c.read_until(b"recovered\n", limit=8)
            nxt = wait_for(lambda: next_requests(origin, prefix, t.name))
            return body, [r["h"].get("grip-last") for r in nxt]

    res = both(run)
    (pb, pl), (gb, gl) = res["pushpin"], res["gripway"]
    assert gb == pb == OPEN + b"two\nrecovered\n"
    assert pl == [f"{chan}pushpin; last-id=p2"]
    assert gl == [f"{chan}gripway; last-id=p2"]


def test_long_poll_prev_id_mismatch_retries_with_grip_last(origin, both, chan):
    def handle(req):
        server, _ = req["path"][len(prefix):].split("/", 1)
        if "grip-last" in req["h"]:
            return Reply(200, "OK", [("Content-Type", "text/plain")], "retried\n")
        return Reply(200, "OK", [("Content-Type", "text/plain"), ("Grip-Hold", "response"),
                                 ("Grip-Channel", f"{chan}{server}; prev-id=a1"),
                                 ("Grip-Timeout", "20")], "timeout\n")

    prefix = origin.route(handle)

    def run(t):
        c0 = chan + t.name
        with t.open_unread("GET", f"{prefix}{t.name}/poll") as c:
            deadline = time.monotonic() + 10
            while True:
                assert time.monotonic() < deadline, "never answered"
                # a2 would follow a1; a3 after a2 does not
                t.publish_items({"channel": c0, "id": "a3", "prev-id": "a2",
                                 "formats": {"http-response": {"body": "pushed\n"}}})
                try:
                    c.read_head(limit=0.3)
                    break
                except TimeoutError:
                    continue
            body = c.read_body()
        seen = [(r["h"].get("grip-last") or "").replace(t.name, "SERVER")
                for r in origin.seen(f"{prefix}{t.name}/")]
        return body, seen

    res = both(run)
    assert res["gripway"] == res["pushpin"]
    assert res["pushpin"] == (b"retried\n", ["", f"{chan}SERVER; last-id=a1"])


def test_recover_command(origin, both, chan, servers):
    prefix = linked_stream(origin, chan)

    def run(t):
        with t.open("GET", f"{prefix}{t.name}/start") as c:
            c.read_until(OPEN)
            time.sleep(0.3)
            head, body = t.publish(b"", path="/recover")
            got = c.read_until(b"recovered\n", limit=8)
            return head.status, body, got

    res = both(run)
    assert res["gripway"] == res["pushpin"] == (200, b"Updated\n", OPEN + b"recovered\n")
