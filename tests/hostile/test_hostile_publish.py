"""Hostile publishers: malformed JSON, oversized bodies, bad JWTs, size limits, and the
body-patch bomb. The publish API here requires credentials: a static token, an HS256 secret,
or an ES256 public key given inline as PEM text.

Documented answers: malformed JSON of any shape is 400 with a message that says what is wrong,
a body over max_body (1,000,000) is 413, content over 32,767 bytes on Fastly's path is 413,
while a 64 KiB ws-message on Pushpin's /publish/ is accepted and delivered; every refusal is
counted as gripway_errors_total{source="publisher"}; a bad JWT (wrong key, expired, alg none,
HS256 signed with the configured public key's PEM text) is 401; a body-patch whose result
would exceed the content limit is refused 400 at publish, or counted and skipped at delivery,
without ever building the large value. The listener reads requests as the client port does:
pipelined publishes are answered and published in order; HTTP/1.0, `Expect: 100-continue`
and HEAD work; a refusal before the body closes the connection; a bare LF, an oversized head,
broken chunking or both framings at once are 400/431 and counted as the publisher's; past 512
open publish connections (64 admin connections) a new one is answered 503."""

import asyncio
import base64
import hashlib
import hmac
import json
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from harness import HS_SECRET, PUBLISH_TOKEN, rss_mb, run
from test_hostile_websocket import ws_open

_KEYS = Path(tempfile.mkdtemp(prefix="hostile-keys-"))


def _ec_key(name):
    priv = _KEYS / f"{name}.pem"
    subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(priv)],
                   check=True, capture_output=True)
    pub = subprocess.run(["openssl", "ec", "-in", str(priv), "-pubout"], check=True,
                         capture_output=True).stdout.decode()
    return priv, pub


EC_PRIV, EC_PUB = _ec_key("publisher")
OTHER_PRIV, _ = _ec_key("other")

GRIPWAY_EXTRA_CONFIG = f"""
[publish.auth]
keys = ["{PUBLISH_TOKEN}"]
jwt_keys = ["{HS_SECRET}", '''{EC_PUB.strip()}''']
"""


def b64url(data):
    if isinstance(data, (dict, list)):
        data = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256(claims, secret, header=None):
    signing = f"{b64url(header or {'alg': 'HS256', 'typ': 'JWT'})}.{b64url(claims)}"
    key = secret.encode() if isinstance(secret, str) else secret
    return f"{signing}.{b64url(hmac.new(key, signing.encode(), hashlib.sha256).digest())}"


def es256(claims, priv_path):
    signing = f"{b64url({'alg': 'ES256', 'typ': 'JWT'})}.{b64url(claims)}"
    der = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(priv_path)],
                         input=signing.encode(), check=True, capture_output=True).stdout
    # DER SEQUENCE { INTEGER r, INTEGER s } -> r || s, 32 bytes each
    i = 2 if der[1] < 0x80 else 3
    rlen = der[i + 1]
    r = int.from_bytes(der[i + 2:i + 2 + rlen], "big")
    j = i + 2 + rlen
    s = int.from_bytes(der[j + 2:j + 2 + der[j + 1]], "big")
    return f"{signing}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def good_claims():
    return {"iss": "battery", "exp": int(time.time()) + 600}


ITEM = '{"items":[{"channel":"jwt-test","formats":{"http-stream":{"content":"x\\n"}}}]}'


def errors_sum(env, prefix='gripway_errors_total{'):
    """The sum of every metric sample starting with `prefix`."""
    import requests
    text = requests.get(f"http://{env.gw.admin_addr}/metrics", timeout=5).text
    return sum(float(line.rpartition(" ")[2]) for line in text.splitlines() if line.startswith(prefix))


def publisher_errors(env):
    """The sum of gripway_errors_total{source="publisher",...} over every reason."""
    return errors_sum(env, 'gripway_errors_total{source="publisher"')


# ---------------------------------------------------------------------------------------------
# Authentication


def test_good_credentials_are_accepted(env):
    for token in [PUBLISH_TOKEN, hs256(good_claims(), HS_SECRET), es256(good_claims(), EC_PRIV)]:
        status, text = env.publish(ITEM, token=token)
        assert status == 200, (token[:40], status, text)


