//! WebSocket-over-HTTP: a client's WebSocket seen by the origin as a series of short HTTP
//! requests (`POST`, `application/websocket-events`), so the origin stays stateless.
//!
//! One request is in flight per connection; events the client produces meanwhile queue and go
//! in the next request, at most [`MAX_REQUEST_CONTENT`] content bytes at a time (one message
//! per request with the target's `one_event`). Every request carries the handshake's headers,
//! `Connection-Id`, the connection's `Meta-*` values and a `Grip-Sig`. Failed requests are
//! retried with backoff; a response may accept only part of what was sent
//! (`Content-Bytes-Accepted`) and the rest is sent again first (`Content-Bytes-Replayed`).
//! When the origin asks for it (`Keep-Alive-Interval`), an empty request goes out whenever
//! the connection has been quiet that long.
//!
//! What the client sent is bounded while the origin is slow: the events queued and in flight
//! cost at most `websocket.origin_queue_bytes` (payload plus [`MESSAGE_OVERHEAD`] each) before
//! the session stops reading the client ([`WohLink::is_full`]). Every resend is paced and
//! capped: a failed request is retried [`MAX_RETRIES`] times, 1 s·2ⁿ apart plus jitter; an
//! answer that accepts none of what was offered (`Content-Bytes-Accepted: 0`) is resent after
//! [`STALL_BACKOFF_START`] doubling to [`STALL_BACKOFF_MAX`], or at once when the client has
//! sent more meanwhile, and after [`MAX_STALLS`] such answers in a row the connection is
//! given up as the origin's fault. Both count in `gripway_retries_total`.

use std::collections::VecDeque;
use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gripway_proto::routes::TargetKind;
use gripway_proto::woh::{
    decode_events_bytes, encode_events, Event, EventKind, WohLimits, CONTENT_TYPE,
};
use gripway_proto::ws_control::{parse_grip_extension, GripExtension};
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, StatusCode};
use rand::Rng;

use super::base_headers::BaseHeaders;
use super::client::MESSAGE_OVERHEAD;
use crate::now_unix;
use crate::origin::forward::connect_target;
use crate::origin::{demo, OriginError, OriginErrorKind, OriginRequest};
use crate::routing::RouteEntry;
use crate::Shared;

/// Content bytes of client messages sent in one request (Pushpin's limit).
pub(crate) const MAX_REQUEST_CONTENT: usize = 200_000;
/// Largest response body accepted from the origin.
const MAX_RESPONSE_BODY: usize = 1_000_000;
/// Largest body of a refused handshake relayed to the client.
const MAX_REJECT_BODY: usize = 100_000;
/// Retries of a failed request before the connection is dropped.
const MAX_RETRIES: u8 = 5;
/// Answers in a row that accept none of the same content before the connection is dropped.
pub(crate) const MAX_STALLS: u8 = 6;
/// The wait before content nothing of which was accepted is offered again; it doubles with
/// each such answer in a row, up to [`STALL_BACKOFF_MAX`].
const STALL_BACKOFF_START: Duration = Duration::from_millis(100);
const STALL_BACKOFF_MAX: Duration = Duration::from_secs(2);
/// The shortest keep-alive interval an origin may ask for.
const MIN_KEEP_ALIVE: Duration = Duration::from_secs(20);

/// What one request got back.
pub(crate) enum Answer {
    /// 200 with WebSocket events.
    Events(Box<Reply>),
    /// The origin answered, but not with events: on the opening request this refuses the
    /// handshake and is relayed to the client.
    Refused {
        status: StatusCode,
        reason: Option<String>,
        headers: HeaderMap,
        body: Bytes,
    },
}

/// A 200 `application/websocket-events` response.
pub(crate) struct Reply {
    pub(crate) events: Vec<Event>,
    pub(crate) headers: HeaderMap,
    /// The `grip` extension the origin enabled (meaningful on the opening response).
    pub(crate) grip: Option<GripExtension>,
    /// `Set-Meta-*`: name (lower-case) and value (None deletes).
    pub(crate) set_meta: Vec<(String, Option<String>)>,
    /// `Keep-Alive-Interval`, when present: None disables.
    pub(crate) keep_alive: Option<Option<Duration>>,
    /// `Content-Bytes-Accepted`, when present.
    pub(crate) accepted: Option<usize>,
}

/// A request in flight; it gives back the events it carries with the answer.
type Pending = Pin<Box<dyn Future<Output = (Result<Answer, OriginError>, Vec<Event>)> + Send>>;

