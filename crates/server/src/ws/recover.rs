//! History for a WebSocket: the origin subscribes the connection with
//! `c:{"type":"subscribe","channel":"x","prev-id":"…"}` (on a passed-through WebSocket or in a
//! WebSocket-over-HTTP answer), and the connection first receives the kept items that followed
//! that id, then live ones, with the same hand-over as a stream hold
//! ([`crate::hold::from_history`]): the fan-out is held back while history is read, and what
//! arrived meanwhile is sent after the recovered items, less those already among them.
//!
//! When history does not reach back to the id (something was evicted), the connection gets
//! what is kept and the miss is counted (`gripway_history_recoveries_total{result="gap"}`): a
//! WebSocket has no message Gripway could add without speaking for the application, so the
//! origin, which chose the `prev-id`, is the one to check.

use std::sync::Arc;
use std::time::Instant;

use gripway_broker::history::{After, Reach};

use super::subscriber::WsSub;
use crate::hold::from_history::{self, Found};
use crate::Shared;

/// Holds the fan-out back for `sub` (call before subscribing to `channel`), when history
/// can answer at once; returns whether [`recover`] must follow.
pub(crate) fn prepare(shared: &Shared, sub: &WsSub) -> bool {
    if !shared.broker.history().is_on() {
        return false;
    }
    sub.sink.hold_back(&mut sub.sink.lock());
    true
}

/// Sends what followed `prev_id` on `channel`, then what the fan-out handed over meanwhile.
/// In a cluster, what this node's image of the channel does not know is read from the
/// stream first, on a task of its own (the fan-out stays held back until then).
pub(crate) fn recover(shared: &Arc<Shared>, sub: &Arc<WsSub>, channel: &str, prev_id: &str) {
    let history = shared.broker.history();
    let limit = shared.config.history.max_recover.max(1);
    let answer = history.read_after_now(channel, After::Id(prev_id), limit, Instant::now());
    if history.is_cluster() && answer.as_ref().is_none_or(|r| r.reach != Reach::After) {
        let (shared, sub) = (shared.clone(), sub.clone());
        let (channel, prev_id) = (channel.to_string(), prev_id.to_string());
        tokio::spawn(async move {
            let answer = shared
                .broker
                .history()
                .read_after(&channel, After::Id(&prev_id), limit, Instant::now())
                .await;
            if let Err(e) = &answer {
                tracing::debug!(channel, "history not readable from the cluster: {e}");
            }
            send(&shared, &sub, &channel, &prev_id, answer.ok());
        });
        return;
    }
    send(shared, sub, channel, prev_id, answer);
}

/// Sends the recovered items, then releases what the fan-out held back.
fn send(
    shared: &Shared,
    sub: &WsSub,
    channel: &str,
    prev_id: &str,
    answer: Option<gripway_broker::history::Recovery>,
) {
    let mut found: Vec<Found> = answer
        .map(|r| {
            shared.metrics.recovery(from_history::result_label(r.reach));
            Found {
                channel: channel.to_string(),
                after: prev_id.to_string(),
                reach: r.reach,
                items: r.items.into_iter().map(|k| k.msg).collect(),
                cut: r.more,
            }
        })
        .into_iter()
        .collect();
    let mut st = sub.sink.lock();
    let held = sub
        .sink
        .release(&mut st, from_history::recovered_ids(&found));
    let live = from_history::reconcile(&mut found, held);
    let mut sent = 0;
    for f in &found {
        if f.reach == Reach::Gap {
            tracing::debug!(channel, prev_id, "history does not reach back to prev-id");
        }
        if let gripway_broker::Delivery::Sent(n) = sub.deliver_locked(&mut st, channel, &f.items) {
            sent += n as usize;
        }
    }
    from_history::count_sent(shared, sent);
    let mut start = 0;
    while start < live.len() {
        let ch = live[start].channel.clone();
        let end = live[start..]
            .iter()
            .position(|m| m.channel != ch)
            .map_or(live.len(), |n| start + n);
        sub.deliver_locked(&mut st, &ch, &live[start..end]);
        start = end;
    }
}
