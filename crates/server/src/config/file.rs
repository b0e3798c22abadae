//! The `gripway.toml` file: its raw serde shape (every field documented, unknown fields
//! refused) and its translation into [`Config`]. Every error names the file and, where the
//! TOML parser or our validation can tell, the line.
//!
//! ```toml
//! [server]
//! http_port = ["7999"]              # Pushpin's [addr:]port, one or more (or 7999, "7999")
//! tls_port = "443"                  # TLS listeners, the same shapes (default: none)
//! mqtt_port = "1883"                # MQTT listeners, the same shapes ([mqtt]: config/mqtt.rs)
//! mqtt_tls_port = "8883"            # MQTT over TLS, the same shapes; certificates from [tls]
//! publish_port = "127.0.0.1:5561"
//! admin_port = "127.0.0.1:5564"     # "" disables metrics/health
//! routes_file = "routes"            # relative to this file; or `routes = ["* 127.0.0.1:8080"]`
//!
//! [tls]
//! certs_dir = "certs"               # relative to this file; <host>.crt + <host>.key
//!
//! [http2]
//! max_concurrent_streams = 100      # SETTINGS_MAX_CONCURRENT_STREAMS per connection
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use gripway_proto::auth::{PublishAuth, PublishAuthConfig};
use gripway_proto::sig::parse_verifying_key;
use serde::Deserialize;

use super::{
    parse_forwarded_for, parse_forwarded_proto, parse_listen_addr, Config, ConfigError,
    RoutesSource,
};

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Listeners, routes and threads.
    #[serde(default)]
    pub server: RawServer,
    /// Proxying to origins.
    #[serde(default)]
    pub proxy: RawProxy,
    /// Holding connections.
    #[serde(default)]
    pub grip: RawGrip,
    /// The publish API.
    #[serde(default)]
    pub publish: RawPublish,
    /// WebSocket clients.
    #[serde(default)]
    pub websocket: RawWebSocket,
    /// Per-channel history.
    #[serde(default)]
    pub history: RawHistory,
    /// Cluster mode over NATS JetStream.
    #[serde(default)]
    pub cluster: super::cluster::RawCluster,
    /// TLS toward clients.
    #[serde(default)]
    pub tls: RawTls,
    /// MQTT clients.
    #[serde(default)]
    pub mqtt: super::mqtt::RawMqtt,
    /// HTTP/2 toward clients.
    #[serde(default)]
    pub http2: RawHttp2,
}

/// `[http2]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp2 {
    /// Streams one HTTP/2 connection may have open at once (default 100).
    pub max_concurrent_streams: Option<u32>,
}

/// `[tls]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// Certificate directory (`<host>.crt` + `<host>.key`, `_.example.com` wildcards,
    /// `default`), relative to this file; unset: a self-signed certificate for localhost.
    pub certs_dir: Option<String>,
}

/// Listen addresses as Pushpin writes them: a port number, an `"[addr:]port"` string, or a
/// list of either.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Ports(pub Vec<String>);

impl<'de> Deserialize<'de> for Ports {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct One;
        impl<'de> serde::de::Visitor<'de> for One {
            type Value = String;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a port number or an \"[addr:]port\" string")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<String, E> {
                Ok(v.to_string())
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<String, E> {
                Ok(v.to_string())
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
                Ok(v.to_string())
            }
        }
        struct OneOrMany;
        impl<'de> serde::de::Visitor<'de> for OneOrMany {
            type Value = Vec<String>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a port number, an \"[addr:]port\" string, or a list of them")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Vec<String>, E> {
                Ok(vec![v.to_string()])
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Vec<String>, E> {
                Ok(vec![v.to_string()])
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Vec<String>, E> {
                Ok(vec![v.to_string()])
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Vec<String>, A::Error> {
                struct Item(String);
                impl<'de> Deserialize<'de> for Item {
                    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                        d.deserialize_any(One).map(Item)
                    }
                }
                let mut out = Vec::new();
                while let Some(Item(s)) = seq.next_element()? {
                    out.push(s);
                }
                Ok(out)
            }
        }
        d.deserialize_any(OneOrMany).map(Ports)
    }
}

