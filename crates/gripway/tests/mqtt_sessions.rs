//! What a device's session keeps against the real binary: persistent sessions that recover
//! the QoS 1 items missed (with `mosquitto_sub -c` too), retained messages, wills (delayed,
//! with v5 properties, not sent on a clean disconnect), a second CONNECT with the same client
//! id taking the session over, and the v5 subscription options that shape deliveries.

mod common;

use std::process::Command;
use std::time::Duration;

use common::mqtt::{connack_code, session_present, ConnectOptions, MqttClient};
use common::mqtt_setup::*;
use common::*;
use gripway_proto::mqtt::{v5, Packet, Version};

#[tokio::test]
async fn a_persistent_session_gets_the_qos1_items_it_missed_in_order_once() {
    let gw = gripway(&[]);
    let addr = mqtt_addr(&gw);
    for version in [Version::V3, Version::V5] {
        let id = format!("keeper-{version:?}");
        let channel = format!("persist-{version:?}");
        let mut o = ConnectOptions::new(version, &id);
        o.clean = false;
        o.session_expiry = Some(600);
        let (mut c, ack) = MqttClient::connect(addr, &o).await;
        assert_eq!(connack_code(&ack), 0);
        assert!(!session_present(&ack), "a new session");
        assert_eq!(c.subscribe(&[(channel.as_str(), 1)]).await, vec![1]);
        let body = item(&channel, &format!("{channel}-0"), "before");
        assert_eq!(publish(&gw.publish_url(), &body).await.0, 200);
        assert_eq!(c.next_publish(true).await.1, b"before");
        // one more it receives but does not acknowledge, then it goes away
        let body = item(&channel, &format!("{channel}-1"), "unacked");
        assert_eq!(publish(&gw.publish_url(), &body).await.0, 200);
        assert_eq!(c.next_publish(false).await.1, b"unacked");
        drop(c);
        tokio::time::sleep(Duration::from_millis(200)).await;
        for i in 2..52 {
            let body = item(&channel, &format!("{channel}-{i}"), &format!("missed {i}"));
            assert_eq!(publish(&gw.publish_url(), &body).await.0, 200);
        }
        let (mut c, ack) = MqttClient::connect(addr, &o).await;
        assert_eq!(connack_code(&ack), 0);
        assert!(session_present(&ack), "the session was kept");
        // the unacknowledged one again (DUP set), then exactly what it missed, in order
        let (payload, dup, pid) = next_with_dup(&mut c).await;
        assert_eq!((payload.as_slice(), dup), (&b"unacked"[..], true));
        c.puback(pid).await;
        for i in 2..52 {
            let (topic, payload, qos, _) = c.next_publish(true).await;
            assert_eq!((topic.as_str(), qos), (channel.as_str(), 1));
            assert_eq!(payload, format!("missed {i}").into_bytes());
        }
        let body = item(&channel, &format!("{channel}-live"), "live");
        assert_eq!(publish(&gw.publish_url(), &body).await.0, 200);
        assert_eq!(c.next_publish(true).await.1, b"live");
        c.disconnect(0).await;
        drop(c);
        // a clean start drops the session
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut clean = ConnectOptions::new(version, &id);
        clean.clean = true;
        let (_, ack) = MqttClient::connect(addr, &clean).await;
        assert!(!session_present(&ack));
    }
}

#[tokio::test]
async fn mosquitto_sub_with_a_persistent_session_recovers_what_it_missed() {
    let gw = gripway(&[]);
    let port = mqtt_addr(&gw).port();
    let args = ["-t", "fleet", "-q", "1", "-c", "-i", "mosq-keeper"];
    let mut first: Vec<&str> = args.to_vec();
    first.extend(["-C", "1"]);
    let sub = mosquitto_sub(port, &first);
    wait_subscriptions(&gw, 1.0).await;
    assert_eq!(
        publish(&gw.publish_url(), &item("fleet", "f0", "one"))
            .await
            .0,
        200
    );
    assert_eq!(output_of(sub), "one\n");
    wait_subscriptions(&gw, 0.0).await;
    for i in 1..4 {
        let body = item("fleet", &format!("f{i}"), &format!("away {i}"));
        assert_eq!(publish(&gw.publish_url(), &body).await.0, 200);
    }
    let mut again: Vec<&str> = args.to_vec();
    again.extend(["-C", "3"]);
    let sub = mosquitto_sub(port, &again);
    assert_eq!(output_of(sub), "away 1\naway 2\naway 3\n");
}

