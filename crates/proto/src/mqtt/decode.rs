//! Packet decoding: one complete body (already framed by `frame::scan`) into an `mqtt-proto`
//! packet, for the version the connection's CONNECT chose. The crate is only called on paths
//! that cannot panic: empty-only packet types (PINGREQ, PINGRESP, v3 DISCONNECT) never reach its
//! `decode_buffer`, which has `unreachable!()` for them, and a body the crate did not consume to
//! the end is refused, because the crate does not check that itself.

use mqtt_proto::{v3, v5, PollHeader, Protocol};

use super::frame::Frame;

/// The protocol family a connection speaks, chosen by its CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// MQTT 3.1 (protocol level 3) and 3.1.1 (level 4): the same packets.
    V3,
    /// MQTT 5.0 (protocol level 5).
    V5,
}

/// A decoded CONNECT, in the version its protocol level named.
#[allow(
    clippy::large_enum_variant,
    reason = "transient: lives on the stack while one packet is handled, never in a held future; boxing would add an allocation per packet"
)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connect {
    /// MQTT 3.1 or 3.1.1.
    V3(v3::Connect),
    /// MQTT 5.0.
    V5(v5::Connect),
}

impl Connect {
    /// The version the rest of the connection is decoded with.
    pub fn version(&self) -> Version {
        match self {
            Connect::V3(_) => Version::V3,
            Connect::V5(_) => Version::V5,
        }
    }
}

/// A decoded packet of either version.
#[allow(
    clippy::large_enum_variant,
    reason = "transient: lives on the stack while one packet is handled, never in a held future; boxing would add an allocation per packet"
)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// An MQTT 3.1 / 3.1.1 packet.
    V3(v3::Packet),
    /// An MQTT 5.0 packet.
    V5(v5::Packet),
}

/// Why a packet could not be decoded or encoded. Every variant means a malformed packet or a
/// protocol error: the connection is closed (v5: after DISCONNECT 0x81 / 0x82).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MqttError {
    /// CONNECT named a protocol name/level pair we do not speak. Answer with a v3 CONNACK 0x01
    /// (unacceptable protocol version), then close.
    #[error("unsupported protocol level {level}")]
    UnsupportedProtocol {
        /// The protocol level byte, as sent.
        level: u8,
    },
    /// The body given is not as long as the frame declared.
    #[error("body is {got} bytes but the frame declared {declared}")]
    BodyLength {
        /// Bytes passed.
        got: usize,
        /// The frame's remaining length.
        declared: u32,
    },
    /// The packet was decoded but bytes followed it inside its declared length.
    #[error("{0} trailing bytes after the packet")]
    TrailingBytes(usize),
    /// A packet type that has no body (PINGREQ, PINGRESP, v3 DISCONNECT) declared one.
    #[error("packet type {0} must have an empty body")]
    NonEmpty(u8),
    /// The crate refused a v3 packet (header flags, strings, QoS, topic, ...).
    #[error("mqtt v3: {0}")]
    V3(#[from] mqtt_proto::Error),
    /// The crate refused a v5 packet (the above, plus properties and reason codes).
    #[error("mqtt v5: {0}")]
    V5(#[from] v5::ErrorV5),
}

/// Decodes the body of a CONNECT (first byte 0x10; the caller checks the frame's type). Its
/// protocol level picks the version: 3 and 4 decode as v3, 5 as v5, anything else is
/// `UnsupportedProtocol`.
pub fn decode_connect(body: &[u8]) -> Result<Connect, MqttError> {
    let mut off = 0;
    let protocol = match Protocol::decode(body, &mut off) {
        Ok(p) => p,
        Err(mqtt_proto::Error::InvalidProtocol(_, level)) => {
            return Err(MqttError::UnsupportedProtocol { level })
        }
        Err(e) => return Err(e.into()),
    };
    let connect = match protocol {
        Protocol::V310 | Protocol::V311 => Connect::V3(v3::Connect::decode_buffer_with_protocol(
            body, &mut off, protocol,
        )?),
        Protocol::V500 => {
            let remaining =
                u32::try_from(body.len()).map_err(|_| mqtt_proto::Error::InvalidRemainingLength)?;
            let total = mqtt_proto::total_len(body.len())?;
            let total =
                u32::try_from(total).map_err(|_| mqtt_proto::Error::InvalidRemainingLength)?;
            let header = v5::Header::new_with(0x10, remaining, total)?;
            Connect::V5(v5::Connect::decode_buffer_with_protocol(
                body, &mut off, header, protocol,
            )?)
        }
    };
    finished(body, off)?;
    Ok(connect)
}

/// Decodes one packet whose fixed header is `frame` and whose body is exactly `body`, in the
/// connection's version. A CONNECT decodes here too (the caller treats a second one as a
/// protocol error); use [`decode_connect`] for the first packet.
pub fn decode(version: Version, frame: Frame, body: &[u8]) -> Result<Packet, MqttError> {
    if body.len() != frame.remaining as usize {
        return Err(MqttError::BodyLength {
            got: body.len(),
            declared: frame.remaining,
        });
    }
    let total =
        u32::try_from(frame.total_len()).map_err(|_| mqtt_proto::Error::InvalidRemainingLength)?;
    match version {
        Version::V3 => {
            let header = v3::Header::new_with(frame.first, frame.remaining, total)?;
            if matches!(
                header.typ,
                v3::PacketType::Pingreq | v3::PacketType::Pingresp | v3::PacketType::Disconnect
            ) {
                return match header.build_empty_packet() {
                    Some(p) if body.is_empty() => Ok(Packet::V3(p)),
                    _ => Err(MqttError::NonEmpty(frame.packet_type())),
                };
            }
            let mut off = 0;
            let packet = PollHeader::decode_buffer(header, body, &mut off)?;
            finished(body, off)?;
            Ok(Packet::V3(packet))
        }
        Version::V5 => {
            let header = v5::Header::new_with(frame.first, frame.remaining, total)?;
            if matches!(
                header.typ,
                v5::PacketType::Pingreq | v5::PacketType::Pingresp
            ) {
                return match header.build_empty_packet() {
                    Some(p) if body.is_empty() => Ok(Packet::V5(p)),
                    _ => Err(MqttError::NonEmpty(frame.packet_type())),
                };
            }
            // DISCONNECT and AUTH with no body: the crate builds them, its decoder would not
            if body.is_empty() {
                if let Some(p) = header.build_empty_packet() {
                    return Ok(Packet::V5(p));
                }
            }
            let mut off = 0;
            let packet = PollHeader::decode_buffer(header, body, &mut off)?;
            finished(body, off)?;
            Ok(Packet::V5(packet))
        }
    }
}

fn finished(body: &[u8], off: usize) -> Result<(), MqttError> {
    match body.len().checked_sub(off) {
        Some(0) => Ok(()),
        Some(n) => Err(MqttError::TrailingBytes(n)),
        // the crate read past the end: cannot happen (its readers are bounds-checked), but a
        // malformed packet is the only honest answer if it ever did
        None => Err(MqttError::BodyLength {
            got: body.len(),
            declared: u32::try_from(off).unwrap_or(u32::MAX),
        }),
    }
}

#[cfg(test)]
#[path = "decode_tests.rs"]
mod tests;
