//! Property tests: typed answers and requests survive a JSON round trip, and no body,
//! random, mutated or shaped like an answer, makes [`parse_answer`] or [`max_age`] panic.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

use super::*;

// ---- answers: typed -> JSON -> parse ----

fn reason_for(kind: &EventKind<'_>) -> impl Strategy<Value = Reason> {
    let allowed: Vec<Reason> = Reason::ALL
        .into_iter()
        .filter(|r| r.allowed_for(kind))
        .collect();
    proptest::sample::select(allowed)
}

fn name() -> impl Strategy<Value = String> {
    "[a-z0-9/_.-]{1,12}"
}

fn topic() -> impl Strategy<Value = String> {
    "[a-z0-9_-]{1,6}(/[a-z0-9_-]{1,6}){0,3}"
}

fn connect_result() -> impl Strategy<Value = ConnectResult> {
    let will = prop_oneof![
        Just(WillRule::Default),
        Just(WillRule::Drop),
        name().prop_map(WillRule::Channel)
    ];
    prop_oneof![
        (
            proptest::option::of("[ -~]{0,20}"),
            proptest::option::of(name()),
            proptest::option::of(1u16..),
            proptest::option::of(any::<u32>()),
            will
        )
            .prop_map(|(message, client_id, keep_alive, session_expiry, will)| {
                ConnectResult {
                    allow: true,
                    reason: None,
                    message,
                    client_id,
                    keep_alive,
                    session_expiry,
                    will,
                }
            }),
        (
            reason_for(&EventKind::Connect),
            proptest::option::of("[ -~]{0,20}")
        )
            .prop_map(|(reason, message)| ConnectResult {
                allow: false,
                reason: Some(reason),
                message,
                client_id: None,
                keep_alive: None,
                session_expiry: None,
                will: WillRule::Default,
            }),
    ]
}

fn filter_result() -> impl Strategy<Value = FilterResult> {
    prop_oneof![
        (
            proptest::collection::btree_set(name(), 1..4),
            proptest::option::of(0u8..=2),
            proptest::option::of(topic())
        )
            .prop_map(|(channels, qos, topic)| FilterResult {
                allow: true,
                channels: Some(channels.into_iter().collect()),
                qos,
                topic,
                reason: None,
            }),
        reason_for(&EventKind::Subscribe(&[])).prop_map(|r| FilterResult {
            allow: false,
            channels: None,
            qos: None,
            topic: None,
            reason: Some(r),
        }),
    ]
}

fn publish_result() -> impl Strategy<Value = PublishResult> {
    let reply = (
        topic(),
        proptest::collection::vec(any::<u8>(), 0..12),
        0u8..=2,
    )
        .prop_map(|(topic, content, qos)| Reply {
            topic,
            content: Bytes::from(content),
            qos,
        });
    prop_oneof![
        (
            any::<bool>(),
            proptest::option::of(name()),
            proptest::option::of(name()),
            proptest::collection::vec(reply, 0..3),
            any::<bool>()
        )
            .prop_map(
                |(publish, channel, id, reply, with_formats)| PublishResult {
                    allow: true,
                    channel: channel.filter(|_| publish),
                    id: id.filter(|_| publish),
                    publish,
                    reply,
                    formats: (publish && with_formats)
                        .then(|| json!({"ws-message": {"content": "hi"}})),
                    reason: None,
                }
            ),
        reason_for(&EventKind::Publish).prop_map(|r| PublishResult {
            allow: false,
            channel: None,
            id: None,
            publish: true,
            reply: vec![],
            formats: None,
            reason: Some(r),
        }),
    ]
}

