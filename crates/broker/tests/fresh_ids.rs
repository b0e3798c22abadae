//! Dedup and ids a node makes itself: a publisher's repeated (channel, id) is delivered
//! once; an item whose id this node has just made for it (a device's publish, marked with
//! `Message::new_fresh`) is delivered and kept without being looked up or remembered among
//! the ids seen.

use std::sync::Arc;

use gripway_broker::{Broker, BrokerConfig, Delivery, Message, Subscriber, Transport};
use gripway_proto::publish::{Formats, HttpStreamAction, HttpStreamFormat, Item};
use parking_lot::Mutex;

#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl Subscriber for Recorder {
    fn transport(&self) -> Transport {
        Transport::HttpStream
    }
    fn deliver(&self, _channel: &str, messages: &[Arc<Message>]) -> Delivery {
        let mut got = self.0.lock();
        for m in messages {
            let content = m.stream_content().unwrap_or_default();
            got.push(String::from_utf8_lossy(content).into_owned());
        }
        Delivery::Sent(messages.len() as u32)
    }
}

fn item(id: &str, text: &str) -> Item {
    Item {
        channel: "c".into(),
        id: Some(id.into()),
        prev_id: None,
        meta: vec![],
        no_seq: false,
        formats: Formats {
            http_stream: Some(HttpStreamFormat {
                action: HttpStreamAction::Send(text.as_bytes().to_vec().into()),
                content_filters: vec![],
            }),
            ..Formats::default()
        },
    }
}

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

    // a publisher sending one item twice (two redundant paths): delivered once
    broker.publish(vec![item("p1", "a")]).await.unwrap();
    broker.publish(vec![item("p1", "a again")]).await.unwrap();
    settle().await;
    assert_eq!(*got.0.lock(), ["a"]);
    assert_eq!(
        broker
            .stats()
            .duplicates
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );

    // a fresh item is delivered, kept as the channel's last id, and its id is not among
    // those remembered: the same id from a publisher later is not a duplicate of it
    let fresh = Message::new_fresh(item("m1", "b"));
    assert!(fresh.id_is_fresh());
    assert!(!Message::new(item("m1", "b")).id_is_fresh());
    broker
        .publish_messages(std::iter::once(fresh))
        .await
        .unwrap();
    settle().await;
    assert_eq!(broker.last_id("c").as_deref(), Some("m1"));
    broker.publish(vec![item("m1", "c")]).await.unwrap();
    settle().await;
    assert_eq!(*got.0.lock(), ["a", "b", "c"]);
    assert_eq!(
        broker
            .stats()
            .duplicates
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}
