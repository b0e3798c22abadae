//! TLS toward clients, with real clients against the real binary (`--tls-port 127.0.0.1:0`
//! and a certificate directory made by the test's own CA): holds (SSE, HTTP streaming,
//! long-poll), a relayed 1 MiB body, WebSockets over `wss:`, certificate selection by SNI as
//! `openssl s_client` sees it, reloads of the directory while clients stay connected, start-up
//! refusals, the routes' `ssl=` condition, `X-Forwarded-Proto`, TLS 1.2 / 1.3 and ALPN, the
//! self-signed demo certificate, and the session's life after the handshake (TLS 1.3 key
//! updates on keep-alive and held connections, a client's `close_notify`, a request sent in
//! the handshake's last flight), and the alert a refused handshake gets.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::tls::CertsDir;
use common::*;
use futures_util::{SinkExt, StreamExt};
use gripway_proto::woh::{decode_events, encode_events, Event, EventKind, WohLimits};
use rustls::pki_types::pem::PemObject;
use tokio_tungstenite::tungstenite::Message;

const H1: &[&[u8]] = &[b"http/1.1"];

/// Starts gripway with one TLS listener on certificates from `certs`, plus `extra` flags.
fn gripway_tls(certs: &CertsDir, extra: &[&str]) -> Gripway {
    let dir = certs.path();
    let mut args = vec![
        "--tls-port",
        "127.0.0.1:0",
        "--tls-certs-dir",
        dir.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let gw = gripway(&args);
    assert!(gw.tls_addr.is_some(), "the TLS listener is logged");
    gw
}

fn tls_addr(gw: &Gripway) -> std::net::SocketAddr {
    gw.tls_addr.expect("a TLS listener")
}

/// A TLS client that trusts `certs`' CA, asking for `localhost`.
async fn tls_client(gw: &Gripway, certs: &CertsDir) -> TlsClient {
    TlsClient::connect(tls_addr(gw), certs.client_config(H1), "localhost").await
}

fn sse_reply(channel: &str) -> Reply {
    Reply::ok()
        .header("Content-Type", "text/event-stream")
        .header("Grip-Hold", "stream")
        .header("Grip-Channel", channel)
        .body("event: open\ndata: welcome\n\n")
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

/// Publishes one SSE event `data: {text}` on `channel`.
async fn publish_event(gw: &Gripway, channel: &str, text: &str) {
    let body = stream_item(channel, &format!("event: message\ndata: {text}\n\n"));
    assert_eq!(publish(&gw.publish_url(), &body).await.0, 200);
}

#[tokio::test]
async fn sse_over_tls_receives_published_items() {
    let certs = CertsDir::new(&["localhost", "default"]);
    let origin = Origin::start(|_| sse_reply("news")).await;
    let gw = gripway_tls(&certs, &["--route", &format!("* {}", origin.target())]);
    let mut c = tls_client(&gw, &certs).await;
    c.get("/events", &["Accept: text/event-stream"]).await;
    let head = c.read_head().await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(
        lower.contains("content-type: text/event-stream\r\n"),
        "{head}"
    );
    assert!(lower.contains("transfer-encoding: chunked\r\n"), "{head}");
    c.read_until(b"1b\r\nevent: open\ndata: welcome\n\n\r\n", WAIT)
        .await;
    wait_metric_at_least(&gw, "gripway_subscriptions", 1.0).await;
    for i in 0..50 {
        publish_event(&gw, "news", &format!("item {i}")).await;
    }
    for i in 0..50 {
        c.read_until(format!("data: item {i}\n\n\r\n").as_bytes(), WAIT)
            .await;
    }
    // a large item crosses several TLS records
    let big = "x".repeat(100_000);
    publish_event(&gw, "news", &big).await;
    let got = c.read_until(b"\n\n\r\n", WAIT).await;
    assert!(got.windows(big.len()).any(|w| w == big.as_bytes()));
}

#[tokio::test]
async fn long_poll_and_http_streaming_over_tls() {
    let certs = CertsDir::new(&["localhost"]);
    let origin = Origin::start(|r| {
        if r.path == "/poll" {
            Reply::ok()
                .header("Content-Type", "application/json")
                .header("Grip-Hold", "response")
                .header("Grip-Channel", "lp")
                .header("Grip-Timeout", "60")
                .body("{\"messages\": []}\n")
        } else {
            Reply::ok()
                .header("Content-Type", "text/plain")
                .header("Grip-Hold", "stream")
                .header("Grip-Channel", "st")
                .body("stream open\n")
        }
    })
    .await;
    let gw = gripway_tls(&certs, &["--route", &format!("* {}", origin.target())]);

    let mut poll = tls_client(&gw, &certs).await;
    poll.get("/poll", &[]).await;
    let mut stream = tls_client(&gw, &certs).await;
    stream.get("/stream", &[]).await;
    stream.read_until(b"stream open\n", WAIT).await;
    wait_metric_at_least(&gw, "gripway_subscriptions", 2.0).await;

    let body = r#"{"items":[{"channel":"lp","formats":{"http-response":{
        "code":201,"reason":"Made It","headers":{"Content-Type":"text/plain"},"body":"hello poller\n"}}}]}"#;
    assert_eq!(publish(&gw.publish_url(), body).await.0, 200);
    let head = poll.read_head().await;
    assert!(head.starts_with("HTTP/1.1 201 Made It\r\n"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("content-length: 13\r\n"),
        "{head}"
    );
    poll.read_until(b"hello poller\n", WAIT).await;
    // keep-alive over TLS: the same connection serves the next poll
    // (published until it lands: an item published before the new hold subscribes is not
    // for it, and the subscription count alone cannot tell the old hold from the new)
    poll.get("/poll", &[]).await;
    let body = r#"{"items":[{"channel":"lp","formats":{"http-response":{"body":"second\n"}}}]}"#;
    let deadline = Instant::now() + WAIT;
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains("second\n") {
        assert!(
            Instant::now() < deadline,
            "the second poll was never answered"
        );
        assert_eq!(publish(&gw.publish_url(), body).await.0, 200);
        got.extend(poll.read_for(Duration::from_millis(200)).await);
    }

    for i in 0..20 {
        assert_eq!(
            publish(
                &gw.publish_url(),
                &stream_item("st", &format!("line {i}\n"))
            )
            .await
            .0,
            200
        );
    }
    for i in 0..20 {
        stream
            .read_until(format!("line {i}\n").as_bytes(), WAIT)
            .await;
    }
}

