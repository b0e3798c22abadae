//! Gripway's configuration as the server uses it: typed, validated, with every default in one
//! place. It is built from the TOML file ([`file`]) and the command line (the binary crate),
//! in that order, and passed by value to [`crate::run`].
//!
//! Defaults follow Pushpin where Pushpin has one (ports 7999 and 5561, Grip-Sig issuer
//! `pushpin` and key `changeme`, 20 channels per connection, 5 s ordering wait, 60 s dedup)
//! so that an existing deployment behaves the same after the switch.

pub mod cluster;
pub mod file;
pub mod mqtt;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use gripway_proto::auth::PublishAuthConfig;
use gripway_proto::publish::PublishLimits;

/// Pushpin's content limit on `/publish/`: none of its own, only the body limit
/// (`push_in_http_max_body_size`, 1,000,000 bytes).
pub const PUSHPIN_MAX_CONTENT: usize = 1_000_000;

/// Where routes come from.
#[derive(Debug, Clone)]
pub enum RoutesSource {
    /// Lines given on the command line (`--route`) or inline in the config file.
    Inline(Vec<String>),
    /// A routes file, reloaded when it changes.
    File(PathBuf),
    /// No routes configured: everything goes to the built-in demo origin.
    Demo,
}

/// How to treat `X-Forwarded-For` on requests to the origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardedFor {
    /// Leave the header as the client sent it.
    Off,
    /// Append the client's address.
    Append,
    /// Keep only the last N addresses the client sent, then append the client's address.
    Truncate(usize),
}

/// How to treat `X-Forwarded-Proto` (and `X-Forwarded-Protocol`) on requests to the origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardedProto {
    /// Leave them as the client sent them.
    Off,
    /// Remove what the client sent; set `X-Forwarded-Proto` for TLS connections.
    ProtoOnly,
    /// Remove what the client sent; set both headers for TLS connections.
    Both,
}

/// Everything the server needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// The config file's directory; relative paths (routes, keys) are resolved against it.
    pub base_dir: PathBuf,
    /// Client listeners.
    pub http_addrs: Vec<SocketAddr>,
    /// TLS client listeners and their certificates (`[server] tls_port`, `[tls]`).
    pub tls: TlsSettings,
    /// Publish API listener.
    pub publish_addr: SocketAddr,
    /// Admin listener (metrics, health); None disables it.
    pub admin_addr: Option<SocketAddr>,
    /// Routes.
    pub routes: RoutesSource,
    /// Proxying to origins.
    pub proxy: ProxyConfig,
    /// Holding connections.
    pub grip: GripConfig,
    /// The publish API.
    pub publish: PublishConfig,
    /// WebSocket clients.
    pub websocket: WsConfig,
    /// HTTP/2 clients (`[http2]`).
    pub http2: Http2Config,
    /// MQTT clients (`[mqtt]`, `[server] mqtt_port`).
    pub mqtt: mqtt::MqttSettings,
    /// Per-channel history (recovery after reconnects and restarts).
    pub history: HistorySettings,
    /// Cluster mode: the NATS servers and JetStream stream this node shares channels
    /// through (`[cluster]`, `--cluster`); None runs a single node.
    pub cluster: Option<gripway_cluster::ClusterConfig>,
    /// Runtime worker threads (0: one per core).
    pub workers: usize,
    /// How long a drain at shutdown may take before what is still open is cut off.
    pub drain_timeout: Duration,
}

/// TLS toward clients (`--tls-port`, `[server] tls_port`, `[tls]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// TLS client listeners (none: no TLS).
    pub addrs: Vec<SocketAddr>,
    /// Certificates by SNI, in Pushpin's layout (`<host>.crt` + `<host>.key`, `_.example.com`
    /// wildcards, `default`); None with TLS listeners: a self-signed certificate for
    /// `localhost`, made at start.
    pub certs_dir: Option<PathBuf>,
}

impl TlsSettings {
    /// Checks the certificate directory before start: it is a directory, and every
    /// certificate in it loads (the error names the file at fault). The listeners load it
    /// again when they start; this only makes a bad directory a configuration error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let Some(dir) = &self.certs_dir else {
            return Ok(());
        };
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(ConfigError::at(
                    dir,
                    None,
                    "[tls] certs_dir is not a directory",
                ))
            }
            Err(e) => {
                return Err(ConfigError::at(
                    dir,
                    None,
                    format!("[tls] certs_dir cannot be read: {e}"),
                ))
            }
        }
        crate::tls::certs::load_dir(dir)?;
        Ok(())
    }
}

