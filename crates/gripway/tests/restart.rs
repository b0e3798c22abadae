//! Restarts without loss: SSE clients follow a steady publisher while Gripway is killed
//! (`kill -9`) or stopped (SIGTERM) and started again on the same ports; each client
//! reconnects with `Last-Event-ID`. Every item acknowledged with 200 reaches every client
//! exactly once, in order — from the on-disk history after a crash, from the drain and the
//! new process's in-memory history after SIGTERM — and a publisher that retries an item
//! after the restart causes no duplicate.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CLIENTS: usize = 3;
const ITEMS: u32 = 60;
const BURST: u32 = 10;

fn sse_reply() -> Reply {
    Reply::ok()
        .header("Content-Type", "text/event-stream")
        .header("Grip-Hold", "stream")
        .header("Grip-Channel", "feed")
        .body("retry: 100\n\n")
}

fn item(n: u32) -> String {
    serde_json::json!({"items": [{"channel": "feed", "id": format!("e{n}"),
        "formats": {"http-stream": {"content": format!("id: e{n}\ndata: e{n}\n\n")}}}]})
    .to_string()
}

/// The ids of the complete events in `bytes`.
fn events(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    let mut out = Vec::new();
    let mut rest = &*text;
    while let Some(i) = rest.find("data: ") {
        let after = &rest[i + 6..];
        match after.find("\n\n") {
            Some(end) => {
                out.push(after[..end].to_string());
                rest = &after[end..];
            }
            None => break,
        }
    }
    out
}

