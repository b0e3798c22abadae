//! An HTTP/2 SSE load tool (the independent load tool, fanbench, speaks only HTTP/1.1): `C`
//! connections, over TLS with ALPN `h2` (`https://`) or h2c with prior knowledge
//! (`http://`), each carrying `S` SSE streams `GET <url>/ch<k>`, spread over `N` channels.
//! Items are published through the GRIP publish API at a fixed rate; each carries its
//! channel, its sequence number in the channel and its send time (fanbench's payload format,
//! `fb <channel> <seq> <sent_ns> <scheduled_ns> xxx...`), so every stream checks that each
//! item arrives once and in order, and the receive time gives the latency (one process, one
//! monotonic clock).
//!
//! Phases: open the streams (at most `--connect-concurrency` connections opening at once),
//! wait until every stream has its response head and its initial body (the origin's first
//! event), settle (2 s), read the server's RSS (memory per idle stream = growth since before
//! connecting / streams; the growth read as the last stream became ready, fanbench's way, is
//! reported too); confirm the subscriptions with a probe per channel; publish, then
//! drain; server CPU (utime + stime, the process and its descendants, from /proc) over
//! publish + drain / deliveries = CPU per delivery. Prints one summary line and writes JSON.
//!
//! ```sh
//! cargo run --release --example h2_load -- --url https://localhost:8443/sse --insecure \
//!     --connections 500 --streams-per-conn 10 --channels 1 \
//!     --publish http://127.0.0.1:5561/publish/ --messages 50 --rate 10 --size 100 \
//!     --pid $(pidof gripway) --json out.json
//! ```
//!
//! The client reads every stream as it arrives and gives the flow-control window back at
//! once; connections run on a multi-thread runtime; a stream keeps a few counters and one
//! bit per expected item.

mod connect;
mod hist;
mod procstat;
mod publish;
mod stream;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::{watch, Semaphore};

use connect::{connection, target};
use hist::Hist;
use procstat::{machine_busy_ticks, sample_tree, ticks_per_s, Sample};
use publish::{probe, publish, Publisher};
use stream::Ctx;

/// A connection's TCP connect, TLS and HTTP/2 handshakes, and a stream's head and first event.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// The whole ramp.
const CONNECT_PHASE_TIMEOUT: Duration = Duration::from_secs(600);
/// The subscription confirmation (probes).
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(120);
/// The drain ends after this long without a new delivery, or after `DRAIN_LIMIT`.
const DRAIN_IDLE: Duration = Duration::from_secs(5);
const DRAIN_LIMIT: Duration = Duration::from_secs(300);

struct Args {
    url: String,
    insecure: bool,
    ca: Option<String>,
    connections: usize,
    streams_per_conn: usize,
    channels: usize,
    publish: String,
    messages: usize,
    rate: f64,
    size: usize,
    pid: Option<u32>,
    json: Option<String>,
    connect_concurrency: usize,
    settle: Duration,
    label: String,
}

const USAGE: &str = "usage: h2_load --url https://HOST:PORT/PREFIX (or http:// for h2c) \
[--insecure | --ca FILE] [--connections C] [--streams-per-conn S] [--channels N] \
[--publish http://127.0.0.1:PORT/publish/] [--messages M (per channel)] [--rate R (items/s, \
all channels; 0: as fast as possible)] [--size B] [--pid PID] [--json FILE] \
[--connect-concurrency K] [--settle-ms MS] [--label TEXT]";

