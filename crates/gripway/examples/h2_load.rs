//! An HTTP/2 SSE load tool (the independent load tool, fanbench, speaks only HTTP/1.1): `C`
//! connections, over TLS with ALPN `h2` (`https://`) or h2c with prior knowledge
//! (`http://`), each carrying `S` SSE streams `GET <url>/ch<k>`, spread over `N` channels.
//! Items are published through the GRIP publish API at a fixed rate; each carries its
//! channel, its sequence number in the channel and its send time (fanbench's payload format,
//! `fb <channel> <seq> <sent_ns> <scheduled_ns> xxx...`), so every stream checks that each
//! item arrives once and in order, and the receive time gives the latency (one process, one
//! monotonic clock).
//!
//! Phases: open the streams (at most `--connect-concurrency` connections opening at once),
//! wait until every stream has its response head and its initial body (the origin's first
//! event), settle, read the server's RSS (memory per idle stream = growth since before
//! connecting / streams); confirm the subscriptions with a probe per channel; publish, then
//! drain; server CPU (utime + stime, the process and its descendants, from /proc) over
//! publish + drain / deliveries = CPU per delivery. Prints one summary line and writes JSON.
//!
//! ```sh
//! cargo run --release --example h2_load -- --url https://localhost:8443/sse --insecure \
//!     --connections 500 --streams-per-conn 10 --channels 1 \
//!     --publish http://127.0.0.1:5561/publish/ --messages 50 --rate 10 --size 100 \
//!     --pid $(pidof gripway) --json out.json
//! ```
//!
//! The client reads every stream as it arrives and gives the flow-control window back at
//! once; connections run on a multi-thread runtime; a stream keeps a few counters and one
//! bit per expected item.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::client::SendRequest;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch, Semaphore};
use tokio::time::timeout;
use tokio_rustls::TlsConnector;

/// A connection's TCP connect, TLS and HTTP/2 handshakes, and a stream's head and first event.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// The whole ramp.
const CONNECT_PHASE_TIMEOUT: Duration = Duration::from_secs(600);
/// The subscription confirmation (probes).
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(120);
/// One publish request.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(30);
/// The drain ends after this long without a new delivery, or after `DRAIN_LIMIT`.
const DRAIN_IDLE: Duration = Duration::from_secs(5);
const DRAIN_LIMIT: Duration = Duration::from_secs(300);
/// Items per publish request at most.
const BATCH: u64 = 500;
/// Flow-control windows the client offers: per stream (the protocol's default) and per
/// connection (large, so streams of one connection do not wait on each other's reads).
const STREAM_WINDOW: u32 = 65_535;
const CONN_WINDOW: u32 = 1 << 20;
/// Bytes of an unfinished SSE line a stream keeps at most (items are a few hundred bytes).
const MAX_LINE: usize = 64 * 1024;

struct Args {
    url: String,
    insecure: bool,
    ca: Option<String>,
    connections: usize,
    streams_per_conn: usize,
    channels: usize,
    publish: String,
    messages: usize,
    rate: f64,
    size: usize,
    pid: Option<u32>,
    json: Option<String>,
    connect_concurrency: usize,
    settle: Duration,
    label: String,
}

const USAGE: &str = "usage: h2_load --url https://HOST:PORT/PREFIX (or http:// for h2c) \
[--insecure | --ca FILE] [--connections C] [--streams-per-conn S] [--channels N] \
[--publish http://127.0.0.1:PORT/publish/] [--messages M (per channel)] [--rate R (items/s, \
all channels; 0: as fast as possible)] [--size B] [--pid PID] [--json FILE] \
[--connect-concurrency K] [--settle-ms MS] [--label TEXT]";

