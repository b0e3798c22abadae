//! MQTT 5 PUBLISH properties between an item's [`MqttProperties`] and the wire: the property
//! block a fan-out writes after the topic (and packet id), encoded by the `mqtt-proto` crate
//! once per message; the item's properties read back from such a block; and a device's
//! inbound properties as an item carries them (the topic alias and subscription identifiers
//! are per connection and dropped).

use std::sync::Arc;

use mqtt_proto::v5::{PacketType, PublishProperties, UserProperty};
use mqtt_proto::{Encodable, TopicName};

use crate::publish::{MqttProperties, MAX_META_ENTRIES, MAX_MQTT_STRING_BYTES};

/// The property block of a v5 PUBLISH for `p`, exactly as it sits on the wire: the property
/// length (a variable byte integer) followed by the properties, as the crate encodes them.
/// No properties: `[0x00]`. A value MQTT cannot carry (a string or binary value over
/// [`MAX_MQTT_STRING_BYTES`], an invalid response topic, user properties past
/// [`MAX_META_ENTRIES`]) is left out rather than written wrong; items that passed the publish
/// parser or [`MqttProperties::problem`] have none.
pub fn v5_publish_props(p: &MqttProperties) -> Vec<u8> {
    let fits = |s: &str| s.len() <= MAX_MQTT_STRING_BYTES;
    let props = PublishProperties {
        payload_is_utf8: p.payload_utf8,
        message_expiry_interval: p.message_expiry,
        topic_alias: None,
        response_topic: p
            .response_topic
            .as_deref()
            .filter(|t| !t.is_empty())
            .and_then(|t| TopicName::try_from(t).ok()),
        correlation_data: p
            .correlation_data
            .clone()
            .filter(|d| d.len() <= MAX_MQTT_STRING_BYTES),
        user_properties: p
            .user
            .iter()
            .filter(|(k, v)| fits(k) && fits(v))
            .take(MAX_META_ENTRIES)
            .map(|(k, v)| UserProperty {
                name: Arc::from(k.as_str()),
                value: Arc::from(v.as_str()),
            })
            .collect(),
        subscription_id: None,
        content_type: p.content_type.as_deref().filter(|t| fits(t)).map(Arc::from),
    };
    let mut out = Vec::with_capacity(props.encode_len());
    match props.encode(&mut out) {
        Ok(()) => out,
        // Unreachable: writing to a Vec cannot fail, and the bounds above keep the block far
        // below MQTT's largest length.
        Err(_) => vec![0],
    }
}

/// An item's properties from a device's v5 PUBLISH (the topic alias and subscription
/// identifiers are dropped; an empty response topic, which is no topic name, too).
pub fn from_v5(p: &PublishProperties) -> MqttProperties {
    MqttProperties {
        content_type: p.content_type.as_deref().map(str::to_owned),
        payload_utf8: p.payload_is_utf8,
        message_expiry: p.message_expiry_interval,
        response_topic: p
            .response_topic
            .as_ref()
            .map(|t| t.to_string())
            .filter(|t| !t.is_empty()),
        correlation_data: p.correlation_data.clone(),
        user: p
            .user_properties
            .iter()
            .map(|u| (u.name.to_string(), u.value.to_string()))
            .collect(),
    }
}

