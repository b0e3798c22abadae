//! The certificate the built-in demo presents when `--tls-port` is given without a
//! certificate directory: generated at start with rcgen (a fresh ECDSA P-256 key each run,
//! never written to disk), valid for the names a local browser or curl uses. Clients must be
//! told to trust it (`curl -k`, or the PEM the caller may log or save).

use std::sync::Arc;

use rustls::pki_types::PrivateKeyDer;
use rustls::sign::CertifiedKey;

/// The names the demo certificate covers.
pub(crate) const DEMO_HOSTS: &[&str] = &["localhost", "127.0.0.1", "::1"];

/// A generated certificate and the key rustls signs with.
#[derive(Debug)]
pub(crate) struct SelfSigned {
    /// What the handshake presents.
    pub(crate) key: Arc<CertifiedKey>,
    /// The certificate in PEM, for clients that want to trust it.
    pub(crate) cert_pem: String,
}

/// A self-signed certificate for `hosts` (DNS names, or IP addresses, which become IP
/// subject alternative names).
pub(crate) fn self_signed(hosts: &[&str]) -> Result<SelfSigned, String> {
    let names: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
    let generated = rcgen::generate_simple_self_signed(names)
        .map_err(|e| format!("cannot generate a self-signed certificate: {e}"))?;
    let key_der = PrivateKeyDer::Pkcs8(generated.signing_key.serialize_der().into());
    let key = CertifiedKey::from_der(
        vec![generated.cert.der().clone()],
        key_der,
        &rustls::crypto::aws_lc_rs::default_provider(),
    )
    .map_err(|e| format!("the generated certificate is unusable: {e}"))?;
    Ok(SelfSigned {
        key: Arc::new(key),
        cert_pem: generated.cert.pem(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_the_demo_names_and_its_key_matches() {
        let s = self_signed(DEMO_HOSTS).unwrap();
        s.key.keys_match().unwrap();
        assert_eq!(s.key.cert.len(), 1);
        assert!(s.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(self_signed(&["caf\u{e9}.example"]).is_err(), "not ASCII");
    }
}
