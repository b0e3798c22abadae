//! A stream hold with a `Grip-Link; rel=next` (reference §1.7, §2.4): the origin's next link
//! is fetched and its body appended to the client's stream when
//!
//! * the hold starts as a pager (a no-hold response with only a next link) or a page asks
//!   for the next one (no hold, another next link): at once, then paced by the client;
//! * a published `hint` arrives ([`Trigger::Hint`]);
//! * a published item's `prev-id` is not the id the stream last got on that channel, or the
//!   channel's last id already differs when the hold starts ([`Trigger::PrevId`]);
//! * not every channel got a message within the link's `timeout` ([`Trigger::Timeout`]);
//! * `POST /recover`, or the re-check after a channel's first subscription
//!   ([`Trigger::Recover`]).
//!
//! The next response may carry GRIP headers (a stream hold, or none) that replace the
//! channels, prev-ids, keep-alive and next link. While a fetch is wanted or running, what is
//! published is queued ([`MAX_PENDING`] items, more are dropped) and replayed after it, less
//! any leading items that do not follow the new prev-ids. A failed fetch is retried up to
//! [`RETRY_MAX`] times with growing pauses when nothing of its response was written; else the
//! stream ends. Fetches are at least `grip.next_link_min_interval_ms` apart (a page that
//! wrote something is followed at once), so `timeout=0` or a hint storm cannot spin.
//!
//! The fan-out side ([`deliver`]) takes the link lock, then the sink lock; the task takes
//! them in the same order.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gripway_broker::{Delivery, Message, StreamAction, Subscriber, Subscription};
use gripway_proto::chunked::encode_chunk;
use gripway_proto::instruct::{
    is_grip_response, parse_instruct, HoldMode, Instruct, InstructLimits,
};
use parking_lot::Mutex;
use rand::Rng;

use super::next_link::{fetch_next, resolve, LinkBase};
use super::sink::{Ending, Wake};
use super::stream::{jittered, keep_alive_timer, KeepAliveTimer, StreamSub, END_OF_STREAM};
use crate::Shared;

/// Items queued while a next-link fetch is wanted or running; more are dropped.
pub(crate) const MAX_PENDING: usize = 100;
/// Times a failed next-link fetch is tried again (Pushpin's `RETRY_MAX`).
pub(crate) const RETRY_MAX: u32 = 5;
/// First pause before trying a failed fetch again; doubles each time, plus up to 1 s.
const RETRY_BASE: Duration = Duration::from_secs(1);

/// Why the next link is fetched (the `reason` of `gripway_retries_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trigger {
    /// Paging: the previous response had no hold and a next link.
    Page,
    /// Not every channel got a message within the link's timeout.
    Timeout,
    /// A published `hint`.
    Hint,
    /// A prev-id that does not follow what the stream got.
    PrevId,
    /// `POST /recover` or the first-subscription re-check.
    Recover,
}

impl Trigger {
    fn label(self) -> &'static str {
        match self {
            Trigger::Page => "next-link-page",
            Trigger::Timeout => "next-link-timeout",
            Trigger::Hint => "next-link-hint",
            Trigger::PrevId => "next-link-prev-id",
            Trigger::Recover => "next-link-recover",
        }
    }
}

/// What the fan-out and the connection's task share about a linked stream.
#[derive(Default)]
pub(crate) struct LinkShared {
    inner: Mutex<LinkInner>,
}

#[derive(Default)]
struct LinkInner {
    /// (channel with prefix, the id the stream last got on it), for channels with a prev-id.
    prev_ids: Vec<(String, String)>,
    /// Channels subscribed (for "every channel got a message").
    channels: usize,
    /// Channels that got a message in the current timeout period.
    active: Vec<String>,
    /// When every channel had got a message (restarts the timeout period).
    all_active_at: Option<Instant>,
    /// A fetch is wanted.
    want: Option<Trigger>,
    /// A fetch is running.
    fetching: bool,
    /// Published meanwhile: (channel, item).
    pending: Vec<(Arc<str>, Arc<Message>)>,
}

