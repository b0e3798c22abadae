//! Publish bodies (`POST /publish/`): `proto::publish::parse_publish_body` on arbitrary bytes.
//! Checks that it never panics, that accepted items keep the documented invariants, and that
//! `encode_items` writes a body that parses back to equal items.
#![no_main]

use gripway_proto::publish::{encode_items, parse_publish_body, PublishLimits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = PublishLimits::default();
    let Ok(items) = parse_publish_body(data, &limits) else {
        return;
    };
    assert!(items.len() <= limits.max_items);
    for item in &items {
        assert!(!item.channel.is_empty());
        assert!(item.channel.len() <= limits.max_channel_bytes);
        assert!(!item.formats.is_empty());
    }
    let encoded = encode_items(&items);
    let again = parse_publish_body(&encoded, &limits).unwrap_or_else(|e| {
        panic!(
            "re-encoded body refused: {e}\n{}",
            String::from_utf8_lossy(&encoded)
        )
    });
    assert_eq!(items, again);
});
