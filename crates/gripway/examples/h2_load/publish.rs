//! Publishing for the HTTP/2 load tool: items through the GRIP publish API on one keep-alive
//! HTTP/1.1 connection, paced, in fanbench's payload format; and the subscription probes.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::stream::Ctx;
use crate::{now_ns, Args};

/// One publish request.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(30);
/// Items per publish request at most.
const BATCH: u64 = 500;

/// A keep-alive HTTP/1.1 connection to the publish API.
pub(crate) struct Publisher {
    pub(crate) addr: String,
    pub(crate) path: String,
    pub(crate) sock: Option<TcpStream>,
    pub(crate) buf: Vec<u8>,
}

impl Publisher {
    pub(crate) fn new(url: &str) -> Result<Publisher, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or("--publish must be an http:// URL")?;
        let (addr, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        Ok(Publisher {
            addr: addr.to_string(),
            path: if path.is_empty() { "/" } else { path }.to_string(),
            sock: None,
            buf: Vec::new(),
        })
    }

    /// POSTs `body`; any failure drops the connection (the next request opens another).
    async fn post(&mut self, body: &str) -> Result<(), String> {
        let r = match timeout(PUBLISH_TIMEOUT, self.exchange(body)).await {
            Ok(r) => r,
            Err(_) => Err("publish timed out".into()),
        };
        if r.is_err() {
            self.sock = None;
        }
        r
    }

    async fn exchange(&mut self, body: &str) -> Result<(), String> {
        if self.sock.is_none() {
            let s = TcpStream::connect(&self.addr)
                .await
                .map_err(|e| format!("publish connect: {e}"))?;
            let _ = s.set_nodelay(true);
            self.sock = Some(s);
        }
        let sock = self.sock.as_mut().expect("connected above");
        let req = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.path,
            self.addr,
            body.len()
        );
        sock.write_all(req.as_bytes())
            .await
            .map_err(|e| format!("publish write: {e}"))?;
        self.buf.clear();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if self.buf.len() >= end + 4 + len {
                    let status = head.get(9..12).unwrap_or("");
                    if head.contains("connection: close") {
                        self.sock = None;
                    }
                    return match status {
                        "200" => Ok(()),
                        s => Err(format!("publish status {s}")),
                    };
                }
            }
            if self.buf.len() > 1 << 20 {
                return Err("publish response over 1 MiB".into());
            }
            let n = sock
                .read(&mut chunk)
                .await
                .map_err(|e| format!("publish read: {e}"))?;
            if n == 0 {
                return Err("publish connection closed".into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// fanbench's payload: `fb <channel> <seq> <sent_ns> <scheduled_ns> ` padded with `x` to
/// `size` bytes.
pub(crate) fn payload(chan: u64, seq: u64, sent: u64, sched: u64, size: usize) -> String {
    let mut s = format!("fb {chan} {seq} {sent} {sched} ");
    if s.len() < size {
        s.extend(std::iter::repeat_n('x', size - s.len()));
    }
    s
}

/// A publish request: SSE events `data: <payload>`, one per (channel, payload).
pub(crate) fn publish_body(items: &[(u64, String)]) -> String {
    let list: Vec<_> = items
        .iter()
        .map(|(c, p)| {
            json!({"channel": format!("ch{c}"),
                "formats": {"http-stream": {"content": format!("data: {p}\n\n")}}})
        })
        .collect();
    json!({ "items": list }).to_string()
}

/// What the publish phase did.
pub(crate) struct Published {
    pub(crate) acked: Vec<bool>,
    pub(crate) requests: u64,
    pub(crate) failed_requests: u64,
    pub(crate) start_ns: u64,
    pub(crate) end_ns: u64,
}

/// Publishes items 0..total (item g: channel g % k, sequence g / k) at `rate` per second
/// (0: in batches, as fast as answered), each request carrying the items then due.
pub(crate) async fn publish(a: &Args, p: &mut Publisher, ctx: &Ctx) -> Published {
    let k = a.channels as u64;
    let total = a.messages as u64 * k;
    let mut out = Published {
        acked: vec![false; total as usize],
        requests: 0,
        failed_requests: 0,
        start_ns: now_ns(),
        end_ns: 0,
    };
    let t0 = Instant::now();
    let sched = |g: u64| {
        let at = if a.rate > 0.0 { g as f64 / a.rate } else { 0.0 };
        out.start_ns + (at * 1e9) as u64
    };
    let mut next = 0u64;
    while next < total {
        let due = if a.rate > 0.0 {
            ((t0.elapsed().as_secs_f64() * a.rate) as u64 + 1).min(total)
        } else {
            total
        };
        if due <= next {
            tokio::time::sleep_until((t0 + Duration::from_secs_f64(next as f64 / a.rate)).into())
                .await;
            continue;
        }
        let end = due.min(next + BATCH);
        let sent = now_ns();
        let items: Vec<(u64, String)> = (next..end)
            .map(|g| (g % k, payload(g % k, g / k, sent, sched(g), a.size)))
            .collect();
        out.requests += 1;
        match p.post(&publish_body(&items)).await {
            Ok(()) => out.acked[next as usize..end as usize].fill(true),
            Err(e) => {
                out.failed_requests += 1;
                ctx.error(e);
            }
        }
        next = end;
    }
    out.end_ns = now_ns();
    out
}

/// One probe per channel (`data: fbp <round>`), proving each subscription live.
pub(crate) async fn probe(a: &Args, p: &mut Publisher, round: u32) -> Result<(), String> {
    let items: Vec<(u64, String)> = (0..a.channels as u64)
        .map(|c| (c, format!("fbp {round}")))
        .collect();
    for chunk in items.chunks(BATCH as usize) {
        p.post(&publish_body(chunk)).await?;
    }
    Ok(())
}
