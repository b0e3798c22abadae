//! The admin listener: `/metrics` (Prometheus text format), `/health` and
//! `/channels/{name}` (a channel's subscribers here and, in a cluster, over every node). It
//! is separate from the client and publish listeners so that it can stay on loopback or a
//! private network.
//! `/health` answers `503 draining` once a drain has begun, so a load balancer stops sending
//! clients before the listeners close. At most 64 admin connections are open at once; the
//! next is answered 503.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::error::Refusal;
use crate::Shared;

/// Most admin connections open at once: past it a new one is answered 503 and closed (they
/// come out of the descriptor reserve, as publish connections do).
const MAX_CONNECTIONS: usize = 64;

/// Answers a connection past [`MAX_CONNECTIONS`] with 503 and closes it.
async fn turn_away(shared: Arc<Shared>, sock: tokio::net::TcpStream) {
    let refusal = Refusal::internal(
        503,
        "too-many-admin-connections",
        "Too many admin connections: try again later.",
    );
    shared.metrics.error(&refusal);
    refusal.log("admin: ");
    let mut sock = crate::transport::ClientStream::plain(sock);
    let _ = crate::transport::write_simple(
        &mut sock,
        gripway_proto::http1::Version::Http11,
        503,
        &format!("{}\n", refusal.detail),
        false,
    )
    .await;
}

/// Serves the admin endpoints on `listener` until the process ends.
pub(crate) async fn serve(shared: Arc<Shared>, listener: TcpListener) {
    let mut backoff = crate::fds::AcceptBackoff::default();
    let cap = crate::fds::ListenerCap::new(MAX_CONNECTIONS);
    loop {
        let sock = match listener.accept().await {
            Ok((sock, _)) => sock,
            Err(e) => {
                backoff.failed("admin listener", &e).await;
                continue;
            }
        };
        backoff.succeeded();
        let Some(slot) = cap.take() else {
            tokio::spawn(turn_away(shared.clone(), sock));
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(&shared, &req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(TokioIo::new(sock), service)
                .await;
        });
    }
}

async fn handle(shared: &Shared, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let (status, ctype, body) = match (req.method(), path) {
        (&Method::GET, _) if path.starts_with("/channels/") => {
            channel(shared, &path["/channels/".len()..]).await
        }
        (&Method::GET, "/metrics") => (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            shared.metrics.encode(),
        ),
        (&Method::GET, "/health") if shared.drain.is_draining() => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "draining\n".to_string(),
        ),
        (&Method::GET, "/health") => (StatusCode::OK, "text/plain", "ok\n".to_string()),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "Not found.\n".to_string(),
        ),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    if status == StatusCode::SERVICE_UNAVAILABLE && ctype == "application/json" {
        r.headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    r
}

/// `GET /channels/{name}` (the name percent-encoded): its subscribers on this node, and in
/// a cluster over every node that answered (`nodes_answered` of `nodes_alive`).
async fn channel(shared: &Shared, encoded: &str) -> (StatusCode, &'static str, String) {
    let Ok(name) = percent_encoding::percent_decode_str(encoded).decode_utf8() else {
        return (
            StatusCode::BAD_REQUEST,
            "text/plain",
            "Channel name is not UTF-8.\n".to_string(),
        );
    };
    let local = shared.broker.registry().subscriber_count(&name);
    let mut body = serde_json::json!({ "channel": name, "subscribers": local });
    if let Some(cluster) = &shared.cluster {
        match cluster.count(&name).await {
            Ok(c) => {
                body["cluster"] = serde_json::json!({
                    "subscribers": c.subscribers,
                    "nodes_answered": c.answered,
                    "nodes_alive": c.alive,
                });
            }
            Err(e) => {
                body["cluster"] = serde_json::json!({ "error": e.to_string() });
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "application/json",
                    format!("{body}\n"),
                );
            }
        }
    }
    (StatusCode::OK, "application/json", format!("{body}\n"))
}
