//! [`ClientStream`]: a client's byte stream, plain TCP or TLS, as one `AsyncRead` +
//! `AsyncWrite` for the request loop, the proxy and the relay.
//!
//! Plain TCP passes straight through to the socket. Over TLS a write seals the bytes into
//! the session's outgoing buffer and writes what the socket takes; the rest goes out on the
//! next write or on `flush` (the transport's helpers flush after every response, so a
//! response is on the wire when they return, as with TCP). A read decrypts whole records and
//! hands out their plaintext.
//!
//! A held connection takes the socket and the TLS session apart again
//! ([`ClientStream::into_parts`]): the sink then writes to the socket itself, under its lock.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Buf;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::tls::{Received, TlsSession};

/// Most plaintext sealed by one write (four full records).
const MAX_SEAL: usize = 64 * 1024;

/// A client's connection: the socket, and its TLS session when it has one.
pub(crate) struct ClientStream {
    pub(crate) sock: TcpStream,
    pub(crate) tls: Option<Box<TlsSession>>,
}

impl ClientStream {
    pub(crate) fn plain(sock: TcpStream) -> ClientStream {
        ClientStream { sock, tls: None }
    }

    /// True for a TLS connection.
    pub(crate) fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The socket and the TLS session, for a held connection's sink.
    pub(crate) fn into_parts(self) -> (TcpStream, Option<Box<TlsSession>>) {
        (self.sock, self.tls)
    }

    /// Writes what the TLS session has pending; Pending while the socket is full.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(tls) = self.tls.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        loop {
            match tls.write_out(&self.sock) {
                Ok(()) => return Poll::Ready(Ok(())),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(self.sock.poll_write_ready(cx))?;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(tls) = this.tls.as_mut() else {
            return Pin::new(&mut this.sock).poll_read(cx, buf);
        };
        loop {
            if !tls.plain.is_empty() {
                let n = tls.plain.len().min(buf.remaining());
                buf.put_slice(&tls.plain[..n]);
                tls.plain.advance(n);
                if tls.plain.is_empty() {
                    tls.plain = bytes::BytesMut::new();
                }
                return Poll::Ready(Ok(()));
            }
            if tls.is_closed() {
                return Poll::Ready(Ok(()));
            }
            match tls.read_from(&this.sock) {
                Ok(Received::Progress) => {
                    // a key update's reply goes out with the next write; best effort now
                    if !tls.pending_out().is_empty() {
                        match tls.write_out(&this.sock) {
                            Ok(()) => {}
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                            Err(e) => return Poll::Ready(Err(e)),
                        }
                    }
                }
                Ok(Received::Closed) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(this.sock.poll_read_ready(cx))?;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.tls.is_none() {
            return Pin::new(&mut this.sock).poll_write(cx, buf);
        }
        // what an earlier write sealed goes first, so the outgoing buffer stays one write long
        ready!(this.poll_write_out(cx))?;
        let tls = this.tls.as_mut().expect("checked above");
        let n = buf.len().min(MAX_SEAL);
        let mut out = Vec::new();
        tls.seal(&buf[..n], &mut out)?;
        let taken = match this.sock.try_write(&out) {
            Ok(w) => w,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => return Poll::Ready(Err(e)),
        };
        if taken < out.len() {
            tls.keep_out(&out[taken..]);
        }
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.tls.is_none() {
            return Pin::new(&mut this.sock).poll_write_vectored(cx, bufs);
        }
        let first = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &b[..]);
        Pin::new(this).poll_write(cx, first)
    }

    fn is_write_vectored(&self) -> bool {
        self.tls.is_none()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_write_out(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(tls) = this.tls.as_mut() {
            tls.close();
            ready!(this.poll_write_out(cx))?;
        }
        Pin::new(&mut this.sock).poll_shutdown(cx)
    }
}
