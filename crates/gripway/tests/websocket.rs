//! WebSockets through gripway: WebSocket-over-HTTP to a stateless origin, pass-through to an
//! origin WebSocket, published messages, and the protocol edges checked byte for byte.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures_util::{SinkExt, StreamExt};
use gripway_proto::woh::{decode_events, encode_events, Event, EventKind, WohLimits};
use tokio_tungstenite::tungstenite::Message;

type Seen = Arc<Mutex<Vec<Event>>>;

/// A WebSocket-over-HTTP origin: accepts with the grip extension, subscribes to `room`, and
/// answers each TEXT with `m:` + the text; records every event it receives.
async fn woh_origin(seen: Seen, extra: fn(&[Event]) -> Vec<Event>) -> Origin {
    Origin::start(move |r| {
        let events = decode_events(&r.body, &WohLimits::default()).expect("valid events");
        seen.lock().unwrap().extend(events.iter().cloned());
        let mut out = Vec::new();
        let mut reply = Reply::ok().header("Content-Type", "application/websocket-events");
        for e in &events {
            match e.kind {
                EventKind::Open => {
                    reply = reply.header("Sec-WebSocket-Extensions", "grip");
                    out.push(Event::open());
                    out.push(Event::text(
                        &b"c:{\"type\":\"subscribe\",\"channel\":\"room\"}"[..],
                    ));
                }
                EventKind::Text => {
                    let mut echo = b"m:".to_vec();
                    echo.extend_from_slice(&e.content);
                    out.push(Event::text(echo));
                }
                _ => {}
            }
        }
        out.extend(extra(&events));
        let mut body = Vec::new();
        encode_events(&out, &mut body);
        reply.body(body)
    })
    .await
}

fn none(_: &[Event]) -> Vec<Event> {
    Vec::new()
}

fn ws_route(origin: &Origin) -> String {
    format!("* {},over_http", origin.target())
}

async fn connect(
    gw: &Gripway,
    path: &str,
) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    let url = format!("ws://{}{}", gw.addr, path);
    let sock = tokio::net::TcpStream::connect(gw.addr)
        .await
        .expect("connect");
    let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(url, sock))
        .await
        .expect("handshake in time")
        .expect("handshake accepted");
    ws
}

async fn next_text<S>(ws: &mut S) -> String
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let m = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a message in time");
        match m.expect("stream open").expect("no error") {
            Message::Text(t) => return t.to_string(),
            Message::Binary(b) => return format!("binary:{}", String::from_utf8_lossy(&b)),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

async fn wait_subscribed(gw: &Gripway, n: f64) {
    for _ in 0..500 {
        if gw.metric("gripway_subscriptions").await == Some(n) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("subscriptions never reached {n}");
}

#[tokio::test]
async fn over_http_echo_subscribe_and_publish() {
    let seen: Seen = Arc::default();
    let origin = woh_origin(seen.clone(), none).await;
    let gw = gripway(&["--route", &ws_route(&origin)]);
    let mut ws = connect(&gw, "/chat").await;
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "hello");
    wait_subscribed(&gw, 1.0).await;
    let body = r#"{"items":[
        {"channel":"room","formats":{"ws-message":{"content":"one"}}},
        {"channel":"room","formats":{"ws-message":{"content-bin":"dHdv"}}},
        {"channel":"room","formats":{"http-stream":{"content":"not for websockets"}}},
        {"channel":"room","formats":{"ws-message":{"content":"three"}}}]}"#;
    assert_eq!(publish(&gw.publish_url(), body).await.0, 200);
    assert_eq!(next_text(&mut ws).await, "one");
    assert_eq!(next_text(&mut ws).await, "binary:two");
    assert_eq!(next_text(&mut ws).await, "three");

    let requests = origin.requests();
    assert!(requests.len() >= 2);
    let ids: Vec<_> = requests
        .iter()
        .map(|r| r.header("connection-id").unwrap().to_string())
        .collect();
    assert!(
        ids.iter().all(|i| *i == ids[0] && i.len() == 36),
        "one stable Connection-Id: {ids:?}"
    );
    for r in &requests {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/chat");
        assert_eq!(
            r.header("content-type"),
            Some("application/websocket-events")
        );
        assert_eq!(r.header("accept"), Some("application/websocket-events"));
        assert_eq!(r.header("sec-websocket-extensions"), Some("grip"));
        assert!(r.header("grip-sig").is_some());
        assert_eq!(r.header("upgrade"), None);
    }
    assert_eq!(requests[0].body, b"OPEN\r\n");
    let kinds: Vec<_> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|e| (e.kind, e.content.clone()))
        .collect();
    assert_eq!(kinds[0], (EventKind::Open, Bytes::new()));
    assert_eq!(kinds[1], (EventKind::Text, Bytes::from_static(b"hello")));
}

