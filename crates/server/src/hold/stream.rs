//! Stream holds (`Grip-Hold: stream`, SSE included): the origin's response head and body go
//! out at once, then every published `http-stream` message is appended, until the client
//! leaves, falls too far behind, or a publisher sends `close`.
//!
//! HTTP/1.1 clients get the stream chunked, each message as the one chunk encoded once for
//! all subscribers; HTTP/1.0 clients get raw content and the end of the stream is the end
//! of the connection; HTTP/2 streams get raw content as DATA frames (a head of their own
//! first, [`Sink::enqueue_head`]). Keep-alive data (`Grip-Keep-Alive`) goes out when the stream has been
//! quiet for its timeout (`idle` mode) or on a fixed period (`interval` mode).
//!
//! At shutdown the drain ends the stream with its last chunk (the connection then closes);
//! an SSE stream (`text/event-stream`) first gets a `retry:` line so `EventSource` reconnects
//! soon ([`crate::drain`]).

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use gripway_broker::message::Encoding;
use gripway_broker::{Delivery, Message, StreamAction, Subscriber, Subscription, Transport};
use gripway_proto::chunked::{encode_chunk, LAST_CHUNK};
use gripway_proto::http1::{write_response_head, Version};
use gripway_proto::instruct::{KeepAlive, KeepAliveMode};
use http::header::{HeaderValue, CONTENT_LENGTH, TRANSFER_ENCODING};
use rand::Rng;

use super::filters::{admit, Admit, Filters};
use super::link_stream::{self, LinkShared, LinkTask, Trigger};
use super::sink::{Batch, Ending, Frame, Intake, Sink, SinkState, Wake};
use super::{HoldEnd, HoldPlan};
use crate::drain::{sse_retry_line, Drainable};
use crate::metrics::ConnKind;
use crate::relay::set_connection;
use crate::transport::ClientConn;
use crate::Shared;

pub(super) static END_OF_STREAM: Bytes = Bytes::from_static(LAST_CHUNK);

/// Bytes of a stream subscriber's state shared with the broker (for the budget test).
#[cfg(test)]
pub(crate) const STATE_SIZE: usize = std::mem::size_of::<StreamSub>();

/// A stream subscriber: the socket, and how to frame messages for it.
pub(super) struct StreamSub {
    pub(super) sink: Sink,
    pub(super) chunked: bool,
    /// Server-sent events: told to reconnect soon when the server drains.
    sse: bool,
    /// Write an SSE `id:` line from the item id when the content has none (route `sse_id`).
    sse_id: bool,
    filters: Option<Box<Filters>>,
    /// Next-link state, only for streams that have a next link.
    pub(super) link: Option<Box<LinkShared>>,
}

impl Drainable for StreamSub {
    fn drain(&self) {
        let mut st = self.sink.lock();
        if Sink::is_closed(&st) {
            return;
        }
        if self.sse {
            let retry = Bytes::from(sse_retry_line());
            let frame = if self.chunked {
                encode_chunk(&retry)
            } else {
                retry
            };
            self.sink.send(&mut st, &[&frame]);
        }
        if self.chunked {
            self.sink.send(&mut st, &[&END_OF_STREAM]);
        }
        self.sink.finish(&mut st);
    }
}

impl Subscriber for StreamSub {
    fn transport(&self) -> Transport {
        Transport::HttpStream
    }

    fn deliver(&self, channel: &str, messages: &[Arc<Message>]) -> Delivery {
        match &self.link {
            Some(link) => link_stream::deliver(self, link, channel, messages),
            None => {
                let mut st = self.sink.lock();
                if Sink::is_closed(&st) {
                    return Delivery::Closed(messages.len() as u32);
                }
                // held back while history is read (never for a stream with a next link)
                match self.sink.held(&mut st, messages) {
                    Intake::Deliver => self.deliver_locked(&mut st, channel, messages),
                    Intake::Kept => Delivery::Sent(messages.len() as u32),
                    Intake::Slow => Delivery::DroppedSlow(messages.len() as u32),
                    Intake::Filtered(pass) => self.deliver_locked(&mut st, channel, &pass),
                }
            }
        }
    }

    fn recover(&self) {
        if let Some(link) = &self.link {
            link.request(self, Trigger::Recover);
        }
    }

    fn recheck(&self, channel: &str, last_id: &str) -> bool {
        let behind = self.link.as_ref().filter(|l| l.behind(channel, last_id));
        if let Some(link) = behind {
            link.request(self, Trigger::Recover);
        }
        behind.is_some()
    }
}

