//! The drain on SIGTERM/SIGINT, against the real binary: every acknowledged item reaches its
//! subscribers before their holds end, each transport is ended so its client comes back
//! (SSE `retry:` and the last chunk, the long-poll's timeout response, WebSocket close 1001
//! and `DISCONNECT` to a WebSocket-over-HTTP origin), nothing new is taken meanwhile, and the
//! deadline bounds it all.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use gripway_proto::woh::{decode_events, encode_events, Event, EventKind, WohLimits};
use tokio_tungstenite::tungstenite::Message;

type Seen = Arc<Mutex<Vec<Event>>>;

/// One origin for every transport: `/sse` streams (channel `news`), `/poll` long-polls
/// (channel `lp`, 60 s), `/slow` answers after 2 s, and WebSocket-over-HTTP connections are
/// accepted and subscribed to `room`; every WebSocket event it receives is recorded.
async fn origin(seen: Seen) -> Origin {
    Origin::start(move |r| {
        if r.header("Content-Type") == Some("application/websocket-events") {
            let events = decode_events(&r.body, &WohLimits::default()).expect("valid events");
            seen.lock().unwrap().extend(events.iter().cloned());
            let mut reply = Reply::ok().header("Content-Type", "application/websocket-events");
            let mut out = Vec::new();
            if events.iter().any(|e| e.kind == EventKind::Open) {
                reply = reply.header("Sec-WebSocket-Extensions", "grip");
                out.push(Event::open());
                out.push(Event::text(
                    &b"c:{\"type\":\"subscribe\",\"channel\":\"room\"}"[..],
                ));
            }
            let mut body = Vec::new();
            encode_events(&out, &mut body);
            return reply.body(body);
        }
        match r.path.as_str() {
            "/sse" => Reply::ok()
                .header("Content-Type", "text/event-stream")
                .header("Grip-Hold", "stream")
                .header("Grip-Channel", "news")
                .body("event: open\ndata: welcome\n\n"),
            "/poll" => Reply::ok()
                .header("Content-Type", "application/json")
                .header("Grip-Hold", "response")
                .header("Grip-Channel", "lp")
                .header("Grip-Timeout", "60")
                .body("{\"messages\": []}\n"),
            "/slow" => Reply::ok()
                .delay(Duration::from_secs(2))
                .body("slow but sure\n"),
            _ => Reply::status(404).body("no\n"),
        }
    })
    .await
}

