//! Unit tests of [`Message`]: every accessor against what the item it was built from says,
//! for the simple shapes read from the wire bytes alone and for the rare ones, and its size.

use gripway_proto::chunked::encode_chunk;
use gripway_proto::publish::{
    Formats, HttpResponseAction, HttpResponseFormat, HttpStreamFormat, ResponseBody,
    ResponseMessage, WsMessageFormat,
};
use gripway_proto::ws_deflate::encode_message_frame;
use gripway_proto::ws_frame::encode_frame;

use super::*;

fn item(formats: Formats) -> Item {
    Item {
        channel: "ch".into(),
        id: Some("id-1".into()),
        prev_id: None,
        meta: vec![],
        no_seq: false,
        formats,
    }
}

fn stream(action: HttpStreamAction, filters: &[&str]) -> Option<HttpStreamFormat> {
    Some(HttpStreamFormat {
        action,
        content_filters: filters.iter().map(|f| f.to_string()).collect(),
    })
}

fn ws(action: WsAction, filters: &[&str]) -> Option<WsMessageFormat> {
    Some(WsMessageFormat {
        action,
        content_filters: filters.iter().map(|f| f.to_string()).collect(),
    })
}

fn send(kind: WsKind, content: &[u8]) -> WsAction {
    WsAction::Send {
        kind,
        content: Bytes::copy_from_slice(content),
    }
}

fn response() -> Option<HttpResponseFormat> {
    Some(HttpResponseFormat {
        action: HttpResponseAction::Send(ResponseMessage {
            code: 200,
            reason: None,
            headers: vec![],
            body: ResponseBody::Bytes(Bytes::from_static(b"body")),
        }),
        content_filters: vec![],
    })
}

#[test]
fn the_message_is_40_bytes_inline() {
    assert_eq!(std::mem::size_of::<Message>(), 40);
}

#[test]
fn a_simple_stream_item_is_its_chunk_and_its_content_a_slice_of_it() {
    for len in [1, 15, 16, 100, 255, 256, 4096, 70_000] {
        let content = vec![b'x'; len];
        let m = Message::new(item(Formats {
            http_stream: stream(HttpStreamAction::Send(content.clone().into()), &[]),
            ..Formats::default()
        }));
        assert!(m.rare().is_none() && m.ext.get().is_none());
        assert_eq!(m.stream_chunk(), Some(&encode_chunk(&content)[..]));
        assert_eq!(m.stream_content(), Some(&content[..]));
        let f = m
            .http_stream()
            .unwrap_or_else(|| panic!("no stream format"));
        assert_eq!((f.action, f.content_filters.len()), (StreamAction::Send, 0));
        assert!(m.ws_message().is_none() && m.ws_frame().is_none());
        assert!(m.ws_frame_deflated().is_none() && m.http_response().is_none());
        assert_eq!(m.id(), Some("id-1"));
        // one buffer: the content lies inside the chunk
        let inside = m.stream_chunk().map(|c| c.as_ptr_range());
        let bare = m.stream_content().map(|c| c.as_ptr());
        assert!(matches!((inside, bare), (Some(r), Some(p)) if r.contains(&p)));
    }
}

#[test]
fn a_simple_ws_item_is_its_frame_whatever_its_kind() {
    for kind in [WsKind::Text, WsKind::Binary, WsKind::Ping, WsKind::Pong] {
        for len in [0, 5, 125, 126, 200, 65_535, 65_536] {
            if matches!(kind, WsKind::Ping | WsKind::Pong) && len > 125 {
                continue;
            }
            let content = vec![b'a'; len];
            let m = Message::new(item(Formats {
                ws_message: ws(send(kind, &content), &[]),
                ..Formats::default()
            }));
            assert!(m.rare().is_none());
            let plain = encode_frame(frame_kind(kind), Bytes::from(content.clone()));
            assert_eq!(m.ws_frame(), Some(&plain[..]));
            let f = m.ws_message().unwrap_or_else(|| panic!("no ws format"));
            assert_eq!(f.action, WsOp::Send(kind));
            let deflated = match kind {
                WsKind::Text => encode_message_frame(false, &content),
                WsKind::Binary => encode_message_frame(true, &content),
                _ => plain.clone(),
            };
            assert_eq!(m.ws_frame_deflated(), Some(&deflated[..]), "{kind:?} {len}");
            assert!(m.http_stream().is_none() && m.stream_chunk().is_none());
            assert!(m.stream_content().is_none());
        }
    }
}

