//! GRIP over WebSocket (reference §3.2–3.3): the `grip` extension an origin puts in its
//! handshake response to turn GRIP on ([`parse_grip_extension`]), and the control messages it
//! then sends as TEXT messages starting with [`CONTROL_PREFIX`] ([`parse_control_message`],
//! given the JSON after the prefix).
//!
//! Invariants of a parsed [`ControlMessage`]:
//! * subscribe/unsubscribe channels are non-empty, at most `max_channel_bytes`, without
//!   control characters; a subscription has at most `max_filters` filters, each at most
//!   [`MAX_FILTER_NAME_BYTES`];
//! * set-meta names are non-empty, names and values within [`MAX_META_NAME_BYTES`] /
//!   [`MAX_META_VALUE_BYTES`]; session IDs are non-empty and within [`MAX_SESSION_ID_BYTES`];
//! * a [`TimedMessage`]'s timeout is 1..=[`MAX_TIMEOUT_SECS`]; its content is at most
//!   `max_content_bytes`, at most 125 bytes for ping/pong, and UTF-8 for text.
//!
//! Decisions where Pushpin is odd or silent:
//! * `content-bin` without `message-type` sends a BINARY message (Pushpin sends TEXT, which
//!   cannot be what the origin meant and may not even be UTF-8). With both `content-bin` and
//!   `content`, `content-bin` wins, as in Pushpin.
//! * `timeout: 0` means the default (55 s for keep-alive, 1 s for send-delayed), as in
//!   Pushpin; negative or fractional timeouts are errors; huge ones are capped at one day.
//!   The timeout is only read when there is content, so `{"type": "keep-alive",
//!   "timeout": -1}` still disables keep-alives.
//! * A keep-alive `mode` other than `interval` means idle (Pushpin does the same); `mode` must
//!   be a string if present. `mode` is ignored for send-delayed, whose [`TimedMessage::mode`]
//!   is always [`DelayMode::Idle`].
//! * send-delayed without content schedules an empty message (Pushpin does the same).
//! * An empty session `id` clears the session, like an absent one: [`ControlMessage::Session`]
//!   `{ id: None }`. A set-meta `value` of `""` sets an empty value; only an absent value
//!   deletes.
//! * JSON `null` is treated as an absent field. Unknown fields are ignored. A key repeated in
//!   one object keeps its last value.
//! * The `grip` extension is found in any comma-separated element of any header line
//!   (Pushpin only looks at whole header lines); its name is matched case-insensitively.
//!   `message-prefix` with no value (or `=` and nothing) is the empty prefix. An element with
//!   an unterminated quote is skipped, as Pushpin skips it.

use base64::Engine as _;
use bytes::Bytes;
use serde_json::{Map, Value};

use crate::params::{parse_header_element, split_elements, trim_bytes};

/// What starts a TEXT message from the origin that is a control message.
pub const CONTROL_PREFIX: &str = "c:";
/// What must start the origin's other TEXT/BINARY messages when its `grip` extension does not
/// say otherwise (the prefix is stripped before the message reaches the client).
pub const DEFAULT_MESSAGE_PREFIX: &str = "m:";
/// The WebSocket extension that enables GRIP.
pub const EXTENSION_NAME: &str = "grip";
/// Keep-alive period when the message gives none (or 0).
pub const DEFAULT_KEEP_ALIVE_TIMEOUT_SECS: u32 = 55;
/// send-delayed delay when the message gives none (or 0).
pub const DEFAULT_SEND_DELAYED_TIMEOUT_SECS: u32 = 1;
/// Largest timeout; larger ones are lowered to it.
pub const MAX_TIMEOUT_SECS: u32 = crate::instruct::MAX_TIMEOUT_SECS;
/// Largest ping or pong payload (a control frame, RFC 6455 §5.5).
pub const MAX_CONTROL_FRAME_PAYLOAD: usize = 125;
/// Default for [`ControlLimits::max_filters`] (Pushpin's `MESSAGEFILTERSTACK_SIZE_MAX`).
pub const DEFAULT_MAX_FILTERS: usize = 5;
/// Default for [`ControlLimits::max_channel_bytes`].
pub const DEFAULT_MAX_CHANNEL_BYTES: usize = 1024;
/// Default for [`ControlLimits::max_content_bytes`]: the content limit Fanout documents for
/// published messages, which suits messages stored per connection just as well.
pub const DEFAULT_MAX_CONTENT_BYTES: usize = 32_767;
/// Longest `prev-id` of a subscribe message, in bytes.
pub const MAX_PREV_ID_BYTES: usize = 1024;
/// Longest filter name, in bytes.
pub const MAX_FILTER_NAME_BYTES: usize = 256;
/// Longest set-meta name, in bytes.
pub const MAX_META_NAME_BYTES: usize = 256;
/// Longest set-meta value, in bytes.
pub const MAX_META_VALUE_BYTES: usize = 4096;
/// Longest session ID, in bytes.
pub const MAX_SESSION_ID_BYTES: usize = 1024;

