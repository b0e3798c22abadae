//! The `[mqtt]` section and the MQTT listeners (`[server] mqtt_port`, `--mqtt-port`; over
//! TLS `[server] mqtt_tls_port`, `--mqtt-tls-port`): where devices connect and the limits
//! every device is held to.
//!
//! ```toml
//! [server]
//! mqtt_port = "1883"                # [addr:]port, one or more; "" or [] turns MQTT off
//! mqtt_tls_port = "8883"            # MQTT over TLS, the same shapes (default: none); the
//!                                   # certificates are [tls] certs_dir's, as for tls_port
//!
//! [mqtt]
//! path = "/mqtt"                    # the path MQTT connections are routed by
//! websocket_path = "/mqtt"          # MQTT over WebSocket on the client port (default off;
//!                                   # the demo: /mqtt)
//! max_packet_bytes = 1048576        # largest packet a device may send
//! max_inflight = 32                 # QoS 1/2 publishes a device may have unacknowledged
//! max_subscriptions = 100           # topic filters per connection
//! max_keep_alive_secs = 3600        # a longer (or zero) keep-alive is lowered to this (v5)
//! max_client_id_bytes = 256
//! max_cache_secs = 3600             # longest reuse of an origin's answer (its max-age, capped)
//! max_sessions = 100000             # persistent sessions kept for devices that are away
//! max_session_secs = 7200           # longest a session outlives its connection
//! ```
//!
//! Without `mqtt_port`, MQTT is off, except for the built-in demo (no routes configured),
//! which listens on 1883 when that port is free. MQTT over TLS is off unless asked for.

use std::net::SocketAddr;

use serde::Deserialize;

use super::{parse_listen_addr, ConfigError};

/// MQTT clients (`[mqtt]`, `[server] mqtt_port`, `--mqtt-port`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttSettings {
    /// Listeners: None is the default (off, or 1883 for the demo); empty is off.
    pub addrs: Option<Vec<SocketAddr>>,
    /// MQTT-over-TLS listeners (empty, the default: none); certificates from `[tls]`.
    pub tls_addrs: Vec<SocketAddr>,
    /// The request path MQTT connections are routed by, and that origin requests go to.
    pub path: String,
    /// The path on the client port where WebSocket clients offering the `mqtt` subprotocol
    /// speak MQTT: None is the default (off, or `/mqtt` for the demo); empty is off.
    pub websocket_path: Option<String>,
    /// Largest packet a device may send, in bytes (its remaining length).
    pub max_packet_bytes: u32,
    /// QoS 1 and 2 publishes a device may have waiting for their acknowledgement (our
    /// receive maximum).
    pub max_inflight: u16,
    /// Topic filters one connection may hold.
    pub max_subscriptions: usize,
    /// Longest keep-alive granted, in seconds; a v5 client asking more (or none) is told
    /// this one.
    pub max_keep_alive_secs: u16,
    /// Longest client identifier, in bytes.
    pub max_client_id_bytes: usize,
    /// Longest time an origin's answer is reused (its `Cache-Control: max-age` is capped to
    /// this), in seconds.
    pub max_cache_secs: u32,
    /// Persistent sessions kept for devices that are away, at most (per node).
    pub max_sessions: usize,
    /// Longest a persistent session outlives its connection, in seconds (a v5 device's
    /// session expiry is capped to it; a v3 device with `clean_session = 0` gets it).
    pub max_session_secs: u32,
}

/// The demo's MQTT port when none is configured.
pub const DEMO_PORT: u16 = 1883;

impl Default for MqttSettings {
    fn default() -> Self {
        MqttSettings {
            addrs: None,
            tls_addrs: Vec::new(),
            path: "/mqtt".into(),
            websocket_path: None,
            max_packet_bytes: 1024 * 1024,
            max_inflight: 32,
            max_subscriptions: 100,
            max_keep_alive_secs: 3600,
            max_client_id_bytes: 256,
            max_cache_secs: 3600,
            max_sessions: 100_000,
            max_session_secs: 7200,
        }
    }
}

