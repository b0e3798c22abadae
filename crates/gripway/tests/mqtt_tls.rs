//! MQTT over TLS (`--mqtt-tls-port`) against the real binary: Debian's `mosquitto_sub` and
//! `mosquitto_pub` trusting a test CA, rustls clients (through test-support) for SNI and
//! ALPN, `openssl s_client -alpn mqtt`, a plaintext client on the TLS port, a CONNECT sent
//! with the last handshake flight, a certificate added while running, the demo's self-signed
//! certificate shared with HTTPS, a TLS subscriber that stops reading, and the drain. The
//! demo origin allows everything, with channel = topic.

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::mqtt::{connack_code, ConnectOptions, MqttClient};
use common::mqtt_setup::*;
use common::tls::CertsDir;
use common::*;
use gripway_proto::mqtt::{v5, Packet, Version};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

const HANDSHAKE_FAILED: &str =
    "gripway_errors_total{source=\"client\",reason=\"tls-handshake-failed\"}";

/// Gripway with one MQTT-over-TLS listener on `certs` (no HTTPS listener), plus `extra`.
fn gripway_mqtts(certs: &CertsDir, extra: &[&str]) -> Gripway {
    let dir = certs.path();
    let mut args = vec![
        "--mqtt-tls-port",
        "127.0.0.1:0",
        "--tls-certs-dir",
        dir.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let gw = gripway(&args);
    assert!(gw.mqtt_tls_addr.is_some(), "logged: {}", gw.log());
    assert_eq!(gw.tls_addr, None, "MQTT over TLS needs no HTTPS listener");
    gw
}

fn mqtts_addr(gw: &Gripway) -> SocketAddr {
    gw.mqtt_tls_addr.expect("an MQTT-over-TLS listener")
}

/// `mosquitto_sub` or `mosquitto_pub` over TLS to 127.0.0.1 (the `default` certificate
/// covers that address), trusting `certs`' CA.
fn mosquitto(program: &str, gw: &Gripway, certs: &CertsDir, args: &[&str]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(["-h", "127.0.0.1", "-p", &mqtts_addr(gw).port().to_string()])
        .arg("--cafile")
        .arg(certs.ca_path())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn mosquitto_sub(gw: &Gripway, certs: &CertsDir, args: &[&str]) -> Child {
    mosquitto("mosquitto_sub", gw, certs, &[&["-W", "20"], args].concat())
        .spawn()
        .expect("mosquitto_sub runs (apt-get install mosquitto-clients)")
}

/// The leaf certificate of `<stem>.crt`, DER.
fn file_cert(certs: &CertsDir, stem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(certs.path().join(format!("{stem}.crt"))).expect("a PEM")
}

/// A v5 device over TLS asking for `name` and offering `alpn`, after its CONNACK.
async fn tls_device(
    gw: &Gripway,
    certs: &CertsDir,
    name: &str,
    alpn: &[&[u8]],
    id: &str,
) -> MqttClient {
    let tls = tls_connect(mqtts_addr(gw), certs.client_config(alpn), name).await;
    let (c, ack) = MqttClient::connect_over(tls, &ConnectOptions::new(Version::V5, id)).await;
    assert_eq!(connack_code(&ack), 0, "{ack:?}");
    c
}

#[tokio::test]
async fn mosquitto_clients_over_tls_get_what_the_publish_api_sends_and_reach_sse() {
    let certs = CertsDir::new(&["default"]);
    let gw = gripway_mqtts(&certs, &[]);
    // 3.1.1 offering no ALPN, 5.0 offering "mqtt"
    let sub3 = mosquitto_sub(&gw, &certs, &["-t", "test", "-C", "2", "-q", "1"]);
    let sub5 = mosquitto_sub(
        &gw,
        &certs,
        &[
            "-t",
            "test",
            "-C",
            "2",
            "-V",
            "mqttv5",
            "--tls-alpn",
            "mqtt",
        ],
    );
    wait_subscriptions(&gw, 2.0).await;
    for (id, text) in [("1", "hello over TLS"), ("2", "and again")] {
        assert_eq!(
            publish(&gw.publish_url(), &item("test", id, text)).await.0,
            200
        );
    }
    let want = "hello over TLS\nand again\n";
    assert_eq!(output_of(sub3), want);
    assert_eq!(output_of(sub5), want);

    // a device's publish over TLS reaches an SSE client of the channel
    let mut sse = sse_client(&gw, "/test/sse").await;
    wait_subscriptions(&gw, 1.0).await;
    for (version, qos) in [("mqttv311", "0"), ("mqttv5", "1")] {
        let text = format!("from a {version} device at qos {qos}");
        let out = mosquitto("mosquitto_pub", &gw, &certs, &["-t", "test", "-q", qos])
            .args(["-V", version, "-m", &text])
            .output()
            .expect("mosquitto_pub runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        sse.read_until(format!("data: {text}\n\n").as_bytes(), WAIT)
            .await;
    }
}

#[tokio::test]
async fn sni_picks_the_certificate_and_alpn_mqtt_is_agreed() {
    let certs = CertsDir::new(&["a.example.com", "default"]);
    let gw = gripway_mqtts(&certs, &[]);
    let mut devices = Vec::new();
    for (name, stem, alpn) in [
        ("a.example.com", "a.example.com", &[&b"mqtt"[..]][..]),
        ("localhost", "default", &[]),
    ] {
        let tls = tls_connect(mqtts_addr(&gw), certs.client_config(alpn), name).await;
        let session = tls.get_ref().1;
        assert_eq!(
            session.peer_certificates().unwrap()[0],
            file_cert(&certs, stem),
            "{name} gets {stem}.crt"
        );
        assert_eq!(session.alpn_protocol(), alpn.first().copied(), "{name}");
        let (mut c, ack) =
            MqttClient::connect_over(tls, &ConnectOptions::new(Version::V5, name)).await;
        assert_eq!(connack_code(&ack), 0);
        assert_eq!(c.subscribe(&[("test", 1)]).await, vec![1]);
        devices.push(c);
    }
    wait_subscriptions(&gw, 2.0).await;
    assert_eq!(
        publish(&gw.publish_url(), &item("test", "1", "to both"))
            .await
            .0,
        200
    );
    for c in &mut devices {
        let (topic, payload, qos, _) = c.next_publish(true).await;
        assert_eq!(
            (topic.as_str(), payload.as_slice(), qos),
            ("test", &b"to both"[..], 1)
        );
    }

    // openssl agrees "mqtt" too, and verifies the name's certificate
    let ca = certs.ca_path();
    let out = Command::new("timeout")
        .args(["10", "openssl", "s_client", "-connect"])
        .arg(mqtts_addr(&gw).to_string())
        .args([
            "-servername",
            "a.example.com",
            "-verify_hostname",
            "a.example.com",
        ])
        .args(["-alpn", "mqtt", "-CAfile"])
        .arg(ca)
        .stdin(Stdio::null())
        .output()
        .expect("openssl runs");
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.contains("ALPN protocol: mqtt"), "{out}");
    assert!(out.contains("Verify return code: 0 (ok)"), "{out}");

    // a client offering only HTTP's protocols is refused: this listener speaks MQTT
    let e = try_tls_connect(mqtts_addr(&gw), certs.client_config(&[b"h2"]), "localhost").await;
    assert!(e.is_err(), "h2 agreed on the MQTT listener");
}

#[tokio::test]
async fn a_certificate_added_while_running_is_served() {
    let certs = CertsDir::new(&["default"]);
    let gw = gripway_mqtts(&certs, &[]);
    let config = certs.client_config(&[]);
    let name = "late.example.com";
    assert!(try_tls_connect(mqtts_addr(&gw), config.clone(), name)
        .await
        .is_err());
    certs.add(name);
    let deadline = Instant::now() + Duration::from_secs(15);
    let tls = loop {
        if let Ok(tls) = try_tls_connect(mqtts_addr(&gw), config.clone(), name).await {
            break tls;
        }
        assert!(Instant::now() < deadline, "{name} was never served");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        tls.get_ref().1.peer_certificates().unwrap()[0],
        file_cert(&certs, name)
    );
    let (_, ack) = MqttClient::connect_over(tls, &ConnectOptions::new(Version::V3, "late")).await;
    assert_eq!(connack_code(&ack), 0);
}

#[tokio::test]
async fn a_plaintext_client_on_the_tls_port_is_refused_and_counted() {
    let certs = CertsDir::new(&["default"]);
    let gw = gripway_mqtts(&certs, &[]);
    // a 3.1.1 CONNECT (client id "x"), in the clear
    let connect = [
        0x10, 0x0D, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x3C, 0x00, 0x01, b'x',
    ];
    let mut c = RawClient::connect(mqtts_addr(&gw)).await;
    c.send(&connect).await;
    assert!(c.closed_within(WAIT).await, "closed");
    assert!(
        !c.buf.starts_with(&[0x20]),
        "a CONNACK in the clear: {:?}",
        c.buf
    );
    wait_metric_at_least(&gw, HANDSHAKE_FAILED, 1.0).await;
    // a real client without TLS fails likewise
    let out = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &mqtts_addr(&gw).port().to_string()])
        .args(["-t", "test", "-m", "in the clear"])
        .output()
        .expect("mosquitto_pub runs");
    assert!(!out.status.success(), "a plaintext publish was taken");
    wait_metric_at_least(&gw, HANDSHAKE_FAILED, 2.0).await;
    // devices over TLS are unaffected
    tls_device(&gw, &certs, "localhost", &[], "after").await;
}

