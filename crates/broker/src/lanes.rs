//! Fan-out lanes: where a shard's wide fan-outs run, off the shard's own thread.
//!
//! A shard decides each channel's order and writes to few subscribers itself: at one or a
//! few subscribers per channel, handing the write to another thread would cost more (a
//! wake-up, a context switch) than the write. A channel with more subscribers than
//! [`LANE_MIN_SUBSCRIBERS`] is handed, one batch at a time, to the shard's lane: a task on
//! another runtime (the server's worker threads), which walks the subscribers and writes.
//! The shard is then free to take the next publish at once, instead of holding it until a
//! fan-out to thousands of sockets ends. The lane takes every batch waiting and writes
//! consecutive batches of one channel as one, so a hot channel's subscribers still get one
//! write for many publishes.
//!
//! One hot channel uses the worker threads together: a lane has several parts (the server
//! gives it one per worker thread but one; a task each, with a queue of its own), and a channel with more than [`PART_MIN_SUBSCRIBERS`]
//! subscribers per part is split between several: part `i` of `m` writes the subscribers in
//! the channel's slots numbered `i` modulo `m` ([`Found::fan_out_part`]). A batch crosses
//! threads once per part, never once per subscriber, and each part's writes go on while
//! the others' do.
//!
//! Order: a shard has one lane, and while the lane has anything left to write, the shard
//! hands it every batch, wide or not; it writes a batch itself only when the lane is idle.
//! Each part takes its batches in the order they were handed over, and a subscriber stays in
//! the same part while the channel is split the same way; when a channel's split changes
//! (it grew or shrank past a multiple of [`PART_MIN_SUBSCRIBERS`]), the shard first waits for
//! the lane to be idle. So no batch overtakes an earlier one of its channel, for any
//! subscriber, whichever way each went. Each part's queue is bounded ([`LANE_QUEUE`]
//! batches): past it the shard waits, which stops it taking items, which makes publishers
//! wait (backpressure, nothing dropped).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::runtime::Handle;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

use crate::message::Message;
use crate::registry::Found;
use crate::stats::BrokerStats;

/// A channel with more subscribers than this is fanned out on the lane.
pub const LANE_MIN_SUBSCRIBERS: usize = 8;
/// Batches waiting in each part of a lane before its shard waits.
pub const LANE_QUEUE: usize = 64;
/// A channel is split into one part per this many subscribers (at most one per worker
/// thread): fewer would cost a cross-thread hand-over for too few writes.
pub const PART_MIN_SUBSCRIBERS: usize = 256;
/// Most parts a lane has, whatever the worker count.
pub const MAX_PARTS: usize = 64;

struct Job {
    channel: Found,
    messages: Arc<[Arc<Message>]>,
    /// Into how many parts this batch is split.
    parts: usize,
}

/// What the shard and the parts share.
struct Shared {
    /// Part-batches handed over and not yet written (a batch split in `m` counts `m`).
    pending: Arc<AtomicUsize>,
    /// Told when `pending` drops to zero.
    idle: Notify,
    stats: Arc<BrokerStats>,
}

