"""Client-side HTTP/1.1, WebSocket and MQTT helpers for the soak test (the MQTT ones also for
tests/hostile), and the WebSocket-over-HTTP event codec its origin speaks. Everything connects
to 127.0.0.1 only."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct

LOOPBACK = "127.0.0.1"



class Closed(Exception):
    pass


async def read_head(reader: asyncio.StreamReader) -> tuple[int, dict]:
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError) as e:
        raise Closed(str(e)) from None
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise Closed(f"bad status line {lines[0]!r}")
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return int(parts[1]), headers


async def body_chunks(reader: asyncio.StreamReader, headers: dict):
    """Yields the body's bytes as they come (chunked, Content-Length or to EOF)."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            line = await reader.readline()
            if not line:
                raise Closed("eof in chunked body")
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                await reader.readline()
                return
            data = await reader.readexactly(size + 2)
            yield data[:-2]
    elif "content-length" in headers:
        left = int(headers["content-length"])
        while left > 0:
            data = await reader.read(min(left, 65536))
            if not data:
                raise Closed("eof in body")
            left -= len(data)
            yield data
    else:
        while True:
            data = await reader.read(65536)
            if not data:
                return
            yield data


async def read_body(reader: asyncio.StreamReader, headers: dict) -> bytes:
    out = bytearray()
    async for data in body_chunks(reader, headers):
        out += data
    return bytes(out)


def ws_frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


async def ws_read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    try:
        b0, b1 = await reader.readexactly(2)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", await reader.readexactly(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", await reader.readexactly(8))
        if b1 & 0x80:
            await reader.readexactly(4)  # a server never masks; tolerate it anyway
        return b0 & 0x0F, await reader.readexactly(n)
    except asyncio.IncompleteReadError:
        raise Closed("eof in frame") from None


def ws_handshake(path: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: soak\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


async def open_conn(port: int, rcvbuf: int = 0):
    if not rcvbuf:
        return await asyncio.open_connection(LOOPBACK, port, limit=1 << 20)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, (LOOPBACK, port))
    except BaseException:
        sock.close()
        raise
    return await asyncio.open_connection(sock=sock, limit=1 << 16)


def close_writer(writer) -> None:
    try:
        writer.transport.abort()
    except Exception:
        pass


def woh_event(kind: str, content: bytes) -> bytes:
    if not content:
        return kind.encode() + b"\r\n"
    return f"{kind} {len(content):x}\r\n".encode() + content + b"\r\n"


def parse_events(body: bytes) -> list:
    out, i = [], 0
    while i < len(body):
        j = body.find(b"\r\n", i)
        if j < 0:
            break
        line = body[i:j].decode("latin-1")
        i = j + 2
        kind, _, hexlen = line.partition(" ")
        content = b""
        if hexlen:
            n = int(hexlen, 16)
            content = body[i : i + n]
            i += n + 2
        out.append((kind, content))
    return out


def mqtt_packet(first: int, body: bytes) -> bytes:
    """An MQTT packet: its first byte, the remaining length, the body."""
    out = bytearray([first])
    n = len(body)
    while True:
        b, n = n % 128, n // 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out) + body


async def mqtt_read(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One MQTT packet: its first byte and its body (a length of at most four bytes)."""
    first = (await reader.readexactly(1))[0]
    n, shift = 0, 0
    for _ in range(4):
        b = (await reader.readexactly(1))[0]
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    return first, await reader.readexactly(n)
