//! History reads against a real server: `read_after` returns a channel's kept items in
//! stream order, after a given sequence and up to a limit, never more than `max_items` (the
//! stream keeps only that many per channel), and never another channel's; `find_seq_of_id`
//! finds a kept item's sequence by its id and nothing for an evicted or unknown id.

mod common;

use common::*;
use gripway_cluster::ClusterConfig;
use gripway_test_support::NatsServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_after_and_find_seq_of_id_respect_max_items() {
    let nats = NatsServer::start();
    let cfg = ClusterConfig {
        max_items: 5,
        ..config(vec![nats.client_url()], 1)
    };
    let (bus, _rx) = bus(cfg).await;
    let mut seqs = Vec::new();
    for i in 0..8 {
        seqs.push(
            bus.publish("h.one", Some(&format!("i{i}")), body(format!("p{i}")))
                .await
                .expect("publish")
                .seq,
        );
        bus.publish("h.two", Some(&format!("i{i}")), body(format!("other{i}")))
            .await
            .expect("publish");
    }
    let kept = bus.read_after("h.one", 0, 100).await.expect("read");
    assert_eq!(
        kept.iter()
            .map(|s| s.id.clone().unwrap_or_default())
            .collect::<Vec<_>>(),
        ["i3", "i4", "i5", "i6", "i7"]
    );
    assert_eq!(kept.iter().map(|s| s.seq).collect::<Vec<_>>(), seqs[3..]);
    assert_eq!(kept[0].payload, body("p3"));

    let after = bus.read_after("h.one", seqs[4], 2).await.expect("read");
    assert_eq!(after.iter().map(|s| s.seq).collect::<Vec<_>>(), seqs[5..7]);
    assert!(bus
        .read_after("h.one", seqs[7], 10)
        .await
        .expect("read")
        .is_empty());
    assert!(bus
        .read_after("h.none", 0, 10)
        .await
        .expect("read")
        .is_empty());

    assert_eq!(
        bus.find_seq_of_id("h.one", "i6").await.expect("find"),
        Some(seqs[6])
    );
    assert_eq!(
        bus.find_seq_of_id("h.one", "i1").await.expect("find"),
        None,
        "evicted"
    );
    assert_eq!(
        bus.find_seq_of_id("h.one", "nope").await.expect("find"),
        None
    );
    let two = bus.find_seq_of_id("h.two", "i6").await.expect("find");
    assert!(two.is_some() && two != Some(seqs[6]));

    // an item without id reads back without one
    bus.publish("h.one", None, body("anon"))
        .await
        .expect("publish");
    let last = bus.read_after("h.one", seqs[7], 10).await.expect("read");
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].id, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensure_stream_updates_retention_and_refuses_a_foreign_stream() {
    let nats = NatsServer::start();
    let (a, _r) = bus(ClusterConfig {
        max_items: 5,
        ..config(vec![nats.client_url()], 1)
    })
    .await;
    // another node with other retention updates the stream
    let (b, _r) = bus(ClusterConfig {
        max_items: 2,
        ..config(vec![nats.client_url()], 1)
    })
    .await;
    for i in 0..4 {
        a.publish("r", None, body(format!("{i}")))
            .await
            .expect("publish");
    }
    assert_eq!(b.read_after("r", 0, 10).await.expect("read").len(), 2);

    // a stream of the same name capturing other subjects is not taken over
    let client = async_nats::connect(nats.client_url())
        .await
        .expect("connect");
    let js = async_nats::jetstream::new(client);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "OTHER".into(),
        subjects: vec!["orders.>".into()],
        ..Default::default()
    })
    .await
    .expect("create");
    let (c, _r) = gripway_cluster::Bus::connect(ClusterConfig {
        stream: "OTHER".into(),
        ..config(vec![nats.client_url()], 1)
    })
    .await
    .expect("connect");
    let err = c.ensure_stream().await.expect_err("refused");
    assert!(
        matches!(&err, gripway_cluster::BusError::Stream(m) if m.contains("subjects")),
        "{err}"
    );
}
