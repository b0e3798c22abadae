"""permessage-deflate (RFC 7692) between Python's `websockets` client and gripway: negotiated
only when enabled in the config, always with no context takeover (so an idle connection keeps
no compression state), and messages compressed both ways arrive intact — echoed ones through
the demo origin and published ones, which gripway compresses once for all subscribers."""

import asyncio
import functools
import json
import urllib.request

from websockets.asyncio.client import connect
from websockets.extensions.permessage_deflate import PerMessageDeflate


def bounded(test):
    @functools.wraps(test)
    def run(*args, **kw):
        return asyncio.run(asyncio.wait_for(test(*args, **kw), 30))
    return run


def publish(gw, content):
    body = json.dumps({"items": [{"channel": "test", "formats": {"ws-message": {"content": content}}}]})
    req = urllib.request.Request(f"http://{gw.publish_addr}/publish/", data=body.encode())
    assert urllib.request.urlopen(req, timeout=5).status == 200


async def subscribed(gw):
    assert await asyncio.to_thread(gw.wait_metric, "gripway_subscriptions", 1.0), gw.log


@bounded
async def test_deflate_negotiated_and_messages_round_trip(start_gripway, tmp_config):
    gw = start_gripway("--config", tmp_config("[websocket]\npermessage_deflate = true\n"))
    async with connect(f"ws://{gw.addr}/test/websocket", compression="deflate", open_timeout=5) as ws:
        header = ws.response.headers["Sec-WebSocket-Extensions"]
        assert header.startswith("permessage-deflate")
        assert "server_no_context_takeover" in header and "client_no_context_takeover" in header
        assert [type(e) for e in ws.protocol.extensions] == [PerMessageDeflate]
        for text in ["short", "compress me " * 500, "ünïcödé " * 100]:
            await ws.send(text)
            assert await asyncio.wait_for(ws.recv(), 5) == text
        await ws.send(b"\x00\x01binary" * 300)
        assert await asyncio.wait_for(ws.recv(), 5) == b"\x00\x01binary" * 300
        await subscribed(gw)
        for content in ["published " * 100, "tiny"]:
            await asyncio.to_thread(publish, gw, content)
            assert await asyncio.wait_for(ws.recv(), 5) == content


@bounded
async def test_deflate_is_off_unless_enabled(start_gripway):
    gw = start_gripway()
    async with connect(f"ws://{gw.addr}/test/websocket", compression="deflate", open_timeout=5) as ws:
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
        assert ws.protocol.extensions == []
        await ws.send("plain " * 100)
        assert await asyncio.wait_for(ws.recv(), 5) == "plain " * 100
