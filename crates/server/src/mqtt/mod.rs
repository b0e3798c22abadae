//! MQTT clients: devices connect over MQTT 3.1.1 or 5.0 and share channels with browsers and
//! apps. A connection is another transport on the seam: accepted by [`crate::conn`]'s accept
//! loop (plain TCP or TLS), run by [`session`] on a task of its own, written to by the
//! broker's fan-out through [`subscriber::MqttSub`] and the shared sink. Packets are decoded
//! and encoded by [`gripway_proto::mqtt`]; who may do what is decided by the demo origin
//! ([`authorize`]) or the route's origin over HTTP ([`origin`]), and acted on in [`decide`].
//!
//! A device's publish becomes an item ([`device_item`]) published as the publish API does,
//! with history, ordering and the cluster, so SSE, WebSocket and long-poll subscribers of
//! the channel get it too.

mod authorize;
mod decide;
mod origin;
mod resume;
mod retained;
pub(crate) mod session;
mod sessions;
mod share;
mod subscriber;
mod will;
pub(crate) mod ws;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use gripway_proto::mqtt::{from_v5, InPublish};
use gripway_proto::publish::{self, DevicePublish, Item, StreamForm};

pub(crate) use session::run;
pub(crate) use sessions::Sessions;
pub(crate) use share::Groups;
pub(crate) use ws::MqttWsPlan;

/// Bytes of an MQTT subscriber's state, for the budget test.
#[cfg(test)]
pub(crate) const STATE_SIZE: usize = std::mem::size_of::<subscriber::MqttSub>();

/// A fresh item id: unique without coordination (a random per-process prefix, a counter).
fn next_id() -> String {
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| uuid::Uuid::new_v4().as_u64_pair().0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    id_text(*prefix, n)
}

/// `m`, `prefix` as 16 hex digits, then `n` in hex without leading zeros: written by hand,
/// since `format!` cost 1% of the CPU of a device-publishing load.
fn id_text(prefix: u64, n: u64) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 33];
    out[0] = b'm';
    for (i, slot) in out[1..17].iter_mut().enumerate() {
        *slot = HEX[((prefix >> (60 - 4 * i)) & 0xf) as usize];
    }
    let digits = (64 - n.leading_zeros()).div_ceil(4).max(1) as usize;
    for i in 0..digits {
        out[17 + i] = HEX[((n >> (4 * (digits - 1 - i))) & 0xf) as usize];
    }
    // ASCII throughout
    std::str::from_utf8(&out[..17 + digits])
        .map(str::to_owned)
        .unwrap_or_default()
}

/// The item meta naming the client id of the device that published it: an MQTT 5
/// subscription with No Local set is not sent what its own client id published.
pub(crate) const PUBLISHER_META: &str = "mqtt-client-id";

/// The item a device's publish to `channel` becomes: its MQTT form, the payload as a
/// WebSocket message (text when it is UTF-8) and as an SSE event on HTTP streams, with the
/// publishing device's client id in its meta; or why it cannot be one (a v5 property MQTT
/// allows but items cannot carry).
fn device_item(
    channel: String,
    id: Option<String>,
    p: &InPublish,
    client_id: Option<&str>,
) -> Result<Item, String> {
    let publish = DevicePublish {
        topic: p.topic.to_string(),
        payload: p.payload.clone(),
        qos: p.qos,
        retain: p.retain,
        properties: p.properties.as_deref().map(from_v5).unwrap_or_default(),
    };
    if let Some(problem) = publish.problem() {
        return Err(problem);
    }
    let mut item = publish::device_item(
        channel,
        Some(id.unwrap_or_else(next_id)),
        publish,
        StreamForm::Sse,
    );
    if let Some(client_id) = client_id.filter(|c| !c.is_empty()) {
        item.meta
            .push((PUBLISHER_META.to_owned(), client_id.to_owned()));
    }
    Ok(item)
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_read_as_format_writes_them() {
        for (prefix, n) in [
            (0, 0),
            (0x0123_4567_89ab_cdef, 1),
            (u64::MAX, u64::MAX),
            (7, 0x10),
        ] {
            assert_eq!(super::id_text(prefix, n), format!("m{prefix:016x}{n:x}"));
        }
    }
}
