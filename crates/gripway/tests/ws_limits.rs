//! WebSocket limits against the real binary: what a client sends while the origin is slow is
//! bounded (reading the client pauses, TCP pushes back, nothing is lost or reordered), and
//! an origin that keeps accepting nothing is retried with backoff, then given up with 1014.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use gripway_proto::woh::{decode_events, encode_events, Event, EventKind, WohLimits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

/// Messages the client sends, and the size of each.
const MESSAGES: usize = 480;
const MESSAGE_BYTES: usize = 60_000;
/// How much the server's memory may grow while it holds the client back.
const RSS_SLACK: u64 = 12 << 20;

fn frame(payload: &[u8]) -> Vec<u8> {
    // a binary frame, masked with a zero key so the payload goes out unchanged
    let mut f = vec![0x82, 0x80 | 126];
    f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 0]);
    f.extend_from_slice(payload);
    f
}

/// Message `i`: its number, then filler.
fn message(i: usize) -> Vec<u8> {
    let mut m = vec![b'x'; MESSAGE_BYTES];
    m[..8].copy_from_slice(&(i as u64).to_be_bytes());
    m
}

/// Opens a WebSocket by hand and returns the socket after the `101`.
async fn open(gw: &Gripway) -> TcpStream {
    let mut sock = TcpStream::connect(gw.addr).await.expect("connect");
    let head = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    sock.write_all(head.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut b = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(WAIT, sock.read(&mut b))
            .await
            .expect("101 in time")
            .unwrap();
        assert!(n > 0, "closed during the handshake");
        got.push(b[0]);
    }
    assert!(
        got.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    sock
}

/// Sends every message from a task of its own; the counter says how many bytes went out.
fn send_all(sock: TcpStream) -> (Arc<AtomicU64>, tokio::task::JoinHandle<TcpStream>) {
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    let task = tokio::spawn(async move {
        let mut sock = sock;
        for i in 0..MESSAGES {
            let f = frame(&message(i));
            sock.write_all(&f).await.expect("write");
            counter.fetch_add(f.len() as u64, Ordering::Relaxed);
        }
        sock
    });
    (sent, task)
}

/// Checks that every message arrived once, whole, in order.
fn assert_in_order(received: &[Vec<u8>]) {
    assert_eq!(received.len(), MESSAGES, "every message arrives");
    for (i, m) in received.iter().enumerate() {
        assert_eq!(m.len(), MESSAGE_BYTES, "message {i} whole");
        assert_eq!(&m[..8], &(i as u64).to_be_bytes(), "message {i} in order");
    }
}

/// While the origin holds back, the server's memory stays bounded and reading the client
/// pauses (the client cannot get everything out).
async fn assert_held_back(gw: &Gripway, baseline: u64, sent: &AtomicU64, paused_metric: &str) {
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss = gw.rss_bytes().expect("RSS readable");
    let total = (MESSAGES * (MESSAGE_BYTES + 8)) as u64;
    let out = sent.load(Ordering::Relaxed);
    assert!(
        out < total,
        "the client got all {total} bytes out while the origin held back"
    );
    assert!(
        rss < baseline + RSS_SLACK,
        "server RSS grew from {baseline} to {rss} while holding the client's messages"
    );
    let paused = gw.metric(paused_metric).await.unwrap_or(0.0);
    assert!(paused >= 1.0, "pausing is counted: {paused}");
}

#[tokio::test]
async fn over_http_queue_is_bounded_while_the_origin_is_slow() {
    let received: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let seen = received.clone();
    let first = Arc::new(Mutex::new(true));
    let origin = Origin::start(move |r| {
        let events = decode_events(&r.body, &WohLimits::default()).expect("valid events");
        let mut reply = Reply::ok().header("Content-Type", "application/websocket-events");
        let mut out = Vec::new();
        for e in &events {
            match e.kind {
                EventKind::Open => out.push(Event::open()),
                EventKind::Binary => seen.lock().unwrap().push(e.content.to_vec()),
                _ => {}
            }
        }
        if events.iter().any(|e| e.kind == EventKind::Binary)
            && std::mem::take(&mut *first.lock().unwrap())
        {
            // the first request with messages is slow to answer
            reply = reply.delay(Duration::from_secs(4));
        }
        let mut body = Vec::new();
        encode_events(&out, &mut body);
        reply.body(body)
    })
    .await;
    let gw = gripway(&["--route", &format!("* {},over_http", origin.target())]);
    let sock = open(&gw).await;
    let baseline = gw.rss_bytes().expect("RSS readable");
    let (sent, sender) = send_all(sock);
    assert_held_back(
        &gw,
        baseline,
        &sent,
        "gripway_input_paused_total{reason=\"websocket-over-http-queue-full\"}",
    )
    .await;
    let _sock = tokio::time::timeout(Duration::from_secs(60), sender)
        .await
        .expect("the client gets everything out once the origin answers")
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while received.lock().unwrap().len() < MESSAGES && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_in_order(&received.lock().unwrap());
}

#[tokio::test]
async fn passthrough_outbox_is_bounded_while_the_origin_does_not_read() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let release = Arc::new(tokio::sync::Notify::new());
    let go = release.clone();
    let origin = tokio::spawn(async move {
        let (sock, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(sock).await.unwrap();
        go.notified().await;
        let mut received = Vec::new();
        while received.len() < MESSAGES {
            match tokio::time::timeout(Duration::from_secs(60), ws.next()).await {
                Ok(Some(Ok(Message::Binary(b)))) => received.push(b.to_vec()),
                Ok(Some(Ok(_))) => {}
                _ => break,
            }
        }
        received
    });
    let gw = gripway(&["--route", &format!("* {addr}")]);
    let sock = open(&gw).await;
    let baseline = gw.rss_bytes().expect("RSS readable");
    let (sent, sender) = send_all(sock);
    assert_held_back(
        &gw,
        baseline,
        &sent,
        "gripway_input_paused_total{reason=\"websocket-origin-outbox-full\"}",
    )
    .await;
    release.notify_one();
    let _sock = tokio::time::timeout(Duration::from_secs(60), sender)
        .await
        .expect("the client gets everything out once the origin reads")
        .unwrap();
    let received = tokio::time::timeout(Duration::from_secs(60), origin)
        .await
        .expect("the origin gets everything")
        .unwrap();
    assert_in_order(&received);
}

/// Reads frames until a close frame; its code.
async fn close_code(sock: &mut TcpStream, within: Duration) -> Option<u16> {
    let mut buf = Vec::new();
    let deadline = Instant::now() + within;
    loop {
        // server frames are unmasked and short here
        while buf.len() >= 2 {
            let len = (buf[1] & 0x7f) as usize;
            if buf.len() < 2 + len {
                break;
            }
            if buf[0] & 0x0f == 0x8 {
                return (len >= 2).then(|| u16::from_be_bytes([buf[2], buf[3]]));
            }
            buf.drain(..2 + len);
        }
        let mut b = [0u8; 512];
        let n = tokio::time::timeout_at(deadline.into(), sock.read(&mut b))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&b[..n]);
    }
}

