//! Graceful shutdown: on SIGTERM or SIGINT, Gripway drains within `drain_timeout_ms` instead
//! of dropping what it has acknowledged.
//!
//! The order matters, and [`drain`] keeps it:
//! 1. **Stop taking work.** The client listeners close (new clients are refused by the
//!    kernel), connections idle between requests close, and the publish API answers 503
//!    (`internal`, `draining`). The publish and admin listeners stay open to say so.
//! 2. **Deliver what was acknowledged.** [`Broker::drain`](gripway_broker::Broker::drain)
//!    closes the shard queues and resolves once everything accepted has been fanned out to
//!    the holds' sinks.
//! 3. **End every hold so that clients come back elsewhere (or here, after the restart).**
//!    Every held connection and WebSocket is on the [`Roster`]; each is asked once, through
//!    [`Drainable::drain`], to end the way its transport should: a stream writes its last
//!    chunk (SSE first gets a `retry:` line, [`sse_retry_line`]), a long-poll is answered with
//!    its timeout response, a WebSocket is closed with 1001 and a WebSocket-over-HTTP origin
//!    is sent `DISCONNECT`. A hold that starts after the sweep is ended as it enlists.
//! 4. **Wait for the writes.** Every connection task and every origin request that outlives
//!    its client (a WebSocket's farewell) holds a [`Busy`] token; the drain waits until none
//!    is left. Requests being proxied simply finish (the connection then closes).
//!
//! Everything is bounded by the deadline, counted from the first signal; what is still open
//! then is cut off, logged and counted (`gripway_errors_total{source="internal",
//! reason="drain-deadline"}`). A second signal during the drain ends the process at once.
//!
//! The roster costs a held connection one short lock to enlist and one to leave, on a shard
//! picked by the address of its state, and no bytes in its future; nothing on the delivery
//! path.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use foldhash::HashMap;
use parking_lot::Mutex;
use rand::Rng;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::error::Source;
use crate::Shared;

/// How the server stopped, for the process's exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Every connection finished within the deadline.
    Drained,
    /// The deadline passed with this many connections (and origin farewells) still open; they
    /// were cut off.
    DeadlinePassed(usize),
    /// A second signal arrived during the drain.
    Forced,
}

/// Shutdown requests: resolves [`Shutdown::requested`] on the first, and
/// [`Shutdown::forced`] on the second.
pub struct Shutdown {
    count: watch::Receiver<u32>,
}

