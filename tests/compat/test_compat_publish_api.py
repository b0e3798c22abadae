"""The publish API compared between Pushpin and Gripway: success responses (text and JSON),
error status codes for invalid bodies (Gripway's messages are intentionally more precise and
name the item and field), methods and paths, Accept negotiation, the legacy item form,
`/recover`, size limits and a chunked request body."""

import json

import pytest

import compat_http as ch

VALID = {"items": [{"channel": "compat-api", "formats": {"http-stream": {"content": "x\n"}}}]}


def both_publish(both, body, **kw):
    return both(lambda t: t.publish(body, **kw))


def test_valid_publish_text(both):
    res = both_publish(both, VALID)
    (ph, pb), (gh, gb) = res["pushpin"], res["gripway"]
    assert (ph.status, ph.reason, pb) == (gh.status, gh.reason, gb) == (200, "OK", b"Published\n")
    assert gh.comparable() == ph.comparable()  # Content-Type: text/plain


def test_valid_publish_json_accept(both):
    res = both_publish(both, VALID, headers=[("Accept", "application/json")])
    (ph, pb), (gh, gb) = res["pushpin"], res["gripway"]
    assert ph.status == gh.status == 200
    assert gh.comparable() == ph.comparable()  # Content-Type: application/json
    assert json.loads(pb) == json.loads(gb) == {"message": "Published"}
    # Cosmetic: the same JSON, serialised with and without a space after the colon.
    assert pb == b'{"message":"Published"}\n' and gb == b'{"message": "Published"}\n'


@pytest.mark.parametrize("path", ["/publish", "/publish/"])
def test_trailing_slash_optional(both, path):
    res = both_publish(both, VALID, path=path)
    assert res["pushpin"][0].status == res["gripway"][0].status == 200


def test_empty_items_and_legacy_form(both):
    assert {n: h.status for n, (h, _) in both_publish(both, {"items": []}).items()} == \
        {"pushpin": 200, "gripway": 200}
    legacy = {"items": [{"channel": "compat-api", "http-stream": {"content": "x\n"}}]}
    assert {n: h.status for n, (h, _) in both_publish(both, legacy).items()} == \
        {"pushpin": 200, "gripway": 200}


def test_invalid_json(both):
    res = both_publish(both, b'{"items": [')
    (ph, pb), (gh, gb) = res["pushpin"], res["gripway"]
    assert ph.status == gh.status == 400
    assert gh.comparable() == ph.comparable()
    assert pb == b"Body is not valid JSON.\n"
    assert gb.startswith(b"Body is not valid JSON")  # plus the parser's position


ITEM_ERRORS = {
    # name: (body, Pushpin's exact message, a fragment Gripway's message must contain)
    "not-object": ([1, 2], b"Invalid format.\n", b"object"),
    "no-items": ({"foo": 1}, b"Invalid format: object does not contain 'items'\n", b"'items'"),
    "items-not-list": ({"items": {}}, b"Invalid format: object contains 'items' with wrong type\n",
                       b"items"),
    "no-channel": ({"items": [{"formats": {"http-stream": {"content": "x"}}}]},
                   b"Invalid format: publish item object does not contain 'channel'\n",
                   b"items[0]"),
    "no-formats": ({"items": [{"channel": "c"}]}, b"Invalid format: no formats specified\n",
                   b"items[0]"),
    "stream-no-content": ({"items": [{"channel": "c", "formats": {"http-stream": {}}}]},
                          b"Invalid format: 'http-stream' does not contain 'content' or 'content-bin'\n",
                          b"items[0].formats.http-stream"),
    "second-item-no-body": ({"items": [{"channel": "c", "formats": {"http-stream": {"content": "x"}}},
                                       {"channel": "c", "formats": {"http-response": {}}}]},
                            b"Invalid format: 'http-response' does not contain 'body', 'body-bin', or 'body-patch'\n",
                            b"items[1].formats.http-response"),
    # Pushpin quirk (ref §10.10): an unknown action gives an empty message after the colon.
    "unknown-action": ({"items": [{"channel": "c", "formats": {"http-stream": {"action": "explode"}}}]},
                       b"Invalid format: \n", b"items[0].formats.http-stream.action"),
}


