//! Clients for tests: [`RawClient`] writes exact bytes and reads exact bytes over TCP, or
//! over any other byte stream (TLS: [`crate::TlsClient`]), for wire-level assertions: chunk
//! framing, headers, status lines; and [`publish`] posts to a publish API.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::WAIT;

/// A client over TCP that keeps everything it has read.
pub type RawClient = ByteClient<TcpStream>;

/// A client over any byte stream that keeps everything it has read ([`RawClient`] over TCP,
/// [`crate::TlsClient`] over TLS).
pub struct ByteClient<S> {
    pub(crate) sock: S,
    /// Bytes read and not yet consumed by `read_until`.
    pub buf: Vec<u8>,
}

impl RawClient {
    /// Connects (bounded by [`WAIT`]).
    pub async fn connect(addr: SocketAddr) -> RawClient {
        let sock = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .expect("connect within the wait")
            .expect("connect");
        ByteClient {
            sock,
            buf: Vec::new(),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> ByteClient<S> {
    /// A client on a stream connected some other way.
    pub fn from_stream(sock: S) -> ByteClient<S> {
        ByteClient {
            sock,
            buf: Vec::new(),
        }
    }

    /// The stream (to reach the socket under it, or a TLS session's parameters).
    pub fn stream(&mut self) -> &mut S {
        &mut self.sock
    }

    /// Sends raw bytes (flushed: a TLS stream seals them into records first).
    pub async fn send(&mut self, bytes: &[u8]) {
        self.sock.write_all(bytes).await.expect("write to server");
        self.sock.flush().await.expect("flush to server");
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
            // the tail of what arrived: a large body would drown the message
            let shown = |buf: &[u8]| {
                String::from_utf8_lossy(&buf[buf.len().saturating_sub(2000)..]).into_owned()
            };
            match tokio::time::timeout(left, self.sock.read(&mut chunk)).await {
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
            match tokio::time::timeout(left, self.sock.read(&mut chunk)).await {
                Ok(Ok(0)) => panic!("connection closed after {} of {n} bytes", self.buf.len()),
                Ok(Ok(got)) => self.buf.extend_from_slice(&chunk[..got]),
                Ok(Err(e)) => panic!("read error {e} after {} of {n} bytes", self.buf.len()),
                Err(_) => panic!("only {} of {n} bytes within {within:?}", self.buf.len()),
            }
        }
        let rest = self.buf.split_off(n);
        std::mem::replace(&mut self.buf, rest)
    }

    /// Reads until the server closes the connection (bounded by `within`).
    pub async fn read_to_end(&mut self, within: Duration) -> Vec<u8> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut chunk = [0u8; 16384];
            match tokio::time::timeout(left, self.sock.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return std::mem::take(&mut self.buf),
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => panic!(
                    "connection still open after {within:?}; got {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
            }
        }
    }

    /// True if the server closes the connection (EOF, a TLS `close_notify`, or an error)
    /// within `within`.
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut chunk = [0u8; 16384];
            match tokio::time::timeout(left, self.sock.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => return false,
            }
        }
    }

    /// Waits `quiet` and returns whatever arrived meanwhile (for "nothing was sent" checks).
    pub async fn read_for(&mut self, quiet: Duration) -> Vec<u8> {
        let deadline = Instant::now() + quiet;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return std::mem::take(&mut self.buf);
            }
            let mut chunk = [0u8; 16384];
            match tokio::time::timeout(left, self.sock.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => self.buf.extend_from_slice(&chunk[..n]),
                Ok(_) => return std::mem::take(&mut self.buf),
                Err(_) => return std::mem::take(&mut self.buf),
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

/// Posts `body` to a publish API; returns status and body.
pub async fn publish(url: &str, body: &str) -> (u16, String) {
    publish_with(url, body, &[]).await
}

/// Posts `body` with extra headers (`("Authorization", "Bearer x")`).
pub async fn publish_with(url: &str, body: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let (addr, path) = split_url(url);
    let mut c = RawClient::connect(addr).await;
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    c.send(req.as_bytes()).await;
    let all = c.read_to_end(WAIT).await;
    let text = String::from_utf8_lossy(&all).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn split_url(url: &str) -> (SocketAddr, String) {
    let rest = url.strip_prefix("http://").expect("http:// URL");
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    (
        authority.parse().expect("IP:PORT authority"),
        path.to_string(),
    )
}
