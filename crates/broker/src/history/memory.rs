//! History kept in memory: the default store, and the one behind every node that runs
//! without `[history] dir` or a cluster.
//!
//! Structures ([`MemoryCore`], one per partition, behind a short lock):
//!
//! * a slab of channels, found by name through a hash map; each channel holds its items in a
//!   `VecDeque` of 8-byte slots (the shared `Arc<Message>`; grown by doubling up to the
//!   count bound and one, no further), the sequence number of its
//!   oldest slot (the others follow densely), and whether anything of it was ever dropped
//!   (`truncated`: what decides [`Reach::Gap`] against [`Reach::Complete`]). Its last id is
//!   its newest item's, read from that item; only a channel that holds no item keeps a copy;
//! * one queue over all channels of 12-byte entries (channel slot, the low 31 bits of the
//!   sequence, append time) in append order: its front is always the oldest kept item of the
//!   partition, so eviction by age and by bytes is a pop at the front, O(1). An item dropped
//!   by its channel's count bound leaves its queue entry behind as a tombstone (its sequence
//!   is below the channel's oldest), skipped at the front and swept once tombstones
//!   outnumber live entries: amortised O(1), as in [`crate::aged::AgedMap`]. Sequences are
//!   compared modulo 2^31, which is exact while an entry is less than 2^30 items of its
//!   channel behind (the sweep keeps the queue far shorter). An entry needs no generation:
//!   a channel is forgotten only when its live marker is at the front, and then no other
//!   entry names its slot (anything appended after the marker would have made it stale).
//!   Times are 32-bit ticks of one millisecond (coarser only when `max_age` exceeds 2^30
//!   ms) from a base that moves forward when they near 2^31;
//!
//! A channel whose last item is dropped keeps its last id (so a client that saw that item
//! is told it missed nothing) and puts a marker entry on the queue; when the marker reaches
//! the front — another `max_age` later, or sooner under byte pressure — the channel is
//! forgotten. From then on a channel the store does not know may have had items, so an
//! unknown id on it is a [`Reach::Gap`], never silently [`Reach::Complete`]. The newest
//! dropped id of a channel (a client that has it missed nothing that is still kept) is kept
//! as a 64-bit hash, so that dropping an item allocates nothing.
//!
//! Costs: the store's own memory per kept item is its slot and its order entry (20 bytes)
//! plus the spare capacity of the two queues; it charges [`ITEM_OVERHEAD`] per item against
//! `max_bytes`, with the message's own [`Message::cost`]. Appending allocates only when a
//! queue grows; reads allocate the answer's `Vec`.

use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use foldhash::fast::FixedState;
use foldhash::HashMap;
use parking_lot::Mutex;
use slab::Slab;

use super::{
    After, Appended, HistoryConfig, HistoryError, HistoryStats, HistoryStore, Kept, Reach, Recovery,
};
use crate::message::{str_heap, ChannelName, Message};

/// One kept item in its channel's queue.
type Slot = Arc<Message>;

/// One entry of the partition-wide queue, in append order.
#[derive(Clone, Copy)]
struct Order {
    slot: u32,
    /// The item's sequence number modulo 2^31, or [`MARK_BIT`] | the channel's next
    /// sequence (modulo 2^31) for a marker ("forget this channel if still empty").
    seq: u32,
    /// When it was appended (or the channel emptied), in the core's ticks.
    at: u32,
}

/// What the eviction log records for a forgotten channel.
const MARK: u64 = 1 << 63;
/// An order entry that is a marker.
const MARK_BIT: u32 = 1 << 31;
/// The sequence bits of an order entry.
const SEQ_BITS: u32 = MARK_BIT - 1;

/// `seq` as an order entry holds it.
fn seq31(seq: u64) -> u32 {
    (seq as u32) & SEQ_BITS
}

/// Ticks are rebased once they reach this (half the range of a `u32`).
const REBASE_AT: u64 = 1 << 31;

