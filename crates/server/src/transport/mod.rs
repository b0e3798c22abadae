//! The client side of a connection, below the proxy: [`ClientConn`] (the socket between
//! requests, with what was read past the current request) and the I/O every layer above
//! uses on it: reading a request body, writing a response with a stall bound, answering a
//! refusal.
//!
//! A connection is plain TCP or TLS ([`ClientStream`], [`tls`]); the layers above see one
//! byte stream either way. A request may also come on one stream of an HTTP/2 connection
//! ([`h2`]): the body is read and every response written through the functions here
//! ([`read_body`], [`write_head`], [`write_body`], [`end_body`], [`respond_full`],
//! [`write_simple`]), which write an HTTP/1 head and bytes on a byte stream and a structured
//! head and DATA frames on an HTTP/2 stream.
//!
//! This is the transport seam: `conn` (the request loop), `proxy`, `relay`, `hold` and `ws`
//! all reach the client through it and never through each other.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use gripway_proto::chunked::{ChunkedDecoder, Decoded};
use gripway_proto::http1::{BodyFraming, RequestHead, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::Refusal;
use crate::Shared;

pub(crate) mod h2;
mod head;
mod stream;
pub(crate) mod tls;

pub(crate) use head::{read_head, HeadRead};
pub(crate) use stream::{ClientStream, SocketStream};

/// A client connection between requests.
pub(crate) struct ClientConn {
    pub(crate) sock: ClientStream,
    pub(crate) peer: SocketAddr,
    /// Bytes read past the current request (pipelined); empty and unallocated when idle.
    pub(crate) buf: BytesMut,
    pub(crate) guard: crate::metrics::ConnGuard,
}

/// Why a request body could not be read.
pub(crate) enum BodyProblem {
    /// Larger than allowed: answer 413.
    TooLarge,
    /// Malformed chunked framing: answer 400.
    Bad(String),
    /// The client went away.
    Gone,
    /// The whole body did not arrive within the wait.
    TimedOut,
}

/// Reads the request body into memory (bounded by `max`).
pub(crate) async fn read_body(
    sock: &mut ClientStream,
    buf: &mut BytesMut,
    head: &RequestHead,
    max: usize,
    wait: Duration,
) -> Result<Bytes, BodyProblem> {
    let framing = head.framing;
    if framing == BodyFraming::None {
        return Ok(Bytes::new());
    }
    if let ClientStream::H2(h2) = sock {
        return tokio::time::timeout(wait, h2.read_body(max))
            .await
            .unwrap_or(Err(BodyProblem::TimedOut));
    }
    if let BodyFraming::Length(n) = framing {
        if n > max as u64 {
            return Err(BodyProblem::TooLarge);
        }
    }
    if head.expects_continue() && head.version == Version::Http11 {
        sock.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .map_err(|_| BodyProblem::Gone)?;
    }
    let read = async {
        match framing {
            BodyFraming::None => Ok(Bytes::new()),
            BodyFraming::Length(n) => read_length_body(sock, buf, n as usize)
                .await
                .map_err(|_| BodyProblem::Gone),
            BodyFraming::Chunked => {
                let mut decoder = ChunkedDecoder::new(max as u64);
                let mut body = BytesMut::new();
                loop {
                    match decoder.decode(buf) {
                        Ok(Decoded::Data(d)) => body.extend_from_slice(&d),
                        Ok(Decoded::Done) => return Ok(body.freeze()),
                        Ok(Decoded::NeedMore) => {
                            buf.reserve(4096);
                            if sock.read_buf(buf).await.map_err(|_| BodyProblem::Gone)? == 0 {
                                return Err(BodyProblem::Gone);
                            }
                        }
                        Err(gripway_proto::chunked::ChunkedError::TooLarge(_)) => {
                            return Err(BodyProblem::TooLarge)
                        }
                        Err(e) => return Err(BodyProblem::Bad(e.to_string())),
                    }
                }
            }
        }
    };
    tokio::time::timeout(wait, read)
        .await
        .unwrap_or(Err(BodyProblem::TimedOut))
}

/// Writes all of `data` to `sock`, giving up when the peer takes nothing for `stall`: a
/// client that stops reading cannot hold a task (and whatever feeds it) forever. Vectored
/// where `data` has several parts.
pub(crate) async fn write_all_progress<B: bytes::Buf>(
    sock: &mut ClientStream,
    data: &mut B,
    stall: Duration,
) -> Result<(), WriteFailed> {
    while data.has_remaining() {
        match tokio::time::timeout(stall, sock.write_buf(data)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Err(WriteFailed::Gone),
            Ok(Ok(_)) => {}
            Err(_) => return Err(WriteFailed::Stalled),
        }
    }
    // over TLS the last record may still be in the session's buffer
    match tokio::time::timeout(stall, sock.flush()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(WriteFailed::Gone),
        Err(_) => Err(WriteFailed::Stalled),
    }
}

/// Why a response could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteFailed {
    /// The client closed the connection or it failed.
    Gone,
    /// The client took nothing for the whole write timeout.
    Stalled,
}

