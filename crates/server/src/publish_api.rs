//! The publish API, compatible with Pushpin's (`POST /publish/`) and Fastly Fanout's
//! (`POST /service/{id}/publish/`), with or without the trailing slash: what each request
//! on the publish listener ([`crate::publish_listener`], which reads heads and writes
//! answers) means, and its answer.
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

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gripway_broker::Message;
use gripway_proto::publish::{parse_publish_body, Item, PublishErrorKind};
use http::header::{HeaderValue, ACCEPT};
use http::{HeaderMap, Method};

use crate::error::Refusal;
use crate::now_unix;
use crate::publish_listener::{Answer, Request};
use crate::transport::{read_body, BodyProblem};
use crate::Shared;

/// Time a publisher has to send its request body.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

enum Format {
    Text,
    Json,
}

/// Answers one request (reading its body only if it gets that far).
pub(crate) async fn handle(shared: &Shared, req: &mut Request<'_>) -> Answer {
    let response = route(shared, req)
        .await
        .unwrap_or_else(|r| refused(shared, &r));
    shared.metrics.publish_answer(response.status);
    response
}

async fn route(shared: &Shared, req: &mut Request<'_>) -> Result<Answer, Refusal> {
    let (path, query) = req
        .head
        .path_and_query()
        .split_once('?')
        .unwrap_or((req.head.path(), ""));
    let path = path.strip_suffix('/').unwrap_or(path);
    let fastly = is_fastly_publish(path);
    let is_publish = path == "/publish" || fastly;
    match (path, &req.head.method) {
        ("", &Method::GET) => Ok(Answer::ok(
            "text/plain",
            Bytes::from_static(b"Gripway API\n"),
        )),
        (_, &Method::POST) if is_publish => publish(shared, req, fastly).await,
        ("/recover", &Method::POST) => recover(shared, &req.head.headers),
        (_, &Method::GET) if path.starts_with("/history/") => {
            let name = &path["/history/".len()..];
            crate::publish_history::get(shared, &req.head.headers, name, query).await
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
fn recover(shared: &Shared, headers: &HeaderMap) -> Result<Answer, Refusal> {
    check_auth(shared, headers)?;
    let Some(format) = negotiate(headers.get(ACCEPT)) else {
        return Err(Refusal::publisher(406, "not-acceptable", "Not acceptable."));
    };
    crate::hold::recovery::recover_all(shared);
    Ok(answer(format, &UPDATED))
}

/// The publish API's credentials check (open when no keys are configured).
pub(crate) fn check_auth(shared: &Shared, headers: &HeaderMap) -> Result<(), Refusal> {
    let auth = &shared.config.publish.auth;
    if !auth.is_open() {
        let header = |name: &str| headers.get(name).map(HeaderValue::as_bytes);
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
fn answer(format: Format, success: &Success) -> Answer {
    match format {
        Format::Text => Answer::ok("text/plain", Bytes::from_static(success.text.as_bytes())),
        Format::Json => Answer::ok(
            "application/json",
            Bytes::from_static(success.json.as_bytes()),
        ),
    }
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
async fn publish(shared: &Shared, req: &mut Request<'_>, fastly: bool) -> Result<Answer, Refusal> {
    if shared.drain.is_draining() {
        return Err(draining());
    }
    check_auth(shared, &req.head.headers)?;
    let Some(format) = negotiate(req.head.headers.get(ACCEPT)) else {
        return Err(Refusal::publisher(406, "not-acceptable", "Not acceptable."));
    };
    let body = body(req, shared.config.publish.max_body).await?;
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

/// Reads `req`'s body, at most `max` bytes within [`BODY_TIMEOUT`] (`100 Continue` first when
/// the publisher asked for it).
async fn body(req: &mut Request<'_>, max: usize) -> Result<Bytes, Refusal> {
    let body = read_body(req.sock, req.buf, &req.head, max, BODY_TIMEOUT)
        .await
        .map_err(|problem| match problem {
            BodyProblem::TooLarge => {
                Refusal::publisher(413, "body-too-large", "Request body too large.")
            }
            BodyProblem::Bad(e) => Refusal::publisher(
                400,
                "body-unreadable",
                format!("Request body could not be read: {e}."),
            ),
            BodyProblem::Gone => {
                Refusal::publisher(400, "body-unreadable", "Request body could not be read.")
            }
            BodyProblem::TimedOut => {
                Refusal::publisher(408, "body-timeout", "Request body not received in time.")
            }
        })?;
    req.body_left = false;
    Ok(body)
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
pub(crate) fn refused(shared: &Shared, refusal: &Refusal) -> Answer {
    shared.metrics.error(refusal);
    refusal.log("publish API: ");
    Answer {
        status: refusal.status,
        content_type: "text/plain",
        // one line: a head refusal's detail (shared with the client port) has its newline
        body: Bytes::from(format!("{}\n", refusal.detail.trim_end_matches('\n'))),
        extra: match refusal.status {
            401 => Some("WWW-Authenticate: Bearer realm=\"gripway\"\r\n"),
            405 => Some("Allow: POST\r\n"),
            _ => None,
        },
    }
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
