//! Grip-Sig on requests to the origin (so the origin can trust them), per-route keys, and
//! trusted upstream proxies (`upstream_key`).

mod common;

use common::*;
use gripway_proto::sig::{check_grip_sig, GripSigner, SigningKey, VerifyingKey};

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).expect("JWT payload");
    let mut bytes = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in payload.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => continue,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            bytes.push((acc >> bits) as u8);
        }
    }
    serde_json::from_slice(&bytes).expect("JSON claims")
}

#[tokio::test]
async fn default_key_signs_every_origin_request() {
    let origin = Origin::start(|_| Reply::ok()).await;
    let gw = gripway_to(&origin, &[]);
    let mut c = RawClient::connect(gw.addr).await;
    c.get("/", &[]).await;
    c.read_head().await;
    let req = origin.last_request();
    let token = req.header("grip-sig").expect("Grip-Sig sent");
    let key = VerifyingKey::hmac(b"changeme").unwrap();
    check_grip_sig(token, &key, now()).expect("valid with Pushpin's default key");
    let c = claims(token);
    assert_eq!(c["iss"], "pushpin");
    let exp = c["exp"].as_u64().unwrap();
    assert!(exp > now() + 3500 && exp <= now() + 3601, "{exp}");
    assert_eq!(c.as_object().unwrap().len(), 2, "only iss and exp: {c}");
    assert!(req.header("grip-feature").unwrap().contains("status"));
}

#[tokio::test]
async fn per_route_key_and_issuer() {
    let origin = Origin::start(|_| Reply::ok()).await;
    let route = format!(
        "*,sig_iss=route-iss,sig_key=base64:cm91dGUta2V5 {}",
        origin.target()
    );
    let gw = gripway(&["--route", &route]);
    let mut c = RawClient::connect(gw.addr).await;
    c.get("/", &[]).await;
    c.read_head().await;
    let token = origin
        .last_request()
        .header("grip-sig")
        .unwrap()
        .to_string();
    check_grip_sig(&token, &VerifyingKey::hmac(b"route-key").unwrap(), now()).unwrap();
    assert!(check_grip_sig(&token, &VerifyingKey::hmac(b"changeme").unwrap(), now()).is_err());
    assert_eq!(claims(&token)["iss"], "route-iss");
}

#[tokio::test]
async fn no_grip_routes_pass_grip_responses_through_unsigned() {
    let origin = Origin::start(|_| Reply::ok().header("Grip-Hold", "stream").body("plain")).await;
    let route = format!("*,no_grip {}", origin.target());
    let gw = gripway(&["--route", &route]);
    let mut c = RawClient::connect(gw.addr).await;
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    let text = String::from_utf8_lossy(&c.read_to_end(WAIT).await).into_owned();
    assert!(
        text.to_ascii_lowercase().contains("grip-hold: stream"),
        "{text}"
    );
    assert!(text.ends_with("plain"));
    assert_eq!(origin.last_request().header("grip-sig"), None);
}

#[tokio::test]
async fn trusted_upstream_keeps_its_grip_headers_and_gets_instructions_back() {
    let origin = Origin::start(|_| {
        Reply::ok()
            .header("Grip-Hold", "stream")
            .header("Grip-Channel", "upstream")
            .body("for the upstream proxy")
    })
    .await;
    let dir = TempDir::new("upstream");
    let conf = dir.write(
        "gripway.toml",
        "[proxy]\nupstream_key = \"upstream-secret\"\n",
    );
    let route = format!("* {}", origin.target());
    let gw = gripway(&["--config", conf.to_str().unwrap(), "--route", &route]);

    let token =
        GripSigner::new("edge".into(), SigningKey::hmac(b"upstream-secret").unwrap()).token(now());
    let mut c = RawClient::connect(gw.addr).await;
    let sig = format!("Grip-Sig: {token}");
    c.get(
        "/",
        &[&sig, "Grip-Last: upstream; last-id=7", "Connection: close"],
    )
    .await;
    let text = String::from_utf8_lossy(&c.read_to_end(WAIT).await).into_owned();
    assert!(
        text.to_ascii_lowercase().contains("grip-hold: stream"),
        "relayed, not held: {text}"
    );
    let req = origin.last_request();
    assert_eq!(req.header("grip-last"), Some("upstream; last-id=7"));
    assert_eq!(req.header("grip-sig"), Some(&*token));

    // a forged signature is not trusted
    let forged = GripSigner::new("edge".into(), SigningKey::hmac(b"guess").unwrap()).token(now());
    let mut c = RawClient::connect(gw.addr).await;
    let sig = format!("Grip-Sig: {forged}");
    c.get("/", &[&sig, "Grip-Last: upstream; last-id=7"]).await;
    c.read_until(b"for the upstream proxy", WAIT).await;
    assert_eq!(origin.last_request().header("grip-last"), None);
}

#[tokio::test]
async fn pem_keys_sign_with_es256_and_rs256() {
    let keys = concat!(env!("CARGO_MANIFEST_DIR"), "/../proto/tests/keys");
    let origin = Origin::start(|_| Reply::ok()).await;
    for (private, public, alg) in [
        ("ec-private.pem", "ec-public.pem", "ES256"),
        ("rsa-private.pem", "rsa-public.pem", "RS256"),
    ] {
        let route = format!("*,sig_key=file:{keys}/{private} {}", origin.target());
        let gw = gripway(&["--route", &route]);
        let mut c = RawClient::connect(gw.addr).await;
        c.get("/", &[]).await;
        c.read_head().await;
        let token = origin
            .last_request()
            .header("grip-sig")
            .unwrap()
            .to_string();
        let pem = std::fs::read(format!("{keys}/{public}")).unwrap();
        let key = VerifyingKey::from_pem(&pem).unwrap();
        check_grip_sig(&token, &key, now()).unwrap_or_else(|e| panic!("{alg}: {e:?}"));
        let header = claims_of_part(&token, 0);
        assert_eq!(header["alg"], alg);
    }
}

fn claims_of_part(token: &str, part: usize) -> serde_json::Value {
    let rebuilt = format!("x.{}.y", token.split('.').nth(part).unwrap());
    claims(&rebuilt)
}