/// `[mqtt]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMqtt {
    /// The path MQTT connections are routed by (default `/mqtt`).
    pub path: Option<String>,
    /// The client port's path for MQTT over WebSocket (default: off; the demo `/mqtt`).
    pub websocket_path: Option<String>,
    /// Largest packet a device may send, in bytes (default 1,048,576).
    pub max_packet_bytes: Option<u32>,
    /// QoS 1/2 publishes a device may have unacknowledged (default 32).
    pub max_inflight: Option<u16>,
    /// Topic filters per connection (default 100).
    pub max_subscriptions: Option<usize>,
    /// Longest keep-alive granted, in seconds (default 3,600).
    pub max_keep_alive_secs: Option<u16>,
    /// Longest client identifier, in bytes (default 256).
    pub max_client_id_bytes: Option<usize>,
    /// Longest reuse of an origin's answer, in seconds (default 3,600).
    pub max_cache_secs: Option<u32>,
    /// Persistent sessions kept for devices that are away (default 100,000).
    pub max_sessions: Option<usize>,
    /// Longest a persistent session outlives its connection, in seconds (default 7,200).
    pub max_session_secs: Option<u32>,
}

/// Parses `[server] mqtt_port`'s addresses (empty strings dropped: `""` turns MQTT off).
pub(super) fn listeners(ports: &[String]) -> Result<Vec<SocketAddr>, String> {
    ports
        .iter()
        .filter(|p| !p.trim().is_empty())
        .map(|p| parse_listen_addr(p))
        .collect()
}

/// Parses a listener flag's values (`--mqtt-port`, `--mqtt-tls-port`): `off` among them
/// turns the listeners off; errors start with the flag.
pub fn flag_listeners(flag: &str, values: &[String]) -> Result<Vec<SocketAddr>, ConfigError> {
    if values.iter().any(|p| p == "off") {
        return Ok(Vec::new());
    }
    values
        .iter()
        .map(|p| parse_listen_addr(p).map_err(|m| ConfigError::new(format!("{flag}: {m}"))))
        .collect()
}

/// Applies `[mqtt]` to `settings`; errors name the key.
pub(super) fn parse(
    raw: RawMqtt,
    settings: &mut MqttSettings,
    err: impl Fn(&str, String) -> ConfigError,
) -> Result<(), ConfigError> {
    if let Some(path) = raw.path {
        if !path.starts_with('/') {
            return Err(err("path", "[mqtt] path must start with /".into()));
        }
        settings.path = path;
    }
    if let Some(path) = raw.websocket_path {
        if !path.is_empty() && !path.starts_with('/') {
            return Err(err(
                "websocket_path",
                "[mqtt] websocket_path must start with / (or be empty: off)".into(),
            ));
        }
        settings.websocket_path = Some(path);
    }
    if let Some(n) = raw.max_packet_bytes {
        // the fixed header's remaining length holds at most 268,435,455
        if !(64..=268_435_455).contains(&n) {
            return Err(err(
                "max_packet_bytes",
                "[mqtt] max_packet_bytes must be between 64 and 268435455".into(),
            ));
        }
        settings.max_packet_bytes = n;
    }
    if let Some(n) = raw.max_inflight {
        if n == 0 {
            return Err(err(
                "max_inflight",
                "[mqtt] max_inflight must be at least 1".into(),
            ));
        }
        settings.max_inflight = n;
    }
    if let Some(n) = raw.max_subscriptions {
        if n == 0 || n > 10_000 {
            return Err(err(
                "max_subscriptions",
                "[mqtt] max_subscriptions must be between 1 and 10000".into(),
            ));
        }
        settings.max_subscriptions = n;
    }
    if let Some(n) = raw.max_keep_alive_secs {
        if n == 0 {
            return Err(err(
                "max_keep_alive_secs",
                "[mqtt] max_keep_alive_secs must be at least 1".into(),
            ));
        }
        settings.max_keep_alive_secs = n;
    }
    if let Some(n) = raw.max_client_id_bytes {
        if !(23..=65_535).contains(&n) {
            return Err(err(
                "max_client_id_bytes",
                "[mqtt] max_client_id_bytes must be between 23 and 65535".into(),
            ));
        }
        settings.max_client_id_bytes = n;
    }
    if let Some(n) = raw.max_cache_secs {
        settings.max_cache_secs = n;
    }
    if let Some(n) = raw.max_sessions {
        settings.max_sessions = n;
    }
    if let Some(n) = raw.max_session_secs {
        settings.max_session_secs = n;
    }
    Ok(())
}

