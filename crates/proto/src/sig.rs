//! Grip-Sig (reference §2.2): the JWT Gripway attaches to every request it forwards to an
//! origin, and the check of a Grip-Sig sent by an upstream GRIP proxy (`upstream_key`).
//!
//! Owns: key specs and keys ([`parse_signing_key`], [`parse_verifying_key`]), minting
//! Grip-Sig tokens ([`GripSigner`]), verifying them ([`verify_grip_sig`]), and the JWT checks
//! shared with publish-API authentication.
//!
//! Invariants: a minted token has exactly the claims `{"iss": <iss>, "exp": <now + 3600>}`
//! (no `iat`, `aud`, `sub` or `kid`), signed HS256 / ES256 / RS256 according to the key; a
//! verified token used an algorithm of the key's family, has a valid signature and
//! `exp > now` (the issuer is not checked, as in Pushpin). No secret ever reaches `Debug`.

mod jwt;
mod keys;

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use jsonwebtoken::Header;
use serde::Serialize;

/// JWT algorithm names, re-exported so callers need no jsonwebtoken dependency.
pub use jsonwebtoken::Algorithm;
pub(crate) use jwt::ParsedJwt;
pub use jwt::{JwtError, MAX_JWT_BYTES};
pub use keys::{
    parse_signing_key, parse_verifying_key, HexProblem, KeyError, PemProblem, SigningKey,
    SigningKeyMaterial, VerifyingKey, VerifyingKeyMaterial, MAX_KEY_FILE_BYTES,
};

/// How long a minted Grip-Sig is valid: `exp = now + GRIP_SIG_LIFETIME_SECS`.
pub const GRIP_SIG_LIFETIME_SECS: u64 = 3600;

/// How long a minted Grip-Sig is reused before a fresh one is minted. Its `exp` is then at
/// most this much short of `now + 3600`, which no backend can tell from a fresh token.
pub const GRIP_SIG_REUSE_SECS: u64 = 60;

/// The claims of a Grip-Sig, in the order Pushpin writes them.
#[derive(Serialize)]
struct GripSigClaims<'a> {
    iss: &'a str,
    exp: u64,
}

struct CachedToken {
    exp: u64,
    token: Arc<str>,
}

/// Mints Grip-Sig tokens for one issuer and key, reusing each token for up to a minute.
///
/// Signing costs tens of microseconds for ES256 and more for RS256 (the key is re-parsed on
/// every signature), and the proxy needs a token for every origin request, so the last token
/// is cached behind a mutex that is held only for a comparison and an `Arc` clone.
pub struct GripSigner {
    iss: String,
    key: SigningKey,
    header: Header,
    cache: Mutex<Option<CachedToken>>,
}

impl fmt::Debug for GripSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GripSigner")
            .field("iss", &self.iss)
            .field("algorithm", &self.key.algorithm())
            .finish_non_exhaustive()
    }
}

impl GripSigner {
    /// A signer that writes `iss` into every token and signs with `key`.
    pub fn new(iss: String, key: SigningKey) -> Self {
        let header = Header::new(key.algorithm());
        Self {
            iss,
            key,
            header,
            cache: Mutex::new(None),
        }
    }

    /// The issuer written into tokens.
    pub fn iss(&self) -> &str {
        &self.iss
    }

    /// The algorithm tokens are signed with.
    pub fn algorithm(&self) -> Algorithm {
        self.key.algorithm()
    }

    /// A token with exactly the claims `{"iss": iss, "exp": now_unix + 3600}`.
    ///
    /// The last token is returned again while its `exp` is more than 3540 s and at most
    /// 3600 s after `now_unix` (so a fresh one is minted at most once a minute, and at once if
    /// the clock steps back). If signing ever fails (it cannot with a key that passed the
    /// constructors' test signature, short of a crypto-library fault), the previous token is
    /// returned, or an empty string when there is none, which any origin will refuse.
    pub fn token(&self, now_unix: u64) -> Arc<str> {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(cached) = cache.as_ref() {
            let remaining = cached.exp.checked_sub(now_unix);
            let reusable =
                GRIP_SIG_LIFETIME_SECS - GRIP_SIG_REUSE_SECS + 1..=GRIP_SIG_LIFETIME_SECS;
            if remaining.is_some_and(|r| reusable.contains(&r)) {
                return Arc::clone(&cached.token);
            }
        }
        let exp = now_unix.saturating_add(GRIP_SIG_LIFETIME_SECS);
        let claims = GripSigClaims {
            iss: &self.iss,
            exp,
        };
        match jsonwebtoken::encode(&self.header, &claims, self.key.encoding_key()) {
            Ok(token) => {
                let token: Arc<str> = Arc::from(token);
                *cache = Some(CachedToken {
                    exp,
                    token: Arc::clone(&token),
                });
                token
            }
            Err(_) => cache
                .as_ref()
                .map_or_else(|| Arc::from(""), |cached| Arc::clone(&cached.token)),
        }
    }
}

