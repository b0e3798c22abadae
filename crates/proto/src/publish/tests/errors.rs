//! Every error a publish body can get, with its exact message.

use serde_json::{json, Value};

use super::*;

#[test]
fn body_errors() {
    let cases: &[(&str, &str)] = &[
        (
            "",
            "Body is not valid JSON: EOF while parsing a value at line 1 column 0",
        ),
        (
            r#"{"items": [}"#,
            "Body is not valid JSON: expected value at line 1 column 12",
        ),
        (
            r#"{"items": []} x"#,
            "Body is not valid JSON: trailing characters at line 1 column 15",
        ),
        (
            "[]",
            "body: expected a JSON object with an 'items' array, got an array",
        ),
        (
            "\"x\"",
            "body: expected a JSON object with an 'items' array, got a string",
        ),
        (
            "null",
            "body: expected a JSON object with an 'items' array, got null",
        ),
        ("{}", r#"body: missing 'items' (expected {"items": [...]})"#),
        (
            r#"{"items": {}}"#,
            "items: expected an array, got an object",
        ),
        (
            r#"{"items": 3}"#,
            "items: expected an array, got an integer",
        ),
        (
            r#"{"items": [], "items": []}"#,
            "body: duplicate key 'items'",
        ),
    ];
    for (body, message) in cases {
        let e = parse_err(body);
        assert_eq!(
            (e.kind, e.item, e.message.as_str()),
            (PublishErrorKind::Invalid, None, *message)
        );
        assert_eq!(e.to_string(), *message);
        assert_eq!(e.http_status(), 400);
    }
}

#[test]
fn invalid_utf8_is_not_json() {
    let body = b"{\"items\":[{\"channel\":\"\xff\"}]}";
    let e = parse_publish_body(body, &limits()).expect_err("not UTF-8");
    assert_eq!(
        (e.kind, e.message.as_str()),
        (
            PublishErrorKind::Invalid,
            "Body is not valid JSON: invalid UTF-8 at byte offset 22"
        )
    );
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
         "items[0]: no formats; give at least one of 'http-response', 'http-stream', 'ws-message' or 'mqtt-message' in 'formats'"),
        (json!({"channel": "c", "formats": {"sse": {}}}),
         "items[0]: no formats; give at least one of 'http-response', 'http-stream', 'ws-message' or 'mqtt-message' in 'formats'"),
        (json!({"channel": "c"}),
         "items[0]: no formats; give at least one of 'http-response', 'http-stream', 'ws-message' or 'mqtt-message' in 'formats'"),
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
        (
            r#"{"channel":"a","channel":"b","formats":{"http-stream":{"content":"x"}}}"#,
            "items[0]: duplicate key 'channel'",
        ),
        (
            r#"{"channel":"a","meta":{"k":"1","k":"2"},"formats":{"http-stream":{"content":"x"}}}"#,
            "items[0].meta: duplicate key \"k\"",
        ),
        (
            r#"{"channel":"a","formats":{"http-stream":{"content":"x"},"http-stream":{"content":"y"}}}"#,
            "items[0].formats: duplicate key 'http-stream'",
        ),
        (
            r#"{"channel":"a","formats":{"http-stream":{"content":"x","content":"y"}}}"#,
            "items[0].formats.http-stream: duplicate key 'content'",
        ),
        (
            r#"{"channel":"a","http-stream":{"content":"x"},"http-stream":{"content":"y"}}"#,
            "items[0]: duplicate key 'http-stream'",
        ),
    ];
    for (item, message) in cases {
        assert_eq!(
            parse_err(&format!(r#"{{"items":[{item}]}}"#)).message,
            message
        );
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
    for bad in [
        json!(0),
        json!(999),
        json!(1004),
        json!(1005),
        json!(1006),
        json!(1015),
        json!(5000),
        json!(70000),
        json!(-1),
    ] {
        let message = close(bad.clone()).map(drop).map_err(|e| e.message);
        assert_eq!(
            message,
            Err(format!(
                "items[0].formats.ws-message.code: {bad} is not a close code that may be \
                         sent (1000-4999, except 1004, 1005, 1006 and 1015)"
            ))
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
    assert_eq!(
        e.to_string(),
        "items[2].formats.http-stream: needs 'content' or 'content-bin'"
    );
    assert_eq!(e.item, Some(2));

    let big = "x".repeat(40_000);
    let e = parse_err(
        &json!({"items": [{"channel": "c", "formats": {"ws-message": {"content": big}}}]})
            .to_string(),
    );
    assert_eq!(
        e.to_string(),
        "items[0].formats.ws-message.content: 40000 bytes, over the limit of 32767"
    );
    assert_eq!((e.kind, e.http_status()), (PublishErrorKind::TooLarge, 413));
}

#[test]
fn first_error_wins_and_nothing_is_returned() {
    let body = r#"{"items":[{"channel":"ok","formats":{"http-stream":{"content":"x"}}},
                            {"channel":"","formats":{}},
                            {"channel":5}, ]"#;
    let e = parse_err(body);
    assert_eq!(
        (e.item, e.message.as_str()),
        (Some(1), "items[1].channel: must not be empty")
    );
}