impl MqttSettings {
    /// The client port's MQTT-over-WebSocket path, if any.
    pub fn websocket_path(&self, demo: bool) -> Option<&str> {
        match self.websocket_path.as_deref() {
            Some("") => None,
            Some(p) => Some(p),
            None if demo => Some("/mqtt"),
            None => None,
        }
    }

    /// The listeners to open, and whether failing to bind them is only a warning (the
    /// demo's default port).
    pub fn listeners(&self, demo: bool) -> (Vec<SocketAddr>, bool) {
        match &self.addrs {
            Some(addrs) => (addrs.clone(), false),
            None if demo => (vec![SocketAddr::from(([0, 0, 0, 0], DEMO_PORT))], true),
            None => (Vec::new(), false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::file::parse;

    fn parse_str(text: &str) -> Result<crate::config::Config, ConfigError> {
        parse(text, std::path::Path::new("/etc/gripway/gripway.toml"))
    }

    #[test]
    fn mqtt_section_and_ports() {
        let c = parse_str(
            "[server]\nmqtt_port = [1883, \"127.0.0.1:8883\"]\n[mqtt]\npath = \"/devices\"\nmax_packet_bytes = 4096\nmax_inflight = 8\n",
        )
        .unwrap();
        assert_eq!(c.mqtt.addrs.as_ref().map(Vec::len), Some(2));
        assert_eq!(c.mqtt.path, "/devices");
        assert_eq!((c.mqtt.max_packet_bytes, c.mqtt.max_inflight), (4096, 8));
        let off = parse_str("[server]\nmqtt_port = \"\"\n").unwrap();
        assert_eq!(off.mqtt.addrs, Some(vec![]));
        assert!(off.mqtt.tls_addrs.is_empty(), "no MQTT over TLS by default");
        let tls = parse_str("[server]\nmqtt_tls_port = [8883, \"127.0.0.1:8884\"]\n").unwrap();
        assert_eq!(
            tls.mqtt.tls_addrs,
            vec![
                SocketAddr::from(([0, 0, 0, 0], 8883)),
                SocketAddr::from(([127, 0, 0, 1], 8884))
            ]
        );
        assert_eq!(tls.mqtt.addrs, None, "the plain listeners are as they were");
        let e = parse_str("[server]\nmqtt_tls_port = \"nowhere\"\n").unwrap_err();
        assert_eq!(e.line, Some(2), "the error names the line: {e}");
        for bad in [
            "[mqtt]\nmax_packet_bytes = 300000000\n",
            "[mqtt]\nmax_inflight = 0\n",
            "[mqtt]\npath = \"mqtt\"\n",
            "[mqtt]\nsurprise = 1\n",
        ] {
            assert!(parse_str(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn listener_flags_parse_and_off_turns_them_off() {
        let v = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            flag_listeners("--mqtt-tls-port", &v(&["8883", "[::1]:8884"])).unwrap(),
            vec![
                SocketAddr::from(([0, 0, 0, 0], 8883)),
                "[::1]:8884".parse().unwrap()
            ]
        );
        assert_eq!(flag_listeners("--mqtt-tls-port", &v(&["off"])), Ok(vec![]));
        let e = flag_listeners("--mqtt-tls-port", &v(&["nowhere"])).unwrap_err();
        assert!(e.to_string().starts_with("--mqtt-tls-port: "), "{e}");
    }

    #[test]
    fn the_demo_listens_on_1883_unless_told_otherwise() {
        let s = MqttSettings::default();
        assert_eq!(s.listeners(false).0, vec![]);
        let (addrs, best_effort) = s.listeners(true);
        assert_eq!(addrs[0].port(), DEMO_PORT);
        assert!(best_effort);
        let off = MqttSettings {
            addrs: Some(vec![]),
            ..MqttSettings::default()
        };
        assert!(off.listeners(true).0.is_empty());
    }
}
