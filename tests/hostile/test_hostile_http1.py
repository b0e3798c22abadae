"""Hostile HTTP/1 clients: malformed heads and bodies, oversized heads, slowloris.

Documented answers: a head over max_request_head (32 KiB) is 431, however it arrives; a bare
LF as a line end is 400; Transfer-Encoding on HTTP/1.0 is 400; Content-Length together with
Transfer-Encoding is 400; bad chunk sizes are 400, a chunk over max_request_body is 413; a
truncated body never reaches the origin; a head or body still incomplete at the head timeout
gets 408 or is closed, however slowly it drips; a head dripped one byte at a time is still
served and costs no more CPU than the same bytes spread over short heads (no re-parse from the
start after every read); a declared Content-Length reserves no memory before its bytes come."""

import asyncio
import errno
import select
import socket
import time

from harness import HEAD_TIMEOUT_S, cpu_seconds, data_mb, exchange, run, status_of

MAX_HEAD = 32 * 1024  # the default max_request_head


def head_of_size(size, path="/echo", version=b"HTTP/1.1"):
    """A complete GET head of exactly `size` bytes (few, long headers)."""
    start = b"GET " + path.encode() + b" " + version + b"\r\nHost: x\r\n"
    end = b"\r\n"
    room = size - len(start) - len(end)
    lines = []
    i = 0
    while room > 0:
        prefix = b"X-Pad-%03d: " % i
        take = min(1500, room - len(prefix) - 2)
        if take < 1:  # too little left for another header: lengthen the last one
            last = lines.pop()
            lines.append(last[:-2] + b"a" * room + b"\r\n")
            break
        line = prefix + b"a" * take + b"\r\n"
        lines.append(line)
        room -= len(line)
        i += 1
    out = start + b"".join(lines) + end
    assert len(out) == size, (len(out), size)
    return out


def chunked_post(body_part, version=b"HTTP/1.1", extra=b""):
    return (b"POST /echo " + version + b"\r\nHost: x\r\nTransfer-Encoding: chunked\r\n" + extra
            + b"\r\n" + body_part)


# ---------------------------------------------------------------------------------------------
# Malformed heads


def test_oversized_head_in_pieces_is_431(env):
    before = env.errors("client", "request-head-too-large")
    head = head_of_size(MAX_HEAD + 4096)
    pieces = [head[i:i + 4096] for i in range(0, len(head), 4096)]
    resp = run(exchange(env.gw.addr, pieces, drip=0.01))
    assert status_of(resp) == 431, resp[:200]
    assert env.wait_errors("client", "request-head-too-large", before + 1) >= before + 1


