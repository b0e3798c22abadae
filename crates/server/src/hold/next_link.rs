//! Origin-assisted recovery, as Pushpin does it: resolving `Grip-Link` URIs and fetching a
//! `rel=next` link (reference §1.7, §2.3).
//!
//! A next link is resolved against the URI it came with (the client's request URI, later the
//! previous next link). One on the client's own host goes through the client's route, like a
//! client request ("prefer-internal" in Pushpin): same targets, same Grip-Sig, same path
//! rewriting. Any other absolute link is fetched directly, signed with the route's key.
//! Every fetch is a `GET` with `Grip-Last: <channel>; last-id=<id>` for each channel that
//! has a prev-id (channel names as the origin gave them, without the route's prefix).
//!
//! Bounds: a link longer than [`MAX_LINK_LEN`] is not followed; at most
//! `grip.max_next_link_fetches` fetches run at once node-wide (more wait their turn). This
//! module only fetches; what happens to the answer is the caller's (the stream splice in
//! `link_stream`, and the history code on a gap).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use gripway_proto::http1::{BodyFraming, RequestHead, Version};
use http::header::{HeaderValue, HOST};
use http::{HeaderMap, Method};

use crate::now_unix;
use crate::origin::forward::{forward, ProxiedRequest};
use crate::origin::headers::GRIP_FEATURES;
use crate::origin::{ConnectTarget, OriginError, OriginErrorKind, OriginRequest, OriginResponse};
use crate::routing::RouteEntry;
use crate::Shared;

/// Longest link URI followed (after resolution); longer ones are ignored.
pub(crate) const MAX_LINK_LEN: usize = 8 * 1024;

/// What a next-link fetch needs to know about the held request it belongs to.
#[derive(Clone)]
pub(crate) struct LinkBase {
    pub(crate) route: Arc<RouteEntry>,
    /// `http://host` (`https://` over TLS) of the client's request: links there go through
    /// the route.
    pub(crate) origin: String,
    /// The client's Host header.
    pub(crate) host: String,
    pub(crate) trusted: bool,
    pub(crate) peer: IpAddr,
    /// The client's connection is TLS.
    pub(crate) client_tls: bool,
}

impl LinkBase {
    /// The base for `request`, and the client's request URI (absolute) to resolve against.
    pub(crate) fn of(request: &ProxiedRequest, peer: IpAddr) -> (LinkBase, String) {
        let host = request.head.host().to_string();
        let scheme = if request.tls { "https" } else { "http" };
        let origin = format!("{scheme}://{host}");
        let uri = format!("{origin}{}", request.head.path_and_query());
        let base = LinkBase {
            route: request.route.clone(),
            origin,
            host,
            trusted: request.trusted,
            peer,
            client_tls: request.tls,
        };
        (base, uri)
    }
}

