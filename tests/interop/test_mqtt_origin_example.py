"""The README's example MQTT-over-HTTP origin (examples/mqtt_origin.py), run as a user runs
it and asked over real HTTP: requests shaped as Gripway sends them (docs/mqtt-design.md §3.1,
README "MQTT: the origin decides"), signed with Grip-Sig by PyJWT (an implementation
independent of the example's own check), and its answers in the documented shapes. The
end-to-end tests with MQTT clients through gripway come with the server side."""

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import jwt
import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "mqtt_origin.py"
KEY = "changeme"  # the route's sig_key (gripway's default, as Pushpin's)
CONTENT_TYPE = "application/mqtt-events+json"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def origin():
    """The example on a free port, started with `python3 mqtt_origin.py PORT KEY`."""
    for _ in range(5):
        port = free_port()
        proc = subprocess.Popen([sys.executable, str(EXAMPLE), str(port), KEY],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 10
        while time.time() < deadline and proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        if proc.poll() is None:
            break
        proc.wait()  # the port was taken between free_port() and the bind: try another
    else:
        pytest.fail("the example origin did not start")
    yield f"http://127.0.0.1:{port}"
    proc.kill()
    proc.wait(timeout=10)


def grip_sig(key=KEY, exp_in=3600, alg="HS256"):
    return jwt.encode({"iss": "gripway", "exp": int(time.time()) + exp_in}, key, algorithm=alg)


def ask(url, events, username="alice", sig=None):
    """One MQTT-over-HTTP request, as Gripway sends it; returns the response."""
    body = {"protocol": 5, "client-id": "dev-17", "events": events}
    if username is not None:
        body["username"] = username
    headers = {"Content-Type": CONTENT_TYPE, "Accept": CONTENT_TYPE,
               "Connection-Id": "6f1c2a3e-0000-4000-8000-000000000001",
               "Mqtt-Client-Id": "dev-17",
               "Grip-Sig": grip_sig() if sig is None else sig}
    return requests.post(url + "/mqtt", data=json.dumps(body), headers=headers, timeout=10)


def results(response):
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == CONTENT_TYPE
    return response.json()["results"]


def count(url):
    r = requests.get(url + "/count", timeout=10)
    assert r.status_code == 200
    return int(r.text)


def connect(password, **extra):
    return {"type": "connect", "password": password, "clean": True, "keep-alive": 60, **extra}


def test_connect_allows_the_right_password_only(origin):
    r = ask(origin, [connect("s3cret")])
    assert results(r) == [{"allow": True}]
    assert r.headers["Cache-Control"] == "max-age=60"
    assert results(ask(origin, [connect("hunter2")], username="bob")) == [{"allow": True}]
    denied = [{"allow": False, "reason": "bad-credentials"}]
    assert results(ask(origin, [connect("hunter2")])) == denied
    assert results(ask(origin, [connect("s3cret")], username="mallory")) == denied
    assert results(ask(origin, [connect("s3cret")], username=None)) == denied
    # a binary password is sent as password-bin: never equal to a text one
    assert results(ask(origin, [{"type": "connect", "password-bin": "czNjcmV0", "clean": True,
                                 "keep-alive": 60}])) == denied


def test_subscribe_maps_or_denies_each_filter(origin):
    event = {"type": "subscribe", "filters": [
        {"filter": "devices/alice/#", "qos": 1},
        {"filter": "public/news", "qos": 0},
        {"filter": "devices/bob/#", "qos": 1},
        {"filter": "public/#", "qos": 0},
        {"filter": "public/+/x", "qos": 0},
        {"filter": "secret", "qos": 0}]}
    deny = {"allow": False, "reason": "not-authorized"}
    r = ask(origin, [event])
    assert results(r) == [{"filters": [
        {"allow": True, "channels": ["devices/alice"]},
        {"allow": True},
        deny, deny, deny, deny]}]
    assert r.headers["Cache-Control"] == "max-age=60"


def test_publish_decisions(origin):
    def publish(topic):
        return {"type": "publish", "topic": topic, "qos": 1, "retain": False, "content": "21.5"}

    r = ask(origin, [publish("devices/alice/temp"), publish("public/chat"),
                     publish("devices/bob/temp"), publish("elsewhere")])
    assert results(r) == [{"allow": True, "channel": "devices/alice"}, {"allow": True},
                          {"allow": False, "reason": "not-authorized"},
                          {"allow": False, "reason": "not-authorized"}]
    assert r.headers["Cache-Control"] == "max-age=60"
    # rpc/ping is answered to the device and published nowhere; a reply is never cached
    r = ask(origin, [publish("rpc/ping")])
    assert results(r) == [{"allow": True, "publish": False,
                           "reply": [{"topic": "rpc/pong", "content": "pong"}]}]
    assert "Cache-Control" not in r.headers
    r = ask(origin, [publish("devices/alice/temp"), publish("rpc/ping")])
    assert len(results(r)) == 2 and "Cache-Control" not in r.headers


def test_notifications_get_empty_results(origin):
    r = ask(origin, [{"type": "unsubscribe", "filters": ["public/news"]},
                     {"type": "disconnect", "reason": "normal", "will-sent": False}])
    assert results(r) == [{}, {}]


def test_bad_signatures_are_refused(origin):
    good = grip_sig()
    head, claims, sig = good.split(".")
    for bad in ["", "not-a-jwt", grip_sig(key="wrong"), grip_sig(exp_in=-10),
                f"{head}.{claims}.", f"{head}.{claims}.{sig[:-2]}",
                grip_sig(alg="HS384"),
                jwt.encode({"exp": int(time.time()) + 60}, None, algorithm="none")]:
        r = ask(origin, [connect("s3cret")], sig=bad)
        assert r.status_code == 401, bad
        assert "results" not in r.text
    assert results(ask(origin, [connect("s3cret")], sig=good)) == [{"allow": True}]


def test_count_counts_every_request(origin):
    before = count(origin)
    ask(origin, [connect("s3cret")])
    ask(origin, [connect("s3cret")], sig="bad")
    assert count(origin) == before + 2
    assert requests.get(origin + "/other", timeout=10).status_code == 404


def test_the_readme_shows_the_examples_code():
    """The README's excerpt of the example is the example's own code, line for line."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### MQTT: the origin decides"):]
    excerpt = section[section.index("```python\n") + 10:]
    excerpt = excerpt[:excerpt.index("```")]
    code = EXAMPLE.read_text()
    for line in excerpt.splitlines():
        assert line in code.splitlines(), f"README line not in the example: {line!r}"