/// The properties a block made by [`v5_publish_props`] holds, decoded by the crate; None if
/// `block` is not exactly one PUBLISH property block.
pub fn decode_v5_publish_props(block: &[u8]) -> Option<MqttProperties> {
    let mut offset = 0;
    let props = PublishProperties::decode(block, &mut offset, PacketType::Publish).ok()?;
    (offset == block.len()).then(|| from_v5(&props))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use mqtt_proto::v5::{Packet, Publish};
    use mqtt_proto::{Pid, QosPid};

    use super::*;

    fn full() -> MqttProperties {
        MqttProperties {
            content_type: Some("application/json".into()),
            payload_utf8: Some(true),
            message_expiry: Some(3600),
            response_topic: Some("replies/me".into()),
            correlation_data: Some(Bytes::from_static(b"\x00\x01corr")),
            user: vec![
                ("a".into(), "1".into()),
                ("a".into(), "2".into()),
                ("é".into(), "".into()),
            ],
        }
    }

    /// The crate's whole PUBLISH for these properties, and where its property block starts.
    fn crate_publish(props: PublishProperties, qos1: bool) -> (Vec<u8>, usize) {
        let topic = "t/x";
        let qos_pid = if qos1 {
            QosPid::Level1(Pid::try_from(7).unwrap())
        } else {
            QosPid::Level0
        };
        let mut publish = Publish::new(
            qos_pid,
            TopicName::try_from(topic).unwrap(),
            Bytes::from_static(b"payload"),
        );
        publish.properties = props;
        let wire = Packet::Publish(publish).encode().unwrap().as_ref().to_vec();
        // the fixed header: the first byte, then the remaining length's bytes
        let mut header = 1;
        while wire[header] & 0x80 != 0 {
            header += 1;
        }
        header += 1;
        (wire, header + 2 + topic.len() + if qos1 { 2 } else { 0 })
    }

    #[test]
    fn the_block_is_the_one_in_the_crates_own_publish() {
        for p in [MqttProperties::default(), full()] {
            let block = v5_publish_props(&p);
            for qos1 in [false, true] {
                let v5 = PublishProperties {
                    topic_alias: None,
                    subscription_id: None,
                    ..to_crate(&p)
                };
                let (wire, at) = crate_publish(v5, qos1);
                assert_eq!(&wire[at..at + block.len()], &block[..], "{p:?}");
                assert_eq!(&wire[at + block.len()..], b"payload");
            }
            assert_eq!(decode_v5_publish_props(&block), Some(p));
        }
        assert_eq!(v5_publish_props(&MqttProperties::default()), [0x00]);
    }

    /// The crate's properties for `p`, built directly (the test's own reference).
    fn to_crate(p: &MqttProperties) -> PublishProperties {
        PublishProperties {
            payload_is_utf8: p.payload_utf8,
            message_expiry_interval: p.message_expiry,
            topic_alias: None,
            response_topic: p
                .response_topic
                .as_deref()
                .map(|t| TopicName::try_from(t).unwrap()),
            correlation_data: p.correlation_data.clone(),
            user_properties: p
                .user
                .iter()
                .map(|(k, v)| UserProperty {
                    name: k.as_str().into(),
                    value: v.as_str().into(),
                })
                .collect(),
            subscription_id: None,
            content_type: p.content_type.as_deref().map(Into::into),
        }
    }

    #[test]
    fn inbound_properties_drop_what_is_per_connection() {
        let mut v5 = to_crate(&full());
        v5.topic_alias = Some(3);
        v5.subscription_id = Some(mqtt_proto::v5::VarByteInt::try_from(9).unwrap());
        assert_eq!(from_v5(&v5), full());
        v5.response_topic = Some(TopicName::try_from("").unwrap());
        assert_eq!(from_v5(&v5).response_topic, None);
    }

    #[test]
    fn what_mqtt_cannot_carry_is_left_out() {
        let p = MqttProperties {
            content_type: Some("x".repeat(MAX_MQTT_STRING_BYTES + 1)),
            response_topic: Some("a/#".into()),
            user: vec![("k".into(), "v".into()); MAX_META_ENTRIES + 3],
            ..MqttProperties::default()
        };
        let back = decode_v5_publish_props(&v5_publish_props(&p)).unwrap();
        assert_eq!(back.content_type, None);
        assert_eq!(back.response_topic, None);
        assert_eq!(back.user.len(), MAX_META_ENTRIES);
    }

    #[test]
    fn a_block_must_be_exactly_one_block() {
        let mut block = v5_publish_props(&full());
        block.push(0);
        assert_eq!(decode_v5_publish_props(&block), None);
        assert_eq!(decode_v5_publish_props(&[]), None);
        assert_eq!(decode_v5_publish_props(&[5, 1]), None);
    }
}
