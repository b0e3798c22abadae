//! A published item as the broker carries it — and as history keeps it, so it is kept small:
//! the bytes that go on the wire are its representation, encoded once at [`Message::new`] and
//! then shared by every subscriber of that transport (one `Bytes`, reference-counted, never
//! copied), with no second copy of the content beside them.
//!
//! Layout (88 bytes inline, plus the `Arc`'s two counts):
//! * `channel`, shared with every other message of the channel once its shard has seen it
//!   ([`crate::names`]);
//! * `id`;
//! * `wire`, the main encoding: the `http-stream` content as one HTTP/1.1 chunk when the item
//!   streams content, otherwise its `ws-message` frame, otherwise empty (which one is kept in
//!   a byte beside it, and also shows in its first byte: a chunk starts with a hex digit,
//!   a server WebSocket frame with its FIN bit set);
//! * `rare`, boxed, only for what a typical item lacks: `prev-id`, `meta`, `no-seq`, the
//!   `ws-message` frame of an item that also streams, and (boxed again) the formats' full
//!   description whenever they are not the simple shape — `send` in `http-stream`,
//!   `ws-message` or both, with no content filters and no `http-response` — which is read
//!   from the frames alone;
//! * `lazy`, encodings made on first use only, in one box: the bare content for streams that
//!   are not chunked (a slice of the chunk, sharing its buffer) and the permessage-deflate
//!   frame;
//! * its [`Message::cost`], computed once.
//!
//! Invariant: a `Message` is immutable once built; the lazily filled encodings are pure
//! functions of it, so whichever subscriber fills one first, all see the same bytes.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use gripway_proto::chunked::encode_chunk;
use gripway_proto::publish::{
    Formats, HttpResponseAction, HttpResponseFormat, HttpStreamAction, HttpStreamFormat, Item,
    ResponseBody, WsAction, WsKind, WsMessageFormat,
};
use gripway_proto::ws_deflate::{compressed_message_frame, MIN_COMPRESS_BYTES};
use gripway_proto::ws_frame::{encode_close, encode_frame, FrameKind};
use once_cell::race::OnceBox;

/// A channel name, shared between the registry, the dispatcher and every message on it.
pub type ChannelName = Arc<str>;

/// One published item, ready for fan-out.
#[derive(Debug)]
pub struct Message {
    /// The channel it was published to (route prefixes already part of the name).
    pub channel: ChannelName,
    /// The publisher's id for this item, used for dedup and ordering.
    pub id: Option<Arc<str>>,
    /// The main encoding (see the module's doc).
    wire: Bytes,
    /// What a typical item lacks.
    rare: Option<Box<Rare>>,
    /// Encodings made on first use (one pointer; two racing first users both make it and
    /// one result is kept, which is harmless: it is a pure function of the message).
    lazy: OnceBox<Lazy>,
    /// [`Message::cost`], saturated.
    cost: u32,
    /// What `wire` holds (also told by its first byte; kept here so that neither the
    /// fan-out's checks nor `cost` touch the buffer).
    kind: Wire,
}

/// What an `http-stream` item does (its content, when it sends some, is
/// [`Message::stream_chunk`] or [`Message::stream_content`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamAction {
    /// Append the content to each held stream (nothing, when the content is empty).
    Send,
    /// End each held stream.
    Close,
    /// Content must be fetched: follow the stream's `next` link.
    Hint,
}

/// A message's `http-stream` format.
#[derive(Debug, Clone, Copy)]
pub struct StreamFormat<'a> {
    /// What to do to each stream subscriber.
    pub action: StreamAction,
    /// Content filters to run on the content, in order.
    pub content_filters: &'a [String],
}

/// What a `ws-message` item does (a `send`'s frame is [`Message::ws_frame`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsOp<'a> {
    /// Send one message of this kind.
    Send(WsKind),
    /// Close the connection.
    Close {
        /// The close code, if any.
        code: Option<u16>,
        /// The close reason (may be empty).
        reason: &'a str,
    },
    /// WebSocket-over-HTTP: make a fresh request to the origin.
    Refresh,
    /// Does nothing.
    Hint,
}

