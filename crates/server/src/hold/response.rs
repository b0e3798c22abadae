//! Response holds (`Grip-Hold: response`, long-polling): nothing is sent until the first
//! published `http-response` message, which becomes the whole response, or until the
//! timeout, when the origin's own response (the "timeout response") is sent instead.
//! A `hint` asks for the request to be sent to the origin again.
//!
//! A published response inherits the timeout response's headers, overridden by its own, and
//! a `body-patch` is applied to the timeout response's JSON body. The connection then serves
//! the client's next request as usual.
//!
//! When the origin's answer names a `prev-id` older than the last id published on the
//! channel, or a published item does not follow it (another prev-id, or none), the request
//! goes to the origin again with `Grip-Last: <channel>; last-id=<the origin's prev-id>` (what
//! the client has, as Pushpin sends it). `POST /recover` does the same for every long-poll
//! with a prev-id. An origin that keeps
//! answering from stale data would make that a tight loop, so the re-requests are paced and
//! capped: the first goes at once, each next one after a pause that doubles from
//! [`STALE_BACKOFF_BASE`] up to [`STALE_BACKOFF_MAX`], and after `grip.max_stale_retries` of
//! them the origin's held response is answered as it is — the origin's own answer, counted
//! as its fault (`gripway_errors_total{source="origin",reason="stale-prev-id"}`), rather than
//! a 502 that would make the client's next poll start the loop again at once. Each
//! re-request counts in `gripway_retries_total{reason="stale-prev-id"}`.
//!
//! At shutdown the drain answers a waiting long-poll with its timeout response (and
//! `Connection: close`), so the client polls again ([`crate::drain`]).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use gripway_broker::history::Reach;
use gripway_broker::{Delivery, Message, Subscriber, Subscription, Transport};
use gripway_proto::http1::{write_response_head, Version};
use gripway_proto::publish::{HttpResponseAction, PatchError, ResponseBody, ResponseMessage};
use http::header::{HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};

use super::filters::{admit, Admit, Filters};
use super::sink::{Ending, Intake, Sink, SinkState, Wake};
use super::{HoldEnd, HoldPlan};
use crate::drain::Drainable;
use crate::error::{Refusal, Source};
use crate::metrics::ConnKind;
use crate::origin::detached_headers;
use crate::relay::{set_connection, write_full, FullResponse};
use crate::transport::ClientConn;
use crate::Shared;

/// Pause before the second re-request for a stale `prev-id` (the first goes at once).
pub(crate) const STALE_BACKOFF_BASE: Duration = Duration::from_millis(50);
/// Longest pause between re-requests for a stale `prev-id`.
pub(crate) const STALE_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// The pause before re-request number `attempt` (1-based) for a stale `prev-id`.
fn stale_backoff(attempt: u32) -> Duration {
    match attempt {
        0 | 1 => Duration::ZERO,
        n => STALE_BACKOFF_BASE
            .saturating_mul(1 << (n - 2).min(16))
            .min(STALE_BACKOFF_MAX),
    }
}

/// Bytes of a long-poll subscriber's state shared with the broker (for the budget test).
#[cfg(test)]
pub(crate) const STATE_SIZE: usize = std::mem::size_of::<PollSub>();

/// A long-poll subscriber.
struct PollSub {
    sink: Sink,
    /// The timeout response, which published responses are layered over.
    template: FullResponse,
    version: Version,
    keep_alive: bool,
    head_only: bool,
    filters: Option<Box<Filters>>,
    /// A `hint` arrived, or a message showed the origin's answer is stale: retry the request
    /// instead of answering.
    retry: AtomicBool,
    /// (channel, prev-id) the origin said its answer reflects.
    prev_ids: Vec<(String, String)>,
    /// `Grip-Last` for the retry: (channel, newest id seen).
    grip_last: parking_lot::Mutex<Vec<(String, String)>>,
    /// Largest body a `body-patch` may produce (the publish content limit).
    patch_limit: u32,
    /// Messages skipped because their `body-patch` would pass `patch_limit`, not yet counted
    /// in the metrics (the connection's task counts them).
    patch_skips: AtomicU32,
}

