//! The write side of a held connection, shared by the broker's fan-out and the connection's
//! own task.
//!
//! The fan-out writes straight to the socket (one write for a whole batch: a small one copied
//! into one buffer and sent, a larger one vectored; see [`GATHER_MAX`]) when
//! nothing is queued, so the common case costs one syscall per subscriber and no task wake.
//! What the socket does not take is queued — a message's encoding as the shared
//! `Arc<Message>`, which encoding and how far it was written (no buffer handle of its own:
//! queueing allocates nothing beside the queue), other bytes as a `Bytes` slice — and the
//! connection's task flushes it when the socket is writable again. The queue is bounded in
//! bytes — what it really costs, each entry counted with its payload ([`SLOT_COST`]), so a
//! client fed many tiny messages is cut off at the same memory as one fed large ones: a
//! subscriber that falls further behind is marked slow, its socket shut down, and its task
//! ends the connection — the fan-out never waits for anyone.
//!
//! An idle held connection keeps no buffers: the queue's storage is released once drained.
//!
//! Over TLS ([`crate::transport::tls`]) the session sits in the sink's state, under the same
//! lock: the fan-out seals a batch (its frames copied into one thread-local buffer, sealed
//! into another) and writes the ciphertext straight to the socket, as for plain TCP; what the
//! socket does not take stays in the session as ciphertext (counted in the same bound), and
//! later frames queue as plaintext until it is written. Reads decrypt under the lock too.
//!
//! An HTTP/2 stream's sink has no socket ([`on_h2`]): the fan-out only queues (the same
//! zero-copy entries) and wakes the stream's task, which turns the queue into DATA frames as
//! the stream's and the connection's windows allow. The same bound cuts off a stream that
//! stops reading (RST_STREAM, CANCEL); the other streams of its connection go on.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::net::Shutdown;
use std::pin::Pin;
use std::task::{ready, Context, Poll, Waker};

use std::sync::Arc;

use bytes::{Buf, Bytes};
use gripway_broker::message::Encoding;
use gripway_broker::Message;
use parking_lot::{Mutex, MutexGuard};
use tokio::net::TcpStream;
use tokio::time::Sleep;

use crate::transport::h2::H2Stream;
use crate::transport::tls::{Received, TlsSession};
use crate::transport::{ClientStream, SocketStream};

mod on_h2;
mod on_tls;

/// Most buffers handed to one vectored write (Linux takes up to 1024).
const MAX_IOV: usize = 256;

/// A batch of frames up to this many bytes is copied into one buffer on the stack and
/// written with one `send` rather than a vectored write: for a small delivery (an MQTT
/// PUBLISH of a 100-byte payload is 3 to 5 frames) the kernel's vectored path — importing
/// the buffer list, the file-level write checks — cost more than the copy (BENCHMARKS.md,
/// "Issue 11, the last figure").
const GATHER_MAX: usize = 1024;

/// Batches up to this many bytes gather into a smaller buffer (less to zero).
const GATHER_SMALL: usize = 256;

/// Writes what the socket takes of `frames` now (at most 64 frames): one plain write when
/// they are one frame or fit [`GATHER_MAX`] together, a vectored write otherwise.
///
/// Straight to the socket, not through tokio's `try_write`: that first reads the socket's
/// readiness, a cache line of its own per subscriber that the fan-out would touch only for
/// this (about 1% of the CPU of an MQTT fan-out). It is only called with nothing queued, so
/// the socket is almost always writable; when it is not, the connection's task is woken,
/// its own write through tokio finds the socket full and waits for it the usual way. (A
/// closed peer gives an error, not SIGPIPE: Rust's runtime ignores that signal.)
fn write_now<'a, F: Into<Frame<'a>> + Copy>(sock: &TcpStream, frames: &[F]) -> io::Result<usize> {
    let sock = socket2::SockRef::from(sock);
    if let [one] = frames {
        return sock.send((*one).into().bytes());
    }
    let total: usize = frames.iter().map(|f| (*f).into().bytes().len()).sum();
    // the buffer is zeroed before use: a small one for the common small delivery
    if total <= GATHER_SMALL {
        return gather_send::<GATHER_SMALL, F>(&sock, frames);
    }
    if total <= GATHER_MAX {
        return gather_send::<GATHER_MAX, F>(&sock, frames);
    }
    let mut io = [IoSlice::new(&[]); 64];
    let n = frames.len().min(io.len());
    for (slot, f) in io.iter_mut().zip(frames) {
        *slot = IoSlice::new((*f).into().bytes());
    }
    sock.send_vectored(&io[..n])
}

