//! What the built-in demo origin (`test` targets) allows: every CONNECT, and every topic with
//! channel = topic (plus the route's prefix); a wildcard filter subscribes to the channels
//! its pattern matches. A route with an origin of its own asks it
//! instead ([`super::origin`]).

use gripway_proto::mqtt::parse_shared;
use gripway_proto::routes::TargetKind;

use crate::routing::RouteEntry;

/// True when the route's first target is the demo origin, which decides in process.
pub(crate) fn is_demo(route: &RouteEntry) -> bool {
    route
        .route
        .targets
        .first()
        .is_some_and(|t| matches!(t.kind, TargetKind::Test))
}

/// What a topic filter subscribes to — a channel, or for a wildcard filter a pattern over
/// channel names (true) — or why not: (v5 reason code, v3 code).
pub(crate) fn subscribe(route: &RouteEntry, filter: &str) -> Result<(String, bool), (u8, u8)> {
    let shared = parse_shared(filter);
    // a shared subscription's channel is its inner filter's
    let inner = shared.map_or(filter, |s| s.filter);
    let pattern = inner.contains(['+', '#']);
    if pattern && shared.is_some() {
        // a group is one subscriber of one channel
        return Err((0xA2, 0x80));
    }
    Ok((format!("{}{}", route.route.prefix, inner), pattern))
}

/// The channel a device's publish goes to, or the v5 reason code refusing it.
pub(crate) fn publish(route: &RouteEntry, topic: &str) -> Result<String, u8> {
    Ok(format!("{}{}", route.route.prefix, topic))
}
