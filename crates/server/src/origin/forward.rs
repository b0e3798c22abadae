//! Sending a request to its route's targets: each target in order until one answers, with
//! the request's headers rebuilt per target (its `host=` may differ) and every attempt
//! counted per route. Only failures that prove the request never reached the origin
//! (connect, TLS, no response head in time) move on to the next target.

use std::net::IpAddr;
use std::time::Instant;

use gripway_proto::routes::{Target, TargetKind};

use std::sync::Arc;

use bytes::Bytes;
use gripway_proto::http1::RequestHead;

use super::headers::{origin_headers, HeaderContext};
use super::{demo, ConnectTarget, OriginError, OriginRequest, OriginResponse};
use crate::now_unix;
use crate::routing::RouteEntry;
use crate::Shared;

/// A client request as sent to the origin, kept for retries (`hint` on a long-poll).
pub(crate) struct ProxiedRequest {
    pub(crate) route: Arc<RouteEntry>,
    pub(crate) head: RequestHead,
    pub(crate) body: Bytes,
    /// The client proved itself a trusted upstream proxy.
    pub(crate) trusted: bool,
    /// The client's connection is TLS (`X-Forwarded-Proto: https`).
    pub(crate) tls: bool,
    /// `Grip-Last` to send (channel without route prefix, last id): set when a held request
    /// is sent again because a newer message exists.
    pub(crate) grip_last: Vec<(String, String)>,
    /// Times in a row this request was sent again because the origin's answer named a stale
    /// `prev-id` (paces and caps that loop, see `hold::response`).
    pub(crate) stale_retries: u32,
}

/// Sends `request` to its route's targets in order; the first answer wins.
pub(crate) async fn forward(
    shared: &Shared,
    request: &ProxiedRequest,
    peer: IpAddr,
) -> Result<OriginResponse, OriginError> {
    let route = &request.route;
    let path = route
        .route
        .origin_path(request.head.path_and_query())
        .into_owned();
    let mut last_error = None;
    for target in &route.route.targets {
        if let TargetKind::Test = target.kind {
            shared
                .metrics
                .origin_ok(&route.label, std::time::Duration::ZERO);
            let path_only = path.split('?').next().unwrap_or(&path);
            return Ok(demo::respond(&request.head.method, path_only));
        }
        let mut headers = origin_headers(
            &request.head.headers,
            &HeaderContext {
                config: &shared.config.proxy,
                route,
                target,
                peer,
                tls: request.tls,
                trusted: request.trusted,
                now_unix: now_unix(),
                client_host: Some(request.head.host()),
            },
        );
        for (channel, id) in &request.grip_last {
            if let Ok(v) = http::HeaderValue::from_str(&format!("{channel}; last-id={id}")) {
                headers.append("grip-last", v);
            }
        }
        let out = OriginRequest {
            method: request.head.method.clone(),
            path_and_query: path.clone(),
            headers,
            body: request.body.clone(),
        };
        let started = Instant::now();
        match shared.origin.send(&connect_target(target), &out).await {
            Ok(response) => {
                shared.metrics.origin_ok(&route.label, started.elapsed());
                return Ok(response);
            }
            Err(e) => {
                shared.metrics.origin_error(&route.label, e.label());
                let next = e.try_next_target();
                last_error = Some(e);
                if !next {
                    break;
                }
            }
        }
    }
    Err(last_error.unwrap_or_else(|| OriginError {
        kind: crate::origin::OriginErrorKind::Connect,
        message: "route has no targets".into(),
    }))
}

pub(crate) fn connect_target(target: &Target) -> ConnectTarget {
    let (host, port) = match &target.kind {
        TargetKind::Addr { host, port } => (
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            *port,
        ),
        TargetKind::Test => (String::new(), 0),
    };
    let tls = target.ssl.then(|| {
        target
            .host
            .as_deref()
            .map(|h| {
                h.rsplit_once(':')
                    .filter(|(_, p)| p.parse::<u16>().is_ok())
                    .map_or(h, |(n, _)| n)
            })
            .unwrap_or(&host)
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string()
    });
    ConnectTarget {
        host,
        port,
        tls,
        insecure: target.insecure,
    }
}
