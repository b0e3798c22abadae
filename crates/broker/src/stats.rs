//! What the broker has done, counted for the metrics endpoint: items received, deliveries
//! by transport, losses, and the size gauges of the shards' tables. Shards and lanes add to
//! the same counters (relaxed atomics: nothing is ordered by them).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::registry::FanOutCount;
use crate::subscriber::Transport;

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
    /// Wide batches split between several parts of a lane (a hot channel written by
    /// several worker threads at once).
    pub split_fan_outs: AtomicU64,
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

impl BrokerStats {
    /// Counts what a second walk of the same messages sent (pattern subscribers), without
    /// counting the messages as unheard again.
    pub(crate) fn count_fan_out_more(&self, count: &FanOutCount) {
        if count.subscribers > 0 {
            self.count_fan_out(count, 0);
        }
    }

    /// Counts one fan-out of `messages` items.
    pub(crate) fn count_fan_out(&self, count: &FanOutCount, messages: usize) {
        if count.subscribers == 0 {
            self.unheard.fetch_add(messages as u64, Ordering::Relaxed);
        }
        for (t, n) in count.sent.iter().enumerate() {
            if *n > 0 {
                self.sent[t].fetch_add(*n, Ordering::Relaxed);
            }
        }
        if count.dropped_slow > 0 {
            self.dropped_slow
                .fetch_add(count.dropped_slow, Ordering::Relaxed);
        }
        if count.closed > 0 {
            self.dropped_closed
                .fetch_add(count.closed, Ordering::Relaxed);
        }
    }
}