/// The process's exit code once it exits (bounded by `within`); waits without blocking the
/// test's runtime, which the origin runs on (it still has requests to answer).
async fn exit_code(gw: &mut Gripway, within: Duration) -> Option<i32> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if !gw.is_running() {
            return gw.wait_exit(Duration::ZERO);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

fn route(origin: &Origin) -> String {
    format!("* {},over_http", origin.target())
}

async fn wait_metric(gw: &Gripway, sample: &str, want: f64) {
    for _ in 0..500 {
        if gw.metric(sample).await == Some(want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{sample} never reached {want}");
}

async fn ws_connect(gw: &Gripway) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    let sock = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let url = format!("ws://{}/ws", gw.addr);
    let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(url, sock))
        .await
        .expect("handshake in time")
        .expect("handshake accepted");
    ws
}

/// `count` http-stream items on `news` (`e<first>`..), plus one ws-message on `room`.
fn batch(first: usize, count: usize) -> String {
    let mut items: Vec<_> = (first..first + count)
        .map(|n| {
            serde_json::json!({"channel": "news", "id": format!("i{n}"),
                "formats": {"http-stream": {"content": format!("data: e{n}\n\n")}}})
        })
        .collect();
    items.push(serde_json::json!({"channel": "room",
        "formats": {"ws-message": {"content": format!("w{first}")}}}));
    serde_json::json!({ "items": items }).to_string()
}

#[tokio::test]
async fn acknowledged_items_reach_every_client_then_each_transport_is_ended() {
    let seen: Seen = Arc::default();
    let origin = origin(seen.clone()).await;
    let mut gw = gripway(&["--route", &route(&origin), "--drain-timeout-ms", "8000"]);

    let mut sse = RawClient::connect(gw.addr).await;
    sse.get("/sse", &[]).await;
    sse.read_until(b"welcome\n\n\r\n", WAIT).await;
    let mut poll = RawClient::connect(gw.addr).await;
    poll.get("/poll", &[]).await;
    let mut ws = ws_connect(&gw).await;
    wait_metric(&gw, "gripway_subscriptions", 3.0).await;

    // 2,000 items acknowledged in 20 requests, and the signal right after the last answer
    let (batches, per) = (20, 100);
    for b in 0..batches {
        let (status, body) = publish(&gw.publish_url(), &batch(b * per, per)).await;
        assert_eq!(status, 200, "{body}");
    }
    // acknowledged, and certainly still in the broker when the signal comes: it waits (up to
    // the 5 s order_wait) for a predecessor that is never published
    let waiting = serde_json::json!({"items": [{"channel": "news", "id": "held",
        "prev-id": "never-published", "formats": {"http-stream": {"content": "data: held\n\n"}}}]});
    assert_eq!(
        publish(&gw.publish_url(), &waiting.to_string()).await.0,
        200
    );
    let signalled = Instant::now();
    gw.terminate();

    // the SSE client gets every item in order, then the retry hint, then the chunked end
    let all = sse.read_to_end(WAIT).await;
    let text = String::from_utf8_lossy(&all);
    let mut at = 0;
    let wanted = (0..batches * per)
        .map(|n| format!("data: e{n}\n\n"))
        .chain(std::iter::once("data: held\n\n".to_string()));
    for (n, want) in wanted.enumerate() {
        match text[at..].find(&want) {
            Some(i) => at += i + want.len(),
            None => panic!("item {n} ({want:?}) missing or out of order; got {text}"),
        }
    }
    assert!(
        signalled.elapsed() < Duration::from_secs(4),
        "the waiting item was released by the drain, not by its order wait"
    );
    let rest = &text[at..];
    let retry = rest.find("retry: ").expect("a retry: line after the items");
    let ms: u32 = rest[retry + 7..]
        .split('\n')
        .next()
        .and_then(|v| v.parse().ok())
        .expect("retry value");
    assert!((1000..2000).contains(&ms), "retry {ms} ms");
    assert!(
        rest.ends_with("\r\n0\r\n\r\n"),
        "the stream ends with the last chunk: {rest:?}"
    );

    // the long-poll gets the origin's timeout response and is told to reconnect
    let answer = String::from_utf8_lossy(&poll.read_to_end(WAIT).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("connection: close\r\n"),
        "{answer}"
    );
    assert!(answer.ends_with("{\"messages\": []}\n"), "{answer}");

    // the WebSocket gets its published messages, then close 1001
    let mut texts = Vec::new();
    let code = loop {
        let m = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame in time");
        match m {
            Some(Ok(Message::Text(t))) => texts.push(t.to_string()),
            Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => {}
            other => panic!("no close frame: {other:?}"),
        }
    };
    assert_eq!(code, Some(1001), "close code");
    let expected: Vec<String> = (0..batches).map(|b| format!("w{}", b * per)).collect();
    assert_eq!(texts, expected);
    // tungstenite answers the close; let it go out
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_secs(2), ws.next()).await {}

    assert_eq!(
        exit_code(&mut gw, Duration::from_secs(10)).await,
        Some(0),
        "{}",
        gw.log()
    );
    assert!(
        signalled.elapsed() < Duration::from_secs(8),
        "exited within the deadline: {:?}\n{}",
        signalled.elapsed(),
        gw.log()
    );
    // the WebSocket-over-HTTP origin was told, before the process exited
    let events = seen.lock().unwrap().clone();
    assert!(
        events.iter().any(|e| e.kind == EventKind::Disconnect),
        "no DISCONNECT: {events:?}"
    );
    assert!(
        !events.iter().any(|e| e.kind == EventKind::Close),
        "the client's close reply is not passed on as CLOSE: {events:?}"
    );
    assert!(gw.log().contains("drained"), "{}", gw.log());
}

