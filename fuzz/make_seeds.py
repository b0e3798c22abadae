#!/usr/bin/env python3
"""Writes the committed seed corpus, fuzz/seeds/<target>/, from examples in the unit tests.

Run from anywhere: python3 fuzz/make_seeds.py. Needs `openssl` for the signed JWT seeds.
The binary seed formats are described at the top of each fuzz target.
"""
import base64, hashlib, hmac, json, os, struct, subprocess, zlib

HERE = os.path.dirname(os.path.abspath(__file__))
KEYS = os.path.join(HERE, "..", "crates", "proto", "tests", "keys")
SEEDS = os.path.join(HERE, "seeds")


def write(target, name, data):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# --- http1_head -----------------------------------------------------------------------
write("http1_head", "get", "GET /stream?x=1 HTTP/1.1\r\nHost: example.com\r\nAccept: text/event-stream\r\n\r\n")
write("http1_head", "post-length", "POST /publish/ HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"items\":[]}")
write("http1_head", "post-chunked", "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
write("http1_head", "ws-upgrade", "GET /ws HTTP/1.1\r\nHost: a:8000\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n")
write("http1_head", "absolute-10", "GET http://example.com/a/b?c HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
write("http1_head", "smuggle", "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n")
write("http1_head", "cl-list", "POST / HTTP/1.1\r\nContent-Length: 3, 3\r\nContent-Length: 3\r\n\r\nabc")

# --- chunked: limit (2 bytes BE), n, n read sizes, body ---------------------------------
def chunked(body, sizes=b"", limit=0xFFFF):
    return struct.pack(">HB", limit, len(sizes)) + sizes + body

write("chunked", "simple", chunked(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", b"\x03\x01"))
write("chunked", "ext-trailers", chunked(b"a;name=val\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\nGET / HTTP/1.1\r\n", b"\x07"))
write("chunked", "too-large", chunked(b"ffff\r\n" + b"x" * 40, b"", 16))
write("chunked", "upper-hex", chunked(b"A\r\n0123456789\r\n00\r\n\r\n", b"\x01"))
write("chunked", "missing-crlf", chunked(b"3\r\nabcX\r\n0\r\n\r\n"))

# --- instruct: header lines, blank line, body ------------------------------------------
write("instruct", "stream-headers", "grip-hold: stream\ngrip-channel: fruit; prev-id=3; filter=skip-self, veg\ngrip-keep-alive: \\n; format=cstring; timeout=20; mode=interval\ngrip-link: </next>; rel=next; timeout=30\ngrip-set-meta: user=alice\n\n")
write("instruct", "response-headers", "grip-hold: response\ngrip-channel: \"a,b\"; prev-id=; filter=; filter=x\ngrip-timeout: 30\ngrip-status: 404 Not Here\ngrip-expose-headers: X-A, x-b\n\n{\"not\":\"instructions\"}")
write("instruct", "keep-alive-base64", "grip-hold: stream\ngrip-channel: c\ngrip-keep-alive: OgoK; format=base64; timeout=5\n\n")
write("instruct", "json", "content-type: application/grip-instruct\n\n" + json.dumps({
    "hold": {"mode": "response", "channels": [{"name": "fruit", "prev-id": "3", "filters": ["skip-self"]}],
             "timeout": 30, "keep-alive": {"content": "\n", "timeout": 20}, "meta": {"user": "alice"}},
    "response": {"code": 200, "reason": "OK", "headers": {"Content-Type": "text/plain"}, "body": "hello\n"}}))
write("instruct", "json-stream-bin", "content-type: application/grip-instruct; charset=utf-8\ngrip-hold: stream\n\n" + json.dumps({
    "hold": {"mode": "stream", "channels": [{"name": "a,b;c"}, {"name": "x", "filters": []}],
             "keep-alive": {"content-bin": "OgoK", "timeout": 20, "mode": "idle"}},
    "response": {"headers": [["X-A", "1"]], "body-bin": "aGVsbG8K"}}))
write("instruct", "json-404", ":status: 404\ncontent-type: application/grip-instruct\n\n{\"hold\":{\"channels\":[]}}")
write("instruct", "cstring", "grip-hold: stream\ngrip-channel: c\ngrip-keep-alive: \"a\\x41\\r\\n\\\\\"; format=cstring\n\na\\x41\\r\\n\\\\\\q")

# --- publish ---------------------------------------------------------------------------
def items(*its):
    return json.dumps({"items": list(its)})

write("publish", "all-formats", items({"channel": "fruit", "id": "2", "prev-id": "1", "meta": {"user": "alice"},
    "formats": {"http-stream": {"content": "data: hi\n\n"},
                "http-response": {"code": 200, "reason": "OK", "headers": {"Content-Type": "text/plain"}, "body": "hi\n"},
                "ws-message": {"content": "hi"}}}))
write("publish", "bin-and-actions", items(
    {"channel": "a", "formats": {"http-stream": {"content-bin": "aGkK", "content-filters": ["skip-self"]}}},
    {"channel": "b", "no-seq": True, "formats": {"http-stream": {"action": "close"}, "ws-message": {"action": "close", "code": 4000, "reason": "bye"}}},
    {"channel": "c", "formats": {"http-response": {"action": "hint"}, "ws-message": {"type": "ping", "content-bin": "AAE="}}}))
write("publish", "ws-kinds", items(
    {"channel": "c", "formats": {"ws-message": {"content-bin": "AAEC"}}},
    {"channel": "c", "formats": {"ws-message": {"action": "refresh"}}},
    {"channel": "c", "formats": {"ws-message": {"type": "pong", "content": "p"}}}))
write("publish", "headers-list", items({"channel": "c", "formats": {"http-response": {"code": 404, "headers": [["X-A", "1"], ["X-A", "2"]], "body-bin": "AA=="}}}))
patch_item = {"channel": "c", "formats": {"http-response": {"body-patch": [
    {"op": "test", "path": "/a", "value": 1}, {"op": "replace", "path": "/a", "value": 2},
    {"op": "add", "path": "/list/-", "value": {"k": "v"}}, {"op": "remove", "path": "/gone"},
    {"op": "move", "from": "/x", "path": "/y"}, {"op": "copy", "from": "/y", "path": "/z~1w~0"}]}}}
write("publish", "patch", items(patch_item))
write("publish", "dup-key", '{"items": [], "items": []}')

# --- publish_patch: template byte, publish body -----------------------------------------
def patch_seed(template, ops):
    return bytes([template]) + items({"channel": "c", "formats": {"http-response": {"body-patch": ops}}}).encode()

write("publish_patch", "messages", patch_seed(1, [{"op": "add", "path": "/messages/-", "value": "hi"}, {"op": "replace", "path": "/last", "value": 7}]))
write("publish_patch", "nested", patch_seed(2, [{"op": "test", "path": "/a/b/2/c", "value": "d"}, {"op": "move", "from": "/a/b/0", "path": "/~1"},
                                                {"op": "copy", "from": "/~0", "path": "/a/b/-"}, {"op": "remove", "path": "/e"}]))
write("publish_patch", "root", patch_seed(0, [{"op": "replace", "path": "", "value": [1, 2]}, {"op": "add", "path": "/0", "value": {}}]))
# Issue 7's attack: each op copies the whole document into itself, doubling it.
write("publish_patch", "copy-bomb", patch_seed(2, [{"op": "copy", "from": "", "path": f"/x{i}"} for i in range(40)]))
write("publish_patch", "copy-twice", patch_seed(2, [{"op": "copy", "from": "", "path": "/x"}, {"op": "copy", "from": "", "path": "/y"}]))

# --- woh: mode byte; even: max_events, body; odd: (kind, len, content)* ---------------
write("woh", "wire", b"\x00\xff" + b"OPEN\r\nTEXT 5\r\nhello\r\nCLOSE 2\r\n\x03\xe8\r\n")
write("woh", "wire-forms", b"\x00\xff" + b"OPEN\r\nTEXT 5\r\nhello\r\nTEXT\r\nTEXT 0\r\n\r\nBINARY 3\r\n\r\n\x00\r\nPING\r\nPONG 1\r\nx\r\nDISCONNECT\r\n")
write("woh", "wire-hex", b"\x00\x10" + b"TEXT 0C\r\nYou said Hi!\r\nTEXT c\r\nYou said Hi!\r\nBINARY 00a\r\n0123456789\r\n")
write("woh", "wire-unknown", b"\x00\x03" + b"KEEP-ALIVE\r\ntext 3\r\nabc\r\nFUTURE 6\r\nTEXT 1\r\nTEXT 2\r\nok\r\n\r\n")
write("woh", "events", b"\x01" + b"\x00\x00" + b"\x01\x05hello" + b"\x02\x03\x00\x01\x02" + b"\x05\x05\x03\xe8bye" + b"\x06\x00")

# --- ws_control -------------------------------------------------------------------------
for name, msg in [
    ("subscribe", {"type": "subscribe", "channel": "room-1", "filters": ["skip-self", "x"]}),
    ("unsubscribe", {"channel": "room-1", "type": "unsubscribe"}),
    ("session", {"type": "session", "id": "abc"}),
    ("set-meta", {"type": "set-meta", "name": "user", "value": "alice"}),
    ("keep-alive", {"type": "keep-alive", "content": "{}", "message-type": "text", "timeout": 30, "mode": "interval"}),
    ("keep-alive-bin", {"type": "keep-alive", "content-bin": "AAE=", "message-type": "ping", "timeout": 5}),
    ("send-delayed", {"type": "send-delayed", "message-type": "binary", "content-bin": "aGk", "timeout": 2}),
    ("detach", {"type": "detach"}),
    ("flush", {"type": "flush-delayed"}),
]:
    write("ws_control", name, "c:" + json.dumps(msg))
write("ws_control", "extension", 'grip; message-prefix="m:", permessage-deflate\ngrip; message-prefix=""\n')

# --- ws_deflate: limit, n, sizes, f, frames (flags, opcode, len BE, payload), tail ------
def frame(payload, opcode=1, fin=True, rsv1=False, compress=False, mask=True, trim=0):
    flags = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | (0x08 if compress else 0) | (0x04 if mask else 0) | trim
    return struct.pack(">BBH", flags, opcode, len(payload)) + payload

def deflate_stream(limit, frames, sizes=b"", tail=b""):
    return struct.pack(">HB", limit, len(sizes)) + sizes + bytes([len(frames)]) + b"".join(frames) + tail

hello = b"Hello, Hello, Hello, compressed world!" * 3
write("ws_deflate", "compressed", deflate_stream(4096, [frame(hello, rsv1=True, compress=True)], b"\x05\x02"))
write("ws_deflate", "fragmented", deflate_stream(4096, [frame(hello[:50], fin=False, rsv1=True, compress=True, trim=0),
                                                          frame(b"\x00", opcode=9), frame(b"tail", opcode=0)], b"\x03"))
write("ws_deflate", "plain-and-compressed", deflate_stream(1024, [frame(b"plain text"), frame(b"\x01\x02" * 40, opcode=2, rsv1=True, compress=True, trim=2),
                                                                  frame(b"\x03\xe8bye", opcode=8)]))
write("ws_deflate", "bomb", deflate_stream(100, [frame(b"\x00" * 3000, opcode=2, rsv1=True, compress=True)], b"\x10"))
write("ws_deflate", "offers", deflate_stream(1024, [frame(b"x")], b"", b"permessage-deflate; client_max_window_bits\npermessage-deflate; server_max_window_bits=10, permessage-deflate; server_no_context_takeover"))
write("ws_deflate", "bad-rsv", deflate_stream(1024, [frame(b"abc", rsv1=True, opcode=9), frame(b"abc", opcode=0, rsv1=True)]))

# --- routes: "host path" line, then a routes file ---------------------------------------
write("routes", "basic", "example.com /api/v1/items?x=1\n"
      "* localhost:8080\n"
      "example.com,path_beg=/api,replace_beg=/v2,id=api localhost:9000,over_http;localhost:9001,ssl,insecure\n"
      "# comment\n"
      "*,proto=ws,path_beg=/ws,path_rem=3 127.0.0.1:7999,over_http\n")
write("routes", "options", "b.example /x\r\n"
      "\ufeff*.example,ssl=no,sig_iss=me,sig_key=base64:c2VjcmV0,prefix=p-,aco,debug,log_level=3,as_host=o.example,header=X-A:1 o.example:443,ssl,untrusted,trust_connect_host\n"
      "b.example,no_grip,orig_headers,unknown_opt=1 localhost:80\n")
write("routes", "dupes", "a /\n* a:1\n* b:2\n*,id=x a:1\n*,path_beg=/a,id=x b:2\n")

# --- config -----------------------------------------------------------------------------
write("config", "full", """[server]
http_port = ["127.0.0.1:7999", "[::1]:7999"]
publish_port = "127.0.0.1:5561"
admin_port = ""
routes = ["* localhost:8080"]
workers = 2

[proxy]
debug = true
sig_iss = "gripway"
sig_key = "changeme"
x_forwarded_for = "append"
x_forwarded_proto = "set"
max_request_head = 16384
max_request_body = 1000000
connect_timeout_ms = 5000
upstream_key = "base64:c2VjcmV0"

[grip]
max_channels_per_connection = 20
max_connections = 1000
subscriber_queue_bytes = 65536

[publish]
max_content = 32767
max_items = 100
dedup_window_secs = 60

[publish.auth]
keys = ["k1"]
jwt_keys = ["base64:c2VjcmV0"]
jwt_iss = "me"
basic = "user:pass"
""")
write("config", "bad-port", "[server]\nhttp_port = []\n")
write("config", "routes-file", "[server]\nroutes_file = \"routes\"\n[websocket]\nmax_message_bytes = 1000000\npermessage_deflate = true\n")

# --- jwt --------------------------------------------------------------------------------
def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=")

CLAIMS = {"iss": "gripway", "exp": 1_900_000_000, "jti": "seed"}

def token(alg, sign):
    head = b64u(json.dumps({"alg": alg, "typ": "JWT"}, separators=(",", ":")).encode())
    body = b64u(json.dumps(CLAIMS, separators=(",", ":")).encode())
    signing_input = head + b"." + body
    return signing_input + b"." + b64u(sign(signing_input))

def openssl_sign(key, data):
    return subprocess.run(["openssl", "dgst", "-sha256", "-sign", os.path.join(KEYS, key)],
                          input=data, capture_output=True, check=True).stdout

def der_to_raw(der):
    # ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER } -> r || s, 32 bytes each
    assert der[0] == 0x30
    i = 2
    out = b""
    for _ in range(2):
        assert der[i] == 0x02
        n = der[i + 1]
        v = der[i + 2:i + 2 + n].lstrip(b"\x00")
        out += v.rjust(32, b"\x00")
        i += 2 + n
    return out

hs = token("HS256", lambda m: hmac.new(b"changeme", m, hashlib.sha256).digest())
rs = token("RS256", lambda m: openssl_sign("rsa-private.pem", m))
es = token("ES256", lambda m: der_to_raw(openssl_sign("ec-private.pem", m)))
write("jwt", "hs256", hs)
write("jwt", "rs256", rs)
write("jwt", "es256", es)
write("jwt", "bearer-hs256", b"Bearer " + hs)
write("jwt", "bearer-es256", b"Bearer " + es)
write("jwt", "alg-none", token("none", lambda m: b""))
write("jwt", "hs256-public-key-secret", token("HS256", lambda m: hmac.new(open(os.path.join(KEYS, "rsa-public.pem"), "rb").read(), m, hashlib.sha256).digest()))
write("jwt", "basic", b"Basic " + base64.b64encode(b"user:pass"))
write("jwt", "static", b"Bearer static-key")

# --- mqtt_frames: raw packets as a device sends them (the first bytes also describe one small
# PUBLISH, see the target's header) ------------------------------------------------------
def varint(n):
    out = b""
    while True:
        b, n = n % 128, n // 128
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out

def mqtt(first, body):
    return bytes([first]) + varint(len(body)) + body

def s16(b):
    if isinstance(b, str):
        b = b.encode()
    return struct.pack(">H", len(b)) + b

def props(p=b""):
    return varint(len(p)) + p

connect3 = mqtt(0x10, s16("MQTT") + b"\x04\x02" + struct.pack(">H", 60) + s16("gw-dev-1"))
# 3.1.1 with will (QoS 1, retained), username and password
connect3_full = mqtt(0x10, s16("MQTT") + bytes([4, 0x80 | 0x40 | 0x20 | 0x08 | 0x04 | 0x02]) + struct.pack(">H", 30)
                     + s16("dev-2") + s16("will/topic") + s16("gone") + s16("alice") + s16("secret"))
connect31 = mqtt(0x10, s16("MQIsdp") + b"\x03\x02" + struct.pack(">H", 60) + s16("old"))
# 5.0: session expiry 60 s, receive maximum 10, max packet size 1 MiB
connect5 = mqtt(0x10, s16("MQTT") + b"\x05\x02" + struct.pack(">H", 60)
                + props(b"\x11" + struct.pack(">I", 60) + b"\x21" + struct.pack(">H", 10) + b"\x27" + struct.pack(">I", 1 << 20))
                + s16("gw-dev-5"))
subscribe3 = mqtt(0x82, struct.pack(">H", 1) + s16("sensors/+/temp") + b"\x01" + s16("news/#") + b"\x00")
subscribe5 = mqtt(0x82, struct.pack(">H", 2) + props(b"\x0b\x07") + s16("$share/g1/sensors/#") + b"\x01" + s16("a/b") + b"\x2e")
unsubscribe3 = mqtt(0xA2, struct.pack(">H", 3) + s16("news/#"))
publish3_q0 = mqtt(0x30, s16("test") + b"hello")
publish3_q1 = mqtt(0x3B, s16("sensors/1/temp") + struct.pack(">H", 7) + b"21.5")
# v5 QoS 1 with payload-format, expiry, content type, response topic, correlation data, a user property
publish5 = mqtt(0x32, s16("test") + struct.pack(">H", 9)
                + props(b"\x01\x01" + b"\x02" + struct.pack(">I", 30) + b"\x03" + s16("text/plain")
                        + b"\x08" + s16("reply/here") + b"\x09" + s16(b"\x00\x01") + b"\x26" + s16("k") + s16("v"))
                + b"hello, world")
publish5_q0 = mqtt(0x30, s16("t") + props() + b"x" * 200)
puback = mqtt(0x40, struct.pack(">H", 7))
pingreq = bytes([0xC0, 0x00])
disconnect = bytes([0xE0, 0x00])
disconnect5 = mqtt(0xE0, b"\x04" + props())

write("mqtt_frames", "connect-v311", connect3)
write("mqtt_frames", "connect-v311-will-auth", connect3_full)
write("mqtt_frames", "connect-v31", connect31)
write("mqtt_frames", "connect-v5", connect5)
write("mqtt_frames", "session-v3", connect3 + subscribe3 + publish3_q0 + publish3_q1 + puback + unsubscribe3 + pingreq + disconnect)
write("mqtt_frames", "session-v5", connect5 + subscribe5 + publish5 + publish5_q0 + puback + pingreq + disconnect5)
write("mqtt_frames", "subscribe-v3", subscribe3)
write("mqtt_frames", "subscribe-v5", subscribe5)
write("mqtt_frames", "publish-v3-qos1", publish3_q1)
write("mqtt_frames", "publish-v5-props", publish5)
write("mqtt_frames", "pingreq", pingreq)
write("mqtt_frames", "pingreq-with-body", bytes([0xC0, 0x01, 0x00]))
# 268,435,455 bytes declared (256 MiB): refused from the header alone
write("mqtt_frames", "header-256mib", bytes([0x30, 0xFF, 0xFF, 0xFF, 0x7F]) + s16("t"))
write("mqtt_frames", "header-5-bytes", bytes([0x30, 0x80, 0x80, 0x80, 0x80, 0x01]))
# a 3-byte remaining length (payload past 16 KiB), for the small-case PUBLISH check too
write("mqtt_frames", "publish-16k", mqtt(0x30, s16("big") + b"z" * 16400))
