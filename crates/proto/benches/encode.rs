//! Per-transport encoding of a published message (done once per message, shared by every
//! subscriber): an HTTP/1.1 chunk for streams, a WebSocket frame, and the
//! WebSocket-over-HTTP event codec used on every origin request.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gripway_proto::chunked::encode_chunk;
use gripway_proto::woh::{decode_events_bytes, encode_events, Event, WohLimits};
use gripway_proto::ws_frame::{encode_frame, FrameKind};
use std::hint::black_box;

fn encode(c: &mut Criterion) {
    let content = Bytes::from(format!("event: message\ndata: {}\n\n", "x".repeat(70)));
    let mut group = c.benchmark_group("encode_per_message");
    group.throughput(Throughput::Bytes(content.len() as u64));
    group.bench_function("http_chunk/100B", |b| {
        b.iter(|| encode_chunk(black_box(&content)))
    });
    group.bench_function("ws_text_frame/100B", |b| {
        b.iter(|| encode_frame(FrameKind::Text, black_box(content.clone())))
    });
    group.finish();

    let events: Vec<Event> = (0..10)
        .map(|i| Event::text(Bytes::from(format!("message {i} {}", "y".repeat(80)))))
        .collect();
    let mut wire = Vec::new();
    encode_events(&events, &mut wire);
    let wire = Bytes::from(wire);
    let mut group = c.benchmark_group("websocket_over_http");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.bench_function("encode_events/10", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(wire.len());
            encode_events(black_box(&events), &mut out);
            out
        })
    });
    group.bench_function("decode_events/10", |b| {
        b.iter(|| decode_events_bytes(black_box(&wire), &WohLimits::default()))
    });
    group.finish();
}

criterion_group!(benches, encode);
criterion_main!(benches);
