//! For the TLS unit tests only: a test CA made with rcgen at test time (no key is ever
//! checked in), certificate directories in Pushpin's layout written from it, and a rustls
//! client that trusts it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

/// A certificate authority for one test.
pub(crate) struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl TestCa {
    pub(crate) fn new() -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "gripway test CA");
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// What signs this CA's certificates.
    pub(crate) fn issuer(&self) -> &Issuer<'static, KeyPair> {
        &self.issuer
    }

    /// The CA certificate in PEM.
    pub(crate) fn pem(&self) -> &str {
        &self.pem
    }

    /// A certificate and key (PEM, PKCS#8) for a file stem: `_.x` covers `*.x`, `default`
    /// covers `localhost`, anything else itself.
    pub(crate) fn issue(&self, stem: &str) -> (String, String) {
        let san = match stem {
            "default" => "localhost".to_string(),
            s => match s.strip_prefix("_.") {
                Some(parent) => format!("*.{parent}"),
                None => s.to_string(),
            },
        };
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![san])
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// Writes `<stem>.crt` and `<stem>.key` into `dir`.
    pub(crate) fn write_pair(&self, dir: &Path, stem: &str) {
        let (crt, key) = self.issue(stem);
        std::fs::write(dir.join(format!("{stem}.crt")), crt).unwrap();
        std::fs::write(dir.join(format!("{stem}.key")), key).unwrap();
    }

    /// A fresh directory holding a pair for each stem.
    pub(crate) fn dir(&self, stems: &[&str]) -> TempDir {
        let dir = TempDir::new();
        for stem in stems {
            self.write_pair(dir.path(), stem);
        }
        dir
    }

    /// A root store holding this CA.
    pub(crate) fn roots(&self) -> rustls::RootCertStore {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls::pki_types::CertificateDer::from_pem_slice(self.pem.as_bytes()).unwrap())
            .unwrap();
        roots
    }

    /// A client that trusts this CA and offers `alpn`.
    pub(crate) fn client(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        self.client_with(&[&rustls::version::TLS13, &rustls::version::TLS12], alpn)
    }

    /// A client that trusts this CA, speaks only `versions` and offers `alpn`.
    pub(crate) fn client_with(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
        alpn: &[&[u8]],
    ) -> Arc<rustls::ClientConfig> {
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(self.roots())
        .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

/// A directory under the system temp dir, removed when dropped.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new() -> TempDir {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "gripway-tls-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
