//! The on-disk history's writer thread (`disk.rs` owns the store and its callers): group
//! commit, the write-order keys of the kept items, and the channel rows.
//!
//! * **Group commit.** The writer takes every append waiting (up to [`MAX_BATCH_ITEMS`]; it
//!   does not wait for stragglers: those go in the next write, as shards keep several writes
//!   in flight, and a linger of 100 µs measured slower), assigns sequence numbers from the image,
//!   writes them and the deletions of what the image evicted since the last write as one
//!   journal batch, syncs once ([`FsyncPolicy`]), then applies the appends to the image and
//!   resolves each: concurrent appends from several shards share one fsync, and a reader
//!   never sees an item before it is stored. With no append, evictions are written within
//!   [`FLUSH_INTERVAL`].
//! * **Chunks and keys.** Each channel's run of items in an append is stored as chunks of
//!   up to [`codec::CHUNK_ITEMS`] items (and [`codec::CHUNK_BYTES`]), each one entry whose
//!   key is the next value of a store-wide counter, so keys come in write order
//!   (`disk_codec.rs`): a 100-item append is 4 memtable inserts and journal entries, not 100
//!   (the per-item inserts and tombstones were the largest part of the writer's CPU). The
//!   image knows items by (channel, sequence), so the writer keeps, per channel with kept
//!   items, its chunks oldest first ([`KeyMap`]: key and item count, 8 bytes per chunk),
//!   pushed once a chunk is stored and popped (deleted on disk) when the image's eviction
//!   log names its last item; the evictions, the channel states and the plan are read from
//!   the image under one lock, so nothing is evicted between them unseen.
//! * **Channel rows** are written when a channel is created, and rewritten on eviction only
//!   when what they must say changes: the channel became truncated, or lost its last item
//!   (then the row alone says where its sequence and last id stand, and since when it is
//!   empty); a forgotten channel's row is deleted. Rewriting a row on every eviction was a
//!   random-position memtable insert per evicted item.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fjall::{PersistMode, Slice};
use foldhash::{HashMap, HashMapExt};
use tokio::sync::oneshot;

use super::disk::{Cmd, FsyncPolicy, Shared, Store, FLUSH_INTERVAL, MAX_BATCH_ITEMS};
use super::disk_codec::{self as codec, item_key};
use super::memory::restore::ChannelState;
use super::memory::MemoryCore;
use super::{Appended, HistoryError};
use crate::message::{ChannelName, Message};

/// One channel's part of a write: its state before (to create it in the image if it was
/// forgotten meanwhile) and after.
struct Plan {
    before: ChannelState,
    after: ChannelState,
    /// New to the image: its row (generation) must be written with its first items; other
    /// rows are rewritten only when evictions change them, as the items themselves say
    /// where the channel's sequence and last id stand.
    created: bool,
}

/// One append as the writer holds it.
struct Pending {
    channel: Option<ChannelName>,
    msgs: Vec<Arc<Message>>,
    now: Instant,
    done: oneshot::Sender<Result<Appended, HistoryError>>,
}

impl Pending {
    /// Calls `f` with each channel and its items, in order.
    fn for_each_run(&self, mut f: impl FnMut(&ChannelName, &[Arc<Message>])) {
        match &self.channel {
            Some(channel) => f(channel, &self.msgs),
            None => {
                for run in self
                    .msgs
                    .chunk_by(|a, b| Arc::ptr_eq(&a.channel, &b.channel) || a.channel == b.channel)
                {
                    f(&run[0].channel, run);
                }
            }
        }
    }
}

/// One chunk on disk: its key (below [`ChunkKey::KEY_LIMIT`]) and how many items it holds
/// (1 to 256), in 8 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ChunkKey(u64);

impl ChunkKey {
    /// Keys go up to here (2^56: at a million writes a second, two thousand years); a
    /// store-wide counter past it fails the write rather than wrap.
    pub(super) const KEY_LIMIT: u64 = 1 << 56;

    pub(super) fn new(key: u64, items: usize) -> ChunkKey {
        debug_assert!(key < Self::KEY_LIMIT && (1..=256).contains(&items));
        let items = (items.clamp(1, 256) - 1) as u64;
        ChunkKey((key & (Self::KEY_LIMIT - 1)) | (items << 56))
    }

    pub(super) fn key(self) -> u64 {
        self.0 & (Self::KEY_LIMIT - 1)
    }

    pub(super) fn items(self) -> u64 {
        (self.0 >> 56) + 1
    }
}

