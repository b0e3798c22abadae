//! Hostile clients on the TLS port, against the real binary. Each case runs beside a canary:
//! an SSE subscriber over TLS that must keep receiving published items while the attack goes
//! on and after it, and the server must stay up. Covered: plaintext HTTP and random bytes
//! where a ClientHello belongs, a ClientHello cut short and then silence (closed at the
//! request-head timeout), records and handshake messages announcing more than TLS allows,
//! a crowd of handshakes that never finish (bounded by the connection limit, not by memory),
//! records that fail to decrypt after the handshake, a subscriber that stops reading (cut
//! off as slow), and a client that stops reading a relayed 64 MiB body (dropped at the write
//! timeout, with nothing of the body buffered), and a TLS 1.2 renegotiation hello that
//! arrives only in part while the fan-out writes to that connection. Failed handshakes are
//! counted in `gripway_errors_total{source="client",reason="tls-handshake-failed"}`, records
//! that fail to decrypt are answered with a `bad_record_mac` alert, and no case may leave a
//! panic in the server's log.

mod common;

use std::time::{Duration, Instant};

use common::tls::CertsDir;
use common::*;
use tokio::io::AsyncWriteExt;

const H1: &[&[u8]] = &[b"http/1.1"];

/// The request-head (and handshake) timeout the battery runs with.
const HEAD_TIMEOUT: Duration = Duration::from_millis(2000);

const HANDSHAKE_FAILED: &str =
    "gripway_errors_total{source=\"client\",reason=\"tls-handshake-failed\"}";

struct Setup {
    gw: Gripway,
    certs: CertsDir,
    _dir: TempDir,
    _origin: Origin,
}

/// gripway with a TLS listener, an SSE origin on every path (channel = first path segment)
/// and `extra` config lines under the head timeout ([`HEAD_TIMEOUT`]).
async fn setup(extra: &str) -> Setup {
    setup_with(extra, HEAD_TIMEOUT).await
}

async fn setup_with(extra: &str, head_timeout: Duration) -> Setup {
    let certs = CertsDir::new(&["localhost", "default"]);
    let origin = Origin::start(|r| {
        let channel = r
            .path
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or("x");
        Reply::ok()
            .header("Content-Type", "text/event-stream")
            .header("Grip-Hold", "stream")
            .header("Grip-Channel", channel)
            .body("event: open\ndata: ready\n\n")
    })
    .await;
    let dir = TempDir::new("hostile-tls");
    let conf = dir.write(
        "gripway.toml",
        &format!(
            "[proxy]\nrequest_head_timeout_ms = {}\n{extra}\n",
            head_timeout.as_millis()
        ),
    );
    let certs_dir = certs.path();
    let route = format!("* {}", origin.target());
    let gw = gripway(&[
        "--config",
        conf.to_str().unwrap(),
        "--route",
        &route,
        "--tls-port",
        "127.0.0.1:0",
        "--tls-certs-dir",
        certs_dir.to_str().unwrap(),
    ]);
    Setup {
        gw,
        certs,
        _dir: dir,
        _origin: origin,
    }
}

impl Setup {
    fn tls_addr(&self) -> std::net::SocketAddr {
        self.gw.tls_addr.expect("a TLS listener")
    }

    /// An SSE subscriber over TLS on `channel`, its stream begun.
    async fn subscriber(&self, channel: &str) -> TlsClient {
        let mut c =
            TlsClient::connect(self.tls_addr(), self.certs.client_config(H1), "localhost").await;
        c.get(&format!("/{channel}"), &[]).await;
        c.read_until(b"data: ready\n\n\r\n", WAIT).await;
        c
    }

    async fn canary(&self) -> Canary {
        let before = self.gw.metric("gripway_subscriptions").await.unwrap_or(0.0);
        let client = self.subscriber("canary").await;
        wait_metric(&self.gw, "gripway_subscriptions", before + 1.0).await;
        Canary { client, seq: 0 }
    }

    async fn handshake_failures(&self) -> f64 {
        self.gw.metric(HANDSHAKE_FAILED).await.unwrap_or(0.0)
    }

