//! The publish API, compatible with Pushpin's (`POST /publish/`) and Fastly Fanout's
//! (`POST /service/{id}/publish/`), with or without the trailing slash.
//!
//! A request is checked in this order: route and method (404/405), credentials (401),
//! `Accept` (406), body size (413), items (400, or 413 for oversized content; all-or-nothing).
//! It is answered as soon as its items are queued in the broker, before fan-out, so a
//! publisher never waits on subscribers; an acknowledged item is never dropped.
//!
//! Every refusal is a [`Refusal`] (the publisher's fault, or ours when shutting down),
//! counted in `gripway_errors_total{source,reason}` and logged rate-limited. Content limits
//! differ by path: Pushpin's `/publish/` accepts what Pushpin accepts (`max_content`,
//! default 1,000,000 bytes: only the body limit bounds it there), Fastly's path keeps
//! Fanout's 32,767 bytes (`fastly_max_content`).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use gripway_broker::Message;
use gripway_proto::publish::{parse_publish_body, Item, PublishErrorKind};
use http::header::{HeaderValue, ACCEPT, ALLOW, CONTENT_LENGTH, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::error::Refusal;
use crate::now_unix;
use crate::Shared;

/// Time a publisher has to send its request body.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves the publish API on `listener` until the process ends.
pub(crate) async fn serve(shared: Arc<Shared>, listener: TcpListener) {
    let mut backoff = crate::fds::AcceptBackoff::default();
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
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(&shared, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .max_buf_size(64 * 1024)
                // an answer's head and body in one `send`, not a vectored write (which
                // costs the kernel more for a few dozen bytes; see `hold::sink::GATHER_MAX`)
                .writev(false)
                .serve_connection(TokioIo::new(sock), service)
                .await;
        });
    }
}

enum Format {
    Text,
    Json,
}

async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let response = route(shared, req)
        .await
        .unwrap_or_else(|r| refused(shared, &r));
    shared.metrics.publish_answer(response.status().as_u16());
    response
}

