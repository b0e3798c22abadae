//! HTTP/1.x message heads as Gripway reads them from clients and writes them back: request
//! head parsing (on `httparse`) with the framing checks a proxy needs against request
//! smuggling, and response head serialization.
//!
//! Invariants: a parsed head's body framing is unambiguous (`Content-Length` and
//! `Transfer-Encoding` together, conflicting lengths, a transfer coding other than
//! `chunked`, or `Transfer-Encoding` on HTTP/1.0 are refused); every line of an accepted head
//! ends in CRLF (a bare LF, which `httparse` tolerates, is refused); header values never
//! contain CR or LF when written.
//!
//! Reading a head is linear in its size however it arrives: [`HeadScan`] looks at each byte
//! once to find the blank line that ends the head (and to refuse a bare LF or a head over the
//! limit at once), and the head is parsed only once that line is there.

use bytes::BytesMut;
use http::header::{HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, Method};

/// Most headers accepted in one request head.
pub const MAX_HEADERS: usize = 128;

/// HTTP version of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0: no chunked responses; keep-alive only when asked for.
    Http10,
    /// HTTP/1.1.
    Http11,
}

/// How a request's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
}

/// A parsed request head.
#[derive(Debug, Clone)]
pub struct RequestHead {
    /// The method.
    pub method: Method,
    /// The request target as sent (origin-form path and query, or absolute-form).
    pub target: String,
    /// The version.
    pub version: Version,
    /// The headers, names lower-cased, repeated headers kept in order.
    pub headers: HeaderMap,
    /// How the body is delimited.
    pub framing: BodyFraming,
}

impl RequestHead {
    /// The path and query (absolute-form targets reduced to their path).
    pub fn path_and_query(&self) -> &str {
        let t = self.target.as_str();
        if t.starts_with('/') {
            return t;
        }
        // absolute-form: scheme://authority/path
        match t.find("://") {
            Some(i) => match t[i + 3..].find('/') {
                Some(j) => &t[i + 3 + j..],
                None => "/",
            },
            None => t,
        }
    }

    /// The path without the query.
    pub fn path(&self) -> &str {
        let pq = self.path_and_query();
        pq.split('?').next().unwrap_or(pq)
    }

    /// The Host header, or the authority of an absolute-form target.
    pub fn host(&self) -> &str {
        if let Some(h) = self
            .headers
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
        {
            return h;
        }
        let t = self.target.as_str();
        t.find("://")
            .map(|i| &t[i + 3..])
            .map(|rest| rest.split('/').next().unwrap_or(rest))
            .unwrap_or("")
    }

    /// True if the client wants the connection kept open after this exchange.
    pub fn keep_alive(&self) -> bool {
        let has = |token: &str| {
            self.headers.get_all(CONNECTION).iter().any(|v| {
                v.to_str()
                    .unwrap_or("")
                    .split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case(token))
            })
        };
        match self.version {
            Version::Http11 => !has("close"),
            Version::Http10 => has("keep-alive"),
        }
    }

    /// True if this is a WebSocket upgrade request.
    pub fn is_websocket_upgrade(&self) -> bool {
        self.headers
            .get(http::header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("websocket"))
            })
    }

    /// True if the client sent `Expect: 100-continue`.
    pub fn expects_continue(&self) -> bool {
        self.headers
            .get(http::header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
    }
}

/// Why a request head was refused; always the client's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// Not HTTP/1.x syntax.
    #[error("malformed request head: {0}")]
    Malformed(String),
    /// More than [`MAX_HEADERS`] headers.
    #[error("too many headers")]
    TooManyHeaders,
    /// Framing headers that contradict each other or that we cannot decode.
    #[error("{0}")]
    BadFraming(&'static str),
    /// A line ended in LF without CR.
    #[error("a line ends in a bare LF")]
    BareLf,
    /// The head is longer than the limit.
    #[error("request head too large")]
    TooLarge,
}

/// Finds where a request head ends, looking at each byte once however the head is dripped in.
///
/// Keep one per head being read; [`HeadScan::scan`] is called with the whole buffer after
/// every read and resumes where it stopped.
#[derive(Debug, Default, Clone, Copy)]
pub struct HeadScan {
    scanned: usize,
    /// Bytes of empty lines before the request line (RFC 9112 §2.2 lets a server skip them).
    lead: usize,
}

