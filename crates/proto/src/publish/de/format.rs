//! One format object (`http-response`, `http-stream` or `ws-message`): its fields are gathered
//! in one pass (JSON key order is free), then checked together, because which fields are
//! required depends on `action` and, for WebSocket messages, on `type`. An `mqtt-message`
//! object is handed to `mqtt.rs`. Both read content through `content.rs`.
//!
//! Invariants of what this returns: the action is one the format allows; content and bodies
//! are within the content limit; header names are tokens and header values, reasons and
//! content filters hold no line breaks or other control characters.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::content::{check_size, payload, Payload};
use super::{
    duplicate, expect_str, invalid, store_format, Ctx, FormatLoc, FormatName, Key, ParsedFormat,
    Scalar, SeenKeys,
};
use crate::publish::{
    Formats, HttpResponseAction, HttpResponseFormat, HttpStreamAction, HttpStreamFormat, JsonPatch,
    PublishError, PublishLimits, ResponseBody, ResponseMessage, WsAction, WsKind, WsMessageFormat,
    MAX_CLOSE_REASON_BYTES, MAX_CONTENT_FILTERS, MAX_CONTENT_FILTER_BYTES,
    MAX_CONTROL_FRAME_PAYLOAD, MAX_HEADER_BYTES, MAX_REASON_BYTES, MAX_RESPONSE_HEADERS,
};

/// The keys a format object may have; each format knows a subset, others are ignored.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    Action,
    ContentFilters,
    Content,
    ContentBin,
    Body,
    BodyBin,
    BodyPatch,
    Code,
    Reason,
    Headers,
    Type,
}

impl Field {
    fn for_key(format: FormatName, key: &str) -> Option<Self> {
        use FormatName::{HttpResponse, HttpStream, WsMessage};
        let field = match key {
            "action" => Field::Action,
            "content-filters" => Field::ContentFilters,
            "content" => Field::Content,
            "content-bin" => Field::ContentBin,
            "body" => Field::Body,
            "body-bin" => Field::BodyBin,
            "body-patch" => Field::BodyPatch,
            "code" => Field::Code,
            "reason" => Field::Reason,
            "headers" => Field::Headers,
            "type" => Field::Type,
            _ => return None,
        };
        let applies = match field {
            Field::Action | Field::ContentFilters => true,
            Field::Content | Field::ContentBin => format != HttpResponse,
            Field::Body | Field::BodyBin | Field::BodyPatch | Field::Headers => {
                format == HttpResponse
            }
            Field::Code | Field::Reason => format != HttpStream,
            Field::Type => format == WsMessage,
        };
        applies.then_some(field)
    }
}

/// A format's fields as found, type-checked but not yet validated together.
#[derive(Default)]
struct RawFormat<'de> {
    action: Option<Cow<'de, str>>,
    content_filters: Vec<String>,
    content: Option<Cow<'de, str>>,
    content_bin: Option<Cow<'de, str>>,
    body: Option<Cow<'de, str>>,
    body_bin: Option<Cow<'de, str>>,
    body_patch: Option<Value>,
    code: Option<Scalar<'de>>,
    reason: Option<Cow<'de, str>>,
    headers: Vec<(String, String)>,
    kind: Option<Cow<'de, str>>,
}

/// Parses one format object and stores it in its slot of `out`.
pub(super) struct FormatSeed<'c, 'l> {
    pub(super) ctx: &'c mut Ctx<'l>,
    pub(super) loc: FormatLoc,
    pub(super) out: &'c mut Formats,
}

impl<'de> DeserializeSeed<'de> for FormatSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl FormatSeed<'_, '_> {
    fn wrong_type<E: de::Error>(self, got: &str) -> E {
        let message = format!("{}: expected an object, got {got}", self.loc);
        self.ctx.reject(invalid(Some(self.loc.item), message))
    }
}

