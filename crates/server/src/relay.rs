//! Relaying an origin's ordinary (non-GRIP) response to the client unchanged: status, reason,
//! every header but the hop-by-hop ones (repeated headers kept), and the body streamed as it
//! arrives, whatever its size, re-framed only where the client's HTTP version requires it.
//!
//! Framing: an origin `Content-Length` is kept and the body copied as is; otherwise an
//! HTTP/1.1 client gets the body chunked, and an HTTP/1.0 client gets it delimited by closing
//! the connection; an HTTP/2 client gets DATA frames and the stream's end. Responses to HEAD,
//! and 1xx/204/304 responses, have no body. Heads and bodies go out through the transport's
//! functions, which write HTTP/1 or HTTP/2 as the client speaks.

use bytes::{Buf, Bytes};
use gripway_proto::chunked::{write_chunk_header, LAST_CHUNK};
use gripway_proto::http1::{RequestHead, Version};
use http::header::{HeaderValue, CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, Method};

use crate::error::Refusal;
use crate::origin::headers::strip_hop_by_hop;
use crate::origin::OriginResponse;
use crate::transport::{
    end_body, respond_full, write_all_progress, write_body, write_head, ClientConn, WriteFailed,
};
use crate::Shared;

/// A complete response Gripway writes itself (a GRIP response without a hold).
pub(crate) struct FullResponse {
    pub(crate) status: u16,
    pub(crate) reason: Option<String>,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl FullResponse {
    /// A placeholder left where a response was taken out.
    pub(crate) fn empty() -> FullResponse {
        FullResponse {
            status: 0,
            reason: None,
            headers: http::HeaderMap::new(),
            body: Bytes::new(),
        }
    }
}

fn bodyless(method: &Method, status: u16) -> bool {
    method == Method::HEAD || (100..200).contains(&status) || status == 204 || status == 304
}

/// Streams the origin's response to the client; true if the connection may serve another
/// request.
pub(crate) async fn relay(
    shared: &Shared,
    conn: &mut ClientConn,
    req: &RequestHead,
    mut resp: OriginResponse,
) -> bool {
    let status = resp.status.as_u16();
    let mut headers = std::mem::take(&mut resp.headers);
    let length = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    strip_hop_by_hop(&mut headers);
    let no_body = bodyless(&req.method, status);
    let mut keep_alive = req.keep_alive();
    let h2 = conn.sock.is_h2();
    enum Framing {
        None,
        Length,
        Chunked,
        Close,
    }
    let framing = if no_body {
        if let Some(n) = length {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(n));
        }
        Framing::None
    } else if let Some(n) = length {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(n));
        Framing::Length
    } else if req.version == Version::Http11 && !h2 {
        headers.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        Framing::Chunked
    } else {
        // HTTP/1.0: the close ends the body; HTTP/2: the stream's end
        keep_alive = h2;
        Framing::Close
    };
    set_connection(&mut headers, req.version, keep_alive);
    let stall = shared.config.proxy.write_timeout;
    let end = matches!(framing, Framing::None);
    let head = write_head(
        &mut conn.sock,
        req.version,
        status,
        resp.reason.as_deref(),
        &headers,
        end,
        stall,
    );
    if let Err(e) = head.await {
        return write_failed(shared, e, stall);
    }
    if end {
        return keep_alive;
    }
    let mut sent: u64 = 0;
    let chunked = matches!(framing, Framing::Chunked);
    while let Some(chunk) = resp.body.next_chunk().await {
        let Ok(chunk) = chunk else {
            // the origin broke off mid-body: the client must see the response is incomplete
            return false;
        };
        sent += chunk.len() as u64;
        let written = if chunked {
            let mut frame = Vec::with_capacity(12);
            write_chunk_header(&mut frame, chunk.len());
            // one vectored write for size line, data and CRLF
            let mut parts = (&frame[..]).chain(&chunk[..]).chain(&b"\r\n"[..]);
            write_all_progress(&mut conn.sock, &mut parts, stall).await
        } else {
            write_body(&mut conn.sock, &chunk, stall).await
        };
        if let Err(e) = written {
            return write_failed(shared, e, stall);
        }
    }
    if length.is_some_and(|n| n != sent) {
        return false;
    }
    let ended = if chunked {
        write_all_progress(&mut conn.sock, &mut &LAST_CHUNK[..], stall).await
    } else {
        end_body(&mut conn.sock, stall).await
    };
    if let Err(e) = ended {
        return write_failed(shared, e, stall);
    }
    keep_alive
}

/// Writes a complete response with a `Content-Length`; true if the connection may serve
/// another request.
pub(crate) async fn write_full(
    shared: &Shared,
    conn: &mut ClientConn,
    req: &RequestHead,
    resp: FullResponse,
) -> bool {
    let mut headers = resp.headers;
    let keep_alive = req.keep_alive();
    let no_body = bodyless(&req.method, resp.status);
    if !(100..200).contains(&resp.status) && resp.status != 204 {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(resp.body.len()));
    }
    set_connection(&mut headers, req.version, keep_alive);
    let stall = shared.config.proxy.write_timeout;
    let written = respond_full(
        &mut conn.sock,
        req.version,
        resp.status,
        resp.reason.as_deref(),
        &headers,
        (!no_body).then_some(&resp.body),
        stall,
    );
    if let Err(e) = written.await {
        return write_failed(shared, e, stall);
    }
    keep_alive
}

/// Counts a client that stopped taking a response; either way the connection closes.
fn write_failed(shared: &Shared, e: WriteFailed, stall: std::time::Duration) -> bool {
    if e == WriteFailed::Stalled {
        let refusal = Refusal::client(
            408,
            "response-write-timeout",
            format!("client took no response bytes for {stall:?}; dropped\n"),
        );
        shared.metrics.error(&refusal);
        refusal.log("");
    }
    false
}

/// Says whether the connection stays open, in the form the client's version expects.
pub(crate) fn set_connection(headers: &mut HeaderMap, version: Version, keep_alive: bool) {
    headers.remove(CONNECTION);
    match (version, keep_alive) {
        (Version::Http11, false) => {
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        (Version::Http10, true) => {
            headers.insert(CONNECTION, HeaderValue::from_static("keep-alive"));
        }
        _ => {}
    }
}