@pytest.mark.parametrize("case", sorted(ITEM_ERRORS))
def test_invalid_items(both, case):
    body, pushpin_msg, gripway_fragment = ITEM_ERRORS[case]
    res = both_publish(both, body)
    (ph, pb), (gh, gb) = res["pushpin"], res["gripway"]
    assert ph.status == gh.status == 400
    assert gh.comparable() == ph.comparable()  # text/plain
    assert pb == pushpin_msg
    # Intended difference: Gripway names the item index and the field.
    assert gripway_fragment in gb, gb


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_wrong_method_405(both, method):
    res = both_publish(both, b"", method=method)
    (ph, pb), (gh, gb) = res["pushpin"], res["gripway"]
    assert ph.status == gh.status == 405
    assert ph.get("allow") == gh.get("allow") == "POST"
    # Cosmetic difference in the body text; no client reads it.
    assert pb == f"Method not allowed: {method}.\n".encode() and gb == b"Method not allowed.\n"


def test_unknown_path_404(both):
    res = both_publish(both, VALID, path="/nope/")
    (ph, pb), (gh, gb) = res["pushpin"], res["gripway"]
    assert (ph.status, ph.reason) == (gh.status, gh.reason) == (404, "Not Found")
    # Cosmetic difference in the body text.
    assert pb == b"Not Found\n" and gb == b"Not found.\n"


def test_root_and_recover(both):
    res = both(lambda t: t.publish(b"", method="GET", path="/"))
    assert res["pushpin"][0].status == res["gripway"][0].status == 200
    # Intended: each names itself.
    assert res["pushpin"][1] == b"Pushpin API\n" and res["gripway"][1] == b"Gripway API\n"
    res = both(lambda t: t.publish(b"", path="/recover"))
    assert [(h.status, b) for h, b in res.values()] == [(200, b"Updated\n")] * 2


def test_not_acceptable_406(both):
    res = both_publish(both, VALID, headers=[("Accept", "image/png")])
    (ph, pb), (gh, gb) = res["pushpin"], res["gripway"]
    assert ph.status == gh.status == 406
    # Cosmetic: Pushpin lists the supported types in the body.
    assert pb.startswith(b"Not Acceptable.") and gb == b"Not acceptable.\n"


def test_content_over_32767_bytes(both):
    """Same: on Pushpin's `/publish/` neither has a per-content limit below the
    1,000,000-byte body limit (Gripway's `[publish] max_content`, default 1,000,000). Fanout's
    documented 32,767-byte message limit applies on Gripway's Fastly path only
    (`fastly_max_content`), tested in crates/gripway/tests/publish_api.rs."""
    body = {"items": [{"channel": "compat-api", "formats": {"http-stream": {"content": "x" * 40000}}}]}
    res = both_publish(both, body)
    assert (res["pushpin"][0].status, res["pushpin"][1]) == (200, b"Published\n")
    assert (res["gripway"][0].status, res["gripway"][1]) == (200, b"Published\n")


def test_body_over_1000000_bytes(both):
    """Same limit and message, different status: Pushpin answers 400 (ref §4.2), Gripway 413
    Payload Too Large, the status HTTP defines for this."""
    items = [{"channel": "compat-api", "formats": {"http-stream": {"content": "x" * 30000}}}] * 40
    res = both_publish(both, {"items": items})
    (ph, pb), (gh, gb) = res["pushpin"], res["gripway"]
    assert pb == gb == b"Request body too large.\n"
    assert (ph.status, gh.status) == (400, 413)


def test_chunked_publish_body(both):
    """Intended difference: Pushpin requires Content-Length (411); Gripway accepts a chunked
    request body, as HTTP/1.1 allows."""
    payload = json.dumps(VALID).encode()
    raw = (b"POST /publish/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
           + f"{len(payload):x}\r\n".encode() + payload + b"\r\n0\r\n\r\n")

    def run(t):
        with ch.Conn(t.publish_addr) as c:
            c.send(raw)
            c.method = "POST"
            return c.read_head().status, c.read_body()

    res = both(run)
    assert res["pushpin"] == (411, b"Request requires Content-Length.\n")
    assert res["gripway"] == (200, b"Published\n")