impl Subscriber for PollSub {
    fn transport(&self) -> Transport {
        Transport::HttpResponse
    }

    fn deliver(&self, channel: &str, messages: &[Arc<Message>]) -> Delivery {
        let mut st = self.sink.lock();
        if Sink::is_closed(&st) {
            return Delivery::Skipped;
        }
        match self.sink.held(&mut st, messages) {
            Intake::Deliver => self.deliver_locked(&mut st, channel, messages, false),
            Intake::Kept => Delivery::Sent(messages.len() as u32),
            Intake::Slow => Delivery::DroppedSlow(messages.len() as u32),
            Intake::Filtered(pass) => self.deliver_locked(&mut st, channel, &pass, false),
        }
    }

    fn recover(&self) {
        self.recover_now();
    }

    fn recheck(&self, channel: &str, last_id: &str) -> bool {
        let behind = self
            .prev_ids
            .iter()
            .any(|(c, p)| c == channel && p != last_id);
        behind && self.recover_now()
    }
}

impl PollSub {
    /// Answers with the first of `messages` that is for this long-poll (under the sink's
    /// lock), or notes that the request must go to the origin again.
    fn deliver_locked(
        &self,
        st: &mut SinkState,
        channel: &str,
        messages: &[Arc<Message>],
        from_history: bool,
    ) -> Delivery {
        if Sink::is_closed(st) {
            return Delivery::Skipped;
        }
        for msg in messages {
            let Some(format) = msg.http_response() else {
                continue;
            };
            // as Pushpin: an item that does not follow the origin's prev-id (a different
            // prev-id, or none) means the origin's answer missed something
            // (items from history follow it by the store's order, whatever they say)
            let stale = self.prev_ids.iter().find(|(c, p)| {
                !from_history && c == channel && msg.prev_id().map(|p| &**p) != Some(p.as_str())
            });
            if let Some((c, p)) = stale {
                self.grip_last.lock().push((c.clone(), p.clone()));
                self.retry.store(true, Ordering::Relaxed);
                self.sink.finish(st);
                return Delivery::Sent(1);
            }
            let admit = admit(
                self.filters.as_deref(),
                &format.content_filters,
                channel,
                msg,
            );
            if admit == Admit::No {
                continue;
            }
            let transform = (admit == Admit::Transformed).then_some(channel);
            match &format.action {
                HttpResponseAction::Hint => {
                    self.retry.store(true, Ordering::Relaxed);
                    self.sink.finish(st);
                    return Delivery::Sent(1);
                }
                HttpResponseAction::Send(message) => {
                    let Some(reply) = self.answer(message, transform) else {
                        if self.patch_skips.load(Ordering::Relaxed) > 0 {
                            self.sink.notify(st);
                        }
                        continue;
                    };
                    let ok = reply.send(&self.sink, st);
                    self.sink.finish(st);
                    return if ok {
                        Delivery::Sent(1)
                    } else {
                        Delivery::DroppedSlow(1)
                    };
                }
            }
        }
        Delivery::Skipped
    }
}

impl Drainable for PollSub {
    fn drain(&self) {
        let mut st = self.sink.lock();
        self.answer_timeout(&mut st, false);
    }
}

impl PollSub {
    /// `POST /recover` or the first-subscription re-check: a long-poll with a prev-id goes
    /// to its origin again.
    /// Returns true if it will.
    fn recover_now(&self) -> bool {
        if self.prev_ids.is_empty() {
            return false;
        }
        let mut st = self.sink.lock();
        if Sink::is_closed(&st) {
            return false;
        }
        self.grip_last.lock().extend(self.prev_ids.iter().cloned());
        self.retry.store(true, Ordering::Relaxed);
        self.sink.finish(&mut st);
        true
    }

