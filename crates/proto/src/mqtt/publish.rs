//! The per-subscriber head of an outgoing PUBLISH, so that the fan-out can send one shared
//! property block and payload with a few bytes of its own per subscriber (docs/mqtt-design.md
//! §2.4). A PUBLISH on the wire is
//!
//! ```text
//! [first byte][remaining length, 1-4 B][topic length, 2 B] [topic] [packet id, 2 B, QoS > 0]
//! [v5 only: property block, its own length included] [payload]
//! ```
//!
//! [`publish_head`] returns the two pieces that differ per subscriber: the [`PublishHead`] (first
//! byte, remaining length, topic length) and the [`PublishTail`] (the packet id, or nothing);
//! the caller writes `head, topic, tail, props, payload`, in that order, typically as one
//! vectored write. The topic, property block and payload are the caller's, borrowed and shared.
//! This is the one PUBLISH encoder written here rather than in `mqtt-proto` (whose variable
//! integer writer is not public); a property test checks it byte for byte against the crate's
//! own `Publish` encoding, for both versions. [`encode_v5_props`] encodes a property block
//! once, through the crate.

use mqtt_proto::{v5, Encodable, Error};

use super::decode::{MqttError, Version};

/// The largest remaining length MQTT can express (4 variable-length bytes): 268,435,455.
pub const MAX_REMAINING: usize = 268_435_455;

/// The fixed header and topic length of one PUBLISH: at most 7 bytes, built on the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishHead {
    bytes: [u8; 16],
    len: u8,
}

impl PublishHead {
    /// The bytes to write first: first byte, remaining length, topic length (3..=7 bytes).
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// What follows the topic and comes before the property block: the packet id for QoS 1 and 2,
/// nothing for QoS 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishTail {
    pid: [u8; 2],
    len: u8,
}

impl PublishTail {
    /// The bytes to write after the topic: the big-endian packet id, or empty.
    pub fn as_slice(&self) -> &[u8] {
        &self.pid[..usize::from(self.len)]
    }

    /// The packet id bytes (big-endian), when the PUBLISH has one.
    pub fn pid(&self) -> Option<[u8; 2]> {
        (self.len == 2).then_some(self.pid)
    }
}

/// Builds the per-subscriber parts of a PUBLISH whose topic is `topic_len` bytes, whose
/// property block (v5; 0 for v3) is `props_len` bytes including its own length prefix, and
/// whose payload is `payload_len` bytes. `pid` must be given exactly when `qos` is 1 or 2, and
/// must not be 0.
///
/// Refused, never a panic: a QoS over 2 (`InvalidQos`), a missing, zero or unexpected packet id
/// (`ZeroPid`, `InvalidHeader`), a v3 property block or an empty v5 one (`InvalidHeader`: v5
/// always has at least the one-byte length 0), a topic over 65,535 bytes (`InvalidTopicName`),
/// and a packet whose remaining length would exceed [`MAX_REMAINING`] (`InvalidRemainingLength`).
/// The caller still compares [`publish_total_len`] with the client's own maximum packet size.
#[allow(
    clippy::too_many_arguments,
    reason = "one plain value per header field, called once per delivery; a struct would only rename them"
)]
pub fn publish_head(
    version: Version,
    qos: u8,
    dup: bool,
    retain: bool,
    topic_len: usize,
    pid: Option<u16>,
    props_len: usize,
    payload_len: usize,
) -> Result<(PublishHead, PublishTail), MqttError> {
    if qos > 2 {
        return Err(Error::InvalidQos(qos).into());
    }
    let tail = match (qos, pid) {
        (0, None) => PublishTail {
            pid: [0; 2],
            len: 0,
        },
        (_, Some(0)) => return Err(Error::ZeroPid.into()),
        (1 | 2, Some(pid)) => PublishTail {
            pid: pid.to_be_bytes(),
            len: 2,
        },
        (0, Some(_)) => return Err(Error::InvalidHeader.into()),
        _ => return Err(Error::ZeroPid.into()),
    };
    match version {
        Version::V3 if props_len != 0 => return Err(Error::InvalidHeader.into()),
        Version::V5 if props_len == 0 => return Err(Error::InvalidHeader.into()),
        _ => {}
    }
    let Ok(topic_len16) = u16::try_from(topic_len) else {
        return Err(Error::InvalidTopicName("topic longer than 65,535 bytes".into()).into());
    };
    let remaining = remaining_len(topic_len, qos > 0, props_len, payload_len)
        .ok_or(Error::InvalidRemainingLength)?;

    let mut bytes = [0u8; 16];
    bytes[0] = 0x30 | (u8::from(dup) << 3) | (qos << 1) | u8::from(retain);
    let mut len = 1 + write_var_int(&mut bytes[1..5], remaining);
    bytes[len..len + 2].copy_from_slice(&topic_len16.to_be_bytes());
    len += 2;
    let head = PublishHead {
        bytes,
        // at most 1 + 4 + 2
        len: len as u8,
    };
    Ok((head, tail))
}

