//! Authentication of publish-API requests (reference §4.2, §7).
//!
//! Pushpin's publish API has none; Gripway optionally accepts what GRIP client libraries and
//! Fastly's API send: `Authorization: Bearer <key>` or `Fastly-Key: <key>` (static tokens),
//! `Authorization: Bearer <JWT>` (signed from the GRIP URL's `control_iss` and `key`), and
//! `Authorization: Basic` (GRIP URL user/pass).
//!
//! Invariants: a request passes if any configured method accepts any credential it presents;
//! no methods means open. Static tokens and passwords are compared in constant time (for a
//! given presented length). JWTs need an algorithm of the key's family, a valid signature and
//! an `exp` no more than [`JWT_EXPIRY_LEEWAY_SECS`] in the past. Error messages never contain
//! presented or configured secrets, and `Debug` output redacts them.

use std::fmt;

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::{alphabet, Engine as _};

use crate::sig::{JwtError, ParsedJwt, VerifyingKey, MAX_JWT_BYTES};

/// Clock skew tolerated on a publish JWT's `exp`, in seconds.
pub const JWT_EXPIRY_LEEWAY_SECS: u64 = 30;

/// Longest credential (header value) examined; longer ones are refused unread.
pub const MAX_CREDENTIAL_BYTES: usize = MAX_JWT_BYTES + 16;

/// Basic credentials: standard alphabet, padding optional (some clients drop it).
const BASIC_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// One way a publisher may authenticate.
#[derive(Clone)]
pub enum PublishAuth {
    /// Anything goes (same as an empty method list).
    None,
    /// Any of these tokens, as `Authorization: Bearer <t>` or `Fastly-Key: <t>`.
    Keys(Vec<String>),
    /// `Authorization: Basic` with this user name and password.
    Basic {
        /// Expected user name.
        user: String,
        /// Expected password.
        pass: String,
    },
    /// `Authorization: Bearer <JWT>` signed with one of the keys (HS256/384/512 secret;
    /// ES256 or RSA public key). `exp` is required and checked with
    /// [`JWT_EXPIRY_LEEWAY_SECS`] of leeway; when `iss` is set the token's `iss` must equal
    /// it (GRIP libraries set it to the GRIP URL's `control_iss`).
    Jwt {
        /// Keys any one of which may have signed the token.
        keys: Vec<VerifyingKey>,
        /// Required issuer, if any.
        iss: Option<String>,
    },
}

impl fmt::Debug for PublishAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::Keys(keys) => write!(f, "Keys(<{} redacted>)", keys.len()),
            Self::Basic { user, .. } => f
                .debug_struct("Basic")
                .field("user", user)
                .field("pass", &"<redacted>")
                .finish(),
            Self::Jwt { keys, iss } => f
                .debug_struct("Jwt")
                .field("keys", keys)
                .field("iss", iss)
                .finish(),
        }
    }
}

/// The publish API's authentication settings.
#[derive(Clone, Debug, Default)]
pub struct PublishAuthConfig {
    /// Accepted methods; a request passes if any accepts it. Empty means open.
    pub methods: Vec<PublishAuth>,
}

