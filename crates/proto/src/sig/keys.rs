//! Key specs for Grip-Sig and publish-API JWTs: turning a config string (`sig_key`,
//! `upstream_key`, route `sig_key=`) into a ready-to-use signing or verifying key.
//!
//! Spec forms: a plain-text secret; `base64:<b64>` (a secret); `file:<path>` (relative to the
//! config file's directory), whose contents are PEM when they start with `-----BEGIN` and a
//! hex-encoded secret otherwise; PEM text given inline (it starts with `-----BEGIN`). The
//! empty spec means "no key". PEM text, inline or in a file, is always parsed as a key and
//! never becomes an HMAC secret: a public key used as a secret would let anyone who has it
//! sign HS256 tokens (algorithm confusion), so a PEM that does not parse is an error.
//!
//! Invariants: a [`SigningKey`] or [`VerifyingKey`] can only be built through the validating
//! constructors here, so its algorithm always matches its key material (a P-256 key for ES256,
//! an RSA key aws-lc accepts for RS256, a non-empty secret for HS256). Secret bytes never
//! appear in `Debug` or `Display` output, nor in error messages (paths and offsets only).

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Once;

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey};

/// Largest key file `file:<path>` may name (an RSA-4096 PEM is about 3.3 KB).
pub const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// Lenient base64 for `base64:` specs (Pushpin decodes these with Qt, which does not insist
/// on padding): standard alphabet, padding optional.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// The same, for secrets written with the URL-safe alphabet (`-` and `_`).
const LENIENT_BASE64_URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Fastly Fanout's Grip-Sig public key (P-256, JWK coordinates), see reference §7.
const FASTLY_FANOUT_KEY_X: &str = "CKo5A1ebyFcnmVV8SE5On-8G81JyBjSvcrx4VLetWCg";
const FASTLY_FANOUT_KEY_Y: &str = "7gwJqaU6N8TP88--twjkwoB36f-pT3QsmI46nPhjO7M";

/// Length of an uncompressed P-256 public point (`0x04 || x || y`).
const P256_UNCOMPRESSED_POINT_LEN: usize = 65;

/// Pins jsonwebtoken's process-wide crypto provider to aws-lc-rs. With only the `aws_lc_rs`
/// feature enabled jsonwebtoken picks it by itself; installing it explicitly keeps signing
/// from panicking if another crate ever enables `rust_crypto` too. Every key constructor
/// calls this, so any key that exists can be used.
fn ensure_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // Err means a provider is already installed, which is just as good.
        let _ = jsonwebtoken::crypto::CryptoProvider::install_default(
            &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER,
        );
    });
}

/// Validated private key material; only this module can make one.
#[derive(Clone)]
pub struct SigningKeyMaterial(EncodingKey);

/// Validated public key (or HMAC secret) material; only this module can make one.
#[derive(Clone)]
pub struct VerifyingKeyMaterial(DecodingKey);

impl fmt::Debug for SigningKeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Debug for VerifyingKeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A key Gripway signs Grip-Sig tokens with; the variant is the JWT algorithm.
#[derive(Clone, Debug)]
pub enum SigningKey {
    /// HMAC-SHA256 with a shared secret (plain, `base64:` or hex `file:` spec).
    Hs256(SigningKeyMaterial),
    /// ECDSA P-256 with a PKCS#8 private key PEM.
    Es256(SigningKeyMaterial),
    /// RSASSA-PKCS1-v1_5 SHA-256 with an RSA private key PEM (PKCS#8 or PKCS#1).
    Rs256(SigningKeyMaterial),
}

/// A key Gripway checks JWTs with (upstream Grip-Sig, publish-API bearer JWTs).
#[derive(Clone, Debug)]
pub enum VerifyingKey {
    /// HMAC shared secret: accepts HS256, HS384 and HS512 tokens.
    Hmac(VerifyingKeyMaterial),
    /// P-256 public key PEM: accepts ES256 tokens.
    Es256(VerifyingKeyMaterial),
    /// RSA public key PEM: accepts RS256/384/512 and PS256/384/512 tokens.
    Rsa(VerifyingKeyMaterial),
}

