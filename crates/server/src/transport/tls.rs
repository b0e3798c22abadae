//! TLS toward clients: one connection's TLS state, sans I/O, on rustls' unbuffered API.
//!
//! Why the unbuffered API and not `tokio-rustls`: memory. rustls' buffered connection keeps
//! a 4 KiB read buffer for as long as the connection lives, plus its send and receive
//! queues, ~7.5 KiB per connection after the handshake (measured: 1,168 B inline and 6.5 KB
//! of heap, 1,000 connections, a counting allocator). With the unbuffered API Gripway owns the
//! buffers, so an idle connection holds none: 1,088 B inline and 2.2 KB of heap (the
//! connection's keys and state), and a buffer only while bytes are in flight.
//!
//! [`TlsSession`] owns those buffers: ciphertext read but not yet a whole record
//! (`incoming`), plaintext decrypted but not yet taken (`plain`), ciphertext sealed but not
//! yet written (`outgoing`). The socket stays with its owner ([`super::ClientStream`] while
//! requests are read, [`crate::hold::sink::Sink`] while the connection is held), which
//! calls [`TlsSession::read_from`] when the socket is readable and [`TlsSession::seal`] to
//! encrypt; the handshake is [`accept`].
//!
//! A failure rustls reports (no shared version or cipher suite, no certificate for the name,
//! a record that does not decrypt, nonsense) leaves a fatal alert queued in rustls; it is
//! encoded into the outgoing buffer and written, best effort, before the error is returned,
//! so the peer learns why ("handshake failure", "bad record MAC") instead of seeing the
//! connection simply end.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, UnbufferedStatus};
use tokio::net::TcpStream;

/// The most ciphertext kept while waiting for the rest of a record: one record of the
/// largest size TLS allows (2^14 bytes of plaintext plus 2,048 of expansion, RFC 8446
/// §5.2, plus its 5-byte header); a peer that sends more without completing one is refused.
const MAX_INCOMING: usize = 16_384 + 2_048 + 5;

/// Bytes read from the socket at a time.
const READ_STEP: usize = 4096;

/// What a read did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Received {
    /// Something was read (maybe only part of a record, maybe a handshake message).
    Progress,
    /// The peer closed (a TCP EOF, or a `close_notify` alert).
    Closed,
}

/// One client connection's TLS state and buffers.
pub(crate) struct TlsSession {
    conn: UnbufferedServerConnection,
    /// Ciphertext read past the last whole record; empty and unallocated when none.
    incoming: Vec<u8>,
    /// Decrypted bytes not yet taken; empty and unallocated when none.
    pub(crate) plain: BytesMut,
    /// Ciphertext not yet written to the socket, from `out_at` on; unallocated when none.
    outgoing: Vec<u8>,
    out_at: usize,
    /// The peer sent `close_notify` or closed the connection.
    closed: bool,
    /// `close_notify` was sealed.
    sent_close: bool,
    /// rustls reported a fatal error: the session is dead, rustls is not called again (a
    /// second fatal error would queue a second alert, which rustls treats as a bug).
    failed: bool,
    /// `h2` was agreed by ALPN.
    pub(crate) h2: bool,
}

/// A TLS failure: a protocol error, a peer that sent nonsense, or I/O.
#[derive(Debug)]
pub(crate) struct TlsError(pub(crate) String);

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<rustls::Error> for TlsError {
    fn from(e: rustls::Error) -> TlsError {
        TlsError(e.to_string())
    }
}

impl From<TlsError> for io::Error {
    fn from(e: TlsError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e.0)
    }
}

impl TlsSession {
    fn new(config: Arc<rustls::ServerConfig>) -> Result<TlsSession, TlsError> {
        Ok(TlsSession {
            conn: UnbufferedServerConnection::new(config)?,
            incoming: Vec::new(),
            plain: BytesMut::new(),
            outgoing: Vec::new(),
            out_at: 0,
            closed: false,
            sent_close: false,
            failed: false,
            h2: false,
        })
    }

