//! The publish's own fan-out (`inline`): on a single-threaded runtime, an item without an id
//! on a narrow channel is written by the publishing task while its shard is idle (it is
//! there before `publish` returns); anything else is queued, and the items after it are
//! queued behind it until the shard has caught up, so every subscriber still gets its
//! channel's items in publish order.

use std::sync::Arc;

use gripway_broker::lanes::LANE_MIN_SUBSCRIBERS;
use gripway_broker::{Broker, BrokerConfig};

mod common;
use common::{item, with_id, Recorder};

#[test]
fn idle_shards_let_the_publisher_write_and_order_holds_when_they_are_busy() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let broker = Broker::start(BrokerConfig {
            shards: 1,
            ..BrokerConfig::default()
        });
        let registry = broker.registry().clone();
        let narrow = Arc::new(Recorder::default());
        let _n = registry.subscribe("narrow", narrow.clone());
        let wide: Vec<Arc<Recorder>> = (0..=LANE_MIN_SUBSCRIBERS)
            .map(|_| Arc::new(Recorder::default()))
            .collect();
        let _w: Vec<_> = wide
            .iter()
            .map(|r| registry.subscribe("wide", r.clone()))
            .collect();
        // let the shard task start and find itself idle
        tokio::task::yield_now().await;

        // idle shard, narrow channel, no id: written before publish returns
        broker.publish(vec![item("narrow", "n1")]).await.unwrap();
        assert_eq!(narrow.got(), ["n1"], "written by the publisher itself");

        // a wide channel goes through the shard; what follows queues behind it
        broker
            .publish(vec![item("wide", "w1"), item("narrow", "n2")])
            .await
            .unwrap();
        broker.publish(vec![item("narrow", "n3")]).await.unwrap();
        assert_eq!(
            narrow.got(),
            ["n1"],
            "n2 and n3 wait behind w1 in the queue"
        );
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(narrow.got(), ["n1", "n2", "n3"]);
        assert!(wide.iter().all(|r| r.got() == ["w1"]));

        // caught up: idle again
        broker.publish(vec![item("narrow", "n4")]).await.unwrap();
        assert_eq!(narrow.got(), ["n1", "n2", "n3", "n4"]);

        // an item with an id needs the shard (dedup, ordering state); the shard keeps that
        // channel's ordering state afterwards, so later items queue too, in order
        broker
            .publish(vec![with_id(item("narrow", "n5"), "i5")])
            .await
            .unwrap();
        broker.publish(vec![item("narrow", "n6")]).await.unwrap();
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(narrow.got(), ["n1", "n2", "n3", "n4", "n5", "n6"]);
        assert_eq!(broker.last_id("narrow"), None, "n6 has no id: no last id");
    });
}

#[test]
fn a_multi_threaded_runtime_always_queues() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let broker = Broker::start(BrokerConfig {
            shards: 1,
            ..BrokerConfig::default()
        });
        let narrow = Arc::new(Recorder::default());
        let _n = broker.registry().subscribe("narrow", narrow.clone());
        let texts: Vec<String> = (0..200).map(|i| format!("m{i}")).collect();
        for t in &texts {
            broker.publish(vec![item("narrow", t)]).await.unwrap();
        }
        for _ in 0..500 {
            if narrow.got().len() == texts.len() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(narrow.got(), texts, "every item, in order");
    });
}
