//! Acknowledging a publish only once its items are stored, for a durable history store: the
//! publish request waits on one [`Ack`] shared by its items; each item counts itself done
//! when its shard has stored it (or found it a duplicate), and the last one answers the
//! request — `true` if every item was stored, `false` if the store failed for any of them.
//! If the broker stops first, the answer's sender is dropped and the request learns that too.
//! The in-memory store needs none of this: its publishes are answered once queued.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::oneshot;

/// What a publish request waits on.
pub(crate) struct Ack {
    remaining: AtomicUsize,
    failed: AtomicBool,
    answer: Mutex<Option<oneshot::Sender<bool>>>,
}

impl Ack {
    /// An acknowledgement for `items` items, and where its answer arrives.
    pub(crate) fn new(items: usize) -> (Arc<Ack>, oneshot::Receiver<bool>) {
        let (tx, rx) = oneshot::channel();
        let ack = Arc::new(Ack {
            remaining: AtomicUsize::new(items),
            failed: AtomicBool::new(false),
            answer: Mutex::new(Some(tx)),
        });
        (ack, rx)
    }

    /// One item is done: stored (`ok`) or not.
    pub(crate) fn done(&self, ok: bool) {
        if !ok {
            self.failed.store(true, Ordering::Relaxed);
        }
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            if let Some(tx) = self.answer.lock().take() {
                let _ = tx.send(!self.failed.load(Ordering::Relaxed));
            }
        }
    }
}

/// One queued item and, for a durable store, the request it belongs to.
pub(crate) struct Entry {
    pub(crate) msg: Arc<crate::message::Message>,
    pub(crate) ack: Option<Arc<Ack>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_item_answers_and_one_failure_fails_all() {
        let (ack, mut rx) = Ack::new(3);
        ack.done(true);
        ack.done(false);
        assert!(rx.try_recv().is_err(), "not yet");
        ack.done(true);
        assert_eq!(rx.try_recv(), Ok(false));
        let (ack, mut rx) = Ack::new(1);
        ack.done(true);
        assert_eq!(rx.try_recv(), Ok(true));
        let (ack, mut rx) = Ack::new(2);
        drop(ack);
        assert!(
            rx.try_recv().is_err(),
            "dropped before done: the sender is gone"
        );
    }
}
