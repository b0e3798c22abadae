//! HTTP/2 connections toward clients: over TLS when ALPN chose `h2`, and on the plain port
//! when the client opens with the connection preface (h2c with prior knowledge, RFC 9113
//! §3.3; no `Upgrade: h2c`). HTTP/1.1 keeps working on both ports.
//!
//! The `h2` crate owns the protocol: framing, HPACK, flow control, SETTINGS, and the
//! defences against a hostile peer. Gripway sets its limits ([`builder`]): concurrent
//! streams (`[http2] max_concurrent_streams`), the header list (`proxy.max_request_head`,
//! which bounds CONTINUATION floods too), streams reset before they were accepted and
//! streams the server had to reset (rapid reset, CVE-2023-44487), and bytes buffered per
//! stream for sending. A connection found with no open stream at two checks `idle_timeout`
//! apart is closed (GOAWAY), so a client cannot keep one by sending nothing, or only PINGs;
//! one that is still there a period after its GOAWAY is cut.
//!
//! [`serve`] drives one connection: its loop on `accept` is also what moves the connection's
//! bytes, and every stream gets its own task ([`serve_stream`]), which turns the request into
//! a [`RequestHead`] and hands it to the proxy on a [`ClientConn`] whose
//! [`ClientStream::H2`] is the stream: from there on a stream is served as an HTTP/1 request
//! is (relayed, held, retried), through the transport seam. At shutdown the connection says
//! GOAWAY and ends once its streams have (the drain ends held ones).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use gripway_proto::http1::{BodyFraming, RequestHead, Version};
use h2::server::SendResponse;
use h2::RecvStream;
use http::header::{HeaderValue, CONTENT_LENGTH, HOST};
use tokio::net::TcpStream;

use crate::error::Refusal;
use crate::hold::HoldEnd;
use crate::metrics::ConnKind;
use crate::origin::forward::ProxiedRequest;
use crate::proxy::{self, Next};
use crate::transport::h2::{H2Stream, Rewind, PREFACE};
use crate::transport::{answer_refusal, ClientConn, ClientStream};
use crate::Shared;

/// Streams a client may reset before the server accepted them (rapid reset).
const MAX_PENDING_ACCEPT_RESETS: usize = 20;
/// Streams the server may reset for the client's protocol errors before it closes the
/// connection.
const MAX_LOCAL_ERROR_RESETS: usize = 256;
/// Bytes buffered for sending per stream beyond what the windows let out.
const MAX_SEND_BUFFER: usize = 64 * 1024;

/// The connection settings and limits.
fn builder(shared: &Shared) -> h2::server::Builder {
    let mut b = h2::server::Builder::new();
    let max_head = u32::try_from(shared.config.proxy.max_request_head).unwrap_or(u32::MAX);
    b.max_concurrent_streams(shared.config.http2.max_concurrent_streams)
        .max_header_list_size(max_head)
        .max_pending_accept_reset_streams(MAX_PENDING_ACCEPT_RESETS)
        .max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESETS))
        .max_send_buffer_size(MAX_SEND_BUFFER)
        // WebSockets over HTTP/2 (RFC 8441): CONNECT with `:protocol websocket`
        .enable_connect_protocol();
    b
}

/// What a plain connection opened with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Opening {
    /// The HTTP/2 preface.
    H2,
    /// Anything else: an HTTP/1 request.
    Http1,
    /// Nothing within the wait (or the client left): close, as an HTTP/1 connection that
    /// sends no request is closed.
    Silent,
}

