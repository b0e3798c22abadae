//! History kept on disk (`[history] dir`): the same semantics as [`MemoryHistory`], and it
//! survives a restart or a `kill -9` — sequence numbers, epochs, which channels were ever
//! truncated, and every item whose append was acknowledged.
//!
//! Design:
//!
//! * **Store: fjall** (an embedded LSM tree, pure Rust), chosen by measurement against redb
//!   and SQLite (BENCHMARKS.md, "Durable history store: choice"): an append is a journal
//!   write, so a batch spread over many channels costs one sequential write and one fsync,
//!   where a B-tree rewrites a page per channel. Three keyspaces: `items` (a store-wide
//!   counter, so keys come in write order → append time, channel, sequence and item),
//!   `channels` (name → generation, next sequence, truncated, last id) and `meta` (format,
//!   epoch, next generation, "a channel was forgotten"); the layout is in `disk_codec.rs`,
//!   the migration from older layouts in `disk_migrate.rs`.
//! * **Reads come from memory.** The store keeps a [`MemoryCore`] as its image of what is
//!   on disk and answers `read_after`, `last`, `stats` and [`DiskHistory::contains_id`]
//!   from it at once, as the in-memory store does (no decoding per read; memory per kept
//!   item is the in-memory store's). The disk is read only by [`DiskHistory::open`], which
//!   rebuilds the image (`memory_restore.rs`): ages come from the stored wall-clock times,
//!   and every bound is applied again as of the open.
//! * **One writer thread, group commit.** `append` (one channel) and `append_groups` (a
//!   shard's whole batch, every channel in it: what the broker uses) filter the items that
//!   have an id, take a permit of a bounded queue ([`QUEUE_LIMIT`] waiting appends; past
//!   it callers wait, the runtime never blocks), and hand them to the writer thread. The writer takes every
//!   append waiting (up to [`MAX_BATCH_ITEMS`]), assigns sequence numbers from the image,
//!   writes them all as one journal batch and syncs once ([`FsyncPolicy`]), then applies
//!   them to the image and resolves each append: concurrent appends from several shards
//!   share one fsync, and a reader never sees an item before it is stored. Evictions (by
//!   count, age or bytes, done in the image) are logged there and deleted on disk in the
//!   writer's next batch, or within [`FLUSH_INTERVAL`] when no append comes; a crash before
//!   that only brings back items the bounds drop again at the next open. The writer finds
//!   an evicted item's key in its own map ([`KeyMap`]: per channel the keys of its kept
//!   items, oldest first, mirroring the image; 8 bytes per kept item), since the image
//!   knows items by (channel, sequence) and the disk by write order.
//! * **Errors.** A failed write resolves every append of its batch with
//!   [`HistoryError::Unavailable`] (the publish must not be acknowledged) and leaves the
//!   image unchanged; nothing panics. fjall refuses further writes after a failed journal
//!   write (disk full, I/O error) until the store is opened again.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode, Slice};
use foldhash::{HashMap, HashMapExt};
use parking_lot::Mutex;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use super::disk_codec::{self as codec, item_key};
use super::disk_restore::RestoredIds;
use super::memory::restore::ChannelState;
use super::memory::MemoryCore;
use super::{
    After, Appended, HistoryConfig, HistoryError, HistoryStats, HistoryStore, Kept, Recovery,
};
use crate::message::{ChannelName, Message};

/// When an acknowledged append is on stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// Every write batch is fsynced before its appends resolve (the default): nothing
    /// acknowledged is lost, even on power loss.
    #[default]
    EveryBatch,
    /// Appends resolve once written to the operating system, which survives a `kill -9` of
    /// the process; the journal is fsynced every this many milliseconds, so a power loss or
    /// kernel crash may lose what was acknowledged in the last interval.
    EveryMs(u64),
}

/// Most appends waiting for the writer; past it `append` waits for a place.
pub const QUEUE_LIMIT: usize = 1024;
/// Most items the writer puts in one write (one fsync).
pub const MAX_BATCH_ITEMS: usize = 16 * 1024;
/// How long the writer waits for more appends after the queue runs dry, before it writes.
pub const LINGER: Duration = Duration::from_micros(100);
/// How soon evictions are deleted on disk when no append comes.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

enum Cmd {
    /// Items that all have an id: all for `channel` when given, otherwise for their own
    /// channels, each channel's items together (a run).
    Append {
        channel: Option<ChannelName>,
        msgs: Vec<Arc<Message>>,
        now: Instant,
        done: oneshot::Sender<Result<Appended, HistoryError>>,
        _permit: OwnedSemaphorePermit,
    },
    Sync(oneshot::Sender<Result<(), HistoryError>>),
}

