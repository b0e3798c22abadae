//! A request's items through `publish_many` against real servers: stored in request order
//! (over several channels, and over the 1,000-item batch limit), delivered so to another
//! node; an id repeated within a request, or one already stored by an earlier request, is
//! stored once and acknowledged as a duplicate of the stored one while the others are stored
//! after it; reads of more items than one batch read returns come back whole and in order;
//! and under a `kill -9` of the stream leader every request is stored whole or not at all,
//! so that retrying each until it succeeds leaves every item once, in request order.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use gripway_cluster::ClusterConfig;
use gripway_test_support::{NatsCluster, NatsServer};

fn items(spec: &[(&str, Option<String>, String)]) -> Vec<(String, Option<String>, Bytes)> {
    spec.iter()
        .map(|(c, id, p)| (c.to_string(), id.clone(), body(p.clone())))
        .collect()
}

fn refs(v: &[(String, Option<String>, Bytes)]) -> Vec<(&str, Option<&str>, Bytes)> {
    v.iter()
        .map(|(c, id, p)| (c.as_str(), id.as_deref(), p.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_stored_and_delivered_in_request_order() {
    let nats = NatsServer::start();
    let (publisher, _rp) = bus(config(vec![nats.client_url()], 1)).await;
    let (sub, mut rx) = bus(config(vec![nats.client_url()], 1)).await;
    let channels = ["b.one", "b.two", "b three"];
    for c in channels {
        sub.subscribe(c).await.expect("subscribe");
    }
    // 2,500 items: three batches; the channels interleaved; every fifth item without id
    let spec: Vec<(&str, Option<String>, String)> = (0..2500)
        .map(|i| {
            let id = (i % 5 != 0).then(|| format!("i{i}"));
            (channels[i % 3], id, format!("p{i}"))
        })
        .collect();
    let request = items(&spec);
    let acks = publisher
        .publish_many(&refs(&request))
        .await
        .expect("publish");
    assert_eq!(acks.len(), 2500);
    assert!(acks.iter().all(|a| !a.duplicate));
    // one order: the acknowledged sequences follow the request
    assert!(
        acks.windows(2).all(|w| w[1].seq > w[0].seq),
        "acknowledged out of request order"
    );

    let got = take(&mut rx, 2500, WAIT).await;
    let mut by_channel: HashMap<String, Vec<gripway_cluster::Delivery>> = HashMap::new();
    for d in got {
        by_channel.entry(d.channel.clone()).or_default().push(d);
    }
    for (k, c) in channels.iter().enumerate() {
        let ds = &by_channel[*c];
        assert_chained(ds);
        let want: Vec<String> = (0..2500)
            .filter(|i| i % 3 == k)
            .map(|i| format!("p{i}"))
            .collect();
        assert_eq!(payloads(ds), want, "channel {c}");
        // reads give the same, beyond one batch read's 1,000 items too
        let kept = publisher.read_after(c, 0, usize::MAX).await.expect("read");
        assert_eq!(
            kept.iter().map(|s| s.seq).collect::<Vec<_>>(),
            ds.iter().map(|d| d.seq).collect::<Vec<_>>()
        );
        assert_eq!(
            kept.iter()
                .map(|s| String::from_utf8_lossy(&s.payload).into_owned())
                .collect::<Vec<_>>(),
            want
        );
        let mid = kept[400].seq;
        let some = publisher.read_after(c, mid, 7).await.expect("read");
        assert_eq!(some, kept[401..408].to_vec());
    }
    assert!(rx.try_recv().is_err(), "an item delivered twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_is_stored_once_within_a_request_and_across_requests() {
    let nats = NatsServer::start();
    let (publisher, _rp) = bus(config(vec![nats.client_url()], 1)).await;
    let (sub, mut rx) = bus(config(vec![nats.client_url()], 1)).await;
    sub.subscribe("d").await.expect("subscribe");
    let s = |id: &str, p: &str| ("d", Some(id.to_string()), p.to_string());
    let first = items(&[
        s("x1", "one"),
        s("x2", "two"),
        s("x1", "one again"),
        ("d", None, "no id".to_string()),
        (
            "other",
            Some("x1".to_string()),
            "same id, other channel".to_string(),
        ),
    ]);
    let acks = publisher
        .publish_many(&refs(&first))
        .await
        .expect("publish");
    assert_eq!(
        acks.iter().map(|a| a.duplicate).collect::<Vec<_>>(),
        [false, false, true, false, false]
    );
    assert_eq!(
        acks[2].seq, acks[0].seq,
        "the repeat points at the stored one"
    );

    // a retry of part of it, with new items: the stored ones are duplicates, the new ones
    // follow in order
    let second = items(&[s("x2", "two again"), s("x3", "three"), s("x4", "four")]);
    let acks2 = publisher
        .publish_many(&refs(&second))
        .await
        .expect("publish");
    assert_eq!(
        acks2.iter().map(|a| a.duplicate).collect::<Vec<_>>(),
        [true, false, false]
    );
    assert_eq!(acks2[0].seq, acks[1].seq);
    assert!(acks2[1].seq > acks[3].seq && acks2[2].seq > acks2[1].seq);
    // the whole of a request again: nothing new
    let acks3 = publisher
        .publish_many(&refs(&second))
        .await
        .expect("publish");
    assert!(acks3.iter().all(|a| a.duplicate));
    assert_eq!(
        acks3.iter().map(|a| a.seq).collect::<Vec<_>>(),
        acks2.iter().map(|a| a.seq).collect::<Vec<_>>()
    );

    let want = ["one", "two", "no id", "three", "four"];
    assert_eq!(payloads(&take(&mut rx, 5, WAIT).await), want);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(rx.try_recv().is_err(), "a duplicate was delivered");
    let kept = publisher.read_after("d", 0, 100).await.expect("read");
    assert_eq!(
        kept.iter()
            .map(|s| String::from_utf8_lossy(&s.payload).into_owned())
            .collect::<Vec<_>>(),
        want
    );
    assert_eq!(
        kept.iter().map(|s| s.id.clone()).collect::<Vec<_>>(),
        [
            Some("x1".to_string()),
            Some("x2".to_string()),
            None,
            Some("x3".to_string()),
            Some("x4".to_string())
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_stored_whole_and_in_order_across_a_leader_kill() {
    let mut nats = NatsCluster::start(3);
    let cfg = ClusterConfig {
        publish_timeout: Duration::from_secs(3),
        ..config(nats.urls(), 3)
    };
    let (p, _rp) = bus(cfg).await;
    let (sub, mut rx) = bus(config(nats.urls(), 3)).await;
    sub.subscribe(CH).await.expect("subscribe");
    const PER: usize = 40;
    let request = |r: usize| -> Vec<(String, Option<String>, Bytes)> {
        (0..PER)
            .map(|i| {
                let id = format!("r{r}.{i}");
                (CH.to_string(), Some(id.clone()), body(id))
            })
            .collect()
    };
    let started = std::time::Instant::now();
    let mut killed = None;
    let (mut failures, mut r) = (0, 0);
    // each request is retried until it is acknowledged, then the next one goes
    while r < 200 && started.elapsed() < 6 * WAIT {
        if r == 40 && killed.is_none() {
            let leader = stream_leader(&nats.client_url(0)).await;
            eprintln!("killing the stream leader n{leader}");
            nats.kill(leader);
            killed = Some(std::time::Instant::now());
        }
        match p.publish_many(&refs(&request(r))).await {
            Ok(acks) => {
                assert_eq!(acks.len(), PER);
                r += 1;
            }
            Err(e) => {
                failures += 1;
                eprintln!("request {r} failed: {e}");
            }
        }
    }
    eprintln!(
        "{r} requests acknowledged, {failures} failures, {:?} since the kill",
        killed.map(|k| k.elapsed())
    );
    assert_eq!(r, 200, "publishing did not resume after the kill");
    let want: Vec<String> = (0..200)
        .flat_map(|r| (0..PER).map(move |i| format!("r{r}.{i}")))
        .collect();
    // the stream holds every item once, in request order: nothing a failure stored half
    let kept = p.read_after(CH, 0, usize::MAX).await.expect("read");
    let kept: Vec<String> = kept
        .iter()
        .map(|s| String::from_utf8_lossy(&s.payload).into_owned())
        .collect();
    assert_eq!(
        kept.len(),
        want.len(),
        "items stored more or less than once"
    );
    assert_eq!(kept, want);
    // and a subscriber gets the same
    let got = take(&mut rx, want.len(), WAIT).await;
    assert_chained(&got);
    assert_eq!(payloads(&got), want);
}

const CH: &str = "batch.kill";

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
