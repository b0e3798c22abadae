//! `Broker::drain` at shutdown: everything accepted is fanned out before it resolves (items
//! waiting for a predecessor included), and nothing is accepted afterwards.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gripway_broker::{
    Broker, BrokerConfig, Delivery, Message, PublishError, Subscriber, Transport,
};
use gripway_proto::publish::{Formats, Item};

struct Counter(AtomicU64);

impl Subscriber for Counter {
    fn transport(&self) -> Transport {
        Transport::HttpStream
    }
    fn deliver(&self, _channel: &str, messages: &[Arc<Message>]) -> Delivery {
        // a slow subscriber: the queues are still full when drain is called
        std::thread::sleep(Duration::from_micros(50));
        self.0.fetch_add(messages.len() as u64, Ordering::Relaxed);
        Delivery::Sent(messages.len() as u32)
    }
}

fn item(channel: &str, id: String, prev: Option<String>) -> Item {
    Item {
        channel: channel.into(),
        id: Some(id),
        prev_id: prev,
        meta: vec![],
        no_seq: false,
        formats: Formats::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_delivers_everything_accepted_then_refuses() {
    let broker = Broker::start(BrokerConfig {
        shards: 2,
        // an item whose predecessor never comes would wait an hour
        order_wait: Duration::from_secs(3600),
        ..BrokerConfig::default()
    });
    let counter = Arc::new(Counter(AtomicU64::new(0)));
    let mut subs = Vec::new();
    for ch in ["a", "b", "c", "d"] {
        subs.push(broker.registry().subscribe(ch, counter.clone()));
    }
    let mut accepted = 0u64;
    for batch in 0..50 {
        let items = (0..40)
            .map(|i| {
                let ch = ["a", "b", "c", "d"][i % 4];
                item(ch, format!("{batch}-{i}"), None)
            })
            .collect();
        broker.publish(items).await.unwrap();
        accepted += 40;
    }
    // waits for a predecessor that never comes: released by the drain, not lost
    broker
        .publish(vec![item("a", "late".into(), Some("missing".into()))])
        .await
        .unwrap();
    accepted += 1;
    tokio::time::timeout(Duration::from_secs(30), broker.drain())
        .await
        .expect("drain resolves");
    assert_eq!(counter.0.load(Ordering::Relaxed), accepted);
    assert_eq!(
        broker.publish(vec![item("a", "after".into(), None)]).await,
        Err(PublishError::Closed)
    );
    // a second drain returns at once
    tokio::time::timeout(Duration::from_secs(1), broker.drain())
        .await
        .expect("second drain resolves");
}