/// The next PUBLISH's payload and RETAIN flag.
async fn next_retain(c: &mut MqttClient) -> (Vec<u8>, bool) {
    loop {
        match c.next().await.expect("a PUBLISH") {
            Packet::V3(gripway_proto::mqtt::v3::Packet::Publish(p)) => {
                return (p.payload.to_vec(), p.retain)
            }
            Packet::V5(v5::Packet::Publish(p)) => return (p.payload.to_vec(), p.retain),
            _ => continue,
        }
    }
}

#[tokio::test]
async fn a_retained_publish_reaches_later_subscribers_with_the_retain_flag_until_cleared() {
    let gw = gripway(&[]);
    let port = mqtt_addr(&gw).port().to_string();
    let pub_retained = |m: &[&str]| {
        let status = Command::new("mosquitto_pub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-t",
                "status",
                "-r",
                "-q",
                "1",
            ])
            .args(m)
            .status()
            .expect("mosquitto_pub runs");
        assert!(status.success());
    };
    pub_retained(&["-m", "offline"]);
    pub_retained(&["-m", "online"]);
    // a plain publish after it does not replace the retained message
    let mut device = connected(&gw, Version::V3, "plain").await;
    device.publish("status", b"not retained", 1).await;
    device.next().await;
    for version in [Version::V3, Version::V5] {
        let mut c = connected(&gw, version, &format!("late-{version:?}")).await;
        assert_eq!(c.subscribe(&[("status", 1)]).await, vec![1]);
        assert_eq!(next_retain(&mut c).await, (b"online".to_vec(), true));
        // live ones carry no RETAIN flag
        device.publish("status", b"live", 0).await;
        assert_eq!(next_retain(&mut c).await, (b"live".to_vec(), false));
    }
    // mosquitto_sub sees it too
    let sub = mosquitto_sub(mqtt_addr(&gw).port(), &["-t", "status", "-C", "1"]);
    assert_eq!(output_of(sub), "online\n");
    // an empty retained publish clears it
    pub_retained(&["-n"]);
    let mut c = connected(&gw, Version::V5, "after-clear").await;
    assert_eq!(c.subscribe(&[("status", 1)]).await, vec![1]);
    let mut seen = Vec::new();
    assert!(!c.closed_within(Duration::from_millis(300), &mut seen).await);
    assert!(
        seen.is_empty(),
        "a cleared retained message was sent: {seen:?}"
    );
}

/// The next PUBLISH's payload, DUP flag and packet id (QoS 1).
async fn next_with_dup(c: &mut MqttClient) -> (Vec<u8>, bool, u16) {
    loop {
        let (payload, dup, q) = match c.next().await.expect("a PUBLISH") {
            Packet::V3(gripway_proto::mqtt::v3::Packet::Publish(p)) => {
                (p.payload, p.dup, p.qos_pid)
            }
            Packet::V5(v5::Packet::Publish(p)) => (p.payload, p.dup, p.qos_pid),
            _ => continue,
        };
        let pid = q.pid().expect("QoS 1").value();
        return (payload.to_vec(), dup, pid);
    }
}