/// The JSON an origin would write for a typed result (the README's shapes).
fn result_json(result: &EventResult) -> Value {
    let mut m = Map::new();
    let decision = |m: &mut Map<String, Value>, allow: bool, reason: Option<Reason>| {
        m.insert("allow".into(), allow.into());
        if let Some(r) = reason {
            m.insert("reason".into(), r.name().into());
        }
    };
    match result {
        EventResult::Connect(c) => {
            decision(&mut m, c.allow, c.reason);
            let mut put = |k: &str, v: Option<Value>| {
                if let Some(v) = v {
                    m.insert(k.into(), v);
                }
            };
            put("message", c.message.clone().map(Value::from));
            put("client-id", c.client_id.clone().map(Value::from));
            put("keep-alive", c.keep_alive.map(Value::from));
            put("session-expiry", c.session_expiry.map(Value::from));
            put(
                "will",
                match &c.will {
                    WillRule::Default => None,
                    WillRule::Drop => Some(false.into()),
                    WillRule::Channel(ch) => Some(json!({"channel": ch})),
                },
            );
        }
        EventResult::Subscribe(s) => {
            let filters: Vec<Value> = s
                .filters
                .iter()
                .map(|f| {
                    let mut fm = Map::new();
                    decision(&mut fm, f.allow, f.reason);
                    if let Some(c) = &f.channels {
                        fm.insert("channels".into(), json!(c));
                    }
                    if let Some(q) = f.qos {
                        fm.insert("qos".into(), q.into());
                    }
                    if let Some(t) = &f.topic {
                        fm.insert("topic".into(), t.as_str().into());
                    }
                    Value::Object(fm)
                })
                .collect();
            m.insert("filters".into(), filters.into());
        }
        EventResult::Publish(p) => {
            decision(&mut m, p.allow, p.reason);
            if let Some(c) = &p.channel {
                m.insert("channel".into(), c.as_str().into());
            }
            if let Some(id) = &p.id {
                m.insert("id".into(), id.as_str().into());
            }
            if !p.publish {
                m.insert("publish".into(), false.into());
            }
            if !p.reply.is_empty() {
                let replies: Vec<Value> = p
                    .reply
                    .iter()
                    .map(|r| match std::str::from_utf8(&r.content) {
                        Ok(text) => json!({"topic": r.topic, "content": text, "qos": r.qos}),
                        Err(_) => json!({"topic": r.topic,
                                         "content-bin": STANDARD.encode(&r.content),
                                         "qos": r.qos}),
                    })
                    .collect();
                m.insert("reply".into(), replies.into());
            }
            if let Some(f) = &p.formats {
                m.insert("formats".into(), f.clone());
            }
        }
        EventResult::Notified => {}
    }
    Value::Object(m)
}

proptest::proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn answers_round_trip(
        connect in connect_result(),
        subscribe in proptest::collection::vec(filter_result(), 1..4),
        publish in publish_result(),
        meta in proptest::collection::btree_map("[a-z][a-z0-9-]{0,8}", "[ -~]{0,12}", 0..4),
    ) {
        let filters: Vec<SubscribeFilter> = (0..subscribe.len())
            .map(|i| SubscribeFilter { filter: format!("t/{i}/#"), qos: 1 })
            .collect();
        let kinds = [EventKind::Connect, EventKind::Subscribe(&filters), EventKind::Publish,
                     EventKind::Disconnect];
        let want = Answer {
            results: vec![
                EventResult::Connect(connect),
                EventResult::Subscribe(SubscribeResult { filters: subscribe }),
                EventResult::Publish(publish),
                EventResult::Notified,
            ],
            meta: meta.into_iter().collect(),
        };
        let results: Vec<Value> = want.results.iter().map(result_json).collect();
        let meta: Map<String, Value> =
            want.meta.iter().map(|(k, v)| (k.clone(), v.as_str().into())).collect();
        let body = serde_json::to_vec(&json!({"results": results, "meta": meta})).expect("json");
        prop_assert_eq!(parse_answer(&body, &kinds), Ok(want));
    }

    #[test]
    fn random_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..256)) {
        let fs = [SubscribeFilter { filter: "a/#".into(), qos: 0 }];
        let _ = parse_answer(&body, &[EventKind::Connect]);
        let _ = parse_answer(&body, &[EventKind::Subscribe(&fs), EventKind::Publish]);
        let _ = parse_answer(&body, &[EventKind::Disconnect]);
        let _ = max_age(&String::from_utf8_lossy(&body), 3600);
    }

    #[test]
    fn mutated_answers_never_panic(
        pick in 0..SEEDS.len(),
        edits in proptest::collection::vec((any::<u16>(), any::<u8>(), 0u8..3), 1..8),
    ) {
        let mut body = SEEDS[pick].as_bytes().to_vec();
        for (at, byte, op) in edits {
            let at = usize::from(at) % (body.len() + 1);
            match op {
                0 if at < body.len() => body[at] = byte,
                1 => body.insert(at, byte),
                _ if at < body.len() => { body.remove(at); }
                _ => body.truncate(at),
            }
        }
        let fs = [SubscribeFilter { filter: "devices/alice/#".into(), qos: 1 },
                  SubscribeFilter { filter: "public/x".into(), qos: 0 }];
        for kinds in [&[EventKind::Connect][..],
                      &[EventKind::Subscribe(&fs), EventKind::Publish, EventKind::Unsubscribe]] {
            let _ = parse_answer(&body, kinds);
        }
    }

    #[test]
    fn answer_shaped_values_never_panic(result in answer_value(), meta in answer_value()) {
        let fs = [SubscribeFilter { filter: "a/+".into(), qos: 1 }];
        let body = serde_json::to_vec(&json!({"results": [result], "meta": meta})).expect("json");
        for kind in [EventKind::Connect, EventKind::Subscribe(&fs), EventKind::Publish] {
            let _ = parse_answer(&body, &[kind]);
        }
    }

    #[test]
    fn requests_encode_as_json(req in request()) {
        let v: Value = serde_json::from_slice(&to_json(&req)).expect("valid JSON");
        prop_assert_eq!(&v["client-id"], &Value::from(req.client_id.as_str()));
        prop_assert_eq!(v["events"].as_array().map(Vec::len), Some(req.events.len()));
        for (event, json) in req.events.iter().zip(v["events"].as_array().into_iter().flatten()) {
            prop_assert_eq!(json["type"].as_str(), Some(event.kind().as_str()));
            if let Event::Publish(p) = event {
                let content = match (json.get("content"), json.get("content-bin")) {
                    (Some(Value::String(t)), None) => t.as_bytes().to_vec(),
                    (None, Some(Value::String(b))) => STANDARD.decode(b).expect("base64"),
                    other => panic!("content: {other:?}"),
                };
                prop_assert_eq!(&content[..], &p.content[..]);
                prop_assert_eq!(json["topic"].as_str(), Some(p.topic.as_str()));
            }
        }
    }
}

