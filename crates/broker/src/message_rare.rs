//! The parts of a [`Message`](super::Message) that a typical item lacks — `prev-id`, `meta`,
//! `no-seq`, and the formats in full when they are not the simple shape the message's flags
//! and frame describe — and what they hold on the heap (for
//! [`Message::cost`](super::Message::cost)).
//!
//! Also the MQTT part, which ends the block of an item with an `mqtt-message` (flag `MQTT`):
//! `[payload][topic][v5 property block][payload len][topic len][block len][mqtt byte]`, each
//! of the first three and its 4-byte length (little-endian) present only when needed: the
//! payload only when it is neither the `ws-message` content nor the `http-stream` content
//! (which the byte then points at, so a device's publish keeps its payload once), the
//! property block (encoded once by the `mqtt-proto` crate) only when there are properties.
//! Read from the end. And [`Message::mqtt`], the view an MQTT subscriber sends, with its
//! fallback to the `ws-message` or `http-stream` content for items without the format.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use gripway_proto::mqtt::{decode_v5_publish_props, v5_publish_props};
use gripway_proto::publish::{
    HttpResponseAction, HttpResponseFormat, HttpStreamAction, HttpStreamFormat, MqttMessageFormat,
    ResponseBody, WsAction, WsKind, WsMessageFormat,
};

use super::{str_heap, Ext, Message, StreamAction, WsOp, MQTT};

/// The parts of an item that a typical one lacks.
#[derive(Debug)]
pub(super) struct Rare {
    pub(super) prev_id: Option<Arc<str>>,
    pub(super) meta: Box<[(String, String)]>,
    /// The formats, when they are not the simple shape the flags and frame describe alone.
    pub(super) shape: Option<Box<Shape>>,
    /// Heap bytes of the `ext` box and what its rare parts hold.
    pub(super) heap: u32,
    pub(super) no_seq: bool,
}

/// Every format in full.
#[derive(Debug)]
pub(super) struct Shape {
    pub(super) stream: Option<StreamAction>,
    pub(super) ws: Option<RareWs>,
    pub(super) filters: Option<Box<Filters>>,
    pub(super) response: Option<Box<HttpResponseFormat>>,
}

/// Content filters, per format.
#[derive(Debug)]
pub(super) struct Filters {
    pub(super) stream: Vec<String>,
    pub(super) ws: Vec<String>,
}

#[derive(Debug)]
pub(super) enum RareWs {
    Send(WsKind),
    Close { code: Option<u16>, reason: Box<str> },
    Refresh,
    Hint,
}

/// What a `body-patch` is counted as while a message waits (its operations are not sized
/// one by one; the publish API bounds them).
const PATCH_ESTIMATE: usize = 4096;

pub(super) fn filters_heap(filters: &[String]) -> usize {
    filters.iter().map(|c| c.len() + 24).sum()
}

