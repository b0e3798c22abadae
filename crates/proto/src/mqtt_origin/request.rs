//! The request half of MQTT-over-HTTP: the events of one device connection that the server
//! asks its origin about, and their JSON encoding ([`to_json`]).
//!
//! ```text
//! {"protocol": 5, "client-id": "dev-17", "username": "alice", "events": [EVENT, ...]}
//! ```
//!
//! Binary values follow GRIP's convention: a UTF-8 value goes in `content` (`password`,
//! `correlation-data`), anything else base64 in `content-bin` (`password-bin`,
//! `correlation-data-bin`). Absent values and empty property sets are left out, and the
//! `properties` objects appear only for MQTT 5 clients that sent some. The encoding never
//! fails and never validates: the events come from packets the MQTT codec already checked.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use super::EventKind;

/// One request: who the device is and what it did since the last answer, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The CONNECT's protocol level: 3 (MQTT 3.1), 4 (3.1.1) or 5 (5.0). JSON `protocol`.
    pub protocol: u8,
    /// The client identifier: the CONNECT's, or the one the origin or server assigned
    /// (after a connect with an empty one). JSON `client-id`.
    pub client_id: String,
    /// The CONNECT's user name, if any. JSON `username`, left out when absent.
    pub username: Option<String>,
    /// The events, oldest first; a connect is always alone. JSON `events`.
    pub events: Vec<Event>,
}

impl Request {
    /// The kinds of this request's events, as [`super::parse_answer`] takes them.
    pub fn kinds(&self) -> Vec<EventKind<'_>> {
        self.events.iter().map(Event::kind).collect()
    }
}

/// One thing the device did, with its JSON `type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `"connect"`: may this device connect? Always alone in its request, and the first.
    Connect(Connect),
    /// `"subscribe"`: one SUBSCRIBE packet; each filter is allowed, denied or mapped.
    Subscribe {
        /// JSON `filters`, in the packet's order (a `$share/group/filter` as written).
        filters: Vec<SubscribeFilter>,
    },
    /// `"publish"`: a PUBLISH that no cached answer covers.
    Publish(Publish),
    /// `"unsubscribe"`: a notification; the result is ignored.
    Unsubscribe {
        /// JSON `filters`: the filters as written in the packet.
        filters: Vec<String>,
    },
    /// `"disconnect"`: the connection ended; a notification, the result is ignored.
    Disconnect {
        /// JSON `reason`.
        reason: DisconnectReason,
        /// JSON `will-sent`: whether the device's will message was published.
        will_sent: bool,
    },
}

impl Event {
    /// What [`super::parse_answer`] needs to know about this event.
    pub fn kind(&self) -> EventKind<'_> {
        match self {
            Event::Connect(_) => EventKind::Connect,
            Event::Subscribe { filters } => EventKind::Subscribe(filters),
            Event::Publish(_) => EventKind::Publish,
            Event::Unsubscribe { .. } => EventKind::Unsubscribe,
            Event::Disconnect { .. } => EventKind::Disconnect,
        }
    }
}

/// A CONNECT, less what the request itself carries (protocol, client id, user name).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Connect {
    /// The password: JSON `password` if UTF-8, else `password-bin`; left out when absent.
    pub password: Option<Bytes>,
    /// JSON `clean`: clean session (3.1.1) or clean start (5.0).
    pub clean: bool,
    /// JSON `keep-alive`: the device's keep-alive, in seconds (0 = none).
    pub keep_alive: u16,
    /// JSON `will`: the last will, if the device set one.
    pub will: Option<Will>,
    /// JSON `properties` (MQTT 5), left out when empty.
    pub properties: ConnectProperties,
}

/// The MQTT 5 CONNECT properties an origin may decide on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectProperties {
    /// JSON `session-expiry`: seconds the device asks its session to outlive the connection.
    pub session_expiry: Option<u32>,
    /// JSON `user`: user properties, `[["name", "value"], ...]` in the packet's order.
    pub user: Vec<(String, String)>,
}

impl ConnectProperties {
    fn is_empty(&self) -> bool {
        self.session_expiry.is_none() && self.user.is_empty()
    }
}

