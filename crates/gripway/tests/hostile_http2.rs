//! Hostile HTTP/2 clients, in raw frames on the plain port (h2c with prior knowledge):
//! rapid reset (CVE-2023-44487), a CONTINUATION flood, SETTINGS and PING floods, an
//! oversized header list, a zero window held forever. Each time the server stays up, its
//! memory stays bounded, a canary subscriber keeps receiving, and the attacker's
//! connection is closed (GOAWAY) or its stream reset.
//!
//! The frames are written here by hand on purpose: a well-behaved client library would not
//! send them.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const CONTINUATION: u8 = 9;
const END_STREAM: u8 = 1;
const END_HEADERS: u8 = 4;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// HPACK for `GET {path}` on `http://localhost` (static-table indexes, literal values).
fn get_block(path: &str) -> Vec<u8> {
    let mut b = vec![0x82, 0x86]; // :method GET, :scheme http
    b.push(0x04); // :path, literal without indexing
    b.push(path.len() as u8);
    b.extend_from_slice(path.as_bytes());
    b.push(0x01); // :authority
    b.push(9);
    b.extend_from_slice(b"localhost");
    b
}

/// A literal header `name: value` (new name, without indexing); value under 127 bytes.
fn literal(name: &str, value: &str) -> Vec<u8> {
    let mut b = vec![0x00, name.len() as u8];
    b.extend_from_slice(name.as_bytes());
    b.push(value.len() as u8);
    b.extend_from_slice(value.as_bytes());
    b
}

/// A connection that sent the preface and its (empty or given) SETTINGS.
async fn attacker(addr: SocketAddr, settings: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(PREFACE).await.unwrap();
    s.write_all(&frame(SETTINGS, 0, 0, settings)).await.unwrap();
    s
}

/// What the server sent on `s` until it closed (or `within` passed): the frames' (type,
/// stream, first payload bytes), and whether the connection closed.
async fn frames_until_close<R: tokio::io::AsyncRead + Unpin>(
    s: &mut R,
    within: Duration,
) -> (Vec<(u8, u32, Vec<u8>)>, bool) {
    let mut got = Vec::new();
    let mut buf = Vec::new();
    let deadline = Instant::now() + within;
    let mut chunk = vec![0u8; 65536];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut chunk)).await {
            Err(_) => return (got, false),
            Ok(Ok(0)) | Ok(Err(_)) => return (got, true),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
        while buf.len() >= 9 {
            let len =
                (usize::from(buf[0]) << 16) | (usize::from(buf[1]) << 8) | usize::from(buf[2]);
            if buf.len() < 9 + len {
                break;
            }
            let stream = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
            let head = buf[9..9 + len.min(16)].to_vec();
            got.push((buf[3], stream, head));
            buf.drain(..9 + len);
        }
    }
}

fn saw(frames: &[(u8, u32, Vec<u8>)], kind: u8) -> bool {
    frames.iter().any(|(k, _, _)| *k == kind)
}

fn sse_origin_reply() -> Reply {
    Reply::ok()
        .header("Content-Type", "text/event-stream")
        .header("Grip-Hold", "stream")
        .header("Grip-Channel", "news")
        .body("data: welcome\n\n")
}

/// A server with a short idle timeout and a small per-subscriber queue, and a canary: an
/// HTTP/1 SSE subscriber.
async fn setup() -> (Origin, Gripway, RawClient, TempDir) {
    let origin = Origin::start(|_| sse_origin_reply()).await;
    let dir = TempDir::new("h2-hostile");
    let config = dir.path().join("gripway.toml");
    std::fs::write(
        &config,
        "[proxy]\nidle_timeout_ms = 2000\n[grip]\nsubscriber_queue_bytes = 65536\n",
    )
    .unwrap();
    let gw = gripway_to(&origin, &["--config", config.to_str().unwrap()]);
    let mut canary = RawClient::connect(gw.addr).await;
    canary.get("/canary", &[]).await;
    canary.read_until(b"data: welcome\n\n", WAIT).await;
    (origin, gw, canary, dir)
}

/// The server is up, its memory grew by less than 64 MiB since `rss_before`, and the canary
/// still receives what is published.
async fn still_serving(gw: &mut Gripway, canary: &mut RawClient, rss_before: u64, tag: &str) {
    assert!(gw.is_running(), "{tag}: the server died");
    let grown = gw.rss_kib().unwrap_or(0).saturating_sub(rss_before);
    assert!(grown < 64 * 1024, "{tag}: RSS grew by {grown} KiB");
    let content = format!("data: after {tag}\n\n");
    let (status, _) = publish(&gw.publish_url(), &stream_item("news", &content)).await;
    assert_eq!(status, 200);
    canary.read_until(content.as_bytes(), WAIT).await;
}

/// Sends `bytes` on `s` (as far as the server takes them within [`WAIT`]) while reading
/// what the server sends, until it closes or [`WAIT`] passes.
async fn attack(s: TcpStream, bytes: Vec<u8>) -> (Vec<(u8, u32, Vec<u8>)>, bool) {
    let (mut r, mut w) = s.into_split();
    let writer = tokio::spawn(async move {
        let _ = tokio::time::timeout(WAIT, w.write_all(&bytes)).await;
        w
    });
    let got = frames_until_close(&mut r, WAIT).await;
    writer.abort();
    got
}

