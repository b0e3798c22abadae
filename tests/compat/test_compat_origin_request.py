"""What the origin receives through Pushpin and through Gripway: client Grip-* headers
stripped, a fresh Grip-Sig valid for key `changeme` with iss `pushpin`, Grip-Feature, Host
and the request line kept, hop-by-hop headers removed, and each server's documented
X-Forwarded-For / X-Forwarded-Proto defaults."""

import base64
import json
import time

import pytest
from gripcontrol import validate_sig

from compat_servers import Reply

CLIENT_HEADERS = [
    ("Grip-Sig", "forged.token.here"), ("Grip-Channel", "evil"), ("grip-last", "x; last-id=1"),
    ("Connection", "keep-alive"), ("Keep-Alive", "timeout=5"), ("Expect", "100-continue"),
    ("Accept-Encoding", "gzip"), ("X-Forwarded-Proto", "https"), ("X-Forwarded-For", "1.2.3.4"),
    ("User-Agent", "compat/1"), ("Cookie", "a=1"), ("Cookie", "b=2"), ("Via", "1.1 upstream"),
    ("Forwarded", "for=192.0.2.1"), ("Accept", "text/plain"),
]
# Added by Pushpin's HTTP client (zurl/libcurl) rather than by Pushpin's proxy logic: it sends
# its own Accept-Encoding (and decodes the response itself). Not a GRIP behaviour.
ZURL_ADDED = {"accept-encoding"}


def seen_by_origin(origin, both, path_suffix="a?x=1&y=%20z", headers=CLIENT_HEADERS):
    prefix = origin.route(lambda req: Reply(200, "OK", [("Content-Type", "text/plain")], "ok\n"))
    res = both(lambda t: t.fetch("GET", prefix + path_suffix, headers=headers))
    assert res["pushpin"][0].status == res["gripway"][0].status == 200
    return {name: origin.seen(prefix, name)[0] for name in ("pushpin", "gripway")}, prefix


def names(req):
    return {k.lower() for k, _ in req["headers"]}


def claims(token):
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_request_line_host_and_end_to_end_headers(origin, both):
    seen, prefix = seen_by_origin(origin, both)
    pp, gw = seen["pushpin"], seen["gripway"]
    assert (gw["method"], gw["path"]) == (pp["method"], pp["path"]) == ("GET", prefix + "a?x=1&y=%20z")
    assert gw["h"]["host"] == pp["h"]["host"] == "example.com"  # Host preserved
    for name in ("user-agent", "via", "forwarded", "accept"):
        assert gw["h"][name] == pp["h"][name], name
    cookies = [[v for k, v in r["headers"] if k.lower() == "cookie"] for r in (pp, gw)]
    assert cookies[0] == cookies[1] == ["a=1", "b=2"]


def test_client_grip_headers_stripped_and_fresh_sig(origin, both):
    seen, _ = seen_by_origin(origin, both)
    for name, req in seen.items():
        grip = {k.lower(): v for k, v in req["headers"] if k.lower().startswith("grip-")}
        assert set(grip) == {"grip-sig", "grip-feature"}, (name, grip)
        assert validate_sig(grip["grip-sig"], "changeme", iss="pushpin"), name
        assert not validate_sig(grip["grip-sig"], "wrong-key"), name
        c = claims(grip["grip-sig"])
        assert set(c) == {"iss", "exp"}, (name, c)  # exactly these claims
        assert abs(c["exp"] - (time.time() + 3600)) < 120, (name, c)


def test_grip_feature(origin, both):
    seen, _ = seen_by_origin(origin, both)
    pp = {f.strip() for f in seen["pushpin"]["h"]["grip-feature"].split(",")}
    gw = {f.strip() for f in seen["gripway"]["h"]["grip-feature"].split(",")}
    # Intended difference: Gripway advertises only what it implements (no sessions), so its
    # list is Pushpin's less `session`, plus link:gone, which Pushpin only has from 1.41.
    filters = {"filter:skip-self", "filter:skip-users", "filter:require-sub",
               "filter:build-id", "filter:var-subst"}
    assert {"status"} | filters <= pp
    assert gw - {"link:gone"} == pp - {"session"}
    assert {"status", "link:next", "link:gone"} | filters <= gw


def test_hop_by_hop_removed(origin, both):
    seen, _ = seen_by_origin(origin, both)
    for name, req in seen.items():
        present = names(req)
        for hop in ("connection", "keep-alive", "expect", "transfer-encoding"):
            assert hop not in present, (name, hop)
    assert "accept-encoding" not in names(seen["gripway"])
    assert seen["pushpin"]["h"].get("accept-encoding") != "gzip"  # the client's is removed


def test_rfc_hop_by_hop_extras(origin, both):
    """Intended difference: Gripway also drops the RFC 9110 hop-by-hop headers (TE, Trailer,
    Proxy-Connection) and any header named in
    Connection; Pushpin forwards them."""
    hdrs = [("Connection", "X-Hop"), ("X-Hop", "hop"), ("TE", "trailers"),
            ("Proxy-Connection", "keep-alive"), ("Trailer", "X-T")]
    seen, _ = seen_by_origin(origin, both, headers=hdrs)
    assert {"x-hop", "te", "proxy-connection", "trailer"} <= names(seen["pushpin"])
    assert not {"x-hop", "te", "proxy-connection", "trailer"} & names(seen["gripway"])


def test_x_forwarded_defaults(origin, both):
    """Documented defaults differ on purpose: Pushpin ships `x_forwarded_for=` (empty: the
    header is passed through untouched, nothing added); Gripway defaults to `append` (the
    peer address is appended). Both default to `set_x_forwarded_protocol=proto-only`, which
    removes a client's X-Forwarded-Proto on plain HTTP."""
    seen, _ = seen_by_origin(origin, both)
    assert seen["pushpin"]["h"]["x-forwarded-for"] == "1.2.3.4"
    assert seen["gripway"]["h"]["x-forwarded-for"] == "1.2.3.4, 127.0.0.1"
    seen, _ = seen_by_origin(origin, both, headers=[("User-Agent", "compat/1")])
    assert "x-forwarded-for" not in seen["pushpin"]["h"]
    assert seen["gripway"]["h"]["x-forwarded-for"] == "127.0.0.1"
    for req in seen.values():
        assert "x-forwarded-proto" not in req["h"]


def test_orig_headers_marker_stripped(origin, both):
    """Client headers prefixed 'eb9bf0f5-' (Pushpin's orig_headers marker) are stripped (ref
    §2.1 step 9); Gripway forwarded them before 911743f."""
    seen, _ = seen_by_origin(origin, both, headers=[("eb9bf0f5-X-Orig", "spoofed")])
    assert "eb9bf0f5-x-orig" not in names(seen["pushpin"])
    assert "eb9bf0f5-x-orig" not in names(seen["gripway"])


def test_post_body_and_content_length(origin, both):
    prefix = origin.route(lambda req: Reply(200, "OK", [], "ok\n"))
    both(lambda t: t.fetch("POST", prefix + "p", headers=[("Content-Type", "application/json")],
                           body=b'{"k": 1}'))
    pp, gw = origin.seen(prefix, "pushpin")[0], origin.seen(prefix, "gripway")[0]
    assert gw["body"] == pp["body"] == b'{"k": 1}'
    assert gw["h"]["content-type"] == pp["h"]["content-type"] == "application/json"
