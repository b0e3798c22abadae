//! The headers of a request as it goes to the origin: the client's headers minus what is
//! hop-by-hop or forgeable, plus what the origin must be told (who the client is, that the
//! request came through Gripway, and a signature proving it).
//!
//! Security invariant: unless the client proved itself a trusted upstream (its own Grip-Sig
//! verified with `upstream_key`), no `Grip-*` header the client sent reaches the origin, and
//! neither does any header WebSocket-over-HTTP gives meaning to (`Connection-Id`, `Meta-*`,
//! `Content-Bytes-Replayed`, `Content-Bytes-Accepted`, `Keep-Alive-Interval`), on every route.

use std::net::IpAddr;

use gripway_proto::routes::{Target, TargetKind};
use http::header::{HeaderName, HeaderValue, CONNECTION, HOST};
use http::HeaderMap;

use crate::config::{ForwardedFor, ForwardedProto, ProxyConfig};
use crate::routing::RouteEntry;

/// The GRIP features this proxy implements, announced to origins in `Grip-Feature`.
pub(crate) const GRIP_FEATURES: &str = "status, link:next, link:gone, filter:skip-self, \
     filter:skip-users, filter:require-sub, filter:build-id, filter:var-subst";

/// The prefix Pushpin gives to copies of original headers (route option `orig_headers`).
const ORIG_HEADER_MARK: &str = "eb9bf0f5-";

/// Headers that describe one hop only and are never forwarded (RFC 9110 §7.6.1), plus
/// `Accept-Encoding` (an encoded body could not have published content appended) and
/// `Expect` (Gripway answers `100-continue` itself).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "accept-encoding",
    "expect",
    "content-length",
];

/// Headers that WebSocket-over-HTTP gives meaning to, besides `Meta-*`: a client that sends
/// them could speak for a connection of its choosing, so they never reach an origin from a
/// client (the WebSocket-over-HTTP link sets its own).
const WEBSOCKET_EVENT_HEADERS: &[&str] = &[
    "connection-id",
    "content-bytes-replayed",
    "content-bytes-accepted",
    "keep-alive-interval",
];

/// True for a header that WebSocket-over-HTTP gives meaning to (`Connection-Id`, `Meta-*`,
/// `Content-Bytes-Replayed`, `Content-Bytes-Accepted`, `Keep-Alive-Interval`).
pub(crate) fn is_websocket_event_header(name: &HeaderName) -> bool {
    let n = name.as_str();
    n.starts_with("meta-") || WEBSOCKET_EVENT_HEADERS.contains(&n)
}

/// True when any `Content-Type` the client sent names `application/websocket-events`: such a
/// request would look to the origin like WebSocket-over-HTTP events from the proxy.
pub(crate) fn names_websocket_events(headers: &HeaderMap) -> bool {
    headers
        .get_all(http::header::CONTENT_TYPE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .any(|t| {
            let media = t.split(|&b| b == b';').next().unwrap_or_default();
            String::from_utf8_lossy(media)
                .trim()
                .eq_ignore_ascii_case("application/websocket-events")
        })
}

/// True for a header name in the `Grip-` namespace.
pub(crate) fn is_grip_header(name: &HeaderName) -> bool {
    name.as_str().len() >= 5 && name.as_str()[..5].eq_ignore_ascii_case("grip-")
}

/// Removes hop-by-hop headers, including any the `Connection` header names.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
}

/// What the origin request needs to know about the client and the route.
pub(crate) struct HeaderContext<'a> {
    pub(crate) config: &'a ProxyConfig,
    pub(crate) route: &'a RouteEntry,
    pub(crate) target: &'a Target,
    pub(crate) peer: IpAddr,
    pub(crate) tls: bool,
    pub(crate) trusted: bool,
    pub(crate) now_unix: u64,
    /// The host the client named (Host header or absolute-form target), if any.
    pub(crate) client_host: Option<&'a str>,
}

