//! MQTT over WebSocket (the `mqtt` subprotocol, as browsers' MQTT clients speak it): a
//! WebSocket handshake on the client port at `[mqtt] websocket_path` that offers `mqtt` (or
//! `mqttv3.1`) is answered here, not by an origin (the origin is asked at the MQTT CONNECT,
//! as for TCP), and the connection becomes an MQTT session whose bytes travel in binary
//! WebSocket messages. Over HTTP/2 (RFC 8441) the same handshake arrives as an extended
//! CONNECT and is answered 200.
//!
//! permessage-deflate is not negotiated: outgoing packets stay the message's shared bytes
//! behind a per-subscriber frame header.

use std::future::Future;
use std::io;
use std::sync::Arc;

use bytes::BytesMut;
use gripway_proto::http1::{write_response_head, RequestHead, Version};
use http::header::HeaderValue;
use http::HeaderMap;
use tokio::io::AsyncWriteExt;

use super::session::{Session, READ_CHUNK};
use crate::config::RoutesSource;
use crate::conn::Tokens;
use crate::transport::ClientConn;
use crate::ws::client::{ClientMessage, ReadEnd};
use crate::Shared;
use gripway_proto::ws_frame::{frame_header, FrameKind};

/// A client's MQTT-over-WebSocket handshake, accepted.
pub(crate) struct MqttWsPlan {
    /// `Sec-WebSocket-Accept`.
    accept: String,
    /// The subprotocol chosen (`mqtt` or `mqttv3.1`).
    protocol: &'static str,
}

/// The subprotocol an MQTT client offers, if any.
fn offered(head: &RequestHead) -> Option<&'static str> {
    let offers = head
        .headers
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim);
    let mut found = None;
    for p in offers {
        if p.eq_ignore_ascii_case("mqtt") {
            return Some("mqtt");
        }
        if p.eq_ignore_ascii_case("mqttv3.1") {
            found = Some("mqttv3.1");
        }
    }
    found
}

/// An MQTT-over-WebSocket handshake on the configured path: Some(Ok) to accept, Some(Err)
/// (status, text) to refuse; None when the request is not one (it goes to the routes).
pub(crate) fn plan(
    shared: &Shared,
    head: &RequestHead,
) -> Option<Result<Box<MqttWsPlan>, (u16, &'static str)>> {
    let demo = matches!(shared.config.routes, RoutesSource::Demo);
    let path = shared.config.mqtt.websocket_path(demo)?;
    if head.path() != path {
        return None;
    }
    let protocol = offered(head)?;
    Some(crate::ws::check_handshake(head).map(|accept| Box::new(MqttWsPlan { accept, protocol })))
}

/// Answers the handshake (101, or 200 on an HTTP/2 stream), then runs the MQTT session.
pub(crate) fn run(
    shared: Arc<Shared>,
    conn: ClientConn,
    plan: Box<MqttWsPlan>,
    tokens: Tokens,
) -> impl Future<Output = ()> + Send {
    let answered = Box::pin(answer(shared.clone(), conn, plan));
    async move {
        if let Some(conn) = answered.await {
            super::session::run_ws(shared, conn, tokens).await;
        }
    }
}

async fn answer(
    shared: Arc<Shared>,
    mut conn: ClientConn,
    plan: Box<MqttWsPlan>,
) -> Option<ClientConn> {
    let mut headers = HeaderMap::new();
    headers.insert(
        "sec-websocket-protocol",
        HeaderValue::from_static(plan.protocol),
    );
    if conn.sock.is_h2() {
        // RFC 8441: a 200 opens the stream for frames
        let stall = shared.config.proxy.write_timeout;
        let started = crate::transport::write_head(
            &mut conn.sock,
            Version::Http11,
            200,
            None,
            &headers,
            false,
            stall,
        )
        .await;
        return started.is_ok().then_some(conn);
    }
    headers.insert(http::header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(
        http::header::CONNECTION,
        HeaderValue::from_static("Upgrade"),
    );
    if let Ok(v) = HeaderValue::from_str(&plan.accept) {
        headers.insert("sec-websocket-accept", v);
    }
    let mut out = BytesMut::with_capacity(256);
    write_response_head(&mut out, Version::Http11, 101, None, &headers);
    if conn.sock.write_all(&out).await.is_err() || conn.sock.flush().await.is_err() {
        return None;
    }
    Some(conn)
}

impl Session {
    /// Reads the WebSocket messages the socket has now into the session's buffer: bytes
    /// read, and whether the device closed.
    pub(super) fn read_ws(&mut self) -> io::Result<(usize, bool)> {
        let Some(ws) = self.ws.as_deref_mut() else {
            return Ok((0, false));
        };
        let mut messages = Vec::new();
        let mut out = Vec::new();
        let end = ws.read(&self.sub.sink, &mut messages, &mut out, READ_CHUNK);
        if !out.is_empty() {
            // pongs and close replies
            let mut st = self.sub.sink.lock();
            self.sub.sink.send(&mut st, &[&bytes::Bytes::from(out)]);
        }
        let mut got = 0;
        for m in messages {
            match m {
                ClientMessage::Binary(b) => {
                    got += b.len();
                    self.partial.extend_from_slice(&b);
                }
                // MQTT over WebSocket is binary only
                ClientMessage::Text(_) => {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "a text message"))
                }
                ClientMessage::Close(_) => return Ok((got, true)),
                ClientMessage::Ping(_) | ClientMessage::Pong(_) => {}
            }
        }
        match end {
            ReadEnd::Drained => Ok((got, false)),
            ReadEnd::Closed => Ok((got, true)),
            ReadEnd::Violation(_) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "WebSocket violation",
            )),
        }
    }

    /// Writes one packet made of `parts` (in a binary WebSocket message over WebSocket);
    /// false if the device is too slow.
    pub(super) fn send_packet(&self, parts: &[&bytes::Bytes]) -> bool {
        let mut st = self.sub.sink.lock();
        if self.ws.is_none() {
            return self.sub.sink.send(&mut st, parts);
        }
        let len = parts.iter().map(|p| p.len()).sum();
        let (head, n) = frame_header(FrameKind::Binary, len);
        let head = bytes::Bytes::copy_from_slice(&head[..n]);
        let mut framed: Vec<&bytes::Bytes> = Vec::with_capacity(parts.len() + 1);
        framed.push(&head);
        framed.extend_from_slice(parts);
        self.sub.sink.send(&mut st, &framed)
    }
}