/// `[history]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHistory {
    /// Most items kept per channel (0: history off).
    pub max_items: Option<usize>,
    /// How long an item is kept, in seconds.
    pub max_age_secs: Option<u64>,
    /// Most bytes all kept items may cost.
    pub max_bytes: Option<usize>,
    /// Directory of the on-disk store.
    pub dir: Option<String>,
    /// fsync policy of the on-disk store: 0 every write, N every N ms.
    pub fsync_ms: Option<u64>,
    /// Most items one recovery sends per channel.
    pub max_recover: Option<usize>,
}

/// `[websocket]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebSocket {
    /// Largest message a client may send, in bytes (default 65,536).
    pub max_message_bytes: Option<usize>,
    /// Negotiate permessage-deflate when a client offers it (default false).
    pub permessage_deflate: Option<bool>,
    /// Bytes of client messages held for the origin before reading the client pauses
    /// (default 200,000).
    pub origin_queue_bytes: Option<usize>,
}

/// `[server]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Client listeners, `[addr:]port` each (default `7999` on every address).
    pub http_port: Option<Ports>,
    /// TLS client listeners, the same shapes (default: none).
    pub tls_port: Option<Ports>,
    /// MQTT listeners, the same shapes (default: none; the demo 1883); `""` turns MQTT off.
    pub mqtt_port: Option<Ports>,
    /// MQTT-over-TLS listeners, the same shapes (default: none); certificates from `[tls]`.
    pub mqtt_tls_port: Option<Ports>,
    /// Publish API listener (default `127.0.0.1:5561`).
    pub publish_port: Option<String>,
    /// Admin listener for `/metrics` and `/health` (default `127.0.0.1:5564`; empty disables).
    pub admin_port: Option<String>,
    /// Routes file in Pushpin's syntax, relative to this file; reloaded when it changes.
    pub routes_file: Option<String>,
    /// Route lines given inline (instead of a routes file).
    pub routes: Option<Vec<String>>,
    /// Runtime worker threads (default: one per core).
    pub workers: Option<usize>,
    /// How long the drain at SIGTERM/SIGINT may take, in ms (default 10,000).
    pub drain_timeout_ms: Option<u64>,
}

/// `[proxy]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProxy {
    /// Verbose error bodies for every route.
    pub debug: Option<bool>,
    /// Grip-Sig issuer (default `pushpin`).
    pub sig_iss: Option<String>,
    /// Grip-Sig key: secret, `base64:...` or `file:...` (default `changeme`; empty: unsigned).
    pub sig_key: Option<String>,
    /// Key that verifies a trusted upstream proxy's Grip-Sig.
    pub upstream_key: Option<String>,
    /// `append`, `truncate:N` or `off`.
    pub x_forwarded_for: Option<String>,
    /// The same, for trusted upstreams.
    pub x_forwarded_for_trusted: Option<String>,
    /// `proto-only`, `both` or `off`.
    pub x_forwarded_proto: Option<String>,
    /// Largest request head in bytes.
    pub max_request_head: Option<usize>,
    /// Largest request body in bytes.
    pub max_request_body: Option<usize>,
    /// Largest body of an instruction response in bytes.
    pub max_instruct_body: Option<usize>,
    /// Origin connect timeout in milliseconds.
    pub connect_timeout_ms: Option<u64>,
    /// Origin response-head timeout in milliseconds.
    pub response_timeout_ms: Option<u64>,
    /// Client request-head timeout in milliseconds.
    pub request_head_timeout_ms: Option<u64>,
    /// Idle keep-alive client timeout in milliseconds.
    pub idle_timeout_ms: Option<u64>,
    /// Time a client may take no part of a response in milliseconds (default 30,000).
    pub write_timeout_ms: Option<u64>,
}

