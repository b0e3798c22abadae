//! The re-check after a channel's first subscription (Pushpin's
//! `update_on_first_subscription`, reference §2.4): a publisher may learn late that a channel
//! has a subscriber, or an item published elsewhere may arrive late, so about
//! `grip.first_subscription_recheck` after a channel gets its first subscriber on this node,
//! each hold on it whose prev-id is no longer the channel's last id recovers — a long-poll
//! goes to its origin again with `Grip-Last`, a stream with a next link fetches it. Holds
//! without a prev-id, and channels on which nothing with an id was published, cost nothing.
//!
//! Unlike Pushpin, a hold that is up to date is left alone: a long-poll's re-request drops
//! its subscription and makes the channel new again, so an unconditional re-check would
//! poll the origin every second.
//!
//! The registry tells one background task of each new channel through a queue of at most
//! [`QUEUE`] entries (past it the notice is dropped and counted as
//! `gripway_errors_total{source="internal",reason="recheck-queue-full"}`); notices arrive in
//! time order, so the task sleeps until each one's deadline in turn. Holds that recover count
//! in `gripway_retries_total{reason="first-subscription"}`.

use std::sync::Arc;

use crate::error::Source;
use crate::Shared;

/// Most new channels waiting for their re-check (each waits at most the re-check delay).
pub(crate) const QUEUE: usize = 65_536;

/// Starts the re-check task, unless it is configured off.
pub(crate) fn start(shared: &Arc<Shared>) {
    let delay = shared.config.grip.first_subscription_recheck;
    if delay.is_zero() {
        return;
    }
    let mut queue = shared.broker.registry().watch_new_channels(QUEUE);
    let shared = shared.clone();
    tokio::spawn(async move {
        while let Some((at, channel)) = queue.recv().await {
            let registry = shared.broker.registry();
            let dropped = queue.take_dropped();
            if dropped > 0 {
                shared
                    .metrics
                    .count_errors(Source::Internal, "recheck-queue-full", dropped);
                crate::warn_limited!(
                    "recheck-queue-full",
                    dropped,
                    "first-subscription re-checks dropped: too many new channels at once"
                );
            }
            tokio::time::sleep_until(tokio::time::Instant::from_std(at + delay)).await;
            let Some(last) = shared.broker.last_id(&channel) else {
                continue;
            };
            let recovered = registry.recheck(&channel, &last);
            if recovered > 0 {
                shared
                    .metrics
                    .retries("first-subscription", recovered as u64);
            }
        }
    });
}