/// The chunks holding one channel's kept items, oldest first: a mirror of the image's
/// items (the first chunk may also hold items the image evicted already).
#[derive(Debug, Default)]
pub(super) struct ChannelKeys {
    /// Sequence number of the first chunk's first item.
    pub(super) first_seq: u64,
    pub(super) chunks: VecDeque<ChunkKey>,
    /// What the channel's row on disk says of `truncated` (it says what the image says).
    pub(super) row_truncated: bool,
}

/// Per channel with kept items, the chunks holding them (see the module doc).
pub(super) type KeyMap = HashMap<ChannelName, ChannelKeys>;

pub(super) struct Writer {
    /// Scratch buffer for an item's value (reused: one allocation per item, the store's own
    /// copy, instead of two).
    value: Vec<u8>,
    /// The keys of the kept items, to delete them when the image drops them.
    keys: KeyMap,
    /// The key the next item written gets.
    next_key: u64,
    store: Store,
    shared: Arc<Shared>,
    rx: mpsc::Receiver<Cmd>,
    policy: FsyncPolicy,
    synced_at: Instant,
    /// Written but not fsynced yet (`EveryMs`).
    unsynced: bool,
}

impl Writer {
    pub(super) fn new(
        store: Store,
        shared: Arc<Shared>,
        rx: mpsc::Receiver<Cmd>,
        policy: FsyncPolicy,
        keys: KeyMap,
        next_key: u64,
    ) -> Writer {
        Writer {
            value: Vec::with_capacity(1024),
            keys,
            next_key,
            store,
            shared,
            rx,
            policy,
            synced_at: Instant::now(),
            unsynced: false,
        }
    }

    fn tick(&self) -> Duration {
        match self.policy {
            FsyncPolicy::EveryMs(ms) if self.unsynced => {
                Duration::from_millis(ms).saturating_sub(self.synced_at.elapsed())
            }
            _ => FLUSH_INTERVAL,
        }
    }