impl HeadScan {
    /// Scans the bytes of `buf` not seen before. `Ok(Some(n))`: the head is `buf[..n]`, its
    /// blank line included, and `n <= max`. `Ok(None)`: read more. Refuses a bare LF and a
    /// head longer than `max` as soon as either can be seen.
    pub fn scan(&mut self, buf: &[u8], max: usize) -> Result<Option<usize>, HeadError> {
        let end = buf.len().min(max);
        for i in self.scanned..end {
            if buf[i] != b'\n' {
                continue;
            }
            if i == 0 || buf[i - 1] != b'\r' {
                return Err(HeadError::BareLf);
            }
            if i == self.lead + 1 {
                // an empty line before the request line ends nothing
                self.lead = i + 1;
            } else if i >= self.lead + 3 && buf[i - 2] == b'\n' {
                return Ok(Some(i + 1));
            }
        }
        self.scanned = end;
        if buf.len() >= max {
            return Err(HeadError::TooLarge);
        }
        Ok(None)
    }
}

/// Parses a request head from the start of `buf`. `Ok(None)`: incomplete, read more.
/// On success returns the head and how many bytes of `buf` it took.
pub fn parse_request_head(buf: &[u8]) -> Result<Option<(RequestHead, usize)>, HeadError> {
    // uninitialised: a head of a few headers does not pay for clearing room for 128
    let mut raw = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let consumed = match req.parse_with_uninit_headers(buf, &mut raw) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyHeaders),
        Err(e) => return Err(HeadError::Malformed(e.to_string())),
    };
    if find_bare_lf(&buf[..consumed]).is_some() {
        return Err(HeadError::BareLf);
    }
    let method = Method::from_bytes(req.method.unwrap_or("").as_bytes())
        .map_err(|_| HeadError::Malformed("invalid method".into()))?;
    let version = match req.version {
        Some(0) => Version::Http10,
        _ => Version::Http11,
    };
    let target = req.path.unwrap_or("/").to_string();
    let mut headers = HeaderMap::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| HeadError::Malformed(format!("invalid header name '{}'", h.name)))?;
        let value = HeaderValue::from_bytes(h.value)
            .map_err(|_| HeadError::Malformed(format!("invalid value for header '{}'", h.name)))?;
        headers.append(name, value);
    }
    let framing = body_framing(&headers, version)?;
    Ok(Some((
        RequestHead {
            method,
            target,
            version,
            headers,
            framing,
        },
        consumed,
    )))
}

/// The first LF in `bytes` not preceded by CR, if any.
fn find_bare_lf(bytes: &[u8]) -> Option<usize> {
    memchr::memchr_iter(b'\n', bytes).find(|&i| i == 0 || bytes[i - 1] != b'\r')
}

