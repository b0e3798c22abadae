//! A client over TLS for tests: [`TlsClient`] is [`crate::RawClient`] with a rustls session
//! under it (exact bytes in, exact bytes out, every read bounded), and [`tls_connect`] gives
//! the bare TLS stream to anything that takes an `AsyncRead + AsyncWrite` (a WebSocket
//! client, say). The rustls configuration comes from [`crate::tls::CertsDir::client_config`]
//! (or [`crate::tls::TestCa::client_config`]), so the server's certificate is verified for
//! the name asked for, as a browser would.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::{ByteClient, WAIT};

/// Connects to `addr` and completes a TLS handshake asking for `name` (SNI when it is a DNS
/// name; an IP address sends none), both bounded by [`WAIT`]. Panics if either fails.
pub async fn tls_connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    name: &str,
) -> TlsStream<TcpStream> {
    try_tls_connect(addr, config, name)
        .await
        .unwrap_or_else(|e| panic!("TLS handshake with {addr} as {name:?}: {e}"))
}

/// [`tls_connect`], returning the handshake's error instead of panicking (for "this name is
/// refused" and "not yet reloaded" checks).
pub async fn try_tls_connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    name: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    let server_name = ServerName::try_from(name.to_string()).expect("a valid server name");
    let sock = tokio::time::timeout(WAIT, TcpStream::connect(addr))
        .await
        .expect("connect within the wait")?;
    let _ = sock.set_nodelay(true);
    tokio::time::timeout(
        WAIT,
        tokio_rustls::TlsConnector::from(config).connect(server_name, sock),
    )
    .await
    .expect("TLS handshake within the wait")
}

/// A TLS client that keeps everything it has read: [`ByteClient`] over a rustls stream.
pub type TlsClient = ByteClient<TlsStream<TcpStream>>;

impl ByteClient<TlsStream<TcpStream>> {
    /// Connects and completes the handshake (see [`tls_connect`]).
    pub async fn connect(
        addr: SocketAddr,
        config: Arc<rustls::ClientConfig>,
        name: &str,
    ) -> TlsClient {
        ByteClient::from_stream(tls_connect(addr, config, name).await)
    }

    /// The certificate the server presented (its leaf, DER).
    pub fn peer_certificate(&self) -> Vec<u8> {
        let (_, session) = self.sock.get_ref();
        session
            .peer_certificates()
            .and_then(|c| c.first())
            .expect("the server presented a certificate")
            .to_vec()
    }
}
