//! Server-to-client WebSocket frames as bytes, encoded by tungstenite's frame encoder: each
//! published `ws-message` is framed once with these and the same bytes go to every
//! subscriber. Server frames are never masked (RFC 6455 §5.1).

use bytes::Bytes;
use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tungstenite::protocol::frame::{CloseFrame, Frame};

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// A whole text message (the payload must be UTF-8).
    Text,
    /// A whole binary message.
    Binary,
    /// A ping (payload at most 125 bytes).
    Ping,
    /// A pong (payload at most 125 bytes).
    Pong,
}

/// One complete, unfragmented, unmasked frame.
pub fn encode_frame(kind: FrameKind, payload: Bytes) -> Bytes {
    let frame = match kind {
        FrameKind::Text => Frame::message(payload, OpCode::Data(Data::Text), true),
        FrameKind::Binary => Frame::message(payload, OpCode::Data(Data::Binary), true),
        FrameKind::Ping => Frame::ping(payload),
        FrameKind::Pong => Frame::pong(payload),
    };
    format(frame)
}

/// Appends the header of one complete, unmasked frame of `kind` carrying `len` payload bytes
/// (the same bytes [`encode_frame`] puts in front of the payload), for a caller that builds
/// the frame in its own buffer.
pub fn write_frame_header(out: &mut Vec<u8>, kind: FrameKind, len: usize) {
    let (head, n) = frame_header(kind, len);
    out.extend_from_slice(&head[..n]);
}

/// The header [`write_frame_header`] writes, on the stack: its bytes and their number (for a
/// fan-out that frames a shared payload per subscriber without allocating).
pub fn frame_header(kind: FrameKind, len: usize) -> ([u8; 10], usize) {
    let opcode = match kind {
        FrameKind::Text => 0x1,
        FrameKind::Binary => 0x2,
        FrameKind::Ping => 0x9,
        FrameKind::Pong => 0xa,
    };
    let mut head = [0u8; 10];
    head[0] = 0x80 | opcode;
    if len < 126 {
        head[1] = len as u8;
        (head, 2)
    } else if let Ok(short) = u16::try_from(len) {
        head[1] = 126;
        head[2..4].copy_from_slice(&short.to_be_bytes());
        (head, 4)
    } else {
        head[1] = 127;
        head[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        (head, 10)
    }
}

/// Length of the header [`write_frame_header`] writes for `len` payload bytes.
pub fn frame_header_len(len: usize) -> usize {
    match len {
        0..126 => 2,
        126..=0xffff => 4,
        _ => 10,
    }
}

/// A close frame with `code` and `reason` (no payload when `code` is None; a reason without a
/// code is sent with 1000, since RFC 6455 allows a reason only after a code).
pub fn encode_close(code: Option<u16>, reason: &str) -> Bytes {
    format(Frame::close(close_frame(code, reason)))
}

/// The longest close reason that fits a control frame (125 bytes less the 2-byte code).
pub const MAX_CLOSE_REASON: usize = 123;

/// The close frame for `code` and `reason`, the reason cut to [`MAX_CLOSE_REASON`] bytes at a
/// character boundary.
pub fn close_frame(code: Option<u16>, reason: &str) -> Option<CloseFrame> {
    if code.is_none() && reason.is_empty() {
        return None;
    }
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    Some(CloseFrame {
        code: CloseCode::from(code.unwrap_or(1000)),
        reason: reason[..end].to_string().into(),
    })
}

fn format(frame: Frame) -> Bytes {
    let mut out = Vec::with_capacity(frame.len());
    // writing into a Vec cannot fail
    let _ = frame.format(&mut out);
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_bytes() {
        assert_eq!(
            &encode_frame(FrameKind::Text, Bytes::from_static(b"hi"))[..],
            b"\x81\x02hi"
        );
        assert_eq!(
            &encode_frame(FrameKind::Binary, Bytes::from_static(b"\x00\x01"))[..],
            b"\x82\x02\x00\x01"
        );
        assert_eq!(
            &encode_frame(FrameKind::Ping, Bytes::new())[..],
            b"\x89\x00"
        );
        assert_eq!(
            &encode_frame(FrameKind::Pong, Bytes::from_static(b"p"))[..],
            b"\x8a\x01p"
        );
        let long = encode_frame(FrameKind::Text, Bytes::from(vec![b'x'; 300]));
        assert_eq!(&long[..4], &[0x81, 126, 1, 44]);
        assert_eq!(long.len(), 304);
        let huge = encode_frame(FrameKind::Binary, Bytes::from(vec![0; 70_000]));
        assert_eq!(&huge[..10], &[0x82, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
    }

    #[test]
    fn written_headers_match_encoded_frames() {
        for kind in [
            FrameKind::Text,
            FrameKind::Binary,
            FrameKind::Ping,
            FrameKind::Pong,
        ] {
            let lens: &[usize] = match kind {
                FrameKind::Ping | FrameKind::Pong => &[0, 1, 125],
                _ => &[0, 1, 125, 126, 127, 300, 65_535, 65_536, 70_000],
            };
            for &len in lens {
                let payload = vec![b'x'; len];
                let mut out = Vec::new();
                write_frame_header(&mut out, kind, len);
                assert_eq!(out.len(), frame_header_len(len), "{kind:?} {len}");
                out.extend_from_slice(&payload);
                assert_eq!(
                    out,
                    &encode_frame(kind, Bytes::from(payload))[..],
                    "{kind:?} {len}"
                );
            }
        }
    }

    #[test]
    fn close_frames() {
        assert_eq!(&encode_close(None, "")[..], b"\x88\x00");
        assert_eq!(&encode_close(Some(1001), "bye")[..], b"\x88\x05\x03\xe9bye");
        assert_eq!(&encode_close(None, "why")[..], b"\x88\x05\x03\xe8why");
        let long = "é".repeat(100);
        let frame = encode_close(Some(1000), &long);
        assert_eq!(
            frame[1], 124,
            "2-byte code + 122 bytes: whole characters only"
        );
    }
}
