//! The registry's share of a fan-out: handing one publish batch to N subscribers of a channel
//! (the subscribers here only count, so what is measured is the registry's walk, not the
//! sockets), and a subscribe/unsubscribe pair (what every held connection costs to set up
//! and tear down).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
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

    let registry = Registry::new();
    let sub: Arc<dyn Subscriber> = Arc::new(Counting(AtomicU64::new(0)));
    c.bench_function("subscribe_unsubscribe", |b| {
        b.iter(|| drop(registry.subscribe(black_box("channel-1"), sub.clone())))
    });
}

criterion_group!(benches, fan_out);
criterion_main!(benches);