#[test]
fn a_deflated_frame_is_made_once_and_a_plain_one_reused_when_compression_does_not_help() {
    let long = Message::new(item(Formats {
        ws_message: ws(send(WsKind::Text, &[b'z'; 1000]), &[]),
        ..Formats::default()
    }));
    let first = long.ws_frame_deflated().map(|b| b.as_ptr());
    assert_eq!(first, long.ws_frame_deflated().map(|b| b.as_ptr()));
    assert_ne!(first, long.ws_frame().map(|b| b.as_ptr()));
    let short = Message::new(item(Formats {
        ws_message: ws(send(WsKind::Text, b"hi"), &[]),
        ..Formats::default()
    }));
    assert_eq!(
        short.ws_frame_deflated().map(|b| b.as_ptr()),
        short.ws_frame().map(|b| b.as_ptr())
    );
    assert!(
        short.ext.get().is_none(),
        "nothing made for a short message"
    );
}

#[test]
fn both_formats_keep_both_frames() {
    let m = Message::new(item(Formats {
        http_stream: stream(HttpStreamAction::Send(Bytes::from_static(b"s")), &[]),
        ws_message: ws(send(WsKind::Binary, b"w"), &[]),
        ..Formats::default()
    }));
    assert!(m.rare().is_none(), "both frames live in the block");
    assert_eq!(m.stream_chunk(), Some(&encode_chunk(b"s")[..]));
    assert_eq!(m.stream_content(), Some(&b"s"[..]));
    assert_eq!(
        m.ws_frame(),
        Some(&encode_frame(FrameKind::Binary, Bytes::from_static(b"w"))[..])
    );
    assert_eq!(
        m.ws_message().map(|f| f.action),
        Some(WsOp::Send(WsKind::Binary))
    );
    assert_eq!(m.http_stream().map(|f| f.action), Some(StreamAction::Send));
}

#[test]
fn rare_shapes_are_described_in_full() {
    // empty content: a send that writes nothing
    let m = Message::new(item(Formats {
        http_stream: stream(HttpStreamAction::Send(Bytes::new()), &[]),
        ..Formats::default()
    }));
    assert_eq!(m.http_stream().map(|f| f.action), Some(StreamAction::Send));
    assert!(m.stream_chunk().is_none() && m.stream_content().is_none());

    for (action, want) in [
        (HttpStreamAction::Close, StreamAction::Close),
        (HttpStreamAction::Hint, StreamAction::Hint),
    ] {
        let m = Message::new(item(Formats {
            http_stream: stream(action, &["build-id"]),
            ..Formats::default()
        }));
        let f = m
            .http_stream()
            .unwrap_or_else(|| panic!("no stream format"));
        assert_eq!(
            (f.action, f.content_filters),
            (want, &["build-id".to_string()][..])
        );
        assert!(m.stream_chunk().is_none());
    }

    let m = Message::new(item(Formats {
        ws_message: ws(
            WsAction::Close {
                code: Some(4000),
                reason: "bye".into(),
            },
            &[],
        ),
        ..Formats::default()
    }));
    assert_eq!(
        m.ws_message().map(|f| f.action),
        Some(WsOp::Close {
            code: Some(4000),
            reason: "bye"
        })
    );
    assert_eq!(m.ws_frame(), Some(&encode_close(Some(4000), "bye")[..]));
    assert_eq!(m.ws_frame_deflated(), m.ws_frame());
    for (action, want) in [
        (WsAction::Refresh, WsOp::Refresh),
        (WsAction::Hint, WsOp::Hint),
    ] {
        let m = Message::new(item(Formats {
            ws_message: ws(action, &[]),
            ..Formats::default()
        }));
        assert_eq!(m.ws_message().map(|f| f.action), Some(want));
        assert!(m.ws_frame().is_none() && m.ws_frame_deflated().is_none());
    }

    // filters on a send keep the frame and report the filters
    let m = Message::new(item(Formats {
        ws_message: ws(send(WsKind::Text, b"x"), &["var-subst"]),
        http_response: response(),
        ..Formats::default()
    }));
    assert_eq!(m.ws_message().map(|f| f.content_filters.len()), Some(1));
    assert!(m.ws_frame().is_some());
    assert!(m.http_response().is_some());
    assert!(m.http_stream().is_none());
}

