//! MQTT packets from a device (`proto::mqtt`): the input is a byte stream as a socket delivers
//! it. Each fixed header is framed by `scan` (under a 1 MiB limit, and again with none: both
//! must agree, and no prefix of a header may be a different frame), and each complete body is
//! decoded as a first CONNECT (`decode_connect`) and as a v3 and a v5 packet (`decode`). A
//! decoded packet that `encode` accepts must frame and decode back to the same packet. Every
//! decoded PUBLISH is rebuilt from `publish_head` and its shared parts and must equal the
//! crate's own encoding, byte for byte; and so must one small PUBLISH described by the input's
//! first bytes (version, QoS, flags, topic and payload lengths, a property shape), which
//! reaches the 1- to 3-byte remaining lengths. Checks that nothing panics or allocates from a
//! declared length.
#![no_main]

use std::sync::Arc;

use bytes::Bytes;
use gripway_proto::mqtt::{
    decode, decode_connect, encode, publish_head, publish_total_len, scan, v3, v5,
    encode_v5_props, Connect, Frame, FrameError, Packet, Scan, Version,
};
use libfuzzer_sys::fuzz_target;
use mqtt_proto::{Pid, QosPid, TopicName};

const MAX: u32 = 1 << 20;

/// Frames the front of `buf`, checking that both limits and every header prefix agree.
fn frame(buf: &[u8]) -> Result<Scan, FrameError> {
    let limited = scan(buf, MAX);
    let unlimited = scan(buf, u32::MAX);
    match (&limited, &unlimited) {
        (Ok(Scan::Frame(a)), Ok(Scan::Frame(b))) => {
            assert_eq!(a, b);
            assert!(a.remaining <= MAX && (2..=5).contains(&a.header_len));
            for cut in 0..usize::from(a.header_len) {
                assert_eq!(scan(&buf[..cut], MAX), Ok(Scan::NeedMore));
            }
        }
        (Err(FrameError::Malformed), other) => assert_eq!(other, &Err(FrameError::Malformed)),
        (Err(FrameError::TooLarge { remaining }), _) => assert!(*remaining > MAX),
        (Ok(Scan::NeedMore), other) => assert_eq!(other, &Ok(Scan::NeedMore)),
        (Ok(Scan::Frame(_)), other) => panic!("limit changed the frame: {other:?}"),
    }
    limited
}

/// A packet that encodes must come back equal from its own bytes.
fn round_trip(version: Version, packet: &Packet) {
    let Ok(wire) = encode(packet) else {
        return;
    };
    let wire = wire.as_ref();
    let Ok(Scan::Frame(f)) = scan(wire, u32::MAX) else {
        panic!("encoded packet does not frame: {packet:?}");
    };
    assert_eq!(f.total_len(), wire.len());
    let body = &wire[usize::from(f.header_len)..];
    if f.packet_type() == 1 {
        let back = decode_connect(body).expect("encoded CONNECT decodes");
        assert_eq!(&connect_packet(back), packet);
    } else {
        assert_eq!(decode(version, f, body).as_ref(), Ok(packet), "{wire:02x?}");
    }
}

fn connect_packet(c: Connect) -> Packet {
    match c {
        Connect::V3(c) => Packet::V3(v3::Packet::Connect(c)),
        Connect::V5(c) => Packet::V5(v5::Packet::Connect(c)),
    }
}

