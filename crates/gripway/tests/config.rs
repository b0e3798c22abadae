//! Starting and configuring gripway: Pushpin's defaults with the demo origin, config files
//! and routes files with errors that name file and line, routes reloads that keep held
//! connections, the `gripway publish` command, and TLS settings refused at start.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

fn run_expecting_failure(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gripway"))
        .args([
            "--port",
            "127.0.0.1:0",
            "--publish-port",
            "127.0.0.1:0",
            "--admin-port",
            "off",
        ])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn no_arguments_serve_the_demo_origin() {
    let gw = gripway(&[]);
    let mut sse = RawClient::connect(gw.addr).await;
    sse.get("/test/sse", &[]).await;
    let head = sse.read_head().await;
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/event-stream"),
        "{head}"
    );
    let mut stream = RawClient::connect(gw.addr).await;
    stream.get("/test/stream", &[]).await;
    stream.read_head().await;
    let mut poll = RawClient::connect(gw.addr).await;
    poll.get("/test/long-poll", &[]).await;
    for _ in 0..200 {
        if gw.metric("gripway_subscriptions").await == Some(3.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let body = r#"{"items":[{"channel":"test","formats":{
        "http-stream":{"content":"event: message\ndata: hello\n\n"},
        "http-response":{"body":"hello poll\n"}}}]}"#;
    assert_eq!(publish(&gw.publish_url(), body).await.0, 200);
    sse.read_until(b"event: message\ndata: hello\n\n", WAIT)
        .await;
    stream
        .read_until(b"event: message\ndata: hello\n\n", WAIT)
        .await;
    poll.read_until(b"hello poll\n", WAIT).await;
    let mut page = RawClient::connect(gw.addr).await;
    page.get("/", &[]).await;
    page.read_until(b"new EventSource('/test/sse')", WAIT).await;
}

