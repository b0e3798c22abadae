//! What can go wrong on the bus, said by whose fault it is: NATS unreachable or not
//! answering in time ([`BusError::Unavailable`], a 503 for the publisher), the request itself
//! refused ([`BusError::Rejected`], the caller's fault: a 4xx), or the stream set up in a way
//! this node cannot work with ([`BusError::Stream`], the operator's).

/// A bus operation that did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    /// No NATS server answered within the time allowed (all down, no stream leader, a
    /// partition). Retry later; a publish with an id is safe to retry (deduplicated).
    #[error("NATS unavailable: {0}")]
    Unavailable(String),
    /// NATS or the bus refused this request (a channel name too long for a subject, an id
    /// with control characters, a message over the server's max_payload, ...).
    #[error("rejected: {0}")]
    Rejected(String),
    /// The stream exists with a configuration this node cannot use or change.
    #[error("stream: {0}")]
    Stream(String),
    /// This node already holds `max_subscriptions` channel subscriptions.
    #[error("too many subscriptions (max_subscriptions = {0})")]
    TooManySubscriptions(usize),
}

impl BusError {
    /// The HTTP status a publish answered with this error should get.
    pub fn http_status(&self) -> u16 {
        match self {
            BusError::Unavailable(_) | BusError::TooManySubscriptions(_) => 503,
            BusError::Rejected(_) => 400,
            BusError::Stream(_) => 500,
        }
    }
}