/// Tells an h2c connection (it opens with the preface) from HTTP/1 by looking at the socket
/// without taking anything from it: an HTTP/1 request goes on to the request loop untouched.
/// A client that sends part of the preface and then stalls is HTTP/1 (whose head timeout
/// then applies).
pub(crate) async fn sniff(sock: &TcpStream, wait: Duration) -> Opening {
    let mut seen = 0;
    let look = async {
        let mut buf = [0u8; PREFACE.len()];
        loop {
            let n = match sock.peek(&mut buf).await {
                Ok(0) | Err(_) => return Opening::Silent,
                Ok(n) => n,
            };
            seen = n;
            if buf[..n] != PREFACE[..n] {
                return Opening::Http1;
            }
            if n == PREFACE.len() {
                return Opening::H2;
            }
            // part of the preface: the rest is on its way
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let looked = tokio::time::timeout(wait, look).await;
    match looked {
        Ok(o) => o,
        Err(_) if seen == 0 => Opening::Silent,
        Err(_) => Opening::Http1,
    }
}

/// Serves one HTTP/2 connection until it closes.
pub(crate) async fn serve(shared: &Arc<Shared>, conn: ClientConn) {
    let ClientConn {
        sock,
        peer,
        buf,
        guard,
    } = conn;
    let tls = sock.is_tls();
    let io = Rewind { pre: buf, io: sock };
    let wait = shared.config.proxy.request_head_timeout;
    let mut connection = match tokio::time::timeout(wait, builder(shared).handshake(io)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            count(
                shared,
                "http2-handshake-failed",
                format!("HTTP/2 handshake: {e}"),
            );
            return;
        }
        Err(_) => {
            count(
                shared,
                "http2-handshake-failed",
                "HTTP/2 handshake timed out".into(),
            );
            return;
        }
    };
    let idle = shared.config.proxy.idle_timeout;
    let mut quiet = Box::pin(tokio::time::sleep(idle));
    let mut draining = false;
    loop {
        let accepted = tokio::select! {
            a = connection.accept() => a,
            _ = shared.drain.started(), if !draining => {
                draining = true;
                connection.graceful_shutdown();
                continue;
            }
            _ = quiet.as_mut() => {
                quiet.as_mut().reset(tokio::time::Instant::now() + idle);
                if connection.has_streams() {
                    continue;
                }
                if draining {
                    // told to go a whole period ago and still here: close now
                    connection.abrupt_shutdown(h2::Reason::NO_ERROR);
                } else {
                    // nothing open for a whole idle period: GOAWAY, then close
                    draining = true;
                    connection.graceful_shutdown();
                }
                continue;
            }
        };
        match accepted {
            Some(Ok((request, respond))) => {
                // boxed: the stream's request phase is freed when it becomes a hold (which
                // runs on a task of its own, see `after`)
                tokio::spawn(Box::pin(serve_stream(
                    shared.clone(),
                    peer,
                    tls,
                    request,
                    respond,
                )));
            }
            Some(Err(e)) => {
                if !e.is_io() && !e.is_go_away() {
                    count(shared, "http2-protocol-error", format!("HTTP/2: {e}"));
                }
                break;
            }
            None => break,
        }
    }
    drop(guard);
}

/// Counts and logs a connection-level failure (the client's fault).
fn count(shared: &Shared, reason: &'static str, detail: String) {
    let refusal = Refusal::client(400, reason, detail);
    shared.metrics.error(&refusal);
    refusal.log("");
}

/// Serves one stream's request through the proxy, then hands it on (see [`after`]).
async fn serve_stream(
    shared: Arc<Shared>,
    peer: std::net::SocketAddr,
    tls: bool,
    request: http::Request<RecvStream>,
    respond: SendResponse<Bytes>,
) {
    let (parts, body) = request.into_parts();
    let websocket = parts.extensions.get::<h2::ext::Protocol>().is_some();
    let head = request_head(parts, body.is_end_stream());
    let mut conn = ClientConn {
        sock: ClientStream::H2(Box::new(H2Stream {
            respond,
            send: None,
            head: None,
            recv: Some(body),
            inbox: Bytes::new(),
            recv_done: false,
            websocket,
            tls,
        })),
        peer,
        buf: BytesMut::new(),
        guard: shared.metrics.connection(ConnKind::Http),
    };
    let head = match head {
        Ok(h) => h,
        Err(refusal) => {
            answer_refusal(&shared, &mut conn.sock, Version::Http11, &refusal, false).await;
            return;
        }
    };
    let next = Box::pin(proxy::handle(&shared, &mut conn, head)).await;
    after(shared, conn, next);
}

/// What follows a stream's request: nothing (answered), a refusal, or a hold on a task of
/// its own, sized for the hold (as an HTTP/1 connection's, `conn::held`).
fn after(shared: Arc<Shared>, conn: ClientConn, next: Next) {
    match next {
        Next::KeepAlive | Next::Close => {}
        Next::WebSocket(plan) => {
            // on a task of its own, as an HTTP/1 connection's
            tokio::spawn(crate::ws::run(shared, conn, plan));
        }
        Next::Mqtt(plan) => {
            let tokens = crate::conn::Tokens {
                _admitted: None,
                _busy: shared.drain.busy(),
            };
            tokio::spawn(crate::mqtt::ws::run(shared, conn, plan, tokens));
        }
        Next::Hold(plan) => {
            tokio::spawn(HeldStream {
                hold: crate::hold::run(shared.clone(), conn, plan),
                shared: Some(shared),
            });
        }
    }
}

pin_project_lite::pin_project! {
    /// A held stream's task: the hold, then, on `hint`, the request again on a new task.
    struct HeldStream<F> {
        #[pin]
        hold: F,
        shared: Option<Arc<Shared>>,
    }
}

impl<F: Future<Output = HoldEnd>> Future for HeldStream<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        let end = ready!(this.hold.poll(cx));
        if let (HoldEnd::Retry(conn, request), Some(shared)) = (end, this.shared.take()) {
            tokio::spawn(Box::pin(retry(shared, conn, request)));
        }
        Poll::Ready(())
    }
}