impl StreamSub {
    /// Writes `messages` (framed, filtered) to the client.
    pub(super) fn deliver_now(&self, channel: &str, messages: &[Arc<Message>]) -> Delivery {
        let mut st = self.sink.lock();
        if Sink::is_closed(&st) {
            return Delivery::Closed(messages.len() as u32);
        }
        self.deliver_locked(&mut st, channel, messages)
    }

    /// Writes `messages` of `channel` (under the sink's lock).
    fn deliver_locked(
        &self,
        st: &mut SinkState,
        channel: &str,
        messages: &[Arc<Message>],
    ) -> Delivery {
        let mut batch = Batch::new();
        let mut close = false;
        let mut own = 0;
        for msg in messages {
            let Some(format) = msg.http_stream() else {
                continue;
            };
            let admit = admit(
                self.filters.as_deref(),
                format.content_filters,
                channel,
                msg,
            );
            if admit == Admit::No {
                continue;
            }
            let frame = match format.action {
                StreamAction::Send if admit == Admit::Transformed => {
                    // content filters: this subscriber's own bytes (what is batched goes first)
                    let Some(content) = msg.stream_content() else {
                        continue;
                    };
                    if !batch.send(&self.sink, st) || !self.send_transformed(st, channel, content) {
                        return Delivery::DroppedSlow(messages.len() as u32);
                    }
                    own += 1;
                    None
                }
                StreamAction::Send => {
                    let which = match (self.sse_id, self.chunked) {
                        (true, true) => Encoding::SseIdChunk,
                        (true, false) => Encoding::SseIdContent,
                        (false, true) => Encoding::StreamChunk,
                        (false, false) => Encoding::StreamContent,
                    };
                    Frame::of(msg, which)
                }
                StreamAction::Close => {
                    close = true;
                    self.chunked.then_some(Frame::Bytes(&END_OF_STREAM))
                }
                StreamAction::Hint => None,
            };
            if let Some(frame) = frame {
                if !batch.push(&self.sink, st, frame) {
                    return Delivery::DroppedSlow(messages.len() as u32);
                }
            }
            if close {
                break;
            }
        }
        if !batch.send(&self.sink, st) {
            return Delivery::DroppedSlow(messages.len() as u32);
        }
        if close {
            self.sink.finish(st);
        }
        if batch.count + own == 0 {
            Delivery::Skipped
        } else {
            Delivery::Sent(batch.count + own)
        }
    }

    /// Sends `content` of `channel` as this subscriber's content filters render it (nothing
    /// when they drop it); false if the client is too slow.
    fn send_transformed(&self, st: &mut SinkState, channel: &str, content: &[u8]) -> bool {
        let Some(own) = self
            .filters
            .as_deref()
            .and_then(|f| f.transform(channel, content))
            .filter(|b| !b.is_empty())
        else {
            return true;
        };
        let frame = if self.chunked {
            encode_chunk(&own)
        } else {
            own
        };
        self.sink.send(st, &[&frame])
    }
}