/// What the store charges per kept item beside [`Message::cost`]: its channel slot and its
/// order entry, with room for the queues' worst-case spare capacity (a `VecDeque` grows by
/// doubling; the order queue holds up to half as many tombstones as live entries, and is
/// shrunk after a sweep that leaves it under half full): 2 × 8 + 3 × 12 = 52 bytes.
pub const ITEM_OVERHEAD: usize = 2 * std::mem::size_of::<Slot>() + 3 * std::mem::size_of::<Order>();

/// What the store charges per channel beside its name.
pub const CHANNEL_OVERHEAD: usize = std::mem::size_of::<Channel>() * 2
    + std::mem::size_of::<(ChannelName, u32)>() * 8 / 7
    + 1
    + 4 * std::mem::size_of::<Slot>();

struct Channel {
    name: ChannelName,
    gen: u32,
    items: VecDeque<Slot>,
    /// Sequence number of `items[0]` (of the next item when empty).
    first_seq: u64,
    /// Some item of this channel may have been dropped (or the channel existed before and
    /// was forgotten): an unknown id is then a gap.
    truncated: bool,
    /// The id of the newest item appended, once that item is no longer kept (while any
    /// item is kept, the newest one's id is the last id, and this is None).
    last_id: Option<Arc<str>>,
    /// The hash of the id of the newest item dropped (the one just before the oldest
    /// kept): a reader that has it missed nothing that was dropped.
    evicted_id: Option<u64>,
    /// When the channel lost its last item (core milliseconds).
    emptied_at: u64,
}

impl Channel {
    fn next_seq(&self) -> u64 {
        self.first_seq + self.items.len() as u64
    }

    /// True if `id` is the id of the newest item appended.
    fn last_id_is(&self, id: &str) -> bool {
        match self.items.back() {
            Some(m) => m.id_is(id),
            None => self.last_id.as_deref() == Some(id),
        }
    }

    /// The id of the newest item appended.
    fn last_id(&self) -> Option<Arc<str>> {
        match self.items.back() {
            Some(m) => m.id().map(Arc::from),
            None => self.last_id.clone(),
        }
    }
}

/// Makes room in a full channel queue: doubling, but never past the count bound and the one
/// item appended before the oldest is dropped (so a channel at its bound has no spare).
fn grow(items: &mut VecDeque<Slot>, max_items: usize) {
    let len = items.len();
    let room = max_items.saturating_add(1).saturating_sub(len);
    items.reserve_exact(len.max(4).min(room).max(1));
}

/// The hash kept for a channel's newest dropped id.
fn id_hash(id: &[u8]) -> u64 {
    FixedState::with_seed(0x6576_6963).hash_one(id)
}

/// Why an item left.
#[derive(Clone, Copy)]
enum Cause {
    Age,
    Bytes,
}

/// One partition's history; single-threaded (see [`MemoryHistory`] for the shared store).
pub struct MemoryCore {
    config: HistoryConfig,
    base: Instant,
    /// Milliseconds of one tick of the order queue's times.
    tick_ms: u64,
    /// The core milliseconds of tick 0.
    tick_base: u64,
    epoch: u32,
    index: HashMap<ChannelName, u32>,
    channels: Slab<Channel>,
    order: VecDeque<Order>,
    next_gen: u32,
    /// Some channel was forgotten: a channel not in `index` may have had items.
    forgot: bool,
    items: usize,
    bytes: usize,
    stats: HistoryStats,
    /// Every (channel, sequence) dropped, and every channel forgotten (sequence [`MARK`]),
    /// for a durable store to delete on disk (see `memory_restore.rs`); None (the default)
    /// records nothing.
    evicted: Option<Vec<(ChannelName, u64)>>,
    /// While a durable store restores the core: every restored item's order entry and
    /// append time (core milliseconds), for [`MemoryCore::finish_restore`].
    restoring: Vec<(u64, Order)>,
}

