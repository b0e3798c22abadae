//! One client connection, from accept to close: read a request head, hand the request to the
//! proxy, then either loop for the next request (keep-alive), close, or turn the connection
//! into a held subscriber.
//!
//! Memory per connection is the point here. The read buffer exists only while a request is
//! being read and is released afterwards; each phase (proxying, holding) runs in its own boxed
//! future so the connection's long-lived state is only what the current phase needs.
//!
//! Bytes pipelined behind a held request are kept (boxed) and served when the hold ends;
//! bytes sent behind a WebSocket upgrade before its answer are refused, never dropped.
//!
//! At shutdown ([`crate::drain`]) the accept loops end (closing the listeners), a connection
//! waiting for its next request closes, and one that finishes a request closes after it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use gripway_proto::chunked::{ChunkedDecoder, Decoded};
use gripway_proto::http1::{
    parse_request_head, BodyFraming, HeadError, HeadScan, RequestHead, Version,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::error::Refusal;
use crate::fds::{AcceptBackoff, ClientGate, Turned};
use crate::hold::HoldEnd;
use crate::metrics::ConnKind;
use crate::proxy::{self, Next};
use crate::Shared;

/// A client connection between requests.
pub(crate) struct ClientConn {
    pub(crate) sock: TcpStream,
    pub(crate) peer: SocketAddr,
    /// Bytes read past the current request (pipelined); empty and unallocated when idle.
    pub(crate) buf: BytesMut,
    pub(crate) guard: crate::metrics::ConnGuard,
}

/// Accepts clients until the drain begins (then the listener closes). A client is refused
/// with 503 once the connection limit (which keeps descriptors in reserve, see
/// [`crate::fds`]) is reached, and with 429 once its address holds its limit.
pub(crate) async fn accept_loop(shared: Arc<Shared>, gate: Arc<ClientGate>, listener: TcpListener) {
    let mut backoff = AcceptBackoff::default();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shared.drain.started() => return,
        };
        let (sock, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // e.g. out of file descriptors: back off rather than spin
                backoff.failed("client listener", &e).await;
                continue;
            }
        };
        backoff.succeeded();
        let _ = sock.set_nodelay(true);
        let admitted = match gate.admit(peer.ip()) {
            Ok(a) => a,
            Err(turned) => {
                let refusal = match turned {
                    Turned::Full => {
                        Refusal::internal(503, "too-many-connections", "Too many connections.\n")
                    }
                    Turned::AddressFull => Refusal::client(
                        429,
                        "too-many-connections-from-address",
                        "Too many connections from this address.\n",
                    ),
                };
                shared.metrics.error(&refusal);
                refusal.log("");
                tokio::spawn(async move {
                    let mut sock = sock;
                    let status = refusal.status;
                    let _ =
                        write_simple(&mut sock, Version::Http11, status, &refusal.detail, false)
                            .await;
                });
                continue;
            }
        };
        let shared = shared.clone();
        let busy = shared.drain.busy();
        tokio::spawn(async move {
            let guard = shared.metrics.connection(ConnKind::Http);
            serve(
                &shared,
                ClientConn {
                    sock,
                    peer,
                    buf: BytesMut::new(),
                    guard,
                },
            )
            .await;
            drop(admitted);
            drop(busy);
        });
    }
}