/// Base64 as Pushpin accepts it: standard alphabet, padding optional.
const LENIENT_BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// The origin's `grip` extension: GRIP is on for the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GripExtension {
    /// What the origin's ordinary messages start with (stripped before relaying; messages
    /// without it are dropped). May be empty, which relays every message.
    pub message_prefix: String,
}

impl Default for GripExtension {
    fn default() -> Self {
        GripExtension {
            message_prefix: DEFAULT_MESSAGE_PREFIX.to_owned(),
        }
    }
}

/// Reads `Sec-WebSocket-Extensions` from an origin's handshake response (pass every header
/// line's value): `Some` when it contains the `grip` extension, with its `message-prefix`
/// parameter (quoted or token; default [`DEFAULT_MESSAGE_PREFIX`]; empty allowed). Only the
/// `grip` element is parsed beyond its name.
pub fn parse_grip_extension<'a>(
    values: impl IntoIterator<Item = &'a [u8]>,
) -> Option<GripExtension> {
    values
        .into_iter()
        .flat_map(split_elements)
        .filter(|element| {
            let name_end = element
                .iter()
                .position(|&b| b == b';')
                .unwrap_or(element.len());
            let name = trim_bytes(element.get(..name_end).unwrap_or_default());
            name.eq_ignore_ascii_case(EXTENSION_NAME.as_bytes())
        })
        .find_map(|element| {
            let parsed = parse_header_element(element, false).ok()?;
            let message_prefix = match parsed.param("message-prefix") {
                None => DEFAULT_MESSAGE_PREFIX,
                Some(value) => value.unwrap_or_default(),
            };
            Some(GripExtension {
                message_prefix: message_prefix.to_owned(),
            })
        })
}

/// The kind of WebSocket message a [`TimedMessage`] sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsMessageType {
    /// A text message (content is UTF-8).
    Text,
    /// A binary message.
    Binary,
    /// A ping (content at most 125 bytes).
    Ping,
    /// A pong (content at most 125 bytes).
    Pong,
}

/// How a keep-alive's timeout is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DelayMode {
    /// From the last message sent to the client (any message restarts the timer).
    Idle,
    /// At a fixed period regardless of traffic.
    Interval,
}

/// A message the proxy sends to the client later: a keep-alive or a delayed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimedMessage {
    /// The message's kind.
    pub message_type: WsMessageType,
    /// The message's payload.
    pub content: Bytes,
    /// Seconds to wait, 1..=[`MAX_TIMEOUT_SECS`].
    pub timeout_secs: u32,
    /// How the wait is measured (always [`DelayMode::Idle`] for send-delayed).
    pub mode: DelayMode,
}