fn args() -> Result<Args, String> {
    let mut a = Args {
        url: String::new(),
        insecure: false,
        ca: None,
        connections: 100,
        streams_per_conn: 1,
        channels: 1,
        publish: "http://127.0.0.1:5561/publish/".into(),
        messages: 50,
        rate: 10.0,
        size: 100,
        pid: None,
        json: None,
        connect_concurrency: 50,
        settle: Duration::from_secs(2),
        label: String::new(),
    };
    let mut argv = std::env::args().skip(1);
    while let Some(flag) = argv.next() {
        if flag == "--insecure" {
            a.insecure = true;
            continue;
        }
        if flag == "-h" || flag == "--help" {
            return Err(USAGE.into());
        }
        let v = argv.next().ok_or(format!("{flag} needs a value"))?;
        let n = || v.parse::<usize>().map_err(|_| format!("{flag}: not a number: {v}"));
        match flag.as_str() {
            "--url" => a.url = v.trim_end_matches('/').to_string(),
            "--ca" => a.ca = Some(v.clone()),
            "--connections" => a.connections = n()?,
            "--streams-per-conn" => a.streams_per_conn = n()?.max(1),
            "--channels" => a.channels = n()?.max(1),
            "--publish" => a.publish = v.clone(),
            "--messages" => a.messages = n()?,
            "--rate" => a.rate = v.parse().map_err(|_| format!("--rate: not a number: {v}"))?,
            "--size" => a.size = n()?,
            "--pid" => a.pid = Some(v.parse().map_err(|_| format!("--pid: not a pid: {v}"))?),
            "--json" => a.json = Some(v.clone()),
            "--connect-concurrency" => a.connect_concurrency = n()?.max(1),
            "--settle-ms" => a.settle = Duration::from_millis(n()? as u64),
            "--label" => a.label = v.clone(),
            other => return Err(format!("unknown flag {other}\n{USAGE}")),
        }
    }
    if a.url.is_empty() {
        return Err(format!("--url is required\n{USAGE}"));
    }
    Ok(a)
}

/// Nanoseconds on one monotonic clock shared by the publisher and the readers.
fn now_ns() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

// ---------------------------------------------------------------------------------------
// latency histogram

/// A lock-free log-linear histogram of microseconds: exact below 128, then 64 buckets per
/// power of two (about 1.6 % wide).
struct Hist {
    buckets: Vec<AtomicU64>,
    max: AtomicU64,
}

impl Hist {
    const SUB: u64 = 64;

    fn new() -> Hist {
        Hist {
            buckets: (0..Self::index(u64::MAX) + 1)
                .map(|_| AtomicU64::new(0))
                .collect(),
            max: AtomicU64::new(0),
        }
    }

    fn index(v: u64) -> usize {
        if v < 2 * Self::SUB {
            return v as usize;
        }
        let e = 63 - u64::from(v.leading_zeros()); // >= 7
        let m = v >> (e - 6); // 64..128
        (2 * Self::SUB + (e - 7) * Self::SUB + (m - Self::SUB)) as usize
    }

    /// The smallest value of bucket `i`.
    fn low(i: usize) -> u64 {
        let i = i as u64;
        if i < 2 * Self::SUB {
            return i;
        }
        let e = (i - 2 * Self::SUB) / Self::SUB + 7;
        let m = (i - 2 * Self::SUB) % Self::SUB + Self::SUB;
        m << (e - 6)
    }

    fn record(&self, us: u64) {
        self.buckets[Self::index(us)].fetch_add(1, Relaxed);
        self.max.fetch_max(us, Relaxed);
    }

    fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Relaxed)).sum()
    }

    /// The value at quantile `q` (the low end of its bucket).
    fn quantile(&self, q: f64) -> u64 {
        let total = self.count();
        if total == 0 {
            return 0;
        }
        let rank = ((total as f64 * q).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            seen += b.load(Relaxed);
            if seen >= rank {
                return Self::low(i);
            }
        }
        self.max.load(Relaxed)
    }
}

// ---------------------------------------------------------------------------------------
// shared state and one stream

/// What every task updates.
struct Ctx {
    base: String,
    channels: u64,
    messages: u64,
    ready: AtomicU64,
    /// Ready streams per channel.
    ready_per_chan: Vec<AtomicU64>,
    failed: AtomicU64,
    probed: AtomicU64,
    received: AtomicU64,
    unique: AtomicU64,
    first_recv_ns: AtomicU64,
    last_recv_ns: AtomicU64,
    latency: Hist,
    errors: Mutex<BTreeMap<String, u64>>,
    results: Mutex<Vec<StreamEnd>>,
    finish: watch::Receiver<bool>,
}

impl Ctx {
    fn error(&self, what: String) {
        *self.errors.lock().unwrap().entry(what).or_default() += 1;
    }
}

/// One stream's account, handed in when it ends.
struct StreamEnd {
    chan: u32,
    seen: Box<[u64]>,
    duplicates: u64,
    out_of_order: u64,
    unexpected: u64,
    closed: bool,
}

