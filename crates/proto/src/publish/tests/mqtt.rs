//! The `mqtt-message` format: every field, its defaults, and every error.

use base64::engine::general_purpose::STANDARD as STANDARD_B64;
use base64::Engine as _;
use bytes::Bytes;
use serde_json::{json, Value};

use super::*;

fn mqtt(format: Value) -> MqttMessageFormat {
    let item = one(json!({"channel": "c", "formats": {"mqtt-message": format}}));
    item.formats
        .mqtt_message
        .unwrap_or_else(|| panic!("no mqtt-message"))
}

fn mqtt_error(format: Value) -> String {
    formats_error(json!({ "mqtt-message": format }))
}

#[test]
fn every_field() {
    let f = mqtt(json!({
        "content": "21.5", "topic": "sensors/kitchen/temp", "qos": 1, "retain": true,
        "properties": {
            "content-type": "text/plain", "payload-format": 1, "message-expiry": 60,
            "response-topic": "replies/x", "correlation-data-bin": "AAE=",
            "user": [["k", "v"], ["k", "w"]], "future-property": {"ignored": true}
        },
        "unknown": [1, 2]
    }));
    assert_eq!(
        f,
        MqttMessageFormat {
            content: Bytes::from_static(b"21.5"),
            topic: Some("sensors/kitchen/temp".into()),
            qos: Some(1),
            retain: true,
            properties: MqttProperties {
                content_type: Some("text/plain".into()),
                payload_utf8: Some(true),
                message_expiry: Some(60),
                response_topic: Some("replies/x".into()),
                correlation_data: Some(Bytes::from_static(b"\x00\x01")),
                user: vec![("k".into(), "v".into()), ("k".into(), "w".into())],
            },
        }
    );
}

#[test]
fn defaults_and_qos_2() {
    let f = mqtt(json!({"content-bin": "/wA="}));
    assert_eq!(
        f,
        MqttMessageFormat {
            content: Bytes::from_static(b"\xff\x00"),
            ..MqttMessageFormat::default()
        }
    );
    assert_eq!(mqtt(json!({"content": "", "qos": 2})).qos, Some(1));
    assert_eq!(mqtt(json!({"content": "", "qos": 0})).qos, Some(0));
    let p = mqtt(json!({"content": "x", "properties": {"correlation-data": "id-7"}})).properties;
    assert_eq!(p.correlation_data, Some(Bytes::from_static(b"id-7")));
    // an item of this format alone is an item
    let item = one(json!({"channel": "c", "formats": {"mqtt-message": {"content": "x"}}}));
    assert!(item.formats.http_stream.is_none() && item.formats.ws_message.is_none());
    // and the legacy form (formats on the item) takes it as it takes the others
    let item = one(json!({"channel": "c", "mqtt-message": {"content": "x"}}));
    assert!(item.formats.mqtt_message.is_some());
}

