//! The client's side of a WebSocket connection: RFC 6455 as tungstenite implements it, driven
//! without handing it the socket. Gripway reads from the socket through a thin adapter when
//! the socket is readable, and everything tungstenite wants to send (pongs, close replies,
//! close frames we start) is captured as bytes and written through the connection's sink,
//! the same path published frames take, so writes never interleave.
//!
//! Protocol violations by the client end the connection with the close code RFC 6455
//! prescribes: 1002 for protocol errors (unmasked frames, bad opcodes, fragmented control
//! frames, ...), 1007 for invalid UTF-8 in text, 1009 for a message over the size limit.

use std::io::{self, Read, Write};

use crate::hold::sink::Sink;
use bytes::Bytes;
use gripway_proto::ws_deflate::Inflater;
use tungstenite::error::{CapacityError, Error as WsError, ProtocolError};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::frame::CloseFrame;
use tungstenite::protocol::{Role, WebSocketConfig, WebSocketContext};
use tungstenite::Message;

/// Bytes tungstenite reads from the socket at a time (and keeps as its read buffer).
const READ_CHUNK: usize = 256;

/// A message the client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ClientMessage {
    Text(Bytes),
    Binary(Bytes),
    Ping(Bytes),
    Pong(Bytes),
    /// The client started or answered the close handshake: its code and reason.
    Close(Option<(u16, String)>),
}

impl ClientMessage {
    /// What holding the message costs: its payload and [`MESSAGE_OVERHEAD`].
    pub(crate) fn cost(&self) -> usize {
        MESSAGE_OVERHEAD
            + match self {
                ClientMessage::Text(b)
                | ClientMessage::Binary(b)
                | ClientMessage::Ping(b)
                | ClientMessage::Pong(b) => b.len(),
                ClientMessage::Close(c) => c.as_ref().map_or(0, |(_, r)| 2 + r.len()),
            }
    }
}

/// Bytes a queued message costs beyond its payload (its place in a queue, the shared
/// buffer's header), so that a flood of empty messages is bounded too.
pub(crate) const MESSAGE_OVERHEAD: usize = 64;

/// What reading found beyond messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadEnd {
    /// Nothing more to read for now.
    Drained,
    /// The close handshake is complete or the client went away: drop the connection.
    Closed,
    /// The client broke the protocol; a close frame with this code was produced.
    Violation(u16),
}

/// The protocol state of one client connection. tungstenite's state (and its read buffer)
/// is made when the client first sends something or the close handshake starts, so a client
/// that only listens costs neither.
pub(crate) struct ClientProtocol {
    ctx: Option<Box<WebSocketContext>>,
    max_message: usize,
    /// permessage-deflate: raw client bytes pass through this before tungstenite sees them.
    inflate: Option<Box<Inflating>>,
}

/// Inbound permessage-deflate state: the inflater and what it produced not yet read.
struct Inflating {
    inflater: Inflater,
    ready: Vec<u8>,
    read_at: usize,
    failed: Option<u16>,
}

impl ClientProtocol {
    /// A server-side protocol state accepting messages up to `max_message` bytes.
    pub(crate) fn new(max_message: usize, deflate: bool) -> ClientProtocol {
        ClientProtocol {
            ctx: None,
            max_message,
            inflate: deflate.then(|| {
                Box::new(Inflating {
                    inflater: Inflater::new(max_message),
                    ready: Vec::new(),
                    read_at: 0,
                    failed: None,
                })
            }),
        }
    }

