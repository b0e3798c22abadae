//! What a node needs to join a cluster: the NATS servers and how to authenticate to them,
//! the JetStream stream that holds every channel's items and its retention, and the bus's own
//! bounds. [`ClusterConfig::validate`] names the field at fault; [`ClusterConfig::default`]
//! is a single local server with the same retention as the in-memory history's defaults.

use std::path::PathBuf;
use std::time::Duration;

/// How the node authenticates to NATS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Auth {
    /// No credentials.
    #[default]
    None,
    /// A `.creds` file (JWT and nkey seed), as `nsc` writes it.
    CredentialsFile(PathBuf),
    /// User and password.
    UserPassword {
        /// User name.
        user: String,
        /// Password.
        password: String,
    },
    /// A token.
    Token(String),
}

/// TLS to the NATS servers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tls {
    /// Refuse servers that do not offer TLS.
    pub require: bool,
    /// PEM file of the CA(s) to trust, added to the system's roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and key, for servers that verify clients.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// A node's cluster settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// NATS server URLs (`nats://host:port`, `tls://host:port`); the client learns the others
    /// of a cluster from the first it reaches.
    pub urls: Vec<String>,
    /// Authentication.
    pub auth: Auth,
    /// TLS.
    pub tls: Tls,
    /// The JetStream stream's name (letters, digits, `_`, `-`).
    pub stream: String,
    /// Copies JetStream keeps of each item (1 for one server, 3 in a 3-server cluster; at
    /// most 5). A publish is acknowledged once this many (a quorum of them) stored it.
    pub replicas: usize,
    /// Items kept per channel (`max_msgs_per_subject`); `[history] max_items`.
    pub max_items: i64,
    /// How long an item is kept (`max_age`); `[history] max_age_secs`.
    pub max_age: Duration,
    /// Bytes kept over all channels (`max_bytes`); `[history] max_bytes`.
    pub max_bytes: i64,
    /// Window in which JetStream drops a second publish of the same (channel, id).
    pub duplicate_window: Duration,
    /// How long a publish may wait for its acknowledgement, retries included, before it
    /// fails as unavailable.
    pub publish_timeout: Duration,
    /// How long a read (history, catch-up) may wait for one answer.
    pub request_timeout: Duration,
    /// Channels this node may be subscribed to at once.
    pub max_subscriptions: usize,
    /// Republished messages buffered per channel subscription in the NATS client (beyond it
    /// the client drops them and the gap check fetches them back).
    pub subscription_capacity: usize,
    /// Deliveries buffered between the bus and its consumer.
    pub delivery_capacity: usize,
    /// Catch-up fetches (gap fills, resyncs after a reconnect or a leader change) in flight
    /// at once over all channels.
    pub max_concurrent_fetches: usize,
    /// The client's name, shown by the servers' monitoring.
    pub name: String,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            urls: vec!["nats://127.0.0.1:4222".to_string()],
            auth: Auth::None,
            tls: Tls::default(),
            stream: "GRIPWAY".to_string(),
            replicas: 1,
            max_items: 100,
            max_age: Duration::from_secs(120),
            max_bytes: 64 << 20,
            duplicate_window: Duration::from_secs(120),
            publish_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            max_subscriptions: 200_000,
            subscription_capacity: 1024,
            delivery_capacity: 8192,
            max_concurrent_fetches: 64,
            name: "gripway".to_string(),
        }
    }
}

/// A setting that cannot work, naming its field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cluster.{field}: {problem}")]
pub struct ConfigError {
    /// The field, as in `[cluster]`.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

fn bad(field: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        field,
        problem: problem.into(),
    }
}

