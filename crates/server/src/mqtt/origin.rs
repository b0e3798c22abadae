//! MQTT-over-HTTP, the server's side: a device's CONNECT, SUBSCRIBE and PUBLISH asked of the
//! route's origin as a short signed `POST` (the body and the answer are
//! [`gripway_proto::mqtt_origin`]'s), and the answers the origin allowed to be reused kept
//! per connection for as long as its `Cache-Control: max-age` says.
//!
//! Like WebSocket-over-HTTP, each request carries `Connection-Id`, the `Meta-*` values earlier
//! answers set, and a `Grip-Sig` unless the route is `no_grip`. The route's targets are tried
//! in order until one answers. Any failure (unreachable, timed out, not 200, an answer that
//! does not parse) is the origin's fault and the caller maps it to the device's reason code.

use std::net::IpAddr;
use std::time::Instant;

use bytes::Bytes;
use gripway_proto::mqtt_origin::{
    max_age, parse_answer, to_json, Answer, Event, FilterResult, PublishResult, Request,
    CONTENT_TYPE,
};
use gripway_proto::routes::TargetKind;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, StatusCode};

use crate::error::Refusal;
use crate::now_unix;
use crate::origin::forward::connect_target;
use crate::origin::OriginRequest;
use crate::routing::RouteEntry;
use crate::Shared;

/// Answers kept per connection, at most (the oldest goes first).
pub(crate) const MAX_CACHED: usize = 32;

/// Largest answer body read.
const MAX_ANSWER_BYTES: usize = gripway_proto::mqtt_origin::MAX_BODY_BYTES;

/// What a connection keeps to talk to its origin (boxed in the session; only for routes whose
/// target is an origin, not the demo).
pub(crate) struct OriginLink {
    connection_id: uuid::Uuid,
    /// The CONNECT's protocol level.
    pub(crate) level: u8,
    pub(crate) client_id: String,
    pub(crate) username: Option<String>,
    /// `Meta-*` values set by answers, sent with every later request.
    meta: Vec<(String, String)>,
    peer: IpAddr,
    tls: bool,
    cache: Vec<Cached>,
}

/// A reusable answer.
enum Cached {
    Publish {
        topic: Box<str>,
        until: Instant,
        result: Box<PublishResult>,
    },
    Filter {
        filter: Box<str>,
        until: Instant,
        result: Box<FilterResult>,
    },
}

impl OriginLink {
    pub(crate) fn new(
        level: u8,
        client_id: String,
        username: Option<String>,
        peer: IpAddr,
        tls: bool,
    ) -> Self {
        OriginLink {
            connection_id: uuid::Uuid::new_v4(),
            level,
            client_id,
            username,
            meta: Vec::new(),
            peer,
            tls,
            cache: Vec::new(),
        }
    }

    /// The cached result for a publish to `topic`, if still fresh.
    pub(crate) fn cached_publish(&mut self, topic: &str) -> Option<PublishResult> {
        let now = Instant::now();
        self.cache.retain(|c| match c {
            Cached::Publish { until, .. } | Cached::Filter { until, .. } => *until > now,
        });
        self.cache.iter().find_map(|c| match c {
            Cached::Publish {
                topic: t, result, ..
            } if &**t == topic => Some((**result).clone()),
            _ => None,
        })
    }

    /// The cached result for subscribing `filter`, if still fresh.
    pub(crate) fn cached_filter(&mut self, filter: &str) -> Option<FilterResult> {
        let now = Instant::now();
        self.cache.retain(|c| match c {
            Cached::Publish { until, .. } | Cached::Filter { until, .. } => *until > now,
        });
        self.cache.iter().find_map(|c| match c {
            Cached::Filter {
                filter: f, result, ..
            } if &**f == filter => Some((**result).clone()),
            _ => None,
        })
    }

    fn keep(&mut self, entry: Cached) {
        if self.cache.len() >= MAX_CACHED {
            self.cache.remove(0);
        }
        self.cache.push(entry);
    }

    /// Keeps the results of `answer` that may be reused for `secs` seconds.
    pub(crate) fn remember(&mut self, events: &[Event], answer: &Answer, secs: u32) {
        if secs == 0 {
            return;
        }
        let until = Instant::now() + std::time::Duration::from_secs(u64::from(secs));
        for (event, result) in events.iter().zip(&answer.results) {
            use gripway_proto::mqtt_origin::EventResult;
            match (event, result) {
                (Event::Publish(p), EventResult::Publish(r)) if r.cacheable() => {
                    self.cache.retain(
                        |c| !matches!(c, Cached::Publish { topic, .. } if **topic == *p.topic),
                    );
                    self.keep(Cached::Publish {
                        topic: p.topic.as_str().into(),
                        until,
                        result: Box::new(r.clone()),
                    });
                }
                (Event::Subscribe { filters }, EventResult::Subscribe(r)) => {
                    for (f, r) in filters.iter().zip(&r.filters) {
                        self.cache.retain(
                            |c| !matches!(c, Cached::Filter { filter, .. } if **filter == *f.filter),
                        );
                        self.keep(Cached::Filter {
                            filter: f.filter.as_str().into(),
                            until,
                            result: Box::new(r.clone()),
                        });
                    }
                }
                _ => {}
            }
        }
    }

