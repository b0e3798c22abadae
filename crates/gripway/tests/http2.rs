//! HTTP/2 toward clients, with real clients: curl (`--http2` over TLS by ALPN,
//! `--http2-prior-knowledge` on the plain port) and the `h2` crate's client (many streams on
//! one connection, flow control). HTTP/1.1 keeps working on both ports.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use gripway_test_support::tls::CertsDir;
use h2::client::SendRequest;
use h2::RecvStream;

fn sse_reply(channel: &str) -> Reply {
    Reply::ok()
        .header("Content-Type", "text/event-stream")
        .header("Grip-Hold", "stream")
        .header("Grip-Channel", channel)
        .body("event: open\ndata: welcome\n\n")
}

/// An origin: `/events` is an SSE stream on channel `news`, `/poll` a long-poll on `news`,
/// anything else a plain answer.
async fn origin() -> Origin {
    Origin::start(|req| match req.path.as_str() {
        "/events" => sse_reply("news"),
        "/quiet" => {
            sse_reply("quiet").header("Grip-Keep-Alive", ":ka\\n\\n; format=cstring; timeout=1")
        }
        "/poll" => Reply::ok()
            .header("Content-Type", "text/plain")
            .header("Grip-Hold", "response")
            .header("Grip-Channel", "news")
            .header("Grip-Timeout", "2")
            .body("timed out\n"),
        _ => Reply::ok()
            .header("Content-Type", "text/plain")
            .header("X-Kept", "yes")
            .body(format!("hello {} {}\n", req.method, req.path)),
    })
    .await
}

