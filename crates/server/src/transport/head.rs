//! Reading one HTTP/1.x request head from a byte stream, within a time and a size limit:
//! the first step of every request on the client listener (`conn`) and on the publish
//! listener (`publish_listener`), so both refuse a bad head the same way.
//!
//! Linear in the head's size however it is dripped in: each byte is scanned once for the end
//! of the head ([`HeadScan`]) and the head is parsed once, when that end is there. The head
//! may be at most `max` bytes, exactly, whether it comes in one read or many; the buffer grows
//! with what arrives.

use std::time::Duration;

use bytes::BytesMut;
use gripway_proto::http1::{parse_request_head, HeadError, HeadScan, RequestHead};
use tokio::io::AsyncReadExt;

use crate::error::Refusal;
use crate::transport::ClientStream;

/// What reading a request head came to.
pub(crate) enum HeadRead {
    /// A whole, well-formed head; `buf` holds what followed it.
    Head(RequestHead),
    /// The peer closed, or stayed silent for the whole wait: close without an answer.
    Closed,
    /// A TLS record that does not decrypt (the peer was told by an alert): count it, close.
    Broken(Refusal),
    /// A head that is too large, malformed, cut off by the wait: answer it, then close.
    Bad(Refusal),
}

/// Reads one request head from `sock` (after what `buf` already holds) within `wait`, at
/// most `max` bytes. Refusals are the client's; a caller on another listener re-labels them.
pub(crate) async fn read_head(
    sock: &mut ClientStream,
    buf: &mut BytesMut,
    max: usize,
    wait: Duration,
) -> HeadRead {
    let read = async {
        let mut scan = HeadScan::default();
        loop {
            if !buf.is_empty() {
                match scan.scan(buf, max) {
                    Ok(Some(end)) => {
                        let raw = buf.split_to(end);
                        return match parse_request_head(&raw) {
                            Ok(Some((head, _))) => Ok(Some(head)),
                            // the scan found the blank line: the parser cannot want more
                            Ok(None) => Err(Problem::Bad(HeadError::Malformed(
                                "incomplete request head".into(),
                            ))),
                            Err(e) => Err(Problem::Bad(e)),
                        };
                    }
                    Ok(None) => {}
                    Err(HeadError::TooLarge) => return Err(Problem::TooLarge),
                    Err(e) => return Err(Problem::Bad(e)),
                }
            }
            if buf.capacity() - buf.len() < 512 {
                // grow with what arrives, never past the limit
                let len = buf.len();
                let want = len.max(1024).min(max.saturating_sub(len)).max(1);
                buf.reserve(want);
            }
            match sock.read_buf(buf).await {
                Ok(0) if buf.is_empty() => return Ok(None),
                Ok(0) => return Err(Problem::Truncated),
                Ok(_) => {}
                // a TLS record that does not decrypt (the client was told by an alert)
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    return Err(Problem::Tls(e.to_string()))
                }
                Err(_) => return Ok(None),
            }
        }
    };
    let problem = match tokio::time::timeout(wait, read).await {
        Ok(Ok(Some(head))) => return HeadRead::Head(head),
        Ok(Ok(None)) => return HeadRead::Closed,
        Ok(Err(p)) => p,
        Err(_) if buf.is_empty() => return HeadRead::Closed,
        Err(_) => Problem::Timeout,
    };
    HeadRead::Bad(match problem {
        Problem::Tls(e) => {
            return HeadRead::Broken(Refusal::client(
                400,
                "tls-bad-record",
                format!("TLS: {e}\n"),
            ))
        }
        Problem::Truncated => return HeadRead::Closed,
        Problem::TooLarge => {
            Refusal::client(431, "request-head-too-large", "Request header too large.\n")
        }
        Problem::Bad(HeadError::BareLf) => Refusal::client(
            400,
            "bare-lf",
            "Bad request: a line of the request head ends in LF without CR.\n",
        ),
        Problem::Bad(e) => Refusal::client(400, "bad-request-head", format!("Bad request: {e}\n")),
        Problem::Timeout => Refusal::client(408, "request-head-timeout", "Request timed out.\n"),
    })
}

enum Problem {
    Tls(String),
    TooLarge,
    Bad(HeadError),
    Truncated,
    Timeout,
}