#[test]
fn prev_id_meta_and_no_seq_are_kept() {
    let m = Message::new(Item {
        prev_id: Some("id-0".into()),
        meta: vec![("sender".into(), "u1".into())],
        no_seq: true,
        ..item(Formats {
            http_stream: stream(HttpStreamAction::Send(Bytes::from_static(b"x")), &[]),
            ..Formats::default()
        })
    });
    assert_eq!(m.prev_id().map(|p| &**p), Some("id-0"));
    assert_eq!(m.meta_value("sender"), Some("u1"));
    assert!(m.no_seq());
    assert!(m.stream_chunk().is_some());
    let plain = Message::new(item(Formats {
        http_response: response(),
        ..Formats::default()
    }));
    assert!(plain.prev_id().is_none() && !plain.no_seq() && plain.meta().is_empty());
    assert_eq!(plain.id(), Some("id-1"));
    assert!(plain.id_is("id-1") && !plain.id_is("id-2") && plain.has_id());
    let anonymous = Message::new(Item {
        id: None,
        ..item(Formats {
            http_response: response(),
            ..Formats::default()
        })
    });
    assert!(anonymous.id().is_none() && !anonymous.has_id() && !anonymous.id_is(""));
    assert_eq!(&*plain.channel, "ch");
}

#[test]
fn cost_counts_what_the_message_holds() {
    let content = vec![b'x'; 100];
    let m = Message::new(item(Formats {
        http_stream: stream(HttpStreamAction::Send(content.into()), &[]),
        ..Formats::default()
    }));
    let chunk = 2 + 2 + 100 + 2;
    let block = 1 + 1 + "id-1".len();
    assert_eq!(m.cost(), 40 + 16 + block + chunk);
    // a long text message may get a compressed copy: counted up front
    let m = Message::new(item(Formats {
        ws_message: ws(send(WsKind::Text, &[b'a'; 1000]), &[]),
        ..Formats::default()
    }));
    let frame = 4 + 1000;
    let lazy = std::mem::size_of::<Ext>() + 1000;
    assert_eq!(m.cost(), 40 + 16 + block + frame + lazy);
    // making the compressed copy does not change what is counted
    let before = m.cost();
    assert!(m.ws_frame_deflated().is_some());
    assert_eq!(m.cost(), before);
}

#[test]
fn long_ids_and_large_frames_beside_a_chunk_are_laid_out_in_the_block() {
    for (id_len, ws_len) in [
        (0, 0),
        (3, 125),
        (255, 1),
        (256, 126),
        (70_000, 126),
        (5, 70_000),
    ] {
        let id = "i".repeat(id_len);
        let ws_content = vec![b'w'; ws_len];
        let m = Message::new(Item {
            id: Some(id.clone()),
            ..item(Formats {
                http_stream: stream(HttpStreamAction::Send(Bytes::from_static(b"chunk")), &[]),
                ws_message: ws(send(WsKind::Binary, &ws_content), &[]),
                ..Formats::default()
            })
        });
        assert_eq!(m.id(), Some(&id[..]));
        assert_eq!(m.stream_chunk(), Some(&encode_chunk(b"chunk")[..]));
        let frame = encode_frame(FrameKind::Binary, Bytes::from(ws_content.clone()));
        assert_eq!(m.ws_frame(), Some(&frame[..]), "{id_len} {ws_len}");
        assert_eq!(m.ws_content(), Some(&ws_content[..]));
        assert_eq!(m.to_item().id, Some(id));
    }
}