#[tokio::test]
async fn a_relayed_1_mib_body_arrives_intact_over_tls() {
    let certs = CertsDir::new(&["localhost"]);
    // every byte differs from its neighbours, so a lost, repeated or reordered record shows
    let body: Vec<u8> = (0..1_048_576u32)
        .map(|i| (i % 251) as u8 ^ (i >> 12) as u8)
        .collect();
    let sent = body.clone();
    let origin = Origin::start(move |r| match r.path.as_str() {
        "/chunked" => Reply::ok().chunked(sent.chunks(100_000).map(<[u8]>::to_vec).collect()),
        _ => Reply::ok()
            .header("Content-Type", "application/octet-stream")
            .body(sent.clone()),
    })
    .await;
    let gw = gripway_tls(&certs, &["--route", &format!("* {}", origin.target())]);
    let mut c = tls_client(&gw, &certs).await;
    for _ in 0..2 {
        c.get("/big", &[]).await;
        let head = c.read_head().await;
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-length: 1048576\r\n"),
            "{head}"
        );
        let got = c.read_exact(body.len(), Duration::from_secs(30)).await;
        assert!(got == body, "the 1 MiB body arrived intact");
    }
    // chunked from the origin: the same bytes, framed by chunks
    c.get("/chunked", &[]).await;
    let head = c.read_head().await;
    assert!(
        head.to_ascii_lowercase()
            .contains("transfer-encoding: chunked\r\n"),
        "{head}"
    );
    let mut got = Vec::new();
    loop {
        let size_line = c.read_until(b"\r\n", WAIT).await;
        let size = usize::from_str_radix(
            std::str::from_utf8(&size_line[..size_line.len() - 2]).unwrap(),
            16,
        )
        .unwrap();
        if size == 0 {
            c.read_until(b"\r\n", WAIT).await;
            break;
        }
        got.extend_from_slice(&c.read_exact(size, WAIT).await);
        c.read_until(b"\r\n", WAIT).await;
    }
    assert!(got == body, "the chunked 1 MiB body arrived intact");
}

