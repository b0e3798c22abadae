//! What the client sees of a GRIP response's own headers and status: the relayed response is
//! the initial response of a stream hold, the timeout response of a response hold, or the
//! whole response when there is no hold.
//!
//! Invariant: no `grip-*` header, hop-by-hop header or framing header of the origin ever
//! reaches the client through [`Instruct::client_headers`]; the server sets its own framing.

use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::Instruct;
use crate::params::trim_bytes;

/// Headers never relayed to the client from a GRIP response, besides every `grip-*` header and
/// any header named in the origin's `Connection` header. Hop-by-hop headers (RFC 9110 §7.6.1)
/// belong to the origin connection; `content-length` is recomputed by the server (streams are
/// chunked); `content-encoding` is dropped as Pushpin does, because published content appended
/// to or replacing the body is never encoded — the server therefore should remove
/// `Accept-Encoding` from GRIP-enabled requests so origins send identity bodies.
pub const DROPPED_RESPONSE_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "content-encoding",
];

impl Instruct {
    /// Headers the client sees on the relayed response (initial stream response, timeout
    /// response, or a no-hold relay). The source is the JSON `response.headers` when the
    /// instruction has a [`Instruct::response`], else the origin's headers. Removed from either:
    /// every `grip-*` header, the [`DROPPED_RESPONSE_HEADERS`], and headers named in the
    /// source's `Connection` header. Then, for origin headers only, a `Grip-Expose-Headers`
    /// list keeps just the headers it names (JSON headers were chosen explicitly).
    pub fn client_headers(&self, origin: &http::HeaderMap) -> http::HeaderMap {
        let mut out = HeaderMap::new();
        match &self.response {
            Some(response) => {
                let connection: Vec<&str> = response
                    .headers
                    .iter()
                    .filter(|(name, _)| name.eq_ignore_ascii_case("connection"))
                    .map(|(_, value)| value.as_str())
                    .collect();
                for (name, value) in &response.headers {
                    let (Ok(name), Ok(value)) = (
                        HeaderName::from_bytes(name.as_bytes()),
                        HeaderValue::from_str(value),
                    ) else {
                        continue;
                    };
                    let listed = connection.iter().any(|v| lists_token(v.as_bytes(), &name));
                    if !listed && is_relayed(&name) {
                        out.append(name, value);
                    }
                }
            }
            None => {
                for (name, value) in origin {
                    let listed = origin
                        .get_all(http::header::CONNECTION)
                        .iter()
                        .any(|v| lists_token(v.as_bytes(), name));
                    if listed || !is_relayed(name) {
                        continue;
                    }
                    if let Some(exposed) = &self.expose_headers {
                        if !exposed.iter().any(|e| e == name.as_str()) {
                            continue;
                        }
                    }
                    out.append(name.clone(), value.clone());
                }
            }
        }
        out
    }

    /// Status code and reason the client sees on the relayed response: the JSON response's,
    /// else the `Grip-Status` override, else the origin's status with its standard reason.
    pub fn relayed_status(&self, origin_status: u16) -> (u16, Option<&str>) {
        if let Some(response) = &self.response {
            (response.code, response.reason.as_deref())
        } else if let Some(status) = &self.status {
            (status.code, status.reason.as_deref())
        } else {
            (origin_status, None)
        }
    }
}

/// False for `grip-*` headers and [`DROPPED_RESPONSE_HEADERS`].
fn is_relayed(name: &HeaderName) -> bool {
    let name = name.as_str();
    !name.starts_with("grip-") && !DROPPED_RESPONSE_HEADERS.contains(&name)
}

/// True when the comma-separated `connection_value` lists `name` (case-insensitively).
fn lists_token(connection_value: &[u8], name: &HeaderName) -> bool {
    connection_value
        .split(|&b| b == b',')
        .any(|token| trim_bytes(token).eq_ignore_ascii_case(name.as_str().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{header_map, parse_headers};
    use super::super::*;

    fn names(map: &HeaderMap) -> Vec<String> {
        map.iter()
            .map(|(n, v)| format!("{}: {}", n, v.to_str().unwrap()))
            .collect()
    }

    #[test]
    fn client_headers_strip_grip_and_hop_by_hop() {
        let origin = header_map(&[
            ("content-type", "text/plain"),
            ("grip-hold", "stream"),
            ("grip-channel", "a"),
            ("connection", "keep-alive, X-Private"),
            ("keep-alive", "timeout=5"),
            ("x-private", "secret"),
            ("transfer-encoding", "chunked"),
            ("content-length", "12"),
            ("content-encoding", "gzip"),
            ("te", "trailers"),
            ("trailer", "x-sum"),
            ("upgrade", "h2c"),
            ("proxy-connection", "close"),
            ("proxy-authenticate", "Basic"),
            ("x-keep", "1"),
            ("x-keep", "2"),
        ]);
        let parsed = parse_instruct(200, &origin, b"", &InstructLimits::default()).unwrap();
        assert_eq!(
            names(&parsed.client_headers(&origin)),
            vec!["content-type: text/plain", "x-keep: 1", "x-keep: 2"]
        );
    }

    #[test]
    fn client_headers_apply_expose_whitelist() {
        let origin = header_map(&[
            ("content-type", "text/plain"),
            ("x-foo", "1"),
            ("x-bar", "2"),
            ("content-length", "5"),
            ("grip-expose-headers", "X-Foo, Content-Length, Grip-Hold"),
            ("grip-hold", "response"),
        ]);
        let parsed = parse_instruct(200, &origin, b"", &InstructLimits::default()).unwrap();
        assert_eq!(names(&parsed.client_headers(&origin)), vec!["x-foo: 1"]);
    }

    #[test]
    fn client_headers_use_json_response_headers() {
        let origin = header_map(&[
            ("content-type", "application/grip-instruct"),
            ("x-origin", "1"),
            ("grip-expose-headers", "x-origin"),
        ]);
        let body = br#"{"response": {"headers": [["X-A", "1"], ["Content-Length", "3"],
            ["Grip-Hold", "stream"], ["Connection", "x-b"], ["X-B", "2"], ["x-a", "3"]]}}"#;
        let parsed = parse_instruct(200, &origin, body, &InstructLimits::default()).unwrap();
        assert_eq!(
            names(&parsed.client_headers(&origin)),
            vec!["x-a: 1", "x-a: 3"]
        );
    }

    #[test]
    fn relayed_status_precedence() {
        let plain = parse_headers(&[("grip-hold", "response")]).unwrap();
        assert_eq!(plain.relayed_status(201), (201, None));
        let overridden = parse_headers(&[("grip-status", "404 Gone Fishing")]).unwrap();
        assert_eq!(overridden.relayed_status(200), (404, Some("Gone Fishing")));
        let map = header_map(&[
            ("content-type", "application/grip-instruct"),
            ("grip-status", "404"),
        ]);
        let json = parse_instruct(
            200,
            &map,
            br#"{"response": {"code": 503, "reason": "Busy"}}"#,
            &InstructLimits::default(),
        )
        .unwrap();
        assert_eq!(json.relayed_status(200), (503, Some("Busy")));
    }
}