impl LinkShared {
    /// State for a stream on `channels` with these prev-ids.
    pub(crate) fn new(channels: usize, prev_ids: Vec<(String, String)>) -> Box<LinkShared> {
        Box::new(LinkShared {
            inner: Mutex::new(LinkInner {
                prev_ids,
                channels,
                ..LinkInner::default()
            }),
        })
    }

    /// True if the stream's prev-id on `channel` is not `last_id` (it missed something).
    pub(crate) fn behind(&self, channel: &str, last_id: &str) -> bool {
        let li = self.inner.lock();
        li.prev_ids
            .iter()
            .any(|(c, p)| c == channel && p != last_id)
    }

    /// Asks for the next link to be fetched (the task is woken through the sink).
    pub(crate) fn request(&self, sub: &StreamSub, trigger: Trigger) {
        let mut li = self.inner.lock();
        if li.want.is_none() {
            li.want = Some(trigger);
        }
        drop(li);
        let mut st = sub.sink.lock();
        sub.sink.notify(&mut st);
    }
}

/// The fan-out's delivery to a linked stream: prev-id chain and `hint` checked, activity
/// recorded, items queued while a fetch is wanted or running.
pub(crate) fn deliver(
    sub: &StreamSub,
    link: &LinkShared,
    channel: &str,
    messages: &[Arc<Message>],
) -> Delivery {
    let mut li = link.inner.lock();
    deliver_locked(sub, &mut li, channel, messages)
}

fn deliver_locked(
    sub: &StreamSub,
    li: &mut LinkInner,
    channel: &str,
    messages: &[Arc<Message>],
) -> Delivery {
    if li.fetching || li.want.is_some() {
        let room = MAX_PENDING.saturating_sub(li.pending.len());
        let name: Arc<str> = Arc::from(channel);
        for msg in messages.iter().filter(|m| m.http_stream().is_some()) {
            if li.pending.len() >= MAX_PENDING {
                break;
            }
            li.pending.push((name.clone(), msg.clone()));
        }
        return if room == 0 {
            Delivery::DroppedSlow(messages.len() as u32)
        } else {
            Delivery::Skipped
        };
    }
    let mut take = messages.len();
    let mut wanted = None;
    for (i, msg) in messages.iter().enumerate() {
        let Some(format) = msg.http_stream() else {
            continue;
        };
        if let Some(at) = li.prev_ids.iter().position(|(c, _)| c == channel) {
            if msg.prev_id().map(|p| &**p) != Some(li.prev_ids[at].1.as_str()) {
                take = i;
                wanted = Some(Trigger::PrevId);
                break;
            }
            match msg.id() {
                Some(id) => li.prev_ids[at].1 = id.to_string(),
                None => {
                    li.prev_ids.remove(at);
                }
            }
        }
        if format.action == StreamAction::Hint {
            take = i;
            wanted = Some(Trigger::Hint);
            break;
        }
        if !li.active.iter().any(|c| c == channel) {
            li.active.push(channel.to_string());
            if li.active.len() >= li.channels {
                li.active.clear();
                li.all_active_at = Some(Instant::now());
            }
        }
    }
    let delivery = if take == 0 {
        Delivery::Skipped
    } else {
        sub.deliver_now(channel, &messages[..take])
    };
    if let Some(trigger) = wanted {
        li.want = Some(trigger);
        let mut st = sub.sink.lock();
        sub.sink.notify(&mut st);
    }
    delivery
}

/// What the connection's task keeps about its next link.
pub(crate) struct LinkTask {
    pub(crate) base: LinkBase,
    /// The URI the last response came from (links resolve against it).
    pub(crate) current: String,
    /// The resolved next link, if any.
    pub(crate) next: Option<String>,
    /// The recovery-poll period.
    pub(crate) timeout: Duration,
    /// No hold yet: a pager following its links.
    pub(crate) paging: bool,
}