BAD_JWTS = {
    "HS256, wrong secret": lambda: hs256(good_claims(), "not-the-secret"),
    "HS256, expired an hour ago": lambda: hs256({"iss": "battery", "exp": int(time.time()) - 3600},
                                                HS_SECRET),
    "HS256, no exp": lambda: hs256({"iss": "battery"}, HS_SECRET),
    "ES256, wrong key": lambda: es256(good_claims(), OTHER_PRIV),
    "ES256, expired": lambda: es256({"iss": "battery", "exp": int(time.time()) - 3600}, EC_PRIV),
    "alg none": lambda: f"{b64url({'alg': 'none', 'typ': 'JWT'})}.{b64url(good_claims())}.",
    "alg None": lambda: f"{b64url({'alg': 'None'})}.{b64url(good_claims())}.",
    "alg NONE, with a signature": lambda: hs256(good_claims(), HS_SECRET, header={"alg": "NONE"}),
    "HS256 signed with the public key PEM": lambda: hs256(good_claims(), EC_PUB.strip()),
    "HS256 signed with the public key PEM + newline": lambda: hs256(good_claims(), EC_PUB.strip() + "\n"),
    "not a JWT": lambda: "a.b.c",
    "a 64 KB token": lambda: "e" * 65536,
}


def test_bad_jwts_are_401(env):
    wrong = {}
    for name, make in BAD_JWTS.items():
        status, text = env.publish(ITEM, token=make())
        if status not in (401, 403):
            wrong[name] = (status, text.strip()[:80])
    status, _ = env.publish(ITEM, token=None)
    if status != 401:
        wrong["no credentials"] = status
    assert not wrong, f"accepted or misanswered: {wrong}"


# ---------------------------------------------------------------------------------------------
# Malformed bodies

DEEP = 100_000
MALFORMED = {
    "not JSON": b"this is not json",
    "empty body": b"",
    "truncated": b'{"items": [{"channel": "c", "formats": {"http-stream": {"content": "x',
    "an array, not an object": b"[]",
    "items an object": b'{"items": {}}',
    "items a string": b'{"items": "x"}',
    "items missing": b"{}",
    "item not an object": b'{"items": [5]}',
    "channel missing": b'{"items": [{"formats": {"http-stream": {"content": "x"}}}]}',
    "channel a number": b'{"items": [{"channel": 5, "formats": {"http-stream": {"content": "x"}}}]}',
    "content a number": b'{"items": [{"channel": "c", "formats": {"http-stream": {"content": 5}}}]}',
    "formats a list": b'{"items": [{"channel": "c", "formats": ["http-stream"]}]}',
    "code a huge number": b'{"items": [{"channel": "c", "formats": {"http-response": '
                          b'{"code": 123456789012345678901234567890, "body": "x"}}}]}',
    "code 1e999999": b'{"items": [{"channel": "c", "formats": {"http-response": '
                     b'{"code": 1e999999, "body": "x"}}}]}',
    "code negative": b'{"items": [{"channel": "c", "formats": {"http-response": {"code": -1, "body": "x"}}}]}',
    "invalid UTF-8": b'{"items": [{"channel": "\xff\xfe", "formats": {"http-stream": {"content": "x"}}}]}',
    "lone surrogate": b'{"items": [{"channel": "\\ud800", "formats": {"http-stream": {"content": "x"}}}]}',
    "nesting 100k [": b'{"items": ' + b"[" * DEEP + b"]" * DEEP + b"}",
    "nesting 100k { in a body-patch value": (
        b'{"items": [{"channel": "c", "formats": {"http-response": {"body-patch": '
        b'[{"op": "add", "path": "/x", "value": ' + b'{"a":' * DEEP + b"1" + b"}" * DEEP + b"}]}}}]}"),
    "nesting 100k [ unclosed": b'{"items": [' + b"[" * DEEP,
    "trailing garbage": b'{"items": []} {"items": []}',
    "content-bin not base64": b'{"items": [{"channel": "c", "formats": {"http-stream": {"content-bin": "!!!"}}}]}',
}