/// `[grip]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGrip {
    /// Channels per connection (default 20).
    pub max_channels_per_connection: Option<usize>,
    /// Bytes queued for a slow subscriber before it is disconnected.
    pub subscriber_queue_bytes: Option<usize>,
    /// Client connections at once.
    pub max_connections: Option<usize>,
    /// Re-requests of a long-poll whose origin answers with a stale `prev-id` (default 6).
    pub max_stale_retries: Option<u32>,
    /// Shortest time between two next-link fetches of one stream, in ms (default 1,000).
    pub next_link_min_interval_ms: Option<u64>,
    /// Next-link fetches running at once node-wide (default 256).
    pub max_next_link_fetches: Option<usize>,
    /// Re-check of a channel's holds this long after its first subscription, in ms
    /// (default 1,000; 0: off).
    pub first_subscription_recheck_ms: Option<u64>,
    /// Client connections from one address at once (default 0: no limit).
    pub max_connections_per_address: Option<usize>,
    /// File descriptors kept back from clients (default: a tenth of the limit, at least 1,024).
    pub fd_reserve: Option<usize>,
}

/// `[publish]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPublish {
    /// Largest publish request body in bytes (default 1,000,000).
    pub max_body: Option<usize>,
    /// Largest content per format in bytes on Pushpin's `/publish/` (default 1,000,000, as
    /// Pushpin; larger gives 413).
    pub max_content: Option<usize>,
    /// Largest content per format in bytes on Fastly's `/service/{id}/publish/` (default
    /// 32,767, as Fanout; larger gives 413).
    pub fastly_max_content: Option<usize>,
    /// Most items per request.
    pub max_items: Option<usize>,
    /// Dedup window in seconds (default 60; 0 disables).
    pub dedup_window_secs: Option<u64>,
    /// Ordering wait in milliseconds (default 5000).
    pub order_wait_ms: Option<u64>,
    /// Bytes of (channel, id) pairs remembered for dedup (default 32 MiB).
    pub dedup_max_bytes: Option<usize>,
    /// Bytes of `prev-id` ordering state, waiting items included (default 64 MiB).
    pub order_max_bytes: Option<usize>,
    /// Bytes of last ids per channel remembered for hold staleness checks (default 16 MiB).
    pub last_ids_max_bytes: Option<usize>,
    /// Who may publish.
    #[serde(default)]
    pub auth: RawPublishAuth,
}

/// `[publish.auth]`: any listed method admits a request; none listed means open (allowed only
/// when the publish API listens on loopback).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPublishAuth {
    /// Static tokens, sent as `Authorization: Bearer <key>` or `Fastly-Key: <key>`.
    #[serde(default)]
    pub keys: Vec<String>,
    /// `user:pass` for Basic auth.
    pub basic: Option<String>,
    /// Key specs verifying `Authorization: Bearer <JWT>` (HS256 secret, ES256/RS256 public key).
    #[serde(default)]
    pub jwt_keys: Vec<String>,
    /// Issuer a JWT must carry, if set.
    pub jwt_iss: Option<String>,
}

/// Reads and validates `path` into a [`Config`].
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::at(path, None, format!("cannot read: {e}")))?;
    parse(&text, path)
}