/// Why a PEM key was refused. The messages suggest the `openssl` command that fixes it.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum PemProblem {
    /// No `-----BEGIN <label>-----` line.
    #[error("no '-----BEGIN <type>-----' line found")]
    NoPemBlock,
    /// SEC1 `EC PRIVATE KEY`, which the crypto library does not read.
    #[error(
        "the EC key is in SEC1 form ('BEGIN EC PRIVATE KEY'); convert it to PKCS#8 with \
         `openssl pkcs8 -topk8 -nocrypt -in <file> -out <new file>`"
    )]
    Sec1EcKey,
    /// A password-protected private key.
    #[error(
        "encrypted private keys are not supported; decrypt it with \
         `openssl pkey -in <file> -out <new file>`"
    )]
    EncryptedKey,
    /// A public key where a private key is needed.
    #[error("this is a public key, but signing needs the private key")]
    PublicKeyForSigning,
    /// A private key where a public key is needed.
    #[error(
        "this is a private key; configure the matching public key instead \
         (`openssl pkey -in <file> -pubout`)"
    )]
    PrivateKeyForVerifying,
    /// An X.509 certificate.
    #[error(
        "certificates are not supported; extract the public key with \
         `openssl x509 -pubkey -noout -in <file>`"
    )]
    Certificate,
    /// A PEM block type that holds no usable key.
    #[error(
        "unsupported PEM block type (expected PRIVATE KEY, RSA PRIVATE KEY, PUBLIC KEY or \
         RSA PUBLIC KEY)"
    )]
    UnsupportedBlockType,
    /// The block decoded but is neither an EC nor an RSA key.
    #[error("the PEM block is not a valid EC P-256 or RSA key")]
    InvalidKey,
    /// An EC key on another curve.
    #[error("the EC key is not on curve P-256 (prime256v1), which ES256 requires")]
    NotP256,
    /// aws-lc refused the RSA key (too small, malformed).
    #[error("the RSA key was refused by the crypto library (RS256 needs at least 2048 bits)")]
    RsaKeyRefused,
}

/// Why a key spec could not be turned into a key. Never contains secret bytes.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// `base64:` followed by text that is not base64.
    #[error("key spec 'base64:...' is not valid base64 ({problem})")]
    InvalidBase64 {
        /// What is wrong, with a byte offset into the encoded text when there is one.
        problem: String,
    },
    /// A spec that decodes to zero bytes.
    #[error("key spec '{form}' gives an empty secret")]
    EmptySecret {
        /// `base64:` or `file:`.
        form: &'static str,
    },
    /// `file:` with nothing after it.
    #[error("key spec 'file:' has no path")]
    MissingFilePath,
    /// The key file could not be opened or read.
    #[error("cannot read key file {}: {source}", path.display())]
    FileRead {
        /// The resolved path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The key file exceeds [`MAX_KEY_FILE_BYTES`].
    #[error("key file {} is larger than {limit} bytes", path.display())]
    FileTooLarge {
        /// The resolved path.
        path: PathBuf,
        /// [`MAX_KEY_FILE_BYTES`].
        limit: u64,
    },
    /// The key file is not PEM and not hex.
    #[error(
        "key file {} is neither PEM (it does not start with '-----BEGIN') nor a hex secret: {problem}",
        path.display()
    )]
    InvalidHex {
        /// The resolved path.
        path: PathBuf,
        /// What is wrong with the hex.
        problem: HexProblem,
    },
    /// PEM text given inline holds no usable key of the kind needed.
    #[error("inline PEM key: {problem}")]
    InvalidInlinePem {
        /// What is wrong with the PEM.
        #[source]
        problem: PemProblem,
    },
    /// The key file is PEM but holds no usable key of the kind needed.
    #[error("key file {}: {problem}", path.display())]
    InvalidPem {
        /// The resolved path.
        path: PathBuf,
        /// What is wrong with the PEM.
        #[source]
        problem: PemProblem,
    },
}

