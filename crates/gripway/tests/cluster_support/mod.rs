//! Shared by the cluster tests (`cluster.rs`, `cluster_failures.rs`): Gripway nodes joined to
//! real `nats-server`s, an origin that holds SSE, long-poll and WebSocket-over-HTTP clients on
//! one channel, background clients that record every item they receive (so a test can publish
//! and watch several nodes at once), and a bounded warm-up that waits until every node's
//! subscription to the channel is in place.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gripway_proto::woh::{decode_events, encode_events, Event, EventKind, WohLimits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub use crate::common::*;

/// Tests that kill servers or wait for elections run one at a time (a 2-core machine running
/// three JetStream clusters at once makes elections slow enough to blur what is measured).
pub static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The origin every node routes to: `/poll?after=ID` holds a long-poll on `channel` (with
/// `prev-id=ID`), a WebSocket-over-HTTP `OPEN` subscribes to `channel` (with `prev-id=ID`
/// when the URL ends in `?after=ID`), anything else holds an SSE stream on `channel` that
/// starts with `data: hi`.
pub async fn origin(channel: &'static str) -> Origin {
    Origin::start(move |req| {
        if req.method == "POST" {
            return woh_reply(req, channel);
        }
        if let Some(rest) = req.path.strip_prefix("/poll") {
            let grip_channel = match rest.strip_prefix("?after=") {
                Some(id) => format!("{channel}; prev-id={id}"),
                None => channel.to_string(),
            };
            return Reply::ok()
                .header("Content-Type", "text/plain")
                .header("Grip-Hold", "response")
                .header("Grip-Channel", &grip_channel)
                .header("Grip-Timeout", "20")
                .body("timeout\n");
        }
        Reply::ok()
            .header("Content-Type", "text/event-stream")
            .header("Grip-Hold", "stream")
            .header("Grip-Channel", channel)
            .body("event: open\ndata: hi\n\n")
    })
    .await
}

fn woh_reply(req: &OriginRequest, channel: &str) -> Reply {
    let events = decode_events(&req.body, &WohLimits::default()).expect("valid events");
    let mut reply = Reply::ok().header("Content-Type", "application/websocket-events");
    let mut out = Vec::new();
    if events.iter().any(|e| e.kind == EventKind::Open) {
        reply = reply.header("Sec-WebSocket-Extensions", "grip");
        out.push(Event::open());
        // `?after=ID` on the WebSocket's URL: subscribe with `prev-id` (recovery)
        let prev = match req.path.split_once("?after=") {
            Some((_, id)) => format!(",\"prev-id\":\"{id}\""),
            None => String::new(),
        };
        let subscribe = format!("c:{{\"type\":\"subscribe\",\"channel\":\"{channel}\"{prev}}}");
        out.push(Event::text(subscribe.into_bytes()));
    }
    let mut body = Vec::new();
    encode_events(&out, &mut body);
    reply.body(body)
}

/// Starts a node joined to `nats` (one URL or a comma-separated list) routing to `origin`.
pub fn node(nats: &str, origin: &Origin, extra: &[&str]) -> Gripway {
    let mut args = vec!["--cluster", nats];
    args.extend_from_slice(extra);
    node_with(origin, &args)
}

/// Starts a node routing to `origin` with `args` (a config file with `[cluster]`, say).
pub fn node_with(origin: &Origin, args: &[&str]) -> Gripway {
    let route = format!("* {},over_http", origin.target());
    let mut all = vec!["--route", route.as_str()];
    all.extend_from_slice(args);
    gripway(&all)
}

/// A config file with `[cluster]` (servers `nats`, `replicas`) and `extra` lines appended.
pub fn cluster_config(
    dir: &TempDir,
    name: &str,
    nats: &[String],
    replicas: usize,
    extra: &str,
) -> String {
    let list: Vec<String> = nats.iter().map(|u| format!("\"{u}\"")).collect();
    let text = format!(
        "[cluster]\nnats = [{}]\nreplicas = {replicas}\n{extra}",
        list.join(", ")
    );
    dir.write(name, &text)
        .to_str()
        .expect("utf-8 path")
        .to_string()
}

/// One Gripway node per server of `nats`, node i given server i only (it learns the others
/// from it), the stream kept with 3 replicas; `history` is appended to each node's config.
pub fn node_per_server(
    nats: &NatsCluster,
    dir: &TempDir,
    origin: &Origin,
    history: &str,
) -> Vec<Gripway> {
    (0..3)
        .map(|i| {
            let name = format!("n{i}.toml");
            let config = cluster_config(dir, &name, &[nats.client_url(i)], 3, history);
            node_with(origin, &["--config", &config])
        })
        .collect()
}

/// One item with id `id` on `channel` in every format the test clients use: an SSE event
/// (`id:` and `data:` lines), a long-poll body (`id\n`) and a WebSocket message (`id`).
pub fn item(channel: &str, id: &str) -> serde_json::Value {
    serde_json::json!({
        "channel": channel,
        "id": id,
        "formats": {
            "http-stream": {"content": format!("id: {id}\ndata: {id}\n\n")},
            "http-response": {"body": format!("{id}\n")},
            "ws-message": {"content": id}
        }
    })
}

/// A publish body holding `ids` on `channel`.
pub fn body(channel: &str, ids: &[String]) -> String {
    let items: Vec<_> = ids.iter().map(|id| item(channel, id)).collect();
    serde_json::json!({ "items": items }).to_string()
}

/// `prefix0`, `prefix1`, ... for `range`.
pub fn ids(prefix: &str, range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|n| format!("{prefix}{n}")).collect()
}