#[tokio::test]
async fn nothing_accepted_is_resent_with_backoff_then_closes_with_1014() {
    let origin = Origin::start(|r| {
        let events = decode_events(&r.body, &WohLimits::default()).expect("valid events");
        let mut reply = Reply::ok().header("Content-Type", "application/websocket-events");
        let mut out = Vec::new();
        if events.first().is_some_and(|e| e.kind == EventKind::Open) {
            out.push(Event::open());
        } else {
            reply = reply.header("Content-Bytes-Accepted", "0");
        }
        let mut body = Vec::new();
        encode_events(&out, &mut body);
        reply.body(body)
    })
    .await;
    let gw = gripway(&["--route", &format!("* {},over_http", origin.target())]);
    let mut sock = open(&gw).await;
    sock.write_all(&frame(&message(0)[..200])).await.unwrap();
    let code = close_code(&mut sock, Duration::from_secs(15)).await;
    assert_eq!(code, Some(1014), "the origin's fault: 1014 Bad Gateway");

    let content: Vec<_> = origin
        .requests()
        .into_iter()
        .filter(|r| r.body.starts_with(b"BINARY"))
        .collect();
    // the first offer and 6 resends
    assert_eq!(content.len(), 7, "resends are capped");
    assert!(
        content
            .iter()
            .skip(1)
            .all(|r| r.header("content-bytes-replayed") == Some("200")),
        "each resend says it replays"
    );
    assert_eq!(
        gw.metric("gripway_retries_total{reason=\"websocket-nothing-accepted\"}")
            .await,
        Some(6.0)
    );
    assert_eq!(
        gw.metric("gripway_errors_total{source=\"origin\",reason=\"websocket-nothing-accepted\"}")
            .await,
        Some(1.0)
    );
}