#[tokio::test]
async fn a_connect_sent_with_the_last_handshake_flight_is_answered() {
    let certs = CertsDir::new(&["default"]);
    let gw = gripway_mqtts(&certs, &[]);
    let addr = mqtts_addr(&gw);
    let config = certs.client_config(&[b"mqtt"]);
    let got = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut conn = rustls::ClientConnection::new(config, name).unwrap();
        // written before the handshake ends: rustls sends it right behind the client's
        // Finished, in the same flight; then a PINGREQ
        conn.writer()
            .write_all(&[
                0x10, 0x0D, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x3C, 0x00, 0x01,
                b'x', 0xC0, 0x00,
            ])
            .unwrap();
        let mut sock = std::net::TcpStream::connect(addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut tls = rustls::Stream::new(&mut conn, &mut sock);
        // CONNACK (4 bytes) and PINGRESP (2)
        let mut got = [0u8; 6];
        tls.read_exact(&mut got).map(|_| got)
    })
    .await
    .unwrap();
    assert_eq!(
        got.expect("answered within 5 s"),
        [0x20, 0x02, 0x00, 0x00, 0xD0, 0x00]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_tls_subscriber_is_cut_off_and_others_keep_receiving() {
    let dir = TempDir::new("mqtts-slow");
    let conf = dir.write("gripway.toml", "[grip]\nsubscriber_queue_bytes = 65536\n");
    let certs = CertsDir::new(&["default"]);
    let gw = gripway_mqtts(&certs, &["--config", conf.to_str().unwrap()]);
    let mut slow = tls_device(&gw, &certs, "localhost", &[b"mqtt"], "slow").await;
    assert_eq!(slow.subscribe(&[("busy", 0)]).await, vec![0]);
    let mut fast = tls_device(&gw, &certs, "localhost", &[], "fast").await;
    assert_eq!(fast.subscribe(&[("busy", 0)]).await, vec![0]);
    wait_subscriptions(&gw, 2.0).await;

    // the slow one never reads; the fast one reads every item as it comes
    let payload = "z".repeat(30_000);
    let reader = tokio::spawn(async move {
        for i in 0..400 {
            let (_, got, _, _) = fast.next_publish(false).await;
            assert!(got.ends_with(format!("#{i}#").as_bytes()), "item {i}");
        }
        fast
    });
    for i in 0..400 {
        let body = item("busy", &i.to_string(), &format!("{payload}#{i}#"));
        assert_eq!(publish(&gw.publish_url(), &body).await.0, 200);
    }
    let mut fast = tokio::time::timeout(Duration::from_secs(60), reader)
        .await
        .expect("the fast device got all 400 items while the slow one stalled")
        .unwrap();
    wait_metric_at_least(
        &gw,
        "gripway_connection_drops_total{reason=\"slow-subscriber\"}",
        1.0,
    )
    .await;
    // what the slow one reads now ends: it was cut off
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while !slow
        .closed_within(Duration::from_millis(100), &mut seen)
        .await
    {
        seen.clear();
        assert!(
            Instant::now() < deadline,
            "the slow device was never cut off"
        );
    }
    // the fast one still gets what is published
    assert_eq!(
        publish(&gw.publish_url(), &item("busy", "last", "still here"))
            .await
            .0,
        200
    );
    assert_eq!(fast.next_publish(false).await.1, b"still here");
}

#[tokio::test]
async fn without_a_certs_dir_https_and_mqtt_share_the_demo_s_self_signed_certificate() {
    let tmp = TempDir::new("mqtts-selfsigned");
    let gw = Gripway::start_with_env(
        env!("CARGO_BIN_EXE_gripway"),
        &[
            "--tls-port",
            "127.0.0.1:0",
            "--mqtt-tls-port",
            "127.0.0.1:0",
        ],
        &[("TMPDIR", tmp.path().as_os_str())],
    );
    let pem = tmp.path().join("gripway-self-signed.pem");
    let demo = CertificateDer::from_pem_file(&pem).expect("the demo certificate is saved");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(demo.clone()).unwrap();
    let trusting = |alpn: &[u8]| {
        let mut c = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
        c.alpn_protocols = vec![alpn.to_vec()];
        std::sync::Arc::new(c)
    };
    let https = tls_connect(gw.tls_addr.unwrap(), trusting(b"http/1.1"), "localhost").await;
    let mqtts = tls_connect(mqtts_addr(&gw), trusting(b"mqtt"), "localhost").await;
    assert_eq!(https.get_ref().1.peer_certificates().unwrap()[0], demo);
    assert_eq!(mqtts.get_ref().1.peer_certificates().unwrap()[0], demo);

    // mosquitto_sub trusting the saved PEM
    let pem = pem.to_str().expect("a UTF-8 path");
    let args = ["--cafile", pem, "-t", "test", "-C", "1"];
    let sub = common::mqtt_setup::mosquitto_sub(mqtts_addr(&gw).port(), &args);
    wait_subscriptions(&gw, 1.0).await;
    assert_eq!(
        publish(&gw.publish_url(), &item("test", "1", "demo"))
            .await
            .0,
        200
    );
    assert_eq!(output_of(sub), "demo\n");
}

#[tokio::test]
async fn at_shutdown_a_v5_device_over_tls_is_told_the_server_is_going_away() {
    let certs = CertsDir::new(&["default"]);
    let gw = gripway_mqtts(&certs, &[]);
    let mut c = tls_device(&gw, &certs, "localhost", &[b"mqtt"], "drained").await;
    assert_eq!(c.subscribe(&[("test", 0)]).await, vec![0]);
    gw.terminate();
    let mut seen = Vec::new();
    assert!(c.closed_within(WAIT, &mut seen).await);
    assert!(
        matches!(seen.last(), Some(Packet::V5(v5::Packet::Disconnect(d))) if d.reason_code as u8 == 0x8B),
        "{seen:?}"
    );
}
