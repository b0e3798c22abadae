//! A published item as the broker carries it — and as history keeps it, so it is kept small:
//! the bytes that go on the wire are its representation, encoded once at [`Message::new`] and
//! then shared by every subscriber of that transport (borrowed from the message, never
//! copied), with no second copy of the content beside them.
//!
//! Layout (40 bytes inline, plus the `Arc`'s two counts, and one buffer):
//! * `channel`, shared with every other message of the channel once its shard has seen it
//!   ([`crate::names`]);
//! * `block`, one buffer with everything a typical item is: a flags byte (which encodings it
//!   holds, whether it has an id, whether it has rare parts), the id's length (1 byte, or 4
//!   for an id of 256 bytes or more), the id itself, then the `ws-message` frame and the
//!   `http-stream` content as one HTTP/1.1 chunk, each when the item has one, then, only for
//!   an item with an `mqtt-message`, its MQTT part (`message_rare.rs`: the payload when it is
//!   neither of the other contents, the topic, the MQTT 5 property block encoded once, their
//!   lengths and one byte of QoS, retain and where the payload lies). A subscriber
//!   that has to queue an encoding holds the `Arc<Message>` and an [`Encoding`], not a
//!   buffer handle of its own;
//! * `ext`, one box for what a typical item lacks: made at [`Message::new`] when the item has
//!   rare parts (`prev-id`, `meta`, `no-seq`, and — boxed again — the formats' full
//!   description whenever they are not the simple shape: `send` in `http-stream`,
//!   `ws-message` or both, with no content filters and no `http-response`, which is read from
//!   the flags and the frame alone), otherwise on first use of a lazily made encoding: the
//!   permessage-deflate frame, and the content with an SSE `id:` line for routes with
//!   `sse_id`.
//!
//! The rare parts' types live in `message_rare.rs`, and so do the MQTT part and
//! [`Message::mqtt`], the view an MQTT subscriber sends (with its fallback to the
//! `ws-message` or `http-stream` content).
//!
//! [`Message::cost`] is worked out from the block's length and the rare parts' size noted at
//! construction (it reads the flags byte and, for rare items, the box: no encoding is made).
//!
//! Invariant: a `Message` is immutable once built; the lazily filled encodings are pure
//! functions of it, so whichever subscriber fills one first, all see the same bytes.

use std::ops::Range;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use gripway_proto::chunked::{encode_chunk, write_chunk_header};
use gripway_proto::publish::{
    Formats, HttpResponseFormat, HttpStreamAction, HttpStreamFormat, Item, WsAction, WsKind,
    WsMessageFormat,
};
use gripway_proto::ws_deflate::{compressed_message_frame, MIN_COMPRESS_BYTES};
use gripway_proto::ws_frame::{encode_close, frame_header_len, write_frame_header, FrameKind};
use once_cell::race::OnceBox;

use rare::{Rare, RareWs, Shape};

/// A channel name, shared between the registry, the dispatcher and every message on it.
pub type ChannelName = Arc<str>;

/// One published item, ready for fan-out.
#[derive(Debug)]
pub struct Message {
    /// The channel it was published to (route prefixes already part of the name).
    pub channel: ChannelName,
    /// Flags, the id and the encodings (see the module's doc).
    block: Box<[u8]>,
    /// Rare parts and lazily made encodings (two racing first users of a lazy encoding
    /// both make the box and one is kept, which is harmless: it is a pure function of the
    /// message).
    ext: OnceBox<Ext>,
}

/// `block[0]`: the block holds the `http-stream` chunk.
const CHUNK: u8 = 1;
/// The block holds the `ws-message` frame.
const FRAME: u8 = 2;
/// The item has an id (possibly empty).
const HAS_ID: u8 = 4;
/// `ext` was made at construction and holds [`Rare`] parts.
const RARE: u8 = 8;
/// The id's length is 4 bytes (otherwise 1).
const LONG_ID: u8 = 16;
/// The block ends with an MQTT part (the item has an `mqtt-message`).
const MQTT: u8 = 32;
/// The id was made by this node for the item ([`Message::new_fresh`]).
const FRESH: u8 = 64;

/// Which of a message's encodings: what a subscriber that queues one keeps beside the
/// `Arc<Message>` (see [`Message::encoding`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// [`Message::stream_chunk`].
    StreamChunk,
    /// [`Message::stream_content`].
    StreamContent,
    /// [`Message::stream_with_sse_id`], chunked.
    SseIdChunk,
    /// [`Message::stream_with_sse_id`], not chunked.
    SseIdContent,
    /// [`Message::ws_frame`].
    WsFrame,
    /// [`Message::ws_frame_deflated`].
    WsFrameDeflated,
    /// [`MqttView::payload`] of [`Message::mqtt`].
    MqttPayload,
    /// [`MqttView::props`] of [`Message::mqtt`].
    MqttV5Props,
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

