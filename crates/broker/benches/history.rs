//! The in-memory history's cost on the publish path and on a recovery: appending one item to
//! a channel at its count bound (so every append also evicts), appending a batch of 100, and
//! reading the 50 items after an id that is 50 behind (what a reconnecting SSE client costs),
//! over 1,000 channels each holding 100 items.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gripway_broker::history::{After, HistoryConfig, MemoryHistory};
use gripway_broker::{ChannelName, Message};
use gripway_proto::publish::parse_publish_body;
use std::hint::black_box;

fn message(channel: &str, id: usize) -> Arc<Message> {
    let body = format!(
        r#"{{"items":[{{"channel":"{channel}","id":"id-{id}","formats":{{"http-stream":{{"content":"data: hello\n\n"}}}}}}]}}"#
    );
    parse_publish_body(body.as_bytes(), &Default::default())
        .unwrap_or_default()
        .into_iter()
        .map(Message::new)
        .next()
        .unwrap_or_else(|| std::process::abort())
}

fn history(c: &mut Criterion) {
    let store = MemoryHistory::new(HistoryConfig::default(), 2);
    let channels: Vec<ChannelName> = (0..1000).map(|i| Arc::from(format!("ch{i}"))).collect();
    let now = Instant::now();
    for id in 0..100 {
        for ch in &channels {
            store.append_now(ch, &[message(ch, id)], now);
        }
    }
    let msgs: Vec<Arc<Message>> = (100..200).map(|id| message("ch0", id)).collect();

    let mut group = c.benchmark_group("history");
    group.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    group.bench_function("append_1_at_bound", |b| {
        b.iter(|| {
            i += 1;
            let ch = &channels[i % channels.len()];
            black_box(store.append_now(ch, std::slice::from_ref(&msgs[i % 100]), now))
        })
    });
    group.throughput(Throughput::Elements(100));
    group.bench_function("append_100_batch", |b| {
        b.iter(|| {
            i += 1;
            let ch = &channels[i % channels.len()];
            black_box(store.append_now(ch, &msgs, now))
        })
    });
    // every channel now holds msgs (id-100 .. id-199); read the 50 after id-149
    group.throughput(Throughput::Elements(50));
    group.bench_function("read_after_50_behind", |b| {
        b.iter(|| {
            i += 1;
            let ch = &channels[i % channels.len()];
            black_box(store.read_after_now(ch, After::Id(black_box("id-149")), 100, now))
        })
    });
    group.throughput(Throughput::Elements(1));
    group.bench_function("read_after_last_id", |b| {
        b.iter(|| {
            i += 1;
            let ch = &channels[i % channels.len()];
            black_box(store.read_after_now(ch, After::Id(black_box("id-199")), 100, now))
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = history
}
criterion_main!(benches);
