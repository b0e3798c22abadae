//! Compact JWS (JWT) checking shared by Grip-Sig and publish-API bearer tokens.
//!
//! The token is split and its header and claims decoded here, so the checks are ours and use
//! the caller's clock: the algorithm must belong to the key's family (never `none`, never an
//! HMAC token against a public key), the signature is checked by jsonwebtoken's crypto
//! provider, and `exp` is compared with the `now` the caller passes in. Tokens longer than
//! [`MAX_JWT_BYTES`] are refused before any decoding, so work per token is bounded.

use std::str::FromStr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::Algorithm;
use serde::Deserialize;

use super::keys::VerifyingKey;

/// Longest token accepted. Grip-Sig tokens are about 150 bytes (HS256) to 450 (RS256).
pub const MAX_JWT_BYTES: usize = 8 * 1024;

/// Why a token was not accepted. Messages are safe to log or return to the sender.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum JwtError {
    /// Longer than [`MAX_JWT_BYTES`].
    #[error("token is longer than {MAX_JWT_BYTES} bytes")]
    TooLong,
    /// Not `header.claims.signature`.
    #[error("token is not three base64url parts separated by '.'")]
    NotCompact,
    /// The header is not base64url JSON with a string `alg`.
    #[error("token header is not a base64url JSON object with an 'alg'")]
    InvalidHeader,
    /// The header names `crit` extensions, none of which are supported.
    #[error("token header has 'crit' extensions, which are not supported")]
    CriticalHeader,
    /// `none`, an unknown algorithm, or one outside the key's family.
    #[error("token algorithm is not accepted for this key")]
    AlgorithmNotAccepted,
    /// The claims are not a base64url JSON object with a numeric `exp` and string `iss`.
    #[error("token claims are not a base64url JSON object (numeric 'exp', string 'iss')")]
    InvalidClaims,
    /// The signature does not verify with the key.
    #[error("token signature is not valid")]
    BadSignature,
    /// No `exp` claim.
    #[error("token has no 'exp' claim")]
    MissingExpiry,
    /// `exp` is in the past.
    #[error("token has expired")]
    Expired,
    /// `iss` is missing or not the required issuer.
    #[error("token issuer is not accepted")]
    WrongIssuer,
}

#[derive(Deserialize)]
struct JoseHeader {
    alg: String,
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct RegisteredClaims {
    #[serde(default)]
    exp: Option<f64>,
    #[serde(default)]
    iss: Option<String>,
}

/// A token whose structure, header and claims decoded; its signature is not checked yet.
pub(crate) struct ParsedJwt<'a> {
    /// `header.claims`, the bytes the signature covers.
    signing_input: &'a [u8],
    /// The base64url signature text.
    signature: &'a str,
    algorithm: Algorithm,
    exp: Option<f64>,
    iss: Option<String>,
}

impl<'a> ParsedJwt<'a> {
    /// Splits and decodes `token`. Algorithms jsonwebtoken does not know (including `none`)
    /// are refused here.
    pub(crate) fn parse(token: &'a [u8]) -> Result<Self, JwtError> {
        if token.len() > MAX_JWT_BYTES {
            return Err(JwtError::TooLong);
        }
        let mut parts = token.split(|&b| b == b'.');
        let (Some(header), Some(claims), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::NotCompact);
        };
        let signature = std::str::from_utf8(signature).map_err(|_| JwtError::NotCompact)?;
        let signing_input = token
            .get(..header.len() + 1 + claims.len())
            .ok_or(JwtError::NotCompact)?;

        let header: JoseHeader = decode_json_object(header).ok_or(JwtError::InvalidHeader)?;
        if header.crit.is_some() {
            return Err(JwtError::CriticalHeader);
        }
        let algorithm =
            Algorithm::from_str(&header.alg).map_err(|_| JwtError::AlgorithmNotAccepted)?;
        let claims: RegisteredClaims = decode_json_object(claims).ok_or(JwtError::InvalidClaims)?;

