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
//! A connection that opens with the HTTP/2 preface, or agreed `h2` by ALPN, is served by
//! [`crate::http2`] instead of the request loop.
//!
//! At shutdown ([`crate::drain`]) the accept loops end (closing the listeners), a connection
//! waiting for its next request closes, and one that finishes a request closes after it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use gripway_proto::http1::{RequestHead, Version};
use tokio::net::TcpListener;

use crate::drain::Busy;
use crate::error::Refusal;
use crate::fds::{AcceptBackoff, Admitted, ClientGate, Turned};
use crate::hold::{HoldEnd, HoldPlan};
use crate::metrics::ConnKind;
use crate::origin::forward::ProxiedRequest;
use crate::proxy::{self, Next};
use crate::transport::{answer_refusal, write_simple, ClientConn, ClientStream, HeadRead};
use crate::Shared;

/// What a listener's clients speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// HTTP/1.1 or HTTP/2 (the request loop, or [`crate::http2`]).
    Http,
    /// MQTT ([`crate::mqtt`]).
    Mqtt,
}

/// Accepts clients until the drain begins (then the listener closes). A client is refused
/// with 503 once the connection limit (which keeps descriptors in reserve, see
/// [`crate::fds`]) is reached, and with 429 once its address holds its limit.
///
/// On a TLS listener (`tls` given) the handshake runs first, within `request_head_timeout`,
/// on the connection's own task; a client refused at the gate is simply closed there (a
/// plaintext answer would mean nothing to it).
pub(crate) async fn accept_loop(
    shared: Arc<Shared>,
    gate: Arc<ClientGate>,
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    protocol: Protocol,
) {
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
                if tls.is_some() || protocol == Protocol::Mqtt {
                    // a plaintext HTTP answer would mean nothing to it
                    continue;
                }
                tokio::spawn(async move {
                    let mut sock = ClientStream::plain(sock);
                    let status = refusal.status;
                    let _ =
                        write_simple(&mut sock, Version::Http11, status, &refusal.detail, false)
                            .await;
                });
                continue;
            }
        };
        let shared = shared.clone();
        let tokens = Tokens {
            _admitted: Some(admitted),
            _busy: shared.drain.busy(),
        };
        let tls = tls.clone();
        tokio::spawn(async move {
            let wait = shared.config.proxy.request_head_timeout;
            let h2;
            let sock = match tls {
                None if protocol == Protocol::Mqtt => {
                    h2 = false;
                    ClientStream::plain(sock)
                }
                // boxed, as the handshake below: a connection's task does not grow by them
                None => match Box::pin(crate::http2::sniff(&sock, wait)).await {
                    crate::http2::Opening::Silent => return,
                    opening => {
                        h2 = opening == crate::http2::Opening::H2;
                        ClientStream::plain(sock)
                    }
                },
                Some(config) => match Box::pin(crate::transport::tls::accept(&sock, config, wait))
                    .await
                {
                    Ok(session) => {
                        h2 = session.h2;
                        ClientStream::tls(sock, session)
                    }
                    Err(e) => {
                        let refusal = Refusal::client(400, "tls-handshake-failed", e.to_string());
                        shared.metrics.error(&refusal);
                        refusal.log("");
                        return;
                    }
                },
            };
            let guard = shared.metrics.connection(ConnKind::Http);
            let conn = ClientConn {
                sock,
                peer,
                buf: BytesMut::new(),
                guard,
            };
            if protocol == Protocol::Mqtt {
                crate::mqtt::run(shared, conn, tokens).await;
            } else if h2 {
                Box::pin(crate::http2::serve(&shared, conn)).await;
                drop(tokens);
            } else {
                serve(shared, conn, tokens, Start::First).await;
            }
        });
    }
}

/// What a connection carries from task to task until it closes: its place at the gate and
/// its count in the drain.
pub(crate) struct Tokens {
    pub(crate) _admitted: Option<Admitted>,
    pub(crate) _busy: Busy,
}

/// Where [`serve`] begins.
pub(crate) enum Start {
    /// A new connection: its first request.
    First,
    /// A connection back from a hold: its next request.
    Next,
    /// A held long-poll got `hint`: send its request to the origin again.
    Retry(Box<ProxiedRequest>),
}

