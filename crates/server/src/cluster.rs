//! Cluster mode (`--cluster`, `[cluster]`): how a node takes part in a cluster of Gripway
//! nodes over NATS JetStream, on the bus of the `gripway-cluster` crate.
//!
//! The data path in a cluster:
//!
//! * **publish → bus**: the publish API hands the request's items to [`Cluster::publish`],
//!   which stores them in the stream ([`gripway_cluster::Bus::publish_many`]: JetStream
//!   atomic batches, all of a batch stored in request order or none; one by one on servers
//!   without them) and returns once all are stored; only then is the publisher answered.
//!   NATS unreachable: 503, never a silent 200.
//! * **bus → broker**: the stream republishes what it stored, in stream order, to the nodes
//!   interested in the channel; the feeder (a task on the broker thread) turns each
//!   delivery back into an item and queues it on the broker, as a local publish was queued
//!   before, so dedup, `prev-id` ordering, the history image, the fan-out and the lanes are
//!   the single node's. Every node sees a channel's items in the stream's order.
//! * **registry → interest**: a channel's first subscriber on this node subscribes the node
//!   to the channel's subject ([`gripway_cluster::Bus::subscribe`]); a check every second
//!   also subscribes what a full notice queue missed, and unsubscribes channels that have had
//!   no subscriber here for [`Cluster::idle_unsubscribe`] (long enough for the history image
//!   to have forgotten the channel, so a later subscription starts from a blank image that
//!   sends every read to the stream).
//! * **history**: [`gripway_broker::history::ClusterHistory`]: the node's image answers the
//!   ids it knows; others are read from the stream ([`StreamHistory`]), after making sure the
//!   node is subscribed, so that nothing stored after the read is missed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gripway_broker::history::{HistoryError, RemoteFuture, RemoteHistory, RemoteRead};
use gripway_broker::Message;
use gripway_broker::Registry;
use gripway_cluster::{Bus, BusError, ClusterCount, Delivery, LocalCounts, Peers};
use gripway_proto::publish::{encode_items, parse_publish_body, Item, PublishLimits};
use tokio::sync::mpsc;

use crate::error::{Refusal, Source};
use crate::Shared;

/// Deliveries the feeder takes from the bus at once and queues as one publish.
const FEED_BATCH: usize = 256;
/// Notices of new channels waiting for their subscription.
const INTEREST_QUEUE: usize = 65_536;
/// How often the registry and the node's subscriptions are compared.
const INTEREST_CHECK: Duration = Duration::from_secs(1);

/// A node's part in the cluster.
pub(crate) struct Cluster {
    bus: Bus,
    /// The other nodes (presence, cluster-wide counts).
    peers: Arc<Peers>,
    /// How long a channel keeps its subscription after its last subscriber here left.
    idle_unsubscribe: Duration,
}

impl Cluster {
    /// The node's part, on `bus` (connected, or still trying: the client keeps trying in
    /// the background); it answers the others' counts from `registry`.
    pub(crate) async fn new(
        bus: Bus,
        registry: Arc<Registry>,
        history_max_age: Duration,
    ) -> Result<Cluster, crate::config::ConfigError> {
        let peers = bus
            .start_peers(Arc::new(RegistryCounts(registry)))
            .await
            .map_err(|e| crate::config::ConfigError::new(format!("[cluster]: {e}")))?;
        Ok(Cluster {
            bus,
            peers: Arc::new(peers),
            // the image keeps a channel's items for max_age and its last id for another
            // max_age, then forgets it (see `history::memory`)
            idle_unsubscribe: history_max_age * 2 + Duration::from_secs(5),
        })
    }

    /// Subscribers of `channel` over the whole cluster.
    pub(crate) async fn count(&self, channel: &str) -> Result<ClusterCount, BusError> {
        self.peers.count(channel).await
    }

    /// What `/metrics` reads.
    pub(crate) fn figures(&self) -> Figures {
        Figures {
            bus: self.bus.clone(),
            peers: self.peers.clone(),
        }
    }