#[test]
fn bad_config_file_names_file_and_line() {
    let dir = TempDir::new("badconf");
    let path = dir.write(
        "gripway.toml",
        "[server]\npublish_port = \"127.0.0.1:0\"\nbogus_key = 1\n",
    );
    let (code, err) = run_expecting_failure(&["--config", path.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains(&format!("{}:3:", path.display())), "{err}");
    assert!(err.contains("bogus_key"), "{err}");
}

#[test]
fn bad_routes_file_names_file_and_line() {
    let dir = TempDir::new("badroutes");
    let routes = dir.write(
        "routes",
        "# comment\n* 127.0.0.1:8080\n*,path_beg=/x,nonsense_option 127.0.0.1:9\n",
    );
    let conf = dir.write("gripway.toml", "[server]\nroutes_file = \"routes\"\n");
    let (code, err) = run_expecting_failure(&["--config", conf.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains(&format!("{}:3:", routes.display())), "{err}");
    assert!(err.contains("nonsense_option"), "{err}");

    let (code, err) = run_expecting_failure(&["--route", "* 127.0.0.1:notaport"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("route 1"), "{err}");
}

#[test]
fn bad_flags_exit_2() {
    let (code, _) = run_expecting_failure(&["--port", "nowhere"]);
    assert_eq!(code, Some(2));
    let (code, _) = run_expecting_failure(&["--no-such-flag"]);
    assert_eq!(code, Some(2));
}

#[tokio::test]
async fn routes_file_reloads_without_dropping_held_connections() {
    let sse = |tag: &'static str| {
        move |_: &OriginRequest| {
            Reply::ok()
                .header("Content-Type", "text/event-stream")
                .header("Grip-Hold", "stream")
                .header("Grip-Channel", "reload")
                .body(format!("served by {tag}\n"))
        }
    };
    let a = Origin::start(sse("A")).await;
    let b = Origin::start(sse("B")).await;
    let dir = TempDir::new("reload");
    let routes = dir.write("routes", &format!("* {}\n", a.target()));
    let conf = dir.write("gripway.toml", "[server]\nroutes_file = \"routes\"\n");
    let gw = gripway(&["--config", conf.to_str().unwrap()]);

    let mut held = RawClient::connect(gw.addr).await;
    held.get("/", &[]).await;
    held.read_until(b"served by A\n", WAIT).await;

    // a broken file is refused and the old routes stay
    write_slowly(&routes, "* 127.0.0.1:notaport\n");
    assert!(
        gw.wait_for_log("routes not reloaded", Duration::from_secs(5)),
        "{}",
        gw.log()
    );
    let mut c = RawClient::connect(gw.addr).await;
    c.get("/", &[]).await;
    c.read_until(b"served by A\n", WAIT).await;

    write_slowly(&routes, &format!("* {}\n", b.target()));
    assert!(
        gw.wait_for_log("routes reloaded", Duration::from_secs(5)),
        "{}",
        gw.log()
    );
    let mut c = RawClient::connect(gw.addr).await;
    c.get("/", &[]).await;
    c.read_until(b"served by B\n", WAIT).await;

    // the connection held before both reloads still gets what is published
    publish(&gw.publish_url(), &stream_item("reload", "still here\n")).await;
    held.read_until(b"still here\n", WAIT).await;
}

/// Rewrites a file so its modification time surely changes.
fn write_slowly(path: &Path, text: &str) {
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(path, text).unwrap();
}

#[tokio::test]
async fn publish_command_reaches_subscribers() {
    let gw = gripway(&[]);
    let mut sse = RawClient::connect(gw.addr).await;
    sse.get("/test/stream", &[]).await;
    sse.read_head().await;
    for _ in 0..200 {
        if gw.metric("gripway_subscriptions").await == Some(1.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let spec = format!("http://{}", gw.publish_addr);
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_gripway"))
        .args([
            "publish",
            "test",
            "hello from the cli",
            "--id",
            "c1",
            "--spec",
            &spec,
        ])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Published\n");
    sse.read_until(b"hello from the cli\n", WAIT).await;

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_gripway"))
        .args(["publish", "test", "--close", "--spec", &spec])
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    sse.read_until(b"0\r\n\r\n", WAIT).await;

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_gripway"))
        .args(["publish", "test", "x", "--spec", "http://127.0.0.1:1"])
        .output()
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "unreachable publish API is an error"
    );
}

#[test]
fn default_sig_key_to_a_remote_origin_is_warned_about() {
    let warning = "INSECURE: this route signs Grip-Sig with the default key";
    // 192.0.2.1 (TEST-NET-1) is never connected to: the warning comes at start
    let gw = gripway(&["--route", "* 192.0.2.1:80"]);
    assert!(gw.wait_for_log(warning, WAIT), "{}", gw.log());
    assert!(gw.log().contains("192.0.2.1"), "{}", gw.log());
    // loopback origins and a real key are fine
    let quiet = gripway(&["--route", "* 127.0.0.1:9", "--route", "* localhost:9"]);
    let keyed = gripway(&["--route", "*,sig_key=s3cret 192.0.2.1:80"]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(!quiet.log().contains(warning), "{}", quiet.log());
    assert!(!keyed.log().contains(warning), "{}", keyed.log());
}

#[test]
fn an_inline_pem_that_does_not_parse_is_a_config_error() {
    let dir = TempDir::new("inlinepem");
    let path = dir.write(
        "gripway.toml",
        "[server]\npublish_port = \"127.0.0.1:0\"\n[publish.auth]\njwt_keys = [\"\"\"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n\"\"\"]\n",
    );
    let (code, err) = run_expecting_failure(&["--config", path.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("jwt_keys: inline PEM key"), "{err}");
}

#[test]
fn a_tls_certs_dir_that_is_not_a_directory_stops_start_up() {
    let dir = TempDir::new("tlsnotdir");
    let not_dir = dir.write("certs.pem", "not a directory");
    // relative to the config file's directory, like the other paths in it
    let path = dir.write(
        "gripway.toml",
        "[server]\ntls_port = \"127.0.0.1:0\"\n[tls]\ncerts_dir = \"certs.pem\"\n",
    );
    let (code, err) = run_expecting_failure(&["--config", path.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "{}: [tls] certs_dir is not a directory",
            not_dir.display()
        )),
        "{err}"
    );
}

#[test]
fn a_key_that_does_not_match_its_certificate_stops_start_up() {
    let certs = gripway_test_support::tls::CertsDir::new(&["localhost", "a.example.com"]);
    let key = certs.path().join("a.example.com.key");
    std::fs::copy(certs.path().join("localhost.key"), &key).unwrap();
    let (code, err) = run_expecting_failure(&[
        "--tls-port",
        "127.0.0.1:0",
        "--tls-certs-dir",
        certs.path().to_str().unwrap(),
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains(&format!("{}: ", key.display())), "{err}");
    assert!(err.contains("does not match the certificate"), "{err}");
}
