//! Channel names as NATS subjects. A channel is arbitrary UTF-8 (dots, spaces, `*`, `>`,
//! anything), but a NATS subject token may hold none of `.`, `*`, `>` or whitespace, so each
//! channel is encoded into exactly ONE token: bytes in `[A-Za-z0-9_-]` stand for themselves
//! (short ASCII names stay readable in `nats` tooling), every other byte is `%` and two
//! uppercase hex digits, and the empty channel is the lone token `%` (which no non-empty name
//! encodes to). The encoding is reversible ([`decode_token`]) and at most three times the
//! name's length; [`MAX_TOKEN_BYTES`] bounds it so that a subject always fits NATS's default
//! 4 KiB protocol line together with the reply inbox.
//!
//! Subjects: `gripway.in.<token>` is what publishes go to (the stream captures
//! `gripway.in.>`), `gripway.out.<token>` is where the stream republishes what it stored.

/// Prefix of the subjects the stream stores.
pub const IN_PREFIX: &str = "gripway.in.";
/// Prefix of the subjects the stream republishes to.
pub const OUT_PREFIX: &str = "gripway.out.";

/// The longest token accepted: a 1,024-byte channel (Gripway's default bound) with every byte
/// escaped. Longer subjects risk NATS's `max_control_line` (4,096 bytes by default).
pub const MAX_TOKEN_BYTES: usize = 3 * 1024;

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// The channel's subject token, or None when it would be longer than [`MAX_TOKEN_BYTES`].
pub fn encode_token(channel: &str) -> Option<String> {
    if channel.is_empty() {
        return Some("%".to_string());
    }
    let len: usize = channel.bytes().map(|b| if plain(b) { 1 } else { 3 }).sum();
    if len > MAX_TOKEN_BYTES {
        return None;
    }
    let mut out = String::with_capacity(len);
    for b in channel.bytes() {
        if plain(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
    Some(out)
}

/// The channel a token stands for, or None when the token is not one [`encode_token`] makes
/// (a bad escape, a byte that should have been escaped, invalid UTF-8).
pub fn decode_token(token: &str) -> Option<String> {
    if token == "%" {
        return Some(String::new());
    }
    if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
        return None;
    }
    let bytes = token.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if plain(b) {
            out.push(b);
            i += 1;
        } else if b == b'%' && i + 2 < bytes.len() {
            let hi = hex_value(bytes[i + 1])?;
            let lo = hex_value(bytes[i + 2])?;
            let v = hi << 4 | lo;
            if plain(v) {
                return None; // not canonical: encode_token never escapes these
            }
            out.push(v);
            i += 3;
        } else {
            return None;
        }
    }
    String::from_utf8(out).ok()
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `gripway.in.<token>`: the subject a publish to `channel` goes to.
pub fn in_subject(token: &str) -> String {
    format!("{IN_PREFIX}{token}")
}

/// `gripway.out.<token>`: the subject the stream republishes `channel`'s items to.
pub fn out_subject(token: &str) -> String {
    format!("{OUT_PREFIX}{token}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A token NATS accepts as one literal token: non-empty, none of `.`, `*`, `>`, and no
    /// whitespace or control bytes.
    fn one_valid_token(t: &str) -> bool {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_graphic() && b != b'.' && b != b'*' && b != b'>')
    }

    #[test]
    fn readable_ascii_stays() {
        assert_eq!(encode_token("news").as_deref(), Some("news"));
        assert_eq!(encode_token("user_42-x").as_deref(), Some("user_42-x"));
    }

    #[test]
    fn special_channels_become_one_token() {
        for ch in [
            "a.b",
            "*",
            ">",
            "a b",
            "a\tb",
            "tick.*.>",
            "%",
            "%41",
            "日本語.チャンネル",
            "emoji 🎉",
            ".",
            "..",
            "",
        ] {
            let t = encode_token(ch).expect("short enough");
            assert!(one_valid_token(&t), "{ch:?} -> {t:?}");
            assert_eq!(decode_token(&t).as_deref(), Some(ch), "{t:?}");
        }
        assert_eq!(encode_token("a.b").as_deref(), Some("a%2Eb"));
        assert_eq!(encode_token("").as_deref(), Some("%"));
    }

    #[test]
    fn length_bound() {
        assert!(encode_token(&"é".repeat(512)).is_some()); // 1,024 bytes, all escaped
        assert!(encode_token(&".".repeat(1025)).is_none());
        assert!(encode_token(&"a".repeat(MAX_TOKEN_BYTES)).is_some());
    }

    #[test]
    fn non_canonical_tokens_are_refused() {
        for t in [
            "", "%4", "%", "%zz", "%41", "%2e", "a.b", "a b", "%FF", "%C3", "x%",
        ] {
            if t == "%" {
                continue; // the empty channel
            }
            assert_eq!(decode_token(t), None, "{t:?}");
        }
    }

    proptest! {
        #[test]
        fn round_trip(ch in "\\PC{0,40}|[ -~]{0,40}|.{0,20}") {
            let t = encode_token(&ch).expect("short");
            prop_assert!(one_valid_token(&t));
            prop_assert_eq!(decode_token(&t), Some(ch));
        }

        #[test]
        fn distinct_channels_distinct_tokens(a in ".{0,12}", b in ".{0,12}") {
            prop_assume!(a != b);
            prop_assert_ne!(encode_token(&a), encode_token(&b));
        }
    }
}