/// Checks an upstream's Grip-Sig against `upstream_key`: the algorithm must belong to the
/// key's family (`none` and HMAC-vs-public-key confusion are refused), the signature must
/// verify, and `exp` must be present and later than `now_unix`. The issuer is not checked.
pub fn check_grip_sig(token: &str, key: &VerifyingKey, now_unix: u64) -> Result<(), JwtError> {
    let parsed = ParsedJwt::parse(token.trim_ascii().as_bytes())?;
    parsed.verify_signature(key)?;
    parsed.check_expiry(now_unix, 0)
}

/// [`check_grip_sig`] as a yes/no: whether the sender is a trusted upstream.
pub fn verify_grip_sig(token: &str, key: &VerifyingKey, now_unix: u64) -> bool {
    check_grip_sig(token, key, now_unix).is_ok()
}

#[cfg(test)]
pub(crate) mod test_keys {
    //! Loading the test-only keys in `tests/keys/`.
    use std::path::{Path, PathBuf};

    use super::{SigningKey, VerifyingKey};

    pub(crate) fn dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keys")
    }

    pub(crate) fn read(name: &str) -> Vec<u8> {
        std::fs::read(dir().join(name)).expect("test key file exists")
    }

    pub(crate) fn signing(name: &str) -> SigningKey {
        SigningKey::from_pem(&read(name)).expect("valid test signing key")
    }

    pub(crate) fn verifying(name: &str) -> VerifyingKey {
        VerifyingKey::from_pem(&read(name)).expect("valid test verifying key")
    }
}

#[cfg(test)]
mod tests {
    use super::test_keys::{signing, verifying};
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;

    const NOW: u64 = 1_700_000_000;