/// Per-channel history: what is kept, and where (`[history]`).
#[derive(Debug, Clone)]
pub struct HistorySettings {
    /// Most items kept per channel (0 switches history off).
    pub max_items: usize,
    /// How long an item is kept.
    pub max_age: Duration,
    /// Most bytes all kept items may cost together.
    pub max_bytes: usize,
    /// Keep history on disk in this directory (None: in memory).
    pub dir: Option<PathBuf>,
    /// On disk: 0 acknowledges a publish once its items are fsynced (every write batch);
    /// N acknowledges once written and fsyncs every N ms (survives a killed process, may
    /// lose the last N ms on power loss).
    pub fsync_ms: u64,
    /// Items a recovery (reconnect with `Last-Event-ID`, `prev-id`) sends at most per
    /// channel; the rest is reported as a gap.
    pub max_recover: usize,
}

impl Default for HistorySettings {
    fn default() -> Self {
        use gripway_broker::history;
        HistorySettings {
            max_items: history::DEFAULT_MAX_ITEMS,
            max_age: history::DEFAULT_MAX_AGE,
            max_bytes: history::DEFAULT_MAX_BYTES,
            dir: None,
            fsync_ms: 0,
            max_recover: 1000,
        }
    }
}

/// Proxying requests to origins.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Verbose error bodies (the reason an instruction was refused, ...) for every route.
    pub debug: bool,
    /// Grip-Sig issuer.
    pub sig_iss: String,
    /// Grip-Sig key spec (plain secret, `base64:...`, `file:...`); empty: no Grip-Sig.
    pub sig_key: String,
    /// Key spec verifying a client's Grip-Sig; a client that passes is a trusted upstream.
    pub upstream_key: String,
    /// `X-Forwarded-For` for ordinary clients.
    pub x_forwarded_for: ForwardedFor,
    /// `X-Forwarded-For` for trusted upstreams.
    pub x_forwarded_for_trusted: ForwardedFor,
    /// `X-Forwarded-Proto` handling.
    pub x_forwarded_proto: ForwardedProto,
    /// Largest request head (request line and headers) a client may send.
    pub max_request_head: usize,
    /// Largest request body a client may send (it is buffered to allow retries).
    pub max_request_body: usize,
    /// Largest body of a response carrying GRIP instructions.
    pub max_instruct_body: usize,
    /// Time to connect to an origin before trying the next target.
    pub connect_timeout: Duration,
    /// Time for an origin to send its response head.
    pub response_timeout: Duration,
    /// Time a client has to send a request head.
    pub request_head_timeout: Duration,
    /// Time an idle keep-alive client connection is kept.
    pub idle_timeout: Duration,
    /// Time a client may go without taking any of a response being written to it before
    /// the connection is dropped (and the origin connection feeding it released).
    pub write_timeout: Duration,
}

/// Holding connections open for published messages.
#[derive(Debug, Clone)]
pub struct GripConfig {
    /// Channels one connection may subscribe to; more are ignored (Pushpin: 20).
    pub max_channels_per_connection: usize,
    /// Bytes queued for a slow subscriber before it is disconnected.
    pub subscriber_queue_bytes: usize,
    /// Client connections held at once; more are refused with 503.
    pub max_connections: usize,
    /// Times a long-poll is sent to its origin again, with growing pauses, because the
    /// origin's answer names an older `prev-id` than the last published; past it the
    /// origin's held response is answered as it is.
    pub max_stale_retries: u32,
    /// Shortest time between two next-link fetches of one stream (a page that wrote
    /// something is followed at once), so `Grip-Link ...; timeout=0` or a hint storm
    /// cannot make a stream poll its origin in a loop.
    pub next_link_min_interval: Duration,
    /// Next-link fetches running at once node-wide; more wait their turn.
    pub max_next_link_fetches: usize,
    /// How long after a channel's first subscription on this node its holds re-check that
    /// they missed nothing (Pushpin's `update_on_first_subscription`); zero: never.
    pub first_subscription_recheck: Duration,
    /// Client connections one address may hold at once; more are refused with 429 (0: no
    /// limit).
    pub max_connections_per_address: usize,
    /// File descriptors kept back from clients for the publish API, the admin API and
    /// origins (None: a tenth of the open-file limit, at least 1,024 where that leaves half).
    pub fd_reserve: Option<usize>,
}

/// WebSocket clients.
#[derive(Debug, Clone)]
pub struct WsConfig {
    /// Largest message a client may send (bigger ones close the connection with 1009).
    pub max_message_bytes: usize,
    /// Negotiate permessage-deflate (RFC 7692) when a client offers it.
    pub permessage_deflate: bool,
    /// Bytes of client messages (and a per-message overhead) a connection may hold for its
    /// origin: queued or in flight over HTTP, or waiting for the origin's WebSocket. At the
    /// limit Gripway stops reading the client until the origin has taken some.
    pub origin_queue_bytes: usize,
}

