//! Tests of `decode`: round trips through packets the crate itself encodes, malformed bodies,
//! and a no-panic sweep of random and mutated bytes through `scan` + `decode`.

use std::sync::Arc;

use bytes::Bytes;
use mqtt_proto::{Pid, Protocol, QoS, QosPid, TopicFilter, TopicName};

use super::*;
use crate::mqtt::{scan, Scan};

const MAX: u32 = 1 << 20;

fn split(wire: &[u8]) -> (Frame, &[u8]) {
    match scan(wire, MAX) {
        Ok(Scan::Frame(f)) => {
            assert_eq!(f.total_len(), wire.len(), "one whole packet");
            (f, &wire[usize::from(f.header_len)..])
        }
        other => panic!("not a frame: {other:?}"),
    }
}

fn pid(n: u16) -> Pid {
    Pid::try_from(n).unwrap()
}

fn v3_round_trip(p: v3::Packet) {
    let wire = p.encode().unwrap();
    let (f, body) = split(wire.as_ref());
    assert_eq!(decode(Version::V3, f, body), Ok(Packet::V3(p)));
}

fn v5_round_trip(p: v5::Packet) {
    let wire = p.encode().unwrap();
    let (f, body) = split(wire.as_ref());
    assert_eq!(decode(Version::V5, f, body), Ok(Packet::V5(p)));
}

fn v3_connect(protocol: Protocol) -> v3::Connect {
    let mut c = v3::Connect::new(Arc::from("dev-1"), 30);
    c.protocol = protocol;
    c.username = Some(Arc::from("u"));
    c.password = Some(Bytes::from_static(b"pw"));
    c
}

fn v5_connect() -> v5::Connect {
    let mut c = v5::Connect::new(Arc::from("dev-5"), 60);
    c.properties.session_expiry_interval = Some(300);
    c.properties.receive_max = Some(10);
    c
}

#[test]
fn connect_picks_the_version_from_the_protocol_level() {
    for protocol in [Protocol::V310, Protocol::V311] {
        let c = v3_connect(protocol);
        let wire = v3::Packet::Connect(c.clone()).encode().unwrap();
        let (f, body) = split(wire.as_ref());
        assert_eq!(f.first, 0x10);
        let got = decode_connect(body).unwrap();
        assert_eq!(got.version(), Version::V3);
        assert_eq!(got, Connect::V3(c));
    }
    let c = v5_connect();
    let wire = v5::Packet::Connect(c.clone()).encode().unwrap();
    let (_, body) = split(wire.as_ref());
    let got = decode_connect(body).unwrap();
    assert_eq!(got.version(), Version::V5);
    assert_eq!(got, Connect::V5(c));
}

#[test]
fn connect_with_unknown_level_or_trailing_bytes_is_refused() {
    // "MQTT", level 6
    let body = [0, 4, b'M', b'Q', b'T', b'T', 6, 0x02, 0, 30, 0, 0];
    assert_eq!(
        decode_connect(&body),
        Err(MqttError::UnsupportedProtocol { level: 6 })
    );
    // "MQTT" with level 3 is not 3.1 (that is "MQIsdp")
    let body = [0, 4, b'M', b'Q', b'T', b'T', 3, 0x02, 0, 30, 0, 0];
    assert_eq!(
        decode_connect(&body),
        Err(MqttError::UnsupportedProtocol { level: 3 })
    );
    let wire = v3::Packet::Connect(v3_connect(Protocol::V311))
        .encode()
        .unwrap();
    let (_, body) = split(wire.as_ref());
    let mut longer = body.to_vec();
    longer.push(0);
    assert_eq!(decode_connect(&longer), Err(MqttError::TrailingBytes(1)));
    assert!(decode_connect(&body[..body.len() - 1]).is_err());
    assert!(decode_connect(&[]).is_err());
}

#[test]
fn v3_packets_round_trip() {
    let topic = TopicName::try_from("a/b").unwrap();
    v3_round_trip(v3::Packet::Connect(v3_connect(Protocol::V311)));
    v3_round_trip(
        v3::Publish::new(QosPid::Level0, topic.clone(), Bytes::from_static(b"hi")).into(),
    );
    v3_round_trip(v3::Publish::new(QosPid::Level1(pid(7)), topic, Bytes::new()).into());
    v3_round_trip(v3::Packet::Puback(pid(7)));
    v3_round_trip(
        v3::Subscribe::new(
            pid(1),
            vec![
                (TopicFilter::try_from("a/+").unwrap(), QoS::Level1),
                (TopicFilter::try_from("#").unwrap(), QoS::Level0),
            ],
        )
        .into(),
    );
    v3_round_trip(v3::Unsubscribe::new(pid(2), vec![TopicFilter::try_from("a/+").unwrap()]).into());
    v3_round_trip(v3::Suback::new(pid(1), vec![v3::SubscribeReturnCode::MaxLevel1]).into());
    v3_round_trip(v3::Packet::Unsuback(pid(2)));
    v3_round_trip(v3::Packet::Pingreq);
    v3_round_trip(v3::Packet::Pingresp);
    v3_round_trip(v3::Packet::Disconnect);
}

