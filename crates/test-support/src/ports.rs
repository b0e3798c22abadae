//! Ports for servers that a test restarts on the same address.

use std::net::TcpListener;
use std::sync::Mutex;

/// A port that was free a moment ago, chosen below the kernel's ephemeral range.
///
/// Servers in the tests are killed and restarted on the same ports (nats-server, and
/// Gripway through [`crate::Gripway::restart_like`]). A port from the ephemeral range
/// (what binding port 0 gives) can be taken meanwhile by any outgoing connection, the node's
/// own reconnect attempts included, and the restart then fails with "address in use"; ports
/// below that range are only ever taken by an explicit bind.
pub(crate) fn free_port() -> u16 {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (first, span) = (10_000u16, low.saturating_sub(10_000).max(1));
    // a different start per process and call, so that parallel tests rarely probe alike
    let seed = std::process::id()
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
    // never the same port twice in one process, even before a server binds it
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    for i in 0..u32::from(span) {
        let port = first + ((seed.wrapping_add(i.wrapping_mul(7919))) % u32::from(span)) as u16;
        if !given.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
    let l = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    l.local_addr().expect("local addr").port()
}