    /// Sends the timeout response (the origin's) and finishes, unless already answered.
    fn answer_timeout(&self, st: &mut SinkState, keep_alive: bool) {
        if Sink::is_closed(st) {
            return;
        }
        let t = &self.template;
        let reply = full_response(
            self.sink.is_h2(),
            self.version,
            keep_alive,
            self.head_only,
            t.status,
            t.reason.as_deref(),
            t.headers.clone(),
            &t.body,
        );
        reply.send(&self.sink, st);
        self.sink.finish(st);
    }

    /// The full response for a published message, its body through the content filters of
    /// `transform` (a channel) if given; None if its body patch cannot apply or a content
    /// filter drops it.
    fn answer(&self, message: &ResponseMessage, transform: Option<&str>) -> Option<Reply> {
        let mut headers = self.template.headers.clone();
        let mut exposed: Option<Vec<String>> = None;
        for (name, value) in &message.headers {
            let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) else {
                continue;
            };
            if name.as_str() == "grip-expose-headers" {
                let list = value.to_str().unwrap_or("").split(',');
                exposed = Some(list.map(|n| n.trim().to_ascii_lowercase()).collect());
                continue;
            }
            let framing = name == CONTENT_LENGTH || name == TRANSFER_ENCODING || name == CONNECTION;
            if framing || name.as_str().starts_with("grip-") {
                continue;
            }
            headers.insert(name, value);
        }
        if let Some(list) = exposed {
            // a whitelist over the inherited and pushed headers (the reference's meaning;
            // Pushpin 1.36 removes the listed headers instead, see the compat suite)
            let mut kept = http::HeaderMap::new();
            for (name, value) in &headers {
                if list.iter().any(|n| n == name.as_str()) {
                    kept.append(name.clone(), value.clone());
                }
            }
            headers = kept;
        }
        let body = match &message.body {
            ResponseBody::Bytes(b) => b.clone(),
            ResponseBody::Patch(patch) => {
                match patched(&self.template.body, patch, self.patch_limit) {
                    Ok(b) => b,
                    Err(e) => {
                        if e.too_large {
                            self.patch_skips.fetch_add(1, Ordering::Relaxed);
                        }
                        tracing::debug!("body-patch not applied: {}", e.detail);
                        return None;
                    }
                }
            }
        };
        let body = match (transform, self.filters.as_deref()) {
            (Some(channel), Some(f)) => f.transform(channel, &body)?,
            _ => body,
        };
        // codes below 100 cannot go on an HTTP/1.x status line
        let code = if message.code < 100 {
            200
        } else {
            message.code
        };
        Some(full_response(
            self.sink.is_h2(),
            self.version,
            self.keep_alive,
            self.head_only,
            code,
            message.reason.as_deref(),
            headers,
            &body,
        ))
    }
}

/// A channel name as the origin knows it (without the route's prefix).
fn unprefixed(request: &crate::origin::forward::ProxiedRequest, channel: &str) -> String {
    channel
        .strip_prefix(request.route.route.prefix.as_str())
        .unwrap_or(channel)
        .to_string()
}

/// Why a `body-patch` was not applied.
struct PatchFailure {
    /// It would have made the body larger than the limit (counted as the publisher's error).
    too_large: bool,
    detail: String,
}

