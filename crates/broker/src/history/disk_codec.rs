//! How the on-disk history lays out its keys and values (format version [`FORMAT`]).
//!
//! * **Item key**: the channel name, a `0xFF` byte (never part of UTF-8, so one channel's
//!   keys are exactly those under `name ++ 0xFF`), and the sequence number in big-endian
//!   order, so a channel's items sort by sequence.
//! * **Item value**: the wall-clock time it was appended (milliseconds since the Unix epoch,
//!   8 bytes big-endian), then the item as a publish body (`{"items":[…]}`) written by
//!   [`gripway_proto::publish::encode_items`] — the encoder the parser is tested to read
//!   back to an equal item, so a stored item comes back exactly as published (channel, id,
//!   prev-id, meta, no-seq and every format).
//! * **Channel row** (key: the name): generation (4 bytes), next sequence (8), truncated
//!   (1), emptied-at wall time (8), then the last id's bytes (absent: no last id).

use std::sync::Arc;

use gripway_proto::publish::{encode_items, parse_publish_body, Item, PublishLimits};

use super::memory::restore::ChannelState;
use crate::message::Message;

/// The layout's version, stored under [`META_FORMAT`]; a store written in another is
/// refused at open.
pub(super) const FORMAT: u64 = 1;

/// Meta keys.
pub(super) const META_FORMAT: &str = "format";
/// The core's epoch.
pub(super) const META_EPOCH: &str = "epoch";
/// The generation the next new channel gets.
pub(super) const META_NEXT_GEN: &str = "next_gen";
/// 1 once any channel was forgotten.
pub(super) const META_FORGOT: &str = "forgot";

/// A channel's key prefix: its name and the separator.
#[cfg(test)]
fn channel_prefix(channel: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(channel.len() + 1);
    k.extend_from_slice(channel.as_bytes());
    k.push(0xff);
    k
}

/// The key of item `seq` of `channel`.
pub(super) fn item_key(channel: &str, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(channel.len() + 9);
    k.extend_from_slice(channel.as_bytes());
    k.push(0xff);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// [`item_key`] into `buf` (cleared first).
pub(super) fn item_key_into(buf: &mut Vec<u8>, channel: &str, seq: u64) {
    buf.clear();
    buf.extend_from_slice(channel.as_bytes());
    buf.push(0xff);
    buf.extend_from_slice(&seq.to_be_bytes());
}

/// The channel name and sequence number of an item key.
pub(super) fn split_item_key(key: &[u8]) -> Option<(&str, u64)> {
    let split = key.len().checked_sub(9)?;
    let (name, rest) = key.split_at(split);
    if rest[0] != 0xff {
        return None;
    }
    let seq = u64::from_be_bytes(rest[1..].try_into().ok()?);
    Some((std::str::from_utf8(name).ok()?, seq))
}

/// The publish item a message was built from.
pub(super) fn item_of(msg: &Message) -> Item {
    msg.to_item()
}

/// An item's stored value, its append time and the message, into `buf` (cleared first).
pub(super) fn encode_item_into(buf: &mut Vec<u8>, wall_ms: u64, msg: &Message) {
    buf.clear();
    buf.extend_from_slice(&wall_ms.to_be_bytes());
    buf.extend_from_slice(&encode_items(&[item_of(msg)]));
}

/// An item's append time and message, rebuilt from its stored value.
pub(super) fn decode_item(value: &[u8]) -> Result<(u64, Arc<Message>), String> {
    if value.len() < 8 {
        return Err("item value shorter than its timestamp".into());
    }
    let (wall, body) = value.split_at(8);
    let wall = u64::from_be_bytes(wall.try_into().map_err(|_| "timestamp")?);
    // what was accepted once is read back whatever the limits are now
    let limits = PublishLimits {
        max_content_bytes: usize::MAX,
        max_items: 1,
        max_channel_bytes: usize::MAX,
        max_id_bytes: usize::MAX,
    };
    let mut items = parse_publish_body(body, &limits).map_err(|e| e.to_string())?;
    match items.pop() {
        Some(item) if items.is_empty() => Ok((wall, Message::new(item))),
        _ => Err("item value does not hold exactly one item".into()),
    }
}

/// A channel row; `emptied_wall` is the emptied-at time as wall-clock milliseconds.
pub(super) fn encode_channel(state: &ChannelState, emptied_wall: u64) -> Vec<u8> {
    let id = state.last_id.as_deref().unwrap_or("");
    let mut v = Vec::with_capacity(21 + id.len() + 1);
    v.extend_from_slice(&state.gen.to_be_bytes());
    v.extend_from_slice(&state.next_seq.to_be_bytes());
    v.push(u8::from(state.truncated));
    v.extend_from_slice(&emptied_wall.to_be_bytes());
    if state.last_id.is_some() {
        v.push(1);
        v.extend_from_slice(id.as_bytes());
    }
    v
}

/// A channel row read back: its state (with `first_seq` = `next_seq`, no items yet, and
/// `emptied_at` still in wall-clock milliseconds).
pub(super) fn decode_channel(v: &[u8]) -> Option<ChannelState> {
    if v.len() < 21 {
        return None;
    }
    let gen = u32::from_be_bytes(v[0..4].try_into().ok()?);
    let next_seq = u64::from_be_bytes(v[4..12].try_into().ok()?);
    let truncated = v[12] != 0;
    let emptied_at = u64::from_be_bytes(v[13..21].try_into().ok()?);
    let last_id = match v.get(21) {
        Some(1) => Some(Arc::from(std::str::from_utf8(&v[22..]).ok()?)),
        _ => None,
    };
    Some(ChannelState {
        gen,
        first_seq: next_seq,
        next_seq,
        truncated,
        last_id,
        emptied_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_by_channel_then_sequence_and_split_back() {
        let a = item_key("a", 2);
        assert!(item_key("a", 1) < a && a < item_key("a", 256));
        assert!(a.starts_with(&channel_prefix("a")));
        assert!(!item_key("ab", 0).starts_with(&channel_prefix("a")));
        assert_eq!(split_item_key(&a), Some(("a", 2)));
        assert_eq!(split_item_key(b"short"), None);
    }

    #[test]
    fn channel_rows_round_trip() {
        for last_id in [None, Some(Arc::from("")), Some(Arc::from("x-1"))] {
            let s = ChannelState {
                gen: 7,
                first_seq: 12,
                next_seq: 12,
                truncated: true,
                last_id,
                emptied_at: 99,
            };
            assert_eq!(decode_channel(&encode_channel(&s, 99)), Some(s));
        }
    }
}
