//! GRIP over a WebSocket: what an origin's message means once the origin has enabled the
//! `grip` extension, and the timed messages control messages set up.
//!
//! With the extension, a text message starting `c:` is a control message for the proxy;
//! every other message must start with the message prefix (default `m:`), which is removed
//! before it goes to the client; a message without it is dropped. Without the extension every
//! message goes to the client as it is.

use std::time::{Duration, Instant};

use bytes::Bytes;
use gripway_proto::ws_control::{
    parse_control_message, ControlLimits, ControlMessage, DelayMode, GripExtension, TimedMessage,
    WsMessageType, CONTROL_PREFIX,
};
use gripway_proto::ws_frame::{encode_frame, FrameKind};

/// What to do with one message from the origin.
#[derive(Debug)]
pub(crate) enum FromOrigin {
    /// Send this frame to the client.
    Frame(Bytes),
    /// Act on a control message.
    Control(ControlMessage),
    /// Nothing (no prefix, text that is not UTF-8, or an invalid control message; logged).
    Drop,
    /// A control message the connection cannot survive (too many filters): close with 1011.
    Fatal(String),
}

/// Decides what an origin's text or binary message is.
pub(crate) fn from_origin(
    grip: Option<&GripExtension>,
    binary: bool,
    content: Bytes,
) -> FromOrigin {
    let kind = if binary {
        FrameKind::Binary
    } else {
        FrameKind::Text
    };
    let Some(grip) = grip else {
        return text_or_binary(kind, content);
    };
    if !binary {
        if let Some(json) = content.strip_prefix(CONTROL_PREFIX.as_bytes()) {
            return match parse_control_message(json, &ControlLimits::default()) {
                Ok(c) => FromOrigin::Control(c),
                Err(e) if e.closes_connection() => FromOrigin::Fatal(e.to_string()),
                Err(e) => {
                    tracing::info!("invalid control message from the origin, ignored: {e}");
                    FromOrigin::Drop
                }
            };
        }
    }
    let prefix = grip.message_prefix.as_bytes();
    if content.starts_with(prefix) {
        text_or_binary(kind, content.slice(prefix.len()..))
    } else {
        FromOrigin::Drop
    }
}

/// A frame for the client; text must be UTF-8 (a text frame that is not would make the client
/// close the connection).
fn text_or_binary(kind: FrameKind, content: Bytes) -> FromOrigin {
    if kind == FrameKind::Text && std::str::from_utf8(&content).is_err() {
        tracing::info!("text message from the origin is not UTF-8; dropped");
        return FromOrigin::Drop;
    }
    FromOrigin::Frame(encode_frame(kind, content))
}

/// A message the proxy sends on the origin's behalf after a delay (`keep-alive`,
/// `send-delayed`).
pub(crate) struct Timed {
    pub(crate) frame: Bytes,
    pub(crate) period: Duration,
    pub(crate) idle: bool,
    pub(crate) due: Instant,
}

impl Timed {
    pub(crate) fn new(m: &TimedMessage, now: Instant) -> Timed {
        let kind = match m.message_type {
            WsMessageType::Text => FrameKind::Text,
            WsMessageType::Binary => FrameKind::Binary,
            WsMessageType::Ping => FrameKind::Ping,
            WsMessageType::Pong => FrameKind::Pong,
        };
        let period = Duration::from_secs(u64::from(m.timeout_secs.max(1)));
        Timed {
            frame: encode_frame(kind, m.content.clone()),
            period,
            idle: m.mode == DelayMode::Idle,
            due: now + period,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grip(prefix: &str) -> GripExtension {
        GripExtension {
            message_prefix: prefix.into(),
        }
    }

    #[test]
    fn prefix_rules() {
        let g = grip("m:");
        assert!(
            matches!(from_origin(Some(&g), false, Bytes::from_static(b"m:hi")),
            FromOrigin::Frame(f) if &f[..] == b"\x81\x02hi")
        );
        assert!(matches!(
            from_origin(Some(&g), false, Bytes::from_static(b"hi")),
            FromOrigin::Drop
        ));
        assert!(
            matches!(from_origin(Some(&g), true, Bytes::from_static(b"m:\x00")),
            FromOrigin::Frame(f) if &f[..] == b"\x82\x01\x00")
        );
        assert!(matches!(
            from_origin(
                Some(&g),
                false,
                Bytes::from_static(b"c:{\"type\":\"detach\"}")
            ),
            FromOrigin::Control(ControlMessage::Detach)
        ));
        assert!(matches!(
            from_origin(Some(&g), false, Bytes::from_static(b"c:{bad")),
            FromOrigin::Drop
        ));
        assert!(matches!(
            from_origin(Some(&g), false, Bytes::from_static(b"m:\xff")),
            FromOrigin::Drop
        ));
        let many = br#"c:{"type":"subscribe","channel":"x","filters":["a","b","c","d","e","f"]}"#;
        assert!(matches!(
            from_origin(Some(&g), false, Bytes::from_static(many)),
            FromOrigin::Fatal(_)
        ));
        assert!(
            matches!(from_origin(Some(&grip("")), false, Bytes::from_static(b"plain")),
            FromOrigin::Frame(f) if &f[..] == b"\x81\x05plain")
        );
        // without the extension nothing is special
        assert!(
            matches!(from_origin(None, false, Bytes::from_static(b"c:{}")),
            FromOrigin::Frame(f) if &f[..] == b"\x81\x04c:{}")
        );
    }
}
