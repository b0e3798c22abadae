//! MQTT-over-HTTP against the real binary: the README's example origin
//! (`examples/mqtt_origin.py`, run with python3) decides who may connect, subscribe and
//! publish, and devices (mosquitto's clients and a byte-level client) see its decisions as
//! reason codes; its answers are reused for as long as its `Cache-Control` says.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::mqtt::{connack_code, ConnectOptions, MqttClient};
use common::*;
use gripway_proto::mqtt::{v5, Packet, Version};

const KEY: &str = "origin-test-key";

/// The example origin on a free port; killed on drop.
struct ExampleOrigin {
    child: Child,
    addr: SocketAddr,
}

impl Drop for ExampleOrigin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ExampleOrigin {
    async fn start() -> ExampleOrigin {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/mqtt_origin.py");
        let mut child = Command::new("python3")
            .args([script, &port.to_string(), KEY])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return ExampleOrigin { child, addr };
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the example origin did not start");
    }

    /// Requests the origin has had.
    async fn count(&self) -> u64 {
        let mut c = RawClient::connect(self.addr).await;
        c.get("/count", &["Connection: close"]).await;
        let all = c.read_to_end(WAIT).await;
        let text = String::from_utf8_lossy(&all);
        text.rsplit("\r\n\r\n")
            .next()
            .and_then(|b| b.trim().parse().ok())
            .expect("a count")
    }

    fn gripway(&self, key: &str) -> Gripway {
        let route = format!("*,sig_key={key} {}", self.addr);
        gripway(&["--route", &route])
    }
}

fn login(version: Version, id: &str, user: &str, password: &str) -> ConnectOptions {
    let mut o = ConnectOptions::new(version, id);
    o.login = Some((user.into(), password.as_bytes().to_vec()));
    o
}

async fn as_alice(gw: &Gripway, version: Version, id: &str) -> MqttClient {
    let (c, ack) = MqttClient::connect(
        gw.mqtt_addr.unwrap(),
        &login(version, id, "alice", "s3cret"),
    )
    .await;
    assert_eq!(connack_code(&ack), 0, "{ack:?}");
    c
}