impl MemoryCore {
    /// An empty history with these bounds; `epoch` tells its sequence numbers from those of
    /// another store (or an earlier process).
    pub fn new(config: HistoryConfig, epoch: u32, now: Instant) -> Self {
        let max_age_ms = u64::try_from(config.max_age.as_millis()).unwrap_or(u64::MAX);
        MemoryCore {
            config,
            base: now,
            tick_ms: max_age_ms.div_ceil(1 << 30).max(1),
            tick_base: 0,
            epoch,
            index: HashMap::default(),
            channels: Slab::new(),
            order: VecDeque::new(),
            next_gen: 0,
            forgot: false,
            items: 0,
            bytes: 0,
            stats: HistoryStats::default(),
            evicted: None,
            restoring: Vec::new(),
        }
    }

    fn ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.base).as_millis() as u64
    }

    /// Core milliseconds `ms` in ticks, moving the ticks' base forward first when they
    /// reach 2^31 (to 2^30 ticks back, at least `max_age`: an entry older than that then
    /// reads as exactly that old, still past `max_age`, and goes all the same).
    fn tick(&mut self, ms: u64) -> u32 {
        let ticks = ms.saturating_sub(self.tick_base) / self.tick_ms;
        if ticks < REBASE_AT {
            return ticks as u32;
        }
        let shift = ticks - REBASE_AT / 2;
        self.tick_base += shift * self.tick_ms;
        for e in self.order.iter_mut() {
            e.at = u64::from(e.at).saturating_sub(shift) as u32;
        }
        (ticks - shift) as u32
    }

    /// Core milliseconds of an order entry's time.
    fn entry_ms(&self, e: Order) -> u64 {
        self.tick_base + u64::from(e.at) * self.tick_ms
    }

    fn channel_epoch(&self, ch: &Channel) -> u64 {
        (u64::from(self.epoch) << 32) | u64::from(ch.gen)
    }

    /// What the kept items and channels cost now (what `max_bytes` bounds).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Items kept now.
    pub fn len(&self) -> usize {
        self.items
    }

    /// True when nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.items == 0
    }

    /// Counters and gauges.
    pub fn stats(&self) -> HistoryStats {
        HistoryStats {
            channels: self.channels.len() as u64,
            items: self.items as u64,
            bytes: self.bytes as u64,
            ..self.stats
        }
    }

    /// Keeps `msgs` that have an id, in order, on `channel`; then evicts by age and bytes.
    pub fn append(
        &mut self,
        channel: &ChannelName,
        msgs: &[Arc<Message>],
        now: Instant,
    ) -> Appended {
        let mut out = Appended::default();
        if self.config.max_items == 0 {
            return out;
        }
        let at = self.ms(now);
        let tick = self.tick(at);
        let mut key = None;
        for msg in msgs {
            if !msg.has_id() {
                continue;
            }
            let key = *key.get_or_insert_with(|| self.channel_slot(channel, at));
            let ch = &mut self.channels[key as usize];
            let seq = ch.next_seq();
            if ch.items.len() == ch.items.capacity() {
                grow(&mut ch.items, self.config.max_items);
            }
            ch.items.push_back(msg.clone());
            if ch.last_id.is_some() {
                ch.last_id = None; // the newest item says it now
            }
            self.order.push_back(Order {
                slot: key,
                seq: seq31(seq),
                at: tick,
            });
            self.items += 1;
            self.bytes += msg.cost() + ITEM_OVERHEAD;
            if ch.items.len() > self.config.max_items && self.drop_oldest(key as usize) {
                self.stats.evicted_count += 1;
            }
            out.kept += 1;
            out.last_seq = Some(seq);
        }
        // tombstones at the front go on every append, whatever the time (the queue then
        // stays near the live entries while the count bound drops items in append order)
        self.skip_tombstones();
        self.expire(now);
        while self.bytes > self.config.max_bytes && self.evict_front(at, Cause::Bytes) {}
        self.sweep_if_needed();
        out
    }

    /// The slot of `channel`, created if new.
    fn channel_slot(&mut self, channel: &ChannelName, at: u64) -> u32 {
        if let Some(k) = self.index.get(channel) {
            return *k;
        }
        let gen = self.next_gen;
        self.next_gen = self.next_gen.wrapping_add(1);
        let key = self.channels.insert(Channel {
            name: channel.clone(),
            gen,
            items: VecDeque::new(),
            first_seq: 1,
            truncated: self.forgot,
            last_id: None,
            evicted_id: None,
            emptied_at: at,
        }) as u32;
        self.index.insert(channel.clone(), key);
        self.bytes += CHANNEL_OVERHEAD + str_heap(channel);
        key
    }

    /// True if `e` still stands for a kept item or a pending marker.
    fn is_live(&self, e: Order) -> bool {
        let Some(ch) = self.channels.get(e.slot as usize) else {
            return false;
        };
        if e.seq & MARK_BIT != 0 {
            ch.items.is_empty() && seq31(ch.first_seq) == e.seq & SEQ_BITS
        } else {
            // modulo 2^31: behind the oldest kept (a tombstone) reads as 2^30 or more
            let ahead = e.seq.wrapping_sub(seq31(ch.first_seq)) & SEQ_BITS;
            (ahead as usize) < ch.items.len()
        }
    }

    fn skip_tombstones(&mut self) {
        while let Some(&e) = self.order.front() {
            if self.is_live(e) {
                break;
            }
            self.order.pop_front();
        }
    }

    /// Drops the oldest kept item of the channel in `slot` (one place for the accounting:
    /// counts, bytes, the eviction log of a disk store, the channel's truncation and its
    /// newest dropped id); false if it holds none.
    pub(super) fn drop_oldest(&mut self, slot: usize) -> bool {
        let Some(ch) = self.channels.get_mut(slot) else {
            return false;
        };
        let Some(old) = ch.items.pop_front() else {
            return false;
        };
        if let Some(log) = &mut self.evicted {
            log.push((ch.name.clone(), ch.first_seq));
        }
        let id = old.id_bytes().unwrap_or_default();
        ch.evicted_id = Some(id_hash(id));
        if ch.items.is_empty() {
            ch.last_id = old.id().map(Arc::from); // no item says it any more
        }
        ch.first_seq += 1;
        ch.truncated = true;
        self.items -= 1;
        self.bytes -= old.cost() + ITEM_OVERHEAD;
        true
    }

    /// Drops the oldest item (or forgets the oldest emptied channel); false if none.
    fn evict_front(&mut self, at: u64, cause: Cause) -> bool {
        self.skip_tombstones();
        let Some(e) = self.order.pop_front() else {
            return false;
        };
        let key = e.slot as usize;
        if e.seq & MARK_BIT != 0 {
            let ch = self.channels.remove(key);
            self.index.remove(&ch.name);
            if let Some(log) = &mut self.evicted {
                log.push((ch.name.clone(), MARK));
            }
            self.bytes -= CHANNEL_OVERHEAD + str_heap(&ch.name);
            self.forgot = true;
            self.stats.forgotten_channels += 1;
            return true;
        }
        if !self.drop_oldest(key) {
            return true;
        }
        match cause {
            Cause::Age => self.stats.evicted_age += 1,
            Cause::Bytes => self.stats.evicted_bytes += 1,
        }
        let tick = self.tick(at);
        let ch = &mut self.channels[key];
        if ch.items.is_empty() {
            ch.emptied_at = at;
            ch.items = VecDeque::new(); // give the slots back while only the last id stays
            let marker = Order {
                slot: e.slot,
                seq: MARK_BIT | seq31(ch.first_seq),
                at: tick,
            };
            self.order.push_back(marker);
        }
        true
    }

    /// Drops every item (and forgets every emptied channel) older than `max_age`.
    pub fn expire(&mut self, now: Instant) {
        let at = self.ms(now);
        let max_age = self.config.max_age.as_millis() as u64;
        let Some(cutoff) = at.checked_sub(max_age) else {
            return;
        };
        loop {
            self.skip_tombstones();
            let Some(&e) = self.order.front() else { break };
            if self.entry_ms(e) > cutoff {
                break;
            }
            self.evict_front(at, Cause::Age);
        }
    }

    /// Drops tombstones once they are half as many as the live entries (amortised O(1)),
    /// and gives back spare capacity.
    fn sweep_if_needed(&mut self) {
        let live = self.items + self.channels.len();
        if self.order.len() <= live + live / 2 + 64 {
            return;
        }
        let mut order = std::mem::take(&mut self.order);
        order.retain(|e| self.is_live(*e));
        if order.capacity() > 2 * order.len() + 64 {
            order.shrink_to_fit();
        }
        self.order = order;
    }

    /// The kept items of `channel` after `after` (at most `limit`), and how far they reach.
    pub fn read_after(
        &mut self,
        channel: &str,
        after: After<'_>,
        limit: usize,
        now: Instant,
    ) -> Recovery {
        self.expire(now);
        let Some(&key) = self.index.get(channel) else {
            let _ = after;
            let reach = if self.forgot {
                Reach::Gap
            } else {
                Reach::Complete
            };
            return Recovery {
                reach,
                epoch: 0,
                items: Vec::new(),
                more: false,
            };
        };
        let ch = &self.channels[key as usize];
        let unknown = if ch.truncated {
            Reach::Gap
        } else {
            Reach::Complete
        };
        let (reach, skip) = match after {
            After::Start => (unknown, 0),
            After::Id(id) => {
                if ch.last_id_is(id) {
                    (Reach::After, ch.items.len())
                } else if ch.evicted_id == Some(id_hash(id.as_bytes())) {
                    (Reach::After, 0) // everything kept follows it
                } else {
                    match ch.items.iter().rposition(|m| m.id_is(id)) {
                        Some(p) => (Reach::After, p + 1),
                        None => (unknown, 0),
                    }
                }
            }
            After::Seq { epoch, seq } => {
                if epoch == self.channel_epoch(ch) && seq < ch.next_seq() && seq + 1 >= ch.first_seq
                {
                    (Reach::After, (seq + 1 - ch.first_seq) as usize)
                } else if epoch == self.channel_epoch(ch) && seq >= ch.next_seq() {
                    (Reach::After, ch.items.len()) // nothing newer yet
                } else {
                    (unknown, 0)
                }
            }
        };
        let available = ch.items.len() - skip;
        let n = available.min(limit);
        let items = ch
            .items
            .iter()
            .enumerate()
            .skip(skip)
            .take(n)
            .map(|(i, m)| Kept {
                seq: ch.first_seq + i as u64,
                msg: m.clone(),
            })
            .collect();
        Recovery {
            reach,
            epoch: self.channel_epoch(ch),
            items,
            more: available > n,
        }
    }

    /// The newest kept item of `channel`.
    pub fn last(&mut self, channel: &str, now: Instant) -> Option<Kept> {
        self.expire(now);
        let ch = &self.channels[*self.index.get(channel)? as usize];
        let m = ch.items.back()?;
        Some(Kept {
            seq: ch.next_seq() - 1,
            msg: m.clone(),
        })
    }

    /// The memory the store's own structures hold now, beside the messages and channel
    /// names (for the overhead test).
    #[cfg(test)]
    fn structure_bytes(&self) -> (usize, usize) {
        let slots: usize = self
            .channels
            .iter()
            .map(|(_, c)| c.items.capacity() * std::mem::size_of::<Slot>())
            .sum();
        let order = self.order.capacity() * std::mem::size_of::<Order>();
        (slots, order)
    }
}

