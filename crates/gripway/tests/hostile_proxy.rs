//! Hostile clients and broken origins at the proxy: forged WebSocket-over-HTTP events and
//! headers never reach an origin, and an origin that asks to hold a request on no channel
//! gets the client a 502 instead of a request held forever.

mod common;

use std::time::Duration;

use common::*;

/// A plain (not over-HTTP) route: the forged request must be refused here too.
#[tokio::test]
async fn forged_websocket_events_are_refused_on_every_route() {
    let origin = Origin::start(|_| Reply::ok().body("origin saw it")).await;
    let gw = gripway_to(&origin, &[]);
    let bodies: [&[u8]; 3] = [
        // the attack as found: a harmless Content-Type first, the events type second
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Type: application/websocket-events\r\nConnection-Id: victim\r\nContent-Length: 11\r\n\r\nTEXT 5\r\nhi\r\n",
        // in one header, as a list
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain, Application/WebSocket-Events; x=1\r\nContent-Length: 0\r\n\r\n",
        // with parameters and odd case
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type:  APPLICATION/websocket-events ;charset=utf-8\r\nContent-Length: 0\r\n\r\n",
    ];
    for body in bodies {
        let mut c = RawClient::connect(gw.addr).await;
        c.send(body).await;
        let head = c.read_head().await;
        assert!(head.starts_with("HTTP/1.1 403 "), "{head}");
    }
    assert!(
        origin.requests().is_empty(),
        "the origin saw a forged request"
    );
    assert_eq!(
        gw.metric(
            "gripway_errors_total{source=\"client\",reason=\"websocket-events-from-client\"}"
        )
        .await,
        Some(3.0)
    );
}

#[tokio::test]
async fn websocket_over_http_headers_from_clients_are_stripped() {
    let origin = Origin::start(|_| Reply::ok()).await;
    let gw = gripway_to(&origin, &[]);
    let mut c = RawClient::connect(gw.addr).await;
    c.get(
        "/",
        &[
            "Connection-Id: victim",
            "Meta-User: admin",
            "Meta-Anything-Else: x",
            "Content-Bytes-Replayed: 10",
            "Content-Bytes-Accepted: 10",
            "Keep-Alive-Interval: 1",
            "X-Kept: yes",
        ],
    )
    .await;
    let head = c.read_head().await;
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    let req = origin.last_request();
    for name in [
        "connection-id",
        "meta-user",
        "meta-anything-else",
        "content-bytes-replayed",
        "content-bytes-accepted",
        "keep-alive-interval",
    ] {
        assert_eq!(req.header(name), None, "{name} reached the origin");
    }
    assert_eq!(req.header("x-kept"), Some("yes"));
    assert!(req.header("grip-sig").is_some(), "the proxy still signs");
}

#[tokio::test]
async fn a_hold_without_a_channel_is_the_origins_fault() {
    for channel in [None, Some(""), Some(" , ,")] {
        let origin = Origin::start(move |_| {
            let r = Reply::ok().header("Grip-Hold", "stream").body("held?\n");
            match channel {
                Some(c) => r.header("Grip-Channel", c),
                None => r,
            }
        })
        .await;
        let gw = gripway_to(&origin, &["--log-level", "info"]);
        let mut c = RawClient::connect(gw.addr).await;
        c.get("/", &[]).await;
        let head = c.read_head().await;
        assert!(head.starts_with("HTTP/1.1 502 "), "{channel:?}: {head}");
        assert!(
            c.closed_within(Duration::from_secs(5)).await,
            "{channel:?}: the request is not held"
        );
        assert_eq!(
            gw.metric("gripway_errors_total{source=\"origin\",reason=\"hold-without-channel\"}")
                .await,
            Some(1.0),
            "{channel:?}"
        );
    }
}

#[tokio::test]
async fn a_hold_without_a_channel_says_why_in_debug_mode() {
    let origin = Origin::start(|_| Reply::ok().header("Grip-Hold", "response")).await;
    let route = format!("*,debug {}", origin.target());
    let gw = gripway(&["--route", &route]);
    let mut c = RawClient::connect(gw.addr).await;
    c.get("/", &[]).await;
    let answer = c.read_to_end(WAIT).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 502 "), "{text}");
    assert!(text.contains("Grip-Hold without any channel"), "{text}");
}
