//! Duplicate suppression: a publish item whose (channel, id) was already seen within the
//! window is accepted by the API but not delivered again. This lets publishers send every
//! item down two redundant paths.
//!
//! Bounded two ways: entries expire after the window, and past `max_entries` the oldest are
//! forgotten early (so a flood of unique ids costs memory up to the bound, never more).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use foldhash::HashSet;

use crate::message::ChannelName;

/// Remembers (channel, id) pairs for a time window.
pub struct Dedup {
    window: Duration,
    max_entries: usize,
    seen: HashSet<(ChannelName, std::sync::Arc<str>)>,
    order: VecDeque<(Instant, ChannelName, std::sync::Arc<str>)>,
}

impl Dedup {
    /// A window of `window` (zero disables dedup), holding at most `max_entries` pairs.
    pub fn new(window: Duration, max_entries: usize) -> Dedup {
        Dedup {
            window,
            max_entries,
            seen: HashSet::default(),
            order: VecDeque::new(),
        }
    }

    /// True if the pair is new (and records it); false if it is a duplicate.
    pub fn first_sighting(
        &mut self,
        channel: &ChannelName,
        id: &std::sync::Arc<str>,
        now: Instant,
    ) -> bool {
        if self.window.is_zero() || self.max_entries == 0 {
            return true;
        }
        self.expire(now);
        let key = (channel.clone(), id.clone());
        if self.seen.contains(&key) {
            return false;
        }
        while self.order.len() >= self.max_entries {
            self.forget_oldest();
        }
        self.seen.insert(key);
        self.order.push_back((now, channel.clone(), id.clone()));
        true
    }

    /// Pairs remembered now.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    fn expire(&mut self, now: Instant) {
        while self
            .order
            .front()
            .is_some_and(|(t, _, _)| now.duration_since(*t) >= self.window)
        {
            self.forget_oldest();
        }
    }

    fn forget_oldest(&mut self) {
        if let Some((_, c, i)) = self.order.pop_front() {
            self.seen.remove(&(c, i));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn suppresses_within_window_only() {
        let mut d = Dedup::new(Duration::from_secs(60), 100);
        let (c, c2, id) = (Arc::from("c"), Arc::from("c2"), Arc::from("1"));
        let t0 = Instant::now();
        assert!(d.first_sighting(&c, &id, t0));
        assert!(!d.first_sighting(&c, &id, t0 + Duration::from_secs(59)));
        assert!(d.first_sighting(&c2, &id, t0), "same id, other channel");
        assert!(d.first_sighting(&c, &id, t0 + Duration::from_secs(61)));
    }

    #[test]
    fn bounded() {
        let mut d = Dedup::new(Duration::from_secs(60), 3);
        let c: ChannelName = Arc::from("c");
        let now = Instant::now();
        for i in 0..10 {
            assert!(d.first_sighting(&c, &Arc::from(i.to_string()), now));
        }
        assert_eq!(d.len(), 3);
        assert!(!d.first_sighting(&c, &Arc::from("9"), now));
    }

    #[test]
    fn zero_window_disables() {
        let mut d = Dedup::new(Duration::ZERO, 3);
        let (c, id) = (Arc::from("c"), Arc::from("1"));
        assert!(d.first_sighting(&c, &id, Instant::now()));
        assert!(d.first_sighting(&c, &id, Instant::now()));
        assert!(d.is_empty());
    }
}
