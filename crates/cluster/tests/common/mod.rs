//! Helpers shared by the cluster tests: a bus on given servers, and bounded collection of
//! deliveries.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use bytes::Bytes;
use gripway_cluster::{Bus, ClusterConfig, Delivery};
use tokio::sync::mpsc;

pub use gripway_test_support::WAIT;

/// A config on `urls` with the test's replicas.
pub fn config(urls: Vec<String>, replicas: usize) -> ClusterConfig {
    ClusterConfig {
        urls,
        replicas,
        max_items: 10_000,
        publish_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(2),
        ..ClusterConfig::default()
    }
}

/// A connected bus on `cfg` whose stream is ensured.
pub async fn bus(cfg: ClusterConfig) -> (Bus, mpsc::Receiver<Delivery>) {
    let (bus, rx) = Bus::connect(cfg).await.expect("connect");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match bus.ensure_stream().await {
            Ok(()) => break,
            Err(e) if tokio::time::Instant::now() < deadline => {
                eprintln!("ensure_stream: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("ensure_stream: {e}"),
        }
    }
    (bus, rx)
}

/// Receives exactly `n` deliveries, each within `within` of the previous one.
pub async fn take(rx: &mut mpsc::Receiver<Delivery>, n: usize, within: Duration) -> Vec<Delivery> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        match tokio::time::timeout(within, rx.recv()).await {
            Ok(Some(d)) => out.push(d),
            Ok(None) => panic!("delivery queue closed after {} of {n}", out.len()),
            Err(_) => panic!(
                "only {} of {n} deliveries within {within:?}; last: {:?}",
                out.len(),
                out.last()
            ),
        }
    }
    out
}

/// Payloads as strings.
pub fn payloads(ds: &[Delivery]) -> Vec<String> {
    ds.iter()
        .map(|d| String::from_utf8_lossy(&d.payload).into_owned())
        .collect()
}

/// Asserts that deliveries of one channel chain: increasing sequences, each `last_seq` the
/// previous delivery's `seq`, no gap flagged.
pub fn assert_chained(ds: &[Delivery]) {
    for w in ds.windows(2) {
        assert!(
            w[1].seq > w[0].seq,
            "not increasing: {:?} then {:?}",
            w[0],
            w[1]
        );
        assert_eq!(w[1].last_seq, w[0].seq, "chain broken at {:?}", w[1]);
    }
    assert!(ds.iter().all(|d| !d.gap), "gap flagged");
}

pub fn body(s: impl Into<String>) -> Bytes {
    Bytes::from(s.into())
}
