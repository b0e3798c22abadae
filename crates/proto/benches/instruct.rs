//! GRIP instruction parsing, run once per held connection: the check every proxied response
//! goes through (`is_grip_response`, which must not allocate) and the parse of a typical SSE
//! hold and a long-poll hold with several channels.

use criterion::{criterion_group, criterion_main, Criterion};
use gripway_proto::instruct::{is_grip_response, parse_instruct, InstructLimits};
use http::{HeaderMap, HeaderValue};
use std::hint::black_box;

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(*k, HeaderValue::from_static(v));
    }
    h
}

fn instruct(c: &mut Criterion) {
    let plain = headers(&[
        ("content-type", "text/html"),
        ("cache-control", "no-cache"),
        ("server", "origin"),
        ("content-length", "1234"),
    ]);
    let sse = headers(&[
        ("content-type", "text/event-stream"),
        ("grip-hold", "stream"),
        ("grip-channel", "news"),
        ("grip-keep-alive", ":\\n\\n; format=cstring; timeout=20"),
    ]);
    let poll = headers(&[
        ("content-type", "application/json"),
        ("grip-hold", "response"),
        (
            "grip-channel",
            "a; prev-id=1, b; prev-id=7; filter=skip-self",
        ),
        ("grip-channel", "c"),
        ("grip-timeout", "60"),
        ("grip-set-meta", "user=\"alice\""),
    ]);
    let limits = InstructLimits::default();
    c.bench_function("is_grip_response/plain", |b| {
        b.iter(|| is_grip_response(black_box(&plain)))
    });
    c.bench_function("parse_instruct/sse", |b| {
        b.iter(|| parse_instruct(200, black_box(&sse), b": ready\n\n", &limits))
    });
    c.bench_function("parse_instruct/long-poll", |b| {
        b.iter(|| parse_instruct(200, black_box(&poll), b"{\"messages\":[]}\n", &limits))
    });
}

criterion_group!(benches, instruct);
criterion_main!(benches);
