"""WebSockets through gripway, with the real libraries on both sides: Python's `websockets`
as the client (and as the origin in pass-through mode), and origins speaking
WebSocket-over-HTTP written with gripcontrol's helpers (`decode_websocket_events`,
`encode_websocket_events`, `websocket_control_message`, `WebSocketEvent`), publishing with
`GripPubControl` + `WebSocketMessageFormat`.

Covered: the GRIP extension and its message prefix, control messages (subscribe,
unsubscribe, detach, set-meta, keep-alive, send-delayed, flush-delayed), the request headers
an over_http origin relies on, refusals, both close handshakes and disconnects, published
messages and closes, the skip-self filter, pass-through to an origin's own WebSocket, and the
demo origin. Every wait is bounded (asyncio.wait_for, deadlines)."""

import asyncio
import functools
import socket
import struct
import threading
import time

import pytest
from gripcontrol import (
    GripPubControl,
    WebSocketEvent,
    WebSocketMessageFormat,
    decode_websocket_events,
    encode_websocket_events,
    validate_sig,
    websocket_control_message,
)
from pubcontrol import Item
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed, InvalidStatus

SIG_KEY = "changeme"  # gripway's default, as Pushpin's
EVENTS = "application/websocket-events"


def bounded(test):
    """Runs an async test on its own event loop, for at most 30 seconds."""
    @functools.wraps(test)
    def run(*args, **kw):
        return asyncio.run(asyncio.wait_for(test(*args, **kw), 30))
    return run


def ws_connect(gw, path="/ws", **kw):
    return connect(f"ws://{gw.addr}{path}", open_timeout=5, close_timeout=5, **kw)


async def recv(ws, limit=5):
    return await asyncio.wait_for(ws.recv(), limit)


async def assert_silent(ws, wait=0.3):
    """Nothing arrives for `wait` seconds."""
    try:
        got = await asyncio.wait_for(ws.recv(), wait)
    except asyncio.TimeoutError:
        return
    raise AssertionError(f"unexpected message {got!r}")


async def wait_subscriptions(gw, n):
    assert await asyncio.to_thread(gw.wait_metric, "gripway_subscriptions", float(n)), gw.log


async def publish(gw, channel, content=None, binary=False, meta=None, **fmt):
    pub = GripPubControl({"control_uri": gw.control_uri})
    item = Item(WebSocketMessageFormat(content, binary=binary, **fmt), meta=meta or {})
    await asyncio.to_thread(pub.publish, channel, item, blocking=True)


async def handshake_refused(gw):
    """The handshake's HTTP response, which must not be a 101."""
    with pytest.raises(InvalidStatus) as info:
        async with ws_connect(gw):
            pass
    return info.value.response


async def wait_until(pred, limit=10.0, what="condition"):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


# --- a WebSocket-over-HTTP origin written with gripcontrol's helpers ---

def m(content):
    """An origin's message for the client, with the default `m:` prefix."""
    if isinstance(content, bytes):
        return WebSocketEvent("BINARY", b"m:" + content)
    return WebSocketEvent("TEXT", "m:" + content)


def c(kind, args=None):
    """A control message for gripway."""
    return WebSocketEvent("TEXT", "c:" + websocket_control_message(kind, args))


def woh_origin(start_gripway, start_origin, script, extension="grip"):
    """An over_http origin and gripway routing to it. The origin accepts OPEN (enabling
    `extension`), answers every event with what `script(req, event, headers)` returns (it may
    append response headers), and refuses requests whose Grip-Sig is not valid for `changeme`."""
    def handle(req):
        if not validate_sig(req["headers"].get("grip-sig", ""), SIG_KEY):
            return 403, [("Content-Type", "text/plain")], "not from a GRIP proxy\n"
        headers, out = [("Content-Type", EVENTS)], []
        for e in decode_websocket_events(req["body"]):
            if e.type == "OPEN":
                out.append(WebSocketEvent("OPEN"))
                if extension:
                    headers.append(("Sec-WebSocket-Extensions", extension))
            out += script(req, e, headers) or []
        return 200, headers, encode_websocket_events(out)

    origin = start_origin(handle)
    return origin, start_gripway("--route", f"* {origin.addr},over_http")


