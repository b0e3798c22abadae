//! Held connections: what an origin's GRIP instructions turn a request into.
//!
//! [`prepare`] reads the instructions into a [`HoldPlan`] (or a plain response when there is
//! no hold); [`run`] then holds the connection as a stream ([`stream`]) or a long-poll
//! ([`response`]) until it ends. Both share the socket writer in [`sink`], through which the
//! broker's fan-out writes published messages directly, and the filters in [`filters`].

mod content_filter;
pub(crate) mod filters;
pub(crate) mod first_subscription;
pub(crate) mod from_history;
mod gone;
mod link_stream;
pub(crate) mod next_link;
pub(crate) mod recovery;
mod response;
pub(crate) mod sink;
mod stream;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gripway_proto::http1::Version;
use gripway_proto::instruct::{HoldMode, Instruct, KeepAlive};
use http::{HeaderMap, Method};

use crate::origin::forward::ProxiedRequest;
use crate::origin::OriginResponse;
use crate::relay::FullResponse;
use crate::transport::ClientConn;
use crate::Shared;

pub(crate) use filters::FilterSet;

/// Bytes of the per-connection state a stream and a long-poll share with the broker.
#[cfg(test)]
pub(crate) const STATE_SIZES: (usize, usize) = (stream::STATE_SIZE, response::STATE_SIZE);

/// Everything needed to hold one connection.
pub(crate) struct HoldPlan {
    pub(crate) mode: HoldMode,
    /// The client's HTTP version (HTTP/1.0 streams are close-delimited, not chunked).
    pub(crate) version: Version,
    /// The client wants the connection kept open afterwards.
    pub(crate) keep_alive: bool,
    /// A HEAD request: responses carry no body.
    pub(crate) head_only: bool,
    /// The initial response (stream) or the timeout response (long-poll).
    pub(crate) response: FullResponse,
    /// Channels (route prefix applied) with their delivery filters.
    pub(crate) channels: Vec<(String, FilterSet)>,
    /// Subscription meta (read by filters).
    pub(crate) meta: Vec<(String, String)>,
    /// (channel with prefix, prev-id) for channels whose `prev-id` the origin gave.
    pub(crate) prev_ids: Vec<(String, String)>,
    /// The response is an SSE stream (`text/event-stream`).
    pub(crate) sse: bool,
    /// The route asks for SSE `id:` lines from item ids (`sse_id`).
    pub(crate) sse_id: bool,
    /// The client's `Last-Event-ID` (header or `lastEventId` query parameter), unless the
    /// route leaves it to the origin (`no_recover`).
    pub(crate) last_event_id: Option<String>,
    /// The route's channel prefix (channels are named without it to clients and origins).
    pub(crate) prefix: String,
    /// Long-poll timeout.
    pub(crate) timeout: Duration,
    /// Stream keep-alive.
    pub(crate) keep_alive_data: Option<KeepAlive>,
    /// The request, kept so a long-poll can be retried on `hint`.
    pub(crate) request: Option<Box<ProxiedRequest>>,
    /// `Grip-Link`s (next, gone), boxed: only holds that have one pay for them.
    pub(crate) links: Option<Box<HoldLinks>>,
}

/// A hold's `Grip-Link`s, resolved against the client's request URI.
pub(crate) struct HoldLinks {
    pub(crate) base: next_link::LinkBase,
    /// The client's request URI (absolute).
    pub(crate) uri: String,
    /// `rel=next`, resolved, with its recovery-poll timeout.
    pub(crate) next: Option<(String, Duration)>,
    /// `rel=gone`, resolved.
    pub(crate) gone: Option<String>,
    /// No hold: a pager that follows its next link at once.
    pub(crate) pager: bool,
}

/// What the instructions amount to.
pub(crate) enum Prepared {
    /// No hold: relay this response.
    Relay(FullResponse),
    /// Hold the connection.
    Hold(Box<HoldPlan>),
}

/// How a hold ended.
pub(crate) enum HoldEnd {
    /// Close the connection.
    Close,
    /// Serve the next request on it.
    KeepAlive(ClientConn),
    /// A long-poll got `hint`: send the request to the origin again.
    Retry(ClientConn, Box<ProxiedRequest>),
}

