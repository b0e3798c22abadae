//! One client request through the proxy: find its route, read its body, send it to the
//! route's targets in order until one answers, then either relay the answer or, when it
//! carries GRIP instructions, prepare the hold.
//!
//! Every refusal is a [`Refusal`](crate::error::Refusal) that says whose fault it is: the
//! client's (400, 403, 413), the origin's (502/504), or ours (a request no route takes: 502).

mod cors;

use std::sync::Arc;

use gripway_proto::http1::RequestHead;
use gripway_proto::instruct::{is_grip_response, parse_instruct, InstructLimits};
use gripway_proto::routes::RouteProto;
use gripway_proto::sig::verify_grip_sig;

use crate::error::Refusal;
use crate::hold::{self, HoldPlan};
use crate::now_unix;
use crate::origin::forward::{forward, ProxiedRequest};
use crate::origin::{OriginError, OriginResponse};
use crate::relay;
use crate::transport::{answer_refusal, read_body, write_simple, BodyProblem, ClientConn};
use crate::Shared;

pub(crate) use cors::add_cors_headers;

/// What the connection does after a request.
pub(crate) enum Next {
    /// Read the next request.
    KeepAlive,
    /// Close the connection.
    Close,
    /// Hold the connection for published messages.
    Hold(Box<HoldPlan>),
    /// Switch the connection to a WebSocket.
    WebSocket(Box<crate::ws::WsPlan>),
    /// Switch the connection to MQTT over WebSocket.
    Mqtt(Box<crate::mqtt::MqttWsPlan>),
}

/// Handles one request read from `conn`.
pub(crate) async fn handle(shared: &Arc<Shared>, conn: &mut ClientConn, head: RequestHead) -> Next {
    if head.is_websocket_upgrade() {
        // MQTT over WebSocket is answered here; the origin is asked at its CONNECT
        match crate::mqtt::ws::plan(shared, &head) {
            Some(Ok(plan)) => return Next::Mqtt(plan),
            Some(Err((status, text))) => {
                let refusal = Refusal::client(status, "bad-websocket-handshake", text);
                return refuse(shared, conn, &head, refusal).await;
            }
            None => {}
        }
    }
    let routes = shared.routes.current();
    let proto = if head.is_websocket_upgrade() {
        RouteProto::Ws
    } else {
        RouteProto::Http
    };
    let tls = conn.sock.is_tls();
    let Some(route) = routes.find(head.host(), head.path(), proto, tls).cloned() else {
        let refusal = Refusal::internal(502, "no-route", "Route not found\n");
        return refuse(shared, conn, &head, refusal).await;
    };
    drop(routes);
    let trusted = is_trusted(shared, &head);
    if !trusted && crate::origin::headers::names_websocket_events(&head.headers) {
        let refusal = Refusal::client(
            403,
            "websocket-events-from-client",
            "Client not allowed to send WebSocket events directly.\n",
        );
        return refuse(shared, conn, &head, refusal).await;
    }
    if proto == RouteProto::Ws {
        return match crate::ws::check_handshake(&head) {
            Ok(accept) => Next::WebSocket(Box::new(crate::ws::WsPlan {
                route,
                head,
                trusted,
                accept,
            })),
            Err((status, text)) => {
                let refusal = Refusal::client(status, "bad-websocket-handshake", text);
                refuse(shared, conn, &head, refusal).await
            }
        };
    }
    let cfg = &shared.config.proxy;
    let body = match read_body(
        &mut conn.sock,
        &mut conn.buf,
        &head,
        cfg.max_request_body,
        cfg.request_head_timeout,
    )
    .await
    {
        Ok(b) => b,
        Err(problem) => {
            let refusal = match problem {
                BodyProblem::TooLarge => {
                    Refusal::client(413, "request-body-too-large", "Request body too large.\n")
                }
                BodyProblem::Bad(e) => {
                    Refusal::client(400, "bad-request-body", format!("Bad request body: {e}\n"))
                }
                BodyProblem::Gone | BodyProblem::TimedOut => return Next::Close,
            };
            return refuse(shared, conn, &head, refusal).await;
        }
    };
    let request = ProxiedRequest {
        route,
        head,
        body,
        trusted,
        tls,
        grip_last: Vec::new(),
        stale_retries: 0,
    };
    match forward(shared, &request, conn.peer.ip()).await {
        Ok(response) => respond(shared, conn, request, response).await,
        Err(e) => {
            let keep = request.head.keep_alive();
            origin_failed(shared, conn, &request, &e, keep).await
        }
    }
}

/// Sends a held request to the origin again (a long-poll got `hint`) and acts on the answer.
pub(crate) async fn retry(
    shared: &Arc<Shared>,
    conn: &mut ClientConn,
    request: ProxiedRequest,
) -> Next {
    match forward(shared, &request, conn.peer.ip()).await {
        Ok(response) => respond(shared, conn, request, response).await,
        Err(e) => origin_failed(shared, conn, &request, &e, false).await,
    }
}

