//! A node's interest in channels: one core-NATS subscription on `gripway.out.<token>` per
//! subscribed channel, each drained by its own task that checks the republished sequence
//! chain, reads missed items back from the stream, and hands every item, once and in stream
//! order, to the bus's one bounded delivery queue. Also the resync that runs on every
//! subscribed channel after a reconnect, a slow-consumer event or a stream leader election.
//!
//! Per channel the task keeps `last`, the sequence it delivered last (or the channel's newest
//! sequence when it subscribed): a republish with `Nats-Last-Sequence != last` means items
//! were missed, and they are read from the stream leader (at most `max_items`, the most the
//! stream keeps of a channel) before the republished item is delivered. Items at or below
//! `last` are dropped (a repeated republish, or one already read back).
//!
//! Reads back go through [`Shared::read_from`]: batch direct gets ([`crate::direct`], one
//! round trip for up to 1000 items) where the server has them, checked against a sequence
//! the read must reach (the republished item's predecessor, or the leader's newest), since
//! any replica may answer a direct get and one that lags returns too little; what such a read
//! missed, and everything on servers without batch reads, is read from the leader one item
//! at a time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use futures_util::StreamExt;
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::AbortHandle;

use crate::bus::{BusStats, Delivery, Stored};
use crate::config::ClusterConfig;
use crate::error::BusError;
use crate::subject::{encode_token, in_subject, out_subject};

/// What the bus's parts share: the connection, the stream, the settings, the delivery queue.
pub(crate) struct Shared {
    pub(crate) client: async_nats::Client,
    pub(crate) js: jetstream::Context,
    stream: stream::Stream<()>,
    pub(crate) cfg: ClusterConfig,
    deliveries: mpsc::Sender<Delivery>,
    resync: watch::Receiver<u64>,
    fetches: Semaphore,
    stats: Counters,
    /// What the servers can do (set by `Bus::ensure_stream` from the server's version and
    /// the stream's settings).
    pub(crate) features: Features,
    /// Atomic batches this node may have in flight (the server takes 50 per stream).
    pub(crate) batches: Semaphore,
}

/// Server features the bus uses when they are there.
#[derive(Default)]
pub(crate) struct Features {
    /// Atomic batch publish (2.12+, stream `allow_atomic`).
    pub(crate) atomic: AtomicBool,
    /// Batch direct get (2.11+, stream `allow_direct`).
    pub(crate) batch_reads: AtomicBool,
}

/// Atomic batches one node keeps in flight at once (below the server's 50 per stream).
const MAX_INFLIGHT_BATCHES: usize = 16;

/// The item id in a stored `Nats-Msg-Id` (`<token>.<id>`; None for `<token>:<uuid>`).
pub(crate) fn id_of(token: &str, msg_id: &str) -> Option<String> {
    msg_id
        .strip_prefix(token)?
        .strip_prefix('.')
        .map(str::to_string)
}

/// What [`BusStats`] reports, counted as it happens.
#[derive(Default)]
struct Counters {
    delivered: AtomicU64,
    read_back: AtomicU64,
    gaps: AtomicU64,
    resyncs: AtomicU64,
}

impl Shared {
    pub(crate) fn stats(&self) -> BusStats {
        let c = &self.stats;
        BusStats {
            delivered: c.delivered.load(Relaxed),
            read_back: c.read_back.load(Relaxed),
            gaps: c.gaps.load(Relaxed),
            resyncs: c.resyncs.load(Relaxed),
        }
    }
}

impl Shared {
    pub(crate) fn new(
        client: async_nats::Client,
        js: jetstream::Context,
        stream: stream::Stream<()>,
        cfg: ClusterConfig,
        deliveries: mpsc::Sender<Delivery>,
        resync: watch::Receiver<u64>,
    ) -> Shared {
        let fetches = Semaphore::new(cfg.max_concurrent_fetches);
        Shared {
            client,
            js,
            stream,
            cfg,
            deliveries,
            resync,
            fetches,
            stats: Counters::default(),
            features: Features::default(),
            batches: Semaphore::new(MAX_INFLIGHT_BATCHES),
        }
    }

    /// The first kept item of the channel with a sequence >= `from` (a read on the stream
    /// leader, so that it sees everything acknowledged).
    pub(crate) async fn next_stored(
        &self,
        token: &str,
        from: u64,
    ) -> Result<Option<Stored>, BusError> {
        use jetstream::stream::LastRawMessageErrorKind as K;
        match self
            .stream
            .get_first_raw_message_by_subject(in_subject(token), from.max(1))
            .await
        {
            Ok(m) => {
                let id = m
                    .headers
                    .get(async_nats::header::NATS_MESSAGE_ID)
                    .and_then(|v| id_of(token, v.as_str()));
                Ok(Some(Stored {
                    seq: m.sequence,
                    id,
                    payload: m.payload,
                }))
            }
            Err(e) if e.kind() == K::NoMessageFound => Ok(None),
            Err(e) => Err(BusError::Unavailable(e.to_string())),
        }
    }

