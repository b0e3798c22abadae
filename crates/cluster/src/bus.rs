//! The bus between a node and NATS JetStream: the connection, the one stream, publishes with
//! their acknowledgement, and history reads. Subscriptions and the delivery of what the stream
//! republishes are in [`crate::interest`].
//!
//! # Design
//! * **One stream** (`GRIPWAY` by default) captures `gripway.in.<token>`, one subject per
//!   channel ([`crate::subject`]). JetStream gives each stored item a stream-wide sequence
//!   number: that is the one order every node sees. Retention is per channel by count
//!   (`max_msgs_per_subject` = `max_items`), by age (`max_age`) and over the stream by bytes
//!   (`max_bytes`), all discarding the oldest first, so what a channel keeps is always a suffix
//!   of what it was sent. `allow_direct` is on (reads may later be served by any replica).
//! * **RePublish** `gripway.in.>` -> `gripway.out.>`: the stream leader republishes each item
//!   once it is stored, in stream order, as a core-NATS message with the headers
//!   `Nats-Sequence` (its sequence), `Nats-Last-Sequence` (the previous sequence of the same
//!   subject, 0 if none) and `Nats-Subject`. A node subscribes to `gripway.out.<token>` only
//!   for channels it has local subscribers on, so it receives only those channels' traffic.
//! * **Gaps.** Core NATS does not retry: a republish can be lost (a slow consumer, a killed
//!   server, interest not yet propagated over the routes). A node keeps the last sequence it
//!   delivered per channel; a republish whose `Nats-Last-Sequence` differs reveals the gap and
//!   the missing items are read from the stream (leader reads, bounded by `max_items`) and
//!   delivered first. After a reconnect, a slow-consumer event or a stream leader election
//!   (`$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED.<stream>`), every subscribed channel compares
//!   its last sequence with the stream's newest for that channel, so a lost republish of a
//!   channel's last item is found without waiting for the next one.
//! * **Publish** = JetStream publish to `gripway.in.<token>` with `Nats-Msg-Id` =
//!   `<token>.<item id>` (or `<token>:<random uuid>` for an item without id, so that the
//!   bus's own retries cannot store an item twice). It is acknowledged only after the PubAck,
//!   i.e. once the stream's replicas stored it; `duplicate: true` in the PubAck means an
//!   earlier publish of the same (channel, id) within `duplicate_window` is the stored one, and
//!   the publish is still a success. A publish that gets no PubAck within `publish_timeout`
//!   (retried on timeouts and "no responders" meanwhile) fails as
//!   [`BusError::Unavailable`]. While the client is disconnected a publish is not handed to
//!   it at all (async-nats buffers what it is given while reconnecting and sends it after:
//!   verified, such a 503'd item was stored once the server was back); one handed over just
//!   before a disconnect may still be stored later, which a retry with the same id absorbs.
//! * **Publishing many** ([`Bus::publish_many`], a publish request's items): with
//!   nats-server 2.12 or newer the items go as JetStream atomic batches
//!   ([`crate::atomic`], at most 1000 items each, sent one after another): a batch is stored
//!   whole, in request order, or not at all, so a failure or a retry can never reorder a
//!   channel, and one answer replaces one per item. An id repeated within the request is
//!   sent once (its later copies are acknowledged as duplicates of the first). Since the
//!   server fails a whole batch holding an id it already stored, such a batch (a publisher's
//!   retry) is published item by item instead, as is everything while batches are refused
//!   (an older server, a stream without `allow_atomic`, too many batches in flight): one
//!   publish after the other per channel, channels side by side.
//! * **Reads** ([`Bus::read_after`], catch-ups): batch direct gets where the server has them
//!   (2.11+), else one leader read per item; see [`crate::interest`].
//! * **Reconnect.** The client retries the initial connect and reconnects forever (backoff
//!   capped at 1 s), re-subscribing by itself; [`Bus::is_connected`] tells the state.
//!
//! # Verified against nats-server 2.15.1 and async-nats 0.52 (crates/cluster/tests)
//! * In a replicas-3 cluster each stored item is republished once (by the leader, not by every
//!   replica), in stream order; a publish deduplicated by `Nats-Msg-Id` is not republished.
//!   Headers: `Nats-Stream`, `Nats-Subject` (the `gripway.in.` subject), `Nats-Sequence`,
//!   `Nats-Last-Sequence` (previous sequence of the same subject, "0" for the first),
//!   `Nats-Time-Stamp`, and the publisher's `Nats-Msg-Id`.
//! * A duplicate's PubAck carries `duplicate: true` and the sequence of the stored original.
//! * `kill -9` of the stream leader: publishes get "no responders" (503 status) until a new
//!   leader is elected, 2 to 7 s here; retried within `publish_timeout`, most succeed (1 of
//!   ~400 failed in some runs); nothing acknowledged was lost or repeated at any subscriber.
//!   A subscriber whose server died reconnects to a server it learnt from INFO (it was given
//!   only the dead one's URL) and its resync reads back what it missed (32 items in one run).
//! * A slow consumer (client buffer full) drops republishes; the gap check read all of them
//!   back in order (296 of 300 in `single.rs`).
//! * Every server down: async-nats notices at once (state Disconnected) and buffers what it
//!   is given; a publish handed to it then was stored after the restart although it had been
//!   answered 503, hence the wait for a connection above. The publish fails after
//!   `publish_timeout` exactly. After a restart on the same store the client reconnects within
//!   its backoff (<= 1 s here) and re-subscribes by itself.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, context::PublishErrorKind, stream};
use async_nats::{ConnectOptions, HeaderMap};
use bytes::Bytes;
use futures_util::future::join_all;
use tokio::sync::{mpsc, watch};

