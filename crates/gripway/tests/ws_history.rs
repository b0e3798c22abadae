//! A WebSocket's missed items are recovered like a stream's: the origin subscribes the
//! connection with `c:{"type":"subscribe","channel":…,"prev-id":…}` and the client first
//! receives the kept items that followed that id, then live ones, each once, in order.

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use gripway_proto::woh::{decode_events, encode_events, Event, EventKind, WohLimits};
use tokio_tungstenite::tungstenite::Message;

/// A WebSocket-over-HTTP origin that subscribes each connection to `room` after `prev`.
async fn origin_with_prev_id(prev: &'static str) -> Origin {
    Origin::start(move |r| {
        let events = decode_events(&r.body, &WohLimits::default()).expect("valid events");
        let mut reply = Reply::ok().header("Content-Type", "application/websocket-events");
        let mut out = Vec::new();
        if events.first().is_some_and(|e| e.kind == EventKind::Open) {
            reply = reply.header("Sec-WebSocket-Extensions", "grip");
            out.push(Event::open());
            let control =
                format!("c:{{\"type\":\"subscribe\",\"channel\":\"room\",\"prev-id\":\"{prev}\"}}");
            out.push(Event::text(control.into_bytes()));
        }
        let mut body = Vec::new();
        encode_events(&out, &mut body);
        reply.body(body)
    })
    .await
}

fn ws_items(ids: std::ops::Range<u32>) -> String {
    let items: Vec<_> = ids
        .map(|n| {
            serde_json::json!({"channel": "room", "id": format!("w{n}"),
                "formats": {"ws-message": {"content": format!("w{n}")}}})
        })
        .collect();
    serde_json::json!({ "items": items }).to_string()
}

async fn texts(
    ws: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    n: usize,
) -> Vec<String> {
    let mut out = Vec::new();
    while out.len() < n {
        let m = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a message in time")
            .expect("open")
            .expect("no error");
        if let Message::Text(t) = m {
            out.push(t.to_string());
        }
    }
    out
}

#[tokio::test]
async fn subscribe_with_prev_id_sends_what_followed_it_then_live_messages() {
    let origin = origin_with_prev_id("w4").await;
    let gw = gripway(&["--route", &format!("* {},over_http", origin.target())]);
    assert_eq!(publish(&gw.publish_url(), &ws_items(0..8)).await.0, 200);
    for _ in 0..200 {
        if gw.metric("gripway_history_items").await == Some(8.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let url = format!("ws://{}/ws", gw.addr);
    let sock = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(url, sock).await.unwrap();
    let mut got = texts(&mut ws, 3).await;
    assert_eq!(publish(&gw.publish_url(), &ws_items(8..10)).await.0, 200);
    got.extend(texts(&mut ws, 2).await);
    assert_eq!(got, ["w5", "w6", "w7", "w8", "w9"]);
    assert_eq!(
        gw.metric("gripway_history_recoveries_total{result=\"after\"}")
            .await,
        Some(1.0)
    );
}