/// Holds a linked stream until it ends: keep-alives, recovery polls and next-link fetches.
pub(crate) async fn hold(
    shared: &Arc<Shared>,
    sub: &Arc<StreamSub>,
    mut task: LinkTask,
    subscriptions: &mut Vec<Subscription>,
    mut keep_alive: Option<KeepAliveTimer>,
) -> Ending {
    let Some(link) = sub.link.as_deref() else {
        return sub.sink.wait_end().await;
    };
    let min_interval = shared.config.grip.next_link_min_interval;
    let mut timer = Box::pin(tokio::time::sleep(Duration::ZERO));
    let mut ka_due = keep_alive
        .as_ref()
        .map(|ka| Instant::now() + jittered(ka.period));
    let mut period_start = Instant::now();
    let mut last_fetch: Option<Instant> = None;
    let mut last_page_wrote = false;
    sub.sink.take_activity();
    loop {
        let now = Instant::now();
        let want = link.inner.lock().want;
        let mut fetch_due = None;
        if let Some(trigger) = want {
            match task.next.clone() {
                None => {
                    // nothing to fetch (a hint without a next link): carry on
                    replay(sub, link, false);
                }
                Some(uri) => {
                    let immediate = trigger == Trigger::Page && last_page_wrote;
                    let earliest = match last_fetch {
                        Some(t) if !immediate => t + min_interval,
                        _ => now,
                    };
                    if earliest <= now && (trigger != Trigger::Page || sub.sink.is_drained()) {
                        match fetch(shared, sub, link, &mut task, &uri, trigger).await {
                            Fetched::End(e) => return e,
                            Fetched::Failed => {
                                end_stream(sub);
                                return sub.sink.wait_end().await;
                            }
                            Fetched::Done(instruct, wrote) => {
                                last_fetch = Some(Instant::now());
                                last_page_wrote = wrote;
                                if let Some(ending) = apply(
                                    shared,
                                    sub,
                                    link,
                                    &mut task,
                                    subscriptions,
                                    &mut keep_alive,
                                    instruct,
                                ) {
                                    return ending;
                                }
                                ka_due = keep_alive
                                    .as_ref()
                                    .map(|ka| Instant::now() + jittered(ka.period));
                                period_start = Instant::now();
                            }
                        }
                        continue;
                    }
                    fetch_due = Some(earliest.max(now + Duration::from_millis(10)));
                }
            }
        }
        let poll_due = (task.next.is_some() && !task.paging && want.is_none())
            .then(|| period_start + task.timeout);
        let deadline = [ka_due, poll_due, fetch_due].into_iter().flatten().min();
        let wake = match deadline {
            Some(d) => {
                timer.as_mut().reset(d.into());
                sub.sink.wait(Some(timer.as_mut())).await
            }
            None => sub.sink.wait(None).await,
        };
        match wake {
            Wake::End(e) => return e,
            Wake::Readable | Wake::Notified => {}
            Wake::Timer => {
                let now = Instant::now();
                if let (Some(ka), Some(due)) = (&keep_alive, ka_due) {
                    if due <= now {
                        if !(ka.idle && sub.sink.take_activity()) {
                            let mut st = sub.sink.lock();
                            if !sub.sink.send(&mut st, &[&ka.data]) {
                                return Ending::Slow;
                            }
                            drop(st);
                            sub.sink.take_activity();
                        }
                        ka_due = Some(now + jittered(ka.period));
                    }
                }
                if poll_due.is_some_and(|d| d <= now) {
                    let mut li = link.inner.lock();
                    match li.all_active_at.take() {
                        Some(at) if at + task.timeout > now => period_start = at,
                        _ => {
                            li.active.clear();
                            if li.want.is_none() {
                                li.want = Some(Trigger::Timeout);
                            }
                            period_start = now;
                        }
                    }
                }
            }
        }
    }
}

/// Ends the client's response (the last chunk when chunked).
fn end_stream(sub: &StreamSub) {
    let mut st = sub.sink.lock();
    if sub.chunked {
        sub.sink.send(&mut st, &[&END_OF_STREAM]);
    }
    sub.sink.finish(&mut st);
}

/// How a fetch went.
enum Fetched {
    /// The response was appended; its instructions (None: not a GRIP response).
    Done(Box<Instruct>, bool),
    /// The fetch failed for good: the stream ends.
    Failed,
    /// The client went away (or was too slow) meanwhile.
    End(Ending),
}

