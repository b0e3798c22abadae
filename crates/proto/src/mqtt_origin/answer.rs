//! The answer half of MQTT-over-HTTP: the origin's JSON body, read into one typed result per
//! event ([`parse_answer`]).
//!
//! ```text
//! {"results": [RESULT, ...], "meta": {"user": "alice"}}
//! ```
//!
//! Parsing is in two passes. The first (`raw`) is serde: JSON types, ranges, unknown and
//! repeated fields, and list caps, while reading; its errors are [`OriginError::Malformed`],
//! with serde's position. The second, here, checks each raw result against its event and the
//! limits and builds the typed one; its errors are [`OriginError::Invalid`], naming the result
//! and field. Within a result, `null` is the same as an absent field.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine as _};
use bytes::Bytes;
use serde::de::DeserializeSeed;
use serde_json::Value;

use super::raw::{AnswerSeed, RawFilter, RawReply, RawResult, Slot};
use super::{
    default_channel, AnswerLimits, EventKind, OriginError, Reason, SubscribeFilter,
    MAX_META_NAME_BYTES, MAX_META_VALUE_BYTES,
};

/// Standard-alphabet base64 that takes input with or without `=` padding (as the publish API).
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Longest error text quoted from serde, in characters.
const MAX_ERROR_CHARS: usize = 300;

/// A parsed answer: one result per event, in order, and the meta values to set.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Answer {
    /// One per event of the request, in its order.
    pub results: Vec<EventResult>,
    /// JSON `meta`: names (lower-cased) and values to send back as `Meta-<name>` on later
    /// requests of this connection, as WebSocket-over-HTTP's `Set-Meta-*`. An empty value
    /// removes the name.
    pub meta: Vec<(String, String)>,
}

/// The result for one event.
#[derive(Debug, Clone, PartialEq)]
pub enum EventResult {
    /// For a connect.
    Connect(ConnectResult),
    /// For a subscribe.
    Subscribe(SubscribeResult),
    /// For a publish.
    Publish(PublishResult),
    /// For an unsubscribe or a disconnect: whatever the origin wrote is ignored.
    Notified,
}

/// May the device connect?
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectResult {
    /// JSON `allow` (required).
    pub allow: bool,
    /// JSON `reason`: `Some` exactly when `allow` is false (`not-authorized` if the origin
    /// named none).
    pub reason: Option<Reason>,
    /// JSON `message`: text for the v5 CONNACK's reason string (allow or deny).
    pub message: Option<String>,
    /// JSON `client-id` (allow only): the client id to use from now on, e.g. one assigned to
    /// a device that sent an empty one.
    pub client_id: Option<String>,
    /// JSON `keep-alive` (allow only, ≥ 1): the longest keep-alive, in seconds, the device
    /// gets (v5 `server_keep_alive` when it asked for more).
    pub keep_alive: Option<u16>,
    /// JSON `session-expiry` (allow only): the longest time, in seconds, the session may
    /// outlive the connection.
    pub session_expiry: Option<u32>,
    /// JSON `will` (allow only): what happens to the device's will.
    pub will: WillRule,
}

/// What to do with a device's will, from a connect result's `will`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum WillRule {
    /// Absent (or `true`): published, when due, to the channel named by the will's topic.
    #[default]
    Default,
    /// `false`: never published.
    Drop,
    /// `{"channel": "status"}`: published to this channel.
    Channel(String),
}

/// The result for one SUBSCRIBE packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeResult {
    /// JSON `filters` (required): one per filter of the event, in its order.
    pub filters: Vec<FilterResult>,
}

