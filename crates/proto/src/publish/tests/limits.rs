//! Limits at and just over their bounds, and header-injection attempts.

use serde_json::{json, Value};

use super::*;

#[test]
fn content_limits_at_and_over_the_bound() {
    use base64::Engine as _;
    let b64 = |n: usize| base64::engine::general_purpose::STANDARD.encode(vec![7u8; n]);
    let at = 32_767;
    let over = at + 1;
    let text = |n: usize| "a".repeat(n);
    let cases: Vec<(Value, &str)> = vec![
        (json!({"http-stream": {"content": text(at)}}), ""),
        (
            json!({"http-stream": {"content": text(over)}}),
            "http-stream.content",
        ),
        (json!({"http-stream": {"content-bin": b64(at)}}), ""),
        (
            json!({"http-stream": {"content-bin": b64(over)}}),
            "http-stream.content-bin",
        ),
        (json!({"http-response": {"body": text(at)}}), ""),
        (
            json!({"http-response": {"body": text(over)}}),
            "http-response.body",
        ),
        (json!({"http-response": {"body-bin": b64(at)}}), ""),
        (
            json!({"http-response": {"body-bin": b64(over)}}),
            "http-response.body-bin",
        ),
        (json!({"ws-message": {"content": text(at)}}), ""),
        (
            json!({"ws-message": {"content": text(over)}}),
            "ws-message.content",
        ),
        (json!({"ws-message": {"content-bin": b64(at)}}), ""),
        (
            json!({"ws-message": {"content-bin": b64(over)}}),
            "ws-message.content-bin",
        ),
    ];
    for (formats, field) in cases {
        let body = json!({"items": [{"channel": "c", "formats": formats}]}).to_string();
        let result = parse_publish_body(body.as_bytes(), &limits());
        if field.is_empty() {
            assert!(result.is_ok(), "{field}: {result:?}");
        } else {
            let e = result.expect_err("over the limit");
            assert_eq!(e.kind, PublishErrorKind::TooLarge);
            assert_eq!(
                e.message,
                format!("items[0].formats.{field}: 32768 bytes, over the limit of 32767")
            );
        }
    }
    // The limit counts bytes after unescaping: "\u00e9" is 2 bytes of content.
    let escaped = format!(
        r#"{{"items":[{{"channel":"c","formats":{{"http-stream":{{"content":"{}{}"}}}}}}]}}"#,
        "a".repeat(at - 2),
        "\\u00e9"
    );
    assert!(parse_publish_body(escaped.as_bytes(), &limits()).is_ok());
    // Each format has its own budget.
    let all = json!({"items": [{"channel": "c", "formats": {
        "http-stream": {"content": text(at)}, "ws-message": {"content": text(at)},
        "http-response": {"body": text(at)}}}]});
    assert!(parse_publish_body(all.to_string().as_bytes(), &limits()).is_ok());
}

#[test]
fn body_patch_size_counts_against_the_limit() {
    let small = PublishLimits {
        max_content_bytes: 60,
        ..limits()
    };
    let patch = json!([{"op": "add", "path": "/a", "value": "x".repeat(40)}]);
    let body =
        json!({"items": [{"channel": "c", "formats": {"http-response": {"body-patch": patch}}}]});
    let e = parse_publish_body(body.to_string().as_bytes(), &small).expect_err("too large");
    assert_eq!(e.kind, PublishErrorKind::TooLarge);
    assert_eq!(
        e.message,
        "items[0].formats.http-response.body-patch: 77 bytes, over the limit of 60"
    );
}