def events_seen(origin):
    """Every event the origin has received, as (type, content) in arrival order."""
    return [(e.type, e.content) for r in list(origin.requests)
            for e in decode_websocket_events(r["body"])]


def replies(table, default=None):
    """A script from a table: OPEN gets table["OPEN"], a TEXT event whose content is a key
    gets that entry, anything else what `default(req, event, headers)` returns."""
    def script(req, e, headers):
        key = e.type if e.type != "TEXT" else e.content.decode(errors="replace")
        if key in table:
            return list(table[key])
        return default(req, e, headers) if default else []
    return script


# --- 1. accepting, subscribing, publishing ---

@bounded
async def test_open_subscribe_and_published_messages_in_order(start_gripway, start_origin):
    def script(req, e, headers):
        if e.type == "OPEN":
            headers.append(("Sec-WebSocket-Protocol", "chat"))
            headers.append(("Set-Meta-User", "alice"))
            return [c("subscribe", {"channel": "room"}), m("welcome")]
        return []

    origin, gw = woh_origin(start_gripway, start_origin, script)
    async with ws_connect(gw, subprotocols=["chat"]) as ws:
        assert ws.subprotocol == "chat"  # the origin's handshake headers reach the client
        hidden = {k.lower() for k in ws.response.headers}
        assert not hidden & {"sec-websocket-extensions", "set-meta-user", "content-type"}
        assert await recv(ws) == "welcome"
        await wait_subscriptions(gw, 1)
        sent = ["one", b"\x00two\xff", "three", b"", "five \u00e9"]
        for content in sent:
            await publish(gw, "room", content, binary=isinstance(content, bytes))
        assert [await recv(ws) for _ in sent] == sent


# --- 2. client messages and the origin's replies ---

@bounded
async def test_client_messages_reach_origin_and_prefixed_replies_reach_client(
        start_gripway, start_origin):
    def script(req, e, headers):
        if e.type == "TEXT":
            return [WebSocketEvent("TEXT", "no prefix: dropped"), m("echo " + e.content.decode())]
        if e.type == "BINARY":
            return [WebSocketEvent("BINARY", b"\x01no prefix"), m(b"echo " + e.content)]
        return []

    origin, gw = woh_origin(start_gripway, start_origin, script)
    async with ws_connect(gw) as ws:
        await ws.send("hello")
        assert await recv(ws) == "echo hello"
        await ws.send(b"\x00\xff")
        assert await recv(ws) == b"echo \x00\xff"
        await ws.send("caf\u00e9")
        assert await recv(ws) == "echo caf\u00e9"
        await assert_silent(ws)
    assert [e for e in events_seen(origin) if e[0] in ("OPEN", "TEXT", "BINARY")] == [
        ("OPEN", None), ("TEXT", b"hello"), ("BINARY", b"\x00\xff"), ("TEXT", "caf\u00e9".encode())]


@pytest.mark.parametrize("prefix", ["", "pre:"])
@bounded
async def test_message_prefix_parameter(start_gripway, start_origin, prefix):
    origin, gw = woh_origin(start_gripway, start_origin, replies(
        {"go": [WebSocketEvent("TEXT", "m:plain"), WebSocketEvent("TEXT", prefix + "mine")]}),
        extension=f'grip; message-prefix="{prefix}"')
    async with ws_connect(gw) as ws:
        await ws.send("go")
        if prefix == "":  # no prefix: everything goes to the client verbatim
            assert [await recv(ws), await recv(ws)] == ["m:plain", "mine"]
        else:  # only the custom prefix is stripped; `m:` is now unprefixed and dropped
            assert await recv(ws) == "mine"
            await assert_silent(ws)


