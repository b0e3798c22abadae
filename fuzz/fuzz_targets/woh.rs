//! WebSocket-over-HTTP events in both directions (`proto::woh`). Bytes from an origin (or a
//! forging client) are decoded, re-encoded and decoded again; events built by the fuzzer, as
//! the proxy sends them to an origin, are encoded and decoded back. Checks that nothing panics,
//! limits hold, `encoded_len` is exact, and both round trips give equal events.
#![no_main]

use bytes::Bytes;
use gripway_proto::woh::{
    close_code_and_reason, decode_events, decode_events_bytes, encode_events, encoded_len, Event,
    EventKind, WohLimits,
};
use libfuzzer_sys::fuzz_target;

const KINDS: [EventKind; 7] = [
    EventKind::Open,
    EventKind::Text,
    EventKind::Binary,
    EventKind::Ping,
    EventKind::Pong,
    EventKind::Close,
    EventKind::Disconnect,
];

/// The input: a mode byte; if even, a limit on events and a body as an origin sends it; if
/// odd, events as the proxy sends them, each a kind byte, a length byte and its content.
enum Input<'a> {
    Wire { max_events: u8, body: &'a [u8] },
    Events(Vec<(u8, &'a [u8])>),
}

impl<'a> Input<'a> {
    fn read(data: &'a [u8]) -> Option<Self> {
        let (mode, rest) = data.split_first()?;
        if mode % 2 == 0 {
            let (max_events, body) = rest.split_first()?;
            return Some(Input::Wire {
                max_events: *max_events,
                body,
            });
        }
        let mut events = Vec::new();
        let mut rest = rest;
        while let [kind, len, tail @ ..] = rest {
            let (content, after) = tail.split_at(usize::from(*len).min(tail.len()));
            events.push((*kind, content));
            rest = after;
        }
        Some(Input::Events(events))
    }
}

fn encode(events: &[Event]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_events(events, &mut out);
    assert_eq!(out.len(), encoded_len(events), "encoded_len is exact");
    out
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::read(data) else {
        return;
    };
    match input {
        Input::Wire { max_events, body } => {
            let limits = WohLimits {
                max_events: usize::from(max_events),
                ..WohLimits::default()
            };
            let decoded = decode_events(body, &limits);
            let shared = decode_events_bytes(&Bytes::copy_from_slice(body), &limits);
            assert_eq!(decoded, shared, "copying and slicing decoders agree");
            let Ok(events) = decoded else {
                return;
            };
            assert!(events.len() <= limits.max_events);
            for event in &events {
                if event.kind == EventKind::Close {
                    let _ = close_code_and_reason(&event.content);
                }
            }
            let again = decode_events(&encode(&events), &limits).expect("re-encoded body decodes");
            assert_eq!(events, again);
        }
        Input::Events(list) => {
            let events: Vec<Event> = list
                .into_iter()
                .map(|(kind, content)| {
                    Event::new(KINDS[usize::from(kind) % KINDS.len()], content.to_vec())
                })
                .collect();
            let body = encode(&events);
            let limits = WohLimits {
                max_events: events.len(),
                max_body_bytes: body.len(),
            };
            let again = decode_events(&body, &limits).expect("encoded events decode");
            assert_eq!(events, again);
        }
    }
});