/// One stream's reading state.
struct Reader {
    end: StreamEnd,
    max_seq: Option<u64>,
    probed: bool,
    /// An SSE line split across DATA frames (usually empty).
    carry: Vec<u8>,
}

impl Reader {
    fn new(chan: u32, messages: u64) -> Reader {
        Reader {
            end: StreamEnd {
                chan,
                seen: vec![0; messages.div_ceil(64) as usize].into_boxed_slice(),
                duplicates: 0,
                out_of_order: 0,
                unexpected: 0,
                closed: false,
            },
            max_seq: None,
            probed: false,
            carry: Vec::new(),
        }
    }

    /// Takes a chunk of the body; returns false when a line grew past the limit.
    fn feed(&mut self, ctx: &Ctx, chunk: &[u8]) -> bool {
        let mut rest = chunk;
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            if self.carry.is_empty() {
                self.line(ctx, &rest[..nl]);
            } else {
                let mut line = std::mem::take(&mut self.carry);
                line.extend_from_slice(&rest[..nl]);
                self.line(ctx, &line);
            }
            rest = &rest[nl + 1..];
        }
        self.carry.extend_from_slice(rest);
        self.carry.len() <= MAX_LINE
    }

    fn line(&mut self, ctx: &Ctx, line: &[u8]) {
        let Some(payload) = line.strip_prefix(b"data: ") else {
            return;
        };
        if payload.starts_with(b"fbp ") {
            if !self.probed {
                self.probed = true;
                ctx.probed.fetch_add(1, Relaxed);
            }
            return;
        }
        let Some(fields) = payload.strip_prefix(b"fb ") else {
            return;
        };
        let now = now_ns();
        ctx.received.fetch_add(1, Relaxed);
        let mut it = fields
            .split(|&b| b == b' ')
            .map(|f| std::str::from_utf8(f).ok().and_then(|s| s.parse::<u64>().ok()));
        let (Some(Some(chan)), Some(Some(seq)), Some(Some(sent))) = (it.next(), it.next(), it.next())
        else {
            self.end.unexpected += 1;
            return;
        };
        if chan != u64::from(self.end.chan) || seq >= ctx.messages {
            self.end.unexpected += 1;
            return;
        }
        let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
        if self.end.seen[word] & bit != 0 {
            self.end.duplicates += 1;
            return;
        }
        self.end.seen[word] |= bit;
        if self.max_seq.is_some_and(|m| seq < m) {
            self.end.out_of_order += 1;
        }
        self.max_seq = Some(self.max_seq.map_or(seq, |m| m.max(seq)));
        ctx.unique.fetch_add(1, Relaxed);
        ctx.latency.record(now.saturating_sub(sent) / 1000);
        ctx.first_recv_ns.fetch_min(now, Relaxed);
        ctx.last_recv_ns.fetch_max(now, Relaxed);
    }
}

/// Opens one stream, says when it has its head and first event (or failed), then reads
/// until the run finishes or the stream ends.
async fn stream(ctx: Arc<Ctx>, client: SendRequest<Bytes>, chan: u32, ready: oneshot::Sender<()>) {
    let open = async {
        let req = http::Request::get(format!("{}/ch{chan}", ctx.base))
            .body(())
            .map_err(|e| format!("request: {e}"))?;
        let mut c = client.ready().await.map_err(|e| format!("ready: {e}"))?;
        let (resp, _) = c.send_request(req, true).map_err(|e| format!("send: {e}"))?;
        let resp = resp.await.map_err(|e| format!("response: {e}"))?;
        if resp.status() != 200 {
            return Err(format!("status {}", resp.status()));
        }
        let mut body = resp.into_body();
        let mut first = Vec::new();
        // the origin's first event ends with a blank line
        while !first.windows(2).any(|w| w == b"\n\n") {
            let data = body
                .data()
                .await
                .ok_or("stream ended before its first event")?
                .map_err(|e| format!("first event: {e}"))?;
            let _ = body.flow_control().release_capacity(data.len());
            first.extend_from_slice(&data);
            if first.len() > MAX_LINE {
                return Err("first event too long".into());
            }
        }
        Ok((body, first))
    };
    let (mut body, first) = match timeout(OPEN_TIMEOUT, open).await {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return fail(&ctx, e, ready),
        Err(_) => return fail(&ctx, "open timed out".into(), ready),
    };
    let mut r = Reader::new(chan, ctx.messages);
    let after = first.windows(2).position(|w| w == b"\n\n").unwrap_or(0) + 2;
    r.feed(&ctx, &first[after..]);
    drop(first);
    ctx.ready.fetch_add(1, Relaxed);
    ctx.ready_per_chan[chan as usize].fetch_add(1, Relaxed);
    let _ = ready.send(());
    let mut finish = ctx.finish.clone();
    loop {
        tokio::select! {
            d = body.data() => match d {
                Some(Ok(data)) => {
                    let _ = body.flow_control().release_capacity(data.len());
                    if !r.feed(&ctx, &data) {
                        ctx.error("an SSE line over 64 KiB".into());
                        r.end.closed = true;
                        break;
                    }
                }
                Some(Err(e)) => {
                    ctx.error(format!("stream: {e}"));
                    r.end.closed = true;
                    break;
                }
                None => {
                    ctx.error("stream ended by the server".into());
                    r.end.closed = true;
                    break;
                }
            },
            _ = finish.wait_for(|f| *f) => break,
        }
    }
    ctx.results.lock().unwrap().push(r.end);
}

