//! Per-channel ordering by `prev-id`. A publisher that gives each item an `id` and the id of
//! the item before it (`prev-id`) gets them delivered in that order even when they arrive out
//! of order: an item whose `prev-id` is not the channel's last delivered id waits until its
//! predecessor arrives, or until the wait runs out (default 5 s), then goes out anyway.
//!
//! The channel's last id is known only while the channel has subscribers (as in Pushpin): the
//! first item after a channel gains subscribers goes out at once whatever its `prev-id`.
//! Bounded: at most `max_pending` items wait per channel; one more flushes the channel's
//! waiting items in arrival order instead of dropping anything.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use foldhash::HashMap;

use crate::message::{ChannelName, Message};

/// Per-channel ordering state for the channels of one dispatcher shard.
pub struct Sequencer {
    wait: Duration,
    max_pending: usize,
    channels: HashMap<ChannelName, ChannelOrder>,
    /// Waiting items' deadlines in arrival order (= deadline order, the wait being fixed).
    /// May hold entries already released; they are skipped.
    deadlines: VecDeque<(Instant, ChannelName)>,
}

#[derive(Default)]
struct ChannelOrder {
    last_id: Option<Arc<str>>,
    pending: VecDeque<(Instant, Arc<Message>)>,
}

/// What `arrive` did with an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Released now (possibly with waiting successors).
    Released,
    /// Waiting for its predecessor.
    Waiting,
}

impl Sequencer {
    /// Items wait at most `wait` for their predecessor; at most `max_pending` per channel.
    pub fn new(wait: Duration, max_pending: usize) -> Sequencer {
        Sequencer {
            wait,
            max_pending,
            channels: HashMap::default(),
            deadlines: VecDeque::new(),
        }
    }

    /// Takes an arriving item; appends to `out`, in delivery order, every item that may go
    /// out now. `has_subscribers` says whether the channel has subscribers on this node.
    pub fn arrive(
        &mut self,
        msg: Arc<Message>,
        has_subscribers: bool,
        now: Instant,
        out: &mut Vec<Arc<Message>>,
    ) -> Arrival {
        if !has_subscribers {
            // nobody to order for: forget the channel (and release whatever waited)
            if let Some(order) = self.channels.remove(&msg.channel) {
                out.extend(order.pending.into_iter().map(|(_, m)| m));
            }
            out.push(msg);
            return Arrival::Released;
        }
        let order = self.channels.entry(msg.channel.clone()).or_default();
        let in_order = msg.no_seq
            || msg.prev_id.is_none()
            || order.last_id.is_none()
            || order.last_id == msg.prev_id;
        if in_order {
            release(order, msg, out);
            return Arrival::Released;
        }
        if order.pending.len() >= self.max_pending {
            // too far out of order to wait for: flush in arrival order, nothing is lost
            while let Some((_, m)) = order.pending.pop_front() {
                release_one(order, m, out);
            }
            release(order, msg, out);
            return Arrival::Released;
        }
        let deadline = now + self.wait;
        order.pending.push_back((deadline, msg.clone()));
        self.deadlines.push_back((deadline, msg.channel.clone()));
        Arrival::Waiting
    }

    /// Releases, into `out`, items whose wait is over (each followed by any successors).
    pub fn expire(&mut self, now: Instant, out: &mut Vec<Arc<Message>>) -> usize {
        let before = out.len();
        while let Some((deadline, _)) = self.deadlines.front() {
            if *deadline > now {
                break;
            }
            let Some((_, channel)) = self.deadlines.pop_front() else {
                break;
            };
            let Some(order) = self.channels.get_mut(&channel) else {
                continue;
            };
            while order.pending.front().is_some_and(|(d, _)| *d <= now) {
                if let Some((_, m)) = order.pending.pop_front() {
                    release(order, m, out);
                }
            }
        }
        out.len() - before
    }

    /// When `expire` next has something to release.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.front().map(|(d, _)| *d)
    }

    /// Items waiting now, over all channels.
    pub fn waiting(&self) -> usize {
        self.channels.values().map(|o| o.pending.len()).sum()
    }
}

