//! Publish throughput with the on-disk history against the in-memory one, shaped as the
//! `publish-rate-100` scenario: requests of 100 items (100-byte payload, id set) sent by
//! 1 or 4 concurrent publishers, on 1 channel (one 100-item append per request) or spread
//! over 1,000 channels (100 one-item appends per request, made at once, as the shards
//! would). The disk store fsyncs every write batch; concurrent appends share a batch (group
//! commit). Prints items/s and the disk's share of the memory figure; also the cost of
//! encoding one item for disk.
//!
//! `cargo run --release -p gripway-broker --example history_throughput -- [requests] [dir]`

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use gripway_broker::history::{
    DiskHistory, DiskStats, FsyncPolicy, HistoryConfig, HistoryStore, MemoryHistory,
};
use gripway_broker::{ChannelName, Message};
use gripway_proto::publish::{encode_items, parse_publish_body, Item};

const ITEMS: usize = 100;

fn item(channel: &str, id: usize) -> Item {
    let body = format!(
        r#"{{"items":[{{"channel":"{channel}","id":"id-{id:012}","formats":{{"http-stream":{{"content":"{}"}}}}}}]}}"#,
        "x".repeat(100)
    );
    parse_publish_body(body.as_bytes(), &Default::default())
        .unwrap_or_default()
        .pop()
        .unwrap_or_else(|| std::process::abort())
}

/// The appends of request `r`: (channel, items) runs.
fn request(r: usize, channels: &[ChannelName]) -> Vec<(ChannelName, Vec<Arc<Message>>)> {
    if channels.len() == 1 {
        let ch = &channels[0];
        let msgs = (0..ITEMS)
            .map(|i| Message::new(item(ch, r * ITEMS + i)))
            .collect();
        return vec![(ch.clone(), msgs)];
    }
    (0..ITEMS)
        .map(|i| {
            let ch = &channels[(r * ITEMS + i) % channels.len()];
            (ch.clone(), vec![Message::new(item(ch, r * ITEMS + i))])
        })
        .collect()
}

type Requests = Vec<Vec<(ChannelName, Vec<Arc<Message>>)>>;

async fn run_disk(h: Arc<DiskHistory>, reqs: Arc<Requests>, publishers: usize) -> (f64, DiskStats) {
    let t = Instant::now();
    let tasks: Vec<_> = (0..publishers)
        .map(|p| {
            let (h, reqs) = (h.clone(), reqs.clone());
            tokio::spawn(async move {
                for r in (p..reqs.len()).step_by(publishers) {
                    // one request: its appends made at once, answered when all are stored
                    let parts: Vec<_> = reqs[r]
                        .iter()
                        .map(|(ch, msgs)| {
                            let (h, ch, msgs) = (h.clone(), ch.clone(), msgs.clone());
                            tokio::spawn(async move { h.append(&ch, &msgs, Instant::now()).await })
                        })
                        .collect();
                    for part in parts {
                        if !matches!(part.await, Ok(Ok(_))) {
                            eprintln!("append failed");
                        }
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        let _ = task.await;
    }
    let rate = (reqs.len() * ITEMS) as f64 / t.elapsed().as_secs_f64();
    (rate, h.disk_stats())
}

fn run_memory(reqs: &Requests) -> f64 {
    let h = MemoryHistory::new(HistoryConfig::default(), 2);
    let t = Instant::now();
    for req in reqs {
        for (ch, msgs) in req {
            h.append_now(ch, msgs, Instant::now());
        }
    }
    (reqs.len() * ITEMS) as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let requests: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let base: PathBuf = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));

    let items: Vec<Item> = (0..100_000).map(|i| item("channel-1", i)).collect();
    let t = Instant::now();
    let bytes: usize = items
        .iter()
        .map(|i| encode_items(std::slice::from_ref(i)).len())
        .sum();
    println!(
        "encode for disk: {:.2} µs/item, {} bytes/item",
        t.elapsed().as_secs_f64() * 1e6 / items.len() as f64,
        bytes / items.len()
    );

    println!("{requests} requests of {ITEMS} items, disk fsync per write batch");
    for channels in [1usize, 1000] {
        let names: Vec<ChannelName> = (0..channels)
            .map(|c| Arc::from(format!("channel-{c}")))
            .collect();
        let reqs: Arc<Requests> = Arc::new((0..requests).map(|r| request(r, &names)).collect());
        let memory = run_memory(&reqs);
        for publishers in [1usize, 4] {
            let dir = base.join(format!(
                "history-throughput-{}-{channels}-{publishers}",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            let h = DiskHistory::open(&dir, HistoryConfig::default(), FsyncPolicy::EveryBatch)
                .unwrap_or_else(|e| panic!("{e}"));
            let (disk, d) = rt.block_on(run_disk(Arc::new(h), reqs.clone(), publishers));
            println!(
                "{channels:>5} ch, {publishers} publishers: memory {memory:>10.0} items/s, disk {disk:>8.0} items/s ({:.1}% of memory); {} fsyncs, {:.1} appends and {:.0} items per fsync",
                100.0 * disk / memory,
                d.fsyncs,
                d.appends as f64 / d.fsyncs.max(1) as f64,
                (reqs.len() * ITEMS) as f64 / d.fsyncs.max(1) as f64,
            );
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
