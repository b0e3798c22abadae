//! Published items: the body of `POST /publish/` (Pushpin's API) and of
//! `POST /service/{id}/publish/` (Fastly Fanout's), parsed into [`Item`]s, encoded back to
//! JSON, and the `body-patch` JSON Patch that an `http-response` item may carry. Besides
//! GRIP's three formats an item may carry Gripway's `mqtt-message` (`mqtt.rs`), and
//! `mqtt_item.rs` builds the item an MQTT device's PUBLISH becomes.
//!
//! Invariants of every [`Item`] that [`parse_publish_body`] returns:
//! * `channel` is non-empty, within [`PublishLimits::max_channel_bytes`], and has no control
//!   characters; `id` and `prev_id` are within [`PublishLimits::max_id_bytes`] with no
//!   control characters either (they travel back to origins in `Grip-Last` headers).
//! * at least one of the four formats is present, and each carries only an action that
//!   format allows;
//! * every content or body is at most [`PublishLimits::max_content_bytes`] long (after
//!   base64 decoding), and response headers, reasons and WebSocket close reasons are safe to
//!   put on the wire as they are (no CR, LF or other control characters);
//! * an `mqtt-message` is one MQTT can carry: its topic and response topic are valid topic
//!   names, its strings hold no NUL and fit MQTT's 2-byte lengths, it has at most
//!   [`MAX_META_ENTRIES`] user properties, and a payload marked UTF-8 is UTF-8
//!   ([`MqttMessageFormat::problem`]).
//!
//! A request is all-or-nothing: the first problem found (in document order) is returned and
//! no item is. Keys this model does not know are ignored, so extensions from Pushpin, Fanout
//! or client libraries pass through. A key that appears twice in one object is an error,
//! because two parsers could disagree about which one counts.

mod de;
mod encode;
mod mqtt;
mod mqtt_item;

pub use encode::FormatsJson;
pub use mqtt::{mqtt_topic_problem, MqttMessageFormat, MqttProperties, MAX_MQTT_STRING_BYTES};
pub use mqtt_item::{device_item, sse_event, DevicePublish, StreamForm};
pub mod patch;
#[cfg(test)]
mod tests;

use bytes::Bytes;

pub use patch::{JsonPatch, JsonPointer, PatchError, PatchOp, PointerError};

/// Most `meta` entries one item may carry.
pub const MAX_META_ENTRIES: usize = 64;
/// Longest `meta` key, in bytes.
pub const MAX_META_KEY_BYTES: usize = 256;
/// Longest `meta` value, in bytes.
pub const MAX_META_VALUE_BYTES: usize = 4096;
/// Most headers one `http-response` format may set.
pub const MAX_RESPONSE_HEADERS: usize = 100;
/// Longest response header, name and value together, in bytes.
pub const MAX_HEADER_BYTES: usize = 8192;
/// Longest `http-response` reason phrase, in bytes.
pub const MAX_REASON_BYTES: usize = 512;
/// Most `content-filters` entries one format may list.
pub const MAX_CONTENT_FILTERS: usize = 32;
/// Longest `content-filters` entry, in bytes.
pub const MAX_CONTENT_FILTER_BYTES: usize = 256;
/// Largest payload of a WebSocket ping or pong (a control frame, RFC 6455 §5.5).
pub const MAX_CONTROL_FRAME_PAYLOAD: usize = 125;
/// Longest WebSocket close reason: a close frame's 125-byte payload less the 2-byte code.
pub const MAX_CLOSE_REASON_BYTES: usize = 123;

/// Bounds applied while parsing a publish body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishLimits {
    /// Largest content or body of one format, in bytes after base64 decoding (Fanout's
    /// documented default is 32,767). Over it is [`PublishErrorKind::TooLarge`].
    pub max_content_bytes: usize,
    /// Most items in one request. Over it is [`PublishErrorKind::TooLarge`].
    pub max_items: usize,
    /// Longest channel name, in bytes.
    pub max_channel_bytes: usize,
    /// Longest `id` or `prev-id`, in bytes.
    pub max_id_bytes: usize,
}

impl Default for PublishLimits {
    fn default() -> Self {
        Self {
            max_content_bytes: 32_767,
            max_items: 10_000,
            max_channel_bytes: 1024,
            max_id_bytes: 1024,
        }
    }
}

/// Parses a publish request body (`{"items": [...]}`) into items, validating everything
/// the model's invariants promise. An empty `items` array is valid and yields no items.
pub fn parse_publish_body(body: &[u8], limits: &PublishLimits) -> Result<Vec<Item>, PublishError> {
    de::parse(body, limits)
}

/// Encodes items as a publish body, `{"items": [...]}`, that [`parse_publish_body`] reads
/// back to equal items. Content that is not UTF-8 is written as a base64 `*-bin` field.
///
/// Items should be valid ones (as the parser returns); an invalid one, such as a text
/// WebSocket message whose content is not UTF-8, encodes to a body the parser rejects.
pub fn encode_items(items: &[Item]) -> Vec<u8> {
    encode::encode(items)
}

/// One published message for one channel, in up to four transport formats.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// The channel to publish to.
    pub channel: String,
    /// Publisher-chosen identifier, for de-duplication, sequencing and `Grip-Last`.
    pub id: Option<String>,
    /// The `id` of the item published to this channel just before this one (sequencing).
    pub prev_id: Option<String>,
    /// String metadata that subscription filters (`Grip-Set-Meta`, `filter=`) match against,
    /// in document order with unique keys.
    pub meta: Vec<(String, String)>,
    /// Deliver at once, bypassing the sequencing buffer.
    pub no_seq: bool,
    /// The message for each kind of subscriber; at least one is present.
    pub formats: Formats,
}

