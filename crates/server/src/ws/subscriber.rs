//! A WebSocket connection as a subscriber: published `ws-message` items reach it through the
//! broker's fan-out, framed once per message and written straight to the socket through the
//! shared sink. What the fan-out cannot do itself under the sink's lock — closing the
//! connection (the close handshake belongs to the protocol state the connection's task owns)
//! and a WebSocket-over-HTTP `refresh` — it leaves in [`Requests`] and wakes the task.

use std::sync::Arc;

use gripway_broker::{Delivery, Message, Subscriber, Transport, WsOp};
use parking_lot::Mutex;

use crate::hold::filters::{admits, Filters};
use crate::hold::sink::{Batch, Sink};

/// What the fan-out asks of the connection's task.
#[derive(Debug, Default)]
pub(crate) struct Requests {
    /// Close the connection with this code and reason (a published `close`).
    pub(crate) close: Option<(Option<u16>, String)>,
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

impl Subscriber for WsSub {
    fn transport(&self) -> Transport {
        Transport::WebSocket
    }

    fn deliver(&self, channel: &str, messages: &[Arc<Message>]) -> gripway_broker::Delivery {
        let mut st = self.sink.lock();
        if Sink::is_closed(&st) {
            return Delivery::Closed(messages.len() as u32);
        }
        let filters = self.filters.lock();
        let mut batch = Batch::new();
        let mut notify = false;
        for msg in messages {
            let Some(format) = msg.ws_message() else {
                continue;
            };
            if !admits(filters.as_deref(), format.content_filters, channel, msg) {
                continue;
            }
            match format.action {
                WsOp::Send(_) => {
                    let frame = if self.deflate {
                        msg.ws_frame_deflated()
                    } else {
                        msg.ws_frame()
                    };
                    if let Some(frame) = frame {
                        if !batch.push(&self.sink, &mut st, frame) {
                            return Delivery::DroppedSlow(messages.len() as u32);
                        }
                    }
                }
                WsOp::Close { code, reason } => {
                    self.requests.lock().close = Some((code, reason.to_owned()));
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
        let sent = batch.count;
        if !batch.send(&self.sink, &mut st) {
            return Delivery::DroppedSlow(messages.len() as u32);
        }
        if notify {
            self.sink.notify(&mut st);
        }
        if sent == 0 && !notify {
            Delivery::Skipped
        } else {
            Delivery::Sent(sent.max(1))
        }
    }
}
