//! The store a node runs with, picked at start: [`History`] wraps every [`HistoryStore`] in
//! one enum, so the broker and the server call one type and the futures stay unboxed (each
//! method is an `async fn` whose state machine is the union of the stores' own).
//!
//! `Off` keeps nothing: every read answers [`Reach::Gap`] for an id (nothing can be
//! recovered, so a client that asks must be told) and an empty history for
//! [`After::Start`].

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use futures_util::future::Either;
use futures_util::FutureExt;

use super::{
    After, Appended, ClusterHistory, DiskHistory, DiskStats, HistoryError, HistoryStats,
    HistoryStore, Kept, MemoryHistory, Reach, Recovery,
};
use crate::message::{ChannelName, Message};

/// The node's history store.
pub enum History {
    /// History is switched off (`[history] max_items = 0`).
    Off,
    /// Kept in memory (the default).
    Memory(MemoryHistory),
    /// Kept on disk (`[history] dir`): appends resolve once stored.
    Disk(DiskHistory),
    /// Kept in the cluster's JetStream stream, with this node's image of its channels
    /// (`--cluster`): appends go to the image (the stream stored the items before they
    /// reached the shard), reads the image knows nothing about go to the stream.
    Cluster(ClusterHistory),
}

impl History {
    /// True when items are kept at all.
    pub fn is_on(&self) -> bool {
        !matches!(self, History::Off)
    }

    /// True when the store answers without waiting: appends need no acknowledgement
    /// round-trip and reads can run under a lock.
    pub fn is_immediate(&self) -> bool {
        matches!(
            self,
            History::Off | History::Memory(_) | History::Cluster(_)
        )
    }

    /// See [`HistoryStore::append`].
    pub async fn append(
        &self,
        channel: &ChannelName,
        items: &[Arc<Message>],
        now: Instant,
    ) -> Result<Appended, HistoryError> {
        match self {
            History::Off => Ok(Appended::default()),
            History::Memory(m) => Ok(m.append_now(channel, items, now)),
            History::Cluster(c) => Ok(c.image().append_now(channel, items, now)),
            History::Disk(d) => d.append(channel, items, now).await,
        }
    }

    /// Appends several channels' items at once — each group one channel's items, in order
    /// — and resolves once all are stored: a durable store writes them together (one
    /// write, one fsync, one hand-over to its writer); on failure none of them counts as
    /// stored.
    pub async fn append_groups(
        &self,
        groups: &[Vec<Arc<Message>>],
        now: Instant,
    ) -> Result<(), HistoryError> {
        match self {
            History::Off => Ok(()),
            History::Memory(m) => {
                for g in groups.iter().filter(|g| !g.is_empty()) {
                    m.append_now(&g[0].channel, g, now);
                }
                Ok(())
            }
            History::Cluster(c) => {
                for g in groups.iter().filter(|g| !g.is_empty()) {
                    c.image().append_now(&g[0].channel, g, now);
                }
                Ok(())
            }
            History::Disk(d) => d.append_groups(groups, now).await.map(|_| ()),
        }
    }