/// The representations of one item; each reaches only subscribers of its transport.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Formats {
    /// For stream holds (`Grip-Hold: stream`, e.g. server-sent events).
    pub http_stream: Option<HttpStreamFormat>,
    /// For response holds (long-polling).
    pub http_response: Option<HttpResponseFormat>,
    /// For WebSocket connections.
    pub ws_message: Option<WsMessageFormat>,
    /// For MQTT devices (Gripway's own format; without it a device gets the `ws-message`
    /// or `http-stream` content).
    pub mqtt_message: Option<MqttMessageFormat>,
}

impl Formats {
    /// True when no format is present.
    pub fn is_empty(&self) -> bool {
        self.http_stream.is_none()
            && self.http_response.is_none()
            && self.ws_message.is_none()
            && self.mqtt_message.is_none()
    }
}

/// The `http-stream` format.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpStreamFormat {
    /// What to do to each stream subscriber.
    pub action: HttpStreamAction,
    /// Content filters to run on the content (`content-filters`), in order.
    pub content_filters: Vec<String>,
}

/// What an `http-stream` item does.
#[derive(Debug, Clone, PartialEq)]
pub enum HttpStreamAction {
    /// Append these bytes to each held stream. The content may be empty; the server must
    /// then write nothing, because an empty chunk would end a chunked response.
    Send(Bytes),
    /// End each held stream.
    Close,
    /// Content must be fetched: follow the stream's `next` link (`Grip-Link`).
    Hint,
}

/// The `http-response` format.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpResponseFormat {
    /// What to do to each held response.
    pub action: HttpResponseAction,
    /// Content filters to run on the body (`content-filters`), in order.
    pub content_filters: Vec<String>,
}

/// What an `http-response` item does.
#[derive(Debug, Clone, PartialEq)]
pub enum HttpResponseAction {
    /// Answer each held request with this response.
    Send(ResponseMessage),
    /// Content must be fetched: retry the held request against the origin.
    Hint,
}

/// The response an `http-response` send delivers. Its headers are layered over the held
/// request's timeout response. The server sets the framing itself: it must drop any
/// `Content-Length`, `Transfer-Encoding` and `Connection` given here.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponseMessage {
    /// Status code, 0–999 as Pushpin accepts (default 200); codes below 100 are not valid
    /// HTTP status codes and the server has to decide what to send for them.
    pub code: u16,
    /// Reason phrase; `None` (also for an empty one) means the code's standard phrase.
    pub reason: Option<String>,
    /// Header names (RFC 9110 tokens) and values (no CR, LF or other controls), in order.
    pub headers: Vec<(String, String)>,
    /// The body, or a patch for the held request's timeout-response body.
    pub body: ResponseBody,
}

/// The body of a [`ResponseMessage`].
#[derive(Debug, Clone, PartialEq)]
pub enum ResponseBody {
    /// This exact body.
    Bytes(Bytes),
    /// Apply this patch to the held request's timeout-response body (which must be JSON).
    Patch(JsonPatch),
}

/// The `ws-message` format.
#[derive(Debug, Clone, PartialEq)]
pub struct WsMessageFormat {
    /// What to do to each WebSocket subscriber.
    pub action: WsAction,
    /// Content filters to run on the content (`content-filters`), in order.
    pub content_filters: Vec<String>,
}

/// What a `ws-message` item does.
#[derive(Debug, Clone, PartialEq)]
pub enum WsAction {
    /// Send one message. Text content is valid UTF-8; ping and pong content is at most
    /// [`MAX_CONTROL_FRAME_PAYLOAD`] bytes.
    Send { kind: WsKind, content: Bytes },
    /// Close the connection. `code` is in 1000–4999 but never 1004, 1005, 1006 or 1015;
    /// `reason` is at most [`MAX_CLOSE_REASON_BYTES`] (when it is non-empty and `code` is
    /// `None`, the server has to send a code with it, normally 1000).
    Close { code: Option<u16>, reason: String },
    /// WebSocket-over-HTTP: make a fresh request to the origin for the connection.
    Refresh,
    /// Accepted for symmetry with the other formats; does nothing.
    Hint,
}

/// The frame type of a [`WsAction::Send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsKind {
    /// A TEXT message.
    Text,
    /// A BINARY message.
    Binary,
    /// A PING control frame.
    Ping,
    /// A PONG control frame.
    Pong,
}

/// Whether a publish request was malformed or too big.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishErrorKind {
    /// Malformed: answer HTTP 400.
    Invalid,
    /// A content or body over [`PublishLimits::max_content_bytes`], or too many items:
    /// answer HTTP 413.
    TooLarge,
}

/// Why a publish body was rejected. The message names the field, e.g.
/// `items[2].formats.http-stream: needs 'content' or 'content-bin'`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PublishError {
    /// Malformed or too large.
    pub kind: PublishErrorKind,
    /// Index of the item at fault, when one is.
    pub item: Option<usize>,
    /// A sentence for the publisher, starting with the path of the field at fault.
    pub message: String,
}

impl PublishError {
    /// The HTTP status to answer with: 400 or 413.
    pub fn http_status(&self) -> u16 {
        match self.kind {
            PublishErrorKind::Invalid => 400,
            PublishErrorKind::TooLarge => 413,
        }
    }
}
