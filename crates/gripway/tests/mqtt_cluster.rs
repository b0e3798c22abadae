//! MQTT in a cluster (real `nats-server`, two nodes with the demo origin): a device on one
//! node and a browser on the other share a channel, both ways.

mod cluster_support;
mod common;

use std::time::{Duration, Instant};

use cluster_support::*;
use common::mqtt::{connack_code, ConnectOptions, MqttClient};
use gripway_proto::mqtt::Version;

#[tokio::test]
async fn a_device_on_one_node_and_a_browser_on_another_share_a_channel() {
    let _one = ONE_AT_A_TIME.lock().await;
    let nats = NatsServer::start();
    let url = nats.client_url();
    let a = gripway(&["--cluster", &url]);
    let b = gripway(&["--cluster", &url]);
    let mut sse = RawClient::connect(b.addr).await;
    sse.get("/test/sse", &[]).await;
    sse.read_head().await;
    let a_mqtt = a.mqtt_addr.expect("MQTT on A");
    let (mut listener, ack) =
        MqttClient::connect(a_mqtt, &ConnectOptions::new(Version::V5, "listener")).await;
    assert_eq!(connack_code(&ack), 0);
    assert_eq!(listener.subscribe(&[("test", 1)]).await, vec![1]);
    let (mut device, ack) =
        MqttClient::connect(a_mqtt, &ConnectOptions::new(Version::V3, "device")).await;
    assert_eq!(connack_code(&ack), 0);
    // until B's interest in the channel reaches the cluster, probes may not arrive there
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut n = 0;
    loop {
        assert!(Instant::now() < deadline, "B never got a probe from A");
        device
            .publish("test", format!("probe {n}").as_bytes(), 1)
            .await;
        n += 1;
        let seen = sse.read_for(Duration::from_millis(300)).await;
        if String::from_utf8_lossy(&seen).contains("data: probe") {
            break;
        }
    }
    // a device publish on A reaches the SSE client on B
    device.publish("test", b"from the device on A", 1).await;
    sse.read_until(b"data: from the device on A\n\n", WAIT)
        .await;
    // what the publish API takes on B reaches the MQTT subscriber on A
    let body = serde_json::json!({"items": [{"channel": "test", "id": "b-1",
        "formats": {"ws-message": {"content": "from the API on B"}}}]})
    .to_string();
    assert_eq!(publish(&b.publish_url(), &body).await.0, 200);
    loop {
        let (_, payload, _, _) = listener.next_publish(true).await;
        if payload == b"from the API on B" {
            break;
        }
    }
}
