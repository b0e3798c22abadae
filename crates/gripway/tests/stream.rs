//! Stream holds (`Grip-Hold: stream`, SSE): the origin's response first, then every published
//! message appended, framed exactly, until the client leaves or a publisher closes it.

mod common;

use std::time::Duration;

use common::*;

fn sse_origin_reply(channels: &[&str]) -> Reply {
    let mut r = Reply::ok()
        .header("Content-Type", "text/event-stream")
        .header("Grip-Hold", "stream");
    for c in channels {
        r = r.header("Grip-Channel", c);
    }
    r.body("event: open\ndata: welcome\n\n")
}

#[tokio::test]
async fn initial_body_then_published_events_exact_bytes() {
    let origin = Origin::start(|_| {
        sse_origin_reply(&["news"])
            .header("X-Kept", "1")
            .header("Grip-Foo", "x")
    })
    .await;
    let gw = gripway_to(&origin, &[]);
    let mut c = RawClient::connect(gw.addr).await;
    c.get("/events", &[]).await;
    let head = c.read_head().await;
    let lower = head.to_ascii_lowercase();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        lower.contains("content-type: text/event-stream\r\n"),
        "{head}"
    );
    assert!(lower.contains("transfer-encoding: chunked\r\n"), "{head}");
    assert!(lower.contains("x-kept: 1\r\n"));
    assert!(
        !lower.contains("grip-"),
        "no Grip-* header reaches the client: {head}"
    );
    assert!(!lower.contains("content-length"), "{head}");
    c.read_until(b"1b\r\nevent: open\ndata: welcome\n\n\r\n", WAIT)
        .await;

    let (status, body) = publish(
        &gw.publish_url(),
        &stream_item("news", "event: message\ndata: hello\n\n"),
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "Published\n"));
    c.read_until(b"1c\r\nevent: message\ndata: hello\n\n\r\n", WAIT)
        .await;
}

#[tokio::test]
async fn messages_arrive_in_publish_order_on_every_channel() {
    let origin = Origin::start(|_| sse_origin_reply(&["a", "b"])).await;
    let gw = gripway_to(&origin, &[]);
    let mut clients = Vec::new();
    for _ in 0..20 {
        let mut c = RawClient::connect(gw.addr).await;
        c.get("/", &[]).await;
        c.read_until(b"welcome\n\n\r\n", WAIT).await;
        clients.push(c);
    }
    // 200 items over two channels, in several requests, some batched
    let mut expected = String::new();
    for batch in 0..20 {
        let items: Vec<_> = (0..10)
            .map(|i| {
                let n = batch * 10 + i;
                let ch = if n % 2 == 0 { "a" } else { "b" };
                serde_json::json!({"channel": ch, "formats": {"http-stream": {"content": format!("m{n};")}}})
            })
            .collect();
        let body = serde_json::json!({ "items": items }).to_string();
        assert_eq!(publish(&gw.publish_url(), &body).await.0, 200);
    }
    // order holds per channel (channels are independent streams)
    let mut expected_b = String::new();
    for n in 0..200 {
        if n % 2 == 0 {
            expected.push_str(&format!("m{n};"));
        } else {
            expected_b.push_str(&format!("m{n};"));
        }
    }
    for c in &mut clients {
        let mut got = Vec::new();
        let (mut seen_a, mut seen_b) = (String::new(), String::new());
        while !(seen_a.ends_with("m198;") && seen_b.ends_with("m199;")) {
            got.extend(c.read_until(b";\r\n", WAIT).await);
            let text = String::from_utf8_lossy(&got);
            seen_a.clear();
            seen_b.clear();
            for piece in text.split("\r\n").filter(|p| p.starts_with('m')) {
                let n: u32 = piece[1..piece.len() - 1].parse().unwrap();
                if n.is_multiple_of(2) {
                    seen_a.push_str(piece)
                } else {
                    seen_b.push_str(piece)
                }
            }
        }
        assert_eq!(
            seen_a, expected,
            "every message once, in order, on channel a"
        );
        assert_eq!(
            seen_b, expected_b,
            "every message once, in order, on channel b"
        );
    }
}