    /// Stores `items` in the stream, each channel's in order; Ok once all are stored.
    pub(crate) async fn publish(&self, items: Vec<Item>) -> Result<(), Refusal> {
        let encoded: Vec<(&str, Option<&str>, Bytes)> = items
            .iter()
            .map(|item| {
                (
                    item.channel.as_str(),
                    item.id.as_deref(),
                    stored_payload(item),
                )
            })
            .collect();
        match self.bus.publish_many(&encoded).await.err() {
            None => Ok(()),
            Some(e @ BusError::Rejected(_)) => Err(Refusal::publisher(
                400,
                "cluster-rejected",
                format!("Not published: {e}"),
            )),
            Some(e) => Err(Refusal::internal(
                503,
                "cluster-unavailable",
                format!(
                    "Not published: the cluster could not store the items ({e}); publish again."
                ),
            )),
        }
    }
}

/// Starts the feeder (on the broker thread's runtime, `broker_rt`) and the interest task.
pub(crate) fn start(
    shared: &Arc<Shared>,
    deliveries: mpsc::Receiver<Delivery>,
    broker_rt: &tokio::runtime::Handle,
) {
    broker_rt.spawn(feed(shared.clone(), deliveries));
    tokio::spawn(interest(shared.clone()));
}

/// Queues what the bus delivers on the broker, in the order it arrives.
async fn feed(shared: Arc<Shared>, mut deliveries: mpsc::Receiver<Delivery>) {
    let mut batch = Vec::with_capacity(FEED_BATCH);
    while deliveries.recv_many(&mut batch, FEED_BATCH).await > 0 {
        let mut items = Vec::with_capacity(batch.len());
        for d in batch.drain(..) {
            if d.gap {
                shared
                    .metrics
                    .count_errors(Source::Internal, "cluster-gap", 1);
                crate::warn_limited!(
                    "cluster-gap",
                    "cluster: items of a channel were lost before this node could read them back"
                );
            }
            match stored_item(&d.payload) {
                Some(item) => items.push(item),
                None => {
                    shared
                        .metrics
                        .count_errors(Source::Internal, "cluster-bad-item", 1);
                    crate::warn_limited!(
                        "cluster-bad-item",
                        "cluster: a stored item could not be read (written by another version?)"
                    );
                }
            }
        }
        if !items.is_empty() && shared.broker.publish(items).await.is_err() {
            return; // draining: the broker takes nothing more
        }
    }
}

/// What the stream stores for `item`: its publish-item JSON (every format, `mqtt-message`
/// included), which [`stored_item`] reads back.
fn stored_payload(item: &Item) -> Bytes {
    Bytes::from(encode_items(std::slice::from_ref(item)))
}

/// The item a stored payload holds (its publish-item JSON, as [`Cluster::publish`] wrote
/// it); None if it is not one item. The publishing node checked every limit already.
fn stored_item(payload: &[u8]) -> Option<Item> {
    let limits = PublishLimits {
        max_content_bytes: usize::MAX,
        max_items: usize::MAX,
        ..PublishLimits::default()
    };
    let mut parsed = parse_publish_body(payload, &limits).ok()?;
    (parsed.len() == 1).then(|| parsed.remove(0))
}

/// Keeps the node subscribed to the channels it has subscribers on: at once for a new
/// channel, and every [`INTEREST_CHECK`] for any the notices missed (a full queue, a failed
/// subscribe); unsubscribes a channel once it has had no subscriber here for
/// `idle_unsubscribe`.
async fn interest(shared: Arc<Shared>) {
    let Some(cluster) = shared.cluster.as_ref() else {
        return;
    };
    let registry = shared.broker.registry().clone();
    let mut new_channels = registry.watch_new_channels(INTEREST_QUEUE);
    // channels subscribed without a subscriber here, since when
    let mut idle: HashMap<String, Instant> = HashMap::new();
    let pending = Arc::new(parking_lot::Mutex::new(HashSet::<String>::new()));
    let mut check = tokio::time::interval(INTEREST_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            n = new_channels.recv() => {
                let Some((at, channel)) = n else { return };
                // what is stored from the moment the channel got its subscriber here on
                let since = std::time::SystemTime::now() - at.elapsed();
                subscribe_soon(&shared, &pending, channel.to_string(), Some(since));
            }
            _ = check.tick() => {
                let dropped = new_channels.take_dropped();
                if dropped > 0 {
                    shared.metrics.count_errors(Source::Internal, "cluster-interest-queue-full", dropped);
                }
                let now = Instant::now();
                let live: HashSet<String> =
                    registry.channel_names().iter().map(|c| c.to_string()).collect();
                for name in &live {
                    idle.remove(name);
                    if !cluster.bus.is_subscribed(name) {
                        subscribe_soon(&shared, &pending, name.clone(), None);
                    }
                }
                for name in cluster.bus.subscribed_channels() {
                    if live.contains(&name) {
                        continue;
                    }
                    let since = *idle.entry(name.clone()).or_insert(now);
                    if now.duration_since(since) >= cluster.idle_unsubscribe {
                        cluster.bus.unsubscribe(&name);
                        idle.remove(&name);
                    }
                }
                idle.retain(|name, _| cluster.bus.is_subscribed(name));
            }
        }
    }
}