/// One GRIP control message from the origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlMessage {
    /// Subscribe the connection to a channel (the server applies the route's prefix).
    Subscribe {
        /// The channel name.
        channel: String,
        /// Filter names, in order (unknown names are the filter stage's business).
        filters: Vec<String>,
        /// `prev-id`: the id of the last item the origin says the client has; what followed
        /// it is sent first, from history (a Gripway extension; at most
        /// [`MAX_PREV_ID_BYTES`], no control characters).
        prev_id: Option<String>,
    },
    /// Unsubscribe the connection from a channel.
    Unsubscribe {
        /// The channel name.
        channel: String,
    },
    /// Close the origin side; the client stays connected and receives only publishes.
    Detach,
    /// Set (`Some`) or clear (`None`) the connection's session ID.
    Session {
        /// The session ID, never empty.
        id: Option<String>,
    },
    /// Set or delete one subscription meta variable (used by filters).
    SetMeta {
        /// The variable's name, never empty.
        name: String,
        /// The value; `None` deletes the variable.
        value: Option<String>,
    },
    /// Start sending a keep-alive message (`Some`) or stop (`None`).
    KeepAlive(Option<TimedMessage>),
    /// Send a message after a delay, replacing (after sending) any pending one.
    SendDelayed(TimedMessage),
    /// Send the pending delayed message now.
    FlushDelayed,
}

/// Bounds applied while parsing a control message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlLimits {
    /// Most filters per subscription; more is [`ControlError::TooManyFilters`], on which
    /// Pushpin closes the connection with 1011. Default [`DEFAULT_MAX_FILTERS`].
    pub max_filters: usize,
    /// Longest channel name, in bytes. Default [`DEFAULT_MAX_CHANNEL_BYTES`].
    pub max_channel_bytes: usize,
    /// Largest keep-alive or send-delayed content, in bytes (after base64 decoding).
    /// Default [`DEFAULT_MAX_CONTENT_BYTES`].
    pub max_content_bytes: usize,
}

impl Default for ControlLimits {
    fn default() -> Self {
        ControlLimits {
            max_filters: DEFAULT_MAX_FILTERS,
            max_channel_bytes: DEFAULT_MAX_CHANNEL_BYTES,
            max_content_bytes: DEFAULT_MAX_CONTENT_BYTES,
        }
    }
}

/// Why a control message was not followed. The server logs it and ignores the message, except
/// for [`ControlError::TooManyFilters`] (see [`ControlError::closes_connection`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// The message is not JSON.
    #[error("control message is not valid JSON: {detail}")]
    Json {
        /// serde_json's description, with line and column.
        detail: String,
    },
    /// The JSON is not an object.
    #[error("control message must be a JSON object")]
    NotObject,
    /// `type` is missing.
    #[error("control message has no 'type'")]
    MissingType,
    /// `type` names no known control message.
    #[error(
        "control message 'type' must be one of subscribe, unsubscribe, detach, session, \
         set-meta, keep-alive, send-delayed, flush-delayed; got '{got}'"
    )]
    UnknownType {
        /// The type received.
        got: String,
    },
    /// A field has the wrong type or value.
    #[error("control message field '{field}' {problem}")]
    Invalid {
        /// The field, e.g. `channel` or `filters[2]`.
        field: String,
        /// What is wrong with it, e.g. `must be a string`.
        problem: String,
    },
    /// A field is longer than allowed.
    #[error("control message field '{field}' is {len} bytes, more than the {max} allowed")]
    TooLong {
        /// The field, e.g. `channel` or `content`.
        field: String,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A subscribe lists more filters than allowed.
    #[error("too many filters for channel '{channel}' ({count}, at most {max} allowed)")]
    TooManyFilters {
        /// The channel's name.
        channel: String,
        /// How many filters it listed.
        count: usize,
        /// The limit.
        max: usize,
    },
}

impl ControlError {
    /// True when Pushpin answers this error by closing the client connection with status
    /// 1011 rather than ignoring the message (too many filters).
    pub fn closes_connection(&self) -> bool {
        matches!(self, ControlError::TooManyFilters { .. })
    }

