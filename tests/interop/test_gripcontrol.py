"""Interop with the real GRIP client libraries, unchanged: an origin written with
gripcontrol's helpers behind gripway, and GripPubControl publishing to gripway."""

import json
import time

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
    create_hold_stream,
    parse_grip_uri,
    validate_sig,
)
from pubcontrol import Item

SIG_KEY = "changeme"  # gripway's default, as Pushpin's


def grip_origin(channel_for_path):
    """An origin as a gripcontrol user writes it: it trusts only requests whose Grip-Sig
    validates, and answers with instructions built by the library."""

    def handle(req):
        if not validate_sig(req["headers"].get("grip-sig", ""), SIG_KEY):
            return 403, [("Content-Type", "text/plain")], "not from a GRIP proxy\n"
        path = req["path"]
        if path.startswith("/stream/"):
            channel = Channel(path.split("/")[-1])
            return 200, [("Content-Type", "text/plain"), ("Grip-Hold", "stream"),
                         ("Grip-Channel", create_grip_channel_header([channel]))], "stream open\n"
        if path.startswith("/json-stream/"):
            body = create_hold_stream(path.split("/")[-1], Response(body="json stream open\n"))
            return 200, [("Content-Type", "application/grip-instruct")], body
        if path.startswith("/poll/"):
            body = create_hold_response(path.split("/")[-1],
                                        Response(headers={"Content-Type": "text/plain"}, body="timeout\n"),
                                        timeout=60)
            return 200, [("Content-Type", "application/grip-instruct")], body
        return 404, [], "nope\n"

    return handle


def stream(url):
    r = requests.get(url, stream=True, timeout=10)
    return r, r.iter_content(chunk_size=None)


def read_until(chunks, needle, limit=10.0):
    got = b""
    deadline = time.time() + limit
    while needle.encode() not in got:
        assert time.time() < deadline, f"no {needle!r} in {got!r}"
        got += next(chunks)
    return got.decode()


def wait_subscribed(gw, n):
    assert gw.wait_metric("gripway_subscriptions", float(n)), gw.log


def test_stream_hold_and_grippubcontrol(start_gripway, start_origin):
    origin = start_origin(grip_origin(None))
    gw = start_gripway("--route", f"* {origin.addr}")
    r, chunks = stream(gw.url("/stream/py"))
    assert r.status_code == 200
    assert "grip-hold" not in {k.lower() for k in r.headers}
    read_until(chunks, "stream open\n")
    wait_subscribed(gw, 1)

    pub = GripPubControl({"control_uri": gw.control_uri})
    pub.publish_http_stream("py", "data: from gripcontrol\n\n", blocking=True)
    read_until(chunks, "data: from gripcontrol\n\n")
    # an Item with an explicit format and ids
    pub.publish("py", Item(HttpStreamFormat("second\n"), id="2", prev_id="1"), blocking=True)
    read_until(chunks, "second\n")
    r.close()


def test_grip_instruct_json_from_the_library(start_gripway, start_origin):
    origin = start_origin(grip_origin(None))
    gw = start_gripway("--route", f"* {origin.addr}")
    r, chunks = stream(gw.url("/json-stream/pyjson"))
    read_until(chunks, "json stream open\n")
    wait_subscribed(gw, 1)
    GripPubControl({"control_uri": gw.control_uri}).publish_http_stream("pyjson", "appended\n", blocking=True)
    read_until(chunks, "appended\n")
    r.close()


def test_long_poll_answered_by_publish_http_response(start_gripway, start_origin):
    origin = start_origin(grip_origin(None))
    gw = start_gripway("--route", f"* {origin.addr}")
    import threading
    result = {}

    def poll():
        result["r"] = requests.get(gw.url("/poll/pypoll"), timeout=20)

    t = threading.Thread(target=poll)
    t.start()
    wait_subscribed(gw, 1)
    pub = GripPubControl({"control_uri": gw.control_uri})
    pub.publish_http_response("pypoll", HttpResponseFormat(code=202, reason="Accepted",
                              headers={"X-Pub": "yes"}, body="the answer\n"), blocking=True)
    t.join(15)
    r = result["r"]
    assert r.status_code == 202
    assert r.reason == "Accepted"
    assert r.headers["X-Pub"] == "yes"
    assert r.headers["Content-Type"] == "text/plain", "inherited from the hold's response"
    assert r.text == "the answer\n"


def test_unsigned_requests_are_refused_by_the_origin_but_gripway_signs(start_gripway, start_origin):
    origin = start_origin(grip_origin(None))
    direct = requests.get(f"http://{origin.addr}/stream/x", timeout=5)
    assert direct.status_code == 403
    gw = start_gripway("--route", f"* {origin.addr}")
    r, chunks = stream(gw.url("/stream/signed"))
    assert r.status_code == 200
    r.close()


@pytest.mark.parametrize("how", ["jwt", "bearer", "fastly-path"])
def test_grippubcontrol_credentials(start_gripway, start_origin, tmp_config, how):
    origin = start_origin(grip_origin(None))
    conf = tmp_config('[publish.auth]\nkeys = ["py-key"]\njwt_keys = ["py-secret"]\njwt_iss = "py-realm"\n')
    gw = start_gripway("--config", conf, "--route", f"* {origin.addr}")
    r, chunks = stream(gw.url("/stream/authd"))
    read_until(chunks, "stream open\n")
    wait_subscribed(gw, 1)
    if how == "jwt":
        config = parse_grip_uri(f"{gw.control_uri}?iss=py-realm&key=py-secret")
    elif how == "bearer":
        config = {"control_uri": gw.control_uri, "key": "py-key"}
    else:
        config = {"control_uri": f"{gw.control_uri}/service/SVC1", "key": "py-key"}
    GripPubControl(config).publish_http_stream("authd", f"via {how}\n", blocking=True)
    read_until(chunks, f"via {how}\n")

    wrong = GripPubControl(parse_grip_uri(f"{gw.control_uri}?iss=py-realm&key=wrong"))
    with pytest.raises(ValueError, match="401"):
        wrong.publish_http_stream("authd", "never\n", blocking=True)
    unauthenticated = GripPubControl({"control_uri": gw.control_uri})
    with pytest.raises(ValueError, match="401"):
        unauthenticated.publish_http_stream("authd", "never\n", blocking=True)
    r.close()


def test_close_action_from_the_library(start_gripway, start_origin):
    origin = start_origin(grip_origin(None))
    gw = start_gripway("--route", f"* {origin.addr}")
    r, chunks = stream(gw.url("/stream/closing"))
    read_until(chunks, "stream open\n")
    wait_subscribed(gw, 1)
    GripPubControl({"control_uri": gw.control_uri}).publish("closing", Item(HttpStreamFormat(close=True)), blocking=True)
    rest = b"".join(chunks)  # ends when the stream is closed
    assert rest == b""