/// A CONNECT's last will.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Will {
    /// JSON `topic`.
    pub topic: String,
    /// JSON `qos`: 0, 1 or 2.
    pub qos: u8,
    /// JSON `retain`.
    pub retain: bool,
    /// The payload: JSON `content` if UTF-8, else `content-bin`.
    pub content: Bytes,
    /// JSON `properties` (MQTT 5), left out when empty; `will-delay` is among them.
    pub properties: MessageProperties,
}

/// One SUBSCRIBE entry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubscribeFilter {
    /// JSON `filter`, as written (wildcards and `$share/` included).
    pub filter: String,
    /// JSON `qos`: the maximum QoS the device asked for.
    pub qos: u8,
}

/// A device's PUBLISH.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Publish {
    /// JSON `topic`.
    pub topic: String,
    /// JSON `qos`: 0, 1 or 2.
    pub qos: u8,
    /// JSON `retain`.
    pub retain: bool,
    /// The payload: JSON `content` if UTF-8, else `content-bin`.
    pub content: Bytes,
    /// JSON `properties` (MQTT 5), left out when empty.
    pub properties: MessageProperties,
}

/// The MQTT 5 properties of a PUBLISH or a will, named as in the `mqtt-message` format.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MessageProperties {
    /// JSON `payload-format`: 0 (bytes) or 1 (UTF-8).
    pub payload_format: Option<u8>,
    /// JSON `message-expiry`, in seconds.
    pub message_expiry: Option<u32>,
    /// JSON `content-type`.
    pub content_type: Option<String>,
    /// JSON `response-topic`.
    pub response_topic: Option<String>,
    /// JSON `correlation-data` if UTF-8, else `correlation-data-bin`.
    pub correlation_data: Option<Bytes>,
    /// JSON `user`: user properties, `[["name", "value"], ...]` in the packet's order.
    pub user: Vec<(String, String)>,
    /// JSON `will-delay`, in seconds: wills only.
    pub will_delay: Option<u32>,
}

impl MessageProperties {
    fn is_empty(&self) -> bool {
        self.payload_format.is_none()
            && self.message_expiry.is_none()
            && self.content_type.is_none()
            && self.response_topic.is_none()
            && self.correlation_data.is_none()
            && self.user.is_empty()
            && self.will_delay.is_none()
    }
}

/// Why a connection ended, as the `disconnect` event's `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DisconnectReason {
    /// `"normal"`: the device sent DISCONNECT (v5: reason 0x00 or 0x04).
    Normal,
    /// `"keep-alive-timeout"`: nothing from the device for 1.5 × its keep-alive.
    KeepAliveTimeout,
    /// `"protocol-error"`: the device broke the protocol or a limit.
    ProtocolError,
    /// `"gone"`: the socket closed or failed without a DISCONNECT.
    Gone,
    /// `"taken-over"`: another connection with the same client id took the session.
    TakenOver,
    /// `"slow"`: the device did not read fast enough and its queue filled.
    Slow,
    /// `"shutdown"`: the server is draining (v5 DISCONNECT 0x8B).
    Shutdown,
}

impl DisconnectReason {
    /// Every reason, for tests and documentation.
    pub const ALL: [DisconnectReason; 7] = [
        DisconnectReason::Normal,
        DisconnectReason::KeepAliveTimeout,
        DisconnectReason::ProtocolError,
        DisconnectReason::Gone,
        DisconnectReason::TakenOver,
        DisconnectReason::Slow,
        DisconnectReason::Shutdown,
    ];

    /// The reason as written in the request.
    pub const fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::Normal => "normal",
            DisconnectReason::KeepAliveTimeout => "keep-alive-timeout",
            DisconnectReason::ProtocolError => "protocol-error",
            DisconnectReason::Gone => "gone",
            DisconnectReason::TakenOver => "taken-over",
            DisconnectReason::Slow => "slow",
            DisconnectReason::Shutdown => "shutdown",
        }
    }
}

/// Whether a topic filter has a wildcard level (`+` or `#`).
pub fn is_wildcard(filter: &str) -> bool {
    filter.split('/').any(|level| level == "+" || level == "#")
}