use crate::atomic::{self, Outcome, Prepared};
use crate::config::{Auth, ClusterConfig};
use crate::error::BusError;
use crate::interest::{Interests, Shared};
use crate::subject::{self, encode_token, in_subject};

/// True at most once per `period` over the process (a log line that may repeat).
fn quiet_for(period: Duration) -> bool {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let now = START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_secs()
        + period.as_secs();
    let last = LAST.load(Ordering::Relaxed);
    (last == 0 || now >= last + period.as_secs())
        && LAST
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
}

/// One item delivered to this node for a channel it is subscribed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The channel.
    pub channel: String,
    /// The item's stream sequence number (the cluster-wide order; increasing per channel).
    pub seq: u64,
    /// The sequence of the channel's previous item in the stream (0 if none).
    pub last_seq: u64,
    /// True when items between the previous delivery of this channel and this one could not
    /// be read back (evicted by retention, or NATS unreachable for the catch-up): the consumer
    /// must treat the channel as having a hole before this item.
    pub gap: bool,
    /// The item as it was published (publish-item JSON).
    pub payload: Bytes,
}

/// The acknowledgement of a publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    /// The stream sequence the item is stored under.
    pub seq: u64,
    /// True when the same (channel, id) was already stored within the duplicate window; `seq`
    /// is then the earlier item's.
    pub duplicate: bool,
}

/// An item read back from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Its stream sequence.
    pub seq: u64,
    /// Its item id, if it was published with one.
    pub id: Option<String>,
    /// The item as published.
    pub payload: Bytes,
}

/// Counters of what the bus did since it connected (for metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BusStats {
    /// Items handed to the delivery queue.
    pub delivered: u64,
    /// Of those, items read back from the stream because their republish was missed.
    pub read_back: u64,
    /// Deliveries flagged `gap` (items lost before they could be read back).
    pub gaps: u64,
    /// Channel resyncs run (after reconnects, slow-consumer events, leader elections).
    pub resyncs: u64,
}

/// A node's connection to the cluster.
#[derive(Clone)]
pub struct Bus {
    shared: Arc<Shared>,
    interests: Arc<Interests>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("stream", &self.shared.cfg.stream)
            .field("connected", &self.is_connected())
            .finish()
    }
}