    fn decode_part(token: &str, index: usize) -> String {
        let part = token.split('.').nth(index).expect("token has the part");
        String::from_utf8(URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("utf-8")
    }

    fn hmac_pair(secret: &[u8]) -> (SigningKey, VerifyingKey) {
        (
            SigningKey::hmac(secret).expect("non-empty"),
            VerifyingKey::hmac(secret).expect("non-empty"),
        )
    }

    fn round_trip(key: SigningKey, verify_with: &VerifyingKey, alg: &str) {
        let signer = GripSigner::new("pushpin".to_owned(), key);
        let token = signer.token(NOW);
        assert_eq!(
            decode_part(&token, 1),
            format!(r#"{{"iss":"pushpin","exp":{}}}"#, NOW + 3600)
        );
        let claims: serde_json::Value =
            serde_json::from_str(&decode_part(&token, 1)).expect("json");
        assert_eq!(
            claims,
            serde_json::json!({"iss": "pushpin", "exp": NOW + 3600})
        );
        let header: serde_json::Value =
            serde_json::from_str(&decode_part(&token, 0)).expect("json");
        assert_eq!(header["alg"], alg);
        assert_eq!(check_grip_sig(&token, verify_with, NOW), Ok(()));
        assert!(verify_grip_sig(&token, verify_with, NOW + 3599));
        assert_eq!(
            check_grip_sig(&token, verify_with, NOW + 3600),
            Err(JwtError::Expired)
        );
    }

    #[test]
    fn hs256_round_trip_with_exact_claims() {
        let (sign, verify) = hmac_pair(b"changeme");
        round_trip(sign, &verify, "HS256");
    }

    #[test]
    fn es256_round_trip_with_exact_claims() {
        round_trip(
            signing("ec-private.pem"),
            &verifying("ec-public.pem"),
            "ES256",
        );
    }

    #[test]
    fn rs256_round_trip_with_exact_claims() {
        round_trip(
            signing("rsa-private.pem"),
            &verifying("rsa-public.pem"),
            "RS256",
        );
        round_trip(
            signing("rsa-private-pkcs1.pem"),
            &verifying("rsa-public.pem"),
            "RS256",
        );
    }

    #[test]
    fn token_is_reused_for_a_minute_then_reminted() {
        let signer = GripSigner::new("iss".to_owned(), signing("ec-private.pem"));
        let first = signer.token(NOW);
        // ECDSA signatures are randomised, so pointer equality proves reuse.
        let again = signer.token(NOW + 59);
        assert!(Arc::ptr_eq(&first, &again));
        let fresh = signer.token(NOW + 60);
        assert!(!Arc::ptr_eq(&first, &fresh));
        assert_eq!(
            decode_part(&fresh, 1),
            format!(r#"{{"iss":"iss","exp":{}}}"#, NOW + 60 + 3600)
        );
        assert!(Arc::ptr_eq(&fresh, &signer.token(NOW + 119)));
        // A clock that steps back gets a fresh token, never an exp beyond now + 3600.
        let stepped_back = signer.token(NOW);
        assert_eq!(
            decode_part(&stepped_back, 1),
            format!(r#"{{"iss":"iss","exp":{}}}"#, NOW + 3600)
        );
    }

    #[test]
    fn signer_is_shareable_across_threads() {
        let (key, verify) = hmac_pair(b"secret");
        let signer = Arc::new(GripSigner::new("iss".to_owned(), key));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let signer = Arc::clone(&signer);
                std::thread::spawn(move || signer.token(NOW))
            })
            .collect();
        for handle in handles {
            let token = handle.join().expect("thread ran");
            assert!(verify_grip_sig(&token, &verify, NOW));
        }
    }

    #[test]
    fn alg_none_is_rejected() {
        let payload = URL_SAFE_NO_PAD.encode(format!(r#"{{"iss":"x","exp":{}}}"#, NOW + 100));
        let token = format!("eyJhbGciOiJub25lIn0.{payload}.");
        let (_, hmac) = hmac_pair(b"secret");
        for key in [
            hmac,
            verifying("ec-public.pem"),
            verifying("rsa-public.pem"),
        ] {
            assert_eq!(
                check_grip_sig(&token, &key, NOW),
                Err(JwtError::AlgorithmNotAccepted)
            );
        }
    }

    #[test]
    fn wrong_key_is_rejected() {
        let (sign, _) = hmac_pair(b"secret");
        let (_, other) = hmac_pair(b"other secret");
        let token = GripSigner::new("i".to_owned(), sign).token(NOW);
        assert_eq!(
            check_grip_sig(&token, &other, NOW),
            Err(JwtError::BadSignature)
        );

        let token = GripSigner::new("i".to_owned(), signing("ec-private.pem")).token(NOW);
        assert_eq!(
            check_grip_sig(&token, &verifying("other-ec-public.pem"), NOW),
            Err(JwtError::BadSignature)
        );

        let token = GripSigner::new("i".to_owned(), signing("rsa-private.pem")).token(NOW);
        assert_eq!(
            check_grip_sig(&token, &verifying("other-rsa-public.pem"), NOW),
            Err(JwtError::BadSignature)
        );
        // An ES256 token checked with an RSA key, and the reverse.
        assert_eq!(
            check_grip_sig(&token, &verifying("ec-public.pem"), NOW),
            Err(JwtError::AlgorithmNotAccepted)
        );
    }

    #[test]
    fn hmac_token_signed_with_public_key_bytes_is_rejected() {
        // Classic algorithm confusion: HS256 keyed with the PEM text of the public key.
        for public in ["ec-public.pem", "rsa-public.pem"] {
            let pem = test_keys::read(public);
            let forged = GripSigner::new(
                "evil".to_owned(),
                SigningKey::hmac(&pem).expect("non-empty"),
            )
            .token(NOW);
            assert_eq!(
                check_grip_sig(&forged, &verifying(public), NOW),
                Err(JwtError::AlgorithmNotAccepted)
            );
        }
    }

    #[test]
    fn expired_and_missing_exp_are_rejected() {
        let (sign, verify) = hmac_pair(b"secret");
        let token = GripSigner::new("i".to_owned(), sign).token(NOW - 3600);
        assert_eq!(check_grip_sig(&token, &verify, NOW), Err(JwtError::Expired));

        let header = Header::new(Algorithm::HS256);
        let no_exp = jsonwebtoken::encode(
            &header,
            &serde_json::json!({"iss": "i"}),
            &jsonwebtoken::EncodingKey::from_secret(b"secret"),
        )
        .expect("encodes");
        assert_eq!(
            check_grip_sig(&no_exp, &verify, NOW),
            Err(JwtError::MissingExpiry)
        );
    }

    #[test]
    fn tampered_claims_are_rejected() {
        let (sign, verify) = hmac_pair(b"secret");
        let token = GripSigner::new("i".to_owned(), sign).token(NOW);
        let mut parts: Vec<&str> = token.split('.').collect();
        let later = URL_SAFE_NO_PAD.encode(format!(r#"{{"iss":"i","exp":{}}}"#, NOW + 99_999));
        parts[1] = &later;
        assert_eq!(
            check_grip_sig(&parts.join("."), &verify, NOW),
            Err(JwtError::BadSignature)
        );
    }

    #[test]
    fn fastly_key_loads_and_refuses_foreign_tokens() {
        let fastly = VerifyingKey::fastly_fanout().expect("built-in key is valid");
        assert!(matches!(fastly, VerifyingKey::Es256(_)));
        let token = GripSigner::new("fastly:x".to_owned(), signing("ec-private.pem")).token(NOW);
        assert_eq!(
            check_grip_sig(&token, &fastly, NOW),
            Err(JwtError::BadSignature)
        );
    }

    #[test]
    fn debug_output_has_no_secret() {
        let secret = "super-secret-value";
        let (sign, verify) = hmac_pair(secret.as_bytes());
        let signer = GripSigner::new("pushpin".to_owned(), sign.clone());
        for text in [
            format!("{sign:?}"),
            format!("{verify:?}"),
            format!("{signer:?}"),
        ] {
            assert!(!text.contains(secret), "{text}");
            assert!(!text.contains("115, 117, 112"), "{text}"); // "sup" as bytes
        }
        assert_eq!(format!("{sign:?}"), "Hs256(<redacted>)");
    }

    proptest::proptest! {
        #[test]
        fn verify_never_panics(token in ".{0,300}") {
            let (_, key) = hmac_pair(b"secret");
            let _ = verify_grip_sig(&token, &key, NOW);
        }
    }
}