    fn invalid(field: impl Into<String>, problem: impl Into<String>) -> ControlError {
        ControlError::Invalid {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

type Object = Map<String, Value>;

/// Parses a control message: the JSON object after [`CONTROL_PREFIX`] (the caller strips it).
pub fn parse_control_message(
    json: &[u8],
    limits: &ControlLimits,
) -> Result<ControlMessage, ControlError> {
    let value: Value = serde_json::from_slice(json).map_err(|e| ControlError::Json {
        detail: e.to_string(),
    })?;
    let Value::Object(mut object) = value else {
        return Err(ControlError::NotObject);
    };
    let kind = take_string(&mut object, "type")?.ok_or(ControlError::MissingType)?;
    match kind.as_str() {
        "subscribe" => {
            let channel = take_channel(&mut object, limits)?;
            let filters = take_filters(&mut object, &channel, limits)?;
            let prev_id = take_prev_id(&mut object)?;
            Ok(ControlMessage::Subscribe {
                channel,
                filters,
                prev_id,
            })
        }
        "unsubscribe" => Ok(ControlMessage::Unsubscribe {
            channel: take_channel(&mut object, limits)?,
        }),
        "detach" => Ok(ControlMessage::Detach),
        "session" => {
            let id = take_string(&mut object, "id")?.filter(|id| !id.is_empty());
            if let Some(id) = &id {
                check_len("id", id.len(), MAX_SESSION_ID_BYTES)?;
            }
            Ok(ControlMessage::Session { id })
        }
        "set-meta" => {
            let name = take_string(&mut object, "name")?
                .filter(|name| !name.is_empty())
                .ok_or_else(|| ControlError::invalid("name", "must be a non-empty string"))?;
            check_len("name", name.len(), MAX_META_NAME_BYTES)?;
            let value = take_string(&mut object, "value")?;
            if let Some(value) = &value {
                check_len("value", value.len(), MAX_META_VALUE_BYTES)?;
            }
            Ok(ControlMessage::SetMeta { name, value })
        }
        "keep-alive" => Ok(ControlMessage::KeepAlive(take_timed_message(
            &mut object,
            limits,
            DEFAULT_KEEP_ALIVE_TIMEOUT_SECS,
            true,
        )?)),
        "send-delayed" => {
            let message = take_timed_message(
                &mut object,
                limits,
                DEFAULT_SEND_DELAYED_TIMEOUT_SECS,
                false,
            )?;
            Ok(ControlMessage::SendDelayed(message.unwrap_or(
                TimedMessage {
                    message_type: WsMessageType::Text,
                    content: Bytes::new(),
                    timeout_secs: DEFAULT_SEND_DELAYED_TIMEOUT_SECS,
                    mode: DelayMode::Idle,
                },
            )))
        }
        "flush-delayed" => Ok(ControlMessage::FlushDelayed),
        _ => Err(ControlError::UnknownType { got: kind }),
    }
}

/// Removes a field, `None` when absent or `null`.
fn take(object: &mut Object, name: &str) -> Option<Value> {
    object.remove(name).filter(|value| !value.is_null())
}

/// Removes a string field (moving the string out), `None` when absent or `null`.
fn take_string(object: &mut Object, name: &str) -> Result<Option<String>, ControlError> {
    match take(object, name) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(ControlError::invalid(name, "must be a string")),
    }
}

fn check_len(field: &str, len: usize, max: usize) -> Result<(), ControlError> {
    if len > max {
        return Err(ControlError::TooLong {
            field: field.to_owned(),
            len,
            max,
        });
    }
    Ok(())
}

fn take_channel(object: &mut Object, limits: &ControlLimits) -> Result<String, ControlError> {
    let channel = take_string(object, "channel")?
        .filter(|channel| !channel.is_empty())
        .ok_or_else(|| ControlError::invalid("channel", "must be a non-empty string"))?;
    check_len("channel", channel.len(), limits.max_channel_bytes)?;
    if channel.chars().any(char::is_control) {
        return Err(ControlError::invalid(
            "channel",
            format!("{channel:?} contains a control character"),
        ));
    }
    Ok(channel)
}

fn take_prev_id(object: &mut Object) -> Result<Option<String>, ControlError> {
    let Some(id) = take_string(object, "prev-id")? else {
        return Ok(None);
    };
    check_len("prev-id", id.len(), MAX_PREV_ID_BYTES)?;
    if id.chars().any(char::is_control) {
        return Err(ControlError::invalid(
            "prev-id",
            format!("{id:?} contains a control character"),
        ));
    }
    Ok((!id.is_empty()).then_some(id))
}

fn take_filters(
    object: &mut Object,
    channel: &str,
    limits: &ControlLimits,
) -> Result<Vec<String>, ControlError> {
    let list = match take(object, "filters") {
        None => return Ok(Vec::new()),
        Some(Value::Array(list)) => list,
        Some(_) => return Err(ControlError::invalid("filters", "must be an array")),
    };
    if list.len() > limits.max_filters {
        return Err(ControlError::TooManyFilters {
            channel: channel.to_owned(),
            count: list.len(),
            max: limits.max_filters,
        });
    }
    list.into_iter()
        .enumerate()
        .map(|(index, filter)| match filter {
            Value::String(name) => {
                check_len(
                    &format!("filters[{index}]"),
                    name.len(),
                    MAX_FILTER_NAME_BYTES,
                )?;
                Ok(name)
            }
            _ => Err(ControlError::invalid(
                format!("filters[{index}]"),
                "must be a string",
            )),
        })
        .collect()
}

/// Reads the fields shared by keep-alive and send-delayed; `None` when there is no content.
/// `mode` is read only for keep-alive (`with_mode`).
fn take_timed_message(
    object: &mut Object,
    limits: &ControlLimits,
    default_timeout: u32,
    with_mode: bool,
) -> Result<Option<TimedMessage>, ControlError> {
    let explicit_type = match take_string(object, "message-type")?.as_deref() {
        None => None,
        Some("text") => Some(WsMessageType::Text),
        Some("binary") => Some(WsMessageType::Binary),
        Some("ping") => Some(WsMessageType::Ping),
        Some("pong") => Some(WsMessageType::Pong),
        Some(other) => {
            return Err(ControlError::invalid(
                "message-type",
                format!("must be one of text, binary, ping, pong; got '{other}'"),
            ))
        }
    };
    let mode = match with_mode.then(|| take_string(object, "mode")).transpose()? {
        Some(Some(mode)) if mode == "interval" => DelayMode::Interval,
        _ => DelayMode::Idle,
    };
    let (content, content_field, default_type) =
        if let Some(encoded) = take_string(object, "content-bin")? {
            let decoded = LENIENT_BASE64
                .decode(encoded)
                .map_err(|_| ControlError::invalid("content-bin", "is not valid base64"))?;
            (Bytes::from(decoded), "content-bin", WsMessageType::Binary)
        } else if let Some(text) = take_string(object, "content")? {
            (Bytes::from(text), "content", WsMessageType::Text)
        } else {
            return Ok(None);
        };
    let message_type = explicit_type.unwrap_or(default_type);
    let max = match message_type {
        WsMessageType::Ping | WsMessageType::Pong => {
            MAX_CONTROL_FRAME_PAYLOAD.min(limits.max_content_bytes)
        }
        WsMessageType::Text | WsMessageType::Binary => limits.max_content_bytes,
    };
    check_len(content_field, content.len(), max)?;
    if message_type == WsMessageType::Text && std::str::from_utf8(&content).is_err() {
        return Err(ControlError::invalid(
            content_field,
            "must be UTF-8 for a text message",
        ));
    }
    let timeout_secs = match take(object, "timeout") {
        None => default_timeout,
        Some(value) => match whole_number(&value) {
            Some(0) => default_timeout,
            Some(secs) => u32::try_from(secs)
                .unwrap_or(MAX_TIMEOUT_SECS)
                .min(MAX_TIMEOUT_SECS),
            None => {
                return Err(ControlError::invalid(
                    "timeout",
                    "must be a non-negative whole number of seconds",
                ))
            }
        },
    };
    Ok(Some(TimedMessage {
        message_type,
        content,
        timeout_secs,
        mode,
    }))
}

/// A whole non-negative number (`5` or `5.0`), or `None`.
fn whole_number(value: &Value) -> Option<u64> {
    value.as_u64().or_else(|| {
        value
            .as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0 && f.fract() == 0.0)
            // Saturating float-to-int conversion; the caller caps the result anyway.
            .map(|f| f as u64)
    })
}

#[cfg(test)]
mod tests;
