//! The channel registry: which subscribers listen on which channel, on this node.
//!
//! Channels live in a sharded map (name → `Channel`); each channel keeps its subscribers in a
//! slab so that leaving is O(1) without shifting anyone. A channel exists exactly while it has
//! subscribers: the last one to leave marks it dead and removes it from the map, and a
//! subscriber that finds a dead channel under the shard lock replaces it with a fresh one.
//! Lock order is always shard → channel; no code holds a channel lock while taking a shard
//! lock, and no lock is held across an `.await`.
//!
//! Dropping a [`Subscription`] unsubscribes, so a connection that goes away for any reason
//! leaves nothing behind.
//!
//! Whoever asks ([`Registry::watch_new_channels`]: the first-subscription re-check, the
//! cluster's interest) is told of each channel created, with the time, through a bounded
//! queue of its own: a full queue drops the notice and counts it
//! ([`Registry::new_channel_drops`]), so subscribing never waits.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use foldhash::fast::FixedState;
use foldhash::HashMap;
use parking_lot::{Mutex, RwLock};
use slab::Slab;

use crate::message::{ChannelName, Message};
use crate::patterns::{PatternSubscription, Patterns};
use crate::subscriber::{Delivery, Subscriber, Transport};

const SHARDS: usize = 64;

/// One lock's worth of the channel map.
type Shard = Mutex<HashMap<ChannelName, Arc<Channel>>>;

/// Subscribers by channel on this node.
pub struct Registry {
    shards: Box<[Shard]>,
    hasher: FixedState,
    channels: AtomicUsize,
    subscriptions: AtomicUsize,
    /// Told of each channel created (see [`Registry::watch_new_channels`]); locked only
    /// when a channel is created or a watcher added.
    new_channels: Mutex<Vec<Watcher>>,
    /// Subscribers by channel-name pattern ([`crate::patterns`]).
    patterns: Arc<Patterns>,
}

/// One watcher of new channels: its queue and its count of notices dropped.
struct Watcher {
    tx: tokio::sync::mpsc::Sender<NewChannel>,
    dropped: Arc<AtomicU64>,
}

/// The receiving end of [`Registry::watch_new_channels`].
pub struct NewChannels {
    queue: tokio::sync::mpsc::Receiver<NewChannel>,
    dropped: Arc<AtomicU64>,
}

impl NewChannels {
    /// The next channel created, in creation order; None once the registry is gone.
    pub async fn recv(&mut self) -> Option<NewChannel> {
        self.queue.recv().await
    }

    /// A notice already queued, if any.
    pub fn try_recv(&mut self) -> Option<NewChannel> {
        self.queue.try_recv().ok()
    }

    /// Notices dropped because this queue was full, since the last call.
    pub fn take_dropped(&self) -> u64 {
        self.dropped.swap(0, Ordering::Relaxed)
    }
}

/// A channel created on this node (it got its first subscriber) and when.
pub type NewChannel = (Instant, ChannelName);

/// One channel's subscribers.
pub struct Channel {
    name: ChannelName,
    /// Read-locked by each fan-out (several parts of one at once, see [`Found::fan_out_part`]),
    /// write-locked to subscribe or leave.
    inner: RwLock<ChannelInner>,
    /// Into how many parts the lanes split this channel's last wide fan-out (0: none yet);
    /// see `crate::lanes` for why a change waits for the lane to be idle.
    parts: AtomicU8,
}

struct ChannelInner {
    subscribers: Slab<Arc<dyn Subscriber>>,
    /// Set when the last subscriber left; a dead channel is never subscribed to again.
    dead: bool,
}

/// Counts from one fan-out, for metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FanOutCount {
    /// Subscribers that were handed the batch.
    pub subscribers: u32,
    /// Messages written or queued, summed over subscribers, by [`Transport::index`].
    pub sent: [u64; Transport::ALL.len()],
    /// Messages lost because a subscriber was too slow (it is being disconnected).
    pub dropped_slow: u64,
    /// Messages not delivered because the subscriber was already closing.
    pub closed: u64,
}

/// A channel found by [`Registry::find`]. Holding it keeps the channel's subscriber list
/// (not its subscribers' connections) alive; a subscriber that leaves meanwhile is not
/// handed anything by a later fan-out, as the walk takes the channel's lock.
#[derive(Clone)]
pub struct Found(Arc<Channel>);

impl Found {
    /// Hands `messages` (all on this channel, in order) to every subscriber it has now.
    pub fn fan_out(&self, messages: &[Arc<Message>]) -> FanOutCount {
        walk(&self.0.name, &self.0.inner.read(), messages)
    }