#[tokio::test]
async fn only_subscribed_channels_and_route_prefix() {
    let origin = Origin::start(|_| sse_origin_reply(&["mine"])).await;
    let route = format!("*,prefix=app1- {}", origin.target());
    let gw = gripway(&["--route", &route]);
    let mut c = RawClient::connect(gw.addr).await;
    c.get("/", &[]).await;
    c.read_until(b"welcome\n\n\r\n", WAIT).await;
    publish(&gw.publish_url(), &stream_item("mine", "unprefixed\n")).await;
    publish(&gw.publish_url(), &stream_item("app1-other", "other\n")).await;
    publish(&gw.publish_url(), &stream_item("app1-mine", "prefixed\n")).await;
    let got = c.read_until(b"prefixed\n", WAIT).await;
    let text = String::from_utf8_lossy(&got);
    assert!(
        !text.contains("unprefixed") && !text.contains("other"),
        "{text}"
    );
}

#[tokio::test]
async fn http10_clients_get_raw_content_and_close() {
    let origin = Origin::start(|_| sse_origin_reply(&["c"])).await;
    let gw = gripway_to(&origin, &[]);
    let mut c = RawClient::connect(gw.addr).await;
    c.send(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").await;
    let head = c.read_head().await;
    assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding"),
        "{head}"
    );
    c.read_until(b"event: open\ndata: welcome\n\n", WAIT).await;
    publish(&gw.publish_url(), &stream_item("c", "data: x\n\n")).await;
    let got = c.read_until(b"data: x\n\n", WAIT).await;
    assert_eq!(got, b"data: x\n\n", "no chunk framing for HTTP/1.0");
    let close = r#"{"items":[{"channel":"c","formats":{"http-stream":{"action":"close"}}}]}"#;
    publish(&gw.publish_url(), close).await;
    assert!(c.closed_within(WAIT).await);
}

#[tokio::test]
async fn publisher_close_ends_the_stream_and_the_connection_is_reused() {
    let origin = Origin::start(|r| {
        if r.path == "/stream" {
            sse_origin_reply(&["closeme"])
        } else {
            Reply::ok().body("second request")
        }
    })
    .await;
    let gw = gripway_to(&origin, &[]);
    let mut c = RawClient::connect(gw.addr).await;
    c.get("/stream", &[]).await;
    c.read_until(b"welcome\n\n\r\n", WAIT).await;
    let body = r#"{"items":[{"channel":"closeme","formats":{"http-stream":{"content":"last\n"}}},
                            {"channel":"closeme","formats":{"http-stream":{"action":"close"}}}]}"#;
    publish(&gw.publish_url(), body).await;
    c.read_until(b"5\r\nlast\n\r\n0\r\n\r\n", WAIT).await;
    c.get("/after", &[]).await;
    c.read_until(b"second request", WAIT).await;
}

#[tokio::test]
async fn keep_alive_data_when_idle() {
    let origin = Origin::start(|_| {
        sse_origin_reply(&["ka"]).header("Grip-Keep-Alive", ":\\n\\n; format=cstring; timeout=1")
    })
    .await;
    let gw = gripway_to(&origin, &[]);
    let mut c = RawClient::connect(gw.addr).await;
    c.get("/", &[]).await;
    c.read_until(b"welcome\n\n\r\n", WAIT).await;
    // a keep-alive comment chunk arrives within about a second of quiet, and keeps coming
    c.read_until(b"3\r\n:\n\n\r\n", Duration::from_secs(3))
        .await;
    c.read_until(b"3\r\n:\n\n\r\n", Duration::from_secs(3))
        .await;
}

#[tokio::test]
async fn grip_status_and_expose_headers_shape_the_response() {
    let origin = Origin::start(|_| {
        sse_origin_reply(&["s"])
            .header("Grip-Status", "202 Accepted For Streaming")
            .header("Grip-Expose-Headers", "Content-Type, X-Public")
            .header("X-Public", "yes")
            .header("X-Private", "no")
    })
    .await;
    let gw = gripway_to(&origin, &[]);
    let mut c = RawClient::connect(gw.addr).await;
    c.get("/", &[]).await;
    let head = c.read_head().await;
    let lower = head.to_ascii_lowercase();
    assert!(
        head.starts_with("HTTP/1.1 202 Accepted For Streaming\r\n"),
        "{head}"
    );
    assert!(lower.contains("x-public: yes"), "{head}");
    assert!(!lower.contains("x-private"), "{head}");
}