/// What a typical item lacks: its rare parts (when it has any, made with the message) and
/// the encodings made on first use.
#[derive(Debug)]
struct Ext {
    rare: Option<Rare>,
    /// The permessage-deflate frame, when compressing makes the message smaller.
    deflated: OnceLock<Option<Bytes>>,
    /// For routes with `sse_id`: the content with an SSE `id:` line from the item id in
    /// front, as a chunk, and where the content lies in it; None when the content has an
    /// `id:` line already or the item has no id.
    sse_id: OnceLock<Option<(Bytes, Range<usize>)>>,
}

/// Where the parts lie in a message's block.
struct Layout {
    id: Range<usize>,
    frame: Range<usize>,
    chunk: Range<usize>,
}

/// Heap bytes an `Arc<str>` of `s` owns: the two reference counts and the text, padded to
/// the counts' alignment (the size the allocator is asked for).
pub fn str_heap(s: &str) -> usize {
    let word = std::mem::size_of::<usize>();
    (2 * word + s.len()).next_multiple_of(word)
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

/// Length of the unmasked WebSocket frame at the start of `bytes` (header and payload).
fn ws_frame_len(bytes: &[u8]) -> usize {
    let payload = match bytes.get(1).map(|b| b & 0x7f) {
        Some(126) => bytes
            .get(2..4)
            .map_or(0, |b| usize::from(u16::from_be_bytes([b[0], b[1]]))),
        Some(127) => bytes.get(2..10).map_or(0, |b| {
            let mut be = [0; 8];
            be.copy_from_slice(b);
            u64::from_be_bytes(be) as usize
        }),
        Some(n) => usize::from(n),
        None => 0,
    };
    (ws_header_len(bytes) + payload).min(bytes.len())
}

/// Where the content sits in a chunk (`<hex len>\r\n<content>\r\n`).
fn chunk_content(chunk: &[u8]) -> Range<usize> {
    let digits = chunk.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    (digits + 2).min(chunk.len())..chunk.len().saturating_sub(2)
}

/// Length of `<hex len>\r\n` for `len` content bytes.
fn chunk_header_len(len: usize) -> usize {
    (usize::BITS - len.leading_zeros()).div_ceil(4).max(1) as usize + 2
}

/// A `ws-message` frame as [`Message::new`] writes it into the block.
enum NewFrame<'a> {
    Send(FrameKind, &'a [u8]),
    Encoded(Bytes),
}

impl NewFrame<'_> {
    fn len(&self) -> usize {
        match self {
            NewFrame::Send(_, payload) => frame_header_len(payload.len()) + payload.len(),
            NewFrame::Encoded(frame) => frame.len(),
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            NewFrame::Send(kind, payload) => {
                write_frame_header(out, *kind, payload.len());
                out.extend_from_slice(payload);
            }
            NewFrame::Encoded(frame) => out.extend_from_slice(frame),
        }
    }
}

impl Message {
    /// [`Message::new`] for an item whose id this node has just made for it (a device's
    /// publish): unique by construction, so the broker does not look it up among the ids
    /// seen (dedup). Nothing else differs, and nothing of it outlives this process: a store
    /// or the cluster's stream keeps the item, not the mark.
    pub fn new_fresh(item: Item) -> Arc<Message> {
        let mut msg = Message::new(item);
        if let Some(m) = Arc::get_mut(&mut msg) {
            if m.has_id() {
                m.block[0] |= FRESH;
            }
        }
        msg
    }

