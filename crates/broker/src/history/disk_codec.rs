//! How the on-disk history lays out its keys and values (format version [`FORMAT`]).
//!
//! * **Item key**: the channel name, a `0xFF` byte (never part of UTF-8, so one channel's
//!   keys are exactly those under `name ++ 0xFF`), and the sequence number in big-endian
//!   order, so a channel's items sort by sequence.
//! * **Item value**: the wall-clock time it was appended (milliseconds since the Unix epoch,
//!   8 bytes big-endian), then one of:
//!   - the message's wire bytes, for the common shape (version 2): a kind byte (`1`: an
//!     `http-stream` send, `2`: a `ws-message` send, `3`: both), the id's length (4 bytes
//!     big-endian) and bytes, then the HTTP/1.1 chunk (kinds 1 and 3; for 3 preceded by its
//!     length, 4 bytes) and/or the WebSocket frame, exactly as [`Message`] keeps them: no
//!     item is rebuilt and nothing is escaped on the publish path. The common shape is an
//!     item with an id and no prev-id, meta, no-seq, `http-response` or content filters,
//!     whose formats are non-empty sends;
//!   - otherwise (and for every item in version 1) the item as a publish body
//!     (`{"items":[…]}`, so its first byte is `{`) written by
//!     [`gripway_proto::publish::encode_items`] — the encoder the parser is tested to read
//!     back to an equal item.
//!
//!   Either way a stored item comes back exactly as published (channel, id, prev-id, meta,
//!   no-seq and every format).
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

/// The layout's version, stored under [`META_FORMAT`]. A store of version 1 (item values
/// only as publish bodies) is read as it is and marked version 2 at open, so an older build
/// refuses it rather than misread it; any other version is refused at open.
pub(super) const FORMAT: u64 = 2;
/// The older layout this build still reads.
pub(super) const FORMAT_V1: u64 = 1;

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

/// An item's stored value, its append time and the message, into `buf` (cleared first).
pub(super) fn encode_item_into(buf: &mut Vec<u8>, wall_ms: u64, msg: &Message) {
    buf.clear();
    buf.extend_from_slice(&wall_ms.to_be_bytes());
    match wire_parts(msg) {
        Some((id, chunk, frame)) => {
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
        None => buf.extend_from_slice(&encode_items(&[msg.to_item()])),
    }
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

/// An item's append time and message, rebuilt from its stored value (either layout).
pub(super) fn decode_item(channel: &str, value: &[u8]) -> Result<(u64, Arc<Message>), String> {
    if value.len() < 9 {
        return Err("item value shorter than its timestamp".into());
    }
    let (wall, body) = value.split_at(8);
    let wall = u64::from_be_bytes(wall.try_into().map_err(|_| "timestamp")?);
    let item = match body[0] {
        KIND_STREAM | KIND_WS | KIND_BOTH => decode_wire(channel, body)?,
        _ => decode_body(body)?,
    };
    Ok((wall, Message::new(item)))
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
            },
        }
    }

    fn round_trip(item: Item) -> u8 {
        let msg = Message::new(item.clone());
        let mut v = Vec::new();
        encode_item_into(&mut v, 42, &msg);
        let (wall, back) = decode_item("ch", &v).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((wall, back.to_item()), (42, item));
        v[8]
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
    }

    #[test]
    fn damaged_wire_values_are_errors_not_panics() {
        let msg = Message::new(item(Some("id"), Some(b"abc"), Some((WsKind::Text, b"w"))));
        let mut v = Vec::new();
        encode_item_into(&mut v, 1, &msg);
        for cut in 0..v.len() {
            assert!(decode_item("ch", &v[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = v.clone();
        let n = bad.len();
        bad[n - 3] ^= 0x80; // the frame's header
        assert!(decode_item("ch", &bad).is_err());
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