#[tokio::test]
async fn grip_instruct_json_form() {
    let origin = Origin::start(|_| {
        Reply::ok().header("Content-Type", "application/grip-instruct").body(
            r#"{"hold":{"mode":"stream","channels":[{"name":"json,chan"}]},
                "response":{"code":200,"headers":{"Content-Type":"text/plain"},"body":"hi from json\n"}}"#,
        )
    })
    .await;
    let gw = gripway_to(&origin, &[]);
    let mut c = RawClient::connect(gw.addr).await;
    c.get("/", &[]).await;
    let head = c.read_head().await;
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain"),
        "{head}"
    );
    c.read_until(b"hi from json\n", WAIT).await;
    publish(&gw.publish_url(), &stream_item("json,chan", "published\n")).await;
    c.read_until(b"published\n", WAIT).await;
}

#[tokio::test]
async fn bad_instructions_give_502_with_reason_in_debug_mode() {
    let origin = Origin::start(|_| {
        Reply::ok()
            .header("Grip-Hold", "Stream")
            .header("Grip-Channel", "x")
    })
    .await;
    let route = format!("*,debug {}", origin.target());
    let gw = gripway(&["--route", &route]);
    let mut c = RawClient::connect(gw.addr).await;
    c.get("/", &[]).await;
    let text = String::from_utf8_lossy(&c.read_to_end(WAIT).await).into_owned();
    assert!(text.starts_with("HTTP/1.1 502 "), "{text}");
    assert!(
        text.contains("Grip-Hold"),
        "the reason names the header: {text}"
    );

    let gw = gripway_to(&origin, &[]);
    let mut c = RawClient::connect(gw.addr).await;
    c.get("/", &[]).await;
    let text = String::from_utf8_lossy(&c.read_to_end(WAIT).await).into_owned();
    assert!(text.starts_with("HTTP/1.1 502 "), "{text}");
    assert!(
        !text.contains("Grip-Hold"),
        "no details outside debug mode: {text}"
    );
}

#[tokio::test]
async fn skip_self_filter_uses_subscriber_meta() {
    let origin = Origin::start(|_| {
        sse_origin_reply(&["room; filter=skip-self"]).header("Grip-Set-Meta", "user=\"alice\"")
    })
    .await;
    let gw = gripway_to(&origin, &[]);
    let mut c = RawClient::connect(gw.addr).await;
    c.get("/", &[]).await;
    c.read_until(b"welcome\n\n\r\n", WAIT).await;
    let from = |who: &str, text: &str| {
        serde_json::json!({"items": [{"channel": "room", "meta": {"sender": who},
            "formats": {"http-stream": {"content": text}}}]})
        .to_string()
    };
    publish(&gw.publish_url(), &from("alice", "own message\n")).await;
    publish(&gw.publish_url(), &from("bob", "bob says hi\n")).await;
    let got = c.read_until(b"bob says hi\n", WAIT).await;
    assert!(!String::from_utf8_lossy(&got).contains("own message"));
}

#[tokio::test]
async fn client_gone_leaves_nothing_subscribed() {
    let origin = Origin::start(|_| sse_origin_reply(&["gone1", "gone2"])).await;
    let gw = gripway_to(&origin, &[]);
    let mut c = RawClient::connect(gw.addr).await;
    c.get("/", &[]).await;
    c.read_until(b"welcome\n\n\r\n", WAIT).await;
    assert_eq!(gw.metric("gripway_subscriptions").await, Some(2.0));
    assert_eq!(
        gw.metric("gripway_connections{transport=\"http-stream\"}")
            .await,
        Some(1.0)
    );
    drop(c);
    let mut left = None;
    for _ in 0..100 {
        left = gw.metric("gripway_subscriptions").await;
        if left == Some(0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(left, Some(0.0));
    assert_eq!(gw.metric("gripway_channels").await, Some(0.0));
    assert_eq!(
        gw.metric("gripway_connections{transport=\"http-stream\"}")
            .await,
        Some(0.0)
    );
}
