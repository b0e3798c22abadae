//! MQTT 3.1, 3.1.1 and 5.0 as bytes and values, with no I/O: a thin adapter over the
//! `mqtt-proto` crate that frames packets itself and calls the crate only on paths that cannot
//! panic or allocate from an untrusted length (docs/mqtt-design.md §1.2–1.3).
//!
//! `frame` finds one packet's fixed header and refuses an over-limit length before any body is
//! buffered. The crate's own stream/poll decoders are never used: they pre-allocate the declared
//! length and reach `unreachable!()` on some packet types.

mod frame;

pub use frame::{scan, Frame, FrameError, Scan};
