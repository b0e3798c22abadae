//! TLS toward clients: which certificate each handshake gets ([`certs`]: a directory in
//! Pushpin's layout chosen by SNI, or the demo's [`self_signed`] one), keeping it current
//! ([`reload`]), and the rustls server configurations the TLS listeners share
//! ([`server_config`]): one for HTTPS (ALPN `h2`, `http/1.1`) and one for MQTT over TLS (ALPN
//! [`MQTT_ALPN`]), both answering from the same certificates, so one directory serves both and
//! a reload reaches both. The listeners themselves, and the transport that runs HTTP or MQTT
//! over a TLS stream, live with the other client transports; this module owns no socket.
//!
//! Protocols: TLS 1.3 and 1.2, with the aws-lc-rs provider like the rest of the tree.
//! Resumption: stateless tickets (TLS 1.3 and 1.2, keys rotated every 6 h by rustls) and, for
//! TLS 1.2 clients without ticket support, a session-id cache of [`SESSION_CACHE_ENTRIES`].
//! No 0-RTT data (it could be replayed).

pub(crate) mod certs;
pub(crate) mod reload;
mod self_signed;
#[cfg(test)]
pub(crate) mod test_certs;

use std::sync::Arc;

use rustls::server::{ResolvesServerCert, ServerSessionMemoryCache};
use rustls::ServerConfig;

pub(crate) use certs::CertResolver;
pub(crate) use reload::{spawn_reloader, Reloader, POLL_INTERVAL};
pub(crate) use self_signed::{self_signed, DEMO_HOSTS};

/// TLS 1.2 sessions remembered for resumption by session id (each a few hundred bytes);
/// past it the oldest are forgotten and those clients do a full handshake.
pub(crate) const SESSION_CACHE_ENTRIES: usize = 4096;

/// ALPN of the HTTPS listeners, in order of preference.
pub(crate) const HTTP_ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

/// ALPN of the MQTT-over-TLS listeners: `mqtt`, which some devices offer (AWS IoT's on 443;
/// an HTTP list would refuse them: no protocol in common). A client offering no ALPN is
/// served all the same.
pub(crate) const MQTT_ALPN: &[&[u8]] = &[b"mqtt"];

/// What the TLS listeners share while the server runs: the rustls configurations (HTTPS,
/// MQTT), and the task that reloads the certificate directory they both answer from
/// (stopped when this is dropped).
pub(crate) struct TlsServing {
    /// For HTTPS listeners.
    pub(crate) config: Arc<ServerConfig>,
    /// For MQTT-over-TLS listeners: the same certificates, MQTT's ALPN.
    pub(crate) mqtt_config: Arc<ServerConfig>,
    _reloader: Option<Reloader>,
}

/// Sets up TLS for `settings`: certificates from its directory (an error names the file at
/// fault), or, without one, a self-signed certificate for the demo, said in the log with
/// where its PEM was saved for clients to trust.
pub(crate) fn start(
    settings: &crate::config::TlsSettings,
    metrics: crate::metrics::TlsMetrics,
) -> Result<TlsServing, crate::config::ConfigError> {
    use crate::config::ConfigError;
    let resolver = match &settings.certs_dir {
        Some(dir) => CertResolver::load(dir, metrics)?,
        None => {
            let made = self_signed(DEMO_HOSTS).map_err(ConfigError::new)?;
            let pem = std::env::temp_dir().join("gripway-self-signed.pem");
            let saved = std::fs::write(&pem, &made.cert_pem).is_ok();
            tracing::warn!(
                "TLS: no certificate directory ([tls] certs_dir); serving a self-signed \
                 certificate for localhost, 127.0.0.1 and ::1, made at start (demo only){}",
                if saved {
                    format!("; its PEM is in {} (curl --cacert)", pem.display())
                } else {
                    String::new()
                }
            );
            CertResolver::fixed(made.key, metrics)
        }
    };
    let tls_error = |e: rustls::Error| ConfigError::new(format!("TLS: {e}"));
    let config = server_config(resolver.clone(), HTTP_ALPN).map_err(tls_error)?;
    let mqtt_config = server_config(resolver.clone(), MQTT_ALPN).map_err(tls_error)?;
    Ok(TlsServing {
        config,
        mqtt_config,
        _reloader: spawn_reloader(resolver, POLL_INTERVAL),
    })
}

