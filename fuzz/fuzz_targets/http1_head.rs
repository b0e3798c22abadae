//! Client request heads: `proto::http1::parse_request_head` on arbitrary bytes. Checks that
//! it never panics, that a complete head is found again when only its own bytes are given,
//! that no prefix of it parses as a different complete head, and that the accessors the
//! server calls on a parsed head never panic.
#![no_main]

use gripway_proto::http1::{parse_request_head, BodyFraming};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(Some((head, consumed))) = parse_request_head(data) else {
        return;
    };
    assert!(consumed <= data.len());
    let _ = (
        head.path_and_query(),
        head.path(),
        head.host(),
        head.keep_alive(),
        head.is_websocket_upgrade(),
        head.expects_continue(),
    );
    if let BodyFraming::Length(n) = head.framing {
        assert!(n > 0);
    }
    // The head alone parses to the same head: the parser never looks past its end.
    let (again, consumed_again) = parse_request_head(&data[..consumed])
        .expect("the head's own bytes parse")
        .expect("the head's own bytes are complete");
    assert_eq!(consumed_again, consumed);
    assert_eq!(again.target, head.target);
    assert_eq!(again.headers, head.headers);
    assert_eq!(again.framing, head.framing);
    // A strict prefix is never a complete head (a drip-fed head is read whole).
    if consumed > 0 {
        if let Ok(Some((_, n))) = parse_request_head(&data[..consumed - 1]) {
            panic!("prefix of {consumed} bytes parsed as a complete head of {n}");
        }
    }
});
