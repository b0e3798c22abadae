//! GRIP response instructions (reference §1): deciding whether an origin's response is a GRIP
//! instruction ([`is_grip_response`], on every proxied response, allocation-free), turning it
//! into an [`Instruct`] ([`parse_instruct`], once per held request), and computing what the
//! client sees of the origin's own response ([`Instruct::client_headers`]).
//!
//! `headers.rs` reads the `Grip-*` headers, `json.rs` overlays an `application/grip-instruct`
//! body on top of them (JSON wins where both speak; JSON channels are *added*, as in Pushpin),
//! `relay.rs` filters the headers of the response relayed to the client.
//!
//! Invariants of a parsed [`Instruct`] (whatever the origin sent):
//! * `timeout_secs` is within [`MIN_TIMEOUT_SECS`]..=[`MAX_TIMEOUT_SECS`]; keep-alive and
//!   next-link timeouts are within their own `MIN_*` and [`MAX_TIMEOUT_SECS`]. Absurdly large
//!   values are capped at [`MAX_TIMEOUT_SECS`] (one day) rather than rejected.
//! * `channels` holds at most `max_channels` distinct, non-empty names free of control
//!   characters, each with at most `max_filters_per_channel` filters; a repeated name replaces
//!   the earlier entry in place (Pushpin keys subscriptions by name); names beyond the limit are
//!   counted in `channels_dropped`.
//! * A stream hold whose channels carry `prev-id` has a `next_link` (unless the caller keeps
//!   history and says so in [`InstructLimits`]).
//! * `keep_alive.data` is never empty; `status`/`response` codes are 200–999 (a 1xx status
//!   cannot be a final response and a code below 100 cannot be written on HTTP/1.1); reasons
//!   and JSON response headers are valid for the wire.
//!
//! Decisions where Pushpin is odd (reference §10):
//! * Header-form channel names are the raw first token, trimmed but *not* unquoted, so
//!   `Grip-Channel: "a"` subscribes to `"a"` with the quotes; such names cannot contain `,`
//!   or `;` outside quotes. The JSON form accepts any name.
//! * A JSON `keep-alive` carries no mode; unless a `Grip-Keep-Alive` header set one, the
//!   keep-alive runs in [`KeepAliveMode::Interval`] (Pushpin's effective behaviour). A JSON
//!   keep-alive whose content is empty means no keep-alive (Pushpin would send nothing).
//! * `Grip-Link ...; timeout=0` would make Pushpin re-poll the next link continuously; it is
//!   raised to [`MIN_NEXT_LINK_TIMEOUT_SECS`].
//! * Empty `Grip-Channel`/`Grip-Set-Meta` elements and unterminated quotes are errors rather
//!   than silently ignored.

mod error;
mod headers;
mod json;
mod relay;

pub use error::InstructError;
pub use relay::DROPPED_RESPONSE_HEADERS;

use bytes::Bytes;
use http::header::{HeaderMap, CONTENT_TYPE};

use crate::params::trim_bytes;

/// Response-hold timeout when the origin gives none.
pub const DEFAULT_TIMEOUT_SECS: u32 = 55;
/// Smallest response-hold timeout; smaller values are raised to it.
pub const MIN_TIMEOUT_SECS: u32 = 5;
/// Largest timeout of any kind (one day); larger values are lowered to it.
pub const MAX_TIMEOUT_SECS: u32 = 86_400;
/// Keep-alive period when `Grip-Keep-Alive` (or JSON `keep-alive`) gives no timeout.
pub const DEFAULT_KEEP_ALIVE_TIMEOUT_SECS: u32 = 55;
/// Smallest keep-alive period; smaller values (0) are raised to it.
pub const MIN_KEEP_ALIVE_TIMEOUT_SECS: u32 = 1;
/// Next-link recovery-poll timeout when `Grip-Link` gives none.
pub const DEFAULT_NEXT_LINK_TIMEOUT_SECS: u32 = 120;
/// Smallest next-link timeout; `timeout=0` (continuous polling in Pushpin) is raised to it.
pub const MIN_NEXT_LINK_TIMEOUT_SECS: u32 = 1;
/// Default for [`InstructLimits::max_channels`] (Pushpin's `connection_subscription_max`).
pub const DEFAULT_MAX_CHANNELS: usize = 20;
/// Default for [`InstructLimits::max_filters_per_channel`] (`MESSAGEFILTERSTACK_SIZE_MAX`).
pub const DEFAULT_MAX_FILTERS_PER_CHANNEL: usize = 5;
/// Default for [`InstructLimits::max_body_bytes`] (`MAX_ACCEPT_RESPONSE_BODY`).
pub const DEFAULT_MAX_BODY_BYTES: usize = 100_000;
/// The media type of the JSON instruction form.
pub const INSTRUCT_CONTENT_TYPE: &str = "application/grip-instruct";

