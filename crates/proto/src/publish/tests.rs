//! Tests of parsing and encoding publish bodies: the documented examples, every action of
//! every format, every error message, the limits at and just over their bounds, header
//! injection, and property tests (no panics on any input; encode → parse round-trips).

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;

fn limits() -> PublishLimits {
    PublishLimits::default()
}

fn parse_ok(body: &str) -> Vec<Item> {
    match parse_publish_body(body.as_bytes(), &limits()) {
        Ok(items) => items,
        Err(e) => panic!("body should parse: {e}\n{body}"),
    }
}

fn parse_err(body: &str) -> PublishError {
    match parse_publish_body(body.as_bytes(), &limits()) {
        Ok(items) => panic!("body should be rejected: {body}\ngot {items:?}"),
        Err(e) => e,
    }
}

/// Parses `{"items": [item]}` and returns the one item.
fn one(item: Value) -> Item {
    let mut items = parse_ok(&json!({ "items": [item] }).to_string());
    assert_eq!(items.len(), 1);
    items.remove(0)
}

/// The message for `{"items": [item]}`, which must be rejected as invalid.
fn item_error(item: Value) -> String {
    let e = parse_err(&json!({ "items": [item] }).to_string());
    assert_eq!(e.kind, PublishErrorKind::Invalid, "{e}");
    assert_eq!(e.item, Some(0), "{e}");
    e.message
}

/// The message for one item on channel "c" with the given `formats`.
fn formats_error(formats: Value) -> String {
    item_error(json!({"channel": "c", "formats": formats}))
}

fn stream(content: &str) -> HttpStreamFormat {
    HttpStreamFormat {
        action: HttpStreamAction::Send(Bytes::copy_from_slice(content.as_bytes())),
        content_filters: vec![],
    }
}

fn only_stream(channel: &str, content: &str) -> Item {
    Item {
        channel: channel.to_owned(),
        id: None,
        prev_id: None,
        meta: vec![],
        no_seq: false,
        formats: Formats {
            http_stream: Some(stream(content)),
            ..Formats::default()
        },
    }
}

#[test]
fn reference_example_body() {
    let body = r#"{"items": [{
        "channel": "mychannel",
        "id": "an-id", "prev-id": "prev-id",
        "formats": {
            "http-response": {"code": 200, "reason": "OK",
                              "headers": {"Content-Type": "text/plain"},
                              "body": "hi\n"},
            "http-stream":   {"content": "hi\n"},
            "ws-message":    {"content": "hi"}
        },
        "meta": {"sender": "alice"},
        "no-seq": false,
        "size": 123
    }]}"#;
    let expected = Item {
        channel: "mychannel".into(),
        id: Some("an-id".into()),
        prev_id: Some("prev-id".into()),
        meta: vec![("sender".into(), "alice".into())],
        no_seq: false,
        formats: Formats {
            http_response: Some(HttpResponseFormat {
                action: HttpResponseAction::Send(ResponseMessage {
                    code: 200,
                    reason: Some("OK".into()),
                    headers: vec![("Content-Type".into(), "text/plain".into())],
                    body: ResponseBody::Bytes(Bytes::from_static(b"hi\n")),
                }),
                content_filters: vec![],
            }),
            http_stream: Some(stream("hi\n")),
            ws_message: Some(WsMessageFormat {
                action: WsAction::Send {
                    kind: WsKind::Text,
                    content: Bytes::from_static(b"hi"),
                },
                content_filters: vec![],
            }),
        },
    };
    assert_eq!(parse_ok(body), vec![expected]);
}

#[test]
fn fastly_minimal_example_and_curl_example() {
    let items = parse_ok(r#"{"items":[{"channel":"test","formats":{"ws-message":{"content":"hello"}}}]}"#);
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].channel, "test");
    assert_eq!(
        items[0].formats.ws_message.as_ref().map(|f| &f.action),
        Some(&WsAction::Send { kind: WsKind::Text, content: Bytes::from_static(b"hello") })
    );
    assert!(items[0].formats.http_stream.is_none() && items[0].formats.http_response.is_none());

    let items = parse_ok(r#"{"items":[{"channel":"test","formats":{"http-stream":{"content":"hello\n"}}}]}"#);
    assert_eq!(items, vec![only_stream("test", "hello\n")]);
}