/// A message's `ws-message` format.
#[derive(Debug, Clone, Copy)]
pub struct WsFormat<'a> {
    /// What to do to each WebSocket subscriber.
    pub action: WsOp<'a>,
    /// Content filters to run on the content, in order.
    pub content_filters: &'a [String],
}

/// The parts of an item that a typical one lacks.
#[derive(Debug)]
struct Rare {
    prev_id: Option<Arc<str>>,
    meta: Box<[(String, String)]>,
    /// The `ws-message` frame when `wire` holds the stream's chunk.
    ws_frame: Option<Bytes>,
    /// The formats, when they are not the simple shape the frames describe alone.
    shape: Option<Box<Shape>>,
    /// Heap bytes of this box and what it holds.
    heap: u32,
    no_seq: bool,
}

/// Every format in full.
#[derive(Debug)]
struct Shape {
    stream: Option<StreamAction>,
    ws: Option<RareWs>,
    filters: Option<Box<Filters>>,
    response: Option<Box<HttpResponseFormat>>,
}

/// Content filters, per format.
#[derive(Debug)]
struct Filters {
    stream: Vec<String>,
    ws: Vec<String>,
}

#[derive(Debug)]
enum RareWs {
    Send(WsKind),
    Close { code: Option<u16>, reason: Box<str> },
    Refresh,
    Hint,
}

/// Encodings made on first use.
#[derive(Debug)]
struct Lazy {
    /// The stream content without its chunk framing (a slice of `wire`).
    content: Option<Bytes>,
    /// The permessage-deflate frame, when compressing makes the message smaller.
    deflated: OnceLock<Option<Bytes>>,
    /// For routes with `sse_id`: the content with an SSE `id:` line from the item id in
    /// front, as a chunk and raw (a slice of the chunk); None when the content has an `id:`
    /// line already or the item has no id.
    sse_id: OnceLock<Option<Box<(Bytes, Bytes)>>>,
}

/// What `wire` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    Empty,
    Chunk,
    WsFrame,
}

impl Wire {
    /// Told by the first byte: a chunk starts with a hex digit, a server WebSocket frame with
    /// its FIN bit.
    fn of(wire: &[u8]) -> Wire {
        match wire.first() {
            None => Wire::Empty,
            Some(b) if *b < 0x80 => Wire::Chunk,
            Some(_) => Wire::WsFrame,
        }
    }
}

/// Heap bytes an `Arc<str>` of `s` owns: the two reference counts and the text, padded to
/// the counts' alignment (the size the allocator is asked for).
pub fn str_heap(s: &str) -> usize {
    let word = std::mem::size_of::<usize>();
    (2 * word + s.len()).next_multiple_of(word)
}

/// The header a `Bytes` buffer gets when it is first cloned or sliced (its reference count):
/// counted for every kept encoding, since a subscriber that queues one clones it.
const BYTES_SHARED: usize = 3 * std::mem::size_of::<usize>();

/// What a `body-patch` is counted as while a message waits (its operations are not sized
/// one by one; the publish API bounds them).
const PATCH_ESTIMATE: usize = 4096;

fn filters_heap(filters: &[String]) -> usize {
    filters.iter().map(|c| c.len() + 24).sum()
}

fn response_heap(r: &HttpResponseFormat) -> usize {
    let message = match &r.action {
        HttpResponseAction::Send(m) => {
            let body = match &m.body {
                ResponseBody::Bytes(b) => b.len(),
                ResponseBody::Patch(_) => PATCH_ESTIMATE,
            };
            body + m.reason.as_ref().map_or(0, String::len)
                + m.headers
                    .iter()
                    .map(|(k, v)| k.len() + v.len() + 48)
                    .sum::<usize>()
        }
        HttpResponseAction::Hint => 0,
    };
    message + filters_heap(&r.content_filters)
}

