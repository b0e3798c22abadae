//! The parts of a [`Message`](super::Message) that a typical item lacks — `prev-id`, `meta`,
//! `no-seq`, and the formats in full when they are not the simple shape the message's flags
//! and frame describe — and what they hold on the heap (for
//! [`Message::cost`](super::Message::cost)).

use std::sync::Arc;

use gripway_proto::publish::{
    HttpResponseAction, HttpResponseFormat, HttpStreamAction, HttpStreamFormat, ResponseBody,
    WsAction, WsKind, WsMessageFormat,
};

use super::{str_heap, Ext, StreamAction};

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
