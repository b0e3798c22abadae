"""Route options compared between Pushpin and Gripway (the same routes file lines given to
both): `prefix=` on channel names, `replace_beg=` path rewriting, and `no_grip`."""

import uuid

from compat_http import stream_item
from compat_servers import NO_GRIP_ROUTE, PREFIX_ROUTE, REPLACE_ROUTE, REPLACED, Reply


def unique(prefix):
    return f"{prefix}{uuid.uuid4().hex[:10]}/"


def test_channel_prefix(origin, both, chan):
    base = unique(PREFIX_ROUTE)
    origin.route_at(base, lambda req: Reply(200, "OK", [
        ("Grip-Hold", "stream"), ("Grip-Channel", req["path"].rsplit("/", 1)[1])], "open\n"))

    def run(t):
        c0 = chan + t.name
        with t.open("GET", base + c0) as c:
            c.read_until(b"open\n")
            t.publish_items(stream_item(c0, "unprefixed\n"), stream_item("pfx-" + c0, "prefixed\n"))
            return c.read_until(b"prefixed\n")

    res = both(run)
    assert res["pushpin"] == res["gripway"] == b"open\nprefixed\n"


def test_replace_beg(origin, both):
    tail = uuid.uuid4().hex[:10]
    origin.route_at(REPLACED, lambda req: Reply(200, "OK", [("Content-Type", "text/plain")],
                                                f"saw {req['path']}\n"))
    res = both(lambda t: t.fetch("GET", f"{REPLACE_ROUTE}{tail}?q=1"))
    assert res["pushpin"][1] == res["gripway"][1] == f"saw {REPLACED}{tail}?q=1\n".encode()


def test_no_grip(origin, both):
    base = unique(NO_GRIP_ROUTE)
    origin.route_at(base, lambda req: Reply(200, "OK", [
        ("Content-Type", "text/plain"), ("Grip-Hold", "stream"), ("Grip-Channel", "c"),
        ("X-Saw-Sig", str("grip-sig" in req["h"]))], "not held\n"))
    res = both(lambda t: t.fetch("GET", base + "x", headers=[("Grip-Sig", "from-client")]))
    (ph, pb), (gh, gb) = res["pushpin"], res["gripway"]
    assert (ph.status, pb) == (gh.status, gb) == (200, b"not held\n")
    assert ph.comparable() == gh.comparable()
    assert gh.get("grip-hold") == "stream"  # relayed to the client as-is
    # the client's Grip-Sig is removed and none is added on a no_grip route
    assert ph.get("x-saw-sig") == gh.get("x-saw-sig") == "False"
    for req in origin.seen(base):
        assert not [k for k in req["h"] if k.startswith("grip-")], req