@bounded
async def test_without_the_extension_messages_are_verbatim(start_gripway, start_origin):
    origin, gw = woh_origin(start_gripway, start_origin, replies(
        {"go": [WebSocketEvent("TEXT", "m:kept"), c("subscribe", {"channel": "room"})]}),
        extension=None)
    async with ws_connect(gw) as ws:
        await ws.send("go")
        assert await recv(ws) == "m:kept"
        assert (await recv(ws)).startswith('c:{')  # not a control message without grip
    assert gw.metric("gripway_subscriptions") == 0


# --- 3. what the origin sees ---

@bounded
async def test_request_headers_seen_by_the_origin(start_gripway, start_origin):
    def script(req, e, headers):
        if e.type == "OPEN":
            headers.append(("Set-Meta-User", "alice"))
            return [c("set-meta", {"name": "room", "value": "r1"})]
        if e.type == "TEXT" and e.content == b"forget":
            headers.append(("Set-Meta-User", ""))  # an empty value deletes
        if e.type == "TEXT":
            return [m("ack " + e.content.decode())]
        return []

    origin, gw = woh_origin(start_gripway, start_origin, script)
    forged = {"Meta-User": "mallory", "Connection-Id": "forged"}

    for _ in range(2):
        async with ws_connect(gw, additional_headers=forged) as ws:
            for word in ("x", "forget", "y"):
                await ws.send(word)
                assert await recv(ws) == "ack " + word
    reqs = list(origin.requests)
    assert len(reqs) >= 8, [events_seen(origin)]
    by_conn = {}
    for r in reqs:
        h = r["headers"]
        assert r["method"] == "POST" and r["path"] == "/ws"
        assert h["content-type"] == EVENTS and h["accept"] == EVENTS
        assert h["sec-websocket-extensions"] == "grip"
        assert validate_sig(h["grip-sig"], SIG_KEY)
        assert not validate_sig(h["grip-sig"], "another key")
        by_conn.setdefault(h["connection-id"], []).append(r)
    assert len(by_conn) == 2 and "forged" not in by_conn  # stable per connection, unique
    for conn in by_conn.values():
        metas = [{k: v for k, v in r["headers"].items() if k.startswith("meta-")} for r in conn]
        texts = [ev.content for r in conn for ev in decode_websocket_events(r["body"])
                 if ev.type in ("OPEN", "TEXT")]
        assert texts[:4] == [None, b"x", b"forget", b"y"]
        assert metas[0] == {}  # the client's own Meta-User is not passed on
        assert metas[1] == {"meta-user": "alice", "meta-room": "r1"}
        assert metas[2] == {"meta-user": "alice", "meta-room": "r1"}
        assert metas[3] == {"meta-room": "r1"}


# --- 4. refusals ---

@bounded
async def test_origin_refusing_open_refuses_the_handshake(start_gripway, start_origin):
    origin = start_origin(lambda req: (403, [("Content-Type", "text/plain"), ("X-Why", "banned")],
                                       "go away\n"))
    gw = start_gripway("--route", f"* {origin.addr},over_http")
    response = await handshake_refused(gw)
    assert response.status_code == 403
    assert response.body == b"go away\n"
    assert response.headers["X-Why"] == "banned"
    assert len(origin.requests) == 1
    assert events_seen(origin) == [("OPEN", None)]


@bounded
async def test_unreachable_origin_is_502(start_gripway):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gw = start_gripway("--route", f"* 127.0.0.1:{port},over_http")

    assert (await handshake_refused(gw)).status_code == 502


# --- 5. closing ---

close_script = replies(  # and a client's CLOSE is answered with the same CLOSE
    {"OPEN": [c("subscribe", {"channel": "room"})],
     "close me": [m("closing"), WebSocketEvent("CLOSE", struct.pack(">H", 4001) + b"done")]},
    lambda req, e, h: [WebSocketEvent("CLOSE", e.content)] if e.type == "CLOSE" else [])