/// Bounds applied while parsing instructions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstructLimits {
    /// Channels kept per request; more are dropped and counted (default 20).
    pub max_channels: usize,
    /// Filters allowed per channel; more is an error (default 5).
    pub max_filters_per_channel: usize,
    /// Largest `application/grip-instruct` body accepted (default 100,000). The server bounds
    /// the buffered body of other GRIP responses itself.
    pub max_body_bytes: usize,
    /// A stream hold whose channel carries `prev-id` needs a `Grip-Link rel=next` (Pushpin's
    /// rule, default true). A proxy that keeps history itself serves what followed the
    /// `prev-id` from there and needs no next link.
    pub stream_prev_id_needs_next_link: bool,
}

impl Default for InstructLimits {
    fn default() -> Self {
        InstructLimits {
            max_channels: DEFAULT_MAX_CHANNELS,
            max_filters_per_channel: DEFAULT_MAX_FILTERS_PER_CHANNEL,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            stream_prev_id_needs_next_link: true,
        }
    }
}

/// How the client request is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldMode {
    /// Long-poll: one response, either published or the timeout response.
    Response,
    /// The origin's response is sent now and published content is appended to it.
    Stream,
}

/// One channel subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelSub {
    /// The channel name, without the route prefix (the server adds it).
    pub name: String,
    /// ID of the last message the origin already reflected (reliability, reference §2.4).
    pub prev_id: Option<String>,
    /// Filter names in order; unknown names are kept here and ignored by the filter stage.
    pub filters: Vec<String>,
}

/// Whether keep-alives are timed from the last write or at a fixed period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepAliveMode {
    /// The timer restarts whenever content is written to the stream.
    Idle,
    /// Fixed period regardless of traffic.
    Interval,
}

/// Data written to a held stream when it has been quiet (used by stream holds only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeepAlive {
    /// The bytes to write; never empty.
    pub data: Bytes,
    /// The period in seconds.
    pub timeout_secs: u32,
    /// How the period is measured.
    pub mode: KeepAliveMode,
}

/// `Grip-Status`: the status the client sees instead of the origin's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusOverride {
    /// Status code, 200–999.
    pub code: u16,
    /// Reason phrase; `None` means the standard one for the code.
    pub reason: Option<String>,
}

/// `Grip-Link; rel=next`: where to fetch the continuation of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextLink {
    /// The URI as given (absolute, or relative to the request URI: the server resolves it).
    pub uri: String,
    /// Recovery-poll timeout in seconds.
    pub timeout_secs: u32,
}

/// The response given in an `application/grip-instruct` body (`"response"`), or the empty 200
/// response such a body implies when it has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstructResponse {
    /// Status code, 200–999 (JSON `code`, else `Grip-Status`, else 200).
    pub code: u16,
    /// Reason phrase; `None` means the standard one for the code.
    pub reason: Option<String>,
    /// Headers in order; names and values are valid for the wire.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Bytes,
}

/// Everything an origin's response asks the proxy to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruct {
    /// How to hold the request; `None` relays the response (maybe following a next link).
    pub hold: Option<HoldMode>,
    /// Channels to subscribe to, at most `max_channels`.
    pub channels: Vec<ChannelSub>,
    /// Distinct channel names beyond `max_channels` that were dropped (the server logs it).
    pub channels_dropped: usize,
    /// Response-hold timeout in seconds (default 55, at least 5).
    pub timeout_secs: u32,
    /// Stream keep-alive, if any.
    pub keep_alive: Option<KeepAlive>,
    /// `Grip-Status` override for the relayed response.
    pub status: Option<StatusOverride>,
    /// `Grip-Expose-Headers`: lower-cased names; when set, only these origin headers are relayed.
    pub expose_headers: Option<Vec<String>>,
    /// `Grip-Link; rel=next`.
    pub next_link: Option<NextLink>,
    /// `Grip-Link; rel=gone`: URI to `POST` when the held client goes away.
    pub gone_link: Option<String>,
    /// Subscription metadata (`Grip-Set-Meta`, JSON `hold.meta`); names unique, in first-seen order.
    pub meta: Vec<(String, String)>,
    /// With `application/grip-instruct` content: the response to relay instead of the origin's.
    pub response: Option<InstructResponse>,
}

