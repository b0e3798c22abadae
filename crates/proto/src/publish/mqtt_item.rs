//! The item an MQTT device's PUBLISH becomes once the origin allows it (docs/mqtt-design.md
//! §4.2): the `mqtt-message` other devices get, the `ws-message` WebSocket subscribers get,
//! and, as the route chooses, an `http-stream` content for stream subscribers. A pure
//! function: the server picks the channel and id and checks the publish first
//! ([`DevicePublish::problem`]), so the item is one the publish parser reads back equal (the
//! cluster and the durable history carry items as publish bodies).
//!
//! The payload's `Bytes` is shared by the formats that carry it as it is; only the SSE form
//! is a new buffer.

use bytes::Bytes;

use super::{
    Formats, HttpStreamAction, HttpStreamFormat, Item, MqttMessageFormat, MqttProperties, WsAction,
    WsKind, WsMessageFormat,
};

/// What a device published.
#[derive(Debug, Clone, PartialEq)]
pub struct DevicePublish {
    /// The PUBLISH's topic name.
    pub topic: String,
    /// Its payload.
    pub payload: Bytes,
    /// Its QoS, 0–2 (2 is published as 1).
    pub qos: u8,
    /// Its retain flag.
    pub retain: bool,
    /// Its MQTT 5 properties (none for 3.1.1).
    pub properties: MqttProperties,
}

impl DevicePublish {
    /// Why this publish cannot become an item (a field MQTT does not allow, such as an empty
    /// or wildcard topic, a NUL in a string property, or more user properties than an item
    /// may carry), naming the field; None when it can. The payload's size is the caller's
    /// to bound (the device's packet size).
    pub fn problem(&self) -> Option<String> {
        self.format().problem()
    }

    fn format(&self) -> MqttMessageFormat {
        MqttMessageFormat {
            content: self.payload.clone(),
            topic: Some(self.topic.clone()),
            qos: Some(self.qos.min(1)),
            retain: self.retain,
            properties: self.properties.clone(),
        }
    }
}

/// What stream subscribers (`http-stream`) get of a device's publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamForm {
    /// A server-sent event, one `data:` line per line of the payload (UTF-8 payloads only:
    /// a binary one gets no `http-stream`).
    Sse,
    /// The payload as it is.
    Raw,
    /// Nothing: stream subscribers do not see device publishes.
    None,
}

/// The item for a device's publish on `channel`: `mqtt-message` (topic, QoS with 2 as 1,
/// retain, properties, payload), `ws-message` (text when the payload is UTF-8, else binary)
/// and the `http-stream` content `stream` asks for.
pub fn device_item(
    channel: String,
    id: Option<String>,
    p: DevicePublish,
    stream: StreamForm,
) -> Item {
    let DevicePublish {
        topic,
        payload,
        qos,
        retain,
        properties,
    } = p;
    let text = std::str::from_utf8(&payload).ok();
    let http_stream = match (stream, text) {
        (StreamForm::Sse, Some(text)) => Some(sse_event(text)),
        (StreamForm::Raw, _) => Some(payload.clone()),
        _ => None,
    }
    .map(|content| HttpStreamFormat {
        action: HttpStreamAction::Send(content),
        content_filters: Vec::new(),
    });
    let ws_message = Some(WsMessageFormat {
        action: WsAction::Send {
            kind: if text.is_some() {
                WsKind::Text
            } else {
                WsKind::Binary
            },
            content: payload.clone(),
        },
        content_filters: Vec::new(),
    });
    Item {
        channel,
        id,
        prev_id: None,
        meta: Vec::new(),
        no_seq: false,
        formats: Formats {
            http_stream,
            http_response: None,
            ws_message,
            mqtt_message: Some(MqttMessageFormat {
                content: payload,
                topic: Some(topic),
                qos: Some(qos.min(1)),
                retain,
                properties,
            }),
        },
    }
}

