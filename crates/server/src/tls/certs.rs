//! The certificates Gripway presents to TLS clients, chosen by SNI from a directory in
//! Pushpin's layout: `<host>.crt` + `<host>.key` (PEM; the `.crt` may carry the chain after
//! the leaf; PKCS#8, PKCS#1 or SEC1 keys), wildcards as `_.example.com.crt` (exactly one
//! label: `a.example.com`, not `example.com`, not `a.b.example.com`), and
//! `default.crt`/`default.key` for every other name and for clients that send none. Names
//! match case-insensitively. Other files and subdirectories are ignored.
//!
//! [`load_dir`] reads the whole directory into a [`CertSet`] or refuses it with a
//! [`CertError`] naming the file at fault (a `.crt` without its `.key` or the reverse, an
//! unreadable or oversized file, bad PEM, a key that does not match its certificate, or no
//! certificate at all). [`CertResolver`] is what rustls asks during a handshake: it holds the
//! current set behind an [`ArcSwap`], so a reload ([`CertResolver::reload`], driven by
//! [`super::reload`]) swaps the whole set at once; a handshake in progress keeps the key it
//! was given, and established connections never look at the set again. A name that matches
//! nothing, with no default, gets no certificate: the handshake fails and
//! `gripway_tls_handshake_no_cert_total` counts it.

use std::collections::{BTreeMap, HashMap};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::reload::DirStamp;
use crate::metrics::TlsMetrics;

/// Largest `.crt` or `.key` file read (a chain of a few certificates is a few KiB).
pub(crate) const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Most certificates (host names, wildcards and the default) one directory may hold.
pub(crate) const MAX_CERTS: usize = 10_000;

/// The stem of the fallback certificate's files.
const DEFAULT_STEM: &str = "default";

/// A certificate directory, or a file in it, that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CertError {
    /// The file (or the directory) at fault.
    pub(crate) file: PathBuf,
    /// What is wrong with it.
    pub(crate) message: String,
}

impl CertError {
    fn new(file: &Path, message: impl Into<String>) -> Self {
        CertError {
            file: file.to_path_buf(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for CertError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.message)
    }
}

impl std::error::Error for CertError {}

impl From<CertError> for crate::config::ConfigError {
    fn from(e: CertError) -> Self {
        crate::config::ConfigError::at(e.file, None, e.message)
    }
}

/// One loaded set of certificates, looked up by SNI.
#[derive(Debug, Default)]
pub(crate) struct CertSet {
    /// By lower-case host name.
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// By the lower-case parent domain of a wildcard (`_.example.com` is kept under
    /// `example.com`).
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    /// For every other name, and for clients that send none.
    default: Option<Arc<CertifiedKey>>,
}

impl CertSet {
    /// A set presenting `key` to every client (the self-signed demo certificate).
    pub(crate) fn only_default(key: Arc<CertifiedKey>) -> Self {
        CertSet {
            default: Some(key),
            ..CertSet::default()
        }
    }

    /// The certificate for `server_name` (None: the client sent no SNI): the exact name,
    /// else a wildcard one label up, else the default.
    pub(crate) fn lookup(&self, server_name: Option<&str>) -> Option<&Arc<CertifiedKey>> {
        let found = server_name.and_then(|name| {
            let name = name.strip_suffix('.').unwrap_or(name);
            let lower;
            let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
                lower = name.to_ascii_lowercase();
                lower.as_str()
            } else {
                name
            };
            self.exact.get(name).or_else(|| {
                let (_, parent) = name.split_once('.')?;
                self.wildcard.get(parent)
            })
        });
        found.or(self.default.as_ref())
    }

    /// Certificates in the set, the default included.
    pub(crate) fn len(&self) -> usize {
        self.exact.len() + self.wildcard.len() + usize::from(self.default.is_some())
    }
}

/// Where a certificate's files say it applies.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Names {
    Default,
    Wildcard(String),
    Exact(String),
}

/// Which of `<stem>.crt` / `<stem>.key` a directory holds.
#[derive(Debug, Default)]
struct Pair {
    crt: Option<PathBuf>,
    key: Option<PathBuf>,
}