    fn rss_kib(&self) -> u64 {
        self.gw.rss_kib().expect("RSS readable")
    }
}

/// The subscriber that must keep receiving whatever the attack.
struct Canary {
    client: TlsClient,
    seq: usize,
}

impl Canary {
    /// Publishes the next item to the canary and reads it.
    async fn sings(&mut self, s: &mut Setup) {
        assert!(s.gw.is_running(), "gripway is up");
        // a panic on a task is caught by tokio and would go unseen but for its log line
        assert!(!s.gw.log().contains("panicked"), "gripway panicked");
        self.seq += 1;
        let text = format!("event: message\ndata: canary {}\n\n", self.seq);
        let (status, _) = publish(&s.gw.publish_url(), &stream_item("canary", &text)).await;
        assert_eq!(status, 200);
        self.client
            .read_until(
                format!("data: canary {}\n\n\r\n", self.seq).as_bytes(),
                WAIT,
            )
            .await;
    }
}

async fn wait_metric(gw: &Gripway, sample: &str, want: f64) {
    for _ in 0..500 {
        if gw.metric(sample).await == Some(want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "{sample} never was {want} (now {:?})",
        gw.metric(sample).await
    );
}

async fn wait_metric_at_least(gw: &Gripway, sample: &str, want: f64) {
    for _ in 0..500 {
        if gw.metric(sample).await >= Some(want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "{sample} never reached {want} (now {:?})",
        gw.metric(sample).await
    );
}

/// A real ClientHello, as rustls sends it for `localhost`.
fn client_hello(certs: &CertsDir) -> Vec<u8> {
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(certs.client_config(H1), name).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    assert_eq!(out[0], 0x16, "a handshake record");
    out
}

/// Deterministic noise (xorshift).
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

/// Sends `bytes` to the TLS port on a fresh connection and returns how long the server took
/// to close it (panics past `within`).
async fn closed_after(addr: std::net::SocketAddr, bytes: &[u8], within: Duration) -> Duration {
    let start = Instant::now();
    let mut c = RawClient::connect(addr).await;
    c.send(bytes).await;
    assert!(c.closed_within(within).await, "still open after {within:?}");
    start.elapsed()
}

#[tokio::test]
async fn plaintext_and_garbage_on_the_tls_port_are_closed_and_counted() {
    let mut s = setup("").await;
    let mut canary = s.canary().await;
    let before = s.handshake_failures().await;
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "plaintext HTTP",
            b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
        ),
        ("random bytes", noise(4096, 7)),
        ("a zero byte", vec![0]),
    ];
    // a record header that looks right, then noise as the ClientHello
    let mut fake = vec![0x16, 0x03, 0x01, 0x02, 0x00];
    fake.extend(noise(512, 11));
    cases.push(("a handshake record of noise", fake));
    // an alert record before any handshake
    cases.push((
        "an alert first",
        vec![0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28],
    ));
    for (what, bytes) in &cases {
        let took = closed_after(s.tls_addr(), bytes, WAIT).await;
        assert!(
            took < HEAD_TIMEOUT,
            "{what}: closed at once, not at the timeout ({took:?})"
        );
        canary.sings(&mut s).await;
    }
    let n = cases.len() as f64;
    wait_metric_at_least(&s.gw, HANDSHAKE_FAILED, before + n).await;
    // the plain port is not affected either
    let mut plain = RawClient::connect(s.gw.addr).await;
    plain.get("/plain", &[]).await;
    plain.read_until(b"data: ready\n\n", WAIT).await;
    canary.sings(&mut s).await;
}

