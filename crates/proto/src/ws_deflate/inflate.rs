//! The inbound half of permessage-deflate: a byte filter between the client's socket and
//! tungstenite, which refuses RSV1 frames. Frames without RSV1 pass through byte-identical and
//! without delay (payloads are streamed, not held); each compressed message is inflated as its
//! bytes arrive and, at its final frame, handed on as one ordinary FIN frame with the same
//! opcode, re-masked with the key of its first frame.
//!
//! Invariants: at most one frame header (14 bytes) and one inflated message (at most
//! `max_message` bytes, checked while inflating, so a decompression bomb fails before it is
//! allocated) are held; compressed bytes are never held. Every message is inflated with a
//! fresh 15-bit window (the server imposes `client_no_context_takeover`). Decompressor state
//! (about 40 KiB in miniz) exists only while a compressed message is open and is recycled
//! through a small per-thread pool, so idle connections cost nothing.

use std::cell::RefCell;
use std::io::Cursor;

use flate2::{Decompress, FlushDecompress, Status};
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

use super::SYNC_FLUSH_TAIL;

/// The longest frame header: 2 bytes, an 8-byte length and a 4-byte mask (RFC 6455 §5.2).
const MAX_HEADER_BYTES: usize = 14;

/// How many bytes are unmasked and inflated at a time (a stack buffer, no allocation).
const UNMASK_CHUNK_BYTES: usize = 4096;

/// The first allocation for an inflated message, before it is known to be larger.
const INITIAL_MESSAGE_BYTES: usize = 1024;

/// How many idle decompressors a thread keeps for the next compressed message.
pub const MAX_SPARE_DECOMPRESSORS: usize = 4;

/// Why the client's bytes cannot be handed to tungstenite; the connection must be closed with
/// [`InflateError::close_code`]. Once returned, every later call returns it again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InflateError {
    /// The inflated message is larger than the limit.
    #[error("compressed message inflates to more than the {limit}-byte message limit")]
    TooBig {
        /// The inflated-size limit (`max_message`).
        limit: usize,
    },
    /// The compressed bytes of one message are more than the limit allows.
    #[error("compressed message carries more than {limit} bytes of compressed data")]
    CompressedTooBig {
        /// The compressed-size limit.
        limit: usize,
    },
    /// The payload is not a DEFLATE stream (or uses a window the client agreed not to keep).
    #[error("compressed message is not valid DEFLATE data: {detail}")]
    Corrupt {
        /// What the decompressor reported.
        detail: String,
    },
    /// tungstenite could not parse a frame header (e.g. a reserved opcode).
    #[error("invalid WebSocket frame header: {detail}")]
    BadHeader {
        /// tungstenite's description.
        detail: String,
    },
    /// RSV2 or RSV3 is set; permessage-deflate defines only RSV1.
    #[error("frame has RSV2 or RSV3 set, which no negotiated extension defines")]
    ReservedBits,
    /// RSV1 is set on a control frame (RFC 7692 §6.1).
    #[error(
        "control frame (opcode {opcode:#x}) has RSV1 set; control frames are never compressed"
    )]
    CompressedControl {
        /// The frame's opcode.
        opcode: u8,
    },
    /// RSV1 is set on a continuation frame (RFC 7692 §6.1: only a message's first frame).
    #[error("continuation frame has RSV1 set; only the first frame of a message may")]
    CompressedContinuation,
    /// A text or binary frame starts a message while another is still unfinished.
    #[error("a new data message started before the previous message's final frame")]
    MessageInterrupted,
}

impl InflateError {
    /// The close code to send: 1009 (message too big) for the size limits, 1002 (protocol
    /// error) otherwise.
    pub fn close_code(&self) -> u16 {
        match self {
            InflateError::TooBig { .. } | InflateError::CompressedTooBig { .. } => 1009,
            _ => 1002,
        }
    }
}

/// Sits between the socket and tungstenite: see the module documentation.
pub struct Inflater {
    max_message: usize,
    /// A frame header that has not fully arrived.
    header: [u8; MAX_HEADER_BYTES],
    header_held: usize,
    phase: Phase,
    /// The compressed message being collected, if one is open.
    message: Option<CompressedMessage>,
    /// An uncompressed message has started and its final frame has not been seen.
    plain_message_open: bool,
    failed: Option<InflateError>,
}