#[test]
fn every_encoding_is_what_its_accessor_gives() {
    let m = Message::new(item(Formats {
        http_stream: stream(
            HttpStreamAction::Send(Bytes::from_static(b"data: x\n\n")),
            &[],
        ),
        ws_message: ws(send(WsKind::Text, &[b'q'; 300]), &[]),
        ..Formats::default()
    }));
    for (which, want) in [
        (Encoding::StreamChunk, m.stream_chunk()),
        (Encoding::StreamContent, m.stream_content()),
        (Encoding::SseIdChunk, m.stream_with_sse_id(true)),
        (Encoding::SseIdContent, m.stream_with_sse_id(false)),
        (Encoding::WsFrame, m.ws_frame()),
        (Encoding::WsFrameDeflated, m.ws_frame_deflated()),
    ] {
        assert!(want.is_some());
        assert_eq!(m.encoding(which), want, "{which:?}");
    }
    assert_eq!(
        m.stream_with_sse_id(false),
        Some(&b"id: id-1\ndata: x\n\n"[..])
    );
}

// ---------------------------------------------------------------------------------------------
// MQTT

use gripway_proto::mqtt::v5_publish_props;
use gripway_proto::publish::{
    device_item, DevicePublish, MqttMessageFormat, MqttProperties, StreamForm,
};

fn props() -> MqttProperties {
    MqttProperties {
        content_type: Some("text/plain".into()),
        message_expiry: Some(30),
        user: vec![("k".into(), "v".into())],
        ..MqttProperties::default()
    }
}

fn device(payload: &[u8], stream: StreamForm) -> Item {
    let publish = DevicePublish {
        topic: "sensors/kitchen".into(),
        payload: Bytes::copy_from_slice(payload),
        qos: 2,
        retain: true,
        properties: props(),
    };
    device_item("ch".into(), Some("m-1".into()), publish, stream)
}

fn mqtt_format(content: &[u8]) -> Option<MqttMessageFormat> {
    Some(MqttMessageFormat {
        content: Bytes::copy_from_slice(content),
        ..MqttMessageFormat::default()
    })
}

/// The view, checked against what the encodings give.
fn view(m: &Message) -> Option<MqttView<'_>> {
    let v = m.mqtt();
    assert_eq!(m.encoding(Encoding::MqttPayload), v.map(|v| v.payload));
    assert_eq!(m.encoding(Encoding::MqttV5Props), v.map(|v| v.props));
    v
}

