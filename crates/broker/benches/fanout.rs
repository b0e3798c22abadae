//! The registry's share of a fan-out: handing one publish batch to N subscribers of a channel
//! (the subscribers here only count, so what is measured is the registry's walk, not the
//! sockets; a second walk's subscribers also read the bytes they picked, as a socket write
//! does), and a subscribe/unsubscribe pair (what every held connection costs to set up
//! and tear down), and wrapping a parsed item as a `Message` (what every publish costs
//! before it is queued).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use gripway_broker::{Delivery, Message, Registry, Subscriber, Transport};
use gripway_proto::publish::parse_publish_body;
use std::hint::black_box;

struct Counting(AtomicU64);

impl Subscriber for Counting {
    fn transport(&self) -> Transport {
        Transport::HttpStream
    }
    fn deliver(&self, _: &str, messages: &[Arc<Message>]) -> Delivery {
        // what a stream subscriber does first: pick the shared encoded bytes
        let n = messages.iter().filter_map(|m| m.stream_chunk()).count();
        self.0.fetch_add(n as u64, Ordering::Relaxed);
        Delivery::Sent(n as u32)
    }
}

/// As [`Counting`], and reads the bytes it picked, as the socket write that follows does.
struct Reading(AtomicU64);

impl Subscriber for Reading {
    fn transport(&self) -> Transport {
        Transport::HttpStream
    }
    fn deliver(&self, _: &str, messages: &[Arc<Message>]) -> Delivery {
        let sum: u64 = messages
            .iter()
            .filter_map(|m| m.stream_chunk())
            .map(|c| c.iter().map(|b| u64::from(*b)).sum::<u64>())
            .sum();
        self.0.fetch_add(sum, Ordering::Relaxed);
        Delivery::Sent(messages.len() as u32)
    }
}

fn messages() -> Vec<Arc<Message>> {
    let body =
        br#"{"items":[{"channel":"c","formats":{"http-stream":{"content":"data: hello\n\n"}}}]}"#;
    parse_publish_body(body, &Default::default())
        .unwrap_or_default()
        .into_iter()
        .map(Message::new)
        .collect()
}

fn fan_out(c: &mut Criterion) {
    let mut group = c.benchmark_group("registry_fan_out");
    for n in [1_000usize, 10_000] {
        let registry = Registry::new();
        let subs: Vec<_> = (0..n)
            .map(|_| registry.subscribe("c", Arc::new(Counting(AtomicU64::new(0)))))
            .collect();
        let batch = messages();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("subscribers", n), &batch, |b, batch| {
            b.iter(|| registry.fan_out(black_box("c"), batch))
        });
        drop(subs);
    }
    group.finish();

    let mut group = c.benchmark_group("registry_fan_out_reading");
    let n = 1_000usize;
    let registry = Registry::new();
    let subs: Vec<_> = (0..n)
        .map(|_| registry.subscribe("c", Arc::new(Reading(AtomicU64::new(0)))))
        .collect();
    let batch = messages();
    group.throughput(Throughput::Elements(n as u64));
    group.bench_with_input(BenchmarkId::new("subscribers", n), &batch, |b, batch| {
        b.iter(|| registry.fan_out(black_box("c"), batch))
    });
    drop(subs);
    group.finish();

    let registry = Registry::new();
    let sub: Arc<dyn Subscriber> = Arc::new(Counting(AtomicU64::new(0)));
    c.bench_function("subscribe_unsubscribe", |b| {
        b.iter(|| drop(registry.subscribe(black_box("channel-1"), sub.clone())))
    });
}

/// `Message::new` for a typical stream item and a typical WebSocket item (100-byte content,
/// a 10-byte id), the encodings included that the first subscriber of each would make.
fn message_new(c: &mut Criterion) {
    let content = "x".repeat(100);
    for (name, format) in [
        ("message_new_stream", "http-stream"),
        ("message_new_ws", "ws-message"),
    ] {
        let body = format!(
            r#"{{"items":[{{"channel":"channel-01","id":"id-0000001","formats":{{"{format}":{{"content":"{content}"}}}}}}]}}"#
        );
        let item = parse_publish_body(body.as_bytes(), &Default::default())
            .unwrap_or_default()
            .remove(0);
        c.bench_function(name, |b| {
            b.iter_batched(
                || item.clone(),
                |item| {
                    let m = Message::new(item);
                    black_box((m.stream_chunk().is_some(), m.ws_frame().is_some()));
                    m
                },
                BatchSize::SmallInput,
            )
        });
    }
}

criterion_group!(benches, fan_out, message_new);
criterion_main!(benches);