@bounded
async def test_client_close_code_reaches_origin(start_gripway, start_origin):
    origin, gw = woh_origin(start_gripway, start_origin, close_script)
    async with ws_connect(gw) as ws:
        await ws.close(4000, "bye")
        assert ws.close_code == 4000
    closes = await wait_until(lambda: [e for e in events_seen(origin) if e[0] == "CLOSE"])
    assert closes == [("CLOSE", struct.pack(">H", 4000) + b"bye")]
    assert ("DISCONNECT", None) not in events_seen(origin)


@bounded
async def test_origin_close_code_reaches_client(start_gripway, start_origin):
    origin, gw = woh_origin(start_gripway, start_origin, close_script)
    async with ws_connect(gw) as ws:
        await ws.send("close me")
        assert await recv(ws) == "closing"
        with pytest.raises(ConnectionClosed):
            await recv(ws)
        assert (ws.close_code, ws.close_reason) == (4001, "done")


@bounded
async def test_published_close_closes_the_client(start_gripway, start_origin):
    origin, gw = woh_origin(start_gripway, start_origin, close_script)
    async with ws_connect(gw) as ws:
        await wait_subscriptions(gw, 1)
        await publish(gw, "room", "last words")
        await publish(gw, "room", action="close", code=4002, reason="kicked")
        assert await recv(ws) == "last words"
        with pytest.raises(ConnectionClosed):
            await recv(ws)
        assert (ws.close_code, ws.close_reason) == (4002, "kicked")
    await wait_subscriptions(gw, 0)


@bounded
async def test_client_vanishing_sends_disconnect(start_gripway, start_origin):
    origin, gw = woh_origin(start_gripway, start_origin, close_script)
    ws = await ws_connect(gw)
    await wait_subscriptions(gw, 1)
    ws.transport.abort()  # TCP closed without a close frame
    await wait_until(lambda: ("DISCONNECT", None) in events_seen(origin), what="DISCONNECT")
    assert not [e for e in events_seen(origin) if e[0] == "CLOSE"]
    await wait_subscriptions(gw, 0)


# --- 6. control messages ---

@bounded
async def test_unsubscribe_stops_deliveries(start_gripway, start_origin):
    origin, gw = woh_origin(start_gripway, start_origin, replies({
        "OPEN": [c("subscribe", {"channel": "room"})],
        "leave": [c("unsubscribe", {"channel": "room"}), m("left")]}))
    async with ws_connect(gw) as ws:
        await wait_subscriptions(gw, 1)
        await publish(gw, "room", "before")
        assert await recv(ws) == "before"
        await ws.send("leave")
        assert await recv(ws) == "left"
        await wait_subscriptions(gw, 0)
        await publish(gw, "room", "after")
        assert await asyncio.to_thread(gw.wait_metric, "gripway_messages_unheard_total", 1.0)
        await assert_silent(ws)


@bounded
async def test_detach_keeps_publishes_and_drops_client_messages(start_gripway, start_origin):
    origin, gw = woh_origin(start_gripway, start_origin, replies(
        {"OPEN": [c("subscribe", {"channel": "room"})], "detach": [c("detach"), m("detached")]},
        lambda req, e, h: [m("echo " + e.content.decode())] if e.type == "TEXT" else []))
    async with ws_connect(gw) as ws:
        await ws.send("detach")
        assert await recv(ws) == "detached"
        await ws.send("after detach")
        await wait_subscriptions(gw, 1)
        await publish(gw, "room", "still here")
        assert await recv(ws) == "still here"
        await assert_silent(ws, 0.5)  # no echo: the origin is out of the loop
    texts = [e[1] for e in events_seen(origin) if e[0] == "TEXT"]
    assert texts == [b"detach"]


