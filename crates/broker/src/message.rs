//! A published item as the broker carries it: the parsed formats plus, per transport, the
//! bytes that go on the wire, encoded the first time a subscriber of that transport asks and
//! then shared by every other subscriber (one `Bytes`, reference-counted, never copied).
//!
//! Invariant: a `Message` is immutable once built; the lazily filled encodings are pure
//! functions of its formats, so whichever subscriber fills one first, all see the same bytes.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use gripway_proto::chunked::encode_chunk;
use gripway_proto::publish::{
    Formats, HttpResponseAction, HttpStreamAction, Item, ResponseBody, WsAction, WsKind,
};
use gripway_proto::ws_deflate::encode_message_frame;
use gripway_proto::ws_frame::{encode_close, encode_frame, FrameKind};

/// A channel name, shared between the registry, the dispatcher and every message on it.
pub type ChannelName = Arc<str>;

/// One published item, ready for fan-out.
#[derive(Debug)]
pub struct Message {
    /// The channel it was published to (route prefixes already part of the name).
    pub channel: ChannelName,
    /// The publisher's id for this item, used for dedup and ordering.
    pub id: Option<Arc<str>>,
    /// The id of the item the publisher says came before this one on the channel.
    pub prev_id: Option<Arc<str>>,
    /// Publisher metadata, read by subscription filters (`skip-self`, `skip-users`, ...).
    pub meta: Vec<(String, String)>,
    /// True when the publisher asked to bypass ordering (`no-seq`).
    pub no_seq: bool,
    /// What the publisher sent, per transport.
    pub formats: Formats,
    /// `http-stream` content framed as one HTTP/1.1 chunk.
    http_chunk: OnceLock<Option<Bytes>>,
    /// `ws-message` as one WebSocket frame (a data, ping, pong or close frame).
    ws_frame: OnceLock<Option<Bytes>>,
    /// The same for connections that negotiated permessage-deflate.
    ws_frame_deflated: OnceLock<Option<Bytes>>,
    /// Heap bytes the message holds (see [`Message::cost`]).
    cost: usize,
}

/// Heap bytes an `Arc<str>` of `s` owns: the text and the two reference counts.
pub fn str_heap(s: &str) -> usize {
    2 * std::mem::size_of::<usize>() + s.len()
}

/// What a `body-patch` is counted as while a message waits (its operations are not sized
/// one by one; the publish API bounds them).
const PATCH_ESTIMATE: usize = 4096;

/// Heap bytes of an item's strings and contents, as near as can be said cheaply.
fn item_heap(item: &Item) -> usize {
    let f = &item.formats;
    let stream = f.http_stream.as_ref().map_or(0, |s| {
        let content = match &s.action {
            HttpStreamAction::Send(c) => c.len(),
            _ => 0,
        };
        content
            + s.content_filters
                .iter()
                .map(|c| c.len() + 24)
                .sum::<usize>()
    });
    let response = f.http_response.as_ref().map_or(0, |r| {
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
        message
            + r.content_filters
                .iter()
                .map(|c| c.len() + 24)
                .sum::<usize>()
    });
    let ws = f.ws_message.as_ref().map_or(0, |w| {
        let content = match &w.action {
            WsAction::Send { content, .. } => content.len(),
            WsAction::Close { reason, .. } => reason.len(),
            _ => 0,
        };
        content
            + w.content_filters
                .iter()
                .map(|c| c.len() + 24)
                .sum::<usize>()
    });
    str_heap(&item.channel)
        + item.id.as_deref().map_or(0, str_heap)
        + item.prev_id.as_deref().map_or(0, str_heap)
        + item
            .meta
            .iter()
            .map(|(k, v)| k.len() + v.len() + 48)
            .sum::<usize>()
        + stream
        + response
        + ws
}

impl Message {
    /// Wraps a validated publish item.
    pub fn new(item: Item) -> Arc<Message> {
        let cost =
            std::mem::size_of::<Message>() + 2 * std::mem::size_of::<usize>() + item_heap(&item);
        Arc::new(Message {
            channel: Arc::from(item.channel.as_str()),
            id: item.id.as_deref().map(Arc::from),
            prev_id: item.prev_id.as_deref().map(Arc::from),
            meta: item.meta,
            no_seq: item.no_seq,
            formats: item.formats,
            http_chunk: OnceLock::new(),
            ws_frame: OnceLock::new(),
            ws_frame_deflated: OnceLock::new(),
            cost,
        })
    }

    /// Bytes the message holds on the heap (itself, its strings and contents; encodings
    /// filled in later by the fan-out are not counted), for bounds on what waits.
    pub fn cost(&self) -> usize {
        self.cost
    }

    /// The `http-stream` content to append to a stream, if this message sends any.
    /// Empty content is treated as nothing to send (an empty chunk would end the body).
    pub fn stream_content(&self) -> Option<&Bytes> {
        match self.formats.http_stream.as_ref().map(|f| &f.action) {
            Some(HttpStreamAction::Send(content)) if !content.is_empty() => Some(content),
            _ => None,
        }
    }

    /// The `http-stream` content as one HTTP/1.1 chunk (`<hex len>\r\n<content>\r\n`),
    /// encoded once and shared by every chunked stream subscriber.
    pub fn stream_chunk(&self) -> Option<&Bytes> {
        self.http_chunk
            .get_or_init(|| self.stream_content().map(|c| encode_chunk(c)))
            .as_ref()
    }

    /// The `ws-message` as one unmasked WebSocket frame — for `send` the message (text,
    /// binary, ping or pong), for `close` the close frame — encoded once and shared by every
    /// WebSocket subscriber. None for other actions or when there is no `ws-message`.
    pub fn ws_frame(&self) -> Option<&Bytes> {
        self.ws_frame
            .get_or_init(
                || match self.formats.ws_message.as_ref().map(|f| &f.action) {
                    Some(WsAction::Send { kind, content }) => {
                        let kind = match kind {
                            WsKind::Text => FrameKind::Text,
                            WsKind::Binary => FrameKind::Binary,
                            WsKind::Ping => FrameKind::Ping,
                            WsKind::Pong => FrameKind::Pong,
                        };
                        Some(encode_frame(kind, content.clone()))
                    }
                    Some(WsAction::Close { code, reason }) => Some(encode_close(*code, reason)),
                    _ => None,
                },
            )
            .as_ref()
    }

    /// As [`Message::ws_frame`] for a connection with permessage-deflate: text and binary
    /// messages compressed once (when that makes them smaller), shared by every such
    /// connection; control frames are never compressed.
    pub fn ws_frame_deflated(&self) -> Option<&Bytes> {
        self.ws_frame_deflated
            .get_or_init(
                || match self.formats.ws_message.as_ref().map(|f| &f.action) {
                    Some(WsAction::Send {
                        kind: kind @ (WsKind::Text | WsKind::Binary),
                        content,
                    }) => Some(encode_message_frame(*kind == WsKind::Binary, content)),
                    _ => self.ws_frame().cloned(),
                },
            )
            .as_ref()
    }

    /// The value of a publisher meta field, if set.
    pub fn meta_value(&self, name: &str) -> Option<&str> {
        self.meta
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}