/// The origin side of a WebSocket-over-HTTP connection.
pub(crate) struct WohLink {
    shared: Arc<Shared>,
    route: Arc<RouteEntry>,
    /// Index of the target that accepted the connection.
    target: u32,
    path: Box<str>,
    /// The handshake's headers as every request repeats them.
    base_headers: BaseHeaders,
    /// `Connection-Id`: a random (v4) UUID (bytes, not `u128`, which would align the link
    /// to 16 bytes).
    connection_id: uuid::Bytes,
    /// Client events not yet sent, in order.
    queue: VecDeque<Event>,
    /// Content bytes at the front of `queue` being sent again after a partial accept.
    replayed: u32,
    /// What the events queued and in flight cost ([`cost`]).
    held: u32,
    /// While a resend of content nothing of which was accepted waits: the queue's length
    /// then (more events end the wait at once). 0 otherwise.
    stall_len: u32,
    /// The request in flight (it carries the events it sends).
    inflight: Option<Pending>,
    /// Failed requests in a row.
    retries: u8,
    /// Answers in a row that accepted none of the same content.
    stalls: u8,
    retry_at: Option<Instant>,
    /// The keep-alive interval in seconds (at least [`MIN_KEEP_ALIVE`]).
    keep_alive: Option<NonZeroU32>,
    last_request: Instant,
    one_event: bool,
}

impl WohLink {
    pub(crate) fn new(
        shared: Arc<Shared>,
        route: Arc<RouteEntry>,
        target: u32,
        path: Box<str>,
        base_headers: BaseHeaders,
    ) -> WohLink {
        let one_event = route
            .route
            .targets
            .get(target as usize)
            .is_some_and(|t| t.one_event);
        WohLink {
            shared,
            route,
            target,
            path,
            base_headers,
            connection_id: uuid::Uuid::new_v4().into_bytes(),
            queue: VecDeque::new(),
            replayed: 0,
            held: 0,
            stall_len: 0,
            inflight: None,
            retries: 0,
            stalls: 0,
            retry_at: None,
            keep_alive: None,
            last_request: Instant::now(),
            one_event,
        }
    }

    /// Sends the opening request (`OPEN`) to the route's targets in order, the first that
    /// answers wins. Returns the link bound to that target and the answer.
    pub(crate) async fn open(
        shared: Arc<Shared>,
        route: Arc<RouteEntry>,
        path: Box<str>,
        base_headers: BaseHeaders,
        meta: &[(String, String)],
    ) -> Result<(WohLink, Answer), OriginError> {
        let mut last = None;
        let targets = u32::try_from(route.route.targets.len()).unwrap_or(u32::MAX);
        for target in 0..targets {
            let link = WohLink::new(
                shared.clone(),
                route.clone(),
                target,
                path.clone(),
                base_headers.clone(),
            );
            match link.request(vec![Event::open()], meta, 0).await.0 {
                Ok(answer) => return Ok((link, answer)),
                Err(e) if e.try_next_target() => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| OriginError {
            kind: OriginErrorKind::Connect,
            message: "route has no targets".into(),
        }))
    }

    /// Queues a client event for the next request.
    pub(crate) fn push(&mut self, event: Event) {
        self.held = self.held.saturating_add(cost(&event));
        self.queue.push_back(event);
    }

    /// True when what is queued and in flight has reached `websocket.origin_queue_bytes`:
    /// the client is not read until the origin takes some.
    pub(crate) fn is_full(&self) -> bool {
        self.held as usize >= self.shared.config.websocket.origin_queue_bytes
    }

    /// Bytes the client may still send before the link is full.
    pub(crate) fn room(&self) -> usize {
        self.shared
            .config
            .websocket
            .origin_queue_bytes
            .saturating_sub(self.held as usize)
    }

    /// True when the origin accepted nothing [`MAX_STALLS`] times in a row.
    pub(crate) fn stalled_out(&self) -> bool {
        self.stalls > MAX_STALLS
    }

    /// True while something is queued or in flight.
    pub(crate) fn has_work(&self) -> bool {
        !self.queue.is_empty() || self.inflight.is_some()
    }

    /// Sets the keep-alive interval from a response's `Keep-Alive-Interval`.
    pub(crate) fn set_keep_alive(&mut self, interval: Option<Duration>) {
        self.keep_alive = interval.and_then(|d| {
            let secs = d.max(MIN_KEEP_ALIVE).as_secs();
            NonZeroU32::new(u32::try_from(secs).unwrap_or(u32::MAX))
        });
    }

    fn keep_alive(&self) -> Option<Duration> {
        self.keep_alive
            .map(|s| Duration::from_secs(u64::from(s.get())))
    }

