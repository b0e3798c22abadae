//! The publish API: Pushpin's and Fastly's paths, validation, limits, authentication, and
//! what the broker does with items (dedup, ordering).

mod common;

use std::time::{Duration, Instant};

use common::*;
use gripway_proto::sig::{GripSigner, SigningKey};

fn sse_origin() -> impl Fn(&OriginRequest) -> Reply {
    |r: &OriginRequest| {
        let channel = r.path.trim_start_matches('/').to_string();
        Reply::ok()
            .header("Content-Type", "text/event-stream")
            .header("Grip-Hold", "stream")
            .header("Grip-Channel", &channel)
            .body("ready\n")
    }
}

async fn subscriber(gw: &Gripway, channel: &str) -> RawClient {
    let mut c = RawClient::connect(gw.addr).await;
    c.get(&format!("/{channel}"), &[]).await;
    c.read_until(b"ready\n\r\n", WAIT).await;
    c
}

fn write_config(text: &str) -> TempDir {
    let dir = TempDir::new("publish");
    dir.write("gripway.toml", text);
    dir
}

#[tokio::test]
async fn pushpin_and_fastly_paths_with_and_without_slash() {
    let origin = Origin::start(sse_origin()).await;
    let gw = gripway_to(&origin, &[]);
    let mut c = subscriber(&gw, "paths").await;
    let base = format!("http://{}", gw.publish_addr);
    for (i, path) in [
        "/publish/",
        "/publish",
        "/service/SVC123/publish/",
        "/service/SVC123/publish",
    ]
    .iter()
    .enumerate()
    {
        let (status, body) = publish(
            &format!("{base}{path}"),
            &stream_item("paths", &format!("via {i}\n")),
        )
        .await;
        assert_eq!((status, body.as_str()), (200, "Published\n"), "{path}");
        c.read_until(format!("via {i}\n").as_bytes(), WAIT).await;
    }
    let mut raw = RawClient::connect(gw.publish_addr).await;
    raw.send(b"GET /publish/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    let text = String::from_utf8_lossy(&raw.read_to_end(WAIT).await).into_owned();
    assert!(text.starts_with("HTTP/1.1 405"), "{text}");
    assert!(text.to_ascii_lowercase().contains("allow: post"), "{text}");
    assert_eq!(publish(&format!("{base}/nothing/"), "{}").await.0, 404);
}

#[tokio::test]
async fn validation_errors_name_the_item_and_field() {
    let gw = gripway(&[]);
    let url = gw.publish_url();
    let (status, body) = publish(&url, "{not json").await;
    assert_eq!(status, 400);
    assert!(body.to_lowercase().contains("json"), "{body}");
    let (status, body) = publish(&url, r#"{"nothing":[]}"#).await;
    assert_eq!(status, 400);
    assert!(body.contains("items"), "{body}");
    let bad_second = r#"{"items":[{"channel":"a","formats":{"http-stream":{"content":"ok"}}},
                                  {"channel":"b","formats":{"http-stream":{}}}]}"#;
    let (status, body) = publish(&url, bad_second).await;
    assert_eq!(status, 400);
    assert!(
        body.contains("items[1]") && body.contains("http-stream"),
        "{body}"
    );
    let no_channel = r#"{"items":[{"formats":{"http-stream":{"content":"x"}}}]}"#;
    let (status, body) = publish(&url, no_channel).await;
    assert_eq!(status, 400);
    assert!(
        body.contains("items[0]") && body.contains("channel"),
        "{body}"
    );
}

#[tokio::test]
async fn a_rejected_request_publishes_nothing() {
    let origin = Origin::start(sse_origin()).await;
    let gw = gripway_to(&origin, &[]);
    let mut c = subscriber(&gw, "atomic").await;
    let body = r#"{"items":[{"channel":"atomic","formats":{"http-stream":{"content":"first\n"}}},
                            {"channel":"atomic","formats":{"http-stream":{"action":"explode"}}}]}"#;
    assert_eq!(publish(&gw.publish_url(), body).await.0, 400);
    assert!(c.read_for(Duration::from_millis(300)).await.is_empty());
}

#[tokio::test]
async fn content_and_body_limits_give_413() {
    let dir = write_config("[publish]\nmax_body = 100000\n");
    let config = dir.path().join("gripway.toml");
    let gw = gripway(&["--config", config.to_str().unwrap()]);
    // Fanout's path keeps Fanout's 32,767-byte content limit
    let fastly = format!("http://{}/service/abc/publish/", gw.publish_addr);
    let at_limit = stream_item("big", &"x".repeat(32_767));
    assert_eq!(publish(&fastly, &at_limit).await.0, 200);
    let over = stream_item("big", &"x".repeat(32_768));
    let (status, body) = publish(&fastly, &over).await;
    assert_eq!(status, 413);
    assert!(
        body.contains("items[0]") && body.contains("32767"),
        "{body}"
    );
    // Pushpin's path accepts what Pushpin accepts: content bounded only by the body
    assert_eq!(publish(&gw.publish_url(), &over).await.0, 200);
    let huge = stream_item("big", &"y".repeat(150_000));
    assert_eq!(publish(&gw.publish_url(), &huge).await.0, 413);
    assert_eq!(publish(&fastly, &huge).await.0, 413);
    assert_eq!(
        gw.metric("gripway_errors_total{source=\"publisher\",reason=\"items-too-large\"}")
            .await,
        Some(1.0)
    );
    assert_eq!(
        gw.metric("gripway_errors_total{source=\"publisher\",reason=\"body-too-large\"}")
            .await,
        Some(2.0)
    );
}

