//! Fan-out lanes: a channel with many subscribers is written on the lane's runtime, not in
//! the shard's task; a channel with few is written in the shard's task; and every
//! subscriber still gets every item of its channel once, in publish order, while channels
//! move between the two ways (the lane busy with a wide channel, a narrow channel growing
//! wide and shrinking back).

use std::sync::Arc;
use std::time::Duration;

use gripway_broker::lanes::LANE_MIN_SUBSCRIBERS;
use gripway_broker::{Broker, BrokerConfig, Delivery, Message, Subscriber, Transport};
use gripway_proto::publish::{Formats, Item};
use parking_lot::Mutex;

/// Records the ids it is handed and the threads that handed them.
#[derive(Default)]
struct Recorder {
    ids: Mutex<Vec<String>>,
    threads: Mutex<Vec<String>>,
}

impl Subscriber for Recorder {
    fn transport(&self) -> Transport {
        Transport::HttpStream
    }
    fn deliver(&self, _channel: &str, messages: &[Arc<Message>]) -> Delivery {
        let name = std::thread::current().name().unwrap_or("?").to_owned();
        let mut threads = self.threads.lock();
        if !threads.contains(&name) {
            threads.push(name);
        }
        let mut ids = self.ids.lock();
        ids.extend(messages.iter().map(|m| m.id().unwrap_or("").to_owned()));
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

#[test]
fn wide_fan_outs_run_on_the_lane_and_order_holds_across_the_switch() {
    let workers = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("lane-worker")
        .enable_all()
        .build()
        .unwrap();
    let shard_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let handle = workers.handle().clone();
    std::thread::Builder::new()
        .name("shard-thread".into())
        .spawn(move || {
            shard_rt.block_on(async move {
                let broker = Broker::start(BrokerConfig {
                    shards: 1,
                    lanes: Some(handle),
                    ..BrokerConfig::default()
                });
                let registry = broker.registry().clone();
                let wide: Vec<Arc<Recorder>> = (0..LANE_MIN_SUBSCRIBERS + 4)
                    .map(|_| Arc::new(Recorder::default()))
                    .collect();
                let _wide_subs: Vec<_> = wide
                    .iter()
                    .map(|r| registry.subscribe("wide", r.clone()))
                    .collect();
                let narrow = Arc::new(Recorder::default());
                let _narrow_sub = registry.subscribe("narrow", narrow.clone());
                let alone = Arc::new(Recorder::default());
                let _alone_sub = registry.subscribe("alone", alone.clone());

                // "alone" first, while the lane is idle: written in the shard's task
                broker
                    .publish(vec![item("alone", "a0".into())])
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
                // then the three channels interleaved, and "narrow" growing wide midway
                let grown: Vec<Arc<Recorder>> = (0..LANE_MIN_SUBSCRIBERS)
                    .map(|_| Arc::new(Recorder::default()))
                    .collect();
                let mut grown_subs = Vec::new();
                for round in 0..200 {
                    if round == 100 {
                        grown_subs = grown
                            .iter()
                            .map(|r| registry.subscribe("narrow", r.clone()))
                            .collect();
                    }
                    if round == 150 {
                        grown_subs.clear(); // narrow again
                    }
                    let items = ["wide", "narrow", "alone"]
                        .iter()
                        .map(|ch| item(ch, format!("{ch}{round}")))
                        .collect();
                    broker.publish(items).await.unwrap();
                    tokio::task::yield_now().await; // let the shard take them
                }
                tokio::time::timeout(Duration::from_secs(30), broker.drain())
                    .await
                    .expect("drain resolves once the lane has written everything");

                let want = |ch: &str, from: usize, to: usize| -> Vec<String> {
                    (from..to).map(|r| format!("{ch}{r}")).collect()
                };
                for r in &wide {
                    assert_eq!(*r.ids.lock(), want("wide", 0, 200));
                    assert_eq!(*r.threads.lock(), ["lane-worker"], "wide: on the lane");
                }
                assert_eq!(*narrow.ids.lock(), want("narrow", 0, 200));
                let mut alone_want = vec!["a0".to_owned()];
                alone_want.extend(want("alone", 0, 200));
                assert_eq!(*alone.ids.lock(), alone_want);
                assert_eq!(
                    alone.threads.lock()[0],
                    "shard-thread",
                    "a narrow channel with the lane idle is written in the shard's task"
                );
                // subscribed while earlier items may still be on their way: each got a
                // run of the channel's items, in order, none twice, none skipped
                for r in &grown {
                    let ids = r.ids.lock();
                    let Some(first) = ids.first() else { continue };
                    let first: usize = first["narrow".len()..].parse().unwrap();
                    assert_eq!(*ids, want("narrow", first, first + ids.len()));
                }
            });
        })
        .unwrap()
        .join()
        .expect("the test's shard thread");
}

/// Counts deliveries running at once, over every [`Slow`] subscriber.
static IN_FLIGHT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static MOST_IN_FLIGHT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A [`Recorder`] that takes its time over the item "hot0", to show parts running together.
#[derive(Default)]
struct Slow(Recorder);

impl Subscriber for Slow {
    fn transport(&self) -> Transport {
        Transport::HttpStream
    }
    fn deliver(&self, channel: &str, messages: &[Arc<Message>]) -> Delivery {
        use std::sync::atomic::Ordering::SeqCst;
        if messages.iter().any(|m| m.id() == Some("hot0")) {
            let now = IN_FLIGHT.fetch_add(1, SeqCst) + 1;
            MOST_IN_FLIGHT.fetch_max(now, SeqCst);
            std::thread::sleep(Duration::from_micros(200));
            IN_FLIGHT.fetch_sub(1, SeqCst);
        }
        self.0.deliver(channel, messages)
    }
}

#[test]
fn a_hot_channel_is_written_by_several_parts_at_once_and_order_holds_while_its_split_changes() {
    use gripway_broker::lanes::PART_MIN_SUBSCRIBERS;
    let workers = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let shard_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let handle = workers.handle().clone();
    std::thread::spawn(move || {
        shard_rt.block_on(async move {
            let broker = Broker::start(BrokerConfig {
                shards: 1,
                lanes: Some(handle),
                lane_parts: 4,
                ..BrokerConfig::default()
            });
            let registry = broker.registry().clone();
            let make = |n: usize| -> Vec<Arc<Slow>> { (0..n).map(|_| Arc::default()).collect() };
            // three parts' worth to start with
            let first = make(3 * PART_MIN_SUBSCRIBERS + 10);
            let _first_subs: Vec<_> = first
                .iter()
                .map(|r| registry.subscribe("hot", r.clone()))
                .collect();
            // joins midway (four parts), then leaves (three again), and a channel on the
            // same lane interleaved
            let later = make(PART_MIN_SUBSCRIBERS);
            let mut later_subs = Vec::new();
            let side = make(LANE_MIN_SUBSCRIBERS + 1);
            let _side_subs: Vec<_> = side
                .iter()
                .map(|r| registry.subscribe("side", r.clone()))
                .collect();
            for round in 0..300 {
                match round {
                    100 => {
                        later_subs = later
                            .iter()
                            .map(|r| registry.subscribe("hot", r.clone()))
                            .collect()
                    }
                    200 => later_subs.clear(),
                    _ => {}
                }
                let items = vec![
                    item("hot", format!("hot{round}")),
                    item("side", format!("side{round}")),
                ];
                broker.publish(items).await.unwrap();
                if round % 7 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            drop(later_subs);
            tokio::time::timeout(Duration::from_secs(60), broker.drain())
                .await
                .expect("drain resolves once every part has written everything");

            let want = |ch: &str, from: usize, to: usize| -> Vec<String> {
                (from..to).map(|r| format!("{ch}{r}")).collect()
            };
            for r in first.iter().chain(&side[..1]) {
                let ids = r.0.ids.lock();
                let ch = if ids[0].starts_with("hot") {
                    "hot"
                } else {
                    "side"
                };
                assert_eq!(*ids, want(ch, 0, 300), "every item once, in order");
            }
            for r in &side {
                assert_eq!(*r.0.ids.lock(), want("side", 0, 300));
            }
            // joined and left while the split changed: a run of the channel's items, in
            // order, none twice, none skipped
            for r in &later {
                let ids = r.0.ids.lock();
                let Some(first) = ids.first() else { continue };
                let first: usize = first["hot".len()..].parse().unwrap();
                assert_eq!(*ids, want("hot", first, first + ids.len()));
            }
            assert!(
                MOST_IN_FLIGHT.load(std::sync::atomic::Ordering::SeqCst) >= 2,
                "the parts of one batch are written at the same time"
            );
        });
    })
    .join()
    .expect("the test's shard thread");
}
