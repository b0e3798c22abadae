//! What the MQTT tests (plain and over TLS) share beside the byte-level client: the node's
//! MQTT address, `mosquitto_sub`, a connected device, an SSE client beside the devices, waiting for the node's metrics, reading what `mosquitto_sub`
//! printed, and a publish body.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use gripway_proto::mqtt::Version;
use gripway_test_support::mqtt::{connack_code, ConnectOptions, MqttClient};
use gripway_test_support::{Gripway, RawClient};

/// The node's MQTT listener.
pub fn mqtt_addr(gw: &Gripway) -> std::net::SocketAddr {
    gw.mqtt_addr.expect("an MQTT listener")
}

/// `mosquitto_sub` on `port`, printing each message on its own line.
pub fn mosquitto_sub(port: u16, args: &[&str]) -> Child {
    Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-W", "20"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mosquitto_sub runs (apt-get install mosquitto-clients)")
}

/// A device connected as `id` with default options, its CONNACK checked.
pub async fn connected(gw: &Gripway, version: Version, id: &str) -> MqttClient {
    let (c, ack) = MqttClient::connect(mqtt_addr(gw), &ConnectOptions::new(version, id)).await;
    assert_eq!(connack_code(&ack), 0, "{ack:?}");
    c
}

/// A client of `path` on `gw`'s client port (an SSE or streaming hold), its head read.
pub async fn sse_client(gw: &Gripway, path: &str) -> RawClient {
    let mut c = RawClient::connect(gw.addr).await;
    c.get(path, &[]).await;
    c.read_head().await;
    c
}

/// Waits (bounded) until the node counts exactly `n` subscriptions.
pub async fn wait_subscriptions(gw: &Gripway, n: f64) {
    for _ in 0..1000 {
        if gw.metric("gripway_subscriptions").await == Some(n) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("subscriptions never reached {n}");
}

/// Waits (bounded) until `sample` is at least `want`.
pub async fn wait_metric_at_least(gw: &Gripway, sample: &str, want: f64) {
    for _ in 0..1000 {
        if gw.metric(sample).await >= Some(want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{sample} never reached {want}");
}

/// `gripway_errors_total` for a client's fault with this reason (0 when never counted).
pub async fn error_count(gw: &Gripway, reason: &str) -> f64 {
    gw.metric(&format!(
        "gripway_errors_total{{source=\"client\",reason=\"{reason}\"}}"
    ))
    .await
    .unwrap_or(0.0)
}

/// What a finished `mosquitto_sub` printed; panics if it failed.
pub fn output_of(child: Child) -> String {
    let out = child.wait_with_output().expect("mosquitto_sub ends");
    assert!(
        out.status.success(),
        "mosquitto_sub failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// A publish body with one item of `ws-message` and `http-stream` (SSE) content.
pub fn item(channel: &str, id: &str, text: &str) -> String {
    serde_json::json!({"items": [{"channel": channel, "id": id, "formats": {
        "ws-message": {"content": text},
        "http-stream": {"content": format!("data: {text}\n\n")}}}]})
    .to_string()
}