/// A configuration TLS listeners share: certificates from `resolver`, ALPN protocols `alpn`
/// in order of preference (`h2`, `http/1.1`, ...; empty: no ALPN). A client that offers ALPN
/// and none of `alpn` is refused (RFC 7301 §3.2); one that offers none is served.
pub(crate) fn server_config(
    resolver: Arc<dyn ResolvesServerCert>,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES);
    config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::TlsMetrics;
    use test_certs::TestCa;

    use rustls::pki_types::{CertificateDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// What a client saw of a handshake with `server`.
    struct Seen {
        leaf: CertificateDer<'static>,
        alpn: Option<Vec<u8>>,
        version: rustls::ProtocolVersion,
        resumed: bool,
    }

    /// A real handshake over an in-memory pipe, then one byte each way.
    async fn handshake(
        server: Arc<ServerConfig>,
        client: Arc<rustls::ClientConfig>,
        name: &str,
    ) -> Result<Seen, std::io::Error> {
        let (c, s) = tokio::io::duplex(64 * 1024);
        let acceptor = tokio_rustls::TlsAcceptor::from(server);
        let server_side = tokio::spawn(async move {
            let mut tls = acceptor.accept(s).await?;
            let mut b = [0u8; 1];
            tls.read_exact(&mut b).await?;
            tls.write_all(&b).await?;
            tls.flush().await?;
            Ok::<_, std::io::Error>(())
        });
        let connector = tokio_rustls::TlsConnector::from(client);
        let name = ServerName::try_from(name.to_string()).unwrap();
        let mut tls = connector.connect(name, c).await?;
        tls.write_all(b"x").await?;
        let mut b = [0u8; 1];
        tls.read_exact(&mut b).await?;
        server_side.await.unwrap()?;
        let conn = tls.get_ref().1;
        Ok(Seen {
            leaf: conn.peer_certificates().unwrap()[0].clone(),
            alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
            version: conn.protocol_version().unwrap(),
            resumed: conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
        })
    }

    fn leaf_of(resolver: &CertResolver, name: Option<&str>) -> CertificateDer<'static> {
        resolver.current().lookup(name).unwrap().cert[0].clone()
    }

    #[tokio::test]
    async fn sni_picks_the_certificate_and_alpn_is_negotiated() {
        let ca = TestCa::new();
        let dir = ca.dir(&["default", "a.example.com", "_.wild.example.com"]);
        let resolver = CertResolver::load(dir.path(), TlsMetrics::default()).unwrap();
        let server = server_config(resolver.clone(), &[b"h2", b"http/1.1"]).unwrap();

        let client = ca.client(&[b"http/1.1"]);
        let seen = handshake(server.clone(), client.clone(), "a.example.com")
            .await
            .unwrap();
        assert_eq!(seen.leaf, leaf_of(&resolver, Some("a.example.com")));
        assert_eq!(seen.alpn.as_deref(), Some(&b"http/1.1"[..]));
        assert_eq!(seen.version, rustls::ProtocolVersion::TLSv1_3);

        let seen = handshake(
            server.clone(),
            ca.client(&[b"h2", b"http/1.1"]),
            "x.wild.example.com",
        )
        .await
        .unwrap();
        assert_eq!(seen.leaf, leaf_of(&resolver, Some("x.wild.example.com")));
        assert_eq!(seen.alpn.as_deref(), Some(&b"h2"[..]));

        // a client that sends no SNI gets the default certificate
        let mut no_sni = (*ca.client(&[])).clone();
        no_sni.enable_sni = false;
        let seen = handshake(server.clone(), Arc::new(no_sni), "localhost")
            .await
            .unwrap();
        assert_eq!(seen.leaf, leaf_of(&resolver, None));
        assert_eq!(seen.alpn, None);
    }

    #[tokio::test]
    async fn mqtt_listeners_answer_alpn_mqtt_from_the_same_certificates() {
        let ca = TestCa::new();
        let dir = ca.dir(&["localhost"]);
        let settings = crate::config::TlsSettings {
            addrs: Vec::new(),
            certs_dir: Some(dir.path().to_path_buf()),
        };
        let serving = start(&settings, TlsMetrics::default()).unwrap();
        let mqtt = serving.mqtt_config.clone();
        let seen = handshake(mqtt.clone(), ca.client(&[b"mqtt"]), "localhost")
            .await
            .unwrap();
        assert_eq!(seen.alpn.as_deref(), Some(&b"mqtt"[..]));
        // the same certificate as HTTPS
        let https = handshake(serving.config.clone(), ca.client(&[]), "localhost")
            .await
            .unwrap();
        assert_eq!(seen.leaf, https.leaf);
        // most MQTT clients offer no ALPN
        let seen = handshake(mqtt.clone(), ca.client(&[]), "localhost")
            .await
            .unwrap();
        assert_eq!(seen.alpn, None);
        // why the MQTT listeners need their own list: HTTPS's refuses a client offering
        // only mqtt, and MQTT's refuses one offering only HTTP
        assert!(
            handshake(serving.config.clone(), ca.client(&[b"mqtt"]), "localhost")
                .await
                .is_err()
        );
        assert!(handshake(mqtt, ca.client(&[b"h2"]), "localhost")
            .await
            .is_err());
    }

    #[tokio::test]
    async fn tls12_is_offered() {
        let ca = TestCa::new();
        let dir = ca.dir(&["localhost"]);
        let resolver = CertResolver::load(dir.path(), TlsMetrics::default()).unwrap();
        let server = server_config(resolver, &[]).unwrap();
        let tls12_only = ca.client_with(&[&rustls::version::TLS12], &[]);
        let seen = handshake(server, tls12_only, "localhost").await.unwrap();
        assert_eq!(seen.version, rustls::ProtocolVersion::TLSv1_2);
    }

    #[tokio::test]
    async fn sessions_resume_over_tls13_and_tls12() {
        let ca = TestCa::new();
        let dir = ca.dir(&["localhost"]);
        let resolver = CertResolver::load(dir.path(), TlsMetrics::default()).unwrap();
        let server = server_config(resolver, &[]).unwrap();
        // a client config keeps its own session cache: the second handshake resumes
        let tls13 = ca.client(&[]);
        assert!(
            !handshake(server.clone(), tls13.clone(), "localhost")
                .await
                .unwrap()
                .resumed
        );
        assert!(
            handshake(server.clone(), tls13, "localhost")
                .await
                .unwrap()
                .resumed
        );
        let tls12 = ca.client_with(&[&rustls::version::TLS12], &[]);
        let first = handshake(server.clone(), tls12.clone(), "localhost")
            .await
            .unwrap();
        assert_eq!(first.version, rustls::ProtocolVersion::TLSv1_2);
        assert!(!first.resumed);
        assert!(handshake(server, tls12, "localhost").await.unwrap().resumed);
    }

    #[tokio::test]
    async fn an_unknown_name_without_default_fails_and_is_counted() {
        let ca = TestCa::new();
        let dir = ca.dir(&["a.example.com"]);
        let metrics = TlsMetrics::default();
        let resolver = CertResolver::load(dir.path(), metrics.clone()).unwrap();
        let server = server_config(resolver, &[]).unwrap();
        let e = handshake(server, ca.client(&[]), "b.example.com").await;
        assert!(e.is_err(), "no certificate, no handshake");
        assert_eq!(metrics.handshakes_without_cert(), 1);
    }

    #[tokio::test]
    async fn the_demo_certificate_is_valid_for_localhost_and_loopback_ips() {
        let demo = self_signed(DEMO_HOSTS).unwrap();
        let resolver = CertResolver::fixed(demo.key, TlsMetrics::default());
        let server = server_config(resolver, &[b"http/1.1"]).unwrap();
        let trusting = {
            use rustls::pki_types::pem::PemObject;
            let mut r = rustls::RootCertStore::empty();
            r.add(CertificateDer::from_pem_slice(demo.cert_pem.as_bytes()).unwrap())
                .unwrap();
            Arc::new(
                rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::aws_lc_rs::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(r)
                .with_no_client_auth(),
            )
        };
        for name in ["localhost", "127.0.0.1", "::1"] {
            handshake(server.clone(), trusting.clone(), name)
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}