fn fail(ctx: &Ctx, e: String, ready: oneshot::Sender<()>) {
    ctx.error(e);
    ctx.failed.fetch_add(1, Relaxed);
    let _ = ready.send(());
}

// ---------------------------------------------------------------------------------------
// connections

/// Where and how to connect.
struct Target {
    addr: SocketAddr,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    streams: usize,
}

fn target(a: &Args) -> Result<Target, String> {
    let uri: http::Uri = a.url.parse().map_err(|e| format!("--url: {e}"))?;
    let host = uri.host().ok_or("--url needs a host")?.to_string();
    let (tls, port) = match uri.scheme_str() {
        Some("https") => (true, uri.port_u16().unwrap_or(443)),
        Some("http") => (false, uri.port_u16().unwrap_or(80)),
        _ => return Err("--url must be https:// or http://".into()),
    };
    // resolved once, IPv4 first (`localhost` is often ::1 first, and servers listen on 127.0.0.1)
    let host_port = format!("{}:{port}", host.trim_matches(|c| c == '[' || c == ']'));
    let mut addrs: Vec<SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(&host_port)
        .map_err(|e| format!("resolving {host_port}: {e}"))?
        .collect();
    addrs.sort_by_key(|a| !a.is_ipv4());
    let addr = *addrs.first().ok_or(format!("{host_port} has no address"))?;
    let tls = if tls {
        let name = ServerName::try_from(host).map_err(|e| format!("server name: {e}"))?;
        Some((TlsConnector::from(Arc::new(tls_config(a)?)), name))
    } else {
        None
    };
    Ok(Target {
        addr,
        tls,
        streams: a.streams_per_conn,
    })
}

fn tls_config(a: &Args) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let mut config = match (&a.ca, a.insecure) {
        (_, true) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
            .with_no_client_auth(),
        (Some(file), false) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(file).map_err(|e| format!("{file}: {e}"))? {
                roots
                    .add(cert.map_err(|e| format!("{file}: {e}"))?)
                    .map_err(|e| format!("{file}: {e}"))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        (None, false) => return Err("https:// needs --ca FILE or --insecure".into()),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// `--insecure`: any server certificate is accepted (signatures are still checked).
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        msg: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(msg, cert, dss, algs)
    }

    fn verify_tls13_signature(
        &self,
        msg: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(msg, cert, dss, algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Opens connection `n` and its streams; returns once each stream is ready or failed.
async fn connection(ctx: Arc<Ctx>, t: Arc<Target>, n: usize) {
    let opened = timeout(OPEN_TIMEOUT, async {
        let tcp = TcpStream::connect(t.addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        match &t.tls {
            None => Ok(h2_start(&ctx, tcp).await?),
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| format!("TLS: {e}"))?;
                if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
                    return Err("the server did not choose h2 by ALPN".to_string());
                }
                Ok(h2_start(&ctx, tls).await?)
            }
        }
    })
    .await;
    let client = match opened {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return fail_all(&ctx, &t, e),
        Err(_) => return fail_all(&ctx, &t, "connection open timed out".into()),
    };
    let mut waits = Vec::with_capacity(t.streams);
    for s in 0..t.streams {
        let chan = ((n * t.streams + s) as u64 % ctx.channels) as u32;
        let (tx, rx) = oneshot::channel();
        tokio::spawn(stream(ctx.clone(), client.clone(), chan, tx));
        waits.push(rx);
    }
    drop(client);
    for w in waits {
        let _ = w.await;
    }
}

fn fail_all(ctx: &Ctx, t: &Target, e: String) {
    ctx.error(e);
    ctx.failed.fetch_add(t.streams as u64, Relaxed);
}

/// The HTTP/2 handshake; the connection is driven by a task of its own, which keeps a
/// handle so the connection stays open while its streams do.
async fn h2_start<T>(ctx: &Arc<Ctx>, io: T) -> Result<SendRequest<Bytes>, String>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (client, conn) = h2::client::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONN_WINDOW)
        .handshake::<_, Bytes>(io)
        .await
        .map_err(|e| format!("h2 handshake: {e}"))?;
    let keep = client.clone();
    let ctx = ctx.clone();
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            ctx.error(format!("connection: {e}"));
        }
        drop(keep);
    });
    Ok(client)
}

