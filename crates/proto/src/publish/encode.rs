//! Encodes [`Item`]s as a publish body, `{"items": [...]}`, in the form the parser reads back
//! to equal items: content that is UTF-8 goes in `content` / `body`, anything else in base64
//! `content-bin` / `body-bin`; WebSocket messages always state their `type`; headers are
//! written as `[name, value]` pairs so order and repeats survive; defaults are left out.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use super::{
    Formats, HttpResponseAction, HttpResponseFormat, HttpStreamAction, HttpStreamFormat, Item,
    MqttMessageFormat, MqttProperties, ResponseBody, WsAction, WsKind, WsMessageFormat,
};

pub(super) fn encode(items: &[Item]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + items.len() * 96);
    match serde_json::to_writer(&mut out, &Body(items)) {
        Ok(()) => out,
        // Unreachable: writing to a Vec cannot fail and every map key here is a string.
        Err(_) => Vec::new(),
    }
}

struct Body<'a>(&'a [Item]);

impl Serialize for Body<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry("items", &Items(self.0))?;
        map.end()
    }
}

struct Items<'a>(&'a [Item]);

impl Serialize for Items<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(ItemJson))
    }
}

struct ItemJson<'a>(&'a Item);

impl Serialize for ItemJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let item = self.0;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("channel", &item.channel)?;
        if let Some(id) = &item.id {
            map.serialize_entry("id", id)?;
        }
        if let Some(prev_id) = &item.prev_id {
            map.serialize_entry("prev-id", prev_id)?;
        }
        if !item.meta.is_empty() {
            map.serialize_entry("meta", &Pairs(&item.meta))?;
        }
        if item.no_seq {
            map.serialize_entry("no-seq", &true)?;
        }
        map.serialize_entry("formats", &FormatsJson(&item.formats))?;
        map.end()
    }
}

/// Name/value pairs as a JSON object, in order.
struct Pairs<'a>(&'a [(String, String)]);

impl Serialize for Pairs<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

/// An item's formats as the `formats` object of a publish item (what the parser reads back
/// to equal formats).
pub struct FormatsJson<'a>(pub &'a Formats);

impl Serialize for FormatsJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let formats = self.0;
        let mut map = serializer.serialize_map(None)?;
        if let Some(f) = &formats.http_response {
            map.serialize_entry("http-response", &ResponseJson(f))?;
        }
        if let Some(f) = &formats.http_stream {
            map.serialize_entry("http-stream", &StreamJson(f))?;
        }
        if let Some(f) = &formats.ws_message {
            map.serialize_entry("ws-message", &WsJson(f))?;
        }
        if let Some(f) = &formats.mqtt_message {
            map.serialize_entry("mqtt-message", &MqttJson(f))?;
        }
        map.end()
    }
}

/// Writes `bytes` under `text_key` when it is UTF-8, else base64 under `bin_key`.
fn bytes_entry<M: SerializeMap>(
    map: &mut M,
    bytes: &[u8],
    text_key: &'static str,
    bin_key: &'static str,
) -> Result<(), M::Error> {
    match std::str::from_utf8(bytes) {
        Ok(text) => map.serialize_entry(text_key, text),
        Err(_) => map.serialize_entry(bin_key, &STANDARD.encode(bytes)),
    }
}

fn filters_entry<M: SerializeMap>(map: &mut M, filters: &[String]) -> Result<(), M::Error> {
    if filters.is_empty() {
        Ok(())
    } else {
        map.serialize_entry("content-filters", filters)
    }
}

struct StreamJson<'a>(&'a HttpStreamFormat);

impl Serialize for StreamJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        match &self.0.action {
            HttpStreamAction::Send(content) => {
                bytes_entry(&mut map, content, "content", "content-bin")?
            }
            HttpStreamAction::Close => map.serialize_entry("action", "close")?,
            HttpStreamAction::Hint => map.serialize_entry("action", "hint")?,
        }
        filters_entry(&mut map, &self.0.content_filters)?;
        map.end()
    }
}