/// Holds `conn` as a stream.
///
/// Everything up to the first wait happens here, before the future is made: the future
/// keeps only what the hold needs (the connection is already taken apart), not a copy of
/// this function's arguments.
pub(crate) fn run(
    shared: Arc<Shared>,
    conn: ClientConn,
    mut plan: Box<HoldPlan>,
) -> impl std::future::Future<Output = super::HoldEnd> + Send {
    // the read buffer of the request that got here is not needed while holding, nor the
    // peer's address (asked of the socket again if the connection is reused)
    let ClientConn {
        sock, mut guard, ..
    } = conn;
    guard.become_kind(ConnKind::Stream);
    // HTTP/2 streams carry raw content in DATA frames (matched, not borrowed: a borrow
    // would keep `sock` in the hold's future)
    let h2 = matches!(sock, crate::transport::ClientStream::H2(_));
    let chunked = plan.version == Version::Http11 && !h2;
    let task = plan.links.take().and_then(|mut l| {
        let (next, timeout) = l.next.take()?;
        Some(Box::new(LinkTask {
            base: l.base.clone(),
            current: l.uri.clone(),
            next: Some(next),
            timeout,
            paging: l.pager,
        }))
    });
    let sub = Arc::new(StreamSub {
        sink: Sink::new(sock, shared.config.grip.subscriber_queue_bytes),
        chunked,
        sse: plan.sse,
        sse_id: plan.sse && plan.sse_id,
        filters: Filters::new(&plan.channels, &plan.meta, &plan.prev_ids, &shared.metrics),
        link: task
            .is_some()
            .then(|| LinkShared::new(plan.channels.len(), plan.prev_ids.clone())),
    });
    {
        // queued, not written: the client sees the response only once it is subscribed, and
        // whatever is published meanwhile is queued behind it
        let mut st = sub.sink.lock();
        if sub.sink.is_h2() {
            initial_h2(&sub.sink, &mut st, &plan);
        } else {
            sub.sink.enqueue(&mut st, initial_bytes(&plan, chunked));
        }
        if plan.head_only {
            sub.sink.finish(&mut st);
        }
    }
    let reusable = plan.keep_alive && chunked;
    // a stream with a next link is recovered by its origin, as in Pushpin
    let recovering =
        !plan.head_only && task.is_none() && super::from_history::stream_recovers(&shared, &plan);
    if recovering {
        sub.sink.hold_back(&mut sub.sink.lock());
    }
    let mut subscriptions: Vec<Subscription> = if plan.head_only {
        Vec::new()
    } else {
        let registry = shared.broker.registry();
        plan.channels
            .iter()
            .map(|(c, _)| registry.subscribe(c, sub.clone() as Arc<dyn Subscriber>))
            .collect()
    };
    // boxed: only streams with keep-alives pay for one
    let keep_alive = plan
        .keep_alive_data
        .as_ref()
        .map(|k| Box::new(keep_alive_timer(k, chunked)));
    async move {
        let shared = &shared;
        if recovering {
            // boxed: only reconnecting clients pay for the read
            Box::pin(recover(shared, &sub, &plan)).await;
        }
        shared.drain.roster.enlist(&sub);
        let ending = match task.filter(|_| !plan.head_only) {
            Some(task) => {
                link_stream::start(shared, &sub, task.paging, &plan.prev_ids);
                drop(plan);
                // boxed: only linked streams pay for the next-link loop
                Box::pin(link_stream::hold(
                    shared,
                    &sub,
                    *task,
                    &mut subscriptions,
                    keep_alive.map(|k| *k),
                ))
                .await
            }
            None => {
                drop(plan);
                hold(&sub, keep_alive).await
            }
        };
        drop(subscriptions);
        shared.drain.roster.leave(&sub);
        match ending {
            Ending::Slow => {
                shared.metrics.dropped("slow-subscriber");
                HoldEnd::Close
            }
            Ending::ClientGone => HoldEnd::Close,
            // a request pipelined behind the hold was dropped: closing tells the client so
            Ending::Finished if reusable && !sub.sink.discarded_input() => {
                match Arc::try_unwrap(sub) {
                    Ok(sub) => {
                        let sock = sub.sink.into_socket();
                        match sock.peer_addr() {
                            Ok(peer) => {
                                guard.become_kind(ConnKind::Http);
                                HoldEnd::KeepAlive(ClientConn {
                                    sock,
                                    peer,
                                    buf: BytesMut::new(),
                                    guard,
                                })
                            }
                            Err(_) => HoldEnd::Close,
                        }
                    }
                    Err(_) => HoldEnd::Close,
                }
            }
            Ending::Finished => HoldEnd::Close,
        }
    }
}

/// Sends what history has for `wants`, then what the fan-out handed over meanwhile.
async fn recover(shared: &Shared, sub: &StreamSub, plan: &HoldPlan) {
    use super::from_history;
    let wants = from_history::stream_wants(plan);
    let mut found = from_history::read(shared, &wants.ids).await;
    let mut st = sub.sink.lock();
    let held = sub
        .sink
        .release(&mut st, from_history::recovered_ids(&found));
    let live = from_history::reconcile(&mut found, held);
    if wants.last_event_id {
        from_history::for_last_event_id(&mut found);
    }
    let mut sent = 0;
    for f in &found {
        if f.reach == gripway_broker::history::Reach::Gap && plan.sse {
            let channel = f.channel.strip_prefix(&*plan.prefix).unwrap_or(&f.channel);
            let event = from_history::gap_event(channel, &f.after);
            let frame = if sub.chunked {
                encode_chunk(&event)
            } else {
                event
            };
            sub.sink.send(&mut st, &[&frame]);
        }
        // a recovered `close` would end the stream the client just opened: not replayed
        let items: Vec<Arc<Message>> = f
            .items
            .iter()
            .filter(|m| !matches!(m.http_stream().map(|f| f.action), Some(StreamAction::Close)))
            .cloned()
            .collect();
        if let Delivery::Sent(n) = sub.deliver_locked(&mut st, &f.channel, &items) {
            sent += n as usize;
        }
        if f.cut && plan.sse {
            let channel = f.channel.strip_prefix(&*plan.prefix).unwrap_or(&f.channel);
            let last = f.items.last().and_then(|m| m.id()).unwrap_or(&f.after);
            let event = from_history::gap_event(channel, last);
            let frame = if sub.chunked {
                encode_chunk(&event)
            } else {
                event
            };
            sub.sink.send(&mut st, &[&frame]);
        }
    }
    from_history::count_sent(shared, sent);
    // what was held back, in fan-out order, one run of one channel at a time
    let mut start = 0;
    while start < live.len() && !Sink::is_closed(&st) {
        let channel = live[start].channel.clone();
        let end = live[start..]
            .iter()
            .position(|m| m.channel != channel)
            .map_or(live.len(), |n| start + n);
        sub.deliver_locked(&mut st, &channel, &live[start..end]);
        start = end;
    }
}