impl<'de> Visitor<'de> for FormatSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a format object")
    }

    expect_object!('de);

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let FormatSeed { ctx, loc, out } = self;
        if loc.name == FormatName::MqttMessage {
            let format = super::mqtt::visit(ctx, loc, map)?;
            store_format(out, ParsedFormat::MqttMessage(format));
            return Ok(());
        }
        let item = Some(loc.item);
        let mut seen = SeenKeys::default();
        let mut raw = RawFormat::default();
        while let Some(Key(key)) = map.next_key()? {
            let Some(field) = Field::for_key(loc.name, &key) else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            if !seen.first(field as u32) {
                return Err(ctx.reject(duplicate(item, format_args!("{loc}"), &key)));
            }
            let slot = match field {
                Field::BodyPatch => {
                    raw.body_patch = Some(map.next_value::<Value>()?);
                    continue;
                }
                Field::Code => {
                    raw.code = Some(map.next_value()?);
                    continue;
                }
                Field::Headers => {
                    raw.headers = map.next_value_seed(HeadersSeed {
                        ctx: &mut *ctx,
                        loc,
                    })?;
                    continue;
                }
                Field::ContentFilters => {
                    raw.content_filters = map.next_value_seed(FiltersSeed {
                        ctx: &mut *ctx,
                        loc,
                    })?;
                    continue;
                }
                Field::Action => &mut raw.action,
                Field::Content => &mut raw.content,
                Field::ContentBin => &mut raw.content_bin,
                Field::Body => &mut raw.body,
                Field::BodyBin => &mut raw.body_bin,
                Field::Reason => &mut raw.reason,
                Field::Type => &mut raw.kind,
            };
            *slot = Some(expect_str(
                ctx,
                map.next_value()?,
                item,
                format_args!("{loc}.{key}"),
            )?);
        }
        let format = finish(raw, loc, ctx.limits).map_err(|e| ctx.reject(e))?;
        store_format(out, format);
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Action {
    Send,
    Hint,
    Close,
    Refresh,
}

fn parse_action(raw: Option<&str>, loc: FormatLoc) -> Result<Action, PublishError> {
    let (allowed, choices): (&[Action], &str) = match loc.name {
        FormatName::HttpStream => (
            &[Action::Send, Action::Close, Action::Hint],
            "'send', 'close' or 'hint'",
        ),
        FormatName::HttpResponse => (&[Action::Send, Action::Hint], "'send' or 'hint'"),
        FormatName::WsMessage => (
            &[Action::Send, Action::Close, Action::Refresh, Action::Hint],
            "'send', 'close', 'refresh' or 'hint'",
        ),
        // `mqtt.rs` reads its own format; it has no `action`
        FormatName::MqttMessage => (&[Action::Send], "'send'"),
    };
    let action = match raw {
        None | Some("send") => Action::Send,
        Some("hint") => Action::Hint,
        Some("close") => Action::Close,
        Some("refresh") => Action::Refresh,
        Some(other) => {
            let message = format!("{loc}.action: unknown action {other:?} (expected {choices})");
            return Err(invalid(Some(loc.item), message));
        }
    };
    if allowed.contains(&action) {
        Ok(action)
    } else {
        let name = raw.unwrap_or("send");
        let format = loc.name.key();
        let message =
            format!("{loc}.action: {name:?} is not allowed for {format} (expected {choices})");
        Err(invalid(Some(loc.item), message))
    }
}

fn finish(
    mut raw: RawFormat<'_>,
    loc: FormatLoc,
    limits: &PublishLimits,
) -> Result<ParsedFormat, PublishError> {
    let action = parse_action(raw.action.as_deref(), loc)?;
    let max = limits.max_content_bytes;
    let item = Some(loc.item);
    Ok(match loc.name {
        FormatName::HttpStream => {
            let action = match action {
                Action::Close => HttpStreamAction::Close,
                // `parse_action` has already rejected `refresh` here.
                Action::Hint | Action::Refresh => HttpStreamAction::Hint,
                Action::Send => {
                    match payload(
                        loc,
                        max,
                        raw.content,
                        "content",
                        raw.content_bin,
                        "content-bin",
                    )? {
                        Some(p) => HttpStreamAction::Send(p.bytes),
                        None => {
                            let message = format!("{loc}: needs 'content' or 'content-bin'");
                            return Err(invalid(item, message));
                        }
                    }
                }
            };
            ParsedFormat::HttpStream(HttpStreamFormat {
                action,
                content_filters: raw.content_filters,
            })
        }
        FormatName::HttpResponse => {
            let content_filters = std::mem::take(&mut raw.content_filters);
            let action = match action {
                Action::Send => HttpResponseAction::Send(response_message(raw, loc, max)?),
                // `parse_action` has already rejected `close` and `refresh` here.
                Action::Hint | Action::Close | Action::Refresh => HttpResponseAction::Hint,
            };
            ParsedFormat::HttpResponse(HttpResponseFormat {
                action,
                content_filters,
            })
        }
        FormatName::WsMessage => {
            let content_filters = std::mem::take(&mut raw.content_filters);
            let action = match action {
                Action::Send => ws_send(raw, loc, max)?,
                Action::Close => ws_close(raw, loc)?,
                Action::Refresh => WsAction::Refresh,
                Action::Hint => WsAction::Hint,
            };
            ParsedFormat::WsMessage(WsMessageFormat {
                action,
                content_filters,
            })
        }
        FormatName::MqttMessage => {
            // never reached: `FormatSeed` hands this format to `mqtt.rs`
            let message = format!("{loc}: not read as a GRIP format");
            return Err(invalid(item, message));
        }
    })
}

fn response_message(
    raw: RawFormat<'_>,
    loc: FormatLoc,
    max: usize,
) -> Result<ResponseMessage, PublishError> {
    let item = Some(loc.item);
    let code = match raw.code {
        None => 200,
        Some(Scalar::UInt(n)) if n <= 999 => u16::try_from(n).unwrap_or(200),
        Some(Scalar::UInt(n)) => return Err(out_of_range(loc, n)),
        Some(Scalar::NegInt(n)) => return Err(out_of_range(loc, n)),
        Some(other) => {
            let message = format!("{loc}.code: expected an integer, got {}", other.kind());
            return Err(invalid(item, message));
        }
    };
    let reason = match raw.reason {
        Some(reason) if !reason.is_empty() => {
            if reason.len() > MAX_REASON_BYTES {
                let len = reason.len();
                let message =
                    format!("{loc}.reason: {len} bytes, over the limit of {MAX_REASON_BYTES}");
                return Err(invalid(item, message));
            }
            if !reason.bytes().all(is_field_byte) {
                let message = format!("{loc}.reason: contains CR, LF or another control character");
                return Err(invalid(item, message));
            }
            Some(reason.into_owned())
        }
        _ => None,
    };
    let bodies_given = [
        raw.body.is_some(),
        raw.body_bin.is_some(),
        raw.body_patch.is_some(),
    ]
    .into_iter()
    .filter(|given| *given)
    .count();
    if bodies_given > 1 {
        let message =
            format!("{loc}: has more than one of 'body', 'body-bin' and 'body-patch'; give one");
        return Err(invalid(item, message));
    }
    let body = if let Some(doc) = raw.body_patch {
        let patch = JsonPatch::from_value(&doc)
            .map_err(|e| invalid(item, format!("{loc}.body-patch: {e}")))?;
        check_size(encoded_len(&patch), max, loc, "body-patch")?;
        if patch.outgrows_empty_document(max) {
            let message = format!(
                "{loc}.body-patch: builds a document larger than {max} bytes from an empty one \
                 (a patched body may not exceed the content limit)"
            );
            return Err(invalid(item, message));
        }
        ResponseBody::Patch(patch)
    } else {
        match payload(loc, max, raw.body, "body", raw.body_bin, "body-bin")? {
            Some(p) => ResponseBody::Bytes(p.bytes),
            None => {
                let message = format!("{loc}: needs 'body', 'body-bin' or 'body-patch'");
                return Err(invalid(item, message));
            }
        }
    };
    Ok(ResponseMessage {
        code,
        reason,
        headers: raw.headers,
        body,
    })
}

fn out_of_range(loc: FormatLoc, code: impl fmt::Display) -> PublishError {
    let message = format!("{loc}.code: {code} is out of range (0-999)");
    invalid(Some(loc.item), message)
}

fn ws_send(raw: RawFormat<'_>, loc: FormatLoc, max: usize) -> Result<WsAction, PublishError> {
    let item = Some(loc.item);
    let kind = match raw.kind.as_deref() {
        None => None,
        Some("text") => Some(WsKind::Text),
        Some("binary") => Some(WsKind::Binary),
        Some("ping") => Some(WsKind::Ping),
        Some("pong") => Some(WsKind::Pong),
        Some(other) => {
            let message = format!(
                "{loc}.type: unknown type {other:?} (expected 'text', 'binary', 'ping' or 'pong')"
            );
            return Err(invalid(item, message));
        }
    };
    let found = payload(
        loc,
        max,
        raw.content,
        "content",
        raw.content_bin,
        "content-bin",
    )?;
    let control = matches!(kind, Some(WsKind::Ping | WsKind::Pong));
    let payload = match found {
        Some(p) => p,
        None if control => Payload {
            bytes: Bytes::new(),
            field: "content",
            from_base64: false,
        },
        None => {
            let message = format!("{loc}: needs 'content' or 'content-bin'");
            return Err(invalid(item, message));
        }
    };
    let default_kind = if payload.from_base64 {
        WsKind::Binary
    } else {
        WsKind::Text
    };
    let kind = kind.unwrap_or(default_kind);
    let field = payload.field;
    let len = payload.bytes.len();
    if control && len > MAX_CONTROL_FRAME_PAYLOAD {
        let message = format!(
            "{loc}.{field}: {len} bytes, over the limit of {MAX_CONTROL_FRAME_PAYLOAD} for a \
             ping or pong"
        );
        return Err(invalid(item, message));
    }
    if kind == WsKind::Text && std::str::from_utf8(&payload.bytes).is_err() {
        let message = format!("{loc}.{field}: a text message needs UTF-8 content");
        return Err(invalid(item, message));
    }
    Ok(WsAction::Send {
        kind,
        content: payload.bytes,
    })
}

fn ws_close(raw: RawFormat<'_>, loc: FormatLoc) -> Result<WsAction, PublishError> {
    let item = Some(loc.item);
    let bad_code = |code: &dyn fmt::Display| {
        let message = format!(
            "{loc}.code: {code} is not a close code that may be sent (1000-4999, except 1004, \
             1005, 1006 and 1015)"
        );
        invalid(item, message)
    };
    let code = match raw.code {
        None => None,
        Some(Scalar::UInt(n)) => Some(sendable_close_code(n).ok_or_else(|| bad_code(&n))?),
        Some(Scalar::NegInt(n)) => return Err(bad_code(&n)),
        Some(other) => {
            let message = format!("{loc}.code: expected an integer, got {}", other.kind());
            return Err(invalid(item, message));
        }
    };
    let reason = raw.reason.map(Cow::into_owned).unwrap_or_default();
    if reason.len() > MAX_CLOSE_REASON_BYTES {
        let len = reason.len();
        let message =
            format!("{loc}.reason: {len} bytes, over the limit of {MAX_CLOSE_REASON_BYTES}");
        return Err(invalid(item, message));
    }
    Ok(WsAction::Close { code, reason })
}

/// A close code an endpoint may put in a close frame (RFC 6455 §7.4): 1004 is reserved and
/// 1005, 1006 and 1015 only report conditions locally.
fn sendable_close_code(code: u64) -> Option<u16> {
    let code = u16::try_from(code).ok()?;
    let sendable = (1000..=4999).contains(&code) && !matches!(code, 1004 | 1005 | 1006 | 1015);
    sendable.then_some(code)
}

/// The length of a patch's JSON encoding, without building it.
fn encoded_len(patch: &JsonPatch) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 = self.0.saturating_add(buf.len());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    match serde_json::to_writer(&mut counter, patch) {
        Ok(()) => counter.0,
        // Writing to a counter cannot fail; were it to, count the patch as too big.
        Err(_) => usize::MAX,
    }
}

