//! How the on-disk history lays out its keys and values (format version [`FORMAT`]).
//!
//! * **Key**: a store-wide counter, 8 bytes big-endian, one more for every entry written, so
//!   keys sort in write order and every insert lands at the end of the store's sorted
//!   memtable (an insert at a random position among up to 100,000 keys cost the publish
//!   path a fifth of its CPU in cache misses). A channel's items come back in sequence order
//!   because they are written in that order; the writer remembers each entry's key to
//!   delete it once the image has evicted all it holds (`disk_writer.rs`).
//! * **Value: a chunk** (version 4): one channel's consecutive items from one append, at
//!   most [`CHUNK_ITEMS`] of them and closed once it reaches [`CHUNK_BYTES`]: the mark byte
//!   `4`, the wall-clock time they were appended (milliseconds since the Unix epoch, 8 bytes
//!   big-endian), the first one's sequence number on its channel (8; the others follow one
//!   by one), the channel name's length (4) and bytes, then for each item its length
//!   (LEB128) and the item in one of two forms:
//!   - the message's wire bytes, for the common shape: a kind byte (`1`: an `http-stream`
//!     send, `2`: a `ws-message` send, `3`: both), the id's length (4 bytes big-endian) and
//!     bytes, then the HTTP/1.1 chunk (kinds 1 and 3; for 3 preceded by its length, 4 bytes)
//!     and/or the WebSocket frame, exactly as [`Message`] keeps them: no item is rebuilt and
//!     nothing is escaped on the publish path. The common shape is an item with an id and no
//!     prev-id, meta, no-seq, `http-response`, `mqtt-message` or content filters, whose
//!     formats are non-empty sends;
//!   - otherwise the item as a publish body (`{"items":[…]}`, so its first byte is `{`)
//!     written by [`gripway_proto::publish::encode_items`] — the encoder the parser is
//!     tested to read back to an equal item.
//!
//!   Either way a stored item comes back exactly as published (channel, id, prev-id, meta,
//!   no-seq and every format). One entry per chunk, not per item, is what makes a 100-item
//!   append four memtable inserts and, once the bounds evict, four deletions instead of 200.
//! * **Version 3 values** (one item per key: the time, the sequence number, the channel,
//!   then the item with no length) are read as chunks of one item, where they are: a
//!   version 3 value's first byte is the top byte of its time, 0 for any time before the
//!   year 2,000,000, never the chunk mark. A version 3 store is marked version 4 at open and
//!   nothing is rewritten; its entries go as the bounds evict them.
//! * **Older layouts** (migrated at open, `disk_migrate.rs`): versions 1 and 2 keyed an item
//!   by its channel name, a `0xFF` byte (never part of UTF-8) and its sequence number
//!   (8 bytes big-endian), always 9 bytes or more, so an old key is never mistaken for a
//!   version 3 key (exactly 8); their value was the time and the item (version 1: always a
//!   publish body), which is a version 3 value's tail unchanged, so the migration writes
//!   version 3 values.
//! * **Channel row** (key: the name): generation (4 bytes), next sequence (8), truncated
//!   (1), emptied-at wall time (8), then the last id's bytes (absent: no last id).

use std::sync::Arc;

use bytes::Bytes;
use gripway_proto::publish::{
    encode_items, parse_publish_body, Formats, HttpStreamAction, HttpStreamFormat, Item,
    PublishLimits, WsAction, WsKind, WsMessageFormat,
};

use super::memory::restore::ChannelState;
use crate::message::{Message, StreamAction, WsOp};

/// The layout's version, stored under [`META_FORMAT`]. Stores of versions 1 and 2 are
/// migrated at open (`disk_migrate.rs`), version 3 is read as it is; any other version is
/// refused at open, and an older build refuses this one rather than misread it.
pub(super) const FORMAT: u64 = 4;
/// The older layouts this build migrates (keys by channel and sequence).
pub(super) const FORMAT_V1: u64 = 1;
pub(super) const FORMAT_V2: u64 = 2;
/// The layout of one item per key, whose values this build reads as chunks of one item
/// (a store of it is marked version 4 at open, nothing rewritten).
pub(super) const FORMAT_V3: u64 = 3;