def test_malformed_publish_bodies_are_400_with_a_message(env):
    wrong = {}
    for name, body in MALFORMED.items():
        status, text = env.publish(body)
        if status != 400 or len(text.strip()) < 8:
            wrong[name] = (status, text.strip()[:100])
    assert env.gw.proc.poll() is None, "gripway died on a malformed publish"
    assert not wrong, f"not 400 with a message: {wrong}"
    env.canary.check("malformed publish bodies")


def raw_publish(env, head, body, chunk=1 << 16):
    """Sends `head` then `body` on a raw socket, stopping quietly if the server stops reading
    (it may answer before the body is in); returns the status code answered."""
    import socket
    host, port = env.gw.publish_addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        try:
            s.sendall(head)
            for i in range(0, len(body), chunk):
                s.sendall(body[i:i + chunk])
        except OSError:
            pass
        out = b""
        try:
            while b"\r\n" not in out:
                data = s.recv(4096)
                if not data:
                    break
                out += data
        except OSError:
            pass
    return int(out.split(b" ", 2)[1]) if out.startswith(b"HTTP/1.1 ") else None


def test_oversized_publish_bodies_are_413(env):
    big = b'{"items": [{"channel": "c", "formats": {"http-stream": {"content": "' + b"a" * (10 << 20) + b'"}}}]}'
    auth = f"Authorization: Bearer {PUBLISH_TOKEN}\r\n".encode()
    head = b"POST /publish/ HTTP/1.1\r\nHost: x\r\n" + auth + b"Content-Length: %d\r\n\r\n" % len(big)
    assert raw_publish(env, head, big) == 413
    # the same without a Content-Length
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(big[i:i + 65536]), big[i:i + 65536])
                       for i in range(0, len(big), 65536)) + b"0\r\n\r\n"
    head = b"POST /publish/ HTTP/1.1\r\nHost: x\r\n" + auth + b"Transfer-Encoding: chunked\r\n\r\n"
    assert raw_publish(env, head, chunked) == 413


def test_publish_refusals_are_counted_as_publisher_errors(env):
    before = publisher_errors(env)
    for body in [b"not json", b"{}", b'{"items": 5}']:
        assert env.publish(body)[0] == 400
    assert env.publish(ITEM, token="wrong")[0] == 401
    after = publisher_errors(env)
    assert after - before == 4, f"publisher errors counted: {after - before} of 4"


# ---------------------------------------------------------------------------------------------
# Size limits


def test_content_over_32767_on_fastlys_path_is_413(env):
    body = json.dumps({"items": [{"channel": "c", "formats": {
        "ws-message": {"content": "a" * 32768}}}]})
    status, text = env.publish(body, path="/service/battery/publish/")
    assert status == 413, (status, text[:100])


def test_a_64kib_ws_message_on_pushpins_path_is_delivered(env):
    content = "b" * 65536

    async def case():
        subs = env.gw.metric("gripway_subscriptions") or 0
        reader, writer = await ws_open(env.gw.addr, "/ws/sub/big-ws")
        for _ in range(100):
            if (env.gw.metric("gripway_subscriptions") or 0) > subs:
                break
            await asyncio.sleep(0.05)
        body = json.dumps({"items": [{"channel": "big-ws", "formats": {
            "ws-message": {"content": content}}}]})
        status, text = await asyncio.to_thread(env.publish, body)
        got = None
        if status == 200:
            h = await asyncio.wait_for(reader.readexactly(2), 5)
            n = h[1] & 0x7F
            if n == 126:
                n = int.from_bytes(await reader.readexactly(2), "big")
            elif n == 127:
                n = int.from_bytes(await reader.readexactly(8), "big")
            got = await asyncio.wait_for(reader.readexactly(n), 5)
        writer.close()
        return status, text, got

    status, text, got = run(case())
    assert status == 200, (status, text[:100])
    assert got == content.encode(), "the 64 KiB message did not arrive whole"


# ---------------------------------------------------------------------------------------------
# The listener's HTTP/1.1: the same head reader as the client port