#[tokio::test]
async fn a_topic_too_long_for_a_channel_is_refused_and_an_error_disconnect_sends_the_will() {
    let gw = gripway(&[]);
    let mut c = connected(&gw, Version::V5, "long").await;
    let topic = "t".repeat(2000);
    c.publish(&topic, b"x", 1).await;
    match c.next().await.expect("PUBACK") {
        Packet::V5(v5::Packet::Puback(a)) => assert_eq!(a.reason_code as u8, 0x90),
        other => panic!("{other:?}"),
    }
    assert_eq!(c.subscribe(&[(topic.as_str(), 0)]).await, vec![0x8F]);
    // MQTT 5: a DISCONNECT with an error reason keeps the will
    let mut sse = sse_client(&gw, "/test/sse").await;
    wait_subscriptions(&gw, 1.0).await;
    let mut o = ConnectOptions::new(Version::V5, "errs");
    o.will = Some(("test".into(), b"will after 0x80".to_vec(), 0));
    let (mut d, _) = MqttClient::connect(mqtt_addr(&gw), &o).await;
    d.disconnect(0x80).await;
    sse.read_until(b"data: will after 0x80\n\n", WAIT).await;
}

#[tokio::test]
async fn a_second_connect_with_the_same_client_id_takes_the_session_over() {
    let gw = gripway(&[]);
    let addr = mqtt_addr(&gw);
    let mut o = ConnectOptions::new(Version::V5, "twin");
    o.clean = false;
    o.session_expiry = Some(600);
    o.will = Some(("test".into(), b"twin's will".to_vec(), 0));
    let (mut first, _) = MqttClient::connect(addr, &o).await;
    assert_eq!(first.subscribe(&[("takeover", 1)]).await, vec![1]);
    let mut sse = sse_client(&gw, "/test/sse").await;
    let (mut second, ack) = MqttClient::connect(addr, &o).await;
    assert_eq!(connack_code(&ack), 0);
    assert!(
        session_present(&ack),
        "the session moved to the new connection"
    );
    // the first is told 0x8E (session taken over) and closed
    let mut seen = Vec::new();
    assert!(first.closed_within(WAIT, &mut seen).await);
    assert!(
        matches!(seen.last(), Some(Packet::V5(v5::Packet::Disconnect(d))) if d.reason_code as u8 == 0x8E),
        "{seen:?}"
    );
    // the second has the subscription, without subscribing again
    let body = item("takeover", "t1", "to the twin");
    assert_eq!(publish(&gw.publish_url(), &body).await.0, 200);
    assert_eq!(second.next_publish(true).await.1, b"to the twin");
    // and no will went out for the first
    let quiet = sse.read_for(Duration::from_millis(300)).await;
    assert!(
        !String::from_utf8_lossy(&quiet).contains("twin's will"),
        "a taken-over connection's will was published"
    );
}

/// MQTT 5 subscription options: No Local keeps what a client id published from its own
/// subscription (others still get it), and Retain As Published keeps the publisher's
/// retain flag on live deliveries, which otherwise go out without it.
#[tokio::test]
async fn no_local_and_retain_as_published_shape_what_a_v5_subscription_gets() {
    use gripway_proto::mqtt::v5::{RetainHandling, SubscriptionOptions};
    use gripway_proto::mqtt::QoS;
    let gw = gripway(&[]);
    let opts = |no_local: bool, retain_as_published: bool| SubscriptionOptions {
        max_qos: QoS::Level0,
        no_local,
        retain_as_published,
        retain_handling: RetainHandling::DoNotSend,
    };
    let mut me = connected(&gw, Version::V5, "me").await;
    let mut other = connected(&gw, Version::V5, "other").await;
    assert_eq!(me.subscribe_with("room", opts(true, false)).await, 0);
    assert_eq!(other.subscribe_with("room", opts(false, false)).await, 0);
    let mut keeps = connected(&gw, Version::V5, "keeps").await;
    assert_eq!(keeps.subscribe_with("lamp", opts(false, true)).await, 0);
    let mut plain = connected(&gw, Version::V3, "plain").await;
    assert_eq!(plain.subscribe(&[("lamp", 0)]).await, [0]);
    wait_subscriptions(&gw, 4.0).await;

    me.publish("room", b"mine", 0).await;
    assert_eq!(next_retain(&mut other).await.0, b"mine");
    other.publish("room", b"theirs", 0).await;
    assert_eq!(next_retain(&mut other).await.0, b"theirs");
    // the first thing "me" gets is the other's message, not its own
    assert_eq!(next_retain(&mut me).await.0, b"theirs");

    let retained = {
        let mut p = v5::Publish::new(
            gripway_proto::mqtt::QosPid::Level0,
            gripway_proto::mqtt::TopicName::try_from("lamp").unwrap(),
            bytes::Bytes::from_static(b"on"),
        );
        p.retain = true;
        v5::Packet::Publish(p).encode().unwrap().as_ref().to_vec()
    };
    me.send_raw(&retained).await;
    assert_eq!(next_retain(&mut keeps).await, (b"on".to_vec(), true));
    assert_eq!(next_retain(&mut plain).await, (b"on".to_vec(), false));
}

