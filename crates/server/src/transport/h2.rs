//! One HTTP/2 stream at the transport seam ([`H2Stream`]): its request body read from the
//! `h2` crate's `RecvStream`, its response head sent as a structured HEADERS frame (status
//! and header map, the connection-specific headers HTTP/2 forbids removed) and its body as
//! DATA frames within the stream's and the connection's flow-control windows.
//!
//! The connection itself (the preface, SETTINGS, the frames of every stream) is the `h2`
//! crate's, driven by [`crate::http2`]; nothing here writes HTTP/2 framing. Also here: the
//! prior-knowledge preface that tells an h2c connection on the plain port from HTTP/1
//! ([`PREFACE`]), and [`Rewind`], which hands `h2` the bytes read while telling them apart.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use h2::server::SendResponse;
use h2::{RecvStream, SendStream};
use http::header::{HeaderName, CONNECTION, TE, TRANSFER_ENCODING, UPGRADE};
use http::HeaderMap;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{BodyProblem, ClientStream, WriteFailed};

/// What an HTTP/2 client with prior knowledge sends first (RFC 9113 §3.4).
pub(crate) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Most bytes asked of the windows for one DATA frame: a frame of the default maximum size.
const DATA_STEP: usize = 16 * 1024;

/// One HTTP/2 stream: where its response goes and its request body comes from.
pub(crate) struct H2Stream {
    pub(crate) respond: SendResponse<Bytes>,
    /// Once the response head went out: the body's side.
    pub(crate) send: Option<SendStream<Bytes>>,
    /// A held stream's response head, queued by the fan-out for the stream's task to send
    /// before the queued body.
    pub(crate) head: Option<Box<http::Response<()>>>,
    /// The request body, until it is read (a WebSocket's frames, for its whole life).
    pub(crate) recv: Option<RecvStream>,
    /// A WebSocket's frames received and not yet taken ([`crate::hold::sink::Sink::try_read`]).
    pub(crate) inbox: Bytes,
    /// The client ended its side of the stream.
    pub(crate) recv_done: bool,
    /// A WebSocket (RFC 8441): the request's stream carries the client's frames for the
    /// connection's life, so answering it does not drop it.
    pub(crate) websocket: bool,
    /// The connection is TLS.
    pub(crate) tls: bool,
}

/// Connection-specific headers: meaningless, and malformed, in HTTP/2 (RFC 9113 §8.2.2).
pub(crate) fn strip_connection_headers(headers: &mut HeaderMap) {
    for name in [CONNECTION, TRANSFER_ENCODING, UPGRADE, TE] {
        headers.remove(name);
    }
    for name in ["keep-alive", "proxy-connection"] {
        headers.remove(HeaderName::from_static(name));
    }
}

/// An HTTP/2 response head: `status` and `headers`, less the connection-specific ones.
pub(crate) fn response_head(status: u16, mut headers: HeaderMap) -> http::Response<()> {
    strip_connection_headers(&mut headers);
    let mut response = http::Response::new(());
    *response.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_GATEWAY);
    *response.headers_mut() = headers;
    response
}

impl H2Stream {
    /// Reads the request body, at most `max` bytes, giving the windows back as it goes.
    pub(crate) async fn read_body(&mut self, max: usize) -> Result<Bytes, BodyProblem> {
        let Some(mut recv) = self.recv.take() else {
            return Ok(Bytes::new());
        };
        let mut body = BytesMut::new();
        while let Some(data) = recv.data().await {
            let data = data.map_err(|_| BodyProblem::Gone)?;
            let _ = recv.flow_control().release_capacity(data.len());
            if body.len() + data.len() > max {
                return Err(BodyProblem::TooLarge);
            }
            body.extend_from_slice(&data);
        }
        Ok(body.freeze())
    }

    /// Sends the response head; `end`: there is no body.
    pub(crate) fn start(
        &mut self,
        status: u16,
        headers: HeaderMap,
        end: bool,
    ) -> Result<(), WriteFailed> {
        let response = response_head(status, headers);
        // whatever the client still sends of its body is not wanted once it is answered (a
        // WebSocket's stream is its frames)
        if !self.websocket {
            self.recv = None;
        }
        match self.respond.send_response(response, end) {
            Ok(send) => {
                self.send = (!end).then_some(send);
                Ok(())
            }
            Err(_) => Err(WriteFailed::Gone),
        }
    }

    /// Sends `data` as DATA frames as the windows open, then END_STREAM if `end`; gives up
    /// when the windows stay shut for `stall`.
    pub(crate) async fn send_data(
        &mut self,
        mut data: Bytes,
        end: bool,
        stall: Duration,
    ) -> Result<(), WriteFailed> {
        let Some(send) = self.send.as_mut() else {
            return if data.is_empty() {
                Ok(())
            } else {
                Err(WriteFailed::Gone)
            };
        };
        while !data.is_empty() {
            send.reserve_capacity(data.len().min(DATA_STEP));
            let granted =
                tokio::time::timeout(stall, std::future::poll_fn(|cx| send.poll_capacity(cx)))
                    .await;
            let n = match granted {
                Ok(Some(Ok(n))) => n,
                Ok(_) => return Err(WriteFailed::Gone),
                Err(_) => {
                    send.send_reset(h2::Reason::CANCEL);
                    return Err(WriteFailed::Stalled);
                }
            };
            if n == 0 {
                continue;
            }
            let chunk = data.split_to(n.min(data.len()));
            let last = end && data.is_empty();
            send.send_data(chunk, last).map_err(|_| WriteFailed::Gone)?;
            if last {
                self.send = None;
                return Ok(());
            }
        }
        if end {
            send.send_data(Bytes::new(), true)
                .map_err(|_| WriteFailed::Gone)?;
            self.send = None;
        }
        Ok(())
    }
}

/// An HTTP/2 stream's response as [`crate::transport`]'s functions write it.
pub(crate) fn stream_of(sock: &mut ClientStream) -> Option<&mut H2Stream> {
    match sock {
        ClientStream::H2(h) => Some(h),
        ClientStream::Socket(_) => None,
    }
}

/// A byte stream that first hands out bytes already read from it (the preface that told
/// HTTP/2 from HTTP/1), then reads on.
pub(crate) struct Rewind<T> {
    pub(crate) pre: BytesMut,
    pub(crate) io: T,
}

impl<T: AsyncRead + Unpin> AsyncRead for Rewind<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.pre.is_empty() {
            let n = this.pre.len().min(buf.remaining());
            buf.put_slice(&this.pre[..n]);
            this.pre.advance(n);
            if this.pre.is_empty() {
                this.pre = BytesMut::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Rewind<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_specific_headers_are_removed() {
        let mut h = HeaderMap::new();
        for (n, v) in [
            ("connection", "close"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("content-type", "text/plain"),
        ] {
            h.insert(HeaderName::from_static(n), v.parse().unwrap());
        }
        strip_connection_headers(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("content-type"));
    }
}
