//! Content filters (`var-subst`, `build-id`) against the real binary: each subscriber gets its
//! own rendering, framed for its connection (an HTTP/1.1 chunk of the rendered length, raw
//! bytes for HTTP/1.0, a WebSocket frame), while a subscriber without content filters on the
//! same channel gets the shared bytes; messages a filter cannot render and messages whose
//! `content-filters` differ are skipped and the former counted; a stream's initial body goes
//! through `build-id`.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use gripway_proto::woh::{decode_events, encode_events, Event, EventKind, WohLimits};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

/// Origin: a stream on `room`, with filters for `/f` (and a build-id initial body), none for
/// other paths.
async fn stream_origin() -> Origin {
    Origin::start(|r| {
        let filtered = r.path.starts_with("/f");
        let reply = Reply::ok()
            .header("Content-Type", "text/plain")
            .header("Grip-Hold", "stream");
        if filtered {
            reply
                .header(
                    "Grip-Channel",
                    "room; prev-id=5; filter=build-id; filter=var-subst",
                )
                .header("Grip-Link", "</next>; rel=next; timeout=120")
                .header("Grip-Set-Meta", "id_format=\"<%(room)s>\", n=\"N\"")
                .body("open %I\n")
        } else {
            reply.header("Grip-Channel", "room").body("open\n")
        }
    })
    .await
}

fn item(id: &str, prev: &str, content: &str, filters: &[&str]) -> String {
    let mut format = json!({"content": content});
    if !filters.is_empty() {
        format["content-filters"] = json!(filters);
    }
    json!({"items": [{"channel": "room", "id": id, "prev-id": prev,
        "formats": {"http-stream": format}}]})
    .to_string()
}

#[tokio::test]
async fn each_subscriber_gets_its_own_rendering_framed_for_it() {
    let origin = stream_origin().await;
    let gw = gripway_to(&origin, &[]);
    let mut chunked = RawClient::connect(gw.addr).await;
    chunked.get("/f", &[]).await;
    chunked.read_until(b"9\r\nopen <5>\n\r\n", WAIT).await;
    let mut raw = RawClient::connect(gw.addr).await;
    raw.send(b"GET /f HTTP/1.0\r\nHost: x\r\n\r\n").await;
    raw.read_until(b"open <5>\n", WAIT).await;
    let mut plain = RawClient::connect(gw.addr).await;
    plain.get("/plain", &[]).await;
    plain.read_until(b"5\r\nopen\n\r\n", WAIT).await;

    let url = gw.publish_url();
    assert_eq!(
        publish(&url, &item("6", "5", "a %I %%(n)s\n", &[])).await.0,
        200
    );
    // filtered subscriptions skip it: not their content filters, in their order
    let other_order = item("7", "6", "mismatch\n", &["var-subst", "build-id"]);
    assert_eq!(publish(&url, &other_order).await.0, 200);
    // build-id cannot render it (var-subst's directive): skipped, counted
    assert_eq!(
        publish(&url, &item("8", "7", "bad %(n)s\n", &[])).await.0,
        200
    );
    let named = item("9", "8", "b %I %(x)I\n", &["build-id", "var-subst"]);
    assert_eq!(publish(&url, &named).await.0, 200);

    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    let got = text(chunked.read_until(b"b <9> x\n\r\n", WAIT).await);
    assert_eq!(got, "8\r\na <6> N\n\r\n8\r\nb <9> x\n\r\n");
    let got = text(raw.read_until(b"b <9> x\n", WAIT).await);
    assert_eq!(got, "a <6> N\nb <9> x\n");
    // no content filters: as published, except what names content filters it lacks
    let got = text(plain.read_until(b"bad %(n)s\n\r\n", WAIT).await);
    assert_eq!(got, "c\r\na %I %%(n)s\n\r\na\r\nbad %(n)s\n\r\n");
    assert!(plain.read_for(Duration::from_millis(200)).await.is_empty());
    let errors = "gripway_errors_total{source=\"publisher\",reason=\"filter-error\"}";
    assert_eq!(gw.metric(errors).await, Some(2.0), "one per subscriber");
}

#[tokio::test]
async fn an_initial_body_that_cannot_render_is_the_origins_error() {
    let origin = Origin::start(|_| {
        Reply::ok()
            .header("Grip-Hold", "stream")
            .header("Grip-Channel", "room; filter=build-id")
            .body("open %I\n")
    })
    .await;
    let gw = gripway_to(&origin, &[]);
    let mut c = RawClient::connect(gw.addr).await;
    c.get("/", &[]).await;
    let text = String::from_utf8_lossy(&c.read_to_end(WAIT).await).into_owned();
    assert!(text.starts_with("HTTP/1.1 502 "), "{text}");
    let errors = "gripway_errors_total{source=\"origin\",reason=\"filter-error\"}";
    assert_eq!(gw.metric(errors).await, Some(1.0));
}

#[tokio::test]
async fn websocket_messages_are_rendered_per_connection() {
    let seen = Arc::new(Mutex::new(0));
    let origin = Origin::start(move |r| {
        let events = decode_events(&r.body, &WohLimits::default()).expect("valid events");
        let mut out = Vec::new();
        let mut reply = Reply::ok().header("Content-Type", "application/websocket-events");
        if events.iter().any(|e| e.kind == EventKind::Open) {
            *seen.lock().unwrap() += 1;
            reply = reply.header("Sec-WebSocket-Extensions", "grip");
            out.push(Event::open());
            for c in [
                &br#"c:{"type":"set-meta","name":"n","value":"N"}"#[..],
                br#"c:{"type":"subscribe","channel":"room","filters":["var-subst"]}"#,
            ] {
                out.push(Event::text(c));
            }
        }
        let mut body = Vec::new();
        encode_events(&out, &mut body);
        reply.body(body)
    })
    .await;
    let gw = gripway(&["--route", &format!("* {},over_http", origin.target())]);
    let url = format!("ws://{}/ws", gw.addr);
    let sock = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let (mut ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(url, sock))
        .await
        .expect("handshake in time")
        .expect("accepted");
    for _ in 0..500 {
        if gw.metric("gripway_subscriptions").await == Some(1.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ws_item = |content: &str, filters: &[&str]| {
        json!({"channel": "room", "formats": {"ws-message":
            {"content": content, "content-filters": filters}}})
    };
    let body = json!({"items": [
        ws_item("unknown %(x)s", &[]),
        ws_item("wrong list", &["build-id"]),
        ws_item("hi %(n)s 100%%", &["var-subst"]),
    ]});
    assert_eq!(publish(&gw.publish_url(), &body.to_string()).await.0, 200);
    let m = tokio::time::timeout(WAIT, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(m, Message::text("hi N 100%"));
    ws.send(Message::Close(None)).await.ok();
    let errors = "gripway_errors_total{source=\"publisher\",reason=\"filter-error\"}";
    assert_eq!(gw.metric(errors).await, Some(1.0));
}
