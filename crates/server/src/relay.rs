//! Relaying an origin's ordinary (non-GRIP) response to the client unchanged: status, reason,
//! every header but the hop-by-hop ones (repeated headers kept), and the body streamed as it
//! arrives, whatever its size, re-framed only where the client's HTTP version requires it.
//!
//! Framing: an origin `Content-Length` is kept and the body copied as is; otherwise an
//! HTTP/1.1 client gets the body chunked, and an HTTP/1.0 client gets it delimited by closing
//! the connection. Responses to HEAD, and 1xx/204/304 responses, have no body.

use bytes::{Buf, Bytes, BytesMut};
use gripway_proto::chunked::{write_chunk_header, LAST_CHUNK};
use gripway_proto::http1::{write_response_head, RequestHead, Version};
use http::header::{HeaderValue, CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, Method};
use tokio::io::AsyncWriteExt;

use crate::conn::ClientConn;
use crate::origin::OriginResponse;
use crate::proxy::headers::strip_hop_by_hop;
use crate::proxy::Next;

/// A complete response Gripway writes itself (a GRIP response without a hold).
pub(crate) struct FullResponse {
    pub(crate) status: u16,
    pub(crate) reason: Option<String>,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

fn bodyless(method: &Method, status: u16) -> bool {
    method == Method::HEAD || (100..200).contains(&status) || status == 204 || status == 304
}

/// Streams the origin's response to the client.
pub(crate) async fn relay(
    conn: &mut ClientConn,
    req: &RequestHead,
    mut resp: OriginResponse,
) -> Next {
    let status = resp.status.as_u16();
    let mut headers = std::mem::take(&mut resp.headers);
    let length = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    strip_hop_by_hop(&mut headers);
    let no_body = bodyless(&req.method, status);
    let mut keep_alive = req.keep_alive();
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
    } else if req.version == Version::Http11 {
        headers.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        Framing::Chunked
    } else {
        keep_alive = false;
        Framing::Close
    };
    set_connection(&mut headers, req.version, keep_alive);
    let mut out = BytesMut::with_capacity(512);
    write_response_head(
        &mut out,
        req.version,
        status,
        resp.reason.as_deref(),
        &headers,
    );
    if conn.sock.write_all(&out).await.is_err() {
        return Next::Close;
    }
    if matches!(framing, Framing::None) {
        return if keep_alive {
            Next::KeepAlive
        } else {
            Next::Close
        };
    }
    let mut sent: u64 = 0;
    let chunked = matches!(framing, Framing::Chunked);
    while let Some(chunk) = resp.body.next_chunk().await {
        let Ok(chunk) = chunk else {
            // the origin broke off mid-body: the client must see the response is incomplete
            return Next::Close;
        };
        sent += chunk.len() as u64;
        let written = if chunked {
            let mut frame = Vec::with_capacity(12);
            write_chunk_header(&mut frame, chunk.len());
            // one vectored write for size line, data and CRLF
            let mut parts = (&frame[..]).chain(&chunk[..]).chain(&b"\r\n"[..]);
            conn.sock.write_all_buf(&mut parts).await
        } else {
            conn.sock.write_all(&chunk).await
        };
        if written.is_err() {
            return Next::Close;
        }
    }
    if chunked && conn.sock.write_all(LAST_CHUNK).await.is_err() {
        return Next::Close;
    }
    if length.is_some_and(|n| n != sent) {
        return Next::Close;
    }
    if keep_alive {
        Next::KeepAlive
    } else {
        Next::Close
    }
}

/// Writes a complete response with a `Content-Length`.
pub(crate) async fn write_full(
    conn: &mut ClientConn,
    req: &RequestHead,
    resp: FullResponse,
) -> Next {
    let mut headers = resp.headers;
    let keep_alive = req.keep_alive();
    let no_body = bodyless(&req.method, resp.status);
    if !(100..200).contains(&resp.status) && resp.status != 204 {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(resp.body.len()));
    }
    set_connection(&mut headers, req.version, keep_alive);
    let mut out = BytesMut::with_capacity(256 + resp.body.len());
    write_response_head(
        &mut out,
        req.version,
        resp.status,
        resp.reason.as_deref(),
        &headers,
    );
    if !no_body {
        out.extend_from_slice(&resp.body);
    }
    if conn.sock.write_all(&out).await.is_err() || !keep_alive {
        return Next::Close;
    }
    Next::KeepAlive
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