    /// Up to `max` kept items of the channel from sequence `from` on, oldest first, stopping
    /// before `until`. `must_reach`: a sequence known to be stored (the channel's newest on
    /// the leader, or the predecessor a republish names); a batch read that stops short of it
    /// came from a lagging replica, and the rest is read from the leader.
    pub(crate) async fn read_from(
        &self,
        token: &str,
        from: u64,
        max: usize,
        until: Option<u64>,
        must_reach: u64,
    ) -> Result<Vec<Stored>, BusError> {
        let mut out: Vec<Stored> = Vec::new();
        let mut next = from.max(1);
        let below = |seq: u64| until.is_none_or(|u| seq < u);
        if self.features.batch_reads.load(Relaxed) {
            let subject = in_subject(token);
            while out.len() < max && below(next) {
                let read = crate::direct::read(
                    &self.client,
                    &self.cfg.stream,
                    &subject,
                    token,
                    next,
                    max - out.len(),
                    self.cfg.request_timeout,
                )
                .await?;
                let got = read.items.len();
                for s in read.items {
                    if !below(s.seq) || out.len() >= max {
                        return Ok(out);
                    }
                    next = s.seq + 1;
                    out.push(s);
                }
                if got == 0 || read.pending == 0 {
                    break;
                }
            }
            if next > must_reach || out.len() >= max || !below(next) {
                return Ok(out);
            }
        }
        while out.len() < max {
            match self.next_stored(token, next).await? {
                Some(s) if below(s.seq) => {
                    next = s.seq + 1;
                    out.push(s);
                }
                _ => break,
            }
        }
        Ok(out)
    }

    /// Whether sequence `seq` is still kept as an item of the channel.
    async fn is_kept(&self, token: &str, seq: u64) -> Result<bool, BusError> {
        Ok(self
            .next_stored(token, seq)
            .await?
            .is_some_and(|s| s.seq == seq))
    }

    /// The channel's newest kept sequence (0 if none), read on the leader.
    pub(crate) async fn newest(&self, token: &str) -> Result<u64, BusError> {
        Ok(self.newest_at(token).await?.map_or(0, |(seq, _)| seq))
    }

    /// The channel's newest kept item's sequence and when it was stored, read on the leader.
    async fn newest_at(&self, token: &str) -> Result<Option<(u64, SystemTime)>, BusError> {
        use jetstream::stream::LastRawMessageErrorKind as K;
        match self
            .stream
            .get_last_raw_message_by_subject(&in_subject(token))
            .await
        {
            Ok(m) => Ok(Some((m.sequence, stored_at(&m)))),
            Err(e) if e.kind() == K::NoMessageFound => Ok(None),
            Err(e) => Err(BusError::Unavailable(e.to_string())),
        }
    }

    /// The sequence just before the channel's first kept item stored at or after `since`
    /// (a bounded scan of at most `max_items` items); None when there is none.
    async fn before_first_since(&self, token: &str, since: SystemTime) -> Option<u64> {
        let bound = usize::try_from(self.cfg.max_items).unwrap_or(usize::MAX);
        let mut from = 1;
        for _ in 0..bound {
            use jetstream::stream::LastRawMessageErrorKind as K;
            let m = match self
                .stream
                .get_first_raw_message_by_subject(in_subject(token), from)
                .await
            {
                Ok(m) => m,
                Err(e) if e.kind() == K::NoMessageFound => return None,
                Err(_) => return None,
            };
            if stored_at(&m) >= since {
                return Some(m.sequence - 1);
            }
            from = m.sequence + 1;
        }
        None
    }

    /// How long a catch-up keeps retrying reads while NATS does not answer.
    fn catch_up_patience(&self) -> Duration {
        self.cfg.request_timeout * 6
    }
}

/// The channels this node is subscribed to.
pub(crate) struct Interests {
    shared: Arc<Shared>,
    tasks: Mutex<HashMap<String, AbortHandle>>,
    advisory: AbortHandle,
}

impl Drop for Interests {
    fn drop(&mut self) {
        self.advisory.abort();
        for (_, t) in self.tasks.lock().drain() {
            t.abort();
        }
    }
}

