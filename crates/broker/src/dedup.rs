//! Duplicate suppression: a publish item whose (channel, id) was already seen within the
//! window is accepted by the API but not delivered again. This lets publishers send every
//! item down two redundant paths.
//!
//! Bounded two ways: entries expire after the window, and past `max_bytes` (what the pairs
//! really cost: their strings plus the table and queue slots, see [`AgedMap`]) the oldest are
//! forgotten early, in amortised O(1) — so a flood of unique ids costs memory up to the
//! bound, never more.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::aged::AgedMap;
use crate::message::{str_heap, ChannelName};

/// Remembers (channel, id) pairs for a time window.
pub struct Dedup {
    window: Duration,
    seen: AgedMap<(ChannelName, Arc<str>), ()>,
}

impl Dedup {
    /// A window of `window` (zero disables dedup), holding at most `max_bytes` of pairs.
    pub fn new(window: Duration, max_bytes: usize) -> Dedup {
        Dedup {
            window,
            seen: AgedMap::new(max_bytes),
        }
    }

    /// True if the pair is new (and records it); false if it is a duplicate.
    pub fn first_sighting(&mut self, channel: &ChannelName, id: &str, now: Instant) -> bool {
        if self.window.is_zero() || self.seen.max_bytes() == 0 {
            return true;
        }
        if let Some(cutoff) = now.checked_sub(self.window) {
            // `expire_before` keeps entries at `cutoff`; the window is exclusive
            self.seen
                .expire_before(cutoff + Duration::from_nanos(1), |_, _| true, |_, _| {});
        }
        let key = (channel.clone(), Arc::from(id));
        if !self
            .seen
            .insert_new(key, (), str_heap(channel) + str_heap(id), now)
        {
            return false;
        }
        self.seen.evict_over_bound(|_, _| {});
        true
    }

    /// Forgets a pair (its item could not be stored: a retry of it is not a duplicate).
    pub fn forget(&mut self, channel: &ChannelName, id: &str) {
        self.seen.remove(&(channel.clone(), Arc::from(id)));
    }

    /// Pairs remembered now.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// What the remembered pairs cost now, in bytes.
    pub fn bytes(&self) -> usize {
        self.seen.bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Map = AgedMap<(ChannelName, Arc<str>), ()>;

    #[test]
    fn suppresses_within_window_only() {
        let mut d = Dedup::new(Duration::from_secs(60), 1 << 20);
        let (c, c2, id) = (Arc::from("c"), Arc::from("c2"), Arc::from("1"));
        let t0 = Instant::now();
        assert!(d.first_sighting(&c, &id, t0));
        assert!(!d.first_sighting(&c, &id, t0 + Duration::from_secs(59)));
        assert!(d.first_sighting(&c2, &id, t0), "same id, other channel");
        assert!(d.first_sighting(&c, &id, t0 + Duration::from_secs(61)));
    }

    #[test]
    fn bounded_in_bytes() {
        // room for three one-byte pairs
        let per = Map::ENTRY_OVERHEAD + 2 * str_heap("c");
        let mut d = Dedup::new(Duration::from_secs(60), 3 * per);
        let c: ChannelName = Arc::from("c");
        let now = Instant::now();
        for i in 0..10 {
            assert!(d.first_sighting(&c, &Arc::from(i.to_string()), now));
        }
        assert_eq!(d.len(), 3);
        assert!(d.bytes() <= 3 * per);
        assert!(!d.first_sighting(&c, &Arc::from("9"), now));
        // a long id costs what it holds: fewer of them fit
        let long: Arc<str> = Arc::from("x".repeat(per).as_str());
        assert!(d.first_sighting(&c, &long, now));
        assert!(d.len() <= 2, "{}", d.len());
        assert!(d.bytes() <= 3 * per);
    }

    #[test]
    fn zero_window_disables() {
        let mut d = Dedup::new(Duration::ZERO, 1 << 20);
        let (c, id) = (Arc::from("c"), Arc::from("1"));
        assert!(d.first_sighting(&c, &id, Instant::now()));
        assert!(d.first_sighting(&c, &id, Instant::now()));
        assert!(d.is_empty());
    }
}
