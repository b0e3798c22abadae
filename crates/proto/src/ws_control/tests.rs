//! Tests of the `grip` extension and control-message parsers: exact values for every
//! message type, every error message, and never-panics properties.

use super::*;
use proptest::prelude::*;

fn parse(json: &str) -> Result<ControlMessage, ControlError> {
    parse_control_message(json.as_bytes(), &ControlLimits::default())
}

fn error(json: &str) -> String {
    parse(json).unwrap_err().to_string()
}

fn grip(values: &[&str]) -> Option<GripExtension> {
    parse_grip_extension(values.iter().map(|v| v.as_bytes()))
}

fn prefix(message_prefix: &str) -> Option<GripExtension> {
    Some(GripExtension {
        message_prefix: message_prefix.to_owned(),
    })
}

fn timed(
    message_type: WsMessageType,
    content: &[u8],
    timeout_secs: u32,
    mode: DelayMode,
) -> TimedMessage {
    TimedMessage {
        message_type,
        content: Bytes::copy_from_slice(content),
        timeout_secs,
        mode,
    }
}

#[test]
fn finds_the_grip_extension() {
    assert_eq!(grip(&["grip"]), prefix("m:"));
    assert_eq!(grip(&["Grip"]), prefix("m:"));
    assert_eq!(grip(&[r#"grip; message-prefix="""#]), prefix(""));
    assert_eq!(grip(&["grip; message-prefix="]), prefix(""));
    assert_eq!(grip(&["grip; message-prefix"]), prefix(""));
    assert_eq!(grip(&["grip;message-prefix=x:"]), prefix("x:"));
    assert_eq!(
        grip(&[r#"grip; Message-Prefix="a;b, c""#]),
        prefix("a;b, c")
    );
    assert_eq!(grip(&[r#"grip; message-prefix="q\"q""#]), prefix("q\"q"));
    assert_eq!(grip(&["grip; other=1"]), prefix("m:"));
    assert_eq!(
        grip(&[
            "permessage-deflate; client_max_window_bits",
            " grip ; message-prefix=p"
        ]),
        prefix("p")
    );
    assert_eq!(
        grip(&["permessage-deflate, grip; message-prefix=z"]),
        prefix("z")
    );
}

#[test]
fn rejects_other_extensions() {
    assert_eq!(grip(&[]), None);
    assert_eq!(grip(&[""]), None);
    assert_eq!(grip(&["permessage-deflate"]), None);
    assert_eq!(grip(&["gripx", "x-grip; message-prefix=a"]), None);
    assert_eq!(grip(&["deflate; grip"]), None);
    // An unterminated quote spoils the element, as in Pushpin; a later one still counts.
    assert_eq!(grip(&[r#"grip; message-prefix="m"#]), None);
    assert_eq!(
        grip(&[r#"grip; message-prefix="m"#, "grip; message-prefix=n:"]),
        prefix("n:")
    );
}

#[test]
fn parses_subscribe_and_unsubscribe() {
    assert_eq!(
        parse(r#"{"type": "subscribe", "channel": "room-1"}"#).unwrap(),
        ControlMessage::Subscribe {
            channel: "room-1".to_owned(),
            filters: vec![],
            prev_id: None,
        }
    );
    assert_eq!(
        parse(r#"{"type":"subscribe","channel":"r","filters":["skip-self","x"],"extra":{}}"#)
            .unwrap(),
        ControlMessage::Subscribe {
            channel: "r".to_owned(),
            filters: vec!["skip-self".to_owned(), "x".to_owned()],
            prev_id: None,
        }
    );
    assert_eq!(
        parse(r#"{"type": "subscribe", "channel": "r", "filters": null}"#).unwrap(),
        ControlMessage::Subscribe {
            channel: "r".to_owned(),
            filters: vec![],
            prev_id: None,
        }
    );
    assert_eq!(
        parse(r#"{"type": "subscribe", "channel": "r", "prev-id": "e7"}"#).unwrap(),
        ControlMessage::Subscribe {
            channel: "r".to_owned(),
            filters: vec![],
            prev_id: Some("e7".to_owned()),
        }
    );
    assert!(parse(r#"{"type": "subscribe", "channel": "r", "prev-id": "a\u0001"}"#).is_err());
    assert!(parse(r#"{"type": "subscribe", "channel": "r", "prev-id": 7}"#).is_err());
    assert_eq!(
        parse(r#"{"channel": "room-1", "type": "unsubscribe"}"#).unwrap(),
        ControlMessage::Unsubscribe {
            channel: "room-1".to_owned()
        }
    );
}

#[test]
fn rejects_bad_subscriptions() {
    assert_eq!(
        error(r#"{"type": "subscribe"}"#),
        "control message field 'channel' must be a non-empty string"
    );
    assert_eq!(
        error(r#"{"type": "unsubscribe", "channel": ""}"#),
        "control message field 'channel' must be a non-empty string"
    );
    assert_eq!(
        error(r#"{"type": "subscribe", "channel": 5}"#),
        "control message field 'channel' must be a string"
    );
    assert_eq!(
        error(r#"{"type": "subscribe", "channel": "a\nb"}"#),
        r#"control message field 'channel' "a\nb" contains a control character"#
    );
    let long = "c".repeat(DEFAULT_MAX_CHANNEL_BYTES + 1);
    assert_eq!(
        error(&format!(r#"{{"type": "subscribe", "channel": "{long}"}}"#)),
        "control message field 'channel' is 1025 bytes, more than the 1024 allowed"
    );
    assert_eq!(
        error(r#"{"type": "subscribe", "channel": "a", "filters": "f"}"#),
        "control message field 'filters' must be an array"
    );
    assert_eq!(
        error(r#"{"type": "subscribe", "channel": "a", "filters": ["f", 1]}"#),
        "control message field 'filters[1]' must be a string"
    );
    let long = "f".repeat(MAX_FILTER_NAME_BYTES + 1);
    assert_eq!(
        error(&format!(
            r#"{{"type": "subscribe", "channel": "a", "filters": ["{long}"]}}"#
        )),
        "control message field 'filters[0]' is 257 bytes, more than the 256 allowed"
    );
    let too_many =
        parse(r#"{"type": "subscribe", "channel": "a", "filters": ["1","2","3","4","5","6"]}"#)
            .unwrap_err();
    assert_eq!(
        too_many.to_string(),
        "too many filters for channel 'a' (6, at most 5 allowed)"
    );
    assert!(too_many.closes_connection());
    assert!(!parse(r#"{"type": "subscribe"}"#)
        .unwrap_err()
        .closes_connection());
}

#[test]
fn parses_detach_session_flush() {
    assert_eq!(
        parse(r#"{"type": "detach"}"#).unwrap(),
        ControlMessage::Detach
    );
    assert_eq!(
        parse(r#"{"type": "flush-delayed", "x": 1}"#).unwrap(),
        ControlMessage::FlushDelayed
    );
    assert_eq!(
        parse(r#"{"type": "session", "id": "s-1"}"#).unwrap(),
        ControlMessage::Session {
            id: Some("s-1".to_owned())
        }
    );
    for cleared in [
        r#"{"type": "session"}"#,
        r#"{"type": "session", "id": ""}"#,
        r#"{"type": "session", "id": null}"#,
    ] {
        assert_eq!(
            parse(cleared).unwrap(),
            ControlMessage::Session { id: None }
        );
    }
    assert_eq!(
        error(r#"{"type": "session", "id": 7}"#),
        "control message field 'id' must be a string"
    );
    let long = "i".repeat(MAX_SESSION_ID_BYTES + 1);
    assert_eq!(
        error(&format!(r#"{{"type": "session", "id": "{long}"}}"#)),
        "control message field 'id' is 1025 bytes, more than the 1024 allowed"
    );
}

#[test]
fn parses_set_meta() {
    assert_eq!(
        parse(r#"{"type": "set-meta", "name": "user", "value": "alice"}"#).unwrap(),
        ControlMessage::SetMeta {
            name: "user".to_owned(),
            value: Some("alice".to_owned())
        }
    );
    assert_eq!(
        parse(r#"{"type": "set-meta", "name": "user", "value": ""}"#).unwrap(),
        ControlMessage::SetMeta {
            name: "user".to_owned(),
            value: Some(String::new())
        }
    );
    assert_eq!(
        parse(r#"{"type": "set-meta", "name": "user"}"#).unwrap(),
        ControlMessage::SetMeta {
            name: "user".to_owned(),
            value: None
        }
    );
    assert_eq!(
        error(r#"{"type": "set-meta", "name": ""}"#),
        "control message field 'name' must be a non-empty string"
    );
    assert_eq!(
        error(r#"{"type": "set-meta", "value": "v"}"#),
        "control message field 'name' must be a non-empty string"
    );
    assert_eq!(
        error(r#"{"type": "set-meta", "name": "n", "value": 1}"#),
        "control message field 'value' must be a string"
    );
    let long = "v".repeat(MAX_META_VALUE_BYTES + 1);
    assert_eq!(
        error(&format!(
            r#"{{"type": "set-meta", "name": "n", "value": "{long}"}}"#
        )),
        "control message field 'value' is 4097 bytes, more than the 4096 allowed"
    );
    let long = "n".repeat(MAX_META_NAME_BYTES + 1);
    assert_eq!(
        error(&format!(r#"{{"type": "set-meta", "name": "{long}"}}"#)),
        "control message field 'name' is 257 bytes, more than the 256 allowed"
    );
}

#[test]
fn parses_keep_alive() {
    use DelayMode::{Idle, Interval};
    use WsMessageType::{Binary, Ping, Pong, Text};
    let cases: &[(&str, TimedMessage)] = &[
        (
            r#"{"type": "keep-alive", "content": "{}", "timeout": 30}"#,
            timed(Text, b"{}", 30, Idle),
        ),
        (
            r#"{"type": "keep-alive", "content": ""}"#,
            timed(Text, b"", 55, Idle),
        ),
        (
            r#"{"type": "keep-alive", "content": "x", "timeout": 0}"#,
            timed(Text, b"x", 55, Idle),
        ),
        (
            r#"{"type": "keep-alive", "content": "x", "timeout": 10.0, "mode": "interval"}"#,
            timed(Text, b"x", 10, Interval),
        ),
        (
            r#"{"type": "keep-alive", "content": "x", "mode": "Interval"}"#,
            timed(Text, b"x", 55, Idle),
        ),
        (
            r#"{"type": "keep-alive", "content": "x", "timeout": 99999999999}"#,
            timed(Text, b"x", MAX_TIMEOUT_SECS, Idle),
        ),
        (
            r#"{"type": "keep-alive", "content-bin": "AAEC"}"#,
            timed(Binary, b"\x00\x01\x02", 55, Idle),
        ),
        (
            r#"{"type": "keep-alive", "content-bin": "aGk", "content": "no", "message-type": "text"}"#,
            timed(Text, b"hi", 55, Idle),
        ),
        (
            r#"{"type": "keep-alive", "content": "p", "message-type": "ping"}"#,
            timed(Ping, b"p", 55, Idle),
        ),
        (
            r#"{"type": "keep-alive", "content": "p", "message-type": "pong", "timeout": null}"#,
            timed(Pong, b"p", 55, Idle),
        ),
        (
            r#"{"type": "keep-alive", "content": "b", "message-type": "binary"}"#,
            timed(Binary, b"b", 55, Idle),
        ),
    ];
    for (json, expected) in cases {
        assert_eq!(
            parse(json).unwrap(),
            ControlMessage::KeepAlive(Some(expected.clone())),
            "{json}"
        );
    }
    for disabled in [
        r#"{"type": "keep-alive"}"#,
        r#"{"type": "keep-alive", "content": null, "timeout": -1}"#,
        r#"{"type": "keep-alive", "message-type": "ping", "mode": "interval"}"#,
    ] {
        assert_eq!(
            parse(disabled).unwrap(),
            ControlMessage::KeepAlive(None),
            "{disabled}"
        );
    }
}

#[test]
fn parses_send_delayed() {
    assert_eq!(
        parse(r#"{"type": "send-delayed", "content": "later"}"#).unwrap(),
        ControlMessage::SendDelayed(timed(WsMessageType::Text, b"later", 1, DelayMode::Idle))
    );
    assert_eq!(
        parse(
            r#"{"type": "send-delayed", "content-bin": "/w==", "timeout": 5, "mode": "interval"}"#
        )
        .unwrap(),
        ControlMessage::SendDelayed(timed(WsMessageType::Binary, b"\xff", 5, DelayMode::Idle))
    );
    assert_eq!(
        parse(r#"{"type": "send-delayed", "content": "x", "timeout": 0}"#).unwrap(),
        ControlMessage::SendDelayed(timed(WsMessageType::Text, b"x", 1, DelayMode::Idle))
    );
    assert_eq!(
        parse(r#"{"type": "send-delayed"}"#).unwrap(),
        ControlMessage::SendDelayed(timed(WsMessageType::Text, b"", 1, DelayMode::Idle))
    );
}

#[test]
fn rejects_bad_timed_messages() {
    assert_eq!(
        error(r#"{"type": "keep-alive", "content": "x", "message-type": "close"}"#),
        "control message field 'message-type' must be one of text, binary, ping, pong; \
         got 'close'"
    );
    assert_eq!(
        error(r#"{"type": "keep-alive", "message-type": 1}"#),
        "control message field 'message-type' must be a string"
    );
    assert_eq!(
        error(r#"{"type": "keep-alive", "content": "x", "mode": 1}"#),
        "control message field 'mode' must be a string"
    );
    assert_eq!(
        error(r#"{"type": "keep-alive", "content": 5}"#),
        "control message field 'content' must be a string"
    );
    assert_eq!(
        error(r#"{"type": "send-delayed", "content-bin": ["x"]}"#),
        "control message field 'content-bin' must be a string"
    );
    assert_eq!(
        error(r#"{"type": "send-delayed", "content-bin": "!!"}"#),
        "control message field 'content-bin' is not valid base64"
    );
    assert_eq!(
        error(r#"{"type": "keep-alive", "content-bin": "/w==", "message-type": "text"}"#),
        "control message field 'content-bin' must be UTF-8 for a text message"
    );
    for bad in ["-1", "1.5", "\"30\"", "true"] {
        assert_eq!(
            error(&format!(
                r#"{{"type": "keep-alive", "content": "x", "timeout": {bad}}}"#
            )),
            "control message field 'timeout' must be a non-negative whole number of seconds"
        );
    }
    let ping = "p".repeat(126);
    assert_eq!(
        error(&format!(
            r#"{{"type": "keep-alive", "content": "{ping}", "message-type": "ping"}}"#
        )),
        "control message field 'content' is 126 bytes, more than the 125 allowed"
    );
    assert!(parse(&format!(
        r#"{{"type": "keep-alive", "content": "{}", "message-type": "pong"}}"#,
        &ping[1..]
    ))
    .is_ok());
    let limits = ControlLimits {
        max_content_bytes: 3,
        ..ControlLimits::default()
    };
    assert_eq!(
        parse_control_message(
            br#"{"type": "send-delayed", "content-bin": "AAAAAA=="}"#,
            &limits
        )
        .unwrap_err()
        .to_string(),
        "control message field 'content-bin' is 4 bytes, more than the 3 allowed"
    );
}

#[test]
fn rejects_bad_messages() {
    assert_eq!(
        error("{"),
        "control message is not valid JSON: EOF while parsing an object at line 1 column 1"
    );
    assert_eq!(
        error(""),
        "control message is not valid JSON: EOF while parsing a value at line 1 column 0"
    );
    assert_eq!(
        error(r#"["subscribe"]"#),
        "control message must be a JSON object"
    );
    assert_eq!(error("{}"), "control message has no 'type'");
    assert_eq!(error(r#"{"type": null}"#), "control message has no 'type'");
    assert_eq!(
        error(r#"{"type": 1}"#),
        "control message field 'type' must be a string"
    );
    assert_eq!(
        error(r#"{"type": "Subscribe", "channel": "a"}"#),
        "control message 'type' must be one of subscribe, unsubscribe, detach, session, \
         set-meta, keep-alive, send-delayed, flush-delayed; got 'Subscribe'"
    );
    assert_eq!(
        error(r#"{"type": "detach"} x"#),
        "control message is not valid JSON: trailing characters at line 1 column 20"
    );
    assert_eq!(
        parse_control_message(b"{\"type\": \"detach\xff\"}", &ControlLimits::default())
            .unwrap_err()
            .to_string(),
        "control message is not valid JSON: invalid unicode code point at line 1 column 17"
    );
}

proptest! {
    #[test]
    fn control_parser_never_panics(json in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse_control_message(&json, &ControlLimits::default());
    }

    #[test]
    fn control_parser_never_panics_on_near_valid_json(
        kind in prop_oneof![
            Just("subscribe"), Just("unsubscribe"), Just("session"), Just("set-meta"),
            Just("keep-alive"), Just("send-delayed"), Just("detach"), Just("x"),
        ],
        key in prop_oneof![
            Just("channel"), Just("filters"), Just("id"), Just("name"), Just("value"),
            Just("content"), Just("content-bin"), Just("message-type"), Just("timeout"),
            Just("mode"),
        ],
        value in prop_oneof![
            Just("null".to_owned()), Just("[]".to_owned()), Just("{}".to_owned()),
            Just("-1".to_owned()), Just("1e300".to_owned()), Just("\"\"".to_owned()),
            Just("[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\"]".to_owned()),
            "[a-z0-9+/=]{0,12}".prop_map(|s| format!("\"{s}\"")),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|f| f.to_string()),
        ],
    ) {
        let json = format!(r#"{{"type": "{kind}", "{key}": {value}}}"#);
        let _ = parse_control_message(json.as_bytes(), &ControlLimits::default());
    }

    #[test]
    fn extension_parser_never_panics(
        values in proptest::collection::vec(
            proptest::collection::vec(
                prop_oneof![
                    Just(b'"'), Just(b';'), Just(b','), Just(b'='), Just(b'\\'), Just(b' '),
                    any::<u8>(),
                ],
                0..40,
            ),
            0..4,
        )
    ) {
        let _ = parse_grip_extension(values.iter().map(Vec::as_slice));
    }

    #[test]
    fn extension_prefix_is_read_back(
        token in "[!#-+.-:<-~]{0,12}",
        quoted in "[ -~]{0,12}",
        other in "x-[a-z]{1,8}",
    ) {
        let header = format!("{other}; a=1, grip; message-prefix={token}; b=2");
        prop_assert_eq!(grip(&[&header]), prefix(&token));
        let escaped = quoted.replace('\\', "\\\\").replace('"', "\\\"");
        let header = format!(r#"grip; message-prefix="{escaped}""#);
        prop_assert_eq!(grip(&[other.as_str(), &header]), prefix(&quoted));
    }
}