/// One shard's lane.
pub(crate) struct Lane {
    parts: Vec<mpsc::Sender<Job>>,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl Lane {
    /// Starts a lane on `runtime` with `parts` parts (at most [`MAX_PARTS`]).
    pub(crate) fn start(runtime: &Handle, parts: usize, stats: Arc<BrokerStats>) -> Lane {
        let shared = Arc::new(Shared {
            pending: Arc::new(AtomicUsize::new(0)),
            idle: Notify::new(),
            stats,
        });
        let (parts, tasks) = (0..parts.clamp(1, MAX_PARTS))
            .map(|part| {
                let (tx, rx) = mpsc::channel(LANE_QUEUE);
                (tx, runtime.spawn(run(part, rx, shared.clone())))
            })
            .unzip();
        Lane {
            parts,
            shared,
            tasks,
        }
    }

    /// The count of part-batches handed over and not yet written, shared (see `inline`).
    pub(crate) fn pending(&self) -> Arc<AtomicUsize> {
        self.shared.pending.clone()
    }

    /// True while batches handed over are not all written yet: the shard must hand over
    /// every batch until then, to keep each channel's order.
    pub(crate) fn busy(&self) -> bool {
        self.shared.pending.load(Ordering::Acquire) > 0
    }

    /// Into how many parts a channel of `subscribers` is split.
    fn parts_for(&self, subscribers: usize) -> usize {
        (subscribers / PART_MIN_SUBSCRIBERS).clamp(1, self.parts.len())
    }

    /// Hands a batch over; waits while a part's queue is full, or, when the channel's split
    /// changes, until the lane is idle. Gives the batch back if the lane is gone (its
    /// runtime is shutting down), for the shard to write itself.
    pub(crate) async fn hand_over(
        &self,
        channel: Found,
        messages: Vec<Arc<Message>>,
    ) -> Result<(), (Found, Vec<Arc<Message>>)> {
        let parts = self.parts_for(channel.len());
        // parts is at most MAX_PARTS (64), so it fits
        let before = usize::from(channel.swap_parts(parts as u8));
        if before != 0 && before != parts {
            self.wait_idle().await;
        }
        let messages: Arc<[Arc<Message>]> = messages.into();
        if parts > 1 {
            self.shared
                .stats
                .split_fan_outs
                .fetch_add(1, Ordering::Relaxed);
        }
        self.shared.pending.fetch_add(parts, Ordering::AcqRel);
        for (i, part) in self.parts[..parts].iter().enumerate() {
            let job = Job {
                channel: channel.clone(),
                messages: messages.clone(),
                parts,
            };
            if part.send(job).await.is_err() {
                // the runtime is going away: what the other parts did not take is written here
                let left = parts - i;
                self.done(left);
                if i == 0 {
                    return Err((channel, messages.to_vec()));
                }
                let count = (i..parts)
                    .map(|p| channel.fan_out_part(p, parts, &messages))
                    .fold(crate::registry::FanOutCount::default(), add);
                self.shared.stats.count_fan_out_more(&count);
                return Ok(());
            }
        }
        Ok(())
    }

    async fn wait_idle(&self) {
        loop {
            let idle = self.shared.idle.notified();
            if !self.busy() {
                return;
            }
            idle.await;
        }
    }

    fn done(&self, n: usize) {
        done(&self.shared, n);
    }

    /// Resolves once everything handed over is written (at shutdown).
    pub(crate) async fn finish(self) {
        drop(self.parts);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

fn done(shared: &Shared, n: usize) {
    if shared.pending.fetch_sub(n, Ordering::AcqRel) == n {
        shared.idle.notify_waiters();
    }
}

fn add(
    mut a: crate::registry::FanOutCount,
    b: crate::registry::FanOutCount,
) -> crate::registry::FanOutCount {
    a.subscribers += b.subscribers;
    for (x, y) in a.sent.iter_mut().zip(b.sent) {
        *x += y;
    }
    a.dropped_slow += b.dropped_slow;
    a.closed += b.closed;
    a
}

async fn run(part: usize, mut rx: mpsc::Receiver<Job>, shared: Arc<Shared>) {
    let mut jobs = Vec::with_capacity(LANE_QUEUE);
    let mut merged = Vec::new();
    while rx.recv_many(&mut jobs, LANE_QUEUE).await > 0 {
        // consecutive batches of one channel, split alike (a hot channel's publishes, queued
        // while the previous fan-out ran) go out as one batch: each subscriber one write, not
        // one per publish, as when the shard itself took everything queued at once
        let mut rest = &jobs[..];
        while let Some(first) = rest.first() {
            let n = rest
                .iter()
                .position(|j| !j.channel.is(&first.channel) || j.parts != first.parts)
                .unwrap_or(rest.len());
            let messages = if n == 1 {
                &first.messages[..]
            } else {
                merged.clear();
                merged.extend(rest[..n].iter().flat_map(|j| j.messages.iter().cloned()));
                &merged[..]
            };
            if first.parts == 1 {
                let count = first.channel.fan_out(messages);
                shared.stats.count_fan_out(&count, messages.len());
            } else {
                // a split channel had subscribers in plenty: none of it counts as unheard
                let count = first.channel.fan_out_part(part, first.parts, messages);
                shared.stats.count_fan_out_more(&count);
            }
            rest = &rest[n..];
        }
        let taken = jobs.len();
        jobs.clear();
        merged.clear();
        // after the writes: a shard that sees zero knows every batch it handed over is out
        done(&shared, taken);
    }
}
