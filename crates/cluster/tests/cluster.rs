//! A real 3-server JetStream cluster, stream with 3 replicas. Two buses on different servers
//! publishing concurrently to one channel: the subscribers on all three servers see the same
//! sequence, each item once, equal to the stream's own order. A `kill -9` of one server
//! while publishing steadily: every acknowledged publish reaches every subscriber whose
//! server survives, and the subscriber whose server died (its client reconnects to another),
//! exactly once and in order.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use gripway_test_support::NatsCluster;
use parking_lot::Mutex;

const CH: &str = "scores.live";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishers_on_two_servers_give_one_order_everywhere() {
    let nats = NatsCluster::start(3);
    let (p0, _r) = bus(config(vec![nats.client_url(0)], 3)).await;
    let (p1, _r) = bus(config(vec![nats.client_url(1)], 3)).await;
    let mut subs = Vec::new();
    for i in 0..3 {
        let (s, rx) = bus(config(vec![nats.client_url(i)], 3)).await;
        s.subscribe(CH).await.expect("subscribe");
        subs.push((s, rx));
    }
    let n = 500;
    let run = |p: gripway_cluster::Bus, tag: &'static str| {
        tokio::spawn(async move {
            for i in 0..n {
                p.publish(CH, Some(&format!("{tag}{i}")), body(format!("{tag}{i}")))
                    .await
                    .expect("publish");
            }
        })
    };
    let (x, y) = (run(p0, "a"), run(p1, "b"));
    x.await.expect("publisher a");
    y.await.expect("publisher b");

    let stream_order: Vec<String> = {
        let (reader, _r) = bus(config(vec![nats.client_url(2)], 3)).await;
        let kept = reader.read_after(CH, 0, 2 * n).await.expect("read");
        kept.into_iter()
            .map(|s| String::from_utf8_lossy(&s.payload).into_owned())
            .collect()
    };
    assert_eq!(stream_order.len(), 2 * n);
    for (i, (_s, rx)) in subs.iter_mut().enumerate() {
        let got = take(rx, 2 * n, WAIT).await;
        assert_chained(&got);
        assert_eq!(payloads(&got), stream_order, "subscriber on server {i}");
    }
    // both publishers interleaved (not a test of NATS but of this test)
    let first_half: HashSet<char> = stream_order[..n]
        .iter()
        .map(|s| s.as_bytes()[0] as char)
        .collect();
    eprintln!("first half holds items of {first_half:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_one_server_loses_no_acknowledged_item() {
    let mut nats = NatsCluster::start(3);
    // the publisher knows every server, so it fails over
    let (p, _r) = bus(config(nats.urls(), 3)).await;
    let mut subs = Vec::new();
    for i in 0..3 {
        // each subscriber is given only server i; it learns the others from the server
        let (s, rx) = bus(config(vec![nats.client_url(i)], 3)).await;
        s.subscribe(CH).await.expect("subscribe");
        subs.push((s, rx));
    }
    let acked = Arc::new(Mutex::new(Vec::<(u64, String)>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let publisher = {
        let (acked, stop) = (acked.clone(), stop.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            let mut failures = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let payload = format!("m{i}");
                match p.publish(CH, Some(&payload), body(payload.clone())).await {
                    Ok(ack) if !ack.duplicate => acked.lock().push((ack.seq, payload)),
                    Ok(_) => {}
                    Err(e) => {
                        failures += 1;
                        eprintln!("publish {i} failed: {e}");
                    }
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            failures
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    // kill the stream's leader (the one that republishes), and with it a subscriber's server
    let leader = stream_leader(&nats.client_url(0)).await;
    eprintln!("killing the stream leader {leader}");
    let before = acked.lock().len();
    nats.kill(leader);
    let killed_at = std::time::Instant::now();
    // publishing goes on until well after the cluster settled (a new leader takes 2 to 7 s
    // here; bounded at 30 s)
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if acked.lock().len() >= before + 300 || killed_at.elapsed() > 3 * WAIT {
            break;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let failures = publisher.await.expect("publisher");
    let acked = acked.lock().clone();
    eprintln!(
        "{} acknowledged ({before} before the kill), {failures} failed publishes, {:?} to 300 after",
        acked.len(),
        killed_at.elapsed()
    );
    assert!(
        acked.len() >= before + 300,
        "publishing did not resume after the kill"
    );
    let mut want = acked.clone();
    want.sort();
    let want: Vec<String> = want.into_iter().map(|(_, p)| p).collect();
    for (i, (s, rx)) in subs.iter_mut().enumerate() {
        // failed publishes may still have been stored: take until the last acknowledged one
        let last = want.last().expect("some").clone();
        let mut got = Vec::new();
        while got
            .last()
            .map(|d: &gripway_cluster::Delivery| String::from_utf8_lossy(&d.payload).into_owned())
            != Some(last.clone())
        {
            got.extend(take(rx, 1, WAIT).await);
        }
        assert_chained(&got);
        let got = payloads(&got);
        let set: HashSet<&String> = got.iter().collect();
        assert_eq!(set.len(), got.len(), "subscriber {i} got a duplicate");
        for w in &want {
            assert!(set.contains(w), "subscriber {i} lacks acknowledged {w}");
        }
        // the acknowledged ones in stream order
        let seen: Vec<&String> = got.iter().filter(|p| want.contains(p)).collect();
        assert_eq!(
            seen,
            want.iter().collect::<Vec<_>>(),
            "subscriber {i} order"
        );
        eprintln!("subscriber {i}: {:?}", s.stats());
    }
}

/// The index of the server leading the stream (`n<i>`).
async fn stream_leader(url: &str) -> usize {
    let client = async_nats::connect(url).await.expect("connect");
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream("GRIPWAY").await.expect("stream");
    let info = stream.info().await.expect("info");
    let name = info
        .cluster
        .as_ref()
        .and_then(|c| c.leader.clone())
        .expect("a leader");
    name.trim_start_matches('n').parse().expect("n<i>")
}
