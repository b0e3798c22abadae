//! Tests of `publish_head`: the concatenation `head ++ topic ++ tail ++ props ++ payload` is
//! byte for byte what `mqtt_proto`'s own `Publish` encoding writes (a property test over both
//! versions, QoS, flags, topics, property shapes and payload sizes across every remaining-length
//! width), it frames and decodes back to the same packet, and every refusal is an error.

use std::sync::Arc;

use bytes::Bytes;
use mqtt_proto::{v3, v5, Pid, QosPid, TopicName};
use proptest::prelude::*;

use super::*;
use crate::mqtt::{decode, scan, Packet, Scan};

/// One PUBLISH's inputs, as a fan-out would have them.
#[derive(Debug, Clone)]
struct Case {
    version: Version,
    qos: u8,
    dup: bool,
    retain: bool,
    topic: String,
    pid: u16,
    props: v5::PublishProperties,
    payload: Vec<u8>,
}

impl Case {
    fn qos_pid(&self) -> QosPid {
        let pid = Pid::try_from(self.pid).unwrap();
        match self.qos {
            0 => QosPid::Level0,
            1 => QosPid::Level1(pid),
            _ => QosPid::Level2(pid),
        }
    }

    /// The crate's packet for this case.
    fn packet(&self) -> Packet {
        let topic_name = TopicName::try_from(self.topic.as_str()).unwrap();
        let payload = Bytes::from(self.payload.clone());
        match self.version {
            Version::V3 => Packet::V3(v3::Packet::Publish(v3::Publish {
                dup: self.dup,
                retain: self.retain,
                qos_pid: self.qos_pid(),
                topic_name,
                payload,
            })),
            Version::V5 => Packet::V5(v5::Packet::Publish(v5::Publish {
                dup: self.dup,
                retain: self.retain,
                qos_pid: self.qos_pid(),
                topic_name,
                payload,
                properties: self.props.clone(),
            })),
        }
    }

    /// The crate's own encoding of the whole packet.
    fn crate_wire(&self) -> Vec<u8> {
        match self.packet() {
            Packet::V3(p) => p.encode().unwrap().as_ref().to_vec(),
            Packet::V5(p) => p.encode().unwrap().as_ref().to_vec(),
        }
    }

    /// Ours: the per-subscriber head and tail around the shared parts.
    fn our_wire(&self) -> Vec<u8> {
        let props = match self.version {
            Version::V3 => Vec::new(),
            Version::V5 => encode_v5_props(&self.props).unwrap(),
        };
        let pid = (self.qos > 0).then_some(self.pid);
        let (head, tail) = publish_head(
            self.version,
            self.qos,
            self.dup,
            self.retain,
            self.topic.len(),
            pid,
            props.len(),
            self.payload.len(),
        )
        .unwrap();
        assert_eq!(tail.pid(), pid.map(u16::to_be_bytes));
        let mut out = Vec::new();
        for part in [
            head.as_slice(),
            self.topic.as_bytes(),
            tail.as_slice(),
            &props,
            &self.payload,
        ] {
            out.extend_from_slice(part);
        }
        assert_eq!(
            publish_total_len(
                self.topic.len(),
                pid.is_some(),
                props.len(),
                self.payload.len()
            ),
            out.len()
        );
        out
    }

    fn check(&self) {
        let ours = self.our_wire();
        assert_eq!(ours, self.crate_wire(), "{self:?}");
        // and it frames and decodes back to the same packet
        let Ok(Scan::Frame(f)) = scan(&ours, u32::MAX) else {
            panic!("no frame");
        };
        assert_eq!(f.total_len(), ours.len());
        let body = &ours[usize::from(f.header_len)..];
        assert_eq!(decode(self.version, f, body), Ok(self.packet()));
    }
}

fn case(version: Version, qos: u8, topic: &str, props_shape: u8, payload_len: usize) -> Case {
    Case {
        version,
        qos,
        dup: false,
        retain: false,
        topic: topic.to_owned(),
        pid: 1,
        props: props(props_shape, 0, "text/plain"),
        payload: vec![b'x'; payload_len],
    }
}