/// Subscribes the node to `channel` in the background, unless that is already under way.
fn subscribe_soon(
    shared: &Arc<Shared>,
    pending: &Arc<parking_lot::Mutex<HashSet<String>>>,
    channel: String,
    since: Option<std::time::SystemTime>,
) {
    if !pending.lock().insert(channel.clone()) {
        return;
    }
    let shared = shared.clone();
    let pending = pending.clone();
    tokio::spawn(async move {
        if let Some(cluster) = &shared.cluster {
            let done = match since {
                Some(since) => cluster.bus.subscribe_since(&channel, since).await,
                None => cluster.bus.subscribe(&channel).await,
            };
            if let Err(e) = done {
                subscribe_failed(&shared, &e);
            }
        }
        pending.lock().remove(&channel);
    });
}

fn subscribe_failed(shared: &Shared, e: &BusError) {
    shared
        .metrics
        .count_errors(Source::Internal, "cluster-subscribe", 1);
    crate::warn_limited!(
        "cluster-subscribe",
        "cluster: could not subscribe to a channel: {e}"
    );
}

/// Reads a channel's kept items from the stream (for [`ClusterHistory`]'s misses).
///
/// [`ClusterHistory`]: gripway_broker::history::ClusterHistory
pub(crate) struct StreamHistory {
    pub(crate) bus: Bus,
    pub(crate) registry: Arc<gripway_broker::Registry>,
}

impl RemoteHistory for StreamHistory {
    fn read_after_id<'a>(
        &'a self,
        channel: &'a str,
        id: &'a str,
        limit: usize,
    ) -> RemoteFuture<'a> {
        Box::pin(async move {
            let unavailable = |e: BusError| HistoryError::Unavailable(e.to_string());
            // a hold that reads is subscribed here already: the node subscribes first, so
            // whatever is stored after the read reaches it (a tool's `GET /history` reads
            // without subscribing)
            if self.registry.subscriber_count(channel) > 0 {
                self.bus.subscribe(channel).await.map_err(unavailable)?;
            }
            let kept = self
                .bus
                .read_after(channel, 0, usize::MAX)
                .await
                .map_err(unavailable)?;
            let at = kept.iter().position(|s| s.id.as_deref() == Some(id));
            let after = &kept[at.map_or(0, |i| i + 1)..];
            // an item no longer readable (written by another version) is left out; the
            // feeder counts such items as they arrive
            let items = after
                .iter()
                .take(limit)
                .filter_map(|s| Some((s.seq, Message::new(stored_item(&s.payload)?))))
                .collect();
            Ok(RemoteRead {
                found: at.is_some(),
                more: after.len() > limit,
                items,
            })
        })
    }
}

/// How long start-up waits for the stream before going on without it (publishes get 503
/// until it is there; a task keeps trying).
const STREAM_WAIT: Duration = Duration::from_secs(10);