/// Copies `frames` (at most `N` bytes together) into one buffer on the stack and sends it.
fn gather_send<'a, const N: usize, F: Into<Frame<'a>> + Copy>(
    sock: &socket2::SockRef<'_>,
    frames: &[F],
) -> io::Result<usize> {
    let mut buf = [0u8; N];
    let mut at = 0;
    for f in frames {
        let bytes = (*f).into().bytes();
        buf[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    }
    sock.send(&buf[..at])
}

/// What one queued entry costs beside its payload: the entry in the queue, twice over for
/// the spare capacity a growing `VecDeque` keeps.
pub(crate) const SLOT_COST: usize = 2 * std::mem::size_of::<Queued>();

/// Bytes to send, borrowed: a message's encoding or other bytes.
#[derive(Clone, Copy)]
pub(crate) enum Frame<'a> {
    /// `bytes` is `msg.encoding(which)`: queued as the message, with no copy.
    Message {
        msg: &'a Arc<Message>,
        which: Encoding,
        bytes: &'a [u8],
    },
    /// Queued as a slice of the same buffer.
    Bytes(&'a Bytes),
    /// Bytes of the caller's own (a per-subscriber packet head on the stack): copied into
    /// the queue only if the socket does not take them at once.
    Slice(&'a [u8]),
}

impl<'a> Frame<'a> {
    /// Encoding `which` of `msg`, if it has it.
    pub(crate) fn of(msg: &'a Arc<Message>, which: Encoding) -> Option<Frame<'a>> {
        let bytes = msg.encoding(which)?;
        Some(Frame::Message { msg, which, bytes })
    }

    fn bytes(&self) -> &'a [u8] {
        match self {
            Frame::Message { bytes, .. } => bytes,
            Frame::Bytes(b) => b,
            Frame::Slice(s) => s,
        }
    }

    /// What the queue keeps of it, from byte `from` on.
    fn queued(&self, from: usize) -> Queued {
        match self {
            Frame::Message { msg, which, .. } => Queued::Message {
                msg: Arc::clone(msg),
                which: *which,
                from,
            },
            Frame::Bytes(b) => Queued::Bytes(b.slice(from..)),
            Frame::Slice(s) => Queued::Bytes(Bytes::copy_from_slice(&s[from..])),
        }
    }
}

impl<'a> From<&'a Bytes> for Frame<'a> {
    fn from(b: &'a Bytes) -> Frame<'a> {
        Frame::Bytes(b)
    }
}

/// An entry of the queue: what a [`Frame`] leaves when the socket does not take it all.
enum Queued {
    Message {
        msg: Arc<Message>,
        which: Encoding,
        /// Bytes already written.
        from: usize,
    },
    Bytes(Bytes),
}

impl Queued {
    /// What is left to write (a message's encodings are pure functions of it: the same
    /// bytes as when it was queued).
    fn bytes(&self) -> &[u8] {
        match self {
            Queued::Message { msg, which, from } => msg
                .encoding(*which)
                .and_then(|b| b.get(*from..))
                .unwrap_or_default(),
            Queued::Bytes(b) => b,
        }
    }

    fn advance(&mut self, n: usize) {
        match self {
            Queued::Message { from, .. } => *from += n,
            Queued::Bytes(b) => b.advance(n),
        }
    }
}

/// Why a held connection is ending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Everything meant for the client was written (publisher closed the stream, long-poll
    /// answered): the connection may serve another request.
    Finished,
    /// The client closed the connection or it failed.
    ClientGone,
    /// The client could not keep up with what was published.
    Slow,
}

/// What woke the connection's task.
pub(crate) enum Wake {
    /// The hold is over.
    End(Ending),
    /// The timer passed to [`Sink::wait`] fired.
    Timer,
    /// The client sent something (only when the caller asked to read input itself).
    Readable,
    /// Someone called [`Sink::notify`].
    Notified,
}

/// What [`Sink::wait_with`] does with what the client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Input {
    /// Read and drop it (a held HTTP connection); EOF ends the hold.
    Discard,
    /// Return [`Wake::Readable`]: the caller reads the socket itself.
    Report,
    /// Leave it in the socket (backpressure: the kernel's buffers fill and the client's
    /// TCP window closes); the task is not woken by input, nor by EOF.
    Pause,
}