    /// True for a message made by [`Message::new_fresh`] with an id.
    pub fn id_is_fresh(&self) -> bool {
        self.flags() & FRESH != 0
    }

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
        let (stream, ws, response, mqtt) = (
            formats.http_stream,
            formats.ws_message,
            formats.http_response,
            formats.mqtt_message,
        );
        let content = match &stream {
            Some(HttpStreamFormat {
                action: HttpStreamAction::Send(content),
                ..
            }) if !content.is_empty() => Some(&content[..]),
            _ => None,
        };
        let frame = ws.as_ref().and_then(|w| match &w.action {
            WsAction::Send { kind, content } => Some(NewFrame::Send(frame_kind(*kind), content)),
            WsAction::Close { code, reason } => {
                Some(NewFrame::Encoded(encode_close(*code, reason)))
            }
            WsAction::Refresh | WsAction::Hint => None,
        });
        let id = id.as_deref();
        let id_len = id.map_or(0, str::len);
        let long_id = u8::try_from(id_len).is_err();
        let mut flags = 0;
        for (on, flag) in [
            (content.is_some(), CHUNK),
            (frame.is_some(), FRAME),
            (id.is_some(), HAS_ID),
            (long_id, LONG_ID),
        ] {
            if on {
                flags |= flag;
            }
        }
        let simple_stream =
            |s: &HttpStreamFormat| s.content_filters.is_empty() && content.is_some();
        let simple_ws = |w: &WsMessageFormat| {
            w.content_filters.is_empty() && matches!(w.action, WsAction::Send { .. })
        };
        let simple = response.is_none()
            && stream.is_some() | ws.is_some() | mqtt.is_some()
            && stream.as_ref().is_none_or(simple_stream)
            && ws.as_ref().is_none_or(simple_ws);
        let ws_content = match ws.as_ref().map(|w| &w.action) {
            Some(WsAction::Send { content, .. }) => Some(&content[..]),
            _ => None,
        };
        let mqtt = mqtt
            .as_ref()
            .map(|f| rare::NewMqtt::new(f, ws_content, content));
        if mqtt.is_some() {
            flags |= MQTT;
        }
        // the block, written once at its exact size
        let len = 1
            + if long_id { 4 } else { 1 }
            + id_len
            + frame.as_ref().map_or(0, NewFrame::len)
            + content.map_or(0, |c| chunk_header_len(c.len()) + c.len() + 2)
            + mqtt.as_ref().map_or(0, rare::NewMqtt::len);
        let mut block = Vec::with_capacity(len);
        block.push(flags);
        if long_id {
            block.extend_from_slice(&(id_len as u32).to_le_bytes());
        } else {
            block.push(id_len as u8);
        }
        block.extend_from_slice(id.unwrap_or_default().as_bytes());
        if let Some(frame) = &frame {
            frame.write(&mut block);
        }
        if let Some(content) = content {
            write_chunk_header(&mut block, content.len());
            block.extend_from_slice(content);
            block.extend_from_slice(b"\r\n");
        }
        if let Some(mqtt) = &mqtt {
            mqtt.write(&mut block);
        }
        debug_assert_eq!(block.len(), len);
        let shape = (!simple).then(|| Box::new(Shape::new(stream, ws, response)));
        let ext = OnceBox::new();
        if prev_id.is_some() || !meta.is_empty() || no_seq || shape.is_some() {
            let mut rare = Rare {
                prev_id: prev_id.as_deref().map(Arc::from),
                meta: meta.into_boxed_slice(),
                shape,
                heap: 0,
                no_seq,
            };
            rare.heap = u32::try_from(rare.measure()).unwrap_or(u32::MAX);
            block[0] |= RARE;
            let _ = ext.set(Box::new(Ext {
                rare: Some(rare),
                deflated: OnceLock::new(),
                sse_id: OnceLock::new(),
            }));
        }
        Arc::new(Message {
            channel: Arc::from(channel.as_str()),
            block: block.into_boxed_slice(),
            ext,
        })
    }

    /// Bytes the message holds on the heap — itself, its block, its rare parts, and the
    /// permessage-deflate frame the first such subscriber may add — for bounds on what waits
    /// and what history keeps. The channel name is shared and not counted (its holders count
    /// it once); nor is the SSE `id:` form a route with `sse_id` may add. Reads the flags
    /// byte, and the rare parts of an item that has them; never makes an encoding.
    #[inline]
    pub fn cost(&self) -> usize {
        let mut cost =
            std::mem::size_of::<Message>() + 2 * std::mem::size_of::<usize>() + self.block.len();
        if self.flags() & (RARE | FRAME) == 0 {
            return cost; // nothing boxed, nothing to compress
        }
        let rare = self.rare();
        if let Some(rare) = rare {
            cost += rare.heap as usize;
        }
        if let Some(len) = self.deflatable().map(|(_, payload)| payload.len()) {
            cost += len;
            if rare.is_none() {
                cost += std::mem::size_of::<Ext>();
            }
        }
        cost
    }

    #[inline]
    fn flags(&self) -> u8 {
        self.block[0]
    }

    /// Where the parts that follow a short id begin, when the block holds only one
    /// encoding (the common layouts, read without [`Message::layout`]).
    #[inline]
    fn short_id_end(&self) -> usize {
        2 + usize::from(self.block[1])
    }

    fn layout(&self) -> Layout {
        let end = if self.flags() & MQTT != 0 {
            self.mqtt_part().start
        } else {
            self.block.len()
        };
        self.layout_to(end)
    }

    /// [`Message::layout`], given where the encodings end (the MQTT part's start, when the
    /// caller has read it already).
    fn layout_to(&self, end: usize) -> Layout {
        let b = &self.block;
        let flags = b[0];
        let (id_len, at) = if flags & LONG_ID != 0 {
            (u32::from_le_bytes([b[1], b[2], b[3], b[4]]) as usize, 5)
        } else {
            (usize::from(b[1]), 2)
        };
        let id_end = at + id_len;
        let frame_end = match flags & (CHUNK | FRAME) {
            FRAME => end,
            f if f == CHUNK | FRAME => id_end + ws_frame_len(&b[id_end..end]),
            _ => id_end,
        };
        Layout {
            id: at..id_end,
            frame: id_end..frame_end,
            chunk: frame_end..end,
        }
    }

    #[inline]
    fn rare(&self) -> Option<&Rare> {
        if self.flags() & RARE == 0 {
            return None;
        }
        self.ext.get()?.rare.as_ref()
    }

    #[inline]
    fn shape(&self) -> Option<&Shape> {
        self.rare()?.shape.as_deref()
    }

    fn ext(&self) -> &Ext {
        self.ext.get_or_init(|| {
            Box::new(Ext {
                rare: None,
                deflated: OnceLock::new(),
                sse_id: OnceLock::new(),
            })
        })
    }

    /// The publisher's id for this item, used for dedup and ordering.
    pub fn id(&self) -> Option<&str> {
        // written from a `str` by `new`: always valid
        std::str::from_utf8(self.id_bytes()?).ok()
    }

    /// The id's bytes (no check of its text).
    #[inline]
    pub fn id_bytes(&self) -> Option<&[u8]> {
        match self.flags() & (HAS_ID | LONG_ID) {
            HAS_ID => self.block.get(2..self.short_id_end()),
            f if f & HAS_ID != 0 => Some(&self.block[self.layout().id]),
            _ => None,
        }
    }

    /// True if the item has an id.
    #[inline]
    pub fn has_id(&self) -> bool {
        self.flags() & HAS_ID != 0
    }

    /// True if the item's id is `id`.
    #[inline]
    pub fn id_is(&self, id: &str) -> bool {
        self.id_bytes() == Some(id.as_bytes())
    }

    /// The id of the item the publisher says came before this one on the channel.
    pub fn prev_id(&self) -> Option<&Arc<str>> {
        self.rare()?.prev_id.as_ref()
    }

    /// True when the publisher asked to bypass ordering (`no-seq`).
    pub fn no_seq(&self) -> bool {
        self.rare().is_some_and(|r| r.no_seq)
    }

    /// Publisher metadata, read by subscription filters (`skip-self`, `skip-users`, ...).
    pub fn meta(&self) -> &[(String, String)] {
        self.rare().map_or(&[], |r| &r.meta)
    }

    /// The value of a publisher meta field, if set.
    pub fn meta_value(&self, name: &str) -> Option<&str> {
        self.meta()
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The `http-stream` format, for stream holds.
    #[inline]
    pub fn http_stream(&self) -> Option<StreamFormat<'_>> {
        match self.shape() {
            Some(shape) => shape.stream.map(|action| StreamFormat {
                action,
                content_filters: shape.filters.as_ref().map_or(&[], |f| &f.stream),
            }),
            None => (self.flags() & CHUNK != 0).then_some(StreamFormat {
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
    #[inline]
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

    /// The encoding `which` (what the accessor of that name returns).
    #[inline]
    pub fn encoding(&self, which: Encoding) -> Option<&[u8]> {
        match which {
            Encoding::StreamChunk => self.stream_chunk(),
            Encoding::StreamContent => self.stream_content(),
            Encoding::SseIdChunk => self.stream_with_sse_id(true),
            Encoding::SseIdContent => self.stream_with_sse_id(false),
            Encoding::WsFrame => self.ws_frame(),
            Encoding::WsFrameDeflated => self.ws_frame_deflated(),
            Encoding::MqttPayload => self.mqtt().map(|v| v.payload),
            Encoding::MqttV5Props => self.mqtt().map(|v| v.props),
        }
    }

    /// The `http-stream` content to append to a stream, if this message sends any.
    /// Empty content is treated as nothing to send (an empty chunk would end the body).
    /// It lies inside [`Message::stream_chunk`] (no copy).
    #[inline]
    pub fn stream_content(&self) -> Option<&[u8]> {
        let chunk = self.stream_chunk()?;
        Some(&chunk[chunk_content(chunk)])
    }

    /// [`Message::stream_chunk`] (`chunked`) or [`Message::stream_content`], with an SSE
    /// `id: <item id>` line in front when the content has no `id:` line of its own (the
    /// route option `sse_id`); built once and shared by every such subscriber.
    pub fn stream_with_sse_id(&self, chunked: bool) -> Option<&[u8]> {
        let with_id = self
            .ext()
            .sse_id
            .get_or_init(|| {
                let id = self.id()?;
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
                let raw = chunk_content(&chunk);
                Some((chunk, raw))
            })
            .as_ref();
        match (with_id, chunked) {
            (Some((chunk, _)), true) => Some(chunk),
            (Some((chunk, raw)), false) => Some(&chunk[raw.clone()]),
            (None, true) => self.stream_chunk(),
            (None, false) => self.stream_content(),
        }
    }

    /// The `http-stream` content as one HTTP/1.1 chunk (`<hex len>\r\n<content>\r\n`),
    /// encoded once and shared by every chunked stream subscriber.
    #[inline]
    pub fn stream_chunk(&self) -> Option<&[u8]> {
        match self.flags() & (CHUNK | FRAME | LONG_ID | MQTT) {
            CHUNK => self.block.get(self.short_id_end()..),
            f if f & CHUNK != 0 => Some(&self.block[self.layout().chunk]),
            _ => None,
        }
    }

    /// The `ws-message` as one unmasked WebSocket frame — for `send` the message (text,
    /// binary, ping or pong), for `close` the close frame — encoded once and shared by every
    /// WebSocket subscriber. None for other actions or when there is no `ws-message`.
    #[inline]
    pub fn ws_frame(&self) -> Option<&[u8]> {
        match self.flags() & (CHUNK | FRAME | LONG_ID | MQTT) {
            FRAME => self.block.get(self.short_id_end()..),
            f if f & FRAME != 0 => Some(&self.block[self.layout().frame]),
            _ => None,
        }
    }

    /// The publish item this message was built from, rebuilt from its parts (for a store
    /// that writes items out, and for `GET /history`); equal to the original item as the
    /// publish parser reads it back.
    pub fn to_item(&self) -> Item {
        let stream = self.http_stream().map(|f| HttpStreamFormat {
            action: match f.action {
                StreamAction::Send => HttpStreamAction::Send(
                    self.stream_content()
                        .map(Bytes::copy_from_slice)
                        .unwrap_or_default(),
                ),
                StreamAction::Close => HttpStreamAction::Close,
                StreamAction::Hint => HttpStreamAction::Hint,
            },
            content_filters: f.content_filters.to_vec(),
        });
        let ws = self.ws_message().map(|f| WsMessageFormat {
            action: match f.action {
                WsOp::Send(kind) => WsAction::Send {
                    kind,
                    content: self
                        .ws_content()
                        .map(Bytes::copy_from_slice)
                        .unwrap_or_default(),
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
            id: self.id().map(str::to_owned),
            prev_id: self.prev_id().map(|p| p.to_string()),
            meta: self.meta().to_vec(),
            no_seq: self.no_seq(),
            formats: Formats {
                http_stream: stream,
                http_response: self.http_response().cloned(),
                ws_message: ws,
                mqtt_message: self.mqtt_format(),
            },
        }
    }

    /// The content of a `ws-message` `send` (inside its frame, no copy), for a subscriber
    /// that transforms it (content filters); None for other actions.
    pub fn ws_content(&self) -> Option<&[u8]> {
        match self.ws_message()?.action {
            WsOp::Send(_) => {
                let frame = self.ws_frame()?;
                Some(&frame[ws_header_len(frame).min(frame.len())..])
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
    #[inline]
    pub fn ws_frame_deflated(&self) -> Option<&[u8]> {
        let plain = self.ws_frame()?;
        let Some((binary, payload)) = self.deflatable() else {
            return Some(plain);
        };
        let deflated = self
            .ext()
            .deflated
            .get_or_init(|| compressed_message_frame(binary, payload));
        Some(deflated.as_deref().unwrap_or(plain))
    }
}

#[path = "message_rare.rs"]
mod rare;

pub use rare::MqttView;

#[cfg(test)]
#[path = "message_tests.rs"]
mod tests;