/// The shared in-memory store: channels spread by name over partitions, each a
/// [`MemoryCore`] behind its own lock (held for one append or one read, never across an
/// await). Give it as many partitions as the broker has shards, so that a shard's appends
/// rarely meet another's; each partition gets an equal share of `max_bytes`.
pub struct MemoryHistory {
    parts: Box<[Mutex<MemoryCore>]>,
    hasher: FixedState,
}

static NEXT_EPOCH: AtomicU32 = AtomicU32::new(0);

impl MemoryHistory {
    /// A store with these bounds over `partitions` locks.
    pub fn new(config: HistoryConfig, partitions: usize) -> Self {
        let partitions = partitions.max(1);
        let share = HistoryConfig {
            max_bytes: config.max_bytes / partitions,
            ..config
        };
        // an epoch that differs between processes and between stores of one process
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as u32);
        let now = Instant::now();
        MemoryHistory {
            parts: (0..partitions)
                .map(|_| {
                    let epoch =
                        started.wrapping_add(NEXT_EPOCH.fetch_add(1, Ordering::Relaxed) << 20);
                    Mutex::new(MemoryCore::new(share, epoch, now))
                })
                .collect(),
            hasher: FixedState::with_seed(0x6869_7374),
        }
    }

    fn part(&self, channel: &str) -> &Mutex<MemoryCore> {
        &self.parts[(self.hasher.hash_one(channel) as usize) % self.parts.len()]
    }

    /// [`HistoryStore::append`], done at once.
    pub fn append_now(
        &self,
        channel: &ChannelName,
        items: &[Arc<Message>],
        now: Instant,
    ) -> Appended {
        self.part(channel).lock().append(channel, items, now)
    }

    /// [`HistoryStore::read_after`], done at once.
    pub fn read_after_now(
        &self,
        channel: &str,
        after: After<'_>,
        limit: usize,
        now: Instant,
    ) -> Recovery {
        self.part(channel)
            .lock()
            .read_after(channel, after, limit, now)
    }

    /// True if `id` is kept on `channel` (or is its last id): an item the store already
    /// holds, so a publisher's retry of it is a duplicate.
    pub fn contains_id(&self, channel: &str, id: &str) -> bool {
        self.part(channel).lock().contains_id(channel, id)
    }

    /// [`HistoryStore::last`], done at once.
    pub fn last_now(&self, channel: &str, now: Instant) -> Option<Kept> {
        self.part(channel).lock().last(channel, now)
    }
}

