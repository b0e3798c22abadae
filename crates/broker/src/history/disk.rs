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
//!   counter, so keys come in write order → a chunk: up to 32 consecutive items of one
//!   channel from one append, with their append time, channel and first sequence),
//!   `channels` (name → generation, next sequence, truncated, last id) and `meta` (format,
//!   epoch, next generation, "a channel was forgotten"); the layout is in `disk_codec.rs`,
//!   the migration from older layouts in `disk_migrate.rs`.
//! * **Reads come from memory.** The store keeps a [`MemoryCore`] as its image of what is
//!   on disk and answers `read_after`, `last`, `stats` and [`DiskHistory::contains_id`]
//!   from it at once, as the in-memory store does (no decoding per read; memory per kept
//!   item is the in-memory store's). The disk is read only by [`DiskHistory::open`], which
//!   rebuilds the image (`memory_restore.rs`): ages come from the stored wall-clock times,
//!   and every bound is applied again as of the open.
//! * **One writer thread, group commit** (`disk_writer.rs`). `append` (one channel) and
//!   `append_groups` (a shard's whole batch, every channel in it: what the broker uses)
//!   filter the items that have an id, take a permit of a bounded queue ([`QUEUE_LIMIT`]
//!   waiting appends; past it callers wait, the runtime never blocks), and hand them to the
//!   writer thread; [`DiskHistory::try_append_groups`] hands them over at once or not at
//!   all, so a shard can make its next append while one is being written. The writer
//!   stores everything waiting as one journal batch with one fsync ([`FsyncPolicy`]), then
//!   applies it to the image and resolves each append: a reader never sees an item before
//!   it is stored. Evictions (by count, age or bytes, done in the image) are logged there
//!   and deleted on disk in the writer's next batch, or within [`FLUSH_INTERVAL`] when no
//!   append comes; a crash before that only brings back items the bounds drop again at the
//!   next open. A chunk is deleted once the image has evicted all its items; until then the
//!   items evicted from it stay on disk, and the open drops them again with the bounds (a
//!   larger count bound at the next open may bring back up to 31 items per channel that a
//!   smaller one had evicted: real items, in order, with their sequence numbers). The
//!   writer finds a chunk's key in its own map (`disk_writer::KeyMap`: per channel the
//!   chunks of its kept items, oldest first, 8 bytes per chunk), since the image knows
//!   items by (channel, sequence) and the disk by write order.
//! * **Errors.** A failed write resolves every append of its batch with
//!   [`HistoryError::Unavailable`] (the publish must not be acknowledged) and leaves the
//!   image unchanged; nothing panics. fjall refuses further writes after a failed journal
//!   write (disk full, I/O error) until the store is opened again.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fjall::{Database, Keyspace, KeyspaceCreateOptions};
use parking_lot::Mutex;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use super::disk_restore::RestoredIds;
use super::disk_writer::Writer;
pub(super) use super::disk_writer::{touched_rows, ChannelKeys, ChunkKey, KeyMap};
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
/// How soon evictions are deleted on disk when no append comes.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

pub(super) enum Cmd {
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
pub(super) struct Shared {
    pub(super) core: Mutex<MemoryCore>,
    /// Wall-clock milliseconds at the core's base instant.
    pub(super) wall_base: u64,
    pub(super) writes: AtomicU64,
    pub(super) appends: AtomicU64,
    pub(super) fsyncs: AtomicU64,
    pub(super) failures: AtomicU64,
    /// Under test: how many of the next writes with appends fail without being written.
    #[cfg(test)]
    pub(super) fail_writes: AtomicU64,
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
    restored_ids: Mutex<RestoredIds>,
    /// False once no id was read back at open, or they were forgotten: then
    /// [`DiskHistory::contains_id`] answers at once, without the lock.
    any_restored: AtomicBool,
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
            #[cfg(test)]
            fail_writes: AtomicU64::new(0),
        });
        let (tx, rx) = mpsc::channel();
        let writer = Writer::new(
            store,
            shared.clone(),
            rx,
            policy,
            restored.keys,
            restored.next_key,
        );
        let writer = std::thread::Builder::new()
            .name("history-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| fail(dir, "cannot start writer thread", e))?;
        Ok(DiskHistory {
            shared,
            any_restored: AtomicBool::new(!restored_ids.is_empty()),
            restored_ids: Mutex::new(restored_ids),
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
        self.any_restored.load(Ordering::Relaxed)
            && self.restored_ids.lock().maybe(channel, id)
            && self.shared.core.lock().contains_id(channel, id)
    }

    /// Frees the hashes [`DiskHistory::contains_id`] answers from: call it once no retry can
    /// be within the dedup window of the open any more (the broker's shards do); afterwards
    /// `contains_id` is false.
    pub fn forget_restored_ids(&self) {
        self.any_restored.store(false, Ordering::Relaxed);
        self.restored_ids.lock().clear();
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
            .filter(|m| m.has_id())
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

#[cfg(test)]
#[path = "disk_chunk_tests.rs"]
mod chunk_tests;