    /// When the link next needs the task's attention without I/O (a retry or keep-alive).
    pub(crate) fn deadline(&self) -> Option<Instant> {
        if self.inflight.is_some() {
            return None;
        }
        if let Some(at) = self.retry_at {
            return Some(at);
        }
        if self.queue.is_empty() {
            return self.keep_alive().map(|k| self.last_request + k);
        }
        None
    }

    /// Starts a request if none is in flight and there is something to send, a retry is due,
    /// a keep-alive is due, or `force` (a refresh) asks for one.
    pub(crate) fn pump(&mut self, meta: &[(String, String)], force: bool) {
        if self.inflight.is_some() {
            return;
        }
        let now = Instant::now();
        let more_since_stall = self.stall_len > 0 && self.queue.len() > self.stall_len as usize;
        if self.retry_at.is_some_and(|at| at > now) && !more_since_stall {
            return;
        }
        let keep_alive_due = self
            .keep_alive()
            .is_some_and(|k| now >= self.last_request + k);
        if self.queue.is_empty() && !force && !keep_alive_due && self.retry_at.is_none() {
            return;
        }
        if self.retry_at.take().is_some() {
            let reason = if self.stall_len > 0 {
                "websocket-nothing-accepted"
            } else {
                "websocket-request-failed"
            };
            self.shared.metrics.retry(reason);
        }
        self.stall_len = 0;
        let events = self.take_batch();
        let replayed = std::mem::take(&mut self.replayed) as usize;
        let fut = self.request(events, meta, replayed);
        self.inflight = Some(Box::pin(fut));
        self.last_request = now;
    }

    fn take_batch(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        let mut content = 0;
        while let Some(front) = self.queue.front() {
            let size = front.content.len();
            if !out.is_empty() && (content + size > MAX_REQUEST_CONTENT || self.one_event) {
                break;
            }
            content += size;
            if let Some(e) = self.queue.pop_front() {
                out.push(e);
            }
            if self.one_event && !out.last().is_some_and(|e| e.content.is_empty()) {
                break;
            }
        }
        if self.queue.is_empty() {
            // give the storage back: a burst must not leave an idle connection holding it
            self.queue = VecDeque::new();
        }
        out
    }

    /// Waits for the request in flight (forever if there is none). On failure the events go
    /// back to the front of the queue and a retry is scheduled, up to [`MAX_RETRIES`]; an
    /// answer that accepted nothing schedules a resend, up to [`MAX_STALLS`].
    pub(crate) async fn next(&mut self) -> Result<Answer, OriginError> {
        let Some(fut) = self.inflight.as_mut() else {
            return std::future::pending().await;
        };
        let (result, events) = fut.await;
        self.inflight = None;
        match result {
            Ok(Answer::Events(reply)) => {
                self.retries = 0;
                let sent: u32 = events.iter().map(cost).fold(0, u32::saturating_add);
                self.held = self.held.saturating_sub(sent);
                match reply.accepted {
                    Some(accepted) => {
                        let queued_meanwhile = !self.queue.is_empty();
                        let requeued = self.requeue_unaccepted(events, accepted)?;
                        if accepted == 0 && requeued > 0 {
                            self.nothing_accepted(queued_meanwhile)?;
                        } else {
                            self.stalls = 0;
                        }
                    }
                    None => self.stalls = 0,
                }
                Ok(Answer::Events(reply))
            }
            Ok(refused) => Ok(refused),
            Err(e) if e.try_next_target() && self.retries < MAX_RETRIES => {
                let delay = Duration::from_millis(
                    1000 * (1 << self.retries) + rand::rng().random_range(0..1000),
                );
                self.retries += 1;
                tracing::debug!(route = %self.route.label, "WebSocket-over-HTTP request failed ({e}); retry in {delay:?}");
                for e in events.into_iter().rev() {
                    self.queue.push_front(e);
                }
                self.retry_at = Some(Instant::now() + delay);
                Err(OriginError {
                    kind: OriginErrorKind::Timeout,
                    message: "retrying".into(),
                })
            }
            Err(e) => Err(e),
        }
    }

    /// The origin took none of the content it was offered: unless the client has sent more
    /// meanwhile (the next request carries it at once), the same content is offered again
    /// after a backoff; too many answers like that in a row end the connection.
    fn nothing_accepted(&mut self, queued_meanwhile: bool) -> Result<(), OriginError> {
        if queued_meanwhile {
            return Ok(());
        }
        self.stalls = self.stalls.saturating_add(1);
        if self.stalled_out() {
            return Err(OriginError {
                kind: OriginErrorKind::Broken,
                message: format!(
                    "the origin accepted none of the same content {} times in a row",
                    self.stalls
                ),
            });
        }
        self.retry_at = Some(Instant::now() + stall_backoff(self.stalls));
        self.stall_len = self.queue.len().try_into().unwrap_or(u32::MAX);
        Ok(())
    }