pub(super) struct KeepAliveTimer {
    pub(super) data: Bytes,
    pub(super) period: Duration,
    pub(super) idle: bool,
}

/// The keep-alive of `k`, framed for the stream.
pub(super) fn keep_alive_timer(k: &KeepAlive, chunked: bool) -> KeepAliveTimer {
    KeepAliveTimer {
        data: if chunked {
            encode_chunk(&k.data)
        } else {
            k.data.clone()
        },
        period: Duration::from_secs(u64::from(k.timeout_secs.max(1))),
        idle: k.mode == KeepAliveMode::Idle,
    }
}

/// Waits for the stream to end, sending keep-alives when due.
async fn hold(sub: &StreamSub, keep_alive: Option<Box<KeepAliveTimer>>) -> Ending {
    let Some(ka) = keep_alive else {
        return sub.sink.wait_end().await;
    };
    // boxed: only streams with keep-alives pay for a timer
    let mut timer = Box::pin(tokio::time::sleep(jittered(ka.period)));
    sub.sink.take_activity();
    loop {
        match sub.sink.wait(Some(timer.as_mut())).await {
            Wake::End(e) => return e,
            Wake::Timer => {
                // idle mode: stay quiet if something went out during the period
                if !(ka.idle && sub.sink.take_activity()) {
                    let mut st = sub.sink.lock();
                    if !sub.sink.send(&mut st, &[&ka.data]) {
                        return Ending::Slow;
                    }
                    drop(st);
                    sub.sink.take_activity();
                }
                timer
                    .as_mut()
                    .reset(tokio::time::Instant::now() + jittered(ka.period));
            }
            Wake::Readable | Wake::Notified => {}
        }
    }
}

/// The period less up to a second at random, so that streams opened together do not all
/// send their keep-alives in the same instant.
pub(super) fn jittered(period: Duration) -> Duration {
    if period <= Duration::from_secs(1) {
        return period;
    }
    period - Duration::from_millis(rand::rng().random_range(0..1000))
}

/// The response head and the origin's initial body, as the client must see them first.
fn initial_bytes(plan: &HoldPlan, chunked: bool) -> Bytes {
    let r = &plan.response;
    let mut headers = r.headers.clone();
    headers.remove(CONTENT_LENGTH);
    let bodyless = r.status < 200 || r.status == 204 || r.status == 304;
    if chunked && !bodyless {
        headers.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
    }
    set_connection(&mut headers, plan.version, chunked && plan.keep_alive);
    let mut out = BytesMut::with_capacity(256 + r.body.len());
    write_response_head(
        &mut out,
        plan.version,
        r.status,
        r.reason.as_deref(),
        &headers,
    );
    if !plan.head_only && !r.body.is_empty() {
        if chunked {
            out.extend_from_slice(&encode_chunk(&r.body));
        } else {
            out.extend_from_slice(&r.body);
        }
    }
    out.freeze()
}

/// [`initial_bytes`] for an HTTP/2 stream: the head, then the initial body.
fn initial_h2(sink: &Sink, st: &mut SinkState, plan: &HoldPlan) {
    let r = &plan.response;
    let mut headers = r.headers.clone();
    headers.remove(CONTENT_LENGTH);
    sink.enqueue_head(st, crate::transport::h2::response_head(r.status, headers));
    if !plan.head_only && !r.body.is_empty() {
        sink.enqueue(st, r.body.clone());
    }
}