#[tokio::test]
async fn while_draining_new_clients_are_refused_publishes_get_503_and_requests_finish() {
    let seen: Seen = Arc::default();
    let origin = origin(seen).await;
    let mut gw = gripway(&["--route", &route(&origin), "--drain-timeout-ms", "8000"]);
    // a plain request the origin takes 2 s to answer keeps the drain going meanwhile
    let mut slow = RawClient::connect(gw.addr).await;
    slow.get("/slow", &[]).await;
    let mut idle = RawClient::connect(gw.addr).await;
    idle.get("/missing", &[]).await;
    idle.read_until(b"no\n", WAIT).await;
    wait_metric(&gw, "gripway_connections{transport=\"http\"}", 2.0).await;
    let signalled = Instant::now();
    gw.terminate();
    assert!(gw.wait_for_log("draining", WAIT), "{}", gw.log());

    // the client listener is closed: connecting is refused
    let mut refused = false;
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(gw.addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "new clients are refused during the drain");
    // a keep-alive connection waiting for its next request is closed
    assert!(idle.closed_within(Duration::from_secs(1)).await);
    // publishes are refused, ours to fix (retry later or elsewhere)
    let (status, body) = publish(&gw.publish_url(), &stream_item("news", "late")).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("Draining for shutdown"), "{body}");
    // counted as ours, and the admin listener still answers
    assert_eq!(
        gw.metric("gripway_errors_total{source=\"internal\",reason=\"draining\"}")
            .await,
        Some(1.0)
    );
    // and /health tells a load balancer to stop sending clients here
    let mut h = RawClient::connect(gw.admin_addr).await;
    h.send(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    let health = String::from_utf8_lossy(&h.read_to_end(WAIT).await).into_owned();
    assert!(health.starts_with("HTTP/1.1 503"), "{health}");
    assert!(health.ends_with("draining\n"), "{health}");
    assert!(
        signalled.elapsed() < Duration::from_secs(2),
        "still draining"
    );

    // the request in flight is answered, and then the process exits
    let answer = String::from_utf8_lossy(&slow.read_to_end(WAIT).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with("slow but sure\n"), "{answer}");
    assert_eq!(
        exit_code(&mut gw, Duration::from_secs(10)).await,
        Some(0),
        "{}",
        gw.log()
    );
}

/// Starts gripway with a subscriber queue large enough that a client that reads nothing is
/// not cut off as slow, holds such an SSE client and gives it megabytes to not read.
async fn stuck_client(drain_ms: &str) -> (Gripway, Origin, RawClient, TempDir) {
    let origin = origin(Arc::default()).await;
    let dir = TempDir::new("drain");
    let config = dir.write(
        "gripway.toml",
        "[grip]\nsubscriber_queue_bytes = 67108864\n[publish]\nmax_body = 2000000\nmax_content = 1000000\n",
    );
    let gw = gripway(&[
        "--config",
        config.to_str().unwrap(),
        "--route",
        &route(&origin),
        "--drain-timeout-ms",
        drain_ms,
    ]);
    let mut c = RawClient::connect(gw.addr).await;
    c.get("/sse", &[]).await;
    c.read_until(b"welcome\n\n\r\n", WAIT).await;
    wait_metric(&gw, "gripway_subscriptions", 1.0).await;
    let big = format!("data: {}\n\n", "x".repeat(900_000));
    for _ in 0..12 {
        assert_eq!(
            publish(&gw.publish_url(), &stream_item("news", &big))
                .await
                .0,
            200
        );
    }
    (gw, origin, c, dir)
}

#[tokio::test]
async fn a_client_that_never_reads_cannot_hold_the_exit_past_the_deadline() {
    let (mut gw, _origin, _client, _dir) = stuck_client("1500").await;
    let signalled = Instant::now();
    gw.terminate();
    assert_eq!(
        exit_code(&mut gw, Duration::from_secs(10)).await,
        Some(0),
        "{}",
        gw.log()
    );
    let took = signalled.elapsed();
    assert!(
        took >= Duration::from_millis(1400),
        "it waited for the client until the deadline: {took:?}"
    );
    assert!(
        took < Duration::from_secs(4),
        "not past the deadline: {took:?}"
    );
    assert!(
        gw.log().contains("drain deadline passed: 1 connections"),
        "{}",
        gw.log()
    );
}

#[tokio::test]
async fn a_second_signal_during_the_drain_exits_at_once() {
    let (mut gw, _origin, _client, _dir) = stuck_client("60000").await;
    gw.terminate();
    assert!(gw.wait_for_log("draining", WAIT), "{}", gw.log());
    let second = Instant::now();
    gw.interrupt();
    assert_eq!(
        exit_code(&mut gw, Duration::from_secs(5)).await,
        Some(1),
        "{}",
        gw.log()
    );
    assert!(second.elapsed() < Duration::from_secs(2));
    assert!(gw.log().contains("second signal"), "{}", gw.log());
}