/// First allocation for a body of known length; it then doubles as bytes arrive, so a
/// `Content-Length` alone reserves no more than this.
const BODY_STEP: usize = 16 * 1024;

/// Reads a body of `n` bytes (already checked against the limit): what `buf` holds of it
/// first, then from `sock`, never reading past its end (what follows stays in the socket for
/// the next request).
async fn read_length_body<R: tokio::io::AsyncRead + Unpin>(
    sock: &mut R,
    buf: &mut BytesMut,
    n: usize,
) -> std::io::Result<Bytes> {
    if buf.len() >= n {
        return Ok(buf.split_to(n).freeze());
    }
    let mut body: Vec<u8> = Vec::with_capacity(n.min(buf.len().max(BODY_STEP)));
    body.extend_from_slice(&buf.split());
    while body.len() < n {
        if body.len() == body.capacity() {
            // double what has arrived, never past the declared length
            let grow = body.len().max(BODY_STEP).min(n - body.len());
            body.reserve_exact(grow);
        }
        let room = n - body.len();
        if sock.read_buf(&mut (&mut body).limit(room)).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(Bytes::from(body))
}

/// Counts and logs `refusal`, then answers it with its status and detail as the body.
pub(crate) async fn answer_refusal(
    shared: &Shared,
    sock: &mut ClientStream,
    version: Version,
    refusal: &Refusal,
    keep_alive: bool,
) {
    shared.metrics.error(refusal);
    refusal.log("");
    let _ = write_simple(sock, version, refusal.status, &refusal.detail, keep_alive).await;
}

/// Writes a response head: HTTP/1 bytes, or an HTTP/2 HEADERS frame (`end`: with no body
/// to follow).
pub(crate) async fn write_head(
    sock: &mut ClientStream,
    version: Version,
    status: u16,
    reason: Option<&str>,
    headers: &http::HeaderMap,
    end: bool,
    stall: Duration,
) -> Result<(), WriteFailed> {
    if let Some(h2) = h2::stream_of(sock) {
        return h2.start(status, headers.clone(), end);
    }
    let mut out = BytesMut::with_capacity(512);
    gripway_proto::http1::write_response_head(&mut out, version, status, reason, headers);
    write_all_progress(sock, &mut &out[..], stall).await
}

/// Writes body bytes as they are: to the byte stream (framed by the caller), or as DATA
/// frames within an HTTP/2 stream's windows.
pub(crate) async fn write_body(
    sock: &mut ClientStream,
    data: &Bytes,
    stall: Duration,
) -> Result<(), WriteFailed> {
    match h2::stream_of(sock) {
        Some(h2) => h2.send_data(data.clone(), false, stall).await,
        None => write_all_progress(sock, &mut &data[..], stall).await,
    }
}

/// Ends a response body: END_STREAM on an HTTP/2 stream; nothing on a byte stream, whose
/// framing (a length, a last chunk, the close) is the caller's.
pub(crate) async fn end_body(sock: &mut ClientStream, stall: Duration) -> Result<(), WriteFailed> {
    match h2::stream_of(sock) {
        Some(h2) => h2.send_data(Bytes::new(), true, stall).await,
        None => Ok(()),
    }
}

/// Writes a whole response: over HTTP/1 head and body in one write, over HTTP/2 a HEADERS
/// frame and the body's DATA frames. `body` None: a response that has no body (HEAD, 204,
/// 304), whatever its headers say.
pub(crate) async fn respond_full(
    sock: &mut ClientStream,
    version: Version,
    status: u16,
    reason: Option<&str>,
    headers: &http::HeaderMap,
    body: Option<&Bytes>,
    stall: Duration,
) -> Result<(), WriteFailed> {
    if let Some(h2) = h2::stream_of(sock) {
        let body = body.filter(|b| !b.is_empty());
        h2.start(status, headers.clone(), body.is_none())?;
        return match body {
            Some(b) => h2.send_data(b.clone(), true, stall).await,
            None => Ok(()),
        };
    }
    let len = body.map_or(0, |b| b.len());
    let mut out = BytesMut::with_capacity(256 + len);
    gripway_proto::http1::write_response_head(&mut out, version, status, reason, headers);
    if let Some(b) = body {
        out.extend_from_slice(b);
    }
    write_all_progress(sock, &mut &out[..], stall).await
}

/// Writes a short `text/plain` response generated by Gripway itself.
pub(crate) async fn write_simple(
    sock: &mut ClientStream,
    version: Version,
    status: u16,
    body: &str,
    keep_alive: bool,
) -> std::io::Result<()> {
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    headers.insert(
        http::header::CONTENT_LENGTH,
        http::HeaderValue::from(body.len()),
    );
    if !keep_alive {
        headers.insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
    let body = Bytes::copy_from_slice(body.as_bytes());
    let stall = Duration::from_secs(10);
    let written = tokio::time::timeout(
        stall,
        respond_full(sock, version, status, None, &headers, Some(&body), stall),
    )
    .await;
    match written {
        Ok(Ok(())) => Ok(()),
        Ok(Err(WriteFailed::Gone)) => Err(std::io::ErrorKind::BrokenPipe.into()),
        Ok(Err(WriteFailed::Stalled)) | Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use tokio::io::{AsyncRead, ReadBuf};

    use super::*;

    /// Hands out `data` a few bytes at a time and remembers the largest buffer it was given.
    struct Drip {
        data: Vec<u8>,
        at: usize,
        step: usize,
        largest_offer: usize,
    }

    impl AsyncRead for Drip {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            self.largest_offer = self.largest_offer.max(buf.remaining());
            let n = self
                .step
                .min(buf.remaining())
                .min(self.data.len() - self.at);
            let at = self.at;
            buf.put_slice(&self.data[at..at + n]);
            self.at += n;
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_declared_length_reserves_only_what_arrives() {
        let n = 1024 * 1024;
        // the client declares 1 MiB and sends 100 bytes before it goes away
        let mut sock = Drip {
            data: vec![b'x'; 100],
            at: 0,
            step: 10,
            largest_offer: 0,
        };
        let mut buf = BytesMut::new();
        let read = read_length_body(&mut sock, &mut buf, n).await;
        assert!(read.is_err());
        assert!(
            sock.largest_offer <= BODY_STEP,
            "{} bytes reserved for 100 that arrived",
            sock.largest_offer
        );
    }

    #[tokio::test]
    async fn a_body_grows_to_its_length_and_leaves_what_follows() {
        let n = 300_000;
        let mut data = vec![b'x'; n];
        data.extend_from_slice(b"GET /next HTTP/1.1\r\n\r\n");
        let mut sock = Drip {
            data,
            at: 0,
            step: 7000,
            largest_offer: 0,
        };
        let mut buf = BytesMut::from(&b"xxxxx"[..]);
        let body = read_length_body(&mut sock, &mut buf, n).await.unwrap();
        assert_eq!(body.len(), n);
        assert_eq!(sock.at, n - 5, "never reads past the body");
        assert!(sock.largest_offer <= n / 2 + BODY_STEP);
        // what the head read left past the body stays for the next request
        let mut buf = BytesMut::from(&b"abcdefGET"[..]);
        let body = read_length_body(&mut sock, &mut buf, 6).await.unwrap();
        assert_eq!(&body[..], b"abcdef");
        assert_eq!(&buf[..], b"GET");
    }
}