// ---------------------------------------------------------------------------------------
// publishing

/// A keep-alive HTTP/1.1 connection to the publish API.
struct Publisher {
    addr: String,
    path: String,
    sock: Option<TcpStream>,
    buf: Vec<u8>,
}

impl Publisher {
    fn new(url: &str) -> Result<Publisher, String> {
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
fn payload(chan: u64, seq: u64, sent: u64, sched: u64, size: usize) -> String {
    let mut s = format!("fb {chan} {seq} {sent} {sched} ");
    if s.len() < size {
        s.extend(std::iter::repeat_n('x', size - s.len()));
    }
    s
}

/// A publish request: SSE events `data: <payload>`, one per (channel, payload).
fn publish_body(items: &[(u64, String)]) -> String {
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
struct Published {
    acked: Vec<bool>,
    requests: u64,
    failed_requests: u64,
    start_ns: u64,
    end_ns: u64,
}

/// Publishes items 0..total (item g: channel g % k, sequence g / k) at `rate` per second
/// (0: in batches, as fast as answered), each request carrying the items then due.
async fn publish(a: &Args, p: &mut Publisher, ctx: &Ctx) -> Published {
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
async fn probe(a: &Args, p: &mut Publisher, round: u32) -> Result<(), String> {
    let items: Vec<(u64, String)> = (0..a.channels as u64)
        .map(|c| (c, format!("fbp {round}")))
        .collect();
    for chunk in items.chunks(BATCH as usize) {
        p.post(&publish_body(chunk)).await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// the server's memory and CPU, from /proc

#[derive(Clone, Copy, Default)]
struct Sample {
    rss_kib: u64,
    cpu_ticks: u64,
    procs: u64,
}

/// (parent pid, utime + stime) of a process.
fn stat(pid: u32) -> Option<(u32, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // the name, in parentheses, may hold spaces
    let f: Vec<&str> = s[s.rfind(')')? + 1..].split_whitespace().collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some((f.get(1)?.parse().ok()?, ticks))
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// RSS and CPU of `root` and all its descendants.
fn sample_tree(root: u32) -> Sample {
    let mut procs: Vec<(u32, u32, u64)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            if let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) {
                if let Some((ppid, ticks)) = stat(pid) {
                    procs.push((pid, ppid, ticks));
                }
            }
        }
    }
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let p = tree[i];
        tree.extend(procs.iter().filter(|x| x.1 == p).map(|x| x.0));
        i += 1;
    }
    let mut s = Sample::default();
    for pid in tree {
        if let Some(&(_, _, ticks)) = procs.iter().find(|x| x.0 == pid) {
            s.cpu_ticks += ticks;
            s.rss_kib += rss_kib(pid);
            s.procs += 1;
        }
    }
    s
}

fn ticks_per_s() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

// ---------------------------------------------------------------------------------------
// the run

fn main() {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    if let Err(e) = rt.block_on(run(a)) {
        eprintln!("h2_load: {e}");
        std::process::exit(1);
    }
}

async fn run(a: Args) -> Result<(), String> {
    now_ns();
    let t = Arc::new(target(&a)?);
    let mut publisher = Publisher::new(&a.publish)?;
    let streams = (a.connections * a.streams_per_conn) as u64;
    let (finish, finish_rx) = watch::channel(false);
    let ctx = Arc::new(Ctx {
        base: a.url.clone(),
        channels: a.channels as u64,
        messages: a.messages as u64,
        ready: AtomicU64::new(0),
        ready_per_chan: (0..a.channels).map(|_| AtomicU64::new(0)).collect(),
        failed: AtomicU64::new(0),
        probed: AtomicU64::new(0),
        received: AtomicU64::new(0),
        unique: AtomicU64::new(0),
        first_recv_ns: AtomicU64::new(u64::MAX),
        last_recv_ns: AtomicU64::new(0),
        latency: Hist::new(),
        errors: Mutex::new(BTreeMap::new()),
        results: Mutex::new(Vec::new()),
        finish: finish_rx,
    });
    let server = || a.pid.map(sample_tree).unwrap_or_default();
    let me = std::process::id();
    let before = server();

    // ramp: at most connect_concurrency connections opening at once
    eprintln!(
        "opening {streams} streams ({} connections x {})...",
        a.connections, a.streams_per_conn
    );
    let gate = Arc::new(Semaphore::new(a.connect_concurrency));
    let t0 = Instant::now();
    for n in 0..a.connections {
        let (ctx, t, gate) = (ctx.clone(), t.clone(), gate.clone());
        tokio::spawn(async move {
            let _permit = gate.acquire_owned().await;
            connection(ctx, t, n).await;
        });
    }
    let mut last_log = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (ready, failed) = (ctx.ready.load(Relaxed), ctx.failed.load(Relaxed));
        if ready + failed >= streams || t0.elapsed() > CONNECT_PHASE_TIMEOUT {
            break;
        }
        if last_log.elapsed() > Duration::from_secs(5) {
            eprintln!("  {ready} ready, {failed} failed after {:.1} s", t0.elapsed().as_secs_f64());
            last_log = Instant::now();
        }
    }
    let connect_s = t0.elapsed().as_secs_f64();
    let (ready, failed) = (ctx.ready.load(Relaxed), ctx.failed.load(Relaxed));
    if ready == 0 {
        return Err(format!("no stream became ready: {:?}", ctx.errors.lock().unwrap()));
    }
    tokio::time::sleep(a.settle).await;
    let idle = server();

    // confirmation: probes until every ready stream got one
    eprintln!("confirming subscriptions...");
    let t0 = Instant::now();
    let mut rounds = 0;
    'rounds: while t0.elapsed() < CONFIRM_TIMEOUT {
        if let Err(e) = probe(&a, &mut publisher, rounds).await {
            ctx.error(e);
        }
        rounds += 1;
        let (mut last, mut changed) = (ctx.probed.load(Relaxed), Instant::now());
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let probed = ctx.probed.load(Relaxed);
            if probed >= ctx.ready.load(Relaxed) || t0.elapsed() > CONFIRM_TIMEOUT {
                break 'rounds;
            }
            if probed != last {
                (last, changed) = (probed, Instant::now());
            }
            if changed.elapsed() > Duration::from_secs(1) {
                continue 'rounds;
            }
        }
    }
    let confirmed = ctx.probed.load(Relaxed);