impl Shutdown {
    /// Counts SIGTERM and SIGINT (SIGINT only elsewhere). Must run inside a tokio runtime.
    pub fn on_signals() -> std::io::Result<Shutdown> {
        let (tx, count) = watch::channel(0u32);
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = signal(SignalKind::terminate())?;
            let mut int = signal(SignalKind::interrupt())?;
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                    tx.send_modify(|n| *n += 1);
                }
            });
        }
        #[cfg(not(unix))]
        tokio::spawn(async move {
            while tokio::signal::ctrl_c().await.is_ok() {
                tx.send_modify(|n| *n += 1);
            }
        });
        Ok(Shutdown { count })
    }

    /// A shutdown driven by hand: each `send_modify(|n| *n += 1)` on the sender is a signal.
    pub fn manual() -> (watch::Sender<u32>, Shutdown) {
        let (tx, count) = watch::channel(0u32);
        (tx, Shutdown { count })
    }

    /// Resolves on the first request (or if nobody can send one any more: never).
    pub(crate) async fn requested(&mut self) {
        if self.count.wait_for(|n| *n >= 1).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Resolves on the second request.
    async fn forced(&mut self) {
        if self.count.wait_for(|n| *n >= 2).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// A connection the drain must end, the way its transport should.
pub(crate) trait Drainable: Send + Sync {
    /// Ends the hold: final bytes queued, sink finished. Called at most once per enlistment,
    /// with no lock of the roster held.
    fn drain(&self);
}

const ROSTER_SHARDS: usize = 32;

#[derive(Default)]
struct RosterShard {
    /// By the address of the connection's shared state.
    entries: HashMap<usize, Weak<dyn Drainable>>,
    /// The drain has visited this shard: later arrivals are drained as they enlist.
    swept: bool,
}

/// Every held connection and WebSocket, so the drain can reach each one once. Entries are
/// keyed by the address of the connection's shared state, so a hold keeps no handle (its
/// future does not grow): it calls [`Roster::leave`] with the same `Arc` when it ends. (A
/// hold whose task were dropped without leaving would leave a dead `Weak`, skipped by the
/// sweep.)
pub(crate) struct Roster {
    shards: Box<[Mutex<RosterShard>]>,
}

impl Roster {
    fn new() -> Roster {
        Roster {
            shards: (0..ROSTER_SHARDS)
                .map(|_| Mutex::new(RosterShard::default()))
                .collect(),
        }
    }

    fn key<T>(who: &Arc<T>) -> (usize, usize) {
        let addr = Arc::as_ptr(who) as usize;
        // allocations are at least 16-byte aligned: skip the bits that are always zero
        (addr, (addr >> 6) % ROSTER_SHARDS)
    }

    /// Puts `who` on the roster until [`Roster::leave`]; drains it at once if the sweep has
    /// already passed.
    pub(crate) fn enlist<T: Drainable + 'static>(&self, who: &Arc<T>) {
        let (key, shard) = Self::key(who);
        let mut s = self.shards[shard].lock();
        if s.swept {
            drop(s);
            who.drain();
            return;
        }
        let weak: Weak<dyn Drainable> = Arc::downgrade(who) as Weak<dyn Drainable>;
        s.entries.insert(key, weak);
    }

    /// Takes `who` off the roster (when its hold ends).
    pub(crate) fn leave<T>(&self, who: &Arc<T>) {
        let (key, shard) = Self::key(who);
        self.shards[shard].lock().entries.remove(&key);
    }

    /// Drains everyone on the roster, shard by shard; returns how many.
    fn sweep(&self) -> usize {
        let mut n = 0;
        for shard in self.shards.iter() {
            let found: Vec<Arc<dyn Drainable>> = {
                let mut s = shard.lock();
                s.swept = true;
                s.entries.values().filter_map(Weak::upgrade).collect()
            };
            n += found.len();
            for who in found {
                who.drain();
            }
        }
        n
    }
}

/// Counts connection tasks and farewells still running, and wakes the drain when none is.
#[derive(Default)]
struct BusyCount {
    count: AtomicUsize,
    idle: Notify,
}

/// One running connection task or origin farewell; dropping it counts it done.
pub(crate) struct Busy(Arc<BusyCount>);

impl Drop for Busy {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// The drain's shared state (in [`Shared`]).
pub(crate) struct Drain {
    started: watch::Sender<bool>,
    pub(crate) roster: Roster,
    busy: Arc<BusyCount>,
}

impl Drain {
    pub(crate) fn new() -> Drain {
        Drain {
            started: watch::channel(false).0,
            roster: Roster::new(),
            busy: Arc::default(),
        }
    }

    /// True once the drain has begun.
    pub(crate) fn is_draining(&self) -> bool {
        *self.started.borrow()
    }

    /// Resolves when the drain begins.
    pub(crate) async fn started(&self) {
        let mut rx = self.started.subscribe();
        let _ = rx.wait_for(|d| *d).await;
    }

    /// Marks one more task the drain waits for.
    pub(crate) fn busy(&self) -> Busy {
        self.busy.count.fetch_add(1, Ordering::AcqRel);
        Busy(self.busy.clone())
    }

    fn busy_count(&self) -> usize {
        self.busy.count.load(Ordering::Acquire)
    }

    async fn all_done(&self) {
        loop {
            let idle = self.busy.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.busy_count() == 0 {
                return;
            }
            idle.await;
        }
    }
}

/// What an SSE stream is sent before its end at shutdown: a `retry:` field alone (no data,
/// so no event fires) telling `EventSource` to reconnect after 1 to 2 s — soon, and spread so
/// that every client of the node does not come back in the same instant.
pub(crate) fn sse_retry_line() -> Vec<u8> {
    let ms = 1000 + rand::rng().random_range(0..1000u32);
    format!("retry: {ms}\n\n").into_bytes()
}

/// Waits for the first shutdown request, then drains within the deadline.
pub(crate) async fn run(shared: &Arc<Shared>, mut shutdown: Shutdown) -> Stopped {
    shutdown.requested().await;
    let timeout = shared.config.drain_timeout;
    tracing::info!(
        "shutting down: draining (up to {} ms; a second signal exits at once)",
        timeout.as_millis()
    );
    let deadline = Instant::now() + timeout;
    tokio::select! {
        stopped = drain(shared, deadline) => stopped,
        _ = shutdown.forced() => {
            tracing::warn!(
                "second signal: exiting without finishing the drain ({} connections open)",
                shared.drain.busy_count()
            );
            Stopped::Forced
        }
    }
}

async fn drain(shared: &Shared, deadline: Instant) -> Stopped {
    let d = &shared.drain;
    d.started.send_replace(true);
    let queued = tokio::time::timeout_at(deadline, shared.broker.drain()).await;
    if queued.is_err() {
        tracing::warn!("drain deadline passed while fanning out what was published");
    }
    // a durable history store syncs what it wrote (with fsync_ms, the last writes)
    match tokio::time::timeout_at(deadline, shared.broker.history().sync()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!("history sync at shutdown failed: {e}"),
        Err(_) => tracing::warn!("drain deadline passed while syncing history"),
    }
    let held = d.roster.sweep();
    tracing::info!(
        "published items delivered; ending {held} held connections ({} connection tasks open)",
        d.busy_count()
    );
    if tokio::time::timeout_at(deadline, d.all_done())
        .await
        .is_ok()
    {
        tracing::info!("drained");
        return Stopped::Drained;
    }
    let left = d.busy_count();
    for _ in 0..left {
        shared
            .metrics
            .count_error(Source::Internal, "drain-deadline");
    }
    tracing::warn!(
        "drain deadline passed: {left} connections (or origin farewells) still open are cut off"
    );
    Stopped::DeadlinePassed(left)
}