/// `text` as one server-sent event: a `data: ` line for each of its lines (split at CR LF,
/// LF or CR, as an event-stream reader splits them), then the blank line that ends the
/// event. A reader's `data` for it is `text` with line ends read as LF.
pub fn sse_event(text: &str) -> Bytes {
    let lines = memchr::memchr2_iter(b'\n', b'\r', text.as_bytes()).count() + 1;
    let mut out = Vec::with_capacity(text.len() + 7 * lines + 1);
    let mut rest = text;
    loop {
        out.extend_from_slice(b"data: ");
        match memchr::memchr2(b'\r', b'\n', rest.as_bytes()) {
            Some(at) => {
                out.extend_from_slice(&rest.as_bytes()[..at]);
                out.push(b'\n');
                let skip = if rest[at..].starts_with("\r\n") { 2 } else { 1 };
                rest = &rest[at + skip..];
            }
            None => {
                out.extend_from_slice(rest.as_bytes());
                out.extend_from_slice(b"\n\n");
                return Bytes::from(out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish::{encode_items, parse_publish_body, PublishLimits};

    fn publish(payload: &'static [u8]) -> DevicePublish {
        DevicePublish {
            topic: "sensors/kitchen".into(),
            payload: Bytes::from_static(payload),
            qos: 2,
            retain: true,
            properties: MqttProperties {
                content_type: Some("text/plain".into()),
                user: vec![("k".into(), "v".into()), ("k".into(), "w".into())],
                ..MqttProperties::default()
            },
        }
    }

    fn stream_content(item: &Item) -> Option<&[u8]> {
        match &item.formats.http_stream.as_ref()?.action {
            HttpStreamAction::Send(c) => Some(c),
            _ => None,
        }
    }

    #[test]
    fn a_text_publish_reaches_every_kind_of_subscriber() {
        let p = publish(b"21.5");
        assert_eq!(p.problem(), None);
        let item = device_item("ch".into(), Some("m1".into()), p.clone(), StreamForm::Sse);
        assert_eq!((&*item.channel, item.id.as_deref()), ("ch", Some("m1")));
        let mqtt = item.formats.mqtt_message.as_ref().unwrap();
        assert_eq!(mqtt.topic.as_deref(), Some("sensors/kitchen"));
        assert_eq!(
            (mqtt.qos, mqtt.retain),
            (Some(1), true),
            "QoS 2 is published as 1"
        );
        assert_eq!(mqtt.properties, p.properties);
        assert_eq!(&mqtt.content[..], b"21.5");
        let Some(WsMessageFormat {
            action: WsAction::Send { kind, content },
            ..
        }) = &item.formats.ws_message
        else {
            panic!("no ws send");
        };
        assert_eq!((*kind, &content[..]), (WsKind::Text, &b"21.5"[..]));
        // one payload buffer, shared
        assert_eq!(content.as_ptr(), mqtt.content.as_ptr());
        assert_eq!(stream_content(&item), Some(&b"data: 21.5\n\n"[..]));
        assert!(item.formats.http_response.is_none());

        let raw = device_item("ch".into(), None, p.clone(), StreamForm::Raw);
        assert_eq!(
            stream_content(&raw).map(<[u8]>::as_ptr),
            Some(mqtt.content.as_ptr())
        );
        let none = device_item("ch".into(), None, p, StreamForm::None);
        assert!(none.formats.http_stream.is_none());
    }

    #[test]
    fn a_binary_publish_is_a_binary_ws_message_and_no_sse_event() {
        let item = device_item("ch".into(), None, publish(b"\xff\x00"), StreamForm::Sse);
        assert!(item.formats.http_stream.is_none());
        assert!(matches!(
            item.formats.ws_message.as_ref().map(|w| &w.action),
            Some(WsAction::Send {
                kind: WsKind::Binary,
                ..
            })
        ));
        let raw = device_item("ch".into(), None, publish(b"\xff\x00"), StreamForm::Raw);
        assert_eq!(stream_content(&raw), Some(&b"\xff\x00"[..]));
    }

    #[test]
    fn sse_events_have_a_data_line_per_line() {
        for (text, want) in [
            ("", "data: \n\n"),
            ("a", "data: a\n\n"),
            ("a\nb", "data: a\ndata: b\n\n"),
            ("a\r\nb\rc\n", "data: a\ndata: b\ndata: c\ndata: \n\n"),
            ("\n\n", "data: \ndata: \ndata: \n\n"),
        ] {
            assert_eq!(&sse_event(text)[..], want.as_bytes(), "{text:?}");
        }
    }

    #[test]
    fn the_item_reads_back_equal_through_a_publish_body() {
        // what the cluster and the durable history do with it
        let limits = PublishLimits {
            max_content_bytes: usize::MAX,
            ..PublishLimits::default()
        };
        for payload in [&b"21.5"[..], b"", b"\xff\xfe", b"line 1\nline 2"] {
            for form in [StreamForm::Sse, StreamForm::Raw, StreamForm::None] {
                let mut p = publish(b"");
                p.payload = Bytes::copy_from_slice(payload);
                p.properties.correlation_data = Some(Bytes::from_static(b"\x01\x02"));
                p.properties.message_expiry = Some(60);
                let item = device_item("ch".into(), Some("id".into()), p, form);
                let back = parse_publish_body(&encode_items(std::slice::from_ref(&item)), &limits);
                assert_eq!(back, Ok(vec![item]), "{payload:?} {form:?}");
            }
        }
    }

    #[test]
    fn what_mqtt_does_not_allow_is_named() {
        let mut p = publish(b"x");
        p.topic = "a/+".into();
        assert!(p.problem().is_some_and(|e| e.starts_with("topic:")));
        p.topic = "a".into();
        p.properties.content_type = Some("a\0".into());
        assert!(p
            .problem()
            .is_some_and(|e| e.starts_with("properties.content-type:")));
    }
}