/// Why a publish request was refused. `Display` is short and safe to send to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` or `Fastly-Key` header.
    #[error("authentication required")]
    Missing,
    /// A credential header that cannot be parsed.
    #[error("malformed credentials: {0}")]
    Malformed(&'static str),
    /// Well-formed credentials that are wrong, expired or of a kind not accepted here.
    #[error("invalid credentials: {0}")]
    Rejected(&'static str),
}

/// A credential as presented by the client.
enum Credential<'a> {
    /// `Authorization: Bearer <token>`.
    Bearer(&'a [u8]),
    /// `Fastly-Key: <token>`.
    FastlyKey(&'a [u8]),
    /// `Authorization: Basic` decoded.
    Basic { user: Vec<u8>, pass: Vec<u8> },
}

/// What one method made of one credential.
enum Verdict {
    Accept,
    /// Refused, with how specific the reason is (higher wins when reporting).
    Refuse(u8, AuthError),
    /// The method does not look at this kind of credential.
    NotApplicable,
}

/// Ranking of refusal reasons: the most specific one is reported.
const RANK_HEADER_SYNTAX: u8 = 1;
const RANK_WRONG_SECRET: u8 = 2;
const RANK_JWT: u8 = 3;

impl PublishAuthConfig {
    /// Whether every request is accepted without credentials.
    pub fn is_open(&self) -> bool {
        self.methods.is_empty() || self.methods.iter().any(|m| matches!(m, PublishAuth::None))
    }

    /// Checks a request's `Authorization` and `Fastly-Key` header values (raw bytes).
    /// `now_unix` is the current time, for JWT expiry.
    pub fn check(
        &self,
        authorization: Option<&[u8]>,
        fastly_key: Option<&[u8]>,
        now_unix: u64,
    ) -> Result<(), AuthError> {
        if self.is_open() {
            return Ok(());
        }
        let mut best: Option<(u8, AuthError)> = None;
        let mut credentials: Vec<Credential<'_>> = Vec::with_capacity(2);
        match authorization.map(parse_authorization) {
            None => {}
            Some(Ok(credential)) => credentials.push(credential),
            Some(Err(error)) => keep_most_specific(&mut best, RANK_HEADER_SYNTAX, error),
        }
        match fastly_key.map(parse_fastly_key) {
            None => {}
            Some(Ok(credential)) => credentials.push(credential),
            Some(Err(error)) => keep_most_specific(&mut best, RANK_HEADER_SYNTAX, error),
        }
        if credentials.is_empty() {
            return Err(best.map_or(AuthError::Missing, |(_, error)| error));
        }
        for credential in &credentials {
            for method in &self.methods {
                match judge(method, credential, now_unix) {
                    Verdict::Accept => return Ok(()),
                    Verdict::Refuse(rank, error) => keep_most_specific(&mut best, rank, error),
                    Verdict::NotApplicable => {}
                }
            }
        }
        Err(best.map_or(
            AuthError::Rejected("this kind of credential is not accepted here"),
            |(_, error)| error,
        ))
    }
}

/// Remembers `error` if it is more specific than the one kept so far (first wins on ties).
fn keep_most_specific(best: &mut Option<(u8, AuthError)>, rank: u8, error: AuthError) {
    if best.is_none_or(|(best_rank, _)| rank > best_rank) {
        *best = Some((rank, error));
    }
}

fn judge(method: &PublishAuth, credential: &Credential<'_>, now_unix: u64) -> Verdict {
    match (method, credential) {
        (PublishAuth::None, _) => Verdict::Accept,
        (PublishAuth::Keys(keys), Credential::Bearer(token) | Credential::FastlyKey(token)) => {
            // Check every key so timing does not reveal which one (or whether any) matched.
            let matched = keys.iter().fold(false, |matched, key| {
                matched | constant_time_eq(token, key.as_bytes())
            });
            if matched {
                Verdict::Accept
            } else {
                Verdict::Refuse(RANK_WRONG_SECRET, AuthError::Rejected("unknown key"))
            }
        }
        (PublishAuth::Basic { user, pass }, Credential::Basic { user: u, pass: p }) => {
            // `&`, not `&&`: always compare both.
            if constant_time_eq(u, user.as_bytes()) & constant_time_eq(p, pass.as_bytes()) {
                Verdict::Accept
            } else {
                Verdict::Refuse(
                    RANK_WRONG_SECRET,
                    AuthError::Rejected("wrong user name or password"),
                )
            }
        }
        (PublishAuth::Jwt { keys, iss }, Credential::Bearer(token)) => {
            judge_jwt(token, keys, iss.as_deref(), now_unix)
        }
        _ => Verdict::NotApplicable,
    }
}

fn judge_jwt(token: &[u8], keys: &[VerifyingKey], iss: Option<&str>, now_unix: u64) -> Verdict {
    let parsed = match ParsedJwt::parse(token) {
        Ok(parsed) => parsed,
        // A token that is not even JWT-shaped is most likely a static key: let a Keys
        // method's verdict win if there is one.
        Err(JwtError::NotCompact) => {
            return Verdict::Refuse(
                RANK_HEADER_SYNTAX,
                AuthError::Malformed("bearer token is not a JWT"),
            )
        }
        Err(error) => return Verdict::Refuse(RANK_JWT, jwt_error(error)),
    };
    // Prefer "bad signature" over "algorithm not accepted" when several keys are configured.
    let mut signature_error = JwtError::AlgorithmNotAccepted;
    let signed = keys.iter().any(|key| match parsed.verify_signature(key) {
        Ok(()) => true,
        Err(error) => {
            if error == JwtError::BadSignature {
                signature_error = error;
            }
            false
        }
    });
    if !signed {
        return Verdict::Refuse(RANK_JWT, jwt_error(signature_error));
    }
    let checked = parsed
        .check_expiry(now_unix, JWT_EXPIRY_LEEWAY_SECS)
        .and_then(|()| iss.map_or(Ok(()), |iss| parsed.check_issuer(iss)));
    match checked {
        Ok(()) => Verdict::Accept,
        Err(error) => Verdict::Refuse(RANK_JWT, jwt_error(error)),
    }
}

fn jwt_error(error: JwtError) -> AuthError {
    match error {
        JwtError::TooLong => AuthError::Malformed("JWT is too long"),
        JwtError::NotCompact | JwtError::InvalidHeader | JwtError::InvalidClaims => {
            AuthError::Malformed("bearer token is not a valid JWT")
        }
        JwtError::CriticalHeader => AuthError::Rejected("JWT uses unsupported 'crit' extensions"),
        JwtError::AlgorithmNotAccepted => AuthError::Rejected("JWT algorithm is not accepted"),
        JwtError::BadSignature => AuthError::Rejected("JWT signature is not valid"),
        JwtError::MissingExpiry => AuthError::Rejected("JWT has no 'exp' claim"),
        JwtError::Expired => AuthError::Rejected("JWT has expired"),
        JwtError::WrongIssuer => AuthError::Rejected("JWT issuer is not accepted"),
    }
}

fn parse_authorization(value: &[u8]) -> Result<Credential<'_>, AuthError> {
    let value = value.trim_ascii();
    if value.len() > MAX_CREDENTIAL_BYTES {
        return Err(AuthError::Malformed("Authorization header is too long"));
    }
    let scheme_end = value
        .iter()
        .position(|&b| b == b' ' || b == b'\t')
        .unwrap_or(value.len());
    let (scheme, rest) = value.split_at(scheme_end);
    let credentials = rest.trim_ascii();
    if scheme.eq_ignore_ascii_case(b"bearer") {
        if credentials.is_empty() {
            return Err(AuthError::Malformed("Bearer token is empty"));
        }
        return Ok(Credential::Bearer(credentials));
    }
    if scheme.eq_ignore_ascii_case(b"basic") {
        let decoded = BASIC_BASE64
            .decode(credentials)
            .map_err(|_| AuthError::Malformed("Basic credentials are not valid base64"))?;
        let colon = decoded
            .iter()
            .position(|&b| b == b':')
            .ok_or(AuthError::Malformed(
                "Basic credentials have no ':' between user name and password",
            ))?;
        let (user, pass_with_colon) = decoded.split_at(colon);
        let pass = pass_with_colon.get(1..).unwrap_or_default();
        return Ok(Credential::Basic {
            user: user.to_vec(),
            pass: pass.to_vec(),
        });
    }
    Err(AuthError::Malformed(
        "unsupported Authorization scheme (use Bearer or Basic)",
    ))
}

fn parse_fastly_key(value: &[u8]) -> Result<Credential<'_>, AuthError> {
    let value = value.trim_ascii();
    if value.is_empty() {
        return Err(AuthError::Malformed("Fastly-Key is empty"));
    }
    if value.len() > MAX_CREDENTIAL_BYTES {
        return Err(AuthError::Malformed("Fastly-Key header is too long"));
    }
    Ok(Credential::FastlyKey(value))
}