/// Releases `msg`, then every waiting item that follows it.
fn release(order: &mut ChannelOrder, msg: Arc<Message>, out: &mut Vec<Arc<Message>>) {
    release_one(order, msg, out);
    while let Some(last) = order.last_id.clone() {
        let Some(pos) = order
            .pending
            .iter()
            .position(|(_, m)| m.prev_id.as_ref() == Some(&last))
        else {
            break;
        };
        let Some((_, next)) = order.pending.remove(pos) else {
            break;
        };
        release_one(order, next, out);
    }
}

fn release_one(order: &mut ChannelOrder, msg: Arc<Message>, out: &mut Vec<Arc<Message>>) {
    order.last_id = msg.id.clone();
    out.push(msg);
}

#[cfg(test)]
mod tests {
    use super::*;
    use gripway_proto::publish::{Formats, Item};

    fn msg(id: &str, prev: Option<&str>) -> Arc<Message> {
        Message::new(Item {
            channel: "c".into(),
            id: Some(id.into()),
            prev_id: prev.map(Into::into),
            meta: vec![],
            no_seq: false,
            formats: Formats::default(),
        })
    }

    fn ids(out: &[Arc<Message>]) -> Vec<&str> {
        out.iter().map(|m| m.id.as_deref().unwrap_or("-")).collect()
    }

    #[test]
    fn reorders_by_prev_id() {
        let mut s = Sequencer::new(Duration::from_secs(5), 100);
        let now = Instant::now();
        let mut out = vec![];
        assert_eq!(
            s.arrive(msg("1", None), true, now, &mut out),
            Arrival::Released
        );
        assert_eq!(
            s.arrive(msg("3", Some("2")), true, now, &mut out),
            Arrival::Waiting
        );
        assert_eq!(
            s.arrive(msg("4", Some("3")), true, now, &mut out),
            Arrival::Waiting
        );
        assert_eq!(ids(&out), ["1"]);
        s.arrive(msg("2", Some("1")), true, now, &mut out);
        assert_eq!(ids(&out), ["1", "2", "3", "4"]);
        assert_eq!(s.waiting(), 0);
    }

    #[test]
    fn waits_then_goes_out_anyway() {
        let mut s = Sequencer::new(Duration::from_secs(5), 100);
        let now = Instant::now();
        let mut out = vec![];
        s.arrive(msg("1", None), true, now, &mut out);
        s.arrive(msg("3", Some("2")), true, now, &mut out);
        assert_eq!(s.next_deadline(), Some(now + Duration::from_secs(5)));
        assert_eq!(s.expire(now + Duration::from_secs(4), &mut out), 0);
        assert_eq!(s.expire(now + Duration::from_secs(5), &mut out), 1);
        assert_eq!(ids(&out), ["1", "3"]);
        assert_eq!(s.next_deadline(), None);
        // "2" arriving late does not follow the last id ("3") either: it waits its turn too,
        // and is not lost
        let later = now + Duration::from_secs(6);
        assert_eq!(
            s.arrive(msg("2", Some("1")), true, later, &mut out),
            Arrival::Waiting
        );
        s.expire(later + Duration::from_secs(5), &mut out);
        assert_eq!(ids(&out), ["1", "3", "2"]);
    }

    #[test]
    fn first_item_and_unsubscribed_channels_are_not_held() {
        let mut s = Sequencer::new(Duration::from_secs(5), 100);
        let now = Instant::now();
        let mut out = vec![];
        s.arrive(msg("5", Some("4")), true, now, &mut out);
        s.arrive(msg("7", Some("6")), false, now, &mut out);
        assert_eq!(ids(&out), ["5", "7"]);
    }

    #[test]
    fn full_queue_flushes_in_arrival_order() {
        let mut s = Sequencer::new(Duration::from_secs(5), 2);
        let now = Instant::now();
        let mut out = vec![];
        s.arrive(msg("1", None), true, now, &mut out);
        s.arrive(msg("a", Some("x")), true, now, &mut out);
        s.arrive(msg("b", Some("y")), true, now, &mut out);
        s.arrive(msg("c", Some("z")), true, now, &mut out);
        assert_eq!(ids(&out), ["1", "a", "b", "c"]);
        assert_eq!(s.waiting(), 0);
    }
}