/// Parses the text of a config file found at `path`.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| line_of(text, s.start));
        ConfigError::at(path, line, e.message().trim().to_string())
    })?;
    let base_dir = path
        .parent()
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));
    // validation errors point at the line that set the value
    let err = |key: &str, message: String| ConfigError::at(path, find_key_line(text, key), message);
    let mut c = Config {
        base_dir,
        ..Config::default()
    };

    let s = raw.server;
    if let Some(Ports(ports)) = s.http_port {
        if ports.is_empty() {
            return Err(err(
                "http_port",
                "http_port needs at least one address".into(),
            ));
        }
        c.http_addrs = ports
            .iter()
            .map(|p| parse_listen_addr(p).map_err(|m| err("http_port", m)))
            .collect::<Result<_, _>>()?;
    }
    if let Some(Ports(ports)) = s.tls_port {
        c.tls.addrs = ports
            .iter()
            .map(|p| parse_listen_addr(p).map_err(|m| err("tls_port", m)))
            .collect::<Result<_, _>>()?;
    }
    if let Some(Ports(ports)) = s.mqtt_port {
        c.mqtt.addrs = Some(super::mqtt::listeners(&ports).map_err(|m| err("mqtt_port", m))?);
    }
    if let Some(Ports(ports)) = s.mqtt_tls_port {
        c.mqtt.tls_addrs = super::mqtt::listeners(&ports).map_err(|m| err("mqtt_tls_port", m))?;
    }
    if let Some(d) = raw.tls.certs_dir.filter(|d| !d.trim().is_empty()) {
        c.tls.certs_dir = Some(c.base_dir.join(d));
    }
    if let Some(p) = s.publish_port {
        c.publish_addr = parse_listen_addr(&p).map_err(|m| err("publish_port", m))?;
    }
    if let Some(p) = s.admin_port {
        c.admin_addr = if p.trim().is_empty() {
            None
        } else {
            Some(parse_listen_addr(&p).map_err(|m| err("admin_port", m))?)
        };
    }
    c.routes = match (s.routes_file, s.routes) {
        (Some(_), Some(_)) => {
            return Err(err(
                "routes",
                "set either routes_file or routes, not both".into(),
            ))
        }
        (Some(f), None) => RoutesSource::File(c.base_dir.join(f)),
        (None, Some(lines)) => RoutesSource::Inline(lines),
        (None, None) => RoutesSource::Demo,
    };
    if let Some(w) = s.workers {
        c.workers = w;
    }
    set_ms(&mut c.drain_timeout, s.drain_timeout_ms);

    let p = raw.proxy;
    let pc = &mut c.proxy;
    set(&mut pc.debug, p.debug);
    set(&mut pc.sig_iss, p.sig_iss);
    set(&mut pc.sig_key, p.sig_key);
    set(&mut pc.upstream_key, p.upstream_key);
    if let Some(v) = p.x_forwarded_for {
        pc.x_forwarded_for = parse_forwarded_for(&v).map_err(|m| err("x_forwarded_for", m))?;
    }
    if let Some(v) = p.x_forwarded_for_trusted {
        pc.x_forwarded_for_trusted =
            parse_forwarded_for(&v).map_err(|m| err("x_forwarded_for_trusted", m))?;
    }
    if let Some(v) = p.x_forwarded_proto {
        pc.x_forwarded_proto =
            parse_forwarded_proto(&v).map_err(|m| err("x_forwarded_proto", m))?;
    }
    set(&mut pc.max_request_head, p.max_request_head);
    set(&mut pc.max_request_body, p.max_request_body);
    set(&mut pc.max_instruct_body, p.max_instruct_body);
    set_ms(&mut pc.connect_timeout, p.connect_timeout_ms);
    set_ms(&mut pc.response_timeout, p.response_timeout_ms);
    set_ms(&mut pc.request_head_timeout, p.request_head_timeout_ms);
    set_ms(&mut pc.idle_timeout, p.idle_timeout_ms);
    set_ms(&mut pc.write_timeout, p.write_timeout_ms);
    if pc.max_request_head < 1024 {
        return Err(err(
            "max_request_head",
            "max_request_head must be at least 1024".into(),
        ));
    }

    let g = raw.grip;
    set(
        &mut c.grip.max_channels_per_connection,
        g.max_channels_per_connection,
    );
    set(&mut c.grip.subscriber_queue_bytes, g.subscriber_queue_bytes);
    set(&mut c.grip.max_connections, g.max_connections);
    set(&mut c.grip.max_stale_retries, g.max_stale_retries);
    if let Some(ms) = g.next_link_min_interval_ms {
        c.grip.next_link_min_interval = Duration::from_millis(ms);
    }
    set(&mut c.grip.max_next_link_fetches, g.max_next_link_fetches);
    if let Some(ms) = g.first_subscription_recheck_ms {
        c.grip.first_subscription_recheck = Duration::from_millis(ms);
    }
    if c.grip.max_next_link_fetches == 0 {
        return Err(err(
            "max_next_link_fetches",
            "max_next_link_fetches must be at least 1".into(),
        ));
    }
    set(
        &mut c.grip.max_connections_per_address,
        g.max_connections_per_address,
    );
    c.grip.fd_reserve = g.fd_reserve.or(c.grip.fd_reserve);
    if c.grip.max_channels_per_connection == 0 {
        return Err(err(
            "max_channels_per_connection",
            "max_channels_per_connection must be at least 1".into(),
        ));
    }

    let pb = raw.publish;
    set(&mut c.publish.max_body, pb.max_body);
    set(&mut c.publish.limits.max_content_bytes, pb.max_content);
    set(&mut c.publish.limits.max_items, pb.max_items);
    set(
        &mut c.publish.fastly_limits.max_content_bytes,
        pb.fastly_max_content,
    );
    set(&mut c.publish.fastly_limits.max_items, pb.max_items);
    if let Some(s) = pb.dedup_window_secs {
        c.publish.dedup_window = Duration::from_secs(s);
    }
    set_ms(&mut c.publish.order_wait, pb.order_wait_ms);
    set(&mut c.publish.dedup_max_bytes, pb.dedup_max_bytes);
    set(&mut c.publish.order_max_bytes, pb.order_max_bytes);
    set(&mut c.publish.last_ids_max_bytes, pb.last_ids_max_bytes);
    set(
        &mut c.websocket.max_message_bytes,
        raw.websocket.max_message_bytes,
    );
    set(
        &mut c.websocket.permessage_deflate,
        raw.websocket.permessage_deflate,
    );
    set(
        &mut c.websocket.origin_queue_bytes,
        raw.websocket.origin_queue_bytes,
    );
    let h = raw.history;
    set(&mut c.history.max_items, h.max_items);
    if let Some(s) = h.max_age_secs {
        c.history.max_age = Duration::from_secs(s);
    }
    set(&mut c.history.max_bytes, h.max_bytes);
    set(&mut c.history.max_recover, h.max_recover);
    set(&mut c.history.fsync_ms, h.fsync_ms);
    if let Some(d) = h.dir.filter(|d| !d.trim().is_empty()) {
        c.history.dir = Some(c.base_dir.join(d));
    }
    if c.history.max_items > 0 && c.history.max_age.is_zero() {
        return Err(err(
            "max_age_secs",
            "max_age_secs must be at least 1 (set max_items = 0 to switch history off)".into(),
        ));
    }
    set(
        &mut c.http2.max_concurrent_streams,
        raw.http2.max_concurrent_streams,
    );
    if c.http2.max_concurrent_streams == 0 {
        return Err(err(
            "max_concurrent_streams",
            "max_concurrent_streams must be at least 1".into(),
        ));
    }
    if c.websocket.origin_queue_bytes == 0 {
        return Err(err(
            "origin_queue_bytes",
            "origin_queue_bytes must be at least 1".into(),
        ));
    }
    if c.websocket.max_message_bytes < 125 {
        return Err(err(
            "max_message_bytes",
            "max_message_bytes must be at least 125".into(),
        ));
    }
    c.publish.auth = publish_auth(&pb.auth, &c.base_dir).map_err(|(key, m)| err(key, m))?;
    super::mqtt::parse(raw.mqtt, &mut c.mqtt, |k, m| err(k, m))?;
    c.cluster = super::cluster::parse(raw.cluster, &c.base_dir, |k, m| err(k, m))?;
    Ok(c)
}