/// Turns parsed instructions and the origin's response into a hold plan.
pub(crate) fn prepare(
    request: &ProxiedRequest,
    peer: std::net::IpAddr,
    origin: &OriginResponse,
    instruct: Instruct,
    body: Bytes,
) -> Prepared {
    let (status, reason) = instruct.relayed_status(origin.status.as_u16());
    let reason = reason.map(str::to_string).or_else(|| {
        (instruct.response.is_none() && instruct.status.is_none())
            .then(|| origin.reason.clone())
            .flatten()
    });
    let headers: HeaderMap = instruct.client_headers(&origin.headers);
    let body = match &instruct.response {
        Some(r) => r.body.clone(),
        None => body,
    };
    let response = FullResponse {
        status,
        reason,
        headers,
        body,
    };
    let links = (instruct.next_link.is_some() || instruct.gone_link.is_some()).then(|| {
        let (base, uri) = next_link::LinkBase::of(request, peer);
        let next = instruct.next_link.as_ref().and_then(|n| {
            let resolved = next_link::resolve(&uri, &n.uri)?;
            Some((resolved, Duration::from_secs(u64::from(n.timeout_secs))))
        });
        let gone = instruct
            .gone_link
            .as_ref()
            .and_then(|g| next_link::resolve(&uri, g));
        Box::new(HoldLinks {
            base,
            uri,
            pager: instruct.hold.is_none(),
            next,
            gone,
        })
    });
    let pager = instruct.hold.is_none() && links.as_ref().is_some_and(|l| l.next.is_some());
    let Some(mode) = instruct.hold.or(pager.then_some(HoldMode::Stream)) else {
        return Prepared::Relay(response);
    };
    let route = &request.route.route;
    let mut channels: Vec<(String, FilterSet)> = instruct
        .channels
        .iter()
        .map(|c| {
            (
                format!("{}{}", route.prefix, c.name),
                FilterSet::from_names(&c.filters),
            )
        })
        .collect();
    for target in route.targets.iter().filter(|_| !pager) {
        for sub in &target.subs {
            let name = format!("{}{}", route.prefix, sub);
            if !channels.iter().any(|(c, _)| *c == name) {
                channels.push((name, FilterSet::default()));
            }
        }
    }
    let prev_ids = instruct
        .channels
        .iter()
        .filter_map(|c| Some((format!("{}{}", route.prefix, c.name), c.prev_id.clone()?)))
        .collect();
    let keep_request = mode == HoldMode::Response;
    let sse = response
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .get(..17)
                .is_some_and(|t| t.eq_ignore_ascii_case("text/event-stream"))
        });
    let last_event_id = (sse && mode == HoldMode::Stream && !route.no_recover)
        .then(|| from_history::last_event_id(&request.head))
        .flatten();
    Prepared::Hold(Box::new(HoldPlan {
        mode,
        version: request.head.version,
        keep_alive: request.head.keep_alive(),
        // 1xx, 204 and 304 responses have no body: such a stream hold ends after its head
        head_only: request.head.method == Method::HEAD
            || (mode == HoldMode::Stream
                && (response.status < 200 || response.status == 204 || response.status == 304)),
        response,
        channels,
        meta: instruct.meta,
        prev_ids,
        sse,
        sse_id: route.sse_id,
        last_event_id,
        prefix: route.prefix.clone(),
        timeout: Duration::from_secs(u64::from(instruct.timeout_secs)),
        keep_alive_data: instruct.keep_alive,
        request: keep_request.then(|| {
            Box::new(ProxiedRequest {
                route: request.route.clone(),
                head: request.head.clone(),
                body: request.body.clone(),
                trusted: request.trusted,
                tls: request.tls,
                grip_last: Vec::new(),
                stale_retries: request.stale_retries,
            })
        }),
        links,
    }))
}

/// Runs a stream's initial body through `build-id` when a channel has it (as Pushpin; a
/// long-poll's timeout response is not filtered). An error is the origin's.
pub(crate) fn filter_initial_body(plan: &mut HoldPlan) -> Result<(), String> {
    if plan.mode != HoldMode::Stream {
        return Ok(());
    }
    let body = &plan.response.body;
    if let Some(b) = filters::initial_body(&plan.channels, &plan.meta, &plan.prev_ids, body)? {
        plan.response.body = b;
    }
    Ok(())
}

/// Holds `conn` as `plan` says until the hold ends. Not an `async fn`: the future it
/// returns is the stream's or the long-poll's own, with no copy of the arguments around it.
pub(crate) fn run(
    shared: Arc<Shared>,
    conn: ClientConn,
    plan: Box<HoldPlan>,
) -> impl std::future::Future<Output = HoldEnd> + Send {
    use futures_util::future::Either;
    if plan.links.as_ref().is_some_and(|l| l.gone.is_some()) {
        // boxed: only holds with a gone link keep it for their whole life
        return Either::Left(Box::pin(run_then_gone(shared, conn, plan)));
    }
    Either::Right(match plan.mode {
        HoldMode::Stream => Either::Left(stream::run(shared, conn, plan)),
        // boxed: a stream's task does not grow to a long-poll's size
        HoldMode::Response => Either::Right(Box::pin(response::run(shared, conn, plan))),
    })
}

/// Holds `conn`, then tells the origin's gone link (whatever ended the hold, a retry too).
async fn run_then_gone(shared: Arc<Shared>, conn: ClientConn, mut plan: Box<HoldPlan>) -> HoldEnd {
    let gone = plan.links.as_mut().and_then(|l| gone::take(l));
    let end = match plan.mode {
        HoldMode::Stream => stream::run(shared.clone(), conn, plan).await,
        HoldMode::Response => response::run(shared.clone(), conn, plan).await,
    };
    if let Some(gone) = gone {
        gone::notify(&shared, gone);
    }
    end
}
