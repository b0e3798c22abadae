//! One dispatcher shard: the state of the channels hashed to it (dedup, `prev-id` ordering,
//! size gauges) and the two ways its items reach the fan-out, always one at a time under the
//! shard's lock, so every channel's items go out in the order they were accepted.
//!
//! * **Queued**: the shard's task takes whatever is queued, in order, and fans it out in one
//!   batch per channel (a publish request of many items costs each subscriber one write).
//!   With a durable history store this is the only way: items are stored before they go out.
//! * **In the publisher's task** ([`Lane::fan_out_here`]): a request of one item, with
//!   in-memory (or no) history, no `prev-id` (it cannot wait), on a channel with at most
//!   [`INLINE_MAX_SUBSCRIBERS`] subscribers, while nothing of the shard is queued and its lock
//!   is free, is fanned out before the request is answered. This saves waking the shard's
//!   task, and on a multi-threaded runtime the cross-thread wake-ups that come with it, which
//!   cost more than the fan-out itself when each publish reaches a few subscribers. The
//!   publisher waits for at most those few writes (never for a slow client: writes that do
//!   not fit are queued by the subscriber's sink); larger fan-outs, and anything while the
//!   task is busy, are queued as before.
//!
//! Order: [`LaneState::queued`] counts items accepted into the queue and not yet fanned out;
//! it is raised before an item is queued and lowered, under the lock, only after the task
//! has fanned the item out. A publisher fans out in its own task only when it finds the
//! count at zero while holding the lock, so it can never overtake an item accepted before
//! it (an earlier request was answered only once its items were counted).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use foldhash::HashMap;
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};

use crate::ack::{Ack, Entry};
use crate::dedup::Dedup;
use crate::dispatch::BrokerStats;
use crate::history::History;
use crate::last_ids::LastIds;
use crate::message::{ChannelName, Message};
use crate::registry::Registry;
use crate::sequencer::{Arrival, Sequencer};

/// Most subscribers a channel may have for a publish to be fanned out in the publisher's
/// own task (each costs one write, a few microseconds; the publisher's answer waits for
/// them).
pub const INLINE_MAX_SUBSCRIBERS: usize = 32;

/// Most items taken from the queue before fanning out.
const MAX_BATCH: usize = 4096;

/// One shard's way in: its queue, and what its task shares with publishers.
pub(crate) struct Lane {
    pub(crate) tx: mpsc::Sender<Entry>,
    pub(crate) state: Arc<LaneState>,
    /// Publishers may fan out in their own task (the history store answers at once).
    inline: bool,
}

/// What a shard's task shares with publishers (not the queue's sender: the task must not
/// keep its own queue open).
pub(crate) struct LaneState {
    /// Items queued, or taken by the task, and not yet fanned out (see the module's doc).
    pub(crate) queued: AtomicUsize,
    shard: Mutex<Shard>,
}

impl Lane {
    /// A lane whose task is started with [`run`] on the returned receiver.
    pub(crate) fn new(shard: Shard, capacity: usize) -> (Lane, mpsc::Receiver<Entry>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let inline = shard.history.is_immediate();
        let state = Arc::new(LaneState {
            queued: AtomicUsize::new(0),
            shard: Mutex::new(shard),
        });
        (Lane { tx, state, inline }, rx)
    }

    /// Fans `msg` out in the caller's task when it may (see the module's doc): None when it
    /// did, else `msg` back, to be queued.
    pub(crate) fn fan_out_here(&self, msg: Arc<Message>) -> Option<Arc<Message>> {
        if !self.inline || msg.prev_id().is_some() || self.state.queued.load(Ordering::SeqCst) != 0
        {
            return Some(msg);
        }
        let Some(mut shard) = self.state.shard.try_lock() else {
            return Some(msg); // the task is fanning out: queue behind it
        };
        if self.state.queued.load(Ordering::SeqCst) != 0
            || self.tx.is_closed()
            || shard.registry.subscriber_count(&msg.channel) > INLINE_MAX_SUBSCRIBERS
        {
            return Some(msg);
        }
        shard.take_one(msg, Instant::now());
        None
    }
}