/// Most items in one chunk: a chunk is deleted once its last item is evicted, so a channel
/// holds on disk at most this many items less one beyond what its bounds keep.
pub(super) const CHUNK_ITEMS: usize = 32;
/// A chunk is closed once its value reaches this many bytes (a larger item is a chunk of
/// its own), which bounds what a channel's oldest chunk can hold on disk past its bounds.
pub(super) const CHUNK_BYTES: usize = 64 * 1024;
/// A chunk value's first byte; a version 3 value's is 0 (the top byte of its time).
const CHUNK_MARK: u8 = 4;

/// Item value kinds (the byte after the time); a publish body starts with `{`.
const KIND_STREAM: u8 = 1;
const KIND_WS: u8 = 2;
const KIND_BOTH: u8 = 3;

/// Meta keys.
pub(super) const META_FORMAT: &str = "format";
/// The core's epoch.
pub(super) const META_EPOCH: &str = "epoch";
/// The generation the next new channel gets.
pub(super) const META_NEXT_GEN: &str = "next_gen";
/// 1 once any channel was forgotten.
pub(super) const META_FORGOT: &str = "forgot";
/// 1 while a migration from an older layout is under way (set with the new version in the
/// migration's first write, removed with its last): an interrupted one resumes at open.
pub(super) const META_MIGRATING: &str = "migrating";

/// An old (version 1 and 2) item key's channel prefix: its name and the separator.
#[cfg(test)]
pub(super) fn old_channel_prefix(channel: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(channel.len() + 1);
    k.extend_from_slice(channel.as_bytes());
    k.push(0xff);
    k
}

/// An old (version 1 and 2) item key: the channel name, `0xFF`, the sequence number.
#[cfg(test)]
pub(super) fn old_item_key(channel: &str, seq: u64) -> Vec<u8> {
    let mut k = old_channel_prefix(channel);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The channel name and sequence number of an old (version 1 and 2) item key.
pub(super) fn split_old_key(key: &[u8]) -> Option<(&str, u64)> {
    let split = key.len().checked_sub(9)?;
    let (name, rest) = key.split_at(split);
    if rest[0] != 0xff {
        return None;
    }
    let seq = u64::from_be_bytes(rest[1..].try_into().ok()?);
    Some((std::str::from_utf8(name).ok()?, seq))
}

/// The key of the item written `n`th.
pub(super) fn item_key(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

/// The counter of a version 3 item key; None for any other key (an old one is longer).
pub(super) fn split_item_key(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}

/// The head of a version 3 item value, before the item: time, sequence, channel.
fn put_head(buf: &mut Vec<u8>, wall_ms: u64, seq: u64, channel: &str) {
    buf.clear();
    buf.extend_from_slice(&wall_ms.to_be_bytes());
    buf.extend_from_slice(&seq.to_be_bytes());
    buf.extend_from_slice(&(channel.len() as u32).to_be_bytes());
    buf.extend_from_slice(channel.as_bytes());
}

/// A version 3 item value from an old one (time then item) and the old key's channel and
/// sequence, into `buf` (cleared first); None if the old value is too short to hold a time.
pub(super) fn value_from_old(buf: &mut Vec<u8>, channel: &str, seq: u64, old: &[u8]) -> Option<()> {
    let (wall, item) = (old.get(..8)?, old.get(8..)?);
    put_head(buf, u64::from_be_bytes(wall.try_into().ok()?), seq, channel);
    buf.extend_from_slice(item);
    Some(())
}

/// A version 3 item value — its append time, its sequence number, its channel and the
/// message — into `buf` (cleared first). This build writes chunks ([`start_chunk`]); a
/// version 3 value is what the migration from layouts 1 and 2 writes, and what a chunk of
/// one item was before version 4.
#[cfg(test)]
pub(super) fn encode_item_into(buf: &mut Vec<u8>, wall_ms: u64, seq: u64, msg: &Message) {
    put_head(buf, wall_ms, seq, &msg.channel);
    match wire_parts(msg) {
        Some(parts) => put_wire(buf, parts),
        None => buf.extend_from_slice(&encode_items(&[msg.to_item()])),
    }
}

/// Starts a chunk value (version 4) in `buf` (cleared first): the chunk mark, then the
/// head of its items (their append time, the first one's sequence number, their channel).
/// Items follow with [`push_chunk_item`].
pub(super) fn start_chunk(buf: &mut Vec<u8>, wall_ms: u64, first_seq: u64, channel: &str) {
    buf.clear();
    buf.push(CHUNK_MARK);
    buf.extend_from_slice(&wall_ms.to_be_bytes());
    buf.extend_from_slice(&first_seq.to_be_bytes());
    buf.extend_from_slice(&(channel.len() as u32).to_be_bytes());
    buf.extend_from_slice(channel.as_bytes());
}

/// Adds the next item to a chunk begun with [`start_chunk`]: its encoded length (LEB128),
/// then the item in the same form as in a version 3 value.
pub(super) fn push_chunk_item(buf: &mut Vec<u8>, msg: &Message) {
    match wire_parts(msg) {
        Some(parts) => {
            put_varint(buf, wire_len(parts) as u64);
            put_wire(buf, parts);
        }
        None => {
            let body = encode_items(&[msg.to_item()]);
            put_varint(buf, body.len() as u64);
            buf.extend_from_slice(&body);
        }
    }
}

/// The wire form of an item (see the module doc).
fn put_wire(buf: &mut Vec<u8>, (id, chunk, frame): WireParts<'_>) {
    let kind = match (chunk, frame) {
        (Some(_), None) => KIND_STREAM,
        (None, Some(_)) => KIND_WS,
        _ => KIND_BOTH,
    };
    buf.push(kind);
    buf.extend_from_slice(&(id.len() as u32).to_be_bytes());
    buf.extend_from_slice(id.as_bytes());
    if let Some(chunk) = chunk {
        if frame.is_some() {
            buf.extend_from_slice(&(chunk.len() as u32).to_be_bytes());
        }
        buf.extend_from_slice(chunk);
    }
    if let Some(frame) = frame {
        buf.extend_from_slice(frame);
    }
}

/// How many bytes [`put_wire`] writes for these parts.
fn wire_len((id, chunk, frame): WireParts<'_>) -> usize {
    let both = if chunk.is_some() && frame.is_some() {
        4
    } else {
        0
    };
    1 + 4 + id.len() + both + chunk.map_or(0, <[u8]>::len) + frame.map_or(0, <[u8]>::len)
}

fn put_varint(buf: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        buf.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    buf.push(n as u8);
}

fn take_varint(rest: &mut &[u8]) -> Result<u64, String> {
    let mut n = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, tail) = rest.split_first().ok_or("chunk cut short")?;
        *rest = tail;
        n |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(n);
        }
    }
    Err("bad item length in chunk".into())
}

