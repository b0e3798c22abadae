//! MQTT devices against the real binary: Debian's `mosquitto_sub` and `mosquitto_pub`, and a
//! byte-level client for what a library would not send. The demo origin allows everything,
//! with channel = topic, so devices, SSE and WebSocket clients share channel `test`.

mod common;

use std::process::Command;
use std::time::Duration;

use common::mqtt::{connack_code, ConnectOptions, MqttClient};
use common::mqtt_setup::*;
use common::*;
use futures_util::StreamExt;
use gripway_proto::mqtt::{v3, v5, Packet, Version};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn with_no_arguments_mosquitto_sub_on_1883_gets_what_the_publish_api_sends() {
    // the demo's MQTT port is 1883; another broker on this machine would hold it
    if std::net::TcpListener::bind("0.0.0.0:1883").is_err() {
        eprintln!("port 1883 is taken here; the default port cannot be tested");
        return;
    }
    let gw = Gripway::start_with_default_mqtt(env!("CARGO_BIN_EXE_gripway"), &[]);
    assert_eq!(mqtt_addr(&gw).port(), 1883, "{}", gw.log());
    let sub = mosquitto_sub(1883, &["-t", "test", "-C", "1"]);
    wait_subscriptions(&gw, 1.0).await;
    let body = item("test", "1", "hello devices");
    assert_eq!(publish(&gw.publish_url(), &body).await.0, 200);
    assert_eq!(output_of(sub), "hello devices\n");
}

#[tokio::test]
async fn mosquitto_pub_reaches_sse_and_websocket_clients_of_the_channel() {
    let gw = gripway(&[]);
    let mut sse = sse_client(&gw, "/test/sse").await;
    let url = format!("ws://{}/test/websocket", gw.addr);
    let sock = tokio::net::TcpStream::connect(gw.addr)
        .await
        .expect("connect");
    let (mut ws, _) = tokio_tungstenite::client_async(url, sock)
        .await
        .expect("ws");
    wait_subscriptions(&gw, 2.0).await;
    let port = mqtt_addr(&gw).port().to_string();
    for qos in ["0", "1", "2"] {
        let status = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &port, "-t", "test", "-q", qos])
            .args(["-m", &format!("hi at qos {qos}")])
            .status()
            .expect("mosquitto_pub runs");
        assert!(status.success());
        let want = format!("data: hi at qos {qos}\n\n");
        sse.read_until(want.as_bytes(), WAIT).await;
        loop {
            let m = tokio::time::timeout(WAIT, ws.next())
                .await
                .expect("in time");
            if let Some(Ok(Message::Text(t))) = m {
                assert_eq!(t.as_str(), format!("hi at qos {qos}"));
                break;
            }
        }
    }
    ws.close(None).await.ok();
}

#[tokio::test]
async fn mixed_subscribers_get_the_same_items_in_the_same_order() {
    let gw = gripway(&[]);
    let port = mqtt_addr(&gw).port();
    let sub3 = mosquitto_sub(port, &["-t", "test", "-C", "100", "-q", "1"]);
    let sub5 = mosquitto_sub(port, &["-t", "test", "-C", "100", "-V", "mqttv5"]);
    let mut raw = connected(&gw, Version::V5, "raw").await;
    assert_eq!(raw.subscribe(&[("test", 1)]).await, vec![1]);
    let mut sse = sse_client(&gw, "/test/sse").await;
    wait_subscriptions(&gw, 4.0).await;
    let mut want = String::new();
    for i in 0..100 {
        let body = item("test", &i.to_string(), &format!("item {i}"));
        assert_eq!(publish(&gw.publish_url(), &body).await.0, 200);
        want.push_str(&format!("item {i}\n"));
    }
    for i in 0..100 {
        let (topic, payload, qos, pid) = raw.next_publish(true).await;
        assert_eq!((topic.as_str(), qos), ("test", 1));
        assert!(pid.is_some());
        assert_eq!(payload, format!("item {i}").into_bytes());
    }
    let sse_body = sse.read_until(b"data: item 99\n\n", WAIT).await;
    let sse_items: String = String::from_utf8_lossy(&sse_body)
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(sse_items, want);
    assert_eq!(output_of(sub3), want);
    assert_eq!(output_of(sub5), want);
}