/// One dispatcher shard's state: the channels hashed to it.
pub(crate) struct Shard {
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
    /// Reused for items released by one arrival in the publisher's task.
    released: Vec<Arc<Message>>,
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

/// Runs a shard's task until its queue is closed and empty (or every sender is gone).
pub(crate) async fn run(
    lane: Arc<LaneState>,
    mut rx: mpsc::Receiver<Entry>,
    mut stop: watch::Receiver<bool>,
) {
    let mut batch = Vec::with_capacity(64);
    let mut ready = Vec::with_capacity(64);
    let mut stopping = false;
    let history = lane.shard.lock().history.clone();
    loop {
        let deadline = lane.shard.lock().sequencer.next_deadline();
        let closed = tokio::select! {
            n = rx.recv_many(&mut batch, MAX_BATCH) => n == 0,
            _ = sleep_until(deadline), if deadline.is_some() => false,
            // drain: take nothing new; what is queued is still received, then recv ends
            _ = stop.wait_for(|s| *s), if !stopping => {
                stopping = true;
                rx.close();
                false
            }
        };
        let now = Instant::now();
        let taken = batch.len();
        let store = {
            let mut shard = lane.shard.lock();
            for entry in batch.drain(..) {
                shard.arrive(entry, now, &mut ready);
            }
            // at shutdown nothing more can arrive: release whatever still waits
            let horizon = if closed {
                now + Duration::from_secs(86_400)
            } else {
                now
            };
            shard.sequencer.expire(horizon, &mut ready);
            let store = !ready.is_empty() && !history.is_immediate();
            if !store {
                if !ready.is_empty() {
                    shard.fan_out(&mut ready, now);
                }
                shard.report_sizes();
                lane.queued.fetch_sub(taken, Ordering::SeqCst);
            }
            store
        };
        if store {
            // durable history: nobody fans out in their own task, the lock is ours alone
            store_then_fan_out(&lane.shard, &history, &mut ready).await;
            lane.shard.lock().report_sizes();
            lane.queued.fetch_sub(taken, Ordering::SeqCst);
        }
        if closed {
            return; // every sender is gone
        }
    }
}

/// With a durable store: stores every channel's batch (all at once, so the store writes
/// them together), then fans out what was stored and acknowledges it. Items a failed write
/// did not store are neither delivered nor acknowledged (the publisher gets an error and
/// may retry: their ids are forgotten by dedup).
async fn store_then_fan_out(
    shard: &Mutex<Shard>,
    history: &History,
    ready: &mut Vec<Arc<Message>>,
) {
    let groups = group_by_channel(ready);
    let now = Instant::now();
    let stored = futures_util::future::join_all(
        groups.iter().map(|g| history.append(&g[0].channel, g, now)),
    )
    .await;
    let mut shard = shard.lock();
    for (group, result) in groups.iter().zip(stored) {
        let ok = match result {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(channel = %group[0].channel, "history append failed: {e}");
                for m in group {
                    if let Some(id) = &m.id {
                        shard.dedup.forget(&m.channel, id);
                    }
                }
                false
            }
        };
        if ok {
            shard.fan_out_channel(&group[0].channel, group, now);
        }
        if !shard.acks.is_empty() {
            for m in group {
                if let Some(ack) = shard.acks.remove(&(Arc::as_ptr(m) as usize)) {
                    ack.done(ok);
                }
            }
        }
    }
}

impl Shard {
    /// A shard with the given state.
    pub(crate) fn new(
        registry: Arc<Registry>,
        last_ids: Arc<LastIds>,
        history: Arc<History>,
        stats: Arc<BrokerStats>,
        dedup: Dedup,
        sequencer: Sequencer,
    ) -> Shard {
        Shard {
            acks: HashMap::default(),
            registry,
            last_ids,
            history,
            stats,
            dedup,
            sequencer,
            reported: Reported::default(),
            scratch: Scratch::default(),
            released: Vec::new(),
        }
    }