/// The decision on one subscribe filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterResult {
    /// JSON `allow` (required).
    pub allow: bool,
    /// JSON `channels` (allow only, 1 to [`super::MAX_CHANNELS_PER_FILTER`] distinct): the channels
    /// whose items the filter receives. `None`: the filter itself ([`super::default_channel`]);
    /// always `Some` for a wildcard filter.
    pub channels: Option<Vec<String>>,
    /// JSON `qos` (allow only, 0–2): caps the granted QoS.
    pub qos: Option<u8>,
    /// JSON `topic` (allow only): the topic items are delivered under when they carry none.
    pub topic: Option<String>,
    /// JSON `reason`: `Some` exactly when `allow` is false (default `not-authorized`).
    pub reason: Option<Reason>,
}

/// May the device publish this, and what happens to it?
#[derive(Debug, Clone, PartialEq)]
pub struct PublishResult {
    /// JSON `allow` (required).
    pub allow: bool,
    /// JSON `channel` (allow only): where it is published; `None` = the topic.
    pub channel: Option<String>,
    /// JSON `id` (allow only): the item id; `None` = one the server makes.
    pub id: Option<String>,
    /// JSON `publish` (allow only, default true): false accepts the message but publishes
    /// nothing (the origin consumed it); then `channel`, `id` and `formats` are refused.
    pub publish: bool,
    /// JSON `reply` (allow only, at most [`super::MAX_REPLIES`]): packets sent to this device only.
    pub reply: Vec<Reply>,
    /// JSON `formats` (allow only): a GRIP formats object replacing the default ones the
    /// server builds for other transports; checked by the publish parser, not here.
    pub formats: Option<Value>,
    /// JSON `reason`: `Some` exactly when `allow` is false (default `not-authorized`).
    pub reason: Option<Reason>,
}

impl PublishResult {
    /// Whether the result may be reused for later publishes on its topic: not with a reply.
    pub fn cacheable(&self) -> bool {
        self.reply.is_empty()
    }
}

/// A packet sent back to the publishing device only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// JSON `topic` (required): a topic name (no wildcards).
    pub topic: String,
    /// JSON `content` (UTF-8) or `content-bin` (base64); neither is an empty payload.
    pub content: Bytes,
    /// JSON `qos` (0–2, default 0).
    pub qos: u8,
}

