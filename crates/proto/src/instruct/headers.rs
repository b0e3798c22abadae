//! Reads the `Grip-*` response headers (reference §1.1–§1.8) into a [`Draft`].
//!
//! Single-valued headers (`Grip-Hold`, `Grip-Timeout`, `Grip-Keep-Alive`, `Grip-Status`) use
//! their first line only, as Pushpin does; list headers (`Grip-Channel`, `Grip-Link`,
//! `Grip-Set-Meta`, `Grip-Expose-Headers`) use every line. `Grip-Keep-Alive` is one element
//! (its data may contain commas). Values are case-sensitive, parameter names are not.
//! `Grip-Session-Id`/`Grip-Session-Detect` (sessions need an external state service) and any
//! unknown `Grip-*` header are ignored; they are still stripped from the client's response.

use base64::Engine as _;
use bytes::Bytes;
use http::HeaderMap;

use super::{
    decode_cstring, has_bad_reason_char, is_usable_status, parse_seconds, ChannelSource,
    ChannelSub, Draft, HoldMode, InstructError, KeepAliveMode, NextLink, StatusOverride,
    DEFAULT_KEEP_ALIVE_TIMEOUT_SECS, DEFAULT_NEXT_LINK_TIMEOUT_SECS, MIN_NEXT_LINK_TIMEOUT_SECS,
};
use crate::params::{header_elements, parse_header_element, split_elements, HeaderElement};

/// Base64 as Pushpin accepts it: standard alphabet, padding optional.
pub(super) const LENIENT_BASE64: base64::engine::GeneralPurpose =
    base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );

/// Reads every `Grip-*` header the proxy understands.
pub(super) fn read_headers(headers: &HeaderMap, draft: &mut Draft) -> Result<(), InstructError> {
    read_hold(headers, draft)?;
    read_channels(headers, draft)?;
    if let Some(text) = first_line(headers, "grip-timeout", "Grip-Timeout")? {
        draft.timeout_secs = Some(parse_seconds(text, "Grip-Timeout")?);
    }
    read_expose_headers(headers, draft)?;
    read_keep_alive(headers, draft)?;
    read_set_meta(headers, draft)?;
    read_status(headers, draft)?;
    read_links(headers, draft)
}

/// The first line of a header as trimmed UTF-8.
fn first_line<'h>(
    headers: &'h HeaderMap,
    name: &str,
    display: &'static str,
) -> Result<Option<&'h str>, InstructError> {
    headers
        .get(name)
        .map(|value| {
            std::str::from_utf8(value.as_bytes())
                .map(str::trim)
                .map_err(|_| InstructError::NotUtf8 { header: display })
        })
        .transpose()
}

/// Every element of every line of a list header.
fn elements<'h>(
    headers: &'h HeaderMap,
    name: &str,
    display: &'static str,
    first_is_param: bool,
) -> impl Iterator<Item = Result<HeaderElement, InstructError>> + 'h {
    let lines = headers.get_all(name).into_iter().map(|v| v.as_bytes());
    header_elements(lines, first_is_param).map(move |parsed| {
        parsed.map_err(|source| InstructError::Params {
            header: display,
            source,
        })
    })
}

fn read_hold(headers: &HeaderMap, draft: &mut Draft) -> Result<(), InstructError> {
    if let Some(text) = first_line(headers, "grip-hold", "Grip-Hold")? {
        draft.hold = Some(match text {
            "response" => HoldMode::Response,
            "stream" => HoldMode::Stream,
            other => {
                return Err(InstructError::HoldMode {
                    got: other.to_owned(),
                })
            }
        });
    }
    Ok(())
}

fn read_channels(headers: &HeaderMap, draft: &mut Draft) -> Result<(), InstructError> {
    for (index, parsed) in elements(headers, "grip-channel", "Grip-Channel", false).enumerate() {
        let element = parsed?;
        let number = index + 1;
        if element.is_empty() {
            // as Pushpin: an empty element ("a,,b" or a trailing comma) is skipped
            continue;
        }
        let prev_id = element
            .param("prev-id")
            .flatten()
            .filter(|id| !id.is_empty())
            .map(str::to_owned);
        let filters = element
            .params_named("filter")
            .flatten()
            .filter(|f| !f.is_empty())
            .map(str::to_owned)
            .collect();
        let sub = ChannelSub {
            name: element.first,
            prev_id,
            filters,
        };
        draft.add_channel(sub, ChannelSource::Header { element: number })?;
    }
    Ok(())
}