    /// True if both are the same channel (not one that replaced the other meanwhile).
    pub fn is(&self, other: &Found) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// [`Found::fan_out`], but only if the channel has at most `max` subscribers (one lock
    /// for the check and the walk); `None`, having handed nothing, otherwise.
    pub fn fan_out_if_at_most(&self, max: usize, messages: &[Arc<Message>]) -> Option<FanOutCount> {
        let inner = self.0.inner.read();
        (inner.subscribers.len() <= max).then(|| walk(&self.0.name, &inner, messages))
    }

    /// Hands `messages` to the subscribers in part `part` of `parts`: those whose slot
    /// number is `part` modulo `parts`. A slot keeps its number while its subscriber stays,
    /// so with the same `parts` a subscriber is always in the same part. Parts are walked
    /// under a shared lock, so several threads write one channel at once.
    pub fn fan_out_part(
        &self,
        part: usize,
        parts: usize,
        messages: &[Arc<Message>],
    ) -> FanOutCount {
        let inner = self.0.inner.read();
        let slots = &inner.subscribers;
        let mut count = FanOutCount::default();
        let mut key = part;
        // a slab's slots are numbered from zero up to its capacity
        while key < slots.capacity() {
            if let Some(sub) = slots.get(key) {
                deliver_one(&self.0.name, sub.as_ref(), messages, &mut count);
            }
            key += parts.max(1);
        }
        count
    }

    /// How many subscribers the channel has now.
    pub fn len(&self) -> usize {
        self.0.inner.read().subscribers.len()
    }

    /// True if the channel has no subscriber now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records that the channel's next wide fan-out is split into `parts`; returns the count
    /// its previous one used (0: none yet).
    pub(crate) fn swap_parts(&self, parts: u8) -> u8 {
        self.0.parts.swap(parts, Ordering::AcqRel)
    }
}

fn deliver_one(
    channel: &str,
    sub: &dyn Subscriber,
    messages: &[Arc<Message>],
    count: &mut FanOutCount,
) {
    count.subscribers += 1;
    match sub.deliver(channel, messages) {
        Delivery::Sent(n) => count.sent[sub.transport().index()] += u64::from(n),
        Delivery::Skipped => {}
        Delivery::DroppedSlow(n) => count.dropped_slow += u64::from(n),
        Delivery::Closed(n) => count.closed += u64::from(n),
    }
}

