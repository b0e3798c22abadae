//! Fan-out at scale and under stress: thousands of held connections leave nothing behind when
//! they go, a client too slow to read is cut off and counted without holding anyone up, and
//! publishes are taken and fanned out on the broker thread.

mod common;

use std::time::Duration;

use common::*;
use futures_util::future::join_all;

fn sse_origin(r: &OriginRequest) -> Reply {
    Reply::ok()
        .header("Content-Type", "text/event-stream")
        .header("Grip-Hold", "stream")
        .header("Grip-Channel", r.path.trim_start_matches('/'))
        .body("ready\n")
}

async fn wait_metric(gw: &Gripway, sample: &str, want: f64) -> Option<f64> {
    let mut got = None;
    for _ in 0..500 {
        got = gw.metric(sample).await;
        if got == Some(want) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_connections_held_and_dropped_leave_the_registry_empty() {
    const N: usize = 5000;
    let origin = Origin::start(sse_origin).await;
    let gw = gripway_to(&origin, &[]);
    let mut clients = Vec::with_capacity(N);
    for batch in (0..N).collect::<Vec<_>>().chunks(250) {
        let connected = join_all(batch.iter().map(|i| {
            let addr = gw.addr;
            async move {
                let mut c = RawClient::connect(addr).await;
                c.get(&format!("/ch{}", i % 100), &[]).await;
                c.read_until(b"ready\n\r\n", WAIT).await;
                c
            }
        }))
        .await;
        clients.extend(connected);
    }
    assert_eq!(
        wait_metric(&gw, "gripway_subscriptions", N as f64).await,
        Some(N as f64)
    );
    assert_eq!(gw.metric("gripway_channels").await, Some(100.0));
    assert_eq!(
        gw.metric("gripway_connections{transport=\"http-stream\"}")
            .await,
        Some(N as f64)
    );

    // every one of them is live
    let items: Vec<_> = (0..100)
        .map(|i| serde_json::json!({"channel": format!("ch{i}"), "formats": {"http-stream": {"content": "ping\n"}}}))
        .collect();
    let body = serde_json::json!({ "items": items }).to_string();
    assert_eq!(publish(&gw.publish_url(), &body).await.0, 200);
    for c in &mut clients {
        c.read_until(b"ping\n", WAIT).await;
    }

    drop(clients);
    assert_eq!(
        wait_metric(&gw, "gripway_subscriptions", 0.0).await,
        Some(0.0)
    );
    assert_eq!(wait_metric(&gw, "gripway_channels", 0.0).await, Some(0.0));
    assert_eq!(
        wait_metric(&gw, "gripway_connections{transport=\"http-stream\"}", 0.0).await,
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_is_disconnected_and_counted_without_delaying_others() {
    let dir = TempDir::new("slow");
    let conf = dir.write("gripway.toml", "[grip]\nsubscriber_queue_bytes = 65536\n");
    let origin = Origin::start(sse_origin).await;
    let route = format!("* {}", origin.target());
    let gw = gripway(&["--config", conf.to_str().unwrap(), "--route", &route]);

    // the slow client subscribes and then never reads
    let mut slow = RawClient::connect(gw.addr).await;
    slow.get("/busy", &[]).await;
    slow.read_until(b"ready\n\r\n", WAIT).await;
    let mut fast = RawClient::connect(gw.addr).await;
    fast.get("/busy", &[]).await;
    fast.read_until(b"ready\n\r\n", WAIT).await;

    let payload = "z".repeat(30_000);
    let reader = tokio::spawn(async move {
        for i in 0..400 {
            fast.read_until(format!("#{i}#").as_bytes(), WAIT).await;
        }
    });
    for i in 0..400 {
        let body = stream_item("busy", &format!("{payload}#{i}#"));
        assert_eq!(publish(&gw.publish_url(), &body).await.0, 200);
    }
    tokio::time::timeout(Duration::from_secs(30), reader)
        .await
        .expect("the fast client got all 400 messages while the slow one stalled")
        .unwrap();

    assert_eq!(
        wait_metric(
            &gw,
            "gripway_connection_drops_total{reason=\"slow-subscriber\"}",
            1.0
        )
        .await,
        Some(1.0)
    );
    assert!(
        gw.metric("gripway_messages_dropped_total{reason=\"slow-subscriber\"}")
            .await
            > Some(0.0)
    );
    assert!(
        slow.closed_within(WAIT).await,
        "the slow client's connection is closed"
    );
}

/// The publish API and the shard tasks run on their own thread (`server::broker_thread`), so
/// a publish is not handed between the client runtime's workers: publishing to a subscriber
/// costs that thread CPU time.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_are_taken_and_fanned_out_on_the_broker_thread() {
    let origin = Origin::start(sse_origin).await;
    let gw = gripway_to(&origin, &[]);
    let broker_ticks = |gw: &Gripway| {
        gw.threads()
            .into_iter()
            .find(|(name, _)| name == "gripway-broker")
            .map(|(_, ticks)| ticks)
    };
    // a new thread takes its name once it first runs, which a busy machine may delay
    let deadline = std::time::Instant::now() + WAIT;
    let before = loop {
        match broker_ticks(&gw) {
            Some(ticks) => break ticks,
            None if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            None => panic!("no thread named gripway-broker: {:?}", gw.threads()),
        }
    };
    let mut c = RawClient::connect(gw.addr).await;
    c.get("/busy", &[]).await;
    c.read_until(b"ready\n\r\n", WAIT).await;
    const N: usize = 1000;
    for i in 0..N {
        let body = format!(
            r#"{{"items":[{{"channel":"busy","formats":{{"http-stream":{{"content":"m{i}\n"}}}}}}]}}"#
        );
        assert_eq!(publish(&gw.publish_url(), &body).await.0, 200);
    }
    c.read_until(format!("m{}\n", N - 1).as_bytes(), WAIT).await;
    let after = broker_ticks(&gw).expect("the broker thread still runs");
    assert!(
        after > before,
        "the broker thread did no work for {N} publishes ({before} -> {after} ticks)"
    );
}

/// With four workers a lane has three parts, and a channel of 800 subscribers is split in
/// three (one part per 256): every subscriber still gets every item once, in publish order,
/// through the real binary, while the items come in several publish requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_channel_split_between_the_workers_reaches_everyone_in_order() {
    const N: usize = 800;
    const ITEMS: usize = 60;
    let origin = Origin::start(sse_origin).await;
    let gw = gripway_to(&origin, &["--workers", "4"]);
    let mut clients = Vec::with_capacity(N);
    for batch in (0..N).collect::<Vec<_>>().chunks(200) {
        clients.extend(
            join_all(batch.iter().map(|_| {
                let addr = gw.addr;
                async move {
                    let mut c = RawClient::connect(addr).await;
                    c.get("/hot", &[]).await;
                    c.read_until(b"ready\n", WAIT).await;
                    c
                }
            }))
            .await,
        );
    }
    assert_eq!(
        wait_metric(&gw, "gripway_subscriptions", N as f64).await,
        Some(N as f64)
    );
    for chunk in (0..ITEMS).collect::<Vec<_>>().chunks(7) {
        let items: Vec<_> = chunk
            .iter()
            .map(|i| serde_json::json!({"channel": "hot", "formats": {"http-stream": {"content": format!("<m{i}>\n")}}}))
            .collect();
        let body = serde_json::json!({ "items": items }).to_string();
        assert_eq!(publish(&gw.publish_url(), &body).await.0, 200);
    }
    let last = format!("<m{}>", ITEMS - 1);
    let got = join_all(
        clients
            .iter_mut()
            .map(|c| c.read_until(last.as_bytes(), WAIT)),
    )
    .await;
    for body in got {
        let text = String::from_utf8_lossy(&body);
        let mut at = 0;
        for i in 0..ITEMS {
            let mark = format!("<m{i}>");
            let found = text[at..]
                .find(&mark)
                .unwrap_or_else(|| panic!("{mark} missing or out of order in {text:?}"));
            at += found + mark.len();
            assert!(
                !text[at..].contains(&mark),
                "{mark} delivered twice: {text:?}"
            );
        }
    }
    let split = gw.metric("gripway_fanout_split_batches_total").await;
    assert!(split.unwrap_or(0.0) >= 1.0, "written in parts: {split:?}");
}
