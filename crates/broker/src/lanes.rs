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
//! Order: a shard has one lane, and while the lane has anything left to write, the shard
//! hands it every batch, wide or not; it writes a batch itself only when the lane is idle.
//! So no batch overtakes an earlier one of its channel, whichever way each went. The lane's
//! queue is bounded ([`LANE_QUEUE`] batches): past it the shard waits, which stops it
//! taking items, which makes publishers wait (backpressure, nothing dropped).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::message::Message;
use crate::registry::Found;
use crate::stats::BrokerStats;

/// A channel with more subscribers than this is fanned out on the lane.
pub const LANE_MIN_SUBSCRIBERS: usize = 8;
/// Batches waiting in a lane before its shard waits.
pub const LANE_QUEUE: usize = 64;

struct Job {
    channel: Found,
    messages: Vec<Arc<Message>>,
}

/// One shard's lane.
pub(crate) struct Lane {
    tx: mpsc::Sender<Job>,
    /// Batches handed over and not yet written.
    pending: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Lane {
    /// Starts a lane on `runtime`.
    pub(crate) fn start(runtime: &Handle, stats: Arc<BrokerStats>) -> Lane {
        let (tx, rx) = mpsc::channel(LANE_QUEUE);
        let pending = Arc::new(AtomicUsize::new(0));
        let task = runtime.spawn(run(rx, pending.clone(), stats));
        Lane { tx, pending, task }
    }

    /// The count of batches handed over and not yet written, shared (see `inline`).
    pub(crate) fn pending(&self) -> Arc<AtomicUsize> {
        self.pending.clone()
    }

    /// True while batches handed over are not all written yet: the shard must hand over
    /// every batch until then, to keep each channel's order.
    pub(crate) fn busy(&self) -> bool {
        self.pending.load(Ordering::Acquire) > 0
    }

    /// Hands a batch over; waits while the lane's queue is full. Gives the batch back if
    /// the lane is gone (its runtime is shutting down), for the shard to write itself.
    pub(crate) async fn hand_over(
        &self,
        channel: Found,
        messages: Vec<Arc<Message>>,
    ) -> Result<(), (Found, Vec<Arc<Message>>)> {
        self.pending.fetch_add(1, Ordering::AcqRel);
        match self.tx.send(Job { channel, messages }).await {
            Ok(()) => Ok(()),
            Err(mpsc::error::SendError(job)) => {
                self.pending.fetch_sub(1, Ordering::AcqRel);
                Err((job.channel, job.messages))
            }
        }
    }

    /// Resolves once everything handed over is written (at shutdown).
    pub(crate) async fn finish(self) {
        drop(self.tx);
        let _ = self.task.await;
    }
}

async fn run(mut rx: mpsc::Receiver<Job>, pending: Arc<AtomicUsize>, stats: Arc<BrokerStats>) {
    let mut jobs = Vec::with_capacity(LANE_QUEUE);
    let mut merged = Vec::new();
    while rx.recv_many(&mut jobs, LANE_QUEUE).await > 0 {
        // consecutive batches of one channel (a hot channel's publishes, queued while the
        // previous fan-out ran) go out as one batch: each subscriber one write, not one per
        // publish, as when the shard itself took everything queued at once
        let mut rest = &jobs[..];
        while let Some(first) = rest.first() {
            let n = rest
                .iter()
                .position(|j| !j.channel.is(&first.channel))
                .unwrap_or(rest.len());
            let messages = if n == 1 {
                &first.messages[..]
            } else {
                merged.clear();
                merged.extend(rest[..n].iter().flat_map(|j| j.messages.iter().cloned()));
                &merged[..]
            };
            let count = first.channel.fan_out(messages);
            stats.count_fan_out(&count, messages.len());
            rest = &rest[n..];
        }
        let taken = jobs.len();
        jobs.clear();
        merged.clear();
        // after the writes: a shard that sees zero knows every batch it handed over is out
        pending.fetch_sub(taken, Ordering::AcqRel);
    }
}
