//! HTTP/1.1 chunked transfer coding (RFC 9112 §7.1): the encoder that frames each published
//! `http-stream` message once for every stream subscriber, and an incremental decoder for
//! request bodies that clients send chunked.
//!
//! The decoder works on whatever bytes have arrived so far, never buffers a chunk's data
//! itself (it hands out slices of the input as they come) and bounds everything it does
//! keep: the size line, the trailer section and the body's total length.

use bytes::{Buf, Bytes, BytesMut};

/// Longest chunk-size line accepted, extensions included.
pub const MAX_SIZE_LINE: usize = 1024;
/// Largest trailer section accepted (trailers are read and dropped).
pub const MAX_TRAILERS: usize = 8192;

/// Frames `content` as one chunk. `content` must not be empty: an empty chunk ends a body.
pub fn encode_chunk(content: &[u8]) -> Bytes {
    // exact capacity: the `Bytes` then owns the buffer as it is, with no extra header
    // allocation until it is first cloned
    let digits = (usize::BITS - content.len().leading_zeros())
        .div_ceil(4)
        .max(1) as usize;
    let mut out = Vec::with_capacity(digits + 2 + content.len() + 2);
    write_chunk_header(&mut out, content.len());
    out.extend_from_slice(content);
    out.extend_from_slice(b"\r\n");
    Bytes::from(out)
}

/// Appends `<hex len>\r\n` to `out`.
pub fn write_chunk_header(out: &mut Vec<u8>, len: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    let mut n = len;
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = HEX[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
    out.extend_from_slice(b"\r\n");
}

/// The chunk that ends a chunked body (no trailers).
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Why a chunked body could not be decoded; always the sender's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkedError {
    /// The chunk-size line is not hexadecimal digits (optionally followed by extensions).
    #[error("invalid chunk size line")]
    BadSize,
    /// The chunk-size line or the trailer section is longer than allowed.
    #[error("chunk framing line too long")]
    LineTooLong,
    /// A chunk's data is not followed by CRLF.
    #[error("chunk data not followed by CRLF")]
    MissingCrlf,
    /// The body is larger than the limit given to the decoder.
    #[error("chunked body larger than {0} bytes")]
    TooLarge(u64),
}

/// What one call to [`ChunkedDecoder::decode`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// Some body bytes (never empty).
    Data(Bytes),
    /// The body is complete; the input now starts after the last chunk and its trailers.
    Done,
    /// More input is needed.
    NeedMore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size,
    Data(u64),
    DataEnd,
    Trailers(usize),
    Done,
}

/// Incremental decoder of one chunked body.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    total: u64,
    max_total: u64,
}

impl ChunkedDecoder {
    /// A decoder that refuses bodies longer than `max_total` bytes.
    pub fn new(max_total: u64) -> Self {
        ChunkedDecoder {
            state: State::Size,
            total: 0,
            max_total,
        }
    }