@bounded
async def test_keep_alive_when_idle(start_gripway, start_origin):
    ka = c("keep-alive", {"content": "ka", "timeout": 1})
    origin, gw = woh_origin(start_gripway, start_origin, replies({"OPEN": [ka]}))
    async with ws_connect(gw) as ws:
        assert await recv(ws, 5) == "ka"
        first = time.monotonic()
        assert await recv(ws, 5) == "ka"  # again, a timeout later
        assert time.monotonic() - first >= 0.8


@bounded
async def test_send_delayed_and_flush_delayed(start_gripway, start_origin):
    origin, gw = woh_origin(start_gripway, start_origin, replies({
        "soon": [c("send-delayed", {"content": "delayed 1s", "timeout": 1}), m("now")],
        "later": [c("send-delayed", {"content": "delayed 60s", "timeout": 60}), m("queued")],
        "flush": [c("flush-delayed")]}))
    async with ws_connect(gw) as ws:
        start = time.monotonic()
        await ws.send("soon")
        assert await recv(ws) == "now"
        assert await recv(ws, 5) == "delayed 1s"
        assert time.monotonic() - start >= 0.8
        await ws.send("later")
        assert await recv(ws) == "queued"
        await ws.send("flush")
        assert await recv(ws, 5) == "delayed 60s"


# --- 7. filters ---

@bounded
async def test_skip_self_filter(start_gripway, start_origin):
    def script(req, e, headers):
        if e.type == "OPEN":
            user = req["path"].split("user=")[1]
            return [c("set-meta", {"name": "user", "value": user}),
                    c("subscribe", {"channel": "room", "filters": ["skip-self"]})]
        return []

    origin, gw = woh_origin(start_gripway, start_origin, script)
    async with ws_connect(gw, "/ws?user=alice") as alice, \
            ws_connect(gw, "/ws?user=bob") as bob:
        await wait_subscriptions(gw, 2)
        for sender in ("alice", "bob", "carol"):
            await publish(gw, "room", "from " + sender, meta={"sender": sender})
        assert [await recv(alice), await recv(alice)] == ["from bob", "from carol"]
        assert [await recv(bob), await recv(bob)] == ["from alice", "from carol"]
        await assert_silent(alice)


# --- 8. pass-through to the origin's own WebSocket ---

class WsOrigin:
    """A `websockets` server on a free port, on its own event loop in a thread. Records each
    handshake's headers and how each connection was closed."""

    def __init__(self, handler, grip=False, refuse=None):
        self.handshakes, self.closes = [], []
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def wrapped(ws):
            try:
                await handler(ws)
                await ws.wait_closed()
            except ConnectionClosed:
                pass
            self.closes.append(ws.close_code)  # None: no close frame received

        def process_request(conn, request):
            self.handshakes.append({":path": request.path,
                                    **{k.lower(): v for k, v in request.headers.raw_items()}})
            return conn.respond(*refuse) if refuse else None

        def process_response(conn, request, response):
            if grip:
                response.headers["Sec-WebSocket-Extensions"] = grip
            return response

        async def main():
            self.server = await serve(wrapped, "127.0.0.1", 0, process_request=process_request,
                                      process_response=process_response)
            self.addr = "127.0.0.1:%d" % self.server.sockets[0].getsockname()[1]
            ready.set()
            await self.server.serve_forever()

        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(main(),),
                                       daemon=True)
        self.thread.start()
        assert ready.wait(10), "origin did not start"

    def stop(self):
        self.loop.call_soon_threadsafe(self.server.close)
        self.thread.join(10)
        if not self.thread.is_alive():
            self.loop.close()


@pytest.fixture
def ws_origin(start_gripway):
    """Starts a WsOrigin and gripway with a pass-through route to it: (origin, gripway)."""
    started = []

    def start(handler, **kw):
        started.append(WsOrigin(handler, **kw))
        return started[-1], start_gripway("--route", f"* {started[-1].addr}")

    yield start
    for o in started:
        o.stop()


async def echo(ws):
    async for msg in ws:
        if msg == "close me":
            await ws.close(4003, "origin says bye")
        else:
            await ws.send(msg)


