//! The history seam: what a channel's kept items look like to the rest of Gripway, whichever
//! store keeps them — in memory ([`memory::MemoryHistory`], the default), on disk
//! ([`disk::DiskHistory`]), or in NATS JetStream (cluster mode). Every published item that has an `id` is kept per channel, with a
//! store-assigned sequence number, until a bound (count per channel, age, total bytes) evicts
//! it, oldest first.
//!
//! What a reader asks is "what followed this id?" ([`HistoryStore::read_after`]), and the
//! answer says how far the history reaches ([`Reach`]):
//!
//! * [`Reach::After`]: the id is kept (or is the channel's last id): the items are exactly
//!   those that followed it;
//! * [`Reach::Complete`]: the id was never kept, but nothing of this channel has been
//!   dropped since the store started: the client is older than the store, and every kept
//!   item is what it missed (this is what makes a drained restart lossless without a disk);
//! * [`Reach::Gap`]: the id is not kept and something was dropped: the items are what is
//!   still kept, and the caller must not pretend they follow the id (fall back to the origin
//!   with `Grip-Last`, or tell the client).
//!
//! Design choices:
//!
//! * **One trait, async, statically dispatched.** Disk and JetStream stores must wait (fsync,
//!   a JetStream ack), and their caller — the broker's shard task, or a connection's task — is
//!   async anyway, so every method returns a future (`impl Future` in the trait, no boxing).
//!   The in-memory store returns [`std::future::Ready`]: the work is done before the future is
//!   returned, the future is never pending, and nothing is allocated for it. The trait is not
//!   object-safe on purpose; the server picks a store at start and either makes the broker
//!   generic over it or wraps the stores in one enum (no `Box<dyn Future>` per publish).
//! * **Items are `Arc<Message>`**, the same allocation the fan-out hands to subscribers: the
//!   in-memory store adds only its own slots (measured in `memory`'s tests: 32 bytes per item
//!   plus the queues' spare capacity, about 62 in all; charged as 80), never a copy of the
//!   content. Disk and JetStream stores serialise the item and rebuild a `Message` on read.
//! * **Sequence numbers are per channel**, increasing, and dense in the in-memory store;
//!   JetStream's stream sequence is increasing per subject but not dense, so callers only
//!   compare them. A sequence is meaningful only with the `epoch` it came with
//!   ([`Recovery::epoch`]): a store that lost or restarted a channel's history starts a new
//!   epoch, and an [`After::Seq`] from another epoch is treated as an unknown id.
//! * **Items without an id are not kept** (nothing could name them in a recovery); they do
//!   not break the chain either: the next kept item follows the last kept one.
//! * **Appends come from one place per channel**: the shard task that owns the channel (in
//!   cluster mode, the JetStream publish that assigns the sequence), in delivery order, so the
//!   store never reorders. Reads may come from any task.
//!
//! See ARCHITECTURE.md, "History", for how the disk and JetStream stores plug in and which
//! guarantee comes from where.

pub mod cluster;
pub mod disk;
mod disk_codec;
mod disk_migrate;
mod disk_restore;
mod disk_writer;
pub mod memory;
mod store;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::message::{ChannelName, Message};

pub use cluster::{ClusterHistory, RemoteFuture, RemoteHistory, RemoteRead};
pub use disk::{DiskHistory, DiskStats, FsyncPolicy};
pub use memory::MemoryHistory;
pub use store::History;

/// Bounds on what a store keeps (`[history]` in the config file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryConfig {
    /// Most items kept per channel (`max_items`); zero keeps nothing.
    pub max_items: usize,
    /// How long an item is kept after it was appended (`max_age_secs`).
    pub max_age: Duration,
    /// Most bytes all kept items, and the channels they are kept on, may cost (`max_bytes`),
    /// counted as [`Message::cost`] plus the store's own slots.
    pub max_bytes: usize,
}

/// Default [`HistoryConfig::max_items`].
pub const DEFAULT_MAX_ITEMS: usize = 100;
/// Default [`HistoryConfig::max_age`].
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(120);
/// Default [`HistoryConfig::max_bytes`].
pub const DEFAULT_MAX_BYTES: usize = 64 << 20;

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            max_items: DEFAULT_MAX_ITEMS,
            max_age: DEFAULT_MAX_AGE,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