// The futures are named (`Ready`) on purpose: code that knows it holds the in-memory store
// can see that they are never pending.
#[allow(refining_impl_trait)]
impl HistoryStore for MemoryHistory {
    fn append(
        &self,
        channel: &ChannelName,
        items: &[Arc<Message>],
        now: Instant,
    ) -> std::future::Ready<Result<Appended, HistoryError>> {
        std::future::ready(Ok(self.append_now(channel, items, now)))
    }

    fn read_after(
        &self,
        channel: &str,
        after: After<'_>,
        limit: usize,
        now: Instant,
    ) -> std::future::Ready<Result<Recovery, HistoryError>> {
        std::future::ready(Ok(self.read_after_now(channel, after, limit, now)))
    }

    fn last(
        &self,
        channel: &str,
        now: Instant,
    ) -> std::future::Ready<Result<Option<Kept>, HistoryError>> {
        std::future::ready(Ok(self.last_now(channel, now)))
    }

    fn expire(&self, now: Instant) -> std::future::Ready<()> {
        for p in self.parts.iter() {
            p.lock().expire(now);
        }
        std::future::ready(())
    }

    fn stats(&self) -> HistoryStats {
        let mut t = HistoryStats::default();
        for p in self.parts.iter() {
            let s = p.lock().stats();
            t.channels += s.channels;
            t.items += s.items;
            t.bytes += s.bytes;
            t.evicted_count += s.evicted_count;
            t.evicted_age += s.evicted_age;
            t.evicted_bytes += s.evicted_bytes;
            t.forgotten_channels += s.forgotten_channels;
        }
        t
    }
}

#[path = "memory_restore.rs"]
pub(crate) mod restore;

#[cfg(test)]
#[path = "memory_tests.rs"]
mod tests;
