//! Overlays an `application/grip-instruct` JSON body (reference §1.11) on the instructions
//! already read from the headers.
//!
//! What the JSON changes: `hold.mode` (default `response` once `hold` is present) replaces
//! `Grip-Hold`; `hold.channels` (required) are *added* to the header channels; `hold.timeout`
//! and `hold.keep-alive` replace the header values (a keep-alive keeps the header's mode, and
//! defaults to interval mode without one); `hold.meta` entries replace same-named ones. The
//! relayed response always comes from the JSON: an absent `response` means an empty 200 (or
//! `Grip-Status`) response. Links can only be given as `Grip-Link` headers.
//!
//! A JSON `null` is treated as an absent field. Numbers must be whole; string fields must be
//! strings. The body is bounded by the caller (`max_body_bytes`) and serde_json bounds nesting.

use base64::Engine as _;
use bytes::Bytes;
use serde_json::{Map, Value};

use super::headers::LENIENT_BASE64;
use super::{
    cap_seconds, has_bad_reason_char, is_usable_status, ChannelSource, ChannelSub, Draft, HoldMode,
    InstructError, InstructResponse, DEFAULT_KEEP_ALIVE_TIMEOUT_SECS,
};

type Object = Map<String, Value>;

/// Parses `body` as JSON instructions and applies them to `draft`.
pub(super) fn read_json(body: &[u8], draft: &mut Draft) -> Result<(), InstructError> {
    let root: Value = serde_json::from_slice(body).map_err(|e| InstructError::Json {
        detail: e.to_string(),
    })?;
    let Value::Object(root) = root else {
        return Err(InstructError::JsonNotObject);
    };
    if let Some(hold) = field(&root, "hold") {
        read_hold(object(hold, "hold")?, draft)?;
    }
    let mut response = InstructResponse {
        code: draft.status.as_ref().map_or(200, |s| s.code),
        reason: draft.status.as_ref().and_then(|s| s.reason.clone()),
        headers: Vec::new(),
        body: Bytes::new(),
    };
    if let Some(value) = field(&root, "response") {
        read_response(object(value, "response")?, &mut response)?;
    }
    draft.response = Some(response);
    Ok(())
}

/// A field's value, `None` when absent or `null`.
fn field<'v>(object: &'v Object, name: &str) -> Option<&'v Value> {
    object.get(name).filter(|v| !v.is_null())
}

fn object<'v>(value: &'v Value, path: &str) -> Result<&'v Object, InstructError> {
    value
        .as_object()
        .ok_or_else(|| InstructError::json(path, "must be an object"))
}

fn string<'v>(value: &'v Value, path: &str) -> Result<&'v str, InstructError> {
    value
        .as_str()
        .ok_or_else(|| InstructError::json(path, "must be a string"))
}

fn array<'v>(value: &'v Value, path: &str) -> Result<&'v Vec<Value>, InstructError> {
    value
        .as_array()
        .ok_or_else(|| InstructError::json(path, "must be an array"))
}

/// A whole non-negative number (`5` or `5.0`), or `None`.
fn whole_number(value: &Value) -> Option<u64> {
    value.as_u64().or_else(|| {
        value
            .as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0 && f.fract() == 0.0)
            // Saturating float-to-int conversion; the callers cap the result anyway.
            .map(|f| f as u64)
    })
}

fn seconds(value: &Value, path: &str) -> Result<u32, InstructError> {
    whole_number(value)
        .map(cap_seconds)
        .ok_or_else(|| InstructError::json(path, "must be a non-negative whole number of seconds"))
}

fn base64(text: &str, path: &str) -> Result<Bytes, InstructError> {
    LENIENT_BASE64
        .decode(text)
        .map(Bytes::from)
        .map_err(|_| InstructError::json(path, "is not valid base64"))
}