/// Where the next input byte belongs.
#[derive(Clone, Copy)]
enum Phase {
    /// The start of a frame header.
    Header,
    /// Payload of a frame passed through as it is.
    Passthrough { remaining: u64 },
    /// Payload of a frame of the open compressed message.
    Compressed {
        remaining: u64,
        mask: Option<[u8; 4]>,
        /// How many payload bytes of this frame were unmasked so far, modulo 4.
        mask_offset: usize,
        is_final: bool,
    },
}

/// A compressed message between its first and its final frame.
struct CompressedMessage {
    opcode: OpCode,
    /// The first frame's key, or None if any frame of the message came unmasked (so
    /// tungstenite applies its own policy on unmasked client frames).
    output_mask: Option<[u8; 4]>,
    compressed_bytes: usize,
    inflated: Vec<u8>,
    decompressor: Option<Decompress>,
}

impl Inflater {
    /// An inflater that refuses a compressed message inflating past `max_message` bytes, or
    /// carrying more than [`Inflater::compressed_limit`] compressed bytes.
    pub fn new(max_message: usize) -> Inflater {
        Inflater {
            max_message,
            header: [0; MAX_HEADER_BYTES],
            header_held: 0,
            phase: Phase::Header,
            message: None,
            plain_message_open: false,
            failed: None,
        }
    }

    /// The most compressed bytes one message may carry: `max_message` plus 1/256 plus 1 KiB,
    /// room for stored blocks and flush markers around incompressible data.
    pub fn compressed_limit(&self) -> usize {
        self.max_message
            .saturating_add(self.max_message / 256)
            .saturating_add(1024)
    }