/// Builds the origin request headers from the client's.
pub(crate) fn origin_headers(client: &HeaderMap, cx: &HeaderContext<'_>) -> HeaderMap {
    let mut h = client.clone();
    strip_hop_by_hop(&mut h);
    // Pushpin marks copies of original headers with this prefix for upstream proxies
    // (`orig_headers`); a client must not be able to smuggle such copies in
    let marked: Vec<HeaderName> = h
        .keys()
        .filter(|n| n.as_str().starts_with(ORIG_HEADER_MARK))
        .cloned()
        .collect();
    for name in marked {
        h.remove(name);
    }
    if !cx.trusted {
        let grip: Vec<HeaderName> = h
            .keys()
            .filter(|n| is_grip_header(n) || is_websocket_event_header(n))
            .cloned()
            .collect();
        for name in grip {
            h.remove(name);
        }
        if !cx.route.route.no_grip {
            if let Some(signer) = &cx.route.signer {
                if let Ok(v) = HeaderValue::from_str(&signer.token(cx.now_unix)) {
                    h.insert("grip-sig", v);
                }
            }
            h.insert("grip-feature", HeaderValue::from_static(GRIP_FEATURES));
        }
    }
    match cx.config.x_forwarded_proto {
        ForwardedProto::Off => {}
        mode => {
            h.remove("x-forwarded-proto");
            h.remove("x-forwarded-protocol");
            if cx.tls {
                h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
                if mode == ForwardedProto::Both {
                    h.insert("x-forwarded-protocol", HeaderValue::from_static("https"));
                }
            }
        }
    }
    let rule = if cx.trusted {
        cx.config.x_forwarded_for_trusted
    } else {
        cx.config.x_forwarded_for
    };
    forwarded_for(&mut h, rule, cx.peer);
    for (name, value) in &cx.route.route.headers {
        let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
            continue;
        };
        if value.is_empty() {
            h.remove(&name);
        } else if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    }
    let host = cx
        .target
        .host
        .as_deref()
        .or(cx.route.route.as_host.as_deref());
    if let Some(host) = host {
        if let Ok(v) = HeaderValue::from_str(host) {
            h.insert(HOST, v);
        }
    }
    if !h.contains_key(HOST) {
        // an HTTP/1.0 client may send no Host; HTTP/1.1 to the origin requires one
        let fallback = cx
            .client_host
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .or_else(|| match &cx.target.kind {
                TargetKind::Addr { host, port } if host.contains(':') => {
                    Some(format!("[{host}]:{port}"))
                }
                TargetKind::Addr { host, port } => Some(format!("{host}:{port}")),
                TargetKind::Test => None,
            });
        if let Some(v) = fallback.and_then(|f| HeaderValue::from_str(&f).ok()) {
            h.insert(HOST, v);
        }
    }
    h
}

fn forwarded_for(h: &mut HeaderMap, rule: ForwardedFor, peer: IpAddr) {
    let keep = match rule {
        ForwardedFor::Off => return,
        ForwardedFor::Append => usize::MAX,
        ForwardedFor::Truncate(n) => n,
    };
    let mut list: Vec<String> = h
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if list.len() > keep {
        list.drain(..list.len() - keep);
    }
    list.push(peer.to_string());
    if let Ok(v) = HeaderValue::from_str(&list.join(", ")) {
        h.insert("x-forwarded-for", v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn entry(line: &str) -> RouteEntry {
        let route = gripway_proto::routes::parse_route_line(line, 1)
            .unwrap()
            .unwrap();
        RouteEntry {
            route,
            signer: None,
            label: Arc::from("t"),
            debug: false,
        }
    }

    fn client() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("example.com"));
        h.insert("grip-sig", HeaderValue::from_static("forged"));
        h.insert("grip-channel", HeaderValue::from_static("secret"));
        h.insert("connection", HeaderValue::from_static("keep-alive, x-hop"));
        h.insert("x-hop", HeaderValue::from_static("1"));
        h.insert("accept-encoding", HeaderValue::from_static("gzip"));
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("10.0.0.1, 10.0.0.2"),
        );
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        h.insert("cookie", HeaderValue::from_static("a=b"));
        h
    }

    fn build(route: &RouteEntry, trusted: bool, config: &ProxyConfig) -> HeaderMap {
        let cx = HeaderContext {
            config,
            route,
            target: &route.route.targets[0],
            peer: "192.0.2.7".parse().unwrap(),
            tls: false,
            trusted,
            now_unix: 0,
            client_host: None,
        };
        origin_headers(&client(), &cx)
    }

    #[test]
    fn strips_forged_grip_and_hop_by_hop() {
        let route = entry("* 127.0.0.1:80");
        let h = build(&route, false, &ProxyConfig::default());
        assert_eq!(h.get("grip-channel"), None);
        assert_eq!(h["grip-feature"], GRIP_FEATURES);
        assert_eq!(
            h.get("grip-sig"),
            None,
            "no signer: no Grip-Sig, and never the forged one"
        );
        assert_eq!(h.get("x-hop"), None);
        assert_eq!(h.get("connection"), None);
        assert_eq!(h.get("accept-encoding"), None);
        assert_eq!(h.get("x-forwarded-proto"), None, "spoofed proto removed");
        assert_eq!(h["cookie"], "a=b");
        assert_eq!(h["host"], "example.com");
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 10.0.0.2, 192.0.2.7");
    }

    #[test]
    fn trusted_upstream_keeps_grip_headers() {
        let route = entry("* 127.0.0.1:80");
        let h = build(&route, true, &ProxyConfig::default());
        assert_eq!(h["grip-channel"], "secret");
        assert_eq!(h.get("grip-feature"), None);
    }

    #[test]
    fn forwarded_for_rules_and_route_headers() {
        let route = entry(
            r#"*,header=X-Env:prod,header=Cookie:,as_host=internal 127.0.0.1:80,host=backend:8080"#,
        );
        let mut config = ProxyConfig {
            x_forwarded_for: ForwardedFor::Truncate(1),
            ..ProxyConfig::default()
        };
        let h = build(&route, false, &config);
        assert_eq!(h["x-forwarded-for"], "10.0.0.2, 192.0.2.7");
        assert_eq!(h["x-env"], "prod");
        assert_eq!(h.get("cookie"), None);
        assert_eq!(h["host"], "backend:8080", "target host= wins over as_host");
        config.x_forwarded_for = ForwardedFor::Off;
        assert_eq!(
            build(&route, false, &config)["x-forwarded-for"],
            "10.0.0.1, 10.0.0.2"
        );
    }
}