/// HTTP/2 toward clients (h2 by ALPN over TLS, h2c with prior knowledge on the plain port).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Http2Config {
    /// `SETTINGS_MAX_CONCURRENT_STREAMS`: streams one connection may have open (held ones
    /// included).
    pub max_concurrent_streams: u32,
}

impl Default for Http2Config {
    fn default() -> Self {
        Http2Config {
            max_concurrent_streams: 100,
        }
    }
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            max_message_bytes: 64 * 1024,
            permessage_deflate: false,
            // Pushpin's WebSocket-over-HTTP buffer
            origin_queue_bytes: 200_000,
        }
    }
}

/// The publish API and the broker behind it.
#[derive(Debug, Clone)]
pub struct PublishConfig {
    /// Largest publish request body.
    pub max_body: usize,
    /// Item limits (content size, items per request, ...) on Pushpin's `/publish/`, whose
    /// content is bounded only by the body size there (default 1,000,000 bytes).
    pub limits: PublishLimits,
    /// The same on Fastly's `/service/{id}/publish/`, with Fanout's 32,767-byte content limit.
    pub fastly_limits: PublishLimits,
    /// A (channel, id) seen within this window is delivered only once.
    pub dedup_window: Duration,
    /// How long an item waits for the item named by its `prev-id`.
    pub order_wait: Duration,
    /// Most bytes the dedup tables may hold; past it the oldest pairs are forgotten early.
    pub dedup_max_bytes: usize,
    /// Most bytes the `prev-id` ordering state may hold (waiting items included); past it
    /// the channels quiet longest are forgotten and what waited is released.
    pub order_max_bytes: usize,
    /// Most bytes the table of last ids per channel may hold; past it the oldest are
    /// forgotten (holds on those channels are then not checked for staleness).
    pub last_ids_max_bytes: usize,
    /// Who may publish.
    pub auth: PublishAuthConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            base_dir: PathBuf::from("."),
            http_addrs: vec![SocketAddr::from(([0, 0, 0, 0], 7999))],
            tls: TlsSettings::default(),
            publish_addr: SocketAddr::from(([127, 0, 0, 1], 5561)),
            admin_addr: Some(SocketAddr::from(([127, 0, 0, 1], 5564))),
            routes: RoutesSource::Demo,
            proxy: ProxyConfig::default(),
            grip: GripConfig::default(),
            publish: PublishConfig::default(),
            websocket: WsConfig::default(),
            http2: Http2Config::default(),
            mqtt: mqtt::MqttSettings::default(),
            history: HistorySettings::default(),
            cluster: None,
            workers: 0,
            drain_timeout: Duration::from_secs(10),
        }
    }
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            debug: false,
            sig_iss: "pushpin".into(),
            sig_key: "changeme".into(),
            upstream_key: String::new(),
            x_forwarded_for: ForwardedFor::Append,
            x_forwarded_for_trusted: ForwardedFor::Off,
            x_forwarded_proto: ForwardedProto::ProtoOnly,
            max_request_head: 32 * 1024,
            max_request_body: 1024 * 1024,
            max_instruct_body: 100_000,
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(30),
            request_head_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            write_timeout: Duration::from_secs(30),
        }
    }
}

impl Default for GripConfig {
    fn default() -> Self {
        GripConfig {
            max_channels_per_connection: 20,
            subscriber_queue_bytes: 1024 * 1024,
            max_connections: 100_000,
            max_stale_retries: 6,
            next_link_min_interval: Duration::from_secs(1),
            max_next_link_fetches: 256,
            first_subscription_recheck: Duration::from_secs(1),
            max_connections_per_address: 0,
            fd_reserve: None,
        }
    }
}

impl Default for PublishConfig {
    fn default() -> Self {
        PublishConfig {
            max_body: 1_000_000,
            limits: PublishLimits {
                max_content_bytes: PUSHPIN_MAX_CONTENT,
                ..PublishLimits::default()
            },
            fastly_limits: PublishLimits::default(),
            dedup_window: Duration::from_secs(60),
            order_wait: Duration::from_secs(5),
            dedup_max_bytes: 32 << 20,
            order_max_bytes: 64 << 20,
            last_ids_max_bytes: 16 << 20,
            auth: PublishAuthConfig {
                methods: Vec::new(),
            },
        }
    }
}

