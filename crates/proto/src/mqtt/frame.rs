//! Packet framing: the fixed header of one MQTT packet (the first byte and a remaining length of
//! at most 4 variable-length bytes) read from the front of a buffer. A length over the caller's
//! limit is refused as soon as the bytes read so far prove it, so no body buffer is ever sized
//! from an untrusted length. The crate's `decode_var_int` is not public, so the variable byte
//! integer is decoded here.

/// One packet's fixed header, as found by [`scan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// The first byte: packet type in the high nibble, flags in the low one.
    pub first: u8,
    /// Bytes of fixed header: 1 plus the remaining-length bytes (2..=5).
    pub header_len: u8,
    /// The declared body length, already checked against the caller's limit.
    pub remaining: u32,
}

impl Frame {
    /// The packet type (1 CONNECT ... 15 AUTH; 0 is invalid and refused at decode).
    pub fn packet_type(&self) -> u8 {
        self.first >> 4
    }

    /// Header plus body: how many bytes the whole packet takes in the buffer.
    pub fn total_len(&self) -> usize {
        usize::from(self.header_len) + self.remaining as usize
    }
}

/// What [`scan`] found at the front of the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// The fixed header is not complete yet; read more.
    NeedMore,
    /// A complete fixed header. The body may still be incomplete: compare `total_len()` with
    /// the buffered length.
    Frame(Frame),
}

/// A fixed header that can never become a valid packet: the connection must be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A fifth remaining-length byte (the fourth had its continuation bit set).
    #[error("malformed remaining length: more than 4 bytes")]
    Malformed,
    /// The declared (or partially declared) remaining length exceeds the limit.
    #[error("packet too large: remaining length at least {remaining} bytes")]
    TooLarge {
        /// The length read so far: the full value, or a lower bound when refused early.
        remaining: u32,
    },
}

/// Reads the fixed header at the front of `buf`. Never looks past the first 5 bytes and never
/// allocates. A remaining length over `max_packet` is `TooLarge` as soon as the bytes read so
/// far prove it, even before the length is complete.
pub fn scan(buf: &[u8], max_packet: u32) -> Result<Scan, FrameError> {
    let Some(&first) = buf.first() else {
        return Ok(Scan::NeedMore);
    };
    let mut remaining: u32 = 0;
    for i in 0..4u8 {
        let Some(&byte) = buf.get(usize::from(i) + 1) else {
            return Ok(Scan::NeedMore);
        };
        remaining |= u32::from(byte & 0x7F) << (7 * u32::from(i));
        if remaining > max_packet {
            return Err(FrameError::TooLarge { remaining });
        }
        if byte & 0x80 == 0 {
            return Ok(Scan::Frame(Frame {
                first,
                header_len: i + 2,
                remaining,
            }));
        }
    }
    Err(FrameError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u32 = 1 << 20;

    fn frame(buf: &[u8], max: u32) -> Frame {
        match scan(buf, max) {
            Ok(Scan::Frame(f)) => f,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    #[test]
    fn empty_and_partial_need_more() {
        assert_eq!(scan(&[], MIB), Ok(Scan::NeedMore));
        assert_eq!(scan(&[0x30], MIB), Ok(Scan::NeedMore));
        assert_eq!(scan(&[0x30, 0x80], MIB), Ok(Scan::NeedMore));
        assert_eq!(
            scan(&[0x30, 0x80, 0x80, 0x80], u32::MAX),
            Ok(Scan::NeedMore)
        );
    }

    #[test]
    fn lengths_of_each_size() {
        let f = frame(&[0xC0, 0x00], MIB);
        assert_eq!((f.first, f.header_len, f.remaining), (0xC0, 2, 0));
        assert_eq!(f.packet_type(), 12);
        assert_eq!(f.total_len(), 2);
        let f = frame(&[0x30, 0x7F, 0xAA], MIB);
        assert_eq!((f.header_len, f.remaining), (2, 127));
        let f = frame(&[0x30, 0x80, 0x01], MIB);
        assert_eq!((f.header_len, f.remaining), (3, 128));
        let f = frame(&[0x30, 0xFF, 0x7F], MIB);
        assert_eq!((f.header_len, f.remaining), (3, 16_383));
        let f = frame(&[0x30, 0x80, 0x80, 0x01], MIB);
        assert_eq!((f.header_len, f.remaining), (4, 16_384));
        let f = frame(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F], u32::MAX);
        assert_eq!((f.header_len, f.remaining), (5, 268_435_455));
        assert_eq!(f.total_len(), 268_435_460);
    }

    #[test]
    fn body_bytes_are_not_read() {
        // scan only frames; what follows the header is the caller's business
        let f = frame(&[0x82, 0x05, 0xFF, 0xFF], MIB);
        assert_eq!((f.header_len, f.remaining), (2, 5));
    }

    #[test]
    fn over_limit_is_refused_before_the_body() {
        // 256 MiB declared: refused from the header alone
        assert!(matches!(
            scan(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F], MIB),
            Err(FrameError::TooLarge { .. })
        ));
        // and already from a partial length that proves it
        assert!(matches!(
            scan(&[0x30, 0xFF, 0xFF, 0xFF], MIB),
            Err(FrameError::TooLarge { .. })
        ));
        // exactly at the limit passes, one over does not
        assert_eq!(frame(&[0x30, 0x80, 0x80, 0x40], MIB).remaining, MIB);
        assert_eq!(
            scan(&[0x30, 0x81, 0x80, 0x40], MIB),
            Err(FrameError::TooLarge { remaining: MIB + 1 })
        );
        assert_eq!(
            scan(&[0x30, 0x0B], 10),
            Err(FrameError::TooLarge { remaining: 11 })
        );
    }

    #[test]
    fn fifth_length_byte_is_malformed() {
        assert_eq!(
            scan(&[0x30, 0x80, 0x80, 0x80, 0x80, 0x01], u32::MAX),
            Err(FrameError::Malformed)
        );
        // with no fifth byte yet it is still malformed: the fourth promised one
        assert_eq!(
            scan(&[0x30, 0x80, 0x80, 0x80, 0x80], u32::MAX),
            Err(FrameError::Malformed)
        );
    }
}
