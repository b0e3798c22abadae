"""An MQTT-over-HTTP origin (README, "MQTT: the origin decides"): python3 mqtt_origin.py PORT KEY"""
import base64, hashlib, hmac, json, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

USERS = {"alice": "s3cret", "bob": "hunter2"}
KEY, lock, count = sys.argv[2].encode(), threading.Lock(), [0]
DENY = {"allow": False, "reason": "not-authorized"}

def b64(s): return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))

def signed(token):  # Grip-Sig: a JWT signed HS256 with the route's key, not expired
    try:
        head, claims, sig = token.split(".")
        mac = hmac.digest(KEY, f"{head}.{claims}".encode(), hashlib.sha256)
        return (json.loads(b64(head))["alg"] == "HS256" and hmac.compare_digest(b64(sig), mac)
                and json.loads(b64(claims))["exp"] > time.time())
    except (ValueError, KeyError, TypeError):
        return False

def subscribe(f, user):
    if f == f"devices/{user}/#": return {"allow": True, "channels": [f"devices/{user}"]}
    return {"allow": True} if f.startswith("public/") and "+" not in f and "#" not in f else DENY

def publish(t, user):
    if t == "rpc/ping": return {"allow": True, "publish": False, "reply": [{"topic": "rpc/pong", "content": "pong"}]}
    if t.startswith(f"devices/{user}/"): return {"allow": True, "channel": f"devices/{user}"}
    return {"allow": True} if t.startswith("public/") else DENY

def decide(e, user):
    if e["type"] == "connect":
        ok = user in USERS and e.get("password") == USERS[user]
        return {"allow": True} if ok else {"allow": False, "reason": "bad-credentials"}
    if e["type"] == "subscribe": return {"filters": [subscribe(f["filter"], user) for f in e["filters"]]}
    return publish(e["topic"], user) if e["type"] == "publish" else {}

class Origin(BaseHTTPRequestHandler):
    def do_GET(self):  # GET /count: requests so far (the tests prove caching with it)
        self.send(200 if self.path == "/count" else 404, str(count[0]), "text/plain")

    def do_POST(self):
        with lock: count[0] += 1
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if not signed(self.headers.get("Grip-Sig", "")): return self.send(401, "bad Grip-Sig\n", "text/plain")
        req = json.loads(body)
        results = [decide(e, req.get("username")) for e in req["events"]]
        cache = {} if any("reply" in r for r in results) else {"Cache-Control": "max-age=60"}
        self.send(200, json.dumps({"results": results}), "application/mqtt-events+json", cache)

    def send(self, status, text, ctype, headers={}):
        body = text.encode()
        self.send_response(status)
        for k, v in {"Content-Type": ctype, "Content-Length": str(len(body)), **headers}.items(): self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Origin).serve_forever()