/// Reads an origin's answer to a request whose events have these kinds, within the
/// default [`AnswerLimits`].
pub fn parse_answer(body: &[u8], events: &[EventKind<'_>]) -> Result<Answer, OriginError> {
    parse_answer_with(body, events, &AnswerLimits::DEFAULT)
}

/// [`parse_answer`] within the given limits.
///
/// A request of notifications only (unsubscribe, disconnect) may be answered with an empty
/// body or `{}`; any other must have exactly one result per event.
pub fn parse_answer_with(
    body: &[u8],
    events: &[EventKind<'_>],
    limits: &AnswerLimits,
) -> Result<Answer, OriginError> {
    if body.len() > limits.max_body_bytes {
        return Err(OriginError::TooLarge {
            size: body.len(),
            limit: limits.max_body_bytes,
        });
    }
    let notifications_only = events.iter().all(EventKind::is_notification);
    if notifications_only && body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Answer {
            results: vec![EventResult::Notified; events.len()],
            meta: Vec::new(),
        });
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let raw = AnswerSeed { events, limits }
        .deserialize(&mut de)
        .and_then(|raw| de.end().map(|()| raw))
        .map_err(|e| OriginError::Malformed(clip(&e.to_string(), MAX_ERROR_CHARS)))?;
    let meta = check_meta_entries(raw.meta, limits)?;
    let Some((slots, got)) = raw.results else {
        if notifications_only {
            return Ok(Answer {
                results: vec![EventResult::Notified; events.len()],
                meta,
            });
        }
        return Err(OriginError::WrongCount {
            expected: events.len(),
            got: 0,
        });
    };
    if got != events.len() {
        return Err(OriginError::WrongCount {
            expected: events.len(),
            got,
        });
    }
    let results = slots
        .into_iter()
        .zip(events)
        .enumerate()
        .map(|(i, (slot, kind))| {
            let invalid = |problem: String| OriginError::Invalid {
                index: i + 1,
                kind: kind.as_str(),
                problem,
            };
            match slot {
                Slot::Ignored => Ok(EventResult::Notified),
                Slot::Result(raw) => check_result(*raw, kind, limits).map_err(invalid),
            }
        })
        .collect::<Result<_, _>>()?;
    Ok(Answer { results, meta })
}

// ---- second pass: checks ----

fn check_result(
    raw: RawResult,
    kind: &EventKind<'_>,
    limits: &AnswerLimits,
) -> Result<EventResult, String> {
    let allow = raw.allow;
    let fields_of_kind: &[&str] = match kind {
        EventKind::Connect => &[
            "allow",
            "reason",
            "message",
            "client-id",
            "keep-alive",
            "session-expiry",
            "will",
        ],
        EventKind::Subscribe(_) => &["filters"],
        EventKind::Publish => &[
            "allow", "reason", "channel", "id", "publish", "reply", "formats",
        ],
        EventKind::Unsubscribe | EventKind::Disconnect => &[],
    };
    if let Some(field) = raw.present().find(|f| !fields_of_kind.contains(f)) {
        return Err(format!(
            "'{field}' is not a field of a {} result",
            kind.as_str()
        ));
    }
    match kind {
        EventKind::Connect => {
            let allow = allow.ok_or("'allow' is required")?;
            let reason = decision_reason(allow, raw.reason.as_deref(), kind)?;
            if !allow {
                only_with_allow(&[
                    ("client-id", raw.client_id.is_some()),
                    ("keep-alive", raw.keep_alive.is_some()),
                    ("session-expiry", raw.session_expiry.is_some()),
                    ("will", raw.will.is_some()),
                ])?;
            }
            if let Some(message) = &raw.message {
                check_text("message", message, limits.max_message_bytes, true)?;
            }
            if let Some(id) = &raw.client_id {
                check_text("client-id", id, limits.max_name_bytes, false)?;
            }
            if raw.keep_alive == Some(0) {
                return Err("'keep-alive' must be at least 1".into());
            }
            let will = match raw.will {
                None | Some(Value::Bool(true)) => WillRule::Default,
                Some(Value::Bool(false)) => WillRule::Drop,
                Some(Value::Object(mut object)) => {
                    let channel = object.remove("channel");
                    if let Some(key) = object.keys().next() {
                        return Err(format!("'will': unknown field '{key}'"));
                    }
                    let Some(Value::String(channel)) = channel else {
                        return Err("'will': 'channel' must be a string".into());
                    };
                    check_text("will.channel", &channel, limits.max_name_bytes, false)?;
                    WillRule::Channel(channel)
                }
                Some(_) => return Err("'will' must be true, false or {\"channel\": ...}".into()),
            };
            Ok(EventResult::Connect(ConnectResult {
                allow,
                reason,
                message: raw.message,
                client_id: raw.client_id,
                keep_alive: raw.keep_alive,
                session_expiry: raw.session_expiry,
                will,
            }))
        }
        EventKind::Subscribe(filters) => {
            let raws = raw.filters.ok_or("'filters' is required")?;
            if raws.len() != filters.len() {
                return Err(format!(
                    "'filters' has {} entries for {} filters",
                    raws.len(),
                    filters.len()
                ));
            }
            let filters = raws
                .into_iter()
                .zip(filters.iter())
                .enumerate()
                .map(|(i, (raw, asked))| {
                    check_filter(raw, asked, kind, limits)
                        .map_err(|e| format!("filter {} ('{}'): {e}", i + 1, asked.filter))
                })
                .collect::<Result<_, _>>()?;
            Ok(EventResult::Subscribe(SubscribeResult { filters }))
        }
        EventKind::Publish => {
            let allow = allow.ok_or("'allow' is required")?;
            let reason = decision_reason(allow, raw.reason.as_deref(), kind)?;
            if !allow {
                only_with_allow(&[
                    ("channel", raw.channel.is_some()),
                    ("id", raw.id.is_some()),
                    ("publish", raw.publish.is_some()),
                    ("reply", raw.reply.is_some()),
                    ("formats", raw.formats.is_some()),
                ])?;
            }
            let publish = raw.publish.unwrap_or(true);
            if !publish {
                for (field, present) in [
                    ("channel", raw.channel.is_some()),
                    ("id", raw.id.is_some()),
                    ("formats", raw.formats.is_some()),
                ] {
                    if present {
                        return Err(format!("'{field}' is unused when 'publish' is false"));
                    }
                }
            }
            if let Some(channel) = &raw.channel {
                check_text("channel", channel, limits.max_name_bytes, false)?;
            }
            if let Some(id) = &raw.id {
                check_text("id", id, limits.max_name_bytes, false)?;
            }
            if raw.formats.as_ref().is_some_and(|f| !f.is_object()) {
                return Err("'formats' must be an object".into());
            }
            let reply = raw
                .reply
                .unwrap_or_default()
                .into_iter()
                .enumerate()
                .map(|(i, r)| check_reply(r, limits).map_err(|e| format!("reply {}: {e}", i + 1)))
                .collect::<Result<_, _>>()?;
            Ok(EventResult::Publish(PublishResult {
                allow,
                channel: raw.channel,
                id: raw.id,
                publish,
                reply,
                formats: raw.formats,
                reason,
            }))
        }
        EventKind::Unsubscribe | EventKind::Disconnect => Ok(EventResult::Notified),
    }
}

fn check_filter(
    raw: RawFilter,
    asked: &SubscribeFilter,
    kind: &EventKind<'_>,
    limits: &AnswerLimits,
) -> Result<FilterResult, String> {
    let allow = raw.allow.ok_or("'allow' is required")?;
    let reason = decision_reason(allow, raw.reason.as_deref(), kind)?;
    if !allow {
        only_with_allow(&[
            ("channels", raw.channels.is_some()),
            ("qos", raw.qos.is_some()),
            ("topic", raw.topic.is_some()),
        ])?;
    }
    if let Some(channels) = &raw.channels {
        if channels.is_empty() {
            return Err("'channels' is empty (leave it out for the default)".into());
        }
        for (i, channel) in channels.iter().enumerate() {
            check_text("channels", channel, limits.max_name_bytes, false)?;
            if channels[..i].contains(channel) {
                return Err(format!("'channels' names '{channel}' twice"));
            }
        }
    } else if allow && default_channel(&asked.filter).is_none() {
        return Err("a wildcard filter needs 'channels'".into());
    }
    if raw.qos.is_some_and(|q| q > 2) {
        return Err("'qos' must be 0, 1 or 2".into());
    }
    if let Some(topic) = &raw.topic {
        check_topic("topic", topic, limits)?;
    }
    Ok(FilterResult {
        allow,
        channels: raw.channels,
        qos: raw.qos,
        topic: raw.topic,
        reason,
    })
}

fn check_reply(raw: RawReply, limits: &AnswerLimits) -> Result<Reply, String> {
    let topic = raw.topic.ok_or("'topic' is required")?;
    check_topic("topic", &topic, limits)?;
    let content = match (raw.content, raw.content_bin) {
        (Some(_), Some(_)) => return Err("both 'content' and 'content-bin'".into()),
        (Some(text), None) => Bytes::from(text),
        (None, Some(b64)) => Bytes::from(
            LENIENT_BASE64
                .decode(b64)
                .map_err(|e| format!("'content-bin' is not base64: {e}"))?,
        ),
        (None, None) => Bytes::new(),
    };
    let qos = raw.qos.unwrap_or(0);
    if qos > 2 {
        return Err("'qos' must be 0, 1 or 2".into());
    }
    Ok(Reply {
        topic,
        content,
        qos,
    })
}

/// The reason of a decision: none with an allow, a known one valid for the event with a deny.
fn decision_reason(
    allow: bool,
    reason: Option<&str>,
    kind: &EventKind<'_>,
) -> Result<Option<Reason>, String> {
    match (allow, reason) {
        (true, None) => Ok(None),
        (true, Some(_)) => Err("'reason' is only for 'allow': false".into()),
        (false, None) => Ok(Some(Reason::NotAuthorized)),
        (false, Some(name)) => match Reason::from_name(name) {
            Some(r) if r.allowed_for(kind) => Ok(Some(r)),
            Some(r) => Err(format!(
                "reason '{r}' is not one a {} can have",
                kind.as_str()
            )),
            None => Err(format!("unknown reason '{}'", quote(name))),
        },
    }
}

fn only_with_allow(fields: &[(&str, bool)]) -> Result<(), String> {
    match fields.iter().find(|(_, present)| *present) {
        Some((field, _)) => Err(format!("'{field}' is only for 'allow': true")),
        None => Ok(()),
    }
}

/// A name or text: within `max` bytes, no control characters, non-empty unless allowed.
fn check_text(field: &str, s: &str, max: usize, may_be_empty: bool) -> Result<(), String> {
    if s.is_empty() && !may_be_empty {
        return Err(format!("'{field}' is empty"));
    }
    if s.len() > max {
        return Err(format!("'{field}' is {} bytes, over {max}", s.len()));
    }
    if s.chars().any(char::is_control) {
        return Err(format!("'{field}' has a control character"));
    }
    Ok(())
}

/// A topic name the server may send: a valid name with no wildcard characters.
fn check_topic(field: &str, s: &str, limits: &AnswerLimits) -> Result<(), String> {
    check_text(field, s, limits.max_name_bytes, false)?;
    if s.contains(['+', '#']) {
        return Err(format!("'{field}' has a wildcard character"));
    }
    Ok(())
}

/// A short, printable rendering of an origin-supplied string for an error message.
fn quote(s: &str) -> String {
    clip(s, 40)
}

/// At most `max` characters of `s`, control characters escaped, `…` if cut: error texts
/// (serde's quote the origin's field names and values) stay short and safe to log.
fn clip(s: &str, max: usize) -> String {
    let mut out = String::new();
    for c in s.chars().take(max) {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if s.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

/// The meta entries checked, names lower-cased.
fn check_meta_entries(
    (entries, count): (Vec<(String, String)>, usize),
    limits: &AnswerLimits,
) -> Result<Vec<(String, String)>, OriginError> {
    if count > limits.max_meta_entries {
        return Err(OriginError::Meta(format!(
            "{count} entries, over {}",
            limits.max_meta_entries
        )));
    }
    let mut out: Vec<(String, String)> = Vec::with_capacity(entries.len());
    for (name, value) in entries {
        let name = check_meta(name, &value).map_err(OriginError::Meta)?;
        if out.iter().any(|(n, _)| *n == name) {
            return Err(OriginError::Meta(format!("'{name}' appears twice")));
        }
        out.push((name, value));
    }
    Ok(out)
}

/// A meta name becomes a header name (`Meta-<name>`) and its value a header value: the name
/// must be an HTTP token (lower-cased here), the value visible ASCII, spaces and tabs.
fn check_meta(name: String, value: &str) -> Result<String, String> {
    const TCHAR: &[u8] = b"!#$%&'*+-.^_`|~";
    if name.is_empty()
        || name.len() > MAX_META_NAME_BYTES
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || TCHAR.contains(&b))
    {
        return Err(format!(
            "name '{}' is not an HTTP token of 1 to {MAX_META_NAME_BYTES} bytes",
            quote(&name)
        ));
    }
    if value.len() > MAX_META_VALUE_BYTES {
        return Err(format!(
            "'{name}': value is over {MAX_META_VALUE_BYTES} bytes"
        ));
    }
    if !value
        .bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
    {
        return Err(format!(
            "'{name}': value must be visible ASCII, spaces and tabs"
        ));
    }
    Ok(name.to_ascii_lowercase())
}
