//! TLS for tests: a certificate authority made with rcgen when the test runs (no key is ever
//! checked in), a certificate directory in Pushpin's layout signed by it ([`CertsDir`]: what
//! `[tls] certs_dir` / `--tls-certs-dir` points at), and clients that trust it: the CA's PEM
//! file for curl (`--cacert`), openssl (`-CAfile`), Python or a browser, and a rustls client
//! config for Rust tests.
//!
//! File stems follow the server's rules: `_.example.com` is a wildcard certificate for
//! `*.example.com`, `default` is the fallback (made for `localhost`, `127.0.0.1` and `::1`, so
//! clients that connect by IP and send no SNI can verify it), anything else a certificate for
//! that one name.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::TempDir;

/// A certificate authority for one test.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl TestCa {
    /// A fresh CA (ECDSA P-256).
    pub fn new() -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "gripway test CA");
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        TestCa {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// The CA certificate in PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// The names a certificate for file stem `stem` covers.
    pub fn names_for(stem: &str) -> Vec<String> {
        match stem {
            "default" => vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            s => match s.strip_prefix("_.") {
                Some(parent) => vec![format!("*.{parent}")],
                None => vec![s.to_string()],
            },
        }
    }

    /// A certificate signed by this CA and its key (PKCS#8), both PEM, for `names` (DNS
    /// names or IP addresses).
    pub fn issue(&self, names: &[String]) -> (String, String) {
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(names.to_vec())
            .expect("certificate params")
            .signed_by(&key, &self.issuer)
            .expect("certificate");
        (cert.pem(), key.serialize_pem())
    }

    /// A root store holding this CA.
    pub fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(self.pem.as_bytes()).expect("CA PEM"))
            .expect("CA certificate");
        roots
    }

    /// A rustls client (TLS 1.3 and 1.2) that trusts this CA and offers `alpn`.
    pub fn client_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(self.roots())
        .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

/// A certificate directory for gripway's `--tls-certs-dir`, with the CA that signed it;
/// removed when dropped.
pub struct CertsDir {
    dir: TempDir,
    ca: TestCa,
}

impl CertsDir {
    /// A directory holding `<stem>.crt` + `<stem>.key` for each of `stems` (`localhost`,
    /// `a.example.com`, `_.wild.example.com`, `default`, ...), signed by a fresh CA.
    pub fn new(stems: &[&str]) -> CertsDir {
        let dir = TempDir::new("certs");
        std::fs::create_dir_all(dir.path().join("certs")).expect("certs dir");
        let ca = TestCa::new();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).expect("write ca.pem");
        let certs = CertsDir { dir, ca };
        for stem in stems {
            certs.add(stem);
        }
        certs
    }

    /// The certificate directory (holds only `.crt` and `.key` files).
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("certs")
    }

    /// The CA's certificate as a PEM file (beside the directory, not in it).
    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The CA's certificate in PEM.
    pub fn ca_pem(&self) -> &str {
        self.ca.pem()
    }

    /// The CA that signed the directory's certificates.
    pub fn ca(&self) -> &TestCa {
        &self.ca
    }

    /// Writes (or replaces) `<stem>.crt` and `<stem>.key` with a new certificate; returns the
    /// certificate's PEM. Each file is replaced whole (written aside, then renamed), the key
    /// first; a running gripway that polls between the two renames of a replaced pair sees a
    /// key that does not match, refuses that one reload and loads the pair at its next poll.
    pub fn add(&self, stem: &str) -> String {
        let (crt, key) = self.ca.issue(&TestCa::names_for(stem));
        write_atomically(&self.path().join(format!("{stem}.key")), &key);
        write_atomically(&self.path().join(format!("{stem}.crt")), &crt);
        crt
    }

    /// Removes `<stem>.crt` and `<stem>.key`.
    pub fn remove(&self, stem: &str) {
        for ext in ["crt", "key"] {
            let _ = std::fs::remove_file(self.path().join(format!("{stem}.{ext}")));
        }
    }

    /// A rustls client that trusts the directory's CA and offers `alpn`.
    pub fn client_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        self.ca.client_config(alpn)
    }
}

/// Writes through a temporary file and a rename, so a reader sees the old file or the new
/// one, never half of one.
fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write certificate file");
    std::fs::rename(&tmp, path).expect("rename certificate file");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_layout_and_the_ca() {
        let certs = CertsDir::new(&["localhost", "_.wild.example.com", "default"]);
        let mut names: Vec<String> = std::fs::read_dir(certs.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "_.wild.example.com.crt",
                "_.wild.example.com.key",
                "default.crt",
                "default.key",
                "localhost.crt",
                "localhost.key"
            ]
        );
        assert_eq!(
            std::fs::read_to_string(certs.ca_path()).unwrap(),
            certs.ca_pem()
        );
        assert_eq!(certs.ca().roots().len(), 1);
        certs.remove("localhost");
        assert!(!certs.path().join("localhost.crt").exists());
    }
}
