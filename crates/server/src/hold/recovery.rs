//! Recovery requested from outside a hold: `POST /recover` on the publish API (reference
//! §2.4) forgets every channel's last id and asks every hold that can recover to do so — a
//! long-poll with a prev-id goes to its origin again with `Grip-Last`, a stream with a next
//! link fetches it. Holds without either ignore it (the broker's default
//! [`recover`](gripway_broker::Subscriber::recover)).
//!
//! It walks the whole registry once, under one channel lock at a time, and each hold only
//! sets a flag and wakes its own task: the origin requests that follow are paced by each
//! hold (next-link fetches by `grip.max_next_link_fetches` and the minimum interval).

use crate::Shared;

/// `POST /recover`: returns how many subscriptions were asked.
pub(crate) fn recover_all(shared: &Shared) -> usize {
    shared.broker.clear_last_ids();
    let asked = shared.broker.registry().recover(None);
    shared.metrics.retry("recover-command");
    asked
}