/// A problem with the configuration, located as precisely as possible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file at fault, if any (None: the command line).
    pub file: Option<PathBuf>,
    /// 1-based line in that file, if known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    /// An error on the command line or in derived settings.
    pub fn new(message: impl Into<String>) -> Self {
        ConfigError {
            file: None,
            line: None,
            message: message.into(),
        }
    }

    /// An error in `file` at `line`.
    pub fn at(file: impl Into<PathBuf>, line: Option<usize>, message: impl Into<String>) -> Self {
        ConfigError {
            file: Some(file.into()),
            line,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{}:{}: {}", file.display(), line, self.message),
            (Some(file), None) => write!(f, "{}: {}", file.display(), self.message),
            (None, _) => write!(f, "{}", self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Parses Pushpin's `[addr:]port` form (`7999`, `127.0.0.1:7999`, `[::1]:7999`); a bare
/// port listens on every IPv4 address.
pub fn parse_listen_addr(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    if let Some(port) = s.strip_prefix(':').and_then(|p| p.parse::<u16>().ok()) {
        return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Some(port) = s
        .strip_prefix("localhost:")
        .and_then(|p| p.parse::<u16>().ok())
    {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    Err(format!(
        "'{s}' is not a listen address: expected PORT, IP:PORT or [IPv6]:PORT"
    ))
}

/// Parses `append`, `truncate:N` or `off` (also Pushpin's empty value = off).
pub fn parse_forwarded_for(s: &str) -> Result<ForwardedFor, String> {
    match s.trim() {
        "" | "off" | "none" => Ok(ForwardedFor::Off),
        "append" => Ok(ForwardedFor::Append),
        other => match other.strip_prefix("truncate:").map(str::parse::<usize>) {
            Some(Ok(n)) => Ok(ForwardedFor::Truncate(n)),
            _ => Err(format!(
                "'{other}' is not an X-Forwarded-For rule: expected append, truncate:N or off"
            )),
        },
    }
}

/// Parses `proto-only`, `both` (Pushpin's `true`) or `off`.
pub fn parse_forwarded_proto(s: &str) -> Result<ForwardedProto, String> {
    match s.trim() {
        "proto-only" => Ok(ForwardedProto::ProtoOnly),
        "both" | "true" => Ok(ForwardedProto::Both),
        "off" | "false" | "" => Ok(ForwardedProto::Off),
        other => Err(format!(
            "'{other}' is not an X-Forwarded-Proto mode: expected proto-only, both or off"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addrs() {
        assert_eq!(
            parse_listen_addr("7999").unwrap(),
            "0.0.0.0:7999".parse().unwrap()
        );
        assert_eq!(
            parse_listen_addr("127.0.0.1:80").unwrap(),
            "127.0.0.1:80".parse().unwrap()
        );
        assert_eq!(
            parse_listen_addr("[::1]:80").unwrap(),
            "[::1]:80".parse().unwrap()
        );
        assert_eq!(
            parse_listen_addr("localhost:5561").unwrap(),
            "127.0.0.1:5561".parse().unwrap()
        );
        assert!(parse_listen_addr("70000").is_err());
        assert!(parse_listen_addr("nohost:1").is_err());
    }

    #[test]
    fn forwarded_rules() {
        assert_eq!(parse_forwarded_for("append"), Ok(ForwardedFor::Append));
        assert_eq!(
            parse_forwarded_for("truncate:2"),
            Ok(ForwardedFor::Truncate(2))
        );
        assert_eq!(parse_forwarded_for("off"), Ok(ForwardedFor::Off));
        assert!(parse_forwarded_for("truncate:x").is_err());
        assert_eq!(parse_forwarded_proto("true"), Ok(ForwardedProto::Both));
        assert!(parse_forwarded_proto("maybe").is_err());
    }

    #[test]
    fn a_certs_dir_must_be_a_directory() {
        assert_eq!(TlsSettings::default().validate(), Ok(()));
        let dir = std::env::temp_dir();
        let ca = crate::tls::test_certs::TestCa::new();
        let certs = ca.dir(&["localhost"]);
        let ok = TlsSettings {
            addrs: Vec::new(),
            certs_dir: Some(certs.path().to_path_buf()),
        };
        assert_eq!(ok.validate(), Ok(()));
        // a directory whose certificates do not load: the file is named
        std::fs::write(certs.path().join("localhost.key"), "junk").unwrap();
        let e = ok.validate().unwrap_err();
        assert_eq!(e.file, Some(certs.path().join("localhost.key")), "{e}");
        let file = dir.join(format!("gripway-not-a-dir-{}", std::process::id()));
        std::fs::write(&file, "x").unwrap();
        let e = TlsSettings {
            addrs: Vec::new(),
            certs_dir: Some(file.clone()),
        }
        .validate()
        .unwrap_err();
        std::fs::remove_file(&file).unwrap();
        assert_eq!(e.file.as_deref(), Some(file.as_path()));
        assert!(e.to_string().contains("is not a directory"), "{e}");
        let e = TlsSettings {
            addrs: Vec::new(),
            certs_dir: Some(file.clone()),
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("cannot be read"), "{e}");
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = ConfigError::at("/etc/gripway.toml", Some(3), "bad");
        assert_eq!(e.to_string(), "/etc/gripway.toml:3: bad");
    }
}