#[tokio::test]
async fn qos1_deliveries_wait_for_room_in_the_receive_maximum() {
    let gw = gripway(&[]);
    let mut o = ConnectOptions::new(Version::V5, "slow-acker");
    o.receive_max = Some(2);
    let (mut c, ack) = MqttClient::connect(mqtt_addr(&gw), &o).await;
    assert_eq!(connack_code(&ack), 0);
    assert_eq!(c.subscribe(&[("test", 1)]).await, vec![1]);
    wait_subscriptions(&gw, 1.0).await;
    for i in 0..5 {
        let body = item("test", &format!("q{i}"), &format!("m{i}"));
        assert_eq!(publish(&gw.publish_url(), &body).await.0, 200);
    }
    let (_, p0, _, pid0) = c.next_publish(false).await;
    let (_, p1, _, _) = c.next_publish(false).await;
    assert_eq!((p0, p1), (b"m0".to_vec(), b"m1".to_vec()));
    // nothing more until an acknowledgement makes room
    let mut seen = Vec::new();
    assert!(!c.closed_within(Duration::from_millis(300), &mut seen).await);
    assert!(seen.is_empty(), "sent past the receive maximum: {seen:?}");
    c.puback(pid0.unwrap()).await;
    let (_, p2, _, _) = c.next_publish(true).await;
    assert_eq!(p2, b"m2");
}

#[tokio::test]
async fn a_device_publish_is_acknowledged_once_the_broker_has_it() {
    let gw = gripway(&[]);
    let mut sse = sse_client(&gw, "/test/sse").await;
    wait_subscriptions(&gw, 1.0).await;
    let mut c = connected(&gw, Version::V5, "pub").await;
    c.publish("test", b"line one\nline two", 1).await;
    match c.next().await.expect("PUBACK") {
        Packet::V5(v5::Packet::Puback(a)) => assert_eq!(a.reason_code as u8, 0),
        other => panic!("{other:?}"),
    }
    // each line of the payload is a data: line of one SSE event
    sse.read_until(b"data: line one\ndata: line two\n\n", WAIT)
        .await;
}