/// Publishes `ids` to `gw` and expects them acknowledged.
pub async fn publish_ids(gw: &Gripway, channel: &str, ids: &[String]) {
    let (status, text) = publish(&gw.publish_url(), &body(channel, ids)).await;
    assert_eq!(status, 200, "publish of {ids:?}: {text}");
}

/// An SSE client reading in the background, recording the `data:` of every event it gets.
pub struct Sse {
    seen: Arc<Mutex<Vec<String>>>,
    ended: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Sse {
    /// Opens `path` on `addr` (with `Last-Event-ID` if given) and waits until the origin's
    /// opening event has arrived, i.e. the client is held and subscribed.
    pub async fn open(addr: SocketAddr, path: &str, last_event_id: Option<&str>) -> Sse {
        let mut sock = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .expect("connect in time")
            .expect("connect");
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n");
        if let Some(id) = last_event_id {
            req.push_str(&format!("Last-Event-ID: {id}\r\n"));
        }
        req.push_str("\r\n");
        sock.write_all(req.as_bytes()).await.expect("send request");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let ended = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(read_events(sock, seen.clone(), ended.clone()));
        let sse = Sse { seen, ended, task };
        let deadline = Instant::now() + WAIT;
        while !sse.seen.lock().expect("lock").iter().any(|d| d == "hi") {
            assert!(
                Instant::now() < deadline && !sse.ended(),
                "no opening event within {WAIT:?} (ended: {})",
                sse.ended()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        sse
    }

    /// Every event's data after the opening one, in order.
    pub fn seen(&self) -> Vec<String> {
        let all = self.seen.lock().expect("lock");
        all.iter().filter(|d| *d != "hi").cloned().collect()
    }

    /// True once the server closed the connection (or it failed).
    pub fn ended(&self) -> bool {
        self.ended.load(Relaxed)
    }

    /// Waits (bounded) until `id` has arrived; returns everything seen (after the opening).
    pub async fn wait_for(&self, id: &str, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        loop {
            let seen = self.seen();
            if seen.iter().any(|d| d == id) {
                return seen;
            }
            assert!(
                Instant::now() < deadline,
                "{id} did not arrive within {within:?}; seen {seen:?} (ended: {})",
                self.ended()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for Sse {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn read_events(mut sock: TcpStream, seen: Arc<Mutex<Vec<String>>>, ended: Arc<AtomicBool>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        // complete lines only; `data: X` lines are the events (chunk-size lines and the
        // response head never start with it)
        let Some(end) = buf.iter().rposition(|b| *b == b'\n') else {
            continue;
        };
        let lines: Vec<u8> = buf.drain(..=end).collect();
        let mut seen = seen.lock().expect("lock");
        for line in String::from_utf8_lossy(&lines).lines() {
            if let Some(d) = line.strip_prefix("data: ") {
                seen.push(d.trim_end_matches('\r').to_string());
            }
        }
    }
    ended.store(true, Relaxed);
}

/// Publishes probe items (`w0`, `w1`, ..., SSE format only, so long-polls and WebSockets
/// never see them) to `publisher` until every client in `clients` has received one: then
/// every node holding one of them is subscribed to `channel` in the cluster, and an item
/// published from now on reaches it. Bounded by 20 s.
pub async fn warm_up(publisher: &Gripway, channel: &str, clients: &[&Sse]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut n = 0u32;
    loop {
        let probe = serde_json::json!({"items": [{"channel": channel, "id": format!("w{n}"),
            "formats": {"http-stream": {"content": format!("id: w{n}\ndata: w{n}\n\n")}}}]})
        .to_string();
        let (status, text) = publish(&publisher.publish_url(), &probe).await;
        assert_eq!(status, 200, "probe {n}: {text}");
        n += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
        if clients
            .iter()
            .all(|c| c.seen().iter().any(|d| d.starts_with('w')))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the nodes did not all subscribe within 20 s: {:?}",
            clients.iter().map(|c| c.seen()).collect::<Vec<_>>()
        );
    }
}

/// What a client saw, without the warm-up probes.
pub fn real(seen: &[String]) -> Vec<String> {
    seen.iter()
        .filter(|d| !d.starts_with('w'))
        .cloned()
        .collect()
}

/// The index of the nats-server (`n<i>`) leading stream `GRIPWAY`, asked over the NATS
/// protocol on `client_url` (the JetStream API's `STREAM.INFO`). None while there is none.
pub async fn stream_leader(client_url: &str) -> Option<usize> {
    let addr: SocketAddr = client_url
        .trim_start_matches("nats://")
        .parse()
        .expect("IP:PORT");
    let mut c = RawClient::connect(addr).await;
    c.read_until(b"\r\n", WAIT).await; // INFO
    c.send(
        b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\nSUB _INBOX.leader 1\r\n\
          PUB $JS.API.STREAM.INFO.GRIPWAY _INBOX.leader 0\r\n\r\n",
    )
    .await;
    c.read_until(b"MSG _INBOX.leader 1 ", WAIT).await;
    c.read_until(b"\r\n", WAIT).await; // the payload's length
    let json = c.read_until(b"}\r\n", WAIT).await;
    let v: serde_json::Value = serde_json::from_slice(&json[..json.len() - 2]).ok()?;
    let name = v["cluster"]["leader"].as_str()?;
    name.trim_start_matches('n').parse().ok()
}

/// Asserts that `got` holds each of `want` exactly once, in `want`'s order, and nothing twice.
pub fn assert_once_in_order(who: &str, got: &[String], want: &[String]) {
    let mut counts = std::collections::HashMap::new();
    for g in got {
        *counts.entry(g).or_insert(0) += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "{who}: received twice: {twice:?}");
    let wanted: std::collections::HashSet<&String> = want.iter().collect();
    let kept: Vec<&String> = got.iter().filter(|g| wanted.contains(g)).collect();
    let missing: Vec<&String> = want.iter().filter(|w| !counts.contains_key(w)).collect();
    assert!(missing.is_empty(), "{who}: never received {missing:?}");
    assert_eq!(
        kept,
        want.iter().collect::<Vec<_>>(),
        "{who}: not in the acknowledged order"
    );
}