/// `reference` resolved against the absolute URI `base` (RFC 3986 §5.2, enough for links:
/// absolute, scheme-relative, absolute-path, relative-path and query-only references).
/// None for a result that is not http(s) or is too long.
pub(crate) fn resolve(base: &str, reference: &str) -> Option<String> {
    let out = if let Some(scheme_end) = scheme_len(reference) {
        let _ = scheme_end;
        reference.to_string()
    } else {
        let (scheme, rest) = base.split_once("://")?;
        let (authority, base_path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let base_path_only = base_path.split(['?', '#']).next().unwrap_or("/");
        if let Some(net) = reference.strip_prefix("//") {
            format!("{scheme}://{net}")
        } else if reference.starts_with('/') {
            format!("{scheme}://{authority}{}", remove_dots(reference))
        } else if reference.starts_with('?') {
            format!("{scheme}://{authority}{base_path_only}{reference}")
        } else {
            let dir = &base_path_only[..base_path_only.rfind('/').map_or(0, |i| i + 1)];
            let merged = format!("{}{reference}", if dir.is_empty() { "/" } else { dir });
            format!("{scheme}://{authority}{}", remove_dots(&merged))
        }
    };
    let lower = out.to_ascii_lowercase();
    let ok = (lower.starts_with("http://") || lower.starts_with("https://"))
        && out.len() <= MAX_LINK_LEN;
    ok.then_some(out)
}

/// Length of the scheme if `s` starts with `scheme:`.
fn scheme_len(s: &str) -> Option<usize> {
    let colon = s.find(':')?;
    let scheme = &s[..colon];
    let valid = scheme
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.');
    valid.then_some(colon)
}

/// Removes `.` and `..` segments from a path (the query is left alone).
fn remove_dots(path_and_query: &str) -> String {
    let (path, query) = match path_and_query.find(['?', '#']) {
        Some(i) => path_and_query.split_at(i),
        None => (path_and_query, ""),
    };
    if !path.split('/').any(|s| s == "." || s == "..") {
        return path_and_query.to_string();
    }
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    let mut trailing = false;
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "." => trailing = i == last,
            ".." => {
                out.pop();
                trailing = i == last;
            }
            s => {
                out.push(s);
                trailing = false;
            }
        }
    }
    let mut p = format!("/{}", out.join("/"));
    if trailing && !p.ends_with('/') {
        p.push('/');
    }
    p + query
}

/// Splits an absolute http(s) URI into (tls, authority, path and query).
fn split_uri(uri: &str) -> Option<(bool, &str, &str)> {
    let (scheme, rest) = uri.split_once("://")?;
    let tls = scheme.eq_ignore_ascii_case("https");
    let rest = rest.split('#').next().unwrap_or(rest);
    Some(match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (tls, &rest[..i], &rest[i..]),
        Some(i) => (tls, &rest[..i], &rest[i..]),
        None => (tls, rest, "/"),
    })
}

/// `GET`s the absolute link `uri` for a hold of `base`, with `Grip-Last` for `grip_last`
/// ((channel without prefix, last id)). A non-2xx answer is an error, as in Pushpin.
pub(crate) async fn fetch_next(
    shared: &Shared,
    base: &LinkBase,
    uri: &str,
    grip_last: &[(String, String)],
) -> Result<OriginResponse, OriginError> {
    let _permit = shared.next_links.acquire().await;
    let response = send_link(shared, base, Method::GET, uri, grip_last).await?;
    if !response.status.is_success() {
        return Err(OriginError {
            kind: OriginErrorKind::Broken,
            message: format!("next link {uri} answered {}", response.status),
        });
    }
    Ok(response)
}

/// Sends `method` with an empty body to the absolute link `uri` of a hold of `base`.
pub(crate) async fn send_link(
    shared: &Shared,
    base: &LinkBase,
    method: Method,
    uri: &str,
    grip_last: &[(String, String)],
) -> Result<OriginResponse, OriginError> {
    let (tls, authority, path) = split_uri(uri).ok_or_else(|| OriginError {
        kind: OriginErrorKind::Connect,
        message: format!("next link {uri} is not an http(s) URI"),
    })?;
    let path = &if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    let internal = tls == base.client_tls
        && uri.len() > base.origin.len()
        && uri[..base.origin.len()].eq_ignore_ascii_case(&base.origin);
    let response = if internal {
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&base.host) {
            headers.insert(HOST, v);
        }
        let request = ProxiedRequest {
            route: base.route.clone(),
            head: RequestHead {
                method: method.clone(),
                target: path.to_string(),
                version: Version::Http11,
                headers,
                framing: BodyFraming::None,
            },
            body: Bytes::new(),
            trusted: base.trusted,
            tls: base.client_tls,
            grip_last: grip_last.to_vec(),
            stale_retries: 0,
        };
        forward(shared, &request, base.peer).await
    } else {
        fetch_external(shared, base, method, tls, authority, path, grip_last).await
    };
    response
}

