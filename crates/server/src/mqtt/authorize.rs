//! What the built-in demo origin (`test` targets) allows: every CONNECT, and exact topics with
//! channel = topic (plus the route's prefix). A route with an origin of its own asks it
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

/// The channel a topic filter subscribes to, or why not: (v5 reason code, v3 code).
pub(crate) fn subscribe(route: &RouteEntry, filter: &str) -> Result<String, (u8, u8)> {
    // a shared subscription's channel is its inner filter's
    let filter = parse_shared(filter).map_or(filter, |s| s.filter);
    if filter.contains(['+', '#']) {
        // wildcards need the origin to map them to channels
        return Err((0xA2, 0x80));
    }
    Ok(format!("{}{}", route.route.prefix, filter))
}

/// The channel a device's publish goes to, or the v5 reason code refusing it.
pub(crate) fn publish(route: &RouteEntry, topic: &str) -> Result<String, u8> {
    Ok(format!("{}{}", route.route.prefix, topic))
}