fn args() -> Result<Args, String> {
    let mut a = Args {
        url: String::new(),
        insecure: false,
        ca: None,
        connections: 100,
        streams_per_conn: 1,
        channels: 1,
        publish: "http://127.0.0.1:5561/publish/".into(),
        messages: 50,
        rate: 10.0,
        size: 100,
        pid: None,
        json: None,
        connect_concurrency: 50,
        settle: Duration::from_secs(2),
        label: String::new(),
    };
    let mut argv = std::env::args().skip(1);
    while let Some(flag) = argv.next() {
        if flag == "--insecure" {
            a.insecure = true;
            continue;
        }
        if flag == "-h" || flag == "--help" {
            return Err(USAGE.into());
        }
        let v = argv.next().ok_or(format!("{flag} needs a value"))?;
        let n = || {
            v.parse::<usize>()
                .map_err(|_| format!("{flag}: not a number: {v}"))
        };
        match flag.as_str() {
            "--url" => a.url = v.trim_end_matches('/').to_string(),
            "--ca" => a.ca = Some(v.clone()),
            "--connections" => a.connections = n()?,
            "--streams-per-conn" => a.streams_per_conn = n()?.max(1),
            "--channels" => a.channels = n()?.max(1),
            "--publish" => a.publish = v.clone(),
            "--messages" => a.messages = n()?,
            "--rate" => {
                a.rate = v
                    .parse()
                    .map_err(|_| format!("--rate: not a number: {v}"))?
            }
            "--size" => a.size = n()?,
            "--pid" => a.pid = Some(v.parse().map_err(|_| format!("--pid: not a pid: {v}"))?),
            "--json" => a.json = Some(v.clone()),
            "--connect-concurrency" => a.connect_concurrency = n()?.max(1),
            "--settle-ms" => a.settle = Duration::from_millis(n()? as u64),
            "--label" => a.label = v.clone(),
            other => return Err(format!("unknown flag {other}\n{USAGE}")),
        }
    }
    if a.url.is_empty() {
        return Err(format!("--url is required\n{USAGE}"));
    }
    Ok(a)
}

/// Nanoseconds on one monotonic clock shared by the publisher and the readers.
fn now_ns() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

fn main() {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    if let Err(e) = rt.block_on(run(a)) {
        eprintln!("h2_load: {e}");
        std::process::exit(1);
    }
}

