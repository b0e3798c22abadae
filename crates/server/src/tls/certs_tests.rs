//! Tests of the certificate directory: lookup rules, key formats, every refusal naming its
//! file, and reloads. Certificates come from a CA generated at test time.

use std::path::Path;

use super::*;
use crate::metrics::TlsMetrics;
use crate::tls::test_certs::{TempDir, TestCa};

/// The leaf certificate `set` presents for `name`.
fn leaf(set: &CertSet, name: Option<&str>) -> Option<CertificateDer<'static>> {
    set.lookup(name).map(|k| k.cert[0].clone())
}

/// The leaf certificate stored in `dir/<stem>.crt`.
fn file_leaf(dir: &Path, stem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(dir.join(format!("{stem}.crt"))).unwrap()
}

#[test]
fn exact_wildcard_and_default() {
    let ca = TestCa::new();
    let dir = ca.dir(&["default", "a.example.com", "_.wild.example.com"]);
    let set = load_dir(dir.path()).unwrap();
    assert_eq!(set.len(), 3);
    let (a, wild, default) = (
        file_leaf(dir.path(), "a.example.com"),
        file_leaf(dir.path(), "_.wild.example.com"),
        file_leaf(dir.path(), "default"),
    );
    assert_eq!(leaf(&set, Some("a.example.com")), Some(a));
    // a wildcard covers exactly one label
    assert_eq!(leaf(&set, Some("x.wild.example.com")), Some(wild.clone()));
    assert_eq!(leaf(&set, Some("y.wild.example.com")), Some(wild.clone()));
    assert_eq!(leaf(&set, Some("wild.example.com")), Some(default.clone()));
    assert_eq!(
        leaf(&set, Some("x.y.wild.example.com")),
        Some(default.clone())
    );
    // anything else, and no SNI at all, gets the default
    assert_eq!(leaf(&set, Some("b.example.com")), Some(default.clone()));
    assert_eq!(leaf(&set, None), Some(default));
}

#[test]
fn an_exact_name_wins_over_a_wildcard() {
    let ca = TestCa::new();
    let dir = ca.dir(&["_.example.com", "a.example.com"]);
    let set = load_dir(dir.path()).unwrap();
    assert_eq!(
        leaf(&set, Some("a.example.com")),
        Some(file_leaf(dir.path(), "a.example.com"))
    );
    assert_eq!(
        leaf(&set, Some("b.example.com")),
        Some(file_leaf(dir.path(), "_.example.com"))
    );
}

#[test]
fn names_match_case_insensitively() {
    let ca = TestCa::new();
    let dir = TempDir::new();
    let (crt, key) = ca.issue("a.example.com");
    // upper case in the file names, upper case in the SNI
    std::fs::write(dir.path().join("A.Example.COM.crt"), &crt).unwrap();
    std::fs::write(dir.path().join("A.Example.COM.key"), &key).unwrap();
    ca.write_pair(dir.path(), "_.Wild.example.com");
    let set = load_dir(dir.path()).unwrap();
    assert!(leaf(&set, Some("a.example.com")).is_some());
    assert!(leaf(&set, Some("A.EXAMPLE.com")).is_some());
    assert!(leaf(&set, Some("X.WILD.Example.Com")).is_some());
    // a fully qualified name's trailing dot is ignored
    assert!(leaf(&set, Some("a.example.com.")).is_some());
}

#[test]
fn without_a_default_an_unknown_name_gets_nothing() {
    let ca = TestCa::new();
    let dir = ca.dir(&["a.example.com"]);
    let set = load_dir(dir.path()).unwrap();
    assert!(leaf(&set, Some("b.example.com")).is_none());
    assert!(leaf(&set, None).is_none());
}

#[test]
fn other_files_and_directories_are_ignored() {
    let ca = TestCa::new();
    let dir = ca.dir(&["default"]);
    std::fs::write(dir.path().join("README"), "notes").unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.path().join(".hidden.crt"), "not PEM").unwrap();
    std::fs::create_dir(dir.path().join("old.crt")).unwrap();
    assert_eq!(load_dir(dir.path()).unwrap().len(), 1);
}

#[test]
fn a_chain_after_the_leaf_is_kept() {
    let ca = TestCa::new();
    let dir = TempDir::new();
    let (crt, key) = ca.issue("a.example.com");
    std::fs::write(
        dir.path().join("a.example.com.crt"),
        format!("{crt}{}", ca.pem()),
    )
    .unwrap();
    std::fs::write(dir.path().join("a.example.com.key"), key).unwrap();
    let set = load_dir(dir.path()).unwrap();
    assert_eq!(set.lookup(Some("a.example.com")).unwrap().cert.len(), 2);
}

