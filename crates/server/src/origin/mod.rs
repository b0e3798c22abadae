//! Talking to origins: one request out, one response back, over pooled HTTP/1.1 connections
//! (plain or TLS), with the built-in demo origin answering in-process for `test` targets.
//!
//! Errors say what failed and whether trying the route's next target makes sense: a refused
//! or timed-out connect does, an origin that answered and then broke does not.

pub mod demo;
pub(crate) mod forward;
pub(crate) mod headers;
mod pool;
mod tls;

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

pub use pool::{ConnectTarget, OriginClient, PooledConn};
pub use tls::OriginStream;

/// A request to send to an origin; kept so it can be re-sent (failover, retries).
#[derive(Debug, Clone)]
pub struct OriginRequest {
    /// Method.
    pub method: Method,
    /// Origin-form path and query.
    pub path_and_query: String,
    /// Headers, Host included.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

/// An origin's response head and its body, still to be read.
#[derive(Debug)]
pub struct OriginResponse {
    /// Status code.
    pub status: StatusCode,
    /// Reason phrase when it differs from the canonical one.
    pub reason: Option<String>,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: OriginBody,
}

/// A response body, streamed from a connection or already complete.
#[derive(Debug)]
pub enum OriginBody {
    /// Streaming from a pooled connection, which goes back to the pool once the body ends.
    Stream {
        /// The body.
        body: Incoming,
        /// The connection, to return to its pool at the end.
        conn: Option<PooledConn>,
    },
    /// Complete (the demo origin, or a body already read); taken on first read.
    Full(Option<Bytes>),
}

impl OriginBody {
    /// The next piece of the body; None at the end.
    pub async fn next_chunk(&mut self) -> Option<Result<Bytes, OriginError>> {
        match self {
            OriginBody::Full(b) => b.take().filter(|b| !b.is_empty()).map(Ok),
            OriginBody::Stream { body, conn } => loop {
                match body.frame().await {
                    None => {
                        if let Some(c) = conn.take() {
                            c.release();
                        }
                        return None;
                    }
                    Some(Err(e)) => {
                        conn.take();
                        return Some(Err(OriginError::new(
                            OriginErrorKind::Broken,
                            format!("response body: {e}"),
                        )));
                    }
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            if !data.is_empty() {
                                return Some(Ok(data));
                            }
                        }
                    }
                }
            },
        }
    }

    /// Reads the rest of the body, refusing more than `limit` bytes or taking longer than
    /// `within`. `Ok(None)`: too large.
    pub async fn read_to_end(
        &mut self,
        limit: usize,
        within: Duration,
    ) -> Result<Option<Bytes>, OriginError> {
        let read = async {
            let mut out = bytes::BytesMut::new();
            while let Some(chunk) = self.next_chunk().await {
                let chunk = chunk?;
                if out.len() + chunk.len() > limit {
                    return Ok(None);
                }
                if out.is_empty() && matches!(self, OriginBody::Full(_)) {
                    return Ok(Some(chunk));
                }
                out.extend_from_slice(&chunk);
            }
            Ok(Some(out.freeze()))
        };
        match tokio::time::timeout(within, read).await {
            Ok(r) => r,
            Err(_) => Err(OriginError::new(
                OriginErrorKind::Timeout,
                format!("response body not complete within {within:?}"),
            )),
        }
    }
}

/// A copy of `headers` that shares no memory with the origin connection they were read
/// from: hyper's header values are slices of the connection's read buffer, so keeping one
/// for the life of a held connection would keep that whole buffer.
pub fn detached_headers(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        if let Ok(v) = http::HeaderValue::from_bytes(value.as_bytes()) {
            out.append(name.clone(), v);
        }
    }
    out
}

/// What went wrong talking to an origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginErrorKind {
    /// Could not connect (refused, unreachable, DNS, connect timeout).
    Connect,
    /// TLS handshake failed.
    Tls,
    /// No response head in time.
    Timeout,
    /// The origin broke the exchange (bad HTTP, closed mid-response).
    Broken,
}

/// An origin failure; the origin's fault, reported to the client as 502 or 504.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct OriginError {
    /// What kind of failure.
    pub kind: OriginErrorKind,
    /// Details for logs and debug bodies.
    pub message: String,
}

impl OriginError {
    fn new(kind: OriginErrorKind, message: impl Into<String>) -> Self {
        OriginError {
            kind,
            message: message.into(),
        }
    }

    /// True when the request never reached the origin, so another target may be tried.
    pub fn try_next_target(&self) -> bool {
        matches!(
            self.kind,
            OriginErrorKind::Connect | OriginErrorKind::Tls | OriginErrorKind::Timeout
        )
    }

    /// The refusal a client gets for this failure: 504 for a timeout, 502 otherwise, the
    /// same on a first attempt and on a retry.
    pub(crate) fn refusal(&self) -> crate::error::Refusal {
        crate::error::Refusal::origin(
            self.kind == OriginErrorKind::Timeout,
            self.label(),
            self.message.clone(),
        )
    }

    /// Label for metrics.
    pub fn label(&self) -> &'static str {
        match self.kind {
            OriginErrorKind::Connect => "connect",
            OriginErrorKind::Tls => "tls",
            OriginErrorKind::Timeout => "timeout",
            OriginErrorKind::Broken => "broken",
        }
    }
}

/// Timeouts for one origin exchange.
#[derive(Debug, Clone, Copy)]
pub struct OriginTimeouts {
    /// TCP connect plus TLS handshake.
    pub connect: Duration,
    /// From sending the request to the response head.
    pub response: Duration,
}