    /// Takes one item in the publisher's task (see [`Lane::fan_out_here`]).
    fn take_one(&mut self, msg: Arc<Message>, now: Instant) {
        let mut ready = std::mem::take(&mut self.released);
        self.arrive(Entry { msg, ack: None }, now, &mut ready);
        self.sequencer.expire(now, &mut ready);
        if !ready.is_empty() {
            self.fan_out(&mut ready, now);
        }
        self.report_sizes();
        self.released = ready;
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
        if let Some(id) = &msg.id {
            // a durable store also knows ids stored before a restart
            if !self.dedup.first_sighting(&msg.channel, id, now)
                || self.history.durable_contains(&msg.channel, id)
            {
                self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                if let Some(ack) = ack {
                    ack.done(true); // already stored
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

    /// Fans `ready` out, one batch per channel in order of first appearance; empties it.
    fn fan_out(&mut self, ready: &mut Vec<Arc<Message>>, now: Instant) {
        let first = &ready[0].channel;
        if ready
            .iter()
            .all(|m| Arc::ptr_eq(&m.channel, first) || m.channel == *first)
        {
            let channel = first.clone();
            self.fan_out_channel(&channel, ready, now);
        } else {
            group_in_place(ready, &mut self.scratch);
            let mut rest = &ready[..];
            while let Some(head) = rest.first() {
                let n = rest
                    .iter()
                    .position(|m| m.channel != head.channel)
                    .unwrap_or(rest.len());
                self.fan_out_channel(&head.channel, &rest[..n], now);
                rest = &rest[n..];
            }
        }
        ready.clear();
    }

    fn fan_out_channel(&self, channel: &ChannelName, messages: &[Arc<Message>], now: Instant) {
        // kept before the fan-out, like the last id: a hold that subscribes and then reads
        // history either finds an item there or receives it (duplicates are dropped by the
        // reader, see server::hold::recover); items without an id are never kept, so a
        // batch of them does not touch the store (its aged items go on the periodic sweep)
        if messages.iter().any(|m| m.id.is_some()) {
            self.history.append_now(channel, messages, now);
        }
        // the last id is recorded before the fan-out: a hold that subscribes and then finds
        // its prev-id still current is sure to receive every later item (see
        // server::hold::response)
        if let Some(last) = messages.last() {
            self.last_ids.set(channel, last.id.as_ref(), now);
        }
        let count = self.registry.fan_out(channel, messages);
        let stats = &self.stats;
        if count.subscribers == 0 {
            stats
                .unheard
                .fetch_add(messages.len() as u64, Ordering::Relaxed);
        }
        for (t, n) in count.sent.iter().enumerate() {
            if *n > 0 {
                stats.sent[t].fetch_add(*n, Ordering::Relaxed);
            }
        }
        if count.dropped_slow > 0 {
            stats
                .dropped_slow
                .fetch_add(count.dropped_slow, Ordering::Relaxed);
        }
        if count.closed > 0 {
            stats
                .dropped_closed
                .fetch_add(count.closed, Ordering::Relaxed);
        }
    }
}

/// `ready`'s messages grouped by channel, groups in order of first appearance; empties it.
fn group_by_channel(ready: &mut Vec<Arc<Message>>) -> Vec<Vec<Arc<Message>>> {
    let mut index: HashMap<ChannelName, usize> = HashMap::default();
    let mut groups: Vec<Vec<Arc<Message>>> = Vec::new();
    for msg in ready.drain(..) {
        let g = *index.entry(msg.channel.clone()).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push(msg);
    }
    groups
}

/// The buffers [`group_in_place`] reuses from batch to batch.
#[derive(Default)]
struct Scratch {
    /// Channel → group number, by first appearance.
    index: HashMap<ChannelName, u32>,
    /// (group, position in the batch) of each message.
    keys: Vec<(u32, u32)>,
    /// The messages in group order.
    sorted: Vec<Arc<Message>>,
}

/// Reorders `ready` so that each channel's messages are together, channels in order of
/// first appearance, each channel's messages in their order; allocates nothing once
/// `scratch` has grown to the batch size (it is left empty, its capacity kept; a table that
/// grew past [`SCRATCH_KEEP`] entries is given back).
fn group_in_place(ready: &mut Vec<Arc<Message>>, scratch: &mut Scratch) {
    let Scratch {
        index,
        keys,
        sorted,
    } = scratch;
    for (pos, msg) in ready.iter().enumerate() {
        let next = index.len() as u32;
        let group = *index.entry(msg.channel.clone()).or_insert(next);
        keys.push((group, pos as u32));
    }
    keys.sort_unstable();
    sorted.extend(keys.iter().map(|&(_, pos)| ready[pos as usize].clone()));
    ready.clear();
    ready.append(sorted);
    keys.clear();
    if index.capacity() > SCRATCH_KEEP {
        *index = HashMap::default();
        *keys = Vec::new();
        *sorted = Vec::new();
    } else {
        index.clear();
    }
}

/// Most entries [`Scratch`] keeps room for between batches.
const SCRATCH_KEEP: usize = 1024;

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gripway_proto::publish::{Formats, Item};

    fn msg(channel: &str, id: &str) -> Arc<Message> {
        Message::new(Item {
            channel: channel.into(),
            id: Some(id.into()),
            prev_id: None,
            meta: vec![],
            no_seq: false,
            formats: Formats::default(),
        })
    }

    fn order(ready: &[Arc<Message>]) -> Vec<String> {
        ready
            .iter()
            .map(|m| format!("{}{}", m.channel, m.id.as_deref().unwrap_or("")))
            .collect()
    }

    #[test]
    fn grouping_keeps_first_appearance_and_per_channel_order() {
        let mut scratch = Scratch::default();
        let mut ready: Vec<_> = [("b", "1"), ("a", "1"), ("b", "2"), ("c", "1"), ("a", "2")]
            .iter()
            .map(|(c, i)| msg(c, i))
            .collect();
        group_in_place(&mut ready, &mut scratch);
        assert_eq!(order(&ready), ["b1", "b2", "a1", "a2", "c1"]);
        assert!(scratch.index.is_empty() && scratch.keys.is_empty() && scratch.sorted.is_empty());
        // reused: the same again
        let mut again: Vec<_> = [("x", "1"), ("y", "1"), ("x", "2")]
            .iter()
            .map(|(c, i)| msg(c, i))
            .collect();
        group_in_place(&mut again, &mut scratch);
        assert_eq!(order(&again), ["x1", "x2", "y1"]);
    }
}
