//! What the broker needs from a subscriber: a way to hand it messages that never blocks.
//!
//! The server implements this once per transport (HTTP stream, long-poll, WebSocket, ...).
//! `deliver` runs on the fan-out path with the channel's subscriber list borrowed, so it must
//! return at once: write what the socket takes now, queue the rest, and if the queue is over
//! its bound, mark itself for disconnection instead of waiting.

use std::sync::Arc;

use crate::message::Message;

/// The client transport of a subscription, for per-transport encodings and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(usize)]
pub enum Transport {
    /// An HTTP response held open and appended to (`Grip-Hold: stream`), SSE included.
    HttpStream = 0,
    /// A long-poll (`Grip-Hold: response`), answered by one message.
    HttpResponse = 1,
    /// A WebSocket connection.
    WebSocket = 2,
    /// An MQTT connection (over TCP, TLS or a WebSocket).
    Mqtt = 3,
}

impl Transport {
    /// Label used in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::HttpStream => "http-stream",
            Transport::HttpResponse => "http-response",
            Transport::WebSocket => "ws",
            Transport::Mqtt => "mqtt",
        }
    }

    /// Position in [`Transport::ALL`], for per-transport counters.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Every transport, in a fixed order (for metric tables).
    pub const ALL: [Transport; 4] = [
        Transport::HttpStream,
        Transport::HttpResponse,
        Transport::WebSocket,
        Transport::Mqtt,
    ];
}

/// What became of one batch handed to a subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Written to the socket or queued for it; counts the messages taken.
    Sent(u32),
    /// Nothing in the batch was for this subscriber (no format for its transport, filtered,
    /// or it has already been answered).
    Skipped,
    /// The subscriber could not keep up and is being disconnected; counts messages lost.
    DroppedSlow(u32),
    /// The subscriber is already closing; counts messages not delivered.
    Closed(u32),
}

/// A connection subscribed to one or more channels.
pub trait Subscriber: Send + Sync + 'static {
    /// The client transport, fixed for the subscriber's life.
    fn transport(&self) -> Transport;

    /// Hands over `messages`, all on `channel`, in publish order. Must not block.
    fn deliver(&self, channel: &str, messages: &[Arc<Message>]) -> Delivery;

    /// Asked to recover what it may have missed (`POST /recover`, or the re-check after its
    /// channel's first subscription): a hold that knows what its origin last sent asks the
    /// origin again. Must not block. The default does nothing.
    fn recover(&self) {}

    /// The re-check shortly after `channel` got its first subscriber on this node, when the
    /// channel's last id is now `last_id`: a hold whose prev-id on `channel` is another one
    /// missed something and recovers as [`Subscriber::recover`] does. Returns true if it
    /// does. Must not block. The default does nothing.
    fn recheck(&self, channel: &str, last_id: &str) -> bool {
        let _ = (channel, last_id);
        false
    }
}
