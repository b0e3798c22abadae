//! The sink's TLS write path: a batch sealed in thread-local scratch and written straight
//! to the socket under the sink's lock; what the socket does not take stays in the session
//! as ciphertext, and later frames queue as plaintext behind it (see the parent module).

use std::collections::VecDeque;
use std::io;
use std::net::Shutdown;

use tokio::net::TcpStream;

use super::{Frame, Sink, SinkState, SLOT_COST};
use crate::transport::tls::TlsSession;

/// Plaintext and ciphertext scratch buffers for sealing a batch on this thread.
struct Scratch {
    plain: Vec<u8>,
    cipher: Vec<u8>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = const {
        std::cell::RefCell::new(Scratch { plain: Vec::new(), cipher: Vec::new() })
    };
}

/// Scratch capacity kept between batches; a larger one is given back.
const SCRATCH_KEEP: usize = 128 * 1024;

/// Most plaintext sealed at once when flushing a TLS backlog.
const SEAL_STEP: usize = 64 * 1024;

impl Sink {
    /// [`Sink::send`] over TLS: with nothing pending, the frames are sealed as one run of
    /// records and written now; otherwise they queue as plaintext behind the backlog.
    pub(super) fn send_tls<'a, F: Into<Frame<'a>> + Copy>(
        &self,
        sock: &TcpStream,
        st: &mut SinkState,
        frames: &[F],
    ) -> bool {
        if st.has_pending() {
            for f in frames {
                let f: Frame<'a> = (*f).into();
                st.queued_bytes += f.bytes().len() + SLOT_COST;
                st.queue.push_back(f.queued(0));
            }
        } else {
            let tls = st.tls.as_mut().expect("a TLS sink");
            let kept = SCRATCH.with(|scratch| {
                let mut scratch = scratch.borrow_mut();
                let Scratch { plain, cipher } = &mut *scratch;
                plain.clear();
                cipher.clear();
                for f in frames {
                    plain.extend_from_slice((*f).into().bytes());
                }
                let kept = seal_and_write(tls, sock, plain, cipher);
                trim(plain);
                trim(cipher);
                kept
            });
            match kept {
                Ok(0) => return true,
                Ok(n) => {
                    st.queued_bytes += n;
                    self.wake(st);
                }
                Err(_) => {
                    // broken: the task sees it on its next read and ends
                    let _ = socket2::SockRef::from(sock).shutdown(Shutdown::Both);
                    self.wake(st);
                    return true;
                }
            }
        }
        if st.queued_bytes > self.max_queued_bytes {
            self.cut_off(st);
            return false;
        }
        true
    }

    /// [`Sink::flush`] over TLS: the sealed backlog first, then queued frames sealed in
    /// steps of [`SEAL_STEP`].
    pub(super) fn flush_tls(&self, sock: &TcpStream, st: &mut SinkState) -> io::Result<()> {
        loop {
            let tls = st.tls.as_mut().expect("a TLS sink");
            let before = tls.pending_out().len();
            let wrote = tls.write_out(sock);
            let written = before - tls.pending_out().len();
            st.queued_bytes -= written.min(st.queued_bytes);
            match wrote {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
            if st.queue.is_empty() {
                break;
            }
            let kept = SCRATCH.with(|scratch| {
                let mut scratch = scratch.borrow_mut();
                let Scratch { plain, cipher } = &mut *scratch;
                plain.clear();
                cipher.clear();
                let mut freed = 0;
                while let Some(front) = st.queue.front() {
                    let bytes = front.bytes();
                    if !plain.is_empty() && plain.len() + bytes.len() > SEAL_STEP {
                        break;
                    }
                    plain.extend_from_slice(bytes);
                    freed += bytes.len() + SLOT_COST;
                    st.queue.pop_front();
                }
                st.queued_bytes -= freed.min(st.queued_bytes);
                let tls = st.tls.as_mut().expect("a TLS sink");
                let kept = seal_and_write(tls, sock, plain, cipher);
                trim(plain);
                trim(cipher);
                kept
            })?;
            st.queued_bytes += kept;
            if kept > 0 {
                return Ok(());
            }
        }
        st.queue = VecDeque::new();
        st.queued_bytes = 0;
        Ok(())
    }
}

/// Seals `plain` into `cipher` and writes what the socket takes; the rest is kept in the
/// session. Returns how many bytes were kept.
fn seal_and_write(
    tls: &mut TlsSession,
    sock: &TcpStream,
    plain: &[u8],
    cipher: &mut Vec<u8>,
) -> io::Result<usize> {
    tls.seal(plain, cipher)?;
    let n = match sock.try_write(cipher) {
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
        Err(e) => return Err(e),
    };
    let rest = &cipher[n..];
    if !rest.is_empty() {
        tls.keep_out(rest);
    }
    Ok(rest.len())
}

/// Gives back a scratch buffer that grew past [`SCRATCH_KEEP`].
fn trim(buf: &mut Vec<u8>) {
    buf.clear();
    if buf.capacity() > SCRATCH_KEEP {
        *buf = Vec::new();
    }
}