#[tokio::test]
async fn content_limit_per_path_is_configurable() {
    let dir = write_config("[publish]\nmax_content = 100\nfastly_max_content = 50\n");
    let config = dir.path().join("gripway.toml");
    let gw = gripway(&["--config", config.to_str().unwrap()]);
    let fastly = format!("http://{}/service/abc/publish/", gw.publish_addr);
    assert_eq!(
        publish(&gw.publish_url(), &stream_item("c", &"x".repeat(100)))
            .await
            .0,
        200
    );
    assert_eq!(
        publish(&gw.publish_url(), &stream_item("c", &"x".repeat(101)))
            .await
            .0,
        413
    );
    assert_eq!(
        publish(&fastly, &stream_item("c", &"x".repeat(50))).await.0,
        200
    );
    assert_eq!(
        publish(&fastly, &stream_item("c", &"x".repeat(51))).await.0,
        413
    );
}

#[tokio::test]
async fn a_64_kib_ws_message_published_on_pushpins_path_reaches_a_websocket() {
    use futures_util::StreamExt as _;
    use tokio_tungstenite::tungstenite::Message;
    let gw = gripway(&[]);
    let url = format!("ws://{}/test/websocket", gw.addr);
    let sock = tokio::net::TcpStream::connect(gw.addr)
        .await
        .expect("connect");
    let (mut ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(url, sock))
        .await
        .expect("handshake in time")
        .expect("handshake accepted");
    for _ in 0..500 {
        if gw.metric("gripway_subscriptions").await == Some(1.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let content = "z".repeat(64 * 1024);
    let body = format!(
        r#"{{"items":[{{"channel":"test","formats":{{"ws-message":{{"content":"{content}"}}}}}}]}}"#
    );
    let (status, text) = publish(&gw.publish_url(), &body).await;
    assert_eq!(status, 200, "{text}");
    let got = loop {
        let m = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a message in time")
            .expect("stream open")
            .expect("no error");
        if let Message::Text(t) = m {
            break t.to_string();
        }
    };
    assert_eq!(got.len(), content.len());
    assert!(got == content);
    // the same is over Fanout's limit on its path
    let fastly = format!("http://{}/service/abc/publish/", gw.publish_addr);
    assert_eq!(publish(&fastly, &body).await.0, 413);
}

#[tokio::test]
async fn every_refusal_is_counted_as_the_publishers() {
    let gw = gripway(&[]);
    let base = format!("http://{}", gw.publish_addr);
    assert_eq!(publish(&format!("{base}/nowhere"), "{}").await.0, 404);
    assert_eq!(publish(&gw.publish_url(), "not json").await.0, 400);
    let (status, _) = publish_with(
        &gw.publish_url(),
        r#"{"items":[]}"#,
        &[("Accept", "image/png")],
    )
    .await;
    assert_eq!(status, 406);
    for (reason, n) in [
        ("not-found", 1.0),
        ("invalid-items", 1.0),
        ("not-acceptable", 1.0),
    ] {
        let sample = format!("gripway_errors_total{{source=\"publisher\",reason=\"{reason}\"}}");
        assert_eq!(gw.metric(&sample).await, Some(n), "{sample}");
    }
}

#[tokio::test]
async fn json_answers_and_unacceptable_accept() {
    let gw = gripway(&[]);
    let url = gw.publish_url();
    let (status, body) = publish_with(
        &url,
        &stream_item("x", "y"),
        &[("Accept", "application/json")],
    )
    .await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["message"], "Published");
    assert_eq!(
        publish_with(&url, &stream_item("x", "y"), &[("Accept", "image/png")])
            .await
            .0,
        406
    );
}

#[tokio::test]
async fn keys_basic_and_jwt_authentication() {
    let dir = write_config(
        "[publish.auth]\nkeys = [\"static-key\"]\nbasic = \"pub:secret\"\njwt_keys = [\"jwt-secret\"]\njwt_iss = \"my-realm\"\n",
    );
    let config = dir.path().join("gripway.toml");
    let gw = gripway(&["--config", config.to_str().unwrap()]);
    let fastly = format!("http://{}/service/abc/publish/", gw.publish_addr);
    let url = gw.publish_url();
    let item = stream_item("auth", "x");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let jwt = |iss: &str, key: &[u8], at: u64| {
        GripSigner::new(iss.into(), SigningKey::hmac(key).unwrap())
            .token(at)
            .to_string()
    };

    assert_eq!(publish(&url, &item).await.0, 401, "no credentials");
    assert_eq!(
        publish_with(&url, &item, &[("Authorization", "Bearer wrong")])
            .await
            .0,
        401
    );
    assert_eq!(
        publish_with(&url, &item, &[("Authorization", "Bearer static-key")])
            .await
            .0,
        200
    );
    assert_eq!(
        publish_with(&fastly, &item, &[("Fastly-Key", "static-key")])
            .await
            .0,
        200
    );
    assert_eq!(
        publish_with(&url, &item, &[("Authorization", "Basic cHViOnNlY3JldA==")])
            .await
            .0,
        200
    );
    assert_eq!(
        publish_with(&url, &item, &[("Authorization", "Basic cHViOm5vcGU=")])
            .await
            .0,
        401
    );
    let good = format!("Bearer {}", jwt("my-realm", b"jwt-secret", now));
    assert_eq!(
        publish_with(&url, &item, &[("Authorization", &good)])
            .await
            .0,
        200
    );
    let expired = format!("Bearer {}", jwt("my-realm", b"jwt-secret", now - 7200));
    assert_eq!(
        publish_with(&url, &item, &[("Authorization", &expired)])
            .await
            .0,
        401
    );
    let wrong_iss = format!("Bearer {}", jwt("other", b"jwt-secret", now));
    assert_eq!(
        publish_with(&url, &item, &[("Authorization", &wrong_iss)])
            .await
            .0,
        401
    );
    let wrong_key = format!("Bearer {}", jwt("my-realm", b"not-it", now));
    assert_eq!(
        publish_with(&url, &item, &[("Authorization", &wrong_key)])
            .await
            .0,
        401
    );
    // {"alg":"none"} with valid claims and no signature
    let claims = format!("{{\"iss\":\"my-realm\",\"exp\":{}}}", now + 600);
    let none = format!(
        "Bearer eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
        b64url(claims.as_bytes())
    );
    assert_eq!(
        publish_with(&url, &item, &[("Authorization", &none)])
            .await
            .0,
        401
    );
}

#[tokio::test]
async fn open_publish_api_must_stay_on_loopback() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gripway"))
        .args([
            "--port",
            "127.0.0.1:0",
            "--admin-port",
            "off",
            "--publish-port",
            "0.0.0.0:0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("publish API") && err.contains("auth"), "{err}");
}

#[tokio::test]
async fn duplicate_ids_are_delivered_once() {
    let origin = Origin::start(sse_origin()).await;
    let gw = gripway_to(&origin, &[]);
    let mut c = subscriber(&gw, "dedup").await;
    let item = |id: &str, text: &str| {
        serde_json::json!({"items": [{"channel": "dedup", "id": id, "formats": {"http-stream": {"content": text}}}]})
            .to_string()
    };
    assert_eq!(
        publish(&gw.publish_url(), &item("1", "first\n")).await.0,
        200
    );
    assert_eq!(
        publish(&gw.publish_url(), &item("1", "again\n")).await.0,
        200,
        "accepted"
    );
    assert_eq!(
        publish(&gw.publish_url(), &item("2", "second\n")).await.0,
        200
    );
    let got = c.read_until(b"second\n", WAIT).await;
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.contains("first\n") && !text.contains("again"),
        "{text}"
    );
    assert!(gw.metric("gripway_messages_duplicate_total").await >= Some(1.0));
}

#[tokio::test]
async fn prev_id_reorders_and_late_items_go_out_after_the_wait() {
    let dir = write_config("[publish]\norder_wait_ms = 700\n");
    let origin = Origin::start(sse_origin()).await;
    let route = format!("* {}", origin.target());
    let config = dir.path().join("gripway.toml");
    let gw = gripway(&["--config", config.to_str().unwrap(), "--route", &route]);
    let mut c = subscriber(&gw, "seq").await;
    let item = |id: &str, prev: Option<&str>| {
        let mut v = serde_json::json!({"channel": "seq", "id": id, "formats": {"http-stream": {"content": format!("<{id}>")}}});
        if let Some(p) = prev {
            v["prev-id"] = p.into();
        }
        serde_json::json!({ "items": [v] }).to_string()
    };
    publish(&gw.publish_url(), &item("1", None)).await;
    c.read_until(b"<1>", WAIT).await;
    publish(&gw.publish_url(), &item("3", Some("2"))).await;
    publish(&gw.publish_url(), &item("2", Some("1"))).await;
    let got = c.read_until(b"<3>", WAIT).await;
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.find("<2>").unwrap() < text.find("<3>").unwrap(),
        "{text}"
    );
    // a predecessor that never comes: the item waits, then goes out anyway
    let started = Instant::now();
    publish(&gw.publish_url(), &item("5", Some("4"))).await;
    c.read_until(b"<5>", WAIT).await;
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(600), "{waited:?}");
}

fn b64url(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}