    eprintln!("publishing {} items...", a.messages * a.channels);
    let (pre, me_pre) = (server(), sample_tree(me));
    let published = publish(&a, &mut publisher, &ctx).await;

    // drain: until every stream has every acknowledged item of its channel, or no progress
    let k = a.channels as u64;
    let acked_in = |c: u64| {
        (0..a.messages as u64)
            .filter(|s| published.acked[(s * k + c) as usize])
            .count() as u64
    };
    let acked_per_chan: Vec<u64> = (0..k).map(acked_in).collect();
    let expected_total: u64 = (0..k as usize)
        .map(|c| ctx.ready_per_chan[c].load(Relaxed) * acked_per_chan[c])
        .sum();
    let t0 = Instant::now();
    let (mut last, mut changed) = (ctx.unique.load(Relaxed), Instant::now());
    let mut drain_complete = true;
    while ctx.unique.load(Relaxed) < expected_total {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let u = ctx.unique.load(Relaxed);
        if u != last {
            (last, changed) = (u, Instant::now());
        }
        if changed.elapsed() > DRAIN_IDLE || t0.elapsed() > DRAIN_LIMIT {
            drain_complete = false;
            break;
        }
    }
    let drain_s = t0.elapsed().as_secs_f64();
    let (after, me_after) = (server(), sample_tree(me));