/// What is wrong with a hex-encoded secret.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum HexProblem {
    /// A byte that is neither a hex digit nor whitespace.
    #[error("byte {offset} is not a hex digit")]
    InvalidDigit {
        /// Offset in the file.
        offset: usize,
    },
    /// An odd number of hex digits.
    #[error("odd number of hex digits")]
    OddLength,
}

impl SigningKey {
    /// An HS256 key from a shared secret. `None` for an empty secret.
    pub fn hmac(secret: &[u8]) -> Option<Self> {
        if secret.is_empty() {
            return None;
        }
        ensure_crypto_provider();
        Some(Self::Hs256(SigningKeyMaterial(EncodingKey::from_secret(
            secret,
        ))))
    }

    /// An ES256 or RS256 key from a private key PEM (PKCS#8 `PRIVATE KEY` for EC or RSA,
    /// PKCS#1 `RSA PRIVATE KEY`). The key is test-signed once so a bad key fails here, at
    /// config load, and not on the first request.
    pub fn from_pem(pem: &[u8]) -> Result<Self, PemProblem> {
        ensure_crypto_provider();
        let (label, block) = first_key_block(pem)?;
        let key = match label {
            "PRIVATE KEY" => match EncodingKey::from_ec_pem(block) {
                Ok(ec) => Self::Es256(SigningKeyMaterial(ec)),
                Err(_) => Self::Rs256(SigningKeyMaterial(
                    EncodingKey::from_rsa_pem(block).map_err(|_| PemProblem::InvalidKey)?,
                )),
            },
            "RSA PRIVATE KEY" => Self::Rs256(SigningKeyMaterial(
                EncodingKey::from_rsa_pem(block).map_err(|_| PemProblem::InvalidKey)?,
            )),
            other => return Err(classify_unusable_label(other, KeyUse::Signing)),
        };
        let probe =
            jsonwebtoken::crypto::sign(b"gripway key check", key.encoding_key(), key.algorithm());
        match (probe, &key) {
            (Ok(_), _) => Ok(key),
            (Err(_), Self::Rs256(_)) => Err(PemProblem::RsaKeyRefused),
            (Err(_), _) => Err(PemProblem::NotP256),
        }
    }

    /// The JWT algorithm this key signs with.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Self::Hs256(_) => Algorithm::HS256,
            Self::Es256(_) => Algorithm::ES256,
            Self::Rs256(_) => Algorithm::RS256,
        }
    }

    pub(crate) fn encoding_key(&self) -> &EncodingKey {
        match self {
            Self::Hs256(m) | Self::Es256(m) | Self::Rs256(m) => &m.0,
        }
    }
}

impl VerifyingKey {
    /// An HMAC key from a shared secret. `None` for an empty secret.
    pub fn hmac(secret: &[u8]) -> Option<Self> {
        if secret.is_empty() {
            return None;
        }
        ensure_crypto_provider();
        Some(Self::Hmac(VerifyingKeyMaterial(DecodingKey::from_secret(
            secret,
        ))))
    }

    /// An ES256 or RSA key from a public key PEM (SPKI `PUBLIC KEY` or PKCS#1
    /// `RSA PUBLIC KEY`). Private keys are refused: configure the public half.
    pub fn from_pem(pem: &[u8]) -> Result<Self, PemProblem> {
        ensure_crypto_provider();
        let (label, block) = first_key_block(pem)?;
        match label {
            "PUBLIC KEY" => match DecodingKey::from_ec_pem(block) {
                Ok(ec) => Self::es256_checked(ec),
                Err(_) => DecodingKey::from_rsa_pem(block)
                    .map(|rsa| Self::Rsa(VerifyingKeyMaterial(rsa)))
                    .map_err(|_| PemProblem::InvalidKey),
            },
            "RSA PUBLIC KEY" => DecodingKey::from_rsa_pem(block)
                .map(|rsa| Self::Rsa(VerifyingKeyMaterial(rsa)))
                .map_err(|_| PemProblem::InvalidKey),
            other => Err(classify_unusable_label(other, KeyUse::Verifying)),
        }
    }