/// The kind of a server WebSocket data or control frame, from its first byte.
fn ws_kind(first: u8) -> WsKind {
    match first & 0x0f {
        0x1 => WsKind::Text,
        0x9 => WsKind::Ping,
        0xa => WsKind::Pong,
        _ => WsKind::Binary,
    }
}

fn frame_kind(kind: WsKind) -> FrameKind {
    match kind {
        WsKind::Text => FrameKind::Text,
        WsKind::Binary => FrameKind::Binary,
        WsKind::Ping => FrameKind::Ping,
        WsKind::Pong => FrameKind::Pong,
    }
}

/// Length of the header of an unmasked WebSocket frame.
fn ws_header_len(frame: &[u8]) -> usize {
    match frame.get(1).map(|b| b & 0x7f) {
        Some(126) => 4,
        Some(127) => 10,
        _ => 2,
    }
}

/// Where the content sits in a chunk (`<hex len>\r\n<content>\r\n`).
fn chunk_content(chunk: &[u8]) -> std::ops::Range<usize> {
    let digits = chunk.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    (digits + 2).min(chunk.len())..chunk.len().saturating_sub(2)
}

impl Message {
    /// Wraps a validated publish item, encoding its wire forms.
    pub fn new(item: Item) -> Arc<Message> {
        let Item {
            channel,
            id,
            prev_id,
            meta,
            no_seq,
            formats,
        } = item;
        let (stream, ws, response) = (
            formats.http_stream,
            formats.ws_message,
            formats.http_response,
        );
        let chunk = match &stream {
            Some(HttpStreamFormat {
                action: HttpStreamAction::Send(content),
                ..
            }) if !content.is_empty() => Some(encode_chunk(content)),
            _ => None,
        };
        let ws_frame = ws.as_ref().and_then(|w| match &w.action {
            WsAction::Send { kind, content } => {
                Some(encode_frame(frame_kind(*kind), content.clone()))
            }
            WsAction::Close { code, reason } => Some(encode_close(*code, reason)),
            WsAction::Refresh | WsAction::Hint => None,
        });
        let simple_stream = |s: &HttpStreamFormat| s.content_filters.is_empty() && chunk.is_some();
        let simple_ws = |w: &WsMessageFormat| {
            w.content_filters.is_empty() && matches!(w.action, WsAction::Send { .. })
        };
        let simple = response.is_none()
            && stream.is_some() | ws.is_some()
            && stream.as_ref().is_none_or(simple_stream)
            && ws.as_ref().is_none_or(simple_ws);
        let (wire, ws_frame) = match chunk {
            Some(chunk) => (chunk, ws_frame),
            None => (ws_frame.unwrap_or_default(), None),
        };
        let shape = (!simple).then(|| Box::new(Shape::new(stream, ws, response)));
        let rare = (prev_id.is_some()
            || !meta.is_empty()
            || no_seq
            || ws_frame.is_some()
            || shape.is_some())
        .then(|| {
            let mut rare = Rare {
                prev_id: prev_id.as_deref().map(Arc::from),
                meta: meta.into_boxed_slice(),
                ws_frame,
                shape,
                heap: 0,
                no_seq,
            };
            rare.heap = u32::try_from(rare.measure()).unwrap_or(u32::MAX);
            Box::new(rare)
        });
        let mut msg = Message {
            channel: Arc::from(channel.as_str()),
            id: id.as_deref().map(Arc::from),
            kind: Wire::of(&wire),
            wire,
            rare,
            lazy: OnceBox::new(),
            cost: 0,
        };
        msg.cost = u32::try_from(msg.measure()).unwrap_or(u32::MAX);
        Arc::new(msg)
    }

