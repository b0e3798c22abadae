//! Publish-body parsing throughput: one ~100-byte item per body (the common client-library
//! case), and 100 such items per body (batched publishing). The target is over a million
//! items per second on one core; criterion reports it as elements per second.
//!
//! `body_patch` compares this crate's bounded JSON Patch applier with the `json-patch` crate
//! on a fresh parse of a 1 KB document (what each long-poll subscriber does per message);
//! figures and the decision are in `publish::patch`'s header.

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

/// A ~1 KB document like a long-poll's timeout body.
fn template() -> serde_json::Value {
    let messages: Vec<serde_json::Value> = (0..20)
        .map(|i| serde_json::json!({"id": i, "text": format!("message number {i:04}")}))
        .collect();
    serde_json::json!({"version": 1, "messages": messages, "meta": {"room": "lobby"}})
}

/// Applying a `body-patch` to a fresh parse of the template, as each long-poll subscriber
/// does: this crate's bounded applier against the `json-patch` crate (unbounded).
fn patch(c: &mut Criterion) {
    let typical = serde_json::json!([
        {"op": "test", "path": "/version", "value": 1},
        {"op": "add", "path": "/messages/-", "value": {"id": 20, "text": "new"}},
        {"op": "replace", "path": "/version", "value": 2},
        {"op": "copy", "from": "/meta/room", "path": "/room"},
    ]);
    let many: Vec<serde_json::Value> = (0..40)
        .map(|i| serde_json::json!({"op": "add", "path": format!("/k{i}"), "value": i}))
        .collect();
    let body = serde_json::to_vec(&template()).unwrap_or_default();
    let mut group = c.benchmark_group("body_patch");
    for (name, ops) in [
        ("typical-4", typical),
        ("adds-40", serde_json::Value::Array(many)),
    ] {
        let ours = gripway_proto::publish::JsonPatch::from_value(&ops).expect("valid patch");
        let theirs: json_patch::Patch = serde_json::from_value(ops).expect("valid patch");
        group.bench_with_input(BenchmarkId::new("gripway", name), &body, |b, body| {
            b.iter(|| {
                let mut doc: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
                let ok = ours.apply_in_place(&mut doc, 32_767).is_ok();
                black_box((ok, doc))
            })
        });
        group.bench_with_input(BenchmarkId::new("json-patch", name), &body, |b, body| {
            b.iter(|| {
                let mut doc: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
                let ok = json_patch::patch(&mut doc, &theirs).is_ok();
                black_box((ok, doc))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, parse, patch);
criterion_main!(benches);