async fn route(shared: &Shared, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Refusal> {
    let path = req.uri().path();
    let path = path.strip_suffix('/').unwrap_or(path);
    let fastly = is_fastly_publish(path);
    let is_publish = path == "/publish" || fastly;
    match (path, req.method()) {
        ("", &Method::GET) => Ok(text(StatusCode::OK, "Gripway API\n")),
        (_, &Method::POST) if is_publish => publish(shared, req, fastly).await,
        ("/recover", &Method::POST) => recover(shared, &req),
        (_, &Method::GET) if path.starts_with("/history/") => {
            crate::publish_history::get(shared, &req, &path["/history/".len()..]).await
        }
        (_, _) if is_publish || path == "/recover" => Err(Refusal::publisher(
            405,
            "method-not-allowed",
            "Method not allowed.",
        )),
        _ => Err(Refusal::publisher(404, "not-found", "Not found.")),
    }
}

/// `POST /recover` (same auth and negotiation as publishing): every hold that can recover
/// asks its origin again, see `hold::recovery`.
fn recover(shared: &Shared, req: &Request<Incoming>) -> Result<Response<Full<Bytes>>, Refusal> {
    check_auth(shared, req)?;
    let Some(format) = negotiate(req.headers().get(ACCEPT)) else {
        return Err(Refusal::publisher(406, "not-acceptable", "Not acceptable."));
    };
    crate::hold::recovery::recover_all(shared);
    Ok(answer(format, &UPDATED))
}

/// The publish API's credentials check (open when no keys are configured).
pub(crate) fn check_auth(shared: &Shared, req: &Request<Incoming>) -> Result<(), Refusal> {
    let auth = &shared.config.publish.auth;
    if !auth.is_open() {
        let header = |name: &str| req.headers().get(name).map(HeaderValue::as_bytes);
        if let Err(e) = auth.check(header("authorization"), header("fastly-key"), now_unix()) {
            return Err(Refusal::publisher(
                401,
                "unauthorized",
                format!("Unauthorized: {e}"),
            ));
        }
    }
    Ok(())
}

/// A success's body as text and as Pushpin's JSON object (static: a publisher's every
/// request is answered with one, so nothing is formatted or copied per request).
struct Success {
    text: &'static str,
    json: &'static str,
}

const PUBLISHED: Success = Success {
    text: "Published\n",
    json: "{\"message\": \"Published\"}\n",
};

const UPDATED: Success = Success {
    text: "Updated\n",
    json: "{\"message\": \"Updated\"}\n",
};

/// `200` with `success` as text or as JSON.
fn answer(format: Format, success: &Success) -> Response<Full<Bytes>> {
    let (body, content_type) = match format {
        Format::Text => (success.text, "text/plain"),
        Format::Json => (success.json, "application/json"),
    };
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// The answer to a publish during the drain at shutdown: nothing more is accepted.
fn draining() -> Refusal {
    Refusal::internal(
        503,
        "draining",
        "Draining for shutdown: nothing more is accepted; publish again once the server is back, or to another node.",
    )
}

/// `/service/{id}/publish` (the trailing slash already removed).
fn is_fastly_publish(path: &str) -> bool {
    path.strip_prefix("/service/")
        .and_then(|rest| rest.strip_suffix("/publish"))
        .is_some_and(|id| !id.is_empty() && !id.contains('/'))
}

/// Checks and queues one publish request; `fastly` selects Fanout's content limit.
async fn publish(
    shared: &Shared,
    req: Request<Incoming>,
    fastly: bool,
) -> Result<Response<Full<Bytes>>, Refusal> {
    if shared.drain.is_draining() {
        return Err(draining());
    }
    check_auth(shared, &req)?;
    let Some(format) = negotiate(req.headers().get(ACCEPT)) else {
        return Err(Refusal::publisher(406, "not-acceptable", "Not acceptable."));
    };
    let too_large = || Refusal::publisher(413, "body-too-large", "Request body too large.");
    let max = shared.config.publish.max_body;
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let mut read = std::pin::pin!(Limited::new(req.into_body(), max).collect());
    // a small body has usually arrived with the head: the timer is set only if it has not
    let first = std::future::poll_fn(|cx| Poll::Ready(read.as_mut().poll(cx))).await;
    let collected = match first {
        Poll::Ready(collected) => collected,
        Poll::Pending => match tokio::time::timeout(BODY_TIMEOUT, read).await {
            Ok(collected) => collected,
            Err(_) => {
                return Err(Refusal::publisher(
                    408,
                    "body-timeout",
                    "Request body not received in time.",
                ))
            }
        },
    };
    let body = match collected {
        Ok(b) => b.to_bytes(),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return Err(too_large())
        }
        Err(_) => {
            return Err(Refusal::publisher(
                400,
                "body-unreadable",
                "Request body could not be read.",
            ))
        }
    };
    let limits = if fastly {
        &shared.config.publish.fastly_limits
    } else {
        &shared.config.publish.limits
    };
    let items = parse_publish_body(&body, limits).map_err(|e| {
        let reason = match e.kind {
            PublishErrorKind::Invalid => "invalid-items",
            PublishErrorKind::TooLarge => "items-too-large",
        };
        Refusal::publisher(e.http_status(), reason, e.message)
    })?;
    publish_items(shared, items).await?;
    Ok(answer(format, &PUBLISHED))
}

/// Publishes `items` as the publish API does: through the cluster's stream in cluster mode,
/// to this node's broker otherwise. Ok once they are taken (stored, where history is
/// durable or in a cluster): what a publisher's acknowledgement may promise.
pub(crate) async fn publish_items(shared: &Shared, items: Vec<Item>) -> Result<(), Refusal> {
    if let Some(cluster) = &shared.cluster {
        // stored in the cluster's stream first; every node's broker gets the items from it
        return cluster.publish(items).await;
    }
    to_broker(shared, items.into_iter().map(Message::new)).await
}

/// [`publish_items`] for a device's publishes, each with whether its id was made here (the
/// origin gave none): this node's broker then skips looking it up for duplicates. The
/// cluster's stream carries the items only.
pub(crate) async fn publish_device_items(
    shared: &Shared,
    items: Vec<(Item, bool)>,
) -> Result<(), Refusal> {
    if let Some(cluster) = &shared.cluster {
        return cluster
            .publish(items.into_iter().map(|(item, _)| item).collect())
            .await;
    }
    let msgs = items.into_iter().map(|(item, fresh)| match fresh {
        true => Message::new_fresh(item),
        false => Message::new(item),
    });
    to_broker(shared, msgs).await
}

/// Hands messages to this node's broker; its refusals as the publish API words them.
async fn to_broker(
    shared: &Shared,
    msgs: impl ExactSizeIterator<Item = Arc<Message>> + Send,
) -> Result<(), Refusal> {
    match shared.broker.publish_messages(msgs).await {
        Ok(()) => Ok(()),
        Err(gripway_broker::PublishError::Closed) => Err(draining()),
        Err(gripway_broker::PublishError::NotStored) => Err(Refusal::internal(
            503,
            "history-unavailable",
            "Not published: the history store could not store the items; publish again.",
        )),
    }
}

/// The answer to a refused request: counted, logged (rate-limited), its detail as the body.
fn refused(shared: &Shared, refusal: &Refusal) -> Response<Full<Bytes>> {
    shared.metrics.error(refusal);
    refusal.log("publish API: ");
    let status = StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut r = text(status, &format!("{}\n", refusal.detail));
    match status {
        StatusCode::UNAUTHORIZED => {
            r.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"gripway\""),
            );
        }
        StatusCode::METHOD_NOT_ALLOWED => {
            r.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("POST"));
        }
        _ => {}
    }
    r
}

/// Pushpin's negotiation: text unless the client prefers JSON; None if it accepts neither.
fn negotiate(accept: Option<&HeaderValue>) -> Option<Format> {
    let Some(accept) = accept.and_then(|v| v.to_str().ok()) else {
        return Some(Format::Text);
    };
    for range in accept.split(',') {
        let media = range
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match media.as_str() {
            "text/plain" | "text/*" | "*/*" | "*" => return Some(Format::Text),
            "application/json" | "application/*" => return Some(Format::Json),
            _ => {}
        }
    }
    None
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::copy_from_slice(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fastly_paths() {
        assert!(is_fastly_publish("/service/abc123/publish"));
        assert!(!is_fastly_publish("/service//publish"));
        assert!(!is_fastly_publish("/service/a/b/publish"));
        assert!(!is_fastly_publish("/publish"));
    }

    #[test]
    fn accept_negotiation() {
        let n = |s: &'static str| negotiate(Some(&HeaderValue::from_static(s)));
        assert!(matches!(negotiate(None), Some(Format::Text)));
        assert!(matches!(n("application/json"), Some(Format::Json)));
        assert!(matches!(n("text/html, */*;q=0.8"), Some(Format::Text)));
        assert!(n("image/png").is_none());
    }
}