    /// True if `next` failed only to retry later.
    pub(crate) fn retrying(&self) -> bool {
        self.retry_at.is_some()
    }

    /// Puts back what the origin did not accept: the first `accepted` content bytes of the
    /// request's messages were taken, the rest is sent again at the front of the next request.
    /// Returns how many events were put back.
    fn requeue_unaccepted(
        &mut self,
        events: Vec<Event>,
        accepted: usize,
    ) -> Result<usize, OriginError> {
        let offered: usize = events.iter().map(|e| e.content.len()).sum();
        if accepted > offered {
            return Err(OriginError {
                kind: OriginErrorKind::Broken,
                message: format!(
                    "Content-Bytes-Accepted {accepted} is more than the {offered} bytes sent"
                ),
            });
        }
        let mut skip = accepted;
        let mut rest = Vec::new();
        for e in events {
            let len = e.content.len();
            if skip >= len && !(len == 0 && skip == 0 && matches!(e.kind, EventKind::Close)) {
                skip -= len;
                continue;
            }
            if matches!(e.kind, EventKind::Text | EventKind::Binary) && skip > 0 {
                rest.push(Event {
                    kind: e.kind,
                    content: e.content.slice(skip..),
                });
            } else {
                rest.push(e);
            }
            skip = 0;
        }
        self.replayed = rest
            .iter()
            .map(|e| e.content.len())
            .sum::<usize>()
            .try_into()
            .unwrap_or(u32::MAX);
        let requeued = rest.len();
        for e in rest.into_iter().rev() {
            self.held = self.held.saturating_add(cost(&e));
            self.queue.push_front(e);
        }
        Ok(requeued)
    }

    /// One request with `events`; the future owns everything it needs and gives the events
    /// back with the answer.
    fn request(
        &self,
        events: Vec<Event>,
        meta: &[(String, String)],
        replayed: usize,
    ) -> impl Future<Output = (Result<Answer, OriginError>, Vec<Event>)> + Send + 'static {
        let mut body = Vec::new();
        encode_events(&events, &mut body);
        // content type, accept, connection id, replayed, signature, and the meta values
        let mut headers = self.base_headers.to_map(5 + meta.len());
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static(CONTENT_TYPE),
        );
        headers.insert(http::header::ACCEPT, HeaderValue::from_static(CONTENT_TYPE));
        let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let id = uuid::Uuid::from_bytes(self.connection_id)
            .hyphenated()
            .encode_lower(&mut id);
        if let Ok(v) = HeaderValue::from_str(id) {
            headers.insert("connection-id", v);
        }
        for (name, value) in meta {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(format!("meta-{name}").as_bytes()),
                HeaderValue::from_str(value),
            ) {
                headers.insert(n, v);
            }
        }
        if replayed > 0 {
            headers.insert("content-bytes-replayed", HeaderValue::from(replayed));
        }
        if !self.route.route.no_grip {
            if let Some(signer) = &self.route.signer {
                if let Ok(v) = HeaderValue::from_str(&signer.token(now_unix())) {
                    headers.insert("grip-sig", v);
                }
            }
        }
        let request = OriginRequest {
            method: Method::POST,
            path_and_query: self.path.to_string(),
            headers,
            body: Bytes::from(body),
        };
        let shared = self.shared.clone();
        let route = self.route.clone();
        let target = self.target as usize;
        async move {
            let answer = send(&shared, &route, target, request).await;
            (answer, events)
        }
    }
}