/// Serves requests on one connection until it closes.
pub(crate) async fn serve(shared: &Arc<Shared>, mut conn: ClientConn) {
    let mut first = true;
    loop {
        if shared.drain.is_draining() {
            return;
        }
        let wait = if first {
            shared.config.proxy.request_head_timeout
        } else {
            shared.config.proxy.idle_timeout
        };
        first = false;
        // boxed: the request head and proxying state exist only while a request is served
        let mut next = Box::pin(next_request(shared, &mut conn, wait)).await;
        loop {
            match next {
                Next::KeepAlive => {
                    if conn.buf.is_empty() {
                        // an idle connection keeps no read buffer
                        conn.buf = BytesMut::new();
                    }
                    break;
                }
                Next::Close => return,
                Next::WebSocket(plan) => {
                    if !conn.buf.is_empty() {
                        Box::pin(refuse_websocket_early_data(shared, conn)).await;
                        return;
                    }
                    Box::pin(crate::ws::run(shared, conn, plan)).await;
                    return;
                }
                Next::Hold(plan) => {
                    // requests pipelined behind the held one wait for the hold to end; boxed,
                    // so an ordinary connection's future does not grow by a buffer
                    let pipelined =
                        (!conn.buf.is_empty()).then(|| Box::new(std::mem::take(&mut conn.buf)));
                    let end = Box::pin(crate::hold::run(shared, conn, plan)).await;
                    let resume = |mut c: ClientConn| {
                        if let Some(buf) = pipelined {
                            c.buf = *buf;
                        }
                        c
                    };
                    match end {
                        HoldEnd::Close => return,
                        HoldEnd::KeepAlive(c) => {
                            conn = resume(c);
                            break;
                        }
                        HoldEnd::Retry(c, request) => {
                            conn = resume(c);
                            next = Box::pin(proxy::retry(shared, &mut conn, *request)).await;
                        }
                    }
                }
            }
        }
    }
}

/// RFC 6455 §4.1: a client sends nothing after its handshake until it has the server's.
/// Refused, not dropped: dropping would cut the client's frames at an arbitrary byte.
async fn refuse_websocket_early_data(shared: &Shared, mut conn: ClientConn) {
    let refusal = Refusal::client(
        400,
        "websocket-early-data",
        "Bad request: data sent before the WebSocket handshake completed.\n",
    );
    answer_refusal(shared, &mut conn.sock, Version::Http11, &refusal, false).await;
}

/// Reads the next request and proxies it; closes instead if the drain begins first.
async fn next_request(shared: &Arc<Shared>, conn: &mut ClientConn, wait: Duration) -> Next {
    let head = tokio::select! {
        // a request already here is served
        biased;
        head = read_head(shared, conn, wait) => head,
        _ = shared.drain.started() => None,
    };
    match head {
        Some(head) => proxy::handle(shared, conn, head).await,
        None => Next::Close,
    }
}

/// Reads one request head; None when the connection should close (EOF, timeout, or a bad
/// head, which has been answered).
///
/// Linear in the head's size however it is dripped in: each byte is scanned once for the end
/// of the head and the head is parsed once, when that end is there. The head may be at most
/// `max_request_head` bytes, exactly, whether it comes in one read or many; the buffer grows
/// with what arrives.
async fn read_head(shared: &Shared, conn: &mut ClientConn, wait: Duration) -> Option<RequestHead> {
    let max = shared.config.proxy.max_request_head;
    let read = async {
        let mut scan = HeadScan::default();
        loop {
            if !conn.buf.is_empty() {
                match scan.scan(&conn.buf, max) {
                    Ok(Some(end)) => {
                        let raw = conn.buf.split_to(end);
                        return match parse_request_head(&raw) {
                            Ok(Some((head, _))) => Ok(Some(head)),
                            // the scan found the blank line: the parser cannot want more
                            Ok(None) => Err(HeadProblem::Bad(HeadError::Malformed(
                                "incomplete request head".into(),
                            ))),
                            Err(e) => Err(HeadProblem::Bad(e)),
                        };
                    }
                    Ok(None) => {}
                    Err(HeadError::TooLarge) => return Err(HeadProblem::TooLarge),
                    Err(e) => return Err(HeadProblem::Bad(e)),
                }
            }
            if conn.buf.capacity() - conn.buf.len() < 512 {
                // grow with what arrives, never past the limit
                let len = conn.buf.len();
                let want = len.max(1024).min(max.saturating_sub(len)).max(1);
                conn.buf.reserve(want);
            }
            match conn.sock.read_buf(&mut conn.buf).await {
                Ok(0) if conn.buf.is_empty() => return Ok(None),
                Ok(0) => return Err(HeadProblem::Truncated),
                Ok(_) => {}
                Err(_) => return Ok(None),
            }
        }
    };
    let result = tokio::time::timeout(wait, read).await;
    let problem = match result {
        Ok(Ok(head)) => return head,
        Ok(Err(p)) => p,
        Err(_) if conn.buf.is_empty() => return None,
        Err(_) => HeadProblem::Timeout,
    };
    let refusal = match problem {
        HeadProblem::TooLarge => {
            Refusal::client(431, "request-head-too-large", "Request header too large.\n")
        }
        HeadProblem::Bad(HeadError::BareLf) => Refusal::client(
            400,
            "bare-lf",
            "Bad request: a line of the request head ends in LF without CR.\n",
        ),
        HeadProblem::Bad(e) => {
            Refusal::client(400, "bad-request-head", format!("Bad request: {e}\n"))
        }
        HeadProblem::Truncated => return None,
        HeadProblem::Timeout => {
            Refusal::client(408, "request-head-timeout", "Request timed out.\n")
        }
    };
    answer_refusal(shared, &mut conn.sock, Version::Http11, &refusal, false).await;
    None
}