/// An id, and a chunk and a frame (either may be absent).
type WireParts<'a> = (&'a str, Option<&'a [u8]>, Option<&'a [u8]>);

/// The id, chunk and frame of a message of the common shape (see the module doc), which
/// they describe in full; None for any other.
fn wire_parts(msg: &Message) -> Option<WireParts<'_>> {
    let id = msg.id()?;
    if msg.prev_id().is_some()
        || !msg.meta().is_empty()
        || msg.no_seq()
        || msg.http_response().is_some()
        || msg.has_mqtt_message()
        || id.len() > u32::MAX as usize
    {
        return None;
    }
    let chunk = match msg.http_stream() {
        None => None,
        Some(f) if f.action == StreamAction::Send && f.content_filters.is_empty() => Some(
            msg.stream_chunk()
                .filter(|c| c.len() <= u32::MAX as usize)?,
        ),
        Some(_) => return None,
    };
    let frame = match msg.ws_message() {
        None => None,
        Some(f) if matches!(f.action, WsOp::Send(_)) && f.content_filters.is_empty() => {
            Some(msg.ws_frame()?)
        }
        Some(_) => return None,
    };
    (chunk.is_some() || frame.is_some()).then_some((id, chunk, frame))
}

/// An item read back from its stored value.
pub(super) struct Stored<'a> {
    /// When it was appended (wall-clock milliseconds).
    pub(super) wall: u64,
    /// Its sequence number on its channel.
    pub(super) seq: u64,
    /// Its channel's name.
    pub(super) channel: &'a str,
}

/// The head of a stored value (time, sequence, channel) and the rest (the item), without
/// decoding the item: what the restore needs to place it.
pub(super) fn decode_head(value: &[u8]) -> Result<(Stored<'_>, &[u8]), String> {
    let mut rest = value;
    let wall = u64::from_be_bytes(take(&mut rest, 8)?.try_into().map_err(|_| "time")?);
    let seq = u64::from_be_bytes(take(&mut rest, 8)?.try_into().map_err(|_| "sequence")?);
    let n = take_len(&mut rest)?;
    let channel = std::str::from_utf8(take(&mut rest, n)?).map_err(|_| "channel is not UTF-8")?;
    Ok((Stored { wall, seq, channel }, rest))
}