    /// [`History::append_groups`], started now if the store can take the items at once:
    /// they are handed over before this returns and the future (which borrows nothing)
    /// only waits for the answer, so a caller may make its next append while this one is
    /// being written — a store stores appends in the order they were made. None when the
    /// store's queue is full: wait for what is in flight, then use `append_groups`.
    pub fn try_append_groups(
        &self,
        groups: &[Vec<Arc<Message>>],
        now: Instant,
    ) -> Option<impl Future<Output = Result<(), HistoryError>> + Send + 'static> {
        Some(match self {
            History::Off | History::Memory(_) | History::Cluster(_) => {
                let done = self.append_groups(groups, now).now_or_never();
                Either::Left(std::future::ready(done.unwrap_or(Ok(()))))
            }
            History::Disk(d) => {
                Either::Right(d.try_append_groups(groups, now)?.map(|r| r.map(|_| ())))
            }
        })
    }

    /// Appends to a store that answers at once ([`History::is_immediate`]); for the others
    /// it does nothing and returns `None`.
    pub fn append_now(
        &self,
        channel: &ChannelName,
        items: &[Arc<Message>],
        now: Instant,
    ) -> Option<Appended> {
        match self {
            History::Off => Some(Appended::default()),
            History::Memory(m) => Some(m.append_now(channel, items, now)),
            History::Cluster(c) => Some(c.image().append_now(channel, items, now)),
            History::Disk(_) => None,
        }
    }

    /// See [`HistoryStore::read_after`].
    pub async fn read_after(
        &self,
        channel: &str,
        after: After<'_>,
        limit: usize,
        now: Instant,
    ) -> Result<Recovery, HistoryError> {
        match self {
            History::Off => Ok(off_answer(after)),
            History::Memory(m) => Ok(m.read_after_now(channel, after, limit, now)),
            History::Disk(d) => Ok(d.read_after_now(channel, after, limit, now)),
            History::Cluster(c) => c.read_after(channel, after, limit, now).await,
        }
    }

    /// [`History::read_after`] for a store that answers without waiting; None from a store
    /// that cannot. In cluster mode this is the node's image only.
    pub fn read_after_now(
        &self,
        channel: &str,
        after: After<'_>,
        limit: usize,
        now: Instant,
    ) -> Option<Recovery> {
        match self {
            History::Off => Some(off_answer(after)),
            History::Memory(m) => Some(m.read_after_now(channel, after, limit, now)),
            History::Disk(d) => Some(d.read_after_now(channel, after, limit, now)),
            History::Cluster(c) => Some(c.image().read_after_now(channel, after, limit, now)),
        }
    }

    /// Whether `id` is kept on `channel` (or is its last id), for a store that can say so
    /// without waiting; None from a store that cannot.
    pub fn knows_now(&self, channel: &str, id: &str, now: Instant) -> Option<bool> {
        match self {
            History::Off => Some(false),
            History::Memory(m) => {
                Some(m.read_after_now(channel, After::Id(id), 0, now).reach == Reach::After)
            }
            History::Disk(d) => {
                Some(d.read_after_now(channel, After::Id(id), 0, now).reach == Reach::After)
            }
            History::Cluster(c) => Some(
                c.image()
                    .read_after_now(channel, After::Id(id), 0, now)
                    .reach
                    == Reach::After,
            ),
        }
    }

    /// The newest item kept on `channel`, from a store that answers without waiting (every
    /// store does; in cluster mode this is the node's image).
    pub fn last_now(&self, channel: &str, now: Instant) -> Option<Kept> {
        match self {
            History::Off => None,
            History::Memory(m) => m.last_now(channel, now),
            History::Disk(d) => d.last_now(channel, now),
            History::Cluster(c) => c.image().last_now(channel, now),
        }
    }

    /// See [`HistoryStore::last`].
    pub async fn last(&self, channel: &str, now: Instant) -> Result<Option<Kept>, HistoryError> {
        match self {
            History::Off => Ok(None),
            History::Memory(m) => Ok(m.last_now(channel, now)),
            History::Disk(d) => Ok(d.last_now(channel, now)),
            History::Cluster(c) => Ok(c.image().last_now(channel, now)),
        }
    }

    /// See [`HistoryStore::expire`].
    pub async fn expire(&self, now: Instant) {
        match self {
            History::Off => {}
            History::Memory(m) => m.expire(now).await,
            History::Disk(d) => d.expire(now).await,
            History::Cluster(c) => c.image().expire(now).await,
        }
    }

    /// See [`HistoryStore::stats`].
    pub fn stats(&self) -> HistoryStats {
        match self {
            History::Off => HistoryStats::default(),
            History::Memory(m) => m.stats(),
            History::Disk(d) => d.stats(),
            History::Cluster(c) => c.image().stats(),
        }
    }

    /// True in cluster mode (reads this node's image cannot answer go to the stream).
    pub fn is_cluster(&self) -> bool {
        matches!(self, History::Cluster(_))
    }

    /// True when an append is acknowledged only once stored on disk.
    pub fn is_durable(&self) -> bool {
        matches!(self, History::Disk(_))
    }

    /// True if `id` is stored on `channel` (durable stores: a retry of an item stored
    /// before a restart is a duplicate); false from the other stores.
    pub fn durable_contains(&self, channel: &str, id: &str) -> bool {
        match self {
            History::Disk(d) => d.contains_id(channel, id),
            _ => false,
        }
    }

    /// Frees what [`History::durable_contains`] answers from, once the dedup window after
    /// the store was opened has passed (a no-op for the others).
    pub fn forget_restored_ids(&self) {
        if let History::Disk(d) = self {
            d.forget_restored_ids();
        }
    }

    /// Resolves once everything appended so far is on disk (a no-op for the others).
    pub async fn sync(&self) -> Result<(), HistoryError> {
        match self {
            History::Disk(d) => d.sync().await,
            _ => Ok(()),
        }
    }

    /// The disk writer's counters, for a durable store.
    pub fn disk_stats(&self) -> Option<DiskStats> {
        match self {
            History::Disk(d) => Some(d.disk_stats()),
            _ => None,
        }
    }
}

fn off_answer(after: After<'_>) -> Recovery {
    Recovery {
        reach: match after {
            After::Start => Reach::Complete,
            _ => Reach::Gap,
        },
        epoch: 0,
        items: Vec::new(),
        more: false,
    }
}