impl Interests {
    /// Starts the leader-election watch that triggers a resync of every channel.
    pub(crate) fn start(shared: Arc<Shared>, resync: Arc<watch::Sender<u64>>) -> Arc<Interests> {
        let client = shared.client.clone();
        let subject = format!(
            "$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED.{}",
            shared.cfg.stream
        );
        let advisory = tokio::spawn(async move {
            let Ok(mut sub) = client.subscribe(subject).await else {
                return;
            };
            while sub.next().await.is_some() {
                tracing::info!("NATS: stream leader elected, catching up subscribed channels");
                resync.send_modify(|g| *g += 1);
            }
        })
        .abort_handle();
        Arc::new(Interests {
            shared,
            tasks: Mutex::new(HashMap::new()),
            advisory,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.tasks.lock().len()
    }

    pub(crate) fn contains(&self, channel: &str) -> bool {
        self.tasks.lock().contains_key(channel)
    }

    pub(crate) fn channels(&self) -> Vec<String> {
        self.tasks.lock().keys().cloned().collect()
    }

    pub(crate) async fn subscribe(
        &self,
        channel: &str,
        since: Option<SystemTime>,
    ) -> Result<(), BusError> {
        let token = encode_token(channel)
            .ok_or_else(|| BusError::Rejected("channel name too long for a subject".into()))?;
        {
            let tasks = self.tasks.lock();
            if tasks.contains_key(channel) {
                return Ok(());
            }
            if tasks.len() >= self.shared.cfg.max_subscriptions {
                return Err(BusError::TooManySubscriptions(
                    self.shared.cfg.max_subscriptions,
                ));
            }
        }
        let sub = self
            .shared
            .client
            .subscribe(out_subject(&token))
            .await
            .map_err(|e| BusError::Unavailable(e.to_string()))?;
        // the subscription is registered on our server before the baseline is read, so that
        // anything stored after the baseline is either republished to us or revealed as a gap
        let timeout = self.shared.cfg.request_timeout;
        let flushed = tokio::time::timeout(timeout, self.shared.client.flush()).await;
        let newest = match flushed {
            Ok(Ok(())) => self.shared.newest_at(&token).await.ok(),
            _ => None,
        };
        // items stored since the node's first subscriber of the channel came are delivered
        // too (they were published after that subscriber was held, but before this
        // subscription reached NATS)
        let mut catch_up = false;
        let baseline = match (newest, since) {
            (Some(Some((seq, at))), Some(since)) if at >= since - SINCE_MARGIN => {
                match self
                    .shared
                    .before_first_since(&token, since - SINCE_MARGIN)
                    .await
                {
                    Some(before) => {
                        catch_up = before < seq;
                        Some(before)
                    }
                    None => Some(seq),
                }
            }
            (Some(n), _) => Some(n.map_or(0, |(seq, _)| seq)),
            (None, _) => None,
        };
        let mut tasks = self.tasks.lock();
        if tasks.contains_key(channel) {
            return Ok(()); // a concurrent subscribe won
        }
        let mut resync = self.shared.resync.clone();
        if catch_up {
            resync.mark_changed();
        } else {
            resync.mark_unchanged();
        }
        let task = ChannelTask {
            shared: self.shared.clone(),
            channel: channel.to_string(),
            token,
            last: baseline,
        };
        let handle = tokio::spawn(task.run(sub, resync)).abort_handle();
        tasks.insert(channel.to_string(), handle);
        Ok(())
    }

    pub(crate) fn unsubscribe(&self, channel: &str) {
        if let Some(t) = self.tasks.lock().remove(channel) {
            // dropping the task's Subscriber sends UNSUB
            t.abort();
        }
    }
}

struct ChannelTask {
    shared: Arc<Shared>,
    channel: String,
    token: String,
    /// The sequence delivered last, or the channel's newest when subscribed; None while
    /// unknown (NATS did not answer when the subscription started).
    last: Option<u64>,
}

impl ChannelTask {
    async fn run(mut self, mut sub: async_nats::Subscriber, mut resync: watch::Receiver<u64>) {
        loop {
            let open = tokio::select! {
                biased;
                m = sub.next() => match m {
                    Some(m) => self.on_republish(m).await,
                    None => false,
                },
                r = resync.changed() => r.is_ok() && self.resync().await,
            };
            if !open {
                return;
            }
        }
    }

    /// Handles one republished item; false once the delivery queue is gone.
    async fn on_republish(&mut self, m: async_nats::Message) -> bool {
        let Some((seq, prev)) = sequences(&m) else {
            tracing::warn!(subject = %m.subject, "NATS: republished message without sequence headers");
            return true;
        };
        let mut gap = false;
        match self.last {
            Some(last) if seq <= last => return true,
            Some(last) if prev != last => match self.fill(Some(seq), prev).await {
                Ok(missing) => gap = missing || self.last != Some(prev),
                Err(()) => return false,
            },
            _ => {}
        }
        self.deliver(seq, prev, gap, m.payload).await
    }

    /// After a reconnect or a leader change: reads what was stored after `last`.
    async fn resync(&mut self) -> bool {
        self.shared.stats.resyncs.fetch_add(1, Relaxed);
        let newest = {
            let Ok(_permit) = self.shared.fetches.acquire().await else {
                return false;
            };
            self.shared.newest(&self.token).await
        };
        match (self.last, newest) {
            (None, Ok(n)) => self.last = Some(n),
            (Some(last), Ok(n)) if n > last => {
                if let Ok(true) = self.fill(None, n).await {
                    tracing::warn!(channel = %self.channel, "NATS: items lost before catch-up");
                }
                return !self.shared.deliveries.is_closed();
            }
            _ => {}
        }
        true
    }

    /// Reads back and delivers the items after `last` (below `until` when given; `reach`: a
    /// sequence known to be stored that the read must get to, if still kept). Ok(true) when
    /// some may have been lost: evicted before they could be read, or NATS did not answer
    /// within the catch-up's patience. Err once the delivery queue is gone.
    async fn fill(&mut self, until: Option<u64>, reach: u64) -> Result<bool, ()> {
        let Some(start) = self.last else {
            return Ok(false);
        };
        let shared = self.shared.clone();
        let Ok(_permit) = shared.fetches.acquire().await else {
            return Err(());
        };
        let deadline = tokio::time::Instant::now() + self.shared.catch_up_patience();
        let bound = usize::try_from(self.shared.cfg.max_items).unwrap_or(usize::MAX);
        let items = loop {
            match shared
                .read_from(&self.token, start + 1, bound, until, reach)
                .await
            {
                Ok(items) => break items,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(error = %e, "NATS: catch-up read failed, retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(_) => return Ok(true),
            }
        };
        // what a channel keeps is a suffix of what it was sent: if `start` is still kept,
        // nothing between it and the first item read back was evicted
        let gap = match items.first() {
            Some(first) if start != 0 && first.seq > start + 1 => {
                !shared.is_kept(&self.token, start).await.unwrap_or(false)
            }
            _ => false,
        };
        let full = items.len() >= bound && items.last().is_some_and(|s| s.seq < reach);
        for (i, item) in items.into_iter().enumerate() {
            let prev = self.last.unwrap_or(start);
            self.shared.stats.read_back.fetch_add(1, Relaxed);
            if !self
                .deliver(item.seq, prev, gap && i == 0, item.payload)
                .await
            {
                return Err(());
            }
        }
        Ok(full)
    }

    async fn deliver(&mut self, seq: u64, last_seq: u64, gap: bool, payload: Bytes) -> bool {
        self.last = Some(seq);
        self.shared.stats.delivered.fetch_add(1, Relaxed);
        if gap {
            self.shared.stats.gaps.fetch_add(1, Relaxed);
        }
        let d = Delivery {
            channel: self.channel.clone(),
            seq,
            last_seq,
            gap,
            payload,
        };
        self.shared.deliveries.send(d).await.is_ok()
    }
}

/// How much earlier than a channel's first subscriber an item may have been stored and still
/// be delivered to it when the node subscribes: none. An item stored before the subscriber
/// came is not its to receive, and delivered after a recovery it would arrive out of order
/// (a recovering client already has it, or gets it from history). Comparing the NATS
/// server's clock with the node's assumes synchronised clocks (NTP); a skew of d widens or
/// narrows the window by d.
const SINCE_MARGIN: Duration = Duration::ZERO;

/// When a stored message was stored (by the NATS server's clock).
fn stored_at(m: &async_nats::jetstream::message::StreamMessage) -> SystemTime {
    let ns = m.time.unix_timestamp_nanos();
    if ns <= 0 {
        return SystemTime::UNIX_EPOCH;
    }
    SystemTime::UNIX_EPOCH + Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
}

/// `Nats-Sequence` and `Nats-Last-Sequence` of a republished message.
fn sequences(m: &async_nats::Message) -> Option<(u64, u64)> {
    let h = m.headers.as_ref()?;
    let seq = h.get("Nats-Sequence")?.as_str().parse().ok()?;
    let last = h.get("Nats-Last-Sequence")?.as_str().parse().ok()?;
    Some((seq, last))
}
