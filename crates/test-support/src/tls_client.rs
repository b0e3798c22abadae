//! A client over TLS for tests: [`TlsClient`] is [`crate::RawClient`] with a rustls session
//! under it (exact bytes in, exact bytes out, every read bounded), and [`tls_connect`] gives
//! the bare TLS stream to anything that takes an `AsyncRead + AsyncWrite` (a WebSocket
//! client, say). The rustls configuration comes from [`crate::tls::CertsDir::client_config`]
//! (or [`crate::tls::TestCa::client_config`]), so the server's certificate is verified for
//! the name asked for, as a browser would.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::WAIT;

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

/// A TLS client that keeps everything it has read.
pub struct TlsClient {
    stream: TlsStream<TcpStream>,
    /// Plaintext read and not yet consumed by `read_until`.
    pub buf: Vec<u8>,
}

impl TlsClient {
    /// Connects and completes the handshake (see [`tls_connect`]).
    pub async fn connect(
        addr: SocketAddr,
        config: Arc<rustls::ClientConfig>,
        name: &str,
    ) -> TlsClient {
        TlsClient {
            stream: tls_connect(addr, config, name).await,
            buf: Vec::new(),
        }
    }

    /// Wraps a stream connected some other way (a socket with its own options, say).
    pub fn from_stream(stream: TlsStream<TcpStream>) -> TlsClient {
        TlsClient {
            stream,
            buf: Vec::new(),
        }
    }

    /// The TLS stream (to reach the TCP socket under it, or the session's parameters).
    pub fn stream(&mut self) -> &mut TlsStream<TcpStream> {
        &mut self.stream
    }

    /// The certificate the server presented (its leaf, DER).
    pub fn peer_certificate(&self) -> Vec<u8> {
        let (_, session) = self.stream.get_ref();
        session
            .peer_certificates()
            .and_then(|c| c.first())
            .expect("the server presented a certificate")
            .to_vec()
    }

    /// Sends plaintext bytes (sealed and flushed).
    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write to server");
        self.stream.flush().await.expect("flush to server");
    }

    /// Sends `GET path` with the given extra header lines.
    pub async fn get(&mut self, path: &str, headers: &[&str]) {
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: example.com\r\n");
        for h in headers {
            req.push_str(h);
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        self.send(req.as_bytes()).await;
    }

    /// Reads until `needle` has arrived; returns everything up to and including it (and keeps
    /// the rest). Panics with what was read if it does not arrive within `within`.
    pub async fn read_until(&mut self, needle: &[u8], within: Duration) -> Vec<u8> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(i) = find(&self.buf, needle) {
                let rest = self.buf.split_off(i + needle.len());
                return std::mem::replace(&mut self.buf, rest);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let mut chunk = [0u8; 16384];
            let shown = |buf: &[u8]| {
                String::from_utf8_lossy(&buf[buf.len().saturating_sub(2000)..]).into_owned()
            };
            match tokio::time::timeout(left, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) => panic!(
                    "connection closed before {:?}; got (tail) {:?}",
                    String::from_utf8_lossy(needle),
                    shown(&self.buf)
                ),
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Ok(Err(e)) => panic!(
                    "read error {e} before {:?}; got (tail) {:?}",
                    String::from_utf8_lossy(needle),
                    shown(&self.buf)
                ),
                Err(_) => panic!(
                    "no {:?} within {within:?}; got (tail) {:?}",
                    String::from_utf8_lossy(needle),
                    shown(&self.buf)
                ),
            }
        }
    }

    /// Reads a whole HTTP/1.1 response head (through the blank line).
    pub async fn read_head(&mut self) -> String {
        String::from_utf8_lossy(&self.read_until(b"\r\n\r\n", WAIT).await).into_owned()
    }

    /// Reads exactly `n` more bytes (after what `buf` holds), bounded by `within`.
    pub async fn read_exact(&mut self, n: usize, within: Duration) -> Vec<u8> {
        let deadline = Instant::now() + within;
        while self.buf.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut chunk = [0u8; 16384];
            match tokio::time::timeout(left, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) => panic!("connection closed after {} of {n} bytes", self.buf.len()),
                Ok(Ok(got)) => self.buf.extend_from_slice(&chunk[..got]),
                Ok(Err(e)) => panic!("read error {e} after {} of {n} bytes", self.buf.len()),
                Err(_) => panic!("only {} of {n} bytes within {within:?}", self.buf.len()),
            }
        }
        let rest = self.buf.split_off(n);
        std::mem::replace(&mut self.buf, rest)
    }

    /// Waits `quiet` and returns whatever arrived meanwhile, with what `buf` held (for
    /// "nothing was sent" checks and polling reads).
    pub async fn read_for(&mut self, quiet: Duration) -> Vec<u8> {
        let deadline = Instant::now() + quiet;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return std::mem::take(&mut self.buf);
            }
            let mut chunk = [0u8; 16384];
            match tokio::time::timeout(left, self.stream.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => self.buf.extend_from_slice(&chunk[..n]),
                _ => return std::mem::take(&mut self.buf),
            }
        }
    }

    /// True if the server closes the connection (EOF, `close_notify` or an error) within
    /// `within`.
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut chunk = [0u8; 16384];
            match tokio::time::timeout(left, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => return false,
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}