/// The channel a filter maps to when the origin allows it without `channels`: the filter
/// itself, or for a shared subscription `$share/<group>/<f>` the inner filter `f`. `None` for a
/// wildcard filter (it needs explicit channels) and for a `$share/` with no group or filter.
pub fn default_channel(filter: &str) -> Option<&str> {
    let inner = match filter.strip_prefix("$share/") {
        Some(rest) => {
            let (group, inner) = rest.split_once('/')?;
            if group.is_empty() {
                return None;
            }
            inner
        }
        None => filter,
    };
    (!inner.is_empty() && !is_wildcard(inner)).then_some(inner)
}

/// Encodes a request as its JSON body (`application/mqtt-events+json`).
pub fn to_json(request: &Request) -> Vec<u8> {
    let mut out = Vec::with_capacity(96 + request.events.len() * 96);
    match serde_json::to_writer(&mut out, &RequestJson(request)) {
        Ok(()) => out,
        // Unreachable: writing to a Vec cannot fail and every map key here is a string.
        Err(_) => Vec::new(),
    }
}

struct RequestJson<'a>(&'a Request);

impl Serialize for RequestJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("protocol", &r.protocol)?;
        map.serialize_entry("client-id", &r.client_id)?;
        if let Some(username) = &r.username {
            map.serialize_entry("username", username)?;
        }
        map.serialize_entry("events", &Events(&r.events))?;
        map.end()
    }
}

struct Events<'a>(&'a [Event]);

impl Serialize for Events<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(EventJson))
    }
}

struct EventJson<'a>(&'a Event);

impl Serialize for EventJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("type", self.0.kind().as_str())?;
        match self.0 {
            Event::Connect(c) => {
                if let Some(password) = &c.password {
                    bytes_entry(&mut map, password, "password", "password-bin")?;
                }
                map.serialize_entry("clean", &c.clean)?;
                map.serialize_entry("keep-alive", &c.keep_alive)?;
                if let Some(will) = &c.will {
                    map.serialize_entry("will", &WillJson(will))?;
                }
                if !c.properties.is_empty() {
                    map.serialize_entry("properties", &ConnectPropsJson(&c.properties))?;
                }
            }
            Event::Subscribe { filters } => {
                map.serialize_entry("filters", &FiltersJson(filters))?;
            }
            Event::Publish(p) => {
                map.serialize_entry("topic", &p.topic)?;
                map.serialize_entry("qos", &p.qos)?;
                map.serialize_entry("retain", &p.retain)?;
                bytes_entry(&mut map, &p.content, "content", "content-bin")?;
                if !p.properties.is_empty() {
                    map.serialize_entry("properties", &MessagePropsJson(&p.properties))?;
                }
            }
            Event::Unsubscribe { filters } => map.serialize_entry("filters", filters)?,
            Event::Disconnect { reason, will_sent } => {
                map.serialize_entry("reason", reason.as_str())?;
                map.serialize_entry("will-sent", will_sent)?;
            }
        }
        map.end()
    }
}

struct WillJson<'a>(&'a Will);

impl Serialize for WillJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let w = self.0;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("topic", &w.topic)?;
        map.serialize_entry("qos", &w.qos)?;
        map.serialize_entry("retain", &w.retain)?;
        bytes_entry(&mut map, &w.content, "content", "content-bin")?;
        if !w.properties.is_empty() {
            map.serialize_entry("properties", &MessagePropsJson(&w.properties))?;
        }
        map.end()
    }
}

struct FiltersJson<'a>(&'a [SubscribeFilter]);

impl Serialize for FiltersJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|f| FilterJson {
            filter: &f.filter,
            qos: f.qos,
        }))
    }
}

#[derive(Serialize)]
struct FilterJson<'a> {
    filter: &'a str,
    qos: u8,
}

struct ConnectPropsJson<'a>(&'a ConnectProperties);

impl Serialize for ConnectPropsJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let p = self.0;
        let mut map = serializer.serialize_map(None)?;
        if let Some(secs) = p.session_expiry {
            map.serialize_entry("session-expiry", &secs)?;
        }
        if !p.user.is_empty() {
            map.serialize_entry("user", &p.user)?;
        }
        map.end()
    }
}

struct MessagePropsJson<'a>(&'a MessageProperties);

