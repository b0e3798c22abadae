//! The `mqtt-message` format: what an MQTT device subscribed to the item's channel receives
//! (payload, QoS, retain flag, topic and MQTT 5 properties), and the rules that make one
//! sendable: what the publish parser checks field by field, and what
//! [`MqttMessageFormat::problem`] checks for an item built in code (a device's PUBLISH), so
//! that every item the broker keeps also survives the cluster's and the disk's round trip
//! through the parser.
//!
//! JSON (under an item's `formats`):
//! `"mqtt-message": {"content": "..." | "content-bin": "<base64>", "topic": "a/b",
//! "qos": 0|1|2, "retain": false, "properties": {"content-type": "...",
//! "payload-format": 0|1, "message-expiry": <seconds>, "response-topic": "...",
//! "correlation-data": "..." | "correlation-data-bin": "...", "user": [["k", "v"], ...]}}`.
//! Only the content is required. QoS 2 is taken as 1 (Gripway delivers at most QoS 1).

use bytes::Bytes;

use super::MAX_META_ENTRIES;

/// Longest MQTT topic name, string property or binary property, in bytes: MQTT writes their
/// lengths in 2 bytes.
pub const MAX_MQTT_STRING_BYTES: usize = 65_535;

/// The `mqtt-message` format.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MqttMessageFormat {
    /// The PUBLISH payload (may be empty).
    pub content: Bytes,
    /// The topic to publish under; `None`: the subscriber's own (its subscription's topic).
    pub topic: Option<String>,
    /// 0 or 1; `None`: 1 when the item has an id, else 0 (only items with ids can be
    /// recovered from history, so only they are worth acknowledging).
    pub qos: Option<u8>,
    /// The PUBLISH's retain flag.
    pub retain: bool,
    /// MQTT 5 properties (a 3.1.1 device gets none of them).
    pub properties: MqttProperties,
}

/// The MQTT 5 PUBLISH properties an item carries (topic alias and subscription
/// identifiers are per connection, never part of an item).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MqttProperties {
    /// `content-type`.
    pub content_type: Option<String>,
    /// `payload-format`: 1 (`Some(true)`) says the payload is UTF-8, 0 that it is bytes.
    pub payload_utf8: Option<bool>,
    /// `message-expiry`, in seconds.
    pub message_expiry: Option<u32>,
    /// `response-topic`: a topic name.
    pub response_topic: Option<String>,
    /// `correlation-data` / `correlation-data-bin`.
    pub correlation_data: Option<Bytes>,
    /// `user`: name/value pairs, in order, repeats allowed (as MQTT allows).
    pub user: Vec<(String, String)>,
}

impl MqttProperties {
    /// True when no property is set.
    pub fn is_empty(&self) -> bool {
        *self == MqttProperties::default()
    }

    /// Why these properties cannot be carried, naming the property (`response-topic: ...`);
    /// None when they can. The parser reports the same rules field by field.
    pub fn problem(&self) -> Option<String> {
        if let Some(t) = &self.content_type {
            if let Some(why) = string_problem(t) {
                return Some(format!("content-type: {why}"));
            }
        }
        if let Some(t) = &self.response_topic {
            if let Some(why) = mqtt_topic_problem(t) {
                return Some(format!("response-topic: {why}"));
            }
        }
        if let Some(d) = &self.correlation_data {
            if d.len() > MAX_MQTT_STRING_BYTES {
                return Some(format!(
                    "correlation-data: {} bytes, over the limit of {MAX_MQTT_STRING_BYTES}",
                    d.len()
                ));
            }
        }
        if self.user.len() > MAX_META_ENTRIES {
            return Some(format!("user: more than {MAX_META_ENTRIES} properties"));
        }
        for (i, (name, value)) in self.user.iter().enumerate() {
            if let Some(why) = string_problem(name).or_else(|| string_problem(value)) {
                return Some(format!("user[{i}]: {why}"));
            }
        }
        None
    }
}