/// True when the origin's response carries GRIP instructions: its `Content-Type` (before any
/// `;`) is `application/grip-instruct` (any case), or a header name starts with `grip-`.
/// Does not allocate.
pub fn is_grip_response(headers: &HeaderMap) -> bool {
    is_instruct_content(headers)
        || headers
            .keys()
            .any(|name| name.as_str().starts_with("grip-"))
}

/// True when the first `Content-Type` is `application/grip-instruct`.
fn is_instruct_content(headers: &HeaderMap) -> bool {
    headers.get(CONTENT_TYPE).is_some_and(|value| {
        let bytes = value.as_bytes();
        let media_type = bytes.split(|&b| b == b';').next().unwrap_or_default();
        trim_bytes(media_type).eq_ignore_ascii_case(INSTRUCT_CONTENT_TYPE.as_bytes())
    })
}

/// Reads an origin's response as GRIP instructions: the `Grip-*` headers first, then, for
/// `application/grip-instruct` content (which requires status 200), the JSON body on top.
pub fn parse_instruct(
    status: u16,
    headers: &http::HeaderMap,
    body: &[u8],
    limits: &InstructLimits,
) -> Result<Instruct, InstructError> {
    let mut draft = Draft::new(limits);
    headers::read_headers(headers, &mut draft)?;
    if is_instruct_content(headers) {
        if status != 200 {
            return Err(InstructError::InstructStatus { status });
        }
        if body.len() > limits.max_body_bytes {
            return Err(InstructError::BodyTooLarge {
                len: body.len(),
                max: limits.max_body_bytes,
            });
        }
        json::read_json(body, &mut draft)?;
    }
    draft.finish(limits.stream_prev_id_needs_next_link)
}

/// Decodes `cstring` keep-alive data: `\\`, `\r`, `\n` and `\xHH` are escapes, any other
/// backslash pair is dropped, a backslash at the end or `\x` without two hex digits is an error.
pub fn decode_cstring(s: &[u8]) -> Result<Vec<u8>, InstructError> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.iter().copied();
    while let Some(byte) = bytes.next() {
        if byte != b'\\' {
            out.push(byte);
            continue;
        }
        match bytes.next() {
            None => return Err(InstructError::CString("a backslash ends the data")),
            Some(b'\\') => out.push(b'\\'),
            Some(b'r') => out.push(b'\r'),
            Some(b'n') => out.push(b'\n'),
            Some(b'x') => {
                let high = bytes.next().and_then(hex_value);
                let low = bytes.next().and_then(hex_value);
                match (high, low) {
                    (Some(high), Some(low)) => out.push((high << 4) | low),
                    _ => {
                        return Err(InstructError::CString(
                            "\\x must be followed by two hex digits",
                        ))
                    }
                }
            }
            Some(_) => {}
        }
    }
    Ok(out)
}

fn hex_value(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|v| u8::try_from(v).ok())
}

/// Where a channel came from, for error messages.
#[derive(Debug, Clone, Copy)]
enum ChannelSource {
    Header { element: usize },
    Json { index: usize },
}

impl std::fmt::Display for ChannelSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChannelSource::Header { element } => write!(f, "Grip-Channel element {element}"),
            ChannelSource::Json { index } => write!(f, "hold.channels[{index}]"),
        }
    }
}

/// Instructions being gathered from headers and then JSON, before defaults and checks.
struct Draft {
    limits: InstructLimits,
    hold: Option<HoldMode>,
    channels: Vec<ChannelSub>,
    channels_dropped: usize,
    timeout_secs: Option<u32>,
    keep_alive_data: Option<Bytes>,
    keep_alive_timeout_secs: Option<u32>,
    keep_alive_mode: Option<KeepAliveMode>,
    status: Option<StatusOverride>,
    expose_headers: Option<Vec<String>>,
    next_link: Option<NextLink>,
    gone_link: Option<String>,
    meta: Vec<(String, String)>,
    response: Option<InstructResponse>,
}

impl Draft {
    fn new(limits: &InstructLimits) -> Self {
        Draft {
            limits: *limits,
            hold: None,
            channels: Vec::new(),
            channels_dropped: 0,
            timeout_secs: None,
            keep_alive_data: None,
            keep_alive_timeout_secs: None,
            keep_alive_mode: None,
            status: None,
            expose_headers: None,
            next_link: None,
            gone_link: None,
            meta: Vec::new(),
            response: None,
        }
    }