pub(crate) struct SinkState {
    queue: VecDeque<Queued>,
    /// Payload plus [`SLOT_COST`] per queued entry.
    queued_bytes: usize,
    waker: Option<Waker>,
    /// Set once no more data will be added; the hold ends when the queue drains.
    finished: bool,
    slow: bool,
    /// Bytes were written or queued since the keep-alive timer was last armed.
    active: bool,
    /// [`Sink::notify`] was called and the task has not seen it yet.
    notified: bool,
    /// Client bytes were read and dropped during the hold (a request pipelined behind it):
    /// the connection cannot serve another request, since that one is lost.
    discarded: bool,
    /// A recovery from history in progress (see [`Sink::hold_back`]): boxed, so a hold
    /// that recovers nothing pays one pointer.
    held_back: Option<Box<HeldBack>>,
    /// The TLS session of a TLS connection.
    tls: Option<Box<TlsSession>>,
}

impl SinkState {
    /// True when something waits to be written: queued frames, or sealed ciphertext.
    fn has_pending(&self) -> bool {
        !self.queue.is_empty()
            || self
                .tls
                .as_ref()
                .is_some_and(|t| !t.pending_out().is_empty())
    }
}

/// What a recovery from history asks of the fan-out.
enum HeldBack {
    /// While history is read: the fan-out's messages wait here instead of going out.
    Holding(Vec<Arc<Message>>),
    /// After the recovered items went out: (channel, id) pairs they held. An item kept
    /// before history was read may be fanned out only after; it is dropped here. A
    /// channel's first message not among them ends its entries (per-channel order: any
    /// such late copy comes before every newer message).
    Skipping(foldhash::HashSet<(Arc<str>, Arc<str>)>),
}

/// What [`Sink::held`] did with a fan-out batch.
pub(crate) enum Intake {
    /// Nothing is held back: deliver the batch as usual.
    Deliver,
    /// Kept for after the recovery.
    Kept,
    /// Over [`MAX_HELD_BACK`]: the client is being cut off as too slow.
    Slow,
    /// Deliver these (the batch less copies of recovered items).
    Filtered(Vec<Arc<Message>>),
}

/// Most messages held back while a hold reads history; past it the subscriber counts as
/// too slow (a channel that busy outruns any recovery).
pub(crate) const MAX_HELD_BACK: usize = 10_000;

/// A held client socket and what is waiting to be written to it.
pub(crate) struct Sink {
    out: Out,
    state: Mutex<SinkState>,
    max_queued_bytes: usize,
}

/// Where a sink writes.
enum Out {
    /// The connection's socket (plain, or TLS with the session in the state).
    Socket(TcpStream),
    /// One stream of an HTTP/2 connection (only its task writes it).
    H2(Box<Mutex<H2Stream>>),
}

