//! MQTT-over-HTTP (docs/mqtt-design.md §3): how an MQTT device's CONNECT, SUBSCRIBE and
//! PUBLISH become short signed `POST`s of a small JSON body to the route's origin, and how the
//! origin's answer, one result per event, is read back. Pure values and bytes, no I/O: the
//! server's MQTT session sends the request (with `Grip-Sig`, `Connection-Id` and `Meta-*`, as
//! WebSocket-over-HTTP does), this module says what goes in the body and what came back.
//!
//! Owns: the request model and its encoding ([`Request`], [`Event`], [`to_json`]), the answer
//! model and its parser ([`Answer`], [`parse_answer`]), the reason vocabulary and its MQTT
//! codes ([`Reason`]), and the `Cache-Control` rule that says how long an answer may be reused
//! ([`max_age`]).
//!
//! Invariants: [`parse_answer`] never panics, allocates at most in proportion to a body it
//! first checks against [`AnswerLimits::max_body_bytes`], and returns either one result per
//! event, in order, each valid for its event's kind, or an [`OriginError`] naming the result
//! (counted from 1) and field at fault. Unknown fields are errors, not ignored: a misspelt
//! `"chanels"` must not silently publish to the default channel. Every string that can reach a
//! header, a channel or an MQTT packet is checked for length and control characters here.

mod answer;
mod cache;
mod raw;
mod reason;
mod request;

#[cfg(test)]
mod answer_tests;
#[cfg(test)]
mod fuzz_tests;

pub use answer::{
    parse_answer, parse_answer_with, Answer, ConnectResult, EventResult, FilterResult,
    PublishResult, Reply, SubscribeResult, WillRule,
};
pub use cache::max_age;
pub use reason::{Reason, SUBACK_V3_FAILURE};
pub use request::{
    default_channel, is_wildcard, to_json, Connect, ConnectProperties, DisconnectReason, Event,
    MessageProperties, Publish, Request, SubscribeFilter, Will,
};

/// The media type of requests and answers (`application/json` answers are accepted too).
pub const CONTENT_TYPE: &str = "application/mqtt-events+json";

/// Default for [`AnswerLimits::max_body_bytes`]: 1,000,000, as WebSocket-over-HTTP's.
pub const MAX_BODY_BYTES: usize = 1_000_000;
/// Default for [`AnswerLimits::max_name_bytes`]: channels, item ids, topics, client ids
/// (the publish API's channel and id bound).
pub const MAX_NAME_BYTES: usize = 1024;
/// Default for [`AnswerLimits::max_message_bytes`]: a connect result's `message`.
pub const MAX_MESSAGE_BYTES: usize = 1024;
/// Most channels one subscribe filter may map to (refused while reading).
pub const MAX_CHANNELS_PER_FILTER: usize = 16;
/// Most `reply` packets in one publish result (refused while reading).
pub const MAX_REPLIES: usize = 16;
/// Default for [`AnswerLimits::max_meta_entries`].
pub const MAX_META_ENTRIES: usize = 32;
/// Longest `meta` name, in bytes (as a WebSocket `set-meta` name).
pub const MAX_META_NAME_BYTES: usize = 256;
/// Longest `meta` value, in bytes (as a WebSocket `set-meta` value).
pub const MAX_META_VALUE_BYTES: usize = 4096;

/// Bounds applied while reading an answer. The list caps ([`MAX_CHANNELS_PER_FILTER`],
/// [`MAX_REPLIES`]) are fixed, applied while reading. Reply content needs no bound of its own:
/// it is within the body's, and the server refuses a packet over the device's maximum when it
/// sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerLimits {
    /// Largest answer body; over it is [`OriginError::TooLarge`], before any parsing.
    pub max_body_bytes: usize,
    /// Longest channel, item id, client id or topic, in bytes.
    pub max_name_bytes: usize,
    /// Longest connect `message` (the v5 reason string), in bytes.
    pub max_message_bytes: usize,
    /// Most `meta` entries in one answer.
    pub max_meta_entries: usize,
}

impl AnswerLimits {
    /// The documented defaults ([`MAX_BODY_BYTES`] and the rest).
    pub const DEFAULT: AnswerLimits = AnswerLimits {
        max_body_bytes: MAX_BODY_BYTES,
        max_name_bytes: MAX_NAME_BYTES,
        max_message_bytes: MAX_MESSAGE_BYTES,
        max_meta_entries: MAX_META_ENTRIES,
    };
}

impl Default for AnswerLimits {
    fn default() -> Self {
        AnswerLimits::DEFAULT
    }
}

/// What kind of event a result answers: the request's events as [`parse_answer`] needs them.
/// A subscribe borrows its filters: the answer must have one entry per filter, and a wildcard
/// filter cannot be allowed without explicit channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind<'a> {
    /// A CONNECT: an allow or a deny.
    Connect,
    /// A SUBSCRIBE with these filters: one entry per filter.
    Subscribe(&'a [SubscribeFilter]),
    /// A PUBLISH: an allow (publish, reply, or both) or a deny.
    Publish,
    /// An UNSUBSCRIBE: a notification, its result is ignored.
    Unsubscribe,
    /// The connection ended: a notification, its result is ignored.
    Disconnect,
}

impl EventKind<'_> {
    /// The event's `type` as written in the request, e.g. `"publish"`.
    pub const fn as_str(&self) -> &'static str {
        match self {
            EventKind::Connect => "connect",
            EventKind::Subscribe(_) => "subscribe",
            EventKind::Publish => "publish",
            EventKind::Unsubscribe => "unsubscribe",
            EventKind::Disconnect => "disconnect",
        }
    }

    /// Whether the origin's result is ignored (unsubscribe, disconnect).
    pub const fn is_notification(&self) -> bool {
        matches!(self, EventKind::Unsubscribe | EventKind::Disconnect)
    }
}

/// Why an answer could not be used. The server treats every one as an origin failure
/// (docs/mqtt-design.md §3.2 "Failures"); [`OriginError::label`] is its metrics reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    /// The body is over [`AnswerLimits::max_body_bytes`].
    #[error("answer body is {size} bytes, over the limit of {limit}")]
    TooLarge {
        /// The body's size.
        size: usize,
        /// The limit it broke.
        limit: usize,
    },
    /// Not JSON, or not the answer's shape (a wrong type, an unknown or repeated field);
    /// the text says where, with serde's line and column.
    #[error("answer is malformed: {0}")]
    Malformed(String),
    /// The number of results is not the number of events.
    #[error("answer has {got} results for {expected} events")]
    WrongCount {
        /// Events in the request.
        expected: usize,
        /// Results in the answer.
        got: usize,
    },
    /// One result is well-formed JSON but not a valid answer to its event.
    #[error("result {index} ({kind}): {problem}")]
    Invalid {
        /// The result's position, counted from 1.
        index: usize,
        /// Its event's type.
        kind: &'static str,
        /// What is wrong, naming the field.
        problem: String,
    },
    /// The answer's `meta` object is not valid.
    #[error("meta: {0}")]
    Meta(String),
}

impl OriginError {
    /// A short fixed label for metrics: `too-large`, `malformed`, `wrong-count`, `invalid`
    /// or `meta`.
    pub const fn label(&self) -> &'static str {
        match self {
            OriginError::TooLarge { .. } => "too-large",
            OriginError::Malformed(_) => "malformed",
            OriginError::WrongCount { .. } => "wrong-count",
            OriginError::Invalid { .. } => "invalid",
            OriginError::Meta(_) => "meta",
        }
    }
}