#[test]
fn count_and_name_limits() {
    let item = json!({"channel": "c", "formats": {"http-stream": {"content": "x"}}});
    let two = PublishLimits {
        max_items: 2,
        ..limits()
    };
    let body = |n: usize| json!({"items": vec![item.clone(); n]}).to_string();
    assert_eq!(
        parse_publish_body(body(2).as_bytes(), &two).map(|v| v.len()),
        Ok(2)
    );
    let e = parse_publish_body(body(3).as_bytes(), &two).expect_err("too many");
    assert_eq!(
        (e.kind, e.item, e.message.as_str()),
        (
            PublishErrorKind::TooLarge,
            None,
            "items: over the limit of 2 items"
        )
    );

    let f = json!({"http-stream": {"content": "x"}});
    assert!(parse_publish_body(
        json!({"items": [{"channel": "c".repeat(1024), "formats": f}]})
            .to_string()
            .as_bytes(),
        &limits()
    )
    .is_ok());
    assert_eq!(
        item_error(json!({"channel": "c".repeat(1025), "formats": f})),
        "items[0].channel: 1025 bytes, over the limit of 1024"
    );
    assert!(parse_publish_body(
        json!({"items": [{"channel": "c", "id": "i".repeat(1024), "formats": f}]})
            .to_string()
            .as_bytes(),
        &limits()
    )
    .is_ok());
    assert_eq!(
        item_error(json!({"channel": "c", "id": "i".repeat(1025), "formats": f})),
        "items[0].id: 1025 bytes, over the limit of 1024"
    );

    let meta: serde_json::Map<String, Value> = (0..=MAX_META_ENTRIES)
        .map(|i| (format!("k{i}"), json!("v")))
        .collect();
    assert_eq!(
        item_error(json!({"channel": "c", "meta": meta, "formats": f})),
        "items[0].meta: more than 64 entries"
    );
    let headers: Vec<Value> = (0..=MAX_RESPONSE_HEADERS)
        .map(|i| json!([format!("X-{i}"), "v"]))
        .collect();
    assert_eq!(
        formats_error(json!({"http-response": {"body": "", "headers": headers}})),
        "items[0].formats.http-response.headers: more than 100 headers"
    );
    let filters = vec!["f"; MAX_CONTENT_FILTERS + 1];
    assert_eq!(
        formats_error(json!({"http-stream": {"content": "", "content-filters": filters}})),
        "items[0].formats.http-stream.content-filters: more than 32 entries"
    );
}

#[test]
fn header_injection_is_impossible() {
    let at = "items[0].formats.http-response";
    let cases = [
        (
            json!({"X-A": "ok\r\nSet-Cookie: evil=1"}),
            format!(
                "{at}.headers[\"X-A\"]: the value contains CR, LF or another control character"
            ),
        ),
        (
            json!({"X-A": "ok\nX-B: 1"}),
            format!(
                "{at}.headers[\"X-A\"]: the value contains CR, LF or another control character"
            ),
        ),
        (
            json!({"X-A": "a\u{0}b"}),
            format!(
                "{at}.headers[\"X-A\"]: the value contains CR, LF or another control character"
            ),
        ),
        (
            json!({"X-A": "a\u{7f}"}),
            format!(
                "{at}.headers[\"X-A\"]: the value contains CR, LF or another control character"
            ),
        ),
        (
            json!({"X-A\r\nX-B": "v"}),
            format!("{at}.headers[\"X-A\\r\\nX-B\"]: \"X-A\\r\\nX-B\" is not a valid header name"),
        ),
        (
            json!({"X-A: b": "v"}),
            format!("{at}.headers[\"X-A: b\"]: \"X-A: b\" is not a valid header name"),
        ),
        (
            json!({"": "v"}),
            format!("{at}.headers[\"\"]: \"\" is not a valid header name"),
        ),
        (
            json!([["X-A", "v\r\n\r\n<html>"]]),
            format!("{at}.headers[0]: the value contains CR, LF or another control character"),
        ),
        (
            json!([["Bad Name", "v"]]),
            format!("{at}.headers[0]: \"Bad Name\" is not a valid header name"),
        ),
    ];
    for (headers, message) in cases {
        assert_eq!(
            formats_error(json!({"http-response": {"body": "", "headers": headers}})),
            message
        );
    }
    assert_eq!(
        formats_error(json!({"http-response": {"body": "", "reason": "OK\r\nX-Injected: 1"}})),
        format!("{at}.reason: contains CR, LF or another control character")
    );
    // Tabs and non-ASCII text are legal in values.
    let item = one(
        json!({"channel": "c", "formats": {"http-response": {"body": "",
        "reason": "Très bien", "headers": {"X-A": "a\tb é"}}}}),
    );
    assert!(item.formats.http_response.is_some());
}

#[test]
fn a_body_patch_that_outgrows_the_content_limit_is_refused_when_published() {
    // issue 7: 40 `copy` operations from "", each doubling the document
    let bomb: Vec<Value> = (0..40)
        .map(|i| json!({"op": "copy", "from": "", "path": format!("/k{i}")}))
        .collect();
    let message = formats_error(json!({"http-response": {"body-patch": bomb}}));
    assert!(
        message.contains("http-response.body-patch: builds a document larger than 32767"),
        "{message}"
    );
    // the same appended to an array
    let bomb: Vec<Value> = std::iter::once(json!({"op": "add", "path": "", "value": [1]}))
        .chain((0..40).map(|_| json!({"op": "copy", "from": "", "path": "/-"})))
        .collect();
    formats_error(json!({"http-response": {"body-patch": bomb}}));
    // a few copies stay well within it
    let fine: Vec<Value> = (0..5)
        .map(|i| json!({"op": "copy", "from": "", "path": format!("/k{i}")}))
        .collect();
    one(json!({"channel": "c", "formats": {"http-response": {"body-patch": fine}}}));
}
