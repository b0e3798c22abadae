//! WebSocket pass-through (routes whose target is not `over_http`): the origin gets a
//! WebSocket of its own, opened by Gripway with the client's handshake headers plus
//! `Sec-WebSocket-Extensions: grip`, and messages are relayed both ways. When the origin
//! accepts the `grip` extension its messages follow the GRIP prefix rules, as with
//! WebSocket-over-HTTP. Messages are relayed whole; RFC 6455 §5.4 lets an intermediary
//! change how a message is fragmented.
//!
//! Client messages wait in an outbox while the origin's socket is full; what it holds costs at
//! most `websocket.origin_queue_bytes` (payload plus [`MESSAGE_OVERHEAD`] each) before the
//! session stops reading the client ([`WsLink::is_full`]). Nothing is retried: when the
//! origin's WebSocket fails or closes, the client is closed.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::pin::Pin;
use std::task::Poll;

use bytes::Bytes;
use futures_util::{Sink, Stream};
use gripway_proto::routes::{Target, TargetKind};
use gripway_proto::ws_control::{parse_grip_extension, GripExtension};
use http::{HeaderMap, HeaderValue, StatusCode};
use tokio_tungstenite::WebSocketStream;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::Message;

use super::client::MESSAGE_OVERHEAD;
use crate::origin::forward::connect_target;
use crate::origin::{OriginError, OriginErrorKind, OriginStream};
use crate::Shared;

/// A pass-through connection to the origin's WebSocket.
pub(crate) struct WsLink {
    ws: WebSocketStream<OriginStream>,
    outbox: VecDeque<Message>,
    /// What the messages in `outbox` cost ([`cost`]).
    outbox_bytes: usize,
    /// `websocket.origin_queue_bytes`.
    limit: usize,
}

/// The origin refused the WebSocket: relayed to the client.
pub(crate) struct Refusal {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

/// How connecting ended.
pub(crate) enum Connected {
    Open {
        link: Box<WsLink>,
        headers: HeaderMap,
        grip: Option<GripExtension>,
    },
    Refused(Refusal),
}

impl WsLink {
    /// Opens a WebSocket to `target` for `path` with `headers` (the client's, processed).
    pub(crate) async fn connect(
        shared: &Shared,
        target: &Target,
        path: &str,
        headers: HeaderMap,
        max_message: usize,
        limit: usize,
    ) -> Result<Connected, OriginError> {
        let TargetKind::Addr { host, port } = &target.kind else {
            return Err(OriginError {
                kind: OriginErrorKind::Connect,
                message: "the demo origin speaks WebSocket-over-HTTP only".into(),
            });
        };
        let stream = shared
            .origin
            .connect_stream(&connect_target(target))
            .await?;
        let scheme = if target.ssl { "wss" } else { "ws" };
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let mut request = http::Request::builder()
            .uri(format!("{scheme}://{authority}{path}"))
            .body(())
            .map_err(|e| OriginError {
                kind: OriginErrorKind::Broken,
                message: format!("handshake request: {e}"),
            })?;
        *request.headers_mut() = headers;
        let h = request.headers_mut();
        h.insert("sec-websocket-extensions", HeaderValue::from_static("grip"));
        h.insert(
            http::header::CONNECTION,
            HeaderValue::from_static("Upgrade"),
        );
        h.insert(http::header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert("sec-websocket-version", HeaderValue::from_static("13"));
        if let Ok(key) = HeaderValue::from_str(&tungstenite::handshake::client::generate_key()) {
            h.insert("sec-websocket-key", key);
        }
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0)
            .max_message_size(Some(max_message))
            .max_frame_size(Some(max_message));
        let handshake = tokio_tungstenite::client_async_with_config(request, stream, Some(config));
        match tokio::time::timeout(shared.config.proxy.response_timeout, handshake).await {
            Err(_) => Err(OriginError {
                kind: OriginErrorKind::Timeout,
                message: "WebSocket handshake timed out".into(),
            }),
            Ok(Ok((ws, response))) => {
                let grip = parse_grip_extension(
                    response
                        .headers()
                        .get_all("sec-websocket-extensions")
                        .iter()
                        .map(HeaderValue::as_bytes),
                );
                Ok(Connected::Open {
                    link: Box::new(WsLink {
                        ws,
                        outbox: VecDeque::new(),
                        outbox_bytes: 0,
                        limit,
                    }),
                    headers: response.headers().clone(),
                    grip,
                })
            }
            Ok(Err(tungstenite::Error::Http(response))) => {
                let (parts, body) = (*response).into_parts();
                Ok(Connected::Refused(Refusal {
                    status: parts.status,
                    headers: parts.headers,
                    body: Bytes::from(body.unwrap_or_default()),
                }))
            }
            Ok(Err(e)) => Err(OriginError {
                kind: OriginErrorKind::Broken,
                message: format!("WebSocket handshake: {e}"),
            }),
        }
    }

    /// True while messages wait to be sent.
    pub(crate) fn has_outbox(&self) -> bool {
        !self.outbox.is_empty()
    }

    /// Queues a message for the origin (sent by the next `next`).
    pub(crate) fn push(&mut self, message: Message) {
        self.outbox_bytes += cost(&message);
        self.outbox.push_back(message);
    }

    /// True when the outbox has reached `websocket.origin_queue_bytes`: the client is not
    /// read until the origin takes some.
    pub(crate) fn is_full(&self) -> bool {
        self.outbox_bytes >= self.limit
    }

    /// Bytes the client may still send before the outbox is full.
    pub(crate) fn room(&self) -> usize {
        self.limit.saturating_sub(self.outbox_bytes)
    }

    /// Sends what is queued and waits for the origin's next message; None when the origin's
    /// side is closed. Returns `Some(Ok(None))` when a full outbox got room (the session then
    /// reads the client again). Safe to drop at any await (nothing queued is lost).
    pub(crate) async fn next(&mut self) -> Option<Result<Option<Message>, tungstenite::Error>> {
        poll_fn(|cx| {
            let was_full = self.is_full();
            let mut ws = Pin::new(&mut self.ws);
            while !self.outbox.is_empty() {
                match ws.as_mut().poll_ready(cx) {
                    Poll::Ready(Ok(())) => {
                        if let Some(m) = self.outbox.pop_front() {
                            self.outbox_bytes -= cost(&m).min(self.outbox_bytes);
                            if self.outbox.is_empty() {
                                // give the storage back so an idle connection holds none
                                self.outbox = VecDeque::new();
                            }
                            if let Err(e) = ws.as_mut().start_send(m) {
                                return Poll::Ready(Some(Err(e)));
                            }
                        }
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e))),
                    Poll::Pending => break,
                }
            }
            if let Poll::Ready(Err(e)) = ws.as_mut().poll_flush(cx) {
                return Poll::Ready(Some(Err(e)));
            }
            if was_full && self.outbox_bytes < self.limit {
                return Poll::Ready(Some(Ok(None)));
            }
            ws.poll_next(cx).map(|m| m.map(|r| r.map(Some)))
        })
        .await
    }
}

/// What holding a message costs: its payload and [`MESSAGE_OVERHEAD`].
fn cost(message: &Message) -> usize {
    MESSAGE_OVERHEAD + message.len()
}