    /// True once the peer closed its side.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed
    }

    /// Ciphertext waiting to be written.
    pub(crate) fn pending_out(&self) -> &[u8] {
        &self.outgoing[self.out_at..]
    }

    /// Marks `n` bytes of [`TlsSession::pending_out`] written; frees the buffer when it is.
    pub(crate) fn advance_out(&mut self, n: usize) {
        self.out_at += n;
        if self.out_at >= self.outgoing.len() {
            self.outgoing = Vec::new();
            self.out_at = 0;
        }
    }

    /// Writes pending ciphertext while the socket takes it; WouldBlock when it is full.
    pub(crate) fn write_out(&mut self, sock: &TcpStream) -> io::Result<()> {
        while !self.pending_out().is_empty() {
            match sock.try_write(self.pending_out())? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                n => self.advance_out(n),
            }
        }
        Ok(())
    }

    /// Keeps ciphertext that the socket did not take, to be written first next time.
    pub(crate) fn keep_out(&mut self, rest: &[u8]) {
        if self.out_at > 0 {
            self.outgoing.drain(..self.out_at);
            self.out_at = 0;
        }
        self.outgoing.extend_from_slice(rest);
    }

    /// Reads what the socket has (WouldBlock when nothing), decrypts whole records into
    /// [`TlsSession::plain`] and seals any handshake reply (a key update) into the outgoing
    /// buffer.
    pub(crate) fn read_from(&mut self, sock: &TcpStream) -> io::Result<Received> {
        if self.closed {
            return Ok(Received::Closed);
        }
        if self.failed {
            return Err(TlsError("connection failed".into()).into());
        }
        let len = self.incoming.len();
        if len >= MAX_INCOMING {
            return Err(TlsError("record larger than TLS allows".into()).into());
        }
        let step = READ_STEP.min(MAX_INCOMING - len);
        self.incoming.resize(len + step, 0);
        let read = sock.try_read(&mut self.incoming[len..]);
        let n = match read {
            Ok(n) => n,
            Err(e) => {
                self.incoming.truncate(len);
                self.release_incoming();
                return Err(e);
            }
        };
        self.incoming.truncate(len + n);
        if n == 0 {
            self.closed = true;
            return Ok(Received::Closed);
        }
        if let Err(e) = self.process() {
            // the alert rustls queued goes out ahead of the close, if the socket takes it
            let _ = self.write_out(sock);
            return Err(e.into());
        }
        Ok(if self.closed {
            Received::Closed
        } else {
            Received::Progress
        })
    }

    fn release_incoming(&mut self) {
        if self.incoming.is_empty() {
            self.incoming = Vec::new();
        }
    }

    /// Runs rustls over what `incoming` holds until it needs more bytes: application data
    /// goes to `plain`, handshake messages to `outgoing`. Returns true once the handshake is
    /// complete. On an error, the fatal alert rustls queued for it is in `outgoing`.
    fn process(&mut self) -> Result<bool, TlsError> {
        if self.failed {
            return Err(TlsError("connection failed".into()));
        }
        let done = self.process_records();
        if done.is_err() {
            self.failed = true;
            self.encode_alert();
        }
        done
    }

    /// After an error: encodes the fatal alert rustls queued for it (none for a closed peer)
    /// onto the outgoing buffer. rustls hands out what it has queued before it looks at the
    /// buffer again, and everything queued before the error went out already, so the one
    /// call yields the alert. The session's own buffer, as in `seal`.
    fn encode_alert(&mut self) {
        let UnbufferedStatus { state, .. } = self.conn.process_tls_records(&mut self.incoming[..]);
        if let Ok(ConnectionState::EncodeTlsData(mut e)) = state {
            // a fatal alert, sealed or not, is a few dozen bytes
            let mut buf = [0u8; 128];
            if let Ok(n) = e.encode(&mut buf) {
                self.outgoing.extend_from_slice(&buf[..n]);
            }
        }
    }

    fn process_records(&mut self) -> Result<bool, TlsError> {
        let mut done = false;
        loop {
            let UnbufferedStatus { mut discard, state } =
                self.conn.process_tls_records(&mut self.incoming[..]);
            let state = match state {
                Ok(state) => state,
                Err(e) => {
                    // keep the buffer as rustls expects it for the alert that follows
                    self.incoming.drain(..discard);
                    return Err(e.into());
                }
            };
            let mut more = true;
            match state {
                ConnectionState::ReadTraffic(mut r) => {
                    while let Some(record) = r.next_record() {
                        let record = record.map_err(TlsError::from)?;
                        discard += record.discard;
                        self.plain.extend_from_slice(record.payload);
                    }
                }
                ConnectionState::ReadEarlyData(mut r) => {
                    // 0-RTT is not enabled; nothing is accepted from it
                    while let Some(record) = r.next_record() {
                        discard += record.map_err(TlsError::from)?.discard;
                    }
                }
                ConnectionState::EncodeTlsData(mut e) => {
                    let at = self.outgoing.len();
                    self.outgoing.resize(at + 4096, 0);
                    let n = match e.encode(&mut self.outgoing[at..]) {
                        Ok(n) => n,
                        Err(EncodeError::InsufficientSize(s)) => {
                            self.outgoing.resize(at + s.required_size, 0);
                            e.encode(&mut self.outgoing[at..])
                                .map_err(|e| TlsError(e.to_string()))?
                        }
                        Err(e) => return Err(TlsError(e.to_string())),
                    };
                    self.outgoing.truncate(at + n);
                }
                // written by the caller before it reads again: the peer cannot answer
                // what it has not been sent
                ConnectionState::TransmitTlsData(t) => t.done(),
                ConnectionState::BlockedHandshake => more = false,
                ConnectionState::WriteTraffic(_) => {
                    done = true;
                    more = false;
                }
                ConnectionState::PeerClosed | ConnectionState::Closed => {
                    self.closed = true;
                    more = false;
                }
                _ => more = false,
            }
            if discard > 0 {
                self.incoming.drain(..discard);
            }
            if !more {
                self.release_incoming();
                return Ok(done);
            }
        }
    }

    /// Encrypts `data` onto the end of `out` (the session's own outgoing buffer, or a
    /// caller's scratch buffer that it writes itself).
    ///
    /// rustls is handed the session's `incoming` buffer here too, never an empty one: while a
    /// handshake message is only partly received (a renegotiation hello or a key update split
    /// across records), its first part stays at the front of that buffer and rustls keeps
    /// offsets into it, which an empty buffer would put out of range (a panic in rustls).
    pub(crate) fn seal(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), TlsError> {
        if data.is_empty() {
            return Ok(());
        }
        if self.failed {
            return Err(TlsError("connection failed".into()));
        }
        loop {
            let UnbufferedStatus { mut discard, state } =
                self.conn.process_tls_records(&mut self.incoming[..]);
            let state = match state {
                Ok(state) => state,
                Err(e) => {
                    self.failed = true;
                    return Err(e.into());
                }
            };
            let sealed = match state {
                ConnectionState::WriteTraffic(mut w) => Some(encrypt(&mut w, data, out)),
                ConnectionState::EncodeTlsData(mut e) => {
                    // a pending handshake message (a key update) goes first
                    let mut buf = vec![0u8; 4096];
                    let n = match e.encode(&mut buf) {
                        Ok(n) => n,
                        Err(EncodeError::InsufficientSize(s)) => {
                            buf.resize(s.required_size, 0);
                            e.encode(&mut buf).map_err(|e| TlsError(e.to_string()))?
                        }
                        Err(e) => return Err(TlsError(e.to_string())),
                    };
                    out.extend_from_slice(&buf[..n]);
                    None
                }
                ConnectionState::TransmitTlsData(t) => {
                    t.done();
                    None
                }
                ConnectionState::ReadTraffic(mut r) => {
                    while let Some(record) = r.next_record() {
                        let record = record.map_err(TlsError::from)?;
                        discard += record.discard;
                        self.plain.extend_from_slice(record.payload);
                    }
                    None
                }
                _ => return Err(TlsError("connection closed".into())),
            };
            if discard > 0 {
                self.incoming.drain(..discard);
            }
            if let Some(sealed) = sealed {
                return sealed;
            }
        }
    }

    /// Seals `close_notify` into the outgoing buffer (once).
    pub(crate) fn close(&mut self) {
        if std::mem::replace(&mut self.sent_close, true) || self.failed {
            return;
        }
        // the session's own buffer, as in `seal`
        let UnbufferedStatus { state, .. } = self.conn.process_tls_records(&mut self.incoming[..]);
        if let Ok(ConnectionState::WriteTraffic(mut w)) = state {
            let mut buf = [0u8; 64];
            if let Ok(n) = w.queue_close_notify(&mut buf) {
                self.outgoing.extend_from_slice(&buf[..n]);
            }
        }
    }
}

