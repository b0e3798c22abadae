//! Who may connect, subscribe and publish, and to which channels. The built-in demo origin
//! (`test` targets) allows everything, with channel = topic; a route's own origin will decide
//! over HTTP (MQTT-over-HTTP). Until that is built, only the demo route serves MQTT: other
//! routes refuse CONNECT with "server unavailable".

use gripway_proto::mqtt::ConnectInfo;
use gripway_proto::routes::TargetKind;

use crate::routing::RouteEntry;

fn is_demo(route: &RouteEntry) -> bool {
    route
        .route
        .targets
        .first()
        .is_some_and(|t| matches!(t.kind, TargetKind::Test))
}

/// Allows a CONNECT, or says why not: (v5 reason code, v3 return code, why).
pub(crate) fn connect(
    route: &RouteEntry,
    _connect: &ConnectInfo,
) -> Result<(), (u8, u8, &'static str)> {
    if is_demo(route) {
        Ok(())
    } else {
        Err((0x88, 3, "the route's origin cannot decide for MQTT yet"))
    }
}

/// The channel a topic filter subscribes to, or why not: (v5 reason code, v3 code).
pub(crate) fn subscribe(route: &RouteEntry, filter: &str) -> Result<String, (u8, u8)> {
    if filter.starts_with("$share/") {
        // shared subscriptions are not available yet
        return Err((0x9E, 0x80));
    }
    if filter.contains(['+', '#']) {
        // wildcards need the origin to map them to channels
        return Err((0xA2, 0x80));
    }
    if !is_demo(route) {
        return Err((0x87, 0x80));
    }
    Ok(format!("{}{}", route.route.prefix, filter))
}

/// The channel a device's publish goes to, or the v5 reason code refusing it.
pub(crate) fn publish(route: &RouteEntry, topic: &str) -> Result<String, u8> {
    if !is_demo(route) {
        return Err(0x87);
    }
    Ok(format!("{}{}", route.route.prefix, topic))
}