/// True for a byte allowed in an RFC 9110 token (a header name).
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// True for a byte allowed in a header value or reason phrase: tab, space, visible ASCII,
/// or non-ASCII (obs-text). CR, LF, NUL, other controls and DEL are not.
fn is_field_byte(b: u8) -> bool {
    b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80
}

// ---------------------------------------------------------------------------------------------
// `headers`: an object of name → value, or an array of [name, value] pairs.

struct HeadersSeed<'c, 'l> {
    ctx: &'c mut Ctx<'l>,
    loc: FormatLoc,
}

impl<'de> DeserializeSeed<'de> for HeadersSeed<'_, '_> {
    type Value = Vec<(String, String)>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl HeadersSeed<'_, '_> {
    fn wrong_type<E: de::Error>(self, got: &str) -> E {
        let message = format!(
            "{}.headers: expected an object or an array of [name, value] pairs, got {got}",
            self.loc
        );
        self.ctx.reject(invalid(Some(self.loc.item), message))
    }
}

impl<'de> Visitor<'de> for HeadersSeed<'_, '_> {
    type Value = Vec<(String, String)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("response headers")
    }

    reject_scalars!();

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let HeadersSeed { ctx, loc } = self;
        let mut headers = Vec::new();
        while let Some(Key(name)) = map.next_key()? {
            let path = format_args!("{loc}.headers[{name:?}]");
            let value = expect_str(ctx, map.next_value()?, Some(loc.item), path)?;
            push_header(&mut headers, &name, &value, loc, path).map_err(|e| ctx.reject(e))?;
        }
        Ok(headers)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let HeadersSeed { ctx, loc } = self;
        let mut headers = Vec::new();
        loop {
            let position = headers.len();
            let pair = HeaderPairSeed {
                ctx: &mut *ctx,
                loc,
                position,
            };
            let Some((name, value)) = seq.next_element_seed(pair)? else {
                return Ok(headers);
            };
            let path = format_args!("{loc}.headers[{position}]");
            push_header(&mut headers, &name, &value, loc, path).map_err(|e| ctx.reject(e))?;
        }
    }
}

