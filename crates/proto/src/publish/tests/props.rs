//! Property tests: parsing never panics, and encode → parse round-trips.

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;

fn bytes_strategy(max: usize) -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn filters_strategy() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec("[a-z-]{1,10}", 0..3)
}

fn json_value_strategy() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        ".{0,6}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(".{0,4}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn patch_strategy() -> impl Strategy<Value = JsonPatch> {
    let pointer = proptest::collection::vec(".{0,4}", 0..3).prop_map(JsonPointer::from_tokens);
    let op = (0..6usize, pointer.clone(), pointer, json_value_strategy()).prop_map(
        |(kind, path, from, value)| match kind {
            0 => PatchOp::Add { path, value },
            1 => PatchOp::Remove { path },
            2 => PatchOp::Replace { path, value },
            3 => PatchOp::Move { from, path },
            4 => PatchOp::Copy { from, path },
            _ => PatchOp::Test { path, value },
        },
    );
    proptest::collection::vec(op, 0..4)
        .prop_filter_map("impossible op", |ops| JsonPatch::new(ops).ok())
}

fn stream_strategy() -> impl Strategy<Value = HttpStreamFormat> {
    let action = prop_oneof![
        bytes_strategy(64).prop_map(HttpStreamAction::Send),
        Just(HttpStreamAction::Close),
        Just(HttpStreamAction::Hint),
    ];
    (action, filters_strategy()).prop_map(|(action, content_filters)| HttpStreamFormat {
        action,
        content_filters,
    })
}

fn response_strategy() -> impl Strategy<Value = HttpResponseFormat> {
    let header = ("[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}", "[ -~]{0,12}|\\PC{0,6}");
    let body = prop_oneof![
        bytes_strategy(64).prop_map(ResponseBody::Bytes),
        patch_strategy().prop_map(ResponseBody::Patch),
    ];
    let message = (
        0u16..=999,
        proptest::option::of("[A-Za-z][A-Za-z \t]{0,10}"),
        proptest::collection::vec(header, 0..4),
        body,
    )
        .prop_map(|(code, reason, headers, body)| {
            HttpResponseAction::Send(ResponseMessage {
                code,
                reason,
                headers,
                body,
            })
        });
    let action = prop_oneof![message, Just(HttpResponseAction::Hint)];
    (action, filters_strategy()).prop_map(|(action, content_filters)| HttpResponseFormat {
        action,
        content_filters,
    })
}

fn ws_strategy() -> impl Strategy<Value = WsMessageFormat> {
    let close_code =
        (1000u16..=4999).prop_filter("not sendable", |c| !matches!(c, 1004 | 1005 | 1006 | 1015));
    let action = prop_oneof![
        any::<String>().prop_map(|s| WsAction::Send {
            kind: WsKind::Text,
            content: Bytes::from(s)
        }),
        bytes_strategy(64).prop_map(|content| WsAction::Send {
            kind: WsKind::Binary,
            content
        }),
        bytes_strategy(126).prop_map(|content| WsAction::Send {
            kind: WsKind::Ping,
            content
        }),
        bytes_strategy(126).prop_map(|content| WsAction::Send {
            kind: WsKind::Pong,
            content
        }),
        (proptest::option::of(close_code), "\\PC{0,30}")
            .prop_filter("reason too long", |(_, r)| r.len()
                <= MAX_CLOSE_REASON_BYTES)
            .prop_map(|(code, reason)| WsAction::Close { code, reason }),
        Just(WsAction::Refresh),
        Just(WsAction::Hint),
    ];
    (action, filters_strategy()).prop_map(|(action, content_filters)| WsMessageFormat {
        action,
        content_filters,
    })
}

fn mqtt_strategy() -> impl Strategy<Value = MqttMessageFormat> {
    let topic = "[a-z/$ ]{1,12}|[^+#\\x00]{1,6}";
    let text = "[^\\x00]{0,8}";
    let props = (
        proptest::option::of(text),
        proptest::option::of(any::<bool>()),
        proptest::option::of(any::<u32>()),
        proptest::option::of(topic),
        proptest::option::of(bytes_strategy(16)),
        proptest::collection::vec((text, text), 0..3),
    )
        .prop_map(
            |(
                content_type,
                payload_utf8,
                message_expiry,
                response_topic,
                correlation_data,
                user,
            )| {
                MqttProperties {
                    content_type,
                    payload_utf8,
                    message_expiry,
                    response_topic,
                    correlation_data,
                    user,
                }
            },
        );
    (
        bytes_strategy(32),
        proptest::option::of(topic),
        proptest::option::of(0u8..=1),
        any::<bool>(),
        props,
    )
        .prop_map(
            |(content, topic, qos, retain, properties)| MqttMessageFormat {
                content,
                topic,
                qos,
                retain,
                properties,
            },
        )
        .prop_filter("payload-format 1 needs UTF-8", |f| f.problem().is_none())
}

