//! [`parse_answer`]: every result shape, every error, and the limits.

use bytes::Bytes;
use serde_json::json;

use super::*;

fn filters(list: &[&str]) -> Vec<SubscribeFilter> {
    list.iter()
        .map(|f| SubscribeFilter {
            filter: (*f).into(),
            qos: 1,
        })
        .collect()
}

fn parse(body: serde_json::Value, kinds: &[EventKind<'_>]) -> Result<Answer, OriginError> {
    parse_answer(&serde_json::to_vec(&body).expect("json"), kinds)
}

fn one(body: serde_json::Value, kind: EventKind<'_>) -> Result<EventResult, OriginError> {
    let mut a = parse(json!({"results": [body]}), &[kind])?;
    assert_eq!(a.results.len(), 1);
    Ok(a.results.remove(0))
}

fn invalid(body: serde_json::Value, kind: EventKind<'_>) -> String {
    match one(body.clone(), kind) {
        Err(OriginError::Invalid {
            index: 1, problem, ..
        }) => problem,
        other => panic!("{body}: expected Invalid, got {other:?}"),
    }
}

fn malformed(body: &[u8], kinds: &[EventKind<'_>]) -> String {
    match parse_answer(body, kinds) {
        Err(OriginError::Malformed(text)) => text,
        other => panic!(
            "{}: expected Malformed, got {other:?}",
            String::from_utf8_lossy(body)
        ),
    }
}

// ---- connect ----

#[test]
fn connect_allow_minimal_and_full() {
    assert_eq!(
        one(json!({"allow": true}), EventKind::Connect).expect("ok"),
        EventResult::Connect(ConnectResult {
            allow: true,
            reason: None,
            message: None,
            client_id: None,
            keep_alive: None,
            session_expiry: None,
            will: WillRule::Default,
        })
    );
    let full = json!({"allow": true, "message": "welcome", "client-id": "dev-9",
                      "keep-alive": 120, "session-expiry": 3600, "will": {"channel": "status"}});
    assert_eq!(
        one(full, EventKind::Connect).expect("ok"),
        EventResult::Connect(ConnectResult {
            allow: true,
            reason: None,
            message: Some("welcome".into()),
            client_id: Some("dev-9".into()),
            keep_alive: Some(120),
            session_expiry: Some(3600),
            will: WillRule::Channel("status".into()),
        })
    );
}

#[test]
fn connect_will_rules() {
    let will = |v| match one(json!({"allow": true, "will": v}), EventKind::Connect) {
        Ok(EventResult::Connect(c)) => c.will,
        other => panic!("{other:?}"),
    };
    assert_eq!(will(json!(false)), WillRule::Drop);
    assert_eq!(will(json!(true)), WillRule::Default);
    assert_eq!(will(json!(null)), WillRule::Default);
    for bad in [
        json!(1),
        json!("status"),
        json!({}),
        json!({"channel": 3}),
        json!({"channel": "a", "qos": 1}),
        json!({"channel": ""}),
    ] {
        let problem = invalid(json!({"allow": true, "will": bad}), EventKind::Connect);
        assert!(problem.contains("will"), "{bad}: {problem}");
    }
}

#[test]
fn connect_deny_reasons() {
    let reason = |body| match one(body, EventKind::Connect) {
        Ok(EventResult::Connect(c)) => {
            assert!(!c.allow);
            c.reason.expect("a deny has a reason")
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(reason(json!({"allow": false})), Reason::NotAuthorized);
    for r in Reason::ALL
        .into_iter()
        .filter(|r| r.allowed_for(&EventKind::Connect))
    {
        assert_eq!(reason(json!({"allow": false, "reason": r.name()})), r);
    }
    let c = one(
        json!({"allow": false, "reason": "bad-credentials", "message": "wrong password"}),
        EventKind::Connect,
    );
    assert!(
        matches!(c, Ok(EventResult::Connect(ConnectResult { message: Some(m), .. })) if m == "wrong password")
    );
}

#[test]
fn connect_errors() {
    let k = EventKind::Connect;
    assert!(invalid(json!({}), k).contains("'allow' is required"));
    assert!(
        invalid(json!({"allow": true, "reason": "banned"}), k).contains("only for 'allow': false")
    );
    assert!(invalid(json!({"allow": false, "reason": "nope"}), k).contains("unknown reason 'nope'"));
    assert!(
        invalid(json!({"allow": false, "reason": "topic-invalid"}), k)
            .contains("not one a connect")
    );
    assert!(
        invalid(json!({"allow": false, "client-id": "x"}), k).contains("'client-id' is only for")
    );
    assert!(invalid(json!({"allow": false, "will": false}), k).contains("'will' is only for"));
    assert!(invalid(json!({"allow": true, "channel": "x"}), k)
        .contains("'channel' is not a field of a connect"));
    assert!(invalid(json!({"allow": true, "filters": []}), k).contains("'filters' is not a field"));
    assert!(invalid(json!({"allow": true, "keep-alive": 0}), k).contains("at least 1"));
    assert!(invalid(json!({"allow": true, "client-id": ""}), k).contains("empty"));
    assert!(invalid(json!({"allow": true, "client-id": "a\nb"}), k).contains("control"));
    assert!(invalid(
        json!({"allow": true, "message": "x".repeat(MAX_MESSAGE_BYTES + 1)}),
        k
    )
    .contains("over"));
    assert!(invalid(
        json!({"allow": true, "client-id": "x".repeat(MAX_NAME_BYTES + 1)}),
        k
    )
    .contains("over"));
    // JSON types and ranges are serde's
    for body in [
        &br#"{"results": [{"allow": "yes"}]}"#[..],
        br#"{"results": [{"allow": true, "keep-alive": 70000}]}"#,
        br#"{"results": [{"allow": true, "keep-alive": -1}]}"#,
        br#"{"results": [{"allow": true, "session-expiry": 1.5}]}"#,
        br#"{"results": [{"allow": true, "alow": true}]}"#,
        br#"{"results": [{"allow": true, "allow": false}]}"#,
        br#"{"results": [true]}"#,
    ] {
        malformed(body, &[k]);
    }
    let text = malformed(br#"{"results": [{"allow": true, "chanel": "x"}]}"#, &[k]);
    assert!(text.contains("unknown field `chanel`"), "{text}");
    assert!(text.contains("column"), "serde says where: {text}");
}

// ---- subscribe ----

#[test]
fn subscribe_results_one_per_filter() {
    let fs = filters(&["devices/alice/#", "public/news", "$share/g/jobs", "secret"]);
    let body = json!({"filters": [
        {"allow": true, "channels": ["devices/alice"], "qos": 1, "topic": "devices/alice/x"},
        {"allow": true},
        {"allow": true, "qos": 0},
        {"allow": false, "reason": "not-authorized"}]});
    let EventResult::Subscribe(s) = one(body, EventKind::Subscribe(&fs)).expect("ok") else {
        panic!("not a subscribe result")
    };
    assert_eq!(
        s.filters,
        vec![
            FilterResult {
                allow: true,
                channels: Some(vec!["devices/alice".into()]),
                qos: Some(1),
                topic: Some("devices/alice/x".into()),
                reason: None
            },
            FilterResult {
                allow: true,
                channels: None,
                qos: None,
                topic: None,
                reason: None
            },
            FilterResult {
                allow: true,
                channels: None,
                qos: Some(0),
                topic: None,
                reason: None
            },
            FilterResult {
                allow: false,
                channels: None,
                qos: None,
                topic: None,
                reason: Some(Reason::NotAuthorized)
            },
        ]
    );
    assert_eq!(default_channel(&fs[2].filter), Some("jobs"));
}

#[test]
fn subscribe_deny_reasons() {
    let fs = filters(&["a"]);
    for r in Reason::ALL {
        let body = json!({"filters": [{"allow": false, "reason": r.name()}]});
        let got = one(body, EventKind::Subscribe(&fs));
        if r.allowed_for(&EventKind::Subscribe(&fs)) {
            let Ok(EventResult::Subscribe(s)) = got else {
                panic!("{r}: {got:?}")
            };
            assert_eq!(s.filters[0].reason, Some(r));
        } else {
            assert!(
                matches!(got, Err(OriginError::Invalid { .. })),
                "{r}: {got:?}"
            );
        }
    }
    let Ok(EventResult::Subscribe(s)) = one(
        json!({"filters": [{"allow": false}]}),
        EventKind::Subscribe(&fs),
    ) else {
        panic!()
    };
    assert_eq!(s.filters[0].reason, Some(Reason::NotAuthorized));
}

#[test]
fn subscribe_errors() {
    let fs = filters(&["a/+", "b"]);
    let k = EventKind::Subscribe(&fs);
    let problem = |f: serde_json::Value| invalid(json!({"filters": [f, {"allow": true}]}), k);
    assert!(invalid(json!({}), k).contains("'filters' is required"));
    assert!(invalid(json!({"allow": true}), k).contains("'allow' is not a field of a subscribe"));
    assert!(
        invalid(json!({"filters": [{"allow": true, "channels": ["a"]}]}), k)
            .contains("1 entries for 2 filters")
    );
    let p = problem(json!({"allow": true}));
    assert!(
        p.contains("filter 1 ('a/+')") && p.contains("wildcard filter needs 'channels'"),
        "{p}"
    );
    assert!(problem(json!({})).contains("'allow' is required"));
    assert!(problem(json!({"allow": true, "channels": []})).contains("empty"));
    assert!(problem(json!({"allow": true, "channels": ["x", "x"]})).contains("twice"));
    assert!(problem(json!({"allow": true, "channels": [""]})).contains("empty"));
    assert!(problem(json!({"allow": true, "channels": ["a\u{7f}"]})).contains("control"));
    assert!(problem(json!({"allow": true, "channels": ["a"], "qos": 3})).contains("'qos'"));
    assert!(
        problem(json!({"allow": true, "channels": ["a"], "topic": "a/+"})).contains("wildcard")
    );
    assert!(problem(json!({"allow": true, "channels": ["a"], "topic": ""})).contains("empty"));
    assert!(
        problem(json!({"allow": true, "channels": ["a"], "reason": "not-authorized"}))
            .contains("only for 'allow': false")
    );
    assert!(problem(json!({"allow": false, "channels": ["a"]})).contains("'channels' is only for"));
    assert!(problem(json!({"allow": false, "qos": 1})).contains("'qos' is only for"));
    assert!(
        problem(json!({"allow": false, "reason": "bad-credentials"}))
            .contains("not one a subscribe")
    );
    // list caps and types are refused while reading
    let many: Vec<String> = (0..=MAX_CHANNELS_PER_FILTER)
        .map(|i| format!("c{i}"))
        .collect();
    let body =
        json!({"results": [{"filters": [{"allow": true, "channels": many}, {"allow": true}]}]});
    let text = malformed(&serde_json::to_vec(&body).expect("json"), &[k]);
    assert!(text.contains("more than 16 entries"), "{text}");
    malformed(
        br#"{"results": [{"filters": [{"allow": true, "channels": "a"}, {"allow": true}]}]}"#,
        &[k],
    );
    malformed(br#"{"results": [{"filters": [{"allow": true, "channels": ["a"], "qos": -1}, {"allow": true}]}]}"#, &[k]);
    malformed(
        br#"{"results": [{"filters": [{"allow": true, "channel": "a"}, {"allow": true}]}]}"#,
        &[k],
    );
    malformed(br#"{"results": [{"filters": {"allow": true}}]}"#, &[k]);
}

// ---- publish ----

#[test]
fn publish_allow_shapes() {
    let k = EventKind::Publish;
    let EventResult::Publish(p) = one(json!({"allow": true}), k).expect("ok") else {
        panic!()
    };
    assert_eq!(
        p,
        PublishResult {
            allow: true,
            channel: None,
            id: None,
            publish: true,
            reply: vec![],
            formats: None,
            reason: None
        }
    );
    assert!(p.cacheable());
    let body = json!({"allow": true, "channel": "devices/alice", "id": "m-1",
                      "formats": {"http-stream": {"content": "data: hi\n\n"}},
                      "reply": [{"topic": "ack/1", "content": "ok", "qos": 1},
                                {"topic": "ack/2", "content-bin": "/wAB"},
                                {"topic": "ack/3", "content-bin": "/wA"},
                                {"topic": "ack/4"}]});
    let EventResult::Publish(p) = one(body, k).expect("ok") else {
        panic!()
    };
    assert_eq!(p.channel.as_deref(), Some("devices/alice"));
    assert_eq!(p.id.as_deref(), Some("m-1"));
    assert!(p.publish);
    assert_eq!(
        p.formats,
        Some(json!({"http-stream": {"content": "data: hi\n\n"}}))
    );
    assert_eq!(
        p.reply,
        vec![
            Reply {
                topic: "ack/1".into(),
                content: Bytes::from_static(b"ok"),
                qos: 1
            },
            Reply {
                topic: "ack/2".into(),
                content: Bytes::from_static(&[0xff, 0, 1]),
                qos: 0
            },
            Reply {
                topic: "ack/3".into(),
                content: Bytes::from_static(&[0xff, 0]),
                qos: 0
            },
            Reply {
                topic: "ack/4".into(),
                content: Bytes::new(),
                qos: 0
            },
        ]
    );
    assert!(!p.cacheable(), "a result with a reply is never reused");
    // the origin consumes it and answers the device
    let body = json!({"allow": true, "publish": false,
                      "reply": [{"topic": "rpc/pong", "content": "pong"}]});
    let EventResult::Publish(p) = one(body, k).expect("ok") else {
        panic!()
    };
    assert!(!p.publish);
    assert_eq!(p.reply[0].content, Bytes::from_static(b"pong"));
}

#[test]
fn publish_deny_reasons() {
    for r in Reason::ALL {
        let got = one(
            json!({"allow": false, "reason": r.name()}),
            EventKind::Publish,
        );
        if r.allowed_for(&EventKind::Publish) {
            let Ok(EventResult::Publish(p)) = got else {
                panic!("{r}: {got:?}")
            };
            assert_eq!((p.allow, p.reason), (false, Some(r)));
            assert!(p.cacheable(), "a deny may be reused");
        } else {
            assert!(
                matches!(got, Err(OriginError::Invalid { .. })),
                "{r}: {got:?}"
            );
        }
    }
}

#[test]
fn publish_errors() {
    let k = EventKind::Publish;
    assert!(invalid(json!({"channel": "a"}), k).contains("'allow' is required"));
    assert!(invalid(json!({"allow": false, "channel": "a"}), k).contains("'channel' is only for"));
    assert!(invalid(json!({"allow": false, "reply": []}), k).contains("'reply' is only for"));
    assert!(invalid(json!({"allow": false, "publish": false}), k).contains("'publish' is only for"));
    assert!(
        invalid(json!({"allow": true, "publish": false, "channel": "a"}), k).contains("unused")
    );
    assert!(invalid(json!({"allow": true, "publish": false, "id": "1"}), k).contains("unused"));
    assert!(invalid(json!({"allow": true, "publish": false, "formats": {}}), k).contains("unused"));
    assert!(
        invalid(json!({"allow": true, "formats": []}), k).contains("'formats' must be an object")
    );
    assert!(invalid(json!({"allow": true, "channel": ""}), k).contains("empty"));
    assert!(invalid(json!({"allow": true, "id": "a\rb"}), k).contains("control"));
    assert!(invalid(json!({"allow": true, "message": "x"}), k)
        .contains("'message' is not a field of a publish"));
    assert!(invalid(json!({"allow": true, "keep-alive": 5}), k).contains("not a field"));
    assert!(
        invalid(json!({"allow": false, "reason": "server-busy"}), k).contains("not one a publish")
    );
    let reply = |r: serde_json::Value| invalid(json!({"allow": true, "reply": [r]}), k);
    assert!(reply(json!({"content": "x"})).contains("reply 1: 'topic' is required"));
    assert!(reply(json!({"topic": "a/#"})).contains("wildcard"));
    assert!(reply(json!({"topic": "a", "content": "x", "content-bin": "eA=="})).contains("both"));
    assert!(reply(json!({"topic": "a", "content-bin": "!!"})).contains("not base64"));
    assert!(reply(json!({"topic": "a", "qos": 3})).contains("'qos'"));
    let many: Vec<_> = (0..=MAX_REPLIES).map(|_| json!({"topic": "a"})).collect();
    let body =
        serde_json::to_vec(&json!({"results": [{"allow": true, "reply": many}]})).expect("json");
    assert!(malformed(&body, &[k]).contains("more than 16 entries"));
    malformed(
        br#"{"results": [{"allow": true, "reply": [{"topic": "a", "payload": "x"}]}]}"#,
        &[k],
    );
    malformed(br#"{"results": [{"allow": true, "publish": "no"}]}"#, &[k]);
}

// ---- the answer as a whole ----

#[test]
fn results_follow_the_events_in_order() {
    let fs = filters(&["public/a"]);
    let kinds = [
        EventKind::Subscribe(&fs),
        EventKind::Publish,
        EventKind::Unsubscribe,
        EventKind::Publish,
        EventKind::Disconnect,
    ];
    let a = parse(
        json!({"results": [{"filters": [{"allow": true}]}, {"allow": true},
                           {"whatever": [1, 2]}, {"allow": false}, null]}),
        &kinds,
    )
    .expect("ok");
    assert!(matches!(a.results[0], EventResult::Subscribe(_)));
    assert!(matches!(&a.results[1], EventResult::Publish(p) if p.allow));
    assert_eq!(a.results[2], EventResult::Notified);
    assert!(matches!(&a.results[3], EventResult::Publish(p) if !p.allow));
    assert_eq!(a.results[4], EventResult::Notified);
}

#[test]
fn wrong_counts() {
    let kinds = [EventKind::Publish, EventKind::Publish];
    let count = |body: &[u8]| match parse_answer(body, &kinds) {
        Err(OriginError::WrongCount { expected, got }) => (expected, got),
        other => panic!("{other:?}"),
    };
    assert_eq!(count(br#"{"results": [{"allow": true}]}"#), (2, 1));
    assert_eq!(
        count(br#"{"results": [{"allow": true}, {"allow": true}, {}, {"x": 1}]}"#),
        (2, 4)
    );
    assert_eq!(count(br#"{"results": []}"#), (2, 0));
    assert_eq!(count(br#"{}"#), (2, 0));
    // the error index counts from 1 and names the event
    let e = parse_answer(br#"{"results": [{"allow": true}, {}]}"#, &kinds).expect_err("bad");
    assert_eq!(e.to_string(), "result 2 (publish): 'allow' is required");
    assert_eq!(e.label(), "invalid");
}

#[test]
fn notifications_only_may_have_no_results() {
    let kinds = [EventKind::Unsubscribe, EventKind::Disconnect];
    for body in [
        &b""[..],
        b"  \r\n",
        b"{}",
        br#"{"results": [{}, {}]}"#,
        br#"{"meta": {}}"#,
    ] {
        let a = parse_answer(body, &kinds).expect("ok");
        assert_eq!(a.results, vec![EventResult::Notified; 2]);
    }
    assert!(matches!(
        parse_answer(br#"{"results": [{}]}"#, &kinds),
        Err(OriginError::WrongCount {
            expected: 2,
            got: 1
        })
    ));
    assert_eq!(parse_answer(b"{}", &[]).expect("no events").results, vec![]);
    assert!(matches!(
        parse_answer(b"", &[EventKind::Publish]),
        Err(OriginError::Malformed(_))
    ));
}

#[test]
fn meta_values() {
    let a = parse(
        json!({"results": [{"allow": true}], "meta": {"User": "alice", "tier": "gold plus", "x": ""}}),
        &[EventKind::Connect],
    )
    .expect("ok");
    let meta: Vec<(&str, &str)> = a
        .meta
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    assert_eq!(meta, [("user", "alice"), ("tier", "gold plus"), ("x", "")]);
    let meta_err = |meta: serde_json::Value| match parse(
        json!({"results": [{"allow": true}], "meta": meta}),
        &[EventKind::Connect],
    ) {
        Err(e @ OriginError::Meta(_)) => {
            assert_eq!(e.label(), "meta");
            e.to_string()
        }
        other => panic!("{other:?}"),
    };
    assert!(meta_err(json!({"": "x"})).contains("not an HTTP token"));
    assert!(meta_err(json!({"a b": "x"})).contains("not an HTTP token"));
    assert!(meta_err(json!({"a:b": "x"})).contains("not an HTTP token"));
    assert!(meta_err(json!({"x".repeat(MAX_META_NAME_BYTES + 1): "x"})).contains("token"));
    assert!(meta_err(json!({"a": "line\nbreak"})).contains("visible ASCII"));
    assert!(meta_err(json!({"a": "ünï"})).contains("visible ASCII"));
    assert!(meta_err(json!({"a": "x".repeat(MAX_META_VALUE_BYTES + 1)})).contains("over"));
    assert!(meta_err(json!({"A": "1", "a": "2"})).contains("twice"));
    let many: serde_json::Map<String, serde_json::Value> = (0..=MAX_META_ENTRIES)
        .map(|i| (format!("k{i}"), json!("v")))
        .collect();
    assert!(meta_err(serde_json::Value::Object(many)).contains("33 entries, over 32"));
    malformed(
        br#"{"results": [{"allow": true}], "meta": {"a": 1}}"#,
        &[EventKind::Connect],
    );
    malformed(
        br#"{"results": [{"allow": true}], "meta": ["a"]}"#,
        &[EventKind::Connect],
    );
}

#[test]
fn malformed_bodies() {
    let k = [EventKind::Publish];
    for body in [
        &b"not json"[..],
        b"[]",
        b"\"results\"",
        br#"{"results": {"allow": true}}"#,
        br#"{"results": [{"allow": true}]} trailing"#,
        br#"{"results": [{"allow": true}], "extra": 1}"#,
        br#"{"results": [{"allow": true}], "results": [{"allow": true}]}"#,
        br#"{"results": [{"allow": true}], "meta": {}, "meta": {}}"#,
        br#"{"results": [{"allow": true}"#,
        b"\xff\xfe",
    ] {
        let e = parse_answer(body, &k).expect_err("malformed");
        assert_eq!(
            e.label(),
            "malformed",
            "{}: {e}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn body_limit_is_checked_first() {
    let limits = AnswerLimits {
        max_body_bytes: 10,
        ..AnswerLimits::DEFAULT
    };
    let body = br#"{"results": [{"allow": true}]}"#;
    assert_eq!(
        parse_answer_with(body, &[EventKind::Publish], &limits),
        Err(OriginError::TooLarge {
            size: body.len(),
            limit: 10
        })
    );
    let big = vec![b' '; MAX_BODY_BYTES + 1];
    assert!(matches!(
        parse_answer(&big, &[EventKind::Disconnect]),
        Err(OriginError::TooLarge { .. })
    ));
}

#[test]
fn name_limit_applies() {
    let limits = AnswerLimits {
        max_name_bytes: 4,
        ..AnswerLimits::DEFAULT
    };
    let ok = br#"{"results": [{"allow": true, "channel": "abcd"}]}"#;
    assert!(parse_answer_with(ok, &[EventKind::Publish], &limits).is_ok());
    let long = br#"{"results": [{"allow": true, "channel": "abcde"}]}"#;
    assert!(matches!(
        parse_answer_with(long, &[EventKind::Publish], &limits),
        Err(OriginError::Invalid { .. })
    ));
}

#[test]
fn application_json_example_of_the_design() {
    // docs/mqtt-design.md §3.2 and the README's example answer
    let fs = filters(&["sensors/+/temp", "secret/#"]);
    let body = br#"{"results": [
        {"filters": [{"allow": true, "channels": ["sensors"], "qos": 1},
                     {"allow": false, "reason": "not-authorized"}]},
        {"allow": true, "channel": "sensors"}],
        "meta": {"user-id": "42"}}"#;
    let a = parse_answer(body, &[EventKind::Subscribe(&fs), EventKind::Publish]).expect("ok");
    assert_eq!(a.meta, [("user-id".to_string(), "42".to_string())]);
}

#[test]
fn the_example_origins_answers_parse() {
    // what examples/mqtt_origin.py writes (tests/interop/test_mqtt_origin_example.py checks it)
    let fs = filters(&["devices/alice/#", "public/news", "secret"]);
    let kinds = [
        EventKind::Subscribe(&fs),
        EventKind::Publish,
        EventKind::Publish,
        EventKind::Publish,
        EventKind::Publish,
        EventKind::Disconnect,
    ];
    let body = br#"{"results": [
        {"filters": [{"allow": true, "channels": ["devices/alice"]}, {"allow": true},
                     {"allow": false, "reason": "not-authorized"}]},
        {"allow": true, "channel": "devices/alice"},
        {"allow": true},
        {"allow": false, "reason": "not-authorized"},
        {"allow": true, "publish": false, "reply": [{"topic": "rpc/pong", "content": "pong"}]},
        {}]}"#;
    let a = parse_answer(body, &kinds).expect("the example's answers are valid");
    assert_eq!(a.results.len(), 6);
    for body in [
        &br#"{"results": [{"allow": true}]}"#[..],
        br#"{"results": [{"allow": false, "reason": "bad-credentials"}]}"#,
    ] {
        assert!(parse_answer(body, &[EventKind::Connect]).is_ok());
    }
    assert_eq!(max_age("max-age=60", 3600), Some(60));
}

#[test]
fn error_texts_are_short_and_printable() {
    let long = format!("{}\n\u{1b}[31m", "x".repeat(100_000));
    let body =
        serde_json::to_vec(&json!({"results": [{"allow": true, long.clone(): 1}]})).expect("json");
    let text = malformed(&body, &[EventKind::Publish]);
    assert!(
        text.chars().count() <= 301,
        "{} chars",
        text.chars().count()
    );
    assert!(!text.chars().any(char::is_control), "{text:?}");
    let body =
        serde_json::to_vec(&json!({"results": [{"allow": false, "reason": long}]})).expect("json");
    let e = parse_answer(&body, &[EventKind::Publish]).expect_err("unknown reason");
    let text = e.to_string();
    assert!(
        text.len() < 200 && !text.chars().any(char::is_control),
        "{text:?}"
    );
}