/// What the store's callers and its writer share.
struct Shared {
    core: Mutex<MemoryCore>,
    /// Wall-clock milliseconds at the core's base instant.
    wall_base: u64,
    writes: AtomicU64,
    appends: AtomicU64,
    fsyncs: AtomicU64,
    failures: AtomicU64,
}

/// What the writer has done, for metrics: `appends / writes` is how many appends share one
/// write (group commit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DiskStats {
    /// Write batches that stored appends.
    pub writes: u64,
    /// Appends stored.
    pub appends: u64,
    /// Fsyncs (one per write with `EveryBatch`, one per interval with `EveryMs`).
    pub fsyncs: u64,
    /// Writes, deletes or fsyncs that failed (their appends were answered `Unavailable`).
    pub failures: u64,
}

/// The on-disk history store. See the module doc.
pub struct DiskHistory {
    shared: Arc<Shared>,
    /// Hashes of the (channel, id) pairs read back at open (see [`DiskHistory::contains_id`]).
    restored_ids: RestoredIds,
    tx: Option<mpsc::Sender<Cmd>>,
    permits: Arc<Semaphore>,
    writer: Option<std::thread::JoinHandle<()>>,
    dir: PathBuf,
    max_items: usize,
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn fail(dir: &Path, what: &str, e: impl std::fmt::Display) -> HistoryError {
    HistoryError::Unavailable(format!("history store {}: {what}: {e}", dir.display()))
}

fn closed() -> HistoryError {
    HistoryError::Unavailable("history store closed".into())
}

impl DiskHistory {
    /// Opens the store in `dir` (created if missing), rebuilding what it kept, with these
    /// bounds and this fsync policy. Fails with an error naming the directory when it cannot
    /// be created or opened, is in use by another process, holds another layout version,
    /// or cannot be read.
    pub fn open(
        dir: &Path,
        config: HistoryConfig,
        policy: FsyncPolicy,
    ) -> Result<DiskHistory, HistoryError> {
        std::fs::create_dir_all(dir).map_err(|e| fail(dir, "cannot create directory", e))?;
        let db = Database::builder(dir)
            .worker_threads(1)
            .open()
            .map_err(|e| match e {
                fjall::Error::Locked => fail(dir, "cannot open", "in use by another process"),
                e => fail(dir, "cannot open", e),
            })?;
        let ks = |name: &str| {
            db.keyspace(name, KeyspaceCreateOptions::default)
                .map_err(|e| fail(dir, "cannot open keyspace", e))
        };
        let store = Store {
            items: ks("items")?,
            channels: ks("channels")?,
            meta: ks("meta")?,
            db: db.clone(),
        };
        super::disk_migrate::migrate_if_old(dir, &store)?;
        let restored = super::disk_restore::restore(dir, &store, config)?;
        let (core, wall_base, restored_ids) = (restored.core, restored.wall_base, restored.ids);
        let shared = Arc::new(Shared {
            core: Mutex::new(core),
            wall_base,
            writes: AtomicU64::new(0),
            appends: AtomicU64::new(0),
            fsyncs: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        });
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            value: Vec::with_capacity(1024),
            keys: restored.keys,
            next_key: restored.next_key,
            store,
            shared: shared.clone(),
            rx,
            policy,
            synced_at: Instant::now(),
            unsynced: false,
        };
        let writer = std::thread::Builder::new()
            .name("history-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| fail(dir, "cannot start writer thread", e))?;
        Ok(DiskHistory {
            shared,
            restored_ids,
            tx: Some(tx),
            permits: Arc::new(Semaphore::new(QUEUE_LIMIT)),
            writer: Some(writer),
            dir: dir.to_path_buf(),
            max_items: config.max_items,
        })
    }

    /// The directory the store lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// True if `id` was stored on `channel` before this open and is still kept there (or
    /// is its newest id): a publisher's retry of it after a restart is a duplicate. Ids
    /// appended since the open are the in-process dedup table's business: this answers
    /// from a hash set built at open, in O(1), and looks at the channel only on a hit.
    pub fn contains_id(&self, channel: &str, id: &str) -> bool {
        self.restored_ids.maybe(channel, id) && self.shared.core.lock().contains_id(channel, id)
    }

    /// Stores the items of `groups` that have an id — each group one channel's items, in
    /// order — in one write (one fsync), and resolves once they are stored (the sum of
    /// what was kept; `last_seq` is the last group's). One queue place, one hand-over to
    /// the writer and one wake-up for the whole batch, however many channels it spans.
    pub fn append_groups(
        &self,
        groups: &[Vec<Arc<Message>>],
        now: Instant,
    ) -> impl std::future::Future<Output = Result<Appended, HistoryError>> + Send {
        self.send_append(None, self.with_ids(groups), now)
    }

