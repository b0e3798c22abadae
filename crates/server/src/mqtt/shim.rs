//! Stand-ins for what proto and broker are about to provide (the `mqtt-message` view of a
//! message, the PUBLISH head, topic matching); removed when those land.

use gripway_broker::{Message, WsOp};
use gripway_proto::publish::WsKind;

pub(crate) struct View<'a> {
    pub(crate) payload: &'a [u8],
    pub(crate) qos: u8,
    pub(crate) retain: bool,
    pub(crate) topic: Option<&'a str>,
    pub(crate) props: &'a [u8],
}

static NO_PROPS: [u8; 1] = [0];

pub(crate) fn view(msg: &Message) -> Option<View<'_>> {
    let payload = match msg.ws_message().map(|f| f.action) {
        Some(WsOp::Send(WsKind::Text | WsKind::Binary)) => msg.ws_content()?,
        _ => msg.stream_content()?,
    };
    Some(View {
        payload,
        qos: u8::from(msg.has_id()),
        retain: false,
        topic: None,
        props: &NO_PROPS,
    })
}

pub(crate) fn head(
    qos: u8,
    retain: bool,
    topic_len: usize,
    pid: bool,
    props_len: usize,
    payload_len: usize,
    out: &mut [u8; 16],
) -> Option<usize> {
    let mut remaining = 2 + topic_len + if pid { 2 } else { 0 } + props_len + payload_len;
    if remaining > 268_435_455 || topic_len > 65_535 {
        return None;
    }
    out[0] = 0x30 | (qos << 1) | u8::from(retain);
    let mut i = 1;
    loop {
        let mut b = (remaining % 128) as u8;
        remaining /= 128;
        if remaining > 0 {
            b |= 0x80;
        }
        out[i] = b;
        i += 1;
        if remaining == 0 {
            break;
        }
    }
    out[i..i + 2].copy_from_slice(&(topic_len as u16).to_be_bytes());
    Some(i + 2)
}

pub(crate) fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}
