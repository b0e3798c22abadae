//! Automatic cross-origin headers for routes with `aco` (Pushpin's `auto_cross_origin`): a
//! browser on another origin may then read every response, streamed or held. Each header is
//! added only when the origin did not set it. (JSON-P, the other half of Pushpin's `aco`, is
//! not implemented.)

use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;

/// Response headers a browser exposes without being told (CORS "safelisted").
const SIMPLE: &[&str] = &[
    "cache-control",
    "content-language",
    "content-length",
    "content-type",
    "expires",
    "last-modified",
    "pragma",
];

/// Adds the CORS headers for a response to a request with headers `request`.
pub(crate) fn add_cors_headers(request: &HeaderMap, response: &mut HeaderMap) {
    let set = |response: &mut HeaderMap, name: &'static str, value: HeaderValue| {
        if !response.contains_key(name) {
            response.insert(HeaderName::from_static(name), value);
        }
    };
    let exposed: Vec<&str> = response
        .keys()
        .map(HeaderName::as_str)
        .filter(|n| {
            !SIMPLE.contains(n) && !n.starts_with("access-control-") && !n.starts_with("grip-")
        })
        .collect();
    let exposed = (!exposed.is_empty())
        .then(|| HeaderValue::from_str(&exposed.join(", ")).ok())
        .flatten();
    let methods = request
        .get("access-control-request-method")
        .cloned()
        .unwrap_or(HeaderValue::from_static(
            "OPTIONS, HEAD, GET, POST, PUT, DELETE",
        ));
    set(response, "access-control-allow-methods", methods);
    if let Some(h) = request.get("access-control-request-headers") {
        set(response, "access-control-allow-headers", h.clone());
    }
    if let Some(e) = exposed {
        set(response, "access-control-expose-headers", e);
    }
    set(
        response,
        "access-control-allow-credentials",
        HeaderValue::from_static("true"),
    );
    let origin = request
        .get("origin")
        .cloned()
        .unwrap_or(HeaderValue::from_static("*"));
    set(response, "access-control-allow-origin", origin);
    set(
        response,
        "access-control-max-age",
        HeaderValue::from_static("3600"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_missing_headers_only() {
        let mut req = HeaderMap::new();
        req.insert("origin", HeaderValue::from_static("https://app.example"));
        req.insert(
            "access-control-request-headers",
            HeaderValue::from_static("x-token"),
        );
        let mut resp = HeaderMap::new();
        resp.insert("content-type", HeaderValue::from_static("text/plain"));
        resp.insert("x-custom", HeaderValue::from_static("1"));
        resp.insert("access-control-max-age", HeaderValue::from_static("60"));
        add_cors_headers(&req, &mut resp);
        assert_eq!(resp["access-control-allow-origin"], "https://app.example");
        assert_eq!(resp["access-control-allow-headers"], "x-token");
        assert_eq!(resp["access-control-expose-headers"], "x-custom");
        assert_eq!(resp["access-control-allow-credentials"], "true");
        assert_eq!(
            resp["access-control-max-age"], "60",
            "the origin's value stays"
        );
        assert_eq!(
            resp["access-control-allow-methods"],
            "OPTIONS, HEAD, GET, POST, PUT, DELETE"
        );
    }
}