#[tokio::test]
async fn the_origin_refuses_a_bad_password_with_the_versions_reason_code() {
    let origin = ExampleOrigin::start().await;
    let gw = origin.gripway(KEY);
    let addr = gw.mqtt_addr.unwrap();
    let (mut c, ack) = MqttClient::connect(addr, &login(Version::V3, "d1", "alice", "nope")).await;
    // 3.1.1: 4, bad user name or password
    assert_eq!(connack_code(&ack), 4);
    assert!(c.closed_within(WAIT, &mut Vec::new()).await);
    let (_, ack) = MqttClient::connect(addr, &login(Version::V5, "d2", "alice", "nope")).await;
    assert_eq!(connack_code(&ack), 0x86);
    // and mosquitto_pub, a real client, is refused too
    let out = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &addr.port().to_string()])
        .args(["-u", "alice", "-P", "wrong", "-t", "public/x", "-m", "hi"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(
        err.contains("password") || err.contains("not authorised"),
        "{err}"
    );
    // the right password is let in
    as_alice(&gw, Version::V5, "d3").await;
}

#[tokio::test]
async fn a_wrong_grip_sig_key_makes_the_origin_unavailable() {
    let origin = ExampleOrigin::start().await;
    let gw = origin.gripway("another-key");
    let (_, ack) = MqttClient::connect(
        gw.mqtt_addr.unwrap(),
        &login(Version::V5, "d", "alice", "s3cret"),
    )
    .await;
    // the origin answered 401: server unavailable (v5 0x88)
    assert_eq!(connack_code(&ack), 0x88);
}

#[tokio::test]
async fn the_origin_maps_and_denies_filters_and_devices_share_the_mapped_channel() {
    let origin = ExampleOrigin::start().await;
    let gw = origin.gripway(KEY);
    let mut sub5 = as_alice(&gw, Version::V5, "sub5").await;
    let codes = sub5
        .subscribe(&[
            ("devices/alice/#", 1),
            ("devices/bob/#", 1),
            ("public/news", 0),
        ])
        .await;
    // devices/alice/# → channel devices/alice; bob's is not alice's: 0x87 not authorized
    assert_eq!(codes, vec![1, 0x87, 0]);
    let mut sub3 = as_alice(&gw, Version::V3, "sub3").await;
    assert_eq!(
        sub3.subscribe(&[("devices/bob/#", 0), ("devices/alice/#", 0)])
            .await,
        vec![0x80, 0]
    );
    // an SSE client of the mapped channel, through the publish API's channel name
    let mut publisher = as_alice(&gw, Version::V5, "pub").await;
    publisher.publish("devices/alice/temp", b"21.5", 1).await;
    match publisher.next().await.expect("PUBACK") {
        Packet::V5(v5::Packet::Puback(a)) => assert_eq!(a.reason_code as u8, 0),
        other => panic!("{other:?}"),
    }
    let (topic, payload, qos, _) = sub5.next_publish(true).await;
    assert_eq!(
        (topic.as_str(), payload.as_slice(), qos),
        ("devices/alice/temp", &b"21.5"[..], 1)
    );
    let (topic, payload, _, _) = sub3.next_publish(true).await;
    assert_eq!(
        (topic.as_str(), payload.as_slice()),
        ("devices/alice/temp", &b"21.5"[..])
    );
    // what the publish API sends to the channel reaches them with the channel as topic
    let body = serde_json::json!({"items": [{"channel": "devices/alice", "id": "x1",
        "formats": {"ws-message": {"content": "from the api"}}}]})
    .to_string();
    assert_eq!(publish(&gw.publish_url(), &body).await.0, 200);
    let (topic, payload, _, _) = sub5.next_publish(true).await;
    assert_eq!(
        (topic.as_str(), payload.as_slice()),
        ("devices/alice", &b"from the api"[..])
    );
    // a publish the origin denies: v5 PUBACK 0x87, nothing delivered
    publisher.publish("devices/bob/temp", b"no", 1).await;
    match publisher.next().await.expect("PUBACK") {
        Packet::V5(v5::Packet::Puback(a)) => assert_eq!(a.reason_code as u8, 0x87),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn the_origin_replies_to_the_device_alone_and_cached_answers_spare_it() {
    let origin = ExampleOrigin::start().await;
    let gw = origin.gripway(KEY);
    let mut c = as_alice(&gw, Version::V3, "rpc").await;
    assert_eq!(c.subscribe(&[("public/a", 0)]).await, vec![0]);
    c.publish("rpc/ping", b"?", 0).await;
    let (topic, payload, qos, _) = c.next_publish(false).await;
    assert_eq!(
        (topic.as_str(), payload.as_slice(), qos),
        ("rpc/pong", &b"pong"[..], 0)
    );
    // publishes to one topic: the first asks the origin, the others reuse its answer
    let before = origin.count().await;
    for i in 0..5 {
        c.publish("public/a", format!("n{i}").as_bytes(), 1).await;
    }
    for i in 0..5 {
        let (_, payload, _, _) = c.next_publish(false).await;
        assert_eq!(payload, format!("n{i}").into_bytes());
    }
    assert_eq!(origin.count().await - before, 1, "answers were not reused");
    // the reply is never cached: each ping asks again
    let before = origin.count().await;
    c.publish("rpc/ping", b"?", 0).await;
    c.next_publish(false).await;
    c.publish("rpc/ping", b"?", 0).await;
    c.next_publish(false).await;
    assert_eq!(origin.count().await - before, 2);
}

/// The origin's `session-expiry` caps how long a device's session outlives its connection:
/// an MQTT 5 device asking for more is told the cap in CONNACK, and with 0 nothing is kept.
#[tokio::test]
async fn the_origin_s_session_expiry_caps_the_session() {
    let origin = Origin::start(|r: &OriginRequest| {
        let body = String::from_utf8_lossy(&r.body).into_owned();
        let answer = if body.contains("\"connect\"") {
            let expiry = if body.contains("\"brief\"") { 0 } else { 30 };
            serde_json::json!({"results": [{"allow": true, "session-expiry": expiry}]})
        } else if body.contains("\"subscribe\"") {
            serde_json::json!({"results": [{"filters": [{"allow": true}]}]})
        } else {
            serde_json::json!({"results": [{}]})
        };
        Reply::ok()
            .header("Content-Type", "application/mqtt-events+json")
            .body(answer.to_string())
    })
    .await;
    let gw = gripway(&["--route", &format!("* {}", origin.target())]);
    let asks = |id: &str, clean: bool| {
        let mut o = ConnectOptions::new(Version::V5, id);
        o.session_expiry = Some(3600);
        o.clean = clean;
        o
    };
    let told = |ack: &Packet| match ack {
        Packet::V5(v5::Packet::Connack(c)) => c.properties.session_expiry_interval,
        other => panic!("{other:?}"),
    };
    let addr = gw.mqtt_addr.expect("an MQTT listener");
    let (mut long, ack) = MqttClient::connect(addr, &asks("long", true)).await;
    assert_eq!(told(&ack), Some(30));
    let (mut brief, ack) = MqttClient::connect(addr, &asks("brief", true)).await;
    assert_eq!(told(&ack), Some(0));
    assert_eq!(long.subscribe(&[("a", 1)]).await, [1]);
    assert_eq!(brief.subscribe(&[("a", 1)]).await, [1]);
    drop((long, brief));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_long, ack) = MqttClient::connect(addr, &asks("long", false)).await;
    assert!(common::mqtt::session_present(&ack), "kept for 30 s");
    let (_brief, ack) = MqttClient::connect(addr, &asks("brief", false)).await;
    assert!(
        !common::mqtt::session_present(&ack),
        "the origin allowed none"
    );
}

/// A publish answer's `formats` replace what SSE and WebSocket subscribers get from a device's
/// publish (devices still get its payload); formats that do not make an item are the origin's
/// fault: the device gets v5 PUBACK 0x80 and nothing is published.
#[tokio::test]
async fn the_origin_s_formats_shape_what_browsers_get_from_a_device() {
    let origin = Origin::start(|r: &OriginRequest| {
        if r.method == "GET" {
            return Reply::ok()
                .header("Content-Type", "text/event-stream")
                .header("Grip-Hold", "stream")
                .header("Grip-Channel", "readings")
                .body("ready\n");
        }
        let body = String::from_utf8_lossy(&r.body).into_owned();
        let result = if body.contains("\"connect\"") {
            serde_json::json!({"allow": true})
        } else if body.contains("\"subscribe\"") {
            serde_json::json!({"filters": [{"allow": true}]})
        } else if body.contains("\"broken\"") {
            serde_json::json!({"allow": true, "channel": "readings",
                "formats": {"http-stream": {"content": 5}}})
        } else if body.contains("\"publish\"") {
            serde_json::json!({"allow": true,
                "formats": {"http-stream": {"content": "event: reading\ndata: shaped\n\n"}}})
        } else {
            serde_json::json!({})
        };
        Reply::ok()
            .header("Content-Type", "application/mqtt-events+json")
            .body(serde_json::json!({ "results": [result] }).to_string())
    })
    .await;
    let gw = gripway(&["--route", &format!("* {}", origin.target())]);
    let addr = gw.mqtt_addr.expect("an MQTT listener");
    let mut sse = RawClient::connect(gw.addr).await;
    sse.get("/readings", &[]).await;
    sse.read_until(b"ready\n", WAIT).await;
    let (mut sub, _) = MqttClient::connect(addr, &ConnectOptions::new(Version::V5, "sub")).await;
    assert_eq!(sub.subscribe(&[("readings", 0)]).await, [0]);
    let (mut dev, _) = MqttClient::connect(addr, &ConnectOptions::new(Version::V5, "dev")).await;
    let puback = |p: Packet| match p {
        Packet::V5(v5::Packet::Puback(a)) => a.reason_code as u8,
        other => panic!("{other:?}"),
    };

    dev.publish("readings", b"raw", 1).await;
    assert_eq!(puback(dev.next().await.expect("PUBACK")), 0);
    sse.read_until(b"event: reading\ndata: shaped\n\n", WAIT)
        .await;
    let (topic, payload, _, _) = sub.next_publish(false).await;
    assert_eq!(
        (topic.as_str(), payload.as_slice()),
        ("readings", &b"raw"[..])
    );

    dev.publish("broken", b"lost", 1).await;
    assert_eq!(puback(dev.next().await.expect("PUBACK")), 0x80);
    let bad = gw
        .metric("gripway_errors_total{source=\"origin\",reason=\"mqtt-origin-bad-answer\"}")
        .await;
    assert_eq!(bad, Some(1.0));
    // nothing of it reached the channel: the next item there is the next good one
    dev.publish("readings", b"after", 1).await;
    assert_eq!(puback(dev.next().await.expect("PUBACK")), 0);
    let (_, payload, _, _) = sub.next_publish(false).await;
    assert_eq!(payload, b"after");
}

/// Devices leaving in a burst larger than the notices that may be out at once (256) each get
/// their `disconnect` notice to a slow origin: the rest wait their turn instead of being
/// skipped, so an origin that tracks presence from them sees every device go.
#[tokio::test]
async fn every_device_of_a_burst_leaving_is_announced_to_a_slow_origin() {
    const DEVICES: usize = 320;
    let origin = Origin::start(|r: &OriginRequest| {
        let body = String::from_utf8_lossy(&r.body).into_owned();
        let (answer, delay) = if body.contains("\"connect\"") {
            (serde_json::json!({"results": [{"allow": true}]}), 0)
        } else {
            // the notices: slow, so that the first 256 are still out when the rest come
            (serde_json::json!({"results": [{}]}), 600)
        };
        Reply::ok()
            .header("Content-Type", "application/mqtt-events+json")
            .body(answer.to_string())
            .delay(Duration::from_millis(delay))
    })
    .await;
    let gw = gripway(&["--route", &format!("* {}", origin.target())]);
    let addr = gw.mqtt_addr.expect("an MQTT listener");
    let mut devices = Vec::with_capacity(DEVICES);
    for i in 0..DEVICES {
        let (c, ack) =
            MqttClient::connect(addr, &ConnectOptions::new(Version::V3, &format!("d{i}"))).await;
        assert_eq!(connack_code(&ack), 0, "{ack:?}");
        devices.push(c);
    }
    drop(devices);
    let told = || {
        origin
            .requests()
            .iter()
            .filter(|r| String::from_utf8_lossy(&r.body).contains("\"disconnect\""))
            .count()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while told() < DEVICES && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(told(), DEVICES, "one disconnect notice per device");
    let skipped = gw
        .metric(
            "gripway_errors_total{source=\"internal\",reason=\"mqtt-origin-notification-skipped\"}",
        )
        .await
        .unwrap_or(0.0);
    assert_eq!(skipped, 0.0);
}