    /// Reads the messages the socket has now into `messages`, until it has no more or they
    /// cost `budget` bytes ([`ClientMessage::cost`]); bytes to send back go to `out`. What is
    /// left unread stays in the socket (or in tungstenite's buffer) and the socket stays
    /// readable, so the next read picks it up.
    pub(crate) fn read(
        &mut self,
        sock: &Sink,
        messages: &mut Vec<ClientMessage>,
        out: &mut Vec<u8>,
        budget: usize,
    ) -> ReadEnd {
        let max_message = self.max_message;
        let ctx = self.ctx.get_or_insert_with(|| context(max_message));
        let mut io = Io {
            sock,
            out,
            inflate: self.inflate.as_deref_mut(),
        };
        let mut taken = 0;
        let code = loop {
            let message = match ctx.read(&mut io) {
                Ok(Message::Text(t)) => ClientMessage::Text(Bytes::from(t)),
                Ok(Message::Binary(b)) => ClientMessage::Binary(b),
                Ok(Message::Ping(p)) => ClientMessage::Ping(p),
                Ok(Message::Pong(p)) => ClientMessage::Pong(p),
                Ok(Message::Close(frame)) => {
                    ClientMessage::Close(frame.map(|f| (u16::from(f.code), f.reason.to_string())))
                }
                Ok(Message::Frame(_)) => continue,
                Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    return ReadEnd::Drained;
                }
                Err(WsError::Io(_)) if io.inflate.as_ref().is_some_and(|i| i.failed.is_some()) => {
                    // compressed data the client sent could not be inflated
                    break io.inflate.as_ref().and_then(|i| i.failed).unwrap_or(1002);
                }
                // a client that drops its TCP connection without a close frame has left,
                // not broken the protocol
                Err(
                    WsError::ConnectionClosed
                    | WsError::AlreadyClosed
                    | WsError::Io(_)
                    | WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake),
                ) => {
                    return ReadEnd::Closed;
                }
                Err(e) => break violation_code(&e),
            };
            taken += message.cost();
            messages.push(message);
            if taken >= budget {
                return ReadEnd::Drained;
            }
        };
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: violation_reason(code).into(),
        };
        let _ = ctx.close(&mut io, Some(frame));
        ReadEnd::Violation(code)
    }

    /// Starts (or completes) the close handshake with `code` and `reason`; the close frame's
    /// bytes go to `out`.
    pub(crate) fn close(
        &mut self,
        sock: &Sink,
        code: Option<u16>,
        reason: &str,
        out: &mut Vec<u8>,
    ) {
        let frame = gripway_proto::ws_frame::close_frame(code, reason);
        let mut io = Io {
            sock,
            out,
            inflate: None,
        };
        let max_message = self.max_message;
        let ctx = self.ctx.get_or_insert_with(|| context(max_message));
        let _ = ctx.close(&mut io, frame);
    }

    /// True until a close frame has been sent or received.
    pub(crate) fn is_open(&self) -> bool {
        self.ctx.as_ref().is_none_or(|c| c.can_write())
    }
}

/// tungstenite's server-side state for messages up to `max_message` bytes.
fn context(max_message: usize) -> Box<WebSocketContext> {
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_CHUNK)
        .write_buffer_size(0)
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message))
        .accept_unmasked_frames(false);
    Box::new(WebSocketContext::new(Role::Server, Some(config)))
}

/// The close code for a client's protocol violation.
fn violation_code(e: &WsError) -> u16 {
    match e {
        WsError::Utf8(_) => 1007,
        WsError::Capacity(CapacityError::MessageTooLong { .. }) => 1009,
        WsError::Capacity(_) => 1009,
        _ => 1002,
    }
}

fn violation_reason(code: u16) -> &'static str {
    match code {
        1007 => "invalid UTF-8 in a text message",
        1009 => "message too big",
        _ => "protocol error",
    }
}

/// Lets tungstenite read the socket without owning it (through the inflater when
/// permessage-deflate is on), and captures what it writes.
struct Io<'a> {
    sock: &'a Sink,
    out: &'a mut Vec<u8>,
    inflate: Option<&'a mut Inflating>,
}

impl Read for Io<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(inf) = self.inflate.as_deref_mut() else {
            return self.sock.try_read(buf);
        };
        loop {
            if inf.read_at < inf.ready.len() {
                let n = buf.len().min(inf.ready.len() - inf.read_at);
                buf[..n].copy_from_slice(&inf.ready[inf.read_at..inf.read_at + n]);
                inf.read_at += n;
                if inf.read_at == inf.ready.len() {
                    inf.ready = Vec::new();
                    inf.read_at = 0;
                }
                return Ok(n);
            }
            if inf.failed.is_some() {
                return Err(io::ErrorKind::InvalidData.into());
            }
            let mut raw = [0u8; 4096];
            let n = self.sock.try_read(&mut raw)?;
            if n == 0 {
                return Ok(0);
            }
            if let Err(e) = inf.inflater.process(&raw[..n], &mut inf.ready) {
                inf.failed = Some(e.close_code());
                return Err(io::ErrorKind::InvalidData.into());
            }
        }
    }
}

impl Write for Io<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
