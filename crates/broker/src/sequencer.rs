//! Per-channel ordering by `prev-id`. A publisher that gives each item an `id` and the id of
//! the item before it (`prev-id`) gets them delivered in that order even when they arrive out
//! of order: an item whose `prev-id` is not the channel's last delivered id waits until its
//! predecessor arrives, or until the wait runs out (default 5 s), then goes out anyway.
//!
//! The channel's last id is known only while the channel has subscribers (as in Pushpin): the
//! first item after a channel gains subscribers goes out at once whatever its `prev-id`.
//!
//! Bounded, never by dropping anything: at most `max_pending` items wait per channel (one
//! more flushes the channel's waiting items in arrival order); a channel's state is forgotten
//! once it has been quiet for [`IDLE`] (to the second) with nothing waiting; and the whole
//! table — channel names, last ids and waiting messages — costs at most `max_bytes` (see
//! [`AgedMap`]): past it the channels quiet longest are forgotten first, their waiting items
//! released in order.
//! A forgotten channel behaves as one that just gained subscribers.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use foldhash::HashSet;

use crate::aged::AgedMap;
use crate::message::{str_heap, ChannelName, Message};
use crate::names::Names;

/// A channel's ordering state is forgotten after this long without items (when nothing
/// waits): its next item goes out at once, as after a fresh subscription.
pub const IDLE: Duration = Duration::from_secs(600);

/// How precisely a channel's quiet time is kept: an item moves its channel to the young end
/// of the age order only if the last move is this old (so "quiet for [`IDLE`]" and "quiet
/// longest" hold to within this).
const TOUCH_EVERY: Duration = Duration::from_secs(1);

/// Per-channel ordering state for the channels of one dispatcher shard.
pub struct Sequencer {
    wait: Duration,
    max_pending: usize,
    channels: AgedMap<ChannelName, ChannelOrder>,
    /// Waiting items' deadlines in arrival order (= deadline order, the wait being fixed).
    /// May hold entries already released; they are skipped, and swept when they outnumber
    /// the waiting items.
    deadlines: VecDeque<(Instant, ChannelName)>,
    /// Items waiting now, over all channels.
    waiting: usize,
    /// The shard's channel names, given to arriving messages (see [`Names`]).
    names: Names,
}

struct ChannelOrder {
    last_id: Option<Arc<str>>,
    pending: VecDeque<(Instant, Arc<Message>)>,
    /// Heap bytes of the waiting messages and their queue slots.
    pending_bytes: usize,
    /// When the channel last moved to the young end of the table's age order.
    touched: Instant,
}

/// What a waiting item costs beside its message: its pending slot and its deadline entry
/// (with room for one swept-later tombstone).
const PENDING_SLOT: usize = std::mem::size_of::<(Instant, Arc<Message>)>()
    + 2 * std::mem::size_of::<(Instant, ChannelName)>();

impl ChannelOrder {
    fn new(now: Instant) -> Self {
        ChannelOrder {
            last_id: None,
            pending: VecDeque::new(),
            pending_bytes: 0,
            touched: now,
        }
    }

    fn heap(&self, channel: &str) -> usize {
        str_heap(channel) + self.last_id.as_deref().map_or(0, str_heap) + self.pending_bytes
    }

    /// True if `msg` may go out now: it names no predecessor, or the one delivered last.
    fn in_order(&self, msg: &Message) -> bool {
        msg.no_seq()
            || msg.prev_id().is_none()
            || self.last_id.is_none()
            || self.last_id.as_ref() == msg.prev_id()
    }

    fn push(&mut self, deadline: Instant, msg: Arc<Message>) {
        self.pending_bytes += msg.cost() + PENDING_SLOT;
        self.pending.push_back((deadline, msg));
    }

    fn pop_front(&mut self, waiting: &mut usize) -> Option<Arc<Message>> {
        let (_, m) = self.pending.pop_front()?;
        self.took(&m, waiting);
        Some(m)
    }

    fn took(&mut self, m: &Message, waiting: &mut usize) {
        self.pending_bytes -= m.cost() + PENDING_SLOT;
        *waiting -= 1;
    }
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
    /// Items wait at most `wait` for their predecessor; at most `max_pending` per channel;
    /// the state of all channels costs at most `max_bytes`.
    pub fn new(wait: Duration, max_pending: usize, max_bytes: usize) -> Sequencer {
        Sequencer {
            wait,
            max_pending,
            channels: AgedMap::new(max_bytes),
            deadlines: VecDeque::new(),
            waiting: 0,
            names: Names::default(),
        }
    }