async fn run(a: Args) -> Result<(), String> {
    now_ns();
    let t = Arc::new(target(&a)?);
    let mut publisher = Publisher::new(&a.publish)?;
    let streams = (a.connections * a.streams_per_conn) as u64;
    let (finish, finish_rx) = watch::channel(false);
    let ctx = Arc::new(Ctx {
        base: a.url.clone(),
        channels: a.channels as u64,
        messages: a.messages as u64,
        ready: AtomicU64::new(0),
        ready_per_chan: (0..a.channels).map(|_| AtomicU64::new(0)).collect(),
        failed: AtomicU64::new(0),
        probed: AtomicU64::new(0),
        received: AtomicU64::new(0),
        unique: AtomicU64::new(0),
        first_recv_ns: AtomicU64::new(u64::MAX),
        last_recv_ns: AtomicU64::new(0),
        latency: Hist::new(),
        errors: Mutex::new(BTreeMap::new()),
        results: Mutex::new(Vec::new()),
        finish: finish_rx,
    });
    let server = || a.pid.map(sample_tree).unwrap_or_default();
    let me = std::process::id();
    let before = server();

    // ramp: at most connect_concurrency connections opening at once
    eprintln!(
        "opening {streams} streams ({} connections x {})...",
        a.connections, a.streams_per_conn
    );
    let gate = Arc::new(Semaphore::new(a.connect_concurrency));
    let t0 = Instant::now();
    for n in 0..a.connections {
        let (ctx, t, gate) = (ctx.clone(), t.clone(), gate.clone());
        tokio::spawn(async move {
            let _permit = gate.acquire_owned().await;
            connection(ctx, t, n).await;
        });
    }
    let mut last_log = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (ready, failed) = (ctx.ready.load(Relaxed), ctx.failed.load(Relaxed));
        if ready + failed >= streams || t0.elapsed() > CONNECT_PHASE_TIMEOUT {
            break;
        }
        if last_log.elapsed() > Duration::from_secs(5) {
            eprintln!(
                "  {ready} ready, {failed} failed after {:.1} s",
                t0.elapsed().as_secs_f64()
            );
            last_log = Instant::now();
        }
    }
    let connect_s = t0.elapsed().as_secs_f64();
    let (ready, failed) = (ctx.ready.load(Relaxed), ctx.failed.load(Relaxed));
    if ready == 0 {
        return Err(format!(
            "no stream became ready: {:?}",
            ctx.errors.lock().unwrap()
        ));
    }
    let at_ready = server();
    tokio::time::sleep(a.settle).await;
    let idle = server();

    // confirmation: probes until every ready stream got one
    eprintln!("confirming subscriptions...");
    let t0 = Instant::now();
    let mut rounds = 0;
    'rounds: while t0.elapsed() < CONFIRM_TIMEOUT {
        if let Err(e) = probe(&a, &mut publisher, rounds).await {
            ctx.error(e);
        }
        rounds += 1;
        let (mut last, mut changed) = (ctx.probed.load(Relaxed), Instant::now());
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let probed = ctx.probed.load(Relaxed);
            if probed >= ctx.ready.load(Relaxed) || t0.elapsed() > CONFIRM_TIMEOUT {
                break 'rounds;
            }
            if probed != last {
                (last, changed) = (probed, Instant::now());
            }
            if changed.elapsed() > Duration::from_secs(1) {
                continue 'rounds;
            }
        }
    }
    let confirmed = ctx.probed.load(Relaxed);

    eprintln!("publishing {} items...", a.messages * a.channels);
    let (pre, me_pre, busy_pre) = (server(), sample_tree(me), machine_busy_ticks());
    let published = publish(&a, &mut publisher, &ctx).await;

    // drain: until every stream has every acknowledged item of its channel, or no progress
    let k = a.channels as u64;
    let acked_in = |c: u64| {
        (0..a.messages as u64)
            .filter(|s| published.acked[(s * k + c) as usize])
            .count() as u64
    };
    let acked_per_chan: Vec<u64> = (0..k).map(acked_in).collect();
    let expected_total: u64 = (0..k as usize)
        .map(|c| ctx.ready_per_chan[c].load(Relaxed) * acked_per_chan[c])
        .sum();
    let t0 = Instant::now();
    let (mut last, mut changed) = (ctx.unique.load(Relaxed), Instant::now());
    let mut drain_complete = true;
    while ctx.unique.load(Relaxed) < expected_total {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let u = ctx.unique.load(Relaxed);
        if u != last {
            (last, changed) = (u, Instant::now());
        }
        if changed.elapsed() > DRAIN_IDLE || t0.elapsed() > DRAIN_LIMIT {
            drain_complete = false;
            break;
        }
    }
    let drain_s = t0.elapsed().as_secs_f64();
    let (after, me_after, busy_after) = (server(), sample_tree(me), machine_busy_ticks());

    // every stream hands in its account
    let _ = finish.send(true);
    let t0 = Instant::now();
    while (ctx.results.lock().unwrap().len() as u64) < ready
        && t0.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ends = std::mem::take(&mut *ctx.results.lock().unwrap());
    let (mut expected, mut missing, mut with_loss) = (0u64, 0u64, 0u64);
    let (mut dups, mut ooo, mut unexpected, mut closed) = (0u64, 0u64, 0u64, 0u64);
    for e in &ends {
        let c = u64::from(e.chan);
        let mut lost = 0;
        for s in 0..a.messages as u64 {
            if published.acked[(s * k + c) as usize] {
                expected += 1;
                if e.seen[(s / 64) as usize] & (1 << (s % 64)) == 0 {
                    lost += 1;
                }
            }
        }
        missing += lost;
        with_loss += u64::from(lost > 0);
        dups += e.duplicates;
        ooo += e.out_of_order;
        unexpected += e.unexpected;
        closed += u64::from(e.closed);
    }
    let unaccounted = ready.saturating_sub(ends.len() as u64);

    let tick = ticks_per_s();
    let received = ctx.received.load(Relaxed);
    let unique = ctx.unique.load(Relaxed);
    let (first, last) = (
        ctx.first_recv_ns.load(Relaxed),
        ctx.last_recv_ns.load(Relaxed),
    );
    let window_s = last.saturating_sub(published.start_ns) as f64 / 1e9;
    let per_s = if window_s > 0.0 {
        unique as f64 / window_s
    } else {
        0.0
    };
    let cpu_s = (after.cpu_ticks - pre.cpu_ticks) as f64 / tick;
    let loadgen_s = (me_after.cpu_ticks - me_pre.cpu_ticks) as f64 / tick;
    let busy_s = busy_after.saturating_sub(busy_pre) as f64 / tick;
    let mib = |s: &Sample| s.rss_kib as f64 / 1024.0;
    let per_stream_kib = (idle.rss_kib as f64 - before.rss_kib as f64) / ready as f64;
    let us_per_delivery = (received > 0).then(|| cpu_s * 1e6 / received as f64);
    let ms = |q: f64| ctx.latency.quantile(q) as f64 / 1000.0;
    let loss_pct = if expected > 0 {
        100.0 * missing as f64 / expected as f64
    } else {
        0.0
    };
    let errors = ctx.errors.lock().unwrap().clone();
    let report = json!({
        "tool": "h2_load",
        "label": a.label,
        "url": a.url,
        "tls": t.tls.is_some(),
        "connections": a.connections,
        "streams_per_connection": a.streams_per_conn,
        "channels": a.channels,
        "messages_per_channel": a.messages,
        "rate": a.rate,
        "size": a.size,
        "connect": {"streams": streams, "ready": ready, "failed": failed,
            "not_ready": streams.saturating_sub(ready + failed), "duration_s": connect_s,
            "streams_per_s": ready as f64 / connect_s.max(1e-9)},
        "confirm": {"rounds": rounds, "confirmed": confirmed,
            "unconfirmed": ready.saturating_sub(confirmed)},
        "server": a.pid.map(|pid| json!({
            "pid": pid, "procs": before.procs,
            "rss_mib": {"before": mib(&before), "ready": mib(&at_ready), "idle": mib(&idle), "pre_publish": mib(&pre),
                "after": mib(&after)},
            "rss_per_idle_stream_kib": per_stream_kib,
            // fanbench's figure: sampled as the last stream became ready, without settling
            "rss_per_stream_at_ready_kib":
                (at_ready.rss_kib as f64 - before.rss_kib as f64) / ready as f64,
            "cpu_publish_and_drain_s": cpu_s,
            "cpu_us_per_delivery": us_per_delivery,
        })),
        "loadgen": {"cpu_publish_and_drain_s": loadgen_s,
            "threads": std::thread::available_parallelism().map_or(2, |n| n.get())},
        "machine": {"cores": std::thread::available_parallelism().map_or(2, |n| n.get()),
            "busy_publish_and_drain_s": busy_s,
            "other_publish_and_drain_s": busy_s - cpu_s - loadgen_s},
        "publish": {"items": published.acked.len(),
            "acked": published.acked.iter().filter(|x| **x).count(),
            "requests": published.requests, "failed_requests": published.failed_requests,
            "duration_s": (published.end_ns - published.start_ns) as f64 / 1e9},
        "delivery": {"expected": expected, "received": received, "unique": unique,
            "missing": missing, "loss_pct": loss_pct, "duplicates": dups, "out_of_order": ooo,
            "unexpected": unexpected, "streams_with_loss": with_loss,
            "streams_closed_during_run": closed, "streams_unaccounted": unaccounted,
            "first_delivery_after_publish_start_s": (first != u64::MAX)
                .then(|| first.saturating_sub(published.start_ns) as f64 / 1e9),
            "last_delivery_after_publish_start_s": window_s,
            "deliveries_per_s": per_s, "drain_s": drain_s, "drain_complete": drain_complete,
            "latency_ms": {"p50": ms(0.5), "p90": ms(0.9), "p99": ms(0.99), "p999": ms(0.999),
                "max": ctx.latency.max.load(Relaxed) as f64 / 1000.0}},
        "errors": errors,
    });
    let server_part = match a.pid {
        Some(_) => format!(
            "server RSS {:.1} -> {:.1} MiB = {per_stream_kib:.2} KiB per idle stream, CPU {cpu_s:.2} s = {:.2} us per delivery; ",
            mib(&before),
            mib(&idle),
            us_per_delivery.unwrap_or(0.0)
        ),
        None => String::new(),
    };
    println!(
        "h2_load {}{} streams ({} conns x {}{}): ready {ready} failed {failed}; {server_part}{per_s:.0} deliveries/s, latency p50 {:.2} ms p99 {:.2} ms; expected {expected} missing {missing} ({loss_pct:.3} %) duplicates {dups} out-of-order {ooo} closed {closed}{}",
        if a.label.is_empty() { String::new() } else { format!("[{}] ", a.label) },
        streams,
        a.connections,
        a.streams_per_conn,
        if t.tls.is_some() { ", TLS" } else { ", h2c" },
        ms(0.5),
        ms(0.99),
        if errors.is_empty() { String::new() } else { format!("; errors {errors:?}") },
    );
    if let Some(path) = &a.json {
        let text = serde_json::to_string_pretty(&report).expect("JSON") + "\n";
        std::fs::write(path, text).map_err(|e| format!("writing {path}: {e}"))?;
    }
    Ok(())
}
