//! Response holds (`Grip-Hold: response`, long-polling): answered by the first published
//! `http-response`, or by the origin's response when the timeout passes.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

fn poll_reply(channel: &str, timeout: &str) -> Reply {
    Reply::ok()
        .header("Content-Type", "application/json")
        .header("Grip-Hold", "response")
        .header("Grip-Channel", channel)
        .header("Grip-Timeout", timeout)
        .header("X-From-Origin", "kept")
        .body("{\"messages\": []}\n")
}

async fn held(gw: &Gripway, path: &str) -> RawClient {
    let mut c = RawClient::connect(gw.addr).await;
    c.get(path, &[]).await;
    // the hold is in place once the subscription shows in the metrics
    for _ in 0..200 {
        if gw
            .metric("gripway_connections{transport=\"http-response\"}")
            .await
            >= Some(1.0)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    c
}

#[tokio::test]
async fn published_response_answers_the_poll() {
    let origin = Origin::start(|_| poll_reply("lp", "60")).await;
    let gw = gripway_to(&origin, &[]);
    let mut c = held(&gw, "/poll").await;
    assert!(
        c.read_for(Duration::from_millis(300)).await.is_empty(),
        "nothing before a publish"
    );
    let body = r#"{"items":[{"channel":"lp","formats":{"http-response":{
        "code":201,"reason":"Made It","headers":{"X-Pushed":"1","Content-Type":"text/plain"},"body":"hello poller\n"}}}]}"#;
    assert_eq!(publish(&gw.publish_url(), body).await.0, 200);
    let head = c.read_head().await;
    let lower = head.to_ascii_lowercase();
    assert!(head.starts_with("HTTP/1.1 201 Made It\r\n"), "{head}");
    assert!(lower.contains("x-pushed: 1\r\n"), "{head}");
    assert!(
        lower.contains("x-from-origin: kept\r\n"),
        "inherits the timeout response's headers: {head}"
    );
    assert!(
        lower.contains("content-type: text/plain\r\n"),
        "pushed headers override: {head}"
    );
    assert!(lower.contains("content-length: 13\r\n"), "{head}");
    assert!(!lower.contains("grip-"), "{head}");
    c.read_until(b"hello poller\n", WAIT).await;
}

#[tokio::test]
async fn timeout_sends_the_origin_response_then_serves_the_next_request() {
    let origin = Origin::start(|r| {
        if r.path == "/poll" {
            poll_reply("quiet", "1") // raised to the 5 s minimum
        } else {
            Reply::ok().body("next request served")
        }
    })
    .await;
    let gw = gripway_to(&origin, &[]);
    let started = Instant::now();
    let mut c = held(&gw, "/poll").await;
    let head = c.read_head().await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(4900) && waited < Duration::from_secs(8),
        "{waited:?}"
    );
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("content-length: 17\r\n"),
        "{head}"
    );
    c.read_until(b"{\"messages\": []}\n", WAIT).await;
    c.get("/again", &[]).await;
    c.read_until(b"next request served", WAIT).await;
}

#[tokio::test]
async fn body_patch_applies_to_the_timeout_body() {
    let origin = Origin::start(|_| poll_reply("patchme", "60")).await;
    let gw = gripway_to(&origin, &[]);
    let mut c = held(&gw, "/").await;
    let body = r#"{"items":[{"channel":"patchme","formats":{"http-response":{
        "body-patch":[{"op":"add","path":"/messages/-","value":"hi"}]}}}]}"#;
    publish(&gw.publish_url(), body).await;
    c.read_until(b"{\"messages\":[\"hi\"]}\n", WAIT).await;
}

#[tokio::test]
async fn hint_makes_the_proxy_ask_the_origin_again() {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let origin = Origin::start(move |_| {
        if seen.fetch_add(1, Ordering::SeqCst) == 0 {
            poll_reply("hinted", "60")
        } else {
            Reply::ok().body("fresh data from the origin\n")
        }
    })
    .await;
    let gw = gripway_to(&origin, &[]);
    let mut c = held(&gw, "/data").await;
    let hint = r#"{"items":[{"channel":"hinted","formats":{"http-response":{"action":"hint"}}}]}"#;
    publish(&gw.publish_url(), hint).await;
    c.read_until(b"fresh data from the origin\n", WAIT).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(origin.requests()[1].path, "/data");
}