    /// Consumes `input` (raw bytes from the client, any split), appends to `out` the bytes
    /// tungstenite should read: frames without RSV1 unchanged (control frames arriving between
    /// the fragments of a compressed message included, in order, immediately), and for each
    /// compressed message one FIN frame with the message's opcode, RSV1 clear, masked with the
    /// first frame's key, carrying the inflated message.
    pub fn process(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), InflateError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        let result = self.process_input(input, out);
        if let Err(error) = &result {
            self.failed = Some(error.clone());
            self.message = None;
            self.header_held = 0;
        }
        result
    }

    /// Bytes held waiting for the rest of a frame header or of a compressed message (the
    /// partial header plus the message inflated so far).
    pub fn buffered(&self) -> usize {
        self.header_held
            + self
                .message
                .as_ref()
                .map_or(0, |message| message.inflated.len())
    }

    fn process_input(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), InflateError> {
        loop {
            match self.phase {
                Phase::Header => {
                    if input.is_empty() {
                        return Ok(());
                    }
                    let consumed = self.read_header(input, out)?;
                    input = input.get(consumed..).unwrap_or_default();
                }
                Phase::Passthrough { remaining: 0 } => self.phase = Phase::Header,
                Phase::Passthrough { remaining } => {
                    if input.is_empty() {
                        return Ok(());
                    }
                    let (payload, rest) = split_payload(input, remaining);
                    out.extend_from_slice(payload);
                    self.phase = Phase::Passthrough {
                        remaining: remaining - payload.len() as u64,
                    };
                    input = rest;
                }
                Phase::Compressed {
                    remaining: 0,
                    is_final,
                    ..
                } => {
                    self.phase = Phase::Header;
                    if is_final {
                        self.finish_message(out)?;
                    }
                }
                Phase::Compressed {
                    remaining,
                    mask,
                    mask_offset,
                    is_final,
                } => {
                    if input.is_empty() {
                        return Ok(());
                    }
                    let (payload, rest) = split_payload(input, remaining);
                    self.inflate_payload(payload, mask, mask_offset)?;
                    self.phase = Phase::Compressed {
                        remaining: remaining - payload.len() as u64,
                        mask,
                        mask_offset: (mask_offset + payload.len()) % 4,
                        is_final,
                    };
                    input = rest;
                }
            }
        }
    }

    /// Parses the next frame header (completing a held partial one), acts on it, and returns
    /// how many bytes of `input` it used.
    fn read_header(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, InflateError> {
        let held = self.header_held;
        let mut joined = self.header;
        let take = input.len().min(MAX_HEADER_BYTES.saturating_sub(held));
        let bytes: &[u8] = if held == 0 {
            input
        } else {
            if let (Some(slot), Some(more)) = (joined.get_mut(held..held + take), input.get(..take))
            {
                slot.copy_from_slice(more);
            }
            joined.get(..held + take).unwrap_or_default()
        };
        let mut cursor = Cursor::new(bytes);
        let parsed = FrameHeader::parse(&mut cursor).map_err(|error| InflateError::BadHeader {
            detail: error.to_string(),
        })?;
        let Some((header, payload_length)) = parsed else {
            // Incomplete: fewer than MAX_HEADER_BYTES are available, so all of them fit.
            let available = bytes.len().min(MAX_HEADER_BYTES);
            if let (Some(slot), Some(source)) =
                (self.header.get_mut(..available), bytes.get(..available))
            {
                slot.copy_from_slice(source);
            }
            self.header_held = available;
            return Ok(available.saturating_sub(held));
        };
        let header_length = usize::try_from(cursor.position()).unwrap_or(usize::MAX);
        let raw_header = bytes.get(..header_length).unwrap_or_default();
        self.header_held = 0;
        self.start_frame(&header, payload_length, raw_header, out)?;
        Ok(header_length.saturating_sub(held))
    }

    /// Decides what to do with a frame from its header.
    fn start_frame(
        &mut self,
        header: &FrameHeader,
        payload_length: u64,
        raw_header: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), InflateError> {
        if header.rsv2 || header.rsv3 {
            return Err(InflateError::ReservedBits);
        }
        let belongs_to_compressed_message = match header.opcode {
            OpCode::Control(control) => {
                if header.rsv1 {
                    return Err(InflateError::CompressedControl {
                        opcode: u8::from(OpCode::Control(control)),
                    });
                }
                false
            }
            OpCode::Data(Data::Continue) => {
                if header.rsv1 {
                    return Err(InflateError::CompressedContinuation);
                }
                if let Some(message) = &mut self.message {
                    if header.mask.is_none() {
                        message.output_mask = None;
                    }
                    true
                } else {
                    if header.is_final {
                        self.plain_message_open = false;
                    }
                    false
                }
            }
            OpCode::Data(_) => {
                if self.message.is_some() || (header.rsv1 && self.plain_message_open) {
                    return Err(InflateError::MessageInterrupted);
                }
                if header.rsv1 {
                    self.message = Some(CompressedMessage::start(header.opcode, header.mask));
                    true
                } else {
                    // tungstenite itself rejects a new message inside an open one
                    self.plain_message_open = !header.is_final;
                    false
                }
            }
        };
        self.phase = if belongs_to_compressed_message {
            Phase::Compressed {
                remaining: payload_length,
                mask: header.mask,
                mask_offset: 0,
                is_final: header.is_final,
            }
        } else {
            out.extend_from_slice(raw_header);
            Phase::Passthrough {
                remaining: payload_length,
            }
        };
        Ok(())
    }

    /// Unmasks and inflates one piece of a compressed frame's payload.
    fn inflate_payload(
        &mut self,
        payload: &[u8],
        mask: Option<[u8; 4]>,
        mask_offset: usize,
    ) -> Result<(), InflateError> {
        let limit = self.compressed_limit();
        let max_message = self.max_message;
        let Some(message) = &mut self.message else {
            return Ok(());
        };
        message.compressed_bytes = message.compressed_bytes.saturating_add(payload.len());
        if message.compressed_bytes > limit {
            return Err(InflateError::CompressedTooBig { limit });
        }
        let mut block = [0u8; UNMASK_CHUNK_BYTES];
        let mut offset = mask_offset;
        for piece in payload.chunks(UNMASK_CHUNK_BYTES) {
            let Some(unmasked) = block.get_mut(..piece.len()) else {
                continue;
            };
            unmasked.copy_from_slice(piece);
            if let Some(mask) = mask {
                apply_mask(unmasked, mask, offset);
            }
            offset = (offset + piece.len()) % 4;
            message.inflate(unmasked, max_message)?;
        }
        Ok(())
    }

    /// Inflates the tail and writes the message out as one masked frame.
    fn finish_message(&mut self, out: &mut Vec<u8>) -> Result<(), InflateError> {
        let Some(mut message) = self.message.take() else {
            return Ok(());
        };
        message.inflate(&SYNC_FLUSH_TAIL, self.max_message)?;
        let header = FrameHeader {
            is_final: true,
            rsv1: false,
            rsv2: false,
            rsv3: false,
            opcode: message.opcode,
            mask: message.output_mask,
        };
        let length = message.inflated.len();
        out.reserve(header.len(length as u64) + length);
        // writing into a Vec cannot fail
        let _ = header.format(length as u64, out);
        let start = out.len();
        out.extend_from_slice(&message.inflated);
        if let (Some(mask), Some(payload)) = (message.output_mask, out.get_mut(start..)) {
            apply_mask(payload, mask, 0);
        }
        Ok(())
    }
}

