//! Pattern subscriptions: a subscriber that wants every channel whose name matches a pattern,
//! in MQTT's topic-filter syntax (levels split by `/`, `+` one level, `#` the rest, a name
//! starting with `$` not matched by a leading wildcard). MQTT devices of the demo origin use
//! them for wildcard filters (channel = topic).
//!
//! The fan-out looks here only while a pattern exists (one atomic load otherwise), after the
//! channel's own subscribers and on the same shard task, so per-channel order holds. Each
//! fan-out checks every pattern, so their number is bounded ([`MAX_PATTERNS`]). Patterns see
//! only the channels this node receives: in a cluster, a channel nobody on this node
//! subscribes to by name does not reach them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use slab::Slab;

use crate::message::Message;
use crate::registry::FanOutCount;
use crate::subscriber::{Delivery, Subscriber};

/// Most pattern subscriptions per node.
pub const MAX_PATTERNS: usize = 10_000;

type Entry = (Arc<str>, Arc<dyn Subscriber>);

/// The node's pattern subscriptions.
#[derive(Default)]
pub struct Patterns {
    list: RwLock<Slab<Entry>>,
    count: AtomicUsize,
}

/// One subscriber's place among the patterns; dropping it unsubscribes.
pub struct PatternSubscription {
    patterns: Arc<Patterns>,
    key: usize,
}

impl Drop for PatternSubscription {
    fn drop(&mut self) {
        let mut list = self.patterns.list.write();
        if list.try_remove(self.key).is_some() {
            self.patterns.count.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Patterns {
    /// Adds `subscriber` for channels matching `pattern`; None when [`MAX_PATTERNS`] are held.
    pub fn subscribe(
        self: &Arc<Self>,
        pattern: &str,
        subscriber: Arc<dyn Subscriber>,
    ) -> Option<PatternSubscription> {
        let mut list = self.list.write();
        if list.len() >= MAX_PATTERNS {
            return None;
        }
        let key = list.insert((Arc::from(pattern), subscriber));
        self.count.fetch_add(1, Ordering::Relaxed);
        Some(PatternSubscription {
            patterns: self.clone(),
            key,
        })
    }

    /// True while any pattern subscription exists.
    pub fn any(&self) -> bool {
        self.count.load(Ordering::Relaxed) > 0
    }

    /// Hands `messages` of `channel` to every pattern subscriber whose pattern matches it.
    pub fn fan_out(&self, channel: &str, messages: &[Arc<Message>]) -> FanOutCount {
        let mut count = FanOutCount::default();
        let list = self.list.read();
        for (_, (pattern, sub)) in list.iter() {
            if !matches(pattern, channel) {
                continue;
            }
            count.subscribers += 1;
            match sub.deliver(channel, messages) {
                Delivery::Sent(n) => count.sent[sub.transport().index()] += u64::from(n),
                Delivery::Skipped => {}
                Delivery::DroppedSlow(n) => count.dropped_slow += u64::from(n),
                Delivery::Closed(n) => count.closed += u64::from(n),
            }
        }
        count
    }
}

/// Whether `name` matches `pattern` (MQTT topic-filter rules).
pub fn matches(pattern: &str, name: &str) -> bool {
    if name.starts_with('$') && (pattern.starts_with('+') || pattern.starts_with('#')) {
        return false;
    }
    let mut p = pattern.split('/');
    let mut n = name.split('/');
    loop {
        match (p.next(), n.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mqtt_topic_filter_rules() {
        assert!(matches("a/+/c", "a/b/c"));
        assert!(!matches("a/+/c", "a/b/d"));
        assert!(matches("sport/#", "sport"));
        assert!(matches("sport/#", "sport/tennis/player1"));
        assert!(matches("#", "anything/at/all"));
        assert!(!matches("#", "$SYS/x"));
        assert!(!matches("+/x", "$SYS/x"));
        assert!(matches("$SYS/#", "$SYS/x"));
        assert!(matches("+/+", "/finance"));
        assert!(!matches("a/b", "a/b/c"));
        assert!(!matches("a/+", "a"));
    }
}
