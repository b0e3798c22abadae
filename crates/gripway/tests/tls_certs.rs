//! Certificates on the TLS listener, seen by real clients against the real binary: which
//! certificate SNI selects (exact name, wildcard, `default`, no SNI) as `openssl s_client`
//! shows it, TLS 1.2 and 1.3 with ALPN `http/1.1`, reloads of the directory while clients
//! stay connected (a new name, a broken pair refused with the old set kept), a broken
//! directory stopping start-up with the file named, the alert a refused handshake gets, and a
//! ClientHello that spans two records.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::tls::CertsDir;
use common::tls_setup::*;
use common::*;

/// Runs `openssl s_client` against `addr` with `args` (stdin empty, so it ends after the
/// handshake; bounded by coreutils' `timeout`); returns stdout and stderr together.
fn s_client(addr: std::net::SocketAddr, args: &[&str]) -> String {
    let out = Command::new("timeout")
        .args(["10", "openssl", "s_client", "-connect", &addr.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("openssl runs");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The first certificate PEM in `text`, whitespace removed between its markers.
fn first_pem(text: &str) -> Option<String> {
    let begin = "-----BEGIN CERTIFICATE-----";
    let end = "-----END CERTIFICATE-----";
    let from = text.find(begin)? + begin.len();
    let to = from + text[from..].find(end)?;
    Some(text[from..to].split_whitespace().collect())
}

/// The subject alternative names of a certificate, as `openssl x509` prints them.
fn san_of(pem_body: &str) -> String {
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in pem_body.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    let mut child = Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(pem.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The certificate `openssl s_client` is shown when it connects asking for `servername`
/// (None: no SNI), checked against the test CA; its PEM body and the s_client output.
fn presented(gw: &Gripway, certs: &CertsDir, servername: Option<&str>) -> (String, String) {
    let ca = certs.ca_path();
    let mut args = vec!["-CAfile", ca.to_str().unwrap()];
    match servername {
        Some(name) => args.extend(["-servername", name, "-verify_hostname", name]),
        None => args.push("-noservername"),
    }
    let out = s_client(tls_addr(gw), &args);
    let pem = first_pem(&out).unwrap_or_else(|| panic!("no certificate shown:\n{out}"));
    (pem, out)
}

fn file_pem(certs: &CertsDir, stem: &str) -> String {
    let text = std::fs::read_to_string(certs.path().join(format!("{stem}.crt"))).unwrap();
    first_pem(&text).unwrap()
}

#[tokio::test]
async fn sni_picks_the_exact_name_then_the_wildcard_then_the_default() {
    let certs = CertsDir::new(&["a.example.com", "_.wild.example.com", "default"]);
    let gw = gripway_tls(&certs, &[]);
    for (servername, stem, san) in [
        (Some("a.example.com"), "a.example.com", "DNS:a.example.com"),
        (Some("A.Example.COM"), "a.example.com", "DNS:a.example.com"),
        (
            Some("x.wild.example.com"),
            "_.wild.example.com",
            "DNS:*.wild.example.com",
        ),
        (Some("unknown.example.org"), "default", "DNS:localhost"),
        // one label only: not covered by the wildcard
        (Some("a.b.wild.example.com"), "default", "DNS:localhost"),
        (None, "default", "DNS:localhost"),
    ] {
        let (pem, out) = presented(&gw, &certs, servername);
        assert_eq!(
            pem,
            file_pem(&certs, stem),
            "{servername:?} gets {stem}.crt:\n{out}"
        );
        let sans = san_of(&pem);
        assert!(sans.contains(san), "{servername:?}: {sans}");
        // the name verifies where the certificate covers it
        if stem != "default" {
            assert!(
                out.contains("Verify return code: 0 (ok)"),
                "{servername:?}:\n{out}"
            );
        }
    }
}

#[tokio::test]
async fn tls_1_2_and_1_3_negotiate_with_alpn_http_1_1() {
    let certs = CertsDir::new(&["localhost", "default"]);
    let gw = gripway_tls(&certs, &[]);
    let ca = certs.ca_path();
    let ca = ca.to_str().unwrap();
    for (flag, version) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let out = s_client(
            tls_addr(&gw),
            &[
                flag,
                "-alpn",
                "http/1.1",
                "-servername",
                "localhost",
                "-CAfile",
                ca,
            ],
        );
        assert!(
            out.contains(&format!("New, {version}, Cipher is")),
            "{version}:\n{out}"
        );
        assert!(out.contains("ALPN protocol: http/1.1"), "{version}:\n{out}");
        assert!(
            out.contains("Verify return code: 0 (ok)"),
            "{version}:\n{out}"
        );
    }
    // a client that offers no ALPN is served too
    let out = s_client(tls_addr(&gw), &["-servername", "localhost", "-CAfile", ca]);
    assert!(out.contains("No ALPN negotiated"), "{out}");
    // TLS 1.1 is refused
    let out = s_client(tls_addr(&gw), &["-tls1_1", "-servername", "localhost"]);
    assert!(!out.contains("Cipher is ECDHE"), "{out}");

    // and rustls agrees, over a request
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(certs.ca().roots())
        .with_no_client_auth();
        let mut config = config;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let mut c = TlsClient::connect(tls_addr(&gw), config.into(), "localhost").await;
        {
            let (_, session) = c.stream().get_ref();
            assert_eq!(session.protocol_version(), Some(version.version));
            assert_eq!(session.alpn_protocol(), Some(&b"http/1.1"[..]));
        }
        c.get("/", &["Connection: close"]).await;
        let head = c.read_head().await;
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    }
}

/// Waits (bounded) until a handshake asking for `name` is presented `stem`'s certificate.
async fn wait_for_cert(gw: &Gripway, certs: &CertsDir, name: &str, stem: &str, within: Duration) {
    let want = file_pem(certs, stem);
    let deadline = Instant::now() + within;
    loop {
        let (pem, out) = presented(gw, certs, Some(name));
        if pem == want {
            assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never got {stem}.crt within {within:?}:\n{out}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_reload_adds_a_name_keeps_connections_and_refuses_a_broken_pair() {
    let certs = CertsDir::new(&["localhost", "default"]);
    let origin = Origin::start(|_| sse_reply("news")).await;
    let gw = gripway_tls(&certs, &["--route", &format!("* {}", origin.target())]);
    let mut sse = tls_client(&gw, &certs).await;
    sse.get("/events", &[]).await;
    sse.read_until(b"welcome\n\n\r\n", WAIT).await;
    wait_metric_at_least(&gw, "gripway_subscriptions", 1.0).await;
    let (pem, _) = presented(&gw, &certs, Some("new.example.com"));
    assert_eq!(pem, file_pem(&certs, "default"), "before the reload");

    // a new name appears: within a poll or two (every 2 s) its certificate is served
    let added = Instant::now();
    certs.add("new.example.com");
    wait_for_cert(
        &gw,
        &certs,
        "new.example.com",
        "new.example.com",
        Duration::from_secs(10),
    )
    .await;
    eprintln!("new certificate served after {:?}", added.elapsed());
    wait_metric_at_least(&gw, "gripway_tls_cert_reloads_total{result=\"ok\"}", 1.0).await;
    // the connection opened before the reload still receives
    publish_event(&gw, "news", "after reload").await;
    sse.read_until(b"data: after reload\n\n\r\n", WAIT).await;
    // and a new client asking for the new name is served over HTTP
    let mut c = TlsClient::connect(tls_addr(&gw), certs.client_config(H1), "new.example.com").await;
    c.get("/events", &[]).await;
    c.read_until(b"welcome\n\n\r\n", WAIT).await;

    // a certificate without its key: the reload is refused, the log names the file
    let (crt, _key) = certs.ca().issue(&["broken.example.com".to_string()]);
    std::fs::write(certs.path().join("broken.example.com.crt"), crt).unwrap();
    wait_metric_at_least(&gw, "gripway_tls_cert_reloads_total{result=\"error\"}", 1.0).await;
    assert!(
        gw.wait_for_log("broken.example.com", WAIT),
        "the log says which file: {}",
        gw.log()
    );
    // the old set stays: new.example.com is still served, broken.example.com gets the default
    wait_for_cert(
        &gw,
        &certs,
        "new.example.com",
        "new.example.com",
        Duration::from_secs(1),
    )
    .await;
    let (pem, _) = presented(&gw, &certs, Some("broken.example.com"));
    assert_eq!(
        pem,
        file_pem(&certs, "default"),
        "the refused set is not used"
    );
    publish_event(&gw, "news", "after refusal").await;
    sse.read_until(b"data: after refusal\n\n\r\n", WAIT).await;
    c.read_until(b"data: after refusal\n\n\r\n", WAIT).await;

    // once the pair is whole, the next poll loads it
    certs.add("broken.example.com");
    wait_for_cert(
        &gw,
        &certs,
        "broken.example.com",
        "broken.example.com",
        Duration::from_secs(10),
    )
    .await;
}

/// Runs the binary with `args` until it exits (bounded); its exit code and stderr.
fn run_to_exit(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gripway"))
        .args([
            "--port",
            "127.0.0.1:0",
            "--publish-port",
            "127.0.0.1:0",
            "--admin-port",
            "127.0.0.1:0",
        ])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gripway starts");
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("gripway kept running with {args:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    (status.code(), err)
}

#[test]
fn a_certificate_without_its_key_stops_start_up_naming_the_file() {
    let certs = CertsDir::new(&["default", "api.example.com"]);
    std::fs::remove_file(certs.path().join("api.example.com.key")).unwrap();
    let dir = certs.path();
    let (code, err) = run_to_exit(&[
        "--tls-port",
        "127.0.0.1:0",
        "--tls-certs-dir",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("api.example.com"), "names the file: {err}");
    assert!(!err.contains("clients (TLS) on"), "{err}");

    // a key that is not PEM
    let certs = CertsDir::new(&["default"]);
    std::fs::write(certs.path().join("default.key"), "not a key\n").unwrap();
    let dir = certs.path();
    let (code, err) = run_to_exit(&[
        "--tls-port",
        "127.0.0.1:0",
        "--tls-certs-dir",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("default.key"), "names the file: {err}");
}

#[tokio::test]
async fn a_refused_handshake_tells_the_client_why_with_an_alert() {
    // no `default`: a name with no certificate is refused
    let certs = CertsDir::new(&["localhost"]);
    let gw = gripway_tls(&certs, &[]);
    let ca = certs.ca_path();
    let ca = ca.to_str().unwrap();
    for (what, args, alert) in [
        (
            "no shared cipher suite",
            &[
                "-tls1_2",
                "-cipher",
                "AES128-SHA",
                "-servername",
                "localhost",
            ][..],
            "alert handshake failure",
        ),
        (
            "TLS 1.1 only",
            &[
                "-tls1_1",
                "-cipher",
                "DEFAULT:@SECLEVEL=0",
                "-servername",
                "localhost",
            ][..],
            // rustls answers a hello without TLS 1.2 or 1.3 with handshake_failure
            "alert handshake failure",
        ),
        (
            "a name with no certificate",
            &["-servername", "nobody.example.com", "-CAfile", ca][..],
            "alert",
        ),
    ] {
        let out = s_client(tls_addr(&gw), args);
        assert!(
            out.contains(alert),
            "{what}: an alert, not a bare close:\n{out}"
        );
    }
    // rustls as the client says the same
    let Err(err) =
        try_tls_connect(tls_addr(&gw), certs.client_config(H1), "nobody.example.com").await
    else {
        panic!("a name with no certificate was served");
    };
    assert!(
        err.to_string().contains("alert"),
        "the client was told: {err}"
    );
}

#[tokio::test]
async fn a_client_hello_split_across_records_is_served() {
    let certs = CertsDir::new(&["localhost"]);
    let gw = gripway_tls(&certs, &[]);
    // 70 ALPN names of 250 bytes (http/1.1 last): rustls sends a 17.8 KB hello as records
    // of 16,384 and 1,442 bytes
    let mut config = (*certs.client_config(H1)).clone();
    config.alpn_protocols = (0..70).map(|i| format!("{i:0>250}").into_bytes()).collect();
    config.alpn_protocols.push(b"http/1.1".to_vec());
    let mut c = TlsClient::from_stream(
        tls_connect(tls_addr(&gw), std::sync::Arc::new(config), "localhost").await,
    );
    assert_eq!(
        c.stream().get_ref().1.alpn_protocol(),
        Some(&b"http/1.1"[..])
    );
    c.get("/", &["Connection: close"]).await;
    assert!(c.read_head().await.starts_with("HTTP/1.1 "));
}
