//! Cluster mode against the real binary and real `nats-server`s (issue 9), with every part
//! healthy: an item published on one node reaches SSE, long-poll and WebSocket clients on the
//! others, in order, once; two nodes publishing to one channel at the same moment give every
//! subscriber on every node the same order; the same id published on two nodes is delivered
//! once; a node that never had a channel answers `Last-Event-ID` and the publish API's history
//! from the stream and then delivers live items; and `--cluster` / `[cluster]` settings that
//! cannot work stop start-up with a message naming them. Failures (NATS servers or a node
//! killed) are in `cluster_failures.rs`.

mod cluster_support;
mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use cluster_support::*;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

/// A long-poll client on `addr`: polls `/poll`, then `/poll?after=<last id>` (the origin
/// turns it into `prev-id`) after each answer, until it has `count` items; their bodies, in
/// the order received.
async fn long_poll(addr: SocketAddr, count: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(25);
    let mut got: Vec<String> = Vec::new();
    while got.len() < count {
        assert!(Instant::now() < deadline, "long-poll got only {got:?}");
        let path = match got.last() {
            Some(id) => format!("/poll?after={id}"),
            None => "/poll".to_string(),
        };
        let mut c = RawClient::connect(addr).await;
        c.get(&path, &["Connection: close"]).await;
        let all = c.read_to_end(Duration::from_secs(25)).await;
        let text = String::from_utf8_lossy(&all);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        let body = text
            .split_once("\r\n\r\n")
            .map_or("", |(_, b)| b)
            .trim_end();
        if body != "timeout" {
            got.push(body.to_string());
        }
    }
    got
}

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

async fn ws_connect(gw: &Gripway, path: &str) -> Ws {
    let url = format!("ws://{}{}", gw.addr, path);
    let sock = tokio::net::TcpStream::connect(gw.addr)
        .await
        .expect("connect");
    let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(url, sock))
        .await
        .expect("handshake in time")
        .expect("handshake accepted");
    ws
}

/// The next text message, or None if none comes within `within`.
async fn ws_text(ws: &mut Ws, within: Duration) -> Option<String> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ws.next()).await {
            Err(_) => return None,
            Ok(m) => match m.expect("open").expect("no error") {
                Message::Text(t) => return Some(t.to_string()),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected {other:?}"),
            },
        }
    }
}