    fn send_append(
        &self,
        channel: Option<ChannelName>,
        msgs: Vec<Arc<Message>>,
        now: Instant,
    ) -> impl std::future::Future<Output = Result<Appended, HistoryError>> + Send {
        let tx = self.tx.clone();
        let permits = self.permits.clone();
        async move {
            if msgs.is_empty() {
                return Ok(Appended::default());
            }
            let permit = permits.acquire_owned().await.map_err(|_| closed())?;
            hand_over(tx.as_ref(), permit, channel, msgs, now)?
                .await
                .map_err(|_| closed())?
        }
    }

    /// [`DiskHistory::append_groups`] if the writer's queue has room now: the items are
    /// handed to the writer before this returns (so appends made one after the other are
    /// stored in that order even when nobody waits for the first yet), and the future only
    /// waits for the answer. None when the queue is full.
    pub fn try_append_groups(
        &self,
        groups: &[Vec<Arc<Message>>],
        now: Instant,
    ) -> Option<impl std::future::Future<Output = Result<Appended, HistoryError>> + Send + 'static>
    {
        let msgs = self.with_ids(groups);
        let sent = if msgs.is_empty() {
            None
        } else {
            let permit = self.permits.clone().try_acquire_owned().ok()?;
            Some(hand_over(self.tx.as_ref(), permit, None, msgs, now))
        };
        Some(async move {
            match sent {
                None => Ok(Appended::default()),
                Some(rx) => rx?.await.map_err(|_| closed())?,
            }
        })
    }

    /// The items of `groups` that have an id (none when nothing is kept).
    fn with_ids(&self, groups: &[Vec<Arc<Message>>]) -> Vec<Arc<Message>> {
        if self.max_items == 0 {
            return Vec::new();
        }
        groups
            .iter()
            .flatten()
            .filter(|m| m.id.is_some())
            .cloned()
            .collect()
    }

    /// [`HistoryStore::read_after`], answered at once (reads come from the store's
    /// in-memory copy of what is on disk).
    pub fn read_after_now(
        &self,
        channel: &str,
        after: After<'_>,
        limit: usize,
        now: Instant,
    ) -> Recovery {
        self.shared
            .core
            .lock()
            .read_after(channel, after, limit, now)
    }

    /// [`HistoryStore::last`], answered at once.
    pub fn last_now(&self, channel: &str, now: Instant) -> Option<Kept> {
        self.shared.core.lock().last(channel, now)
    }

    /// What the writer has done so far.
    pub fn disk_stats(&self) -> DiskStats {
        let s = &self.shared;
        DiskStats {
            writes: s.writes.load(Ordering::Relaxed),
            appends: s.appends.load(Ordering::Relaxed),
            fsyncs: s.fsyncs.load(Ordering::Relaxed),
            failures: s.failures.load(Ordering::Relaxed),
        }
    }