def exchange(env, data, steps=(), addr=None):
    """Writes `data` on a new connection to the publish listener (or `addr`), then for each
    (wait_for, send) in `steps` reads until `wait_for` has arrived and sends `send`; returns
    everything read until the server closes (or 10 s pass)."""
    import socket
    host, port = (addr or env.gw.publish_addr).rsplit(":", 1)
    out = b""
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(data)
        for wait_for, send in steps:
            while wait_for not in out:
                chunk = s.recv(65536)
                assert chunk, f"closed before {wait_for!r}: {out!r}"
                out += chunk
            s.sendall(send)
        try:
            while chunk := s.recv(65536):
                out += chunk
        except OSError:
            pass
    return out


def publish_request(channel, item_id, extra=b"", version=b"HTTP/1.1"):
    body = json.dumps({"items": [{"channel": channel, "id": item_id, "formats": {
        "http-stream": {"content": f"{item_id}\n"}}}]}).encode()
    return (b"POST /publish/ " + version + b"\r\nHost: x\r\nAuthorization: Bearer "
            + PUBLISH_TOKEN.encode() + b"\r\nContent-Length: %d\r\n" % len(body) + extra
            + b"\r\n" + body)


def history_ids(env, channel):
    import requests
    r = requests.get(f"http://{env.gw.publish_addr}/history/{channel}",
                     headers={"Authorization": f"Bearer {PUBLISH_TOKEN}"}, timeout=5)
    assert r.status_code == 200, r.text[:200]
    return [item["id"] for item in r.json()["items"]]


def test_pipelined_publishes_are_answered_and_published_in_order(env):
    data = (publish_request("pipe", "p1") + publish_request("pipe", "p2")
            + publish_request("pipe", "p3", extra=b"Connection: close\r\n"))
    out = exchange(env, data)
    answers = out.split(b"HTTP/1.1 ")[1:]
    assert [a[:3] for a in answers] == [b"200"] * 3, out[:600]
    assert b"connection: close" in answers[2].lower(), answers[2][:300]
    assert history_ids(env, "pipe") == ["p1", "p2", "p3"]