impl Sink {
    pub(crate) fn new(stream: ClientStream, max_queued_bytes: usize) -> Sink {
        let (out, tls) = match stream {
            ClientStream::Socket(SocketStream { sock, tls }) => (Out::Socket(sock), tls),
            ClientStream::H2(h2) => (Out::H2(Box::new(Mutex::new(*h2))), None),
        };
        Sink {
            out,
            state: Mutex::new(SinkState {
                queue: VecDeque::new(),
                queued_bytes: 0,
                waker: None,
                finished: false,
                slow: false,
                active: false,
                notified: false,
                discarded: false,
                held_back: None,
                tls,
            }),
            max_queued_bytes,
        }
    }

    /// Takes the connection back once nobody else holds the sink.
    pub(crate) fn into_socket(self) -> ClientStream {
        match self.out {
            Out::Socket(sock) => ClientStream::Socket(SocketStream {
                sock,
                tls: self.state.into_inner().tls,
            }),
            Out::H2(h2) => ClientStream::H2(Box::new(h2.into_inner())),
        }
    }

    /// The client's address (an HTTP/2 stream's: unknown here).
    pub(crate) fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        match &self.out {
            Out::Socket(sock) => sock.peer_addr().ok(),
            Out::H2(_) => None,
        }
    }

    /// True for a TLS connection's sink.
    pub(crate) fn is_tls(&self) -> bool {
        self.state.lock().tls.is_some()
    }

    /// True for an HTTP/2 stream's sink: responses need a head of their own
    /// ([`Sink::enqueue_head`]), and bodies no HTTP/1 framing.
    pub(crate) fn is_h2(&self) -> bool {
        matches!(self.out, Out::H2(_))
    }

    /// Locks the write state (for the fan-out, which decides what to send under the lock so
    /// that concurrent batches keep their order).
    pub(crate) fn lock(&self) -> MutexGuard<'_, SinkState> {
        self.state.lock()
    }

    /// True if the connection is ending and takes nothing more.
    pub(crate) fn is_closed(st: &SinkState) -> bool {
        st.slow || st.finished
    }

    /// Sends `frames` in order: written now as far as the socket takes them, the rest queued.
    /// Returns false (and starts disconnecting the client) if the queue would exceed its bound.
    pub(crate) fn send<'a, F: Into<Frame<'a>> + Copy>(
        &self,
        st: &mut SinkState,
        frames: &[F],
    ) -> bool {
        if frames.is_empty() || st.slow {
            return !st.slow;
        }
        st.active = true;
        let Out::Socket(sock) = &self.out else {
            return self.send_h2(st, frames);
        };
        if st.tls.is_some() {
            return self.send_tls(sock, st, frames);
        }
        let mut written = 0;
        let was_empty = st.queue.is_empty();
        if was_empty {
            match write_now(sock, frames) {
                Ok(w) => written = w,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => {
                    // broken connection: the task sees it on its next read and ends
                    self.wake(st);
                    return true;
                }
            }
        }
        for f in frames {
            let f: Frame<'a> = (*f).into();
            let len = f.bytes().len();
            if written >= len {
                written -= len;
                continue;
            }
            st.queued_bytes += len - written + SLOT_COST;
            st.queue.push_back(f.queued(written));
            written = 0;
        }
        if st.queued_bytes > self.max_queued_bytes {
            self.cut_off(st);
            return false;
        }
        if was_empty && !st.queue.is_empty() {
            // the task starts watching for writability; while a backlog remains it already is
            self.wake(st);
        }
        true
    }

    /// The client is too slow: drop what is queued, shut the socket, end the hold.
    pub(crate) fn cut_off(&self, st: &mut SinkState) {
        st.slow = true;
        st.queue = VecDeque::new();
        st.queued_bytes = 0;
        if let Out::Socket(sock) = &self.out {
            let _ = socket2::SockRef::from(sock).shutdown(Shutdown::Both);
        }
        self.wake(st);
    }

    /// Queues `frame` without writing it yet: it goes out (first) when the connection's task
    /// next runs. Used for the initial response, so that the client sees nothing before the
    /// subscriptions that follow it are in place.
    pub(crate) fn enqueue(&self, st: &mut SinkState, frame: Bytes) {
        st.queued_bytes += frame.len() + SLOT_COST;
        st.queue.push_back(Queued::Bytes(frame));
    }

    /// From now until [`Sink::release`], [`Sink::held`] takes the fan-out's messages: a hold
    /// that subscribes and then reads history sends what it recovered before them.
    pub(crate) fn hold_back(&self, st: &mut SinkState) {
        st.held_back = Some(Box::new(HeldBack::Holding(Vec::new())));
    }

    /// Routes a fan-out batch while a recovery is in progress (see [`Intake`]).
    pub(crate) fn held(&self, st: &mut SinkState, messages: &[Arc<Message>]) -> Intake {
        match st.held_back.as_deref_mut() {
            None => Intake::Deliver,
            Some(HeldBack::Holding(held)) => {
                if held.len() + messages.len() > MAX_HELD_BACK {
                    st.held_back = None;
                    self.cut_off(st);
                    return Intake::Slow;
                }
                held.extend_from_slice(messages);
                Intake::Kept
            }
            Some(HeldBack::Skipping(recovered)) => {
                let mut pass = Vec::with_capacity(messages.len());
                for m in messages {
                    let recovered_copy = m.id().is_some_and(|id| {
                        recovered.remove(&(m.channel.clone(), Arc::<str>::from(id)))
                    });
                    if recovered_copy {
                        continue; // sent already, as recovered
                    }
                    recovered.retain(|(c, _)| *c != m.channel);
                    pass.push(m.clone());
                }
                if recovered.is_empty() {
                    st.held_back = None;
                }
                Intake::Filtered(pass)
            }
        }
    }

    /// Ends holding back: returns what was held, in fan-out order, and from now on drops
    /// late copies of the `recovered` (channel, id) pairs (see [`HeldBack::Skipping`]).
    pub(crate) fn release(
        &self,
        st: &mut SinkState,
        recovered: foldhash::HashSet<(Arc<str>, Arc<str>)>,
    ) -> Vec<Arc<Message>> {
        let held = match st.held_back.take().map(|b| *b) {
            Some(HeldBack::Holding(held)) => held,
            _ => Vec::new(),
        };
        if !recovered.is_empty() {
            st.held_back = Some(Box::new(HeldBack::Skipping(recovered)));
        }
        held
    }

    /// Marks that nothing more will be added; the hold ends once the queue is written.
    pub(crate) fn finish(&self, st: &mut SinkState) {
        st.finished = true;
        self.wake(st);
    }

    /// Wakes the connection's task with [`Wake::Notified`] (e.g. the fan-out asks a WebSocket
    /// to close or to refresh).
    pub(crate) fn notify(&self, st: &mut SinkState) {
        st.notified = true;
        self.wake(st);
    }

    /// Reads what the client sent (decrypted over TLS): WouldBlock when nothing is there,
    /// 0 at its end. For a caller that asked [`Input::Report`].
    pub(crate) fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let sock = match &self.out {
            Out::Socket(sock) => sock,
            Out::H2(h2) => return Self::try_read_h2(h2, buf),
        };
        let mut st = self.state.lock();
        let Some(tls) = st.tls.as_mut() else {
            drop(st);
            return sock.try_read(buf);
        };
        loop {
            if !tls.plain.is_empty() {
                let n = tls.plain.len().min(buf.len());
                buf[..n].copy_from_slice(&tls.plain[..n]);
                tls.plain.advance(n);
                if tls.plain.is_empty() {
                    tls.plain = bytes::BytesMut::new();
                }
                return Ok(n);
            }
            if tls.read_from(sock)? == Received::Closed && tls.plain.is_empty() {
                return Ok(0);
            }
        }
    }

    fn wake(&self, st: &mut SinkState) {
        if let Some(w) = st.waker.take() {
            w.wake();
        }
    }

    /// True when nothing waits to be written.
    pub(crate) fn is_drained(&self) -> bool {
        !self.state.lock().has_pending()
    }

    /// True once if bytes went out since the last call (for idle keep-alives).
    pub(crate) fn take_activity(&self) -> bool {
        std::mem::take(&mut self.state.lock().active)
    }

    /// Runs the connection until the hold ends or `timer` fires: flushes the queue when the
    /// socket is writable, discards what the client sends, notices when it goes away.
    pub(crate) fn wait<'a>(
        &'a self,
        timer: Option<Pin<&'a mut Sleep>>,
    ) -> impl Future<Output = Wake> + Send + 'a {
        self.wait_with(timer, Input::Discard)
    }

    /// Waits until the hold ends (no timer, input discarded). One `poll_fn`, so a hold that
    /// only waits keeps a few pointers, not a chain of nested futures.
    pub(crate) fn wait_end(&self) -> impl Future<Output = Ending> + Send + '_ {
        poll_fn(move |cx| loop {
            if let Wake::End(e) = ready!(self.poll_wait(cx, None, Input::Discard)) {
                return Poll::Ready(e);
            }
        })
    }

    /// As [`Sink::wait`], with client input handled as `input` says.
    pub(crate) fn wait_with<'a>(
        &'a self,
        mut timer: Option<Pin<&'a mut Sleep>>,
        input: Input,
    ) -> impl Future<Output = Wake> + Send + 'a {
        poll_fn(move |cx| self.poll_wait(cx, timer.as_mut(), input))
    }

    /// What [`Sink::wait_with`] polls: handles input and writability itself until something
    /// the caller must see happens.
    fn poll_wait(
        &self,
        cx: &mut Context<'_>,
        mut timer: Option<&mut Pin<&mut Sleep>>,
        input: Input,
    ) -> Poll<Wake> {
        loop {
            let event = ready!(self.poll_event(cx, timer.as_deref_mut(), input));
            match event {
                Event::Timer => return Poll::Ready(Wake::Timer),
                Event::End(e) => return Poll::Ready(Wake::End(e)),
                Event::Notified => return Poll::Ready(Wake::Notified),
                Event::Input if input == Input::Report => return Poll::Ready(Wake::Readable),
                Event::Input => {
                    if !self.discard_input() {
                        return Poll::Ready(Wake::End(Ending::ClientGone));
                    }
                }
                Event::Writable => {
                    if self.flush().is_err() {
                        return Poll::Ready(Wake::End(Ending::ClientGone));
                    }
                }
            }
        }
    }

    fn poll_event(
        &self,
        cx: &mut Context<'_>,
        timer: Option<&mut Pin<&mut Sleep>>,
        input: Input,
    ) -> Poll<Event> {
        let sock = match &self.out {
            Out::Socket(sock) => sock,
            Out::H2(h2) => return self.poll_event_h2(h2, cx, timer, input),
        };
        let queued = {
            let mut st = self.state.lock();
            if st.slow {
                return Poll::Ready(Event::End(Ending::Slow));
            }
            if std::mem::take(&mut st.notified) {
                return Poll::Ready(Event::Notified);
            }
            let queued = st.has_pending();
            if !queued && st.finished {
                return Poll::Ready(Event::End(Ending::Finished));
            }
            // registered even while waiting for writability, so that a notification or a
            // slow-consumer cut reaches the task at once
            match &st.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => st.waker = Some(cx.waker().clone()),
            }
            queued
        };
        if input != Input::Pause && sock.poll_read_ready(cx).is_ready() {
            return Poll::Ready(Event::Input);
        }
        if queued && sock.poll_write_ready(cx).is_ready() {
            return Poll::Ready(Event::Writable);
        }
        if let Some(t) = timer {
            if t.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Event::Timer);
            }
        }
        Poll::Pending
    }

    /// Writes queued bytes until the queue is empty or the socket is full.
    fn flush(&self) -> io::Result<()> {
        let sock = match &self.out {
            Out::Socket(sock) => sock,
            Out::H2(h2) => return self.flush_h2(h2),
        };
        let mut st = self.state.lock();
        if st.tls.is_some() {
            return self.flush_tls(sock, &mut st);
        }
        while !st.queue.is_empty() {
            let mut io = [IoSlice::new(&[]); MAX_IOV];
            let n = st
                .queue
                .iter()
                .zip(io.iter_mut())
                .map(|(f, slot)| *slot = IoSlice::new(f.bytes()))
                .count();
            let mut written = match sock.try_write_vectored(&io[..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(w) => w,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            };
            let mut freed = 0;
            while let Some(front) = st.queue.front_mut() {
                let len = front.bytes().len();
                if written < len {
                    front.advance(written);
                    freed += written;
                    break;
                }
                written -= len;
                freed += len + SLOT_COST;
                st.queue.pop_front();
            }
            st.queued_bytes -= freed.min(st.queued_bytes);
        }
        // drained: give the storage back so an idle subscriber holds no buffer
        st.queue = VecDeque::new();
        st.queued_bytes = 0;
        Ok(())
    }

    /// True when client bytes were dropped during the hold: the connection must close when
    /// the hold ends rather than serve a next request that lost its start.
    pub(crate) fn discarded_input(&self) -> bool {
        self.state.lock().discarded
    }

    /// Reads and drops what the client sends on a held connection; false on EOF or error.
    fn discard_input(&self) -> bool {
        let Out::Socket(sock) = &self.out else {
            return true;
        };
        let mut st = self.state.lock();
        if let Some(tls) = st.tls.as_mut() {
            for _ in 0..64 {
                match tls.read_from(sock) {
                    Ok(Received::Closed) => return false,
                    Ok(Received::Progress) => {
                        if !tls.plain.is_empty() {
                            tls.plain = bytes::BytesMut::new();
                            st.discarded = true;
                            return true;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                    Err(_) => return false,
                }
            }
            return true;
        }
        drop(st);
        let mut buf = [0u8; 256];
        for _ in 0..64 {
            match sock.try_read(&mut buf) {
                Ok(0) => return false,
                Ok(_) => self.state.lock().discarded = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(_) => return false,
            }
        }
        true
    }
}

/// Frames gathered on the stack by a fan-out delivery and handed to [`Sink::send`] a few at
/// a time, so a delivery allocates nothing.
pub(crate) struct Batch<'a> {
    frames: [Frame<'a>; BATCH],
    len: usize,
    /// Frames added, over all sends.
    pub(crate) count: u32,
}

const BATCH: usize = 32;
static NO_FRAME: Bytes = Bytes::new();

impl<'a> Batch<'a> {
    pub(crate) fn new() -> Self {
        Batch {
            frames: [Frame::Bytes(&NO_FRAME); BATCH],
            len: 0,
            count: 0,
        }
    }

    /// Adds a frame, sending the batch when it is full; false if the client is too slow.
    pub(crate) fn push(&mut self, sink: &Sink, st: &mut SinkState, frame: Frame<'a>) -> bool {
        if self.len == BATCH {
            if !sink.send(st, &self.frames[..self.len]) {
                return false;
            }
            self.len = 0;
        }
        self.frames[self.len] = frame;
        self.len += 1;
        self.count += 1;
        true
    }

    /// Sends what is left; false if the client is too slow.
    pub(crate) fn send(&mut self, sink: &Sink, st: &mut SinkState) -> bool {
        let ok = sink.send(st, &self.frames[..self.len]);
        self.len = 0;
        ok
    }
}

enum Event {
    Input,
    Writable,
    Timer,
    Notified,
    End(Ending),
}

#[cfg(test)]
mod tests;
