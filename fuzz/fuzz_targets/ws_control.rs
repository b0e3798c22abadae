//! GRIP WebSocket control messages from an origin (`c:{...}`): `proto::ws_control`'s
//! `parse_control_message` on arbitrary bytes, and `parse_grip_extension` on the same bytes
//! read as `Sec-WebSocket-Extensions` lines. Checks that nothing panics and that accepted
//! messages keep the documented bounds.
#![no_main]

use gripway_proto::ws_control::{
    parse_control_message, parse_grip_extension, ControlLimits, ControlMessage, TimedMessage,
    MAX_META_NAME_BYTES, MAX_META_VALUE_BYTES, MAX_PREV_ID_BYTES, MAX_SESSION_ID_BYTES,
    MAX_TIMEOUT_SECS,
};
use libfuzzer_sys::fuzz_target;

fn check_timed(message: &TimedMessage, limits: &ControlLimits) {
    assert!(message.content.len() <= limits.max_content_bytes);
    assert!((1..=MAX_TIMEOUT_SECS).contains(&message.timeout_secs));
}

fuzz_target!(|data: &[u8]| {
    let _ = parse_grip_extension(data.split(|&b| b == b'\n'));
    let json = data.strip_prefix(b"c:").unwrap_or(data);
    let limits = ControlLimits::default();
    match parse_control_message(json, &limits) {
        Ok(ControlMessage::Subscribe {
            channel,
            filters,
            prev_id,
        }) => {
            assert!(!channel.is_empty() && channel.len() <= limits.max_channel_bytes);
            assert!(filters.len() <= limits.max_filters);
            assert!(prev_id.is_none_or(|p| {
                !p.is_empty() && p.len() <= MAX_PREV_ID_BYTES && !p.chars().any(char::is_control)
            }));
        }
        Ok(ControlMessage::Unsubscribe { channel }) => {
            assert!(!channel.is_empty() && channel.len() <= limits.max_channel_bytes);
        }
        Ok(ControlMessage::Session { id: Some(id) }) => {
            assert!(!id.is_empty() && id.len() <= MAX_SESSION_ID_BYTES);
        }
        Ok(ControlMessage::SetMeta { name, value }) => {
            assert!(!name.is_empty() && name.len() <= MAX_META_NAME_BYTES);
            assert!(value.is_none_or(|v| v.len() <= MAX_META_VALUE_BYTES));
        }
        Ok(ControlMessage::KeepAlive(Some(message)) | ControlMessage::SendDelayed(message)) => {
            check_timed(&message, &limits);
        }
        Ok(_) => {}
        Err(e) => {
            let _ = (e.to_string(), e.closes_connection());
        }
    }
});