#[tokio::test]
async fn nothing_accepted_waits_longer_each_time() {
    let stamps: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let seen = stamps.clone();
    let origin = Origin::start(move |r| {
        let events = decode_events(&r.body, &WohLimits::default()).expect("valid events");
        let mut reply = Reply::ok().header("Content-Type", "application/websocket-events");
        let mut out = Vec::new();
        if events.first().is_some_and(|e| e.kind == EventKind::Open) {
            out.push(Event::open());
        } else {
            seen.lock().unwrap().push(Instant::now());
            reply = reply.header("Content-Bytes-Accepted", "0");
        }
        let mut body = Vec::new();
        encode_events(&out, &mut body);
        reply.body(body)
    })
    .await;
    let gw = gripway(&["--route", &format!("* {},over_http", origin.target())]);
    let mut sock = open(&gw).await;
    sock.write_all(&frame(b"wants more")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let stamps = stamps.lock().unwrap().clone();
    // offered at 0, then again after 100, 200 and 400 ms
    assert!(
        (3..=5).contains(&stamps.len()),
        "a few paced offers within a second, not a tight loop: {}",
        stamps.len()
    );
    let gaps: Vec<Duration> = stamps.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps[0] >= Duration::from_millis(90), "{gaps:?}");
    for w in gaps.windows(2) {
        assert!(w[1] >= w[0] + w[0] / 2, "the wait grows: {gaps:?}");
    }
}

/// When the origin got a request, and its body.
type Offer = (Instant, Vec<u8>);

#[tokio::test]
async fn more_client_data_ends_a_nothing_accepted_wait() {
    let stamps: Arc<Mutex<Vec<Offer>>> = Arc::default();
    let seen = stamps.clone();
    let origin = Origin::start(move |r| {
        let events = decode_events(&r.body, &WohLimits::default()).expect("valid events");
        let mut reply = Reply::ok().header("Content-Type", "application/websocket-events");
        let mut out = Vec::new();
        if events.first().is_some_and(|e| e.kind == EventKind::Open) {
            out.push(Event::open());
        } else {
            seen.lock().unwrap().push((Instant::now(), r.body.clone()));
            // a partial packet: nothing taken until the second part is there
            if !events.iter().any(|e| &e.content[..] == b"part 2") {
                reply = reply.header("Content-Bytes-Accepted", "0");
            }
        }
        let mut body = Vec::new();
        encode_events(&out, &mut body);
        reply.body(body)
    })
    .await;
    let gw = gripway(&["--route", &format!("* {},over_http", origin.target())]);
    let mut sock = open(&gw).await;
    sock.write_all(&frame(b"part 1")).await.unwrap();
    // after three refusals the next offer waits 400 ms
    let deadline = Instant::now() + WAIT;
    while stamps.lock().unwrap().len() < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    sock.write_all(&frame(b"part 2")).await.unwrap();
    while stamps.lock().unwrap().len() < 4 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let stamps = stamps.lock().unwrap().clone();
    assert_eq!(stamps.len(), 4, "{stamps:?}");
    assert_eq!(stamps[3].1, b"BINARY 6\r\npart 1\r\nBINARY 6\r\npart 2\r\n");
    let gap = stamps[3].0 - stamps[2].0;
    assert!(
        gap < Duration::from_millis(300),
        "new data goes at once, not after the 400 ms wait: {gap:?}"
    );
}

#[tokio::test]
async fn a_failed_disconnect_is_retried_after_the_client_left() {
    let disconnects: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let seen = disconnects.clone();
    let origin = Origin::start(move |r| {
        let events = decode_events(&r.body, &WohLimits::default()).expect("valid events");
        let mut reply = Reply::ok().header("Content-Type", "application/websocket-events");
        let mut out = Vec::new();
        if events.first().is_some_and(|e| e.kind == EventKind::Open) {
            out.push(Event::open());
        }
        if events.iter().any(|e| e.kind == EventKind::Disconnect) {
            let mut seen = seen.lock().unwrap();
            seen.push(Instant::now());
            if seen.len() == 1 {
                reply = reply.delay(Duration::from_secs(2)); // past the response timeout
            }
        }
        let mut body = Vec::new();
        encode_events(&out, &mut body);
        reply.body(body)
    })
    .await;
    let dir = TempDir::new("ws-farewell-retry");
    let conf = dir.write("gripway.toml", "[proxy]\nresponse_timeout_ms = 500\n");
    let route = format!("* {},over_http", origin.target());
    let gw = gripway(&["--config", conf.to_str().unwrap(), "--route", &route]);
    let sock = open(&gw).await;
    drop(sock);
    let deadline = Instant::now() + Duration::from_secs(8);
    while disconnects.lock().unwrap().len() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let at = disconnects.lock().unwrap().clone();
    assert_eq!(at.len(), 2, "DISCONNECT sent again after its backoff");
    let gap = at[1] - at[0];
    assert!(
        gap >= Duration::from_millis(1400),
        "timeout, then at least a second: {gap:?}"
    );
    assert_eq!(
        gw.metric("gripway_retries_total{reason=\"websocket-request-failed\"}")
            .await,
        Some(1.0)
    );
}