fn start(origin: &Origin, certs: &CertsDir, extra: &[&str]) -> Gripway {
    let dir = certs.path();
    let mut args = vec![
        "--tls-port",
        "127.0.0.1:0",
        "--tls-certs-dir",
        dir.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    gripway_to(origin, &args)
}

/// Runs curl and returns (stdout, the protocol it reports).
fn curl(args: &[&str]) -> (String, String) {
    let out = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "10",
            "-w",
            "\n%{http_version} %{http_code}",
        ])
        .args(args)
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, proto) = text.rsplit_once('\n').unwrap_or((&text, ""));
    if proto.ends_with("000") {
        eprintln!("curl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    (body.to_string(), proto.to_string())
}

/// A curl that keeps reading a stream; its output so far is shared.
struct CurlStream {
    child: std::process::Child,
    out: Arc<Mutex<String>>,
}

impl CurlStream {
    fn start(args: &[&str]) -> CurlStream {
        let mut child = Command::new("curl")
            .args(["-sN", "--max-time", "20"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("curl runs");
        let mut stdout = child.stdout.take().unwrap();
        let out = Arc::new(Mutex::new(String::new()));
        let o = out.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                o.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        CurlStream { child, out }
    }

    async fn wait_for(&self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let got = self.out.lock().unwrap().clone();
            if got.contains(needle) {
                return got;
            }
            assert!(Instant::now() < deadline, "no {needle:?} in {got:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for CurlStream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_gets_a_relayed_response_over_h2_on_both_ports_and_http1_still_works() {
    let origin = origin().await;
    let certs = CertsDir::new(&["localhost"]);
    let gw = start(&origin, &certs, &[]);
    let tls = gw.tls_addr.expect("TLS listener");
    let https = format!("https://localhost:{}/thing", tls.port());
    let ca = certs.ca_path();
    let ca = ca.to_str().unwrap();

    let (body, proto) = curl(&["--http2", "--cacert", ca, &https]);
    assert_eq!(
        (body.as_str(), proto.as_str()),
        ("hello GET /thing\n", "2 200")
    );
    let (body, proto) = curl(&["--http2-prior-knowledge", &gw.url("/plain")]);
    assert_eq!(
        (body.as_str(), proto.as_str()),
        ("hello GET /plain\n", "2 200")
    );
    // a body goes to the origin
    let (body, proto) = curl(&["--http2-prior-knowledge", "-d", "abc", &gw.url("/post")]);
    assert_eq!(
        (body.as_str(), proto.as_str()),
        ("hello POST /post\n", "2 200")
    );
    assert_eq!(origin.last_request().body, b"abc");

    let (body, proto) = curl(&["--http1.1", "--cacert", ca, &https]);
    assert_eq!(
        (body.as_str(), proto.as_str()),
        ("hello GET /thing\n", "1.1 200")
    );
    let (body, proto) = curl(&["--http1.1", &gw.url("/plain")]);
    assert_eq!(
        (body.as_str(), proto.as_str()),
        ("hello GET /plain\n", "1.1 200")
    );
}

#[tokio::test]
async fn curl_sse_streams_over_h2_receive_published_items() {
    let origin = origin().await;
    let certs = CertsDir::new(&["localhost"]);
    let gw = start(&origin, &certs, &[]);
    let tls = gw.tls_addr.expect("TLS listener");
    let https = format!("https://localhost:{}/events", tls.port());
    let ca = certs.ca_path();
    let over_tls = CurlStream::start(&["--http2", "--cacert", ca.to_str().unwrap(), &https]);
    let h2c = CurlStream::start(&["--http2-prior-knowledge", &gw.url("/events")]);
    let http1 = CurlStream::start(&["--http1.1", &gw.url("/events")]);
    for s in [&over_tls, &h2c, &http1] {
        s.wait_for("data: welcome\n\n").await;
    }
    for i in 0..3 {
        let (status, _) = publish(
            &gw.publish_url(),
            &stream_item("news", &format!("data: item {i}\n\n")),
        )
        .await;
        assert_eq!(status, 200);
    }
    for s in [&over_tls, &h2c, &http1] {
        let got = s.wait_for("data: item 2\n\n").await;
        assert_eq!(
            got,
            "event: open\ndata: welcome\n\ndata: item 0\n\ndata: item 1\n\ndata: item 2\n\n"
        );
    }
}

/// An h2c client connection (prior knowledge) with the given per-stream window.
async fn h2c(addr: std::net::SocketAddr, window: u32) -> SendRequest<Bytes> {
    h2c_windows(addr, window, 65_535).await
}

/// [`h2c`] with a connection window too.
async fn h2c_windows(
    addr: std::net::SocketAddr,
    window: u32,
    conn_window: u32,
) -> SendRequest<Bytes> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, conn) = h2::client::Builder::new()
        .initial_window_size(window)
        .initial_connection_window_size(conn_window)
        .handshake::<_, Bytes>(tcp)
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

async fn get(client: &SendRequest<Bytes>, path: &str) -> http::Response<RecvStream> {
    let req = http::Request::builder()
        .uri(format!("http://localhost{path}"))
        .body(())
        .unwrap();
    let mut c = client.clone().ready().await.unwrap();
    let (resp, _) = c.send_request(req, true).unwrap();
    tokio::time::timeout(WAIT, resp).await.unwrap().unwrap()
}

/// Reads `body` until it holds `needle`, giving the window back as it reads.
async fn read_until(body: &mut RecvStream, got: &mut Vec<u8>, needle: &[u8]) {
    let deadline = Instant::now() + WAIT;
    while !got.windows(needle.len()).any(|w| w == needle) {
        let left = deadline.saturating_duration_since(Instant::now());
        let data = tokio::time::timeout(left, body.data())
            .await
            .unwrap_or_else(|_| panic!("no {needle:?} in {:?}", String::from_utf8_lossy(got)))
            .expect("stream open")
            .expect("data");
        let _ = body.flow_control().release_capacity(data.len());
        got.extend_from_slice(&data);
    }
}

#[tokio::test]
async fn twenty_sse_streams_on_one_connection_all_receive_every_item() {
    let origin = origin().await;
    let gw = gripway_to(&origin, &[]);
    let client = h2c(gw.addr, 65_535).await;
    let mut streams = Vec::new();
    for _ in 0..20 {
        let resp = get(&client, "/events").await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        assert!(resp.headers().get("transfer-encoding").is_none());
        let mut body = resp.into_body();
        let mut got = Vec::new();
        read_until(&mut body, &mut got, b"data: welcome\n\n").await;
        streams.push((body, got));
    }
    for i in 0..5 {
        publish(
            &gw.publish_url(),
            &stream_item("news", &format!("data: item {i}\n\n")),
        )
        .await;
    }
    for (body, got) in &mut streams {
        read_until(body, got, b"data: item 4\n\n").await;
        let text = String::from_utf8_lossy(got);
        for i in 0..5 {
            assert!(text.contains(&format!("data: item {i}\n\n")), "{text}");
        }
    }
}

#[tokio::test]
async fn a_long_poll_over_h2_is_answered_by_a_publish_or_times_out() {
    let origin = origin().await;
    let gw = gripway_to(&origin, &[]);
    let client = h2c(gw.addr, 65_535).await;
    let waiting = tokio::spawn({
        let client = client.clone();
        async move {
            let resp = get(&client, "/poll").await;
            let status = resp.status();
            let mut body = resp.into_body();
            let mut got = Vec::new();
            read_until(&mut body, &mut got, b"answered\n").await;
            (status, got)
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let item = serde_json::json!({"items": [{"channel": "news",
        "formats": {"http-response": {"code": 201, "body": "answered\n"}}}]});
    publish(&gw.publish_url(), &item.to_string()).await;
    let (status, got) = tokio::time::timeout(WAIT, waiting).await.unwrap().unwrap();
    assert_eq!(status, 201);
    assert_eq!(got, b"answered\n");

    // nothing published: the origin's timeout response, on the same connection
    let resp = get(&client, "/poll").await;
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut got = Vec::new();
    read_until(&mut body, &mut got, b"timed out\n").await;
    // then the stream ends (an empty DATA frame may carry its END_STREAM)
    while let Some(more) = tokio::time::timeout(WAIT, body.data()).await.unwrap() {
        assert!(more.unwrap().is_empty(), "nothing after the answer");
    }
    assert_eq!(got, b"timed out\n");
}

#[tokio::test]
async fn a_stream_that_stops_reading_is_cut_off_without_stalling_its_neighbour() {
    let origin = origin().await;
    let dir = TempDir::new("h2-slow");
    let config = dir.path().join("gripway.toml");
    std::fs::write(&config, "[grip]\nsubscriber_queue_bytes = 32768\n").unwrap();
    let gw = gripway_to(&origin, &["--config", config.to_str().unwrap()]);
    // a large connection window: only the stream's own window stays shut
    let client = h2c_windows(gw.addr, 65_535, 16 << 20).await;
    // the slow stream reads its head and then never gives its window back
    let slow = get(&client, "/events").await;
    let mut slow = slow.into_body();
    let fast = get(&client, "/events").await;
    let mut fast = fast.into_body();
    let mut got = Vec::new();
    read_until(&mut fast, &mut got, b"data: welcome\n\n").await;
    // the reading stream reads all along
    let reader = tokio::spawn(async move {
        read_until(&mut fast, &mut got, b"data: n59\n\n").await;
    });
    let item = format!("data: {}\n\n", "x".repeat(4000));
    for i in 0..60 {
        let (status, _) = publish(
            &gw.publish_url(),
            &stream_item("news", &format!("{item}data: n{i}\n\n")),
        )
        .await;
        assert_eq!(status, 200);
    }
    // the reading stream gets everything
    tokio::time::timeout(WAIT, reader).await.unwrap().unwrap();
    // the other one was reset once its queue passed the bound (65,535 bytes in its window,
    // 32 KiB queued)
    let deadline = Instant::now() + WAIT;
    let reset = loop {
        match tokio::time::timeout(WAIT, slow.data()).await.unwrap() {
            Some(Ok(_)) => {}
            Some(Err(e)) => break e,
            None => panic!("the slow stream ended normally"),
        }
        assert!(Instant::now() < deadline);
    };
    assert_eq!(reset.reason(), Some(h2::Reason::CANCEL), "{reset}");
    let deadline = Instant::now() + WAIT;
    let metric = "gripway_connection_drops_total{reason=\"slow-subscriber\"}";
    while gw.metric(metric).await != Some(1.0) {
        assert!(Instant::now() < deadline, "{:?}", gw.metric(metric).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // the connection still serves new streams
    let resp = get(&client, "/after").await;
    assert_eq!(resp.status(), 200);
}

/// Per-stream memory (run by hand: `GRIPWAY_BIN=target/release/gripway cargo test -p
/// gripway --test http2 -- --ignored --nocapture per_stream`): RSS growth from 10 held SSE streams on one connection to 1,000,
/// divided by the 990 added.
#[tokio::test]
#[ignore]
async fn per_stream_memory_of_held_sse_streams() {
    let origin = origin().await;
    let dir = TempDir::new("h2-mem");
    let config = dir.path().join("gripway.toml");
    std::fs::write(&config, "[http2]\nmax_concurrent_streams = 2000\n").unwrap();
    // GRIPWAY_BIN: measure another build (a release one)
    let bin = std::env::var("GRIPWAY_BIN").unwrap_or(env!("CARGO_BIN_EXE_gripway").into());
    let route = format!("* {}", origin.target());
    let args = ["--route", &route, "--config", config.to_str().unwrap()];
    let gw = Gripway::start(&bin, &args);
    let client = h2c_windows(gw.addr, 65_535, 16 << 20).await;
    let mut streams = Vec::new();
    let open = |n: usize| {
        let client = client.clone();
        async move {
            let mut v = Vec::new();
            for _ in 0..n {
                let mut body = get(&client, "/events").await.into_body();
                let mut got = Vec::new();
                read_until(&mut body, &mut got, b"data: welcome\n\n").await;
                v.push(body);
            }
            v
        }
    };
    streams.extend(open(10).await);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = gw.rss_kib().unwrap();
    streams.extend(open(990).await);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = gw.rss_kib().unwrap();
    let per = (after - before) as f64 * 1024.0 / 990.0;
    eprintln!("RSS {before} KiB -> {after} KiB: {per:.0} B per held HTTP/2 stream");
    drop(streams);
}

/// A client WebSocket frame (RFC 6455 §5.2): FIN, `opcode`, masked, as a client must send.
fn client_frame(opcode: u8, payload: &[u8]) -> Bytes {
    let mask = [0x37u8, 0xfa, 0x21, 0x3d];
    let mut f = vec![0x80 | opcode];
    assert!(payload.len() < 126);
    f.push(0x80 | payload.len() as u8);
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    Bytes::from(f)
}

/// Opens a WebSocket on an HTTP/2 stream of a fresh cleartext connection to `gw` (RFC 8441's
/// extended CONNECT to `path`, asking for `subprotocol`), after checking that the server
/// announces it; the answer (200) and the stream's sending half.
async fn h2_websocket(
    gw: &Gripway,
    path: &str,
    subprotocol: Option<&str>,
) -> (http::Response<h2::RecvStream>, h2::SendStream<Bytes>) {
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    // a first exchange: the server's SETTINGS have arrived by its end
    let page = get(&client, "/").await;
    assert_eq!(page.status(), 200);
    let mut client = client.ready().await.unwrap();
    assert!(
        client.is_extended_connect_protocol_enabled(),
        "the server announces SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 8441)"
    );
    let mut req = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(format!("http://localhost{path}"))
        .header("sec-websocket-version", "13");
    if let Some(p) = subprotocol {
        req = req.header("sec-websocket-protocol", p);
    }
    let req = req
        .extension(h2::ext::Protocol::from_static("websocket"))
        .body(())
        .unwrap();
    let (resp, send) = client.send_request(req, false).unwrap();
    let resp = tokio::time::timeout(WAIT, resp).await.unwrap().unwrap();
    assert_eq!(resp.status(), 200, "RFC 8441: a 200 opens the stream");
    (resp, send)
}

#[tokio::test]
async fn a_websocket_over_h2_extended_connect_echoes_and_receives_what_is_published() {
    // the demo: /test/websocket echoes and is subscribed to channel `test`
    let gw = gripway(&[]);
    let (resp, mut send) = h2_websocket(&gw, "/test/websocket", None).await;
    let mut body = resp.into_body();
    let mut got = Vec::new();

    // what the client sends is echoed by the demo origin (over WebSocket-over-HTTP)
    send.send_data(client_frame(0x1, b"hello over h2"), false)
        .unwrap();
    read_until(&mut body, &mut got, b"hello over h2").await;
    assert_eq!(got[0], 0x81, "an unmasked text frame from the server");

    // what is published to `test` arrives as a frame on the stream
    let item = serde_json::json!({"items": [{"channel": "test",
        "formats": {"ws-message": {"content": "published to h2"}}}]});
    let deadline = Instant::now() + WAIT;
    while !got.windows(15).any(|w| w == b"published to h2") {
        assert!(Instant::now() < deadline, "no published frame");
        // the subscription is made while the session opens: publish until it arrives
        publish(&gw.publish_url(), &item.to_string()).await;
        let data = tokio::time::timeout(Duration::from_millis(300), body.data()).await;
        if let Ok(Some(Ok(data))) = data {
            let _ = body.flow_control().release_capacity(data.len());
            got.extend_from_slice(&data);
        }
    }

    // a close frame is answered with one, and the stream ends
    send.send_data(client_frame(0x8, &[0x03, 0xe8]), false)
        .unwrap();
    let end = tokio::time::timeout(WAIT, async {
        let mut rest = Vec::new();
        while let Some(Ok(data)) = body.data().await {
            let _ = body.flow_control().release_capacity(data.len());
            rest.extend_from_slice(&data);
        }
        rest
    })
    .await
    .expect("the stream ends after the close");
    assert!(end.contains(&0x88), "a close frame came back: {end:?}");
}

#[tokio::test]
async fn a_quiet_sse_stream_over_h2_gets_its_keep_alives() {
    let origin = origin().await;
    let certs = CertsDir::new(&["localhost", "default"]);
    let gw = start(&origin, &certs, &[]);
    let client = h2c(gw.addr, 65_535).await;
    let resp = get(&client, "/quiet").await;
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut got = Vec::new();
    read_until(&mut body, &mut got, b"data: welcome\n\n").await;
    // nothing is published: the keep-alive (every second while quiet) arrives as DATA
    read_until(&mut body, &mut got, b":ka\n\n:ka\n\n").await;
}

/// MQTT over WebSocket over HTTP/2 (RFC 8441): the demo's `/mqtt` path with the `mqtt`
/// subprotocol opens on a stream; the device connects and subscribes in binary messages and
/// receives what is published to its channel.
#[tokio::test]
async fn an_mqtt_device_over_an_h2_websocket_stream_connects_subscribes_and_receives() {
    let gw = gripway(&[]);
    let (resp, mut send) = h2_websocket(&gw, "/mqtt", Some("mqtt")).await;
    assert_eq!(
        resp.headers()
            .get("sec-websocket-protocol")
            .map(|v| v.as_bytes()),
        Some(&b"mqtt"[..])
    );
    let mut body = resp.into_body();
    let mut got = Vec::new();
    // MQTT 3.1.1 CONNECT (clean session, keep-alive 60, client id "h2"): CONNACK 0
    let connect = [
        0x10, 14, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 2, b'h', b'2',
    ];
    send.send_data(client_frame(0x2, &connect), false).unwrap();
    read_until(&mut body, &mut got, &[0x82, 4, 0x20, 2, 0, 0]).await;
    // SUBSCRIBE to `test` at QoS 0: SUBACK granting 0
    let subscribe = [0x82, 9, 0, 1, 0, 4, b't', b'e', b's', b't', 0];
    send.send_data(client_frame(0x2, &subscribe), false)
        .unwrap();
    read_until(&mut body, &mut got, &[0x90, 3, 0, 1, 0]).await;
    let item = serde_json::json!({"items": [{"channel": "test",
        "formats": {"ws-message": {"content": "to a device on h2"}}}]});
    assert_eq!(publish(&gw.publish_url(), &item.to_string()).await.0, 200);
    // a PUBLISH (QoS 0) of topic `test` with that payload, in a binary message
    let mut want = vec![0x30, 6 + 17, 0, 4];
    want.extend_from_slice(b"test");
    want.extend_from_slice(b"to a device on h2");
    read_until(&mut body, &mut got, &want).await;
}