@bounded
async def test_passthrough_relays_both_ways(ws_origin):
    async def handler(ws):
        await ws.send('c:{"type":"subscribe","channel":"room"}')  # no grip: just text
        await echo(ws)

    origin, gw = ws_origin(handler)
    async with ws_connect(gw, "/chat?x=1") as ws:
        assert await recv(ws) == 'c:{"type":"subscribe","channel":"room"}'
        for msg in ("hello", b"\x00\xff", "m:verbatim", b""):
            await ws.send(msg)
            assert await recv(ws) == msg
    assert gw.metric("gripway_subscriptions") == 0
    h = origin.handshakes[0]
    assert h[":path"] == "/chat?x=1" and validate_sig(h["grip-sig"], SIG_KEY)
    assert h["sec-websocket-extensions"] == "grip"  # the client's own offer is replaced


@bounded
async def test_passthrough_with_grip_extension(ws_origin):
    async def handler(ws):
        await ws.send('c:' + websocket_control_message("subscribe", {"channel": "room"}))
        await ws.send("unprefixed: dropped")
        await ws.send("m:welcome")
        async for msg in ws:
            await ws.send("nope")
            await ws.send(("m:echo " + msg) if isinstance(msg, str) else b"m:" + msg)

    origin, gw = ws_origin(handler, grip="grip")
    async with ws_connect(gw) as ws:
        assert "sec-websocket-extensions" not in {k.lower() for k in ws.response.headers}
        assert await recv(ws) == "welcome"
        await ws.send("hi")
        assert await recv(ws) == "echo hi"
        await ws.send(b"\x01\x02")
        assert await recv(ws) == b"\x01\x02"
        await wait_subscriptions(gw, 1)
        await publish(gw, "room", "published")
        assert await recv(ws) == "published"
        await assert_silent(ws)


@bounded
async def test_passthrough_origin_close_code_reaches_client(ws_origin):
    origin, gw = ws_origin(echo)
    async with ws_connect(gw) as ws:
        await ws.send("close me")
        with pytest.raises(ConnectionClosed):
            await recv(ws)
        assert (ws.close_code, ws.close_reason) == (4003, "origin says bye")


@bounded
async def test_passthrough_client_close_code_reaches_origin(ws_origin):
    origin, gw = ws_origin(echo)
    async with ws_connect(gw) as ws:
        await ws.send("hi")
        assert await recv(ws) == "hi"
        await ws.close(4004, "client says bye")
    await wait_until(lambda: origin.closes, what="the origin's connection to end")
    assert origin.closes == [4004]


@bounded
async def test_passthrough_fragmented_control_message_is_acted_on(ws_origin):
    """An intended difference: Pushpin ignores a `c:` message that comes in several frames
    (§3.2); Gripway relays messages, not frames (RFC 6455 §5.4 lets intermediaries refragment),
    so a control message counts whatever its framing."""
    async def handler(ws):
        await ws.send(['c:{"type":"subscribe",', '"channel":"room"}'])  # two frames
        await ws.send("m:after")
        await ws.wait_closed()

    origin, gw = ws_origin(handler, grip="grip")
    async with ws_connect(gw) as ws:
        assert await recv(ws) == "after"
        assert gw.wait_metric("gripway_subscriptions", 1.0)


@bounded
async def test_passthrough_origin_refusal_reaches_client(ws_origin):
    origin, gw = ws_origin(echo, refuse=(403, "not you\n"))
    response = await handshake_refused(gw)
    assert (response.status_code, response.body) == (403, b"not you\n")


# --- 9. the demo origin ---

@bounded
async def test_demo_websocket_echoes_and_receives_publishes(start_gripway):
    gw = start_gripway()
    async with ws_connect(gw, "/test/websocket") as ws:
        await ws.send("hello demo")
        assert await recv(ws) == "hello demo"
        await wait_subscriptions(gw, 1)
        await publish(gw, "test", "published to test")
        assert await recv(ws) == "published to test"