    /// Fastly Fanout's Grip-Sig public key (ES256), for running behind Fanout with
    /// `upstream_key` checking its signatures (reference §7).
    pub fn fastly_fanout() -> Option<Self> {
        ensure_crypto_provider();
        DecodingKey::from_ec_components(FASTLY_FANOUT_KEY_X, FASTLY_FANOUT_KEY_Y)
            .ok()
            .and_then(|key| Self::es256_checked(key).ok())
    }

    fn es256_checked(key: DecodingKey) -> Result<Self, PemProblem> {
        let point = key.as_bytes();
        if point.len() != P256_UNCOMPRESSED_POINT_LEN || point.first() != Some(&0x04) {
            return Err(PemProblem::NotP256);
        }
        Ok(Self::Es256(VerifyingKeyMaterial(key)))
    }

    /// Whether a token signed with `alg` may be checked with this key. Anything outside the
    /// key's family (including `none`, which never parses as an [`Algorithm`]) is refused, so
    /// an HS256 token can never be "verified" with a public key used as an HMAC secret.
    pub fn accepts_algorithm(&self, alg: Algorithm) -> bool {
        match self {
            Self::Hmac(_) => alg.family() == AlgorithmFamily::Hmac,
            Self::Es256(_) => alg == Algorithm::ES256,
            Self::Rsa(_) => alg.family() == AlgorithmFamily::Rsa,
        }
    }

    pub(crate) fn decoding_key(&self) -> &DecodingKey {
        match self {
            Self::Hmac(m) | Self::Es256(m) | Self::Rsa(m) => &m.0,
        }
    }
}

#[derive(Clone, Copy)]
enum KeyUse {
    Signing,
    Verifying,
}

/// Explains why a PEM block with this label cannot serve `usage`.
fn classify_unusable_label(label: &str, usage: KeyUse) -> PemProblem {
    match (label, usage) {
        ("EC PRIVATE KEY", KeyUse::Signing) => PemProblem::Sec1EcKey,
        ("ENCRYPTED PRIVATE KEY", KeyUse::Signing) => PemProblem::EncryptedKey,
        ("PUBLIC KEY" | "RSA PUBLIC KEY" | "EC PUBLIC KEY", KeyUse::Signing) => {
            PemProblem::PublicKeyForSigning
        }
        (l, KeyUse::Verifying) if l.ends_with("PRIVATE KEY") => PemProblem::PrivateKeyForVerifying,
        ("CERTIFICATE" | "TRUSTED CERTIFICATE" | "X509 CERTIFICATE", _) => PemProblem::Certificate,
        _ => PemProblem::UnsupportedBlockType,
    }
}

