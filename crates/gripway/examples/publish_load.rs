//! A publish load generator for measuring what durable history costs: `C` connections each
//! POST `/publish/` requests of `N` items, every item with a unique id (so history keeps it;
//! the independent load tool's items have none), one request in flight per connection, until
//! `R` requests are answered. Prints items per second and request latency percentiles.
//!
//! ```sh
//! cargo run --release --example publish_load -- --publish 127.0.0.1:5561 \
//!     --requests 1000 --items 100 --connections 4 [--channels 1000] [--size 100]
//! ```

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Args {
    publish: String,
    requests: usize,
    items: usize,
    connections: usize,
    channels: usize,
    size: usize,
}

fn args() -> Args {
    let mut a = Args {
        publish: "127.0.0.1:5561".into(),
        requests: 1000,
        items: 100,
        connections: 4,
        channels: 1000,
        size: 100,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i + 1 < argv.len() {
        let v = &argv[i + 1];
        let n = || v.parse::<usize>().expect("a number");
        match argv[i].as_str() {
            "--publish" => a.publish = v.clone(),
            "--requests" => a.requests = n(),
            "--items" => a.items = n(),
            "--connections" => a.connections = n(),
            "--channels" => a.channels = n().max(1),
            "--size" => a.size = n(),
            other => panic!("unknown flag {other}"),
        }
        i += 2;
    }
    a
}

/// One request body: items `first..first+n`, spread over the channels.
fn body(first: usize, n: usize, channels: usize, size: usize) -> String {
    let payload = "x".repeat(size);
    let items: Vec<String> = (first..first + n)
        .map(|k| {
            format!(
                r#"{{"channel":"load-{}","id":"i{k}","formats":{{"http-stream":{{"content":"{payload}"}}}}}}"#,
                k % channels
            )
        })
        .collect();
    format!(r#"{{"items":[{}]}}"#, items.join(","))
}

async fn read_response(sock: &mut TcpStream, buf: &mut Vec<u8>) -> u16 {
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = sock.read(&mut chunk).await.expect("read");
                assert!(n > 0, "connection closed");
                buf.extend_from_slice(&chunk[..n]);
            }
            return head[9..12].parse().unwrap_or(0);
        }
        let n = sock.read(&mut chunk).await.expect("read");
        assert!(n > 0, "connection closed");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::main]
async fn main() {
    let a = args();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..a.connections {
        let next = next.clone();
        let (publish, requests, items, channels, size) =
            (a.publish.clone(), a.requests, a.items, a.channels, a.size);
        tasks.push(tokio::spawn(async move {
            let mut sock = TcpStream::connect(&publish).await.expect("connect");
            sock.set_nodelay(true).ok();
            let mut buf = Vec::new();
            let mut latencies = Vec::new();
            loop {
                let r = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if r >= requests {
                    return latencies;
                }
                let b = body(r * items, items, channels, size);
                let req = format!(
                    "POST /publish/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
                    b.len()
                );
                let t = Instant::now();
                sock.write_all(req.as_bytes()).await.expect("write");
                let status = read_response(&mut sock, &mut buf).await;
                assert_eq!(status, 200, "{}", String::from_utf8_lossy(&buf));
                latencies.push(t.elapsed());
            }
        }));
    }
    let mut all: Vec<Duration> = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    let elapsed = started.elapsed();
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    let items = a.requests * a.items;
    println!(
        "{{\"requests\": {}, \"items\": {items}, \"seconds\": {:.3}, \"items_per_s\": {:.0}, \"p50_ms\": {:.2}, \"p99_ms\": {:.2}}}",
        a.requests,
        elapsed.as_secs_f64(),
        items as f64 / elapsed.as_secs_f64(),
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3
    );
}