    /// Bytes the message holds on the heap — itself, its id and encodings, its rare parts,
    /// and the permessage-deflate frame the first such subscriber may add — for bounds on
    /// what waits and what history keeps. The channel name is shared and not counted (its
    /// holders count it once); nor is the bare content a non-chunked stream may slice out.
    /// Computed once (reading it touches nothing outside the message itself).
    pub fn cost(&self) -> usize {
        self.cost as usize
    }

    fn measure(&self) -> usize {
        let mut cost = std::mem::size_of::<Message>()
            + 2 * std::mem::size_of::<usize>()
            + self.id.as_deref().map_or(0, str_heap);
        if !self.wire.is_empty() {
            cost += self.wire.len() + BYTES_SHARED;
        }
        if let Some(rare) = &self.rare {
            cost += rare.heap as usize;
        }
        if let Some(len) = self.deflatable().map(|(_, payload)| payload.len()) {
            cost += std::mem::size_of::<Lazy>() + len;
        }
        cost
    }

    fn wire_kind(&self) -> Wire {
        self.kind
    }

    fn shape(&self) -> Option<&Shape> {
        self.rare.as_ref()?.shape.as_deref()
    }

    fn lazy(&self) -> &Lazy {
        self.lazy.get_or_init(|| {
            Box::new(Lazy {
                content: (self.wire_kind() == Wire::Chunk)
                    .then(|| self.wire.slice(chunk_content(&self.wire))),
                deflated: OnceLock::new(),
                sse_id: OnceLock::new(),
            })
        })
    }

    /// The id of the item the publisher says came before this one on the channel.
    pub fn prev_id(&self) -> Option<&Arc<str>> {
        self.rare.as_ref()?.prev_id.as_ref()
    }

    /// True when the publisher asked to bypass ordering (`no-seq`).
    pub fn no_seq(&self) -> bool {
        self.rare.as_ref().is_some_and(|r| r.no_seq)
    }

    /// Publisher metadata, read by subscription filters (`skip-self`, `skip-users`, ...).
    pub fn meta(&self) -> &[(String, String)] {
        self.rare.as_ref().map_or(&[], |r| &r.meta)
    }

    /// The value of a publisher meta field, if set.
    pub fn meta_value(&self, name: &str) -> Option<&str> {
        self.meta()
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The `http-stream` format, for stream holds.
    pub fn http_stream(&self) -> Option<StreamFormat<'_>> {
        match self.shape() {
            Some(shape) => shape.stream.map(|action| StreamFormat {
                action,
                content_filters: shape.filters.as_ref().map_or(&[], |f| &f.stream),
            }),
            None => (self.wire_kind() == Wire::Chunk).then_some(StreamFormat {
                action: StreamAction::Send,
                content_filters: &[],
            }),
        }
    }

    /// The `http-response` format, for response holds (long-polling).
    pub fn http_response(&self) -> Option<&HttpResponseFormat> {
        self.shape()?.response.as_deref()
    }