fn push_header(
    headers: &mut Vec<(String, String)>,
    name: &str,
    value: &str,
    loc: FormatLoc,
    path: fmt::Arguments<'_>,
) -> Result<(), PublishError> {
    let item = Some(loc.item);
    let problem = if headers.len() == MAX_RESPONSE_HEADERS {
        format!("{loc}.headers: more than {MAX_RESPONSE_HEADERS} headers")
    } else if name.is_empty() || !name.bytes().all(is_token_byte) {
        format!("{path}: {name:?} is not a valid header name")
    } else if !value.bytes().all(is_field_byte) {
        format!("{path}: the value contains CR, LF or another control character")
    } else if name.len() + value.len() > MAX_HEADER_BYTES {
        format!("{path}: over the limit of {MAX_HEADER_BYTES} bytes")
    } else {
        headers.push((name.to_owned(), value.to_owned()));
        return Ok(());
    };
    Err(invalid(item, problem))
}

struct HeaderPairSeed<'c, 'l> {
    ctx: &'c mut Ctx<'l>,
    loc: FormatLoc,
    position: usize,
}

impl<'de> DeserializeSeed<'de> for HeaderPairSeed<'_, '_> {
    type Value = (Cow<'de, str>, Cow<'de, str>);
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl HeaderPairSeed<'_, '_> {
    fn wrong_type<E: de::Error>(self, got: &str) -> E {
        let message = format!(
            "{}.headers[{}]: expected a [name, value] pair, got {got}",
            self.loc, self.position
        );
        self.ctx.reject(invalid(Some(self.loc.item), message))
    }
}

impl<'de> Visitor<'de> for HeaderPairSeed<'_, '_> {
    type Value = (Cow<'de, str>, Cow<'de, str>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a [name, value] pair")
    }