    /// Takes an arriving item; appends to `out`, in delivery order, every item that may go
    /// out now. `has_subscribers` says whether the channel has subscribers on this node.
    /// Every item of the shard passes here first, so this is also where it is given the
    /// shard's shared channel name ([`Names`]) — except an item without an id that goes
    /// straight out: history never keeps it, so sharing would save nothing.
    pub fn arrive(
        &mut self,
        msg: Arc<Message>,
        has_subscribers: bool,
        now: Instant,
        out: &mut Vec<Arc<Message>>,
    ) -> Arrival {
        self.arrive_with(msg, |_| has_subscribers, now, out)
    }

    /// [`Sequencer::arrive`], asking whether the channel has subscribers (`has_subscribers`,
    /// given the channel's name) only when the answer matters: an item without an id that
    /// may go out now goes out whether or not anyone listens, and leaves no ordering state
    /// behind (the channel's last id becomes "none", which is what no state means).
    pub fn arrive_with(
        &mut self,
        mut msg: Arc<Message>,
        has_subscribers: impl FnOnce(&str) -> bool,
        now: Instant,
        out: &mut Vec<Arc<Message>>,
    ) -> Arrival {
        self.forget_idle(now);
        if !msg.has_id() {
            // never kept by history, so not worth sharing its channel's name (see Names)
            match self.channels.get(&msg.channel) {
                None => {
                    out.push(msg);
                    return Arrival::Released;
                }
                Some(order) if order.pending.is_empty() && order.in_order(&msg) => {
                    self.channels.remove(&msg.channel);
                    out.push(msg);
                    return Arrival::Released;
                }
                Some(_) => {}
            }
        }
        // the first place in the shard that owns the message: share its channel's name
        self.names.share(&mut msg);
        if !has_subscribers(&msg.channel) {
            // nobody to order for: forget the channel (and release whatever waited)
            if let Some(order) = self.channels.remove(&msg.channel) {
                self.waiting -= order.pending.len();
                out.extend(order.pending.into_iter().map(|(_, m)| m));
            }
            out.push(msg);
            return Arrival::Released;
        }
        let channel = msg.channel.clone();
        // the channel's place in the table's age order moves at most once per TOUCH_EVERY:
        // a busy channel then leaves one stale queue slot a second, not one per item
        let touch = self.channels.get_mut(&channel).map(|order| {
            let due = now.saturating_duration_since(order.touched) >= TOUCH_EVERY;
            if due {
                order.touched = now;
            }
            due
        });
        match touch {
            None => {
                let order = ChannelOrder::new(now);
                let heap = order.heap(&channel);
                self.channels.insert(channel.clone(), order, heap, now);
            }
            Some(true) => {
                self.channels.touch_owned(channel.clone(), now);
            }
            Some(false) => {}
        }
        let Some(order) = self.channels.get_mut(&channel) else {
            out.push(msg);
            return Arrival::Released;
        };
        let heap_before = order.heap(&channel);
        let arrival = if order.in_order(&msg) {
            release(order, msg, &mut self.waiting, out);
            Arrival::Released
        } else if order.pending.len() >= self.max_pending {
            // too far out of order to wait for: flush in arrival order, nothing is lost
            while let Some(m) = order.pop_front(&mut self.waiting) {
                release_one(order, m, out);
            }
            release(order, msg, &mut self.waiting, out);
            Arrival::Released
        } else {
            let deadline = now + self.wait;
            order.push(deadline, msg);
            self.waiting += 1;
            if self.deadlines.back() != Some(&(deadline, channel.clone())) {
                self.deadlines.push_back((deadline, channel.clone()));
            }
            Arrival::Waiting
        };
        let heap = order.heap(&channel);
        if heap != heap_before {
            self.channels.set_heap(&channel, heap);
        }
        self.evict_over_bound(out);
        self.sweep_deadlines();
        if arrival == Arrival::Waiting && !self.channels.contains_key(&channel) {
            // the bound forgot the channel itself: its items went out
            return Arrival::Released;
        }
        arrival
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
            let mut released = false;
            while order.pending.front().is_some_and(|(d, _)| *d <= now) {
                if let Some(m) = order.pop_front(&mut self.waiting) {
                    release(order, m, &mut self.waiting, out);
                    released = true;
                }
            }
            if released {
                let heap = order.heap(&channel);
                self.channels.set_heap(&channel, heap);
            }
        }
        self.forget_idle(now);
        out.len() - before
    }

    /// When `expire` next has something to release.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.front().map(|(d, _)| *d)
    }

    /// True if an item of `channel` waits for its predecessor now.
    pub fn is_waiting_on(&self, channel: &str) -> bool {
        self.waiting > 0
            && self
                .channels
                .get(channel)
                .is_some_and(|o| !o.pending.is_empty())
    }

    /// Items waiting now, over all channels.
    pub fn waiting(&self) -> usize {
        self.waiting
    }

    /// Channels with ordering state now.
    pub fn channels(&self) -> usize {
        self.channels.len()
    }

    /// What the ordering state costs now, in bytes (each waiting item's deadline entry
    /// counted with it).
    pub fn bytes(&self) -> usize {
        self.channels.bytes()
    }

    /// Forgets channels quiet for [`IDLE`] with nothing waiting, oldest first.
    fn forget_idle(&mut self, now: Instant) {
        if let Some(cutoff) = now.checked_sub(IDLE) {
            self.channels
                .expire_before(cutoff, |_, o| o.pending.is_empty(), |_, _| {});
        }
    }

    /// Forgets the channels quiet longest until within the bound, releasing what waited.
    fn evict_over_bound(&mut self, out: &mut Vec<Arc<Message>>) {
        let waiting = &mut self.waiting;
        self.channels.evict_over_bound(|_, order| {
            *waiting -= order.pending.len();
            out.extend(order.pending.into_iter().map(|(_, m)| m));
        });
    }

    /// Drops deadline entries of items no longer waiting once they outnumber those that
    /// are (amortised O(1) per arrival).
    fn sweep_deadlines(&mut self) {
        if self.deadlines.len() <= 2 * self.waiting + 64 {
            return;
        }
        let channels = &self.channels;
        let mut seen = HashSet::default();
        self.deadlines.retain(|(d, c)| {
            let live = channels
                .get(c)
                .is_some_and(|o| o.pending.binary_search_by(|(pd, _)| pd.cmp(d)).is_ok());
            live && seen.insert((*d, c.clone()))
        });
        self.deadlines.shrink_to_fit();
    }
}