pub(super) fn response_heap(r: &HttpResponseFormat) -> usize {
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

impl Rare {
    pub(super) fn measure(&self) -> usize {
        std::mem::size_of::<Ext>()
            + self.prev_id.as_deref().map_or(0, str_heap)
            + self
                .meta
                .iter()
                .map(|(k, v)| k.len() + v.len() + 48)
                .sum::<usize>()
            + self.shape.as_deref().map_or(0, Shape::heap)
    }
}

impl Shape {
    pub(super) fn new(
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

    pub(super) fn heap(&self) -> usize {
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

// ---------------------------------------------------------------------------------------------
// The MQTT part.

/// The mqtt byte (the block's last): QoS 1 (else 0), ...
const QOS1: u8 = 1;
/// ... the QoS was given (else it is the default: 1 with an id, 0 without), ...
const QOS_GIVEN: u8 = 2;
const RETAIN: u8 = 4;
/// ... the payload is the `ws-message` content, ...
const FROM_WS: u8 = 8;
/// ... or the `http-stream` content, ...
const FROM_STREAM: u8 = 16;
/// ... or its own (else it is empty); and which of topic and property block are there.
const OWN: u8 = 32;
const TOPIC: u8 = 64;
const PROPS: u8 = 128;

/// The property block of a PUBLISH without properties: a zero length.
const NO_PROPS: &[u8] = &[0];

/// What an MQTT subscriber sends for a message: the payload, the QoS and retain flag, the
/// topic when the item names one (otherwise the subscription's), and the MQTT 5 property
/// block as it goes on the wire (length included; `[0]` when there are none). Every slice
/// lies in the message, encoded once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MqttView<'a> {
    /// The PUBLISH payload.
    pub payload: &'a [u8],
    /// 0 or 1.
    pub qos: u8,
    /// The retain flag.
    pub retain: bool,
    /// The item's own topic, if it gives one.
    pub topic: Option<&'a str>,
    /// The v5 property block, its length first.
    pub props: &'a [u8],
}

/// An item's MQTT part as [`Message::new`] writes it.
pub(super) struct NewMqtt<'a> {
    byte: u8,
    own: &'a [u8],
    topic: &'a str,
    props: Vec<u8>,
}

impl<'a> NewMqtt<'a> {
    /// The part for `f`, given the item's `ws-message` send content and its non-empty
    /// `http-stream` content, if any.
    pub(super) fn new(
        f: &'a MqttMessageFormat,
        ws: Option<&[u8]>,
        stream: Option<&[u8]>,
    ) -> NewMqtt<'a> {
        let payload = &f.content[..];
        let mut byte = match f.qos {
            Some(0) => QOS_GIVEN,
            Some(_) => QOS_GIVEN | QOS1,
            None => 0,
        };
        if f.retain {
            byte |= RETAIN;
        }
        let mut own: &[u8] = &[];
        if ws == Some(payload) {
            byte |= FROM_WS;
        } else if stream == Some(payload) {
            byte |= FROM_STREAM;
        } else if !payload.is_empty() {
            byte |= OWN;
            own = payload;
        }
        let topic = f.topic.as_deref().unwrap_or_default();
        if f.topic.is_some() {
            byte |= TOPIC;
        }
        let props = if f.properties.is_empty() {
            Vec::new()
        } else {
            byte |= PROPS;
            v5_publish_props(&f.properties)
        };
        NewMqtt {
            byte,
            own,
            topic,
            props,
        }
    }

    fn parts(&self) -> [(u8, &[u8]); 3] {
        [
            (OWN, self.own),
            (TOPIC, self.topic.as_bytes()),
            (PROPS, &self.props),
        ]
    }

    /// Bytes [`NewMqtt::write`] adds to the block.
    pub(super) fn len(&self) -> usize {
        let parts = self
            .parts()
            .into_iter()
            .filter(|(bit, _)| self.byte & bit != 0);
        1 + parts.map(|(_, p)| p.len() + 4).sum::<usize>()
    }

    pub(super) fn write(&self, out: &mut Vec<u8>) {
        let parts = self.parts();
        let present = || parts.iter().filter(|(bit, _)| self.byte & bit != 0);
        for (_, p) in present() {
            out.extend_from_slice(p);
        }
        for (_, p) in present() {
            // far below 4 GiB: contents are bounded by the publish API and MQTT's packet size
            out.extend_from_slice(&(p.len() as u32).to_le_bytes());
        }
        out.push(self.byte);
    }
}

/// Where an MQTT part lies in a block.
pub(super) struct MqttPart {
    /// Where the part begins (where the chunk or frame before it ends).
    pub(super) start: usize,
    byte: u8,
    own: Range<usize>,
    topic: Option<Range<usize>>,
    props: Option<Range<usize>>,
}

impl Message {
    /// The MQTT part of a block with the `MQTT` flag, read from its end.
    pub(super) fn mqtt_part(&self) -> MqttPart {
        let b = &self.block;
        let byte = b.last().copied().unwrap_or_default();
        let mut lens = b.len().saturating_sub(1);
        let mut len_of = |bit: u8| -> Option<usize> {
            (byte & bit != 0).then(|| {
                let at = lens.saturating_sub(4);
                let len = b
                    .get(at..lens)
                    .map_or(0, |l| u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize);
                lens = at;
                len
            })
        };
        // lengths are written in the parts' order, so read back last first
        let (props_len, topic_len, own_len) = (len_of(PROPS), len_of(TOPIC), len_of(OWN));
        let mut at = lens;
        let mut take = |len: Option<usize>| {
            len.map(|len| {
                let start = at.saturating_sub(len);
                let range = start..at;
                at = start;
                range
            })
        };
        let props = take(props_len);
        let topic = take(topic_len);
        let own = take(own_len).unwrap_or(at..at);
        MqttPart {
            start: at,
            byte,
            own,
            topic,
            props,
        }
    }

    /// True if the item has an `mqtt-message` format.
    #[inline]
    pub fn has_mqtt_message(&self) -> bool {
        self.flags() & MQTT != 0
    }

    /// What an MQTT subscriber sends: the `mqtt-message` format; else a `ws-message` text or
    /// binary send (its content; for any other `ws-message`, nothing); else an
    /// `http-stream` send with content (the content, not the chunk); else None. The QoS
    /// is 1 for an item with an id and 0 without, unless the format gives it; the topic is
    /// None unless the format gives one; the property block is `[0]` unless the format has
    /// properties. [`Encoding::MqttPayload`](super::Encoding::MqttPayload) and
    /// [`Encoding::MqttV5Props`](super::Encoding::MqttV5Props) are its payload and props.
    pub fn mqtt(&self) -> Option<MqttView<'_>> {
        let default_qos = u8::from(self.has_id());
        if !self.has_mqtt_message() {
            let payload = match self.ws_message() {
                Some(f) => match f.action {
                    WsOp::Send(WsKind::Text | WsKind::Binary) => self.ws_content()?,
                    _ => return None,
                },
                None => self.stream_content()?,
            };
            return Some(MqttView {
                payload,
                qos: default_qos,
                retain: false,
                topic: None,
                props: NO_PROPS,
            });
        }
        let part = self.mqtt_part();
        let byte = part.byte;
        let payload = if byte & FROM_WS != 0 {
            // the `ws-message` content (a send: see `NewMqtt::new`), found from the part
            // already read rather than through `ws_content`, which would read it twice more
            // (this runs for every delivery to a device)
            let frame = self
                .block
                .get(self.layout_to(part.start).frame)
                .unwrap_or_default();
            &frame[super::ws_header_len(frame).min(frame.len())..]
        } else if byte & FROM_STREAM != 0 {
            self.stream_content().unwrap_or_default()
        } else {
            self.block.get(part.own).unwrap_or_default()
        };
        let slice = |r: Option<Range<usize>>| r.and_then(|r| self.block.get(r));
        Some(MqttView {
            payload,
            qos: if byte & QOS_GIVEN != 0 {
                byte & QOS1
            } else {
                default_qos
            },
            retain: byte & RETAIN != 0,
            // written from a `str` by `new`: always valid
            topic: slice(part.topic).and_then(|t| std::str::from_utf8(t).ok()),
            props: slice(part.props).unwrap_or(NO_PROPS),
        })
    }

    /// The `mqtt-message` format rebuilt (for [`Message::to_item`]).
    pub(super) fn mqtt_format(&self) -> Option<MqttMessageFormat> {
        if !self.has_mqtt_message() {
            return None;
        }
        let view = self.mqtt()?;
        let byte = self.mqtt_part().byte;
        Some(MqttMessageFormat {
            content: Bytes::copy_from_slice(view.payload),
            topic: view.topic.map(str::to_owned),
            qos: (byte & QOS_GIVEN != 0).then_some(view.qos),
            retain: view.retain,
            properties: if byte & PROPS != 0 {
                decode_v5_publish_props(view.props).unwrap_or_default()
            } else {
                Default::default()
            },
        })
    }
}
