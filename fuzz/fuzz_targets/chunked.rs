//! Chunked request bodies: `proto::chunked::ChunkedDecoder` fed arbitrary bytes, whole and in
//! arbitrary reads. Checks that it never panics, never returns more than its limit, never
//! returns empty data, and that how the bytes are split across reads changes nothing: the
//! same body, the same outcome, the same bytes left over after the last chunk.
#![no_main]

use bytes::BytesMut;
use gripway_fuzz::pieces;
use gripway_proto::chunked::{ChunkedDecoder, ChunkedError, Decoded};
use libfuzzer_sys::fuzz_target;

/// The input: the limit (2 bytes, big-endian), a count `n`, `n` read sizes, then the body.
struct Input<'a> {
    max_total: u16,
    sizes: &'a [u8],
    body: &'a [u8],
}

impl<'a> Input<'a> {
    fn read(data: &'a [u8]) -> Option<Self> {
        let [hi, lo, n, rest @ ..] = data else {
            return None;
        };
        let n = usize::from(*n).min(rest.len());
        let (sizes, body) = rest.split_at(n);
        Some(Input {
            max_total: u16::from_be_bytes([*hi, *lo]),
            sizes,
            body,
        })
    }
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Done { left: Vec<u8> },
    NeedMore,
    Failed(ChunkedError),
}

fn run<'a>(reads: impl Iterator<Item = &'a [u8]>, max_total: u64) -> (Vec<u8>, Outcome) {
    let mut decoder = ChunkedDecoder::new(max_total);
    let mut buf = BytesMut::new();
    let mut body = Vec::new();
    for read in reads {
        buf.extend_from_slice(read);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Decoded::Data(data)) => {
                    assert!(!data.is_empty(), "Data is never empty");
                    body.extend_from_slice(&data);
                    assert!(body.len() as u64 <= max_total, "body past its limit");
                    assert_eq!(decoder.total(), body.len() as u64);
                }
                Ok(Decoded::NeedMore) => break,
                Ok(Decoded::Done) => return (body, Outcome::Done { left: buf.to_vec() }),
                Err(e) => return (body, Outcome::Failed(e)),
            }
        }
    }
    (body, Outcome::NeedMore)
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::read(data) else {
        return;
    };
    let max = u64::from(input.max_total);
    let whole = run(std::iter::once(input.body), max);
    let split = run(pieces(input.body, input.sizes), max);
    match (&whole.1, &split.1) {
        // The error may be named differently (a size line cut short by a read), but it
        // comes at the same place, after the same body bytes.
        (Outcome::Failed(_), Outcome::Failed(_)) => assert_eq!(whole.0, split.0),
        // A Done in the split run leaves the rest of its last read in the buffer; the later
        // reads were never fed.
        (Outcome::Done { left: a }, Outcome::Done { left: b }) => {
            assert_eq!(whole.0, split.0);
            assert!(a.starts_with(b), "left {a:?} vs {b:?}");
        }
        (a, b) => {
            assert_eq!(whole.0, split.0, "{a:?} vs {b:?}");
            assert_eq!(a, b);
        }
    }
});
