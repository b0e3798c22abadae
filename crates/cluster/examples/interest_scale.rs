//! How interest scales on one node: subscribes a bus to N channels (64 at a time, as a burst
//! of new channels would), then unsubscribes and subscribes them again (churn), and prints
//! the subscriptions per second and the process's memory per subscription.
//!
//! `cargo run --release -p gripway-cluster --example interest_scale -- nats://127.0.0.1:4222 100000`
//! (a nats-server with JetStream must be running there).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use gripway_cluster::{Bus, ClusterConfig};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

async fn subscribe_all(bus: &Arc<Bus>, names: &[String]) -> Duration {
    let started = Instant::now();
    stream::iter(names.iter().cloned())
        .for_each_concurrent(64, |name| {
            let bus = bus.clone();
            async move {
                bus.subscribe(&name).await.expect("subscribe");
            }
        })
        .await;
    started.elapsed()
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "nats://127.0.0.1:4222".into());
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let cfg = ClusterConfig {
        urls: vec![url],
        stream: "INTEREST_SCALE".into(),
        ..ClusterConfig::default()
    };
    let (bus, _deliveries) = Bus::connect(cfg).await.expect("connect");
    bus.ensure_stream().await.expect("stream");
    let bus = Arc::new(bus);
    let names: Vec<String> = (0..n).map(|i| format!("channel-{i}")).collect();
    let before = rss_kib();
    let took = subscribe_all(&bus, &names).await;
    let after = rss_kib();
    println!(
        "subscribed {n} channels in {:.2} s ({:.0}/s); RSS {} -> {} KiB: {:.0} bytes per subscription",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64(),
        before,
        after,
        (after.saturating_sub(before) * 1024) as f64 / n as f64
    );
    // churn: a tenth of the channels leave and come back
    let tenth = &names[..n / 10];
    let started = Instant::now();
    for name in tenth {
        bus.unsubscribe(name);
    }
    let took = subscribe_all(&bus, tenth).await;
    println!(
        "churn: {} unsubscribed and subscribed again in {:.2} s ({:.0} subscribes/s)",
        tenth.len(),
        started.elapsed().as_secs_f64(),
        tenth.len() as f64 / took.as_secs_f64()
    );
    assert_eq!(bus.subscriptions(), n);
}