/// Connects to the cluster and makes sure the stream exists with the wanted settings. A
/// stream that exists with settings that cannot be changed stops start-up; NATS not
/// reachable does not (the node serves, and publishes get 503 until it is).
pub(crate) async fn connect(
    config: gripway_cluster::ClusterConfig,
) -> Result<(Bus, mpsc::Receiver<Delivery>), crate::config::ConfigError> {
    use crate::config::ConfigError;
    let urls = config.urls.join(",");
    let (bus, deliveries) = Bus::connect(config)
        .await
        .map_err(|e| ConfigError::new(format!("[cluster]: {e}")))?;
    match tokio::time::timeout(STREAM_WAIT, bus.ensure_stream()).await {
        Ok(Ok(())) => tracing::info!(nats = %urls, "cluster: joined"),
        Ok(Err(e @ BusError::Stream(_))) | Ok(Err(e @ BusError::Rejected(_))) => {
            return Err(ConfigError::new(format!("[cluster]: {e}")))
        }
        Ok(Err(e)) => keep_trying(&bus, &urls, e.to_string()),
        Err(_) => keep_trying(&bus, &urls, "no answer".to_string()),
    }
    Ok((bus, deliveries))
}

fn keep_trying(bus: &Bus, urls: &str, why: String) {
    tracing::warn!(nats = %urls, "cluster: the stream could not be set up yet ({why}); publishes get 503 until it is");
    let bus = bus.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if bus.ensure_stream().await.is_ok() {
                tracing::info!("cluster: joined");
                return;
            }
        }
    });
}

/// This node's counts, as the other nodes ask for them.
struct RegistryCounts(Arc<Registry>);

impl LocalCounts for RegistryCounts {
    fn subscribers_of(&self, channel: &str) -> usize {
        self.0.subscriber_count(channel)
    }

    fn totals(&self) -> (u64, u64) {
        (
            self.0.subscription_count() as u64,
            self.0.channel_count() as u64,
        )
    }
}

/// Cluster mode's figures for `/metrics`.
pub(crate) struct Figures {
    bus: Bus,
    peers: Arc<Peers>,
}

impl Figures {
    /// (name, help, is a counter, value) of each figure, now.
    pub(crate) fn read(&self) -> Vec<(&'static str, &'static str, bool, u64)> {
        let s = self.bus.stats();
        let t = self.peers.totals();
        vec![
            (
                "cluster_connected",
                "1 while this node is connected to NATS",
                false,
                u64::from(self.bus.is_connected()),
            ),
            (
                "cluster_nodes",
                "Nodes of the cluster heard from lately, this one included",
                false,
                t.nodes,
            ),
            (
                "cluster_subscriptions",
                "Channel subscriptions held over the whole cluster",
                false,
                t.subscriptions,
            ),
            (
                "cluster_node_channels",
                "Channels with subscribers, summed over the nodes",
                false,
                t.channels,
            ),
            (
                "cluster_interest_channels",
                "Channels this node receives from the stream",
                false,
                self.bus.subscriptions() as u64,
            ),
            (
                "cluster_delivered",
                "Items received from the stream and handed to the broker",
                true,
                s.delivered,
            ),
            (
                "cluster_read_back",
                "Of those, items read back from the stream after a missed republish",
                true,
                s.read_back,
            ),
            (
                "cluster_gaps",
                "Items received after others of their channel were lost for good",
                true,
                s.gaps,
            ),
            (
                "cluster_resyncs",
                "Catch-ups of every subscribed channel (reconnects, leader changes)",
                true,
                s.resyncs,
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use gripway_proto::publish::{device_item, DevicePublish, MqttProperties, StreamForm};

    use super::*;

    #[test]
    fn items_with_an_mqtt_message_come_back_from_the_stream_whole() {
        let big = vec![b'x'; 70_000]; // over the publish API's default content limit
        for (payload, form) in [
            (&b"21.5"[..], StreamForm::Sse),
            (b"\xff\x00", StreamForm::Raw),
            (&big, StreamForm::None),
        ] {
            let publish = DevicePublish {
                topic: "sensors/kitchen".into(),
                payload: Bytes::copy_from_slice(payload),
                qos: 1,
                retain: true,
                properties: MqttProperties {
                    content_type: Some("text/plain".into()),
                    correlation_data: Some(Bytes::from_static(b"\x01")),
                    user: vec![("k".into(), "v".into())],
                    ..MqttProperties::default()
                },
            };
            let item = device_item("devices/a".into(), Some("m1".into()), publish, form);
            assert_eq!(stored_item(&stored_payload(&item)), Some(item));
        }
    }
}
