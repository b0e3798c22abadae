//! The size bound a patch is applied under: the compact JSON length of the document, kept
//! while operations apply so that no operation can make the document larger than a limit.
//!
//! Sizes are measured by serializing into a counter that stops at the budget left, so
//! measuring a value costs at most the limit, allocates nothing, and a `copy` of a value
//! too large to fit is refused before the value is cloned. The running size is exact for
//! the template and counts one separator per member or element added (an upper bound), so a
//! document that passes stays within the limit once serialized.

use std::io;

use serde::Serialize;
use serde_json::Value;

/// The compact JSON length of `value`, or `None` when it is over `cap` bytes. Stops
/// serializing as soon as `cap` is passed.
pub(crate) fn json_len<T: Serialize + ?Sized>(value: &T, cap: usize) -> Option<usize> {
    let mut counter = Counter { written: 0, cap };
    serde_json::to_writer(&mut counter, value).ok()?;
    Some(counter.written)
}

/// Bytes an object member or array element adds besides its value: the escaped key with
/// its quotes, `:` and `,` for a member; `,` for an element. `None` over `cap`.
pub(crate) fn entry_overhead(parent: &Value, token: &str, cap: usize) -> Option<usize> {
    match parent {
        Value::Object(_) => json_len(token, cap).map(|key| key + 2),
        _ => Some(1),
    }
}

/// Counts bytes written, failing once more than `cap` have been.
struct Counter {
    written: usize,
    cap: usize,
}

impl io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.written = self.written.saturating_add(buf.len());
        if self.written > self.cap {
            return Err(io::Error::other("over the size limit"));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The running size of a document under a limit.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SizeBound {
    /// The document's compact JSON length (an upper bound once operations have applied).
    pub(crate) size: usize,
    /// The most `size` may reach.
    pub(crate) limit: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lengths_match_serde_json_and_stop_at_the_cap() {
        let v = json!({"a": [1, 2.5, "x\"y", null, true], "é": {"k": "\u{1}"}});
        let exact = serde_json::to_vec(&v).unwrap().len();
        assert_eq!(json_len(&v, usize::MAX), Some(exact));
        assert_eq!(json_len(&v, exact), Some(exact));
        assert_eq!(json_len(&v, exact - 1), None);
        assert_eq!(json_len("a/b", 100), Some(5));
        assert_eq!(entry_overhead(&json!({}), "key", 100), Some(7));
        assert_eq!(entry_overhead(&json!([]), "-", 100), Some(1));
    }
}