/// The timeout body with `patch` applied, never larger than `limit` bytes (the patch stops
/// at the operation that would pass it, before building anything bigger).
fn patched(
    template: &Bytes,
    patch: &gripway_proto::publish::JsonPatch,
    limit: u32,
) -> Result<Bytes, PatchFailure> {
    let fail = |too_large, detail| PatchFailure { too_large, detail };
    let mut doc: serde_json::Value = serde_json::from_slice(template)
        .map_err(|e| fail(false, format!("timeout body is not JSON: {e}")))?;
    // the document is a fresh parse, thrown away on failure: no need for an atomic apply
    patch
        .apply_in_place(&mut doc, limit as usize)
        .map_err(|e| {
            let too_large = matches!(
                e,
                PatchError::TooLarge { .. } | PatchError::DocumentTooLarge { .. }
            );
            fail(too_large, e.to_string())
        })?;
    let mut out = serde_json::to_vec(&doc).map_err(|e| fail(false, e.to_string()))?;
    if template.ends_with(b"\n") {
        out.push(b'\n');
    }
    Ok(Bytes::from(out))
}

/// Counts the messages `sub` skipped for an oversized `body-patch`.
fn count_patch_skips(shared: &Shared, sub: &PollSub) {
    for _ in 0..sub.patch_skips.swap(0, Ordering::Relaxed) {
        shared
            .metrics
            .count_error(Source::Publisher, "body-patch-too-large");
    }
}

/// A whole response as its connection takes it.
enum Reply {
    /// HTTP/1 bytes, head and body.
    H1(Bytes),
    /// An HTTP/2 head, and the body.
    H2(http::Response<()>, Bytes),
}