/// `publish_head` plus the shared parts equals the crate's own encoding of `packet`.
fn check_publish(packet: &Packet) {
    let (version, qos_pid, dup, retain, topic, props, payload, crate_wire) = match packet {
        Packet::V3(p @ v3::Packet::Publish(publish)) => (
            Version::V3,
            publish.qos_pid,
            publish.dup,
            publish.retain,
            &publish.topic_name,
            Vec::new(),
            &publish.payload,
            p.encode(),
        ),
        Packet::V5(p @ v5::Packet::Publish(publish)) => (
            Version::V5,
            publish.qos_pid,
            publish.dup,
            publish.retain,
            &publish.topic_name,
            encode_v5_props(&publish.properties).expect("a decoded block encodes"),
            &publish.payload,
            p.encode(),
        ),
        _ => return,
    };
    let crate_wire = crate_wire.expect("the crate encodes a PUBLISH it decoded or built");
    let pid = qos_pid.pid().map(|p| p.value());
    let (head, tail) = publish_head(
        version,
        qos_pid.qos() as u8,
        dup,
        retain,
        topic.len(),
        pid,
        props.len(),
        payload.len(),
    )
    .expect("a PUBLISH within MQTT's limits has a head");
    let mut ours = Vec::with_capacity(crate_wire.as_ref().len());
    for part in [
        head.as_slice(),
        topic.as_bytes(),
        tail.as_slice(),
        &props,
        payload,
    ] {
        ours.extend_from_slice(part);
    }
    assert_eq!(ours, crate_wire.as_ref(), "{packet:?}");
    assert_eq!(
        publish_total_len(topic.len(), pid.is_some(), props.len(), payload.len()),
        ours.len()
    );
}

/// One small PUBLISH described by the first bytes: flags, topic length, payload length (BE,
/// up to 64 KiB), property shape, packet id.
fn small_case(data: &[u8]) -> Option<Packet> {
    let [flags, topic_len, len_hi, len_lo, shape, pid_hi, pid_lo, ..] = *data else {
        return None;
    };
    let qos_pid = match (flags >> 1) % 3 {
        0 => QosPid::Level0,
        1 => QosPid::Level1(Pid::try_from(u16::from_be_bytes([pid_hi, pid_lo]).max(1)).ok()?),
        _ => QosPid::Level2(Pid::try_from(u16::from_be_bytes([pid_hi, pid_lo]).max(1)).ok()?),
    };
    let topic = "t/".repeat(usize::from(topic_len) / 2) + &"x".repeat(usize::from(topic_len) % 2);
    let topic_name = TopicName::try_from(topic.as_str()).ok()?;
    let payload = Bytes::from(vec![
        b'p';
        usize::from(u16::from_be_bytes([len_hi, len_lo]))
    ]);
    let (dup, retain) = (flags & 0x08 != 0, flags & 0x01 != 0);
    if flags & 0x80 == 0 {
        return Some(Packet::V3(v3::Packet::Publish(v3::Publish {
            dup,
            retain,
            qos_pid,
            topic_name,
            payload,
        })));
    }
    let mut properties = v5::PublishProperties::default();
    let text: Arc<str> = Arc::from("x".repeat(usize::from(shape >> 3) * 9));
    if shape & 1 != 0 {
        properties.content_type = Some(text.clone());
    }
    if shape & 2 != 0 {
        properties.message_expiry_interval = Some(u32::from(shape));
        properties.payload_is_utf8 = Some(true);
    }
    if shape & 4 != 0 {
        properties.user_properties = vec![v5::UserProperty {
            name: text.clone(),
            value: text,
        }];
        properties.correlation_data = Some(Bytes::from_static(b"corr"));
    }
    Some(Packet::V5(v5::Packet::Publish(v5::Publish {
        dup,
        retain,
        qos_pid,
        topic_name,
        payload,
        properties,
    })))
}

fuzz_target!(|data: &[u8]| {
    if let Some(packet) = small_case(data) {
        check_publish(&packet);
    }

    let mut buf = data;
    let mut first = true;
    while let Ok(Scan::Frame(f)) = frame(buf) {
        let Some(body) = buf.get(usize::from(f.header_len)..f.total_len()) else {
            break; // the body has not all arrived
        };
        check_frame(f, body, first);
        first = false;
        buf = &buf[f.total_len()..];
    }
});

fn check_frame(f: Frame, body: &[u8], first: bool) {
    if first && f.packet_type() == 1 {
        if let Ok(connect) = decode_connect(body) {
            let version = connect.version();
            round_trip(version, &connect_packet(connect));
        }
    }
    for version in [Version::V3, Version::V5] {
        match decode(version, f, body) {
            Ok(packet) => {
                round_trip(version, &packet);
                check_publish(&packet);
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
}