/// Reads every `<host>.crt` + `<host>.key` pair in `dir`.
pub(crate) fn load_dir(dir: &Path) -> Result<CertSet, CertError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| CertError::new(dir, format!("cannot read the certificate directory: {e}")))?;
    let mut pairs: BTreeMap<Names, Pair> = BTreeMap::new();
    for entry in entries {
        let entry = entry.map_err(|e| {
            CertError::new(dir, format!("cannot read the certificate directory: {e}"))
        })?;
        let path = entry.path();
        let Some((names, is_key)) = classify(&path) else {
            continue;
        };
        // follows symbolic links (a Kubernetes secret's files are links); skips directories
        if std::fs::metadata(&path).is_ok_and(|m| m.is_dir()) {
            continue;
        }
        let pair = pairs.entry(names).or_default();
        let slot = if is_key { &mut pair.key } else { &mut pair.crt };
        *slot = Some(path);
        if pairs.len() > MAX_CERTS {
            return Err(CertError::new(
                dir,
                format!("more than {MAX_CERTS} certificates in the directory"),
            ));
        }
    }
    let mut set = CertSet::default();
    for (names, pair) in pairs {
        let (crt, key) = match (pair.crt, pair.key) {
            (Some(c), Some(k)) => (c, k),
            (Some(c), None) => {
                let want = c.with_extension("key");
                return Err(CertError::new(
                    &c,
                    format!("no key file beside it (expected {})", want.display()),
                ));
            }
            (None, Some(k)) => {
                let want = k.with_extension("crt");
                return Err(CertError::new(
                    &k,
                    format!(
                        "no certificate file beside it (expected {})",
                        want.display()
                    ),
                ));
            }
            (None, None) => continue,
        };
        let certified = Arc::new(load_pair(&crt, &key)?);
        match names {
            Names::Default => set.default = Some(certified),
            Names::Wildcard(parent) => {
                set.wildcard.insert(parent, certified);
            }
            Names::Exact(host) => {
                set.exact.insert(host, certified);
            }
        }
    }
    if set.len() == 0 {
        return Err(CertError::new(
            dir,
            "no certificate in the directory (expected <host>.crt + <host>.key, or default.crt + default.key)",
        ));
    }
    Ok(set)
}

/// The names a `.crt`/`.key` file applies to, and whether it is the key; None for files
/// that are not part of the layout (other extensions, hidden files, an empty stem).
fn classify(path: &Path) -> Option<(Names, bool)> {
    let file_name = path.file_name()?.to_str()?;
    if file_name.starts_with('.') {
        return None;
    }
    let (stem, is_key) = if let Some(stem) = file_name.strip_suffix(".crt") {
        (stem, false)
    } else if let Some(stem) = file_name.strip_suffix(".key") {
        (stem, true)
    } else {
        return None;
    };
    let stem = stem.to_ascii_lowercase();
    let names = if stem == DEFAULT_STEM {
        Names::Default
    } else if let Some(parent) = stem.strip_prefix("_.") {
        if parent.is_empty() {
            return None;
        }
        Names::Wildcard(parent.to_string())
    } else if stem.is_empty() {
        return None;
    } else {
        Names::Exact(stem)
    };
    Some((names, is_key))
}

/// Reads a certificate chain and its key, and checks that they belong together.
pub(crate) fn load_pair(crt: &Path, key: &Path) -> Result<CertifiedKey, CertError> {
    let crt_pem = read_limited(crt)?;
    let chain = CertificateDer::pem_slice_iter(&crt_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::new(crt, format!("bad PEM: {e}")))?;
    if chain.is_empty() {
        return Err(CertError::new(
            crt,
            "no certificate in it (expected PEM: -----BEGIN CERTIFICATE-----)",
        ));
    }
    let key_pem = read_limited(key)?;
    let key_der = match PrivateKeyDer::from_pem_slice(&key_pem) {
        Ok(k) => k,
        Err(rustls::pki_types::pem::Error::NoItemsFound) => return Err(CertError::new(
            key,
            "no private key in it (expected PEM: PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)",
        )),
        Err(e) => return Err(CertError::new(key, format!("bad PEM: {e}"))),
    };
    certified_key(chain, key_der, crt, key)
}

