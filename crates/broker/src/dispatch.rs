//! The broker's front door: accepted publish items go into per-shard queues, and one task
//! per shard takes them in order through dedup and `prev-id` ordering to the registry's
//! fan-out.
//!
//! Items are sharded by channel name, so every item of a channel passes through the same
//! task in the order it was accepted: per-channel publish order holds for every subscriber.
//! A shard task drains everything queued before it fans out, groups it by channel, and hands
//! each subscriber one batch per channel, so a publish request of many items costs each
//! subscriber one write, not one per item.
//!
//! `publish` returns once the items are queued: the publish API answers without waiting for
//! the fan-out — except a lone item bound for a few subscribers while its shard is idle,
//! which is fanned out in the publisher's own task before it returns (cheaper than waking
//! the shard's task; see [`crate::shard`]). The queues are bounded; when they are full,
//! `publish` waits (backpressure on the publisher) rather than dropping anything it has
//! acknowledged.
//!
//! [`Broker::drain`] (at shutdown) closes the queues, so later publishes fail with
//! [`BrokerClosed`], and resolves once every shard has fanned out all it had accepted,
//! items waiting for their predecessor included.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use foldhash::fast::FixedState;
use gripway_proto::publish::Item;
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::ack::{Ack, Entry};
use crate::dedup::Dedup;
use crate::history::{History, HistoryConfig, MemoryHistory};
use crate::last_ids::LastIds;
use crate::message::Message;
use crate::registry::Registry;
use crate::sequencer::Sequencer;
use crate::shard::{self, Lane, Shard};
use crate::subscriber::Transport;

/// How the broker orders, deduplicates and queues.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Dispatcher tasks (channels are spread over them by name).
    pub shards: usize,
    /// Items queued per shard before `publish` waits.
    pub queue_per_shard: usize,
    /// A (channel, id) seen within this window is not delivered again; zero disables.
    pub dedup_window: Duration,
    /// Most bytes the remembered (channel, id) pairs may cost, over all shards; past it
    /// the oldest are forgotten early.
    pub dedup_max_bytes: usize,
    /// How long an out-of-order item waits for its predecessor.
    pub order_wait: Duration,
    /// Most items waiting per channel.
    pub max_waiting_per_channel: usize,
    /// Most bytes the ordering state (channels, last ids, waiting items) may cost, over all
    /// shards; past it the channels quiet longest are forgotten, releasing what waited.
    pub order_max_bytes: usize,
    /// Most bytes the table of last ids per channel (for `prev-id` checks on holds) may
    /// cost; past it the ids set longest ago are forgotten.
    pub last_ids_max_bytes: usize,
    /// Bounds on the in-memory history [`Broker::start`] keeps (`max_items` zero: none).
    pub history: HistoryConfig,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            shards: 2,
            queue_per_shard: 65_536,
            dedup_window: Duration::from_secs(60),
            dedup_max_bytes: 32 << 20,
            order_wait: Duration::from_secs(5),
            max_waiting_per_channel: 100,
            order_max_bytes: 64 << 20,
            last_ids_max_bytes: 16 << 20,
            history: HistoryConfig::default(),
        }
    }
}

/// Counters of what the broker did, read by the metrics endpoint.
#[derive(Debug, Default)]
pub struct BrokerStats {
    /// Items accepted by `publish`.
    pub received: AtomicU64,
    /// Items not delivered because their (channel, id) was seen within the window.
    pub duplicates: AtomicU64,
    /// Items that had to wait for their predecessor.
    pub waited: AtomicU64,
    /// Items published to a channel with no subscribers on this node.
    pub unheard: AtomicU64,
    /// Messages written or queued to subscribers, by [`Transport::index`].
    pub sent: [AtomicU64; Transport::ALL.len()],
    /// Messages lost to subscribers too slow to keep up (they are disconnected).
    pub dropped_slow: AtomicU64,
    /// Messages not delivered because the subscriber was already closing.
    pub dropped_closed: AtomicU64,
    /// (channel, id) pairs the dedup tables remember now, over all shards.
    pub dedup_entries: AtomicU64,
    /// What the dedup tables cost now, in bytes.
    pub dedup_bytes: AtomicU64,
    /// Channels with ordering state now, over all shards.
    pub order_channels: AtomicU64,
    /// Items waiting for their predecessor now.
    pub order_waiting: AtomicU64,
    /// What the ordering state costs now, in bytes.
    pub order_bytes: AtomicU64,
}

/// Why `publish` could not take items.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// The broker is draining or gone: nothing was taken.
    #[error("the broker is shutting down")]
    Closed,
    /// A durable history store could not store every item: the request must not be
    /// acknowledged (the items that were not stored were not delivered either).
    #[error("items could not be stored")]
    NotStored,
}