    /// What a background request (a notification) needs: the same identity and meta, no
    /// cache.
    pub(crate) fn for_notification(&self) -> OriginLink {
        OriginLink {
            connection_id: self.connection_id,
            level: self.level,
            client_id: self.client_id.clone(),
            username: self.username.clone(),
            meta: self.meta.clone(),
            peer: self.peer,
            tls: self.tls,
            cache: Vec::new(),
        }
    }

    /// Takes the answer's `meta` (an empty value removes the name).
    pub(crate) fn set_meta(&mut self, meta: Vec<(String, String)>) {
        for (name, value) in meta {
            self.meta.retain(|(n, _)| *n != name);
            if !value.is_empty() {
                self.meta.push((name, value));
            }
        }
    }
}

/// Asks the route's origin about `events`: the answer, and for how long its results may be
/// reused (seconds, 0: not at all).
pub(crate) async fn ask(
    shared: &Shared,
    route: &RouteEntry,
    link: &OriginLink,
    events: &[Event],
) -> Result<(Answer, u32), Refusal> {
    let request = Request {
        protocol: link.level,
        client_id: link.client_id.clone(),
        username: link.username.clone(),
        events: events.to_vec(),
    };
    let body = Bytes::from(to_json(&request));
    let kinds = request.kinds();
    let path = route
        .route
        .origin_path(&shared.config.mqtt.path)
        .into_owned();
    let mut last = Refusal::origin(false, "mqtt-origin-unreachable", "no origin target");
    for target in &route.route.targets {
        let TargetKind::Addr { host, port } = &target.kind else {
            continue;
        };
        let mut headers = HeaderMap::new();
        let host = target
            .host
            .clone()
            .unwrap_or_else(|| format!("{host}:{port}"));
        if let Ok(v) = HeaderValue::from_str(&host) {
            headers.insert(http::header::HOST, v);
        }
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static(CONTENT_TYPE),
        );
        headers.insert(http::header::ACCEPT, HeaderValue::from_static(CONTENT_TYPE));
        let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let id = link.connection_id.hyphenated().encode_lower(&mut id);
        if let Ok(v) = HeaderValue::from_str(id) {
            headers.insert("connection-id", v);
        }
        if let Ok(v) = HeaderValue::from_str(&link.peer.to_string()) {
            headers.insert("x-forwarded-for", v);
        }
        if link.tls {
            headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        }
        for (name, value) in &link.meta {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(format!("meta-{name}").as_bytes()),
                HeaderValue::from_str(value),
            ) {
                headers.insert(n, v);
            }
        }
        if !route.route.no_grip {
            if let Some(signer) = &route.signer {
                if let Ok(v) = HeaderValue::from_str(&signer.token(now_unix())) {
                    headers.insert("grip-sig", v);
                }
            }
        }
        let request = OriginRequest {
            method: Method::POST,
            path_and_query: path.clone(),
            headers,
            body: body.clone(),
        };
        let started = Instant::now();
        let mut response = match shared.origin.send(&connect_target(target), &request).await {
            Ok(r) => r,
            Err(e) => {
                shared.metrics.origin_error(&route.label, e.label());
                let timed_out = matches!(e.kind, crate::origin::OriginErrorKind::Timeout);
                last = Refusal::origin(timed_out, "mqtt-origin-unreachable", e.message);
                continue;
            }
        };
        shared.metrics.origin_ok(&route.label, started.elapsed());
        let content_ok = response
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .is_some_and(|t| t == CONTENT_TYPE || t == "application/json");
        if response.status != StatusCode::OK || !content_ok {
            return Err(Refusal::origin(
                false,
                "mqtt-origin-refused",
                format!(
                    "the origin answered {} without MQTT results",
                    response.status.as_u16()
                ),
            ));
        }
        let secs = response
            .headers
            .get_all(http::header::CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(",");
        let secs = max_age(&secs, shared.config.mqtt.max_cache_secs).unwrap_or(0);
        let body = response
            .body
            .read_to_end(MAX_ANSWER_BYTES, shared.config.proxy.response_timeout)
            .await
            .map_err(|e| Refusal::origin(false, "mqtt-origin-broken", e.message))?
            .ok_or_else(|| {
                Refusal::origin(false, "mqtt-origin-broken", "the answer is too large")
            })?;
        let answer = parse_answer(&body, &kinds).map_err(|e| {
            Refusal::origin(false, "mqtt-origin-bad-answer", format!("MQTT answer: {e}"))
        })?;
        return Ok((answer, secs));
    }
    Err(last)
}
