//! The broker's per-channel and per-id tables stay within their byte bounds however many
//! distinct channels and ids are published, and nothing acknowledged is lost to the bounds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gripway_broker::{Broker, BrokerConfig, Delivery, Message, Subscriber, Transport};
use gripway_proto::publish::{Formats, Item};

const BOUND: usize = 1 << 20;

struct Counter(AtomicU64);

impl Subscriber for Counter {
    fn transport(&self) -> Transport {
        Transport::HttpStream
    }
    fn deliver(&self, _channel: &str, messages: &[Arc<Message>]) -> Delivery {
        self.0.fetch_add(messages.len() as u64, Ordering::Relaxed);
        Delivery::Sent(messages.len() as u32)
    }
}

fn item(channel: String, id: &str, prev: Option<&str>) -> Item {
    Item {
        channel,
        id: Some(id.into()),
        prev_id: prev.map(Into::into),
        meta: vec![],
        no_seq: false,
        formats: Formats::default(),
    }
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "timed out: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn config() -> BrokerConfig {
    BrokerConfig {
        dedup_max_bytes: BOUND,
        order_max_bytes: BOUND,
        last_ids_max_bytes: BOUND,
        order_wait: Duration::from_secs(3600),
        ..BrokerConfig::default()
    }
}

async fn distinct_channels_and_ids(n: usize) {
    let broker = Broker::start(config());
    let stats = broker.stats();
    // unsubscribed channels: dedup and last ids fill
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let items = chunk
            .iter()
            .map(|i| {
                item(
                    format!("channel-{i}"),
                    &format!("id-{i}-{}", "x".repeat(40)),
                    None,
                )
            })
            .collect();
        broker.publish(items).await.unwrap();
    }
    until("unsubscribed items fanned out", || {
        stats.unheard.load(Ordering::Relaxed) == n as u64
    })
    .await;
    let dedup = stats.dedup_bytes.load(Ordering::Relaxed) as usize;
    assert!(dedup <= BOUND, "dedup {dedup} > {BOUND}");
    assert!(dedup > BOUND / 2, "dedup filled to its bound: {dedup}");
    let (ids, ids_bytes) = broker.last_ids_size();
    assert!(ids_bytes <= BOUND, "last ids {ids_bytes} > {BOUND}");
    assert!(ids > 1000 && ids < n, "{ids}");
    // the shards fan out in parallel, so which of the last items is newest in the shared
    // table is not known: once everything is quiet, one more item must be remembered
    let newest_id = format!("id-newest-{}", "x".repeat(40));
    broker
        .publish(vec![item("channel-newest".into(), &newest_id, None)])
        .await
        .unwrap();
    until("the newest item fanned out", || {
        stats.unheard.load(Ordering::Relaxed) == n as u64 + 1
    })
    .await;
    assert_eq!(
        broker.last_id("channel-newest").as_deref(),
        Some(newest_id.as_str()),
        "the newest are remembered"
    );
    let (_, ids_bytes) = broker.last_ids_size();
    assert!(ids_bytes <= BOUND, "last ids {ids_bytes} > {BOUND}");

    // subscribed channels, each with an item waiting for a predecessor that never comes:
    // the ordering state fills to its bound and releases what the bound forgets
    let sub = Arc::new(Counter(AtomicU64::new(0)));
    let m = n / 4;
    let subs: Vec<_> = (0..m)
        .map(|i| {
            broker
                .registry()
                .subscribe(&format!("sub-{i}"), sub.clone() as Arc<dyn Subscriber>)
        })
        .collect();
    for chunk in (0..m).collect::<Vec<_>>().chunks(1000) {
        let items = chunk
            .iter()
            .flat_map(|i| {
                [
                    item(format!("sub-{i}"), "a", None),
                    item(format!("sub-{i}"), "c", Some("b")),
                ]
            })
            .collect();
        broker.publish(items).await.unwrap();
    }
    until("every item delivered or waiting", || {
        sub.0.load(Ordering::Relaxed) + stats.order_waiting.load(Ordering::Relaxed) == 2 * m as u64
    })
    .await;
    let order = stats.order_bytes.load(Ordering::Relaxed) as usize;
    assert!(order <= BOUND, "ordering state {order} > {BOUND}");
    assert!(
        order > BOUND / 2,
        "ordering state filled to its bound: {order}"
    );
    assert!(stats.order_waiting.load(Ordering::Relaxed) < m as u64);
    assert!(stats.dedup_bytes.load(Ordering::Relaxed) as usize <= BOUND);
    assert!(broker.last_ids_size().1 <= BOUND);
    drop(subs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_thousand_channels_and_ids_stay_within_bounds() {
    distinct_channels_and_ids(100_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a million channels: slow in debug builds; run with --release --ignored"]
async fn million_channels_and_ids_stay_within_bounds() {
    distinct_channels_and_ids(1_000_000).await;
}
