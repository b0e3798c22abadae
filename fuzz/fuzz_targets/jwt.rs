//! JWTs and publish credentials: an upstream's `Grip-Sig` checked by
//! `proto::sig::check_grip_sig` (HMAC, ES256 and RSA keys) and publish-API credentials checked
//! by `proto::auth::PublishAuthConfig::check` (static keys, Basic, JWT). Checks that nothing
//! panics, and that no token passes `alg: none` or algorithm confusion: the fuzzer cannot
//! forge signatures, so any token it finds that verifies must be one of the seeds' valid
//! ones, which carry the marker `"jti":"seed"` (`assert` below).
#![no_main]

use std::sync::OnceLock;

use gripway_proto::auth::{PublishAuth, PublishAuthConfig};
use gripway_proto::sig::{check_grip_sig, VerifyingKey};
use libfuzzer_sys::fuzz_target;

/// 2023-11-14: seeds' `exp` values are after it.
const NOW: u64 = 1_700_000_000;

struct Keys {
    grip: Vec<VerifyingKey>,
    auth: PublishAuthConfig,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let hmac = VerifyingKey::hmac(b"changeme").expect("hmac key");
        let ec = VerifyingKey::from_pem(include_bytes!(
            "../../crates/proto/tests/keys/ec-public.pem"
        ))
        .expect("ec key");
        let rsa = VerifyingKey::from_pem(include_bytes!(
            "../../crates/proto/tests/keys/rsa-public.pem"
        ))
        .expect("rsa key");
        let fanout = VerifyingKey::fastly_fanout().expect("fanout key");
        Keys {
            grip: vec![hmac.clone(), ec.clone(), rsa.clone(), fanout],
            auth: PublishAuthConfig {
                methods: vec![
                    PublishAuth::Keys(vec!["static-key".into()]),
                    PublishAuth::Basic {
                        user: "user".into(),
                        pass: "pass".into(),
                    },
                    PublishAuth::Jwt {
                        keys: vec![hmac, ec, rsa],
                        iss: Some("gripway".into()),
                    },
                ],
            },
        }
    })
}

fn is_seed_token(data: &[u8]) -> bool {
    // The payload is the second base64url segment; decode it loosely and look for the marker.
    let text = String::from_utf8_lossy(data);
    text.split('.').nth(1).is_some_and(|payload| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .is_ok_and(|json| String::from_utf8_lossy(&json).contains("\"jti\":\"seed\""))
    })
}

fuzz_target!(|data: &[u8]| {
    let keys = keys();
    let token = String::from_utf8_lossy(data);
    for key in &keys.grip {
        if check_grip_sig(&token, key, NOW).is_ok() {
            assert!(is_seed_token(data), "forged Grip-Sig accepted: {token}");
        }
    }
    let accepted = keys.auth.check(Some(data), None, NOW).is_ok();
    let fastly = keys.auth.check(None, Some(data), NOW).is_ok();
    if accepted || fastly {
        // Auth schemes are case-insensitive (RFC 9110 §11.1); Basic accepts only user:pass,
        // which the fuzzer may re-encode in many ways (padding, whitespace).
        let lower = data.to_ascii_lowercase();
        let ok = data.trim_ascii().ends_with(b"static-key")
            || lower.trim_ascii_start().starts_with(b"basic")
            || is_seed_token(data);
        assert!(ok, "credential accepted: {token}");
    }
});