#[tokio::test]
async fn rapid_reset_is_refused_with_goaway() {
    let (origin, mut gw, mut canary, _dir) = setup().await;
    let rss = gw.rss_kib().unwrap();
    let s = attacker(gw.addr, &[]).await;
    let mut burst = Vec::new();
    let block = get_block("/reset");
    for i in 0..5000u32 {
        let id = 2 * i + 1;
        burst.extend(frame(HEADERS, END_HEADERS | END_STREAM, id, &block));
        burst.extend(frame(RST_STREAM, 0, id, &8u32.to_be_bytes()));
    }
    let (frames, closed) = attack(s, burst).await;
    assert!(saw(&frames, GOAWAY) && closed, "{closed} {frames:?}");
    // far fewer than 5,000 requests reached the origin
    let sent = origin.requests().len();
    assert!(sent < 1000, "{sent} requests reached the origin");
    still_serving(&mut gw, &mut canary, rss, "rapid reset").await;
}

#[tokio::test]
async fn a_continuation_flood_is_cut_off() {
    let (origin, mut gw, mut canary, _dir) = setup().await;
    let rss = gw.rss_kib().unwrap();
    let s = attacker(gw.addr, &[]).await;
    let mut flood = frame(HEADERS, 0, 1, &get_block("/flood"));
    let mut block = Vec::new();
    for i in 0..150 {
        block.extend(literal(&format!("x-flood-{i:03}"), &"v".repeat(90)));
    }
    // ~16 KB of header fields a frame, 2,000 frames: 32 MB, never END_HEADERS
    for _ in 0..2000 {
        flood.extend(frame(CONTINUATION, 0, 1, &block));
    }
    let (frames, closed) = attack(s, flood).await;
    assert!(closed, "the connection stays open: {frames:?}");
    assert!(
        !origin.requests().iter().any(|r| r.path == "/flood"),
        "the flooded request reached the origin"
    );
    still_serving(&mut gw, &mut canary, rss, "continuation flood").await;
}

#[tokio::test]
async fn an_oversized_header_list_is_refused() {
    let (origin, mut gw, mut canary, _dir) = setup().await;
    let rss = gw.rss_kib().unwrap();
    let mut s = attacker(gw.addr, &[]).await;
    // 48 KB of header fields (the limit is proxy.max_request_head, 32 KiB), in one HEADERS
    // frame and two CONTINUATIONs
    let mut block = get_block("/big");
    for i in 0..480 {
        block.extend(literal(&format!("x-big-{i:03}"), &"v".repeat(90)));
    }
    let parts: Vec<&[u8]> = block.chunks(16_000).collect();
    for (n, part) in parts.iter().enumerate() {
        let last = n + 1 == parts.len();
        let flags = if last { END_HEADERS | END_STREAM } else { 0 };
        let kind = if n == 0 { HEADERS } else { CONTINUATION };
        s.write_all(&frame(kind, flags, 1, part)).await.unwrap();
    }
    let (frames, closed) = frames_until_close(&mut s, Duration::from_secs(3)).await;
    // refused: a 431 answer, a reset or a GOAWAY, never a request to the origin
    let answered = frames
        .iter()
        .any(|(k, id, _)| *id == 1 && (*k == HEADERS || *k == RST_STREAM));
    assert!(answered || saw(&frames, GOAWAY) || closed, "{frames:?}");
    assert!(!origin.requests().iter().any(|r| r.path == "/big"));
    still_serving(&mut gw, &mut canary, rss, "oversized header list").await;
}

/// Floods `kind` frames without reading the answers: the server neither grows nor stops
/// serving others.
async fn flood_of(kind: u8, payload: &[u8], tag: &str) {
    let (_origin, mut gw, mut canary, _dir) = setup().await;
    let rss = gw.rss_kib().unwrap();
    let mut s = attacker(gw.addr, &[]).await;
    let one = frame(kind, 0, 0, payload);
    let batch: Vec<u8> = one
        .iter()
        .copied()
        .cycle()
        .take(one.len() * 10_000)
        .collect();
    // 200,000 frames, not reading a single answer
    let flood = async {
        for _ in 0..20 {
            s.write_all(&batch).await?;
        }
        Ok::<_, std::io::Error>(())
    };
    let _ = tokio::time::timeout(WAIT, flood).await;
    still_serving(&mut gw, &mut canary, rss, tag).await;
    // the server is not stuck on this connection either way: it is closed, or it answers
    drop(s);
}

#[tokio::test]
async fn a_settings_flood_does_not_grow_the_server() {
    flood_of(SETTINGS, &[], "settings flood").await;
}

#[tokio::test]
async fn a_ping_flood_does_not_grow_the_server() {
    flood_of(PING, &[0u8; 8], "ping flood").await;
}

#[tokio::test]
async fn a_zero_window_held_forever_is_reset_then_closed() {
    let (_origin, mut gw, mut canary, _dir) = setup().await;
    let rss = gw.rss_kib().unwrap();
    // SETTINGS_INITIAL_WINDOW_SIZE = 0, and never a WINDOW_UPDATE
    let mut settings = vec![0x00, 0x04];
    settings.extend_from_slice(&0u32.to_be_bytes());
    let mut s = attacker(gw.addr, &settings).await;
    s.write_all(&frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &get_block("/events"),
    ))
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let item = format!("data: {}\n\n", "x".repeat(8000));
    for _ in 0..20 {
        publish(&gw.publish_url(), &stream_item("news", &item)).await;
    }
    // its queue passed 64 KiB: the stream is reset; with no stream left the connection goes
    // after the idle timeout (2 s)
    let (frames, closed) = frames_until_close(&mut s, WAIT).await;
    let reset = frames
        .iter()
        .any(|(k, id, p)| *k == RST_STREAM && *id == 1 && p[..] == 8u32.to_be_bytes());
    assert!(reset, "{frames:?}");
    assert!(saw(&frames, GOAWAY) && closed, "{closed} {frames:?}");
    assert!(!saw(&frames, DATA), "no window, no DATA: {frames:?}");
    still_serving(&mut gw, &mut canary, rss, "zero window").await;
}