impl ClusterConfig {
    /// The first problem found, naming its field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.urls.is_empty() {
            return Err(bad("nats", "at least one server URL is needed"));
        }
        for u in &self.urls {
            let rest = u.split_once("://").map_or(u.as_str(), |(scheme, rest)| {
                if matches!(scheme, "nats" | "tls" | "ws" | "wss") {
                    rest
                } else {
                    ""
                }
            });
            if rest.is_empty() || u.chars().any(char::is_whitespace) {
                return Err(bad(
                    "nats",
                    format!("{u:?} is not a NATS URL (nats://host:port or tls://host:port)"),
                ));
            }
        }
        if self.stream.is_empty()
            || self.stream.len() > 64
            || !self
                .stream
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(bad(
                "stream",
                format!("{:?}: 1 to 64 letters, digits, '_' or '-'", self.stream),
            ));
        }
        if !(1..=5).contains(&self.replicas) {
            return Err(bad("replicas", "must be 1 to 5"));
        }
        if self.max_items < 1 {
            return Err(bad("max_items", "must be at least 1"));
        }
        if self.max_age < Duration::from_secs(1) {
            return Err(bad("max_age", "must be at least 1 s"));
        }
        if self.max_bytes < 1 {
            return Err(bad("max_bytes", "must be at least 1"));
        }
        if self.duplicate_window < Duration::from_millis(100) {
            return Err(bad("duplicate_window", "must be at least 100 ms"));
        }
        if self.duplicate_window > self.max_age {
            // JetStream refuses a window longer than max_age
            return Err(bad("duplicate_window", "must not exceed max_age"));
        }
        for (field, d) in [
            ("publish_timeout", self.publish_timeout),
            ("request_timeout", self.request_timeout),
        ] {
            if d < Duration::from_millis(10) || d > Duration::from_secs(600) {
                return Err(bad(field, "must be 10 ms to 600 s"));
            }
        }
        for (field, n) in [
            ("max_subscriptions", self.max_subscriptions),
            ("subscription_capacity", self.subscription_capacity),
            ("delivery_capacity", self.delivery_capacity),
            ("max_concurrent_fetches", self.max_concurrent_fetches),
        ] {
            if n == 0 || n > 100_000_000 {
                return Err(bad(field, "must be 1 to 100,000,000"));
            }
        }
        if let Auth::UserPassword { user, .. } = &self.auth {
            if user.is_empty() {
                return Err(bad("user", "must not be empty"));
            }
        }
        if let Auth::Token(t) = &self.auth {
            if t.is_empty() {
                return Err(bad("token", "must not be empty"));
            }
        }
        if let Auth::CredentialsFile(p) = &self.auth {
            if !p.is_file() {
                return Err(bad("credentials", format!("{} is not a file", p.display())));
            }
        }
        if let Some(ca) = &self.tls.ca_file {
            if !ca.is_file() {
                return Err(bad("tls_ca", format!("{} is not a file", ca.display())));
            }
        }
        if let Some((cert, key)) = &self.tls.client_cert {
            for (field, p) in [("tls_cert", cert), ("tls_key", key)] {
                if !p.is_file() {
                    return Err(bad(field, format!("{} is not a file", p.display())));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(c: &ClusterConfig) -> &'static str {
        c.validate().expect_err("invalid").field
    }

    #[test]
    fn defaults_are_valid() {
        ClusterConfig::default().validate().expect("valid");
    }

    #[test]
    fn errors_name_the_field() {
        let d = ClusterConfig::default;
        assert_eq!(
            field_of(&ClusterConfig {
                urls: vec![],
                ..d()
            }),
            "nats"
        );
        assert_eq!(
            field_of(&ClusterConfig {
                urls: vec!["http://x:1".into()],
                ..d()
            }),
            "nats"
        );
        assert_eq!(
            field_of(&ClusterConfig {
                stream: "a.b".into(),
                ..d()
            }),
            "stream"
        );
        assert_eq!(field_of(&ClusterConfig { replicas: 0, ..d() }), "replicas");
        assert_eq!(field_of(&ClusterConfig { replicas: 6, ..d() }), "replicas");
        assert_eq!(
            field_of(&ClusterConfig {
                max_items: 0,
                ..d()
            }),
            "max_items"
        );
        assert_eq!(
            field_of(&ClusterConfig {
                duplicate_window: Duration::from_secs(500),
                ..d()
            }),
            "duplicate_window"
        );
        assert_eq!(
            field_of(&ClusterConfig {
                delivery_capacity: 0,
                ..d()
            }),
            "delivery_capacity"
        );
        assert_eq!(
            field_of(&ClusterConfig {
                auth: Auth::CredentialsFile("/nonexistent/x.creds".into()),
                ..d()
            }),
            "credentials"
        );
        let e = ClusterConfig { replicas: 9, ..d() }
            .validate()
            .expect_err("bad");
        assert_eq!(e.to_string(), "cluster.replicas: must be 1 to 5");
    }

    #[test]
    fn bare_host_port_urls_are_accepted() {
        let c = ClusterConfig {
            urls: vec!["127.0.0.1:4222".into(), "tls://nats.example:4443".into()],
            ..ClusterConfig::default()
        };
        c.validate().expect("valid");
    }
}