impl CompressedMessage {
    fn start(opcode: OpCode, mask: Option<[u8; 4]>) -> CompressedMessage {
        CompressedMessage {
            opcode,
            output_mask: mask,
            compressed_bytes: 0,
            inflated: Vec::new(),
            decompressor: Some(take_decompressor()),
        }
    }

    /// Feeds `input` to the decompressor, growing the message at most to `max_message + 1`
    /// bytes so that going over the limit is seen without allocating the excess.
    fn inflate(&mut self, mut input: &[u8], max_message: usize) -> Result<(), InflateError> {
        let Some(decompressor) = &mut self.decompressor else {
            return Ok(());
        };
        let ceiling = max_message.saturating_add(1);
        loop {
            if self.inflated.len() == self.inflated.capacity() {
                let room = ceiling.saturating_sub(self.inflated.len());
                let growth = self.inflated.len().max(INITIAL_MESSAGE_BYTES).min(room);
                if growth == 0 {
                    return Err(InflateError::TooBig { limit: max_message });
                }
                self.inflated.reserve_exact(growth);
            }
            let (in_before, out_before) = (decompressor.total_in(), self.inflated.len());
            let status = decompressor
                .decompress_vec(input, &mut self.inflated, FlushDecompress::None)
                .map_err(|error| InflateError::Corrupt {
                    detail: error
                        .message()
                        .unwrap_or("the decompressor rejected the data")
                        .to_string(),
                })?;
            if self.inflated.len() > max_message {
                return Err(InflateError::TooBig { limit: max_message });
            }
            let consumed = usize::try_from(decompressor.total_in() - in_before).unwrap_or(0);
            input = input.get(consumed..).unwrap_or_default();
            let produced = self.inflated.len() - out_before;
            if status == Status::StreamEnd {
                // A final block ended the stream (RFC 7692 §7.2.3.4); anything after it
                // starts a new one, and the appended tail reads as an empty block.
                decompressor.reset(false);
            } else if consumed == 0 && produced == 0 && !input.is_empty() {
                // not expected from miniz; refuse rather than drop the unread bytes
                return Err(InflateError::Corrupt {
                    detail: "the decompressor stopped before the end of the data".to_string(),
                });
            }
            let output_full = self.inflated.len() == self.inflated.capacity();
            if input.is_empty() && !output_full {
                return Ok(());
            }
        }
    }
}

impl Drop for CompressedMessage {
    fn drop(&mut self) {
        if let Some(decompressor) = self.decompressor.take() {
            return_decompressor(decompressor);
        }
    }
}

thread_local! {
    /// Idle decompressors, reset, for the next compressed message on this thread.
    static SPARE_DECOMPRESSORS: RefCell<Vec<Decompress>> = const { RefCell::new(Vec::new()) };
}

fn take_decompressor() -> Decompress {
    SPARE_DECOMPRESSORS
        .try_with(|spares| {
            spares
                .try_borrow_mut()
                .ok()
                .and_then(|mut spares| spares.pop())
        })
        .ok()
        .flatten()
        .unwrap_or_else(|| Decompress::new(false))
}

fn return_decompressor(mut decompressor: Decompress) {
    decompressor.reset(false);
    let _ = SPARE_DECOMPRESSORS.try_with(|spares| {
        if let Ok(mut spares) = spares.try_borrow_mut() {
            if spares.len() < MAX_SPARE_DECOMPRESSORS {
                spares.push(decompressor);
            }
        }
    });
}

/// The part of `input` that belongs to a payload with `remaining` bytes left, and the rest.
fn split_payload(input: &[u8], remaining: u64) -> (&[u8], &[u8]) {
    let length =
        usize::try_from(remaining).map_or(input.len(), |remaining| remaining.min(input.len()));
    input.split_at_checked(length).unwrap_or((input, &[]))
}

/// XORs `buf` with `mask`, as if `buf` started `offset` bytes into the masked payload.
fn apply_mask(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    let shifted = [
        mask[offset % 4],
        mask[(offset + 1) % 4],
        mask[(offset + 2) % 4],
        mask[(offset + 3) % 4],
    ];
    let key = u32::from_ne_bytes(shifted);
    let mut words = buf.chunks_exact_mut(4);
    for word in &mut words {
        let mut bytes = [0u8; 4];
        bytes.copy_from_slice(word);
        word.copy_from_slice(&(u32::from_ne_bytes(bytes) ^ key).to_ne_bytes());
    }
    for (byte, key_byte) in words.into_remainder().iter_mut().zip(shifted) {
        *byte ^= key_byte;
    }
}

#[cfg(test)]
#[path = "inflate_tests.rs"]
mod tests;