/// Waits (bounded) until the sample `metric` of `gw` reaches `at_least`.
async fn wait_metric(gw: &Gripway, metric: &str, at_least: f64) {
    for _ in 0..500 {
        if gw.metric(metric).await >= Some(at_least) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{metric} never reached {at_least}");
}

#[tokio::test]
async fn an_item_published_on_one_node_reaches_sse_long_poll_and_websocket_clients_on_others() {
    let nats = NatsServer::start();
    let origin = origin("fan").await;
    let url = nats.client_url();
    let a = node(&url, &origin, &[]);
    let b = node(&url, &origin, &[]);
    let c = node(&url, &origin, &[]);
    let sse_b = Sse::open(b.addr, "/events", None).await;
    let sse_c = Sse::open(c.addr, "/events", None).await;
    warm_up(&a, "fan", &[&sse_b, &sse_c]).await;
    let mut ws = ws_connect(&c, "/ws").await;
    wait_metric(&c, "gripway_subscriptions", 2.0).await;
    let want = ids("r", 0..30);
    let poller = tokio::spawn(long_poll(b.addr, want.len()));
    wait_metric(&b, "gripway_connections{transport=\"http-response\"}", 1.0).await;

    for chunk in want.chunks(5) {
        publish_ids(&a, "fan", chunk).await;
    }

    for sse in [&sse_b, &sse_c] {
        sse.wait_for("r29", WAIT).await;
    }
    let polled = tokio::time::timeout(Duration::from_secs(30), poller)
        .await
        .expect("long-poll in time")
        .expect("long-poll task");
    assert_eq!(polled, want, "long-poll on B: every item, in order, once");
    let mut got = Vec::new();
    while got.len() < want.len() {
        match ws_text(&mut ws, WAIT).await {
            Some(t) => got.push(t),
            None => panic!("WebSocket on C got only {got:?}"),
        }
    }
    assert_eq!(got, want, "WebSocket on C: every item, in order, once");
    // nothing more comes: no item was delivered twice
    assert_eq!(ws_text(&mut ws, Duration::from_millis(300)).await, None);
    for (who, sse) in [("SSE on B", &sse_b), ("SSE on C", &sse_c)] {
        assert_eq!(real(&sse.seen()), want, "{who}: every item, in order, once");
    }
}

#[tokio::test]
async fn a_client_that_just_subscribed_on_a_node_gets_the_next_item_published_elsewhere() {
    let nats = NatsServer::start();
    let origin = origin("first").await;
    let url = nats.client_url();
    let a = node(&url, &origin, &[]);
    let b = node(&url, &origin, &[]);
    // B never had the channel: the client's opening event has arrived (it is held), and the
    // very next publish, on A, must reach it
    let sse = Sse::open(b.addr, "/events", None).await;
    publish_ids(&a, "first", &ids("f", 0..1)).await;
    let seen = sse.wait_for("f0", WAIT).await;
    assert_eq!(seen, ["f0"]);
}

/// Publishes `prefix0..prefix{n}` to `gw`, `per_request` items a request, one request after
/// another.
async fn publish_run(gw: &Gripway, channel: &str, prefix: &str, n: u32, per_request: usize) {
    for chunk in ids(prefix, 0..n).chunks(per_request) {
        publish_ids(gw, channel, chunk).await;
    }
}

#[tokio::test]
async fn two_nodes_publishing_to_one_channel_at_once_give_every_subscriber_one_order() {
    let _one = ONE_AT_A_TIME.lock().await;
    let nats = NatsCluster::start(3);
    let dir = TempDir::new("cluster-concurrent");
    let origin = origin("race").await;
    // node i talks to NATS server i only; the stream keeps 3 replicas
    let nodes = node_per_server(&nats, &dir, &origin, "[history]\nmax_items = 1000\n");
    let mut subs = Vec::new();
    for n in &nodes {
        subs.push(Sse::open(n.addr, "/events", None).await);
    }
    subs.push(Sse::open(nodes[2].addr, "/events", None).await);
    warm_up(&nodes[0], "race", &subs.iter().collect::<Vec<_>>()).await;

    let started = Instant::now();
    tokio::join!(
        publish_run(&nodes[0], "race", "a", 200, 10),
        publish_run(&nodes[1], "race", "b", 200, 10),
    );
    eprintln!("2 x 200 items published in {:?}", started.elapsed());
    for s in &subs {
        s.wait_for("a199", WAIT).await;
        s.wait_for("b199", WAIT).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let first = real(&subs[0].seen());
    assert_eq!(first.len(), 400, "every item once: {first:?}");
    for (who, prefix) in [("A's", "a"), ("B's", "b")] {
        let own: Vec<String> = first
            .iter()
            .filter(|d| d.starts_with(prefix))
            .cloned()
            .collect();
        assert_eq!(
            own,
            ids(prefix, 0..200),
            "{who} items in the order published"
        );
    }
    for (i, s) in subs.iter().enumerate() {
        assert_eq!(real(&s.seen()), first, "subscriber {i} sees the same order");
    }
    let switches = first
        .windows(2)
        .filter(|w| w[0].as_bytes()[0] != w[1].as_bytes()[0])
        .count();
    eprintln!("the two publishers' items alternate {switches} times in the stream");
}

/// One item with id `id` whose SSE event says `data` (to tell which copy was delivered).
fn tagged(channel: &str, id: &str, data: &str) -> String {
    serde_json::json!({"items": [{"channel": channel, "id": id,
        "formats": {"http-stream": {"content": format!("id: {id}\ndata: {data}\n\n")}}}]})
    .to_string()
}

#[tokio::test]
async fn the_same_id_published_on_two_nodes_is_delivered_once_and_stored_once() {
    let nats = NatsServer::start();
    let origin = origin("dup").await;
    let url = nats.client_url();
    let a = node(&url, &origin, &[]);
    let b = node(&url, &origin, &[]);
    let subs = [
        Sse::open(a.addr, "/events", None).await,
        Sse::open(b.addr, "/events", None).await,
    ];
    warm_up(&a, "dup", &[&subs[0], &subs[1]]).await;
    // one after the other: the second is acknowledged and dropped
    assert_eq!(
        publish(&a.publish_url(), &tagged("dup", "d0", "d0"))
            .await
            .0,
        200
    );
    let (status, text) = publish(&b.publish_url(), &tagged("dup", "d0", "d0-again")).await;
    assert_eq!(status, 200, "a duplicate is still a success: {text}");
    // at the same moment, on both nodes
    for k in 1..=20 {
        let id = format!("d{k}");
        let (on_a, on_b) = (a.publish_url(), b.publish_url());
        let (first, again) = (
            tagged("dup", &id, &id),
            tagged("dup", &id, &format!("{id}-again")),
        );
        let (x, y) = tokio::join!(publish(&on_a, &first), publish(&on_b, &again));
        assert_eq!((x.0, y.0), (200, 200), "{x:?} {y:?}");
    }
    assert_eq!(
        publish(&b.publish_url(), &tagged("dup", "end", "end"))
            .await
            .0,
        200
    );
    let mut orders = Vec::new();
    for (who, s) in [("on A", &subs[0]), ("on B", &subs[1])] {
        s.wait_for("end", WAIT).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let got = real(&s.seen());
        assert_eq!(got.len(), 22, "{who}: one copy of each: {got:?}");
        assert_eq!(got[0], "d0", "{who}: the first copy");
        for (k, d) in got[1..21].iter().enumerate() {
            let id = format!("d{}", k + 1);
            assert!(
                *d == id || *d == format!("{id}-again"),
                "{who}: {d} where a copy of {id} belongs: {got:?}"
            );
        }
        orders.push(got);
    }
    assert_eq!(orders[0], orders[1], "both nodes delivered the same copies");
    // the stream itself kept one copy: a client resuming on a node that never had the
    // channel (its history comes from the stream) gets each once too
    let c = node(&url, &origin, &[]);
    let resumed = Sse::open(c.addr, "/events", Some("d0")).await;
    resumed.wait_for("end", WAIT).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(resumed.seen(), orders[0][1..], "resumed on a third node");
}

#[tokio::test]
async fn a_node_that_never_had_the_channel_recovers_from_the_stream_then_goes_live() {
    let nats = NatsServer::start();
    let origin = origin("late").await;
    let url = nats.client_url();
    let a = node(&url, &origin, &[]);
    let c = node(&url, &origin, &[]);
    // nobody subscribes anywhere: the items are only in the stream
    publish_ids(&a, "late", &ids("e", 0..10)).await;

    // the publish API of C reads them from the stream
    let mut h = RawClient::connect(c.publish_addr).await;
    h.get("/history/late?after=e6", &["Connection: close"])
        .await;
    let text = String::from_utf8_lossy(&h.read_to_end(WAIT).await).into_owned();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let v: serde_json::Value =
        serde_json::from_str(text.split_once("\r\n\r\n").expect("a body").1).expect("JSON");
    let got: Vec<&str> = v["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["id"].as_str().expect("id"))
        .collect();
    assert_eq!(got, ["e7", "e8", "e9"], "{v}");

    // an SSE client resuming on C gets what followed its id, then live items
    let sse = Sse::open(c.addr, "/events", Some("e2")).await;
    sse.wait_for("e9", WAIT).await;
    publish_ids(&a, "late", &ids("e", 10..13)).await;
    sse.wait_for("e12", WAIT).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(sse.seen(), ids("e", 3..13), "in order, once, no gap");
    // and one resuming with the query parameter, from an id further back
    let sse = Sse::open(c.addr, "/events?lastEventId=e0", None).await;
    let seen = sse.wait_for("e12", WAIT).await;
    assert_eq!(seen, ids("e", 1..13));
}

/// Runs the binary expecting it to refuse to start: (exit code, stderr).
fn refused(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gripway"))
        .args(["--port", "127.0.0.1:0", "--publish-port", "127.0.0.1:0"])
        .args(["--admin-port", "off"])
        .args(args)
        .output()
        .expect("the binary runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn cluster_settings_that_cannot_work_stop_start_up_with_a_clear_message() {
    let dir = TempDir::new("cluster-config");
    let store = dir.path().join("history");
    let store = store.to_str().expect("utf-8");
    // neither case needs a NATS server: they are refused before anything connects
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--cluster".into(), "http://127.0.0.1:4222".into()],
            "\"http://127.0.0.1:4222\" is not a NATS URL",
        ),
        (
            vec!["--cluster".into(), " , ".into()],
            "at least one server URL",
        ),
        (
            vec![
                "--cluster".into(),
                "nats://127.0.0.1:4222".into(),
                "--history-dir".into(),
                store.into(),
            ],
            "[history] dir and [cluster] cannot be used together",
        ),
        (
            vec![
                "--config".into(),
                dir.write(
                    "both.toml",
                    &format!("[cluster]\nnats = [\"nats://127.0.0.1:4222\"]\n[history]\ndir = \"{store}\"\n"),
                )
                .to_str()
                .expect("utf-8")
                .into(),
            ],
            "[history] dir and [cluster] cannot be used together",
        ),
        (
            vec![
                "--config".into(),
                dir.write("replicas.toml", "[cluster]\nnats = [\"nats://127.0.0.1:4222\"]\nreplicas = 9\n")
                    .to_str()
                    .expect("utf-8")
                    .into(),
            ],
            "replicas",
        ),
        (
            vec![
                "--config".into(),
                dir.write("no-servers.toml", "[cluster]\nreplicas = 3\n")
                    .to_str()
                    .expect("utf-8")
                    .into(),
            ],
            "[cluster] needs nats",
        ),
    ];
    for (args, message) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let started = Instant::now();
        let (code, stderr) = refused(&args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{args:?} refused at once, not after trying NATS"
        );
    }
}

/// An item with `prev-id` published on one node before its predecessor is published on
/// another: every node delivers the predecessor first (each node's sequencer sees the same
/// stream order, so each holds the early item until its predecessor arrives).
#[tokio::test]
async fn prev_id_ordering_holds_across_nodes() {
    let nats = NatsServer::start();
    let origin = origin("seq").await;
    let url = nats.client_url();
    let a = node(&url, &origin, &[]);
    let b = node(&url, &origin, &[]);
    let c = node(&url, &origin, &[]);
    let subs = [
        Sse::open(a.addr, "/events", None).await,
        Sse::open(b.addr, "/events", None).await,
        Sse::open(c.addr, "/events", None).await,
    ];
    warm_up(&a, "seq", &[&subs[0], &subs[1], &subs[2]]).await;
    publish_ids(&a, "seq", &["s1".to_string()]).await;
    for s in &subs {
        s.wait_for("s1", WAIT).await;
    }
    // s3 follows s2, and is published first, on another node
    let s3 = serde_json::json!({"items": [{"channel": "seq", "id": "s3", "prev-id": "s2",
        "formats": {"http-stream": {"content": "id: s3\ndata: s3\n\n"}}}]})
    .to_string();
    let s2 = serde_json::json!({"items": [{"channel": "seq", "id": "s2", "prev-id": "s1",
        "formats": {"http-stream": {"content": "id: s2\ndata: s2\n\n"}}}]})
    .to_string();
    assert_eq!(publish(&b.publish_url(), &s3).await.0, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(publish(&c.publish_url(), &s2).await.0, 200);
    for (who, s) in [("on A", &subs[0]), ("on B", &subs[1]), ("on C", &subs[2])] {
        s.wait_for("s3", WAIT).await;
        let got = real(&s.seen());
        assert_eq!(got, ["s1", "s2", "s3"], "{who}");
    }
}

/// A WebSocket subscribed with a `prev-id` on a node that never had the channel gets what
/// followed that id from the stream, then live items, each once.
#[tokio::test]
async fn a_websocket_prev_id_on_another_node_recovers_from_the_stream() {
    let nats = NatsServer::start();
    let origin = origin("wsr").await;
    let url = nats.client_url();
    let a = node(&url, &origin, &[]);
    let c = node(&url, &origin, &[]);
    publish_ids(&a, "wsr", &ids("e", 1..6)).await;
    let mut ws = ws_connect(&c, "/ws?after=e2").await;
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(ws_text(&mut ws, WAIT).await.expect("a recovered item"));
    }
    assert_eq!(got, ["e3", "e4", "e5"]);
    publish_ids(&a, "wsr", &ids("e", 6..8)).await;
    for want in ["e6", "e7"] {
        assert_eq!(ws_text(&mut ws, WAIT).await.as_deref(), Some(want));
    }
    assert_eq!(
        ws_text(&mut ws, Duration::from_millis(300)).await,
        None,
        "nothing twice"
    );
}

/// `GET /channels/{name}` on the admin listener: the channel's subscribers on this node and
/// over every node.
#[tokio::test]
async fn the_admin_api_counts_a_channels_subscribers_over_the_cluster() {
    let nats = NatsServer::start();
    let origin = origin("count me").await;
    let url = nats.client_url();
    let a = node(&url, &origin, &[]);
    let b = node(&url, &origin, &[]);
    let c = node(&url, &origin, &[]);
    let _subs = [
        Sse::open(a.addr, "/events", None).await,
        Sse::open(b.addr, "/events", None).await,
        Sse::open(b.addr, "/events", None).await,
    ];
    let mut last = serde_json::Value::Null;
    for _ in 0..100 {
        let text = admin_get(c.admin_addr, "/channels/count%20me").await;
        last = serde_json::from_str(&text).expect("JSON");
        if last["cluster"]["subscribers"] == 3 && last["cluster"]["nodes_alive"] == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last["channel"], "count me", "{last}");
    assert_eq!(last["subscribers"], 0, "none on C itself: {last}");
    assert_eq!(last["cluster"]["subscribers"], 3, "{last}");
    assert_eq!(last["cluster"]["nodes_answered"], 3, "{last}");
    let on_b: serde_json::Value =
        serde_json::from_str(&admin_get(b.admin_addr, "/channels/count%20me").await).unwrap();
    assert_eq!(on_b["subscribers"], 2);
    assert_eq!(a.metric("gripway_cluster_nodes").await, Some(3.0));
    assert_eq!(a.metric("gripway_cluster_subscriptions").await, Some(3.0));
}

/// The body of a GET on the admin listener.
async fn admin_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut sock = tokio::net::TcpStream::connect(addr).await.expect("admin");
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    sock.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, sock.read_to_end(&mut out))
        .await
        .expect("answer in time")
        .expect("read");
    let text = String::from_utf8_lossy(&out).to_string();
    text.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// A long-poll whose `prev-id` a node never saw (the channel is new to it) is answered at
/// once with the next item, read from the stream, without asking the origin again.
#[tokio::test]
async fn a_long_poll_prev_id_on_another_node_gets_the_next_item_from_the_stream() {
    let nats = NatsServer::start();
    let origin = origin("lp").await;
    let url = nats.client_url();
    let a = node(&url, &origin, &[]);
    let c = node(&url, &origin, &[]);
    publish_ids(&a, "lp", &ids("e", 1..4)).await;
    let requests_before = origin.requests().len();
    let started = Instant::now();
    let mut client = RawClient::connect(c.addr).await;
    client.get("/poll?after=e1", &["Connection: close"]).await;
    let all = client.read_to_end(WAIT).await;
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .trim_end();
    assert_eq!(body, "e2", "the item after e1: {text}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered at once"
    );
    assert_eq!(
        origin.requests().len(),
        requests_before + 1,
        "the origin was asked once (not again with Grip-Last)"
    );
}
