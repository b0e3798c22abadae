//! One real nats-server: a publish on one bus reaches the other buses subscribed to the
//! channel, in order, once; unsubscribing stops it; the same (channel, id) published by two
//! buses is stored once (the second acknowledgement says duplicate) and delivered once; items
//! a slow node's NATS client dropped are read back from the stream (gap check), in order.

mod common;

use std::time::Duration;

use common::*;
use gripway_cluster::{Bus, ClusterConfig};
use gripway_test_support::NatsServer;

const CH: &str = "news.eu *> 日本 x";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_in_order_once_and_unsubscribe_stops_it() {
    let nats = NatsServer::start();
    let (a, _ra) = bus(config(vec![nats.client_url()], 1)).await;
    let (b, mut rb) = bus(config(vec![nats.client_url()], 1)).await;
    let (c, mut rc) = bus(config(vec![nats.client_url()], 1)).await;
    b.subscribe(CH).await.expect("subscribe");
    c.subscribe(CH).await.expect("subscribe");
    b.subscribe(CH).await.expect("idempotent");
    assert_eq!(b.subscriptions(), 1);

    let mut seqs = Vec::new();
    for i in 0..50 {
        let ack = a
            .publish(CH, Some(&format!("id{i}")), body(format!("item {i}")))
            .await
            .expect("publish");
        assert!(!ack.duplicate);
        seqs.push(ack.seq);
    }
    let want: Vec<String> = (0..50).map(|i| format!("item {i}")).collect();
    for rx in [&mut rb, &mut rc] {
        let got = take(rx, 50, WAIT).await;
        assert_eq!(payloads(&got), want);
        assert_eq!(got.iter().map(|d| d.seq).collect::<Vec<_>>(), seqs);
        assert!(got.iter().all(|d| d.channel == CH));
        assert_eq!(got[0].last_seq, 0);
        assert_chained(&got);
    }

    // once: the next thing each receives is the next item, nothing repeated before it
    c.unsubscribe(CH);
    assert_eq!(c.subscriptions(), 0);
    a.publish(CH, Some("after"), body("after"))
        .await
        .expect("publish");
    assert_eq!(payloads(&take(&mut rb, 1, WAIT).await), ["after"]);
    // c is no longer subscribed: the first thing it gets is from another channel published
    // after (one server republishes in stream order, over one connection)
    c.subscribe("sentinel").await.expect("subscribe");
    a.publish("sentinel", None, body("s"))
        .await
        .expect("publish");
    let first = take(&mut rc, 1, WAIT).await;
    assert_eq!(first[0].channel, "sentinel");
    assert!(rb.try_recv().is_err(), "b got something extra");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_id_from_two_buses_is_stored_and_delivered_once() {
    let nats = NatsServer::start();
    let (a, _ra) = bus(config(vec![nats.client_url()], 1)).await;
    let (b, _rb) = bus(config(vec![nats.client_url()], 1)).await;
    let (c, mut rc) = bus(config(vec![nats.client_url()], 1)).await;
    c.subscribe("dedup").await.expect("subscribe");

    let first = a
        .publish("dedup", Some("x1"), body("one"))
        .await
        .expect("publish");
    let second = b
        .publish("dedup", Some("x1"), body("one again"))
        .await
        .expect("publish");
    assert!(!first.duplicate);
    assert!(second.duplicate, "{second:?}");
    assert_eq!(first.seq, second.seq);
    // the same id on another channel is another item
    let other = b
        .publish("dedup2", Some("x1"), body("other"))
        .await
        .expect("publish");
    assert!(!other.duplicate);
    a.publish("dedup", Some("x2"), body("two"))
        .await
        .expect("publish");

    let got = take(&mut rc, 2, WAIT).await;
    assert_eq!(payloads(&got), ["one", "two"]);
    assert_chained(&got);
    let kept = c.read_after("dedup", 0, 10).await.expect("read");
    assert_eq!(kept.len(), 2);
    assert_eq!(kept[0].id.as_deref(), Some("x1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_a_slow_node_dropped_are_read_back_in_order() {
    let nats = NatsServer::start();
    let (a, _ra) = bus(config(vec![nats.client_url()], 1)).await;
    // a node whose NATS client buffers 2 republished items and whose consumer does not read
    let slow_cfg = ClusterConfig {
        subscription_capacity: 2,
        delivery_capacity: 1,
        ..config(vec![nats.client_url()], 1)
    };
    let (slow, mut rs) = Bus::connect(slow_cfg).await.expect("connect");
    slow.subscribe("burst").await.expect("subscribe");
    let mut seqs = Vec::new();
    for i in 0..300 {
        seqs.push(
            a.publish("burst", None, body(format!("{i}")))
                .await
                .expect("publish")
                .seq,
        );
    }
    let got = take(&mut rs, 300, WAIT).await;
    assert_eq!(got.iter().map(|d| d.seq).collect::<Vec<_>>(), seqs);
    assert_eq!(
        payloads(&got),
        (0..300).map(|i| i.to_string()).collect::<Vec<_>>()
    );
    assert_chained(&got);
    let stats = slow.stats();
    assert!(
        stats.read_back > 0,
        "the gap check was not exercised: {stats:?}"
    );
    assert_eq!(stats.delivered, 300);
    eprintln!("{stats:?}");
    tokio::time::sleep(Duration::from_millis(200)).await; // nothing more is due: check none came
    assert!(rs.try_recv().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribing_since_a_moment_delivers_what_was_stored_from_then_on() {
    let nats = NatsServer::start();
    let (a, _ra) = bus(config(vec![nats.client_url()], 1)).await;
    let (b, mut rb) = bus(config(vec![nats.client_url()], 1)).await;
    a.publish("since", Some("old"), body("old"))
        .await
        .expect("publish");
    tokio::time::sleep(Duration::from_millis(300)).await;
    // the channel's first subscriber came now; its subscription reaches NATS only later
    let since = std::time::SystemTime::now();
    a.publish("since", Some("new1"), body("new1"))
        .await
        .expect("publish");
    a.publish("since", Some("new2"), body("new2"))
        .await
        .expect("publish");
    b.subscribe_since("since", since).await.expect("subscribe");
    a.publish("since", Some("live"), body("live"))
        .await
        .expect("publish");
    let got = take(&mut rb, 3, WAIT).await;
    assert_eq!(
        payloads(&got),
        ["new1", "new2", "live"],
        "old is from before"
    );
    assert_chained(&got[1..]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(rb.try_recv().is_err(), "nothing twice");

    // a channel with nothing recent: only what follows
    a.publish("quiet", Some("q0"), body("q0"))
        .await
        .expect("publish");
    tokio::time::sleep(Duration::from_millis(300)).await;
    b.subscribe_since("quiet", std::time::SystemTime::now())
        .await
        .expect("subscribe");
    a.publish("quiet", Some("q1"), body("q1"))
        .await
        .expect("publish");
    assert_eq!(payloads(&take(&mut rb, 1, WAIT).await), ["q1"]);
}
