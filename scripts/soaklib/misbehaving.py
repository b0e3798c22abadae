"""Clients that misbehave, mixed into the soak: slow readers (must be cut off by the server)
and hostile clients (must be refused). A mixin of the soak's `Soak` class, which provides
`args`, `rng`, `stats`, `port`, `channels`, `normal`, `load_over` and `spawn`."""

from __future__ import annotations

import asyncio
import os
import struct
import time

from .wire import Closed, close_writer, open_conn, read_head, ws_handshake, ws_read_frame


def now() -> float:
    return time.monotonic()


class Misbehaving:
    # ---- slow readers -------------------------------------------------------------------

    async def slow_slot(self, slot: int) -> None:
        kinds = ("sse", "stream", "ws")
        while not self.load_over.is_set():
            t0 = now()
            await self.slow_reader(kinds[slot % len(kinds)])
            if now() - t0 < 1.0:
                await asyncio.sleep(1.0)

    async def slow_reader(self, transport: str) -> None:
        """Reads up to `ready`, then stops reading for --slow-stall s: the server must cut it
        off (its queue is bounded). Then reads what is buffered: EOF or reset = cut off."""
        st = self.stats
        st.inc("slow_started")
        ch = self.channels["bulk"]
        writer = None
        st.open_conns += 1
        try:
            reader, writer = await asyncio.wait_for(open_conn(self.port, rcvbuf=4096), 10)
            if transport == "ws":
                writer.write(ws_handshake(f"/ws/{ch.name}"))
            else:
                writer.write(f"GET /{transport}/{ch.name} HTTP/1.1\r\nHost: soak\r\n\r\n".encode())
            status, _ = await asyncio.wait_for(read_head(reader), 15)
            if status not in (200, 101):
                raise Closed(f"status {status}")
            # stop reading: paused once asyncio's buffer holds 2 x 64 KiB
            stall_end = now() + self.args.slow_stall
            while now() < stall_end and not self.load_over.is_set():
                await asyncio.sleep(min(1.0, max(0.0, stall_end - now())))
            if self.load_over.is_set():
                return  # ended by the run, not judged
            # now read fast: a cut-off connection ends within what was buffered
            cap = self.args.slow_cap
            got = 0
            deadline = now() + 30
            while got < cap and now() < deadline:
                try:
                    data = await asyncio.wait_for(reader.read(1 << 16), max(0.1, deadline - now()))
                except (ConnectionError, OSError):
                    data = b""
                if not data:
                    st.inc("slow_cut_off")
                    return
                got += len(data)
            st.inc("slow_not_cut_off")
        except (OSError, asyncio.TimeoutError, Closed, asyncio.IncompleteReadError):
            st.inc("slow_failed")
        finally:
            st.open_conns -= 1
            if writer is not None:
                close_writer(writer)

    # ---- hostile clients ----------------------------------------------------------------

    async def hostile_loop(self) -> None:
        if self.args.hostile_rate <= 0:
            return
        kinds = [self.h_malformed, self.h_oversized_head, self.h_slowloris, self.h_forged_woh, self.h_big_frame]
        while not self.load_over.is_set():
            try:
                await asyncio.wait_for(self.load_over.wait(), self.rng.expovariate(self.args.hostile_rate))
                return
            except asyncio.TimeoutError:
                pass
            self.spawn(self.hostile(self.rng.choice(kinds)))

    async def hostile(self, fn) -> None:
        st = self.stats
        st.inc("hostile_started")
        name = fn.__name__[2:]
        k = st.hostile_kinds.setdefault(name, {"refused": 0, "unexpected": 0})
        writer = None
        st.open_conns += 1
        try:
            reader, writer = await asyncio.wait_for(open_conn(self.port), 10)
            ok, seen = await asyncio.wait_for(fn(reader, writer), 60)
        except (OSError, asyncio.TimeoutError, Closed, asyncio.IncompleteReadError) as e:
            ok, seen = False, repr(e)[:100]
        finally:
            st.open_conns -= 1
            if writer is not None:
                close_writer(writer)
        if ok:
            st.inc("hostile_refused")
            k["refused"] += 1
            answers = k.setdefault("answers", [])
            if len(answers) < 3:
                answers.append(seen)
        else:
            st.inc("hostile_unexpected")
            k["unexpected"] += 1
            examples = k.setdefault("examples", [])
            if len(examples) < 5:
                examples.append(seen)

    async def _status_or_eof(self, reader, expect: tuple, sent: bytes) -> tuple:
        try:
            status, _ = await asyncio.wait_for(read_head(reader), 15)
        except (Closed, ConnectionError):
            return True, "closed"  # closed without an answer: refused
        return status in expect, f"{status} for {sent[:80]!r}"

    async def h_malformed(self, reader, writer) -> bool:
        ch = self.rng.choice(self.normal).name
        heads = [
            f"GET /sse/{ch} HTTP/1.1\r\nHost: soak\r\nNo colon here\r\n\r\n",
            f"GET /sse/{ch} HTTP/1.1\nHost: soak\n\n",
            f"GET /sse/{ch} HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            f"GET /sse/{ch} HTTP/1.1\r\nHost: soak\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
            "\x00\x01\x02garbage\r\n\r\n",
            f"GET /sse/{ch} HTTP/9.9\r\nHost: soak\r\n\r\n",
        ]
        head = self.rng.choice(heads).encode("latin-1")
        writer.write(head)
        return await self._status_or_eof(reader, (400, 411, 413, 431, 501, 505), head)

    async def h_oversized_head(self, reader, writer) -> bool:
        ch = self.rng.choice(self.normal).name
        head = f"GET /sse/{ch} HTTP/1.1\r\nHost: soak\r\nX-Big: {'a' * 200_000}\r\n\r\n".encode()
        writer.write(head)
        try:
            await writer.drain()
        except ConnectionError:
            return True, "reset"
        return await self._status_or_eof(reader, (400, 413, 431), head)

    async def h_slowloris(self, reader, writer) -> bool:
        """Drips a head one byte a second; the server must give up within its head timeout."""
        limit = self.args.head_timeout + 15
        t0 = now()
        writer.write(b"GET /sse/c0 HTTP/1.1\r\nHost: soak\r\n")
        while now() - t0 < limit:
            try:
                data = await asyncio.wait_for(reader.read(1024), 1.0)
                return True, f"after {now() - t0:.0f}s: {data[:40]!r}"  # an answer (408) or EOF
            except asyncio.TimeoutError:
                pass
            except ConnectionError:
                return True, "reset"
            writer.write(b"X")
        return False, f"still open after {limit:.0f}s"

    async def h_forged_woh(self, reader, writer) -> bool:
        ch = self.rng.choice(self.normal).name
        body = b"TEXT 6\r\nforged\r\n"
        req = (
            f"POST /ws/{ch} HTTP/1.1\r\nHost: soak\r\nContent-Type: text/plain\r\n"
            f"Content-Type: application/websocket-events\r\nConnection-Id: victim\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        writer.write(req)
        return await self._status_or_eof(reader, (403,), req)

    async def h_big_frame(self, reader, writer) -> bool:
        ch = self.rng.choice(self.normal).name
        writer.write(ws_handshake(f"/ws/{ch}"))
        status, _ = await asyncio.wait_for(read_head(reader), 15)
        if status != 101:
            return False, f"handshake answered {status}"
        # a frame header announcing 1 GiB, then a little of it
        writer.write(struct.pack("!BBQ", 0x82, 0x80 | 127, 1 << 30) + os.urandom(4) + b"x" * 1024)
        deadline = now() + 15
        while now() < deadline:
            try:
                op, payload = await asyncio.wait_for(ws_read_frame(reader), max(0.1, deadline - now()))
            except (Closed, ConnectionError):
                return True, "closed"
            if op == 8:
                return True, f"close {payload[:2].hex()}"
        return False, "still open after 15s"
