//! Stand-ins for what proto is about to provide (the PUBLISH head, topic matching); removed
//! when those land.

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