#[tokio::test]
async fn a_truncated_client_hello_then_silence_is_closed_at_the_head_timeout() {
    let mut s = setup("").await;
    let mut canary = s.canary().await;
    let before = s.handshake_failures().await;
    let hello = client_hello(&s.certs);
    let mut silent = Vec::new();
    let start = Instant::now();
    // the record header only; half the hello; all of it but its last byte
    for cut in [5, hello.len() / 2, hello.len() - 1] {
        let mut c = RawClient::connect(s.tls_addr()).await;
        c.send(&hello[..cut]).await;
        silent.push(c);
    }
    canary.sings(&mut s).await;
    for c in &mut silent {
        assert!(
            c.closed_within(HEAD_TIMEOUT + WAIT).await,
            "a silent handshake is closed"
        );
    }
    let took = start.elapsed();
    assert!(
        took >= HEAD_TIMEOUT - Duration::from_millis(100),
        "not before the head timeout ({took:?})"
    );
    wait_metric_at_least(&s.gw, HANDSHAKE_FAILED, before + 3.0).await;
    canary.sings(&mut s).await;
}

#[tokio::test]
async fn oversized_records_and_handshake_messages_are_refused_without_buffering_them() {
    let mut s = setup("").await;
    let mut canary = s.canary().await;
    let before = s.handshake_failures().await;
    let rss_before = s.rss_kib();

    // a TLS record header holds 16 bits of length: the most it can announce is 64 KiB, past
    // the 18 KiB TLS allows; then the 64 KiB follow
    let mut big_record = vec![0x16, 0x03, 0x01, 0xff, 0xff];
    big_record.extend(vec![0u8; 65_535]);
    // a handshake message announcing 16 MiB (its length has 24 bits) in valid-sized records:
    // a ClientHello header claiming 0xffffff bytes, then 1 MiB of it, record by record
    let mut big_message = Vec::new();
    let mut first = vec![0x01, 0xff, 0xff, 0xff];
    first.extend(noise(16_380, 3));
    big_message.extend([0x16, 0x03, 0x01, 0x40, 0x00]);
    big_message.extend(&first);
    for i in 0..63u64 {
        big_message.extend([0x16, 0x03, 0x03, 0x40, 0x00]);
        big_message.extend(noise(16_384, 100 + i));
    }
    let mut clients = Vec::new();
    for (what, bytes) in [
        ("a 64 KiB record", &big_record),
        ("a 16 MiB message", &big_message),
    ] {
        // ten of each at once, writing while the server refuses (a write may fail once the
        // server has closed: that is the point)
        for _ in 0..10 {
            let addr = s.tls_addr();
            let bytes = bytes.clone();
            clients.push(tokio::spawn(async move {
                let start = Instant::now();
                let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
                let _ = sock.write_all(&bytes).await;
                let mut rest = Vec::new();
                let read = tokio::time::timeout(
                    WAIT,
                    tokio::io::AsyncReadExt::read_to_end(&mut sock, &mut rest),
                )
                .await;
                (what, read.is_ok(), start.elapsed())
            }));
        }
    }
    for c in clients {
        let (what, closed, took) = c.await.unwrap();
        assert!(closed, "{what}: closed");
        assert!(took < HEAD_TIMEOUT, "{what}: refused at once ({took:?})");
    }
    canary.sings(&mut s).await;
    wait_metric_at_least(&s.gw, HANDSHAKE_FAILED, before + 20.0).await;
    let grew = s.rss_kib().saturating_sub(rss_before);
    eprintln!("oversized announcements: RSS +{grew} KiB");
    assert!(
        grew < 16 * 1024,
        "20 oversized announcements cost {grew} KiB of RSS"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_that_never_finish_are_bounded_by_the_connection_limit() {
    // a longer head timeout: the count below must end before the held ones time out
    let head_timeout = Duration::from_secs(6);
    let mut s = setup_with("[grip]\nmax_connections = 100\n", head_timeout).await;
    let mut canary = s.canary().await;
    let hello = client_hello(&s.certs);
    let rss_before = s.rss_kib();
    let started = Instant::now();
    let mut stalled = Vec::new();
    for _ in 0..400 {
        let mut c = RawClient::connect(s.tls_addr()).await;
        c.send(&hello[..hello.len() / 2]).await;
        stalled.push(c);
    }
    // past the limit they are closed at once; the others wait for the timeout
    let mut closed_at_once = 0;
    for c in &mut stalled {
        if c.closed_within(Duration::from_millis(5)).await {
            closed_at_once += 1;
        }
    }
    let within_limit = stalled.len() - closed_at_once;
    assert!(
        started.elapsed() < head_timeout,
        "the count ran past the head timeout ({:?}); it proves nothing",
        started.elapsed()
    );
    assert!(
        (50..=100).contains(&within_limit),
        "{within_limit} of 400 held: the limit of 100 (less the canary) bounds them"
    );
    let grew = s.rss_kib().saturating_sub(rss_before);
    eprintln!("{within_limit} of 400 held, {closed_at_once} closed at once, RSS +{grew} KiB");
    assert!(
        grew < 8 * 1024,
        "{within_limit} unfinished handshakes cost {grew} KiB of RSS"
    );
    assert!(
        s.gw.metric("gripway_errors_total{source=\"internal\",reason=\"too-many-connections\"}")
            .await
            >= Some(300.0)
    );
    canary.sings(&mut s).await;

    // at the head timeout every one is closed and the slots come back
    for c in &mut stalled {
        assert!(c.closed_within(head_timeout + WAIT).await);
    }
    drop(stalled);
    let mut late = s.subscriber("late").await;
    canary.sings(&mut s).await;
    let (status, _) = publish(
        &s.gw.publish_url(),
        &stream_item("late", "event: message\ndata: late\n\n"),
    )
    .await;
    assert_eq!(status, 200);
    late.read_until(b"data: late\n\n", WAIT).await;
}

/// A TLS record of application data that no key produced: the server cannot decrypt it.
fn forged_record() -> Vec<u8> {
    let mut r = vec![0x17, 0x03, 0x03, 0x00, 0x40];
    r.extend(noise(64, 99));
    r
}

/// The connection ends with a `bad_record_mac` alert (RFC 8446 §5.2), not a bare close.
async fn told_bad_mac(c: &mut TlsClient, when: &str) {
    let mut buf = [0u8; 4096];
    let end = tokio::time::timeout(WAIT, async {
        loop {
            match tokio::io::AsyncReadExt::read(c.stream(), &mut buf).await {
                Ok(0) => return "a close without an alert".to_string(),
                Ok(_) => continue,
                Err(e) => return e.to_string(),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{when}: still open"));
    assert!(
        end.contains("BadRecordMac"),
        "{when}: the client was told {end:?}"
    );
}

#[tokio::test]
async fn records_that_fail_to_decrypt_after_the_handshake_close_the_connection() {
    let mut s = setup("").await;
    let mut canary = s.canary().await;

    // before any request: the connection waits for a request head
    let mut c = TlsClient::connect(s.tls_addr(), s.certs.client_config(H1), "localhost").await;
    c.stream()
        .get_mut()
        .0
        .write_all(&forged_record())
        .await
        .unwrap();
    told_bad_mac(&mut c, "while reading a head").await;
    canary.sings(&mut s).await;

    // half a request, then a forged record
    let mut c = TlsClient::connect(s.tls_addr(), s.certs.client_config(H1), "localhost").await;
    c.send(b"GET /half HTTP/1.1\r\nHost: x\r\n").await;
    c.stream()
        .get_mut()
        .0
        .write_all(&forged_record())
        .await
        .unwrap();
    told_bad_mac(&mut c, "mid-head").await;
    canary.sings(&mut s).await;
    // both were counted as the client's: as a bad record, or, when the forged record came
    // in the same read as the client's last handshake message, as a failed handshake
    let bad = "gripway_errors_total{source=\"client\",reason=\"tls-bad-record\"}";
    let mut counted = 0.0;
    for _ in 0..500 {
        counted = s.gw.metric(bad).await.unwrap_or(0.0) + s.handshake_failures().await;
        if counted >= 2.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(counted >= 2.0, "forged records counted {counted} times");

    // on a held stream (the sink reads under its lock)
    let subs = s.gw.metric("gripway_subscriptions").await.unwrap_or(0.0);
    let mut held = s.subscriber("held").await;
    wait_metric(&s.gw, "gripway_subscriptions", subs + 1.0).await;
    held.stream()
        .get_mut()
        .0
        .write_all(&forged_record())
        .await
        .unwrap();
    told_bad_mac(&mut held, "while held").await;
    wait_metric(&s.gw, "gripway_subscriptions", subs).await;
    canary.sings(&mut s).await;

    // a record of the right type but far too long for TLS, on a held stream
    let mut held = s.subscriber("held").await;
    let mut huge = vec![0x17, 0x03, 0x03, 0xff, 0xff];
    huge.extend(vec![0u8; 65_535]);
    let _ = held.stream().get_mut().0.write_all(&huge).await;
    assert!(held.closed_within(WAIT).await, "an oversized record closes");
    canary.sings(&mut s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_subscriber_that_stops_reading_is_cut_off_as_slow() {
    let mut s = setup("[grip]\nsubscriber_queue_bytes = 65536\n").await;
    let canary = s.canary().await;
    let mut slow = s.subscriber("canary").await;
    wait_metric(&s.gw, "gripway_subscriptions", 2.0).await;

    let payload = "z".repeat(30_000);
    let mut fast = canary.client;
    let reader = tokio::spawn(async move {
        for i in 0..400 {
            fast.read_until(format!("#{i}#").as_bytes(), WAIT).await;
        }
        fast
    });
    for i in 0..400 {
        let body = stream_item("canary", &format!("data: {payload}#{i}#\n\n"));
        assert_eq!(publish(&s.gw.publish_url(), &body).await.0, 200);
    }
    let fast = tokio::time::timeout(Duration::from_secs(60), reader)
        .await
        .expect("the canary got all 400 items while the slow one stalled")
        .unwrap();
    wait_metric_at_least(
        &s.gw,
        "gripway_connection_drops_total{reason=\"slow-subscriber\"}",
        1.0,
    )
    .await;
    assert!(
        s.gw.metric("gripway_messages_dropped_total{reason=\"slow-subscriber\"}")
            .await
            > Some(0.0)
    );
    // what the slow one reads now ends: it was cut off
    let deadline = Instant::now() + Duration::from_secs(30);
    while !slow.closed_within(Duration::from_millis(100)).await {
        slow.buf.clear();
        assert!(Instant::now() < deadline, "the slow subscriber was cut off");
    }
    let mut canary = Canary {
        client: fast,
        seq: 0,
    };
    canary.sings(&mut s).await;
    assert!(s.gw.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_that_stops_reading_a_relayed_body_is_dropped_without_buffering_it() {
    let certs = CertsDir::new(&["localhost"]);
    // far more than the socket buffers on both sides hold
    let body = vec![b'x'; 64 * 1024 * 1024];
    let origin = Origin::start(move |r| {
        if r.path == "/big" {
            Reply::ok().body(body.clone())
        } else {
            Reply::ok()
                .header("Content-Type", "text/event-stream")
                .header("Grip-Hold", "stream")
                .header("Grip-Channel", "canary")
                .body("event: open\ndata: ready\n\n")
        }
    })
    .await;
    let dir = TempDir::new("tls-writetimeout");
    let conf = dir.write("gripway.toml", "[proxy]\nwrite_timeout_ms = 500\n");
    let certs_dir = certs.path();
    let route = format!("* {}", origin.target());
    let gw = gripway(&[
        "--config",
        conf.to_str().unwrap(),
        "--route",
        &route,
        "--tls-port",
        "127.0.0.1:0",
        "--tls-certs-dir",
        certs_dir.to_str().unwrap(),
    ]);
    let mut s = Setup {
        gw,
        certs,
        _dir: dir,
        _origin: origin,
    };
    let mut canary = s.canary().await;
    let rss_before = s.rss_kib();
    let mut c = TlsClient::connect(s.tls_addr(), s.certs.client_config(H1), "localhost").await;
    c.get("/big", &[]).await;
    // never read
    let sample = "gripway_errors_total{source=\"client\",reason=\"response-write-timeout\"}";
    let deadline = Instant::now() + Duration::from_secs(30);
    while s.gw.metric(sample).await.unwrap_or(0.0) < 1.0 {
        assert!(
            Instant::now() < deadline,
            "the stalled relay was never given up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let grew = s.rss_kib().saturating_sub(rss_before);
    eprintln!("a stalled 64 MiB relay over TLS: RSS +{grew} KiB");
    assert!(grew < 16 * 1024, "RSS grew by {grew} KiB");
    canary.sings(&mut s).await;
    // the connection was closed: what is left arrives, then the end
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut got = 0;
    while !c.closed_within(Duration::from_millis(200)).await {
        got += std::mem::take(&mut c.buf).len();
        assert!(Instant::now() < deadline, "still open");
    }
    got += c.buf.len();
    assert!(
        got < 64 * 1024 * 1024,
        "the body was cut short ({got} bytes)"
    );
}

/// A TCP relay to `target` that passes the server's bytes through and the client's record
/// by record, until the client sends a handshake record after application data (a TLS 1.2
/// renegotiation): that record goes through, and everything after it is held back, so the
/// server is left with half a handshake message.
async fn splitting_relay(target: std::net::SocketAddr) -> std::net::SocketAddr {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let server = tokio::net::TcpStream::connect(target).await.unwrap();
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                });
                let mut seen_data = false;
                let mut held = false;
                loop {
                    let mut head = [0u8; 5];
                    if cr.read_exact(&mut head).await.is_err() {
                        return;
                    }
                    let len = u16::from_be_bytes([head[3], head[4]]) as usize;
                    let mut body = vec![0u8; len];
                    if cr.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    if held {
                        continue;
                    }
                    if head[0] == 0x17 {
                        seen_data = true;
                    }
                    if head[0] == 0x16 && seen_data {
                        held = true;
                    }
                    if sw.write_all(&head).await.is_err() || sw.write_all(&body).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// A TLS 1.2 client asks to renegotiate on a held stream, and its hello arrives only in part
/// (OpenSSL's `s_client`, records of at most 512 bytes, through [`splitting_relay`]); then
/// items are published to that stream. Found by this test: sealing for the fan-out while half
/// a handshake message waited made rustls index past the end of the buffer it was given, a
/// panic on the broker thread that took the publish API down with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_a_renegotiation_hello_on_a_held_stream_breaks_nothing() {
    use std::io::Write as _;
    let mut s = setup("").await;
    let mut canary = s.canary().await;
    let relay = splitting_relay(s.tls_addr()).await;
    let ca = s.certs.ca_path();
    // every cipher suite and a long server name make the renegotiation hello longer than
    // one 512-byte record (the long ALPN list is sent only in the first hello)
    let alpn = format!("http/1.1,{},{}", "a".repeat(250), "b".repeat(250));
    let long_name = format!("{0}.{0}.{0}.example.com", "n".repeat(60));
    let mut sc = std::process::Command::new("openssl")
        .args(["s_client", "-connect", &relay.to_string(), "-tls1_2"])
        .args(["-servername", &long_name, "-CAfile", ca.to_str().unwrap()])
        .args(["-max_send_frag", "512", "-alpn", &alpn])
        .args(["-cipher", "ALL:@SECLEVEL=0"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("openssl runs");
    let mut stdin = sc.stdin.take().unwrap();
    stdin
        .write_all(b"GET /held HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    stdin.flush().unwrap();
    wait_metric(&s.gw, "gripway_subscriptions", 2.0).await;
    // s_client's command: renegotiate
    stdin.write_all(b"R\n").unwrap();
    stdin.flush().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // the server seals for the held stream while half a handshake message waits
    for i in 0..3 {
        let body = stream_item("held", &format!("data: held {i}\n\n"));
        assert_eq!(publish(&s.gw.publish_url(), &body).await.0, 200);
    }
    canary.sings(&mut s).await;
    // and the hold ends (the server closes it, a close_notify sealed the same way)
    let close = r#"{"items":[{"channel":"held","formats":{"http-stream":{"action":"close"}}}]}"#;
    assert_eq!(publish(&s.gw.publish_url(), close).await.0, 200);
    wait_metric(&s.gw, "gripway_subscriptions", 1.0).await;
    let _ = sc.kill();
    let out = sc.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("RENEGOTIATING"),
        "s_client renegotiated:\n{said}"
    );
    for _ in 0..3 {
        canary.sings(&mut s).await;
    }
}