fn item_strategy() -> impl Strategy<Value = Item> {
    let name = "[a-zA-Z0-9_.:/~ -]{1,16}|\\PC{1,8}";
    let formats = (
        proptest::option::of(stream_strategy()),
        proptest::option::of(response_strategy()),
        proptest::option::of(ws_strategy()),
        proptest::option::of(mqtt_strategy()),
    )
        .prop_map(
            |(http_stream, http_response, ws_message, mqtt_message)| Formats {
                http_stream,
                http_response,
                ws_message,
                mqtt_message,
            },
        )
        .prop_filter("no formats", |f| !f.is_empty());
    (
        name,
        proptest::option::of(name),
        proptest::option::of(name),
        proptest::collection::btree_map("[a-z]{1,8}", "\\PC{0,8}", 0..4),
        any::<bool>(),
        formats,
    )
        .prop_map(|(channel, id, prev_id, meta, no_seq, formats)| Item {
            channel,
            id,
            prev_id,
            meta: meta.into_iter().collect(),
            no_seq,
            formats,
        })
}

/// Random JSON shaped like a publish body, with the keys the parser knows, to reach deep
/// error paths.
fn body_like_strategy() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("items"),
        Just("channel"),
        Just("id"),
        Just("prev-id"),
        Just("meta"),
        Just("no-seq"),
        Just("size"),
        Just("formats"),
        Just("http-stream"),
        Just("http-response"),
        Just("ws-message"),
        Just("action"),
        Just("content"),
        Just("content-bin"),
        Just("body"),
        Just("body-bin"),
        Just("body-patch"),
        Just("code"),
        Just("reason"),
        Just("headers"),
        Just("type"),
        Just("content-filters"),
        Just("mqtt-message"),
        Just("topic"),
        Just("qos"),
        Just("retain"),
        Just("properties"),
        Just("payload-format"),
        Just("message-expiry"),
        Just("response-topic"),
        Just("correlation-data-bin"),
        Just("user"),
        Just("op"),
        Just("path"),
        Just("from"),
        Just("value"),
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (-2000i64..2000).prop_map(Value::from),
        prop_oneof![
            Just("send"),
            Just("close"),
            Just("hint"),
            Just("refresh"),
            Just("ping"),
            Just("text"),
            Just("aGk="),
            Just("/a"),
            Just("add"),
            Just("")
        ]
        .prop_map(Value::from),
        ".{0,6}".prop_map(Value::from),
    ];
    leaf.prop_recursive(6, 64, 5, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec((key.clone(), inner), 0..5).prop_map(|kv| Value::Object(
                kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
            )),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parse_never_panics_on_bytes(body in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse_publish_body(&body, &limits());
    }

    #[test]
    fn parse_never_panics_on_body_like_json(items in proptest::collection::vec(body_like_strategy(), 0..4)) {
        let body = json!({"items": items}).to_string();
        if let Err(e) = parse_publish_body(body.as_bytes(), &limits()) {
            prop_assert!(e.message.starts_with("items") || e.message.starts_with("body"), "{}", e);
        }
    }

    #[test]
    fn parse_never_panics_on_mutated_bodies(
        items in proptest::collection::vec(item_strategy(), 1..3),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut body = encode_items(&items);
        for (at, byte) in edits {
            let i = at.index(body.len());
            body[i] = byte;
        }
        let _ = parse_publish_body(&body, &limits());
    }

    #[test]
    fn encode_then_parse_round_trips(items in proptest::collection::vec(item_strategy(), 0..4)) {
        let body = encode_items(&items);
        let parsed = parse_publish_body(&body, &limits());
        prop_assert_eq!(parsed, Ok(items), "{}", String::from_utf8_lossy(&body));
    }
}