/// One kept item.
#[derive(Debug, Clone)]
pub struct Kept {
    /// Its sequence number on its channel (increasing; see the module doc).
    pub seq: u64,
    /// The item, shared with the fan-out.
    pub msg: Arc<Message>,
}

/// Where a read starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After<'a> {
    /// Everything kept.
    Start,
    /// What followed the item with this id (`Last-Event-ID`, `prev-id`).
    Id(&'a str),
    /// What followed this sequence number, valid in this epoch (MQTT sessions, JetStream
    /// consumers).
    Seq {
        /// The [`Recovery::epoch`] the sequence number came with.
        epoch: u64,
        /// The last sequence number the reader has.
        seq: u64,
    },
}

/// How far a channel's history reaches back toward what a reader asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// The asked item is known: the items are exactly those that followed it.
    After,
    /// The asked item was never kept, and nothing of the channel has been dropped since the
    /// store started: the items are everything the reader can have missed.
    Complete,
    /// The asked item is no longer kept: the items are what is left, and something between
    /// them and the asked item was lost.
    Gap,
}

/// The answer to [`HistoryStore::read_after`].
#[derive(Debug, Clone)]
pub struct Recovery {
    /// How far the history reaches.
    pub reach: Reach,
    /// The channel's epoch: sequence numbers are comparable only within one.
    pub epoch: u64,
    /// The kept items after the asked one, oldest first (at most the asked limit).
    pub items: Vec<Kept>,
    /// True when the limit cut the answer short (read again after the last item).
    pub more: bool,
}

/// What [`HistoryStore::append`] kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Appended {
    /// Items kept (those with an id).
    pub kept: usize,
    /// The sequence number of the last item kept, if any.
    pub last_seq: Option<u64>,
}

/// What a store holds and has dropped, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HistoryStats {
    /// Channels with kept state (items, or a last id after the items aged out).
    pub channels: u64,
    /// Items kept now.
    pub items: u64,
    /// What they cost now, in bytes.
    pub bytes: u64,
    /// Items dropped because their channel had `max_items` newer ones.
    pub evicted_count: u64,
    /// Items dropped because they were older than `max_age`.
    pub evicted_age: u64,
    /// Items dropped because all history together was over `max_bytes`.
    pub evicted_bytes: u64,
    /// Channels whose state was forgotten entirely (after their items were gone).
    pub forgotten_channels: u64,
}

impl HistoryStats {
    /// Items dropped for any reason.
    pub fn evictions(&self) -> u64 {
        self.evicted_count + self.evicted_age + self.evicted_bytes
    }
}

/// Why a store could not do what was asked (never returned by the in-memory store).
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The store cannot be reached or written now (disk full, NATS down): the publish
    /// must not be acknowledged, and a reader should fall back as if history were off.
    #[error("history store unavailable: {0}")]
    Unavailable(String),
}

/// A per-channel history of published items. See the module doc.
pub trait HistoryStore: Send + Sync + 'static {
    /// Keeps the items of one channel that have an id, in order, after everything kept
    /// before; resolves once they are stored (durably, for a durable store). Then evicts
    /// whatever the bounds say, oldest first.
    fn append(
        &self,
        channel: &ChannelName,
        items: &[Arc<Message>],
        now: Instant,
    ) -> impl Future<Output = Result<Appended, HistoryError>> + Send;

    /// The kept items of `channel` after `after`, oldest first, at most `limit` of them,
    /// and how far the history reaches (see [`Reach`]).
    fn read_after(
        &self,
        channel: &str,
        after: After<'_>,
        limit: usize,
        now: Instant,
    ) -> impl Future<Output = Result<Recovery, HistoryError>> + Send;

    /// The newest kept item of `channel` (MQTT's retained message).
    fn last(
        &self,
        channel: &str,
        now: Instant,
    ) -> impl Future<Output = Result<Option<Kept>, HistoryError>> + Send;

    /// Drops what has aged out by `now` on every channel (call it from a timer, so quiet
    /// channels free their memory too); stores that expire by themselves do nothing.
    fn expire(&self, now: Instant) -> impl Future<Output = ()> + Send {
        let _ = now;
        std::future::ready(())
    }

    /// What the store holds now and has dropped so far.
    fn stats(&self) -> HistoryStats;
}