/// A held long-poll got `hint`: its request goes to the origin again.
async fn retry(shared: Arc<Shared>, mut conn: ClientConn, request: Box<ProxiedRequest>) {
    let next = Box::pin(proxy::retry(&shared, &mut conn, *request)).await;
    after(shared, conn, next);
}

/// The request of a stream as the proxy reads a request: method, path and query, headers
/// (`host` from `:authority` when the client sent no `host`), and how its body ends.
fn request_head(parts: http::request::Parts, ended: bool) -> Result<RequestHead, Refusal> {
    let mut parts = parts;
    let mut headers = std::mem::take(&mut parts.headers);
    if parts.method == http::Method::CONNECT {
        let websocket = parts
            .extensions
            .get::<h2::ext::Protocol>()
            .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"));
        if !websocket {
            return Err(Refusal::client(
                405,
                "http2-connect",
                "CONNECT is not supported.\n",
            ));
        }
        // RFC 8441: the WebSocket handshake as the rest of the proxy knows it (RFC 6455's
        // GET and Upgrade), with the key HTTP/2 does without; the answer is a 200, and the
        // stream carries the frames
        parts.method = http::Method::GET;
        headers.insert(http::header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(
            http::header::CONNECTION,
            HeaderValue::from_static("Upgrade"),
        );
        headers.insert(
            "sec-websocket-key",
            HeaderValue::from_static("AAAAAAAAAAAAAAAAAAAAAA=="),
        );
    }
    if !headers.contains_key(HOST) {
        if let Some(authority) = parts.uri.authority() {
            let value = HeaderValue::from_str(authority.as_str()).map_err(|_| {
                Refusal::client(400, "bad-request-head", "Bad request: bad :authority.\n")
            })?;
            headers.insert(HOST, value);
        }
    }
    let target = parts
        .uri
        .path_and_query()
        .map_or_else(|| "/".to_string(), |p| p.as_str().to_string());
    let websocket = headers.contains_key(http::header::UPGRADE);
    let framing = if ended || websocket {
        BodyFraming::None
    } else {
        match headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            Some(0) => BodyFraming::None,
            Some(n) => BodyFraming::Length(n),
            // the stream's end ends the body: read as HTTP/1 reads a chunked one
            None => BodyFraming::Chunked,
        }
    };
    Ok(RequestHead {
        method: parts.method,
        target,
        version: Version::Http11,
        headers,
        framing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_takes_its_host_from_the_authority() {
        let req = http::Request::builder()
            .method("POST")
            .uri("https://example.com:8443/a/b?c=d")
            .header("content-length", "5")
            .body(())
            .unwrap();
        let (parts, ()) = req.into_parts();
        let head = request_head(parts, false).unwrap_or_else(|_| panic!("refused"));
        assert_eq!(head.target, "/a/b?c=d");
        assert_eq!(head.host(), "example.com:8443");
        assert_eq!(head.framing, BodyFraming::Length(5));
        assert!(head.keep_alive());
    }

    #[test]
    fn a_request_that_ended_with_its_headers_has_no_body() {
        let req = http::Request::builder()
            .uri("http://x/")
            .header("host", "y")
            .body(())
            .unwrap();
        let (parts, ()) = req.into_parts();
        let head = request_head(parts, true).unwrap_or_else(|_| panic!("refused"));
        assert_eq!(head.host(), "y");
        assert_eq!(head.framing, BodyFraming::None);
    }
}
