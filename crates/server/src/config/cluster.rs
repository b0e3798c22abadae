//! `[cluster]` in the config file, and `--cluster` on the command line: the NATS servers a
//! node joins, how it authenticates, and the JetStream stream's name and replicas. The
//! stream's retention is not set here: it is `[history]`'s (`max_items`, `max_age_secs`,
//! `max_bytes`), applied when the server starts ([`with_history`]).
//!
//! ```toml
//! [cluster]
//! nats = ["nats://10.0.0.1:4222", "nats://10.0.0.2:4222"]
//! stream = "GRIPWAY"           # the JetStream stream holding every channel's items
//! replicas = 3                 # copies JetStream keeps; a publish waits for a quorum
//! credentials = "node.creds"   # or user/password, or token
//! tls_ca = "ca.pem"            # tls_cert/tls_key for servers that verify clients
//! ```

use std::path::Path;
use std::time::Duration;

use gripway_cluster::{Auth, ClusterConfig};
use serde::Deserialize;

use super::HistorySettings;

/// `[cluster]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    /// NATS server URLs (`nats://host:port`, `tls://host:port`).
    #[serde(default)]
    pub nats: Vec<String>,
    /// The JetStream stream's name.
    pub stream: Option<String>,
    /// Copies of each item JetStream keeps (1 to 5).
    pub replicas: Option<usize>,
    /// A `.creds` file (JWT and nkey seed), relative to the config file.
    pub credentials: Option<String>,
    /// User name (with `password`).
    pub user: Option<String>,
    /// Password (with `user`).
    pub password: Option<String>,
    /// A token.
    pub token: Option<String>,
    /// Refuse NATS servers that do not offer TLS.
    pub tls_required: Option<bool>,
    /// PEM file of the CA(s) to trust.
    pub tls_ca: Option<String>,
    /// PEM client certificate (with `tls_key`).
    pub tls_cert: Option<String>,
    /// PEM client key (with `tls_cert`).
    pub tls_key: Option<String>,
    /// Window in which JetStream stores a (channel, id) only once, in seconds.
    pub duplicate_window_secs: Option<u64>,
    /// Longest wait for a publish's acknowledgement, retries included, in ms.
    pub publish_timeout_ms: Option<u64>,
    /// Longest wait for one read from NATS (history, catch-up), in ms.
    pub request_timeout_ms: Option<u64>,
    /// Most channels this node subscribes to at once.
    pub max_subscriptions: Option<usize>,
    /// The node's name in the NATS servers' monitoring.
    pub name: Option<String>,
}

/// The cluster settings `raw` gives, or None when `[cluster]` names no server. `err` makes
/// an error for a key.
pub(super) fn parse(
    raw: RawCluster,
    base_dir: &Path,
    err: impl Fn(&str, String) -> super::ConfigError,
) -> Result<Option<ClusterConfig>, super::ConfigError> {
    if raw.nats.is_empty() {
        let any_other = raw.stream.is_some() || raw.replicas.is_some() || raw.credentials.is_some();
        if any_other {
            return Err(err(
                "nats",
                "[cluster] needs nats = [\"nats://host:port\", ...]".into(),
            ));
        }
        return Ok(None);
    }
    let mut c = ClusterConfig {
        urls: raw.nats,
        ..ClusterConfig::default()
    };
    if let Some(s) = raw.stream {
        c.stream = s;
    }
    if let Some(r) = raw.replicas {
        c.replicas = r;
    }
    let path = |p: String| base_dir.join(p);
    c.auth = match (raw.credentials, raw.user, raw.password, raw.token) {
        (None, None, None, None) => Auth::None,
        (Some(f), None, None, None) => Auth::CredentialsFile(path(f)),
        (None, Some(user), Some(password), None) => Auth::UserPassword { user, password },
        (None, None, None, Some(t)) => Auth::Token(t),
        (None, Some(_), None, None) | (None, None, Some(_), None) => {
            return Err(err("user", "set both user and password".into()))
        }
        _ => {
            return Err(err(
                "credentials",
                "set one of credentials, user/password or token".into(),
            ))
        }
    };
    c.tls.require = raw.tls_required.unwrap_or(false);
    c.tls.ca_file = raw.tls_ca.map(path);
    c.tls.client_cert = match (raw.tls_cert, raw.tls_key) {
        (None, None) => None,
        (Some(cert), Some(key)) => Some((path(cert), path(key))),
        _ => return Err(err("tls_cert", "set both tls_cert and tls_key".into())),
    };
    if let Some(s) = raw.duplicate_window_secs {
        c.duplicate_window = Duration::from_secs(s);
    }
    if let Some(ms) = raw.publish_timeout_ms {
        c.publish_timeout = Duration::from_millis(ms);
    }
    if let Some(ms) = raw.request_timeout_ms {
        c.request_timeout = Duration::from_millis(ms);
    }
    if let Some(n) = raw.max_subscriptions {
        c.max_subscriptions = n;
    }
    if let Some(n) = raw.name {
        c.name = n;
    }
    c.validate().map_err(|e| err(e.field, e.to_string()))?;
    Ok(Some(c))
}

