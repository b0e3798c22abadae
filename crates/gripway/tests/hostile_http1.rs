//! Hostile HTTP/1 clients against the real binary: heads that are malformed, oversized or
//! ambiguous are refused with their documented status and metric, a client that stops
//! reading a relayed response is dropped, and descriptors are kept for the publish API when
//! clients pile up (per-address limit, reserve, and accept failures that neither spin nor
//! flood the log).

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;

/// Starts gripway to `origin` with `toml` as its config file.
fn gripway_with_config(origin: &Origin, dir: &TempDir, toml: &str) -> Gripway {
    let conf = dir.write("gripway.toml", toml);
    gripway_to(origin, &["--config", conf.to_str().unwrap()])
}

async fn errors(gw: &Gripway, source: &str, reason: &str) -> f64 {
    gw.metric(&format!(
        "gripway_errors_total{{source=\"{source}\",reason=\"{reason}\"}}"
    ))
    .await
    .unwrap_or(0.0)
}

#[tokio::test]
async fn a_bare_lf_in_a_head_is_refused() {
    let origin = Origin::start(|_| Reply::ok()).await;
    let gw = gripway_to(&origin, &[]);
    for raw in [
        &b"GET / HTTP/1.1\nHost: x\n\n"[..],
        &b"GET / HTTP/1.1\r\nHost: x\nX-Smuggled: y\r\n\r\n"[..],
    ] {
        let mut c = RawClient::connect(gw.addr).await;
        c.send(raw).await;
        let text = String::from_utf8_lossy(&c.read_to_end(WAIT).await).into_owned();
        assert!(text.starts_with("HTTP/1.1 400 "), "{text}");
    }
    assert!(origin.requests().is_empty());
    assert_eq!(errors(&gw, "client", "bare-lf").await, 2.0);
}