/// A stored value read back up to its items: a version 4 chunk, or a version 3 value read
/// as a chunk of one item.
pub(super) struct Chunk<'a> {
    /// When its items were appended (wall-clock milliseconds).
    pub(super) wall: u64,
    /// The sequence number of its first item; the others follow one by one.
    pub(super) first_seq: u64,
    /// Its channel's name.
    pub(super) channel: &'a str,
    /// Each item's part (what [`decode_body_of`] reads), in order; never empty.
    pub(super) bodies: Vec<&'a [u8]>,
}

/// A stored value's head and the item part of each of its items, without decoding the
/// items: what the restore needs to place them. A value starting with [`CHUNK_MARK`] is a
/// chunk; one starting with 0 (the first byte of any wall-clock time before the year
/// 2,000,000) is a version 3 value of one item.
pub(super) fn decode_chunk(value: &[u8]) -> Result<Chunk<'_>, String> {
    match value.first() {
        Some(0) => {
            let (head, body) = decode_head(value)?;
            Ok(Chunk {
                wall: head.wall,
                first_seq: head.seq,
                channel: head.channel,
                bodies: vec![body],
            })
        }
        Some(&CHUNK_MARK) => {
            let (head, mut rest) = decode_head(&value[1..])?;
            let mut bodies = Vec::new();
            while !rest.is_empty() {
                let n = take_varint(&mut rest)?;
                let n = usize::try_from(n).map_err(|_| "item length too large")?;
                bodies.push(take(&mut rest, n)?);
            }
            if bodies.is_empty() || bodies.len() > CHUNK_ITEMS {
                return Err(format!("chunk of {} items", bodies.len()));
            }
            Ok(Chunk {
                wall: head.wall,
                first_seq: head.seq,
                channel: head.channel,
                bodies,
            })
        }
        _ => Err("not an item value".into()),
    }
}

/// The message of `channel` from the item part of a stored value (after its head).
pub(super) fn decode_body_of(channel: &str, body: &[u8]) -> Result<Arc<Message>, String> {
    let item = match body.first() {
        None => return Err("item value holds no item".into()),
        Some(&(KIND_STREAM | KIND_WS | KIND_BOTH)) => decode_wire(channel, body)?,
        Some(_) => decode_body(body)?,
    };
    if item.channel != channel {
        return Err("item of another channel".into());
    }
    Ok(Message::new(item))
}

/// An item's head and message, rebuilt from its stored value.
#[cfg(test)]
pub(super) fn decode_item(value: &[u8]) -> Result<(Stored<'_>, Arc<Message>), String> {
    let (head, body) = decode_head(value)?;
    let msg = decode_body_of(head.channel, body)?;
    Ok((head, msg))
}

/// A publish body of one item.
fn decode_body(body: &[u8]) -> Result<Item, String> {
    // what was accepted once is read back whatever the limits are now
    let limits = PublishLimits {
        max_content_bytes: usize::MAX,
        max_items: 1,
        max_channel_bytes: usize::MAX,
        max_id_bytes: usize::MAX,
    };
    let mut items = parse_publish_body(body, &limits).map_err(|e| e.to_string())?;
    match items.pop() {
        Some(item) if items.is_empty() => Ok(item),
        _ => Err("item value does not hold exactly one item".into()),
    }
}

fn take<'a>(rest: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
    if rest.len() < n {
        return Err("item value cut short".into());
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Ok(head)
}

fn take_len(rest: &mut &[u8]) -> Result<usize, String> {
    let b = take(rest, 4)?;
    Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
}