    /// Validates a channel and adds it: a known name is replaced in place, a new one is kept
    /// while there is room and counted as dropped after that.
    fn add_channel(&mut self, sub: ChannelSub, source: ChannelSource) -> Result<(), InstructError> {
        if sub.name.is_empty() {
            return Err(InstructError::EmptyChannelName {
                location: source.to_string(),
            });
        }
        if sub.name.chars().any(char::is_control) {
            return Err(InstructError::ChannelControlChar {
                location: source.to_string(),
                name: sub.name,
            });
        }
        if let Some(prev_id) = &sub.prev_id {
            if prev_id.chars().any(char::is_control) {
                return Err(InstructError::PrevIdControlChar {
                    location: source.to_string(),
                    prev_id: prev_id.clone(),
                });
            }
        }
        if sub.filters.len() > self.limits.max_filters_per_channel {
            return Err(InstructError::TooManyFilters {
                count: sub.filters.len(),
                channel: sub.name,
                max: self.limits.max_filters_per_channel,
            });
        }
        if let Some(existing) = self.channels.iter_mut().find(|c| c.name == sub.name) {
            *existing = sub;
        } else if self.channels.len() < self.limits.max_channels {
            self.channels.push(sub);
        } else {
            self.channels_dropped += 1;
        }
        Ok(())
    }

    /// Sets a meta value; a repeated name replaces the earlier value in place.
    fn set_meta(&mut self, name: String, value: String) {
        if let Some(existing) = self.meta.iter_mut().find(|(n, _)| *n == name) {
            existing.1 = value;
        } else {
            self.meta.push((name, value));
        }
    }

    /// Applies defaults and floors and checks rules that span several headers.
    fn finish(self, prev_id_needs_next_link: bool) -> Result<Instruct, InstructError> {
        if prev_id_needs_next_link
            && self.hold == Some(HoldMode::Stream)
            && self.next_link.is_none()
        {
            if let Some(channel) = self.channels.iter().find(|c| c.prev_id.is_some()) {
                return Err(InstructError::PrevIdWithoutNextLink {
                    channel: channel.name.clone(),
                });
            }
        }
        let keep_alive = self
            .keep_alive_data
            .filter(|data| !data.is_empty())
            .map(|data| KeepAlive {
                data,
                timeout_secs: self
                    .keep_alive_timeout_secs
                    .unwrap_or(DEFAULT_KEEP_ALIVE_TIMEOUT_SECS)
                    .max(MIN_KEEP_ALIVE_TIMEOUT_SECS),
                mode: self.keep_alive_mode.unwrap_or(KeepAliveMode::Interval),
            });
        Ok(Instruct {
            hold: self.hold,
            channels: self.channels,
            channels_dropped: self.channels_dropped,
            timeout_secs: self
                .timeout_secs
                .unwrap_or(DEFAULT_TIMEOUT_SECS)
                .max(MIN_TIMEOUT_SECS),
            keep_alive,
            status: self.status,
            expose_headers: self.expose_headers,
            next_link: self.next_link,
            gone_link: self.gone_link,
            meta: self.meta,
            response: self.response,
        })
    }
}

/// Parses a whole number of seconds (ASCII digits, surrounding whitespace allowed), capping
/// it at [`MAX_TIMEOUT_SECS`] however many digits it has.
fn parse_seconds(text: &str, field: &'static str) -> Result<u32, InstructError> {
    let digits = text.trim();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(InstructError::BadSeconds {
            field,
            got: text.to_owned(),
        });
    }
    let value = digits.bytes().fold(0u64, |acc, b| {
        acc.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    });
    Ok(cap_seconds(value))
}

/// `value` capped at [`MAX_TIMEOUT_SECS`].
fn cap_seconds(value: u64) -> u32 {
    u32::try_from(value.min(u64::from(MAX_TIMEOUT_SECS))).unwrap_or(MAX_TIMEOUT_SECS)
}

/// Checks a status code for a final HTTP/1.1 response.
fn is_usable_status(code: u64) -> bool {
    (200..=999).contains(&code)
}

/// True when a reason phrase has a control character other than tab.
fn has_bad_reason_char(reason: &str) -> bool {
    reason.chars().any(|c| c.is_control() && c != '\t')
}

