//! TLS toward clients, with real clients against the real binary (`--tls-port 127.0.0.1:0`
//! and a certificate directory made by the test's own CA): holds (SSE, HTTP streaming,
//! long-poll), a relayed 1 MiB body, WebSockets over `wss:`, the routes' `ssl=` condition,
//! `X-Forwarded-Proto`, the self-signed demo certificate, a stream that reads late (the
//! sealed backlog), a request pipelined behind a hold, and the session's life after the
//! handshake (TLS 1.3 key updates on keep-alive and held connections, a client's
//! `close_notify`, a request sent in the handshake's last flight). Certificates, SNI,
//! versions, reloads and refusals are in `tls_certs.rs`.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::tls::CertsDir;
use common::tls_setup::*;
use common::*;
use futures_util::{SinkExt, StreamExt};
use gripway_proto::woh::{decode_events, encode_events, Event, EventKind, WohLimits};
use rustls::pki_types::pem::PemObject;
use tokio_tungstenite::tungstenite::Message;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_stream_that_reads_late_gets_every_item_in_order() {
    // the queue holds what the socket does not (ciphertext kept in the session, later items
    // queued as plaintext and sealed when it drains): all of it must come out, in order
    let certs = CertsDir::new(&["localhost"]);
    let origin = Origin::start(|_| sse_reply("bulk")).await;
    let dir = TempDir::new("tls-late");
    let conf = dir.write(
        "gripway.toml",
        "[grip]\nsubscriber_queue_bytes = 16777216\n",
    );
    let gw = gripway_tls(
        &certs,
        &[
            "--config",
            conf.to_str().unwrap(),
            "--route",
            &format!("* {}", origin.target()),
        ],
    );
    // a small receive window, so the server's socket fills and its queue takes over
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(8192).unwrap();
    let sock = sock.connect(tls_addr(&gw)).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let stream = tokio_rustls::TlsConnector::from(certs.client_config(H1))
        .connect(name, sock)
        .await
        .unwrap();
    let mut c = TlsClient::from_stream(stream);
    c.get("/bulk", &[]).await;
    c.read_until(b"welcome\n\n\r\n", WAIT).await;
    wait_metric_at_least(&gw, "gripway_subscriptions", 1.0).await;

    // 300 items of 10 to 40 KB, each carrying its number and length, while nothing is read
    let item = |i: usize| {
        let fill = char::from(b'a' + (i % 26) as u8).to_string();
        format!("data: {i} {}\n\n", fill.repeat(10_000 + (i * 997) % 30_000))
    };
    for batch in 0..30 {
        let items: Vec<_> = (batch * 10..batch * 10 + 10)
            .map(|i| serde_json::json!({"channel": "bulk", "formats": {"http-stream": {"content": item(i)}}}))
            .collect();
        let body = serde_json::json!({ "items": items }).to_string();
        assert_eq!(publish(&gw.publish_url(), &body).await.0, 200);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        gw.metric("gripway_connection_drops_total{reason=\"slow-subscriber\"}")
            .await
            .unwrap_or(0.0),
        0.0
    );
    for i in 0..300 {
        let want = item(i);
        // each item is one chunk: its size line, then exactly its bytes
        let size = c.read_until(b"\r\n", WAIT).await;
        let size = std::str::from_utf8(&size[..size.len() - 2]).unwrap();
        assert_eq!(
            usize::from_str_radix(size, 16).unwrap(),
            want.len(),
            "item {i}"
        );
        let got = c.read_exact(want.len(), WAIT).await;
        assert!(got == want.as_bytes(), "item {i} arrived intact");
        c.read_until(b"\r\n", WAIT).await;
    }
}

#[tokio::test]
async fn a_request_pipelined_behind_a_held_poll_is_served_after_it() {
    let certs = CertsDir::new(&["localhost"]);
    let origin = Origin::start(|r| match r.path.as_str() {
        "/poll" => Reply::ok()
            .header("Grip-Hold", "response")
            .header("Grip-Channel", "lp")
            .body("timeout\n"),
        p => Reply::ok().body(format!("plain {p}\n")),
    })
    .await;
    let gw = gripway_tls(&certs, &["--route", &format!("* {}", origin.target())]);
    let mut c = tls_client(&gw, &certs).await;
    // one write, so one TLS record: the second request is decrypted with the first
    c.send(b"GET /poll HTTP/1.1\r\nHost: x\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    wait_metric_at_least(&gw, "gripway_subscriptions", 1.0).await;
    let body = r#"{"items":[{"channel":"lp","formats":{"http-response":{"body":"answered\n"}}}]}"#;
    assert_eq!(publish(&gw.publish_url(), body).await.0, 200);
    c.read_until(b"answered\n", WAIT).await;
    c.read_until(b"plain /after\n", WAIT).await;
}