/// Encrypts `data` onto the end of `out`: one record per 16 KiB, each at most 256 bytes
/// longer.
fn encrypt<Data>(
    w: &mut rustls::unbuffered::WriteTraffic<'_, Data>,
    data: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), TlsError> {
    let at = out.len();
    let room = data.len() + (data.len() / 16_384 + 1) * 256;
    out.resize(at + room, 0);
    let first = match w.encrypt(data, &mut out[at..]) {
        Err(EncryptError::InsufficientSize(s)) => {
            out.resize(at + s.required_size, 0);
            w.encrypt(data, &mut out[at..])
        }
        done => done,
    };
    match first {
        Ok(n) => {
            out.truncate(at + n);
            Ok(())
        }
        Err(e) => {
            out.truncate(at);
            Err(TlsError(e.to_string()))
        }
    }
}

/// The TLS handshake on a freshly accepted socket, within `wait`. Application data the
/// client sent along with its last handshake message is kept in [`TlsSession::plain`].
pub(crate) async fn accept(
    sock: &TcpStream,
    config: Arc<rustls::ServerConfig>,
    wait: Duration,
) -> Result<Box<TlsSession>, TlsError> {
    let mut tls = Box::new(TlsSession::new(config)?);
    let handshake = async {
        loop {
            // what rustls wants sent goes before anything more is read
            while !tls.pending_out().is_empty() {
                sock.writable().await.map_err(io_error)?;
                match tls.write_out(sock) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(io_error(e)),
                }
            }
            if tls.process()? {
                if !tls.pending_out().is_empty() {
                    continue;
                }
                return Ok(());
            }
            if !tls.pending_out().is_empty() {
                continue;
            }
            if tls.closed {
                return Err(TlsError("client closed during the handshake".into()));
            }
            sock.readable().await.map_err(io_error)?;
            match tls.read_from(sock) {
                Ok(Received::Progress) => {}
                Ok(Received::Closed) => {
                    return Err(TlsError("client closed during the handshake".into()))
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(io_error(e)),
            }
        }
    };
    match tokio::time::timeout(wait, handshake).await {
        Ok(Ok(())) => {
            tls.h2 = tls.conn.alpn_protocol() == Some(b"h2");
            Ok(tls)
        }
        Ok(Err(e)) => {
            // the alert that says why, if the socket takes it now
            let _ = tls.write_out(sock);
            Err(e)
        }
        Err(_) => Err(TlsError("handshake timed out".into())),
    }
}

fn io_error(e: io::Error) -> TlsError {
    TlsError(e.to_string())
}
