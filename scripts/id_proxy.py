#!/usr/bin/env python3
"""A publish proxy that gives every published item an id, for measuring what history costs.

The independent load tool (fanbench) publishes items without ids, and Gripway keeps only items
that have one. Put this in front of the publish API to make every item kept:

    scripts/id_proxy.py --listen 127.0.0.1:19562 --to 127.0.0.1:19561

It reads each `POST` body, sets `"id": "<n>"` (a counter) on every item that has none, and
forwards the request over one kept-alive connection per client connection, returning the
answer as it came. It is a measuring aid, not part of Gripway.
"""
import argparse
import asyncio
import itertools
import json

counter = itertools.count(1)


async def read_request(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = 0
    for line in lines[1:]:
        if line.lower().startswith("content-length:"):
            length = int(line.split(":", 1)[1])
    body = await reader.readexactly(length) if length else b""
    return lines, body


async def read_response(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.decode("latin-1").split("\r\n")[1:]:
        if line.lower().startswith("content-length:"):
            length = int(line.split(":", 1)[1])
    body = await reader.readexactly(length) if length else b""
    return head + body


def with_ids(body):
    try:
        doc = json.loads(body)
    except ValueError:
        return body
    for item in doc.get("items", []):
        if isinstance(item, dict) and "id" not in item:
            item["id"] = str(next(counter))
    return json.dumps(doc, separators=(",", ":")).encode()


async def serve(reader, writer, to_host, to_port):
    up_r, up_w = await asyncio.open_connection(to_host, to_port)
    try:
        while True:
            try:
                lines, body = await read_request(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            if lines[0].startswith("POST"):
                body = with_ids(body)
            headers = [l for l in lines[1:] if l and not l.lower().startswith("content-length:")]
            req = "\r\n".join([lines[0], *headers, f"Content-Length: {len(body)}", "", ""])
            up_w.write(req.encode("latin-1") + body)
            await up_w.drain()
            writer.write(await read_response(up_r))
            await writer.drain()
    finally:
        up_w.close()
        writer.close()


async def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", required=True)
    ap.add_argument("--to", required=True)
    a = ap.parse_args()
    lh, lp = a.listen.rsplit(":", 1)
    th, tp = a.to.rsplit(":", 1)
    server = await asyncio.start_server(lambda r, w: serve(r, w, th, int(tp)), lh, int(lp))
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