/// Helpers shared by the tests of this module and its submodules.
#[cfg(test)]
pub(super) mod test_support {
    use super::{parse_instruct, Instruct, InstructError, InstructLimits};
    use http::{HeaderMap, HeaderName, HeaderValue};

    /// A header map with the given lines, in order.
    pub(crate) fn header_map(lines: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in lines {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    /// Parses a 200 response with these headers and no body, default limits.
    pub(crate) fn parse_headers(lines: &[(&str, &str)]) -> Result<Instruct, InstructError> {
        parse_instruct(200, &header_map(lines), b"", &InstructLimits::default())
    }

    /// The error message for a 200 response with these headers.
    pub(crate) fn header_error(lines: &[(&str, &str)]) -> String {
        parse_headers(lines).unwrap_err().to_string()
    }

    /// Parses a JSON instruct body (plus extra headers), default limits.
    pub(crate) fn parse_json(
        body: &str,
        extra: &[(&str, &str)],
    ) -> Result<Instruct, InstructError> {
        let mut lines = vec![("content-type", "application/grip-instruct")];
        lines.extend_from_slice(extra);
        parse_instruct(
            200,
            &header_map(&lines),
            body.as_bytes(),
            &InstructLimits::default(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{header_map, parse_headers};
    use super::*;
    use http::HeaderValue;
    use proptest::prelude::*;

    #[test]
    fn grip_response_detection() {
        assert!(!is_grip_response(&header_map(&[])));
        assert!(!is_grip_response(&header_map(&[
            ("content-type", "application/json"),
            ("x-grip-hold", "response"),
            ("gripx", "1"),
        ])));
        assert!(is_grip_response(&header_map(&[("Grip-Hold", "response")])));
        assert!(is_grip_response(&header_map(&[("grip-anything", "")])));
        assert!(is_grip_response(&header_map(&[(
            "content-type",
            "application/grip-instruct"
        )])));
        assert!(is_grip_response(&header_map(&[(
            "content-type",
            "APPLICATION/Grip-Instruct; charset=utf-8"
        )])));
        assert!(!is_grip_response(&header_map(&[(
            "content-type",
            "application/grip-instructions"
        )])));
    }

    #[test]
    fn defaults_without_instructions() {
        let parsed = parse_headers(&[]).unwrap();
        assert_eq!(
            parsed,
            Instruct {
                hold: None,
                channels: vec![],
                channels_dropped: 0,
                timeout_secs: DEFAULT_TIMEOUT_SECS,
                keep_alive: None,
                status: None,
                expose_headers: None,
                next_link: None,
                gone_link: None,
                meta: vec![],
                response: None,
            }
        );
        let limits = InstructLimits::default();
        assert_eq!(
            (
                limits.max_channels,
                limits.max_filters_per_channel,
                limits.max_body_bytes
            ),
            (20, 5, 100_000)
        );
    }

    #[test]
    fn long_poll_example() {
        let parsed = parse_headers(&[
            ("content-type", "application/json"),
            ("grip-hold", "response"),
            ("grip-channel", "mychannel; prev-id=41"),
            ("grip-timeout", "60"),
        ])
        .unwrap();
        assert_eq!(
            parsed,
            Instruct {
                hold: Some(HoldMode::Response),
                channels: vec![ChannelSub {
                    name: "mychannel".to_owned(),
                    prev_id: Some("41".to_owned()),
                    filters: vec![],
                }],
                channels_dropped: 0,
                timeout_secs: 60,
                keep_alive: None,
                status: None,
                expose_headers: None,
                next_link: None,
                gone_link: None,
                meta: vec![],
                response: None,
            }
        );
    }

    #[test]
    fn sse_stream_example() {
        let parsed = parse_headers(&[
            ("content-type", "text/event-stream"),
            ("grip-hold", "stream"),
            ("grip-channel", "fruit; prev-id=3"),
            ("grip-link", "</fruit/?after=3>; rel=next; timeout=120"),
            ("grip-keep-alive", r":\n\n; format=cstring; timeout=30"),
        ])
        .unwrap();
        assert_eq!(
            parsed,
            Instruct {
                hold: Some(HoldMode::Stream),
                channels: vec![ChannelSub {
                    name: "fruit".to_owned(),
                    prev_id: Some("3".to_owned()),
                    filters: vec![],
                }],
                channels_dropped: 0,
                timeout_secs: DEFAULT_TIMEOUT_SECS,
                keep_alive: Some(KeepAlive {
                    data: Bytes::from_static(b":\n\n"),
                    timeout_secs: 30,
                    mode: KeepAliveMode::Idle,
                }),
                status: None,
                expose_headers: None,
                next_link: Some(NextLink {
                    uri: "/fruit/?after=3".to_owned(),
                    timeout_secs: 120,
                }),
                gone_link: None,
                meta: vec![],
                response: None,
            }
        );
    }

    #[test]
    fn cstring_decoding() {
        assert_eq!(decode_cstring(b"plain").unwrap(), b"plain");
        assert_eq!(
            decode_cstring(br"a\\b\r\n\x00\xfF\t\q").unwrap(),
            b"a\\b\r\n\x00\xff"
        );
        assert_eq!(
            decode_cstring(br"abc\").unwrap_err().to_string(),
            "invalid cstring: a backslash ends the data"
        );
        for bad in [&br"\x"[..], br"\x4", br"\xg0", br"\x0g"] {
            assert_eq!(
                decode_cstring(bad).unwrap_err().to_string(),
                "invalid cstring: \\x must be followed by two hex digits"
            );
        }
    }

    const HEADER_NAMES: &[&str] = &[
        "grip-hold",
        "grip-channel",
        "grip-timeout",
        "grip-keep-alive",
        "grip-status",
        "grip-expose-headers",
        "grip-link",
        "grip-set-meta",
        "content-type",
    ];

    fn arbitrary_headers() -> impl Strategy<Value = HeaderMap> {
        let value = prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..48),
            "[a-z0-9<>/=;,\" \\\\-]{0,40}".prop_map(String::into_bytes),
            Just(b"application/grip-instruct".to_vec()),
        ];
        proptest::collection::vec((0..HEADER_NAMES.len(), value), 0..8).prop_map(|lines| {
            let mut map = HeaderMap::new();
            for (name, value) in lines {
                if let Ok(value) = HeaderValue::from_bytes(&value) {
                    map.append(HEADER_NAMES[name], value);
                }
            }
            map
        })
    }

    fn arbitrary_body() -> impl Strategy<Value = Vec<u8>> {
        let json_value = prop_oneof![
            Just("null".to_owned()),
            Just("1".to_owned()),
            Just("-1.5".to_owned()),
            Just("\"x\"".to_owned()),
            Just("[]".to_owned()),
            Just("{}".to_owned()),
            Just("[[\"a\",\"b\"]]".to_owned()),
            Just("[{\"name\":\"c\",\"prev-id\":\"1\",\"filters\":[\"f\"]}]".to_owned()),
            Just("{\"content\":\"k\",\"timeout\":0}".to_owned()),
        ];
        let key = prop_oneof![
            Just("mode"),
            Just("channels"),
            Just("timeout"),
            Just("keep-alive"),
            Just("meta"),
            Just("code"),
            Just("reason"),
            Just("headers"),
            Just("body"),
            Just("body-bin"),
        ];
        let object = proptest::collection::vec((key, json_value), 0..5).prop_map(|fields| {
            let inner: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            format!("{{{}}}", inner.join(","))
        });
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..64),
            (object.clone(), object).prop_map(|(hold, response)| {
                format!("{{\"hold\":{hold},\"response\":{response}}}").into_bytes()
            }),
        ]
    }

    proptest! {
        #[test]
        fn parse_never_panics(headers in arbitrary_headers(), body in arbitrary_body(), status in prop_oneof![Just(200u16), 0u16..1000]) {
            let limits = InstructLimits { max_channels: 3, max_filters_per_channel: 2, max_body_bytes: 200, stream_prev_id_needs_next_link: true };
            let _ = is_grip_response(&headers);
            if let Ok(instruct) = parse_instruct(status, &headers, &body, &limits) {
                prop_assert!(instruct.channels.len() <= 3);
                prop_assert!((MIN_TIMEOUT_SECS..=MAX_TIMEOUT_SECS).contains(&instruct.timeout_secs));
                if let Some(keep_alive) = &instruct.keep_alive {
                    prop_assert!(!keep_alive.data.is_empty());
                    prop_assert!(keep_alive.timeout_secs >= MIN_KEEP_ALIVE_TIMEOUT_SECS);
                }
                let client = instruct.client_headers(&headers);
                prop_assert!(client.keys().all(|name| !name.as_str().starts_with("grip-")));
                let _ = instruct.relayed_status(status);
            }
        }

        #[test]
        fn cstring_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_cstring(&data);
        }
    }
}
