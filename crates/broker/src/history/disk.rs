//! History kept on disk (`[history] dir`): the same semantics as [`MemoryHistory`], and it
//! survives a restart or a `kill -9` — sequence numbers, epochs, which channels were ever
//! truncated, and every item whose append was acknowledged.
//!
//! Design:
//!
//! * **Store: fjall** (an embedded LSM tree, pure Rust), chosen by measurement against redb
//!   and SQLite (BENCHMARKS.md, "Durable history store: choice"): an append is a journal
//!   write, so a batch spread over many channels costs one sequential write and one fsync,
//!   where a B-tree rewrites a page per channel. Three keyspaces: `items` ((channel, seq) →
//!   append time + item), `channels` (name → generation, next sequence, truncated, last
//!   id) and `meta` (format, epoch, next generation, "a channel was forgotten"); the layout
//!   is in `disk_codec.rs`.
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
//!   count, age or bytes, done in the image) are logged there and deleted on disk with the
//!   writer's next batch, or within [`FLUSH_INTERVAL`] when no append comes; a crash before
//!   that only brings back items the bounds drop again at the next open.
//! * **Errors.** A failed write resolves every append of its batch with
//!   [`HistoryError::Unavailable`] (the publish must not be acknowledged) and leaves the
//!   image unchanged; nothing panics. fjall refuses further writes after a failed journal
//!   write (disk full, I/O error) until the store is opened again.

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
        let (core, wall_base, restored_ids) = super::disk_restore::restore(dir, &store, config)?;
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
            key: Vec::with_capacity(64),
            value: Vec::with_capacity(1024),
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
        let msgs: Vec<Arc<Message>> = if self.max_items == 0 {
            Vec::new()
        } else {
            groups
                .iter()
                .flatten()
                .filter(|m| m.has_id())
                .cloned()
                .collect()
        };
        self.send_append(None, msgs, now)
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
            let (done, rx) = oneshot::channel();
            let cmd = Cmd::Append {
                channel,
                msgs,
                now,
                done,
                _permit: permit,
            };
            tx.ok_or_else(closed)?.send(cmd).map_err(|_| closed())?;
            rx.await.map_err(|_| closed())?
        }
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
            items.iter().filter(|m| m.has_id()).cloned().collect()
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
                for run in self.msgs.chunk_by(|a, b| a.channel == b.channel) {
                    f(&run[0].channel, run);
                }
            }
        }
    }
}

struct Writer {
    /// Scratch buffers for an item's key and value (reused: one allocation per item, the
    /// store's own copy, instead of three).
    key: Vec<u8>,
    value: Vec<u8>,
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

    /// Writes the appends (and deletes what the image evicted since the last write), then
    /// applies the appends to the image and resolves them.
    fn write(&mut self, appends: Vec<Pending>, flush: bool) {
        let evicted = self.shared.core.lock().take_evicted();
        if let Err(e) = self.delete_evicted(&evicted) {
            tracing::warn!("{e}");
            self.shared.failures.fetch_add(1, Ordering::Relaxed);
            self.shared.core.lock().requeue_evicted(evicted);
        }
        if appends.is_empty() {
            let _ = flush;
            return;
        }
        let wall_base = self.shared.wall_base;
        let mut plans: HashMap<ChannelName, Plan> = HashMap::default();
        let mut ats = Vec::with_capacity(appends.len());
        let (next_gen, forgot) = {
            let mut core = self.shared.core.lock();
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
            core.marks()
        };
        let mut batch = self.store.db.batch();
        // the last sequence number planned for each run, in order
        let mut planned = Vec::with_capacity(appends.len());
        let (key, value) = (&mut self.key, &mut self.value);
        for (p, at) in appends.iter().zip(&ats) {
            p.for_each_run(|channel, run| {
                let Some(plan) = plans.get_mut(channel) else {
                    return;
                };
                for msg in run {
                    let seq = plan.after.next_seq;
                    plan.after.next_seq += 1;
                    codec::item_key_into(key, channel, seq);
                    codec::encode_item_into(value, wall_base + at, msg);
                    batch.insert(&self.store.items, Slice::new(key), Slice::new(value));
                }
                if let Some(last) = run.last() {
                    plan.after.last_id = last.id().map(Arc::from);
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
            batch.insert(
                &self.store.meta,
                codec::META_FORGOT,
                u64::from(forgot).to_be_bytes(),
            );
        }
        let batch = match self.policy {
            FsyncPolicy::EveryBatch => batch.durability(Some(PersistMode::SyncAll)),
            FsyncPolicy::EveryMs(_) => batch.durability(Some(PersistMode::Buffer)),
        };
        if let Err(e) = batch.commit() {
            let err = HistoryError::Unavailable(format!("history write failed: {e}"));
            tracing::warn!("{err}");
            self.shared.failures.fetch_add(1, Ordering::Relaxed);
            for p in appends {
                let _ = p.done.send(Err(HistoryError::Unavailable(err.to_string())));
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

    /// Deletes on disk the items the image dropped and the channels it forgot, and rewrites
    /// the rows of the channels that lost items (their truncated flag).
    fn delete_evicted(&self, evicted: &[(ChannelName, u64)]) -> Result<(), HistoryError> {
        if evicted.is_empty() {
            return Ok(());
        }
        let mut batch = self.store.db.batch();
        let mut touched: HashMap<&ChannelName, ()> = HashMap::new();
        let mut forgot = false;
        for (channel, seq) in evicted {
            if MemoryCore::is_forget_mark(*seq) {
                forgot = true;
            } else {
                batch.remove(&self.store.items, item_key(channel, *seq));
            }
            touched.insert(channel, ());
        }
        {
            let core = self.shared.core.lock();
            for channel in touched.keys() {
                match core.channel_state(channel) {
                    Some(state) => {
                        let emptied = self.shared.wall_base + state.emptied_at;
                        batch.insert(
                            &self.store.channels,
                            channel.as_bytes(),
                            codec::encode_channel(&state, emptied),
                        );
                    }
                    None => batch.remove(&self.store.channels, channel.as_bytes()),
                }
            }
        }
        if forgot {
            batch.insert(&self.store.meta, codec::META_FORGOT, 1u64.to_be_bytes());
        }
        batch
            .commit()
            .map_err(|e| HistoryError::Unavailable(format!("history delete failed: {e}")))
    }
}

/// Wall-clock milliseconds now (for the restore).
pub(super) fn wall_now() -> u64 {
    wall_ms()
}

#[cfg(test)]
#[path = "disk_tests.rs"]
mod tests;