/// Builds the key rustls signs with, refusing a key that is not the certificate's.
fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key_der: PrivateKeyDer<'static>,
    crt: &Path,
    key: &Path,
) -> Result<CertifiedKey, CertError> {
    let signing = rustls::crypto::aws_lc_rs::default_provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| CertError::new(key, format!("unusable private key: {e}")))?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(certified)
        }
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(CertError::new(
                key,
                format!(
                    "this key does not match the certificate in {}",
                    crt.display()
                ),
            ))
        }
        Err(e) => Err(CertError::new(
            crt,
            format!("the first certificate cannot be parsed: {e}"),
        )),
    }
}

/// Reads a whole file of at most [`MAX_FILE_BYTES`].
fn read_limited(path: &Path) -> Result<Vec<u8>, CertError> {
    let file =
        std::fs::File::open(path).map_err(|e| CertError::new(path, format!("cannot read: {e}")))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| CertError::new(path, format!("cannot read: {e}")))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(CertError::new(
            path,
            format!("larger than {MAX_FILE_BYTES} bytes"),
        ));
    }
    Ok(bytes)
}

/// Chooses the certificate for each TLS handshake from the current [`CertSet`].
pub(crate) struct CertResolver {
    /// Where the set is reloaded from (None: a fixed set, the self-signed demo).
    dir: Option<PathBuf>,
    current: ArcSwap<CertSet>,
    /// The directory as it was when the last load began: a change after it reloads again.
    stamp: parking_lot::Mutex<DirStamp>,
    metrics: TlsMetrics,
}

impl std::fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertResolver")
            .field("dir", &self.dir)
            .field("certificates", &self.current.load().len())
            .finish()
    }
}

impl CertResolver {
    /// Loads `dir`; an error names the file at fault (start-up refuses to go on).
    pub(crate) fn load(dir: &Path, metrics: TlsMetrics) -> Result<Arc<Self>, CertError> {
        let stamp = DirStamp::read(dir);
        let set = load_dir(dir)?;
        tracing::info!(dir = %dir.display(), certificates = set.len(), "TLS certificates loaded");
        Ok(Arc::new(CertResolver {
            dir: Some(dir.to_path_buf()),
            current: ArcSwap::from_pointee(set),
            stamp: parking_lot::Mutex::new(stamp),
            metrics,
        }))
    }

    /// Presents `key` to every client and never reloads (the self-signed demo certificate).
    pub(crate) fn fixed(key: Arc<CertifiedKey>, metrics: TlsMetrics) -> Arc<Self> {
        Arc::new(CertResolver {
            dir: None,
            current: ArcSwap::from_pointee(CertSet::only_default(key)),
            stamp: parking_lot::Mutex::new(DirStamp::default()),
            metrics,
        })
    }

    /// The directory the set is reloaded from.
    pub(crate) fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    #[cfg(test)]
    /// The current set (what new handshakes are answered from).
    pub(crate) fn current(&self) -> Arc<CertSet> {
        self.current.load_full()
    }

    /// Reads the directory again and swaps the new set in; on failure the old set stays,
    /// the reason is logged at warn (naming the file) and counted. Returns the number of
    /// certificates now loaded. A fixed resolver has nothing to reload.
    pub(crate) fn reload(&self) -> Result<usize, CertError> {
        let Some(dir) = &self.dir else {
            return Ok(self.current.load().len());
        };
        *self.stamp.lock() = DirStamp::read(dir);
        match load_dir(dir) {
            Ok(set) => {
                let n = set.len();
                self.current.store(Arc::new(set));
                self.metrics.cert_reload(true);
                tracing::info!(dir = %dir.display(), certificates = n, "TLS certificates reloaded");
                Ok(n)
            }
            Err(e) => {
                self.metrics.cert_reload(false);
                tracing::warn!("TLS certificates not reloaded, keeping the old ones: {e}");
                Err(e)
            }
        }
    }

    /// Reloads if the directory changed since the last load began (None: unchanged, or a
    /// fixed resolver). Blocking: file reads and key parsing.
    pub(crate) fn reload_if_changed(&self) -> Option<Result<usize, CertError>> {
        let dir = self.dir.as_ref()?;
        if DirStamp::read(dir) == *self.stamp.lock() {
            return None;
        }
        Some(self.reload())
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = client_hello.server_name();
        let found = self.current.load().lookup(name).cloned();
        if found.is_none() {
            self.metrics.handshake_no_cert();
            tracing::debug!(sni = name.unwrap_or(""), "no TLS certificate for this name");
        }
        found
    }
}

#[cfg(test)]
#[path = "certs_tests.rs"]
mod tests;
