//! The last published id per channel, as far as this node has seen it, for holds that say
//! which id their origin's response already reflected (`Grip-Channel: c; prev-id=...`): when
//! the two differ, the hold is stale and the proxy asks the origin again at once.
//!
//! An id is set by each delivered item that has one and forgotten by an item without one.
//! It stays known for [`LINGER`] after it was set even if the channel has no subscribers
//! left — long-pollers leave and come back between messages — and the table is bounded in
//! bytes (what the entries really cost, see [`AgedMap`]): past the bound the entries set
//! longest ago are forgotten first, in amortised O(1). A forgotten id only means the next
//! hold on that channel is not checked for staleness.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use foldhash::fast::FixedState;
use parking_lot::Mutex;

use crate::aged::AgedMap;
use crate::message::{str_heap, ChannelName};

/// How long a channel's last id is remembered after it was set.
pub const LINGER: Duration = Duration::from_secs(60);
/// Default bound on what the table costs, in bytes.
pub const DEFAULT_MAX_BYTES: usize = 16 << 20;

const SHARDS: usize = 16;

/// One lock's worth of the table: channel → (last id, when it was set).
type Shard = Mutex<AgedMap<ChannelName, (Arc<str>, Instant)>>;

/// Last ids by channel.
pub struct LastIds {
    shards: Box<[Shard]>,
    hasher: FixedState,
    /// Entries over all shards, kept up to date under each shard's lock: an item without an
    /// id, the common case, skips the lock while the table is empty.
    entries: AtomicUsize,
}

impl Default for LastIds {
    fn default() -> Self {
        LastIds::new(DEFAULT_MAX_BYTES)
    }
}

impl LastIds {
    /// A table that costs at most `max_bytes`.
    pub fn new(max_bytes: usize) -> Self {
        LastIds {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(AgedMap::new(max_bytes / SHARDS)))
                .collect(),
            hasher: FixedState::with_seed(0x6c61_7374),
            entries: AtomicUsize::new(0),
        }
    }

    /// Channels remembered now.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    /// True when no channel is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What the table costs now, in bytes.
    pub fn bytes(&self) -> usize {
        self.shards.iter().map(|s| s.lock().bytes()).sum()
    }

    fn shard(&self, channel: &str) -> &Shard {
        &self.shards[(self.hasher.hash_one(channel) as usize) % SHARDS]
    }

    /// Records that `id` (or no id) was the last item delivered on `channel`.
    ///
    /// A channel's entry is set only from the task that owns the channel (its dispatcher
    /// shard), so when that task finds the table empty, its channel has no entry to forget.
    pub fn set(&self, channel: &ChannelName, id: Option<&str>, now: Instant) {
        if id.is_none() && self.entries.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut shard = self.shard(channel).lock();
        let before = shard.len();
        match id {
            Some(id) => {
                let heap = str_heap(channel) + str_heap(id);
                shard.insert(channel.clone(), (Arc::from(id), now), heap, now);
                shard.evict_over_bound(|_, _| {});
            }
            None => {
                shard.remove(channel);
            }
        }
        self.count(before, shard.len());
    }

    /// Brings [`LastIds::entries`] up to date with a shard that went from `before` to
    /// `after` entries (under its lock).
    fn count(&self, before: usize, after: usize) {
        if after > before {
            self.entries.fetch_add(after - before, Ordering::Relaxed);
        } else if before > after {
            self.entries.fetch_sub(before - after, Ordering::Relaxed);
        }
    }

    /// Forgets every last id (`POST /recover`).
    pub fn clear(&self) {
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            let max = shard.max_bytes();
            let before = shard.len();
            *shard = AgedMap::new(max);
            self.count(before, 0);
        }
    }

    /// The last id on `channel`, if known and set within [`LINGER`] (or the channel is
    /// still subscribed, which the caller says with `subscribed`).
    pub fn get(&self, channel: &str, subscribed: bool, now: Instant) -> Option<Arc<str>> {
        let shard = self.shard(channel).lock();
        let (id, at) = shard.get(channel)?;
        (subscribed || now.duration_since(*at) < LINGER).then(|| id.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_forget_and_linger() {
        let ids = LastIds::default();
        let c: ChannelName = Arc::from("c");
        let t0 = Instant::now();
        assert_eq!(ids.get("c", true, t0), None);
        ids.set(&c, Some(&Arc::from("7")), t0);
        assert_eq!(ids.get("c", false, t0).as_deref(), Some("7"));
        let later = t0 + LINGER + Duration::from_secs(1);
        assert_eq!(ids.get("c", false, later), None, "lingered out");
        assert_eq!(
            ids.get("c", true, later).as_deref(),
            Some("7"),
            "still subscribed"
        );
        ids.set(&c, None, later);
        assert_eq!(
            ids.get("c", true, later),
            None,
            "an item without id forgets"
        );
        assert_eq!(ids.bytes(), 0);
        assert_eq!(ids.entries.load(Ordering::Relaxed), 0);
        ids.set(&c, Some(&Arc::from("8")), later);
        ids.set(&Arc::from("d"), Some(&Arc::from("9")), later);
        assert_eq!(ids.entries.load(Ordering::Relaxed), 2);
        ids.set(&c, None, later);
        assert_eq!(ids.get("d", true, later).as_deref(), Some("9"));
        assert_eq!(
            ids.get("c", true, later),
            None,
            "forgotten though others are kept"
        );
        ids.clear();
        assert_eq!(ids.entries.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn bounded_in_bytes_oldest_forgotten_first() {
        let ids = LastIds::new(64 << 10);
        let now = Instant::now();
        let id: Arc<str> = Arc::from("some-id");
        for i in 0..100_000 {
            ids.set(&Arc::from(format!("channel-{i}").as_str()), Some(&id), now);
        }
        assert!(ids.bytes() <= 64 << 10, "{}", ids.bytes());
        assert_eq!(
            ids.entries.load(Ordering::Relaxed),
            ids.len(),
            "evictions counted"
        );
        assert!(ids.len() > 100, "{}", ids.len());
        assert_eq!(
            ids.get("channel-99999", false, now).as_deref(),
            Some("some-id")
        );
        assert_eq!(ids.get("channel-0", false, now), None);
    }
}