/// The whole PUBLISH's length in bytes, header included, for a check against a client's
/// maximum packet size (v5 CONNECT `max_packet_size`). Arguments as for [`publish_head`], with
/// `has_pid` for QoS > 0. A packet MQTT cannot express at all (remaining length over
/// [`MAX_REMAINING`]) gives `usize::MAX`, which fails any such check.
pub fn publish_total_len(
    topic_len: usize,
    has_pid: bool,
    props_len: usize,
    payload_len: usize,
) -> usize {
    remaining_len(topic_len, has_pid, props_len, payload_len)
        .and_then(|r| mqtt_proto::total_len(r).ok())
        .unwrap_or(usize::MAX)
}

/// Encodes a v5 PUBLISH property block through the crate, its length prefix included: what
/// the fan-out shares between subscribers (`[0x00]` for no properties). The crate panics when a
/// block's length passes 268,435,455 bytes, so a block whose variable parts alone (strings, user
/// properties, correlation data) pass [`MAX_REMAINING`] is refused before it is asked.
pub fn encode_v5_props(props: &v5::PublishProperties) -> Result<Vec<u8>, MqttError> {
    let strings = props.response_topic.as_ref().map_or(0, |t| 3 + t.len())
        + props.correlation_data.as_ref().map_or(0, |d| 3 + d.len())
        + props.content_type.as_ref().map_or(0, |c| 3 + c.len())
        + props
            .user_properties
            .iter()
            .map(|p| 5 + p.name.len() + p.value.len())
            .sum::<usize>();
    // the fixed-size properties add at most 20 bytes, and the length prefix 4
    if strings > MAX_REMAINING - 24 {
        return Err(Error::InvalidRemainingLength.into());
    }
    let mut out = Vec::with_capacity(props.encode_len());
    props.encode(&mut out)?;
    Ok(out)
}

/// `2 + topic + (pid) + props + payload`, or `None` past MQTT's maximum (or `usize`'s).
fn remaining_len(
    topic_len: usize,
    has_pid: bool,
    props_len: usize,
    payload_len: usize,
) -> Option<usize> {
    let fixed = 2 + if has_pid { 2 } else { 0 };
    topic_len
        .checked_add(fixed)?
        .checked_add(props_len)?
        .checked_add(payload_len)
        .filter(|&r| r <= MAX_REMAINING)
}

/// Writes `value` (≤ `MAX_REMAINING`) as an MQTT variable byte integer into `out` (4 bytes);
/// returns how many bytes it took.
fn write_var_int(out: &mut [u8], mut value: usize) -> usize {
    let mut n = 0;
    loop {
        let byte = (value % 128) as u8;
        value /= 128;
        out[n] = if value > 0 { byte | 0x80 } else { byte };
        n += 1;
        if value == 0 || n == out.len() {
            return n;
        }
    }
}

#[cfg(test)]
#[path = "publish_tests.rs"]
mod tests;