impl MqttMessageFormat {
    /// Why this format cannot be sent to MQTT devices, naming the field (`topic: ...`);
    /// None when it can. The content's size is the caller's to bound (the publish API's
    /// content limit, or the device's packet size).
    pub fn problem(&self) -> Option<String> {
        if let Some(t) = &self.topic {
            if let Some(why) = mqtt_topic_problem(t) {
                return Some(format!("topic: {why}"));
            }
        }
        if matches!(self.qos, Some(q) if q > 1) {
            return Some("qos: must be 0 or 1 (2 is taken as 1)".to_owned());
        }
        if let Some(why) = self.properties.problem() {
            return Some(format!("properties.{why}"));
        }
        if self.properties.payload_utf8 == Some(true) && std::str::from_utf8(&self.content).is_err()
        {
            return Some("content: payload-format 1 says UTF-8, but the content is not".to_owned());
        }
        None
    }
}

/// Why `topic` is not a valid MQTT topic name (empty, a wildcard `+` or `#`, a NUL, or over
/// [`MAX_MQTT_STRING_BYTES`]); None when it is one. A `&str` is UTF-8 already.
pub fn mqtt_topic_problem(topic: &str) -> Option<String> {
    if topic.is_empty() {
        return Some("must not be empty".to_owned());
    }
    if let Some(why) = string_problem(topic) {
        return Some(why);
    }
    if topic.contains(['+', '#']) {
        return Some("a topic name must not hold the wildcards '+' or '#'".to_owned());
    }
    None
}

/// Why `s` cannot be an MQTT UTF-8 string: over the 2-byte length, or holding U+0000.
pub(super) fn string_problem(s: &str) -> Option<String> {
    if s.len() > MAX_MQTT_STRING_BYTES {
        return Some(format!(
            "{} bytes, over the limit of {MAX_MQTT_STRING_BYTES}",
            s.len()
        ));
    }
    if s.contains('\0') {
        return Some("must not contain U+0000".to_owned());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        for ok in ["a", "a/b", "/", "a//b", "$SYS/x", "é/ü", " "] {
            assert_eq!(mqtt_topic_problem(ok), None, "{ok:?}");
        }
        for bad in ["", "a/+", "#", "a/#", "a\0b"] {
            assert!(mqtt_topic_problem(bad).is_some(), "{bad:?}");
        }
        assert!(mqtt_topic_problem(&"a".repeat(MAX_MQTT_STRING_BYTES)).is_none());
        assert!(mqtt_topic_problem(&"a".repeat(MAX_MQTT_STRING_BYTES + 1)).is_some());
    }

    #[test]
    fn problems_name_the_field() {
        let mut f = MqttMessageFormat {
            content: Bytes::from_static(b"\xff"),
            ..MqttMessageFormat::default()
        };
        assert_eq!(f.problem(), None);
        f.properties.payload_utf8 = Some(true);
        assert!(f.problem().is_some_and(|p| p.starts_with("content:")));
        f.content = Bytes::from_static(b"ok");
        f.properties.user = vec![("k".into(), "v\0".into())];
        assert_eq!(
            f.problem().as_deref(),
            Some("properties.user[0]: must not contain U+0000")
        );
        f.properties.user = vec![("k".into(), "v".into()); MAX_META_ENTRIES + 1];
        assert!(f
            .problem()
            .is_some_and(|p| p.starts_with("properties.user:")));
        f.properties.user.clear();
        f.properties.response_topic = Some("a/#".into());
        assert!(f
            .problem()
            .is_some_and(|p| p.starts_with("properties.response-topic:")));
        f.properties.response_topic = None;
        f.topic = Some(String::new());
        assert_eq!(f.problem().as_deref(), Some("topic: must not be empty"));
        f.topic = None;
        f.qos = Some(2);
        assert!(f.problem().is_some_and(|p| p.starts_with("qos:")));
    }
}
