//! Content fields of a format: a text field or its base64 `-bin` twin (one of them),
//! decoded and checked against a size limit, with errors worded for the publisher.

use std::borrow::Cow;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, DecodeError, Engine as _};
use bytes::Bytes;

use super::{invalid, too_large, FormatLoc};
use crate::publish::PublishError;

/// Standard-alphabet base64 that takes input with or without `=` padding.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Decoded content and the key it came from.
pub(super) struct Payload {
    pub(super) bytes: Bytes,
    pub(super) field: &'static str,
    pub(super) from_base64: bool,
}

/// Takes the one of `text` / `bin` (base64) that is present, decoded and size-checked;
/// `None` when neither is. Both present is an error.
pub(super) fn payload(
    loc: FormatLoc,
    max: usize,
    text: Option<Cow<'_, str>>,
    text_key: &'static str,
    bin: Option<Cow<'_, str>>,
    bin_key: &'static str,
) -> Result<Option<Payload>, PublishError> {
    let item = Some(loc.item);
    let payload = match (text, bin) {
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => {
            let message = format!("{loc}: has both '{text_key}' and '{bin_key}'; give one");
            return Err(invalid(item, message));
        }
        (Some(text), None) => {
            check_size(text.len(), max, loc, text_key)?;
            Payload {
                bytes: cow_into_bytes(text),
                field: text_key,
                from_base64: false,
            }
        }
        (None, Some(encoded)) => {
            let decoded = decode_base64(&encoded)
                .map_err(|why| invalid(item, format!("{loc}.{bin_key}: {why}")))?;
            check_size(decoded.len(), max, loc, bin_key)?;
            Payload {
                bytes: Bytes::from(decoded),
                field: bin_key,
                from_base64: true,
            }
        }
    };
    Ok(Some(payload))
}

pub(super) fn check_size(
    len: usize,
    max: usize,
    loc: FormatLoc,
    field: &str,
) -> Result<(), PublishError> {
    if len > max {
        let message = format!("{loc}.{field}: {len} bytes, over the limit of {max}");
        return Err(too_large(Some(loc.item), message));
    }
    Ok(())
}

/// Decodes `*-bin` content: standard alphabet, padding optional, ASCII whitespace (as in
/// line-wrapped base64) skipped. The error is worded for a user.
fn decode_base64(text: &str) -> Result<Vec<u8>, String> {
    let result = match LENIENT_BASE64.decode(text) {
        Err(_) if text.bytes().any(|b| b.is_ascii_whitespace()) => {
            let compact: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
            LENIENT_BASE64.decode(compact)
        }
        other => other,
    };
    result.map_err(|e| match e {
        DecodeError::InvalidByte(offset, byte) => format!(
            "not valid base64: unexpected {:?} at offset {offset}",
            char::from(byte)
        ),
        DecodeError::InvalidLastSymbol(offset, _) => {
            format!("not valid base64: bad final symbol at offset {offset}")
        }
        DecodeError::InvalidLength(_) => "not valid base64: wrong length".to_owned(),
        DecodeError::InvalidPadding => "not valid base64: bad padding".to_owned(),
    })
}

/// Content as bytes: a string borrowed from the body is copied once, an unescaped (owned)
/// one is moved without copying.
fn cow_into_bytes(text: Cow<'_, str>) -> Bytes {
    match text {
        Cow::Borrowed(s) => Bytes::copy_from_slice(s.as_bytes()),
        Cow::Owned(s) => Bytes::from(s),
    }
}
