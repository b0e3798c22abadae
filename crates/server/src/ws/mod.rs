//! WebSocket clients. A client's WebSocket reaches the origin either as WebSocket-over-HTTP
//! ([`woh`], routes whose target is `over_http`, and the demo origin) or as a WebSocket of its
//! own ([`passthrough`]). Either way the client side is the same: RFC 6455 by tungstenite
//! ([`client`]), published `ws-message` items written by the broker's fan-out through the
//! shared sink ([`subscriber`]), and the origin's messages interpreted by the GRIP rules
//! ([`grip`]) once it has enabled the `grip` extension. [`open`] opens the origin's side
//! before the client is switched; [`session`] runs a connection.

mod base_headers;
pub(crate) mod client;
mod grip;
mod open;
mod passthrough;
mod recover;
mod session;
mod subscriber;
mod woh;

use std::future::Future;
use std::sync::Arc;

use bytes::BytesMut;
use gripway_proto::http1::{write_response_head, RequestHead, Version};
use gripway_proto::ws_deflate::negotiate;
use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;
use tokio::io::AsyncWriteExt;

use crate::now_unix;
use crate::origin::headers::{origin_headers, HeaderContext};
use crate::routing::RouteEntry;
use crate::transport::{write_simple, ClientConn};
use crate::Shared;

#[cfg(test)]
pub(crate) use session::size_probe::sizes as session_sizes;
#[cfg(test)]
pub(crate) use subscriber::WsSub as WsSubState;
#[cfg(test)]
pub(crate) use woh::WohLink as WohLinkState;

/// A client's WebSocket handshake, accepted by the proxy, ready to be connected.
pub(crate) struct WsPlan {
    pub(crate) route: Arc<RouteEntry>,
    pub(crate) head: RequestHead,
    pub(crate) trusted: bool,
    /// `Sec-WebSocket-Accept` for the client.
    pub(crate) accept: String,
}

/// Checks a client's handshake (RFC 6455 §4.2.1); the `Sec-WebSocket-Accept` value, or the
/// status and reason to refuse it with.
pub(crate) fn check_handshake(head: &RequestHead) -> Result<String, (u16, &'static str)> {
    if head.method != http::Method::GET || head.version != Version::Http11 {
        return Err((400, "A WebSocket handshake is a GET over HTTP/1.1.\n"));
    }
    let h = &head.headers;
    if h.get("sec-websocket-version").map(HeaderValue::as_bytes) != Some(b"13") {
        return Err((426, "Sec-WebSocket-Version 13 is required.\n"));
    }
    let connection_upgrade = h.get_all(http::header::CONNECTION).iter().any(|v| {
        v.to_str()
            .unwrap_or("")
            .split(',')
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
    });
    if !connection_upgrade {
        return Err((400, "A WebSocket handshake needs Connection: Upgrade.\n"));
    }
    let Some(key) = h.get("sec-websocket-key") else {
        return Err((400, "Sec-WebSocket-Key is missing.\n"));
    };
    let key = key.as_bytes().trim_ascii();
    // a base64-encoded 16-byte value
    if key.len() != 24 || !key.ends_with(b"==") {
        return Err((
            400,
            "Sec-WebSocket-Key is not a base64-encoded 16-byte value.\n",
        ));
    }
    Ok(tungstenite::handshake::derive_accept_key(key))
}

/// Serves the WebSocket connection until it ends. The handshake's future is boxed and owns
/// the connection until the session takes it, so the long-lived future keeps neither the
/// handshake's state nor the arguments (an async fn's future keeps its arguments throughout).
pub(crate) fn run(
    shared: Arc<Shared>,
    conn: ClientConn,
    plan: Box<WsPlan>,
) -> impl Future<Output = ()> + Send {
    let handshake = Box::pin(handshake(shared.clone(), conn, plan));
    async move {
        let Some((conn, route, opened, deflate)) = handshake.await else {
            return;
        };
        session::run(&shared, conn, route, opened, deflate).await;
    }
}

