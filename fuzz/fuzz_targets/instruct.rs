//! GRIP instructions from an origin: `Grip-*` headers and `application/grip-instruct` JSON,
//! through `proto::instruct::parse_instruct`. The input is `name: value` header lines, a blank
//! line, then the body (a `:status: N` line sets the status). Checks that nothing panics and
//! that what is returned keeps the documented bounds.
#![no_main]

use gripway_fuzz::split_head;
use gripway_proto::instruct::{
    decode_cstring, is_grip_response, parse_instruct, InstructLimits, MAX_TIMEOUT_SECS,
    MIN_TIMEOUT_SECS,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (status, headers, body) = split_head(data);
    let _ = is_grip_response(&headers);
    let limits = InstructLimits::default();
    if let Ok(instruct) = parse_instruct(status, &headers, body, &limits) {
        assert!(instruct.channels.len() <= limits.max_channels);
        for channel in &instruct.channels {
            assert!(channel.filters.len() <= limits.max_filters_per_channel);
        }
        assert!((MIN_TIMEOUT_SECS..=MAX_TIMEOUT_SECS).contains(&instruct.timeout_secs));
        if let Some(keep_alive) = &instruct.keep_alive {
            assert!(!keep_alive.data.is_empty());
        }
        if let Some(status) = &instruct.status {
            assert!((200..=999).contains(&status.code));
        }
        if let Some(response) = &instruct.response {
            assert!((200..=999).contains(&response.code));
            for (name, value) in &response.headers {
                assert!(http::HeaderName::from_bytes(name.as_bytes()).is_ok());
                assert!(http::HeaderValue::from_str(value).is_ok());
            }
        }
    }
    if let Ok(decoded) = decode_cstring(body) {
        assert!(decoded.len() <= body.len());
    }
});