        Ok(Self {
            signing_input,
            signature,
            algorithm,
            exp: claims.exp,
            iss: claims.iss,
        })
    }

    /// Checks the algorithm against the key's family, then the signature.
    pub(crate) fn verify_signature(&self, key: &VerifyingKey) -> Result<(), JwtError> {
        if !key.accepts_algorithm(self.algorithm) {
            return Err(JwtError::AlgorithmNotAccepted);
        }
        match jsonwebtoken::crypto::verify(
            self.signature,
            self.signing_input,
            key.decoding_key(),
            self.algorithm,
        ) {
            Ok(true) => Ok(()),
            _ => Err(JwtError::BadSignature),
        }
    }

    /// Requires an `exp` claim later than `now_unix - leeway_secs`.
    pub(crate) fn check_expiry(&self, now_unix: u64, leeway_secs: u64) -> Result<(), JwtError> {
        let exp = self.exp.ok_or(JwtError::MissingExpiry)?;
        // f64 holds every realistic timestamp exactly; the sum cannot overflow.
        if exp + leeway_secs as f64 > now_unix as f64 {
            Ok(())
        } else {
            Err(JwtError::Expired)
        }
    }

    /// Requires `iss` to equal `issuer`.
    pub(crate) fn check_issuer(&self, issuer: &str) -> Result<(), JwtError> {
        match &self.iss {
            Some(iss) if iss == issuer => Ok(()),
            _ => Err(JwtError::WrongIssuer),
        }
    }
}

/// Decodes one base64url part and deserializes it, insisting on a JSON object (serde would
/// otherwise also fill a struct from an array).
fn decode_json_object<T: serde::de::DeserializeOwned>(part: &[u8]) -> Option<T> {
    let json = URL_SAFE_NO_PAD.decode(part).ok()?;
    if json.trim_ascii_start().first() != Some(&b'{') {
        return None;
    }
    serde_json::from_slice(&json).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json)
    }

    fn token(header: &str, claims: &str, signature: &str) -> String {
        format!("{}.{}.{}", b64(header), b64(claims), signature)
    }

    #[test]
    fn parse_errors_are_specific() {
        let parse = |t: &str| ParsedJwt::parse(t.as_bytes()).err();
        assert_eq!(parse("abc"), Some(JwtError::NotCompact));
        assert_eq!(parse("a.b.c.d"), Some(JwtError::NotCompact));
        assert_eq!(parse("!!.e30.x"), Some(JwtError::InvalidHeader));
        assert_eq!(
            parse(&token(r#"["HS256"]"#, "{}", "x")),
            Some(JwtError::InvalidHeader)
        );
        assert_eq!(
            parse(&token(r#"{"alg":"none"}"#, r#"{"exp":1}"#, "")),
            Some(JwtError::AlgorithmNotAccepted)
        );
        assert_eq!(
            parse(&token(r#"{"alg":"HS256","crit":["b64"]}"#, "{}", "x")),
            Some(JwtError::CriticalHeader)
        );
        assert_eq!(
            parse(&token(r#"{"alg":"HS256"}"#, r#"[1,"x"]"#, "x")),
            Some(JwtError::InvalidClaims)
        );
        assert_eq!(
            parse(&token(r#"{"alg":"HS256"}"#, r#"{"exp":"soon"}"#, "x")),
            Some(JwtError::InvalidClaims)
        );
        assert_eq!(
            parse(&"a".repeat(MAX_JWT_BYTES + 1)),
            Some(JwtError::TooLong)
        );
    }

    #[test]
    fn expiry_and_issuer_checks() {
        let t = token(r#"{"alg":"HS256"}"#, r#"{"exp":1000,"iss":"me"}"#, "x");
        let parsed = ParsedJwt::parse(t.as_bytes()).expect("parses");
        assert_eq!(parsed.check_expiry(999, 0), Ok(()));
        assert_eq!(parsed.check_expiry(1000, 0), Err(JwtError::Expired));
        assert_eq!(parsed.check_expiry(1029, 30), Ok(()));
        assert_eq!(parsed.check_expiry(1030, 30), Err(JwtError::Expired));
        assert_eq!(parsed.check_issuer("me"), Ok(()));
        assert_eq!(parsed.check_issuer("you"), Err(JwtError::WrongIssuer));

        let t = token(r#"{"alg":"HS256"}"#, r#"{"iss":"me"}"#, "x");
        let parsed = ParsedJwt::parse(t.as_bytes()).expect("parses");
        assert_eq!(parsed.check_expiry(0, 0), Err(JwtError::MissingExpiry));
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let _ = ParsedJwt::parse(&bytes);
        }

        #[test]
        fn parse_never_panics_on_dotted_base64(
            parts in proptest::collection::vec("[A-Za-z0-9_-]{0,60}", 0..5)
        ) {
            let joined = parts.join(".");
            let _ = ParsedJwt::parse(joined.as_bytes());
        }
    }
}