fn read_expose_headers(headers: &HeaderMap, draft: &mut Draft) -> Result<(), InstructError> {
    let mut names = Vec::new();
    for line in headers.get_all("grip-expose-headers") {
        for piece in split_elements(line.as_bytes()) {
            let name = std::str::from_utf8(piece).map_err(|_| InstructError::NotUtf8 {
                header: "Grip-Expose-Headers",
            })?;
            if !name.is_empty() {
                names.push(name.to_ascii_lowercase());
            }
        }
    }
    if !names.is_empty() {
        draft.expose_headers = Some(names);
    }
    Ok(())
}

fn read_keep_alive(headers: &HeaderMap, draft: &mut Draft) -> Result<(), InstructError> {
    let Some(line) = headers.get("grip-keep-alive") else {
        return Ok(());
    };
    let element =
        parse_header_element(line.as_bytes(), false).map_err(|source| InstructError::Params {
            header: "Grip-Keep-Alive",
            source,
        })?;
    if element.first.is_empty() {
        return Err(InstructError::KeepAliveEmpty);
    }
    let mode = match element.param("mode").flatten().unwrap_or("") {
        "" | "idle" => KeepAliveMode::Idle,
        "interval" => KeepAliveMode::Interval,
        other => {
            return Err(InstructError::KeepAliveMode {
                got: other.to_owned(),
            })
        }
    };
    let timeout_secs = match element.param("timeout") {
        None => DEFAULT_KEEP_ALIVE_TIMEOUT_SECS,
        Some(value) => parse_seconds(value.unwrap_or(""), "Grip-Keep-Alive timeout")?,
    };
    let raw = element.first.as_bytes();
    let data = match element.param("format").flatten().unwrap_or("") {
        "" | "raw" => raw.to_vec(),
        "cstring" => decode_cstring(raw).map_err(|e| match e {
            InstructError::CString(reason) => InstructError::KeepAliveCString(reason),
            other => other,
        })?,
        "base64" => LENIENT_BASE64
            .decode(raw)
            .map_err(|_| InstructError::KeepAliveBase64)?,
        other => {
            return Err(InstructError::KeepAliveFormat {
                got: other.to_owned(),
            })
        }
    };
    if data.is_empty() {
        return Err(InstructError::KeepAliveEmpty);
    }
    draft.keep_alive_data = Some(Bytes::from(data));
    draft.keep_alive_timeout_secs = Some(timeout_secs);
    draft.keep_alive_mode = Some(mode);
    Ok(())
}

fn read_set_meta(headers: &HeaderMap, draft: &mut Draft) -> Result<(), InstructError> {
    for (index, parsed) in elements(headers, "grip-set-meta", "Grip-Set-Meta", true).enumerate() {
        let element = parsed?;
        let number = index + 1;
        if element.is_empty() {
            return Err(InstructError::SetMetaEmpty { element: number });
        }
        if element.first.is_empty() {
            return Err(InstructError::SetMetaEmptyName { element: number });
        }
        draft.set_meta(element.first, element.first_value.unwrap_or_default());
    }
    Ok(())
}

fn read_status(headers: &HeaderMap, draft: &mut Draft) -> Result<(), InstructError> {
    let Some(text) = first_line(headers, "grip-status", "Grip-Status")? else {
        return Ok(());
    };
    if text.is_empty() {
        return Ok(());
    }
    let (code_text, reason) = text.split_once(' ').unwrap_or((text, ""));
    let code = Some(code_text)
        .filter(|c| (1..=3).contains(&c.len()) && c.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|c| c.parse::<u16>().ok())
        .filter(|&c| is_usable_status(c.into()))
        .ok_or_else(|| InstructError::StatusCode {
            got: text.to_owned(),
        })?;
    let reason = reason.trim();
    if has_bad_reason_char(reason) {
        return Err(InstructError::ReasonControlChar {
            field: "Grip-Status",
        });
    }
    draft.status = Some(StatusOverride {
        code,
        reason: (!reason.is_empty()).then(|| reason.to_owned()),
    });
    Ok(())
}

