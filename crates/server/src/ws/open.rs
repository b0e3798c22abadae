//! Opening a WebSocket connection's origin side before the client is switched: `OPEN` to a
//! WebSocket-over-HTTP origin, or a WebSocket to a pass-through origin (each of the route's
//! targets in turn). The origin either accepts, and the result ([`Opened`]) carries what the
//! client is told and what the session starts with, or refuses, and the client gets the
//! origin's answer (or a 502) instead of the switch.

use std::sync::Arc;

use gripway_proto::woh::EventKind;
use gripway_proto::ws_control::GripExtension;
use http::HeaderMap;

use super::base_headers::BaseHeaders;
use super::passthrough::{Connected, WsLink};
use super::woh::{Answer, Reply, WohLink};
use super::{client_visible, Refused};
use crate::routing::RouteEntry;
use crate::Shared;

/// The origin's side of a connection.
pub(super) enum Link {
    Http(Box<WohLink>),
    Ws(Box<WsLink>),
    /// Detached, or the origin is gone: only published messages reach the client.
    None,
}

/// A connection the origin accepted, before the client has been told.
pub(crate) struct Opened {
    pub(crate) client_headers: HeaderMap,
    pub(super) link: Link,
    pub(super) grip: Option<GripExtension>,
    /// What came with the origin's acceptance, to act on once the client is switched.
    pub(super) first: Option<Box<Reply>>,
}

/// Opens the connection to an `over_http` origin with `OPEN`.
pub(crate) async fn open_over_http(
    shared: &Arc<Shared>,
    route: &Arc<RouteEntry>,
    path: String,
    headers: HeaderMap,
) -> Result<Opened, Refused> {
    // kept compactly for the life of the connection; a signature is minted for each request,
    // so the handshake's is not kept
    let fresh_sig = !route.route.no_grip && route.signer.is_some();
    let base = BaseHeaders::new(&headers, |n| fresh_sig && n == "grip-sig");
    drop(headers);
    let opened = WohLink::open(shared.clone(), route.clone(), path.into(), base, &[]).await;
    let (link, answer) = match opened {
        Ok(x) => x,
        Err(e) => {
            tracing::info!(route = %route.label, "WebSocket origin failed: {e}");
            return Err(Refused::origin_failed(route.debug, &e.message));
        }
    };
    let reply = match answer {
        Answer::Events(reply) => reply,
        Answer::Refused {
            status,
            reason,
            headers,
            body,
        } => {
            return Err(Refused {
                status: status.as_u16(),
                reason,
                headers,
                body,
            })
        }
    };
    let opens = reply
        .events
        .first()
        .is_some_and(|e| e.kind == EventKind::Open)
        || (reply.events.is_empty() && reply.keep_alive.is_some());
    if !opens {
        return Err(Refused::origin_failed(
            route.debug,
            "the origin's answer to OPEN did not start with OPEN",
        ));
    }
    Ok(Opened {
        client_headers: client_visible(&reply.headers),
        grip: reply.grip.clone().filter(|_| !route.route.no_grip),
        link: Link::Http(Box::new(link)),
        first: Some(reply),
    })
}

/// Opens a WebSocket to the origin (pass-through), trying the route's targets in order.
pub(crate) async fn open_passthrough(
    shared: &Arc<Shared>,
    route: &Arc<RouteEntry>,
    path: &str,
    headers: HeaderMap,
) -> Result<Opened, Refused> {
    let max = shared.config.websocket.max_message_bytes;
    let mut last = String::from("route has no targets");
    for target in &route.route.targets {
        let limit = shared.config.websocket.origin_queue_bytes;
        match WsLink::connect(shared, target, path, headers.clone(), max, limit).await {
            Ok(Connected::Open {
                link,
                headers,
                grip,
            }) => {
                return Ok(Opened {
                    client_headers: client_visible(&headers),
                    grip: grip.filter(|_| !route.route.no_grip),
                    link: Link::Ws(link),
                    first: None,
                })
            }
            Ok(Connected::Refused(r)) => {
                return Err(Refused {
                    status: r.status.as_u16(),
                    reason: None,
                    headers: r.headers,
                    body: r.body,
                })
            }
            Err(e) if e.try_next_target() => last = e.message,
            Err(e) => {
                last = e.message;
                break;
            }
        }
    }
    tracing::info!(route = %route.label, "WebSocket origin failed: {last}");
    Err(Refused::origin_failed(route.debug, &last))
}