enum HeadProblem {
    TooLarge,
    Bad(HeadError),
    Truncated,
    Timeout,
}

/// Why a request body could not be read.
pub(crate) enum BodyProblem {
    /// Larger than allowed: answer 413.
    TooLarge,
    /// Malformed chunked framing: answer 400.
    Bad(String),
    /// The client went away or stalled.
    Gone,
}

/// Reads the request body into memory (bounded by `max`).
pub(crate) async fn read_body(
    conn: &mut ClientConn,
    head: &RequestHead,
    max: usize,
    wait: Duration,
) -> Result<Bytes, BodyProblem> {
    let framing = head.framing;
    if framing == BodyFraming::None {
        return Ok(Bytes::new());
    }
    if let BodyFraming::Length(n) = framing {
        if n > max as u64 {
            return Err(BodyProblem::TooLarge);
        }
    }
    if head.expects_continue() && head.version == Version::Http11 {
        conn.sock
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .map_err(|_| BodyProblem::Gone)?;
    }
    let read = async {
        match framing {
            BodyFraming::None => Ok(Bytes::new()),
            BodyFraming::Length(n) => read_length_body(&mut conn.sock, &mut conn.buf, n as usize)
                .await
                .map_err(|_| BodyProblem::Gone),
            BodyFraming::Chunked => {
                let mut decoder = ChunkedDecoder::new(max as u64);
                let mut body = BytesMut::new();
                loop {
                    match decoder.decode(&mut conn.buf) {
                        Ok(Decoded::Data(d)) => body.extend_from_slice(&d),
                        Ok(Decoded::Done) => return Ok(body.freeze()),
                        Ok(Decoded::NeedMore) => {
                            conn.buf.reserve(4096);
                            if conn
                                .sock
                                .read_buf(&mut conn.buf)
                                .await
                                .map_err(|_| BodyProblem::Gone)?
                                == 0
                            {
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
        .unwrap_or(Err(BodyProblem::Gone))
}

/// Writes all of `data` to `sock`, giving up when the peer takes nothing for `stall`: a
/// client that stops reading cannot hold a task (and whatever feeds it) forever. Vectored
/// where `data` has several parts.
pub(crate) async fn write_all_progress<B: bytes::Buf>(
    sock: &mut TcpStream,
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
    Ok(())
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
    sock: &mut TcpStream,
    version: Version,
    refusal: &Refusal,
    keep_alive: bool,
) {
    shared.metrics.error(refusal);
    refusal.log("");
    let _ = write_simple(sock, version, refusal.status, &refusal.detail, keep_alive).await;
}

/// Writes a short `text/plain` response generated by Gripway itself.
pub(crate) async fn write_simple(
    sock: &mut TcpStream,
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
    let mut out = BytesMut::with_capacity(128 + body.len());
    gripway_proto::http1::write_response_head(&mut out, version, status, None, &headers);
    out.extend_from_slice(body.as_bytes());
    let written = tokio::time::timeout(Duration::from_secs(10), sock.write_all(&out)).await;
    match written {
        Ok(r) => r,
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
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