fn read_hold(hold: &Object, draft: &mut Draft) -> Result<(), InstructError> {
    draft.hold = Some(match field(hold, "mode") {
        None => HoldMode::Response,
        Some(mode) => match string(mode, "hold.mode")? {
            "response" => HoldMode::Response,
            "stream" => HoldMode::Stream,
            other => {
                return Err(InstructError::json(
                    "hold.mode",
                    format!("must be 'response' or 'stream', got '{other}'"),
                ))
            }
        },
    });

    let channels = field(hold, "channels")
        .ok_or_else(|| InstructError::json("hold.channels", "is required"))?;
    for (index, channel) in array(channels, "hold.channels")?.iter().enumerate() {
        let sub = read_channel(channel, index)?;
        draft.add_channel(sub, ChannelSource::Json { index })?;
    }

    if let Some(timeout) = field(hold, "timeout") {
        draft.timeout_secs = Some(seconds(timeout, "hold.timeout")?);
    }

    if let Some(keep_alive) = field(hold, "keep-alive") {
        let keep_alive = object(keep_alive, "hold.keep-alive")?;
        if let Some(bin) = field(keep_alive, "content-bin") {
            let text = string(bin, "hold.keep-alive.content-bin")?;
            draft.keep_alive_data = Some(base64(text, "hold.keep-alive.content-bin")?);
        } else if let Some(content) = field(keep_alive, "content") {
            let text = string(content, "hold.keep-alive.content")?;
            draft.keep_alive_data = Some(Bytes::copy_from_slice(text.as_bytes()));
        }
        draft.keep_alive_timeout_secs = Some(match field(keep_alive, "timeout") {
            Some(timeout) => seconds(timeout, "hold.keep-alive.timeout")?,
            None => DEFAULT_KEEP_ALIVE_TIMEOUT_SECS,
        });
    }

    if let Some(meta) = field(hold, "meta") {
        for (name, value) in object(meta, "hold.meta")? {
            let value = value.as_str().ok_or_else(|| {
                InstructError::json(format!("hold.meta.{name}"), "must be a string")
            })?;
            draft.set_meta(name.clone(), value.to_owned());
        }
    }
    Ok(())
}

fn read_channel(channel: &Value, index: usize) -> Result<ChannelSub, InstructError> {
    let path = format!("hold.channels[{index}]");
    let channel = object(channel, &path)?;
    let name = field(channel, "name")
        .ok_or_else(|| InstructError::json(format!("{path}.name"), "is required"))?;
    let name = string(name, &format!("{path}.name"))?.to_owned();
    let prev_id = match field(channel, "prev-id") {
        Some(id) => Some(string(id, &format!("{path}.prev-id"))?.to_owned()),
        None => None,
    };
    let mut filters = Vec::new();
    if let Some(list) = field(channel, "filters") {
        let list_path = format!("{path}.filters");
        for (n, filter) in array(list, &list_path)?.iter().enumerate() {
            filters.push(string(filter, &format!("{list_path}[{n}]"))?.to_owned());
        }
    }
    Ok(ChannelSub {
        name,
        prev_id,
        filters,
    })
}

fn read_response(input: &Object, response: &mut InstructResponse) -> Result<(), InstructError> {
    if let Some(code) = field(input, "code") {
        response.code = whole_number(code)
            .filter(|&c| is_usable_status(c))
            .and_then(|c| u16::try_from(c).ok())
            .ok_or_else(|| {
                InstructError::json("response.code", "must be a status code from 200 to 999")
            })?;
        // A new code drops the Grip-Status reason, as in Pushpin.
        response.reason = None;
    }
    if let Some(reason) = field(input, "reason") {
        let reason = string(reason, "response.reason")?;
        if has_bad_reason_char(reason) {
            return Err(InstructError::ReasonControlChar {
                field: "response.reason",
            });
        }
        if !reason.is_empty() {
            response.reason = Some(reason.to_owned());
        }
    }
    if let Some(headers) = field(input, "headers") {
        read_response_headers(headers, &mut response.headers)?;
    }
    if let Some(bin) = field(input, "body-bin") {
        response.body = base64(string(bin, "response.body-bin")?, "response.body-bin")?;
    } else if let Some(body) = field(input, "body") {
        response.body = Bytes::copy_from_slice(string(body, "response.body")?.as_bytes());
    }
    Ok(())
}