/// The item of a value in wire form (kind byte first).
fn decode_wire(channel: &str, body: &[u8]) -> Result<Item, String> {
    let kind = body[0];
    let mut rest = &body[1..];
    let id_len = take_len(&mut rest)?;
    let id = std::str::from_utf8(take(&mut rest, id_len)?).map_err(|_| "id is not UTF-8")?;
    let (chunk, frame) = match kind {
        KIND_STREAM => (Some(rest), None),
        KIND_WS => (None, Some(rest)),
        _ => {
            let n = take_len(&mut rest)?;
            (Some(take(&mut rest, n)?), Some(rest))
        }
    };
    let http_stream = chunk
        .map(|c| -> Result<_, String> {
            Ok(HttpStreamFormat {
                action: HttpStreamAction::Send(Bytes::copy_from_slice(chunk_content(c)?)),
                content_filters: Vec::new(),
            })
        })
        .transpose()?;
    let ws_message = frame
        .map(|f| -> Result<_, String> {
            let (kind, content) = frame_content(f)?;
            Ok(WsMessageFormat {
                action: WsAction::Send {
                    kind,
                    content: Bytes::copy_from_slice(content),
                },
                content_filters: Vec::new(),
            })
        })
        .transpose()?;
    Ok(Item {
        channel: channel.to_owned(),
        id: Some(id.to_owned()),
        prev_id: None,
        meta: Vec::new(),
        no_seq: false,
        formats: Formats {
            http_stream,
            http_response: None,
            ws_message,
            mqtt_message: None,
        },
    })
}

/// The content of one HTTP/1.1 chunk (`<hex len>\r\n<content>\r\n`), checked whole.
fn chunk_content(chunk: &[u8]) -> Result<&[u8], String> {
    let bad = || "bad stored chunk".to_string();
    let digits = chunk.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    let hex = std::str::from_utf8(&chunk[..digits]).map_err(|_| bad())?;
    let len = usize::from_str_radix(hex, 16).map_err(|_| bad())?;
    let body = chunk
        .get(digits..)
        .and_then(|r| r.strip_prefix(b"\r\n"))
        .and_then(|r| r.strip_suffix(b"\r\n"))
        .ok_or_else(bad)?;
    if body.len() != len || len == 0 {
        return Err(bad());
    }
    Ok(body)
}

