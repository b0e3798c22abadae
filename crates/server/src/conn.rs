//! One client connection, from accept to close: read a request head, hand the request to the
//! proxy, then either loop for the next request (keep-alive), close, or turn the connection
//! into a held subscriber.
//!
//! Memory per connection is the point here. The read buffer exists only while a request is
//! being read and is released afterwards; each phase (proxying, holding) runs in its own boxed
//! future so the connection's long-lived state is only what the current phase needs.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use gripway_proto::chunked::{ChunkedDecoder, Decoded};
use gripway_proto::http1::{parse_request_head, BodyFraming, HeadError, RequestHead, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::error::Refusal;
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

/// Accepts clients until the listener fails for good.
pub(crate) async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        let (sock, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // e.g. out of file descriptors: back off rather than spin
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = sock.set_nodelay(true);
        let open = shared.open_connections.fetch_add(1, Ordering::Relaxed);
        if open >= shared.config.grip.max_connections {
            shared.open_connections.fetch_sub(1, Ordering::Relaxed);
            let refusal = Refusal::internal(503, "too-many-connections", "Too many connections.\n");
            shared.metrics.error(&refusal);
            refusal.log("");
            tokio::spawn(async move {
                let mut sock = sock;
                let _ = write_simple(&mut sock, Version::Http11, 503, &refusal.detail, false).await;
            });
            continue;
        }
        let shared = shared.clone();
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
            shared.open_connections.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// Serves requests on one connection until it closes.
pub(crate) async fn serve(shared: &Arc<Shared>, mut conn: ClientConn) {
    let mut first = true;
    loop {
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
                    Box::pin(crate::ws::run(shared, conn, plan)).await;
                    return;
                }
                Next::Hold(plan) => match Box::pin(crate::hold::run(shared, conn, plan)).await {
                    HoldEnd::Close => return,
                    HoldEnd::KeepAlive(c) => {
                        conn = c;
                        break;
                    }
                    HoldEnd::Retry(c, request) => {
                        conn = c;
                        next = Box::pin(proxy::retry(shared, &mut conn, *request)).await;
                    }
                },
            }
        }
    }
}

/// Reads the next request and proxies it.
async fn next_request(shared: &Arc<Shared>, conn: &mut ClientConn, wait: Duration) -> Next {
    match read_head(shared, conn, wait).await {
        Some(head) => proxy::handle(shared, conn, head).await,
        None => Next::Close,
    }
}

/// Reads one request head; None when the connection should close (EOF, timeout, or a bad
/// head, which has been answered).
async fn read_head(shared: &Shared, conn: &mut ClientConn, wait: Duration) -> Option<RequestHead> {
    let max = shared.config.proxy.max_request_head;
    let read = async {
        loop {
            if !conn.buf.is_empty() {
                match parse_request_head(&conn.buf) {
                    Ok(Some((head, used))) => {
                        let _ = conn.buf.split_to(used);
                        return Ok(Some(head));
                    }
                    Ok(None) if conn.buf.len() >= max => return Err(HeadProblem::TooLarge),
                    Ok(None) => {}
                    Err(e) => return Err(HeadProblem::Bad(e)),
                }
            }
            if conn.buf.capacity() - conn.buf.len() < 512 {
                conn.buf.reserve(if conn.buf.is_empty() {
                    1024
                } else {
                    conn.buf.len()
                });
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
            BodyFraming::Length(n) => {
                let n = n as usize;
                while conn.buf.len() < n {
                    conn.buf.reserve(n - conn.buf.len());
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
                Ok(conn.buf.split_to(n).freeze())
            }
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
