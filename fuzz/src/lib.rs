//! Helpers shared by the fuzz targets: turning fuzz bytes into header maps and splitting an
//! input into the reads a socket might deliver.

use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;

/// Reads `name: value` lines (LF or CRLF) up to the first blank line into a header map,
/// skipping lines that are not a valid header; returns the map and the bytes after the blank
/// line (the body). A `:status: N` line sets the returned status (default 200).
pub fn split_head(data: &[u8]) -> (u16, HeaderMap, &[u8]) {
    let (head, body) = match find(data, b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &[][..]),
    };
    let mut status = 200;
    let mut headers = HeaderMap::new();
    for line in head.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(rest) = line.strip_prefix(b":status:") {
            if let Some(code) = std::str::from_utf8(rest)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                status = code;
            }
            continue;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let value = line[colon + 1..].trim_ascii_start();
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(value),
        ) {
            headers.append(name, value);
        }
    }
    (status, headers, body)
}

/// Splits `data` into pieces whose lengths cycle through `sizes` (each at least 1), as a
/// socket might deliver them.
pub fn pieces<'a>(data: &'a [u8], sizes: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut rest = data;
    let mut i = 0;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let size = if sizes.is_empty() {
            rest.len()
        } else {
            usize::from(sizes[i % sizes.len()]).max(1)
        };
        i += 1;
        let (piece, after) = rest.split_at(size.min(rest.len()));
        rest = after;
        Some(piece)
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