/// `--cluster URL[,URL...]`: the servers, with every other setting as the file has it (or
/// the defaults).
pub fn from_flag(urls: &str, file: Option<ClusterConfig>) -> Result<ClusterConfig, String> {
    let mut c = file.unwrap_or_default();
    c.urls = urls
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect();
    c.validate().map_err(|e| e.to_string())?;
    Ok(c)
}

/// `cluster` with the stream's retention set from `[history]`: JetStream keeps what the
/// in-memory history would (at least one item per channel even with history off, since the
/// stream is also how items reach the other nodes: zero would mean "no limit" to JetStream).
pub fn with_history(mut cluster: ClusterConfig, history: &HistorySettings) -> ClusterConfig {
    cluster.max_items = history.max_items.max(1) as i64;
    cluster.max_age = history.max_age.max(Duration::from_secs(1));
    cluster.max_bytes = history.max_bytes as i64;
    cluster
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_in(dir: &Path, text: &str) -> Result<Option<ClusterConfig>, String> {
        let raw: RawCluster = toml::from_str(text).map_err(|e| e.to_string())?;
        parse(raw, dir, |k, m| {
            super::super::ConfigError::new(format!("{k}: {m}"))
        })
        .map_err(|e| e.to_string())
    }

    fn parse_text(text: &str) -> Result<Option<ClusterConfig>, String> {
        parse_in(Path::new("/etc/gripway"), text)
    }

    #[test]
    fn keys_and_defaults() {
        assert_eq!(parse_text("").unwrap(), None, "no servers: not clustered");
        let dir = std::env::temp_dir().join(format!("gripway-cluster-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("n.creds"), "not checked here").unwrap();
        let c = parse_in(
            &dir,
            "nats = [\"nats://a:4222\", \"nats://b:4222\"]\nstream = \"S\"\nreplicas = 3\ncredentials = \"n.creds\"\npublish_timeout_ms = 900\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.urls, ["nats://a:4222", "nats://b:4222"]);
        assert_eq!((c.stream.as_str(), c.replicas), ("S", 3));
        assert_eq!(
            c.auth,
            Auth::CredentialsFile(dir.join("n.creds")),
            "relative to the config file"
        );
        let e = parse_text("nats = [\"nats://a\"]\ncredentials = \"missing.creds\"\n").unwrap_err();
        assert!(e.contains("missing.creds"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(c.publish_timeout, Duration::from_millis(900));
    }

    #[test]
    fn bad_settings_name_their_key() {
        let e = parse_text("stream = \"S\"\n").unwrap_err();
        assert!(e.contains("nats"), "{e}");
        let e = parse_text("nats = [\"nats://a\"]\nuser = \"u\"\n").unwrap_err();
        assert!(e.contains("password"), "{e}");
        let e = parse_text("nats = [\"nats://a\"]\nreplicas = 9\n").unwrap_err();
        assert!(e.contains("replicas"), "{e}");
        let e = parse_text("nats = [\"nats://a\"]\ntls_cert = \"c.pem\"\n").unwrap_err();
        assert!(e.contains("tls_key"), "{e}");
    }

    #[test]
    fn the_flag_and_history_bounds() {
        let c = from_flag("nats://x:1, nats://y:2", None).unwrap();
        assert_eq!(c.urls, ["nats://x:1", "nats://y:2"]);
        assert!(from_flag(" , ", None).is_err());
        let h = HistorySettings {
            max_items: 0,
            ..HistorySettings::default()
        };
        let c = with_history(c, &h);
        assert_eq!(
            c.max_items, 1,
            "the stream still carries items with history off"
        );
        assert_eq!(c.max_age, h.max_age);
    }
}