#[test]
fn empty_items_and_unknown_keys() {
    assert_eq!(parse_ok(r#"{"items": []}"#), vec![]);
    let item = one(json!({
        "channel": "c", "x-extra": {"deep": [1, 2]}, "ttl": 5,
        "formats": {"http-stream": {"content": "a", "unknown": true}, "sse": {"x": 1}},
    }));
    assert_eq!(item, only_stream("c", "a"));
    // Extra top-level keys are ignored too.
    assert_eq!(parse_ok(r#"{"a": 1, "items": [], "b": [{}]}"#), vec![]);
}

#[test]
fn legacy_formats_on_the_item() {
    let item = one(json!({"channel": "c", "http-stream": {"content": "x"},
                          "ws-message": {"content-bin": "AAE="}}));
    assert_eq!(item.formats.http_stream, Some(stream("x")));
    assert_eq!(
        item.formats.ws_message.map(|f| f.action),
        Some(WsAction::Send { kind: WsKind::Binary, content: Bytes::from_static(&[0, 1]) })
    );
    // With `formats` present, formats on the item are ignored (before or after it).
    let item = one(json!({"channel": "c", "formats": {"http-stream": {"content": "new"}},
                          "ws-message": {"content": "old"}}));
    assert_eq!(item, only_stream("c", "new"));
    let body = r#"{"items":[{"channel":"c","ws-message":{"content":"old"},
                   "formats":{"http-stream":{"content":"new"}}}]}"#;
    assert_eq!(parse_ok(body), vec![only_stream("c", "new")]);
    assert_eq!(
        item_error(json!({"channel": "c", "http-stream": {}})),
        "items[0].http-stream: needs 'content' or 'content-bin'"
    );
}

#[test]
fn http_stream_actions() {
    let f = |format: Value| one(json!({"channel": "c", "formats": {"http-stream": format}}))
        .formats.http_stream.map(|f| f.action);
    assert_eq!(f(json!({"content": ""})), Some(HttpStreamAction::Send(Bytes::new())));
    assert_eq!(
        f(json!({"action": "send", "content-bin": "aGk="})),
        Some(HttpStreamAction::Send(Bytes::from_static(b"hi")))
    );
    assert_eq!(f(json!({"action": "close"})), Some(HttpStreamAction::Close));
    assert_eq!(f(json!({"action": "hint", "content": 5})), None.or(Some(HttpStreamAction::Hint)));
    let filters = one(json!({"channel": "c", "formats": {"http-stream":
        {"content": "a", "content-filters": ["skip-self", "build-id"]}}}));
    assert_eq!(
        filters.formats.http_stream.map(|f| f.content_filters),
        Some(vec!["skip-self".to_owned(), "build-id".to_owned()])
    );
}

#[test]
fn hint_ignores_content_it_does_not_use() {
    // `content` of the wrong type is still a type error; a hint just doesn't need content.
    assert_eq!(
        formats_error(json!({"http-stream": {"action": "hint", "content": 5}})),
        "items[0].formats.http-stream.content: expected a string, got an integer"
    );
    let item = one(json!({"channel": "c", "formats": {"http-stream": {"action": "hint", "content": "x"}}}));
    assert_eq!(item.formats.http_stream.map(|f| f.action), Some(HttpStreamAction::Hint));
}

#[test]
fn http_response_actions() {
    let f = |format: Value| one(json!({"channel": "c", "formats": {"http-response": format}}))
        .formats.http_response.map(|f| f.action);
    let send = |code, reason: Option<&str>, headers: Vec<(&str, &str)>, body: ResponseBody| {
        Some(HttpResponseAction::Send(ResponseMessage {
            code,
            reason: reason.map(str::to_owned),
            headers: headers.into_iter().map(|(n, v)| (n.to_owned(), v.to_owned())).collect(),
            body,
        }))
    };
    assert_eq!(f(json!({"body": "x"})), send(200, None, vec![], ResponseBody::Bytes("x".into())));
    assert_eq!(
        f(json!({"code": 0, "reason": "", "body-bin": "/w=="})),
        send(0, None, vec![], ResponseBody::Bytes(Bytes::from_static(&[0xff])))
    );
    assert_eq!(
        f(json!({"code": 999, "reason": "Custom reason", "body": "",
                 "headers": [["Set-Cookie", "a=1"], ["Set-Cookie", "b=2"], ["X-E", ""]]})),
        send(999, Some("Custom reason"),
             vec![("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"), ("X-E", "")],
             ResponseBody::Bytes(Bytes::new()))
    );
    let patch = JsonPatch::from_value(&json!([{"op": "replace", "path": "/a", "value": 1}])).unwrap();
    assert_eq!(
        f(json!({"body-patch": [{"op": "replace", "path": "/a", "value": 1}]})),
        send(200, None, vec![], ResponseBody::Patch(patch))
    );
    assert_eq!(f(json!({"action": "hint"})), Some(HttpResponseAction::Hint));
}

#[test]
fn header_object_keeps_document_order() {
    let body = r#"{"items":[{"channel":"c","formats":{"http-response":{"body":"",
        "headers":{"Z-Last":"1","A-First":"2","M-Mid":"\u00e9"}}}}]}"#;
    let items = parse_ok(body);
    let Some(HttpResponseAction::Send(message)) =
        items[0].formats.http_response.as_ref().map(|f| &f.action)
    else {
        panic!("expected a send");
    };
    let names: Vec<_> = message.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    assert_eq!(names, [("Z-Last", "1"), ("A-First", "2"), ("M-Mid", "é")]);
}