impl Reply {
    /// Sends it (under the sink's lock); false if the client is too slow.
    fn send(self, sink: &Sink, st: &mut SinkState) -> bool {
        match self {
            Reply::H1(bytes) => sink.send(st, &[&bytes]),
            Reply::H2(head, body) => {
                sink.enqueue_head(st, head);
                sink.send(st, &[&body])
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn full_response(
    h2: bool,
    version: Version,
    keep_alive: bool,
    head_only: bool,
    status: u16,
    reason: Option<&str>,
    mut headers: http::HeaderMap,
    body: &[u8],
) -> Reply {
    headers.remove(TRANSFER_ENCODING);
    if (100..200).contains(&status) || status == 204 {
        // these carry no body and no Content-Length (RFC 9110 §8.6)
        headers.remove(CONTENT_LENGTH);
    } else {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    }
    let head_only = head_only || (100..200).contains(&status) || status == 204 || status == 304;
    if h2 {
        let body = if head_only {
            Bytes::new()
        } else {
            Bytes::copy_from_slice(body)
        };
        return Reply::H2(crate::transport::h2::response_head(status, headers), body);
    }
    set_connection(&mut headers, version, keep_alive);
    let mut out = BytesMut::with_capacity(256 + body.len());
    write_response_head(&mut out, version, status, reason, &headers);
    if !head_only {
        out.extend_from_slice(body);
    }
    Reply::H1(out.freeze())
}

/// Holds `conn` as a long-poll.
pub(crate) async fn run(shared: Arc<Shared>, conn: ClientConn, mut plan: Box<HoldPlan>) -> HoldEnd {
    let shared = &shared;
    let ClientConn {
        sock,
        peer,
        buf,
        mut guard,
    } = conn;
    // the read buffer of the request that got here is not needed while holding
    drop(buf);
    guard.become_kind(ConnKind::LongPoll);
    let mut request = plan.request.take();
    // the origin answered from stale data if a newer message is known: ask it again now
    let stale = plan.prev_ids.iter().any(|(c, prev)| {
        shared
            .broker
            .last_id(c)
            .is_some_and(|last| last.as_ref() != prev.as_str())
    });
    // history that knows every prev-id answers with what followed, without the origin
    let from_history = !plan.prev_ids.is_empty() && shared.broker.history().is_on();
    let stale = stale && !(from_history && history_knows(shared, &plan));
    if let Some(mut req) = request.take_if(|_| stale) {
        let attempt = req.stale_retries + 1;
        if attempt > shared.config.grip.max_stale_retries {
            // the origin keeps answering from stale data: give the client its answer
            count_stale_answer(shared, &req, attempt);
            let response = std::mem::replace(&mut plan.response, FullResponse::empty());
            // boxed: this rare path must not grow every long-poll's future
            return Box::pin(answer_now(shared, sock, peer, guard, &req, response)).await;
        }
        shared.metrics.retry("stale-prev-id");
        let pause = stale_backoff(attempt);
        if !pause.is_zero() {
            Box::pin(tokio::time::sleep(pause)).await;
        }
        req.stale_retries = attempt;
        // Grip-Last names what the client has (the origin's prev-id), as Pushpin does
        req.grip_last = plan
            .prev_ids
            .iter()
            .map(|(c, prev)| (unprefixed(&req, c), prev.clone()))
            .collect();
        guard.become_kind(ConnKind::Http);
        return HoldEnd::Retry(
            ClientConn {
                sock,
                peer,
                buf: BytesMut::new(),
                guard,
            },
            req,
        );
    }
    let mut template = std::mem::replace(&mut plan.response, FullResponse::empty());
    // kept for the whole hold: copy it out of the origin connection's read buffer
    template.headers = detached_headers(&template.headers);
    template.body = Bytes::copy_from_slice(&template.body);
    let sub = Arc::new(PollSub {
        sink: Sink::new(sock, shared.config.grip.subscriber_queue_bytes),
        template,
        version: plan.version,
        keep_alive: plan.keep_alive,
        head_only: plan.head_only,
        filters: Filters::new(&plan.channels, &plan.meta, &plan.prev_ids, &shared.metrics),
        retry: AtomicBool::new(false),
        prev_ids: std::mem::take(&mut plan.prev_ids),
        grip_last: parking_lot::Mutex::new(Vec::new()),
        patch_limit: u32::try_from(shared.config.publish.limits.max_content_bytes)
            .unwrap_or(u32::MAX),
        patch_skips: AtomicU32::new(0),
    });
    if from_history {
        sub.sink.hold_back(&mut sub.sink.lock());
    }
    let registry = shared.broker.registry();
    let subscriptions: Vec<Subscription> = plan
        .channels
        .iter()
        .map(|(c, _)| registry.subscribe(c, sub.clone() as Arc<dyn Subscriber>))
        .collect();
    if from_history {
        // boxed: only long-polls with a prev-id pay for the read
        Box::pin(recover(shared, &sub)).await;
    } else {
        recheck_after_subscribing(shared, &sub, &[]);
    }
    shared.drain.roster.enlist(&sub);
    let timeout = plan.timeout;
    drop(plan);
    // boxed: the timer lives on the heap, not in every connection's future
    let mut timer = Box::pin(tokio::time::sleep(timeout));
    let ending = loop {
        match sub.sink.wait(Some(timer.as_mut())).await {
            Wake::End(e) => break e,
            Wake::Readable => {}
            Wake::Notified => count_patch_skips(shared, &sub),
            Wake::Timer => {
                sub.answer_timeout(&mut sub.sink.lock(), sub.keep_alive);
                break sub.sink.wait_end().await;
            }
        }
    };
    drop(subscriptions);
    shared.drain.roster.leave(&sub);
    count_patch_skips(shared, &sub);
    let retry = sub.retry.load(Ordering::Relaxed);
    if ending == Ending::Slow {
        shared.metrics.dropped("slow-subscriber");
    }
    if ending != Ending::Finished || !(sub.keep_alive || retry) || sub.sink.discarded_input() {
        // a request pipelined behind the hold was dropped: closing tells the client so
        return HoldEnd::Close;
    }
    let Ok(sub) = Arc::try_unwrap(sub) else {
        return HoldEnd::Close;
    };
    guard.become_kind(ConnKind::Http);
    let conn = ClientConn {
        sock: sub.sink.into_socket(),
        peer,
        buf: BytesMut::new(),
        guard,
    };
    match (retry, request) {
        (true, Some(mut request)) => {
            // the origin's answer was held: a fresh start for the stale-prev-id count
            request.stale_retries = 0;
            shared.metrics.retry("hint");
            request.grip_last = sub
                .grip_last
                .lock()
                .iter()
                .map(|(c, id)| (unprefixed(&request, c), id.clone()))
                .collect();
            HoldEnd::Retry(conn, request)
        }
        (true, None) => HoldEnd::Close,
        (false, _) => HoldEnd::KeepAlive(conn),
    }
}

/// An item fanned out between the staleness check above and the subscriptions would be
/// missed, so the check is made again now that the hold is subscribed. The broker records a
/// channel's last id before its fan-out, so an item either shows here (the request goes to
/// the origin again) or reaches this subscriber.
fn recheck_after_subscribing(shared: &Shared, sub: &PollSub, known: &[&str]) {
    for (channel, prev) in &sub.prev_ids {
        if known.contains(&channel.as_str()) {
            continue; // history answered for it: later items reach the subscription
        }
        let Some(last) = shared.broker.last_id(channel) else {
            continue;
        };
        if last.as_ref() != prev.as_str() {
            sub.grip_last.lock().push((channel.clone(), prev.clone()));
            sub.retry.store(true, Ordering::Relaxed);
            let mut st = sub.sink.lock();
            sub.sink.finish(&mut st);
            return;
        }
    }
}

/// True when history keeps every `prev-id` of the plan (so what followed each is known).
fn history_knows(shared: &Shared, plan: &HoldPlan) -> bool {
    let history = shared.broker.history();
    let now = std::time::Instant::now();
    plan.prev_ids
        .iter()
        .all(|(c, prev)| history.knows_now(c, prev, now) == Some(true))
}

/// Answers from history when it kept a `prev-id` and something followed it; then sends
/// what the fan-out handed over while history was read; then re-checks the channels
/// history did not know (see [`recheck_after_subscribing`]).
async fn recover(shared: &Shared, sub: &PollSub) {
    let mut found = super::from_history::read(shared, &sub.prev_ids).await;
    let known: Vec<&str> = {
        let mut st = sub.sink.lock();
        let held = sub
            .sink
            .release(&mut st, super::from_history::recovered_ids(&found));
        let live = super::from_history::reconcile(&mut found, held);
        for f in found.iter().filter(|f| f.reach == Reach::After) {
            if let Delivery::Sent(_) = sub.deliver_locked(&mut st, &f.channel, &f.items, true) {
                super::from_history::count_sent(shared, 1);
            }
        }
        for m in &live {
            sub.deliver_locked(&mut st, &m.channel, std::slice::from_ref(m), false);
        }
        found
            .iter()
            .filter(|f| f.reach == Reach::After)
            .map(|f| f.channel.as_str())
            .collect()
    };
    recheck_after_subscribing(shared, sub, &known);
}

/// Answers `response` (the origin's held answer) at once, without holding.
async fn answer_now(
    shared: &Arc<Shared>,
    sock: crate::transport::ClientStream,
    peer: std::net::SocketAddr,
    mut guard: crate::metrics::ConnGuard,
    req: &crate::origin::forward::ProxiedRequest,
    response: FullResponse,
) -> HoldEnd {
    guard.become_kind(ConnKind::Http);
    let mut conn = ClientConn {
        sock,
        peer,
        buf: BytesMut::new(),
        guard,
    };
    if write_full(shared, &mut conn, &req.head, response).await {
        HoldEnd::KeepAlive(conn)
    } else {
        HoldEnd::Close
    }
}

/// Counts and logs an origin that still answers from stale data after its re-requests.
fn count_stale_answer(shared: &Shared, req: &crate::origin::forward::ProxiedRequest, attempt: u32) {
    let refusal = Refusal::origin(
        false,
        "stale-prev-id",
        format!(
            "origin still answers with a stale prev-id after {} re-requests",
            attempt - 1
        ),
    );
    shared.metrics.error(&refusal);
    refusal.log(&req.route.label);
}