/// Fetches `uri` (with retries) and appends its body, watching the client meanwhile.
async fn fetch(
    shared: &Arc<Shared>,
    sub: &Arc<StreamSub>,
    link: &LinkShared,
    task: &mut LinkTask,
    uri: &str,
    trigger: Trigger,
) -> Fetched {
    let grip_last = {
        let mut li = link.inner.lock();
        li.want = None;
        li.fetching = true;
        if trigger == Trigger::Hint {
            // what was published after the hint is in the origin's answer
            li.pending.clear();
        }
        let prefix = task.base.route.route.prefix.as_str();
        li.prev_ids
            .iter()
            .map(|(c, id)| {
                let name = c.strip_prefix(prefix).unwrap_or(c);
                (name.to_string(), id.clone())
            })
            .collect::<Vec<_>>()
    };
    shared.metrics.retry(trigger.label());
    let work = fetch_and_append(shared, sub, &task.base, uri, &grip_last);
    let result = tokio::select! {
        r = work => r,
        e = sub.sink.wait_end() => return Fetched::End(e),
    };
    match result {
        Ok((instruct, wrote)) => {
            task.current = uri.to_string();
            Fetched::Done(instruct, wrote)
        }
        Err(reason) => {
            link.inner.lock().fetching = false;
            let refusal = crate::error::Refusal::origin(false, "next-link-failed", reason);
            shared.metrics.error(&refusal);
            refusal.log(&format!("route {}: ", task.base.route.label));
            Fetched::Failed
        }
    }
}

/// One next-link fetch, tried again while nothing of it was written.
async fn fetch_and_append(
    shared: &Shared,
    sub: &StreamSub,
    base: &LinkBase,
    uri: &str,
    grip_last: &[(String, String)],
) -> Result<(Box<Instruct>, bool), String> {
    let mut attempt = 0;
    loop {
        let error = match fetch_next(shared, base, uri, grip_last).await {
            Ok(response) => match append(shared, sub, uri, response).await {
                Ok(done) => return Ok(done),
                Err(Failure::Fatal(message)) => return Err(message),
                Err(Failure::Retry(message)) => message,
            },
            Err(e) => e.message,
        };
        if attempt >= RETRY_MAX {
            return Err(format!("Failed to retrieve next link: {error}"));
        }
        let pause = RETRY_BASE.saturating_mul(1 << attempt)
            + Duration::from_millis(rand::rng().random_range(0..1000));
        attempt += 1;
        tracing::debug!("next link {uri} failed ({error}); again in {pause:?}");
        tokio::time::sleep(pause).await;
    }
}

/// Why appending a next link's response failed.
enum Failure {
    /// Nothing was written: the fetch may be tried again.
    Retry(String),
    /// Part of it was written, or the instructions are unusable: the stream ends.
    Fatal(String),
}

/// Reads a next link's instructions and appends its body to the stream.
async fn append(
    shared: &Shared,
    sub: &StreamSub,
    uri: &str,
    mut response: crate::origin::OriginResponse,
) -> Result<(Box<Instruct>, bool), Failure> {
    let limits = InstructLimits {
        max_channels: shared.config.grip.max_channels_per_connection,
        ..InstructLimits::default()
    };
    let empty = http::HeaderMap::new();
    let headers = if is_grip_response(&response.headers) {
        &response.headers
    } else {
        &empty
    };
    let instruct = parse_instruct(200, headers, b"", &limits)
        .map_err(|e| Failure::Fatal(format!("next link {uri}: {e}")))?;
    if instruct.hold == Some(HoldMode::Response) {
        return Err(Failure::Fatal("Next link returned non-stream hold.".into()));
    }
    let idle = shared.config.proxy.response_timeout;
    let mut wrote = false;
    loop {
        let message = match tokio::time::timeout(idle, response.body.next_chunk()).await {
            Ok(Some(Ok(chunk))) => {
                let frame: Bytes = if sub.chunked {
                    encode_chunk(&chunk)
                } else {
                    chunk
                };
                let mut st = sub.sink.lock();
                if !sub.sink.send(&mut st, &[&frame]) {
                    return Err(Failure::Fatal("client too slow for the next link".into()));
                }
                wrote = true;
                continue;
            }
            Ok(None) => return Ok((Box::new(instruct), wrote)),
            Ok(Some(Err(e))) => e.message,
            Err(_) => format!("next link body idle for {idle:?}"),
        };
        return Err(if wrote {
            Failure::Fatal(message)
        } else {
            Failure::Retry(message)
        });
    }
}