/// Acts on an origin's response to `request`: relay it, or prepare a hold.
pub(crate) async fn respond(
    shared: &Arc<Shared>,
    conn: &mut ClientConn,
    request: ProxiedRequest,
    mut response: OriginResponse,
) -> Next {
    let grip =
        !request.route.route.no_grip && !request.trusted && is_grip_response(&response.headers);
    let aco = request.route.route.aco;
    if !grip {
        if aco {
            add_cors_headers(&request.head.headers, &mut response.headers);
        }
        return next(relay::relay(shared, conn, &request.head, response).await);
    }
    let limit = shared.config.proxy.max_instruct_body;
    let within = shared.config.proxy.response_timeout;
    let body = match response.body.read_to_end(limit, within).await {
        Ok(Some(b)) => b,
        Ok(None) => {
            return origin_fault(shared, conn, &request, "GRIP instruct response too large").await
        }
        Err(e) => return origin_fault(shared, conn, &request, &e.message).await,
    };
    let limits = InstructLimits {
        max_channels: shared.config.grip.max_channels_per_connection,
        max_body_bytes: limit,
        // history serves what followed a stream's prev-id; without it Pushpin's rule holds
        stream_prev_id_needs_next_link: !shared.broker.history().is_on(),
        ..InstructLimits::default()
    };
    let instruct = match parse_instruct(response.status.as_u16(), &response.headers, &body, &limits)
    {
        Ok(i) => i,
        Err(e) => {
            let reason = format!("Failed to parse accept instructions: {e}");
            return origin_fault(shared, conn, &request, &reason).await;
        }
    };
    if instruct.channels_dropped > 0 {
        tracing::debug!(route = %request.route.label, dropped = instruct.channels_dropped, "too many channels; extra ones ignored");
    }
    let route_subs = request
        .route
        .route
        .targets
        .iter()
        .any(|t| !t.subs.is_empty());
    if instruct.hold.is_some() && instruct.channels.is_empty() && !route_subs {
        // Pushpin would hold such a request forever, subscribed to nothing
        return origin_fault_as(
            shared,
            conn,
            &request,
            "hold-without-channel",
            "Grip-Hold without any channel",
        )
        .await;
    }
    match hold::prepare(&request, conn.peer.ip(), &response, instruct, body) {
        hold::Prepared::Relay(mut relayed) => {
            if aco {
                add_cors_headers(&request.head.headers, &mut relayed.headers);
            }
            next(relay::write_full(shared, conn, &request.head, relayed).await)
        }
        hold::Prepared::Hold(mut plan) => {
            if let Err(e) = hold::filter_initial_body(&mut plan) {
                let reason = format!("filter error in the initial response: {e}");
                return origin_fault_as(shared, conn, &request, "filter-error", &reason).await;
            }
            if aco {
                add_cors_headers(&request.head.headers, &mut plan.response.headers);
            }
            Next::Hold(plan)
        }
    }
}

/// Answers a refused request and closes.
async fn refuse(
    shared: &Shared,
    conn: &mut ClientConn,
    head: &RequestHead,
    refusal: Refusal,
) -> Next {
    answer_refusal(shared, &mut conn.sock, head.version, &refusal, false).await;
    Next::Close
}

/// No target of the route answered: 502, or 504 when the last one timed out; the reason
/// goes in the body in debug mode.
async fn origin_failed(
    shared: &Shared,
    conn: &mut ClientConn,
    request: &ProxiedRequest,
    e: &OriginError,
    keep_alive: bool,
) -> Next {
    let mut refusal = e.refusal();
    refusal.detail = if request.route.debug {
        format!("Error while proxying to origin: {e}\n").into()
    } else {
        "Error while proxying to origin.\n".into()
    };
    shared.metrics.error(&refusal);
    e.refusal().log(&format!("route {}: ", request.route.label));
    let version = request.head.version;
    let _ = write_simple(
        &mut conn.sock,
        version,
        refusal.status,
        &refusal.detail,
        keep_alive,
    )
    .await;
    if keep_alive {
        Next::KeepAlive
    } else {
        Next::Close
    }
}

/// The origin sent something we cannot use: 502, with the reason in debug mode.
async fn origin_fault(
    shared: &Shared,
    conn: &mut ClientConn,
    request: &ProxiedRequest,
    reason: &str,
) -> Next {
    origin_fault_as(shared, conn, request, "bad-instruct", reason).await
}

/// [`origin_fault`] counted under `label`.
async fn origin_fault_as(
    shared: &Shared,
    conn: &mut ClientConn,
    request: &ProxiedRequest,
    label: &'static str,
    reason: &str,
) -> Next {
    shared.metrics.origin_error(&request.route.label, label);
    let refusal = Refusal::origin(false, label, reason.to_string());
    shared.metrics.error(&refusal);
    refusal.log(&format!("route {}: ", request.route.label));
    let body = if request.route.debug {
        format!("{reason}\n")
    } else {
        "Error while proxying to origin.\n".into()
    };
    let _ = write_simple(&mut conn.sock, request.head.version, 502, &body, false).await;
    Next::Close
}

fn is_trusted(shared: &Shared, head: &RequestHead) -> bool {
    let Some(key) = &shared.upstream_key else {
        return false;
    };
    head.headers
        .get("grip-sig")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|token| verify_grip_sig(token, key, now_unix()))
}

/// The connection's next step after a relayed response.
fn next(keep_alive: bool) -> Next {
    if keep_alive {
        Next::KeepAlive
    } else {
        Next::Close
    }
}
