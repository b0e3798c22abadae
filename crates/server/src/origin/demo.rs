//! The built-in demo origin (Pushpin's `test` target, and what Gripway routes to when no
//! routes are configured). It answers in-process, with the endpoints of Fastly's Fanout
//! starter kit, all on channel `test`:
//!
//! | path | answer |
//! |---|---|
//! | `/test/stream` | `text/plain` stream hold |
//! | `/test/sse` | `text/event-stream` stream hold, `:` comment keep-alive every 20 s |
//! | `/test/long-poll` | response hold, empty body on timeout |
//! | `/test/websocket` | WebSocket-over-HTTP: subscribed to `test`, echoes what the client sends |
//! | `/` | a page whose `EventSource` shows what is published to `test` |
//!
//! Publish to see it: `curl -d '{"items":[{"channel":"test","formats":{"http-stream":
//! {"content":"event: message\ndata: hello\n\n"}}}]}' localhost:5561/publish/`

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{HeaderMap, Method, StatusCode};

use super::{OriginBody, OriginResponse};

/// The channel every demo endpoint subscribes to.
pub const CHANNEL: &str = "test";

/// Answers one request as the demo origin.
pub fn respond(method: &Method, path: &str) -> OriginResponse {
    let grip = |ctype: &'static str, hold: &'static str| {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
        h.insert("grip-hold", HeaderValue::from_static(hold));
        h.insert("grip-channel", HeaderValue::from_static(CHANNEL));
        h
    };
    let (status, headers, body): (StatusCode, HeaderMap, &'static [u8]) = match (method, path) {
        (&Method::GET, "/test/stream") => (StatusCode::OK, grip("text/plain", "stream"), b""),
        (&Method::GET, "/test/sse") => {
            let mut h = grip("text/event-stream", "stream");
            h.insert(
                "grip-keep-alive",
                HeaderValue::from_static(":\\n\\n; format=cstring; timeout=20"),
            );
            h.insert("cache-control", HeaderValue::from_static("no-cache"));
            (StatusCode::OK, h, b"")
        }
        (&Method::GET, "/test/long-poll") => (StatusCode::OK, grip("text/plain", "response"), b""),
        (&Method::GET, "/" | "/test" | "/test/") => {
            let mut h = HeaderMap::new();
            h.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            (StatusCode::OK, h, PAGE.as_bytes())
        }
        _ => {
            let mut h = HeaderMap::new();
            h.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            (
                StatusCode::NOT_FOUND,
                h,
                b"Not found: the demo origin serves /test/stream, /test/sse and /test/long-poll\n",
            )
        }
    };
    OriginResponse {
        status,
        reason: None,
        headers,
        body: OriginBody::Full(Some(Bytes::from_static(body))),
    }
}

/// Answers one WebSocket-over-HTTP request for `/test/websocket`, as Fastly's starter kit
/// does: the opening request subscribes the connection to `test` (with the `grip`
/// extension and no message prefix), and every text message is echoed back.
pub fn websocket(request: &super::OriginRequest) -> OriginResponse {
    use gripway_proto::woh::{
        decode_events, encode_events, Event, EventKind, WohLimits, CONTENT_TYPE,
    };
    let path = request.path_and_query.split('?').next().unwrap_or("");
    let is_events = request
        .headers
        .get(CONTENT_TYPE_HEADER)
        .is_some_and(|v| v.as_bytes() == CONTENT_TYPE.as_bytes());
    if path != "/test/websocket" || !is_events {
        return respond(&request.method, path);
    }
    let Ok(events) = decode_events(&request.body, &WohLimits::default()) else {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE_HEADER, HeaderValue::from_static("text/plain"));
        return OriginResponse {
            status: StatusCode::BAD_REQUEST,
            reason: None,
            headers: h,
            body: OriginBody::Full(Some(Bytes::from_static(b"bad events\n"))),
        };
    };
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE_HEADER, HeaderValue::from_static(CONTENT_TYPE));
    let mut out = Vec::new();
    for e in events {
        match e.kind {
            EventKind::Open => {
                headers.insert(
                    "sec-websocket-extensions",
                    HeaderValue::from_static("grip; message-prefix=\"\""),
                );
                out.push(Event::open());
                out.push(Event::text(Bytes::from_static(
                    b"c:{\"type\":\"subscribe\",\"channel\":\"test\"}",
                )));
            }
            EventKind::Text | EventKind::Binary => out.push(e),
            EventKind::Close => out.push(e),
            _ => {}
        }
    }
    let mut body = Vec::new();
    encode_events(&out, &mut body);
    OriginResponse {
        status: StatusCode::OK,
        reason: None,
        headers,
        body: OriginBody::Full(Some(Bytes::from(body))),
    }
}

const CONTENT_TYPE_HEADER: http::header::HeaderName = CONTENT_TYPE;

/// The demo page: shows every event published to channel `test`.
const PAGE: &str = r#"<!doctype html>
<html>
<head><meta charset="utf-8"><title>Gripway demo</title></head>
<body>
<h1>Gripway demo</h1>
<p>Publish to channel <code>test</code> and the messages appear below:</p>
<pre>curl -d '{"items":[{"channel":"test","formats":{"http-stream":{"content":"event: message\ndata: hello\n\n"},"ws-message":{"content":"hello"}}}]}' localhost:5561/publish/</pre>
<h2>Server-Sent Events <small>(<code>/test/sse</code>)</small></h2>
<p>Status: <span id="status">connecting</span></p>
<ul id="events"></ul>
<h2>WebSocket <small>(<code>/test/websocket</code>, echoes what you send)</small></h2>
<p>Status: <span id="ws-status">connecting</span></p>
<form id="ws-form"><input id="ws-input" value="hello"><button>Send</button></form>
<ul id="ws-messages"></ul>
<script>
const status = document.getElementById('status');
const events = document.getElementById('events');
const source = new EventSource('/test/sse');
source.onopen = () => { status.textContent = 'open'; };
source.onerror = () => { status.textContent = 'reconnecting'; };
source.onmessage = (e) => {
  const li = document.createElement('li');
  li.className = 'event';
  li.textContent = e.data;
  events.appendChild(li);
};
const wsStatus = document.getElementById('ws-status');
const wsMessages = document.getElementById('ws-messages');
const ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/test/websocket');
ws.onopen = () => { wsStatus.textContent = 'open'; };
ws.onclose = (e) => { wsStatus.textContent = 'closed ' + e.code; };
ws.onmessage = (e) => {
  const li = document.createElement('li');
  li.className = 'ws';
  li.textContent = e.data;
  wsMessages.appendChild(li);
};
document.getElementById('ws-form').onsubmit = (e) => {
  e.preventDefault();
  ws.send(document.getElementById('ws-input').value);
};
</script>
</body>
</html>
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let r = respond(&Method::GET, "/test/sse");
        assert_eq!(r.headers["grip-hold"], "stream");
        assert_eq!(r.headers["grip-channel"], "test");
        assert_eq!(r.headers["content-type"], "text/event-stream");
        assert_eq!(
            respond(&Method::GET, "/test/long-poll").headers["grip-hold"],
            "response"
        );
        assert_eq!(
            respond(&Method::GET, "/test/stream").headers["content-type"],
            "text/plain"
        );
        assert_eq!(respond(&Method::GET, "/nope").status, StatusCode::NOT_FOUND);
        assert_eq!(respond(&Method::GET, "/").status, StatusCode::OK);
    }
}