/// A link to another service: straight to it, signed with the route's key.
async fn fetch_external(
    shared: &Shared,
    base: &LinkBase,
    method: Method,
    tls: bool,
    authority: &str,
    path: &str,
    grip_last: &[(String, String)],
) -> Result<OriginResponse, OriginError> {
    let (host, port) =
        split_authority(authority, if tls { 443 } else { 80 }).ok_or_else(|| OriginError {
            kind: OriginErrorKind::Connect,
            message: format!("next link authority {authority} is not host[:port]"),
        })?;
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(authority) {
        headers.insert(HOST, v);
    }
    if let Some(signer) = &base.route.signer {
        if let Ok(v) = HeaderValue::from_str(&signer.token(now_unix())) {
            headers.insert("grip-sig", v);
        }
    }
    headers.insert("grip-feature", HeaderValue::from_static(GRIP_FEATURES));
    append_grip_last(&mut headers, grip_last);
    let target = ConnectTarget {
        tls: tls.then(|| host.clone()),
        host,
        port,
        insecure: false,
    };
    let request = OriginRequest {
        method,
        path_and_query: path.to_string(),
        headers,
        body: Bytes::new(),
    };
    let started = Instant::now();
    let result = shared.origin.send(&target, &request).await;
    match &result {
        Ok(_) => shared
            .metrics
            .origin_ok(&base.route.label, started.elapsed()),
        Err(e) => shared.metrics.origin_error(&base.route.label, e.label()),
    }
    result
}

/// `Grip-Last: <channel>; last-id=<id>`, one header per channel.
pub(crate) fn append_grip_last(headers: &mut HeaderMap, grip_last: &[(String, String)]) {
    for (channel, id) in grip_last {
        if let Ok(v) = HeaderValue::from_str(&format!("{channel}; last-id={id}")) {
            headers.append("grip-last", v);
        }
    }
}

/// `host[:port]` (IPv6 in brackets) with `default_port` when none is given.
fn split_authority(authority: &str, default_port: u16) -> Option<(String, u16)> {
    let authority = authority.rsplit('@').next()?;
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        return Some((host.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host.to_string(), port.parse().ok()?)),
        None if !authority.is_empty() => Some((authority.to_string(), default_port)),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolution() {
        let base = "http://example.com/a/b/c?x=1";
        let r = |s| resolve(base, s);
        assert_eq!(
            r("/next?after=3").unwrap(),
            "http://example.com/next?after=3"
        );
        assert_eq!(r("d?y").unwrap(), "http://example.com/a/b/d?y");
        assert_eq!(r("../d").unwrap(), "http://example.com/a/d");
        assert_eq!(r("./").unwrap(), "http://example.com/a/b/");
        assert_eq!(r("?q=2").unwrap(), "http://example.com/a/b/c?q=2");
        assert_eq!(r("//other:81/p").unwrap(), "http://other:81/p");
        assert_eq!(r("https://o.example/x").unwrap(), "https://o.example/x");
        assert_eq!(r("/a/./b/../c").unwrap(), "http://example.com/a/c");
        assert!(r("ftp://x/y").is_none());
        assert!(r("mailto:a@b").is_none());
        assert!(r(&format!("/{}", "x".repeat(MAX_LINK_LEN))).is_none());
    }

    #[test]
    fn uri_and_authority_parts() {
        assert_eq!(
            split_uri("https://h:8443/p?q").unwrap(),
            (true, "h:8443", "/p?q")
        );
        assert_eq!(split_uri("http://h?q").unwrap(), (false, "h", "?q"));
        assert_eq!(split_uri("http://h").unwrap(), (false, "h", "/"));
        assert_eq!(split_authority("h:81", 80), Some(("h".into(), 81)));
        assert_eq!(split_authority("h", 80), Some(("h".into(), 80)));
        assert_eq!(split_authority("[::1]:9", 80), Some(("::1".into(), 9)));
        assert_eq!(split_authority("[::1]", 443), Some(("::1".into(), 443)));
        assert_eq!(split_authority("h:x", 80), None);
    }
}
