//! A long-poll whose origin keeps answering with a stale `prev-id`: the proxy asks it again,
//! paced and capped, then answers the origin's held response instead of looping.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[tokio::test]
async fn stale_prev_id_re_requests_are_paced_and_capped() {
    // the origin never catches up: it always says its answer reflects id 1
    let origin = Origin::start(|_| {
        Reply::ok()
            .header("Content-Type", "application/json")
            .header("Grip-Hold", "response")
            .header("Grip-Channel", "st; prev-id=1")
            .header("Grip-Timeout", "60")
            .body("{\"messages\": []}\n")
    })
    .await;
    let gw = gripway_to(&origin, &[]);
    // the proxy knows a newer id on the channel
    let item = r#"{"items":[{"channel":"st","id":"2","formats":{"http-stream":{"content":"x"}}}]}"#;
    assert_eq!(publish(&gw.publish_url(), item).await.0, 200);
    for _ in 0..200 {
        if gw.metric("gripway_messages_unheard_total").await >= Some(1.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let started = Instant::now();
    let mut c = RawClient::connect(gw.addr).await;
    c.get("/poll", &[]).await;
    let head = c.read_head().await;
    let took = started.elapsed();
    assert!(
        head.starts_with("HTTP/1.1 200"),
        "the origin's own answer: {head}"
    );
    c.read_until(b"{\"messages\": []}\n", WAIT).await;
    // one request, then 6 re-requests after 0, 50, 100, 200, 400 and 800 ms
    assert_eq!(origin.requests().len(), 7, "capped re-requests");
    assert!(
        took >= Duration::from_millis(1500),
        "paced, not a tight loop: answered after {took:?}"
    );
    assert_eq!(
        origin.requests()[1].header("grip-last"),
        Some("st; last-id=1"),
        "re-requests say what the client has (the origin's prev-id), as Pushpin does"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(origin.requests().len(), 7, "nothing after the answer");
    assert_eq!(
        gw.metric("gripway_retries_total{reason=\"stale-prev-id\"}")
            .await,
        Some(6.0)
    );
    assert_eq!(
        gw.metric("gripway_errors_total{source=\"origin\",reason=\"stale-prev-id\"}")
            .await,
        Some(1.0)
    );
}
