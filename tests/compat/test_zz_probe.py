import time
from compat_servers import Reply
from compat_http import stream_item
def test_p(origin, both):
    def h(req):
        p = req["path"]
        kind = p.split("/")[2]
        ch = "pc-" + req["server"] + "-" + kind
        base = [("Content-Type","text/plain"),("Grip-Hold","stream"),("Grip-Channel",ch)]
        if kind == "stream":
            return Reply(200,"OK",base,"open\n")
        if kind == "poll":
            return Reply(200,"OK",[("Content-Type","text/plain"),("Grip-Hold","response"),("Grip-Channel",ch),("Grip-Timeout","5")],"tmo\n")
        if kind == "multi":
            return Reply(200,"OK",[("Content-Type","text/plain"),("Grip-Hold","stream"),("Grip-Channel",ch+"a, "+ch+"b"),("Grip-Channel",ch+"c,")],"open\n")
        if kind == "quoted":
            return Reply(200,"OK",[("Content-Type","text/plain"),("Grip-Hold","stream"),("Grip-Channel",'"'+ch+'"')],"open\n")
        if kind == "plain":
            return Reply(200,"OK",[("Content-Type","text/plain")],"plain\n")
        if kind == "ka-b64":
            return Reply(200,"OK",base+[("Grip-Keep-Alive","AAE=; format=base64; timeout=1")],"open\n")
        if kind == "ka-raw":
            return Reply(200,"OK",base+[("Grip-Keep-Alive","ping; timeout=1; mode=interval")],"open\n")
    prefix = origin.route(h)
    def run(t):
        out = {}
        for kind, method, ver in [("stream","HEAD","HTTP/1.1"),("poll","HEAD","HTTP/1.1"),("plain","GET","HTTP/1.0"),("poll","GET","HTTP/1.0"),("multi","GET","HTTP/1.1"),("quoted","GET","HTTP/1.1"),("ka-b64","GET","HTTP/1.1"),("ka-raw","GET","HTTP/1.1")]:
            c = t.open_unread(method, prefix+kind+"/x", version=ver)
            try:
                if kind in ("multi","quoted"):
                    c.read_head()
                    time.sleep(0.3)
                    ch = "pc-" + t.name + "-" + kind
                    if kind == "quoted":
                        t.publish_items(stream_item('"'+ch+'"', "q1\n"), stream_item(ch, "q2\n"))
                    else:
                        t.publish_items(stream_item(ch+"a", "A\n"), stream_item(ch+"b", "B\n"), stream_item(ch+"c", "C\n"), stream_item(ch+"c,", "C2\n"))
                    raw = c.read_raw_for(1.0)
                elif kind == "poll" and method == "GET":
                    for i in range(10):
                        t.publish_items({"channel": "pc-"+t.name+"-poll", "formats":{"http-response":{"body":"pushed\n"}}})
                        try:
                            c.read_head(limit=0.3); break
                        except TimeoutError: pass
                    raw = c.read_raw_for(1.0)
                elif kind.startswith("ka"):
                    c.read_head(); raw = c.read_raw_for(2.5)
                else:
                    c.read_head(limit=8)
                    raw = c.read_raw_for(1.0)
                out[kind+method+ver] = (c.head, raw, c.eof)
            except Exception as e:
                out[kind+method+ver] = (None, repr(e), None)
            finally:
                c.close()
        return out
    res = both(run)
    for k in res["pushpin"]:
        for s in ("pushpin","gripway"):
            hd_, b, eof = res[s][k]
            sl = hd_ and hd_.raw.split(b'\r\n')[0]
            hh = hd_ and [x for x in hd_.headers if x[0].lower() not in ('date','server')]
            print(f"{k:22} {s:8} {sl} {hh} {b!r} eof={eof}")