#[test]
fn ws_message_actions() {
    let f = |format: Value| one(json!({"channel": "c", "formats": {"ws-message": format}}))
        .formats.ws_message.map(|f| f.action);
    let send = |kind, content: &'static [u8]| Some(WsAction::Send { kind, content: Bytes::from_static(content) });
    assert_eq!(f(json!({"content": "hi"})), send(WsKind::Text, b"hi"));
    assert_eq!(f(json!({"content-bin": "aGk="})), send(WsKind::Binary, b"hi"));
    assert_eq!(f(json!({"type": "binary", "content": "hi"})), send(WsKind::Binary, b"hi"));
    assert_eq!(f(json!({"type": "text", "content-bin": "aGk="})), send(WsKind::Text, b"hi"));
    assert_eq!(f(json!({"type": "ping"})), send(WsKind::Ping, b""));
    assert_eq!(f(json!({"type": "pong", "content": "p"})), send(WsKind::Pong, b"p"));
    assert_eq!(f(json!({"action": "close"})), Some(WsAction::Close { code: None, reason: String::new() }));
    assert_eq!(
        f(json!({"action": "close", "code": 4001, "reason": "bye"})),
        Some(WsAction::Close { code: Some(4001), reason: "bye".into() })
    );
    assert_eq!(f(json!({"action": "close", "code": 1000})), Some(WsAction::Close { code: Some(1000), reason: String::new() }));
    assert_eq!(f(json!({"action": "refresh"})), Some(WsAction::Refresh));
    assert_eq!(f(json!({"action": "hint"})), Some(WsAction::Hint));
}

#[test]
fn item_fields() {
    let item = one(json!({"channel": "c", "id": "", "prev-id": "p", "no-seq": true, "size": 0,
                          "meta": {"b": "2", "a": "1"},
                          "formats": {"http-stream": {"content": "x"}}}));
    assert_eq!(item.id, None, "an empty id is no id");
    assert_eq!(item.prev_id.as_deref(), Some("p"));
    assert!(item.no_seq);
    assert_eq!(item.meta, [("b".to_owned(), "2".to_owned()), ("a".to_owned(), "1".to_owned())]);
}

#[test]
fn escaped_and_base64_content_is_decoded() {
    let body = r#"{"items":[{"channel":"caf\u00e9","formats":{"http-stream":{"content":"a\"b\\c\n\u00e9"},
        "ws-message":{"content-bin":"aGVs\nbG8"}}}]}"#;
    let items = parse_ok(body);
    assert_eq!(items[0].channel, "café");
    assert_eq!(items[0].formats.http_stream, Some(stream("a\"b\\c\né")));
    assert_eq!(
        items[0].formats.ws_message.as_ref().map(|f| &f.action),
        Some(&WsAction::Send { kind: WsKind::Binary, content: Bytes::from_static(b"hello") }),
        "unpadded, line-wrapped base64 is accepted"
    );
}