impl Serialize for MessagePropsJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let p = self.0;
        let mut map = serializer.serialize_map(None)?;
        if let Some(format) = p.payload_format {
            map.serialize_entry("payload-format", &format)?;
        }
        if let Some(secs) = p.message_expiry {
            map.serialize_entry("message-expiry", &secs)?;
        }
        if let Some(content_type) = &p.content_type {
            map.serialize_entry("content-type", content_type)?;
        }
        if let Some(topic) = &p.response_topic {
            map.serialize_entry("response-topic", topic)?;
        }
        if let Some(data) = &p.correlation_data {
            bytes_entry(&mut map, data, "correlation-data", "correlation-data-bin")?;
        }
        if !p.user.is_empty() {
            map.serialize_entry("user", &p.user)?;
        }
        if let Some(secs) = p.will_delay {
            map.serialize_entry("will-delay", &secs)?;
        }
        map.end()
    }
}

/// Writes `bytes` under `text_key` when it is UTF-8, else base64 under `bin_key`.
fn bytes_entry<M: SerializeMap>(
    map: &mut M,
    bytes: &[u8],
    text_key: &'static str,
    bin_key: &'static str,
) -> Result<(), M::Error> {
    match std::str::from_utf8(bytes) {
        Ok(text) => map.serialize_entry(text_key, text),
        Err(_) => map.serialize_entry(bin_key, &STANDARD.encode(bytes)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn encoded(request: &Request) -> Value {
        serde_json::from_slice(&to_json(request)).expect("to_json writes JSON")
    }

    fn request(events: Vec<Event>) -> Request {
        Request {
            protocol: 5,
            client_id: "dev-17".into(),
            username: Some("alice".into()),
            events,
        }
    }

    #[test]
    fn connect_with_will_and_properties() {
        let connect = Connect {
            password: Some(Bytes::from_static(b"s3cret")),
            clean: true,
            keep_alive: 60,
            will: Some(Will {
                topic: "status/dev-17".into(),
                qos: 1,
                retain: true,
                content: Bytes::from_static(b"offline"),
                properties: MessageProperties {
                    will_delay: Some(5),
                    ..MessageProperties::default()
                },
            }),
            properties: ConnectProperties {
                session_expiry: Some(3600),
                user: vec![("app".into(), "meter".into())],
            },
        };
        assert_eq!(
            encoded(&request(vec![Event::Connect(connect)])),
            json!({"protocol": 5, "client-id": "dev-17", "username": "alice", "events": [
                {"type": "connect", "password": "s3cret", "clean": true, "keep-alive": 60,
                 "will": {"topic": "status/dev-17", "qos": 1, "retain": true,
                          "content": "offline", "properties": {"will-delay": 5}},
                 "properties": {"session-expiry": 3600, "user": [["app", "meter"]]}}]})
        );
    }

    #[test]
    fn absent_and_empty_values_are_left_out() {
        let r = Request {
            protocol: 4,
            client_id: String::new(),
            username: None,
            events: vec![Event::Connect(Connect::default())],
        };
        assert_eq!(
            encoded(&r),
            json!({"protocol": 4, "client-id": "", "events": [
                {"type": "connect", "clean": false, "keep-alive": 0}]})
        );
    }

    #[test]
    fn binary_values_use_the_bin_convention() {
        let connect = Connect {
            password: Some(Bytes::from_static(&[0xff, 0x00, 0x01])),
            ..Connect::default()
        };
        let publish = Publish {
            topic: "t".into(),
            qos: 0,
            retain: false,
            content: Bytes::from_static(&[0xc3, 0x28]),
            properties: MessageProperties {
                correlation_data: Some(Bytes::from_static(&[0x80])),
                ..MessageProperties::default()
            },
        };
        let v = encoded(&request(vec![
            Event::Connect(connect),
            Event::Publish(publish),
        ]));
        assert_eq!(v["events"][0]["password-bin"], "/wAB");
        assert!(v["events"][0].get("password").is_none());
        assert_eq!(v["events"][1]["content-bin"], "wyg=");
        assert_eq!(
            v["events"][1]["properties"],
            json!({"correlation-data-bin": "gA=="})
        );
        // the base64 decodes back to the bytes
        let back = STANDARD.decode(v["events"][1]["content-bin"].as_str().expect("str"));
        assert_eq!(back.expect("base64"), [0xc3, 0x28]);
    }

    #[test]
    fn every_event_type() {
        let publish = Publish {
            topic: "sensors/k/temp".into(),
            qos: 1,
            retain: false,
            content: Bytes::from_static(b"21.5"),
            properties: MessageProperties {
                payload_format: Some(1),
                message_expiry: Some(60),
                content_type: Some("text/plain".into()),
                response_topic: Some("replies/k".into()),
                correlation_data: Some(Bytes::from_static(b"c1")),
                user: vec![("a".into(), "b".into()), ("a".into(), "c".into())],
                will_delay: None,
            },
        };
        let events = vec![
            Event::Subscribe {
                filters: vec![
                    SubscribeFilter {
                        filter: "sensors/+/temp".into(),
                        qos: 1,
                    },
                    SubscribeFilter {
                        filter: "$share/g/jobs".into(),
                        qos: 0,
                    },
                ],
            },
            Event::Publish(publish),
            Event::Unsubscribe {
                filters: vec!["sensors/+/temp".into()],
            },
            Event::Disconnect {
                reason: DisconnectReason::KeepAliveTimeout,
                will_sent: true,
            },
        ];
        assert_eq!(
            encoded(&request(events))["events"],
            json!([
                {"type": "subscribe", "filters": [{"filter": "sensors/+/temp", "qos": 1},
                                                  {"filter": "$share/g/jobs", "qos": 0}]},
                {"type": "publish", "topic": "sensors/k/temp", "qos": 1, "retain": false,
                 "content": "21.5", "properties": {"payload-format": 1, "message-expiry": 60,
                 "content-type": "text/plain", "response-topic": "replies/k",
                 "correlation-data": "c1", "user": [["a", "b"], ["a", "c"]]}},
                {"type": "unsubscribe", "filters": ["sensors/+/temp"]},
                {"type": "disconnect", "reason": "keep-alive-timeout", "will-sent": true}
            ])
        );
    }

    #[test]
    fn strings_are_escaped() {
        let r = Request {
            protocol: 5,
            client_id: "quote\"back\\slash\u{1}nul\0".into(),
            username: Some("ünï".into()),
            events: vec![],
        };
        let v = encoded(&r);
        assert_eq!(v["client-id"], "quote\"back\\slash\u{1}nul\0");
        assert_eq!(v["username"], "ünï");
    }

    #[test]
    fn disconnect_reason_names_are_distinct() {
        let mut names: Vec<_> = DisconnectReason::ALL.iter().map(|r| r.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DisconnectReason::ALL.len());
    }

    #[test]
    fn kinds_follow_the_events() {
        let filters = vec![SubscribeFilter {
            filter: "a".into(),
            qos: 0,
        }];
        let r = request(vec![
            Event::Connect(Connect::default()),
            Event::Subscribe {
                filters: filters.clone(),
            },
            Event::Publish(Publish::default()),
            Event::Unsubscribe { filters: vec![] },
            Event::Disconnect {
                reason: DisconnectReason::Gone,
                will_sent: false,
            },
        ]);
        assert_eq!(
            r.kinds(),
            [
                EventKind::Connect,
                EventKind::Subscribe(&filters),
                EventKind::Publish,
                EventKind::Unsubscribe,
                EventKind::Disconnect
            ]
        );
    }

    #[test]
    fn wildcards_and_default_channels() {
        assert!(is_wildcard("a/+/c"));
        assert!(is_wildcard("#"));
        assert!(is_wildcard("a/#"));
        assert!(!is_wildcard("a/b+/c#"), "only whole levels are wildcards");
        assert_eq!(default_channel("public/news"), Some("public/news"));
        assert_eq!(default_channel("$share/g/public/news"), Some("public/news"));
        assert_eq!(default_channel("devices/+/temp"), None);
        assert_eq!(default_channel("$share/g/devices/#"), None);
        assert_eq!(default_channel("$share/g"), None);
        assert_eq!(default_channel("$share//x"), None);
        assert_eq!(default_channel("$share/g/"), None);
        assert_eq!(default_channel(""), None);
    }
}
