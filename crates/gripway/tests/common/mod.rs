//! Shared by the integration tests: the binary under test, started on port 0.
#![allow(dead_code, unreachable_pub)]

pub use gripway_test_support::*;

pub mod mqtt_setup;
pub mod tls_setup;

/// Starts the gripway binary built for these tests.
pub fn gripway(args: &[&str]) -> Gripway {
    Gripway::start(env!("CARGO_BIN_EXE_gripway"), args)
}

/// Starts gripway with one route to `origin`.
pub fn gripway_to(origin: &Origin, extra: &[&str]) -> Gripway {
    let route = format!("* {}", origin.target());
    let mut args = vec!["--route", route.as_str()];
    args.extend_from_slice(extra);
    gripway(&args)
}

/// A publish body with one http-stream item.
pub fn stream_item(channel: &str, content: &str) -> String {
    serde_json::json!({"items": [{"channel": channel, "formats": {"http-stream": {"content": content}}}]}).to_string()
}