/// Valid answers to mutate.
const SEEDS: [&str; 3] = [
    r#"{"results": [{"allow": true, "client-id": "d", "keep-alive": 60, "will": {"channel": "s"}}], "meta": {"user": "alice"}}"#,
    r#"{"results": [{"filters": [{"allow": true, "channels": ["devices/alice"], "qos": 1}, {"allow": false, "reason": "not-authorized"}]}, {"allow": true, "publish": false, "reply": [{"topic": "rpc/pong", "content-bin": "cG9uZw=="}]}, {}]}"#,
    r#"{"results": [{"allow": false, "reason": "bad-credentials", "message": "no"}]}"#,
];

/// JSON values built from the answer's vocabulary, nested a little.
fn answer_value() -> impl Strategy<Value = Value> {
    let key = proptest::sample::select(vec![
        "allow",
        "reason",
        "message",
        "client-id",
        "keep-alive",
        "session-expiry",
        "will",
        "filters",
        "channels",
        "channel",
        "id",
        "publish",
        "reply",
        "formats",
        "topic",
        "content",
        "content-bin",
        "qos",
        "user",
    ]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (0u64..70_000).prop_map(Value::from),
        proptest::sample::select(vec![
            "",
            "not-authorized",
            "bad-credentials",
            "a/#",
            "a/+",
            "x",
            "/wA=",
            "\u{0}",
            "ünï",
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.into(), v)).collect())),
        ]
    })
}

fn request() -> impl Strategy<Value = Request> {
    let publish = (
        topic(),
        proptest::collection::vec(any::<u8>(), 0..16),
        0u8..=2,
        any::<bool>(),
    )
        .prop_map(|(topic, content, qos, retain)| {
            Event::Publish(Publish {
                topic,
                qos,
                retain,
                content: Bytes::from(content),
                properties: MessageProperties::default(),
            })
        });
    let subscribe =
        proptest::collection::vec((topic(), 0u8..=2), 1..3).prop_map(|fs| Event::Subscribe {
            filters: fs
                .into_iter()
                .map(|(filter, qos)| SubscribeFilter { filter, qos })
                .collect(),
        });
    (
        "[ -~]{0,10}",
        proptest::option::of("[a-z]{1,8}"),
        proptest::collection::vec(prop_oneof![publish, subscribe], 0..4),
    )
        .prop_map(|(client_id, username, events)| Request {
            protocol: 5,
            client_id,
            username,
            events,
        })
}