    // every stream hands in its account
    let _ = finish.send(true);
    let t0 = Instant::now();
    while (ctx.results.lock().unwrap().len() as u64) < ready && t0.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ends = std::mem::take(&mut *ctx.results.lock().unwrap());
    let (mut expected, mut missing, mut with_loss) = (0u64, 0u64, 0u64);
    let (mut dups, mut ooo, mut unexpected, mut closed) = (0u64, 0u64, 0u64, 0u64);
    for e in &ends {
        let c = u64::from(e.chan);
        let mut lost = 0;
        for s in 0..a.messages as u64 {
            if published.acked[(s * k + c) as usize] {
                expected += 1;
                if e.seen[(s / 64) as usize] & (1 << (s % 64)) == 0 {
                    lost += 1;
                }
            }
        }
        missing += lost;
        with_loss += u64::from(lost > 0);
        dups += e.duplicates;
        ooo += e.out_of_order;
        unexpected += e.unexpected;
        closed += u64::from(e.closed);
    }
    let unaccounted = ready.saturating_sub(ends.len() as u64);

    let tick = ticks_per_s();
    let received = ctx.received.load(Relaxed);
    let unique = ctx.unique.load(Relaxed);
    let (first, last) = (
        ctx.first_recv_ns.load(Relaxed),
        ctx.last_recv_ns.load(Relaxed),
    );
    let window_s = last.saturating_sub(published.start_ns) as f64 / 1e9;
    let per_s = if window_s > 0.0 { unique as f64 / window_s } else { 0.0 };
    let cpu_s = (after.cpu_ticks - pre.cpu_ticks) as f64 / tick;
    let mib = |s: &Sample| s.rss_kib as f64 / 1024.0;
    let per_stream_kib = (idle.rss_kib as f64 - before.rss_kib as f64) / ready as f64;
    let us_per_delivery = (received > 0).then(|| cpu_s * 1e6 / received as f64);
    let ms = |q: f64| ctx.latency.quantile(q) as f64 / 1000.0;
    let loss_pct = if expected > 0 { 100.0 * missing as f64 / expected as f64 } else { 0.0 };
    let errors = ctx.errors.lock().unwrap().clone();
    let report = json!({
        "tool": "h2_load",
        "label": a.label,
        "url": a.url,
        "tls": t.tls.is_some(),
        "connections": a.connections,
        "streams_per_connection": a.streams_per_conn,
        "channels": a.channels,
        "messages_per_channel": a.messages,
        "rate": a.rate,
        "size": a.size,
        "connect": {"streams": streams, "ready": ready, "failed": failed,
            "not_ready": streams.saturating_sub(ready + failed), "duration_s": connect_s,
            "streams_per_s": ready as f64 / connect_s.max(1e-9)},
        "confirm": {"rounds": rounds, "confirmed": confirmed,
            "unconfirmed": ready.saturating_sub(confirmed)},
        "server": a.pid.map(|pid| json!({
            "pid": pid, "procs": before.procs,
            "rss_mib": {"before": mib(&before), "idle": mib(&idle), "pre_publish": mib(&pre),
                "after": mib(&after)},
            "rss_per_idle_stream_kib": per_stream_kib,
            "cpu_publish_and_drain_s": cpu_s,
            "cpu_us_per_delivery": us_per_delivery,
        })),
        "loadgen": {"cpu_publish_and_drain_s": (me_after.cpu_ticks - me_pre.cpu_ticks) as f64 / tick,
            "threads": std::thread::available_parallelism().map_or(2, |n| n.get())},
        "publish": {"items": published.acked.len(),
            "acked": published.acked.iter().filter(|x| **x).count(),
            "requests": published.requests, "failed_requests": published.failed_requests,
            "duration_s": (published.end_ns - published.start_ns) as f64 / 1e9},
        "delivery": {"expected": expected, "received": received, "unique": unique,
            "missing": missing, "loss_pct": loss_pct, "duplicates": dups, "out_of_order": ooo,
            "unexpected": unexpected, "streams_with_loss": with_loss,
            "streams_closed_during_run": closed, "streams_unaccounted": unaccounted,
            "first_delivery_after_publish_start_s": (first != u64::MAX)
                .then(|| first.saturating_sub(published.start_ns) as f64 / 1e9),
            "last_delivery_after_publish_start_s": window_s,
            "deliveries_per_s": per_s, "drain_s": drain_s, "drain_complete": drain_complete,
            "latency_ms": {"p50": ms(0.5), "p90": ms(0.9), "p99": ms(0.99), "p999": ms(0.999),
                "max": ctx.latency.max.load(Relaxed) as f64 / 1000.0}},
        "errors": errors,
    });
    let server_part = match a.pid {
        Some(_) => format!(
            "server RSS {:.1} -> {:.1} MiB = {per_stream_kib:.2} KiB per idle stream, CPU {cpu_s:.2} s = {:.2} us per delivery; ",
            mib(&before),
            mib(&idle),
            us_per_delivery.unwrap_or(0.0)
        ),
        None => String::new(),
    };
    println!(
        "h2_load {}{} streams ({} conns x {}{}): ready {ready} failed {failed}; {server_part}{per_s:.0} deliveries/s, latency p50 {:.2} ms p99 {:.2} ms; expected {expected} missing {missing} ({loss_pct:.3} %) duplicates {dups} out-of-order {ooo} closed {closed}{}",
        if a.label.is_empty() { String::new() } else { format!("[{}] ", a.label) },
        streams,
        a.connections,
        a.streams_per_conn,
        if t.tls.is_some() { ", TLS" } else { ", h2c" },
        ms(0.5),
        ms(0.99),
        if errors.is_empty() { String::new() } else { format!("; errors {errors:?}") },
    );
    if let Some(path) = &a.json {
        let text = serde_json::to_string_pretty(&report).expect("JSON") + "\n";
        std::fs::write(path, text).map_err(|e| format!("writing {path}: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_narrow_and_ordered() {
        let mut prev = 0;
        for v in (0..200).chain((200..20_000_000).step_by(997)) {
            let i = Hist::index(v);
            assert!(i >= prev, "{v}");
            prev = i;
            let low = Hist::low(i);
            assert!(low <= v && v - low <= v / 64, "{v}: bucket from {low}");
        }
        let h = Hist::new();
        for v in 1..=1000 {
            h.record(v);
        }
        assert_eq!(h.count(), 1000);
        let p50 = h.quantile(0.5);
        assert!((492..=500).contains(&p50), "{p50}");
        assert!(h.quantile(0.99) >= 976, "{}", h.quantile(0.99));
        assert_eq!(h.max.load(Relaxed), 1000);
    }

    fn ctx(messages: u64) -> Ctx {
        Ctx {
            base: String::new(),
            channels: 2,
            messages,
            ready: AtomicU64::new(0),
            ready_per_chan: Vec::new(),
            failed: AtomicU64::new(0),
            probed: AtomicU64::new(0),
            received: AtomicU64::new(0),
            unique: AtomicU64::new(0),
            first_recv_ns: AtomicU64::new(u64::MAX),
            last_recv_ns: AtomicU64::new(0),
            latency: Hist::new(),
            errors: Mutex::new(BTreeMap::new()),
            results: Mutex::new(Vec::new()),
            finish: watch::channel(false).1,
        }
    }

    #[test]
    fn a_reader_counts_duplicates_reordering_and_lines_split_across_frames() {
        let c = ctx(100);
        let mut r = Reader::new(1, 100);
        let item = |seq: u64| format!("data: {}\n\n", payload(1, seq, now_ns(), 0, 100));
        let stream = [item(0), item(2), item(1), item(2), item(70)].concat();
        // fed in 7-byte pieces: lines cross chunk boundaries
        for piece in stream.as_bytes().chunks(7) {
            assert!(r.feed(&c, piece));
        }
        assert!(r.feed(&c, b"data: fbp 0\n\n: comment\n\n"));
        assert!(r.feed(&c, format!("data: {}\n\n", payload(0, 3, 0, 0, 10)).as_bytes()));
        assert_eq!(c.received.load(Relaxed), 6);
        assert_eq!(c.unique.load(Relaxed), 4);
        assert_eq!(r.end.duplicates, 1);
        assert_eq!(r.end.out_of_order, 1);
        assert_eq!(r.end.unexpected, 1, "an item of another channel");
        assert_eq!(c.probed.load(Relaxed), 1);
        assert_eq!(r.end.seen[0], 0b111);
        assert_eq!(r.end.seen[1], 1 << 6);
        assert!(r.carry.is_empty());
        assert_eq!(payload(1, 2, 3, 4, 100).len(), 100);
    }
}