fn walk(channel: &str, inner: &ChannelInner, messages: &[Arc<Message>]) -> FanOutCount {
    let mut count = FanOutCount::default();
    for (_, sub) in inner.subscribers.iter() {
        deliver_one(channel, sub.as_ref(), messages, &mut count);
    }
    count
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Arc<Registry> {
        Arc::new(Registry {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(HashMap::default()))
                .collect(),
            hasher: FixedState::with_seed(0x6772_6970),
            channels: AtomicUsize::new(0),
            subscriptions: AtomicUsize::new(0),
            new_channels: Mutex::new(Vec::new()),
            patterns: Arc::default(),
        })
    }

    /// Subscribes `subscriber` to every channel whose name matches `pattern` (MQTT
    /// topic-filter syntax); None when the node holds [`crate::patterns::MAX_PATTERNS`].
    pub fn subscribe_pattern(
        &self,
        pattern: &str,
        subscriber: Arc<dyn Subscriber>,
    ) -> Option<PatternSubscription> {
        self.patterns.subscribe(pattern, subscriber)
    }

    /// Hands `messages` of `channel` to the pattern subscribers it matches; nothing (one
    /// atomic load) while there are none.
    pub fn fan_out_patterns(
        &self,
        channel: &str,
        messages: &[Arc<Message>],
    ) -> Option<FanOutCount> {
        self.patterns
            .any()
            .then(|| self.patterns.fan_out(channel, messages))
    }

    /// From now on, each channel created is sent to the returned queue, which holds at most
    /// `capacity` (more are dropped and counted there). A watcher that drops its queue is
    /// forgotten at the next channel created.
    pub fn watch_new_channels(&self, capacity: usize) -> NewChannels {
        let (tx, queue) = tokio::sync::mpsc::channel(capacity.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        self.new_channels.lock().push(Watcher {
            tx,
            dropped: dropped.clone(),
        });
        NewChannels { queue, dropped }
    }

    /// The channels that have subscribers now (a walk over the whole map, one lock at a
    /// time: for a periodic check, not for a hot path).
    pub fn channel_names(&self) -> Vec<ChannelName> {
        let mut names = Vec::with_capacity(self.channel_count());
        for shard in self.shards.iter() {
            names.extend(shard.lock().keys().cloned());
        }
        names
    }

    fn shard(&self, channel: &str) -> &Shard {
        &self.shards[(self.hasher.hash_one(channel) as usize) % SHARDS]
    }

    /// Subscribes `subscriber` to `channel` until the returned handle is dropped.
    pub fn subscribe(
        self: &Arc<Self>,
        channel: &str,
        subscriber: Arc<dyn Subscriber>,
    ) -> Subscription {
        let mut shard = self.shard(channel).lock();
        loop {
            let chan = match shard.get(channel) {
                Some(c) => c.clone(),
                None => {
                    let c = Arc::new(Channel {
                        name: Arc::from(channel),
                        inner: RwLock::new(ChannelInner {
                            subscribers: Slab::new(),
                            dead: false,
                        }),
                        parts: AtomicU8::new(0),
                    });
                    shard.insert(c.name.clone(), c.clone());
                    self.channels.fetch_add(1, Ordering::Relaxed);
                    self.tell_new(&c.name);
                    c
                }
            };
            let mut inner = chan.inner.write();
            if inner.dead {
                // its last subscriber left and has not yet removed it from the map
                drop(inner);
                shard.remove(channel);
                self.channels.fetch_sub(1, Ordering::Relaxed);
                continue;
            }
            let key = inner.subscribers.insert(subscriber);
            drop(inner);
            self.subscriptions.fetch_add(1, Ordering::Relaxed);
            return Subscription {
                registry: self.clone(),
                channel: chan,
                key,
            };
        }
    }

    fn tell_new(&self, name: &ChannelName) {
        let mut watchers = self.new_channels.lock();
        if watchers.is_empty() {
            return;
        }
        let now = Instant::now();
        watchers.retain(|w| match w.tx.try_send((now, name.clone())) {
            Ok(()) => true,
            Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                w.dropped.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => false,
        });
    }

    fn unsubscribe(&self, channel: &Arc<Channel>, key: usize) {
        let now_dead = {
            let mut inner = channel.inner.write();
            if inner.subscribers.try_remove(key).is_none() {
                return;
            }
            if inner.subscribers.is_empty() {
                inner.dead = true;
                // give the slab's memory back before the channel is dropped
                inner.subscribers = Slab::new();
                true
            } else {
                false
            }
        };
        self.subscriptions.fetch_sub(1, Ordering::Relaxed);
        if now_dead {
            let mut shard = self.shard(&channel.name).lock();
            if shard
                .get(&channel.name)
                .is_some_and(|c| Arc::ptr_eq(c, channel))
            {
                shard.remove(&channel.name);
                self.channels.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// Hands `messages` (all on `channel`, in order) to every subscriber of the channel.
    pub fn fan_out(&self, channel: &str, messages: &[Arc<Message>]) -> FanOutCount {
        self.find(channel)
            .map_or_else(FanOutCount::default, |c| c.fan_out(messages))
    }

    /// The channel with its subscribers now, if it has any: fan out to it with
    /// [`Found::fan_out`] (here or on another thread) without looking it up again.
    pub fn find(&self, channel: &str) -> Option<Found> {
        self.shard(channel).lock().get(channel).cloned().map(Found)
    }

    /// Calls [`Subscriber::recover`] on every subscriber of `channel`, or of every channel
    /// when `channel` is None (a rare admin command: it walks the whole registry).
    pub fn recover(&self, channel: Option<&str>) -> usize {
        let channels: Vec<Arc<Channel>> = match channel {
            Some(name) => self
                .shard(name)
                .lock()
                .get(name)
                .cloned()
                .into_iter()
                .collect(),
            None => self
                .shards
                .iter()
                .flat_map(|s| s.lock().values().cloned().collect::<Vec<_>>())
                .collect(),
        };
        let mut count = 0;
        for chan in channels {
            let inner = chan.inner.read();
            for (_, sub) in inner.subscribers.iter() {
                sub.recover();
                count += 1;
            }
        }
        count
    }

    /// Calls [`Subscriber::recheck`] on every subscriber of `channel`; returns how many
    /// recover.
    pub fn recheck(&self, channel: &str, last_id: &str) -> usize {
        let Some(chan) = self.shard(channel).lock().get(channel).cloned() else {
            return 0;
        };
        let inner = chan.inner.read();
        inner
            .subscribers
            .iter()
            .filter(|(_, sub)| sub.recheck(channel, last_id))
            .count()
    }

    /// Number of subscribers on `channel` now.
    pub fn subscriber_count(&self, channel: &str) -> usize {
        self.shard(channel)
            .lock()
            .get(channel)
            .map_or(0, |c| c.inner.read().subscribers.len())
    }

    /// Channels with at least one subscriber.
    pub fn channel_count(&self) -> usize {
        self.channels.load(Ordering::Relaxed)
    }

    /// Subscriptions, summed over channels.
    pub fn subscription_count(&self) -> usize {
        self.subscriptions.load(Ordering::Relaxed)
    }
}

/// One subscriber's place in one channel; dropping it unsubscribes.
pub struct Subscription {
    registry: Arc<Registry>,
    channel: Arc<Channel>,
    key: usize,
}

impl Subscription {
    /// The channel subscribed to.
    pub fn channel(&self) -> &str {
        &self.channel.name
    }

    /// The channel's name as the registry holds it: the fan-out hands subscribers this very
    /// string, so one that keeps it can recognise the channel by address.
    pub fn name(&self) -> &Arc<str> {
        &self.channel.name
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.registry.unsubscribe(&self.channel, self.key);
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("channel", &self.channel.name)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[derive(Default)]
    struct Counting(AtomicU32);
    impl Subscriber for Counting {
        fn transport(&self) -> Transport {
            Transport::HttpStream
        }
        fn deliver(&self, _: &str, messages: &[Arc<Message>]) -> Delivery {
            self.0.fetch_add(messages.len() as u32, Ordering::Relaxed);
            Delivery::Sent(messages.len() as u32)
        }
    }

    /// Recovers when asked about a last id other than "same".
    struct Rechecking;
    impl Subscriber for Rechecking {
        fn transport(&self) -> Transport {
            Transport::HttpResponse
        }
        fn deliver(&self, _: &str, _: &[Arc<Message>]) -> Delivery {
            Delivery::Skipped
        }
        fn recheck(&self, _: &str, last_id: &str) -> bool {
            last_id != "same"
        }
    }

    #[test]
    fn new_channels_are_queued_within_the_bound() {
        let reg = Registry::new();
        let _before = reg.subscribe("unwatched", Arc::new(Rechecking));
        let mut rx = reg.watch_new_channels(2);
        let mut other = reg.watch_new_channels(8);
        let gone = reg.watch_new_channels(1);
        drop(gone);
        let subs: Vec<_> = ["a", "a", "b", "c", "d"]
            .iter()
            .map(|c| reg.subscribe(c, Arc::new(Rechecking)))
            .collect();
        let got: Vec<_> = std::iter::from_fn(|| rx.try_recv())
            .map(|(_, c)| c.to_string())
            .collect();
        assert_eq!(got, ["a", "b"], "a once, c and d past the bound");
        let got: Vec<_> = std::iter::from_fn(|| other.try_recv())
            .map(|(_, c)| c.to_string())
            .collect();
        assert_eq!(got, ["a", "b", "c", "d"], "each watcher has its own queue");
        assert_eq!(rx.take_dropped(), 2);
        assert_eq!(other.take_dropped(), 0);
        let mut names: Vec<_> = reg.channel_names().iter().map(|c| c.to_string()).collect();
        names.sort();
        assert_eq!(names, ["a", "b", "c", "d", "unwatched"]);
        assert_eq!(rx.take_dropped(), 0, "taken");
        assert_eq!(reg.recheck("a", "moved"), 2);
        assert_eq!(reg.recheck("a", "same"), 0);
        assert_eq!(reg.recheck("none", "moved"), 0);
        drop(subs);
    }

    #[test]
    fn subscribe_fan_out_and_leave_nothing_behind() {
        let reg = Registry::new();
        let a = Arc::new(Counting::default());
        let b = Arc::new(Counting::default());
        let sa = reg.subscribe("x", a.clone());
        let sb = reg.subscribe("x", b.clone());
        let sc = reg.subscribe("y", b.clone());
        assert_eq!((reg.channel_count(), reg.subscription_count()), (2, 3));
        let count = reg.fan_out("x", &[]);
        assert_eq!(count.subscribers, 2);
        drop(sa);
        assert_eq!(reg.subscriber_count("x"), 1);
        drop(sb);
        drop(sc);
        assert_eq!((reg.channel_count(), reg.subscription_count()), (0, 0));
        assert!(reg.shards.iter().all(|s| s.lock().is_empty()));
        // a channel can come back after dying
        let _s = reg.subscribe("x", a);
        assert_eq!((reg.channel_count(), reg.subscriber_count("x")), (1, 1));
    }

    #[test]
    fn concurrent_churn_leaves_registry_empty() {
        let reg = Registry::new();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let reg = reg.clone();
                std::thread::spawn(move || {
                    for i in 0..2000 {
                        let s: Arc<dyn Subscriber> = Arc::new(Counting::default());
                        let ch = format!("c{}", (i + t) % 7);
                        let sub = reg.subscribe(&ch, s);
                        reg.fan_out(&ch, &[]);
                        drop(sub);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!((reg.channel_count(), reg.subscription_count()), (0, 0));
        assert!(reg.shards.iter().all(|s| s.lock().is_empty()));
    }
}