/// Compares `presented` with `expected` in time that depends only on `presented.len()`:
/// every presented byte is compared (against the expected bytes, repeated cyclically), and
/// a length difference is folded into the result rather than returned early.
fn constant_time_eq(presented: &[u8], expected: &[u8]) -> bool {
    let mut difference = presented.len() ^ expected.len();
    for (a, b) in presented.iter().zip(expected.iter().cycle()) {
        difference |= usize::from(a ^ b);
    }
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sig::test_keys::{signing, verifying};
    use crate::sig::{GripSigner, SigningKey};
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

    const NOW: u64 = 1_700_000_000;

    fn config(methods: Vec<PublishAuth>) -> PublishAuthConfig {
        PublishAuthConfig { methods }
    }

    fn keys(list: &[&str]) -> PublishAuth {
        PublishAuth::Keys(list.iter().map(|k| (*k).to_owned()).collect())
    }

    fn basic_header(user: &str, pass: &str) -> Vec<u8> {
        format!("Basic {}", STANDARD.encode(format!("{user}:{pass}"))).into_bytes()
    }

    /// A publish JWT as js-grip makes one: `{iss, exp}` signed with `key`.
    fn jwt(key: SigningKey, iss: &str, issued_at: u64) -> String {
        // GripSigner mints exp = issued_at + 3600, which serves as a publish token too.
        GripSigner::new(iss.to_owned(), key)
            .token(issued_at)
            .to_string()
    }

    fn bearer(token: &str) -> Vec<u8> {
        format!("Bearer {token}").into_bytes()
    }

    #[test]
    fn empty_config_and_none_method_are_open() {
        assert!(config(vec![]).is_open());
        assert!(config(vec![keys(&["k"]), PublishAuth::None]).is_open());
        assert!(!config(vec![keys(&["k"])]).is_open());
        assert_eq!(config(vec![]).check(None, None, NOW), Ok(()));
    }

    #[test]
    fn static_keys_via_bearer_or_fastly_key() {
        let auth = config(vec![keys(&["first-key", "second-key"])]);
        assert_eq!(auth.check(Some(b"Bearer second-key"), None, NOW), Ok(()));
        assert_eq!(auth.check(Some(b"bEaReR \t first-key "), None, NOW), Ok(()));
        assert_eq!(auth.check(None, Some(b"first-key"), NOW), Ok(()));
        assert_eq!(auth.check(None, Some(b" first-key\t"), NOW), Ok(()));
        assert_eq!(
            auth.check(Some(b"Bearer first-ke"), None, NOW),
            Err(AuthError::Rejected("unknown key"))
        );
        assert_eq!(
            auth.check(None, Some(b"first-keyy"), NOW),
            Err(AuthError::Rejected("unknown key"))
        );
        assert_eq!(auth.check(None, None, NOW), Err(AuthError::Missing));
        assert_eq!(
            auth.check(Some(b"Bearer "), None, NOW),
            Err(AuthError::Malformed("Bearer token is empty"))
        );
        assert_eq!(
            auth.check(None, Some(b"  "), NOW),
            Err(AuthError::Malformed("Fastly-Key is empty"))
        );
        // A good Fastly-Key wins over a bad Authorization header, and vice versa.
        assert_eq!(
            auth.check(Some(b"Bearer nope"), Some(b"first-key"), NOW),
            Ok(())
        );
        assert_eq!(
            auth.check(Some(b"Digest x"), Some(b"first-key"), NOW),
            Ok(())
        );
        assert_eq!(
            auth.check(Some(b"Bearer first-key"), Some(b"nope"), NOW),
            Ok(())
        );
    }

    #[test]
    fn basic_user_and_password() {
        let auth = config(vec![PublishAuth::Basic {
            user: "publisher".to_owned(),
            pass: "p:ss word".to_owned(),
        }]);
        assert_eq!(
            auth.check(Some(&basic_header("publisher", "p:ss word")), None, NOW),
            Ok(())
        );
        assert_eq!(
            auth.check(Some(b"basic cHVibGlzaGVyOnA6c3Mgd29yZA"), None, NOW),
            Ok(()),
            "scheme is case-insensitive and padding optional"
        );
        assert_eq!(
            auth.check(Some(&basic_header("publisher", "wrong")), None, NOW),
            Err(AuthError::Rejected("wrong user name or password"))
        );
        assert_eq!(
            auth.check(Some(&basic_header("someone", "p:ss word")), None, NOW),
            Err(AuthError::Rejected("wrong user name or password"))
        );
        assert_eq!(
            auth.check(Some(b"Basic !!notbase64"), None, NOW),
            Err(AuthError::Malformed(
                "Basic credentials are not valid base64"
            ))
        );
        assert_eq!(
            auth.check(
                Some(format!("Basic {}", STANDARD.encode("nocolon")).as_bytes()),
                None,
                NOW
            ),
            Err(AuthError::Malformed(
                "Basic credentials have no ':' between user name and password"
            ))
        );
        assert_eq!(
            auth.check(Some(b"Bearer publisher"), None, NOW),
            Err(AuthError::Rejected(
                "this kind of credential is not accepted here"
            ))
        );
        assert_eq!(
            auth.check(Some(b"Negotiate abc"), None, NOW),
            Err(AuthError::Malformed(
                "unsupported Authorization scheme (use Bearer or Basic)"
            ))
        );
    }

    #[test]
    fn jwt_with_hmac_ec_and_rsa_keys() {
        let auth = config(vec![PublishAuth::Jwt {
            keys: vec![
                VerifyingKey::hmac(b"realm-key").expect("non-empty"),
                verifying("ec-public.pem"),
                verifying("rsa-public.pem"),
            ],
            iss: Some("realm".to_owned()),
        }]);
        for key in [
            SigningKey::hmac(b"realm-key").expect("non-empty"),
            signing("ec-private.pem"),
            signing("rsa-private.pem"),
        ] {
            let token = jwt(key, "realm", NOW);
            assert_eq!(auth.check(Some(&bearer(&token)), None, NOW), Ok(()));
        }
        let token = jwt(SigningKey::hmac(b"realm-key").expect("k"), "other", NOW);
        assert_eq!(
            auth.check(Some(&bearer(&token)), None, NOW),
            Err(AuthError::Rejected("JWT issuer is not accepted"))
        );
        let token = jwt(SigningKey::hmac(b"wrong-key").expect("k"), "realm", NOW);
        assert_eq!(
            auth.check(Some(&bearer(&token)), None, NOW),
            Err(AuthError::Rejected("JWT signature is not valid"))
        );
        let token = jwt(signing("other-ec-private.pem"), "realm", NOW);
        assert_eq!(
            auth.check(Some(&bearer(&token)), None, NOW),
            Err(AuthError::Rejected("JWT signature is not valid"))
        );
        // The same token through Fastly-Key is not a JWT credential.
        assert_eq!(
            auth.check(
                None,
                Some(jwt(signing("ec-private.pem"), "realm", NOW).as_bytes()),
                NOW
            ),
            Err(AuthError::Rejected(
                "this kind of credential is not accepted here"
            ))
        );
    }

    #[test]
    fn jwt_expiry_has_documented_leeway() {
        let auth = config(vec![PublishAuth::Jwt {
            keys: vec![VerifyingKey::hmac(b"k").expect("non-empty")],
            iss: None,
        }]);
        // exp = NOW + 3600.
        let token = jwt(SigningKey::hmac(b"k").expect("k"), "anyone", NOW);
        let header = bearer(&token);
        assert_eq!(auth.check(Some(&header), None, NOW + 3600), Ok(()));
        assert_eq!(
            auth.check(Some(&header), None, NOW + 3600 + JWT_EXPIRY_LEEWAY_SECS - 1),
            Ok(())
        );
        assert_eq!(
            auth.check(Some(&header), None, NOW + 3600 + JWT_EXPIRY_LEEWAY_SECS),
            Err(AuthError::Rejected("JWT has expired"))
        );

        let no_exp = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &serde_json::json!({"iss": "anyone"}),
            &jsonwebtoken::EncodingKey::from_secret(b"k"),
        )
        .expect("encodes");
        assert_eq!(
            auth.check(Some(&bearer(&no_exp)), None, NOW),
            Err(AuthError::Rejected("JWT has no 'exp' claim"))
        );
    }

    #[test]
    fn jwt_alg_none_and_alg_confusion_are_rejected() {
        let auth = config(vec![PublishAuth::Jwt {
            keys: vec![verifying("ec-public.pem"), verifying("rsa-public.pem")],
            iss: None,
        }]);
        let claims = URL_SAFE_NO_PAD.encode(format!(r#"{{"iss":"x","exp":{}}}"#, NOW + 600));
        let unsigned = format!("eyJhbGciOiJub25lIn0.{claims}.");
        assert_eq!(
            auth.check(Some(&bearer(&unsigned)), None, NOW),
            Err(AuthError::Rejected("JWT algorithm is not accepted"))
        );
        // HS256 keyed with a public key's PEM text must not pass as that key.
        for public in ["ec-public.pem", "rsa-public.pem"] {
            let pem = crate::sig::test_keys::read(public);
            let forged = jwt(SigningKey::hmac(&pem).expect("non-empty"), "x", NOW);
            assert_eq!(
                auth.check(Some(&bearer(&forged)), None, NOW),
                Err(AuthError::Rejected("JWT algorithm is not accepted"))
            );
        }
    }

    #[test]
    fn inline_pem_public_keys_verify_and_refuse_algorithm_confusion() {
        // `jwt_keys = ["-----BEGIN PUBLIC KEY-----\n..."]`: the config's inline form
        let inline = |name: &str| String::from_utf8(crate::sig::test_keys::read(name)).unwrap();
        let dir = std::env::temp_dir();
        let keys = ["ec-public.pem", "rsa-public.pem"]
            .map(|n| {
                crate::sig::parse_verifying_key(&inline(n), &dir)
                    .expect("inline PEM parses")
                    .expect("a key")
            })
            .to_vec();
        let auth = config(vec![PublishAuth::Jwt { keys, iss: None }]);
        for private in ["ec-private.pem", "rsa-private.pem"] {
            let token = jwt(signing(private), "x", NOW);
            assert_eq!(
                auth.check(Some(&bearer(&token)), None, NOW),
                Ok(()),
                "{private}"
            );
            assert_eq!(
                auth.check(
                    Some(&bearer(&token)),
                    None,
                    NOW + 3600 + JWT_EXPIRY_LEEWAY_SECS
                ),
                Err(AuthError::Rejected("JWT has expired")),
                "{private}"
            );
        }
        for public in ["ec-public.pem", "rsa-public.pem"] {
            let forged = jwt(
                SigningKey::hmac(inline(public).as_bytes()).expect("non-empty"),
                "x",
                NOW,
            );
            assert_eq!(
                auth.check(Some(&bearer(&forged)), None, NOW),
                Err(AuthError::Rejected("JWT algorithm is not accepted")),
                "HS256 keyed with {public}'s text"
            );
        }
        let claims = URL_SAFE_NO_PAD.encode(format!(r#"{{"iss":"x","exp":{}}}"#, NOW + 600));
        let unsigned = format!("eyJhbGciOiJub25lIn0.{claims}.");
        assert_eq!(
            auth.check(Some(&bearer(&unsigned)), None, NOW),
            Err(AuthError::Rejected("JWT algorithm is not accepted"))
        );
    }

    #[test]
    fn keys_and_jwt_together_report_the_relevant_error() {
        let auth = config(vec![
            keys(&["static"]),
            PublishAuth::Jwt {
                keys: vec![VerifyingKey::hmac(b"k").expect("non-empty")],
                iss: None,
            },
        ]);
        assert_eq!(auth.check(Some(b"Bearer static"), None, NOW), Ok(()));
        let token = jwt(SigningKey::hmac(b"k").expect("k"), "i", NOW);
        assert_eq!(auth.check(Some(&bearer(&token)), None, NOW), Ok(()));
        assert_eq!(
            auth.check(Some(b"Bearer nope"), None, NOW),
            Err(AuthError::Rejected("unknown key"))
        );
        let expired = jwt(SigningKey::hmac(b"k").expect("k"), "i", NOW - 4000);
        assert_eq!(
            auth.check(Some(&bearer(&expired)), None, NOW),
            Err(AuthError::Rejected("JWT has expired"))
        );
        assert_eq!(
            auth.check(Some(b"Bearer a.b.c"), None, NOW),
            Err(AuthError::Malformed("bearer token is not a valid JWT"))
        );
    }

    #[test]
    fn constant_time_eq_is_exact() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcabc"), "cyclic prefix");
        assert!(!constant_time_eq(b"abcabc", b"abc"), "cyclic repeat");
        assert!(!constant_time_eq(b"", b"abc"));
        assert!(!constant_time_eq(b"abc", b""));
    }

    #[test]
    fn errors_and_debug_never_show_secrets() {
        let auth = config(vec![
            keys(&["topsecret-key"]),
            PublishAuth::Basic {
                user: "u".to_owned(),
                pass: "topsecret-pass".to_owned(),
            },
            PublishAuth::Jwt {
                keys: vec![VerifyingKey::hmac(b"topsecret-hmac").expect("non-empty")],
                iss: None,
            },
        ]);
        let debug = format!("{auth:?}");
        assert!(!debug.contains("topsecret"), "{debug}");
        for header in [
            b"Bearer topsecret-guess".to_vec(),
            basic_header("u", "topsecret-guess"),
            b"Basic topsecret-guess!".to_vec(),
        ] {
            let error = auth.check(Some(&header), None, NOW).expect_err("refused");
            assert!(!error.to_string().contains("topsecret"), "{error}");
        }
        assert_eq!(
            AuthError::Rejected("unknown key").to_string(),
            "invalid credentials: unknown key"
        );
        assert_eq!(AuthError::Missing.to_string(), "authentication required");
    }

    #[test]
    fn oversized_headers_are_refused_unread() {
        let auth = config(vec![keys(&["k"])]);
        let huge = vec![b'a'; MAX_CREDENTIAL_BYTES + 1];
        assert_eq!(
            auth.check(None, Some(&huge), NOW),
            Err(AuthError::Malformed("Fastly-Key header is too long"))
        );
        let mut huge_bearer = b"Bearer ".to_vec();
        huge_bearer.extend_from_slice(&huge);
        assert_eq!(
            auth.check(Some(&huge_bearer), None, NOW),
            Err(AuthError::Malformed("Authorization header is too long"))
        );
    }

    proptest::proptest! {
        #[test]
        fn check_never_panics(
            authorization in proptest::option::of(proptest::collection::vec(proptest::num::u8::ANY, 0..300)),
            fastly_key in proptest::option::of(proptest::collection::vec(proptest::num::u8::ANY, 0..100)),
            scheme in proptest::sample::select(vec!["", "Bearer ", "Basic ", "bearer\t"]),
            now in proptest::num::u64::ANY,
        ) {
            let auth = config(vec![
                keys(&["k1", ""]),
                PublishAuth::Basic { user: "u".to_owned(), pass: "p".to_owned() },
                PublishAuth::Jwt { keys: vec![VerifyingKey::hmac(b"k").expect("k")], iss: Some("i".to_owned()) },
            ]);
            let authorization = authorization.map(|mut value| {
                let mut header = scheme.as_bytes().to_vec();
                header.append(&mut value);
                header
            });
            let _ = auth.check(authorization.as_deref(), fastly_key.as_deref(), now);
        }
    }
}