fn user(name: &str, value: &str) -> v5::UserProperty {
    v5::UserProperty {
        name: Arc::from(name),
        value: Arc::from(value),
    }
}

/// A few property shapes the fan-out will carry: none, one of each kind, all together, and
/// blocks long enough to need a 2-byte length of their own.
fn props(shape: u8, n: u32, text: &str) -> v5::PublishProperties {
    let mut p = v5::PublishProperties::default();
    match shape % 8 {
        0 => {}
        1 => p.content_type = Some(Arc::from(text)),
        2 => p.message_expiry_interval = Some(n),
        3 => p.payload_is_utf8 = Some(n.is_multiple_of(2)),
        4 => {
            p.response_topic = Some(TopicName::try_from("reply/to").unwrap());
            p.correlation_data = Some(Bytes::from(text.as_bytes().to_vec()));
        }
        5 => {
            p.user_properties = (0..n % 12).map(|i| user(&format!("k{i}"), text)).collect();
        }
        6 => {
            p.subscription_id = Some(v5::VarByteInt::try_from(n % 268_435_456).unwrap());
        }
        _ => {
            p.payload_is_utf8 = Some(true);
            p.message_expiry_interval = Some(n);
            p.content_type = Some(Arc::from(text));
            p.response_topic = Some(TopicName::try_from(text).unwrap());
            p.correlation_data = Some(Bytes::from(vec![0xAB; text.len() * 3]));
            p.user_properties = vec![user("a", text), user(text, "b")];
        }
    }
    p
}

/// Payload lengths from each remaining-length width, crowded near the width changes.
fn payload_len() -> impl Strategy<Value = usize> {
    prop_oneof![
        6 => 0usize..200,
        3 => 16_200usize..16_500,
        1 => 2_096_900usize..2_097_300,
    ]
}