def test_http10_expect_continue_and_head(env):
    # HTTP/1.0 without keep-alive: answered as 1.0, then closed
    out = exchange(env, publish_request("old", "o1", version=b"HTTP/1.0"))
    assert out.startswith(b"HTTP/1.0 200 "), out[:200]
    # Expect: 100-continue: the body is sent only after the interim answer
    req = publish_request("expect", "e1", extra=b"Expect: 100-continue\r\nConnection: close\r\n")
    head, body = req.split(b"\r\n\r\n", 1)
    out = exchange(env, head + b"\r\n\r\n", steps=[(b"100 Continue\r\n\r\n", body)])
    assert out.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 "), out[:300]
    assert history_ids(env, "old") == ["o1"] and history_ids(env, "expect") == ["e1"]
    # HEAD: the head of the answer, no body
    out = exchange(env, b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 ") and out.endswith(b"\r\n\r\n"), out[:300]


def test_a_refusal_before_the_body_closes_the_connection(env):
    # refused before its body is read: the body must not be taken for a next request
    body = b"POST /publish/ HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n"
    out = exchange(env, b"POST /publish/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong\r\n"
                   b"Content-Length: %d\r\n\r\n" % len(body) + body)
    assert out.startswith(b"HTTP/1.1 401 "), out[:300]
    assert out.count(b"HTTP/1.1 ") == 1, out[:600]
    assert b"connection: close" in out.lower(), out[:300]


def test_bad_heads_are_refused_and_counted(env):
    before = publisher_errors(env)
    out = exchange(env, b"POST /publish/ HTTP/1.1\nHost: x\n\n")
    assert out.startswith(b"HTTP/1.1 400 ") and b"LF" in out, out[:300]
    assert out.endswith(b".\n") and not out.endswith(b"\n\n"), out[-100:]
    out = exchange(env, b"POST /publish/ HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * (200 << 10)
                   + b"\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 431 "), out[:300]
    # a body that says it is chunked and is not
    out = exchange(env, b"POST /publish/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                   + PUBLISH_TOKEN.encode() + b"\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
    assert out.startswith(b"HTTP/1.1 400 "), out[:300]
    # smuggling: both framings
    out = exchange(env, b"POST /publish/ HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                   b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 "), out[:300]
    assert publisher_errors(env) - before == 4
    env.canary.check("bad publish heads")


def raw_get(env, addr, path):
    """One `GET path` on a new connection to `addr` (Connection: close); everything answered."""
    return exchange(env, b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                    addr=addr)


@pytest.mark.parametrize("listener,limit", [("publish", 512), ("admin", 64)])
def test_publish_and_admin_connections_are_capped_and_given_back(env, listener, limit):
    """As many connections as the documented limit, held open: the next is answered 503 and
    counted; once they close, the listener serves again."""
    import socket
    addr = env.gw.publish_addr if listener == "publish" else env.gw.admin_addr
    path = "/" if listener == "publish" else "/health"
    metric = f'gripway_errors_total{{source="internal",reason="too-many-{listener}-connections"'
    before = errors_sum(env, metric)
    host, port = addr.rsplit(":", 1)
    held = []
    try:
        for _ in range(limit):
            held.append(socket.create_connection((host, int(port)), timeout=10))
        # the server counts a connection once it has accepted it: wait until all are in
        deadline = time.monotonic() + 10
        out = b""
        while time.monotonic() < deadline:
            out = raw_get(env, addr, path)
            if out.startswith(b"HTTP/1.1 503 "):
                break
            time.sleep(0.1)
        assert out.startswith(b"HTTP/1.1 503 ") and b"connections" in out, out[:300]
    finally:
        for s in held:
            s.close()
    deadline = time.monotonic() + 10
    while not raw_get(env, addr, path).startswith(b"HTTP/1.1 200 "):
        assert time.monotonic() < deadline, f"the {listener} listener did not come back"
        time.sleep(0.1)
    # read once the admin listener has its places back (the metrics are read through it)
    assert errors_sum(env, metric) > before, "the refusal was not counted"
    env.canary.check(f"the {listener} connection cap")


# ---------------------------------------------------------------------------------------------
# The body-patch bomb (last: today it can take the process down)


def test_body_patch_bomb_is_refused_or_skipped(env):
    """40 `copy` ops from "" double the document 40 times (2^40 x its size)."""
    patch = [{"op": "copy", "from": "", "path": f"/a{i}"} for i in range(40)]
    body = json.dumps({"items": [{"channel": "bomb", "formats": {"http-response": {"body-patch": patch}}}]})
    peak = [rss_mb(env.pid)]
    stop = threading.Event()

    def watch():  # also a safety net for this shared machine
        while not stop.is_set() and env.gw.proc.poll() is None:
            peak[0] = max(peak[0], rss_mb(env.pid))
            if peak[0] > 800:
                env.gw.proc.kill()
                return
            time.sleep(0.01)

    async def case():
        subs = env.gw.metric("gripway_subscriptions") or 0
        host, port = env.gw.addr.rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GET /poll/bomb HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        for _ in range(100):
            if (env.gw.metric("gripway_subscriptions") or 0) > subs:
                break
            await asyncio.sleep(0.05)
        before = errors_sum(env)
        status, text = await asyncio.to_thread(env.publish, body)
        try:  # whatever reaches the subscriber in the next 3 s, read but not kept
            got = 0
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                chunk = await asyncio.wait_for(reader.read(1 << 20), deadline - time.monotonic())
                if not chunk:
                    break
                got += len(chunk)
        except (asyncio.TimeoutError, ConnectionError):
            pass
        writer.close()
        return status, text, got, before

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        status, text, got, before = run(case())
    finally:
        stop.set()
        watcher.join(timeout=2)
    assert env.gw.proc.poll() is None, f"gripway died (peak RSS {peak[0]:.0f} MB)"
    assert peak[0] < 200, f"peak RSS {peak[0]:.0f} MB"
    assert status in (200, 400), (status, text[:100])
    if status == 400:
        assert "patch" in text.lower(), text[:200]
    else:
        assert got < 65536, f"the subscriber was sent {got} bytes"
        assert errors_sum(env) > before, "a skipped patch was not counted in gripway_errors_total"
    env.canary.check("the body-patch bomb")


def test_canary_survived(env):
    env.canary.check("the publish cases")