#[tokio::test]
async fn transfer_encoding_on_http10_is_refused() {
    let origin = Origin::start(|_| Reply::ok()).await;
    let gw = gripway_to(&origin, &[]);
    let mut c = RawClient::connect(gw.addr).await;
    c.send(
        b"POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    let text = String::from_utf8_lossy(&c.read_to_end(WAIT).await).into_owned();
    assert!(text.starts_with("HTTP/1.1 400 "), "{text}");
    assert!(origin.requests().is_empty());
    assert_eq!(errors(&gw, "client", "bad-request-head").await, 1.0);
}

/// A GET whose head is exactly `len` bytes.
fn head_of_length(len: usize) -> Vec<u8> {
    let start = "GET / HTTP/1.1\r\nHost: x\r\nX-Pad: ";
    let end = "\r\n\r\n";
    let pad = len - start.len() - end.len();
    format!("{start}{}{end}", "a".repeat(pad)).into_bytes()
}

#[tokio::test]
async fn the_head_limit_holds_exactly_even_in_one_read() {
    let origin = Origin::start(|_| Reply::ok().body("fine")).await;
    let dir = TempDir::new("headlimit");
    let gw = gripway_with_config(&origin, &dir, "[proxy]\nmax_request_head = 2048\n");
    let mut c = RawClient::connect(gw.addr).await;
    c.send(&head_of_length(2048)).await;
    assert!(c.read_head().await.starts_with("HTTP/1.1 200 "));
    // one byte over, sent at once (it used to pass up to twice the limit)
    let mut c = RawClient::connect(gw.addr).await;
    c.send(&head_of_length(2049)).await;
    let text = String::from_utf8_lossy(&c.read_to_end(WAIT).await).into_owned();
    assert!(text.starts_with("HTTP/1.1 431 "), "{text}");
    let mut c = RawClient::connect(gw.addr).await;
    c.send(&head_of_length(4000)).await;
    let text = String::from_utf8_lossy(&c.read_to_end(WAIT).await).into_owned();
    assert!(text.starts_with("HTTP/1.1 431 "), "{text}");
    assert_eq!(origin.requests().len(), 1);
    assert_eq!(errors(&gw, "client", "request-head-too-large").await, 2.0);
}

#[tokio::test]
async fn a_dripped_head_is_served() {
    let origin = Origin::start(|_| Reply::ok().body("fine")).await;
    let gw = gripway_to(&origin, &[]);
    let mut c = RawClient::connect(gw.addr).await;
    for b in head_of_length(600) {
        c.send(&[b]).await;
    }
    assert!(c.read_head().await.starts_with("HTTP/1.1 200 "));
    c.read_until(b"fine", WAIT).await;
}

#[tokio::test]
async fn a_client_that_stops_reading_a_relayed_body_is_dropped() {
    // far more than the socket buffers on both sides hold
    let body = vec![b'x'; 64 * 1024 * 1024];
    let origin = Origin::start(move |_| Reply::ok().body(body.clone())).await;
    let dir = TempDir::new("writetimeout");
    let gw = gripway_with_config(&origin, &dir, "[proxy]\nwrite_timeout_ms = 500\n");
    let mut c = RawClient::connect(gw.addr).await;
    c.get("/big", &[]).await;
    // never read
    let deadline = Instant::now() + Duration::from_secs(30);
    while errors(&gw, "client", "response-write-timeout").await < 1.0 {
        assert!(
            Instant::now() < deadline,
            "the stalled relay was never given up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // the connection was closed: what is left arrives, then EOF
    let got = c.read_to_end(Duration::from_secs(20)).await;
    assert!(got.len() < 64 * 1024 * 1024, "the body was cut short");
}

#[tokio::test]
async fn one_address_may_hold_only_its_share_of_connections() {
    let origin = Origin::start(|_| Reply::ok().body("fine")).await;
    let dir = TempDir::new("peraddr");
    let gw = gripway_with_config(&origin, &dir, "[grip]\nmax_connections_per_address = 2\n");
    let mut a = RawClient::connect(gw.addr).await;
    let mut b = RawClient::connect(gw.addr).await;
    // both are admitted (served), in order, before the third arrives
    a.get("/", &[]).await;
    a.read_until(b"fine", WAIT).await;
    b.get("/", &[]).await;
    b.read_until(b"fine", WAIT).await;
    let mut c = RawClient::connect(gw.addr).await;
    let text = String::from_utf8_lossy(&c.read_to_end(WAIT).await).into_owned();
    assert!(text.starts_with("HTTP/1.1 429 "), "{text}");
    assert_eq!(
        errors(&gw, "client", "too-many-connections-from-address").await,
        1.0
    );
    // the two keep working; once one leaves, another may come
    a.get("/", &[]).await;
    a.read_until(b"fine", WAIT).await;
    drop(b);
    let deadline = Instant::now() + WAIT;
    loop {
        let mut d = RawClient::connect(gw.addr).await;
        d.get("/", &["Connection: close"]).await;
        let text = String::from_utf8_lossy(&d.read_to_end(WAIT).await).into_owned();
        if text.starts_with("HTTP/1.1 200 ") {
            break;
        }
        assert!(Instant::now() < deadline, "the place was never given back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A script that starts the binary with at most `nofile` open files (soft and hard).
fn limited_binary(dir: &TempDir, nofile: u32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let script = dir.write(
        "gripway-limited.sh",
        &format!(
            "#!/bin/sh\nulimit -n {nofile} || exit 97\nexec '{}' \"$@\"\n",
            env!("CARGO_BIN_EXE_gripway")
        ),
    );
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

async fn publish_one(gw: &Gripway) -> u16 {
    publish(&gw.publish_url(), &stream_item("c", "x")).await.0
}

#[tokio::test]
async fn descriptors_are_kept_in_reserve_for_the_publish_api() {
    let origin = Origin::start(|_| Reply::ok()).await;
    let dir = TempDir::new("fdreserve");
    let script = limited_binary(&dir, 64);
    let route = format!("* {}", origin.target());
    let gw = Gripway::start(script.to_str().unwrap(), &["--route", &route]);
    assert!(
        gw.wait_for_log("open-file limit 64; at most 32 client connections", WAIT),
        "{}",
        gw.log()
    );
    // clients that send nothing take a descriptor each
    let mut idle = Vec::new();
    for _ in 0..32 {
        idle.push(RawClient::connect(gw.addr).await);
    }
    let deadline = Instant::now() + WAIT;
    while errors(&gw, "internal", "too-many-connections").await < 1.0 {
        let mut extra = RawClient::connect(gw.addr).await;
        let text = String::from_utf8_lossy(&extra.read_to_end(WAIT).await).into_owned();
        if !text.is_empty() {
            assert!(text.starts_with("HTTP/1.1 503 "), "{text}");
        }
        assert!(Instant::now() < deadline, "clients were never refused");
    }
    // the publish API still has descriptors
    assert_eq!(publish_one(&gw).await, 200);
    assert!(!gw.log().contains("accept failed"), "{}", gw.log());
}

#[tokio::test]
async fn accept_failures_back_off_and_are_logged_sparingly() {
    let origin = Origin::start(|_| Reply::ok()).await;
    let dir = TempDir::new("emfile");
    let script = limited_binary(&dir, 64);
    let conf = dir.write("gripway.toml", "[grip]\nfd_reserve = 0\n");
    let route = format!("* {}", origin.target());
    let gw = Gripway::start(
        script.to_str().unwrap(),
        &["--route", &route, "--config", conf.to_str().unwrap()],
    );
    // more clients than descriptors: the kernel completes their handshakes, gripway cannot
    // accept them
    let mut idle = Vec::new();
    for _ in 0..80 {
        idle.push(RawClient::connect(gw.addr).await);
    }
    assert!(gw.wait_for_log("accept failed", WAIT), "{}", gw.log());
    let count = || gw.log().matches("accept failed").count();
    let before = count();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let lines = count() - before;
    assert!(
        lines <= 5,
        "{lines} accept-failure lines in 3 s: {}",
        gw.log()
    );
    // and once descriptors come back, clients are served again
    drop(idle);
    let deadline = Instant::now() + WAIT;
    loop {
        let mut c = RawClient::connect(gw.addr).await;
        c.get("/", &["Connection: close"]).await;
        let text = String::from_utf8_lossy(&c.read_to_end(WAIT).await).into_owned();
        if text.starts_with("HTTP/1.1 200 ") {
            break;
        }
        assert!(Instant::now() < deadline, "never recovered: {}", gw.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An origin that holds `/poll` as a long-poll on `channel` and answers anything else at once.
async fn poll_origin(channel: &'static str) -> Origin {
    Origin::start(move |r| {
        if r.path == "/poll" {
            Reply::ok()
                .header("Grip-Hold", "response")
                .header("Grip-Channel", channel)
                .header("Grip-Timeout", "60")
                .body("timeout\n")
        } else {
            Reply::ok().body("second answer")
        }
    })
    .await
}

/// Waits until a long-poll is held.
async fn wait_held(gw: &Gripway) {
    let deadline = Instant::now() + WAIT;
    while gw
        .metric("gripway_connections{transport=\"http-response\"}")
        .await
        < Some(1.0)
    {
        assert!(Instant::now() < deadline, "never held");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Publishes an `http-response` body to `channel`.
async fn publish_response(gw: &Gripway, channel: &str) {
    let body = format!(
        r#"{{"items":[{{"channel":"{channel}","formats":{{"http-response":{{"body":"published\n"}}}}}}]}}"#
    );
    assert_eq!(publish(&gw.publish_url(), &body).await.0, 200);
}

#[tokio::test]
async fn a_request_pipelined_behind_a_hold_is_answered_after_it() {
    let origin = poll_origin("pipe").await;
    let gw = gripway_to(&origin, &[]);
    let mut c = RawClient::connect(gw.addr).await;
    // both requests in one write: the second is in the buffer when the hold starts
    c.send(b"GET /poll HTTP/1.1\r\nHost: x\r\n\r\nGET /second HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    wait_held(&gw).await;
    publish_response(&gw, "pipe").await;
    c.read_until(b"published\n", WAIT).await;
    c.read_until(b"second answer", WAIT).await;
    assert_eq!(origin.requests().len(), 2);
}

#[tokio::test]
async fn a_request_pipelined_during_a_hold_closes_the_connection_after_it() {
    let origin = poll_origin("pipe2").await;
    let gw = gripway_to(&origin, &[]);
    let mut c = RawClient::connect(gw.addr).await;
    c.send(b"GET /poll HTTP/1.1\r\nHost: x\r\n\r\n").await;
    wait_held(&gw).await;
    // sent while the long-poll is held: the hold reads and drops it
    c.send(b"GET /second HTTP/1.1\r\nHost: x\r\n\r\n").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    publish_response(&gw, "pipe2").await;
    c.read_until(b"published\n", WAIT).await;
    // the lost request is never silently skipped: the connection closes, so the client
    // knows to send it again
    assert!(
        c.closed_within(WAIT).await,
        "connection kept after losing a request"
    );
    assert_eq!(origin.requests().len(), 1);
}

#[tokio::test]
async fn websocket_frames_sent_before_the_handshake_answer_are_refused() {
    let origin = Origin::start(|_| Reply::ok()).await;
    let gw = gripway_to(&origin, &[]);
    let mut c = RawClient::connect(gw.addr).await;
    // a masked text frame "hi" right behind the upgrade request
    let mut raw = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        .to_vec();
    raw.extend_from_slice(&[0x81, 0x82, 0, 0, 0, 0, b'h', b'i']);
    c.send(&raw).await;
    let text = String::from_utf8_lossy(&c.read_to_end(WAIT).await).into_owned();
    assert!(text.starts_with("HTTP/1.1 400 "), "{text}");
    assert_eq!(errors(&gw, "client", "websocket-early-data").await, 1.0);
}