fn arb_case() -> impl Strategy<Value = Case> {
    (
        any::<bool>(),
        0u8..=2,
        any::<bool>(),
        any::<bool>(),
        "[a-z0-9/$ é€]{0,40}|[a-z/]{100,300}",
        1u16..,
        (
            any::<u8>(),
            any::<u32>(),
            "[a-zA-Z0-9/ -]{0,20}|[a-z]{120,200}",
        ),
        // ASCII, so a payload marked UTF-8 is UTF-8
        (payload_len(), 0u8..0x80),
    )
        .prop_map(
            |(v5, qos, dup, retain, topic, pid, (shape, n, text), (len, byte))| Case {
                version: if v5 { Version::V5 } else { Version::V3 },
                qos,
                dup,
                retain,
                topic,
                pid,
                props: props(shape, n, &text),
                payload: vec![byte; len],
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn head_matches_the_crates_publish(c in arb_case()) {
        c.check();
    }
}

#[test]
fn every_remaining_length_width_and_its_edges() {
    for version in [Version::V3, Version::V5] {
        let fixed = match version {
            Version::V3 => 2 + 1 + 2, // topic length, topic "t", pid
            Version::V5 => 2 + 1 + 2 + 1,
        };
        for edge in [127usize, 16_383, 2_097_151] {
            for remaining in [edge - 1, edge, edge + 1, edge + 2, edge + 3] {
                let mut c = case(version, 1, "t", 0, remaining - fixed);
                c.check();
                // QoS 0 is 2 bytes shorter: the width may change between the two
                c.qos = 0;
                c.check();
            }
        }
    }
}

#[test]
fn flags_and_layout() {
    let (head, tail) = publish_head(Version::V3, 1, true, true, 3, Some(0x0102), 0, 4).unwrap();
    // 0x30 | dup 0x08 | qos1 0x02 | retain 0x01; remaining 2 + 3 + 2 + 4
    assert_eq!(head.as_slice(), [0x3B, 11, 0x00, 0x03]);
    assert_eq!(tail.as_slice(), [0x01, 0x02]);
    assert_eq!(tail.pid(), Some([0x01, 0x02]));
    let (head, tail) = publish_head(Version::V5, 0, false, false, 0, None, 1, 0).unwrap();
    assert_eq!(head.as_slice(), [0x30, 3, 0x00, 0x00]);
    assert_eq!(tail.as_slice(), [] as [u8; 0]);
    assert_eq!(tail.pid(), None);
    assert_eq!(
        encode_v5_props(&v5::PublishProperties::default()),
        Ok(vec![0x00])
    );
}

#[test]
fn the_largest_packet_mqtt_can_express() {
    // built without the crate (256 MiB): the head alone, checked against `scan`
    let payload = MAX_REMAINING - 2 - 5 - 2;
    let (head, tail) = publish_head(Version::V3, 1, false, false, 5, Some(9), 0, payload).unwrap();
    assert_eq!(head.as_slice(), [0x32, 0xFF, 0xFF, 0xFF, 0x7F, 0x00, 0x05]);
    assert_eq!(tail.as_slice(), [0x00, 0x09]);
    let Ok(Scan::Frame(f)) = scan(head.as_slice(), u32::MAX) else {
        panic!("no frame");
    };
    assert_eq!(f.remaining as usize, MAX_REMAINING);
    assert_eq!(f.total_len(), publish_total_len(5, true, 0, payload));
    assert_eq!(f.total_len(), MAX_REMAINING + 5);
}

#[test]
fn refusals_are_errors() {
    let too_long = |e: Result<_, MqttError>| {
        assert_eq!(e.unwrap_err(), MqttError::V3(Error::InvalidRemainingLength));
    };
    let payload = MAX_REMAINING - 2 - 5;
    assert!(publish_head(Version::V3, 0, false, false, 5, None, 0, payload).is_ok());
    too_long(publish_head(
        Version::V3,
        0,
        false,
        false,
        5,
        None,
        0,
        payload + 1,
    ));
    // the packet id's 2 bytes count
    too_long(publish_head(
        Version::V3,
        1,
        false,
        false,
        5,
        Some(1),
        0,
        payload - 1,
    ));
    too_long(publish_head(
        Version::V5,
        0,
        false,
        false,
        5,
        None,
        2,
        payload,
    ));
    too_long(publish_head(
        Version::V5,
        0,
        false,
        false,
        5,
        None,
        1,
        usize::MAX,
    ));
    too_long(publish_head(
        Version::V5,
        0,
        false,
        false,
        5,
        None,
        usize::MAX,
        1,
    ));
    assert_eq!(publish_total_len(5, false, 0, payload + 1), usize::MAX);
    assert_eq!(publish_total_len(usize::MAX, true, 0, 0), usize::MAX);

    assert!(publish_head(Version::V3, 0, false, false, 65_535, None, 0, 0).is_ok());
    assert!(matches!(
        publish_head(Version::V3, 0, false, false, 65_536, None, 0, 0),
        Err(MqttError::V3(Error::InvalidTopicName(_)))
    ));
    let refused = |qos, pid, v, props, want: Error| {
        assert_eq!(
            publish_head(v, qos, false, false, 1, pid, props, 1),
            Err(MqttError::V3(want))
        );
    };
    refused(3, Some(1), Version::V3, 0, Error::InvalidQos(3));
    refused(1, None, Version::V3, 0, Error::ZeroPid);
    refused(2, None, Version::V3, 0, Error::ZeroPid);
    refused(1, Some(0), Version::V3, 0, Error::ZeroPid);
    refused(0, Some(5), Version::V3, 0, Error::InvalidHeader);
    // v3 has no property block; v5 always has at least its length byte
    refused(0, None, Version::V3, 1, Error::InvalidHeader);
    refused(0, None, Version::V5, 0, Error::InvalidHeader);
}

#[test]
fn the_crate_agrees_on_every_property_shape() {
    for shape in 0..8 {
        for text in ["", "application/json", &"z".repeat(150)] {
            for version in [Version::V3, Version::V5] {
                let mut c = case(version, 1, "sensors/1/temp", shape, 10);
                c.props = props(shape, 300, text);
                c.check();
            }
        }
    }
}