/// Finds the first PEM block that is not `EC PARAMETERS` (which `openssl ecparam -genkey`
/// writes before the key) and returns its label and the bytes from its BEGIN line on.
fn first_key_block(pem: &[u8]) -> Result<(&str, &[u8]), PemProblem> {
    const BEGIN: &[u8] = b"-----BEGIN ";
    let mut search_from = 0;
    loop {
        let rest = pem.get(search_from..).ok_or(PemProblem::NoPemBlock)?;
        let start = search_from + find(rest, BEGIN).ok_or(PemProblem::NoPemBlock)?;
        let label_start = start + BEGIN.len();
        let after_begin = pem.get(label_start..).ok_or(PemProblem::NoPemBlock)?;
        let label_len = find(after_begin, b"-----").ok_or(PemProblem::NoPemBlock)?;
        let label = after_begin
            .get(..label_len)
            .and_then(|l| std::str::from_utf8(l).ok())
            .ok_or(PemProblem::NoPemBlock)?;
        if label != "EC PARAMETERS" {
            let block = pem.get(start..).ok_or(PemProblem::NoPemBlock)?;
            return Ok((label, block));
        }
        search_from = label_start + label_len;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// What a spec resolved to before it becomes a key of a given kind.
enum KeySource {
    Secret(Vec<u8>),
    /// PEM text from a file (`path`) or given inline (`None`).
    Pem {
        path: Option<PathBuf>,
        contents: Vec<u8>,
    },
}

fn pem_error(path: Option<PathBuf>, problem: PemProblem) -> KeyError {
    match path {
        Some(path) => KeyError::InvalidPem { path, problem },
        None => KeyError::InvalidInlinePem { problem },
    }
}

/// Parses a signing key spec (`sig_key`, route `sig_key=`). `""` gives `Ok(None)`.
/// `base_dir` is the directory `file:` paths are relative to (the config or routes file's).
pub fn parse_signing_key(spec: &str, base_dir: &Path) -> Result<Option<SigningKey>, KeyError> {
    match resolve_spec(spec, base_dir)? {
        None => Ok(None),
        Some(KeySource::Secret(secret)) => Ok(SigningKey::hmac(&secret)),
        Some(KeySource::Pem { path, contents }) => SigningKey::from_pem(&contents)
            .map(Some)
            .map_err(|problem| pem_error(path, problem)),
    }
}

/// Parses a verifying key spec (`upstream_key`, publish JWT keys). `""` gives `Ok(None)`.
/// A PEM must hold a public key (EC P-256 or RSA); a secret verifies HMAC tokens.
pub fn parse_verifying_key(spec: &str, base_dir: &Path) -> Result<Option<VerifyingKey>, KeyError> {
    match resolve_spec(spec, base_dir)? {
        None => Ok(None),
        Some(KeySource::Secret(secret)) => Ok(VerifyingKey::hmac(&secret)),
        Some(KeySource::Pem { path, contents }) => VerifyingKey::from_pem(&contents)
            .map(Some)
            .map_err(|problem| pem_error(path, problem)),
    }
}

fn resolve_spec(spec: &str, base_dir: &Path) -> Result<Option<KeySource>, KeyError> {
    if spec.is_empty() {
        return Ok(None);
    }
    if let Some(encoded) = spec.strip_prefix("base64:") {
        let secret = decode_base64_secret(encoded)?;
        if secret.is_empty() {
            return Err(KeyError::EmptySecret { form: "base64:" });
        }
        return Ok(Some(KeySource::Secret(secret)));
    }
    if let Some(relative) = spec.strip_prefix("file:") {
        if relative.is_empty() {
            return Err(KeyError::MissingFilePath);
        }
        let path = base_dir.join(relative);
        let contents = read_key_file(&path)?;
        let trimmed = contents.trim_ascii();
        if trimmed.starts_with(b"-----BEGIN") {
            return Ok(Some(KeySource::Pem {
                path: Some(path),
                contents,
            }));
        }
        let secret = decode_hex_secret(&contents)
            .map_err(|problem| KeyError::InvalidHex { path, problem })?;
        if secret.is_empty() {
            return Err(KeyError::EmptySecret { form: "file:" });
        }
        return Ok(Some(KeySource::Secret(secret)));
    }
    if spec.trim_ascii_start().starts_with("-----BEGIN") {
        return Ok(Some(KeySource::Pem {
            path: None,
            contents: spec.as_bytes().to_vec(),
        }));
    }
    Ok(Some(KeySource::Secret(spec.as_bytes().to_vec())))
}

fn decode_base64_secret(encoded: &str) -> Result<Vec<u8>, KeyError> {
    let encoded = encoded.trim_ascii();
    LENIENT_BASE64
        .decode(encoded)
        .or_else(|first_error| LENIENT_BASE64_URL.decode(encoded).map_err(|_| first_error))
        .map_err(|error| KeyError::InvalidBase64 {
            // Describe the problem without the offending byte: it belongs to the secret.
            problem: match error {
                base64::DecodeError::InvalidByte(offset, _) => {
                    format!("invalid character at byte {offset}")
                }
                base64::DecodeError::InvalidLastSymbol(offset, _) => {
                    format!("invalid last character at byte {offset}")
                }
                base64::DecodeError::InvalidLength(_) => "truncated input".to_owned(),
                base64::DecodeError::InvalidPadding => "bad padding".to_owned(),
            },
        })
}

fn read_key_file(path: &Path) -> Result<Vec<u8>, KeyError> {
    let file = std::fs::File::open(path).map_err(|source| KeyError::FileRead {
        path: path.to_path_buf(),
        source,
    })?;
    let mut contents = Vec::new();
    file.take(MAX_KEY_FILE_BYTES + 1)
        .read_to_end(&mut contents)
        .map_err(|source| KeyError::FileRead {
            path: path.to_path_buf(),
            source,
        })?;
    if contents.len() as u64 > MAX_KEY_FILE_BYTES {
        return Err(KeyError::FileTooLarge {
            path: path.to_path_buf(),
            limit: MAX_KEY_FILE_BYTES,
        });
    }
    Ok(contents)
}

/// Decodes hex digits, skipping ASCII whitespace anywhere (line-wrapped files are fine).
fn decode_hex_secret(text: &[u8]) -> Result<Vec<u8>, HexProblem> {
    let mut secret = Vec::with_capacity(text.len() / 2);
    let mut high_nibble: Option<u8> = None;
    for (offset, &byte) in text.iter().enumerate() {
        if byte.is_ascii_whitespace() {
            continue;
        }
        let nibble = match byte {
            b'0'..=b'9' => byte - b'0',
            b'a'..=b'f' => byte - b'a' + 10,
            b'A'..=b'F' => byte - b'A' + 10,
            _ => return Err(HexProblem::InvalidDigit { offset }),
        };
        high_nibble = match high_nibble {
            None => Some(nibble),
            Some(high) => {
                secret.push(high << 4 | nibble);
                None
            }
        };
    }
    if high_nibble.is_some() {
        return Err(HexProblem::OddLength);
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sig::test_keys;

    fn signing_spec(spec: &str) -> Result<Option<SigningKey>, KeyError> {
        parse_signing_key(spec, &test_keys::dir())
    }

    fn verifying_spec(spec: &str) -> Result<Option<VerifyingKey>, KeyError> {
        parse_verifying_key(spec, &test_keys::dir())
    }

    /// The HMAC secret a key holds, to check what a spec decoded to.
    fn secret_of(key: &SigningKey) -> &[u8] {
        match key {
            SigningKey::Hs256(material) => material.0.inner(),
            other => panic!("expected an HMAC key, got {other:?}"),
        }
    }

    #[test]
    fn empty_spec_is_no_key() {
        assert!(signing_spec("").expect("ok").is_none());
        assert!(verifying_spec("").expect("ok").is_none());
    }

    #[test]
    fn plain_base64_and_hex_secrets() {
        let plain = signing_spec("changeme").expect("ok").expect("key");
        assert_eq!(secret_of(&plain), b"changeme");

        let b64 = signing_spec("base64:aGVsbG8gd29ybGQ=")
            .expect("ok")
            .expect("key");
        assert_eq!(secret_of(&b64), b"hello world");
        let unpadded = signing_spec("base64:aGVsbG8gd29ybGQ")
            .expect("ok")
            .expect("key");
        assert_eq!(secret_of(&unpadded), b"hello world");
        let url_safe = signing_spec("base64:-_8").expect("ok").expect("key");
        assert_eq!(secret_of(&url_safe), [0xfb, 0xff]);

        let hex = signing_spec("file:hmac-secret.hex")
            .expect("ok")
            .expect("key");
        assert_eq!(secret_of(&hex), b"secret with hex ");
        assert!(matches!(
            verifying_spec("file:hmac-secret.hex").expect("ok"),
            Some(VerifyingKey::Hmac(_))
        ));
    }

    #[test]
    fn pem_files_give_the_right_algorithm() {
        let dir = test_keys::dir();
        let absolute = format!("file:{}", dir.join("ec-private.pem").display());
        for (spec, alg) in [
            ("file:ec-private.pem", Algorithm::ES256),
            (absolute.as_str(), Algorithm::ES256),
            ("file:rsa-private.pem", Algorithm::RS256),
            ("file:rsa-private-pkcs1.pem", Algorithm::RS256),
        ] {
            let key = signing_spec(spec).expect(spec).expect("key");
            assert_eq!(key.algorithm(), alg, "{spec}");
        }
        assert!(matches!(
            verifying_spec("file:ec-public.pem").expect("ok"),
            Some(VerifyingKey::Es256(_))
        ));
        assert!(matches!(
            verifying_spec("file:rsa-public.pem").expect("ok"),
            Some(VerifyingKey::Rsa(_))
        ));
    }

    #[test]
    fn inline_pem_text_is_a_key_never_a_secret() {
        for (name, public) in [("ec", "ec-public.pem"), ("rsa", "rsa-public.pem")] {
            let text = String::from_utf8(test_keys::read(public)).expect("PEM is text");
            let key = verifying_spec(&text).expect(name).expect("key");
            assert!(!matches!(key, VerifyingKey::Hmac(_)), "{name}: {key:?}");
            assert!(!key.accepts_algorithm(Algorithm::HS256), "{name}");
        }
        let private = String::from_utf8(test_keys::read("ec-private.pem")).expect("text");
        let signer = signing_spec(&private).expect("ok").expect("key");
        assert_eq!(signer.algorithm(), Algorithm::ES256);
        // a PEM that does not parse is an error naming it, not a secret
        let broken = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
        let error = verifying_spec(broken).expect_err("refused");
        assert!(
            matches!(error, KeyError::InvalidInlinePem { .. }),
            "{error:?}"
        );
        assert!(error.to_string().starts_with("inline PEM key: "), "{error}");
        assert!(matches!(
            signing_spec(&String::from_utf8(test_keys::read("ec-public.pem")).unwrap()),
            Err(KeyError::InvalidInlinePem {
                problem: PemProblem::PublicKeyForSigning
            })
        ));
    }

    #[test]
    fn ec_parameters_block_before_the_key_is_skipped() {
        let mut pem =
            b"-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"
                .to_vec();
        pem.extend_from_slice(&test_keys::read("ec-private.pem"));
        let key = SigningKey::from_pem(&pem).expect("valid");
        assert_eq!(key.algorithm(), Algorithm::ES256);
    }

    fn pem_problem(result: Result<impl fmt::Debug, KeyError>) -> PemProblem {
        match result {
            Err(KeyError::InvalidPem { problem, .. }) => problem,
            other => panic!("expected a PEM problem, got {other:?}"),
        }
    }

    #[test]
    fn unusable_pem_files_are_explained() {
        assert_eq!(
            pem_problem(signing_spec("file:ec-sec1.pem")),
            PemProblem::Sec1EcKey
        );
        assert_eq!(
            pem_problem(signing_spec("file:ec-public.pem")),
            PemProblem::PublicKeyForSigning
        );
        assert_eq!(
            pem_problem(signing_spec("file:ec-p384-private.pem")),
            PemProblem::NotP256
        );
        assert_eq!(
            pem_problem(verifying_spec("file:ec-private.pem")),
            PemProblem::PrivateKeyForVerifying
        );
        assert_eq!(
            pem_problem(verifying_spec("file:rsa-private-pkcs1.pem")),
            PemProblem::PrivateKeyForVerifying
        );
        assert_eq!(
            pem_problem(verifying_spec("file:ec-p384-public.pem")),
            PemProblem::NotP256
        );
        assert_eq!(
            SigningKey::from_pem(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
                .err(),
            Some(PemProblem::Certificate)
        );
        assert_eq!(
            SigningKey::from_pem(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
                .err(),
            Some(PemProblem::InvalidKey)
        );
        assert_eq!(
            SigningKey::from_pem(b"-----BEGIN ").err(),
            Some(PemProblem::NoPemBlock)
        );

        let error = signing_spec("file:ec-sec1.pem").expect_err("refused");
        let path = test_keys::dir().join("ec-sec1.pem");
        assert_eq!(
            error.to_string(),
            format!(
                "key file {}: the EC key is in SEC1 form ('BEGIN EC PRIVATE KEY'); convert it to \
                 PKCS#8 with `openssl pkcs8 -topk8 -nocrypt -in <file> -out <new file>`",
                path.display()
            )
        );
    }

    #[test]
    fn spec_errors_name_the_problem() {
        let error = signing_spec("file:no-such-key.pem").expect_err("missing");
        let path = test_keys::dir().join("no-such-key.pem");
        assert!(
            error
                .to_string()
                .starts_with(&format!("cannot read key file {}: ", path.display())),
            "{error}"
        );
        assert!(matches!(
            signing_spec("file:"),
            Err(KeyError::MissingFilePath)
        ));
        assert_eq!(
            signing_spec("base64:ab$d").expect_err("bad").to_string(),
            "key spec 'base64:...' is not valid base64 (invalid character at byte 2)"
        );
        assert_eq!(
            signing_spec("base64:").expect_err("empty").to_string(),
            "key spec 'base64:' gives an empty secret"
        );
        assert_eq!(
            decode_hex_secret(b"0g"),
            Err(HexProblem::InvalidDigit { offset: 1 })
        );
        assert_eq!(decode_hex_secret(b"abc"), Err(HexProblem::OddLength));
        assert_eq!(decode_hex_secret(b" 0a\nFF \n"), Ok(vec![0x0a, 0xff]));
        // A README is neither PEM nor hex.
        let error = signing_spec("file:README.md").expect_err("not a key");
        assert!(
            error.to_string().contains("is neither PEM (it does not start with '-----BEGIN') nor a hex secret: byte 0 is not a hex digit"),
            "{error}"
        );
    }

    #[test]
    fn errors_and_debug_never_show_secrets() {
        let error = signing_spec("base64:c2VjcmV0!").expect_err("bad");
        assert!(!format!("{error} {error:?}").contains("c2VjcmV0"));
        let key = signing_spec("my-plain-secret").expect("ok").expect("key");
        let verify = verifying_spec("my-plain-secret").expect("ok").expect("key");
        let debug = format!("{key:?} {verify:?}");
        assert!(!debug.contains("my-plain-secret"), "{debug}");
        assert_eq!(format!("{verify:?}"), "Hmac(<redacted>)");
        let pem_key = signing_spec("file:ec-private.pem")
            .expect("ok")
            .expect("key");
        assert_eq!(format!("{pem_key:?}"), "Es256(<redacted>)");
    }

    proptest::proptest! {
        #[test]
        fn spec_parsing_never_panics(spec in ".{0,200}") {
            // `file:` specs here point at files that do not exist: that is fine, they must
            // fail cleanly.
            let dir = std::env::temp_dir().join("gripway-no-such-dir");
            let _ = parse_signing_key(&spec, &dir);
            let _ = parse_verifying_key(&spec, &dir);
        }

        #[test]
        fn pem_parsing_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let mut pem = b"-----BEGIN PRIVATE KEY-----\n".to_vec();
            pem.extend_from_slice(&bytes);
            let _ = SigningKey::from_pem(&pem);
            let _ = VerifyingKey::from_pem(&pem);
            let _ = SigningKey::from_pem(&bytes);
            let _ = VerifyingKey::from_pem(&bytes);
        }

        #[test]
        fn hex_round_trips(secret in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
            proptest::prop_assert_eq!(decode_hex_secret(hex.as_bytes()), Ok(secret));
        }
    }
}
