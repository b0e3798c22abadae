//! The publish listener: its connections and their HTTP/1.1, read with the same head and
//! body readers as the client port ([`crate::transport`]), so a publisher's request is
//! framed, limited and refused as a client's is (a bare LF, both framings at once, a head
//! over [`MAX_HEAD`]). Each request goes to [`crate::publish_api`], which reads its body if it
//! wants it; its [`Answer`] is written in one `send`. Requests on a connection are served in
//! order (pipelined ones too); a request whose body was left unread (refused before it) ends
//! the connection, as does a bad head or [`HEAD_TIMEOUT`] of silence.
//!
//! Not hyper, as the origin client and the admin listener are: measured, this loop costs
//! about 10% less server CPU per request (`BENCHMARKS.md`, "The publish listener on the
//! project's HTTP/1 reader"), and the project keeps one HTTP/1 request reader, not two.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use gripway_proto::http1::{BodyFraming, RequestHead, Version};
use http::Method;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::error::{Refusal, Source};
use crate::transport::{read_head, ClientStream, HeadRead};
use crate::Shared;

/// Time a publisher has to send a request head: the first, and each next one on a kept-alive
/// connection (an idle connection closes after it).
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest request head (request line and headers) a publisher may send: 431 past it. Room
/// for a credential well past the JWT limit, which is then refused as unauthorized.
const MAX_HEAD: usize = 128 * 1024;

/// Longest a publisher may take to read an answer (it stops reading: the connection closes).
const WRITE_STALL: Duration = Duration::from_secs(10);

/// Most publish connections open at once: past it a new one is answered 503 and closed. They
/// come out of the descriptors the client listener keeps in reserve (`fd_reserve`, at least
/// 1,024), which origin connections and the rest also need.
const MAX_CONNECTIONS: usize = 512;

/// Serves the publish API on `listener` until the process ends.
pub(crate) async fn serve(shared: Arc<Shared>, listener: TcpListener) {
    let mut backoff = crate::fds::AcceptBackoff::default();
    let cap = crate::fds::ListenerCap::new(MAX_CONNECTIONS);
    loop {
        let (sock, _) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                backoff.failed("publish API", &e).await;
                continue;
            }
        };
        backoff.succeeded();
        let _ = sock.set_nodelay(true);
        let Some(slot) = cap.take() else {
            tokio::spawn(turn_away(shared.clone(), sock));
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            connection(shared, sock).await;
            drop(slot);
        });
    }
}

/// Answers a connection past [`MAX_CONNECTIONS`] with 503 and closes it.
async fn turn_away(shared: Arc<Shared>, sock: TcpStream) {
    let refusal = Refusal::internal(
        503,
        "too-many-publish-connections",
        "Too many publish connections: reuse one, or try again later.",
    );
    let answer = crate::publish_api::refused(&shared, &refusal);
    shared.metrics.publish_answer(answer.status);
    let mut sock = ClientStream::plain(sock);
    let _ = write_answer(&mut sock, Version::Http11, false, false, answer).await;
}

/// One publisher's connection: requests one after another (pipelined ones in order) until it
/// closes, stays silent past [`HEAD_TIMEOUT`], sends a bad head, or a request's body is left
/// unread (a refusal before the body: the connection cannot find the next request).
async fn connection(shared: Arc<Shared>, sock: TcpStream) {
    let mut sock = ClientStream::plain(sock);
    let mut buf = BytesMut::new();
    loop {
        let head = match read_head(&mut sock, &mut buf, MAX_HEAD, HEAD_TIMEOUT).await {
            HeadRead::Head(head) => head,
            HeadRead::Closed | HeadRead::Broken(_) => return,
            HeadRead::Bad(mut refusal) => {
                refusal.source = Source::Publisher;
                let answer = crate::publish_api::refused(&shared, &refusal);
                shared.metrics.publish_answer(answer.status);
                let _ = write_answer(&mut sock, Version::Http11, false, false, answer).await;
                return;
            }
        };
        let mut req = Request {
            body_left: head.framing != BodyFraming::None,
            head,
            sock: &mut sock,
            buf: &mut buf,
        };
        let answer = crate::publish_api::handle(&shared, &mut req).await;
        let keep_alive = !req.body_left && req.head.keep_alive();
        let (version, head_only) = (req.head.version, req.head.method == Method::HEAD);
        if write_answer(&mut sock, version, keep_alive, head_only, answer)
            .await
            .is_err()
            || !keep_alive
        {
            return;
        }
        if buf.is_empty() {
            // an idle connection keeps no read buffer
            buf = BytesMut::new();
        }
    }
}