def test_oversized_head_in_one_write_is_431(env):
    # a head that completes within one read may not be up to twice the limit
    for size in [MAX_HEAD + 1024, MAX_HEAD * 3 // 2, MAX_HEAD * 2 - 100]:
        resp = run(exchange(env.gw.addr, head_of_size(size)))
        assert status_of(resp) == 431, (size, resp[:200])


def test_head_at_the_limit_is_served(env):
    resp = run(exchange(env.gw.addr, head_of_size(MAX_HEAD - 512)))
    assert status_of(resp) == 200, resp[:200]


def test_too_many_headers_is_refused(env):
    head = b"GET /echo HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(200)) + b"\r\n"
    resp = run(exchange(env.gw.addr, head))
    assert status_of(resp) in (400, 431), resp[:200]


def test_bare_lf_head_is_400(env):
    seen = len(env.origin.requests)
    for req in [b"GET /echo HTTP/1.1\nHost: x\n\n",
                b"GET /echo HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n",
                b"GET /echo HTTP/1.1\r\nHost: x\r\n\n"]:
        resp = run(exchange(env.gw.addr, req))
        assert status_of(resp) == 400, (req, resp[:200])
    assert len(env.origin.requests) == seen, "a bare-LF request reached the origin"


def test_transfer_encoding_on_http10_is_400(env):
    seen = len(env.origin.requests)
    resp = run(exchange(env.gw.addr, chunked_post(b"5\r\nhello\r\n0\r\n\r\n", version=b"HTTP/1.0")))
    assert status_of(resp) == 400, resp[:200]
    assert len(env.origin.requests) == seen


def test_content_length_with_transfer_encoding_is_400(env):
    seen = len(env.origin.requests)
    for extra in [b"Content-Length: 5\r\n", b"Content-Length: 0\r\n"]:
        resp = run(exchange(env.gw.addr, chunked_post(b"5\r\nhello\r\n0\r\n\r\n", extra=extra)))
        assert status_of(resp) == 400, (extra, resp[:200])
    assert len(env.origin.requests) == seen


# ---------------------------------------------------------------------------------------------
# Malformed bodies


def test_bad_chunk_sizes_are_400(env):
    seen = len(env.origin.requests)
    for body in [b"zz\r\nhello\r\n0\r\n\r\n",
                 b"-5\r\nhello\r\n0\r\n\r\n",
                 b"0x5\r\nhello\r\n0\r\n\r\n",
                 b"fffffffffffffffffffffffff\r\nhello\r\n0\r\n\r\n",  # overflows 64 bits
                 b"5\r\nhelloXX0\r\n\r\n",  # data not followed by CRLF
                 b"\r\nhello\r\n0\r\n\r\n"]:  # empty size
        resp = run(exchange(env.gw.addr, chunked_post(body)))
        assert status_of(resp) == 400, (body, resp[:200])
    assert len(env.origin.requests) == seen, "a badly chunked body reached the origin"


def test_chunk_over_the_body_limit_is_413(env):
    resp = run(exchange(env.gw.addr, chunked_post(b"200000\r\n" + b"a" * 1000)))
    assert status_of(resp) == 413, resp[:200]


def test_truncated_chunked_bodies_never_reach_the_origin(env):
    seen = len(env.origin.requests)

    async def truncated(part, stall):
        host, port = env.gw.addr.rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(chunked_post(part))
        await writer.drain()
        t0 = time.monotonic()
        if not stall:
            writer.write_eof()  # the client goes away mid-body
        try:
            out = await asyncio.wait_for(reader.read(), HEAD_TIMEOUT_S + 5)
        except (asyncio.TimeoutError, ConnectionError):
            out = None
        writer.close()
        return out, time.monotonic() - t0

    async def all_cases():
        parts = [b"5\r\nhel", b"5\r\nhello\r\n", b"5\r\nhello\r\n0\r\n", b"a", b"5\r\nhello"]
        return await asyncio.gather(*[truncated(p, stall) for p in parts for stall in (False, True)])

    for out, took in run(all_cases()):
        assert out is not None, "a truncated body held the connection open past the timeout"
        assert status_of(out) in (None, 400, 408), out[:200]
        assert took <= HEAD_TIMEOUT_S + 3, took
    assert len(env.origin.requests) == seen, "a truncated body reached the origin"


def test_declared_content_length_reserves_no_memory(env):
    """300 clients each announce a 1 MiB body and send one byte: nothing is reserved for the
    bytes that have not come (VmData counts a reservation even before it is touched)."""
    base = data_mb(env.pid)
    head = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\na"
    host, port = env.gw.addr.rsplit(":", 1)
    socks = []
    try:
        for _ in range(300):
            s = socket.create_connection((host, int(port)), timeout=5)
            s.sendall(head)
            socks.append(s)
        time.sleep(0.5)
        grown = data_mb(env.pid) - base
    finally:
        for s in socks:
            s.close()
    assert grown < 64, f"memory reserved grew {grown:.0f} MB for 300 announced bodies"


def test_pipelined_request_behind_a_hold_is_served(env):
    """Bytes pipelined behind a request that becomes a long-poll are kept, and served once
    the hold ends."""
    async def case():
        host, port = env.gw.addr.rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GET /poll/pipelined HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"GET /echo?second HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        subscribed = False
        for _ in range(100):
            if (env.gw.metric("gripway_subscriptions") or 0) >= 2:  # the canary and us
                subscribed = True
                break
            await asyncio.sleep(0.05)
        assert subscribed, "the long-poll never subscribed"
        status, text = await asyncio.to_thread(env.publish, (
            '{"items":[{"channel":"pipelined","formats":{"http-response":{"body":"first\\n"}}}]}'))
        assert status == 200, text
        out = b""
        deadline = time.monotonic() + 5
        while out.count(b"HTTP/1.1 ") < 2 and time.monotonic() < deadline:
            try:
                chunk = await asyncio.wait_for(reader.read(65536), deadline - time.monotonic())
            except asyncio.TimeoutError:
                break
            if not chunk:
                break
            out += chunk
        writer.close()
        return out

    out = run(case())
    assert b"first\n" in out, out[:300]
    assert out.count(b"HTTP/1.1 200") == 2, f"the pipelined request was dropped: {out[:400]!r}"


# ---------------------------------------------------------------------------------------------
# Slow clients


def slowloris(addr, n_heads, n_bodies, drip_every=0.5, slack=5.0):
    """Opens n_heads + n_bodies connections that drip one byte each every `drip_every`
    seconds (heads that never end, then bodies that never end) until the server answers or
    closes. Returns [(kind, status or None, seconds from connect to close or None, seconds
    from connect to the first bytes sent or None)]."""
    host, port = addr.rsplit(":", 1)
    port = int(port)
    head_start = b"GET /slow HTTP/1.1\r\nHost: x\r\n"
    body_start = b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
    ep = select.epoll()
    conns = {}  # fd -> dict
    done = []

    def finish(fd, status=None):
        c = conns.pop(fd)
        try:
            ep.unregister(fd)
        except OSError:
            pass
        c["sock"].close()
        t = time.monotonic() - c["opened"] if c["opened"] else None
        first = c["opened"] - c["connecting"] if c["opened"] else None
        done.append((c["kind"], status if status is not None else c["status"], t, first))

    def pump(timeout):
        for fd, ev in ep.poll(timeout, 4096):
            c = conns.get(fd)
            if c is None:
                continue
            if c["opened"] is None and ev & select.EPOLLOUT:
                err = c["sock"].getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    finish(fd)
                    continue
                c["opened"] = time.monotonic()
                ep.modify(fd, select.EPOLLIN | select.EPOLLRDHUP)
                try:
                    c["sock"].send(head_start if c["kind"] == "head" else body_start)
                except OSError:
                    finish(fd)
                continue
            if ev & select.EPOLLIN:
                try:
                    data = c["sock"].recv(4096)
                except OSError:
                    data = b""
                if data and c["status"] is None:
                    c["status"] = status_of(data) or -1
                if data:
                    continue
                finish(fd)
            elif ev & (select.EPOLLHUP | select.EPOLLERR | select.EPOLLRDHUP):
                finish(fd)

    kinds = ["head"] * n_heads + ["body"] * n_bodies
    batch = 250
    for i in range(0, len(kinds), batch):
        for kind in kinds[i:i + batch]:
            s = socket.socket()
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            rc = s.connect_ex((host, port))
            if rc not in (0, errno.EINPROGRESS):
                s.close()
                done.append((kind, None, None, None))
                continue
            conns[s.fileno()] = {"sock": s, "kind": kind, "opened": None, "status": None,
                                 "connecting": time.monotonic()}
            ep.register(s.fileno(), select.EPOLLOUT)
        pump(0.02)
    last_drip = time.monotonic()
    end = time.monotonic() + HEAD_TIMEOUT_S + slack + 2
    while conns and time.monotonic() < end:
        pump(0.05)
        now = time.monotonic()
        if now - last_drip >= drip_every:
            last_drip = now
            for fd, c in list(conns.items()):
                if c["opened"] is None:
                    continue
                try:
                    c["sock"].send(b"X" if c["kind"] == "head" else b"a")
                except BlockingIOError:
                    pass
                except OSError:
                    finish(fd)
    for fd in list(conns):
        c = conns[fd]
        c["opened"] = None  # never closed: no time
        finish(fd)
    ep.close()
    return done


def test_slowloris_heads_and_bodies(env):
    n_heads = n_bodies = 5000
    before = env.errors("client", "request-head-timeout")
    t0 = time.monotonic()
    results = slowloris(env.gw.addr, n_heads, n_bodies)
    took = time.monotonic() - t0
    slack = 5.0
    bad = [(k, s, t) for k, s, t, _ in results
           if t is None or t > HEAD_TIMEOUT_S + slack or s not in (None, 408)]
    summary = {}
    for k, s, t in bad:
        key = (k, s, "never closed" if t is None else "late")
        summary[key] = summary.get(key, 0) + 1
    assert len(results) == n_heads + n_bodies
    assert not bad, f"{len(bad)} slow connections not refused in time ({took:.1f}s): {summary}"
    # a connection whose first bytes went out after its time ran out held none: the server
    # closed it silently (an idle connection). On a loaded machine this client's own loop
    # can be that late for some; every head whose bytes went out a second before its
    # timeout must be answered 408, and most must have been that prompt
    prompt = [s for k, s, _, first in results
              if k == "head" and first is not None and first < HEAD_TIMEOUT_S - 1.0]
    unanswered = sum(1 for s in prompt if s != 408)
    assert len(prompt) >= n_heads * 0.5, f"only {len(prompt)} of {n_heads} heads started in time"
    # (a listen backlog too short for 10,000 connects at once failed this: handshakes the
    # kernel dropped were reset long before the head timeout, with no answer)
    assert unanswered == 0, f"{unanswered} of {len(prompt)} prompt heads got no 408"
    answered = sum(1 for k, s, _, _ in results if k == "head" and s == 408)
    got = env.wait_errors("client", "request-head-timeout", before + answered)
    assert got >= before + answered, f"head timeouts counted: {got - before} of {answered} answered"
    env.canary.check("10,000 slowloris connections")


def test_one_byte_drip_costs_no_more_than_short_heads(env):
    """Each of 50 connections has 24 KB of head buffered and gets one byte per round; the same
    drip onto a 40-byte prefix is the baseline. Re-parsing the head from its start after every
    read makes the first cost ~600x more bytes parsed; it must stay within 2x (+0.5 s)."""
    host, port = env.gw.addr.rsplit(":", 1)

    def trial(pad_headers, conns=50, rounds=60, period=0.005):
        pre = (b"GET /echo HTTP/1.1\r\nHost: x\r\n"
               + b"".join(b"X-Pad-%02d: %s\r\n" % (i, b"a" * 1200) for i in range(pad_headers))
               + b"X-Drip: ")
        socks = []
        for _ in range(conns):
            s = socket.create_connection((host, int(port)), timeout=5)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(pre)
            socks.append(s)
        time.sleep(0.1)
        c0 = cpu_seconds(env.pid)
        nxt = time.monotonic()
        for _ in range(rounds):
            for s in socks:
                s.send(b"d")
            nxt += period
            time.sleep(max(0.0, nxt - time.monotonic()))
        cpu = cpu_seconds(env.pid) - c0
        for s in socks:
            s.sendall(b"\r\n\r\n")
        served = 0
        for s in socks:
            try:
                served += s.recv(64).startswith(b"HTTP/1.1 200")
            except OSError:
                pass
            s.close()
        return cpu, served

    small_cpu, small_served = trial(0)
    big_cpu, big_served = trial(20)
    assert (small_served, big_served) == (50, 50), "dripped heads were not served"
    assert big_cpu <= 2 * small_cpu + 0.5, f"drip CPU {big_cpu:.2f}s vs baseline {small_cpu:.2f}s"


def test_canary_survived(env):
    env.canary.check("the HTTP/1 cases")