/// Serves requests on one connection until it closes, or hands it to a task of its own for
/// a hold or a WebSocket. Each phase runs on a task sized for it: a held connection's task
/// keeps only what the hold needs, not the request loop's state, and the request loop's
/// task ends when the hold begins (the hold's task starts a new one if the connection is
/// reused).
pub(crate) async fn serve(shared: Arc<Shared>, mut conn: ClientConn, tokens: Tokens, start: Start) {
    let shared = &shared;
    let mut first = matches!(start, Start::First);
    let mut next = match start {
        Start::Retry(request) => Some(Box::pin(proxy::retry(shared, &mut conn, *request)).await),
        _ => None,
    };
    loop {
        let step = match next.take() {
            Some(step) => step,
            None => {
                if shared.drain.is_draining() {
                    return;
                }
                let wait = if first {
                    shared.config.proxy.request_head_timeout
                } else {
                    shared.config.proxy.idle_timeout
                };
                first = false;
                // boxed: the request head and proxying state exist only while a request is
                // served
                Box::pin(next_request(shared, &mut conn, wait)).await
            }
        };
        match step {
            Next::KeepAlive => {
                if conn.buf.is_empty() {
                    // an idle connection keeps no read buffer
                    conn.buf = BytesMut::new();
                }
            }
            Next::Close => return,
            Next::WebSocket(plan) => {
                if !conn.buf.is_empty() {
                    Box::pin(refuse_websocket_early_data(shared, conn)).await;
                    return;
                }
                tokio::spawn(Keeping {
                    fut: crate::ws::run(shared.clone(), conn, plan),
                    _tokens: tokens,
                });
                return;
            }
            Next::Mqtt(plan) => {
                if !conn.buf.is_empty() {
                    Box::pin(refuse_websocket_early_data(shared, conn)).await;
                    return;
                }
                tokio::spawn(crate::mqtt::ws::run(shared.clone(), conn, plan, tokens));
                return;
            }
            Next::Hold(plan) => {
                spawn_hold(shared.clone(), conn, plan, tokens);
                return;
            }
        }
    }
}

/// Starts [`held`] on a task of its own.
fn spawn_hold(shared: Arc<Shared>, conn: ClientConn, plan: Box<HoldPlan>, tokens: Tokens) {
    tokio::spawn(held(shared, conn, plan, tokens));
}

/// Starts [`serve`] on a task of its own.
fn spawn_serve(shared: Arc<Shared>, conn: ClientConn, tokens: Tokens, start: Start) {
    tokio::spawn(serve(shared, conn, tokens, start));
}

/// A held connection's task: the hold, then, if the connection may serve another request,
/// a new request-loop task. The task keeps the hold's future and a few pointers: neither
/// the connection it was made from (an `async fn` would keep its arguments) nor a second
/// copy of the hold's future (an `async` block would move it to await it).
pub(crate) fn held(
    shared: Arc<Shared>,
    mut conn: ClientConn,
    plan: Box<HoldPlan>,
    tokens: Tokens,
) -> Held<impl Future<Output = HoldEnd> + Send> {
    // requests pipelined behind the held one wait for the hold to end; boxed, so an ordinary
    // hold does not grow by a buffer
    let pipelined = (!conn.buf.is_empty()).then(|| Box::new(std::mem::take(&mut conn.buf)));
    Held {
        hold: crate::hold::run(shared.clone(), conn, plan),
        after: Some((shared, tokens, pipelined)),
    }
}

pin_project_lite::pin_project! {
    /// The future of a held connection's task (see [`held`]).
    pub(crate) struct Held<F> {
        #[pin]
        hold: F,
        after: Option<(Arc<Shared>, Tokens, Option<Box<BytesMut>>)>,
    }
}

impl<F: Future<Output = HoldEnd>> Future for Held<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        let end = ready!(this.hold.poll(cx));
        let Some((shared, tokens, pipelined)) = this.after.take() else {
            return Poll::Ready(());
        };
        let resume = |mut c: ClientConn| {
            if let Some(buf) = pipelined {
                c.buf = *buf;
            }
            c
        };
        match end {
            HoldEnd::Close => {}
            HoldEnd::KeepAlive(c) => spawn_serve(shared, resume(c), tokens, Start::Next),
            HoldEnd::Retry(c, request) => {
                spawn_serve(shared, resume(c), tokens, Start::Retry(request))
            }
        }
        Poll::Ready(())
    }
}

pin_project_lite::pin_project! {
    /// A connection's task that ends with its future (a WebSocket's), keeping its tokens
    /// until then.
    struct Keeping<F> {
        #[pin]
        fut: F,
        _tokens: Tokens,
    }
}

impl<F: Future<Output = ()>> Future for Keeping<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.project().fut.poll(cx)
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
async fn read_head(shared: &Shared, conn: &mut ClientConn, wait: Duration) -> Option<RequestHead> {
    let max = shared.config.proxy.max_request_head;
    match crate::transport::read_head(&mut conn.sock, &mut conn.buf, max, wait).await {
        HeadRead::Head(head) => Some(head),
        HeadRead::Closed => None,
        HeadRead::Broken(refusal) => {
            shared.metrics.error(&refusal);
            refusal.log("");
            None
        }
        HeadRead::Bad(refusal) => {
            answer_refusal(shared, &mut conn.sock, Version::Http11, &refusal, false).await;
            None
        }
    }
}