#[test]
fn v5_packets_round_trip() {
    let topic = TopicName::try_from("a/b").unwrap();
    v5_round_trip(v5::Packet::Connect(v5_connect()));
    let mut publish = v5::Publish::new(QosPid::Level1(pid(9)), topic, Bytes::from_static(b"x"));
    publish.properties.content_type = Some(Arc::from("text/plain"));
    v5_round_trip(publish.into());
    v5_round_trip(v5::Puback::new_success(pid(9)).into());
    v5_round_trip(v5::Puback::new(pid(9), v5::PubackReasonCode::NoMatchingSubscribers).into());
    v5_round_trip(
        v5::Subscribe::new(
            pid(3),
            vec![(
                TopicFilter::try_from("x/#").unwrap(),
                v5::SubscriptionOptions::new(QoS::Level1),
            )],
        )
        .into(),
    );
    v5_round_trip(v5::Unsubscribe::new(pid(4), vec![TopicFilter::try_from("x/#").unwrap()]).into());
    v5_round_trip(v5::Packet::Pingreq);
    v5_round_trip(v5::Packet::Pingresp);
    v5_round_trip(v5::Disconnect::new_normal().into());
    v5_round_trip(v5::Disconnect::new(v5::DisconnectReasonCode::ServerShuttingDown).into());
    v5_round_trip(v5::Auth::new_success().into());
}

#[test]
fn empty_only_types_with_a_body_are_refused_not_panics() {
    // PINGREQ, PINGRESP, DISCONNECT with one body byte; the crate's decoder would panic here
    for first in [0xC0u8, 0xD0, 0xE0] {
        let wire = [first, 0x01, 0x00];
        let (f, body) = split(&wire);
        assert_eq!(
            decode(Version::V3, f, body),
            Err(MqttError::NonEmpty(first >> 4))
        );
    }
    for first in [0xC0u8, 0xD0] {
        let wire = [first, 0x01, 0x00];
        let (f, body) = split(&wire);
        assert_eq!(
            decode(Version::V5, f, body),
            Err(MqttError::NonEmpty(first >> 4))
        );
    }
    // v5 DISCONNECT with a body is a real packet (reason code 0x8B, server shutting down)
    let wire = [0xE0, 0x01, 0x8B];
    let (f, body) = split(&wire);
    assert!(matches!(
        decode(Version::V5, f, body),
        Ok(Packet::V5(v5::Packet::Disconnect(_)))
    ));
}

#[test]
fn trailing_bytes_and_wrong_lengths_are_refused() {
    // v3 PUBACK declaring 3 bytes: pid 1 and one extra
    let wire = [0x40, 0x03, 0x00, 0x01, 0xFF];
    let (f, body) = split(&wire);
    assert_eq!(
        decode(Version::V3, f, body),
        Err(MqttError::TrailingBytes(1))
    );
    // body shorter or longer than the frame declared
    assert_eq!(
        decode(Version::V3, f, &body[..2]),
        Err(MqttError::BodyLength {
            got: 2,
            declared: 3
        })
    );
    // a body-needing type with remaining 0
    let wire = [0x40, 0x00];
    let (f, body) = split(&wire);
    assert!(decode(Version::V3, f, body).is_err());
    assert!(decode(Version::V5, f, body).is_err());
    // packet type 0 and v3-reserved type 15, wrong fixed flags
    for wire in [[0x00u8, 0x00], [0xF0, 0x00], [0x80, 0x00], [0xC1, 0x00]] {
        let (f, body) = split(&wire);
        assert!(decode(Version::V3, f, body).is_err(), "{wire:?}");
    }
    // PUBLISH with QoS 3
    let wire = [0x36, 0x03, 0x00, 0x01, b'a'];
    let (f, body) = split(&wire);
    assert!(decode(Version::V5, f, body).is_err());
}

/// xorshift64*: deterministic bytes with no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn byte(&mut self) -> u8 {
        (self.next() >> 32) as u8
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// What a connection does with bytes: frame, then decode as CONNECT and as both versions.
fn feed(buf: &[u8]) {
    let Ok(Scan::Frame(f)) = scan(buf, MAX) else {
        return;
    };
    let start = usize::from(f.header_len);
    let Some(body) = buf.get(start..start + f.remaining as usize) else {
        return;
    };
    let _ = decode_connect(body);
    let _ = decode(Version::V3, f, body);
    let _ = decode(Version::V5, f, body);
}

#[test]
fn random_and_mutated_bytes_never_panic() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let seeds: Vec<Vec<u8>> = vec![
        v3::Packet::Connect(v3_connect(Protocol::V311))
            .encode()
            .unwrap()
            .as_ref()
            .to_vec(),
        v5::Packet::Connect(v5_connect())
            .encode()
            .unwrap()
            .as_ref()
            .to_vec(),
        v5::Packet::from(v5::Publish::new(
            QosPid::Level1(pid(1)),
            TopicName::try_from("t").unwrap(),
            Bytes::from_static(b"p"),
        ))
        .encode()
        .unwrap()
        .as_ref()
        .to_vec(),
        v5::Packet::from(v5::Subscribe::new(
            pid(3),
            vec![(
                TopicFilter::try_from("x/#").unwrap(),
                v5::SubscriptionOptions::new(QoS::Level1),
            )],
        ))
        .encode()
        .unwrap()
        .as_ref()
        .to_vec(),
    ];
    let result = std::panic::catch_unwind(move || {
        for round in 0..6000 {
            let buf: Vec<u8> = match round % 3 {
                // pure noise
                0 => (0..rng.below(40)).map(|_| rng.byte()).collect(),
                // a well-formed fixed header over a noise body, every packet type
                1 => {
                    let len = rng.below(64);
                    let mut b = vec![rng.byte(), len as u8];
                    b.extend((0..len).map(|_| rng.byte()));
                    b
                }
                // a real packet with a few bytes of its body changed
                _ => {
                    let mut b = seeds[rng.below(seeds.len())].clone();
                    for _ in 0..1 + rng.below(3) {
                        let i = 2 + rng.below(b.len() - 2);
                        b[i] = rng.byte();
                    }
                    b
                }
            };
            feed(&buf);
        }
    });
    assert!(result.is_ok(), "scan + decode panicked");
}
