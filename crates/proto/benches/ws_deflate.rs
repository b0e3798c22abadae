//! permessage-deflate costs. Outbound: `encode_compressed_frame` runs once per published
//! message (then the bytes fan out), measured on JSON messages of 100 B, 1 KiB and 16 KiB, next
//! to `encode_message_frame` (which sends short messages plain) and to a fresh flate2 compressor per message at level 1 and at the default level 6, to show what
//! the per-thread compressor and the level choice buy. Inbound: the inflater on a compressed
//! client message, and on plain frames it only passes through.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use flate2::{Compress, Compression, FlushCompress};
use gripway_proto::ws_deflate::{
    compress, encode_compressed_frame, encode_message_frame, Inflater,
};
use std::hint::black_box;
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::Frame;

/// A JSON message of about `size` bytes, with the repetition real chat/feed payloads have.
fn json_message(size: usize) -> Vec<u8> {
    let mut message = String::from(r#"{"channel":"prices","items":["#);
    let mut n = 0u32;
    while message.len() + 60 < size {
        message.push_str(&format!(
            r#"{{"symbol":"SYM{:03}","price":{}.{:02},"volume":{}}},"#,
            n % 500,
            1000 + n * 7 % 900,
            n * 13 % 100,
            n * 7919 % 100_000
        ));
        n += 1;
    }
    message.push_str(r#"{"end":true}]}"#);
    message.into_bytes()
}

/// What a compressor made fresh for every message costs (no per-thread reuse).
fn fresh_compress(level: u32, payload: &[u8]) -> Vec<u8> {
    let mut compressor = Compress::new(Compression::new(level), false);
    let mut out = Vec::with_capacity(payload.len() + 64);
    let _ = compressor.compress_vec(payload, &mut out, FlushCompress::Sync);
    out.truncate(out.len().saturating_sub(4));
    out
}

fn client_frame(payload: &[u8], rsv1: bool) -> Vec<u8> {
    let mut frame = Frame::message(payload.to_vec(), OpCode::Data(Data::Text), true);
    frame.header_mut().rsv1 = rsv1;
    frame.header_mut().mask = Some([0x12, 0x34, 0x56, 0x78]);
    let mut wire = Vec::new();
    let _ = frame.format(&mut wire);
    wire
}

fn outbound(c: &mut Criterion) {
    let mut group = c.benchmark_group("deflate_out");
    for size in [100usize, 1024, 16 * 1024] {
        let message = json_message(size);
        eprintln!(
            "{} B message: {} B at level 1 (ours), {} B at level 6",
            message.len(),
            compress(&message).len(),
            fresh_compress(6, &message).len()
        );
        group.throughput(Throughput::Bytes(message.len() as u64));
        group.bench_with_input(
            BenchmarkId::new("encode_compressed_frame", size),
            &message,
            |b, m| b.iter(|| encode_compressed_frame(false, black_box(m))),
        );
        group.bench_with_input(
            BenchmarkId::new("encode_message_frame", size),
            &message,
            |b, m| b.iter(|| encode_message_frame(false, black_box(m))),
        );
        group.bench_with_input(BenchmarkId::new("fresh_level1", size), &message, |b, m| {
            b.iter(|| fresh_compress(1, black_box(m)))
        });
        group.bench_with_input(BenchmarkId::new("fresh_level6", size), &message, |b, m| {
            b.iter(|| fresh_compress(6, black_box(m)))
        });
    }
    group.finish();
}

fn inbound(c: &mut Criterion) {
    let mut group = c.benchmark_group("deflate_in");
    for size in [100usize, 1024, 16 * 1024] {
        let message = json_message(size);
        let compressed = client_frame(&compress(&message), true);
        let plain = client_frame(&message, false);
        group.throughput(Throughput::Bytes(message.len() as u64));
        let mut out = Vec::with_capacity(2 * size + 64);
        group.bench_with_input(BenchmarkId::new("inflate", size), &compressed, |b, wire| {
            let mut inflater = Inflater::new(1 << 20);
            b.iter(|| {
                out.clear();
                let _ = inflater.process(black_box(wire), &mut out);
            })
        });
        group.bench_with_input(BenchmarkId::new("passthrough", size), &plain, |b, wire| {
            let mut inflater = Inflater::new(1 << 20);
            b.iter(|| {
                out.clear();
                let _ = inflater.process(black_box(wire), &mut out);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, outbound, inbound);
criterion_main!(benches);