/// A WebSocket-over-HTTP origin: accepts with the grip extension, subscribes to `room`,
/// answers each TEXT with `m:` + the text, and records its requests (see websocket.rs).
async fn woh_origin() -> Origin {
    Origin::start(move |r| {
        let events = decode_events(&r.body, &WohLimits::default()).expect("valid events");
        let mut out = Vec::new();
        let mut reply = Reply::ok().header("Content-Type", "application/websocket-events");
        for e in &events {
            match e.kind {
                EventKind::Open => {
                    reply = reply.header("Sec-WebSocket-Extensions", "grip");
                    out.push(Event::open());
                    out.push(Event::text(
                        &b"c:{\"type\":\"subscribe\",\"channel\":\"room\"}"[..],
                    ));
                }
                EventKind::Text => {
                    let mut echo = b"m:".to_vec();
                    echo.extend_from_slice(&e.content);
                    out.push(Event::text(echo));
                }
                _ => {}
            }
        }
        let mut body = Vec::new();
        encode_events(&out, &mut body);
        reply.body(body)
    })
    .await
}

async fn next_text<S>(ws: &mut S) -> String
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let m = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a message in time");
        match m.expect("stream open").expect("no error") {
            Message::Text(t) => return t.to_string(),
            Message::Binary(b) => return format!("binary:{}", String::from_utf8_lossy(&b)),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn websocket_over_tls_echoes_and_receives_publishes() {
    let certs = CertsDir::new(&["localhost"]);
    let origin = woh_origin().await;
    let gw = gripway_tls(
        &certs,
        &["--route", &format!("* {},over_http", origin.target())],
    );
    let url = format!("wss://localhost:{}/chat", tls_addr(&gw).port());
    let stream = tls_connect(tls_addr(&gw), certs.client_config(H1), "localhost").await;
    let (mut ws, response) =
        tokio::time::timeout(WAIT, tokio_tungstenite::client_async(url, stream))
            .await
            .expect("handshake in time")
            .expect("handshake accepted");
    assert_eq!(response.status(), 101);
    for i in 0..20 {
        ws.send(Message::text(format!("hello {i}"))).await.unwrap();
        assert_eq!(next_text(&mut ws).await, format!("hello {i}"));
    }
    wait_metric_at_least(&gw, "gripway_subscriptions", 1.0).await;
    let big = "y".repeat(50_000);
    let body = serde_json::json!({"items": [
        {"channel": "room", "formats": {"ws-message": {"content": "one"}}},
        {"channel": "room", "formats": {"ws-message": {"content-bin": "dHdv"}}},
        {"channel": "room", "formats": {"ws-message": {"content": big}}},
    ]})
    .to_string();
    assert_eq!(publish(&gw.publish_url(), &body).await.0, 200);
    assert_eq!(next_text(&mut ws).await, "one");
    assert_eq!(next_text(&mut ws).await, "binary:two");
    assert_eq!(next_text(&mut ws).await, big);
    // and the client still talks after the publishes
    ws.send(Message::text("after")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "after");
    let requests = origin.requests();
    assert!(requests
        .iter()
        .all(|r| r.header("x-forwarded-proto") == Some("https")));
    ws.close(None).await.unwrap();
}

#[tokio::test]
async fn the_demo_websocket_works_over_tls() {
    let certs = CertsDir::new(&["localhost"]);
    let gw = gripway_tls(&certs, &["--route", "* test"]);
    let url = format!("wss://localhost:{}/test/websocket", tls_addr(&gw).port());
    let stream = tls_connect(tls_addr(&gw), certs.client_config(H1), "localhost").await;
    let (mut ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(url, stream))
        .await
        .expect("handshake in time")
        .expect("handshake accepted");
    ws.send(Message::text("hello demo")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "hello demo");
    wait_metric_at_least(&gw, "gripway_subscriptions", 1.0).await;
    let body = r#"{"items":[{"channel":"test","formats":{"ws-message":{"content":"published"}}}]}"#;
    assert_eq!(publish(&gw.publish_url(), body).await.0, 200);
    assert_eq!(next_text(&mut ws).await, "published");
}

/// Runs `openssl s_client` against `addr` with `args` (stdin empty, so it ends after the
/// handshake; bounded by coreutils' `timeout`); returns stdout and stderr together.
fn s_client(addr: std::net::SocketAddr, args: &[&str]) -> String {
    let out = Command::new("timeout")
        .args(["10", "openssl", "s_client", "-connect", &addr.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("openssl runs");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The first certificate PEM in `text`, whitespace removed between its markers.
fn first_pem(text: &str) -> Option<String> {
    let begin = "-----BEGIN CERTIFICATE-----";
    let end = "-----END CERTIFICATE-----";
    let from = text.find(begin)? + begin.len();
    let to = from + text[from..].find(end)?;
    Some(text[from..to].split_whitespace().collect())
}

/// The subject alternative names of a certificate, as `openssl x509` prints them.
fn san_of(pem_body: &str) -> String {
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in pem_body.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    let mut child = Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(pem.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The certificate `openssl s_client` is shown when it connects asking for `servername`
/// (None: no SNI), checked against the test CA; its PEM body and the s_client output.
fn presented(gw: &Gripway, certs: &CertsDir, servername: Option<&str>) -> (String, String) {
    let ca = certs.ca_path();
    let mut args = vec!["-CAfile", ca.to_str().unwrap()];
    match servername {
        Some(name) => args.extend(["-servername", name, "-verify_hostname", name]),
        None => args.push("-noservername"),
    }
    let out = s_client(tls_addr(gw), &args);
    let pem = first_pem(&out).unwrap_or_else(|| panic!("no certificate shown:\n{out}"));
    (pem, out)
}

fn file_pem(certs: &CertsDir, stem: &str) -> String {
    let text = std::fs::read_to_string(certs.path().join(format!("{stem}.crt"))).unwrap();
    first_pem(&text).unwrap()
}

#[tokio::test]
async fn sni_picks_the_exact_name_then_the_wildcard_then_the_default() {
    let certs = CertsDir::new(&["a.example.com", "_.wild.example.com", "default"]);
    let gw = gripway_tls(&certs, &[]);
    for (servername, stem, san) in [
        (Some("a.example.com"), "a.example.com", "DNS:a.example.com"),
        (Some("A.Example.COM"), "a.example.com", "DNS:a.example.com"),
        (
            Some("x.wild.example.com"),
            "_.wild.example.com",
            "DNS:*.wild.example.com",
        ),
        (Some("unknown.example.org"), "default", "DNS:localhost"),
        // one label only: not covered by the wildcard
        (Some("a.b.wild.example.com"), "default", "DNS:localhost"),
        (None, "default", "DNS:localhost"),
    ] {
        let (pem, out) = presented(&gw, &certs, servername);
        assert_eq!(
            pem,
            file_pem(&certs, stem),
            "{servername:?} gets {stem}.crt:\n{out}"
        );
        let sans = san_of(&pem);
        assert!(sans.contains(san), "{servername:?}: {sans}");
        // the name verifies where the certificate covers it
        if stem != "default" {
            assert!(
                out.contains("Verify return code: 0 (ok)"),
                "{servername:?}:\n{out}"
            );
        }
    }
}

#[tokio::test]
async fn tls_1_2_and_1_3_negotiate_with_alpn_http_1_1() {
    let certs = CertsDir::new(&["localhost", "default"]);
    let gw = gripway_tls(&certs, &[]);
    let ca = certs.ca_path();
    let ca = ca.to_str().unwrap();
    for (flag, version) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let out = s_client(
            tls_addr(&gw),
            &[
                flag,
                "-alpn",
                "http/1.1",
                "-servername",
                "localhost",
                "-CAfile",
                ca,
            ],
        );
        assert!(
            out.contains(&format!("New, {version}, Cipher is")),
            "{version}:\n{out}"
        );
        assert!(out.contains("ALPN protocol: http/1.1"), "{version}:\n{out}");
        assert!(
            out.contains("Verify return code: 0 (ok)"),
            "{version}:\n{out}"
        );
    }
    // a client that offers no ALPN is served too
    let out = s_client(tls_addr(&gw), &["-servername", "localhost", "-CAfile", ca]);
    assert!(out.contains("No ALPN negotiated"), "{out}");
    // TLS 1.1 is refused
    let out = s_client(tls_addr(&gw), &["-tls1_1", "-servername", "localhost"]);
    assert!(!out.contains("Cipher is ECDHE"), "{out}");

    // and rustls agrees, over a request
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(certs.ca().roots())
        .with_no_client_auth();
        let mut config = config;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let mut c = TlsClient::connect(tls_addr(&gw), config.into(), "localhost").await;
        {
            let (_, session) = c.stream().get_ref();
            assert_eq!(session.protocol_version(), Some(version.version));
            assert_eq!(session.alpn_protocol(), Some(&b"http/1.1"[..]));
        }
        c.get("/", &["Connection: close"]).await;
        let head = c.read_head().await;
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    }
}

/// Waits (bounded) until a handshake asking for `name` is presented `stem`'s certificate.
async fn wait_for_cert(gw: &Gripway, certs: &CertsDir, name: &str, stem: &str, within: Duration) {
    let want = file_pem(certs, stem);
    let deadline = Instant::now() + within;
    loop {
        let (pem, out) = presented(gw, certs, Some(name));
        if pem == want {
            assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never got {stem}.crt within {within:?}:\n{out}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_reload_adds_a_name_keeps_connections_and_refuses_a_broken_pair() {
    let certs = CertsDir::new(&["localhost", "default"]);
    let origin = Origin::start(|_| sse_reply("news")).await;
    let gw = gripway_tls(&certs, &["--route", &format!("* {}", origin.target())]);
    let mut sse = tls_client(&gw, &certs).await;
    sse.get("/events", &[]).await;
    sse.read_until(b"welcome\n\n\r\n", WAIT).await;
    wait_metric_at_least(&gw, "gripway_subscriptions", 1.0).await;
    let (pem, _) = presented(&gw, &certs, Some("new.example.com"));
    assert_eq!(pem, file_pem(&certs, "default"), "before the reload");

    // a new name appears: within a poll or two (every 2 s) its certificate is served
    let added = Instant::now();
    certs.add("new.example.com");
    wait_for_cert(
        &gw,
        &certs,
        "new.example.com",
        "new.example.com",
        Duration::from_secs(10),
    )
    .await;
    eprintln!("new certificate served after {:?}", added.elapsed());
    wait_metric_at_least(&gw, "gripway_tls_cert_reloads_total{result=\"ok\"}", 1.0).await;
    // the connection opened before the reload still receives
    publish_event(&gw, "news", "after reload").await;
    sse.read_until(b"data: after reload\n\n\r\n", WAIT).await;
    // and a new client asking for the new name is served over HTTP
    let mut c = TlsClient::connect(tls_addr(&gw), certs.client_config(H1), "new.example.com").await;
    c.get("/events", &[]).await;
    c.read_until(b"welcome\n\n\r\n", WAIT).await;

    // a certificate without its key: the reload is refused, the log names the file
    let (crt, _key) = certs.ca().issue(&["broken.example.com".to_string()]);
    std::fs::write(certs.path().join("broken.example.com.crt"), crt).unwrap();
    wait_metric_at_least(&gw, "gripway_tls_cert_reloads_total{result=\"error\"}", 1.0).await;
    assert!(
        gw.wait_for_log("broken.example.com", WAIT),
        "the log says which file: {}",
        gw.log()
    );
    // the old set stays: new.example.com is still served, broken.example.com gets the default
    wait_for_cert(
        &gw,
        &certs,
        "new.example.com",
        "new.example.com",
        Duration::from_secs(1),
    )
    .await;
    let (pem, _) = presented(&gw, &certs, Some("broken.example.com"));
    assert_eq!(
        pem,
        file_pem(&certs, "default"),
        "the refused set is not used"
    );
    publish_event(&gw, "news", "after refusal").await;
    sse.read_until(b"data: after refusal\n\n\r\n", WAIT).await;
    c.read_until(b"data: after refusal\n\n\r\n", WAIT).await;

    // once the pair is whole, the next poll loads it
    certs.add("broken.example.com");
    wait_for_cert(
        &gw,
        &certs,
        "broken.example.com",
        "broken.example.com",
        Duration::from_secs(10),
    )
    .await;
}

/// Runs the binary with `args` until it exits (bounded); its exit code and stderr.
fn run_to_exit(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gripway"))
        .args([
            "--port",
            "127.0.0.1:0",
            "--publish-port",
            "127.0.0.1:0",
            "--admin-port",
            "127.0.0.1:0",
        ])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gripway starts");
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("gripway kept running with {args:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    (status.code(), err)
}

#[test]
fn a_certificate_without_its_key_stops_start_up_naming_the_file() {
    let certs = CertsDir::new(&["default", "api.example.com"]);
    std::fs::remove_file(certs.path().join("api.example.com.key")).unwrap();
    let dir = certs.path();
    let (code, err) = run_to_exit(&[
        "--tls-port",
        "127.0.0.1:0",
        "--tls-certs-dir",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("api.example.com"), "names the file: {err}");
    assert!(!err.contains("clients (TLS) on"), "{err}");

    // a key that is not PEM
    let certs = CertsDir::new(&["default"]);
    std::fs::write(certs.path().join("default.key"), "not a key\n").unwrap();
    let dir = certs.path();
    let (code, err) = run_to_exit(&[
        "--tls-port",
        "127.0.0.1:0",
        "--tls-certs-dir",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("default.key"), "names the file: {err}");
}

#[tokio::test]
async fn ssl_conditions_pick_targets_and_tls_clients_get_x_forwarded_proto() {
    let certs = CertsDir::new(&["localhost"]);
    let secure = Origin::start(|_| Reply::ok().body("from the TLS target\n")).await;
    let plain = Origin::start(|_| Reply::ok().body("from the plain target\n")).await;
    let yes = format!("*,ssl=yes {}", secure.target());
    let no = format!("*,ssl=no {}", plain.target());
    let gw = gripway_tls(&certs, &["--route", &yes, "--route", &no]);

    let mut c = tls_client(&gw, &certs).await;
    c.get("/x", &["X-Forwarded-Proto: gopher"]).await;
    c.read_until(b"from the TLS target\n", WAIT).await;
    let mut p = RawClient::connect(gw.addr).await;
    p.get("/x", &["X-Forwarded-Proto: https"]).await;
    p.read_until(b"from the plain target\n", WAIT).await;
    assert_eq!(secure.requests().len(), 1);
    assert_eq!(plain.requests().len(), 1);
    let tls_req = secure.last_request();
    assert_eq!(tls_req.header_all("x-forwarded-proto"), ["https"]);
    let plain_req = plain.last_request();
    assert!(
        plain_req.header("x-forwarded-proto").is_none(),
        "a plain client's claim is removed: {:?}",
        plain_req.headers
    );

    // one route for both: the condition is what splits them, not the listener
    let both = Origin::start(|_| Reply::ok().body("either\n")).await;
    let gw = gripway_tls(&certs, &["--route", &format!("* {}", both.target())]);
    let mut c = tls_client(&gw, &certs).await;
    c.get("/", &[]).await;
    c.read_until(b"either\n", WAIT).await;
    let mut p = RawClient::connect(gw.addr).await;
    p.get("/", &[]).await;
    p.read_until(b"either\n", WAIT).await;
    let protos: Vec<Option<String>> = both
        .requests()
        .iter()
        .map(|r| r.header("x-forwarded-proto").map(str::to_string))
        .collect();
    assert_eq!(protos, [Some("https".to_string()), None]);
}

#[tokio::test]
async fn without_a_certs_dir_the_demo_serves_a_self_signed_certificate_saved_for_clients() {
    let tmp = TempDir::new("selfsigned");
    let mut gw = Gripway::start_with_env(
        env!("CARGO_BIN_EXE_gripway"),
        &["--tls-port", "127.0.0.1:0"],
        &[("TMPDIR", tmp.path().as_os_str())],
    );
    assert!(gw.log().contains("self-signed"), "{}", gw.log());
    let pem_path = tmp.path().join("gripway-self-signed.pem");
    assert!(
        gw.log().contains(pem_path.to_str().unwrap()),
        "the log says where the PEM is: {}",
        gw.log()
    );
    let pem = std::fs::read_to_string(&pem_path).expect("the PEM is saved");
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap())
        .unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let config = std::sync::Arc::new(config);
    for name in ["localhost", "127.0.0.1"] {
        let mut c = TlsClient::connect(tls_addr(&gw), config.clone(), name).await;
        c.get("/test/sse", &[]).await;
        let head = c.read_head().await;
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        wait_metric_at_least(&gw, "gripway_subscriptions", 1.0).await;
        publish_event(&gw, "test", &format!("to {name}")).await;
        c.read_until(format!("data: to {name}\n\n").as_bytes(), WAIT)
            .await;
    }
    assert!(gw.is_running());
}

/// Sends a TLS 1.3 KeyUpdate asking the server to update its keys too (RFC 8446 §4.6.3):
/// the server must answer with its own before it seals anything under new keys.
async fn key_update(c: &mut TlsClient) {
    c.stream()
        .get_mut()
        .1
        .refresh_traffic_keys()
        .expect("TLS 1.3 key update");
    tokio::io::AsyncWriteExt::flush(c.stream()).await.unwrap();
}

#[tokio::test]
async fn key_updates_on_keep_alive_and_held_connections() {
    let certs = CertsDir::new(&["localhost"]);
    let origin = Origin::start(|r| match r.path.as_str() {
        "/events" => sse_reply("news"),
        _ => Reply::ok().body("plain answer\n"),
    })
    .await;
    let gw = gripway_tls(&certs, &["--route", &format!("* {}", origin.target())]);

    // between two requests on one connection
    let mut c = tls_client(&gw, &certs).await;
    for _ in 0..3 {
        c.get("/plain", &[]).await;
        c.read_until(b"plain answer\n", WAIT).await;
        key_update(&mut c).await;
    }
    c.get("/plain", &[]).await;
    c.read_until(b"plain answer\n", WAIT).await;

    // on a held stream: the sink reads the update and answers it, then seals items
    let mut sse = tls_client(&gw, &certs).await;
    sse.get("/events", &[]).await;
    sse.read_until(b"welcome\n\n\r\n", WAIT).await;
    wait_metric_at_least(&gw, "gripway_subscriptions", 1.0).await;
    for round in 0..3 {
        key_update(&mut sse).await;
        // let the server read it before the publish (the other order is fine too)
        tokio::time::sleep(Duration::from_millis(50)).await;
        for i in 0..5 {
            publish_event(&gw, "news", &format!("round {round} item {i}")).await;
        }
        for i in 0..5 {
            sse.read_until(
                format!("data: round {round} item {i}\n\n\r\n").as_bytes(),
                WAIT,
            )
            .await;
        }
    }
    // an update sent while items are being published
    key_update(&mut sse).await;
    for i in 0..20 {
        publish_event(&gw, "news", &format!("racing {i}")).await;
    }
    for i in 0..20 {
        sse.read_until(format!("data: racing {i}\n\n\r\n").as_bytes(), WAIT)
            .await;
    }
}

#[tokio::test]
async fn a_client_close_notify_ends_a_held_stream() {
    let certs = CertsDir::new(&["localhost"]);
    let origin = Origin::start(|_| sse_reply("news")).await;
    let gw = gripway_tls(&certs, &["--route", &format!("* {}", origin.target())]);
    let mut sse = tls_client(&gw, &certs).await;
    sse.get("/events", &[]).await;
    sse.read_until(b"welcome\n\n\r\n", WAIT).await;
    wait_metric_at_least(&gw, "gripway_subscriptions", 1.0).await;
    sse.stream().get_mut().1.send_close_notify();
    tokio::io::AsyncWriteExt::flush(sse.stream()).await.unwrap();
    for _ in 0..500 {
        if gw.metric("gripway_subscriptions").await == Some(0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(gw.metric("gripway_subscriptions").await, Some(0.0));
    assert!(sse.closed_within(WAIT).await, "the server closes too");
}

#[tokio::test]
async fn a_request_sent_with_the_last_handshake_flight_is_served() {
    let certs = CertsDir::new(&["localhost"]);
    let origin = Origin::start(|r| Reply::ok().body(format!("you asked for {}\n", r.path))).await;
    let gw = gripway_tls(&certs, &["--route", &format!("* {}", origin.target())]);
    let addr = tls_addr(&gw);
    let config = certs.client_config(H1);
    let got = tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut conn = rustls::ClientConnection::new(config, name).unwrap();
        // written before the handshake ends: rustls sends it right behind the client's
        // Finished, in the same flight (and two requests, pipelined)
        conn.writer()
            .write_all(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut sock = std::net::TcpStream::connect(addr).unwrap();
        sock.set_read_timeout(Some(WAIT)).unwrap();
        let mut tls = rustls::Stream::new(&mut conn, &mut sock);
        let mut all = Vec::new();
        let _ = tls.read_to_end(&mut all);
        String::from_utf8_lossy(&all).into_owned()
    })
    .await
    .unwrap();
    assert!(got.contains("you asked for /one\n"), "{got}");
    assert!(got.contains("you asked for /two\n"), "{got}");
}

#[tokio::test]
async fn a_refused_handshake_tells_the_client_why_with_an_alert() {
    // no `default`: a name with no certificate is refused
    let certs = CertsDir::new(&["localhost"]);
    let gw = gripway_tls(&certs, &[]);
    let ca = certs.ca_path();
    let ca = ca.to_str().unwrap();
    for (what, args, alert) in [
        (
            "no shared cipher suite",
            &[
                "-tls1_2",
                "-cipher",
                "AES128-SHA",
                "-servername",
                "localhost",
            ][..],
            "alert handshake failure",
        ),
        (
            "TLS 1.1 only",
            &[
                "-tls1_1",
                "-cipher",
                "DEFAULT:@SECLEVEL=0",
                "-servername",
                "localhost",
            ][..],
            // rustls answers a hello without TLS 1.2 or 1.3 with handshake_failure
            "alert handshake failure",
        ),
        (
            "a name with no certificate",
            &["-servername", "nobody.example.com", "-CAfile", ca][..],
            "alert",
        ),
    ] {
        let out = s_client(tls_addr(&gw), args);
        assert!(
            out.contains(alert),
            "{what}: an alert, not a bare close:\n{out}"
        );
    }
    // rustls as the client says the same
    let Err(err) =
        try_tls_connect(tls_addr(&gw), certs.client_config(H1), "nobody.example.com").await
    else {
        panic!("a name with no certificate was served");
    };
    assert!(
        err.to_string().contains("alert"),
        "the client was told: {err}"
    );
}