/// Publishes that arrive together are acknowledged together (one write), each PUBACK with its
/// own packet id, in order, and every item reaches the channel.
#[tokio::test]
async fn publishes_sent_in_one_write_are_each_acknowledged_in_order() {
    let gw = gripway(&[]);
    let mut sse = sse_client(&gw, "/test/sse").await;
    wait_subscriptions(&gw, 1.0).await;
    for version in [Version::V3, Version::V5] {
        let mut c = connected(&gw, version, &format!("pub-{version:?}")).await;
        let mut bytes = Vec::new();
        for i in 0..5 {
            bytes.extend(c.publish_bytes("test", format!("{version:?}-{i}").as_bytes(), 1));
        }
        c.send_raw(&bytes).await;
        let mut pids = Vec::new();
        for _ in 0..5 {
            match c.next().await.expect("PUBACK") {
                Packet::V3(v3::Packet::Puback(pid)) => pids.push(pid.value()),
                Packet::V5(v5::Packet::Puback(a)) => {
                    assert_eq!(a.reason_code as u8, 0);
                    pids.push(a.pid.value());
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(pids, [1, 2, 3, 4, 5], "{version:?}");
        for i in 0..5 {
            sse.read_until(format!("data: {version:?}-{i}\n\n").as_bytes(), WAIT)
                .await;
        }
    }
}

#[tokio::test]
async fn the_demo_takes_wildcard_filters_as_patterns_over_channels() {
    let gw = gripway(&[]);
    let mut c5 = connected(&gw, Version::V5, "five").await;
    let codes = c5
        .subscribe(&[("sensors/+/temp", 1), ("$share/g/a/#", 0), ("test", 2)])
        .await;
    // a shared group is one subscriber of one channel: no pattern; QoS 2 granted as 1
    assert_eq!(codes, vec![1, 0xA2, 1]);
    let mut c3 = connected(&gw, Version::V3, "three").await;
    assert_eq!(c3.subscribe(&[("#", 0)]).await, vec![0]);
    // the patterns match channels nobody subscribed to by name, publish API and devices alike
    let mut device = connected(&gw, Version::V3, "device").await;
    device.publish("sensors/kitchen/temp", b"21.5", 1).await;
    device.publish("sensors/kitchen/humidity", b"40", 1).await;
    // acknowledged, so in the broker before the publish API's item
    for _ in 0..2 {
        device.next().await.expect("PUBACK");
    }
    let body = item("sensors/hall/temp", "h1", "19.0");
    assert_eq!(publish(&gw.publish_url(), &body).await.0, 200);
    let (topic, payload, _, _) = c5.next_publish(true).await;
    assert_eq!(
        (topic.as_str(), payload.as_slice()),
        ("sensors/kitchen/temp", &b"21.5"[..])
    );
    let (topic, payload, _, _) = c5.next_publish(true).await;
    assert_eq!(
        (topic.as_str(), payload.as_slice()),
        ("sensors/hall/temp", &b"19.0"[..])
    );
    let mut seen = Vec::new();
    assert!(
        !c5.closed_within(Duration::from_millis(200), &mut seen)
            .await
    );
    assert!(seen.is_empty(), "humidity matched sensors/+/temp: {seen:?}");
    // `#` gets all three, in order
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(c3.next_publish(false).await.0);
    }
    assert_eq!(
        got,
        [
            "sensors/kitchen/temp",
            "sensors/kitchen/humidity",
            "sensors/hall/temp"
        ]
    );
    // unsubscribing the pattern stops it
    c3.unsubscribe(&["#"]).await;
    c3.next().await; // UNSUBACK
    device.publish("sensors/x/temp", b"after", 0).await;
    assert_eq!(c5.next_publish(true).await.1, b"after");
    let mut seen = Vec::new();
    assert!(
        !c3.closed_within(Duration::from_millis(200), &mut seen)
            .await
    );
    assert!(
        seen.is_empty(),
        "an unsubscribed pattern still delivers: {seen:?}"
    );
}

#[tokio::test]
async fn a_shared_subscription_splits_the_channel_between_its_members() {
    let gw = gripway(&[]);
    let mut members = Vec::new();
    for (i, version) in [Version::V5, Version::V5, Version::V3]
        .into_iter()
        .enumerate()
    {
        let mut c = connected(&gw, version, &format!("member-{i}")).await;
        assert_eq!(c.subscribe(&[("$share/workers/jobs", 1)]).await, vec![1]);
        members.push(c);
    }
    let mut everyone = connected(&gw, Version::V5, "watcher").await;
    assert_eq!(everyone.subscribe(&[("jobs", 1)]).await, vec![1]);
    // the group is one subscriber of the channel, beside the watcher
    wait_subscriptions(&gw, 2.0).await;
    for i in 0..30 {
        let body = item("jobs", &format!("j{i}"), &format!("job {i}"));
        assert_eq!(publish(&gw.publish_url(), &body).await.0, 200);
    }
    let mut all = Vec::new();
    for _ in 0..30 {
        all.push(everyone.next_publish(true).await.1);
    }
    let mut shared = Vec::new();
    for c in &mut members {
        let mut mine = Vec::new();
        // each member got some, in turn: 10 each
        for _ in 0..10 {
            let (topic, payload, _, _) = c.next_publish(true).await;
            assert_eq!(topic, "jobs");
            mine.push(payload);
        }
        let mut seen = Vec::new();
        assert!(!c.closed_within(Duration::from_millis(200), &mut seen).await);
        assert!(
            seen.is_empty(),
            "a member got more than its share: {seen:?}"
        );
        shared.extend(mine);
    }
    shared.sort();
    all.sort();
    assert_eq!(shared, all, "every job went to exactly one member");
    // when members leave, the rest take everything
    for c in &mut members[1..] {
        c.disconnect(0).await;
    }
    members.truncate(1);
    for _ in 0..500 {
        if gw.metric("gripway_connections{transport=\"mqtt\"}").await == Some(2.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for i in 30..33 {
        let body = item("jobs", &format!("j{i}"), &format!("job {i}"));
        assert_eq!(publish(&gw.publish_url(), &body).await.0, 200);
    }
    for i in 30..33 {
        assert_eq!(
            members[0].next_publish(true).await.1,
            format!("job {i}").into_bytes()
        );
    }
    // a device's publish carries its topic, matched against the filter past `$share/workers/`
    everyone.publish("jobs", b"from a device", 1).await;
    let (topic, payload, _, _) = members[0].next_publish(true).await;
    assert_eq!(
        (topic.as_str(), payload.as_slice()),
        ("jobs", &b"from a device"[..])
    );
}

#[tokio::test]
async fn malformed_and_oversized_packets_are_refused_and_other_devices_keep_working() {
    let gw = gripway(&[]);
    let addr = mqtt_addr(&gw);
    let mut canary = connected(&gw, Version::V3, "canary").await;
    assert_eq!(canary.subscribe(&[("test", 0)]).await, vec![0]);
    let rss_before = gw.rss_bytes();
    // a 256 MiB remaining length, after CONNECT (v5): DISCONNECT 0x95, then the close
    for _ in 0..20 {
        let mut c = connected(&gw, Version::V5, "big").await;
        c.send_raw(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F]).await;
        let mut seen = Vec::new();
        assert!(c.closed_within(WAIT, &mut seen).await);
        assert!(
            matches!(seen.as_slice(), [Packet::V5(v5::Packet::Disconnect(d))] if d.reason_code as u8 == 0x95),
            "{seen:?}"
        );
    }
    // the same before CONNECT, a fifth length byte, a PINGREQ with a body, a packet before
    // CONNECT, and noise: each is closed
    for bytes in [
        &[0x10, 0xFF, 0xFF, 0xFF, 0x7F][..],
        &[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01][..],
        &[0xC0, 0x00][..],
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        &[0x82, 0x01, 0x00][..],
    ] {
        let mut c = MqttClient::open(addr).await;
        c.send_raw(bytes).await;
        let mut seen = Vec::new();
        assert!(c.closed_within(WAIT, &mut seen).await, "{bytes:?}");
    }
    let mut c = connected(&gw, Version::V3, "pinger").await;
    c.send_raw(&[0xC0, 0x01, 0x00]).await;
    assert!(c.closed_within(WAIT, &mut Vec::new()).await);
    // a second CONNECT is a protocol error
    let mut c = connected(&gw, Version::V3, "twice").await;
    c.send_connect(&ConnectOptions::new(Version::V3, "twice"))
        .await;
    assert!(c.closed_within(WAIT, &mut Vec::new()).await);
    // an unknown protocol level gets CONNACK 0x01
    let mut c = MqttClient::open(addr).await;
    c.send_raw(&[
        0x10, 0x0D, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x09, 0x02, 0x00, 0x3C, 0x00, 0x01, b'x',
    ])
    .await;
    let mut seen = Vec::new();
    assert!(c.closed_within(WAIT, &mut seen).await);
    assert!(
        matches!(seen.as_slice(), [p] if connack_code(p) == 1),
        "{seen:?}"
    );
    assert!(error_count(&gw, "mqtt-packet-too-large").await >= 20.0);
    assert!(error_count(&gw, "mqtt-malformed").await >= 1.0);
    // nothing was buffered for the declared lengths
    if let (Some(before), Some(after)) = (rss_before, gw.rss_bytes()) {
        assert!(
            after < before + 32 * 1024 * 1024,
            "RSS grew from {before} to {after}"
        );
    }
    // the canary still gets what is published
    let body = item("test", "c1", "still here");
    assert_eq!(publish(&gw.publish_url(), &body).await.0, 200);
    let (_, payload, _, _) = canary.next_publish(true).await;
    assert_eq!(payload, b"still here");
}

#[tokio::test]
async fn a_connect_flood_is_bounded_and_other_devices_keep_working() {
    let dir = TempDir::new("mqtt-flood");
    let config = dir.write("gripway.toml", "[proxy]\nrequest_head_timeout_ms = 1000\n");
    let gw = gripway(&["--config", config.to_str().unwrap()]);
    let addr = mqtt_addr(&gw);
    let mut canary = connected(&gw, Version::V5, "canary").await;
    assert_eq!(canary.subscribe(&[("test", 0)]).await, vec![0]);
    // 500 connections that never finish CONNECT
    let mut idle = Vec::new();
    for i in 0..500 {
        let mut c = MqttClient::open(addr).await;
        if i % 2 == 0 {
            c.send_raw(&[0x10, 0x20, 0x00, 0x04]).await;
        }
        idle.push(c);
    }
    let body = item("test", "f1", "during the flood");
    assert_eq!(publish(&gw.publish_url(), &body).await.0, 200);
    assert_eq!(canary.next_publish(true).await.1, b"during the flood");
    // each is closed once the CONNECT wait passes
    for c in idle.iter_mut().step_by(50) {
        assert!(
            c.closed_within(Duration::from_secs(5), &mut Vec::new())
                .await
        );
    }
    assert!(error_count(&gw, "mqtt-connect-timeout").await >= 10.0);
}

#[tokio::test]
async fn a_silent_device_is_closed_after_one_and_a_half_keep_alives() {
    let gw = gripway(&[]);
    let mut o = ConnectOptions::new(Version::V5, "quiet");
    o.keep_alive = 1;
    let (mut c, ack) = MqttClient::connect(mqtt_addr(&gw), &o).await;
    assert_eq!(connack_code(&ack), 0);
    // a ping keeps it open
    tokio::time::sleep(Duration::from_millis(900)).await;
    c.ping().await;
    let started = std::time::Instant::now();
    let mut seen = Vec::new();
    assert!(c.closed_within(Duration::from_secs(5), &mut seen).await);
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1200), "closed after {took:?}");
    assert!(
        matches!(seen.last(), Some(Packet::V5(v5::Packet::Disconnect(d))) if d.reason_code as u8 == 0x8D),
        "{seen:?}"
    );
}

#[tokio::test]
async fn a_lost_device_s_will_is_published_and_a_clean_disconnect_sends_none() {
    let gw = gripway(&[]);
    let mut sse = sse_client(&gw, "/test/sse").await;
    wait_subscriptions(&gw, 1.0).await;
    let mut o = ConnectOptions::new(Version::V3, "leaves-cleanly");
    o.will = Some(("test".into(), b"clean-will".to_vec(), 0));
    let (mut c, _) = MqttClient::connect(mqtt_addr(&gw), &o).await;
    c.disconnect(0).await;
    drop(c);
    let mut o = ConnectOptions::new(Version::V3, "dies");
    o.will = Some(("test".into(), b"gone".to_vec(), 1));
    let (c, _) = MqttClient::connect(mqtt_addr(&gw), &o).await;
    drop(c);
    let got = sse.read_until(b"data: gone\n\n", WAIT).await;
    assert!(
        !String::from_utf8_lossy(&got).contains("clean-will"),
        "a clean DISCONNECT sent the will"
    );
}

#[tokio::test]
async fn at_shutdown_a_v5_device_is_told_the_server_is_going_away() {
    let gw = gripway(&[]);
    let mut c = connected(&gw, Version::V5, "drained").await;
    assert_eq!(c.subscribe(&[("test", 0)]).await, vec![0]);
    gw.terminate();
    let mut seen = Vec::new();
    assert!(c.closed_within(WAIT, &mut seen).await);
    assert!(
        matches!(seen.last(), Some(Packet::V5(v5::Packet::Disconnect(d))) if d.reason_code as u8 == 0x8B),
        "{seen:?}"
    );
}

#[tokio::test]
async fn unsubscribe_stops_deliveries() {
    let gw = gripway(&[]);
    let mut c = connected(&gw, Version::V3, "u").await;
    assert_eq!(c.subscribe(&[("test", 0), ("other", 0)]).await, vec![0, 0]);
    wait_subscriptions(&gw, 2.0).await;
    c.unsubscribe(&["test"]).await;
    wait_subscriptions(&gw, 1.0).await;
    assert_eq!(
        publish(&gw.publish_url(), &item("test", "1", "not for u"))
            .await
            .0,
        200
    );
    assert_eq!(
        publish(&gw.publish_url(), &item("other", "2", "for u"))
            .await
            .0,
        200
    );
    assert_eq!(c.next_publish(false).await.1, b"for u");
}