    /// Body bytes decoded so far.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Consumes framing and data from the front of `input`. Call again after `Data` until
    /// it returns `NeedMore` (then read more into `input`) or `Done`.
    pub fn decode(&mut self, input: &mut BytesMut) -> Result<Decoded, ChunkedError> {
        loop {
            match self.state {
                State::Done => return Ok(Decoded::Done),
                State::Size => {
                    let Some(line_end) = find_crlf(input) else {
                        if input.len() > MAX_SIZE_LINE {
                            return Err(ChunkedError::LineTooLong);
                        }
                        return Ok(Decoded::NeedMore);
                    };
                    if line_end > MAX_SIZE_LINE {
                        return Err(ChunkedError::LineTooLong);
                    }
                    let size = parse_size_line(&input[..line_end])?;
                    input.advance(line_end + 2);
                    if size == 0 {
                        self.state = State::Trailers(0);
                        continue;
                    }
                    if self.total.saturating_add(size) > self.max_total {
                        return Err(ChunkedError::TooLarge(self.max_total));
                    }
                    self.state = State::Data(size);
                }
                State::Data(remaining) => {
                    if input.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let take = remaining.min(input.len() as u64) as usize;
                    let data = input.split_to(take).freeze();
                    self.total += take as u64;
                    let left = remaining - take as u64;
                    self.state = if left == 0 {
                        State::DataEnd
                    } else {
                        State::Data(left)
                    };
                    return Ok(Decoded::Data(data));
                }
                State::DataEnd => {
                    if input.len() < 2 {
                        return Ok(Decoded::NeedMore);
                    }
                    if &input[..2] != b"\r\n" {
                        return Err(ChunkedError::MissingCrlf);
                    }
                    input.advance(2);
                    self.state = State::Size;
                }
                State::Trailers(seen) => {
                    let Some(line_end) = find_crlf(input) else {
                        if seen + input.len() > MAX_TRAILERS {
                            return Err(ChunkedError::LineTooLong);
                        }
                        return Ok(Decoded::NeedMore);
                    };
                    let seen = seen + line_end + 2;
                    if seen > MAX_TRAILERS {
                        return Err(ChunkedError::LineTooLong);
                    }
                    input.advance(line_end + 2);
                    self.state = if line_end == 0 {
                        State::Done
                    } else {
                        State::Trailers(seen)
                    };
                }
            }
        }
    }
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

/// Hex digits, then optional whitespace and `;extensions` (ignored).
fn parse_size_line(line: &[u8]) -> Result<u64, ChunkedError> {
    let digits_end = line
        .iter()
        .position(|b| !b.is_ascii_hexdigit())
        .unwrap_or(line.len());
    if digits_end == 0 || digits_end > 15 {
        return Err(ChunkedError::BadSize);
    }
    let rest = &line[digits_end..];
    let rest_ok = rest
        .iter()
        .position(|b| *b != b' ' && *b != b'\t')
        .is_none_or(|i| rest[i] == b';');
    if !rest_ok {
        return Err(ChunkedError::BadSize);
    }
    let mut size = 0u64;
    for &b in &line[..digits_end] {
        let v = (b as char).to_digit(16).ok_or(ChunkedError::BadSize)?;
        size = size * 16 + u64::from(v);
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(input: &[u8], max: u64) -> Result<(Vec<u8>, Vec<u8>), ChunkedError> {
        let mut buf = BytesMut::from(input);
        let mut dec = ChunkedDecoder::new(max);
        let mut body = Vec::new();
        loop {
            match dec.decode(&mut buf)? {
                Decoded::Data(d) => body.extend_from_slice(&d),
                Decoded::Done => return Ok((body, buf.to_vec())),
                Decoded::NeedMore => return Err(ChunkedError::MissingCrlf),
            }
        }
    }

    #[test]
    fn encodes_chunks() {
        assert_eq!(&encode_chunk(b"data: x\n\n")[..], b"9\r\ndata: x\n\n\r\n");
        assert_eq!(&encode_chunk(&[b'a'; 255])[..4], b"ff\r\n");
        assert_eq!(&encode_chunk(&[b'a'; 4096])[..5], b"1000\r");
    }

    #[test]
    fn decodes_body_with_extensions_and_trailers() {
        let (body, rest) = decode_all(
            b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\nGET /next",
            100,
        )
        .unwrap();
        assert_eq!(body, b"hello world");
        assert_eq!(rest, b"GET /next");
    }

    #[test]
    fn decodes_byte_by_byte() {
        let input = b"3\r\nabc\r\nA\r\n0123456789\r\n0\r\n\r\n";
        let mut dec = ChunkedDecoder::new(100);
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        let mut done = false;
        for &b in input.iter() {
            buf.extend_from_slice(&[b]);
            loop {
                match dec.decode(&mut buf).unwrap() {
                    Decoded::Data(d) => body.extend_from_slice(&d),
                    Decoded::Done => {
                        done = true;
                        break;
                    }
                    Decoded::NeedMore => break,
                }
            }
        }
        assert!(done);
        assert_eq!(body, b"abc0123456789");
    }

    #[test]
    fn rejects_bad_framing() {
        assert_eq!(decode_all(b"x\r\n", 100), Err(ChunkedError::BadSize));
        assert_eq!(decode_all(b"5 x\r\n", 100), Err(ChunkedError::BadSize));
        assert_eq!(
            decode_all(b"3\r\nabcX\r\n", 100),
            Err(ChunkedError::MissingCrlf)
        );
        assert_eq!(
            decode_all(b"ffffffffffffffff\r\n", 100),
            Err(ChunkedError::BadSize)
        );
        assert_eq!(decode_all(b"65\r\n", 100), Err(ChunkedError::TooLarge(100)));
        let long = [b'1'; MAX_SIZE_LINE + 10];
        assert_eq!(decode_all(&long, 100), Err(ChunkedError::LineTooLong));
    }

    proptest! {
        #[test]
        fn never_panics(input in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_all(&input, 1 << 20);
        }

        #[test]
        fn round_trips(parts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..300), 0..8)) {
            let mut wire = Vec::new();
            for p in &parts {
                wire.extend_from_slice(&encode_chunk(p));
            }
            wire.extend_from_slice(LAST_CHUNK);
            let (body, rest) = decode_all(&wire, 1 << 20).unwrap();
            prop_assert_eq!(body, parts.concat());
            prop_assert!(rest.is_empty());
        }
    }
}
