//! A lone published item bound for a few subscribers is fanned out in the publisher's own
//! task (no wake of the shard's task), and that never reorders a channel: an item queued
//! earlier always goes out first.

use std::sync::Arc;
use std::time::Duration;

use gripway_broker::{
    Broker, BrokerConfig, Delivery, Message, Subscriber, Transport, INLINE_MAX_SUBSCRIBERS,
};
use gripway_proto::publish::{Formats, Item};
use parking_lot::Mutex;

/// Records the ids it is handed, in order.
#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl Subscriber for Recorder {
    fn transport(&self) -> Transport {
        Transport::HttpStream
    }
    fn deliver(&self, _channel: &str, messages: &[Arc<Message>]) -> Delivery {
        let mut got = self.0.lock();
        for m in messages {
            got.push(m.id.as_deref().unwrap_or("-").to_string());
        }
        Delivery::Sent(messages.len() as u32)
    }
}

fn item(channel: &str, id: Option<String>) -> Item {
    Item {
        channel: channel.into(),
        id,
        prev_id: None,
        meta: vec![],
        no_seq: false,
        formats: Formats::default(),
    }
}

// one thread: the shard's task cannot run until the test yields, so what is delivered when
// `publish` returns was delivered by the publisher itself
#[tokio::test(flavor = "current_thread")]
async fn lone_item_to_few_subscribers_is_delivered_before_publish_returns() {
    let broker = Broker::start(BrokerConfig::default());
    let few = Arc::new(Recorder::default());
    let _s = broker.registry().subscribe("few", few.clone());
    broker.publish(vec![item("few", None)]).await.unwrap();
    broker
        .publish(vec![item("few", Some("1".into()))])
        .await
        .unwrap();
    assert_eq!(*few.0.lock(), ["-", "1"], "fanned out by the publisher");

    // past the bound the shard's task fans out, after `publish` has returned
    let many: Vec<_> = (0..=INLINE_MAX_SUBSCRIBERS)
        .map(|_| Arc::new(Recorder::default()))
        .collect();
    let _subs: Vec<_> = many
        .iter()
        .map(|r| broker.registry().subscribe("many", r.clone()))
        .collect();
    broker.publish(vec![item("many", None)]).await.unwrap();
    assert!(many[0].0.lock().is_empty(), "queued for the shard's task");
    // a request of several items is queued too (one batch per subscriber)
    broker
        .publish(vec![
            item("few", Some("2".into())),
            item("few", Some("3".into())),
        ])
        .await
        .unwrap();
    assert_eq!(few.0.lock().len(), 2);
    tokio::time::timeout(Duration::from_secs(10), async {
        while many.iter().any(|r| r.0.lock().is_empty()) || few.0.lock().len() < 4 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the shard's task delivers");
    assert_eq!(*few.0.lock(), ["-", "1", "2", "3"]);
}

/// Requests of several items (queued) alternate with lone items (which may go out in the
/// publisher's task): every item must arrive in publish order.
async fn publish_alternating(broker: &Broker, rounds: usize, yield_every: usize) -> Vec<String> {
    let rec = Arc::new(Recorder::default());
    let _s = broker.registry().subscribe("c", rec.clone());
    let mut n = 0;
    let mut next = || {
        n += 1;
        item("c", Some(n.to_string()))
    };
    for round in 0..rounds {
        broker.publish(vec![next(), next(), next()]).await.unwrap();
        broker.publish(vec![next()]).await.unwrap();
        broker.publish(vec![next()]).await.unwrap();
        if round % yield_every == 0 {
            tokio::task::yield_now().await;
        }
    }
    let total = rounds * 5;
    tokio::time::timeout(Duration::from_secs(10), async {
        while rec.0.lock().len() < total {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("everything delivered");
    let got = rec.0.lock().clone();
    got
}

#[tokio::test(flavor = "current_thread")]
async fn a_lone_item_never_overtakes_one_queued_before_it() {
    let broker = Broker::start(BrokerConfig::default());
    let got = publish_alternating(&broker, 200, 7).await;
    let want: Vec<_> = (1..=1000).map(|i| i.to_string()).collect();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_holds_with_the_shard_task_on_another_thread() {
    let broker = Broker::start(BrokerConfig {
        shards: 1,
        ..BrokerConfig::default()
    });
    let got = publish_alternating(&broker, 2000, 3).await;
    let want: Vec<_> = (1..=10_000).map(|i| i.to_string()).collect();
    assert_eq!(got, want);
}