    expect_array!('de);

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let HeaderPairSeed { ctx, loc, position } = self;
        let item = Some(loc.item);
        let name = seq.next_element::<Scalar<'de>>()?;
        let value = seq.next_element::<Scalar<'de>>()?;
        let mut extra = 0usize;
        while seq.next_element::<IgnoredAny>()?.is_some() {
            extra += 1;
        }
        match (name, value) {
            (Some(name), Some(value)) if extra == 0 => {
                let name = expect_str(
                    ctx,
                    name,
                    item,
                    format_args!("{loc}.headers[{position}][0]"),
                )?;
                let value = expect_str(
                    ctx,
                    value,
                    item,
                    format_args!("{loc}.headers[{position}][1]"),
                )?;
                Ok((name, value))
            }
            (name, value) => {
                let count = usize::from(name.is_some()) + usize::from(value.is_some()) + extra;
                let message = format!(
                    "{loc}.headers[{position}]: expected a [name, value] pair, got an array of \
                     {count}"
                );
                Err(ctx.reject(invalid(item, message)))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// `content-filters`: an array of strings.

struct FiltersSeed<'c, 'l> {
    ctx: &'c mut Ctx<'l>,
    loc: FormatLoc,
}

impl<'de> DeserializeSeed<'de> for FiltersSeed<'_, '_> {
    type Value = Vec<String>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl FiltersSeed<'_, '_> {
    fn wrong_type<E: de::Error>(self, got: &str) -> E {
        let message = format!("{}.content-filters: expected an array, got {got}", self.loc);
        self.ctx.reject(invalid(Some(self.loc.item), message))
    }
}

impl<'de> Visitor<'de> for FiltersSeed<'_, '_> {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of filter names")
    }

    expect_array!('de);

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let FiltersSeed { ctx, loc } = self;
        let item = Some(loc.item);
        let mut filters = Vec::new();
        while let Some(value) = seq.next_element::<Scalar<'de>>()? {
            let position = filters.len();
            let path = format_args!("{loc}.content-filters[{position}]");
            let filter = expect_str(ctx, value, item, path)?;
            let problem = if position == MAX_CONTENT_FILTERS {
                Some(format!(
                    "{loc}.content-filters: more than {MAX_CONTENT_FILTERS} entries"
                ))
            } else if filter.len() > MAX_CONTENT_FILTER_BYTES {
                Some(format!(
                    "{path}: over the limit of {MAX_CONTENT_FILTER_BYTES} bytes"
                ))
            } else if filter.chars().any(char::is_control) {
                Some(format!("{path}: contains a control character"))
            } else {
                None
            };
            if let Some(message) = problem {
                return Err(ctx.reject(invalid(item, message)));
            }
            filters.push(filter.into_owned());
        }
        Ok(filters)
    }
}