/// Sends one request to the route's `target` and reads its answer.
async fn send(
    shared: &Shared,
    route: &RouteEntry,
    target: usize,
    request: OriginRequest,
) -> Result<Answer, OriginError> {
    let Some(t) = route.route.targets.get(target) else {
        return Err(OriginError {
            kind: OriginErrorKind::Connect,
            message: "no such target".into(),
        });
    };
    let started = Instant::now();
    let mut response = match &t.kind {
        TargetKind::Test => demo::websocket(&request),
        TargetKind::Addr { .. } => match shared.origin.send(&connect_target(t), &request).await {
            Ok(r) => r,
            Err(e) => {
                shared.metrics.origin_error(&route.label, e.label());
                return Err(e);
            }
        },
    };
    shared.metrics.origin_ok(&route.label, started.elapsed());
    let is_events = response.status == StatusCode::OK
        && response
            .headers
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes() == CONTENT_TYPE.as_bytes());
    let limit = if is_events {
        MAX_RESPONSE_BODY
    } else {
        MAX_REJECT_BODY
    };
    let body = response
        .body
        .read_to_end(limit, shared.config.proxy.response_timeout)
        .await?
        .ok_or_else(|| OriginError {
            kind: OriginErrorKind::Broken,
            message: format!("response body over {limit} bytes"),
        })?;
    if !is_events {
        return Ok(Answer::Refused {
            status: response.status,
            reason: response.reason,
            headers: response.headers,
            body,
        });
    }
    let events = decode_events_bytes(&body, &WohLimits::default()).map_err(|e| OriginError {
        kind: OriginErrorKind::Broken,
        message: format!("bad WebSocket events: {e}"),
    })?;
    Ok(Answer::Events(Box::new(parse_reply(
        events,
        response.headers,
    ))))
}

/// What holding an event costs: its content and [`MESSAGE_OVERHEAD`].
fn cost(event: &Event) -> u32 {
    (event.content.len() + MESSAGE_OVERHEAD)
        .try_into()
        .unwrap_or(u32::MAX)
}

/// The wait before offering again content nothing of which was accepted, after `stalls`
/// such answers in a row.
fn stall_backoff(stalls: u8) -> Duration {
    let doublings = u32::from(stalls.saturating_sub(1)).min(16);
    (STALL_BACKOFF_START * (1 << doublings)).min(STALL_BACKOFF_MAX)
}

fn parse_reply(events: Vec<Event>, headers: HeaderMap) -> Reply {
    let grip = parse_grip_extension(
        headers
            .get_all("sec-websocket-extensions")
            .iter()
            .map(HeaderValue::as_bytes),
    );
    let set_meta = headers
        .iter()
        .filter_map(|(name, value)| {
            let meta = name.as_str().strip_prefix("set-meta-")?;
            let value = value.to_str().ok()?;
            Some((
                meta.to_string(),
                (!value.is_empty()).then(|| value.to_string()),
            ))
        })
        .collect();
    let keep_alive = headers.get("keep-alive-interval").map(|v| {
        v.to_str()
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .filter(|s| *s > 0)
            .map(|s| Duration::from_secs(s as u64))
    });
    let accepted = headers
        .get("content-bytes-accepted")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse().ok());
    Reply {
        events,
        headers,
        grip,
        set_meta,
        keep_alive,
        accepted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    /// Shared state whose only route is the demo origin, with `queue` as the bound.
    fn shared(queue: usize) -> Arc<Shared> {
        let mut config = Config::default();
        config.websocket.origin_queue_bytes = queue;
        Shared::for_tests(config)
    }

    fn link(shared: &Arc<Shared>) -> WohLink {
        let route = shared.routes.current().entries()[0].clone();
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("x"));
        let headers = BaseHeaders::new(&headers, |_| false);
        WohLink::new(shared.clone(), route, 0, "/test/websocket".into(), headers)
    }

    #[tokio::test]
    async fn held_bytes_reach_the_bound_and_are_released_with_their_storage() {
        let shared = shared(1000);
        let mut link = link(&shared);
        let ten = Bytes::from_static(b"0123456789");
        for _ in 0..13 {
            link.push(Event::text(ten.clone()));
        }
        // each costs its 10 bytes and the overhead
        assert_eq!(link.held as usize, 13 * (10 + MESSAGE_OVERHEAD));
        assert!(!link.is_full());
        assert_eq!(link.room(), 1000 - 13 * (10 + MESSAGE_OVERHEAD));
        link.push(Event::text(ten.clone()));
        assert!(link.is_full());
        assert_eq!(link.room(), 0);
        // empty messages cost something too
        let mut empty = self::link(&shared);
        for _ in 0..16 {
            empty.push(Event::text(Bytes::new()));
        }
        assert!(empty.is_full());

        link.pump(&[], false);
        assert!(link.is_full(), "in flight still counts");
        assert!(matches!(link.next().await, Ok(Answer::Events(_))));
        assert_eq!(link.held, 0);
        assert!(!link.is_full());
        assert_eq!(link.queue.capacity(), 0, "no storage kept once drained");
    }

    #[test]
    fn stall_backoff_doubles_up_to_its_cap() {
        let waits: Vec<u128> = (1..=8).map(|n| stall_backoff(n).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 2000, 2000, 2000]);
        assert_eq!(stall_backoff(u8::MAX), STALL_BACKOFF_MAX);
    }
}