/// An SSE client that reconnects (with `Last-Event-ID`) whenever its connection ends,
/// until it has seen `last`; returns every event it saw, in order.
async fn follow(
    addr: std::net::SocketAddr,
    last: String,
    seen: Arc<Mutex<Vec<String>>>,
    away: Arc<std::sync::atomic::AtomicBool>,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if seen.lock().unwrap().last() == Some(&last) {
            return;
        }
        if away.load(Relaxed) {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        let Ok(mut sock) = TcpStream::connect(addr).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let leid = seen.lock().unwrap().last().cloned();
        let mut req = "GET /feed HTTP/1.1\r\nHost: x\r\n".to_string();
        if let Some(id) = leid {
            req.push_str(&format!("Last-Event-ID: {id}\r\n"));
        }
        req.push_str("\r\n");
        if sock.write_all(req.as_bytes()).await.is_err() {
            continue;
        }
        let mut buf = Vec::new();
        let mut taken = 0;
        let mut chunk = [0u8; 8192];
        loop {
            let read =
                tokio::time::timeout(Duration::from_millis(100), sock.read(&mut chunk)).await;
            match read {
                Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                Err(_) if !away.load(Relaxed) => continue, // quiet
                _ => break, // closed, failed, or told to go away: reconnect later
            }
            let evs = events(&buf);
            let mut s = seen.lock().unwrap();
            s.extend(evs[taken..].iter().cloned());
            taken = evs.len();
            if s.last() == Some(&last) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "client never saw {last}; saw {:?}",
        seen.lock().unwrap().last()
    );
}

/// Publishes `e{n}` until it is acknowledged with 200 (the server may be down or
/// draining meanwhile); returns how many attempts it took.
async fn publish_until_acked(gw_publish: std::net::SocketAddr, n: u32) -> u32 {
    let url = format!("http://{gw_publish}/publish/");
    for attempt in 1..=400 {
        if let Ok(Ok((200, _))) = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::spawn(try_publish(url.clone(), item(n))),
        )
        .await
        .map(|r| r.map(|x| x.unwrap_or((0, String::new()))))
        {
            return attempt;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("e{n} was never acknowledged");
}

/// One publish attempt: (status, body), or None when the server cannot be reached.
async fn try_publish(url: String, body: String) -> Option<(u16, String)> {
    let rest = url.strip_prefix("http://")?;
    let (addr, path) = rest.split_once('/')?;
    let mut sock = TcpStream::connect(addr).await.ok()?;
    let req = format!(
        "POST /{path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    sock.write_all(req.as_bytes()).await.ok()?;
    let mut out = Vec::new();
    sock.read_to_end(&mut out).await.ok()?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.split(' ').nth(1)?.parse().ok()?;
    Some((status, text))
}

#[derive(Clone, Copy, PartialEq)]
enum Stop {
    Kill,
    Term,
}

async fn run(stop: Stop, durable: bool) {
    let origin = Origin::start(|_| sse_reply()).await;
    let dir = TempDir::new("restart");
    let route = format!("* {}", origin.target());
    let history_dir = dir.path().join("history");
    let history_dir = history_dir.to_str().unwrap().to_string();
    let mut args = vec!["--route", route.as_str()];
    if durable {
        args.extend(["--history-dir", history_dir.as_str()]);
    }
    // ports a restart can bind again (see Gripway::start_restartable)
    let mut gw = Gripway::start_restartable(env!("CARGO_BIN_EXE_gripway"), &args);
    let addr = gw.addr;
    let publish_addr = gw.publish_addr;
    let seen: Vec<Arc<Mutex<Vec<String>>>> = (0..CLIENTS).map(|_| Arc::default()).collect();
    let away = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = seen
        .iter()
        .map(|s| {
            let last = format!("e{}", ITEMS - 1);
            tokio::spawn(follow(addr, last, s.clone(), away.clone()))
        })
        .collect();
    for _ in 0..500 {
        if gw.metric("gripway_subscriptions").await == Some(CLIENTS as f64) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut retried = 0;
    for n in 0..ITEMS {
        if n == ITEMS / 2 {
            match stop {
                Stop::Kill => {
                    // the clients are away while a burst is acknowledged and the process
                    // dies: only the disk can give them the burst
                    away.store(true, std::sync::atomic::Ordering::Relaxed);
                    for _ in 0..500 {
                        if gw.metric("gripway_subscriptions").await == Some(0.0) {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    let burst: Vec<serde_json::Value> = (n..n + BURST)
                        .map(|k| {
                            serde_json::from_str::<serde_json::Value>(&item(k)).unwrap()["items"][0]
                                .clone()
                        })
                        .collect();
                    let body = serde_json::json!({ "items": burst }).to_string();
                    assert_eq!(publish(&gw.publish_url(), &body).await.0, 200);
                    gw.kill();
                    away.store(false, std::sync::atomic::Ordering::Relaxed);
                }
                Stop::Term => {
                    gw.terminate();
                    let code = tokio::task::spawn_blocking(move || {
                        let c = gw.wait_exit(Duration::from_secs(15));
                        (gw, c)
                    })
                    .await
                    .unwrap();
                    gw = code.0;
                    assert_eq!(code.1, Some(0), "a drain exits 0");
                }
            }
            gw = Gripway::restart_like(env!("CARGO_BIN_EXE_gripway"), &args, &gw);
            if durable {
                // a publisher retrying an item it sent before the restart: not delivered again
                let (status, _) = publish(&gw.publish_url(), &item(n - 3)).await;
                assert_eq!(status, 200);
            }
        }
        if stop == Stop::Kill && (ITEMS / 2..ITEMS / 2 + BURST).contains(&n) {
            continue; // acknowledged in the burst
        }
        retried += publish_until_acked(publish_addr, n).await - 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for c in clients {
        tokio::time::timeout(Duration::from_secs(60), c)
            .await
            .expect("clients finish")
            .expect("client task");
    }
    let want: Vec<String> = (0..ITEMS).map(|n| format!("e{n}")).collect();
    for (i, s) in seen.iter().enumerate() {
        assert_eq!(
            *s.lock().unwrap(),
            want,
            "client {i}: every acknowledged item once, in order (publishes retried: {retried})"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_durable_history_loses_nothing_acknowledged() {
    run(Stop::Kill, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_durable_history_loses_nothing_acknowledged() {
    run(Stop::Term, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_history_in_memory_loses_nothing_acknowledged() {
    run(Stop::Term, false).await;
}
