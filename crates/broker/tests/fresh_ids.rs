//! Dedup and ids a node makes itself: a publisher's repeated (channel, id) is delivered
//! once; an item whose id this node has just made for it (a device's publish, marked with
//! `Message::new_fresh`) is delivered and kept without being looked up or remembered among
//! the ids seen.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use gripway_broker::{Broker, BrokerConfig, Message};

mod common;
use common::{item, with_id, Recorder};

#[tokio::test]
async fn repeated_ids_are_dropped_and_fresh_ones_are_not_remembered() {
    let broker = Broker::start(BrokerConfig {
        shards: 1,
        ..BrokerConfig::default()
    });
    let got = Arc::new(Recorder::default());
    let _s = broker.registry().subscribe("c", got.clone());
    let settle = || async {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    };
    let duplicates = || broker.stats().duplicates.load(Ordering::Relaxed);

    // a publisher sending one item twice (two redundant paths): delivered once
    broker
        .publish(vec![with_id(item("c", "a"), "p1")])
        .await
        .unwrap();
    broker
        .publish(vec![with_id(item("c", "a again"), "p1")])
        .await
        .unwrap();
    settle().await;
    assert_eq!(got.got(), ["a"]);
    assert_eq!(duplicates(), 1);

    // a fresh item is delivered, kept as the channel's last id, and its id is not among
    // those remembered: the same id from a publisher later is not a duplicate of it
    let fresh = Message::new_fresh(with_id(item("c", "b"), "m1"));
    assert!(fresh.id_is_fresh());
    assert!(!Message::new(with_id(item("c", "b"), "m1")).id_is_fresh());
    broker
        .publish_messages(std::iter::once(fresh))
        .await
        .unwrap();
    settle().await;
    assert_eq!(broker.last_id("c").as_deref(), Some("m1"));
    broker
        .publish(vec![with_id(item("c", "c"), "m1")])
        .await
        .unwrap();
    settle().await;
    assert_eq!(got.got(), ["a", "b", "c"]);
    assert_eq!(duplicates(), 1);
}
