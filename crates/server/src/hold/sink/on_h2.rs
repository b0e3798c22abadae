//! A held HTTP/2 stream's side of the [`Sink`]: there is no socket to write to, so the
//! fan-out only queues (the same zero-copy entries as for a socket: a message and which of
//! its encodings, or a `Bytes` slice) and wakes the stream's task. The task turns the queue
//! into frames: a response head waiting in the stream ([`H2Stream::head`], queued by
//! [`Sink::enqueue_head`]) into HEADERS, then the queued bytes into DATA
//! frames as the stream's and the connection's windows allow (`reserve_capacity`, then
//! what `capacity` grants; a message's encoding is copied into the frame's own `Bytes`, a
//! `Bytes` entry is sliced). When the hold finishes with everything written, the stream
//! ends (END_STREAM).
//!
//! A WebSocket over HTTP/2 (RFC 8441) also reads: the client's frames arrive as DATA frames,
//! one held at a time in [`H2Stream::inbox`] until the session takes it
//! ([`Sink::try_read`]).
//!
//! A stream whose windows stay shut while items are published is cut off like a slow
//! HTTP/1 client once its queue passes the bound: RST_STREAM (CANCEL) for that stream only.
//! A client that resets the stream (`poll_reset`) ends the hold as gone.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::time::Sleep;

use super::{Ending, Event, Frame, Queued, Sink, SinkState, SLOT_COST};
use crate::transport::h2::H2Stream;

/// Most bytes asked of the windows at once, so one busy stream does not take the whole
/// connection window from the others.
const FLUSH_STEP: usize = 64 * 1024;

impl Sink {
    /// Queues an HTTP/2 response head (under the sink's lock); its body follows through
    /// [`Sink::send`]. A stream has one head: a second one is ignored.
    pub(crate) fn enqueue_head(&self, st: &mut SinkState, head: http::Response<()>) {
        let super::Out::H2(h2) = &self.out else {
            return;
        };
        let mut h = h2.lock();
        if h.head.is_some() || h.send.is_some() {
            return;
        }
        h.head = Some(Box::new(head));
        st.active = true;
        self.wake(st);
    }

    /// [`Sink::send`] on an HTTP/2 stream: queue, and wake the task to write.
    pub(super) fn send_h2<'a, F: Into<Frame<'a>> + Copy>(
        &self,
        st: &mut SinkState,
        frames: &[F],
    ) -> bool {
        let was_empty = st.queue.is_empty();
        for f in frames {
            let f: Frame<'a> = (*f).into();
            let len = f.bytes().len();
            if len == 0 {
                continue;
            }
            st.queued_bytes += len + SLOT_COST;
            st.queue.push_back(f.queued(0));
        }
        if st.queued_bytes > self.max_queued_bytes {
            self.cut_off(st);
            return false;
        }
        if was_empty && !st.queue.is_empty() {
            self.wake(st);
        }
        true
    }

