//! permessage-deflate (RFC 7692) for the server side of Gripway's WebSockets, as pure code:
//! negotiating the extension ([`negotiate`]), compressing outbound messages ([`compress`],
//! [`encode_compressed_frame`], [`encode_message_frame`], [`compressed_message_frame`]) and inflating inbound ones below
//! tungstenite ([`Inflater`]).
//!
//! Invariants: both directions use no context takeover, so every message is compressed and
//! inflated on its own and the same compressed bytes can go to every subscriber; compression
//! always uses a 15-bit window; frame headers are read and written only through tungstenite's
//! frame API. Compressor state (a few hundred KiB in miniz) is kept per thread and reused, never
//! per connection.

mod inflate;
mod negotiate;

pub use inflate::{InflateError, Inflater, MAX_SPARE_DECOMPRESSORS};
pub use negotiate::{negotiate, DeflateParams, RESPONSE_VALUE};

use std::cell::RefCell;

use bytes::Bytes;
use flate2::{Compress, Compression, FlushCompress};
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

/// The miniz compression level for outbound messages (0–9). Level 1 is miniz's fast path; see
/// `benches/ws_deflate.rs` for its speed and ratio against the default level 6.
pub const COMPRESSION_LEVEL: u32 = 1;

/// The empty stored block a sync flush ends with; RFC 7692 §7.2.1 drops it from the wire and
/// the receiver appends it back (§7.2.2).
pub const SYNC_FLUSH_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The largest scratch buffer a thread keeps between messages; a bigger one is freed after use.
const RETAINED_SCRATCH_BYTES: usize = 256 * 1024;

/// One message compressed with no context takeover: raw DEFLATE, sync-flushed, trailing
/// `00 00 ff ff` removed (RFC 7692 §7.2.1). The empty message compresses to the single byte
/// `00` (§7.2.3.6).
pub fn compress(payload: &[u8]) -> Bytes {
    with_deflater(|deflater| Bytes::copy_from_slice(deflater.deflate(payload)))
}

/// A complete server frame (unmasked, FIN) with RSV1 set carrying `compress(payload)`; text
/// when `binary` is false (the payload should then be UTF-8), binary otherwise.
pub fn encode_compressed_frame(binary: bool, payload: &[u8]) -> Bytes {
    with_deflater(|deflater| frame_compressed(binary, deflater.deflate(payload)))
}

/// A complete server frame (unmasked, FIN, RSV1 set) around bytes already produced by
/// [`compress`], for callers that keep the compressed form too.
pub fn frame_compressed(binary: bool, compressed: &[u8]) -> Bytes {
    server_frame(binary, true, compressed)
}

/// Payloads shorter than this go out uncompressed from [`encode_message_frame`]: deflating
/// them saves a few bytes at best and costs several microseconds (miniz clears its tables for
/// every message).
pub const MIN_COMPRESS_BYTES: usize = 128;

/// The frame that carries one message to clients that negotiated permessage-deflate:
/// compressed (RSV1 set) when the payload is at least [`MIN_COMPRESS_BYTES`] long and
/// compression makes it smaller, otherwise a plain frame (RFC 7692 §6 lets any message go
/// uncompressed). The same bytes serve every such subscriber.
pub fn encode_message_frame(binary: bool, payload: &[u8]) -> Bytes {
    compressed_message_frame(binary, payload)
        .unwrap_or_else(|| server_frame(binary, false, payload))
}

/// The compressed frame [`encode_message_frame`] would send, or None when it would send the
/// plain frame (a payload under [`MIN_COMPRESS_BYTES`], or one that does not get smaller):
/// for callers that already hold the plain frame and can send that instead.
pub fn compressed_message_frame(binary: bool, payload: &[u8]) -> Option<Bytes> {
    if payload.len() < MIN_COMPRESS_BYTES {
        return None;
    }
    with_deflater(|deflater| {
        let compressed = deflater.deflate(payload);
        (compressed.len() < payload.len()).then(|| frame_compressed(binary, compressed))
    })
}

/// One unmasked FIN data frame, header written by tungstenite.
fn server_frame(binary: bool, rsv1: bool, payload: &[u8]) -> Bytes {
    let data = if binary { Data::Binary } else { Data::Text };
    let header = FrameHeader {
        is_final: true,
        rsv1,
        rsv2: false,
        rsv3: false,
        opcode: OpCode::Data(data),
        mask: None,
    };
    let length = payload.len() as u64;
    let mut frame = Vec::with_capacity(header.len(length) + payload.len());
    // writing into a Vec cannot fail
    let _ = header.format(length, &mut frame);
    frame.extend_from_slice(payload);
    Bytes::from(frame)
}

