"""The re-check after a channel's first subscription (Pushpin's update_on_first_subscription,
reference §2.4) compared between Pushpin and Gripway: about a second after a long-poll with a
prev-id subscribes, an item that moved the channel's last id without reaching it (an id, but
no http-response format) makes both re-request it with Grip-Last.

Intended difference: Pushpin re-requests every such hold once even when nothing moved;
Gripway leaves an up-to-date hold alone (its re-request would drop the channel's only
subscription and make the channel new again, so an unconditional re-check would poll the
origin every second)."""

import time

from compat_servers import Reply


def poll_origin(origin, chan, recovered=True):
    def handle(req):
        server = req["path"].rsplit("/", 1)[1]
        if recovered and "grip-last" in req["h"]:
            return Reply(200, "OK", [("Content-Type", "text/plain")], "recovered\n")
        return Reply(200, "OK", [("Content-Type", "text/plain"), ("Grip-Hold", "response"),
                                 ("Grip-Channel", f"{chan}{server}; prev-id=a1"),
                                 ("Grip-Timeout", "20")], "timeout\n")
    return origin.route(handle)


def grip_lasts(origin, prefix, t):
    return [(r["h"].get("grip-last") or "").replace(t.name, "SERVER")
            for r in origin.seen(f"{prefix}{t.name}")]


def test_long_poll_behind_is_re_requested_after_a_second(origin, both, chan):
    prefix = poll_origin(origin, chan)

    def run(t):
        start = time.monotonic()
        with t.open_unread("GET", f"{prefix}{t.name}") as c:
            time.sleep(0.3)
            t.publish_items({"channel": chan + t.name, "id": "a2", "prev-id": "a1",
                             "formats": {"ws-message": {"content": "not for long-polls"}}})
            c.read_head(limit=5)
            body = c.read_body()
        return body, time.monotonic() - start, grip_lasts(origin, prefix, t)

    res = both(run)
    for name, (body, waited, lasts) in res.items():
        assert body == b"recovered\n", name
        assert 0.8 <= waited <= 3.0, (name, waited)
        assert lasts == ["", f"{chan}SERVER; last-id=a1"], name


def test_up_to_date_long_poll(origin, both, chan):
    prefix = poll_origin(origin, chan, recovered=False)

    def run(t):
        with t.open_unread("GET", f"{prefix}{t.name}"):
            time.sleep(3.5)
        return grip_lasts(origin, prefix, t)

    res = both(run)
    assert res["pushpin"] == ["", f"{chan}SERVER; last-id=a1"]
    assert res["gripway"] == [""]