#[tokio::test]
async fn origin_close_and_client_close_reach_the_other_side() {
    let seen: Seen = Arc::default();
    let origin = woh_origin(seen.clone(), |events| {
        if events
            .iter()
            .any(|e| e.kind == EventKind::Text && &e.content[..] == b"bye")
        {
            vec![Event::close(Some(4001), "origin says bye")]
        } else {
            Vec::new()
        }
    })
    .await;
    let gw = gripway(&["--route", &ws_route(&origin)]);
    let mut ws = connect(&gw, "/").await;
    ws.send(Message::text("bye")).await.unwrap();
    let mut close = None;
    while let Ok(Some(m)) = tokio::time::timeout(WAIT, ws.next()).await {
        if let Ok(Message::Close(c)) = m {
            close = c;
            break;
        }
    }
    let close = close.expect("a close frame");
    assert_eq!(u16::from(close.code), 4001);
    assert_eq!(close.reason.as_str(), "origin says bye");

    let mut ws = connect(&gw, "/").await;
    ws.send(Message::Close(Some(
        tokio_tungstenite::tungstenite::protocol::CloseFrame {
            code: 4000.into(),
            reason: "client leaves".into(),
        },
    )))
    .await
    .unwrap();
    for _ in 0..300 {
        let closes =
            seen.lock().unwrap().iter().any(|e| {
                e.kind == EventKind::Close && e.content.starts_with(&4000u16.to_be_bytes())
            });
        if closes {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "the origin never got CLOSE 4000: {:?}",
        seen.lock().unwrap()
    );
}

#[tokio::test]
async fn vanished_client_is_reported_as_disconnect() {
    let seen: Seen = Arc::default();
    let origin = woh_origin(seen.clone(), none).await;
    let gw = gripway(&["--route", &ws_route(&origin)]);
    let ws = connect(&gw, "/").await;
    wait_subscribed(&gw, 1.0).await;
    drop(ws); // TCP closed without a close frame
    for _ in 0..300 {
        if seen
            .lock()
            .unwrap()
            .iter()
            .any(|e| e.kind == EventKind::Disconnect)
        {
            wait_subscribed(&gw, 0.0).await;
            // leaving without a close frame is not the client breaking the protocol
            assert_eq!(
                gw.metric(
                    "gripway_errors_total{source=\"client\",reason=\"websocket-protocol-error\"}"
                )
                .await,
                None
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no DISCONNECT: {:?}", seen.lock().unwrap());
}

#[tokio::test]
async fn refused_open_returns_the_origin_response() {
    let origin = Origin::start(|_| {
        Reply::status(403)
            .reason("Forbidden")
            .header("Content-Type", "text/plain")
            .body("no entry\n")
    })
    .await;
    let gw = gripway(&["--route", &ws_route(&origin)]);
    let mut c = RawClient::connect(gw.addr).await;
    c.send(handshake("/").as_bytes()).await;
    let text = String::from_utf8_lossy(&c.read_to_end(WAIT).await).into_owned();
    assert!(text.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{text}");
    assert!(text.ends_with("no entry\n"), "{text}");
}

#[tokio::test]
async fn published_close_and_large_origin_messages() {
    let origin = woh_origin(Arc::default(), |events| {
        if events
            .iter()
            .any(|e| e.kind == EventKind::Text && &e.content[..] == b"big")
        {
            let mut m = b"m:".to_vec();
            m.extend(std::iter::repeat_n(b'x', 100_000));
            vec![Event::text(m)]
        } else {
            Vec::new()
        }
    })
    .await;
    let gw = gripway(&["--route", &ws_route(&origin)]);
    let mut ws = connect(&gw, "/").await;
    ws.send(Message::text("big")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "big");
    let big = next_text(&mut ws).await;
    assert_eq!(
        big.len(),
        100_000,
        "an origin message over 32 KiB arrives whole"
    );
    wait_subscribed(&gw, 1.0).await;
    let body = r#"{"items":[{"channel":"room","formats":{"ws-message":{"action":"close","code":4100,"reason":"done"}}}]}"#;
    publish(&gw.publish_url(), body).await;
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("close in time")
        {
            Some(Ok(Message::Close(Some(c)))) => {
                assert_eq!(u16::from(c.code), 4100);
                assert_eq!(c.reason.as_str(), "done");
                break;
            }
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn clients_may_not_send_websocket_events_themselves() {
    let origin = woh_origin(Arc::default(), none).await;
    let gw = gripway(&["--route", &ws_route(&origin)]);
    let mut c = RawClient::connect(gw.addr).await;
    c.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/websocket-events\r\nContent-Length: 6\r\n\r\nOPEN\r\n")
        .await;
    let text = String::from_utf8_lossy(&c.read_to_end(WAIT).await).into_owned();
    assert!(text.starts_with("HTTP/1.1 403 "), "{text}");
    assert!(origin.requests().is_empty());
}

// --- frame-level edges, with hand-made client frames ---------------------------------------

fn handshake(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// A client frame: FIN flag, opcode, payload, masked unless `mask` is None.
fn frame(fin: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
    let m = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(m | n as u8),
        n if n <= 0xffff => {
            out.push(m | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(m | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

const KEY: Option<[u8; 4]> = Some([0x12, 0x34, 0x56, 0x78]);

async fn open_raw(gw: &Gripway) -> RawClient {
    let mut c = RawClient::connect(gw.addr).await;
    c.send(handshake("/").as_bytes()).await;
    let head = c.read_head().await;
    assert!(
        head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{head}"
    );
    assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
    c
}

/// Reads until a close frame arrives; returns its code (None for an empty close frame).
async fn read_close(c: &mut RawClient) -> Option<u16> {
    c.read_until(&[0x88], WAIT).await;
    let deadline = std::time::Instant::now() + WAIT;
    while c.buf.is_empty() || c.buf.len() < 1 + usize::from(c.buf[0]) {
        assert!(
            std::time::Instant::now() < deadline,
            "incomplete close frame {:?}",
            c.buf
        );
        let more = c.read_for(Duration::from_millis(50)).await;
        c.buf.extend(more);
    }
    (c.buf[0] >= 2).then(|| u16::from_be_bytes([c.buf[1], c.buf[2]]))
}

#[tokio::test]
async fn fragments_with_a_ping_between_are_one_message() {
    let seen: Seen = Arc::default();
    let origin = woh_origin(seen.clone(), none).await;
    let gw = gripway(&["--route", &ws_route(&origin)]);
    let mut c = open_raw(&gw).await;
    let mut bytes = frame(false, 0x1, b"Hel", KEY);
    bytes.extend(frame(true, 0x9, b"p!", KEY));
    bytes.extend(frame(true, 0x0, b"lo", KEY));
    c.send(&bytes).await;
    c.read_until(b"\x8a\x02p!", WAIT).await; // the pong
    c.read_until(b"\x81\x05Hello", WAIT).await; // the origin's echo of the whole message
    assert!(seen
        .lock()
        .unwrap()
        .iter()
        .any(|e| e.kind == EventKind::Text && &e.content[..] == b"Hello"));
}

/// Every WebSocket-over-HTTP request repeats the client's handshake headers as the first
/// one had them: repeated names in their order, long values whole, Gripway's own additions,
/// and what it must not forward still left out.
#[tokio::test]
async fn every_request_repeats_the_handshake_headers() {
    let origin = woh_origin(Arc::default(), none).await;
    let gw = gripway(&["--route", &ws_route(&origin)]);
    let mut c = RawClient::connect(gw.addr).await;
    let long = "v".repeat(3000);
    let head = format!(
        "GET /hdr?q=1 HTTP/1.1\r\nHost: example.test\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\nCookie: a=1\r\nX-Custom: café\r\n\
         Cookie: b=2\r\nX-Long: {long}\r\nMeta-User: mallory\r\nConnection-Id: forged\r\n\r\n"
    );
    c.send(head.as_bytes()).await;
    let answer = c.read_head().await;
    assert!(answer.starts_with("HTTP/1.1 101 "), "{answer}");
    c.send(&frame(true, 0x1, b"one", KEY)).await;
    c.read_until(b"\x81\x03one", WAIT).await;
    c.send(&frame(true, 0x1, b"two", KEY)).await;
    c.read_until(b"\x81\x03two", WAIT).await;

    let requests = origin.requests();
    assert!(requests.len() >= 3, "OPEN and two messages");
    let ids: Vec<_> = requests.iter().map(|r| r.header("connection-id")).collect();
    for r in &requests {
        assert_eq!(r.path, "/hdr?q=1");
        assert_eq!(r.header("host"), Some("example.test"));
        assert_eq!(r.header_all("cookie"), ["a=1", "b=2"]);
        assert_eq!(r.header("x-custom"), Some("café"));
        assert_eq!(r.header("x-long"), Some(long.as_str()));
        assert_eq!(
            r.header("sec-websocket-key"),
            Some("dGhlIHNhbXBsZSBub25jZQ==")
        );
        assert_eq!(r.header("sec-websocket-version"), Some("13"));
        assert_eq!(r.header("sec-websocket-extensions"), Some("grip"));
        assert!(r
            .header("grip-feature")
            .is_some_and(|f| f.contains("link:next")));
        assert_eq!(r.header("x-forwarded-for"), Some("127.0.0.1"));
        assert_eq!(r.header_all("grip-sig").len(), 1);
        assert_eq!(r.header_all("connection-id").len(), 1);
        assert_ne!(r.header("connection-id"), Some("forged"));
        assert_eq!(r.header("connection-id"), ids[0]);
        assert_eq!(r.header("meta-user"), None);
        assert_eq!(r.header("upgrade"), None);
    }
}

#[tokio::test]
async fn protocol_violations_close_with_the_rfc_code() {
    let origin = woh_origin(Arc::default(), none).await;
    let gw = gripway(&["--route", &ws_route(&origin)]);
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "invalid UTF-8 in text",
            frame(true, 0x1, b"\xff\xfe", KEY),
            1007,
        ),
        ("unmasked client frame", frame(true, 0x1, b"hi", None), 1002),
        (
            "oversized message",
            frame(true, 0x2, &vec![0u8; 70_000], KEY),
            1009,
        ),
        ("reserved opcode", frame(true, 0x3, b"", KEY), 1002),
        ("fragmented ping", frame(false, 0x9, b"", KEY), 1002),
        (
            "continuation without a start",
            frame(true, 0x0, b"x", KEY),
            1002,
        ),
        (
            "close with a reserved code",
            frame(true, 0x8, &1005u16.to_be_bytes(), KEY),
            1002,
        ),
    ];
    for (what, bytes, want) in cases {
        let mut c = open_raw(&gw).await;
        c.send(&bytes).await;
        assert_eq!(read_close(&mut c).await, Some(want), "{what}");
        assert!(
            c.closed_within(WAIT).await,
            "{what}: connection closed afterwards"
        );
    }
}

#[tokio::test]
async fn clean_close_is_answered() {
    let origin = woh_origin(Arc::default(), none).await;
    let gw = gripway(&["--route", &ws_route(&origin)]);
    let mut c = open_raw(&gw).await;
    c.send(&frame(true, 0x8, &1000u16.to_be_bytes(), KEY)).await;
    c.read_until(b"\x88\x02\x03\xe8", WAIT).await;
    assert!(c.closed_within(WAIT).await);
}

#[tokio::test]
async fn demo_websocket_echoes_and_receives_publishes() {
    let gw = gripway(&[]);
    let mut ws = connect(&gw, "/test/websocket").await;
    ws.send(Message::text("echo me")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "echo me");
    wait_subscribed(&gw, 1.0).await;
    publish(
        &gw.publish_url(),
        r#"{"items":[{"channel":"test","formats":{"ws-message":{"content":"to all"}}}]}"#,
    )
    .await;
    assert_eq!(next_text(&mut ws).await, "to all");
}

#[tokio::test]
#[allow(clippy::result_large_err)] // the signature tungstenite's handshake callback requires
async fn passthrough_relays_both_ways_with_grip() {
    use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let callback = |req: &Request, mut resp: Response| {
                    let offered = req
                        .headers()
                        .get("sec-websocket-extensions")
                        .is_some_and(|v| v.as_bytes() == b"grip");
                    if offered {
                        resp.headers_mut()
                            .insert("sec-websocket-extensions", "grip".parse().unwrap());
                    }
                    Ok(resp)
                };
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(sock, callback).await else {
                    return;
                };
                ws.send(Message::text(
                    "c:{\"type\":\"subscribe\",\"channel\":\"pt\"}",
                ))
                .await
                .unwrap();
                ws.send(Message::text("no prefix: dropped")).await.unwrap();
                while let Some(Ok(m)) = ws.next().await {
                    if let Message::Text(t) = m {
                        ws.send(Message::text(format!("m:origin got {t}")))
                            .await
                            .unwrap();
                    }
                }
            });
        }
    });
    let route = format!("* {addr}");
    let gw = gripway(&["--route", &route]);
    let mut ws = connect(&gw, "/pt").await;
    ws.send(Message::text("ping?")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "origin got ping?");
    wait_subscribed(&gw, 1.0).await;
    publish(
        &gw.publish_url(),
        r#"{"items":[{"channel":"pt","formats":{"ws-message":{"content":"published"}}}]}"#,
    )
    .await;
    assert_eq!(next_text(&mut ws).await, "published");
    server.abort();
}

/// An over-HTTP origin whose answer depends on the request: `reply(request) -> (headers, events)`.
async fn scripted_origin(
    reply: impl Fn(&OriginRequest, &[Event]) -> (Vec<(&'static str, String)>, Vec<Event>)
        + Send
        + Sync
        + 'static,
) -> Origin {
    Origin::start(move |r| {
        let events = decode_events(&r.body, &WohLimits::default()).expect("valid events");
        let (headers, out) = reply(r, &events);
        let mut resp = Reply::ok().header("Content-Type", "application/websocket-events");
        for (k, v) in headers {
            resp = resp.header(k, &v);
        }
        let mut body = Vec::new();
        encode_events(&out, &mut body);
        resp.body(body)
    })
    .await
}

fn opening(events: &[Event]) -> bool {
    events.first().is_some_and(|e| e.kind == EventKind::Open)
}

#[tokio::test]
async fn partially_accepted_content_is_replayed() {
    let origin = scripted_origin(|r, events| {
        if opening(events) {
            return (
                vec![("Sec-WebSocket-Extensions", "grip".into())],
                vec![Event::open()],
            );
        }
        // accept only the first 3 bytes of the first request with content
        if r.header("content-bytes-replayed").is_none()
            && events.iter().any(|e| !e.content.is_empty())
        {
            return (vec![("Content-Bytes-Accepted", "3".into())], vec![]);
        }
        (vec![], vec![])
    })
    .await;
    let gw = gripway(&["--route", &ws_route(&origin)]);
    let mut ws = connect(&gw, "/").await;
    ws.send(Message::text("hello")).await.unwrap();
    for _ in 0..300 {
        let reqs = origin.requests();
        if let Some(replay) = reqs
            .iter()
            .find(|r| r.header("content-bytes-replayed").is_some())
        {
            assert_eq!(replay.header("content-bytes-replayed"), Some("2"));
            assert_eq!(replay.body, b"TEXT 2\r\nlo\r\n");
            assert_eq!(reqs[1].body, b"TEXT 5\r\nhello\r\n");
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no replay: {:?}", origin.requests());
}

#[tokio::test]
async fn meta_set_by_the_origin_is_sent_back_and_refresh_asks_again() {
    let origin = scripted_origin(|_, events| {
        if opening(events) {
            return (
                vec![
                    ("Sec-WebSocket-Extensions", "grip".into()),
                    ("Set-Meta-User", "alice".into()),
                ],
                vec![
                    Event::open(),
                    Event::text(&b"c:{\"type\":\"subscribe\",\"channel\":\"meta\"}"[..]),
                    Event::text(
                        &b"c:{\"type\":\"set-meta\",\"name\":\"room\",\"value\":\"lobby\"}"[..],
                    ),
                ],
            );
        }
        (vec![], vec![])
    })
    .await;
    let gw = gripway(&["--route", &ws_route(&origin)]);
    let _ws = connect(&gw, "/").await;
    wait_subscribed(&gw, 1.0).await;
    let refresh = r#"{"items":[{"channel":"meta","formats":{"ws-message":{"action":"refresh"}}}]}"#;
    publish(&gw.publish_url(), refresh).await;
    for _ in 0..300 {
        let reqs = origin.requests();
        if reqs.len() >= 2 {
            let r = &reqs[1];
            assert!(
                r.body.is_empty(),
                "a refresh with nothing queued is an empty request"
            );
            assert_eq!(r.header("meta-user"), Some("alice"));
            assert_eq!(r.header("meta-room"), Some("lobby"));
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no refresh request: {:?}", origin.requests());
}

#[tokio::test]
async fn one_event_targets_get_one_message_per_request() {
    let origin = scripted_origin(|_, events| {
        if opening(events) {
            return (vec![], vec![Event::open()]);
        }
        (vec![], vec![])
    })
    .await;
    let route = format!("* {},over_http,one_event", origin.target());
    let gw = gripway(&["--route", &route]);
    let mut ws = connect(&gw, "/").await;
    for m in ["a", "b", "c"] {
        ws.send(Message::text(m)).await.unwrap();
    }
    for _ in 0..300 {
        let reqs = origin.requests();
        if reqs.len() >= 4 {
            let bodies: Vec<_> = reqs[1..4]
                .iter()
                .map(|r| String::from_utf8_lossy(&r.body).into_owned())
                .collect();
            assert_eq!(
                bodies,
                ["TEXT 1\r\na\r\n", "TEXT 1\r\nb\r\n", "TEXT 1\r\nc\r\n"]
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("requests: {:?}", origin.requests());
}

#[tokio::test]
async fn failed_requests_are_retried_with_backoff() {
    let attempts = Arc::new(Mutex::new(0u32));
    let seen = attempts.clone();
    let origin = Origin::start(move |r| {
        let events = decode_events(&r.body, &WohLimits::default()).expect("valid events");
        let mut reply = Reply::ok().header("Content-Type", "application/websocket-events");
        let mut out = Vec::new();
        if opening(&events) {
            out.push(Event::open());
        } else if events.iter().any(|e| e.kind == EventKind::Text) {
            let mut n = seen.lock().unwrap();
            *n += 1;
            if *n == 1 {
                reply = reply.delay(Duration::from_secs(2)); // past gripway's response timeout
            }
            out.push(Event::text(&b"answered"[..]));
        }
        let mut body = Vec::new();
        encode_events(&out, &mut body);
        reply.body(body)
    })
    .await;
    let dir = TempDir::new("ws-retry");
    let conf = dir.write("gripway.toml", "[proxy]\nresponse_timeout_ms = 500\n");
    let route = ws_route(&origin);
    let gw = gripway(&["--config", conf.to_str().unwrap(), "--route", &route]);
    let mut ws = connect(&gw, "/").await;
    let started = std::time::Instant::now();
    ws.send(Message::text("please")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "answered");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1400),
        "timeout then a backoff of at least a second: {took:?}"
    );
    assert_eq!(*attempts.lock().unwrap(), 2, "sent again once");
    assert_eq!(
        gw.metric("gripway_retries_total{reason=\"websocket-request-failed\"}")
            .await,
        Some(1.0),
        "the retry is counted"
    );
}

#[tokio::test]
async fn keep_alive_interval_sends_empty_requests_when_idle() {
    let origin = scripted_origin(|_, events| {
        if opening(events) {
            // values under 20 s are raised to 20 s
            return (
                vec![("Keep-Alive-Interval", "5".into())],
                vec![Event::open()],
            );
        }
        (vec![], vec![])
    })
    .await;
    let gw = gripway(&["--route", &ws_route(&origin)]);
    let _ws = connect(&gw, "/").await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(origin.requests().len(), 1, "no keep-alive before 20 s");
    for _ in 0..200 {
        let reqs = origin.requests();
        if reqs.len() >= 2 {
            assert!(
                reqs[1].body.is_empty(),
                "a keep-alive request carries no events"
            );
            assert_eq!(
                reqs[1].header("connection-id"),
                reqs[0].header("connection-id")
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no keep-alive request within 30 s");
}

#[tokio::test]
async fn published_pings_and_pongs_reach_websockets() {
    let origin = woh_origin(Arc::default(), none).await;
    let gw = gripway(&["--route", &ws_route(&origin)]);
    let mut ws = connect(&gw, "/").await;
    wait_subscribed(&gw, 1.0).await;
    let body = r#"{"items":[
        {"channel":"room","formats":{"ws-message":{"type":"ping","content":"are you there"}}},
        {"channel":"room","formats":{"ws-message":{"type":"pong"}}},
        {"channel":"room","formats":{"ws-message":{"content":"after"}}}]}"#;
    assert_eq!(publish(&gw.publish_url(), body).await.0, 200);
    let mut got = Vec::new();
    while got.len() < 3 {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("in time")
        {
            Some(Ok(Message::Ping(p))) => got.push(format!("ping:{}", String::from_utf8_lossy(&p))),
            Some(Ok(Message::Pong(p))) => got.push(format!("pong:{}", String::from_utf8_lossy(&p))),
            Some(Ok(Message::Text(t))) => got.push(format!("text:{t}")),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, ["ping:are you there", "pong:", "text:after"]);
}