#[test]
fn without_the_format_mqtt_gets_the_ws_content_then_the_stream_content() {
    let both = Message::new(item(Formats {
        http_stream: stream(
            HttpStreamAction::Send(Bytes::from_static(b"data: s\n\n")),
            &[],
        ),
        ws_message: ws(send(WsKind::Text, b"w"), &[]),
        ..Formats::default()
    }));
    let want = MqttView {
        payload: b"w",
        qos: 1,
        retain: false,
        topic: None,
        props: &[0],
    };
    assert_eq!(view(&both), Some(want));
    // the content inside the frame: no copy
    assert_eq!(
        both.mqtt().map(|v| v.payload.as_ptr()),
        both.ws_content().map(<[u8]>::as_ptr)
    );
    let binary = Message::new(item(Formats {
        ws_message: ws(send(WsKind::Binary, b"\xff"), &["build-id"]),
        ..Formats::default()
    }));
    assert_eq!(view(&binary).map(|v| v.payload), Some(&b"\xff"[..]));
    // the stream's content, not its chunk; no id: QoS 0
    let stream_only = Message::new(Item {
        id: None,
        ..item(Formats {
            http_stream: stream(
                HttpStreamAction::Send(Bytes::from_static(b"data: s\n\n")),
                &[],
            ),
            ..Formats::default()
        })
    });
    let want = MqttView {
        payload: b"data: s\n\n",
        qos: 0,
        ..want
    };
    assert_eq!(view(&stream_only), Some(want));
    // nothing for MQTT: other ws actions (even beside stream content), empty or no stream
    // content, a response only
    for ws_action in [
        send(WsKind::Ping, b"p"),
        send(WsKind::Pong, b""),
        WsAction::Close {
            code: None,
            reason: String::new(),
        },
        WsAction::Refresh,
        WsAction::Hint,
    ] {
        let m = Message::new(item(Formats {
            http_stream: stream(HttpStreamAction::Send(Bytes::from_static(b"s")), &[]),
            ws_message: ws(ws_action.clone(), &[]),
            ..Formats::default()
        }));
        assert_eq!(view(&m), None, "{ws_action:?}");
    }
    for action in [
        HttpStreamAction::Send(Bytes::new()),
        HttpStreamAction::Close,
        HttpStreamAction::Hint,
    ] {
        let m = Message::new(item(Formats {
            http_stream: stream(action, &[]),
            ..Formats::default()
        }));
        assert_eq!(view(&m), None);
    }
    let m = Message::new(item(Formats {
        http_response: response(),
        ..Formats::default()
    }));
    assert_eq!(view(&m), None);
    assert!(!m.has_mqtt_message() && m.to_item().formats.mqtt_message.is_none());
}

#[test]
fn a_device_publish_keeps_its_payload_once_and_its_properties_encoded() {
    let m = Message::new(device(b"21.5", StreamForm::Sse));
    assert!(m.has_mqtt_message() && m.rare().is_none() && m.ext.get().is_none());
    let v = view(&m).unwrap_or_else(|| panic!("no view"));
    assert_eq!(
        v,
        MqttView {
            payload: b"21.5",
            qos: 1,
            retain: true,
            topic: Some("sensors/kitchen"),
            props: &v5_publish_props(&props()),
        }
    );
    // the payload is the ws frame's: no third copy
    assert_eq!(
        v.payload.as_ptr(),
        m.ws_content().map_or(std::ptr::null(), <[u8]>::as_ptr)
    );
    // every other format is read as before
    assert_eq!(m.stream_content(), Some(&b"data: 21.5\n\n"[..]));
    assert_eq!(m.stream_chunk(), Some(&encode_chunk(b"data: 21.5\n\n")[..]));
    assert_eq!(
        m.ws_message().map(|f| f.action),
        Some(WsOp::Send(WsKind::Text))
    );
    assert_eq!(m.id(), Some("m-1"));
    // raw: the ws content still (the first that matches)
    let raw = Message::new(device(b"\xff", StreamForm::Raw));
    let v = view(&raw).unwrap_or_else(|| panic!("no view"));
    assert_eq!(
        v.payload.as_ptr(),
        raw.ws_content().map_or(std::ptr::null(), <[u8]>::as_ptr)
    );
    assert_eq!(
        raw.ws_message().map(|f| f.action),
        Some(WsOp::Send(WsKind::Binary))
    );
}

