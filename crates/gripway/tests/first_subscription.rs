//! The re-check after a channel's first subscription (Pushpin's `update_on_first_subscription`)
//! against the real binary: about a second after a long-poll with a prev-id subscribes, it goes
//! to its origin again with `Grip-Last` when the channel's last id moved without it seeing
//! (an item with an id but no `http-response` format), and not when nothing moved, nor when
//! `grip.first_subscription_recheck_ms = 0`.

mod common;

use std::time::{Duration, Instant};

use common::*;

async fn poll_origin() -> Origin {
    Origin::start(|req| {
        if req.header("grip-last").is_some() {
            return Reply::ok().body("recovered\n");
        }
        Reply::ok()
            .header("Grip-Hold", "response")
            .header("Grip-Channel", "fs; prev-id=a1")
            .header("Grip-Timeout", "30")
            .body("timeout\n")
    })
    .await
}

/// Opens the long-poll and waits until it is subscribed; returns when it was.
async fn subscribed_poll(gw: &Gripway) -> (RawClient, Instant) {
    let mut c = RawClient::connect(gw.addr).await;
    c.get("/poll", &[]).await;
    for _ in 0..500 {
        if gw.metric("gripway_subscriptions").await == Some(1.0) {
            return (c, Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("never subscribed");
}

/// An item with the next id that long-polls do not see (it has no http-response format).
async fn move_last_id(gw: &Gripway) {
    let body = r#"{"items":[{"channel":"fs","id":"a2","prev-id":"a1",
        "formats":{"ws-message":{"content":"not for long-polls"}}}]}"#;
    assert_eq!(publish(&gw.publish_url(), body).await.0, 200);
}

#[tokio::test]
async fn a_long_poll_behind_the_last_id_is_re_requested_after_a_second() {
    let origin = poll_origin().await;
    let gw = gripway_to(&origin, &[]);
    let (mut c, at) = subscribed_poll(&gw).await;
    move_last_id(&gw).await;
    c.read_until(b"recovered\n", WAIT).await;
    let waited = at.elapsed();
    assert!(
        waited >= Duration::from_millis(800) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    assert_eq!(origin.requests().len(), 2);
    assert_eq!(
        origin.last_request().header("grip-last"),
        Some("fs; last-id=a1")
    );
    let retries = "gripway_retries_total{reason=\"first-subscription\"}";
    assert_eq!(gw.metric(retries).await, Some(1.0));
}

#[tokio::test]
async fn an_up_to_date_long_poll_is_left_alone() {
    let origin = poll_origin().await;
    let gw = gripway_to(&origin, &[]);
    let (mut c, _) = subscribed_poll(&gw).await;
    assert!(c.read_for(Duration::from_millis(2500)).await.is_empty());
    assert_eq!(origin.requests().len(), 1, "no re-request every second");
}

#[tokio::test]
async fn the_re_check_can_be_turned_off() {
    let origin = poll_origin().await;
    let dir = TempDir::new("first-sub-off");
    let config = dir.write(
        "gripway.toml",
        "[grip]\nfirst_subscription_recheck_ms = 0\n",
    );
    let gw = gripway_to(&origin, &["--config", config.to_str().unwrap()]);
    let (mut c, _) = subscribed_poll(&gw).await;
    move_last_id(&gw).await;
    assert!(c.read_for(Duration::from_millis(2500)).await.is_empty());
    assert_eq!(origin.requests().len(), 1);
}