/// A reusable raw-DEFLATE compressor and the buffer it writes into.
struct Deflater {
    compressor: Compress,
    scratch: Vec<u8>,
}

thread_local! {
    /// This thread's compressor, taken out while in use so a nested call simply makes its own.
    static DEFLATER: RefCell<Option<Deflater>> = const { RefCell::new(None) };
}

/// Runs `work` with this thread's compressor (making one the first time), then resets it and
/// puts it back.
fn with_deflater<R>(work: impl FnOnce(&mut Deflater) -> R) -> R {
    let cached = DEFLATER
        .try_with(|slot| slot.try_borrow_mut().ok().and_then(|mut slot| slot.take()))
        .ok()
        .flatten();
    let mut deflater = cached.unwrap_or_else(|| Deflater {
        compressor: Compress::new(Compression::new(COMPRESSION_LEVEL), false),
        scratch: Vec::new(),
    });
    let result = work(&mut deflater);
    deflater.compressor.reset();
    if deflater.scratch.capacity() > RETAINED_SCRATCH_BYTES {
        deflater.scratch = Vec::new();
    }
    let _ = DEFLATER.try_with(|slot| {
        if let Ok(mut slot) = slot.try_borrow_mut() {
            *slot = Some(deflater);
        }
    });
    result
}

impl Deflater {
    /// Compresses `payload` as one whole message and returns the wire bytes (tail removed).
    fn deflate(&mut self, payload: &[u8]) -> &[u8] {
        self.scratch.clear();
        if !self.try_deflate(payload) {
            self.scratch.clear();
            push_stored_blocks(payload, &mut self.scratch);
        }
        &self.scratch
    }

    /// Sync-flushed raw DEFLATE into `scratch` with the tail removed; false if miniz failed
    /// (not expected: its only errors are bad parameters and a full output buffer).
    fn try_deflate(&mut self, payload: &[u8]) -> bool {
        // Enough for most inputs in one call; grows when incompressible data does not fit.
        self.scratch.reserve(payload.len() / 2 + 64);
        let mut rest = payload;
        loop {
            if self.scratch.capacity() - self.scratch.len() < 64 {
                self.scratch.reserve(self.scratch.len().max(1024));
            }
            let (in_before, out_before) = (self.compressor.total_in(), self.scratch.len());
            let status = self
                .compressor
                .compress_vec(rest, &mut self.scratch, FlushCompress::Sync);
            let consumed = usize::try_from(self.compressor.total_in() - in_before).unwrap_or(0);
            rest = rest.get(consumed..).unwrap_or_default();
            let produced = self.scratch.len() - out_before;
            let output_left = self.scratch.len() < self.scratch.capacity();
            if status.is_err() || (consumed == 0 && produced == 0) {
                return false;
            }
            if rest.is_empty() && output_left {
                break;
            }
        }
        match self.scratch.strip_suffix(&SYNC_FLUSH_TAIL) {
            Some(body) => {
                let length = body.len();
                self.scratch.truncate(length);
                true
            }
            None => false,
        }
    }
}