/// The key inside a PKCS#8 DER document (its `privateKey` OCTET STRING): a PKCS#1
/// `RSAPrivateKey` for RSA, a SEC1 `ECPrivateKey` for EC.
fn pkcs8_inner(der: &[u8]) -> Vec<u8> {
    // (tag, content) of the DER element at the start of `d`, and what follows it
    fn element(d: &[u8]) -> (u8, &[u8], &[u8]) {
        let tag = d[0];
        let (len, head) = match d[1] {
            n if n < 0x80 => (n as usize, 2),
            n => {
                let k = (n & 0x7f) as usize;
                let len = d[2..2 + k].iter().fold(0usize, |a, b| a << 8 | *b as usize);
                (len, 2 + k)
            }
        };
        (tag, &d[head..head + len], &d[head + len..])
    }
    let (tag, body, _) = element(der);
    assert_eq!(tag, 0x30, "PKCS#8 is a SEQUENCE");
    let (_version, _, rest) = element(body);
    let (_algorithm, _, rest) = element(rest);
    let (tag, key, _) = element(rest);
    assert_eq!(tag, 0x04, "privateKey is an OCTET STRING");
    key.to_vec()
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// Writes `<host>.crt` for a new key made by `key`, and returns the key's PKCS#8 DER.
fn pair_with_key(ca: &TestCa, dir: &Path, host: &str, key: rcgen::KeyPair) -> Vec<u8> {
    let cert = rcgen::CertificateParams::new(vec![host.to_string()])
        .unwrap()
        .signed_by(&key, ca.issuer())
        .unwrap();
    std::fs::write(dir.join(format!("{host}.crt")), cert.pem()).unwrap();
    key.serialize_der()
}

#[test]
fn sec1_and_pkcs1_keys_load() {
    let ca = TestCa::new();
    let dir = TempDir::new();
    let ec = pair_with_key(
        &ca,
        dir.path(),
        "ec.example.com",
        rcgen::KeyPair::generate().unwrap(),
    );
    std::fs::write(
        dir.path().join("ec.example.com.key"),
        pem("EC PRIVATE KEY", &pkcs8_inner(&ec)),
    )
    .unwrap();
    let rsa_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let rsa = pair_with_key(&ca, dir.path(), "rsa.example.com", rsa_key);
    std::fs::write(
        dir.path().join("rsa.example.com.key"),
        pem("RSA PRIVATE KEY", &pkcs8_inner(&rsa)),
    )
    .unwrap();
    let set = load_dir(dir.path()).unwrap();
    assert!(set.lookup(Some("ec.example.com")).is_some());
    assert!(set.lookup(Some("rsa.example.com")).is_some());
}

/// The error loading `dir` gives, checked to name `file` (a name in `dir`, or "" for the
/// directory itself) and to say `says`.
fn refused(dir: &TempDir, file: &str, says: &str) {
    let e = load_dir(dir.path()).unwrap_err();
    let want = if file.is_empty() {
        dir.path().to_path_buf()
    } else {
        dir.path().join(file)
    };
    assert_eq!(e.file, want, "{e}");
    assert!(e.message.contains(says), "{e}");
    assert!(
        e.to_string().starts_with(&want.display().to_string()),
        "{e}"
    );
}

#[test]
fn a_certificate_without_its_key_or_the_reverse_is_refused() {
    let ca = TestCa::new();
    let dir = ca.dir(&["default"]);
    let (crt, key) = ca.issue("a.example.com");
    std::fs::write(dir.path().join("a.example.com.crt"), &crt).unwrap();
    refused(&dir, "a.example.com.crt", "a.example.com.key");
    std::fs::remove_file(dir.path().join("a.example.com.crt")).unwrap();
    std::fs::write(dir.path().join("_.b.example.com.key"), &key).unwrap();
    refused(&dir, "_.b.example.com.key", "_.b.example.com.crt");
}

#[test]
fn an_unreadable_or_oversized_file_is_refused() {
    let ca = TestCa::new();
    let dir = ca.dir(&["default"]);
    // a link to nowhere cannot be opened (permissions do not stop root)
    ca.write_pair(dir.path(), "a.example.com");
    std::fs::remove_file(dir.path().join("a.example.com.key")).unwrap();
    std::os::unix::fs::symlink(
        dir.path().join("missing"),
        dir.path().join("a.example.com.key"),
    )
    .unwrap();
    refused(&dir, "a.example.com.key", "cannot read");
    std::fs::remove_file(dir.path().join("a.example.com.key")).unwrap();
    let huge = "x".repeat(MAX_FILE_BYTES as usize + 1);
    std::fs::write(dir.path().join("a.example.com.key"), huge).unwrap();
    refused(&dir, "a.example.com.key", "larger than");
}

#[test]
fn bad_pem_is_refused() {
    let ca = TestCa::new();
    let dir = ca.dir(&["default"]);
    let (_, key) = ca.issue("a.example.com");
    let crt = dir.path().join("a.example.com.crt");
    std::fs::write(dir.path().join("a.example.com.key"), &key).unwrap();
    std::fs::write(
        &crt,
        "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    refused(&dir, "a.example.com.crt", "bad PEM");
    std::fs::write(&crt, "just some text\n").unwrap();
    refused(&dir, "a.example.com.crt", "no certificate in it");
    // a key file holding a certificate
    std::fs::write(&crt, ca.issue("a.example.com").0).unwrap();
    std::fs::write(dir.path().join("a.example.com.key"), ca.pem()).unwrap();
    refused(&dir, "a.example.com.key", "no private key");
    // DER that is not a certificate
    std::fs::write(dir.path().join("a.example.com.key"), &key).unwrap();
    std::fs::write(&crt, pem("CERTIFICATE", b"not DER")).unwrap();
    refused(&dir, "a.example.com.crt", "cannot be parsed");
}

#[test]
fn a_key_that_is_not_the_certificates_is_refused() {
    let ca = TestCa::new();
    let dir = ca.dir(&["default", "a.example.com"]);
    let (_, other_key) = ca.issue("a.example.com");
    std::fs::write(dir.path().join("a.example.com.key"), other_key).unwrap();
    refused(
        &dir,
        "a.example.com.key",
        "does not match the certificate in",
    );
}

#[test]
fn a_directory_without_certificates_is_refused() {
    let dir = TempDir::new();
    refused(&dir, "", "no certificate in the directory");
    std::fs::write(dir.path().join("README"), "x").unwrap();
    refused(&dir, "", "no certificate in the directory");
    let gone = dir.path().join("nope");
    let e = load_dir(&gone).unwrap_err();
    assert_eq!(e.file, gone);
    assert!(
        e.message.contains("cannot read the certificate directory"),
        "{e}"
    );
}

#[test]
fn a_reload_picks_up_a_new_host() {
    let ca = TestCa::new();
    let dir = ca.dir(&["a.example.com"]);
    let metrics = TlsMetrics::default();
    let resolver = CertResolver::load(dir.path(), metrics.clone()).unwrap();
    let before = resolver.current();
    assert!(before.lookup(Some("b.example.com")).is_none());
    ca.write_pair(dir.path(), "b.example.com");
    assert_eq!(resolver.reload().unwrap(), 2);
    assert!(resolver.current().lookup(Some("b.example.com")).is_some());
    assert_eq!(metrics.cert_reloads(true), 1);
    // a handshake that took the old set keeps it whole
    assert!(before.lookup(Some("b.example.com")).is_none());
    assert!(before.lookup(Some("a.example.com")).is_some());
}

#[test]
fn a_broken_reload_keeps_the_old_set() {
    let ca = TestCa::new();
    let dir = ca.dir(&["a.example.com", "b.example.com"]);
    let metrics = TlsMetrics::default();
    let resolver = CertResolver::load(dir.path(), metrics.clone()).unwrap();
    let b = file_leaf(dir.path(), "b.example.com");
    // b's key replaced by one that does not match
    std::fs::write(dir.path().join("b.example.com.key"), ca.issue("x").1).unwrap();
    let e = resolver.reload().unwrap_err();
    assert_eq!(e.file, dir.path().join("b.example.com.key"));
    assert_eq!(metrics.cert_reloads(false), 1);
    assert_eq!(metrics.cert_reloads(true), 0);
    assert_eq!(leaf(&resolver.current(), Some("b.example.com")), Some(b));
    // fixed, the next reload succeeds
    ca.write_pair(dir.path(), "b.example.com");
    resolver.reload().unwrap();
    assert_eq!(
        leaf(&resolver.current(), Some("b.example.com")),
        Some(file_leaf(dir.path(), "b.example.com"))
    );
}

#[test]
fn start_up_errors_become_config_errors_naming_the_file() {
    let dir = TempDir::new();
    let e: crate::config::ConfigError = load_dir(dir.path()).unwrap_err().into();
    assert_eq!(e.file.as_deref(), Some(dir.path()));
    assert!(e.to_string().contains("no certificate"), "{e}");
}