#[test]
fn every_error_names_its_field() {
    let at = "items[0].formats.mqtt-message";
    let many: Vec<Value> = (0..=MAX_META_ENTRIES)
        .map(|i| json!([i.to_string(), "v"]))
        .collect();
    let cases = [
        (json!("x"), format!("{at}: expected an object, got a string")),
        (json!({}), format!("{at}: needs 'content' or 'content-bin'")),
        (
            json!({"content": "x", "content-bin": "eA=="}),
            format!("{at}: has both 'content' and 'content-bin'; give one"),
        ),
        (json!({"content-bin": "!"}), format!("{at}.content-bin: not valid base64: unexpected '!' at offset 0")),
        (json!({"content": 1}), format!("{at}.content: expected a string, got an integer")),
        (json!({"content": "x", "topic": ""}), format!("{at}.topic: must not be empty")),
        (
            json!({"content": "x", "topic": "a/+"}),
            format!("{at}.topic: a topic name must not hold the wildcards '+' or '#'"),
        ),
        (json!({"content": "x", "topic": "a\u{0}"}), format!("{at}.topic: must not contain U+0000")),
        (json!({"content": "x", "qos": 3}), format!("{at}.qos: expected 0, 1 or 2, got 3")),
        (json!({"content": "x", "qos": -1}), format!("{at}.qos: expected 0, 1 or 2, got -1")),
        (json!({"content": "x", "qos": "1"}), format!("{at}.qos: expected 0, 1 or 2, got a string")),
        (json!({"content": "x", "retain": 1}), format!("{at}.retain: expected a boolean, got an integer")),
        (json!({"content": "x", "properties": []}), format!("{at}.properties: expected an object, got an array")),
        (
            json!({"content": "x", "properties": {"payload-format": 2}}),
            format!("{at}.properties.payload-format: expected 0 or 1, got 2"),
        ),
        (
            json!({"content": "x", "properties": {"message-expiry": 4_294_967_296u64}}),
            format!("{at}.properties.message-expiry: 4294967296 is over the limit of 4294967295"),
        ),
        (
            json!({"content": "x", "properties": {"message-expiry": 1.5}}),
            format!("{at}.properties.message-expiry: expected a number of seconds, got a non-integer number"),
        ),
        (
            json!({"content": "x", "properties": {"response-topic": "r/#"}}),
            format!("{at}.properties.response-topic: a topic name must not hold the wildcards '+' or '#'"),
        ),
        (
            json!({"content": "x", "properties": {"content-type": "a\u{0}"}}),
            format!("{at}.properties.content-type: must not contain U+0000"),
        ),
        (
            json!({"content": "x", "properties": {"correlation-data": "a", "correlation-data-bin": "YQ=="}}),
            format!("{at}: has both 'properties.correlation-data' and 'properties.correlation-data-bin'; give one"),
        ),
        (
            json!({"content": "x", "properties": {"user": {"k": "v"}}}),
            format!("{at}.properties.user: expected an array of [name, value] pairs, got an object"),
        ),
        (
            json!({"content": "x", "properties": {"user": [["k"]]}}),
            format!("{at}.properties.user[0]: expected a [name, value] pair of strings"),
        ),
        (
            json!({"content": "x", "properties": {"user": [["k", 1]]}}),
            format!("{at}.properties.user[0]: expected a [name, value] pair of strings"),
        ),
        (
            json!({"content": "x", "properties": {"user": [["k", "\u{0}"]]}}),
            format!("{at}.properties.user[0]: must not contain U+0000"),
        ),
        (
            json!({"content": "x", "properties": {"user": many}}),
            format!("{at}.properties.user: more than {MAX_META_ENTRIES} properties"),
        ),
        (
            json!({"content-bin": "/w==", "properties": {"payload-format": 1}}),
            format!("{at}.content-bin: properties.payload-format 1 says UTF-8, but the content is not"),
        ),
    ];
    for (format, message) in cases {
        assert_eq!(mqtt_error(format), message);
    }
    // a repeated key, in the format and in its properties
    let body =
        r#"{"items":[{"channel":"c","formats":{"mqtt-message":{"content":"a","qos":1,"qos":0}}}]}"#;
    assert_eq!(
        parse_err(body).message,
        format!("{at}: duplicate key 'qos'")
    );
    let body = r#"{"items":[{"channel":"c","formats":{"mqtt-message":{"content":"a","properties":{"user":[],"user":[]}}}}]}"#;
    assert_eq!(
        parse_err(body).message,
        format!("{at}.properties: duplicate key 'user'")
    );
    let body = r#"{"items":[{"channel":"c","formats":{"mqtt-message":{"content":"a"},"mqtt-message":{"content":"b"}}}]}"#;
    assert_eq!(
        parse_err(body).message,
        "items[0].formats: duplicate key 'mqtt-message'"
    );
}

#[test]
fn limits() {
    let max = super::limits().max_content_bytes;
    let at_max = "x".repeat(max);
    assert_eq!(mqtt(json!({ "content": at_max })).content.len(), max);
    let over =
        json!({"channel": "c", "formats": {"mqtt-message": {"content": "x".repeat(max + 1)}}});
    let e = parse_err(&json!({ "items": [over] }).to_string());
    assert_eq!(e.kind, PublishErrorKind::TooLarge);
    let topic = "t".repeat(MAX_MQTT_STRING_BYTES);
    assert_eq!(
        mqtt(json!({"content": "x", "topic": topic}))
            .topic
            .map(|t| t.len()),
        Some(MAX_MQTT_STRING_BYTES)
    );
    let long = "t".repeat(MAX_MQTT_STRING_BYTES + 1);
    assert!(mqtt_error(json!({"content": "x", "topic": long}))
        .ends_with("bytes, over the limit of 65535"));
    let data = STANDARD_B64.encode(vec![0u8; MAX_MQTT_STRING_BYTES + 1]);
    let over = json!({"channel": "c", "formats": {"mqtt-message": {"content": "x", "properties": {"correlation-data-bin": data}}}});
    let e = parse_err(&json!({ "items": [over] }).to_string());
    assert_eq!(e.kind, PublishErrorKind::TooLarge, "{e}");
    let users: Vec<Value> = (0..MAX_META_ENTRIES)
        .map(|i| json!([i.to_string(), "v"]))
        .collect();
    assert_eq!(
        mqtt(json!({"content": "x", "properties": {"user": users}}))
            .properties
            .user
            .len(),
        MAX_META_ENTRIES
    );
}

#[test]
fn encode_round_trips_and_writes_defaults_out() {
    let item = one(
        json!({"channel": "c", "id": "i", "formats": {"mqtt-message": {
        "content-bin": "/w==", "topic": "t", "qos": 1, "retain": true,
        "properties": {"correlation-data-bin": "/w==", "user": [["a", "b"]]}}}}),
    );
    let body = encode_items(std::slice::from_ref(&item));
    assert_eq!(parse_publish_body(&body, &super::limits()), Ok(vec![item]));
    let plain = one(json!({"channel": "c", "formats": {"mqtt-message": {"content": "x"}}}));
    assert_eq!(
        String::from_utf8(encode_items(&[plain])).unwrap(),
        r#"{"items":[{"channel":"c","formats":{"mqtt-message":{"content":"x"}}}]}"#
    );
}