/// The fallback encoding: `payload` as DEFLATE stored blocks (no compression), non-final, so
/// the receiver's appended tail is read as one more empty stored block.
fn push_stored_blocks(payload: &[u8], out: &mut Vec<u8>) {
    const MAX_STORED: usize = u16::MAX as usize;
    out.reserve(payload.len() + 5 * (payload.len() / MAX_STORED) + 6);
    for block in payload.chunks(MAX_STORED) {
        let length = block.len() as u16;
        // BFINAL=0, BTYPE=00 (stored), padded to the byte boundary
        out.push(0x00);
        out.extend_from_slice(&length.to_le_bytes());
        out.extend_from_slice(&(!length).to_le_bytes());
        out.extend_from_slice(block);
    }
    // the header of one more stored block, completed by the tail the receiver appends
    out.push(0x00);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// Inflates wire bytes the way RFC 7692 §7.2.2 says, with flate2's reader.
    fn reference_inflate(wire: &[u8]) -> Vec<u8> {
        let input = [wire, &SYNC_FLUSH_TAIL[..]].concat();
        let mut output = Vec::new();
        // the stream has no final block, so the reader stops at the end of its input
        let _ = flate2::read::DeflateDecoder::new(&input[..]).read_to_end(&mut output);
        output
    }

    #[test]
    fn rfc_7692_examples() {
        // §7.2.3.6: an empty message is the single byte 00
        assert_eq!(&compress(b"")[..], [0x00]);
        // §7.2.3.1: "Hello" with one fixed-Huffman block
        assert_eq!(
            &compress(b"Hello")[..],
            [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]
        );
        assert_eq!(
            &encode_compressed_frame(false, b"Hello")[..],
            [0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]
        );
        assert_eq!(
            &encode_compressed_frame(true, b"Hello")[..],
            [0xc2, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]
        );
    }

    #[test]
    fn compresses_and_round_trips() {
        let json =
            br#"{"channel":"news","items":[{"id":1,"text":"hello"},{"id":2,"text":"hello"}]}"#
                .repeat(50);
        let wire = compress(&json);
        assert!(wire.len() * 10 < json.len(), "{} bytes", wire.len());
        assert!(!wire.ends_with(&SYNC_FLUSH_TAIL));
        assert!(reference_inflate(&wire) == json);
        // the thread's compressor is reset between messages: same input, same output
        assert_eq!(compress(&json), wire);
        let pseudo_random: Vec<u8> = (0..200_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let wire = compress(&pseudo_random);
        assert!(reference_inflate(&wire) == pseudo_random);
    }

    #[test]
    fn frame_headers_for_long_payloads() {
        let text = "x".repeat(300);
        let frame = frame_compressed(false, text.as_bytes());
        assert_eq!(&frame[..4], [0xc1, 126, 1, 44]);
        assert_eq!(&frame[4..], text.as_bytes());
        let frame = frame_compressed(true, &vec![7; 70_000]);
        assert_eq!(&frame[..10], [0xc2, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
        let frame = encode_compressed_frame(true, &vec![7; 70_000]);
        let compressed = compress(&vec![7; 70_000]);
        let length = usize::from(u16::from_be_bytes([frame[2], frame[3]]));
        assert_eq!((frame[0], frame[1], length), (0xc2, 126, compressed.len()));
        assert!(frame[4..] == compressed[..]);
    }

    #[test]
    fn message_frames_compress_only_when_it_pays() {
        use crate::ws_frame::{encode_frame, FrameKind};
        // short: plain, exactly what ws_frame sends to clients without the extension
        let short = "x".repeat(MIN_COMPRESS_BYTES - 1);
        assert_eq!(
            encode_message_frame(false, short.as_bytes()),
            encode_frame(FrameKind::Text, Bytes::from(short.clone()))
        );
        // long and compressible: the RSV1 frame
        let long = "x".repeat(MIN_COMPRESS_BYTES);
        let frame = encode_message_frame(false, long.as_bytes());
        assert_eq!(frame, encode_compressed_frame(false, long.as_bytes()));
        assert_eq!(frame[0], 0xc1);
        // long and incompressible: plain binary
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let noise: Vec<u8> = (0..1000)
            .map(|_| {
                // xorshift64: bytes deflate cannot shrink
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 32) as u8
            })
            .collect();
        assert!(compress(&noise).len() >= noise.len());
        assert_eq!(
            encode_message_frame(true, &noise),
            encode_frame(FrameKind::Binary, Bytes::from(noise.clone()))
        );
    }

    #[test]
    fn stored_block_fallback_is_valid_deflate() {
        for length in [0usize, 1, 5, 65_535, 65_536, 140_000] {
            let payload: Vec<u8> = (0..length).map(|i| (i % 251) as u8).collect();
            let mut wire = Vec::new();
            push_stored_blocks(&payload, &mut wire);
            assert_eq!(wire.len(), length + 5 * length.div_ceil(65_535) + 1);
            assert!(reference_inflate(&wire) == payload, "length {length}");
        }
        let mut wire = Vec::new();
        push_stored_blocks(b"Hello", &mut wire);
        // RFC 7692 §7.2.3.3's example, less the tail's LEN/NLEN which the receiver appends
        assert_eq!(
            wire,
            [0x00, 0x05, 0x00, 0xfa, 0xff, b'H', b'e', b'l', b'l', b'o', 0x00]
        );
    }

    proptest::proptest! {
        #[test]
        fn compress_round_trips(payload in proptest::collection::vec(proptest::num::u8::ANY, 0..3000)) {
            proptest::prop_assert_eq!(reference_inflate(&compress(&payload)), payload);
        }
    }
}
