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
//! the fan-out. (An item the shard would only pass on — no id, no `prev-id`, a narrow
//! channel, an idle shard on the publisher's own thread — is written by `publish` itself:
//! [`crate::inline`].) With a durable history store it returns once the items are stored: a shard
//! hands each batch to the store and, while that write is in flight, takes its next batch
//! (up to [`MAX_IN_FLIGHT`] writes); each batch is fanned out and acknowledged when its own
//! write is done, oldest first, so a channel's items never overtake earlier ones. A
//! duplicate is acknowledged with the batch it arrived in (its first copy may still be in
//! flight), or, when an item of its channel waits for its predecessor, with the batch that
//! item is released in; and only if no write failed meanwhile. The queues are bounded; when
//! they are full, `publish` waits (backpressure on the publisher) rather than dropping
//! anything it has acknowledged.
//!
//! [`Broker::drain`] (at shutdown) closes the queues, so later publishes fail with
//! [`PublishError::Closed`], and resolves once every shard has fanned out all it had accepted,
//! items waiting for their predecessor included.

use std::collections::VecDeque;
use std::future::Future;
use std::hash::BuildHasher;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use foldhash::fast::FixedState;
use foldhash::HashMap;
use gripway_proto::publish::Item;
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::ack::{Ack, Entry};
use crate::dedup::Dedup;
use crate::grouping::{group_by_channel, group_in_place, Scratch};
use crate::history::{History, HistoryConfig, HistoryError, MemoryHistory};
use crate::inline::{self, Gate};
use crate::lanes::{Lane, LANE_MIN_SUBSCRIBERS};
use crate::last_ids::LastIds;
use crate::message::{ChannelName, Message};
use crate::registry::{FanOutCount, Registry};
use crate::sequencer::{Arrival, Sequencer};
use crate::stats::BrokerStats;

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
    /// Where wide fan-outs run ([`crate::lanes`]: one lane per shard, spawned on this
    /// runtime); `None`: every fan-out runs in its shard's task.
    pub lanes: Option<tokio::runtime::Handle>,
    /// Parts per lane: how many threads at most write one wide channel's batch at once
    /// (the server gives one per worker thread but one; see [`crate::lanes`]).
    pub lane_parts: usize,
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
            lanes: None,
            lane_parts: 1,
        }
    }
}