/// Applies a next link's instructions; Some(ending) when the stream is over.
fn apply(
    shared: &Arc<Shared>,
    sub: &Arc<StreamSub>,
    link: &LinkShared,
    task: &mut LinkTask,
    subscriptions: &mut Vec<Subscription>,
    keep_alive: &mut Option<KeepAliveTimer>,
    instruct: Box<Instruct>,
) -> Option<Ending> {
    task.next = instruct
        .next_link
        .as_ref()
        .and_then(|n| resolve(&task.current, &n.uri));
    if let Some(n) = &instruct.next_link {
        task.timeout = Duration::from_secs(u64::from(n.timeout_secs));
    }
    if instruct.hold != Some(HoldMode::Stream) {
        if task.next.is_some() {
            // a page: follow the chain
            task.paging = true;
            link.inner.lock().want = Some(Trigger::Page);
            return None;
        }
        // the chain ends without a hold: so does the response
        link.inner.lock().fetching = false;
        end_stream(sub);
        return None;
    }
    task.paging = false;
    let route = &task.base.route.route;
    let mut names: Vec<String> = instruct
        .channels
        .iter()
        .map(|c| format!("{}{}", route.prefix, c.name))
        .collect();
    for target in &route.targets {
        for s in &target.subs {
            let name = format!("{}{}", route.prefix, s);
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    subscriptions.retain(|s| names.iter().any(|n| n == s.channel()));
    let registry = shared.broker.registry();
    for name in &names {
        if !subscriptions.iter().any(|s| s.channel() == name) {
            subscriptions.push(registry.subscribe(name, sub.clone() as Arc<dyn Subscriber>));
        }
    }
    *keep_alive = instruct
        .keep_alive
        .as_ref()
        .map(|k| keep_alive_timer(k, sub.chunked));
    let prev_ids = instruct
        .channels
        .iter()
        .filter_map(|c| Some((format!("{}{}", route.prefix, c.name), c.prev_id.clone()?)))
        .collect();
    {
        let mut li = link.inner.lock();
        li.prev_ids = prev_ids;
        li.channels = names.len();
        li.active.clear();
        li.all_active_at = None;
    }
    replay(sub, link, true);
    None
}

/// Ends a fetch: what was published meanwhile goes out, less (with `drop_stale`) leading
/// items on channels no longer subscribed or that do not follow the prev-ids.
fn replay(sub: &StreamSub, link: &LinkShared, drop_stale: bool) {
    let mut li = link.inner.lock();
    li.fetching = false;
    li.want = None;
    let mut pending = std::mem::take(&mut li.pending);
    if drop_stale {
        let keep_from = pending
            .iter()
            .position(|(c, m)| {
                li.prev_ids
                    .iter()
                    .find(|(pc, _)| pc.as_str() == c.as_ref())
                    .is_none_or(|(_, prev)| m.prev_id().map(|p| &**p) == Some(prev.as_str()))
            })
            .unwrap_or(pending.len());
        pending.drain(..keep_from);
    }
    for (channel, msg) in pending {
        deliver_locked(sub, &mut li, &channel, std::slice::from_ref(&msg));
    }
}

/// The start of a linked stream, once subscribed: a pager fetches at once; a stream whose
/// channel already moved past the origin's prev-id (Pushpin's first-hold conflict) fetches
/// its next link with `Grip-Last`. This is where proxy-owned history, when it cannot reach
/// back, falls back to the origin.
pub(crate) fn start(shared: &Shared, sub: &StreamSub, pager: bool, prev_ids: &[(String, String)]) {
    let Some(link) = sub.link.as_deref() else {
        return;
    };
    if pager {
        link.request(sub, Trigger::Page);
        return;
    }
    let conflict = prev_ids.iter().any(|(c, prev)| {
        shared
            .broker
            .last_id(c)
            .is_some_and(|last| last.as_ref() != prev.as_str())
    });
    if conflict {
        link.request(sub, Trigger::PrevId);
    }
}
