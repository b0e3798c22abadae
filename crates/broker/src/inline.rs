//! The publish's own fan-out: an item a shard would only have passed straight on is written
//! by the publishing task itself, when that is sure to give every subscriber the order the
//! shard would have given.
//!
//! A shard task exists to decide each channel's order: dedup and `prev-id` ordering for items
//! with ids, history, acknowledgements after a durable write, the lane for wide channels. An
//! item without an id and without a `prev-id`, on a node whose history answers at once, needs
//! none of that: the shard would only look its channel up and write it. At one delivery per
//! publish (`sse-1k-1000ch` in BENCHMARKS.md) the hand-over to the shard task — a queue
//! send, a wake, the shard's `select!` — was a measurable part of the cost. So the publisher
//! writes such an item itself when all of these hold, checked on each item:
//!
//! * the shard runs on a single-threaded runtime (the broker thread's) and the publisher
//!   on that same thread, so nothing of the shard runs between the check and the write;
//! * the shard is idle ([`Gate::is_idle`]): nothing queued or being taken, nothing waiting
//!   for a predecessor, no ordering state at all (the sequencer would otherwise have to
//!   learn that the channel's last item has no id), no write in flight;
//! * the shard's lane has no batch left to write (an earlier batch of the channel could be
//!   among them);
//! * the channel has at most [`LANE_MIN_SUBSCRIBERS`] subscribers (a wider one goes to the
//!   lane through the shard, as before).
//!
//! Anything else is queued as before; queuing marks the shard busy first, so a later item
//! of any channel of that shard is queued behind it until the shard has caught up.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::ThreadId;

use crate::lanes::LANE_MIN_SUBSCRIBERS;
use crate::message::Message;
use crate::registry::{FanOutCount, Registry};

/// What a publisher may know of a shard's state.
#[derive(Debug, Default)]
pub(crate) struct Gate {
    /// The thread the shard task runs on (set when it first runs).
    thread: OnceLock<ThreadId>,
    /// Set by the shard when it has nothing left; cleared by a publisher before it queues
    /// and by the shard when it takes items.
    idle: AtomicBool,
    /// The shard's lane's batches not yet written (None: no lane).
    lane_pending: OnceLock<Arc<AtomicUsize>>,
}

impl Gate {
    /// Called by the shard task when it starts, on its own thread. Only a single-threaded
    /// runtime keeps a task on one thread, so only there may a publisher write (a shard on
    /// a multi-threaded runtime could be taking items on another thread meanwhile).
    pub(crate) fn started(&self, lane_pending: Option<Arc<AtomicUsize>>) {
        use tokio::runtime::{Handle, RuntimeFlavor};
        if Handle::current().runtime_flavor() == RuntimeFlavor::CurrentThread {
            let _ = self.thread.set(std::thread::current().id());
        }
        if let Some(p) = lane_pending {
            let _ = self.lane_pending.set(p);
        }
    }

    /// The shard took items (or a publisher is about to queue one).
    pub(crate) fn busy(&self) {
        self.idle.store(false, Ordering::Release);
    }

    /// The shard's verdict after each round of work.
    pub(crate) fn set_idle(&self, idle: bool) {
        self.idle.store(idle, Ordering::Release);
    }

    fn is_idle(&self) -> bool {
        self.idle.load(Ordering::Acquire)
            && self
                .lane_pending
                .get()
                .is_none_or(|p| p.load(Ordering::Acquire) == 0)
            && self.thread.get() == Some(&std::thread::current().id())
    }
}

/// True when `msg` may be written by its publisher now (the module doc's conditions, but
/// the channel's width); `queue_empty` says the shard's queue holds nothing.
pub(crate) fn may_write(gate: &Gate, queue_empty: bool, msg: &Message) -> bool {
    !msg.has_id() && msg.prev_id().is_none() && queue_empty && gate.is_idle()
}

/// Writes `msg` to its channel's subscribers if it has at most [`LANE_MIN_SUBSCRIBERS`];
/// None (nothing written) when it has more. A channel with no subscriber counts as written
/// to nobody.
pub(crate) fn fan_out(registry: &Registry, msg: &Arc<Message>) -> Option<FanOutCount> {
    let Some(found) = registry.find(&msg.channel) else {
        return Some(FanOutCount::default());
    };
    found.fan_out_if_at_most(LANE_MIN_SUBSCRIBERS, std::slice::from_ref(msg))
}