/// What one shard last added to the size gauges of [`BrokerStats`] (each shard adds the
/// change since its last report, so the gauges are sums over shards without a lock).
#[derive(Default)]
struct Reported {
    dedup_entries: u64,
    dedup_bytes: u64,
    order_channels: u64,
    order_waiting: u64,
    order_bytes: u64,
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
    queues: Arc<[mpsc::Sender<Entry>]>,
    /// Each shard's state as a publisher may see it (`inline`), by shard.
    gates: Arc<[Arc<Gate>]>,
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
        Broker::start_with(config, history, Registry::new())
    }

    /// Starts the dispatcher tasks with the given history store and registry (a cluster
    /// node's history reads the registry, so it exists before the broker).
    pub fn start_with(config: BrokerConfig, history: History, registry: Arc<Registry>) -> Broker {
        let history = Arc::new(history);
        if history.is_on() {
            tokio::spawn(expire_history(Arc::downgrade(&history)));
        }
        let last_ids = Arc::new(LastIds::new(config.last_ids_max_bytes));
        let stats = Arc::new(BrokerStats::default());
        let shards = config.shards.max(1);
        let (stop, _) = watch::channel(false);
        let mut shard_tasks = Vec::with_capacity(shards);
        let mut gates = Vec::with_capacity(shards);
        let queues: Vec<_> = (0..shards)
            .map(|_| {
                let (tx, rx) = mpsc::channel(config.queue_per_shard.max(1));
                let gate = Arc::new(Gate::default());
                gates.push(gate.clone());
                let shard = Shard {
                    gate,
                    durable_dedup_until: Instant::now() + config.dedup_window,
                    restored_forgotten: false,
                    acks: HashMap::default(),
                    registry: registry.clone(),
                    last_ids: last_ids.clone(),
                    history: history.clone(),
                    stats: stats.clone(),
                    dedup: Dedup::new(config.dedup_window, config.dedup_max_bytes / shards),
                    sequencer: Sequencer::new(
                        config.order_wait,
                        config.max_waiting_per_channel,
                        config.order_max_bytes / shards,
                    ),
                    reported: Reported::default(),
                    scratch: Scratch::default(),
                    lane: config
                        .lanes
                        .as_ref()
                        .map(|runtime| Lane::start(runtime, config.lane_parts, stats.clone())),
                    in_flight: VecDeque::new(),
                    dups: Vec::new(),
                    waiting_dups: Vec::new(),
                    failures: 0,
                };
                shard_tasks.push(tokio::spawn(shard.run(rx, stop.subscribe())));
                tx
            })
            .collect();
        Broker {
            registry,
            last_ids,
            history,
            queues: queues.into(),
            gates: gates.into(),
            hasher: FixedState::with_seed(0x7368_6172),
            stats,
            stop: Arc::new(stop),
            shard_tasks: Arc::new(Mutex::new(shard_tasks)),
        }
    }

    /// Stops taking items and fans out everything already accepted: resolves once every
    /// shard's queue is empty and its task has ended. Later `publish` calls fail with
    /// [`PublishError::Closed`]. A second caller returns at once.
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
        self.publish_messages(items.into_iter().map(Message::new))
            .await
    }

    /// [`Broker::publish`] for items already made into messages (by
    /// [`Message::new_fresh`], say).
    pub async fn publish_messages(
        &self,
        msgs: impl ExactSizeIterator<Item = Arc<Message>> + Send,
    ) -> Result<(), PublishError> {
        let (ack, answer) = match self.history.is_durable() && msgs.len() > 0 {
            true => {
                let (ack, rx) = Ack::new(msgs.len());
                (Some(ack), Some(rx))
            }
            false => (None, None),
        };
        let mut now = None;
        for msg in msgs {
            let shard = self.shard_of(&msg.channel);
            let queue = &self.queues[shard];
            let gate = &self.gates[shard];
            if queue.is_closed() {
                return Err(PublishError::Closed);
            }
            // an item the shard would only pass on is written here when that keeps its
            // order (see `inline`); anything else is queued
            let queue_empty = queue.capacity() == queue.max_capacity();
            if ack.is_none() && inline::may_write(gate, queue_empty, &msg) {
                // the last id first, as the shard records it (see `fan_out_channel`)
                let now = *now.get_or_insert_with(Instant::now);
                self.last_ids.set(&msg.channel, None, now);
                if let Some(count) = inline::fan_out(&self.registry, &msg) {
                    self.stats.count_fan_out(&count, 1);
                    self.stats.received.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            }
            gate.busy();
            let entry = Entry {
                msg,
                ack: ack.clone(),
            };
            match queue.try_send(entry) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(entry)) => {
                    queue.send(entry).await.map_err(|_| PublishError::Closed)?;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return Err(PublishError::Closed),
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
        (self.hasher.hash_one(channel) as usize) % self.queues.len()
    }
}

/// One dispatcher task's state: the channels hashed to it.
struct Shard {
    /// What publishers may know of this shard's state (`inline`).
    gate: Arc<Gate>,
    /// Until when ids are also looked up in a durable store (start + dedup window).
    durable_dedup_until: Instant,
    /// Set once past `durable_dedup_until`, when the store's restored ids were freed.
    restored_forgotten: bool,
    /// Publish requests waiting for items of this shard to be stored (durable history
    /// only), by the address of the item's message.
    acks: HashMap<usize, Arc<Ack>>,
    registry: Arc<Registry>,
    last_ids: Arc<LastIds>,
    history: Arc<History>,
    stats: Arc<BrokerStats>,
    dedup: Dedup,
    sequencer: Sequencer,
    reported: Reported,
    /// Reused by [`group_in_place`] (no allocation per batch once grown).
    scratch: Scratch,
    /// Where this shard's wide fan-outs run, if anywhere else ([`crate::lanes`]).
    lane: Option<Lane>,
    /// Batches handed to a durable store and not yet answered, oldest first.
    in_flight: VecDeque<InFlight>,
    /// Acknowledgements of duplicates found in the batch being taken.
    dups: Vec<Arc<Ack>>,
    /// Acknowledgements of duplicates on channels with items waiting for a predecessor,
    /// held until those are released (see [`Shard::release_waiting_dups`]).
    waiting_dups: Vec<(ChannelName, Arc<Ack>)>,
    /// Writes that failed so far (a duplicate is acknowledged only if none failed between
    /// its arrival and its answer).
    failures: u64,
}

/// Most items taken from the queue before fanning out.
const MAX_BATCH: usize = 4096;
/// Most writes a shard has in flight before it waits for the oldest.
pub const MAX_IN_FLIGHT: usize = 4;

/// A batch handed to a durable store, waiting for its write.
struct InFlight {
    groups: Vec<Vec<Arc<Message>>>,
    stored: Pin<Box<dyn Future<Output = Result<(), HistoryError>> + Send>>,
    /// Duplicates to acknowledge with it, each with the failure count at its arrival.
    dups: Vec<(Arc<Ack>, u64)>,
}

/// What woke a shard.
enum Wake {
    /// The oldest write in flight was answered.
    Stored(Result<(), HistoryError>),
    /// Items were taken (true: the queue is closed and empty).
    Took(bool),
    /// An ordering deadline passed.
    Tick,
    /// The broker is draining.
    Stop,
}

/// The answer to the oldest write in flight (pending forever when none is).
async fn oldest(in_flight: &mut VecDeque<InFlight>) -> Result<(), HistoryError> {
    match in_flight.front_mut() {
        Some(f) => f.stored.as_mut().await,
        None => std::future::pending().await,
    }
}

impl Shard {
    async fn run(mut self, mut rx: mpsc::Receiver<Entry>, mut stop: watch::Receiver<bool>) {
        let mut batch = Vec::with_capacity(64);
        let mut ready = Vec::with_capacity(64);
        let mut stopping = false;
        self.gate.started(self.lane.as_ref().map(Lane::pending));
        loop {
            // publishers may write items that need no ordering themselves while nothing is
            // queued, waiting or in flight here (`inline`)
            self.gate.set_idle(
                !stopping
                    && rx.is_empty()
                    && self.in_flight.is_empty()
                    && self.sequencer.channels() == 0,
            );
            let deadline = self.sequencer.next_deadline();
            let flying = !self.in_flight.is_empty();
            let take = self.in_flight.len() < MAX_IN_FLIGHT;
            let wake = tokio::select! {
                biased;
                r = oldest(&mut self.in_flight), if flying => Wake::Stored(r),
                n = rx.recv_many(&mut batch, MAX_BATCH), if take => Wake::Took(n == 0),
                _ = sleep_until(deadline), if deadline.is_some() => Wake::Tick,
                _ = stop.wait_for(|s| *s), if !stopping => Wake::Stop,
            };
            let closed = match wake {
                Wake::Stored(r) => {
                    if let Some(f) = self.in_flight.pop_front() {
                        self.finish(f.groups, r, f.dups).await;
                    }
                    self.report_sizes();
                    continue;
                }
                Wake::Took(closed) => {
                    self.gate.busy();
                    closed
                }
                Wake::Tick => false,
                // drain: take nothing new; what is queued is still received, then recv ends
                Wake::Stop => {
                    stopping = true;
                    rx.close();
                    false
                }
            };
            let now = Instant::now();
            if !self.restored_forgotten && now >= self.durable_dedup_until {
                // no retry of an item stored before the restart can be a duplicate any more
                self.history.forget_restored_ids();
                self.restored_forgotten = true;
            }
            for entry in batch.drain(..) {
                self.arrive(entry, now, &mut ready);
            }
            // at shutdown nothing more can arrive: release whatever still waits
            let horizon = if closed {
                now + Duration::from_secs(86_400)
            } else {
                now
            };
            self.sequencer.expire(horizon, &mut ready);
            if !ready.is_empty() {
                if self.history.is_immediate() {
                    self.fan_out(&mut ready, now).await;
                } else {
                    self.store(&mut ready).await;
                }
            }
            self.release_waiting_dups();
            self.settle_dups();
            self.report_sizes();
            if closed {
                // every sender is gone: finish what is in flight
                while let Some(f) = self.in_flight.pop_front() {
                    let r = f.stored.await;
                    self.finish(f.groups, r, f.dups).await;
                }
                self.report_sizes();
                // what the lane still has is written before the end
                if let Some(lane) = self.lane.take() {
                    lane.finish().await;
                }
                return;
            }
        }
    }

    /// Brings the size gauges up to date (once per batch, not per item).
    fn report_sizes(&mut self) {
        let now = Reported {
            dedup_entries: self.dedup.len() as u64,
            dedup_bytes: self.dedup.bytes() as u64,
            order_channels: self.sequencer.channels() as u64,
            order_waiting: self.sequencer.waiting() as u64,
            order_bytes: self.sequencer.bytes() as u64,
        };
        let r = &mut self.reported;
        let s = &self.stats;
        for (gauge, old, new) in [
            (&s.dedup_entries, &mut r.dedup_entries, now.dedup_entries),
            (&s.dedup_bytes, &mut r.dedup_bytes, now.dedup_bytes),
            (&s.order_channels, &mut r.order_channels, now.order_channels),
            (&s.order_waiting, &mut r.order_waiting, now.order_waiting),
            (&s.order_bytes, &mut r.order_bytes, now.order_bytes),
        ] {
            if *old != new {
                // wrapping: a shrinking shard subtracts
                gauge.fetch_add(new.wrapping_sub(*old), Ordering::Relaxed);
                *old = new;
            }
        }
    }

    fn arrive(&mut self, entry: Entry, now: Instant, ready: &mut Vec<Arc<Message>>) {
        let Entry { msg, ack } = entry;
        // an id this node made for the item cannot have been seen before
        if let Some(id) = msg.id().filter(|_| !msg.id_is_fresh()) {
            // a durable store also knows ids stored before a restart: asked while those
            // can still be within the dedup window (after that, this process's own table
            // has seen every id the window covers)
            if !self.dedup.first_sighting(&msg.channel, id, now)
                || (now < self.durable_dedup_until
                    && self.history.durable_contains(&msg.channel, id))
            {
                self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                if let Some(ack) = ack {
                    if self.sequencer.is_waiting_on(&msg.channel) {
                        // its first copy may be the item waiting for its predecessor:
                        // answered once the channel's waiting items are released
                        self.waiting_dups.push((msg.channel.clone(), ack));
                    } else {
                        // stored, or in a write in flight: answered with this batch's write
                        self.dups.push(ack);
                    }
                }
                return;
            }
        }
        if let Some(ack) = ack {
            self.acks.insert(Arc::as_ptr(&msg) as usize, ack);
        }
        // asked only when the sequencer needs it (not for the common item without an id)
        let registry = &self.registry;
        let has_subscribers = |channel: &str| registry.subscriber_count(channel) > 0;
        if self.sequencer.arrive_with(msg, has_subscribers, now, ready) == Arrival::Waiting {
            self.stats.waited.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// With a durable store: hands every channel's batch to the store (all at once: one
    /// write, one fsync) and keeps it in flight until [`Shard::finish`]. When the store
    /// cannot take it now (its queue is full), finishes what is in flight and waits for
    /// this write, so batches are always stored in the order they were taken.
    async fn store(&mut self, ready: &mut Vec<Arc<Message>>) {
        let groups = group_by_channel(ready);
        let failures = self.failures;
        let dups = self.dups.drain(..).map(|a| (a, failures)).collect();
        if let Some(stored) = self.history.try_append_groups(&groups, Instant::now()) {
            self.in_flight.push_back(InFlight {
                groups,
                stored: Box::pin(stored),
                dups,
            });
            return;
        }
        while let Some(f) = self.in_flight.pop_front() {
            let r = f.stored.await;
            self.finish(f.groups, r, f.dups).await;
        }
        let r = self.history.append_groups(&groups, Instant::now()).await;
        self.finish(groups, r, dups).await;
    }

    /// Moves the held duplicates of channels with nothing waiting any more to `dups`: their
    /// first copies were released, so they are stored or in the newest write in flight.
    fn release_waiting_dups(&mut self) {
        if self.waiting_dups.is_empty() {
            return;
        }
        let (sequencer, dups) = (&self.sequencer, &mut self.dups);
        self.waiting_dups.retain(|(channel, ack)| {
            let release = !sequencer.is_waiting_on(channel);
            if release {
                dups.push(ack.clone());
            }
            !release
        });
    }

    /// Acknowledges the duplicates of a batch that stored nothing: with the newest write in
    /// flight (their first copies are in it or older ones), or at once when none is.
    fn settle_dups(&mut self) {
        if self.dups.is_empty() {
            return;
        }
        let failures = self.failures;
        match self.in_flight.back_mut() {
            Some(f) => f.dups.extend(self.dups.drain(..).map(|a| (a, failures))),
            None => self.dups.drain(..).for_each(|a| a.done(true)),
        }
    }

    /// A write is answered: fans out what it stored and acknowledges it. Items a failed
    /// write did not store are neither delivered nor acknowledged (the publisher gets an
    /// error and may retry: their ids are forgotten by dedup).
    async fn finish(
        &mut self,
        groups: Vec<Vec<Arc<Message>>>,
        stored: Result<(), HistoryError>,
        dups: Vec<(Arc<Ack>, u64)>,
    ) {
        let now = Instant::now();
        let ok = match stored {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(channels = groups.len(), "history append failed: {e}");
                self.failures += 1;
                for m in groups.iter().flatten() {
                    if let Some(id) = m.id() {
                        self.dedup.forget(&m.channel, id);
                    }
                }
                false
            }
        };
        for group in &groups {
            if ok {
                self.fan_out_channel(&group[0].channel, group, now).await;
            }
            if !self.acks.is_empty() {
                for m in group {
                    if let Some(ack) = self.acks.remove(&(Arc::as_ptr(m) as usize)) {
                        ack.done(ok);
                    }
                }
            }
        }
        for (ack, failures) in dups {
            ack.done(ok && failures == self.failures);
        }
    }

    /// Fans `ready` out, one batch per channel in order of first appearance; empties it.
    async fn fan_out(&mut self, ready: &mut Vec<Arc<Message>>, now: Instant) {
        let first = &ready[0].channel;
        if ready
            .iter()
            .all(|m| Arc::ptr_eq(&m.channel, first) || m.channel == *first)
        {
            let channel = first.clone();
            self.fan_out_channel(&channel, ready, now).await;
        } else {
            group_in_place(ready, &mut self.scratch);
            let mut rest = &ready[..];
            while let Some(head) = rest.first() {
                let n = rest
                    .iter()
                    .position(|m| m.channel != head.channel)
                    .unwrap_or(rest.len());
                self.fan_out_channel(&head.channel, &rest[..n], now).await;
                rest = &rest[n..];
            }
        }
        ready.clear();
    }

    async fn fan_out_channel(
        &mut self,
        channel: &ChannelName,
        messages: &[Arc<Message>],
        now: Instant,
    ) {
        // kept before the fan-out, like the last id: a hold that subscribes and then reads
        // history either finds an item there or receives it (duplicates are dropped by the
        // reader, see server::hold::recover); items without an id are never kept, so a
        // batch of them does not touch the store (its aged items go on the periodic sweep)
        if messages.iter().any(|m| m.has_id()) {
            self.history.append_now(channel, messages, now);
        }
        // the last id is recorded before the fan-out: a hold that subscribes and then finds
        // its prev-id still current is sure to receive every later item (see
        // server::hold::response)
        if let Some(last) = messages.last() {
            self.last_ids.set(channel, last.id(), now);
        }
        // pattern subscribers first, on this task: per-channel order holds for them too
        let by_pattern = self.registry.fan_out_patterns(channel, messages);
        if let Some(count) = &by_pattern {
            self.stats.count_fan_out_more(count);
        }
        let Some(found) = self.registry.find(channel) else {
            if by_pattern.is_none_or(|c| c.subscribers == 0) {
                self.stats
                    .count_fan_out(&FanOutCount::default(), messages.len());
            }
            return;
        };
        let Some(lane) = &self.lane else {
            return self
                .stats
                .count_fan_out(&found.fan_out(messages), messages.len());
        };
        // few subscribers: written here, unless the lane still has earlier batches to write
        if !lane.busy() {
            if let Some(count) = found.fan_out_if_at_most(LANE_MIN_SUBSCRIBERS, messages) {
                return self.stats.count_fan_out(&count, messages.len());
            }
        }
        if let Err((found, messages)) = lane.hand_over(found, messages.to_vec()).await {
            // the lane is gone (its runtime is shutting down): written here
            self.stats
                .count_fan_out(&found.fan_out(&messages), messages.len());
        }
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

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}
