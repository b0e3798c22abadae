//! GRIP as bytes and values, with no sockets and no runtime: everything Gripway reads from or
//! writes to the wire is parsed and encoded here, so it can be unit-tested, fuzzed and
//! benchmarked on its own. The server crate does the I/O; the broker crate owns channel state.
//!
//! Parsers here never panic on untrusted input and never allocate without a bound: each one
//! takes its limits as arguments and returns an error that says which field was wrong.

pub mod auth;
pub mod chunked;
pub mod http1;
pub mod instruct;
pub mod mqtt;
pub mod mqtt_origin;
pub mod params;
pub mod publish;
pub mod routes;
pub mod sig;
pub mod woh;
pub mod ws_control;
pub mod ws_deflate;
pub mod ws_frame;
