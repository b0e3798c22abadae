//! Publish-body parsing throughput: one ~100-byte item per body (the common client-library
//! case), and 100 such items per body (batched publishing). The target is over a million
//! items per second on one core; criterion reports it as elements per second.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use gripway_proto::publish::{encode_items, parse_publish_body, PublishLimits};
use std::hint::black_box;

/// One item of about 100 bytes, as a JSON object.
fn item_json(n: usize) -> String {
    format!(
        r#"{{"channel":"room-{n:04}","id":"msg-{n:06}","formats":{{"http-stream":{{"content":"event: message\ndata: hello {n:04}\n\n"}}}}}}"#
    )
}

fn body(items: usize) -> Vec<u8> {
    let list: Vec<String> = (0..items).map(item_json).collect();
    format!(r#"{{"items":[{}]}}"#, list.join(",")).into_bytes()
}

fn parse(c: &mut Criterion) {
    let limits = PublishLimits::default();
    let mut group = c.benchmark_group("parse_publish_body");
    for items in [1usize, 100] {
        let body = body(items);
        group.throughput(Throughput::Elements(items as u64));
        group.bench_with_input(BenchmarkId::new("items", items), &body, |b, body| {
            b.iter(|| parse_publish_body(black_box(body), &limits))
        });
    }
    group.finish();

    let parsed = parse_publish_body(&body(100), &limits).unwrap_or_default();
    let mut group = c.benchmark_group("encode_items");
    group.throughput(Throughput::Elements(parsed.len() as u64));
    group.bench_function("items/100", |b| b.iter(|| encode_items(black_box(&parsed))));
    group.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
