//! A WebSocket connection as a subscriber: published `ws-message` items reach it through the
//! broker's fan-out, framed once per message and written straight to the socket through the
//! shared sink. What the fan-out cannot do itself under the sink's lock — closing the
//! connection (the close handshake belongs to the protocol state the connection's task owns)
//! and a WebSocket-over-HTTP `refresh` — it leaves in [`Requests`] and wakes the task.
//! The drain at shutdown asks the same way for a close with 1001 (going away); the origin
//! then learns of it as of a client that left (`DISCONNECT` over HTTP).

use std::sync::Arc;

use bytes::Bytes;
use gripway_broker::message::Encoding;
use gripway_broker::{Delivery, Message, Subscriber, Transport, WsOp};
use gripway_proto::publish::WsKind;
use gripway_proto::ws_deflate::encode_message_frame;
use gripway_proto::ws_frame::{encode_frame, FrameKind};
use parking_lot::Mutex;

use crate::drain::Drainable;
use crate::hold::filters::{admit, Admit, Filters};
use crate::hold::sink::{Batch, Frame, Intake, Sink, SinkState};

/// What the fan-out asks of the connection's task.
#[derive(Debug, Default)]
pub(crate) struct Requests {
    /// Close the connection with this code and reason (a published `close`; boxed, as it is
    /// rare and every connection keeps this).
    pub(crate) close: Option<Box<(Option<u16>, String)>>,
    /// Send a WebSocket-over-HTTP request now, even an empty one (a published `refresh`).
    pub(crate) refresh: bool,
}

/// The parts of a WebSocket connection the fan-out reaches.
pub(crate) struct WsSub {
    pub(crate) sink: Sink,
    /// The client negotiated permessage-deflate: published messages go compressed.
    pub(crate) deflate: bool,
    /// Delivery filters (they change with `subscribe` and `set-meta` control messages).
    pub(crate) filters: Mutex<Option<Box<Filters>>>,
    pub(crate) requests: Mutex<Requests>,
}

impl WsSub {
    pub(crate) fn new(sink: Sink, deflate: bool) -> Arc<WsSub> {
        Arc::new(WsSub {
            sink,
            deflate,
            filters: Mutex::new(None),
            requests: Mutex::new(Requests::default()),
        })
    }
}

impl Drainable for WsSub {
    fn drain(&self) {
        let mut st = self.sink.lock();
        if Sink::is_closed(&st) {
            return;
        }
        self.requests
            .lock()
            .close
            .get_or_insert_with(|| Box::new((Some(1001), "going away".into())));
        self.sink.notify(&mut st);
    }
}

impl WsSub {
    /// One frame for `content` (filtered for this connection); None for a control frame
    /// that filtering made too long.
    fn frame(&self, kind: WsKind, content: Bytes) -> Option<Bytes> {
        let kind = match kind {
            WsKind::Text | WsKind::Binary if self.deflate => {
                return Some(encode_message_frame(kind == WsKind::Binary, &content))
            }
            WsKind::Text => FrameKind::Text,
            WsKind::Binary => FrameKind::Binary,
            WsKind::Ping | WsKind::Pong if content.len() > 125 => return None,
            WsKind::Ping => FrameKind::Ping,
            WsKind::Pong => FrameKind::Pong,
        };
        Some(encode_frame(kind, content))
    }
}

impl Subscriber for WsSub {
    fn transport(&self) -> Transport {
        Transport::WebSocket
    }

    fn deliver(&self, channel: &str, messages: &[Arc<Message>]) -> gripway_broker::Delivery {
        let mut st = self.sink.lock();
        if Sink::is_closed(&st) {
            return Delivery::Closed(messages.len() as u32);
        }
        // held back while a subscription's history is read (`prev-id`)
        match self.sink.held(&mut st, messages) {
            Intake::Deliver => self.deliver_locked(&mut st, channel, messages),
            Intake::Kept => Delivery::Sent(messages.len() as u32),
            Intake::Slow => Delivery::DroppedSlow(messages.len() as u32),
            Intake::Filtered(pass) => self.deliver_locked(&mut st, channel, &pass),
        }
    }
}

impl WsSub {
    /// Writes `messages` of `channel` (under the sink's lock).
    pub(crate) fn deliver_locked(
        &self,
        st: &mut SinkState,
        channel: &str,
        messages: &[Arc<Message>],
    ) -> Delivery {
        let filters = self.filters.lock();
        let mut batch = Batch::new();
        let mut notify = false;
        let mut own = 0;
        for msg in messages {
            let Some(format) = msg.ws_message() else {
                continue;
            };
            let admit = admit(filters.as_deref(), format.content_filters, channel, msg);
            if admit == Admit::No {
                continue;
            }
            match format.action {
                WsOp::Send(kind) if admit == Admit::Transformed => {
                    // content filters: this subscriber's own frame (what is batched goes first)
                    let frame = msg
                        .ws_content()
                        .and_then(|content| filters.as_deref()?.transform(channel, content))
                        .and_then(|own| self.frame(kind, own));
                    if let Some(frame) = frame {
                        if !batch.send(&self.sink, st) || !self.sink.send(st, &[&frame]) {
                            return Delivery::DroppedSlow(messages.len() as u32);
                        }
                        own += 1;
                    }
                }
                WsOp::Send(_) => {
                    let which = if self.deflate {
                        Encoding::WsFrameDeflated
                    } else {
                        Encoding::WsFrame
                    };
                    let frame = Frame::of(msg, which);
                    if let Some(frame) = frame {
                        if !batch.push(&self.sink, st, frame) {
                            return Delivery::DroppedSlow(messages.len() as u32);
                        }
                    }
                }
                WsOp::Close { code, reason } => {
                    self.requests.lock().close = Some(Box::new((code, reason.to_owned())));
                    notify = true;
                    break;
                }
                WsOp::Refresh => {
                    self.requests.lock().refresh = true;
                    notify = true;
                }
                WsOp::Hint => {}
            }
        }
        drop(filters);
        let sent = batch.count + own;
        if !batch.send(&self.sink, st) {
            return Delivery::DroppedSlow(messages.len() as u32);
        }
        if notify {
            self.sink.notify(st);
        }
        if sent == 0 && !notify {
            Delivery::Skipped
        } else {
            Delivery::Sent(sent.max(1))
        }
    }
}