#[test]
fn body_errors() {
    let cases: &[(&str, &str)] = &[
        ("", "Body is not valid JSON: EOF while parsing a value at line 1 column 0"),
        (r#"{"items": [}"#, "Body is not valid JSON: expected value at line 1 column 12"),
        (r#"{"items": []} x"#, "Body is not valid JSON: trailing characters at line 1 column 15"),
        ("[]", "body: expected a JSON object with an 'items' array, got an array"),
        ("\"x\"", "body: expected a JSON object with an 'items' array, got a string"),
        ("null", "body: expected a JSON object with an 'items' array, got null"),
        ("{}", r#"body: missing 'items' (expected {"items": [...]})"#),
        (r#"{"items": {}}"#, "items: expected an array, got an object"),
        (r#"{"items": 3}"#, "items: expected an array, got an integer"),
        (r#"{"items": [], "items": []}"#, "body: duplicate key 'items'"),
    ];
    for (body, message) in cases {
        let e = parse_err(body);
        assert_eq!((e.kind, e.item, e.message.as_str()), (PublishErrorKind::Invalid, None, *message));
        assert_eq!(e.to_string(), *message);
        assert_eq!(e.http_status(), 400);
    }
}

#[test]
fn item_errors() {
    let f = json!({"http-stream": {"content": "x"}});
    let cases = [
        (json!(1), "items[0]: expected an object, got an integer"),
        (json!([]), "items[0]: expected an object, got an array"),
        (json!({"formats": f}), "items[0]: missing 'channel'"),
        (json!({"channel": 5, "formats": f}), "items[0].channel: expected a string, got an integer"),
        (json!({"channel": "", "formats": f}), "items[0].channel: must not be empty"),
        (json!({"channel": "a\nb", "formats": f}), "items[0].channel: contains control character U+000A"),
        (json!({"channel": "a\u{85}", "formats": f}), "items[0].channel: contains control character U+0085"),
        (json!({"channel": "c", "id": 5, "formats": f}), "items[0].id: expected a string, got an integer"),
        (json!({"channel": "c", "prev-id": "a\u{0}", "formats": f}),
         "items[0].prev-id: contains control character U+0000"),
        (json!({"channel": "c", "meta": [], "formats": f}), "items[0].meta: expected an object, got an array"),
        (json!({"channel": "c", "meta": {"a": 1}, "formats": f}),
         "items[0].meta[\"a\"]: expected a string, got an integer"),
        (json!({"channel": "c", "no-seq": "yes", "formats": f}),
         "items[0].no-seq: expected a boolean, got a string"),
        (json!({"channel": "c", "size": -1, "formats": f}), "items[0].size: must not be negative"),
        (json!({"channel": "c", "size": 1.5, "formats": f}),
         "items[0].size: expected a non-negative integer, got a non-integer number"),
        (json!({"channel": "c", "formats": "x"}), "items[0].formats: expected an object, got a string"),
        (json!({"channel": "c", "formats": {}}),
         "items[0]: no formats; give at least one of 'http-response', 'http-stream' or 'ws-message' in 'formats'"),
        (json!({"channel": "c", "formats": {"sse": {}}}),
         "items[0]: no formats; give at least one of 'http-response', 'http-stream' or 'ws-message' in 'formats'"),
        (json!({"channel": "c"}),
         "items[0]: no formats; give at least one of 'http-response', 'http-stream' or 'ws-message' in 'formats'"),
        (json!({"channel": "c", "formats": {"http-stream": "hi"}}),
         "items[0].formats.http-stream: expected an object, got a string"),
    ];
    for (item, message) in cases {
        assert_eq!(item_error(item), message);
    }
}

#[test]
fn duplicate_keys_are_rejected() {
    let cases = [
        (r#"{"channel":"a","channel":"b","formats":{"http-stream":{"content":"x"}}}"#,
         "items[0]: duplicate key 'channel'"),
        (r#"{"channel":"a","meta":{"k":"1","k":"2"},"formats":{"http-stream":{"content":"x"}}}"#,
         "items[0].meta: duplicate key \"k\""),
        (r#"{"channel":"a","formats":{"http-stream":{"content":"x"},"http-stream":{"content":"y"}}}"#,
         "items[0].formats: duplicate key 'http-stream'"),
        (r#"{"channel":"a","formats":{"http-stream":{"content":"x","content":"y"}}}"#,
         "items[0].formats.http-stream: duplicate key 'content'"),
        (r#"{"channel":"a","http-stream":{"content":"x"},"http-stream":{"content":"y"}}"#,
         "items[0]: duplicate key 'http-stream'"),
    ];
    for (item, message) in cases {
        assert_eq!(parse_err(&format!(r#"{{"items":[{item}]}}"#)).message, message);
    }
}

#[test]
fn format_errors() {
    let cases = [
        (json!({"http-stream": {}}), "items[0].formats.http-stream: needs 'content' or 'content-bin'"),
        (json!({"http-stream": {"content": "a", "content-bin": "YQ=="}}),
         "items[0].formats.http-stream: has both 'content' and 'content-bin'; give one"),
        (json!({"http-stream": {"content": 5}}),
         "items[0].formats.http-stream.content: expected a string, got an integer"),
        (json!({"http-stream": {"content-bin": "!!!"}}),
         "items[0].formats.http-stream.content-bin: not valid base64: unexpected '!' at offset 0"),
        (json!({"http-stream": {"content-bin": "YQ=a"}}),
         "items[0].formats.http-stream.content-bin: not valid base64: unexpected '=' at offset 2"),
        (json!({"http-stream": {"content-bin": "Y"}}),
         "items[0].formats.http-stream.content-bin: not valid base64: wrong length"),
        (json!({"http-stream": {"action": "bogus"}}),
         "items[0].formats.http-stream.action: unknown action \"bogus\" (expected 'send', 'close' or 'hint')"),
        (json!({"http-stream": {"action": ""}}),
         "items[0].formats.http-stream.action: unknown action \"\" (expected 'send', 'close' or 'hint')"),
        (json!({"http-stream": {"action": "refresh"}}),
         "items[0].formats.http-stream.action: \"refresh\" is not allowed for http-stream (expected 'send', 'close' or 'hint')"),
        (json!({"http-stream": {"action": 1}}),
         "items[0].formats.http-stream.action: expected a string, got an integer"),
        (json!({"http-stream": {"content": "a", "content-filters": "x"}}),
         "items[0].formats.http-stream.content-filters: expected an array, got a string"),
        (json!({"http-stream": {"content": "a", "content-filters": ["ok", 1]}}),
         "items[0].formats.http-stream.content-filters[1]: expected a string, got an integer"),
        (json!({"http-response": {}}),
         "items[0].formats.http-response: needs 'body', 'body-bin' or 'body-patch'"),
        (json!({"http-response": {"body": "a", "body-patch": []}}),
         "items[0].formats.http-response: has more than one of 'body', 'body-bin' and 'body-patch'; give one"),
        (json!({"http-response": {"body": "a", "body-bin": "YQ=="}}),
         "items[0].formats.http-response: has more than one of 'body', 'body-bin' and 'body-patch'; give one"),
        (json!({"http-response": {"action": "close"}}),
         "items[0].formats.http-response.action: \"close\" is not allowed for http-response (expected 'send' or 'hint')"),
        (json!({"http-response": {"action": "refresh"}}),
         "items[0].formats.http-response.action: \"refresh\" is not allowed for http-response (expected 'send' or 'hint')"),
        (json!({"http-response": {"body": "", "code": "200"}}),
         "items[0].formats.http-response.code: expected an integer, got a string"),
        (json!({"http-response": {"body": "", "code": 200.5}}),
         "items[0].formats.http-response.code: expected an integer, got a non-integer number"),
        (json!({"http-response": {"body": "", "code": 1000}}),
         "items[0].formats.http-response.code: 1000 is out of range (0-999)"),
        (json!({"http-response": {"body": "", "code": -1}}),
         "items[0].formats.http-response.code: -1 is out of range (0-999)"),
        (json!({"http-response": {"body": 5}}),
         "items[0].formats.http-response.body: expected a string, got an integer"),
        (json!({"http-response": {"body-bin": "*"}}),
         "items[0].formats.http-response.body-bin: not valid base64: unexpected '*' at offset 0"),
        (json!({"http-response": {"body-patch": {}}}),
         "items[0].formats.http-response.body-patch: expected an array of operations, got an object"),
        (json!({"http-response": {"body-patch": [{"op": "nope", "path": "/a"}]}}),
         "items[0].formats.http-response.body-patch: operation 0: unknown op \"nope\" (expected add, remove, replace, move, copy or test)"),
        (json!({"http-response": {"body-patch": [{"op": "add", "path": "a", "value": 1}]}}),
         "items[0].formats.http-response.body-patch: operation 0: 'path' \"a\": a JSON pointer must be empty or start with '/'"),
        (json!({"http-response": {"body": "", "headers": "x"}}),
         "items[0].formats.http-response.headers: expected an object or an array of [name, value] pairs, got a string"),
        (json!({"http-response": {"body": "", "headers": {"X-A": 1}}}),
         "items[0].formats.http-response.headers[\"X-A\"]: expected a string, got an integer"),
        (json!({"http-response": {"body": "", "headers": [["X-A"]]}}),
         "items[0].formats.http-response.headers[0]: expected a [name, value] pair, got an array of 1"),
        (json!({"http-response": {"body": "", "headers": [["X-A", "b", "c"]]}}),
         "items[0].formats.http-response.headers[0]: expected a [name, value] pair, got an array of 3"),
        (json!({"http-response": {"body": "", "headers": ["X-A"]}}),
         "items[0].formats.http-response.headers[0]: expected a [name, value] pair, got a string"),
        (json!({"http-response": {"body": "", "headers": [["X-A", "1"], ["X-B", 1]]}}),
         "items[0].formats.http-response.headers[1][1]: expected a string, got an integer"),
        (json!({"ws-message": {}}), "items[0].formats.ws-message: needs 'content' or 'content-bin'"),
        (json!({"ws-message": {"type": "text"}}), "items[0].formats.ws-message: needs 'content' or 'content-bin'"),
        (json!({"ws-message": {"type": "frame", "content": "x"}}),
         "items[0].formats.ws-message.type: unknown type \"frame\" (expected 'text', 'binary', 'ping' or 'pong')"),
        (json!({"ws-message": {"type": "ping", "content": "x".repeat(126)}}),
         "items[0].formats.ws-message.content: 126 bytes, over the limit of 125 for a ping or pong"),
        (json!({"ws-message": {"type": "text", "content-bin": "/w=="}}),
         "items[0].formats.ws-message.content-bin: a text message needs UTF-8 content"),
        (json!({"ws-message": {"action": "close", "code": "x"}}),
         "items[0].formats.ws-message.code: expected an integer, got a string"),
        (json!({"ws-message": {"action": "close", "reason": "r".repeat(124)}}),
         "items[0].formats.ws-message.reason: 124 bytes, over the limit of 123"),
        (json!({"ws-message": {"action": "kick"}}),
         "items[0].formats.ws-message.action: unknown action \"kick\" (expected 'send', 'close', 'refresh' or 'hint')"),
    ];
    for (formats, message) in cases {
        assert_eq!(formats_error(formats), message);
    }
}

#[test]
fn ws_close_codes() {
    let close = |code: Value| {
        parse_publish_body(
            json!({"items": [{"channel": "c", "formats": {"ws-message": {"action": "close", "code": code}}}]})
                .to_string()
                .as_bytes(),
            &limits(),
        )
    };
    for ok in [1000, 1001, 1003, 1007, 1014, 1016, 3000, 4999] {
        assert!(close(json!(ok)).is_ok(), "{ok} should be accepted");
    }
    for bad in [json!(0), json!(999), json!(1004), json!(1005), json!(1006), json!(1015),
                json!(5000), json!(70000), json!(-1)] {
        let message = close(bad.clone()).map(drop).map_err(|e| e.message);
        assert_eq!(
            message,
            Err(format!("items[0].formats.ws-message.code: {bad} is not a close code that may be \
                         sent (1000-4999, except 1004, 1005, 1006 and 1015)"))
        );
    }
}

#[test]
fn brief_error_examples() {
    let body = json!({"items": [
        {"channel": "a", "formats": {"http-stream": {"content": "x"}}},
        {"channel": "b", "formats": {"http-stream": {"content": "y"}}},
        {"channel": "c", "formats": {"http-stream": {}}},
    ]});
    let e = parse_err(&body.to_string());
    assert_eq!(e.to_string(), "items[2].formats.http-stream: needs 'content' or 'content-bin'");
    assert_eq!(e.item, Some(2));

    let big = "x".repeat(40_000);
    let e = parse_err(&json!({"items": [{"channel": "c", "formats": {"ws-message": {"content": big}}}]}).to_string());
    assert_eq!(e.to_string(), "items[0].formats.ws-message.content: 40000 bytes, over the limit of 32767");
    assert_eq!((e.kind, e.http_status()), (PublishErrorKind::TooLarge, 413));
}

#[test]
fn first_error_wins_and_nothing_is_returned() {
    let body = r#"{"items":[{"channel":"ok","formats":{"http-stream":{"content":"x"}}},
                            {"channel":"","formats":{}},
                            {"channel":5}, ]"#;
    let e = parse_err(body);
    assert_eq!((e.item, e.message.as_str()), (Some(1), "items[1].channel: must not be empty"));
}

#[test]
fn content_limits_at_and_over_the_bound() {
    use base64::Engine as _;
    let b64 = |n: usize| base64::engine::general_purpose::STANDARD.encode(vec![7u8; n]);
    let at = 32_767;
    let over = at + 1;
    let text = |n: usize| "a".repeat(n);
    let cases: Vec<(Value, &str)> = vec![
        (json!({"http-stream": {"content": text(at)}}), ""),
        (json!({"http-stream": {"content": text(over)}}), "http-stream.content"),
        (json!({"http-stream": {"content-bin": b64(at)}}), ""),
        (json!({"http-stream": {"content-bin": b64(over)}}), "http-stream.content-bin"),
        (json!({"http-response": {"body": text(at)}}), ""),
        (json!({"http-response": {"body": text(over)}}), "http-response.body"),
        (json!({"http-response": {"body-bin": b64(at)}}), ""),
        (json!({"http-response": {"body-bin": b64(over)}}), "http-response.body-bin"),
        (json!({"ws-message": {"content": text(at)}}), ""),
        (json!({"ws-message": {"content": text(over)}}), "ws-message.content"),
        (json!({"ws-message": {"content-bin": b64(at)}}), ""),
        (json!({"ws-message": {"content-bin": b64(over)}}), "ws-message.content-bin"),
    ];
    for (formats, field) in cases {
        let body = json!({"items": [{"channel": "c", "formats": formats}]}).to_string();
        let result = parse_publish_body(body.as_bytes(), &limits());
        if field.is_empty() {
            assert!(result.is_ok(), "{field}: {result:?}");
        } else {
            let e = result.expect_err("over the limit");
            assert_eq!(e.kind, PublishErrorKind::TooLarge);
            assert_eq!(e.message, format!("items[0].formats.{field}: 32768 bytes, over the limit of 32767"));
        }
    }
    // The limit counts bytes after unescaping: "\u00e9" is 2 bytes of content.
    let escaped = format!(r#"{{"items":[{{"channel":"c","formats":{{"http-stream":{{"content":"{}{}"}}}}}}]}}"#,
                          "a".repeat(at - 2), "\\u00e9");
    assert!(parse_publish_body(escaped.as_bytes(), &limits()).is_ok());
    // Each format has its own budget.
    let all = json!({"items": [{"channel": "c", "formats": {
        "http-stream": {"content": text(at)}, "ws-message": {"content": text(at)},
        "http-response": {"body": text(at)}}}]});
    assert!(parse_publish_body(all.to_string().as_bytes(), &limits()).is_ok());
}

#[test]
fn body_patch_size_counts_against_the_limit() {
    let small = PublishLimits { max_content_bytes: 60, ..limits() };
    let patch = json!([{"op": "add", "path": "/a", "value": "x".repeat(40)}]);
    let body = json!({"items": [{"channel": "c", "formats": {"http-response": {"body-patch": patch}}}]});
    let e = parse_publish_body(body.to_string().as_bytes(), &small).expect_err("too large");
    assert_eq!(e.kind, PublishErrorKind::TooLarge);
    assert_eq!(e.message, "items[0].formats.http-response.body-patch: 72 bytes, over the limit of 60");
}

#[test]
fn count_and_name_limits() {
    let item = json!({"channel": "c", "formats": {"http-stream": {"content": "x"}}});
    let two = PublishLimits { max_items: 2, ..limits() };
    let body = |n: usize| json!({"items": vec![item.clone(); n]}).to_string();
    assert_eq!(parse_publish_body(body(2).as_bytes(), &two).map(|v| v.len()), Ok(2));
    let e = parse_publish_body(body(3).as_bytes(), &two).expect_err("too many");
    assert_eq!((e.kind, e.item, e.message.as_str()),
               (PublishErrorKind::TooLarge, None, "items: over the limit of 2 items"));

    let f = json!({"http-stream": {"content": "x"}});
    assert!(parse_publish_body(json!({"items": [{"channel": "c".repeat(1024), "formats": f}]}).to_string().as_bytes(), &limits()).is_ok());
    assert_eq!(item_error(json!({"channel": "c".repeat(1025), "formats": f})),
               "items[0].channel: 1025 bytes, over the limit of 1024");
    assert!(parse_publish_body(json!({"items": [{"channel": "c", "id": "i".repeat(1024), "formats": f}]}).to_string().as_bytes(), &limits()).is_ok());
    assert_eq!(item_error(json!({"channel": "c", "id": "i".repeat(1025), "formats": f})),
               "items[0].id: 1025 bytes, over the limit of 1024");

    let meta: serde_json::Map<String, Value> =
        (0..=MAX_META_ENTRIES).map(|i| (format!("k{i}"), json!("v"))).collect();
    assert_eq!(item_error(json!({"channel": "c", "meta": meta, "formats": f})),
               "items[0].meta: more than 64 entries");
    let headers: Vec<Value> = (0..=MAX_RESPONSE_HEADERS).map(|i| json!([format!("X-{i}"), "v"])).collect();
    assert_eq!(formats_error(json!({"http-response": {"body": "", "headers": headers}})),
               "items[0].formats.http-response.headers: more than 100 headers");
    let filters = vec!["f"; MAX_CONTENT_FILTERS + 1];
    assert_eq!(formats_error(json!({"http-stream": {"content": "", "content-filters": filters}})),
               "items[0].formats.http-stream.content-filters: more than 32 entries");
}

#[test]
fn header_injection_is_impossible() {
    let at = "items[0].formats.http-response";
    let cases = [
        (json!({"X-A": "ok\r\nSet-Cookie: evil=1"}), format!("{at}.headers[\"X-A\"]: the value contains CR, LF or another control character")),
        (json!({"X-A": "ok\nX-B: 1"}), format!("{at}.headers[\"X-A\"]: the value contains CR, LF or another control character")),
        (json!({"X-A": "a\u{0}b"}), format!("{at}.headers[\"X-A\"]: the value contains CR, LF or another control character")),
        (json!({"X-A": "a\u{7f}"}), format!("{at}.headers[\"X-A\"]: the value contains CR, LF or another control character")),
        (json!({"X-A\r\nX-B": "v"}), format!("{at}.headers[\"X-A\\r\\nX-B\"]: \"X-A\\r\\nX-B\" is not a valid header name")),
        (json!({"X-A: b": "v"}), format!("{at}.headers[\"X-A: b\"]: \"X-A: b\" is not a valid header name")),
        (json!({"": "v"}), format!("{at}.headers[\"\"]: \"\" is not a valid header name")),
        (json!([["X-A", "v\r\n\r\n<html>"]]), format!("{at}.headers[0]: the value contains CR, LF or another control character")),
        (json!([["Bad Name", "v"]]), format!("{at}.headers[0]: \"Bad Name\" is not a valid header name")),
    ];
    for (headers, message) in cases {
        assert_eq!(formats_error(json!({"http-response": {"body": "", "headers": headers}})), message);
    }
    assert_eq!(
        formats_error(json!({"http-response": {"body": "", "reason": "OK\r\nX-Injected: 1"}})),
        format!("{at}.reason: contains CR, LF or another control character")
    );
    // Tabs and non-ASCII text are legal in values.
    let item = one(json!({"channel": "c", "formats": {"http-response": {"body": "",
        "reason": "Très bien", "headers": {"X-A": "a\tb é"}}}}));
    assert!(item.formats.http_response.is_some());
}

#[test]
fn parsed_body_patch_applies_atomically() {
    let item = one(json!({"channel": "c", "formats": {"http-response": {"body-patch": [
        {"op": "add", "path": "/messages/-", "value": "new"},
        {"op": "test", "path": "/version", "value": 1},
        {"op": "replace", "path": "/version", "value": 2},
    ]}}}));
    let Some(HttpResponseAction::Send(ResponseMessage { body: ResponseBody::Patch(patch), .. })) =
        item.formats.http_response.map(|f| f.action)
    else {
        panic!("expected a body-patch");
    };
    let mut doc = json!({"messages": ["old"], "version": 1});
    assert_eq!(patch.apply(&mut doc), Ok(()));
    assert_eq!(doc, json!({"messages": ["old", "new"], "version": 2}));
    // Applying again fails at the test, and the document stays as it was.
    let before = doc.clone();
    assert_eq!(
        patch.apply(&mut doc).map_err(|e| e.to_string()),
        Err("operation 1 (test): the value at '/version' differs".to_owned())
    );
    assert_eq!(doc, before);
}

#[test]
fn encodes_the_expected_json() {
    let body = encode_items(&[only_stream("test", "hello\n")]);
    assert_eq!(
        String::from_utf8(body).unwrap(),
        r#"{"items":[{"channel":"test","formats":{"http-stream":{"content":"hello\n"}}}]}"#
    );
    let mut item = only_stream("c", "");
    item.formats.http_stream = Some(HttpStreamFormat {
        action: HttpStreamAction::Send(Bytes::from_static(&[0xff, 0])),
        content_filters: vec!["f".into()],
    });
    item.id = Some("i".into());
    item.no_seq = true;
    item.meta = vec![("k".into(), "v".into())];
    let body = String::from_utf8(encode_items(&[item.clone()])).unwrap();
    assert_eq!(
        body,
        r#"{"items":[{"channel":"c","id":"i","meta":{"k":"v"},"no-seq":true,"formats":{"http-stream":{"content-bin":"/wA=","content-filters":["f"]}}}]}"#
    );
    assert_eq!(parse_ok(&body), vec![item]);
    assert_eq!(encode_items(&[]), br#"{"items":[]}"#);
}

#[test]
fn reference_example_round_trips() {
    let body = r#"{"items":[{"channel":"m","formats":{
        "http-response":{"code":404,"headers":[["A","1"],["A","2"]],"body-bin":"AP8="},
        "ws-message":{"action":"close","code":4000,"reason":"done"}}}]}"#;
    let items = parse_ok(body);
    assert_eq!(parse_ok(&String::from_utf8(encode_items(&items)).unwrap()), items);
}

// ---------------------------------------------------------------------------------------------
// Property tests.

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
    proptest::collection::vec(op, 0..4).prop_filter_map("impossible op", |ops| JsonPatch::new(ops).ok())
}

fn stream_strategy() -> impl Strategy<Value = HttpStreamFormat> {
    let action = prop_oneof![
        bytes_strategy(64).prop_map(HttpStreamAction::Send),
        Just(HttpStreamAction::Close),
        Just(HttpStreamAction::Hint),
    ];
    (action, filters_strategy())
        .prop_map(|(action, content_filters)| HttpStreamFormat { action, content_filters })
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
            HttpResponseAction::Send(ResponseMessage { code, reason, headers, body })
        });
    let action = prop_oneof![message, Just(HttpResponseAction::Hint)];
    (action, filters_strategy())
        .prop_map(|(action, content_filters)| HttpResponseFormat { action, content_filters })
}

fn ws_strategy() -> impl Strategy<Value = WsMessageFormat> {
    let close_code = (1000u16..=4999).prop_filter("not sendable", |c| !matches!(c, 1004 | 1005 | 1006 | 1015));
    let action = prop_oneof![
        any::<String>().prop_map(|s| WsAction::Send { kind: WsKind::Text, content: Bytes::from(s) }),
        bytes_strategy(64).prop_map(|content| WsAction::Send { kind: WsKind::Binary, content }),
        bytes_strategy(126).prop_map(|content| WsAction::Send { kind: WsKind::Ping, content }),
        bytes_strategy(126).prop_map(|content| WsAction::Send { kind: WsKind::Pong, content }),
        (proptest::option::of(close_code), "\\PC{0,30}")
            .prop_filter("reason too long", |(_, r)| r.len() <= MAX_CLOSE_REASON_BYTES)
            .prop_map(|(code, reason)| WsAction::Close { code, reason }),
        Just(WsAction::Refresh),
        Just(WsAction::Hint),
    ];
    (action, filters_strategy())
        .prop_map(|(action, content_filters)| WsMessageFormat { action, content_filters })
}

fn item_strategy() -> impl Strategy<Value = Item> {
    let name = "[a-zA-Z0-9_.:/~ -]{1,16}|\\PC{1,8}";
    let formats = (
        proptest::option::of(stream_strategy()),
        proptest::option::of(response_strategy()),
        proptest::option::of(ws_strategy()),
    )
        .prop_map(|(http_stream, http_response, ws_message)| Formats { http_stream, http_response, ws_message })
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
        Just("items"), Just("channel"), Just("id"), Just("prev-id"), Just("meta"), Just("no-seq"),
        Just("size"), Just("formats"), Just("http-stream"), Just("http-response"), Just("ws-message"),
        Just("action"), Just("content"), Just("content-bin"), Just("body"), Just("body-bin"),
        Just("body-patch"), Just("code"), Just("reason"), Just("headers"), Just("type"),
        Just("content-filters"), Just("op"), Just("path"), Just("from"), Just("value"),
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (-2000i64..2000).prop_map(Value::from),
        prop_oneof![Just("send"), Just("close"), Just("hint"), Just("refresh"), Just("ping"),
                    Just("text"), Just("aGk="), Just("/a"), Just("add"), Just("")].prop_map(Value::from),
        ".{0,6}".prop_map(Value::from),
    ];
    leaf.prop_recursive(6, 64, 5, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec((key.clone(), inner), 0..5)
                .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
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
