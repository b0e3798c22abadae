//! A persistent session going away ([`keep`]) and coming back ([`Session::resume`]).
//!
//! When the device reconnects with `clean_session = 0` / `clean_start = 0`, its
//! subscriptions are made again (no origin request: the stored mapping is reused), the QoS 1
//! messages it had not acknowledged are sent again, then what each QoS 1 subscription's
//! channel kept after the last item the device was sent, then what was published meanwhile.
//! The hand-over is the one SSE and WebSocket recoveries use ([`crate::hold::from_history`]):
//! the fan-out is held back while history is read, and an item both read and held back goes
//! out once. QoS 0 subscriptions get only what is published after the device is back (MQTT
//! keeps nothing for them).

use std::sync::Arc;
use std::time::{Duration, Instant};

use gripway_broker::history::{After, Reach};
use gripway_broker::Message;

use super::session::{Held, Session};
use super::sessions::Stored;
use super::subscriber::{Flags, MqttSub};
use crate::hold::from_history::{self, Found};

/// What the session leaves behind for `expiry` seconds: its subscriptions with the last item
/// each was sent, and its unacknowledged QoS 1 messages.
pub(super) fn keep(sub: &MqttSub, expiry: u32) -> Stored {
    let mut state = sub.state.lock();
    // the entries as they are, each with the last item it was sent
    let subs = std::mem::take(&mut state.entries);
    let inflight = state
        .window
        .take()
        .map(|w| w.inflight.into_iter().map(|(_, m)| m).collect())
        .unwrap_or_default();
    Stored::new(subs, inflight, Duration::from_secs(u64::from(expiry)))
}

impl Session {
    /// Makes a stored session live again (after CONNACK with session present).
    pub(super) fn resume(&mut self, stored: Stored) {
        let sink = &self.sub.sink;
        // held back until history is read: nothing published meanwhile goes out first
        sink.hold_back(&mut sink.lock());
        let mut wants: Vec<(Arc<str>, Option<Arc<Message>>)> = Vec::new();
        for rec in stored.subs {
            if rec.qos > 0 && !rec.pattern && !wants.iter().any(|(c, _)| *c == rec.channel) {
                wants.push((rec.channel.clone(), rec.last.clone()));
            }
            let Some(subscription) = self.attach(&rec.filter, &rec.channel, rec.pattern) else {
                continue;
            };
            self.held.push(Held {
                filter: rec.filter.clone(),
                _subscription: subscription,
            });
            self.sub.state.lock().entries.push(rec);
        }
        let history = self.shared.broker.history();
        let limit = self.shared.config.history.max_recover.max(1);
        let now = Instant::now();
        let mut found: Vec<Found> = Vec::with_capacity(wants.len());
        for (channel, last) in &wants {
            let after = last.as_deref().and_then(Message::id);
            let at = after.map_or(After::Start, After::Id);
            // the node's image in a cluster: what it does not know is not recovered
            let Some(r) = history.read_after_now(channel, at, limit, now) else {
                continue;
            };
            self.shared
                .metrics
                .recovery(from_history::result_label(r.reach));
            if r.reach == Reach::Gap {
                tracing::debug!(%channel, "MQTT session: history does not reach back");
            }
            found.push(Found {
                channel: channel.to_string(),
                after: after.unwrap_or_default().to_string(),
                reach: if after.is_none() {
                    Reach::After
                } else {
                    r.reach
                },
                items: r.items.into_iter().map(|k| k.msg).collect(),
                cut: r.more,
            });
        }
        let mut st = sink.lock();
        // unacknowledged QoS 1 messages first, in the order they were sent
        let again = Flags {
            retain: false,
            dup: true,
        };
        for msg in &stored.inflight {
            self.sub
                .write(&mut st, &msg.channel, std::slice::from_ref(msg), again);
        }
        let held = sink.release(&mut st, from_history::recovered_ids(&found));
        let live = from_history::reconcile(&mut found, held);
        let mut sent = 0;
        for f in &found {
            if let gripway_broker::Delivery::Sent(n) =
                self.sub.deliver_locked(&mut st, &f.channel, &f.items)
            {
                sent += n as usize;
            }
        }
        from_history::count_sent(&self.shared, sent);
        let mut start = 0;
        while start < live.len() {
            let ch = live[start].channel.clone();
            let end = live[start..]
                .iter()
                .position(|m| m.channel != ch)
                .map_or(live.len(), |n| start + n);
            self.sub.deliver_locked(&mut st, &ch, &live[start..end]);
            start = end;
        }
    }
}
