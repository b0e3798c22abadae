//! The broker with the on-disk history store: a shard takes its next batch while the
//! previous one is being written (several of its appends share one write), yet every
//! channel's items are fanned out in the order they were stored, each exactly once; and a
//! duplicate is acknowledged only once its first copy is stored, even while that copy waits
//! for its predecessor.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gripway_broker::history::{After, DiskHistory, FsyncPolicy, History, HistoryConfig};
use gripway_broker::{Broker, BrokerConfig, Delivery, Message, Subscriber, Transport};
use gripway_proto::publish::{Formats, Item};
use parking_lot::Mutex;

/// Records every delivery, per channel, in order.
#[derive(Default)]
struct Recorder(Mutex<HashMap<String, Vec<String>>>);

impl Subscriber for Recorder {
    fn transport(&self) -> Transport {
        Transport::HttpStream
    }
    fn deliver(&self, channel: &str, messages: &[Arc<Message>]) -> Delivery {
        let mut seen = self.0.lock();
        let list = seen.entry(channel.to_string()).or_default();
        list.extend(messages.iter().filter_map(|m| m.id().map(String::from)));
        Delivery::Sent(messages.len() as u32)
    }
}

fn item(channel: &str, id: String) -> Item {
    Item {
        channel: channel.into(),
        id: Some(id),
        prev_id: None,
        meta: vec![],
        no_seq: false,
        formats: Formats::default(),
    }
}

fn tmp(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gripway-pipeline-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn broker(dir: &Path) -> Broker {
    let config = HistoryConfig {
        max_items: 100_000,
        max_age: Duration::from_secs(3600),
        max_bytes: usize::MAX,
    };
    let store =
        DiskHistory::open(dir, config, FsyncPolicy::EveryBatch).unwrap_or_else(|e| panic!("{e}"));
    // one shard: every append comes from the same task
    let config = BrokerConfig {
        shards: 1,
        ..BrokerConfig::default()
    };
    Broker::start_with_history(config, History::Disk(store))
}

const CHANNELS: [&str; 5] = ["a", "b", "c", "d", "e"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_in_flight_overlap_and_each_channel_keeps_its_order() {
    let dir = tmp("order");
    let broker = broker(&dir);
    let recorder = Arc::new(Recorder::default());
    let _subs: Vec<_> = CHANNELS
        .iter()
        .map(|c| broker.registry().subscribe(c, recorder.clone()))
        .collect();
    let mut publishers = Vec::new();
    for p in 0..16 {
        let broker = broker.clone();
        publishers.push(tokio::spawn(async move {
            for r in 0..40 {
                let items = (0..10)
                    .map(|i| item(CHANNELS[(p + i) % 5], format!("{p:02}-{r:03}-{i}")))
                    .collect();
                broker
                    .publish(items)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
            }
        }));
    }
    for p in publishers {
        p.await.unwrap_or_else(|e| panic!("{e}"));
    }
    let history = broker.history().clone();
    let stats = history.disk_stats().unwrap_or_default();
    assert!(
        stats.appends > stats.writes,
        "one shard's appends share writes only if it takes its next batch while one is \
         written: {stats:?}"
    );
    let seen = recorder.0.lock().clone();
    let mut total = 0;
    for c in CHANNELS {
        let delivered = seen.get(c).cloned().unwrap_or_default();
        total += delivered.len();
        // fanned out in the order stored
        let stored = history
            .read_after(c, After::Start, 100_000, Instant::now())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let stored: Vec<String> = stored
            .items
            .iter()
            .filter_map(|k| k.msg.id().map(String::from))
            .collect();
        assert_eq!(delivered, stored, "channel {c}");
        // and each publisher's items in the order it published them
        for p in 0..16 {
            let mine: Vec<_> = delivered
                .iter()
                .filter(|id| id.starts_with(&format!("{p:02}-")))
                .collect();
            assert!(
                mine.windows(2).all(|w| w[0] < w[1]),
                "channel {c}, publisher {p}"
            );
        }
    }
    assert_eq!(total, 16 * 40 * 10, "every item once");
    broker.drain().await;
    drop(history);
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_is_acknowledged_only_once_its_first_copy_is_stored() {
    let dir = tmp("dup");
    let broker = broker(&dir);
    for i in 0..200 {
        let id = format!("x{i}");
        let first = {
            let broker = broker.clone();
            let id = id.clone();
            tokio::spawn(async move { broker.publish(vec![item("a", id)]).await })
        };
        let again = {
            let broker = broker.clone();
            let id = id.clone();
            tokio::spawn(async move {
                let r = broker.publish(vec![item("a", id.clone())]).await;
                // answered: the item must be stored by now, whichever copy was first
                let known = broker.history().knows_now("a", &id, Instant::now());
                (r, known)
            })
        };
        let (r, known) = again.await.unwrap_or_else(|e| panic!("{e}"));
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(
            known,
            Some(true),
            "item {id} acknowledged before it was stored"
        );
        let r = first.await.unwrap_or_else(|e| panic!("{e}"));
        assert!(r.is_ok(), "{r:?}");
    }
    broker.drain().await;
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A duplicate of an item still waiting for its predecessor (its `prev-id` never came) is
/// answered only once that item has been released and stored, not at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_of_an_item_waiting_for_its_predecessor_waits_for_it_to_be_stored() {
    let dir = tmp("dup-waiting");
    let store = DiskHistory::open(
        &dir,
        HistoryConfig {
            max_items: 1000,
            max_age: Duration::from_secs(3600),
            max_bytes: usize::MAX,
        },
        FsyncPolicy::EveryBatch,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let broker = Broker::start_with_history(
        BrokerConfig {
            shards: 1,
            order_wait: Duration::from_millis(300),
            ..BrokerConfig::default()
        },
        History::Disk(store),
    );
    // ordering applies to channels with subscribers
    let _sub = broker
        .registry()
        .subscribe("w", Arc::new(Recorder::default()));
    // "a" becomes the channel's last id, so "b" (after "missing") waits
    broker.publish(vec![item("w", "a".into())]).await.unwrap();
    let waiting = {
        let broker = broker.clone();
        tokio::spawn(async move {
            let mut b = item("w", "b".into());
            b.prev_id = Some("missing".into());
            broker.publish(vec![b]).await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiting.is_finished(), "b waits for its predecessor");
    let r = broker.publish(vec![item("w", "b".into())]).await;
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(
        broker.history().knows_now("w", "b", Instant::now()),
        Some(true),
        "the duplicate was acknowledged before its first copy was stored"
    );
    assert!(waiting.await.unwrap().is_ok());
    broker.drain().await;
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
}