/// Releases `msg`, then every waiting item that follows it.
fn release(
    order: &mut ChannelOrder,
    msg: Arc<Message>,
    waiting: &mut usize,
    out: &mut Vec<Arc<Message>>,
) {
    release_one(order, msg, out);
    while let Some(last) = order.last_id.clone() {
        let Some(pos) = order
            .pending
            .iter()
            .position(|(_, m)| m.prev_id() == Some(&last))
        else {
            break;
        };
        let Some((_, next)) = order.pending.remove(pos) else {
            break;
        };
        order.took(&next, waiting);
        release_one(order, next, out);
    }
}

fn release_one(order: &mut ChannelOrder, msg: Arc<Message>, out: &mut Vec<Arc<Message>>) {
    order.last_id = msg.id().map(Arc::from);
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
        out.iter().map(|m| m.id().unwrap_or("-")).collect()
    }

    fn bare(prev: Option<&str>) -> Arc<Message> {
        Message::new(Item {
            channel: "c".into(),
            id: None,
            prev_id: prev.map(Into::into),
            meta: vec![],
            no_seq: false,
            formats: Formats::default(),
        })
    }

    #[test]
    fn items_without_id_keep_no_state_and_ask_nothing() {
        let mut s = Sequencer::new(Duration::from_secs(5), 100, 1 << 20);
        let now = Instant::now();
        let mut out = vec![];
        let ask = |_: &str| -> bool { panic!("asked for subscribers") };
        for _ in 0..3 {
            assert_eq!(
                s.arrive_with(bare(None), ask, now, &mut out),
                Arrival::Released
            );
        }
        assert_eq!((s.channels(), s.bytes(), out.len()), (0, 0, 3));
        // a channel with a last id: an id-less item that follows it goes out and clears it
        s.arrive(msg("1", None), true, now, &mut out);
        assert_eq!(s.channels(), 1);
        s.arrive_with(bare(Some("1")), ask, now, &mut out);
        assert_eq!(s.channels(), 0, "last id none: nothing to keep");
        // one that names another predecessor still waits for it, as before
        s.arrive(msg("2", None), true, now, &mut out);
        let waits = s.arrive_with(bare(Some("x")), |_| true, now, &mut out);
        assert_eq!(waits, Arrival::Waiting);
        // and an id-less item behind a waiting one takes the ordinary way (not overtaking)
        s.arrive_with(bare(None), |_| true, now, &mut out);
        assert_eq!(ids(&out), ["-", "-", "-", "1", "-", "2", "-"]);
        assert_eq!(s.waiting(), 1);
    }

    #[test]
    fn items_of_a_channel_leave_with_one_shared_name() {
        let mut s = Sequencer::new(Duration::from_secs(5), 100, 1 << 20);
        let now = Instant::now();
        let mut out = vec![];
        for (i, subscribed) in [(1, true), (2, false), (3, true)] {
            s.arrive(msg(&i.to_string(), None), subscribed, now, &mut out);
        }
        assert_eq!(ids(&out), ["1", "2", "3"]);
        assert!(out.iter().all(|m| Arc::ptr_eq(&m.channel, &out[0].channel)));
    }

    #[test]
    fn reorders_by_prev_id() {
        let mut s = Sequencer::new(Duration::from_secs(5), 100, 1 << 20);
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
        let mut s = Sequencer::new(Duration::from_secs(5), 100, 1 << 20);
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
        let mut s = Sequencer::new(Duration::from_secs(5), 100, 1 << 20);
        let now = Instant::now();
        let mut out = vec![];
        s.arrive(msg("5", Some("4")), true, now, &mut out);
        s.arrive(msg("7", Some("6")), false, now, &mut out);
        assert_eq!(ids(&out), ["5", "7"]);
    }

    #[test]
    fn full_queue_flushes_in_arrival_order() {
        let mut s = Sequencer::new(Duration::from_secs(5), 2, 1 << 20);
        let now = Instant::now();
        let mut out = vec![];
        s.arrive(msg("1", None), true, now, &mut out);
        s.arrive(msg("a", Some("x")), true, now, &mut out);
        s.arrive(msg("b", Some("y")), true, now, &mut out);
        s.arrive(msg("c", Some("z")), true, now, &mut out);
        assert_eq!(ids(&out), ["1", "a", "b", "c"]);
        assert_eq!(s.waiting(), 0);
    }

    fn on(channel: &str, id: &str, prev: Option<&str>) -> Arc<Message> {
        Message::new(Item {
            channel: channel.into(),
            id: Some(id.into()),
            prev_id: prev.map(Into::into),
            meta: vec![],
            no_seq: false,
            formats: Formats::default(),
        })
    }

    #[test]
    fn quiet_channels_are_forgotten() {
        let mut s = Sequencer::new(Duration::from_secs(5), 100, 1 << 20);
        let now = Instant::now();
        let mut out = vec![];
        for i in 0..1000 {
            s.arrive(on(&format!("c{i}"), "1", None), true, now, &mut out);
        }
        assert_eq!(s.channels(), 1000);
        s.expire(now + IDLE + Duration::from_secs(1), &mut out);
        assert_eq!(s.channels(), 0);
        assert_eq!(s.bytes(), 0);
    }

    #[test]
    fn a_busy_channel_is_not_quiet() {
        let mut s = Sequencer::new(Duration::from_secs(5), 100, 1 << 20);
        let now = Instant::now();
        let mut out = vec![];
        s.arrive(on("quiet", "1", None), true, now, &mut out);
        // items every half second for IDLE: the busy channel's age moves on with them
        let mut t = now;
        let mut n = 0;
        while t <= now + IDLE {
            n += 1;
            s.arrive(on("busy", &n.to_string(), None), true, t, &mut out);
            t += Duration::from_millis(500);
        }
        s.expire(now + IDLE + Duration::from_secs(1), &mut out);
        assert_eq!(
            s.channels(),
            1,
            "the quiet channel is forgotten, the busy one kept"
        );
        // the busy channel still knows its last id: an item naming it goes out at once,
        // one naming another waits
        let (last, other) = (n.to_string(), "x".to_string());
        let later = now + IDLE + Duration::from_secs(2);
        let a = s.arrive(on("busy", "a", Some(&other)), true, later, &mut out);
        let b = s.arrive(on("busy", "b", Some(&last)), true, later, &mut out);
        assert_eq!((a, b), (Arrival::Waiting, Arrival::Released));
    }

    #[test]
    fn bounded_in_bytes_without_losing_items() {
        let bound = 256 << 10;
        let mut s = Sequencer::new(Duration::from_secs(5), 100, bound);
        let now = Instant::now();
        let mut out = vec![];
        let n = 100_000;
        for i in 0..n {
            let c = format!("channel-{i}");
            s.arrive(on(&c, "a", None), true, now, &mut out);
            s.arrive(on(&c, "c", Some("b")), true, now, &mut out);
            assert!(s.bytes() <= bound, "{} > {bound}", s.bytes());
        }
        assert!(s.channels() < n / 10, "{}", s.channels());
        assert_eq!(out.len() + s.waiting(), 2 * n, "nothing lost");
        assert!(s.deadlines.len() <= 2 * s.waiting() + 65);
        s.expire(now + Duration::from_secs(5), &mut out);
        assert_eq!(out.len(), 2 * n);
        assert_eq!(s.waiting(), 0);
    }
}