impl Bus {
    /// Validates `cfg`, then connects (returning at once even when no server is reachable
    /// yet: the client keeps trying in the background). Deliveries for subscribed channels
    /// arrive on the returned receiver, bounded by `delivery_capacity`.
    pub async fn connect(cfg: ClusterConfig) -> Result<(Bus, mpsc::Receiver<Delivery>), BusError> {
        cfg.validate()
            .map_err(|e| BusError::Rejected(e.to_string()))?;
        let (resync_tx, resync_rx) = watch::channel(0u64);
        let resync_tx = Arc::new(resync_tx);
        let mut opts = match &cfg.auth {
            Auth::None => ConnectOptions::new(),
            Auth::CredentialsFile(p) => ConnectOptions::with_credentials_file(p)
                .await
                .map_err(|e| BusError::Rejected(format!("credentials {}: {e}", p.display())))?,
            Auth::UserPassword { user, password } => {
                ConnectOptions::with_user_and_password(user.clone(), password.clone())
            }
            Auth::Token(t) => ConnectOptions::with_token(t.clone()),
        };
        if cfg.tls.require {
            opts = opts.require_tls(true);
        }
        if let Some(ca) = &cfg.tls.ca_file {
            opts = opts.add_root_certificates(ca.clone());
        }
        if let Some((cert, key)) = &cfg.tls.client_cert {
            opts = opts.add_client_certificate(cert.clone(), key.clone());
        }
        let events = resync_tx.clone();
        opts = opts
            .name(&cfg.name)
            .retry_on_initial_connect()
            .max_reconnects(None)
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis((attempts as u64).saturating_mul(100).min(1000))
            })
            .connection_timeout(cfg.request_timeout)
            .request_timeout(Some(cfg.request_timeout))
            .subscription_capacity(cfg.subscription_capacity)
            .event_callback(move |event| {
                let events = events.clone();
                async move {
                    match event {
                        async_nats::Event::Connected | async_nats::Event::SlowConsumer(_) => {
                            tracing::info!(%event, "NATS: catching up subscribed channels");
                            events.send_modify(|g| *g += 1);
                        }
                        async_nats::Event::Disconnected => {
                            tracing::warn!("NATS: disconnected; reconnecting")
                        }
                        // a failed attempt every second while NATS is down: one line a minute
                        other if quiet_for(Duration::from_secs(60)) => {
                            tracing::warn!(event = %other, "NATS (repeats are logged at debug for a minute)")
                        }
                        other => tracing::debug!(event = %other, "NATS"),
                    }
                }
            });
        let client = opts
            .connect(cfg.urls.clone())
            .await
            .map_err(|e| BusError::Unavailable(e.to_string()))?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(cfg.request_timeout);
        let stream = js
            .get_stream_no_info(&cfg.stream)
            .await
            .map_err(|e| BusError::Rejected(e.to_string()))?;
        let (tx, rx) = mpsc::channel(cfg.delivery_capacity);
        let shared = Arc::new(Shared::new(client, js, stream, cfg, tx, resync_rx));
        let interests = Interests::start(shared.clone(), resync_tx);
        Ok((Bus { shared, interests }, rx))
    }

    /// True while the client is connected to a server.
    pub fn is_connected(&self) -> bool {
        self.shared.client.connection_state() == async_nats::connection::State::Connected
    }

    /// The stream configuration this node wants, from its [`ClusterConfig`].
    pub fn wanted_stream(cfg: &ClusterConfig) -> stream::Config {
        Self::wanted_stream_for(cfg, true)
    }

    /// [`Bus::wanted_stream`], with atomic batches allowed or not (servers before 2.12 do
    /// not know the setting).
    fn wanted_stream_for(cfg: &ClusterConfig, atomic: bool) -> stream::Config {
        stream::Config {
            name: cfg.stream.clone(),
            subjects: vec![format!("{}>", subject::IN_PREFIX)],
            retention: stream::RetentionPolicy::Limits,
            discard: stream::DiscardPolicy::Old,
            storage: stream::StorageType::File,
            num_replicas: cfg.replicas,
            max_messages_per_subject: cfg.max_items,
            max_age: cfg.max_age,
            max_bytes: cfg.max_bytes,
            max_messages: -1,
            max_consumers: -1,
            duplicate_window: cfg.duplicate_window,
            allow_direct: true,
            allow_atomic_publish: atomic,
            republish: Some(stream::Republish {
                source: format!("{}>", subject::IN_PREFIX),
                destination: format!("{}>", subject::OUT_PREFIX),
                headers_only: false,
            }),
            description: Some("Gripway cluster: every channel's items".to_string()),
            ..Default::default()
        }
    }

    /// Creates the stream, or updates it to this node's settings (retention, replicas,
    /// window, RePublish). Refuses, naming the difference, when the existing stream captures
    /// other subjects, uses another storage or retention policy, or the update is refused.
    pub async fn ensure_stream(&self) -> Result<(), BusError> {
        let js = &self.shared.js;
        let features = &self.shared.features;
        let name = &self.shared.cfg.stream;
        let found = js.get_stream(name).await;
        // known once an answer came (the client may have connected just now)
        let version = server_version(&self.shared.client.server_info().version);
        let atomic = version >= (2, 12);
        let want = Self::wanted_stream_for(&self.shared.cfg, atomic);
        features.batch_reads.store(version >= (2, 11), Relaxed);
        match found {
            Ok(mut existing) => {
                let have = existing
                    .info()
                    .await
                    .map_err(|e| BusError::Unavailable(e.to_string()))?
                    .config
                    .clone();
                for (what, ok) in [
                    ("subjects", have.subjects == want.subjects),
                    ("storage", have.storage == want.storage),
                    ("retention", have.retention == want.retention),
                ] {
                    if !ok {
                        return Err(BusError::Stream(format!(
                            "stream {} exists with other {what} ({:?}); give cluster mode its own stream name",
                            want.name,
                            match what {
                                "subjects" => format!("{:?}", have.subjects),
                                "storage" => format!("{:?}", have.storage),
                                _ => format!("{:?}", have.retention),
                            }
                        )));
                    }
                }
                let same = have.num_replicas == want.num_replicas
                    && have.max_messages_per_subject == want.max_messages_per_subject
                    && have.max_age == want.max_age
                    && have.max_bytes == want.max_bytes
                    && have.duplicate_window == want.duplicate_window
                    && have.allow_direct
                    && have.republish == want.republish
                    && have.discard == want.discard
                    && (have.allow_atomic_publish || !atomic);
                if same {
                    features.atomic.store(have.allow_atomic_publish, Relaxed);
                    return Ok(());
                }
                js.update_stream(&want).await.map_err(|e| {
                    BusError::Stream(format!("stream {} cannot be updated: {e}", want.name))
                })?;
                features.atomic.store(atomic, Relaxed);
                Ok(())
            }
            Err(e)
                if matches!(
                    e.kind(),
                    jetstream::context::GetStreamErrorKind::JetStream(ref j)
                        if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
                ) =>
            {
                js.create_stream(want.clone())
                    .await
                    .map(|_| features.atomic.store(atomic, Relaxed))
                    .map_err(|e| match e.kind() {
                        jetstream::context::CreateStreamErrorKind::TimedOut
                        | jetstream::context::CreateStreamErrorKind::JetStreamUnavailable => {
                            BusError::Unavailable(e.to_string())
                        }
                        _ => {
                            BusError::Stream(format!("stream {} cannot be created: {e}", want.name))
                        }
                    })
            }
            Err(e) => Err(BusError::Unavailable(e.to_string())),
        }
    }

    /// Stores one item of `channel` in the stream and returns once it is stored (with the
    /// configured replicas), or fails within `publish_timeout`.
    pub async fn publish(
        &self,
        channel: &str,
        id: Option<&str>,
        payload: Bytes,
    ) -> Result<Ack, BusError> {
        let p = prepare(channel, id, payload)?;
        let deadline = tokio::time::Instant::now() + self.shared.cfg.publish_timeout;
        self.publish_prepared(&p, deadline).await
    }

    /// Stores a request's items (channel, id, payload) and returns once every one is stored
    /// (with the configured replicas), each channel's in the given order, or fails within
    /// `publish_timeout`. The acknowledgements are in the items' order. See the module docs
    /// for how (atomic batches, or one by one).
    pub async fn publish_many(
        &self,
        items: &[(&str, Option<&str>, Bytes)],
    ) -> Result<Vec<Ack>, BusError> {
        let deadline = tokio::time::Instant::now() + self.shared.cfg.publish_timeout;
        let prepared = items
            .iter()
            .map(|(c, id, p)| prepare(c, *id, p.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        // an id repeated within the request goes once; its copies point at the first
        let mut first_of: HashMap<&str, usize> = HashMap::new();
        let mut unique: Vec<Prepared> = Vec::with_capacity(prepared.len());
        let mut slot = Vec::with_capacity(prepared.len());
        for p in &prepared {
            match first_of.get(p.msg_id.as_str()) {
                Some(&at) => slot.push((at, true)),
                None => {
                    first_of.insert(&p.msg_id, unique.len());
                    slot.push((unique.len(), false));
                    unique.push(p.clone());
                }
            }
        }
        let mut acks = Vec::with_capacity(unique.len());
        for chunk in unique.chunks(atomic::MAX_ITEMS) {
            acks.extend(self.publish_chunk(chunk, deadline).await?);
        }
        Ok(slot
            .into_iter()
            .map(|(at, repeated)| Ack {
                seq: acks[at].seq,
                duplicate: acks[at].duplicate || repeated,
            })
            .collect())
    }

    /// Stores `items` (distinct ids, at most one batch's worth) as one atomic batch, or one
    /// by one when batches are not the way.
    async fn publish_chunk(
        &self,
        items: &[Prepared],
        deadline: tokio::time::Instant,
    ) -> Result<Vec<Ack>, BusError> {
        let shared = &self.shared;
        let mut delay = Duration::from_millis(20);
        while shared.features.atomic.load(Relaxed) && items.len() > 1 {
            self.wait_connected(deadline).await?;
            let permit = tokio::time::timeout_at(deadline, shared.batches.acquire()).await;
            let Ok(Ok(_permit)) = permit else {
                return Err(BusError::Unavailable(
                    "too many publishes waiting for the cluster".into(),
                ));
            };
            let now = tokio::time::Instant::now();
            let wait = deadline.saturating_duration_since(now);
            match atomic::publish(&shared.client, items, wait).await {
                Outcome::Stored { last_seq } => {
                    let first = last_seq + 1 - items.len() as u64;
                    return Ok((0..items.len() as u64)
                        .map(|i| Ack {
                            seq: first + i,
                            duplicate: false,
                        })
                        .collect());
                }
                Outcome::Duplicate => break,
                Outcome::NotNow(why) => {
                    tracing::debug!(%why, "NATS: publishing a batch item by item");
                    break;
                }
                Outcome::Rejected(why) => return Err(BusError::Rejected(why)),
                Outcome::Retry(why) => {
                    if tokio::time::Instant::now() + delay >= deadline {
                        return Err(BusError::Unavailable(why));
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_millis(500));
                }
            }
        }
        self.publish_each(items, deadline).await
    }

    /// Stores `items` one publish at a time per channel, channels side by side.
    async fn publish_each(
        &self,
        items: &[Prepared],
        deadline: tokio::time::Instant,
    ) -> Result<Vec<Ack>, BusError> {
        if let [one] = items {
            return Ok(vec![self.publish_prepared(one, deadline).await?]);
        }
        let mut by_subject: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, p) in items.iter().enumerate() {
            by_subject.entry(p.subject.as_str()).or_default().push(i);
        }
        let runs = by_subject.into_values().map(|idx| async move {
            let mut acks = Vec::with_capacity(idx.len());
            for i in idx {
                acks.push((i, self.publish_prepared(&items[i], deadline).await?));
            }
            Ok::<_, BusError>(acks)
        });
        let mut out = vec![
            Ack {
                seq: 0,
                duplicate: false
            };
            items.len()
        ];
        for run in join_all(runs).await {
            for (i, ack) in run? {
                out[i] = ack;
            }
        }
        Ok(out)
    }

    /// Waits for the client to be connected, until `deadline`.
    async fn wait_connected(&self, deadline: tokio::time::Instant) -> Result<(), BusError> {
        // not connected: wait for the client to reconnect rather than hand it a publish it
        // would buffer and send later, after this one was answered 503
        while !self.is_connected() {
            if tokio::time::Instant::now() + Duration::from_millis(20) >= deadline {
                return Err(BusError::Unavailable(format!(
                    "not connected to NATS within {:?}",
                    self.shared.cfg.publish_timeout
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Publishes one prepared item and waits for its PubAck, retrying until `deadline`.
    async fn publish_prepared(
        &self,
        p: &Prepared,
        deadline: tokio::time::Instant,
    ) -> Result<Ack, BusError> {
        let mut delay = Duration::from_millis(20);
        loop {
            self.wait_connected(deadline).await?;
            let mut headers = HeaderMap::new();
            headers.insert(async_nats::header::NATS_MESSAGE_ID, p.msg_id.as_str());
            let attempt = async {
                self.shared
                    .js
                    .publish_with_headers(p.subject.clone(), headers, p.payload.clone())
                    .await?
                    .await
            };
            let outcome = tokio::time::timeout_at(deadline, attempt).await;
            let err = match outcome {
                Ok(Ok(ack)) => {
                    return Ok(Ack {
                        seq: ack.sequence,
                        duplicate: ack.duplicate,
                    })
                }
                Ok(Err(e)) => e,
                Err(_) => {
                    return Err(BusError::Unavailable(format!(
                        "no acknowledgement within {:?}",
                        self.shared.cfg.publish_timeout
                    )))
                }
            };
            match err.kind() {
                // no stream leader yet (no responders), a lost request, a broken connection:
                // the same id makes a retry safe
                PublishErrorKind::StreamNotFound
                | PublishErrorKind::TimedOut
                | PublishErrorKind::BrokenPipe => {
                    let now = tokio::time::Instant::now();
                    if now + delay >= deadline {
                        return Err(BusError::Unavailable(err.to_string()));
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_millis(500));
                }
                PublishErrorKind::MaxPayloadExceeded => {
                    return Err(BusError::Rejected(err.to_string()))
                }
                _ => return Err(BusError::Rejected(err.to_string())),
            }
        }
    }

    /// Up to `limit` kept items of `channel` with a sequence above `after_seq`, oldest first
    /// (bounded by `max_items` whatever `limit` says).
    pub async fn read_after(
        &self,
        channel: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<Stored>, BusError> {
        let token = encode_token(channel)
            .ok_or_else(|| BusError::Rejected("channel name too long for a subject".into()))?;
        let max = limit.min(usize::try_from(self.shared.cfg.max_items).unwrap_or(usize::MAX));
        // the leader's newest is what the read must reach (everything acknowledged before
        // the call); asked at the same time, so the read stays one round trip
        let from = after_seq.saturating_add(1);
        let shared = &self.shared;
        if !shared.features.batch_reads.load(Relaxed) {
            return shared.read_from(&token, from, max, None, 0).await;
        }
        let (newest, read) = tokio::join!(
            shared.newest(&token),
            shared.read_from(&token, from, max, None, 0)
        );
        let (newest, mut out) = (newest?, read?);
        let next = out.last().map_or(from, |s| s.seq + 1);
        if out.len() < max && next <= newest {
            // a lagging replica answered: the rest from the leader
            out.extend(
                shared
                    .read_from(&token, next, max - out.len(), None, u64::MAX)
                    .await?,
            );
        }
        Ok(out)
    }

    /// The sequence of the kept item of `channel` published with `id`, if it is still kept
    /// (a scan of at most `max_items` items).
    pub async fn find_seq_of_id(&self, channel: &str, id: &str) -> Result<Option<u64>, BusError> {
        let max = usize::try_from(self.shared.cfg.max_items).unwrap_or(usize::MAX);
        Ok(self
            .read_after(channel, 0, max)
            .await?
            .into_iter()
            .find(|s| s.id.as_deref() == Some(id))
            .map(|s| s.seq))
    }

    /// Starts receiving `channel`'s items (idempotent). Every item stored after this returns
    /// is delivered, once, in stream order; an item stored while it runs may be too.
    pub async fn subscribe(&self, channel: &str) -> Result<(), BusError> {
        self.interests.subscribe(channel, None).await
    }

    /// [`Bus::subscribe`], and items stored since `since` (by the NATS server's clock: the
    /// clocks must agree, NTP) are delivered too, first: for a channel whose first
    /// subscriber on this node came at `since`, before the subscription reached NATS.
    pub async fn subscribe_since(
        &self,
        channel: &str,
        since: std::time::SystemTime,
    ) -> Result<(), BusError> {
        self.interests.subscribe(channel, Some(since)).await
    }

    /// Stops receiving `channel`'s items (idempotent).
    pub fn unsubscribe(&self, channel: &str) {
        self.interests.unsubscribe(channel);
    }

    /// Counters since connect.
    pub fn stats(&self) -> BusStats {
        self.shared.stats()
    }

    /// Channels this node is subscribed to.
    pub fn subscriptions(&self) -> usize {
        self.interests.len()
    }

    /// Starts announcing this node to the others and answering their counts with `local`
    /// ([`crate::peers`]).
    pub async fn start_peers(
        &self,
        local: Arc<dyn crate::peers::LocalCounts>,
    ) -> Result<crate::peers::Peers, BusError> {
        crate::peers::Peers::start(
            self.shared.client.clone(),
            &self.shared.cfg.stream,
            &self.shared.cfg.name,
            local,
        )
        .await
    }

    /// True when this node is subscribed to `channel`.
    pub fn is_subscribed(&self, channel: &str) -> bool {
        self.interests.contains(channel)
    }

    /// The channels this node is subscribed to (a copy: for a periodic check).
    pub fn subscribed_channels(&self) -> Vec<String> {
        self.interests.channels()
    }
}

/// An item ready for the stream: its subject and its `Nats-Msg-Id`, `<token>.<id>`, or
/// `<token>:<random uuid>` for an item without id (so that the bus's own retries cannot
/// store it twice).
fn prepare(channel: &str, id: Option<&str>, payload: Bytes) -> Result<Prepared, BusError> {
    let token = encode_token(channel)
        .ok_or_else(|| BusError::Rejected("channel name too long for a subject".into()))?;
    let msg_id = match id {
        Some(id) if id.chars().any(char::is_control) => {
            return Err(BusError::Rejected("id has control characters".into()))
        }
        Some(id) => format!("{token}.{id}"),
        None => format!("{token}:{}", uuid::Uuid::new_v4().simple()),
    };
    Ok(Prepared {
        subject: in_subject(&token),
        msg_id,
        payload,
    })
}

/// (major, minor) of a server version such as `2.15.1` ((0, 0) when unreadable).
fn server_version(v: &str) -> (u32, u32) {
    let mut parts = v.trim_start_matches('v').split(['.', '-']);
    let mut next = || parts.next().and_then(|p| p.parse().ok());
    match (next(), next()) {
        (Some(major), Some(minor)) => (major, minor),
        _ => (0, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::server_version;

    #[test]
    fn server_versions_are_read() {
        assert_eq!(server_version("2.15.1"), (2, 15));
        assert_eq!(server_version("v2.12.0-beta.1"), (2, 12));
        assert_eq!(server_version("2.9.10"), (2, 9));
        assert_eq!(server_version(""), (0, 0));
        assert!(server_version("2.10.3") < (2, 11));
    }
}
