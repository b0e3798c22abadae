//! For tests only: the real `gripway` binary started on port 0 ([`Gripway`]), origins
//! written in the test on port 0 ([`Origin`]), and clients that talk to them over real
//! sockets ([`RawClient`] for byte-exact HTTP/1.1, [`publish`] for the publish API), and real
//! `nats-server` processes for cluster mode ([`NatsServer`], [`NatsCluster`]), and TLS
//! certificate directories signed by a test CA ([`tls::CertsDir`]) with a client that trusts
//! them ([`TlsClient`]), and a byte-level MQTT client ([`mqtt::MqttClient`]).
//!
//! Every wait is bounded: helpers take or imply a timeout and panic with what they saw when it
//! runs out, so a broken feature fails a test instead of hanging it. Everything started here
//! stops when its handle is dropped.

mod gripway;
pub mod mqtt;
mod nats;
mod origin;
mod ports;
mod raw;
mod tempdir;
pub mod tls;
mod tls_client;

pub use gripway::Gripway;
pub use nats::{nats_server_binary, NatsCluster, NatsServer};
pub use origin::{Origin, OriginRequest, Reply};
pub use raw::{publish, publish_with, ByteClient, RawClient};
pub use tempdir::TempDir;
pub use tls_client::{tls_connect, try_tls_connect, TlsClient};
// the TLS crates the helpers speak, for tests that name their types
pub use rustls;
pub use tokio_rustls;

/// The default bound on any single wait in a test.
pub const WAIT: std::time::Duration = std::time::Duration::from_secs(10);