/// Handle to the broker; cheap to clone.
#[derive(Clone)]
pub struct Broker {
    registry: Arc<Registry>,
    last_ids: Arc<LastIds>,
    history: Arc<History>,
    lanes: Arc<[Lane]>,
    hasher: FixedState,
    stats: Arc<BrokerStats>,
    /// Set by [`Broker::drain`]: each shard closes its queue and ends once it is empty.
    stop: Arc<watch::Sender<bool>>,
    shard_tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Broker {
    /// Starts the dispatcher tasks on the current tokio runtime, with history kept in
    /// memory within `config.history` (or none when its `max_items` is zero).
    pub fn start(config: BrokerConfig) -> Broker {
        let history = if config.history.max_items == 0 {
            History::Off
        } else {
            History::Memory(MemoryHistory::new(config.history, config.shards.max(1)))
        };
        Broker::start_with_history(config, history)
    }

    /// Starts the dispatcher tasks with the given history store.
    pub fn start_with_history(config: BrokerConfig, history: History) -> Broker {
        let history = Arc::new(history);
        if history.is_on() {
            tokio::spawn(expire_history(Arc::downgrade(&history)));
        }
        let registry = Registry::new();
        let last_ids = Arc::new(LastIds::new(config.last_ids_max_bytes));
        let stats = Arc::new(BrokerStats::default());
        let shards = config.shards.max(1);
        let (stop, _) = watch::channel(false);
        let mut shard_tasks = Vec::with_capacity(shards);
        let lanes: Vec<_> = (0..shards)
            .map(|_| {
                let shard = Shard::new(
                    registry.clone(),
                    last_ids.clone(),
                    history.clone(),
                    stats.clone(),
                    Dedup::new(config.dedup_window, config.dedup_max_bytes / shards),
                    Sequencer::new(
                        config.order_wait,
                        config.max_waiting_per_channel,
                        config.order_max_bytes / shards,
                    ),
                );
                let (lane, rx) = Lane::new(shard, config.queue_per_shard);
                shard_tasks.push(tokio::spawn(shard::run(
                    lane.state.clone(),
                    rx,
                    stop.subscribe(),
                )));
                lane
            })
            .collect();
        Broker {
            registry,
            last_ids,
            history,
            lanes: lanes.into(),
            hasher: FixedState::with_seed(0x7368_6172),
            stats,
            stop: Arc::new(stop),
            shard_tasks: Arc::new(Mutex::new(shard_tasks)),
        }
    }

    /// Stops taking items and fans out everything already accepted: resolves once every
    /// shard's queue is empty and its task has ended. Later `publish` calls fail with
    /// [`BrokerClosed`]. A second caller returns at once.
    pub async fn drain(&self) {
        self.stop.send_replace(true);
        let tasks = std::mem::take(&mut *self.shard_tasks.lock());
        for task in tasks {
            let _ = task.await;
        }
    }

    /// The subscriber registry, for connections to subscribe.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The id of the last item delivered on `channel`, when this node knows it (see
    /// [`LastIds`]).
    pub fn last_id(&self, channel: &str) -> Option<Arc<str>> {
        let subscribed = self.registry.subscriber_count(channel) > 0;
        self.last_ids.get(channel, subscribed, Instant::now())
    }

    /// The history store: every item with an id, per channel, as fanned out.
    pub fn history(&self) -> &Arc<History> {
        &self.history
    }

    /// Forgets every channel's last id (`POST /recover`).
    pub fn clear_last_ids(&self) {
        self.last_ids.clear();
    }

    /// What the broker has done so far.
    pub fn stats(&self) -> &BrokerStats {
        &self.stats
    }

    /// Channels whose last id is remembered, and what that table costs in bytes.
    pub fn last_ids_size(&self) -> (usize, usize) {
        (self.last_ids.len(), self.last_ids.bytes())
    }

    /// Queues validated items for fan-out, in order. Returns once all are queued — or,
    /// with a durable history store, once all are stored ([`crate::ack`]).
    pub async fn publish(&self, items: Vec<Item>) -> Result<(), PublishError> {
        let (ack, answer) = match self.history.is_durable() && !items.is_empty() {
            true => {
                let (ack, rx) = Ack::new(items.len());
                (Some(ack), Some(rx))
            }
            false => (None, None),
        };
        let single = items.len() == 1;
        for item in items {
            let msg = Message::new(item);
            let lane = &self.lanes[self.shard_of(&msg.channel)];
            // a lone item may be fanned out right here (see crate::shard)
            let msg = match single && ack.is_none() {
                true => match lane.fan_out_here(msg) {
                    None => {
                        self.stats.received.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    Some(msg) => msg,
                },
                false => msg,
            };
            let entry = Entry {
                msg,
                ack: ack.clone(),
            };
            // counted before it can be seen, uncounted if it was not taken
            lane.state.queued.fetch_add(1, Ordering::SeqCst);
            let taken = match lane.tx.try_send(entry) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(entry)) => lane.tx.send(entry).await.is_ok(),
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            };
            if !taken {
                lane.state.queued.fetch_sub(1, Ordering::SeqCst);
                return Err(PublishError::Closed);
            }
            self.stats.received.fetch_add(1, Ordering::Relaxed);
        }
        drop(ack);
        match answer {
            None => Ok(()),
            Some(rx) => match rx.await {
                Ok(true) => Ok(()),
                Ok(false) => Err(PublishError::NotStored),
                Err(_) => Err(PublishError::Closed),
            },
        }
    }

    fn shard_of(&self, channel: &str) -> usize {
        (self.hasher.hash_one(channel) as usize) % self.lanes.len()
    }
}

/// How often quiet channels' history is checked for items past `max_age`.
const EXPIRE_EVERY: Duration = Duration::from_secs(1);

/// Drops aged history on quiet channels until the broker is gone.
async fn expire_history(history: std::sync::Weak<History>) {
    let mut tick = tokio::time::interval(EXPIRE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(history) = history.upgrade() else {
            return;
        };
        history.expire(Instant::now()).await;
    }
}
