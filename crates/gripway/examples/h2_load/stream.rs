//! One SSE stream of the HTTP/2 load tool: its request, its first event (ready), then every
//! item, checked against the stream's channel (once each, in order) and timed; and the
//! counters every stream shares ([`Ctx`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use h2::client::SendRequest;
use tokio::sync::{oneshot, watch};
use tokio::time::timeout;

use crate::hist::Hist;
use crate::{now_ns, OPEN_TIMEOUT};

/// Bytes of an unfinished SSE line a stream keeps at most (items are a few hundred bytes).
const MAX_LINE: usize = 64 * 1024;

/// What every task updates.
pub(crate) struct Ctx {
    pub(crate) base: String,
    pub(crate) channels: u64,
    pub(crate) messages: u64,
    pub(crate) ready: AtomicU64,
    /// Ready streams per channel.
    pub(crate) ready_per_chan: Vec<AtomicU64>,
    pub(crate) failed: AtomicU64,
    pub(crate) probed: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) unique: AtomicU64,
    pub(crate) first_recv_ns: AtomicU64,
    pub(crate) last_recv_ns: AtomicU64,
    pub(crate) latency: Hist,
    pub(crate) errors: Mutex<BTreeMap<String, u64>>,
    pub(crate) results: Mutex<Vec<StreamEnd>>,
    pub(crate) finish: watch::Receiver<bool>,
}

impl Ctx {
    pub(crate) fn error(&self, what: String) {
        *self.errors.lock().unwrap().entry(what).or_default() += 1;
    }
}

/// One stream's account, handed in when it ends.
pub(crate) struct StreamEnd {
    pub(crate) chan: u32,
    pub(crate) seen: Box<[u64]>,
    pub(crate) duplicates: u64,
    pub(crate) out_of_order: u64,
    pub(crate) unexpected: u64,
    pub(crate) closed: bool,
}

/// One stream's reading state.
pub(crate) struct Reader {
    pub(crate) end: StreamEnd,
    pub(crate) max_seq: Option<u64>,
    pub(crate) probed: bool,
    /// An SSE line split across DATA frames (usually empty).
    pub(crate) carry: Vec<u8>,
}

impl Reader {
    pub(crate) fn new(chan: u32, messages: u64) -> Reader {
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
    pub(crate) fn feed(&mut self, ctx: &Ctx, chunk: &[u8]) -> bool {
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

    pub(crate) fn line(&mut self, ctx: &Ctx, line: &[u8]) {
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
        let mut it = fields.split(|&b| b == b' ').map(|f| {
            std::str::from_utf8(f)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
        });
        let (Some(Some(chan)), Some(Some(seq)), Some(Some(sent))) =
            (it.next(), it.next(), it.next())
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
pub(crate) async fn stream(
    ctx: Arc<Ctx>,
    client: SendRequest<Bytes>,
    chan: u32,
    ready: oneshot::Sender<()>,
) {
    let open = async {
        let req = http::Request::get(format!("{}/ch{chan}", ctx.base))
            .body(())
            .map_err(|e| format!("request: {e}"))?;
        let mut c = client.ready().await.map_err(|e| format!("ready: {e}"))?;
        let (resp, _) = c
            .send_request(req, true)
            .map_err(|e| format!("send: {e}"))?;
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

pub(crate) fn fail(ctx: &Ctx, e: String, ready: oneshot::Sender<()>) {
    ctx.error(e);
    ctx.failed.fetch_add(1, Relaxed);
    let _ = ready.send(());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish::payload;

    pub(crate) fn ctx(messages: u64) -> Ctx {
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
    pub(crate) fn a_reader_counts_duplicates_reordering_and_lines_split_across_frames() {
        let c = ctx(100);
        let mut r = Reader::new(1, 100);
        let item = |seq: u64| format!("data: {}\n\n", payload(1, seq, now_ns(), 0, 100));
        let stream = [item(0), item(2), item(1), item(2), item(70)].concat();
        // fed in 7-byte pieces: lines cross chunk boundaries
        for piece in stream.as_bytes().chunks(7) {
            assert!(r.feed(&c, piece));
        }
        assert!(r.feed(&c, b"data: fbp 0\n\n: comment\n\n"));
        assert!(r.feed(
            &c,
            format!("data: {}\n\n", payload(0, 3, 0, 0, 10)).as_bytes()
        ));
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