/// Reads `{"Name": "value"}` or `[["Name", "value"], ...]`, checking each name and value.
fn read_response_headers(
    headers: &Value,
    out: &mut Vec<(String, String)>,
) -> Result<(), InstructError> {
    match headers {
        Value::Object(map) => {
            for (name, value) in map {
                let path = format!("response.headers.{name}");
                let value = string(value, &path)?;
                out.push(checked_header(name, value, &path)?);
            }
        }
        Value::Array(list) => {
            for (n, pair) in list.iter().enumerate() {
                let path = format!("response.headers[{n}]");
                let pair = match pair.as_array().map(Vec::as_slice) {
                    Some([name, value]) => (name, value),
                    _ => return Err(InstructError::json(path, "must be a [name, value] pair")),
                };
                let name = string(pair.0, &format!("{path}[0]"))?;
                let value = string(pair.1, &format!("{path}[1]"))?;
                out.push(checked_header(name, value, &path)?);
            }
        }
        _ => {
            return Err(InstructError::json(
                "response.headers",
                "must be an object or an array of [name, value] pairs",
            ))
        }
    }
    Ok(())
}

fn checked_header(name: &str, value: &str, path: &str) -> Result<(String, String), InstructError> {
    if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Err(InstructError::json(
            path,
            format!("has an invalid header name {name:?}"),
        ));
    }
    if http::HeaderValue::from_str(value).is_err() {
        return Err(InstructError::json(
            path,
            format!("has an invalid header value {value:?}"),
        ));
    }
    Ok((name.to_owned(), value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{header_map, parse_json};
    use super::super::*;

    fn err(body: &str) -> String {
        parse_json(body, &[]).unwrap_err().to_string()
    }

    #[test]
    fn reference_example() {
        let body = r#"{
          "hold": {
            "mode": "response",
            "channels": [{"name": "fruit", "prev-id": "3", "filters": ["skip-self"]}],
            "timeout": 30,
            "keep-alive": {"content": "\n", "timeout": 20},
            "meta": {"user": "alice"}
          },
          "response": {
            "code": 200, "reason": "OK",
            "headers": {"Content-Type": "text/plain"},
            "body": "hello\n"
          }
        }"#;
        let parsed = parse_json(body, &[]).unwrap();
        assert_eq!(
            parsed,
            Instruct {
                hold: Some(HoldMode::Response),
                channels: vec![ChannelSub {
                    name: "fruit".to_owned(),
                    prev_id: Some("3".to_owned()),
                    filters: vec!["skip-self".to_owned()],
                }],
                channels_dropped: 0,
                timeout_secs: 30,
                keep_alive: Some(KeepAlive {
                    data: Bytes::from_static(b"\n"),
                    timeout_secs: 20,
                    mode: KeepAliveMode::Interval,
                }),
                status: None,
                expose_headers: None,
                next_link: None,
                gone_link: None,
                meta: vec![("user".to_owned(), "alice".to_owned())],
                response: Some(InstructResponse {
                    code: 200,
                    reason: Some("OK".to_owned()),
                    headers: vec![("Content-Type".to_owned(), "text/plain".to_owned())],
                    body: Bytes::from_static(b"hello\n"),
                }),
            }
        );
    }

    #[test]
    fn hold_mode_defaults_and_errors() {
        let mode = |body| parse_json(body, &[]).unwrap().hold;
        assert_eq!(
            mode(r#"{"hold": {"channels": []}}"#),
            Some(HoldMode::Response)
        );
        assert_eq!(
            mode(r#"{"hold": {"mode": "stream", "channels": []}}"#),
            Some(HoldMode::Stream)
        );
        assert_eq!(mode(r#"{"hold": null}"#), None);
        assert_eq!(mode("{}"), None);
        // JSON overrides the header.
        let parsed = parse_json(r#"{"hold": {"channels": []}}"#, &[("grip-hold", "stream")]);
        assert_eq!(parsed.unwrap().hold, Some(HoldMode::Response));
        assert_eq!(
            err(r#"{"hold": {"mode": "Stream", "channels": []}}"#),
            "hold.mode must be 'response' or 'stream', got 'Stream'"
        );
        assert_eq!(
            err(r#"{"hold": {"mode": 1, "channels": []}}"#),
            "hold.mode must be a string"
        );
        assert_eq!(err(r#"{"hold": []}"#), "hold must be an object");
    }

    #[test]
    fn channels() {
        let parsed = parse_json(
            r#"{"hold": {"channels": [{"name": "a,b;c"}, {"name": "x", "filters": []}]}}"#,
            &[("grip-channel", "h; prev-id=1, x; filter=f")],
        )
        .unwrap();
        let names: Vec<_> = parsed.channels.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, vec!["h", "x", "a,b;c"]);
        assert_eq!(parsed.channels[1].filters, Vec::<String>::new());
        assert_eq!(parsed.channels[0].prev_id.as_deref(), Some("1"));

        assert_eq!(err(r#"{"hold": {}}"#), "hold.channels is required");
        assert_eq!(
            err(r#"{"hold": {"channels": {}}}"#),
            "hold.channels must be an array"
        );
        assert_eq!(
            err(r#"{"hold": {"channels": ["a"]}}"#),
            "hold.channels[0] must be an object"
        );
        assert_eq!(
            err(r#"{"hold": {"channels": [{}]}}"#),
            "hold.channels[0].name is required"
        );
        assert_eq!(
            err(r#"{"hold": {"channels": [{"name": "a"}, {"name": 5}]}}"#),
            "hold.channels[1].name must be a string"
        );
        assert_eq!(
            err(r#"{"hold": {"channels": [{"name": ""}]}}"#),
            "hold.channels[0]: channel name is empty"
        );
        assert_eq!(
            err(r#"{"hold": {"channels": [{"name": "a\nb"}]}}"#),
            "hold.channels[0]: channel name \"a\\nb\" contains a control character"
        );
        assert_eq!(
            err(r#"{"hold": {"channels": [{"name": "a", "prev-id": 3}]}}"#),
            "hold.channels[0].prev-id must be a string"
        );
        assert_eq!(
            err(r#"{"hold": {"channels": [{"name": "a", "filters": ["x", 1]}]}}"#),
            "hold.channels[0].filters[1] must be a string"
        );
        assert_eq!(
            err(r#"{"hold": {"channels": [{"name": "a", "filters": ["1","2","3","4","5","6"]}]}}"#),
            "too many filters for channel 'a' (6, at most 5 allowed)"
        );
        assert_eq!(
            err(r#"{"hold": {"mode": "stream", "channels": [{"name": "a", "prev-id": "1"}]}}"#),
            "channel 'a' specifies prev-id, which a stream hold allows only with a \
             Grip-Link rel=next"
        );
    }

    #[test]
    fn timeout() {
        let timeout = |t: &str| {
            parse_json(
                &format!(r#"{{"hold": {{"channels": [], "timeout": {t}}}}}"#),
                &[],
            )
            .map(|i| i.timeout_secs)
        };
        assert_eq!(timeout("30"), Ok(30));
        assert_eq!(timeout("30.0"), Ok(30));
        assert_eq!(timeout("2"), Ok(5));
        assert_eq!(timeout("1e12"), Ok(86_400));
        for bad in ["-1", "2.5", "\"30\"", "true"] {
            assert_eq!(
                timeout(bad).unwrap_err().to_string(),
                "hold.timeout must be a non-negative whole number of seconds"
            );
        }
        let parsed = parse_json(r#"{"hold": {"channels": []}}"#, &[("grip-timeout", "40")]);
        assert_eq!(parsed.unwrap().timeout_secs, 40);
    }

    #[test]
    fn keep_alive() {
        let ka = |body: &str, extra: &[(&str, &str)]| parse_json(body, extra).unwrap().keep_alive;
        assert_eq!(
            ka(
                r#"{"hold": {"channels": [], "keep-alive": {"content-bin": "aGk=", "content": "x"}}}"#,
                &[]
            ),
            Some(KeepAlive {
                data: Bytes::from_static(b"hi"),
                timeout_secs: 55,
                mode: KeepAliveMode::Interval,
            })
        );
        // The header's mode survives; the JSON replaces data and timeout.
        assert_eq!(
            ka(
                r#"{"hold": {"channels": [], "keep-alive": {"content": "j", "timeout": 0}}}"#,
                &[("grip-keep-alive", "h; mode=idle; timeout=9")]
            ),
            Some(KeepAlive {
                data: Bytes::from_static(b"j"),
                timeout_secs: 1,
                mode: KeepAliveMode::Idle,
            })
        );
        // No content: the header's data stays, with the JSON (default) timeout.
        assert_eq!(
            ka(
                r#"{"hold": {"channels": [], "keep-alive": {}}}"#,
                &[("grip-keep-alive", "h; mode=interval; timeout=9")]
            ),
            Some(KeepAlive {
                data: Bytes::from_static(b"h"),
                timeout_secs: 55,
                mode: KeepAliveMode::Interval,
            })
        );
        assert_eq!(
            ka(
                r#"{"hold": {"channels": [], "keep-alive": {"content": ""}}}"#,
                &[]
            ),
            None
        );
        assert_eq!(
            ka(r#"{"hold": {"channels": [], "keep-alive": {}}}"#, &[]),
            None
        );
        assert_eq!(
            err(r#"{"hold": {"channels": [], "keep-alive": {"content-bin": "!"}}}"#),
            "hold.keep-alive.content-bin is not valid base64"
        );
        assert_eq!(
            err(r#"{"hold": {"channels": [], "keep-alive": {"content": 1}}}"#),
            "hold.keep-alive.content must be a string"
        );
        assert_eq!(
            err(r#"{"hold": {"channels": [], "keep-alive": {"content": "x", "timeout": -5}}}"#),
            "hold.keep-alive.timeout must be a non-negative whole number of seconds"
        );
        assert_eq!(
            err(r#"{"hold": {"channels": [], "keep-alive": "x"}}"#),
            "hold.keep-alive must be an object"
        );
    }

    #[test]
    fn meta_merges_with_header() {
        let parsed = parse_json(
            r#"{"hold": {"channels": [], "meta": {"user": "bob", "x": "1"}}}"#,
            &[("grip-set-meta", "user=alice, role=admin")],
        )
        .unwrap();
        let meta: Vec<(&str, &str)> = parsed
            .meta
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(meta, vec![("user", "bob"), ("role", "admin"), ("x", "1")]);
        assert_eq!(
            err(r#"{"hold": {"channels": [], "meta": {"user": 1}}}"#),
            "hold.meta.user must be a string"
        );
        assert_eq!(
            err(r#"{"hold": {"channels": [], "meta": []}}"#),
            "hold.meta must be an object"
        );
    }

    #[test]
    fn response_forms() {
        let response =
            |body: &str, extra: &[(&str, &str)]| parse_json(body, extra).unwrap().response;
        assert_eq!(
            response(r#"{}"#, &[]),
            Some(InstructResponse {
                code: 200,
                reason: None,
                headers: vec![],
                body: Bytes::new(),
            })
        );
        // Grip-Status sets the code and reason unless the JSON gives a code.
        let with_status = [("grip-status", "404 Not Here")];
        assert_eq!(
            response(r#"{"response": {"body": "x"}}"#, &with_status),
            Some(InstructResponse {
                code: 404,
                reason: Some("Not Here".to_owned()),
                headers: vec![],
                body: Bytes::from_static(b"x"),
            })
        );
        assert_eq!(
            response(r#"{"response": {"code": 410}}"#, &with_status).map(|r| (r.code, r.reason)),
            Some((410, None))
        );
        assert_eq!(
            response(
                r#"{"response": {"headers": [["X-A", "1"], ["X-A", "2"]], "body-bin": "AAEC", "body": "no"}}"#,
                &[]
            ),
            Some(InstructResponse {
                code: 200,
                reason: None,
                headers: vec![
                    ("X-A".to_owned(), "1".to_owned()),
                    ("X-A".to_owned(), "2".to_owned()),
                ],
                body: Bytes::from_static(&[0, 1, 2]),
            })
        );
    }

    #[test]
    fn response_errors() {
        assert_eq!(err(r#"{"response": 1}"#), "response must be an object");
        for bad in ["99", "1000", "200.5", "\"200\""] {
            assert_eq!(
                err(&format!(r#"{{"response": {{"code": {bad}}}}}"#)),
                "response.code must be a status code from 200 to 999"
            );
        }
        assert_eq!(
            err(r#"{"response": {"reason": "a\r\nb"}}"#),
            "response.reason reason phrase contains a control character"
        );
        assert_eq!(
            err(r#"{"response": {"headers": [["a"]]}}"#),
            "response.headers[0] must be a [name, value] pair"
        );
        assert_eq!(
            err(r#"{"response": {"headers": [["a", 1]]}}"#),
            "response.headers[0][1] must be a string"
        );
        assert_eq!(
            err(r#"{"response": {"headers": {"bad name": "x"}}}"#),
            "response.headers.bad name has an invalid header name \"bad name\""
        );
        assert_eq!(
            err(r#"{"response": {"headers": {"x": "a\nb"}}}"#),
            "response.headers.x has an invalid header value \"a\\nb\""
        );
        assert_eq!(
            err(r#"{"response": {"headers": "x"}}"#),
            "response.headers must be an object or an array of [name, value] pairs"
        );
        assert_eq!(
            err(r#"{"response": {"body": 1}}"#),
            "response.body must be a string"
        );
        assert_eq!(
            err(r#"{"response": {"body-bin": "*"}}"#),
            "response.body-bin is not valid base64"
        );
    }

    #[test]
    fn body_level_errors() {
        assert!(err("{").starts_with("application/grip-instruct body is not valid JSON: "));
        assert_eq!(
            err("[]"),
            "application/grip-instruct body must be a JSON object"
        );
        let map = header_map(&[("content-type", "application/grip-instruct")]);
        let limits = InstructLimits::default();
        assert_eq!(
            parse_instruct(404, &map, b"{}", &limits)
                .unwrap_err()
                .to_string(),
            "application/grip-instruct content is only accepted with status 200, got 404"
        );
        let small = InstructLimits {
            max_body_bytes: 3,
            ..limits
        };
        assert_eq!(
            parse_instruct(200, &map, b"{ }\n", &small)
                .unwrap_err()
                .to_string(),
            "application/grip-instruct body is 4 bytes, over the limit of 3"
        );
        assert!(parse_instruct(200, &map, b"{ }", &small).is_ok());
    }

    #[test]
    fn content_type_match_ignores_case_and_parameters() {
        let map = header_map(&[("content-type", " Application/GRIP-Instruct ; charset=utf-8")]);
        let parsed = parse_instruct(
            200,
            &map,
            br#"{"hold": {"channels": [{"name": "a"}]}}"#,
            &InstructLimits::default(),
        )
        .unwrap();
        assert_eq!(parsed.channels.len(), 1);
        // Other content types leave the body alone, even if it is JSON.
        let map = header_map(&[
            ("content-type", "application/json"),
            ("grip-hold", "response"),
        ]);
        let parsed =
            parse_instruct(200, &map, br#"{"hold": 1}"#, &InstructLimits::default()).unwrap();
        assert_eq!(parsed.response, None);
    }
}