/// The kind and payload of one unmasked, final WebSocket data or ping/pong frame.
fn frame_content(frame: &[u8]) -> Result<(WsKind, &[u8]), String> {
    let bad = || "bad stored frame".to_string();
    let (&b0, rest) = frame.split_first().ok_or_else(bad)?;
    let kind = match b0 {
        0x81 => WsKind::Text,
        0x82 => WsKind::Binary,
        0x89 => WsKind::Ping,
        0x8a => WsKind::Pong,
        _ => return Err(bad()),
    };
    let (&b1, mut rest) = rest.split_first().ok_or_else(bad)?;
    let len = match b1 {
        126 => u16::from_be_bytes(take(&mut rest, 2)?.try_into().map_err(|_| bad())?) as u64,
        127 => u64::from_be_bytes(take(&mut rest, 8)?.try_into().map_err(|_| bad())?),
        n if n < 126 => u64::from(n),
        _ => return Err(bad()), // masked
    };
    if rest.len() as u64 != len {
        return Err(bad());
    }
    Ok((kind, rest))
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
    use gripway_proto::publish::{
        device_item, DevicePublish, MqttMessageFormat, MqttProperties, StreamForm,
    };

    use super::*;

    #[test]
    fn keys_sort_in_write_order_and_old_keys_are_never_taken_for_new_ones() {
        assert!(item_key(1) < item_key(2) && item_key(255) < item_key(256));
        assert_eq!(split_item_key(&item_key(7)), Some(7));
        assert_eq!(split_item_key(b"short"), None);
        let a = old_item_key("a", 2);
        assert!(old_item_key("a", 1) < a && a < old_item_key("a", 256));
        assert!(a.starts_with(&old_channel_prefix("a")));
        assert!(!old_item_key("ab", 0).starts_with(&old_channel_prefix("a")));
        assert_eq!(split_old_key(&a), Some(("a", 2)));
        assert_eq!(split_old_key(b"short"), None);
        // an old key is at least 9 bytes (even for an empty name): never a new key
        assert_eq!(split_item_key(&old_item_key("", 3)), None);
        assert_eq!(split_old_key(&item_key(3)), None);
    }

    #[test]
    fn an_old_value_becomes_a_new_one_with_its_channel_and_sequence() {
        let msg = Message::new(item(Some("i"), Some(b"data"), None));
        let mut new = Vec::new();
        encode_item_into(&mut new, 42, 9, &msg);
        // the old layout: the time, then the same item part
        let (_, body) = decode_head(&new).unwrap_or_else(|e| panic!("{e}"));
        let mut old = 42u64.to_be_bytes().to_vec();
        old.extend_from_slice(body);
        let mut migrated = Vec::new();
        assert!(value_from_old(&mut migrated, "ch", 9, &old).is_some());
        assert_eq!(migrated, new);
        assert!(value_from_old(&mut migrated, "ch", 9, &old[..5]).is_none());
    }

    fn item(id: Option<&str>, stream: Option<&[u8]>, ws: Option<(WsKind, &[u8])>) -> Item {
        Item {
            channel: "ch".into(),
            id: id.map(Into::into),
            prev_id: None,
            meta: vec![],
            no_seq: false,
            formats: Formats {
                http_stream: stream.map(|c| HttpStreamFormat {
                    action: HttpStreamAction::Send(Bytes::copy_from_slice(c)),
                    content_filters: vec![],
                }),
                http_response: None,
                ws_message: ws.map(|(kind, c)| WsMessageFormat {
                    action: WsAction::Send {
                        kind,
                        content: Bytes::copy_from_slice(c),
                    },
                    content_filters: vec![],
                }),
                mqtt_message: None,
            },
        }
    }

    fn round_trip(item: Item) -> u8 {
        let msg = Message::new(item.clone());
        let mut v = Vec::new();
        encode_item_into(&mut v, 42, 5, &msg);
        let (head, back) = decode_item(&v).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (head.wall, head.seq, head.channel, back.to_item()),
            (42, 5, "ch", item)
        );
        v[8 + 8 + 4 + 2]
    }

    #[test]
    fn common_items_are_stored_as_their_wire_bytes_and_come_back_whole() {
        let big = vec![b'z'; 70_000];
        assert_eq!(round_trip(item(Some("i"), Some(b"data: x\n\n"), None)), 1);
        assert_eq!(round_trip(item(Some("i"), Some(&big), None)), 1);
        for kind in [WsKind::Text, WsKind::Binary, WsKind::Ping, WsKind::Pong] {
            assert_eq!(
                round_trip(item(Some("\u{e9}"), None, Some((kind, b"hi")))),
                2
            );
        }
        assert_eq!(
            round_trip(item(Some(""), None, Some((WsKind::Text, &big[..200])))),
            2
        );
        assert_eq!(
            round_trip(item(Some("i"), None, Some((WsKind::Binary, &big)))),
            2
        );
        assert_eq!(
            round_trip(item(Some("i"), Some(b"s"), Some((WsKind::Text, b"w")))),
            3
        );
        // everything else is a publish body
        let mut odd = item(Some("i"), Some(b"s"), None);
        odd.prev_id = Some("p".into());
        assert_eq!(round_trip(odd), b'{');
        let mut odd = item(Some("i"), None, Some((WsKind::Text, b"w")));
        odd.meta = vec![("k".into(), "v".into())];
        assert_eq!(round_trip(odd), b'{');
        assert_eq!(round_trip(item(Some("i"), Some(b""), None)), b'{');
        assert_eq!(round_trip(item(None, Some(b"s"), None)), b'{');
        // an item with an `mqtt-message` is a publish body too, and keeps the format
        for (payload, form) in [(&b"21.5"[..], StreamForm::Sse), (b"\xff", StreamForm::Raw)] {
            let publish = DevicePublish {
                topic: "sensors/t".into(),
                payload: Bytes::copy_from_slice(payload),
                qos: 1,
                retain: true,
                properties: MqttProperties {
                    user: vec![("k".into(), "v".into())],
                    ..MqttProperties::default()
                },
            };
            let device = device_item("ch".into(), Some("m".into()), publish, form);
            assert_eq!(round_trip(device), b'{');
        }
        let mut only = item(Some("i"), None, None);
        only.formats.mqtt_message = Some(MqttMessageFormat {
            content: Bytes::from_static(b"x"),
            ..MqttMessageFormat::default()
        });
        assert_eq!(round_trip(only), b'{');
    }

    #[test]
    fn damaged_wire_values_are_errors_not_panics() {
        let msg = Message::new(item(Some("id"), Some(b"abc"), Some((WsKind::Text, b"w"))));
        let mut v = Vec::new();
        encode_item_into(&mut v, 1, 1, &msg);
        for cut in 0..v.len() {
            assert!(decode_item(&v[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = v.clone();
        let n = bad.len();
        bad[n - 3] ^= 0x80; // the frame's header
        assert!(decode_item(&bad).is_err());
        let mut bad = v.clone();
        bad[20] = 0xff; // the channel name is not UTF-8
        assert!(decode_item(&bad).is_err());
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