fn read_links(headers: &HeaderMap, draft: &mut Draft) -> Result<(), InstructError> {
    for parsed in elements(headers, "grip-link", "Grip-Link", false) {
        let element = parsed?;
        // Without parameters there is no rel: ignored, as in Pushpin.
        if element.params.is_empty() {
            continue;
        }
        let uri = element
            .first
            .strip_prefix('<')
            .and_then(|rest| rest.strip_suffix('>'))
            .filter(|uri| !uri.is_empty())
            .ok_or_else(|| InstructError::LinkValue {
                got: element.first.clone(),
            })?;
        if uri.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(InstructError::LinkUri {
                uri: uri.to_owned(),
            });
        }
        let rel = element.param("rel").flatten().unwrap_or("");
        if rel.eq_ignore_ascii_case("next") {
            let timeout_secs = match element.param("timeout") {
                None => DEFAULT_NEXT_LINK_TIMEOUT_SECS,
                Some(value) => parse_seconds(value.unwrap_or(""), "Grip-Link timeout")?,
            };
            draft.next_link = Some(NextLink {
                uri: uri.to_owned(),
                timeout_secs: timeout_secs.max(MIN_NEXT_LINK_TIMEOUT_SECS),
            });
        } else if rel.eq_ignore_ascii_case("gone") {
            draft.gone_link = Some(uri.to_owned());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{header_error, header_map, parse_headers};
    use super::super::*;

    fn channel(name: &str, prev_id: Option<&str>, filters: &[&str]) -> ChannelSub {
        ChannelSub {
            name: name.to_owned(),
            prev_id: prev_id.map(str::to_owned),
            filters: filters.iter().map(|f| (*f).to_owned()).collect(),
        }
    }

    #[test]
    fn hold_modes() {
        assert_eq!(parse_headers(&[]).unwrap().hold, None);
        let hold = |v| parse_headers(&[("grip-hold", v)]).unwrap().hold;
        assert_eq!(hold("response"), Some(HoldMode::Response));
        assert_eq!(hold("stream"), Some(HoldMode::Stream));
        assert_eq!(hold(" stream "), Some(HoldMode::Stream));
        assert_eq!(
            header_error(&[("grip-hold", "Stream")]),
            "Grip-Hold must be 'response' or 'stream', got 'Stream'"
        );
        assert_eq!(
            header_error(&[("grip-hold", "")]),
            "Grip-Hold must be 'response' or 'stream', got ''"
        );
        // Only the first line counts.
        let two = parse_headers(&[("grip-hold", "stream"), ("grip-hold", "bogus")]).unwrap();
        assert_eq!(two.hold, Some(HoldMode::Stream));
    }

    #[test]
    fn channels_with_prev_id_and_filters() {
        let parsed = parse_headers(&[
            (
                "grip-channel",
                "fruit; prev-id=3; filter=skip-self; FILTER=build-id, vegetables",
            ),
            ("grip-channel", "meat;PREV-ID=\"a b\""),
        ])
        .unwrap();
        assert_eq!(
            parsed.channels,
            vec![
                channel("fruit", Some("3"), &["skip-self", "build-id"]),
                channel("vegetables", None, &[]),
                channel("meat", Some("a b"), &[]),
            ]
        );
        assert_eq!(parsed.channels_dropped, 0);
    }

    #[test]
    fn channel_names_keep_quotes_and_empty_values_are_ignored() {
        let parsed =
            parse_headers(&[("grip-channel", "\"a,b\"; prev-id=; filter=; filter=x")]).unwrap();
        assert_eq!(parsed.channels, vec![channel("\"a,b\"", None, &["x"])]);
    }

    #[test]
    fn channel_errors() {
        // empty elements are skipped, as Pushpin does
        let names = |h: &[(&'static str, &str)]| -> Vec<String> {
            let mut map = HeaderMap::new();
            for (k, v) in h {
                map.append(*k, v.parse().unwrap());
            }
            parse_instruct(200, &map, b"", &InstructLimits::default())
                .unwrap()
                .channels
                .into_iter()
                .map(|c| c.name)
                .collect()
        };
        assert_eq!(names(&[("grip-channel", "a, , b")]), ["a", "b"]);
        assert_eq!(
            names(&[("grip-channel", "a"), ("grip-channel", "b,")]),
            ["a", "b"]
        );
        assert_eq!(
            header_error(&[("grip-channel", "; prev-id=1")]),
            "Grip-Channel element 1: channel name is empty"
        );
        assert_eq!(
            header_error(&[("grip-channel", "a\tb")]),
            "Grip-Channel element 1: channel name \"a\\tb\" contains a control character"
        );
        assert_eq!(
            header_error(&[("grip-channel", "a; prev-id=\"x\ty\"")]),
            "Grip-Channel element 1: prev-id \"x\\ty\" contains a control character"
        );
        assert_eq!(
            header_error(&[(
                "grip-channel",
                "c; filter=a; filter=b; filter=c; filter=d; filter=e; filter=f"
            )]),
            "too many filters for channel 'c' (6, at most 5 allowed)"
        );
        assert_eq!(
            header_error(&[("grip-channel", "a; prev-id=\"open")]),
            "invalid Grip-Channel header: element 1 has an unterminated quoted string"
        );
        let mut map = header_map(&[]);
        map.append(
            "grip-channel",
            http::HeaderValue::from_bytes(b"caf\xe9").unwrap(),
        );
        let err = parse_instruct(200, &map, b"", &InstructLimits::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid Grip-Channel header: element 1 is not valid UTF-8"
        );
    }

    #[test]
    fn channels_beyond_the_limit_are_dropped_and_counted() {
        let names: Vec<String> = (0..25).map(|n| format!("c{n}")).collect();
        let line = names.join(", ");
        let parsed = parse_headers(&[("grip-channel", &line)]).unwrap();
        assert_eq!(parsed.channels.len(), 20);
        assert_eq!(parsed.channels[19].name, "c19");
        assert_eq!(parsed.channels_dropped, 5);

        let limits = InstructLimits {
            max_channels: 1,
            max_filters_per_channel: 0,
            ..InstructLimits::default()
        };
        let map = header_map(&[("grip-channel", "a, b, c")]);
        let parsed = parse_instruct(200, &map, b"", &limits).unwrap();
        assert_eq!(parsed.channels, vec![channel("a", None, &[])]);
        assert_eq!(parsed.channels_dropped, 2);
        let map = header_map(&[("grip-channel", "a; filter=x")]);
        assert_eq!(
            parse_instruct(200, &map, b"", &limits)
                .unwrap_err()
                .to_string(),
            "too many filters for channel 'a' (1, at most 0 allowed)"
        );
    }

    #[test]
    fn repeated_channel_replaces_in_place() {
        let parsed = parse_headers(&[("grip-channel", "a; prev-id=1, b, a; prev-id=2")]).unwrap();
        assert_eq!(
            parsed.channels,
            vec![channel("a", Some("2"), &[]), channel("b", None, &[])]
        );
    }

    #[test]
    fn stream_prev_id_needs_next_link() {
        assert_eq!(
            header_error(&[
                ("grip-hold", "stream"),
                ("grip-channel", "fruit; prev-id=3")
            ]),
            "channel 'fruit' specifies prev-id, which a stream hold allows only with a \
             Grip-Link rel=next"
        );
        assert!(parse_headers(&[
            ("grip-hold", "stream"),
            ("grip-channel", "fruit; prev-id=3"),
            ("grip-link", "</next>; rel=next"),
        ])
        .is_ok());
        assert!(
            parse_headers(&[("grip-hold", "response"), ("grip-channel", "f; prev-id=3")]).is_ok()
        );
    }

    #[test]
    fn timeout_values() {
        let timeout = |v| parse_headers(&[("grip-timeout", v)]).map(|i| i.timeout_secs);
        assert_eq!(parse_headers(&[]).unwrap().timeout_secs, 55);
        assert_eq!(timeout("60"), Ok(60));
        assert_eq!(timeout(" 7 "), Ok(7));
        assert_eq!(timeout("3"), Ok(5));
        assert_eq!(timeout("0"), Ok(5));
        assert_eq!(timeout("86401"), Ok(86_400));
        assert_eq!(timeout("99999999999999999999999999"), Ok(86_400));
        for bad in ["abc", "-3", "", "1.5", "+5"] {
            assert_eq!(
                header_error(&[("grip-timeout", bad)]),
                format!("Grip-Timeout must be a non-negative whole number of seconds, got '{bad}'")
            );
        }
    }

    fn keep_alive(value: &str) -> Result<Option<KeepAlive>, InstructError> {
        parse_headers(&[("grip-keep-alive", value)]).map(|i| i.keep_alive)
    }

    fn ka(data: &[u8], timeout_secs: u32, mode: KeepAliveMode) -> Option<KeepAlive> {
        Some(KeepAlive {
            data: Bytes::copy_from_slice(data),
            timeout_secs,
            mode,
        })
    }

    #[test]
    fn keep_alive_formats_timeouts_and_modes() {
        assert_eq!(parse_headers(&[]).unwrap().keep_alive, None);
        assert_eq!(keep_alive("ping"), Ok(ka(b"ping", 55, KeepAliveMode::Idle)));
        assert_eq!(
            keep_alive(r":\n\n; format=cstring; timeout=30"),
            Ok(ka(b":\n\n", 30, KeepAliveMode::Idle))
        );
        assert_eq!(
            keep_alive(r"a\x41\\\r\q; format=cstring"),
            Ok(ka(b"aA\\\r", 55, KeepAliveMode::Idle))
        );
        assert_eq!(
            keep_alive("aGk=; format=base64; mode=interval"),
            Ok(ka(b"hi", 55, KeepAliveMode::Interval))
        );
        assert_eq!(
            keep_alive("aGk; format=base64"),
            Ok(ka(b"hi", 55, KeepAliveMode::Idle))
        );
        assert_eq!(
            keep_alive("x; format=raw; mode=idle; timeout=0"),
            Ok(ka(b"x", 1, KeepAliveMode::Idle))
        );
        assert_eq!(
            keep_alive(r#"{"a":1,"b":2}; TIMEOUT=99999999999"#),
            Ok(ka(br#"{"a":1,"b":2}"#, 86_400, KeepAliveMode::Idle))
        );
    }

    #[test]
    fn keep_alive_errors() {
        let err = |v| keep_alive(v).unwrap_err().to_string();
        assert_eq!(
            err("; format=raw"),
            "Grip-Keep-Alive data must not be empty"
        );
        assert_eq!(err(""), "Grip-Keep-Alive data must not be empty");
        assert_eq!(
            err(r"\q; format=cstring"),
            "Grip-Keep-Alive data must not be empty"
        );
        assert_eq!(
            err(r"x\; format=cstring"),
            "Grip-Keep-Alive data is not a valid cstring: a backslash ends the data"
        );
        assert_eq!(
            err(r"\x4; format=cstring"),
            "Grip-Keep-Alive data is not a valid cstring: \\x must be followed by two hex digits"
        );
        assert_eq!(
            err("!!; format=base64"),
            "Grip-Keep-Alive data is not valid base64"
        );
        assert_eq!(
            err("x; format=hex"),
            "Grip-Keep-Alive format must be 'raw', 'cstring' or 'base64', got 'hex'"
        );
        assert_eq!(
            err("x; mode=Idle"),
            "Grip-Keep-Alive mode must be 'idle' or 'interval', got 'Idle'"
        );
        assert_eq!(
            err("x; timeout=soon"),
            "Grip-Keep-Alive timeout must be a non-negative whole number of seconds, got 'soon'"
        );
        assert_eq!(
            err("x; timeout"),
            "Grip-Keep-Alive timeout must be a non-negative whole number of seconds, got ''"
        );
    }

    #[test]
    fn status_override() {
        let status = |v| parse_headers(&[("grip-status", v)]).map(|i| i.status);
        assert_eq!(
            status("404 Not Found"),
            Ok(Some(StatusOverride {
                code: 404,
                reason: Some("Not Found".to_owned())
            }))
        );
        assert_eq!(
            status("204  No Content "),
            Ok(Some(StatusOverride {
                code: 204,
                reason: Some("No Content".to_owned())
            }))
        );
        assert_eq!(
            status("999"),
            Ok(Some(StatusOverride {
                code: 999,
                reason: None
            }))
        );
        assert_eq!(status(""), Ok(None));
        for bad in [
            "99",
            "100 Continue",
            "1000",
            "abc",
            "+200",
            "20x OK",
            "0200",
        ] {
            assert_eq!(
                header_error(&[("grip-status", bad)]),
                format!(
                    "Grip-Status must be '<code> [reason]' with a code from 200 to 999, got '{bad}'"
                )
            );
        }
        assert_eq!(
            header_error(&[("grip-status", "200 O\u{85}K")]),
            "Grip-Status reason phrase contains a control character"
        );
    }

    #[test]
    fn expose_headers() {
        assert_eq!(parse_headers(&[]).unwrap().expose_headers, None);
        let parsed = parse_headers(&[
            ("grip-expose-headers", "Content-Type, X-Foo"),
            ("grip-expose-headers", " ETag ,"),
        ])
        .unwrap();
        assert_eq!(
            parsed.expose_headers,
            Some(vec![
                "content-type".to_owned(),
                "x-foo".to_owned(),
                "etag".to_owned()
            ])
        );
        assert_eq!(
            parse_headers(&[("grip-expose-headers", "")])
                .unwrap()
                .expose_headers,
            None
        );
    }

    #[test]
    fn links() {
        let parsed = parse_headers(&[(
            "grip-link",
            "</fruit/?after=3>; rel=next; timeout=30, <https://o.example/gone>; rel=gone",
        )])
        .unwrap();
        assert_eq!(
            parsed.next_link,
            Some(NextLink {
                uri: "/fruit/?after=3".to_owned(),
                timeout_secs: 30
            })
        );
        assert_eq!(parsed.gone_link.as_deref(), Some("https://o.example/gone"));

        let next = |v| parse_headers(&[("grip-link", v)]).map(|i| i.next_link);
        let link = |uri: &str, timeout_secs| {
            Ok(Some(NextLink {
                uri: uri.to_owned(),
                timeout_secs,
            }))
        };
        assert_eq!(next("</a>; rel=next"), link("/a", 120));
        assert_eq!(next("</a>; REL=\"next\"; timeout=0"), link("/a", 1));
        assert_eq!(next("</a>; rel=next; timeout=10000000"), link("/a", 86_400));
        assert_eq!(next("</a>; rel=next, </b>; rel=next"), link("/b", 120));
        // No rel, other rel, or no parameters at all: ignored.
        assert_eq!(next("</a>; title=x"), Ok(None));
        assert_eq!(next("</a>; rel=prev"), Ok(None));
        assert_eq!(next("garbage"), Ok(None));
    }

    #[test]
    fn link_errors() {
        assert_eq!(
            header_error(&[("grip-link", "/a; rel=next")]),
            "Grip-Link must be '<uri>; rel=...', got '/a'"
        );
        assert_eq!(
            header_error(&[("grip-link", "<>; rel=next")]),
            "Grip-Link must be '<uri>; rel=...', got '<>'"
        );
        assert_eq!(
            header_error(&[("grip-link", "</a b>; rel=gone")]),
            "Grip-Link contains an invalid URI '/a b'"
        );
        assert_eq!(
            header_error(&[("grip-link", "</a>; rel=next; timeout=-1")]),
            "Grip-Link timeout must be a non-negative whole number of seconds, got '-1'"
        );
    }

    #[test]
    fn set_meta() {
        let parsed = parse_headers(&[
            ("grip-set-meta", r#"user="alice", id_format="%(fruit)s""#),
            ("grip-set-meta", "flag, User=bob, user=\"carol, dave\""),
        ])
        .unwrap();
        let meta: Vec<(&str, &str)> = parsed
            .meta
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            meta,
            vec![
                ("user", "carol, dave"),
                ("id_format", "%(fruit)s"),
                ("flag", ""),
                ("User", "bob"),
            ]
        );
        assert_eq!(
            header_error(&[("grip-set-meta", "a=1,,b=2")]),
            "Grip-Set-Meta element 2 is empty"
        );
        assert_eq!(
            header_error(&[("grip-set-meta", "=x")]),
            "Grip-Set-Meta element 1 has an empty name"
        );
    }

    #[test]
    fn non_utf8_single_value_headers_name_the_header() {
        for (name, shown) in [
            ("grip-hold", "Grip-Hold"),
            ("grip-timeout", "Grip-Timeout"),
            ("grip-status", "Grip-Status"),
            ("grip-expose-headers", "Grip-Expose-Headers"),
        ] {
            let mut map = header_map(&[]);
            map.append(name, http::HeaderValue::from_bytes(b"\xff").unwrap());
            let err = parse_instruct(200, &map, b"", &InstructLimits::default()).unwrap_err();
            assert_eq!(err, InstructError::NotUtf8 { header: shown });
            assert_eq!(
                err.to_string(),
                format!("{shown} header is not valid UTF-8")
            );
        }
        let mut map = header_map(&[]);
        map.append(
            "grip-keep-alive",
            http::HeaderValue::from_bytes(b"\xff").unwrap(),
        );
        let err = parse_instruct(200, &map, b"", &InstructLimits::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid Grip-Keep-Alive header: element 1 is not valid UTF-8"
        );
    }

    #[test]
    fn unknown_grip_headers_are_ignored() {
        let parsed = parse_headers(&[("grip-session-id", "abc"), ("grip-whatever", "x")]).unwrap();
        assert_eq!(parsed, parse_headers(&[]).unwrap());
    }
}
