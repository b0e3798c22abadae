//! [`ClientStream`]: what a request's response goes out on: a client's byte stream (plain
//! TCP or TLS, [`SocketStream`], one `AsyncRead` + `AsyncWrite` for the request loop, the
//! proxy and the relay), or one HTTP/2 stream ([`super::h2::H2Stream`]), which has no byte
//! stream of its own: responses reach it through the transport's functions
//! ([`super::write_head`] and the rest), never through `AsyncWrite`.
//!
//! Plain TCP passes straight through to the socket. Over TLS a write seals the bytes into
//! the session's outgoing buffer and writes what the socket takes; the rest goes out on the
//! next write or on `flush` (the transport's helpers flush after every response, so a
//! response is on the wire when they return, as with TCP). A read decrypts whole records and
//! hands out their plaintext.
//!
//! A held connection takes the socket and the TLS session apart again
//! (the sink takes [`SocketStream`]'s fields): it then writes to the socket itself, under its lock.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Buf;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::h2::H2Stream;
use super::tls::{Received, TlsSession};

/// Most plaintext sealed by one write (four full records).
const MAX_SEAL: usize = 64 * 1024;

/// Where a response goes: a connection's byte stream, or one stream of an HTTP/2
/// connection (boxed: a plain connection stays the size of its socket and TLS pointer).
pub(crate) enum ClientStream {
    Socket(SocketStream),
    H2(Box<H2Stream>),
}

/// A client's connection: the socket, and its TLS session when it has one.
pub(crate) struct SocketStream {
    pub(crate) sock: TcpStream,
    pub(crate) tls: Option<Box<TlsSession>>,
}

impl ClientStream {
    pub(crate) fn plain(sock: TcpStream) -> ClientStream {
        ClientStream::Socket(SocketStream { sock, tls: None })
    }

    pub(crate) fn tls(sock: TcpStream, tls: Box<TlsSession>) -> ClientStream {
        ClientStream::Socket(SocketStream {
            sock,
            tls: Some(tls),
        })
    }

    /// True for a TLS connection (an HTTP/2 stream over TLS too).
    pub(crate) fn is_tls(&self) -> bool {
        match self {
            ClientStream::Socket(s) => s.tls.is_some(),
            ClientStream::H2(h) => h.tls,
        }
    }

    /// The peer's address (asked of the socket; an HTTP/2 stream has no socket of its own).
    pub(crate) fn peer_addr(&self) -> io::Result<std::net::SocketAddr> {
        match self {
            ClientStream::Socket(s) => s.sock.peer_addr(),
            ClientStream::H2(_) => Err(io::ErrorKind::Unsupported.into()),
        }
    }

    /// True for an HTTP/2 stream.
    pub(crate) fn is_h2(&self) -> bool {
        matches!(self, ClientStream::H2(_))
    }
}

impl SocketStream {
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

impl AsyncRead for SocketStream {
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

impl AsyncWrite for SocketStream {
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

fn no_bytes() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "an HTTP/2 stream has no byte stream",
    )
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Socket(s) => Pin::new(s).poll_read(cx, buf),
            ClientStream::H2(_) => Poll::Ready(Err(no_bytes())),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Socket(s) => Pin::new(s).poll_write(cx, buf),
            ClientStream::H2(_) => Poll::Ready(Err(no_bytes())),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Socket(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            ClientStream::H2(_) => Poll::Ready(Err(no_bytes())),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ClientStream::Socket(s) => s.is_write_vectored(),
            ClientStream::H2(_) => false,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Socket(s) => Pin::new(s).poll_flush(cx),
            ClientStream::H2(_) => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Socket(s) => Pin::new(s).poll_shutdown(cx),
            ClientStream::H2(_) => Poll::Ready(Ok(())),
        }
    }
}