#[test]
fn the_format_alone_or_beside_other_content() {
    // alone: the block holds it; no format besides
    let m = Message::new(item(Formats {
        mqtt_message: mqtt_format(b"alone"),
        ..Formats::default()
    }));
    assert_eq!(
        view(&m).map(|v| (v.payload, v.qos, v.topic, v.props)),
        Some((&b"alone"[..], 1, None, &[0u8][..]))
    );
    assert!(m.rare().is_none() && m.http_stream().is_none() && m.ws_message().is_none());
    assert!(m.stream_chunk().is_none() && m.ws_frame().is_none() && m.http_response().is_none());
    // its own payload beside different ws and stream content, and a long id
    let id = "i".repeat(300);
    let m = Message::new(Item {
        id: Some(id.clone()),
        ..item(Formats {
            http_stream: stream(HttpStreamAction::Send(Bytes::from_static(b"s")), &[]),
            ws_message: ws(send(WsKind::Text, b"w"), &[]),
            mqtt_message: Some(MqttMessageFormat {
                content: Bytes::from_static(b"m"),
                topic: Some("t".into()),
                qos: Some(0),
                retain: false,
                properties: props(),
            }),
            ..Formats::default()
        })
    });
    let v = view(&m).unwrap_or_else(|| panic!("no view"));
    assert_eq!((v.payload, v.qos, v.topic), (&b"m"[..], 0, Some("t")));
    assert_eq!(m.id(), Some(&id[..]));
    assert_eq!(m.stream_chunk(), Some(&encode_chunk(b"s")[..]));
    assert_eq!(m.ws_content(), Some(&b"w"[..]));
    // the stream's content, with a rare shape (content filters)
    let m = Message::new(item(Formats {
        http_stream: stream(HttpStreamAction::Send(Bytes::from_static(b"same")), &["f"]),
        mqtt_message: mqtt_format(b"same"),
        ..Formats::default()
    }));
    let v = view(&m).unwrap_or_else(|| panic!("no view"));
    assert_eq!(
        v.payload.as_ptr(),
        m.stream_content().map_or(std::ptr::null(), <[u8]>::as_ptr)
    );
    assert_eq!(m.http_stream().map(|f| f.content_filters.len()), Some(1));
    // an empty payload, beside a ws close (the format wins over the fallback)
    let m = Message::new(item(Formats {
        ws_message: ws(
            WsAction::Close {
                code: Some(1000),
                reason: "x".into(),
            },
            &[],
        ),
        mqtt_message: mqtt_format(b""),
        ..Formats::default()
    }));
    assert_eq!(view(&m).map(|v| v.payload), Some(&b""[..]));
    assert_eq!(m.ws_frame(), Some(&encode_close(Some(1000), "x")[..]));
}

#[test]
fn an_mqtt_item_comes_back_whole() {
    let big = vec![b'b'; 70_000];
    let mut items = vec![
        device(b"21.5", StreamForm::Sse),
        device(b"line 1\r\nline 2", StreamForm::Sse),
        device(b"\xff\x00", StreamForm::Raw),
        device(b"", StreamForm::None),
        device(&big, StreamForm::Raw),
        item(Formats {
            mqtt_message: mqtt_format(b"alone"),
            ..Formats::default()
        }),
    ];
    let mut long = device(b"x", StreamForm::Sse);
    long.id = Some("i".repeat(256));
    long.meta = vec![("k".into(), "v".into())];
    long.formats.http_response = response();
    items.push(long);
    let mut qos_default = device(b"y", StreamForm::Sse);
    if let Some(f) = qos_default.formats.mqtt_message.as_mut() {
        f.qos = None;
        f.topic = None;
        f.properties = MqttProperties::default();
    }
    items.push(qos_default);
    for it in items {
        let m = Message::new(it.clone());
        assert_eq!(m.to_item(), it);
    }
}

#[test]
fn cost_counts_the_mqtt_part_in_the_block() {
    let m = Message::new(device(b"21.5", StreamForm::Sse));
    let sse = b"data: 21.5\n\n".len();
    let block = 1 + 1 + "m-1".len()
        + (2 + 4) // the text frame
        + (1 + 2 + sse + 2) // the chunk
        + "sensors/kitchen".len() + 4 // the topic and its length
        + v5_publish_props(&props()).len() + 4 // the property block and its length
        + 1; // the mqtt byte
    assert_eq!(m.block.len(), block);
    assert_eq!(m.cost(), 40 + 16 + block);
    // its own payload adds the payload and its length, once
    let m = Message::new(item(Formats {
        mqtt_message: mqtt_format(&[b'p'; 100]),
        ..Formats::default()
    }));
    assert_eq!(m.cost(), 40 + 16 + 1 + 1 + "id-1".len() + 100 + 4 + 1);
}
