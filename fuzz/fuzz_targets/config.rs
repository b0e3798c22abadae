//! The server's config file (`gripway_server::config::file::parse`) on arbitrary text: TOML
//! into the raw config, then every validation. Config is written by the operator, not an
//! attacker, but a typo must give an error naming the line, never a panic. Inputs that name
//! device or proc files are skipped (a `file:` key spec would be read).
#![no_main]

use std::path::Path;

use gripway_server::config::file::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if ["/dev", "/proc", "/sys", "..", "~"]
        .iter()
        .any(|p| text.contains(p))
    {
        return;
    }
    if let Err(e) = parse(text, Path::new("/nonexistent/gripway.toml")) {
        let _ = e.to_string();
    }
});
