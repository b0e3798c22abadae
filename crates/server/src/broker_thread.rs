//! The broker thread: one OS thread with its own single-threaded tokio runtime, on which the
//! publish API (its listener and connections) and the broker's shard tasks run. Client
//! connections stay on the main, multi-threaded runtime.
//!
//! Why: a publish is a chain of wake-ups — the publish connection's task reads the request
//! and queues its items, the shard task wakes and fans them out. On the multi-threaded
//! runtime each wake could hand the work to the other worker (a futex wake, a park, a
//! context switch each time), which at one delivery per publish cost more than the broker's
//! own work. Here the whole chain runs on one thread, as the publish's own wake-ups on a
//! single-threaded runtime are a push onto its local queue. The fan-out to a channel of few
//! subscribers writes each socket straight from the shard task (`hold::sink`); a wider one
//! is handed to the shard's lane on the main runtime (`gripway_broker::lanes`), so a publish
//! request is never held behind a fan-out to thousands of sockets.
//!
//! The thread ends when its [`BrokerThread`] is dropped, after [`crate::run`]'s drain: what
//! still runs there is cancelled (the publish API's connections; the shards have ended).

use std::io;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// How long the thread's runtime waits for its blocking work to finish once it is told to
/// stop.
const SHUTDOWN_WAIT: Duration = Duration::from_millis(100);

/// The running broker thread; dropping it stops the thread (without waiting for it).
pub(crate) struct BrokerThread {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
}

impl BrokerThread {
    /// Starts the thread and its runtime (I/O and timers enabled).
    pub(crate) fn start() -> io::Result<BrokerThread> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("gripway-broker".into())
            .spawn(move || {
                // a dropped sender ends it too
                let _ = runtime.block_on(stopped);
                runtime.shutdown_timeout(SHUTDOWN_WAIT);
            })?;
        Ok(BrokerThread {
            handle,
            stop: Some(stop),
        })
    }

    /// The thread's runtime: spawn on it, or enter it to start tasks or register sockets
    /// there.
    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }
}

impl Drop for BrokerThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_spawned_tasks_on_its_own_thread_until_dropped() {
        let thread = BrokerThread::start().expect("broker thread starts");
        let (tx, rx) = std::sync::mpsc::channel();
        thread.handle().spawn(async move {
            tokio::time::sleep(Duration::from_millis(1)).await; // timers work there
            let _ = tx.send(std::thread::current().name().map(str::to_owned));
        });
        let name = rx.recv_timeout(Duration::from_secs(5)).expect("task ran");
        assert_eq!(name.as_deref(), Some("gripway-broker"));
        let handle = thread.handle().clone();
        drop(thread);
        // once stopped, the runtime drops what is spawned on it (the sender with it)
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let (tx, rx) = std::sync::mpsc::channel::<()>();
            handle.spawn(async move {
                let _ = tx.send(());
            });
            if rx.recv_timeout(Duration::from_millis(50)).is_err() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the thread never stopped"
            );
        }
    }
}