/// A request on the publish listener: its head, and the connection its body is read from.
pub(crate) struct Request<'a> {
    pub(crate) head: RequestHead,
    pub(crate) sock: &'a mut ClientStream,
    pub(crate) buf: &'a mut BytesMut,
    /// The body (if any) is still on the connection.
    pub(crate) body_left: bool,
}

/// An answer on the publish listener: a status, a body of one content type, and for some
/// refusals one more header.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) content_type: &'static str,
    pub(crate) body: Bytes,
    /// `WWW-Authenticate` on a 401, `Allow` on a 405.
    pub(crate) extra: Option<&'static str>,
}

impl Answer {
    /// A `200` with `body` of `content_type`.
    pub(crate) fn ok(content_type: &'static str, body: Bytes) -> Answer {
        Answer {
            status: 200,
            content_type,
            body,
            extra: None,
        }
    }
}

/// Writes `answer` with its `Content-Length` (and `Connection` as `keep_alive` says), its
/// body left out for a `HEAD` request, in one `send`.
async fn write_answer(
    sock: &mut ClientStream,
    version: Version,
    keep_alive: bool,
    head_only: bool,
    answer: Answer,
) -> std::io::Result<()> {
    let mut out = BytesMut::with_capacity(160 + answer.body.len());
    out.extend_from_slice(match version {
        Version::Http10 => b"HTTP/1.0 ",
        Version::Http11 => b"HTTP/1.1 ",
    });
    out.extend_from_slice(itoa::Buffer::new().format(answer.status).as_bytes());
    out.extend_from_slice(b" ");
    out.extend_from_slice(gripway_proto::http1::reason_phrase(answer.status).as_bytes());
    out.extend_from_slice(b"\r\nDate: ");
    out.extend_from_slice(&http_date());
    out.extend_from_slice(b"\r\nContent-Type: ");
    out.extend_from_slice(answer.content_type.as_bytes());
    out.extend_from_slice(b"\r\nContent-Length: ");
    out.extend_from_slice(itoa::Buffer::new().format(answer.body.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some(extra) = answer.extra {
        out.extend_from_slice(extra.as_bytes());
    }
    match (keep_alive, version) {
        (false, _) => out.extend_from_slice(b"Connection: close\r\n"),
        (true, Version::Http10) => out.extend_from_slice(b"Connection: keep-alive\r\n"),
        (true, Version::Http11) => {}
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(&answer.body);
    }
    tokio::time::timeout(WRITE_STALL, sock.write_all(&out))
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
}

/// Now as an HTTP date (`Sat, 05 Dec 2026 20:07:12 GMT`), formatted once a second per thread.
fn http_date() -> [u8; 29] {
    thread_local! {
        static DATE: std::cell::Cell<(u64, [u8; 29])> = const { std::cell::Cell::new((0, [0; 29])) };
    }
    let now = std::time::SystemTime::now();
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE.with(|date| {
        let (at, text) = date.get();
        if at == secs {
            return text;
        }
        let mut text = [b' '; 29];
        let formatted = httpdate::fmt_http_date(now);
        let n = formatted.len().min(29);
        text[..n].copy_from_slice(&formatted.as_bytes()[..n]);
        date.set((secs, text));
        text
    })
}