/// Connects the origin and answers the client's handshake; None if the connection is over.
async fn handshake(
    shared: Arc<Shared>,
    mut conn: ClientConn,
    plan: Box<WsPlan>,
) -> Option<(ClientConn, Arc<RouteEntry>, open::Opened, bool)> {
    let shared = &shared;
    let route = plan.route.clone();
    let path = route
        .route
        .origin_path(plan.head.path_and_query())
        .into_owned();
    let over_http =
        route.route.targets.first().is_some_and(|t| {
            t.over_http || matches!(t.kind, gripway_proto::routes::TargetKind::Test)
        });
    let first_target = route.route.targets.first()?;
    let mut headers = origin_headers(
        &plan.head.headers,
        &HeaderContext {
            config: &shared.config.proxy,
            route: &route,
            target: first_target,
            peer: conn.peer.ip(),
            tls: conn.sock.is_tls(),
            trusted: plan.trusted,
            now_unix: now_unix(),
            client_host: Some(plan.head.host()),
        },
    );
    for name in [
        "sec-websocket-extensions",
        "accept",
        "connection-id",
        "content-type",
    ] {
        headers.remove(name);
    }
    let meta_headers: Vec<HeaderName> = headers
        .keys()
        .filter(|n| n.as_str().starts_with("meta-"))
        .cloned()
        .collect();
    for name in meta_headers {
        headers.remove(name);
    }
    if !route.route.no_grip && over_http {
        headers.insert("sec-websocket-extensions", HeaderValue::from_static("grip"));
    }
    let opened = if over_http {
        // boxed: the origin request's state is freed once the connection is open
        Box::pin(open::open_over_http(shared, &route, path, headers)).await
    } else {
        for name in ["sec-websocket-key", "sec-websocket-version", "grip-feature"] {
            headers.remove(name);
        }
        Box::pin(open::open_passthrough(shared, &route, &path, headers)).await
    };
    let mut opened = match opened {
        Ok(o) => o,
        Err(refusal) => {
            refusal.write(&mut conn.sock).await;
            return None;
        }
    };
    // the origin's header values are slices of its connection's read buffer: take them out
    // so that nothing of that buffer outlives the handshake
    let mut switching = std::mem::take(&mut opened.client_headers);
    // permessage-deflate, when enabled and offered (no context takeover either way, so an
    // idle connection keeps no compression state)
    let deflate = shared.config.websocket.permessage_deflate
        && match negotiate(
            plan.head
                .headers
                .get_all("sec-websocket-extensions")
                .iter()
                .map(HeaderValue::as_bytes),
        ) {
            Some((_, value)) => match HeaderValue::from_str(&value) {
                Ok(v) => {
                    switching.insert("sec-websocket-extensions", v);
                    true
                }
                Err(_) => false,
            },
            None => false,
        };
    if conn.sock.is_h2() {
        // RFC 8441: a 200 opens the stream for frames (no Upgrade, no accept key)
        let stall = shared.config.proxy.write_timeout;
        let started = crate::transport::write_head(
            &mut conn.sock,
            Version::Http11,
            200,
            None,
            &switching,
            false,
            stall,
        )
        .await;
        return started.is_ok().then_some((conn, route, opened, deflate));
    }
    switching.insert(http::header::UPGRADE, HeaderValue::from_static("websocket"));
    switching.insert(
        http::header::CONNECTION,
        HeaderValue::from_static("Upgrade"),
    );
    if let Ok(v) = HeaderValue::from_str(&plan.accept) {
        switching.insert("sec-websocket-accept", v);
    }
    let mut out = BytesMut::with_capacity(256);
    write_response_head(&mut out, Version::Http11, 101, None, &switching);
    drop(switching);
    if conn.sock.write_all(&out).await.is_err() || conn.sock.flush().await.is_err() {
        return None;
    }
    Some((conn, route, opened, deflate))
}

/// Headers of an origin's handshake answer the client must not see.
pub(crate) fn client_visible(origin: &HeaderMap) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in origin {
        let n = name.as_str();
        let hidden = n.starts_with("grip-")
            || n.starts_with("set-meta-")
            || matches!(
                n,
                "content-length"
                    | "content-type"
                    | "keep-alive-interval"
                    | "sec-websocket-extensions"
                    | "sec-websocket-accept"
                    | "connection"
                    | "upgrade"
                    | "transfer-encoding"
                    | "keep-alive"
                    | "content-bytes-accepted"
            );
        if !hidden {
            h.append(name.clone(), value.clone());
        }
    }
    h
}

/// The origin refused the connection: what the client gets instead of `101`.
pub(crate) struct Refused {
    pub(crate) status: u16,
    pub(crate) reason: Option<String>,
    pub(crate) headers: HeaderMap,
    pub(crate) body: bytes::Bytes,
}

impl Refused {
    fn origin_failed(debug: bool, why: &str) -> Refused {
        let body = if debug {
            format!("Error while proxying to origin: {why}\n")
        } else {
            "Error while proxying to origin.\n".to_string()
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain"),
        );
        Refused {
            status: 502,
            reason: None,
            headers,
            body: body.into(),
        }
    }

    async fn write(self, sock: &mut crate::transport::ClientStream) {
        if self.headers.is_empty() && self.body.is_empty() {
            let _ = write_simple(sock, Version::Http11, self.status, "", false).await;
            return;
        }
        let mut headers = client_visible(&self.headers);
        if let Some(ct) = self.headers.get(http::header::CONTENT_TYPE) {
            headers.insert(http::header::CONTENT_TYPE, ct.clone());
        }
        headers.insert(
            http::header::CONTENT_LENGTH,
            HeaderValue::from(self.body.len()),
        );
        if sock.is_h2() {
            let _ = crate::transport::respond_full(
                sock,
                Version::Http11,
                self.status,
                self.reason.as_deref(),
                &headers,
                Some(&self.body),
                std::time::Duration::from_secs(10),
            )
            .await;
            return;
        }
        headers.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        let mut out = BytesMut::with_capacity(256 + self.body.len());
        write_response_head(
            &mut out,
            Version::Http11,
            self.status,
            self.reason.as_deref(),
            &headers,
        );
        out.extend_from_slice(&self.body);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            sock.write_all(&out).await?;
            sock.flush().await
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gripway_proto::http1::parse_request_head;

    fn head(raw: &str) -> RequestHead {
        parse_request_head(raw.as_bytes()).unwrap().unwrap().0
    }

    #[test]
    fn handshake_checks() {
        let ok = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
                  Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        assert_eq!(
            check_handshake(&head(ok)).unwrap(),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(
            check_handshake(&head(&ok.replace("13", "8")))
                .unwrap_err()
                .0,
            426
        );
        assert_eq!(
            check_handshake(&head(&ok.replace("GET", "POST")))
                .unwrap_err()
                .0,
            400
        );
        assert_eq!(
            check_handshake(&head(&ok.replace("dGhlIHNhbXBsZSBub25jZQ==", "short")))
                .unwrap_err()
                .0,
            400
        );
        assert_eq!(
            check_handshake(&head(&ok.replace("keep-alive, Upgrade", "keep-alive")))
                .unwrap_err()
                .0,
            400
        );
    }
}