#[tokio::test]
async fn stream_only_items_do_not_answer_polls() {
    let origin = Origin::start(|_| poll_reply("mixed", "60")).await;
    let gw = gripway_to(&origin, &[]);
    let mut c = held(&gw, "/").await;
    publish(
        &gw.publish_url(),
        &stream_item("mixed", "for streams only\n"),
    )
    .await;
    assert!(c.read_for(Duration::from_millis(300)).await.is_empty());
    let body =
        r#"{"items":[{"channel":"mixed","formats":{"http-response":{"body":"for polls\n"}}}]}"#;
    publish(&gw.publish_url(), body).await;
    c.read_until(b"for polls\n", WAIT).await;
}

#[tokio::test]
async fn many_pollers_each_answered_once() {
    let origin = Origin::start(|_| poll_reply("crowd", "60")).await;
    let gw = gripway_to(&origin, &[]);
    let mut clients = Vec::new();
    for _ in 0..50 {
        let mut c = RawClient::connect(gw.addr).await;
        c.get("/", &[]).await;
        clients.push(c);
    }
    for _ in 0..200 {
        if gw.metric("gripway_subscriptions").await == Some(50.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let body = r#"{"items":[{"channel":"crowd","formats":{"http-response":{"body":"one\n"}}},
                            {"channel":"crowd","formats":{"http-response":{"body":"two\n"}}}]}"#;
    publish(&gw.publish_url(), body).await;
    for c in &mut clients {
        c.read_until(b"\r\n\r\none\n", WAIT).await;
        assert!(
            c.read_for(Duration::from_millis(50)).await.is_empty(),
            "only the first message answers"
        );
    }
    assert_eq!(gw.metric("gripway_subscriptions").await, Some(0.0));
}

/// Issue 7's attack: `copy` from `""` 40 times, each doubling the document; `first` is an
/// operation put before the copies.
fn doubling_patch(channel: &str, first: Option<&str>) -> String {
    let mut ops: Vec<String> = first.into_iter().map(str::to_owned).collect();
    ops.extend((0..40).map(|i| format!(r#"{{"op":"copy","from":"","path":"/k{i}"}}"#)));
    format!(
        r#"{{"items":[{{"channel":"{channel}","formats":{{"http-response":{{"body-patch":[{}]}}}}}}]}}"#,
        ops.join(",")
    )
}

#[tokio::test]
async fn a_doubling_body_patch_is_refused_when_published() {
    let origin = Origin::start(|_| poll_reply("bomb", "60")).await;
    let gw = gripway_to(&origin, &[]);
    let mut c = held(&gw, "/").await;
    let (status, text) = publish(&gw.publish_url(), &doubling_patch("bomb", None)).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("body-patch"), "{text}");
    assert_eq!(
        gw.metric("gripway_errors_total{source=\"publisher\",reason=\"invalid-items\"}")
            .await,
        Some(1.0)
    );
    assert!(c.read_for(Duration::from_millis(200)).await.is_empty());
}

#[tokio::test]
async fn a_body_patch_that_outgrows_the_limit_on_the_template_is_skipped() {
    let origin = Origin::start(|_| poll_reply("bomb2", "60")).await;
    let mut gw = gripway_to(&origin, &[]);
    let mut c = held(&gw, "/").await;
    let rss_before = gw.rss_kib();
    // the leading `test` needs the template, so the size is only known where it applies
    let bomb = doubling_patch(
        "bomb2",
        Some(r#"{"op":"test","path":"/messages","value":[]}"#),
    );
    let (status, text) = publish(&gw.publish_url(), &bomb).await;
    assert_eq!(status, 200, "{text}");
    assert!(
        c.read_for(Duration::from_millis(500)).await.is_empty(),
        "nothing is sent for a skipped patch"
    );
    let skipped = "gripway_errors_total{source=\"publisher\",reason=\"body-patch-too-large\"}";
    let mut counted = None;
    for _ in 0..100 {
        counted = gw.metric(skipped).await;
        if counted.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(counted, Some(1.0));
    assert!(gw.is_running());
    if let (Some(before), Some(after)) = (rss_before, gw.rss_kib()) {
        assert!(
            after < before + 50 * 1024,
            "RSS grew from {before} KiB to {after} KiB"
        );
    }
    // the hold is still there for the next message
    let body = r#"{"items":[{"channel":"bomb2","formats":{"http-response":{
        "body-patch":[{"op":"add","path":"/messages/-","value":"after"}]}}}]}"#;
    assert_eq!(publish(&gw.publish_url(), body).await.0, 200);
    c.read_until(b"{\"messages\":[\"after\"]}\n", WAIT).await;
}