fn body_framing(headers: &HeaderMap, version: Version) -> Result<BodyFraming, HeadError> {
    let te = headers.get_all(TRANSFER_ENCODING);
    let cl = headers.get_all(CONTENT_LENGTH);
    if te.iter().next().is_some() {
        if version == Version::Http10 {
            // HTTP/1.0 has no transfer codings: a proxy that reads one where the next hop
            // does not is how requests are smuggled (RFC 9112 §6.1)
            return Err(HeadError::BadFraming(
                "Transfer-Encoding in an HTTP/1.0 request",
            ));
        }
        if cl.iter().next().is_some() {
            return Err(HeadError::BadFraming(
                "both Content-Length and Transfer-Encoding sent",
            ));
        }
        let codings: Vec<String> = te
            .iter()
            .flat_map(|v| v.to_str().unwrap_or("?").split(','))
            .map(|t| t.trim().to_ascii_lowercase())
            .filter(|t| !t.is_empty())
            .collect();
        return if codings.len() == 1 && codings[0] == "chunked" {
            Ok(BodyFraming::Chunked)
        } else {
            Err(HeadError::BadFraming("unsupported Transfer-Encoding"))
        };
    }
    let mut length: Option<u64> = None;
    for v in cl {
        for part in v.to_str().unwrap_or("x").split(',') {
            let n: u64 = part
                .trim()
                .parse()
                .map_err(|_| HeadError::BadFraming("invalid Content-Length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(HeadError::BadFraming("conflicting Content-Length values"));
            }
            length = Some(n);
        }
    }
    Ok(match length {
        Some(0) | None => BodyFraming::None,
        Some(n) => BodyFraming::Length(n),
    })
}

/// Writes a status line and headers (and the blank line) to `out`. Header values were
/// validated by `http` and cannot contain CR or LF. A `reason` containing CR/LF is replaced
/// by the canonical one.
pub fn write_response_head(
    out: &mut BytesMut,
    version: Version,
    status: u16,
    reason: Option<&str>,
    headers: &HeaderMap,
) {
    let canonical = reason_phrase(status);
    let reason = reason
        .filter(|r| !r.bytes().any(|b| b == b'\r' || b == b'\n'))
        .unwrap_or(canonical);
    out.extend_from_slice(match version {
        Version::Http10 => b"HTTP/1.0 ",
        Version::Http11 => b"HTTP/1.1 ",
    });
    out.extend_from_slice(status.to_string().as_bytes());
    out.extend_from_slice(b" ");
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        write_header(out, name.as_str(), value.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// The standard reason phrase for a status code (RFC 9110's, as Pushpin sends them), or
/// `Undefined Reason` for a code with none.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        102 => "Processing",
        103 => "Early Hints",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        207 => "Multi-Status",
        208 => "Already Reported",
        226 => "IM Used",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        305 => "Use Proxy",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        423 => "Locked",
        424 => "Failed Dependency",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        506 => "Variant Also Negotiates",
        507 => "Insufficient Storage",
        508 => "Loop Detected",
        510 => "Not Extended",
        511 => "Network Authentication Required",
        _ => "Undefined Reason",
    }
}

/// Writes one `Name: value\r\n` line, with the name in the usual capitalisation.
pub fn write_header(out: &mut BytesMut, name: &str, value: &[u8]) {
    let mut upper = true;
    for b in name.bytes() {
        out.extend_from_slice(&[if upper { b.to_ascii_uppercase() } else { b }]);
        upper = b == b'-';
    }
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(s: &str) -> Result<Option<(RequestHead, usize)>, HeadError> {
        parse_request_head(s.as_bytes())
    }

    #[test]
    fn parses_a_request() {
        let raw = "GET /a/b?c=1 HTTP/1.1\r\nHost: Example.com:7999\r\nX-A: 1\r\nX-A: 2\r\n\r\nrest";
        let (head, n) = parse(raw).unwrap().unwrap();
        assert_eq!(n, raw.len() - 4);
        assert_eq!(head.method, Method::GET);
        assert_eq!(head.path(), "/a/b");
        assert_eq!(head.path_and_query(), "/a/b?c=1");
        assert_eq!(head.host(), "Example.com:7999");
        assert_eq!(head.headers.get_all("x-a").iter().count(), 2);
        assert_eq!(head.framing, BodyFraming::None);
        assert!(head.keep_alive());
        assert!(parse("GET / HTTP/1.1\r\nHost: x\r\n").unwrap().is_none());
    }

    #[test]
    fn absolute_form_and_versions() {
        let (head, _) = parse("GET http://h:1/p?q HTTP/1.0\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(head.path_and_query(), "/p?q");
        assert_eq!(head.host(), "h:1");
        assert_eq!(head.version, Version::Http10);
        assert!(!head.keep_alive());
        let (head, _) = parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(head.keep_alive());
        let (head, _) = parse("GET / HTTP/1.1\r\nConnection: foo, close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!head.keep_alive());
    }

    #[test]
    fn framing() {
        let f = |s: &str| parse(s).map(|r| r.unwrap().0.framing);
        assert_eq!(
            f("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n"),
            Ok(BodyFraming::Length(5))
        );
        assert_eq!(
            f("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"),
            Ok(BodyFraming::Length(5))
        );
        assert_eq!(
            f("POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n"),
            Ok(BodyFraming::Chunked)
        );
        assert!(f("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n").is_err());
        assert!(
            f("POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n")
                .is_err()
        );
        assert!(f("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n").is_err());
        assert!(f("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n").is_err());
        assert_eq!(
            f("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(HeadError::BadFraming(
                "Transfer-Encoding in an HTTP/1.0 request"
            ))
        );
    }

    #[test]
    fn bare_lf_is_refused() {
        assert_eq!(
            parse("GET / HTTP/1.1\nHost: x\n\n").unwrap_err(),
            HeadError::BareLf
        );
        assert_eq!(
            parse("GET / HTTP/1.1\r\nHost: x\nX: y\r\n\r\n").unwrap_err(),
            HeadError::BareLf
        );
        let mut scan = HeadScan::default();
        assert_eq!(
            scan.scan(b"GET / HTTP/1.1\r\nHost: x\n", 1024),
            Err(HeadError::BareLf)
        );
    }

    #[test]
    fn scan_finds_the_end_however_the_head_arrives() {
        let raw = b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\nGET /next";
        let end = raw.len() - b"GET /next".len();
        for step in 1..raw.len() {
            let mut scan = HeadScan::default();
            let mut found = None;
            let mut len = 0;
            while found.is_none() && len < raw.len() {
                len = (len + step).min(raw.len());
                found = scan.scan(&raw[..len], 1024).unwrap();
            }
            assert_eq!(found, Some(end), "step {step}");
        }
        assert!(parse_request_head(&raw[..end]).unwrap().is_some());
        let raw = b"\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        assert_eq!(HeadScan::default().scan(raw, 1024), Ok(Some(raw.len())));
        assert_eq!(parse_request_head(raw).unwrap().unwrap().1, raw.len());
    }

    #[test]
    fn scan_enforces_the_limit_exactly() {
        let head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let n = head.len();
        // arriving in one read, with more behind it
        let mut more = head.to_vec();
        more.extend_from_slice(&[b'x'; 4096]);
        assert_eq!(HeadScan::default().scan(&more, n), Ok(Some(n)));
        assert_eq!(
            HeadScan::default().scan(&more, n - 1),
            Err(HeadError::TooLarge)
        );
        assert_eq!(
            HeadScan::default().scan(&head[..n - 1], n - 1),
            Err(HeadError::TooLarge)
        );
        assert_eq!(HeadScan::default().scan(&head[..n - 2], n - 1), Ok(None));
    }

    #[test]
    fn scan_looks_at_each_byte_once() {
        // a one-byte drip of a head at the limit costs a linear number of steps: the scan
        // position only moves forward
        let max = 32 * 1024;
        let mut buf = b"GET / HTTP/1.1\r\nX: ".to_vec();
        let mut scan = HeadScan::default();
        while buf.len() < max - 1 {
            assert_eq!(scan.scan(&buf, max), Ok(None));
            assert_eq!(scan.scanned, buf.len());
            buf.push(b'a');
        }
    }

    #[test]
    fn websocket_and_expect() {
        let (head, _) = parse(
            "GET /ws HTTP/1.1\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\nExpect: 100-continue\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert!(head.is_websocket_upgrade());
        assert!(head.expects_continue());
    }

    #[test]
    fn writes_heads() {
        let mut h = HeaderMap::new();
        h.append("content-type", HeaderValue::from_static("text/plain"));
        h.append("x-multi", HeaderValue::from_static("1"));
        h.append("x-multi", HeaderValue::from_static("2"));
        let mut out = BytesMut::new();
        write_response_head(&mut out, Version::Http11, 404, Some("Nope\r\nX: y"), &h);
        assert_eq!(
            &out[..],
            b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nX-Multi: 1\r\nX-Multi: 2\r\n\r\n"
        );
        let mut out = BytesMut::new();
        write_response_head(
            &mut out,
            Version::Http10,
            299,
            Some("Custom"),
            &HeaderMap::new(),
        );
        assert_eq!(&out[..], b"HTTP/1.0 299 Custom\r\n\r\n");
    }

    proptest! {
        #[test]
        fn never_panics(input in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(Some((head, n))) = parse_request_head(&input) {
                prop_assert!(n <= input.len());
                let _ = (head.path(), head.host(), head.keep_alive());
            }
        }
    }
}