    /// The `ws-message` format, for WebSocket connections.
    pub fn ws_message(&self) -> Option<WsFormat<'_>> {
        match self.shape() {
            Some(shape) => shape.ws.as_ref().map(|op| WsFormat {
                action: match op {
                    RareWs::Send(kind) => WsOp::Send(*kind),
                    RareWs::Close { code, reason } => WsOp::Close {
                        code: *code,
                        reason,
                    },
                    RareWs::Refresh => WsOp::Refresh,
                    RareWs::Hint => WsOp::Hint,
                },
                content_filters: shape.filters.as_ref().map_or(&[], |f| &f.ws),
            }),
            None => self.ws_frame().map(|frame| WsFormat {
                action: WsOp::Send(ws_kind(frame[0])),
                content_filters: &[],
            }),
        }
    }

    /// The `http-stream` content to append to a stream, if this message sends any.
    /// Empty content is treated as nothing to send (an empty chunk would end the body).
    /// The first call makes it (a slice of [`Message::stream_chunk`], no copy).
    pub fn stream_content(&self) -> Option<&Bytes> {
        if self.wire_kind() != Wire::Chunk {
            return None;
        }
        self.lazy().content.as_ref()
    }

    /// [`Message::stream_chunk`] (`chunked`) or [`Message::stream_content`], with an SSE
    /// `id: <item id>` line in front when the content has no `id:` line of its own (the
    /// route option `sse_id`); built once and shared by every such subscriber.
    pub fn stream_with_sse_id(&self, chunked: bool) -> Option<&Bytes> {
        let with_id = self
            .lazy()
            .sse_id
            .get_or_init(|| {
                let id = self.id.as_deref()?;
                let content = self.stream_content()?;
                let has_id_line =
                    content.starts_with(b"id:") || content.windows(4).any(|w| w == b"\nid:");
                if has_id_line || id.contains(['\n', '\r']) {
                    return None;
                }
                let mut event = Vec::with_capacity(id.len() + 5 + content.len());
                event.extend_from_slice(b"id: ");
                event.extend_from_slice(id.as_bytes());
                event.push(b'\n');
                event.extend_from_slice(content);
                let chunk = encode_chunk(&event);
                let raw = chunk.slice(chunk_content(&chunk));
                Some(Box::new((chunk, raw)))
            })
            .as_deref();
        match (with_id, chunked) {
            (Some((chunk, _)), true) => Some(chunk),
            (Some((_, raw)), false) => Some(raw),
            (None, true) => self.stream_chunk(),
            (None, false) => self.stream_content(),
        }
    }

    /// The `http-stream` content as one HTTP/1.1 chunk (`<hex len>\r\n<content>\r\n`),
    /// encoded once and shared by every chunked stream subscriber.
    pub fn stream_chunk(&self) -> Option<&Bytes> {
        (self.wire_kind() == Wire::Chunk).then_some(&self.wire)
    }

    /// The `ws-message` as one unmasked WebSocket frame — for `send` the message (text,
    /// binary, ping or pong), for `close` the close frame — encoded once and shared by every
    /// WebSocket subscriber. None for other actions or when there is no `ws-message`.
    pub fn ws_frame(&self) -> Option<&Bytes> {
        match self.wire_kind() {
            Wire::WsFrame => Some(&self.wire),
            _ => self.rare.as_ref()?.ws_frame.as_ref(),
        }
    }

    /// The publish item this message was built from, rebuilt from its parts (for a store
    /// that writes items out, and for `GET /history`); equal to the original item as the
    /// publish parser reads it back.
    pub fn to_item(&self) -> Item {
        let stream = self.http_stream().map(|f| HttpStreamFormat {
            action: match f.action {
                StreamAction::Send => {
                    HttpStreamAction::Send(self.stream_content().cloned().unwrap_or_default())
                }
                StreamAction::Close => HttpStreamAction::Close,
                StreamAction::Hint => HttpStreamAction::Hint,
            },
            content_filters: f.content_filters.to_vec(),
        });
        let ws = self.ws_message().map(|f| WsMessageFormat {
            action: match f.action {
                WsOp::Send(kind) => WsAction::Send {
                    kind,
                    content: self.ws_content().unwrap_or_default(),
                },
                WsOp::Close { code, reason } => WsAction::Close {
                    code,
                    reason: reason.to_string(),
                },
                WsOp::Refresh => WsAction::Refresh,
                WsOp::Hint => WsAction::Hint,
            },
            content_filters: f.content_filters.to_vec(),
        });
        Item {
            channel: self.channel.to_string(),
            id: self.id.as_deref().map(str::to_owned),
            prev_id: self.prev_id().map(|p| p.to_string()),
            meta: self.meta().to_vec(),
            no_seq: self.no_seq(),
            formats: Formats {
                http_stream: stream,
                http_response: self.http_response().cloned(),
                ws_message: ws,
            },
        }
    }

    /// The content of a `ws-message` `send` (a slice of its frame, no copy), for a
    /// subscriber that transforms it (content filters); None for other actions.
    pub fn ws_content(&self) -> Option<Bytes> {
        match self.ws_message()?.action {
            WsOp::Send(_) => {
                let frame = self.ws_frame()?;
                Some(frame.slice(ws_header_len(frame).min(frame.len())..))
            }
            _ => None,
        }
    }

    /// A text or binary message that a permessage-deflate connection may get compressed:
    /// whether it is binary, and its payload (long enough to be worth compressing).
    fn deflatable(&self) -> Option<(bool, &[u8])> {
        let binary = match self.ws_message()?.action {
            WsOp::Send(WsKind::Text) => false,
            WsOp::Send(WsKind::Binary) => true,
            _ => return None,
        };
        let frame = self.ws_frame()?;
        let payload = &frame[ws_header_len(frame).min(frame.len())..];
        (payload.len() >= MIN_COMPRESS_BYTES).then_some((binary, payload))
    }

    /// As [`Message::ws_frame`] for a connection with permessage-deflate: text and binary
    /// messages compressed once (when that makes them smaller), shared by every such
    /// connection; otherwise the plain frame itself (control frames are never compressed).
    pub fn ws_frame_deflated(&self) -> Option<&Bytes> {
        let plain = self.ws_frame()?;
        let Some((binary, payload)) = self.deflatable() else {
            return Some(plain);
        };
        let deflated = self
            .lazy()
            .deflated
            .get_or_init(|| compressed_message_frame(binary, payload));
        Some(deflated.as_ref().unwrap_or(plain))
    }
}