    pub(super) fn run(mut self) {
        loop {
            let first = match self.rx.recv_timeout(self.tick()) {
                Ok(c) => Some(c),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut appends = Vec::new();
            let mut syncs = Vec::new();
            let mut n = 0;
            let mut next = first;
            while let Some(cmd) = next {
                match cmd {
                    Cmd::Append {
                        channel,
                        msgs,
                        now,
                        done,
                        _permit,
                    } => {
                        n += msgs.len();
                        appends.push(Pending {
                            channel,
                            msgs,
                            now,
                            done,
                        });
                    }
                    Cmd::Sync(done) => syncs.push(done),
                }
                next = if n < MAX_BATCH_ITEMS {
                    self.rx.try_recv().ok()
                } else {
                    None
                };
            }
            self.write(appends, !syncs.is_empty());
            let synced = self.sync_if_due(!syncs.is_empty());
            for done in syncs {
                let r = match &synced {
                    Ok(()) => Ok(()),
                    Err(e) => Err(HistoryError::Unavailable(e.to_string())),
                };
                let _ = done.send(r);
            }
        }
        self.write(Vec::new(), true);
        let _ = self.sync_if_due(true);
    }

    /// Fsyncs what is written if the policy says it is time (or `force`).
    fn sync_if_due(&mut self, force: bool) -> Result<(), HistoryError> {
        let due = match self.policy {
            FsyncPolicy::EveryMs(ms) => self.synced_at.elapsed() >= Duration::from_millis(ms),
            FsyncPolicy::EveryBatch => false,
        };
        if !self.unsynced || !(force || due) {
            return Ok(());
        }
        let r = self
            .store
            .db
            .persist(PersistMode::SyncAll)
            .map_err(|e| HistoryError::Unavailable(format!("history fsync failed: {e}")));
        if r.is_ok() {
            self.unsynced = false;
            self.synced_at = Instant::now();
            self.shared.fsyncs.fetch_add(1, Ordering::Relaxed);
        } else {
            self.shared.failures.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    /// Writes the appends and deletes what the image evicted since the last write (one
    /// batch), then applies the appends to the image and resolves them.
    fn write(&mut self, appends: Vec<Pending>, flush: bool) {
        let _ = flush;
        let wall_base = self.shared.wall_base;
        let mut plans: HashMap<ChannelName, Plan> = HashMap::default();
        let mut ats = Vec::with_capacity(appends.len());
        // one look at the image: what it evicted so far, the state of the channels that
        // lost items, and the plan (nothing can be evicted in between unseen)
        let (evicted, rows, next_gen, forgot) = {
            let mut core = self.shared.core.lock();
            let evicted = core.take_evicted();
            let rows = touched_rows(&core, &evicted);
            for p in &appends {
                ats.push(core.at(p.now));
                p.for_each_run(|channel, _| {
                    if plans.contains_key(channel) {
                        return;
                    }
                    let known = core.channel_state(channel);
                    let created = known.is_none();
                    let before = known.unwrap_or_else(|| {
                        let (_, forgot) = core.marks();
                        ChannelState {
                            gen: core.reserve_gen(),
                            first_seq: 1,
                            next_seq: 1,
                            truncated: forgot,
                            last_id: None,
                            emptied_at: 0,
                        }
                    });
                    let after = before.clone();
                    let plan = Plan {
                        before,
                        after,
                        created,
                    };
                    plans.insert(channel.clone(), plan);
                });
            }
            let (next_gen, forgot) = core.marks();
            (evicted, rows, next_gen, forgot)
        };
        if appends.is_empty() && evicted.is_empty() {
            return;
        }
        let mut batch = self.store.db.batch();
        let forgot_now = self.delete_evicted(&mut batch, &evicted, &rows, &plans);
        // each chunk's key, in write order, and its item count
        let mut chunks: Vec<ChunkKey> = Vec::new();
        // the last sequence number planned for each run, in order
        let mut planned = Vec::with_capacity(appends.len());
        let value = &mut self.value;
        let next_key = &mut self.next_key;
        for (p, at) in appends.iter().zip(&ats) {
            p.for_each_run(|channel, run| {
                let Some(plan) = plans.get_mut(channel) else {
                    return;
                };
                let mut rest = run;
                while !rest.is_empty() {
                    let first_seq = plan.after.next_seq;
                    codec::start_chunk(value, wall_base + at, first_seq, channel);
                    let mut n = 0;
                    for msg in rest {
                        codec::push_chunk_item(value, msg);
                        n += 1;
                        if n == codec::CHUNK_ITEMS || value.len() >= codec::CHUNK_BYTES {
                            break;
                        }
                    }
                    batch.insert(
                        &self.store.items,
                        Slice::new(&item_key(*next_key)),
                        Slice::new(value),
                    );
                    chunks.push(ChunkKey::new(*next_key, n));
                    *next_key += 1;
                    plan.after.next_seq += n as u64;
                    rest = &rest[n..];
                }
                // the row of a channel this write creates says its last id; other rows
                // are not rewritten (the items say it)
                if plan.created {
                    if let Some(last) = run.last() {
                        plan.after.last_id = last.id().map(Arc::from);
                    }
                }
                planned.push(plan.after.next_seq - 1);
            });
        }
        let mut created = false;
        for (channel, plan) in plans.iter().filter(|(_, p)| p.created) {
            let row = codec::encode_channel(&plan.after, wall_base + plan.after.emptied_at);
            batch.insert(&self.store.channels, channel.as_bytes(), row);
            created = true;
        }
        if created {
            batch.insert(
                &self.store.meta,
                codec::META_NEXT_GEN,
                u64::from(next_gen).to_be_bytes(),
            );
        }
        if created || forgot_now {
            batch.insert(
                &self.store.meta,
                codec::META_FORGOT,
                u64::from(forgot || forgot_now).to_be_bytes(),
            );
        }
        let batch = match self.policy {
            FsyncPolicy::EveryBatch if !appends.is_empty() => {
                batch.durability(Some(PersistMode::SyncAll))
            }
            _ => batch.durability(Some(PersistMode::Buffer)),
        };
        let committed = if self.next_key > ChunkKey::KEY_LIMIT {
            Err("the store's key counter is exhausted".to_string())
        } else {
            self.commit(batch, !appends.is_empty())
        };
        if let Err(e) = committed {
            let err = HistoryError::Unavailable(format!("history write failed: {e}"));
            tracing::warn!("{err}");
            self.shared.failures.fetch_add(1, Ordering::Relaxed);
            // deleted from the key map but not on disk: the next open drops them again
            self.shared.core.lock().requeue_evicted(evicted);
            for p in appends {
                let _ = p.done.send(Err(HistoryError::Unavailable(err.to_string())));
            }
            return;
        }
        if appends.is_empty() {
            if self.policy != FsyncPolicy::EveryBatch {
                self.unsynced = true;
            }
            return;
        }
        let s = &self.shared;
        s.writes.fetch_add(1, Ordering::Relaxed);
        s.appends.fetch_add(appends.len() as u64, Ordering::Relaxed);
        if self.policy == FsyncPolicy::EveryBatch {
            s.fsyncs.fetch_add(1, Ordering::Relaxed);
        } else {
            self.unsynced = true;
        }
        // the chunks of what was stored, before the image can evict any of it
        let mut chunks = chunks.into_iter();
        for p in &appends {
            p.for_each_run(|channel, run| {
                let Some(plan) = plans.get(channel) else {
                    return;
                };
                let keys = self
                    .keys
                    .entry(channel.clone())
                    .or_insert_with(|| ChannelKeys {
                        first_seq: plan.before.next_seq,
                        chunks: VecDeque::new(),
                        row_truncated: plan.before.truncated,
                    });
                let mut left = run.len();
                while left > 0 {
                    let Some(c) = chunks.next() else {
                        break;
                    };
                    left = left.saturating_sub(c.items() as usize);
                    keys.chunks.push_back(c);
                }
            });
        }
        let mut core = self.shared.core.lock();
        let mut planned = planned.into_iter();
        for p in appends {
            let mut out = Appended::default();
            p.for_each_run(|channel, run| {
                if let Some(plan) = plans.get(channel) {
                    core.ensure_channel(channel, &plan.before);
                }
                let got = core.append(channel, run, p.now);
                let want = planned.next();
                if got.last_seq != want {
                    tracing::error!(
                        "history image out of step with disk on {channel}: {:?} != {want:?}",
                        got.last_seq
                    );
                }
                out.kept += got.kept;
                out.last_seq = got.last_seq;
            });
            let _ = p.done.send(Ok(out));
        }
    }

    /// Commits one write; under test, the next writes with appends can be made to fail
    /// ([`Shared::fail_writes`]) as a full or broken disk would.
    fn commit(&self, batch: fjall::OwnedWriteBatch, appends: bool) -> Result<(), String> {
        #[cfg(test)]
        if appends
            && self
                .shared
                .fail_writes
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
        {
            return Err("injected failure".into());
        }
        let _ = appends;
        batch.commit().map_err(|e| e.to_string())
    }

    /// Puts into `batch` the deletion of the items the image dropped (their keys taken from
    /// the key map) and of the channels it forgot, and the rows of the channels that lost
    /// items (their truncated flag); true if a channel was forgotten. A channel this write
    /// creates anew keeps the row the write gives it.
    fn delete_evicted(
        &mut self,
        batch: &mut fjall::OwnedWriteBatch,
        evicted: &[(ChannelName, u64)],
        rows: &[(ChannelName, Option<ChannelState>)],
        plans: &HashMap<ChannelName, Plan>,
    ) -> bool {
        let mut forgot = false;
        for (channel, seq) in evicted {
            if MemoryCore::is_forget_mark(*seq) {
                forgot = true;
                continue;
            }
            let Some(keys) = self.keys.get_mut(channel) else {
                continue;
            };
            // a chunk goes once its last item is evicted
            while let Some(&c) = keys.chunks.front() {
                let last = keys.first_seq + c.items() - 1;
                if last > *seq {
                    break;
                }
                keys.chunks.pop_front();
                keys.first_seq = last + 1;
                // written once, so a weak tombstone: it vanishes with the chunk at compaction
                batch.remove_weak(&self.store.items, Slice::new(&item_key(c.key())));
            }
        }
        for (channel, state) in rows {
            match state {
                Some(state) => {
                    // a row is rewritten only when what it must say changes: the channel
                    // was truncated, or lost its last item (then its row alone says where
                    // its sequence and last id stand); otherwise its items say it
                    let keys = self.keys.get_mut(channel);
                    let empty = state.first_seq == state.next_seq;
                    if empty
                        || keys
                            .as_ref()
                            .is_none_or(|k| k.row_truncated != state.truncated)
                    {
                        let emptied = self.shared.wall_base + state.emptied_at;
                        batch.insert(
                            &self.store.channels,
                            channel.as_bytes(),
                            codec::encode_channel(state, emptied),
                        );
                        if let Some(k) = keys {
                            k.row_truncated = state.truncated;
                        }
                    }
                }
                None => {
                    // forgotten: what is left of its keys (none, if in step) goes too
                    if let Some(keys) = self.keys.remove(channel) {
                        for c in keys.chunks {
                            batch.remove_weak(&self.store.items, Slice::new(&item_key(c.key())));
                        }
                    }
                    if !plans.get(channel).is_some_and(|p| p.created) {
                        batch.remove(&self.store.channels, channel.as_bytes());
                    }
                }
            }
            if self.keys.get(channel).is_some_and(|k| k.chunks.is_empty()) {
                self.keys.remove(channel);
            }
        }
        forgot
    }
}

/// Each channel named in `evicted`, once, with its state in the image now (None:
/// forgotten).
pub(super) fn touched_rows(
    core: &MemoryCore,
    evicted: &[(ChannelName, u64)],
) -> Vec<(ChannelName, Option<ChannelState>)> {
    let mut seen: HashMap<&ChannelName, ()> = HashMap::new();
    let mut rows = Vec::new();
    for (channel, _) in evicted {
        if seen.insert(channel, ()).is_none() {
            rows.push((channel.clone(), core.channel_state(channel)));
        }
    }
    rows
}