struct ResponseJson<'a>(&'a HttpResponseFormat);

impl Serialize for ResponseJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        match &self.0.action {
            HttpResponseAction::Send(message) => {
                map.serialize_entry("code", &message.code)?;
                if let Some(reason) = &message.reason {
                    map.serialize_entry("reason", reason)?;
                }
                if !message.headers.is_empty() {
                    let pairs: Vec<[&str; 2]> = message
                        .headers
                        .iter()
                        .map(|(name, value)| [name.as_str(), value.as_str()])
                        .collect();
                    map.serialize_entry("headers", &pairs)?;
                }
                match &message.body {
                    ResponseBody::Bytes(body) => bytes_entry(&mut map, body, "body", "body-bin")?,
                    ResponseBody::Patch(patch) => map.serialize_entry("body-patch", patch)?,
                }
            }
            HttpResponseAction::Hint => map.serialize_entry("action", "hint")?,
        }
        filters_entry(&mut map, &self.0.content_filters)?;
        map.end()
    }
}

struct WsJson<'a>(&'a WsMessageFormat);

impl Serialize for WsJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        match &self.0.action {
            WsAction::Send { kind, content } => {
                let type_name = match kind {
                    WsKind::Text => "text",
                    WsKind::Binary => "binary",
                    WsKind::Ping => "ping",
                    WsKind::Pong => "pong",
                };
                map.serialize_entry("type", type_name)?;
                if *kind == WsKind::Text {
                    bytes_entry(&mut map, content, "content", "content-bin")?;
                } else if !content.is_empty() || *kind == WsKind::Binary {
                    map.serialize_entry("content-bin", &STANDARD.encode(content))?;
                }
            }
            WsAction::Close { code, reason } => {
                map.serialize_entry("action", "close")?;
                if let Some(code) = code {
                    map.serialize_entry("code", code)?;
                }
                if !reason.is_empty() {
                    map.serialize_entry("reason", reason)?;
                }
            }
            WsAction::Refresh => map.serialize_entry("action", "refresh")?,
            WsAction::Hint => map.serialize_entry("action", "hint")?,
        }
        filters_entry(&mut map, &self.0.content_filters)?;
        map.end()
    }
}

struct MqttJson<'a>(&'a MqttMessageFormat);

impl Serialize for MqttJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let f = self.0;
        let mut map = serializer.serialize_map(None)?;
        bytes_entry(&mut map, &f.content, "content", "content-bin")?;
        if let Some(topic) = &f.topic {
            map.serialize_entry("topic", topic)?;
        }
        if let Some(qos) = f.qos {
            map.serialize_entry("qos", &qos)?;
        }
        if f.retain {
            map.serialize_entry("retain", &true)?;
        }
        if !f.properties.is_empty() {
            map.serialize_entry("properties", &MqttPropsJson(&f.properties))?;
        }
        map.end()
    }
}

struct MqttPropsJson<'a>(&'a MqttProperties);

impl Serialize for MqttPropsJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let p = self.0;
        let mut map = serializer.serialize_map(None)?;
        if let Some(t) = &p.content_type {
            map.serialize_entry("content-type", t)?;
        }
        if let Some(utf8) = p.payload_utf8 {
            map.serialize_entry("payload-format", &u8::from(utf8))?;
        }
        if let Some(s) = p.message_expiry {
            map.serialize_entry("message-expiry", &s)?;
        }
        if let Some(t) = &p.response_topic {
            map.serialize_entry("response-topic", t)?;
        }
        if let Some(d) = &p.correlation_data {
            bytes_entry(&mut map, d, "correlation-data", "correlation-data-bin")?;
        }
        if !p.user.is_empty() {
            let pairs: Vec<[&str; 2]> = p
                .user
                .iter()
                .map(|(k, v)| [k.as_str(), v.as_str()])
                .collect();
            map.serialize_entry("user", &pairs)?;
        }
        map.end()
    }
}