fn publish_auth(
    raw: &RawPublishAuth,
    base_dir: &Path,
) -> Result<PublishAuthConfig, (&'static str, String)> {
    let mut methods = Vec::new();
    if !raw.keys.is_empty() {
        if raw.keys.iter().any(|k| k.is_empty()) {
            return Err((
                "keys",
                "publish.auth.keys may not contain an empty key".into(),
            ));
        }
        methods.push(PublishAuth::Keys(raw.keys.clone()));
    }
    if let Some(b) = &raw.basic {
        let Some((user, pass)) = b.split_once(':') else {
            return Err(("basic", "publish.auth.basic must be 'user:pass'".into()));
        };
        methods.push(PublishAuth::Basic {
            user: user.into(),
            pass: pass.into(),
        });
    }
    if !raw.jwt_keys.is_empty() {
        let mut keys = Vec::new();
        for spec in &raw.jwt_keys {
            match parse_verifying_key(spec, base_dir) {
                Ok(Some(k)) => keys.push(k),
                Ok(None) => {
                    return Err(("jwt_keys", "publish.auth.jwt_keys has an empty key".into()))
                }
                Err(e) => return Err(("jwt_keys", format!("publish.auth.jwt_keys: {e}"))),
            }
        }
        methods.push(PublishAuth::Jwt {
            keys,
            iss: raw.jwt_iss.clone(),
        });
    }
    Ok(PublishAuthConfig { methods })
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

fn set_ms(slot: &mut Duration, value: Option<u64>) {
    if let Some(ms) = value {
        *slot = Duration::from_millis(ms);
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// The line where `key = ...` is set, for errors found after parsing.
fn find_key_line(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            l.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn parse_str(text: &str) -> Result<Config, ConfigError> {
        parse(text, Path::new("/etc/gw/gripway.toml"))
    }

    #[test]
    fn empty_file_gives_pushpin_defaults() {
        let c = parse_str("").unwrap();
        assert_eq!(c.http_addrs, vec!["0.0.0.0:7999".parse().unwrap()]);
        assert_eq!(c.publish_addr, "127.0.0.1:5561".parse().unwrap());
        assert!(matches!(c.routes, RoutesSource::Demo));
        assert_eq!(c.proxy.sig_iss, "pushpin");
        assert_eq!(c.grip.max_channels_per_connection, 20);
    }

    #[test]
    fn reads_every_section() {
        let c = parse_str(
            r#"
[server]
http_port = ["127.0.0.1:8000", "8001"]
publish_port = "127.0.0.1:9000"
admin_port = ""
routes_file = "routes"

[proxy]
sig_key = "s3cret"
x_forwarded_for = "truncate:1"

[publish]
max_content = 1000
fastly_max_content = 500
dedup_window_secs = 0
dedup_max_bytes = 4096
[publish.auth]
keys = ["k1"]
"#,
        )
        .unwrap();
        assert_eq!(c.http_addrs.len(), 2);
        assert_eq!(c.admin_addr, None);
        assert!(matches!(&c.routes, RoutesSource::File(p) if p == Path::new("/etc/gw/routes")));
        assert_eq!(c.proxy.sig_key, "s3cret");
        assert_eq!(c.publish.limits.max_content_bytes, 1000);
        assert_eq!(c.publish.fastly_limits.max_content_bytes, 500);
        assert_eq!(c.publish.dedup_window, Duration::ZERO);
        assert_eq!(c.publish.dedup_max_bytes, 4096);
        assert!(!c.publish.auth.is_open());
    }

    #[test]
    fn ports_are_a_number_a_string_or_a_list() {
        let addrs = |text: &str| parse_str(text).map(|c| (c.http_addrs, c.tls.addrs));
        let any = |p: u16| SocketAddr::from(([0, 0, 0, 0], p));
        assert_eq!(
            addrs("").unwrap(),
            (vec![any(7999)], vec![]),
            "no TLS by default"
        );
        assert_eq!(
            addrs("[server]\nhttp_port = 8000\ntls_port = 8443\n").unwrap(),
            (vec![any(8000)], vec![any(8443)])
        );
        assert_eq!(
            addrs("[server]\ntls_port = \"127.0.0.1:8443\"\n")
                .unwrap()
                .1,
            vec!["127.0.0.1:8443".parse().unwrap()]
        );
        assert_eq!(
            addrs("[server]\ntls_port = [443, \"[::1]:8443\"]\n")
                .unwrap()
                .1,
            vec![any(443), "[::1]:8443".parse().unwrap()]
        );
        let e = addrs("[server]\n\ntls_port = \"nowhere\"\n").unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.message.contains("not a listen address"), "{e}");
        let e = addrs("[server]\ntls_port = 70000\n").unwrap_err();
        assert!(e.message.contains("not a listen address"), "{e}");
        let e = addrs("[server]\ntls_port = true\n").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.message.contains("a port number"), "{e}");
    }

    #[test]
    fn tls_certs_dir_is_relative_to_the_file() {
        assert_eq!(parse_str("").unwrap().tls.certs_dir, None);
        let c = parse_str("[tls]\ncerts_dir = \"certs\"\n").unwrap();
        assert_eq!(c.tls.certs_dir, Some(PathBuf::from("/etc/gw/certs")));
        let c = parse_str("[tls]\ncerts_dir = \"/srv/certs\"\n").unwrap();
        assert_eq!(c.tls.certs_dir, Some(PathBuf::from("/srv/certs")));
        assert!(
            parse_str("[tls]\nnope = 1\n").is_err(),
            "unknown keys are refused"
        );
    }

    #[test]
    fn drain_timeout_ms() {
        assert_eq!(
            parse_str("").unwrap().drain_timeout,
            Duration::from_secs(10)
        );
        let c = parse_str("[server]\ndrain_timeout_ms = 2500\n").unwrap();
        assert_eq!(c.drain_timeout, Duration::from_millis(2500));
    }

    #[test]
    fn history_keys() {
        let d = parse_str("").unwrap().history;
        assert_eq!(
            (d.max_items, d.max_age, d.max_bytes, d.dir, d.fsync_ms),
            (100, Duration::from_secs(120), 64 << 20, None, 0)
        );
        let c = parse_str(
            "[history]\nmax_items = 5\nmax_age_secs = 30\nmax_bytes = 1000\ndir = \"h\"\nfsync_ms = 20\nmax_recover = 7\n",
        )
        .unwrap();
        let h = c.history;
        assert_eq!(
            (h.max_items, h.max_age, h.max_bytes),
            (5, Duration::from_secs(30), 1000)
        );
        assert_eq!((h.fsync_ms, h.max_recover), (20, 7));
        assert!(h.dir.unwrap().ends_with("h"));
        let e = parse_str("[history]\nmax_age_secs = 0\n").unwrap_err();
        assert!(e.message.contains("max_age_secs"), "{e}");
        assert!(
            parse_str("[history]\nnope = 1\n").is_err(),
            "unknown keys are refused"
        );
    }

    #[test]
    fn http2_max_concurrent_streams() {
        assert_eq!(parse_str("").unwrap().http2.max_concurrent_streams, 100);
        let c = parse_str("[http2]\nmax_concurrent_streams = 250\n").unwrap();
        assert_eq!(c.http2.max_concurrent_streams, 250);
        assert!(parse_str("[http2]\nmax_concurrent_streams = 0\n").is_err());
        assert!(parse_str("[http2]\nnope = 1\n").is_err());
    }

    #[test]
    fn websocket_origin_queue_bytes() {
        assert_eq!(parse_str("").unwrap().websocket.origin_queue_bytes, 200_000);
        let c = parse_str("[websocket]\norigin_queue_bytes = 65536\n").unwrap();
        assert_eq!(c.websocket.origin_queue_bytes, 65536);
        let e = parse_str("[websocket]\norigin_queue_bytes = 0\n").unwrap_err();
        assert!(e.message.contains("origin_queue_bytes"), "{e}");
    }

    #[test]
    fn errors_name_file_line_and_problem() {
        let e = parse_str("[server]\nbogus = 1\n").unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(e.to_string().starts_with("/etc/gw/gripway.toml:2:"), "{e}");
        assert!(e.message.contains("bogus"), "{e}");

        let e = parse_str("[server]\n\npublish_port = \"nowhere\"\n").unwrap_err();
        assert_eq!(e.line, Some(3));
        assert!(e.message.contains("not a listen address"), "{e}");

        let e = parse_str("[proxy]\nx_forwarded_for = \"sometimes\"\n").unwrap_err();
        assert_eq!(e.line, Some(2));

        let e = parse_str("[publish.auth]\nbasic = \"nocolon\"\n").unwrap_err();
        assert_eq!(e.line, Some(2));
    }
}