    /// Resolves once everything acknowledged so far is fsynced (with
    /// [`FsyncPolicy::EveryMs`]; with `EveryBatch` it already is). Call it on SIGTERM
    /// after the last publish, or simply drop the store, which does the same.
    pub fn sync(&self) -> impl std::future::Future<Output = Result<(), HistoryError>> + Send {
        let (done, rx) = oneshot::channel();
        let sent = self.tx.as_ref().map(|tx| tx.send(Cmd::Sync(done)).is_ok());
        async move {
            if sent != Some(true) {
                return Err(closed());
            }
            rx.await.map_err(|_| closed())?
        }
    }
}

impl Drop for DiskHistory {
    /// Stops the writer after it has written and fsynced everything queued, and waits for
    /// it (milliseconds; the directory is free for another open once this returns).
    fn drop(&mut self) {
        self.tx.take();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

impl HistoryStore for DiskHistory {
    fn append(
        &self,
        channel: &ChannelName,
        items: &[Arc<Message>],
        now: Instant,
    ) -> impl std::future::Future<Output = Result<Appended, HistoryError>> + Send {
        let msgs: Vec<Arc<Message>> = if self.max_items == 0 {
            Vec::new()
        } else {
            items.iter().filter(|m| m.id.is_some()).cloned().collect()
        };
        self.send_append(Some(channel.clone()), msgs, now)
    }

    fn read_after(
        &self,
        channel: &str,
        after: After<'_>,
        limit: usize,
        now: Instant,
    ) -> impl std::future::Future<Output = Result<Recovery, HistoryError>> + Send {
        let r = self
            .shared
            .core
            .lock()
            .read_after(channel, after, limit, now);
        std::future::ready(Ok(r))
    }

    fn last(
        &self,
        channel: &str,
        now: Instant,
    ) -> impl std::future::Future<Output = Result<Option<Kept>, HistoryError>> + Send {
        std::future::ready(Ok(self.shared.core.lock().last(channel, now)))
    }

    fn expire(&self, now: Instant) -> impl std::future::Future<Output = ()> + Send {
        self.shared.core.lock().expire(now);
        std::future::ready(())
    }

    fn stats(&self) -> HistoryStats {
        self.shared.core.lock().stats()
    }
}

/// The database and its keyspaces.
pub(super) struct Store {
    pub(super) db: Database,
    pub(super) items: Keyspace,
    pub(super) channels: Keyspace,
    pub(super) meta: Keyspace,
}

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

/// The keys of one channel's kept items, oldest first: a mirror of the image's items.
#[derive(Debug, Default)]
pub(super) struct ChannelKeys {
    /// Sequence number of the first key's item.
    pub(super) first_seq: u64,
    pub(super) keys: VecDeque<u64>,
    /// What the channel's row on disk says of `truncated` (it says what the image says).
    pub(super) row_truncated: bool,
}

/// Per channel with kept items, the keys of those items (see the module doc).
pub(super) type KeyMap = HashMap<ChannelName, ChannelKeys>;

struct Writer {
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
    fn tick(&self) -> Duration {
        match self.policy {
            FsyncPolicy::EveryMs(ms) if self.unsynced => {
                Duration::from_millis(ms).saturating_sub(self.synced_at.elapsed())
            }
            _ => FLUSH_INTERVAL,
        }
    }

    fn run(mut self) {
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
            let mut lingered = false;
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
                if next.is_none() && !lingered && n > 0 && n < MAX_BATCH_ITEMS {
                    // appends made together (one request's channels, several shards) reach
                    // the queue a few microseconds apart: wait once for the stragglers, a
                    // fraction of the fsync they would otherwise need of their own
                    lingered = true;
                    next = self.rx.recv_timeout(LINGER).ok();
                }
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
        // each item's key, in write order
        let first_key = self.next_key;
        // the last sequence number planned for each run, in order
        let mut planned = Vec::with_capacity(appends.len());
        let value = &mut self.value;
        let next_key = &mut self.next_key;
        for (p, at) in appends.iter().zip(&ats) {
            p.for_each_run(|channel, run| {
                let Some(plan) = plans.get_mut(channel) else {
                    return;
                };
                for msg in run {
                    let seq = plan.after.next_seq;
                    plan.after.next_seq += 1;
                    codec::encode_item_into(value, wall_base + at, seq, msg);
                    batch.insert(
                        &self.store.items,
                        Slice::new(&item_key(*next_key)),
                        Slice::new(value),
                    );
                    *next_key += 1;
                }
                if let Some(last) = run.last() {
                    plan.after.last_id = last.id.clone();
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
        if let Err(e) = batch.commit() {
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
        // the keys of what was stored, before the image can evict any of it
        let mut key = first_key;
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
                        keys: VecDeque::new(),
                        row_truncated: plan.before.truncated,
                    });
                keys.keys.extend(key..key + run.len() as u64);
                key += run.len() as u64;
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
            while keys.first_seq <= *seq {
                let Some(key) = keys.keys.pop_front() else {
                    break;
                };
                keys.first_seq += 1;
                // written once, so a weak tombstone: it vanishes with the item at compaction
                batch.remove_weak(&self.store.items, item_key(key).to_vec());
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
                        for key in keys.keys {
                            batch.remove_weak(&self.store.items, item_key(key).to_vec());
                        }
                    }
                    if !plans.get(channel).is_some_and(|p| p.created) {
                        batch.remove(&self.store.channels, channel.as_bytes());
                    }
                }
            }
            if self.keys.get(channel).is_some_and(|k| k.keys.is_empty()) {
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

/// Puts one append on the writer's queue; the receiver answers once it is stored.
fn hand_over(
    tx: Option<&mpsc::Sender<Cmd>>,
    permit: OwnedSemaphorePermit,
    channel: Option<ChannelName>,
    msgs: Vec<Arc<Message>>,
    now: Instant,
) -> Result<oneshot::Receiver<Result<Appended, HistoryError>>, HistoryError> {
    let (done, rx) = oneshot::channel();
    let cmd = Cmd::Append {
        channel,
        msgs,
        now,
        done,
        _permit: permit,
    };
    tx.ok_or_else(closed)?.send(cmd).map_err(|_| closed())?;
    Ok(rx)
}

/// Wall-clock milliseconds now (for the restore).
pub(super) fn wall_now() -> u64 {
    wall_ms()
}

#[cfg(test)]
#[path = "disk_tests.rs"]
pub(super) mod tests;
