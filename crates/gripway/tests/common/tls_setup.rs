//! Shared by the TLS tests: gripway with a TLS listener on a test CA's certificate directory,
//! a client that trusts it, and the small helpers those tests all use.

use std::time::Duration;

use gripway_test_support::tls::CertsDir;
use gripway_test_support::*;

use super::{gripway, stream_item};

/// ALPN for HTTP/1.1 clients.
pub const H1: &[&[u8]] = &[b"http/1.1"];

/// Starts gripway with one TLS listener on certificates from `certs`, plus `extra` flags.
pub fn gripway_tls(certs: &CertsDir, extra: &[&str]) -> Gripway {
    let dir = certs.path();
    let mut args = vec![
        "--tls-port",
        "127.0.0.1:0",
        "--tls-certs-dir",
        dir.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let gw = gripway(&args);
    assert!(gw.tls_addr.is_some(), "the TLS listener is logged");
    gw
}

/// The (first) TLS listener's address.
pub fn tls_addr(gw: &Gripway) -> std::net::SocketAddr {
    gw.tls_addr.expect("a TLS listener")
}

/// A TLS client that trusts `certs`' CA, asking for `localhost`.
pub async fn tls_client(gw: &Gripway, certs: &CertsDir) -> TlsClient {
    TlsClient::connect(tls_addr(gw), certs.client_config(H1), "localhost").await
}

/// An origin's SSE hold on `channel`, opening with `welcome`.
pub fn sse_reply(channel: &str) -> Reply {
    Reply::ok()
        .header("Content-Type", "text/event-stream")
        .header("Grip-Hold", "stream")
        .header("Grip-Channel", channel)
        .body("event: open\ndata: welcome\n\n")
}

/// Waits (bounded) until the sample is at least `want`.
pub async fn wait_metric_at_least(gw: &Gripway, sample: &str, want: f64) {
    for _ in 0..500 {
        if gw.metric(sample).await >= Some(want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "{sample} never reached {want} (now {:?})",
        gw.metric(sample).await
    );
}

/// Publishes one SSE event `data: {text}` on `channel`.
pub async fn publish_event(gw: &Gripway, channel: &str, text: &str) {
    let body = stream_item(channel, &format!("event: message\ndata: {text}\n\n"));
    assert_eq!(publish(&gw.publish_url(), &body).await.0, 200);
}