    /// [`Sink::poll_event`] for an HTTP/2 stream: what the stream's windows, a reset from
    /// the client, the fan-out and the timer say.
    pub(super) fn poll_event_h2(
        &self,
        h2: &Mutex<H2Stream>,
        cx: &mut Context<'_>,
        timer: Option<&mut Pin<&mut Sleep>>,
        input: super::Input,
    ) -> Poll<Event> {
        let (pending, queued, finished, slow, notified) = {
            let mut st = self.state.lock();
            match &st.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => st.waker = Some(cx.waker().clone()),
            }
            let notified = std::mem::take(&mut st.notified);
            let pending: usize = st.queue.iter().map(|q| q.bytes().len()).sum();
            (
                pending,
                !st.queue.is_empty(),
                st.finished,
                st.slow,
                notified,
            )
        };
        let mut h = h2.lock();
        let queued = queued || h.head.is_some();
        if slow {
            // cut off: this stream only; the connection's other streams go on
            match h.send.as_mut() {
                Some(send) => send.send_reset(h2::Reason::CANCEL),
                None => h.respond.send_reset(h2::Reason::CANCEL),
            }
            h.send = None;
            return Poll::Ready(Event::End(Ending::Slow));
        }
        if notified {
            return Poll::Ready(Event::Notified);
        }
        if !queued && finished {
            if let Some(mut send) = h.send.take() {
                let _ = send.send_data(Bytes::new(), true);
            }
            return Poll::Ready(Event::End(Ending::Finished));
        }
        let reset = match h.send.as_mut() {
            Some(send) => send.poll_reset(cx),
            None => h.respond.poll_reset(cx),
        };
        if reset.is_ready() {
            return Poll::Ready(Event::End(Ending::ClientGone));
        }
        // a WebSocket's frames from the client: one DATA frame at a time, its window given
        // back as it arrives (the next is not read before this one is taken, so the session's
        // pause holds the client back as TCP would)
        if input == super::Input::Report {
            if !h.inbox.is_empty() || h.recv_done {
                return Poll::Ready(Event::Input);
            }
            if let Some(recv) = h.recv.as_mut() {
                match recv.poll_data(cx) {
                    Poll::Ready(Some(Ok(data))) => {
                        let _ = recv.flow_control().release_capacity(data.len());
                        h.inbox = data;
                        return Poll::Ready(Event::Input);
                    }
                    Poll::Ready(Some(Err(_))) => {
                        return Poll::Ready(Event::End(Ending::ClientGone))
                    }
                    Poll::Ready(None) => {
                        h.recv_done = true;
                        return Poll::Ready(Event::Input);
                    }
                    Poll::Pending => {}
                }
            }
        }
        if queued {
            if let Some(send) = h.send.as_mut() {
                // what is queued, asked of the windows (a step at a time)
                send.reserve_capacity(pending.min(FLUSH_STEP));
                if send.capacity() > 0 {
                    return Poll::Ready(Event::Writable);
                }
            }
            match h.send.as_mut() {
                // the head goes out at once
                None => return Poll::Ready(Event::Writable),
                Some(send) => match send.poll_capacity(cx) {
                    Poll::Ready(Some(Ok(_))) => return Poll::Ready(Event::Writable),
                    Poll::Ready(_) => return Poll::Ready(Event::End(Ending::ClientGone)),
                    Poll::Pending => {}
                },
            }
        }
        drop(h);
        if let Some(t) = timer {
            if t.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Event::Timer);
            }
        }
        Poll::Pending
    }

    /// [`Sink::try_read`] on an HTTP/2 stream: what the last DATA frame brought.
    pub(super) fn try_read_h2(h2: &Mutex<H2Stream>, buf: &mut [u8]) -> io::Result<usize> {
        let mut h = h2.lock();
        if h.inbox.is_empty() {
            return if h.recv_done {
                Ok(0)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            };
        }
        let n = h.inbox.len().min(buf.len());
        buf[..n].copy_from_slice(&h.inbox[..n]);
        bytes::Buf::advance(&mut h.inbox, n);
        Ok(n)
    }

    /// [`Sink::flush`] for an HTTP/2 stream: the queue as HEADERS and DATA frames, as far as
    /// the windows allow.
    pub(super) fn flush_h2(&self, h2: &Mutex<H2Stream>) -> io::Result<()> {
        let gone = || io::Error::from(io::ErrorKind::BrokenPipe);
        let mut st = self.state.lock();
        let st = &mut *st;
        let mut h = h2.lock();
        if let Some(head) = h.head.take() {
            let send = h.respond.send_response(*head, false).map_err(|_| gone())?;
            h.send = Some(send);
        }
        while !st.queue.is_empty() {
            let Some(send) = h.send.as_mut() else {
                // bytes with no head before them cannot be sent
                st.queue.pop_front();
                continue;
            };
            let pending: usize = st.queue.iter().map(|q| q.bytes().len()).sum();
            send.reserve_capacity(pending.min(FLUSH_STEP));
            let mut room = send.capacity();
            if room == 0 {
                return Ok(());
            }
            while room > 0 {
                let Some(front) = st.queue.front_mut() else {
                    break;
                };
                let len = front.bytes().len();
                let n = len.min(room);
                let chunk = match front {
                    Queued::Bytes(b) => b.split_to(n),
                    other => {
                        let c = Bytes::copy_from_slice(&other.bytes()[..n]);
                        other.advance(n);
                        c
                    }
                };
                if n > 0 {
                    send.send_data(chunk, false).map_err(|_| gone())?;
                }
                room -= n;
                st.queued_bytes -= n.min(st.queued_bytes);
                if n == len {
                    st.queue.pop_front();
                    st.queued_bytes -= SLOT_COST.min(st.queued_bytes);
                }
            }
        }
        // drained: give the storage back so an idle subscriber holds no buffer
        st.queue = VecDeque::new();
        st.queued_bytes = 0;
        Ok(())
    }
}
