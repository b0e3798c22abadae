//! The handshake's headers as every WebSocket-over-HTTP request repeats them, kept for the
//! life of the connection in one boxed byte string rather than a `HeaderMap` (which costs
//! ~0.7 KiB for a handful of headers, and keeps every client header value's buffer alive).
//! A `HeaderMap` is rebuilt from it only for a request about to go out.
//!
//! Layout: per header, in order (repeated names stay repeated), the name's length, the value's
//! tag, the name, the value. Lengths are LEB128. A value's tag is `2 × length` for a value
//! kept as bytes, or `2 × index + 1` for one of [`STATIC_VALUES`] (the values Gripway itself
//! adds to every handshake, which cost nothing as `&'static str`).

use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;

use crate::origin::headers::GRIP_FEATURES;

/// Values stored by index rather than by bytes.
const STATIC_VALUES: &[&str] = &[GRIP_FEATURES, "grip", "13"];

/// The headers, encoded.
#[derive(Clone, Default)]
pub(crate) struct BaseHeaders(Box<[u8]>);

impl BaseHeaders {
    /// Encodes `headers` in order, leaving out those `skip` names.
    pub(crate) fn new(headers: &HeaderMap, skip: impl Fn(&HeaderName) -> bool) -> BaseHeaders {
        let mut out = Vec::new();
        for (name, value) in headers {
            if skip(name) {
                continue;
            }
            let value = value.as_bytes();
            let tag = match STATIC_VALUES.iter().position(|s| s.as_bytes() == value) {
                Some(i) => 2 * i + 1,
                None => 2 * value.len(),
            };
            put_len(&mut out, name.as_str().len());
            put_len(&mut out, tag);
            out.extend_from_slice(name.as_str().as_bytes());
            if tag % 2 == 0 {
                out.extend_from_slice(value);
            }
        }
        BaseHeaders(out.into_boxed_slice())
    }

    /// The headers as a map with room for `extra` more.
    pub(crate) fn to_map(&self, extra: usize) -> HeaderMap {
        let mut map = HeaderMap::with_capacity(self.len() + extra);
        let mut rest = &self.0[..];
        while !rest.is_empty() {
            let (Some(name_len), Some(tag)) = (take_len(&mut rest), take_len(&mut rest)) else {
                break;
            };
            let Some((name, tail)) = rest.split_at_checked(name_len) else {
                break;
            };
            rest = tail;
            let value = if tag % 2 == 1 {
                STATIC_VALUES
                    .get(tag / 2)
                    .map(|s| HeaderValue::from_static(s))
            } else {
                let Some((value, tail)) = rest.split_at_checked(tag / 2) else {
                    break;
                };
                rest = tail;
                HeaderValue::from_bytes(value).ok()
            };
            // both were valid when encoded
            if let (Ok(name), Some(value)) = (HeaderName::from_bytes(name), value) {
                map.append(name, value);
            }
        }
        map
    }

    /// How many headers there are.
    fn len(&self) -> usize {
        let mut rest = &self.0[..];
        let mut n = 0;
        while let (Some(name_len), Some(tag)) = (take_len(&mut rest), take_len(&mut rest)) {
            let skip = name_len + if tag % 2 == 0 { tag / 2 } else { 0 };
            rest = rest.get(skip..).unwrap_or_default();
            n += 1;
        }
        n
    }
}

fn put_len(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn take_len(rest: &mut &[u8]) -> Option<usize> {
    let mut n = 0usize;
    for shift in (0..64).step_by(7) {
        let (&b, tail) = rest.split_first()?;
        *rest = tail;
        n |= usize::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(n);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_in_order_with_repeats_and_long_values() {
        let mut h = HeaderMap::new();
        h.append("host", HeaderValue::from_static("example.com"));
        h.append("cookie", HeaderValue::from_static("a=1"));
        h.append("x-custom-header", HeaderValue::from_static("v"));
        h.append("cookie", HeaderValue::from_static("b=2"));
        h.append("grip-feature", HeaderValue::from_static(GRIP_FEATURES));
        h.append("sec-websocket-version", HeaderValue::from_static("13"));
        h.append("empty", HeaderValue::from_static(""));
        let long = "x".repeat(70_000);
        h.append("x-long", HeaderValue::from_str(&long).unwrap());
        h.append(
            "x-bytes",
            HeaderValue::from_bytes(b"caf\xc3\xa9\t!").unwrap(),
        );
        let b = BaseHeaders::new(&h, |_| false);
        let back = b.to_map(3);
        assert_eq!(back, h);
        assert_eq!(b.len(), 9);
        let order: Vec<_> = back.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
        let want: Vec<_> = h.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
        assert_eq!(order, want);
        // the static value costs its tag, not its bytes
        assert!(b.0.len() < 70_000 + 200);
    }

    #[test]
    fn skips_what_it_is_told_and_is_compact() {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("127.0.0.1:7999"));
        h.insert("grip-sig", HeaderValue::from_static("a.b.c"));
        h.insert("grip-feature", HeaderValue::from_static(GRIP_FEATURES));
        let b = BaseHeaders::new(&h, |n| n == "grip-sig");
        let back = b.to_map(0);
        assert!(back.get("grip-sig").is_none());
        assert_eq!(back.get("host").unwrap(), "127.0.0.1:7999");
        assert_eq!(back.get("grip-feature").unwrap(), GRIP_FEATURES);
        assert_eq!(b.0.len(), 2 + 4 + 14 + 2 + 12);
        assert!(BaseHeaders::default().to_map(0).is_empty());
    }
}
