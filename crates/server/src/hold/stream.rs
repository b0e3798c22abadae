//! Stream holds (`Grip-Hold: stream`, SSE included): the origin's response head and body go
//! out at once, then every published `http-stream` message is appended, until the client
//! leaves, falls too far behind, or a publisher sends `close`.
//!
//! HTTP/1.1 clients get the stream chunked, each message as the one chunk encoded once for
//! all subscribers; HTTP/1.0 clients get raw content and the end of the stream is the end
//! of the connection. Keep-alive data (`Grip-Keep-Alive`) goes out when the stream has been
//! quiet for its timeout (`idle` mode) or on a fixed period (`interval` mode).

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use gripway_broker::{Delivery, Message, StreamAction, Subscriber, Subscription, Transport};
use gripway_proto::chunked::{encode_chunk, LAST_CHUNK};
use gripway_proto::http1::{write_response_head, Version};
use gripway_proto::instruct::KeepAliveMode;
use http::header::{HeaderValue, CONTENT_LENGTH, TRANSFER_ENCODING};
use rand::Rng;

use super::filters::{admits, Filters};
use super::sink::{Batch, Ending, Sink, Wake};
use super::{HoldEnd, HoldPlan};
use crate::conn::ClientConn;
use crate::metrics::ConnKind;
use crate::relay::set_connection;
use crate::Shared;

static END_OF_STREAM: Bytes = Bytes::from_static(LAST_CHUNK);

/// Bytes of a stream subscriber's state shared with the broker (for the budget test).
#[cfg(test)]
pub(crate) const STATE_SIZE: usize = std::mem::size_of::<StreamSub>();

/// A stream subscriber: the socket, and how to frame messages for it.
struct StreamSub {
    sink: Sink,
    chunked: bool,
    filters: Option<Box<Filters>>,
}

impl Subscriber for StreamSub {
    fn transport(&self) -> Transport {
        Transport::HttpStream
    }

    fn deliver(&self, channel: &str, messages: &[Arc<Message>]) -> Delivery {
        let mut st = self.sink.lock();
        if Sink::is_closed(&st) {
            return Delivery::Closed(messages.len() as u32);
        }
        let mut batch = Batch::new();
        let mut close = false;
        for msg in messages {
            let Some(format) = msg.http_stream() else {
                continue;
            };
            if !admits(
                self.filters.as_deref(),
                format.content_filters,
                channel,
                msg,
            ) {
                continue;
            }
            let frame = match format.action {
                StreamAction::Send if self.chunked => msg.stream_chunk(),
                StreamAction::Send => msg.stream_content(),
                StreamAction::Close => {
                    close = true;
                    self.chunked.then_some(&END_OF_STREAM)
                }
                StreamAction::Hint => None,
            };
            if let Some(frame) = frame {
                if !batch.push(&self.sink, &mut st, frame) {
                    return Delivery::DroppedSlow(messages.len() as u32);
                }
            }
            if close {
                break;
            }
        }
        if !batch.send(&self.sink, &mut st) {
            return Delivery::DroppedSlow(messages.len() as u32);
        }
        if close {
            self.sink.finish(&mut st);
        }
        if batch.count == 0 {
            Delivery::Skipped
        } else {
            Delivery::Sent(batch.count)
        }
    }
}

/// Holds `conn` as a stream.
pub(crate) async fn run(
    shared: &Arc<Shared>,
    conn: ClientConn,
    plan: Box<HoldPlan>,
) -> super::HoldEnd {
    let ClientConn {
        sock,
        peer,
        buf,
        mut guard,
    } = conn;
    // the read buffer of the request that got here is not needed while holding
    drop(buf);
    guard.become_kind(ConnKind::Stream);
    let chunked = plan.version == Version::Http11;
    let sub = Arc::new(StreamSub {
        sink: Sink::new(sock, shared.config.grip.subscriber_queue_bytes),
        chunked,
        filters: Filters::new(&plan.channels, &plan.meta),
    });
    {
        // queued, not written: the client sees the response only once it is subscribed, and
        // whatever is published meanwhile is queued behind it
        let mut st = sub.sink.lock();
        sub.sink.enqueue(&mut st, initial_bytes(&plan, chunked));
        if plan.head_only {
            sub.sink.finish(&mut st);
        }
    }
    let keep_alive = plan.keep_alive_data.as_ref().map(|k| KeepAliveTimer {
        data: if chunked {
            encode_chunk(&k.data)
        } else {
            k.data.clone()
        },
        period: Duration::from_secs(u64::from(k.timeout_secs.max(1))),
        idle: k.mode == KeepAliveMode::Idle,
    });
    let reusable = plan.keep_alive && chunked;
    let subscriptions: Vec<Subscription> = if plan.head_only {
        Vec::new()
    } else {
        let registry = shared.broker.registry();
        plan.channels
            .iter()
            .map(|(c, _)| registry.subscribe(c, sub.clone() as Arc<dyn Subscriber>))
            .collect()
    };
    drop(plan);
    let ending = hold(&sub, keep_alive).await;
    drop(subscriptions);
    match ending {
        Ending::Slow => {
            shared.metrics.dropped("slow-subscriber");
            HoldEnd::Close
        }
        Ending::ClientGone => HoldEnd::Close,
        // a request pipelined behind the hold was dropped: closing tells the client so
        Ending::Finished if reusable && !sub.sink.discarded_input() => match Arc::try_unwrap(sub) {
            Ok(sub) => {
                guard.become_kind(ConnKind::Http);
                HoldEnd::KeepAlive(ClientConn {
                    sock: sub.sink.into_socket(),
                    peer,
                    buf: BytesMut::new(),
                    guard,
                })
            }
            Err(_) => HoldEnd::Close,
        },
        Ending::Finished => HoldEnd::Close,
    }
}

struct KeepAliveTimer {
    data: Bytes,
    period: Duration,
    idle: bool,
}

/// Waits for the stream to end, sending keep-alives when due.
async fn hold(sub: &StreamSub, keep_alive: Option<KeepAliveTimer>) -> Ending {
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
fn jittered(period: Duration) -> Duration {
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