impl Rare {
    fn measure(&self) -> usize {
        std::mem::size_of::<Rare>()
            + self.prev_id.as_deref().map_or(0, str_heap)
            + self
                .meta
                .iter()
                .map(|(k, v)| k.len() + v.len() + 48)
                .sum::<usize>()
            + self.ws_frame.as_ref().map_or(0, |f| f.len() + BYTES_SHARED)
            + self.shape.as_deref().map_or(0, Shape::heap)
    }
}

impl Shape {
    fn new(
        stream: Option<HttpStreamFormat>,
        ws: Option<WsMessageFormat>,
        response: Option<HttpResponseFormat>,
    ) -> Shape {
        let mut filters = Filters {
            stream: Vec::new(),
            ws: Vec::new(),
        };
        let stream = stream.map(|s| {
            filters.stream = s.content_filters;
            match s.action {
                HttpStreamAction::Send(_) => StreamAction::Send,
                HttpStreamAction::Close => StreamAction::Close,
                HttpStreamAction::Hint => StreamAction::Hint,
            }
        });
        let ws = ws.map(|w| {
            filters.ws = w.content_filters;
            match w.action {
                WsAction::Send { kind, .. } => RareWs::Send(kind),
                WsAction::Close { code, reason } => RareWs::Close {
                    code,
                    reason: reason.into_boxed_str(),
                },
                WsAction::Refresh => RareWs::Refresh,
                WsAction::Hint => RareWs::Hint,
            }
        });
        let filters =
            (!filters.stream.is_empty() || !filters.ws.is_empty()).then(|| Box::new(filters));
        Shape {
            stream,
            ws,
            filters,
            response: response.map(Box::new),
        }
    }

    fn heap(&self) -> usize {
        std::mem::size_of::<Shape>()
            + self.filters.as_ref().map_or(0, |f| {
                std::mem::size_of::<Filters>() + filters_heap(&f.stream) + filters_heap(&f.ws)
            })
            + match &self.ws {
                Some(RareWs::Close { reason, .. }) => reason.len(),
                _ => 0,
            }
            + self.response.as_deref().map_or(0, |r| {
                std::mem::size_of::<HttpResponseFormat>() + response_heap(r)
            })
    }
}

#[cfg(test)]
#[path = "message_tests.rs"]
mod tests;