/// MQTT 5 will delay: with a session that outlives the connection, a lost device's will
/// waits for its delay, and a device that comes back within it sends none at all.
#[tokio::test]
async fn a_delayed_will_waits_and_a_device_back_in_time_sends_none() {
    let gw = gripway(&[]);
    let mut sse = sse_client(&gw, "/test/sse").await;
    wait_subscriptions(&gw, 1.0).await;
    let will = |id: &str, payload: &[u8]| {
        let mut o = ConnectOptions::new(Version::V5, id);
        o.will = Some(("test".into(), payload.to_vec(), 0));
        o.will_delay = Some(1);
        o.session_expiry = Some(60);
        o
    };
    // comes back within the delay: no will
    let (c, _) = MqttClient::connect(mqtt_addr(&gw), &will("returns", b"never")).await;
    drop(c);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (back, _) = MqttClient::connect(mqtt_addr(&gw), &will("returns", b"never")).await;
    // gone for good: the will, after the delay
    let (c, _) = MqttClient::connect(mqtt_addr(&gw), &will("leaves", b"late")).await;
    let lost = std::time::Instant::now();
    drop(c);
    let got = sse.read_until(b"data: late\n\n", WAIT).await;
    assert!(
        lost.elapsed() >= Duration::from_millis(900),
        "the will waited for its delay: {:?}",
        lost.elapsed()
    );
    assert!(
        !String::from_utf8_lossy(&got).contains("never"),
        "a device back within the delay sent its will"
    );
    drop(back);
}

/// An MQTT 5 will's properties (content type, user properties, ...) go out with it, as
/// those of a publish do.
#[tokio::test]
async fn a_v5_will_keeps_its_properties() {
    let gw = gripway(&[]);
    let mut watcher = connected(&gw, Version::V5, "watcher").await;
    assert_eq!(watcher.subscribe(&[("status", 0)]).await, [0]);
    wait_subscriptions(&gw, 1.0).await;
    let mut o = ConnectOptions::new(Version::V5, "lost");
    o.will = Some(("status".into(), b"offline".to_vec(), 0));
    o.will_properties = Some(v5::WillProperties {
        content_type: Some("text/plain".into()),
        user_properties: vec![v5::UserProperty {
            name: "device".into(),
            value: "lost".into(),
        }],
        ..v5::WillProperties::default()
    });
    let (c, _) = MqttClient::connect(mqtt_addr(&gw), &o).await;
    drop(c);
    loop {
        match watcher.next().await.expect("the will") {
            Packet::V5(v5::Packet::Publish(p)) => {
                assert_eq!(&p.payload[..], b"offline");
                assert_eq!(p.properties.content_type.as_deref(), Some("text/plain"));
                let user: Vec<(String, String)> = p
                    .properties
                    .user_properties
                    .iter()
                    .map(|u| (u.name.to_string(), u.value.to_string()))
                    .collect();
                assert_eq!(user, [("device".to_owned(), "lost".to_owned())]);
                break;
            }
            _ => continue,
        }
    }
}
