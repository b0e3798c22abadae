//! Every NATS server down: a publish fails as unavailable within `publish_timeout` (it does
//! not hang), the bus says it is disconnected; once the server is back (same ports and store)
//! the clients reconnect by themselves, publishes succeed again, and a subscriber receives
//! everything stored after the restart, once and in order, even what was stored before its
//! own client had reconnected (the resync after reconnecting reads it back). A publish refused
//! while disconnected is not stored later.

mod common;

use std::time::{Duration, Instant};

use common::*;
use gripway_cluster::{BusError, ClusterConfig};
use gripway_test_support::NatsServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_fails_fast_while_nats_is_down_and_subscribers_catch_up_after() {
    let mut nats = NatsServer::start();
    let cfg = ClusterConfig {
        publish_timeout: Duration::from_secs(2),
        ..config(vec![nats.client_url()], 1)
    };
    let (p, _rp) = bus(cfg.clone()).await;
    let (s, mut rs) = bus(cfg.clone()).await;
    s.subscribe("down").await.expect("subscribe");
    p.publish("down", Some("before"), body("before"))
        .await
        .expect("publish");
    assert_eq!(payloads(&take(&mut rs, 1, WAIT).await), ["before"]);

    nats.kill();
    let deadline = Instant::now() + WAIT;
    while p.is_connected() {
        assert!(Instant::now() < deadline, "publisher did not notice");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let t = Instant::now();
    let err = p
        .publish("down", Some("while-down"), body("while-down"))
        .await
        .expect_err("nothing stores it");
    let took = t.elapsed();
    eprintln!("publish with the server down failed after {took:?}: {err}");
    assert!(matches!(err, BusError::Unavailable(_)), "{err:?}");
    assert_eq!(err.http_status(), 503);
    assert!(took <= Duration::from_secs(3), "took {took:?}");
    assert!(!p.is_connected());
    // a second one, with the client well into reconnecting, fails the same way
    let t = Instant::now();
    assert!(p.publish("down", None, body("x")).await.is_err());
    eprintln!("second publish while down failed after {:?}", t.elapsed());

    nats.restart();
    // publish as soon as the publisher is back, possibly before the subscriber's client is
    let deadline = Instant::now() + WAIT;
    while !p.is_connected() {
        assert!(Instant::now() < deadline, "publisher did not reconnect");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!(
        "subscriber connected when publishing resumed: {}",
        s.is_connected()
    );
    let mut acked = Vec::new();
    for i in 0..20 {
        let ack = p
            .publish(
                "down",
                Some(&format!("after{i}")),
                body(format!("after{i}")),
            )
            .await
            .expect("publish after restart");
        acked.push(ack.seq);
    }
    // the failed publishes were never handed to the (reconnecting) client, so they are not
    // stored later behind the publisher's back
    let mut got = Vec::new();
    while got.last().map(|d: &gripway_cluster::Delivery| d.seq) != acked.last().copied() {
        got.extend(take(&mut rs, 1, WAIT).await);
    }
    assert_chained(&got);
    let names = payloads(&got);
    eprintln!("delivered after restart: {names:?}; stats {:?}", s.stats());
    let after: Vec<String> = names
        .iter()
        .filter(|n| n.starts_with("after"))
        .cloned()
        .collect();
    assert_eq!(
        after,
        (0..20).map(|i| format!("after{i}")).collect::<Vec<_>>()
    );
    assert_eq!(names.len(), 20, "only what was acknowledged");
}
