//! The proxy without GRIP: what the client sends reaches the origin, what the origin answers
//! reaches the client unchanged, and failures are answered clearly.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test]
async fn forwards_method_path_query_headers_and_body() {
    let origin = Origin::start(|_| Reply::ok().body("fine")).await;
    let gw = gripway_to(&origin, &[]);
    let mut c = RawClient::connect(gw.addr).await;
    c.send(b"PUT /a/b?x=1&y=2 HTTP/1.1\r\nHost: example.com\r\nX-Custom: one\r\nX-Custom: two\r\nContent-Length: 5\r\n\r\nhello")
        .await;
    let head = c.read_head().await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    c.read_until(b"fine", WAIT).await;
    let req = origin.last_request();
    assert_eq!(req.method, "PUT");
    assert_eq!(req.path, "/a/b?x=1&y=2");
    assert_eq!(req.header("host"), Some("example.com"));
    assert_eq!(req.header_all("x-custom"), vec!["one", "two"]);
    assert_eq!(req.body, b"hello");
}

#[tokio::test]
async fn decodes_chunked_request_bodies() {
    let origin = Origin::start(|r| Reply::ok().body(format!("got {} bytes", r.body.len()))).await;
    let gw = gripway_to(&origin, &[]);
    let mut c = RawClient::connect(gw.addr).await;
    c.send(b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        .await;
    c.read_until(b"got 11 bytes", WAIT).await;
    assert_eq!(origin.last_request().body, b"hello world");
    assert_eq!(origin.last_request().header("content-length"), Some("11"));
}

#[tokio::test]
async fn drops_hop_by_hop_and_appends_forwarded_for() {
    let origin = Origin::start(|_| Reply::ok()).await;
    let gw = gripway_to(&origin, &[]);
    let mut c = RawClient::connect(gw.addr).await;
    c.get(
        "/",
        &[
            "Connection: keep-alive, X-Secret-Hop",
            "X-Secret-Hop: 1",
            "Keep-Alive: timeout=5",
            "X-Forwarded-For: 203.0.113.9",
            "X-Forwarded-Proto: https",
        ],
    )
    .await;
    c.read_head().await;
    let req = origin.last_request();
    assert_eq!(req.header("x-secret-hop"), None);
    assert_eq!(req.header("keep-alive"), None);
    assert_eq!(
        req.header("x-forwarded-for"),
        Some("203.0.113.9, 127.0.0.1")
    );
    assert_eq!(
        req.header("x-forwarded-proto"),
        None,
        "a plain-HTTP client may not claim https"
    );
}

#[tokio::test]
async fn clients_cannot_forge_grip_headers() {
    let origin = Origin::start(|_| Reply::ok()).await;
    let gw = gripway_to(&origin, &[]);
    let mut c = RawClient::connect(gw.addr).await;
    c.get(
        "/",
        &[
            "Grip-Sig: forged.token.here",
            "Grip-Channel: admin",
            "grip-last: x; last-id=1",
        ],
    )
    .await;
    c.read_head().await;
    let req = origin.last_request();
    let grip: Vec<_> = req
        .headers
        .iter()
        .filter(|(k, _)| k.to_ascii_lowercase().starts_with("grip-"))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect();
    assert!(
        grip.iter()
            .all(|(k, v)| k != "grip-channel" && k != "grip-last" && v != "forged.token.here"),
        "{grip:?}"
    );
    assert!(
        req.header("grip-sig").is_some(),
        "Gripway signs requests with its own key"
    );
    assert!(req.header("grip-feature").is_some());
}

#[tokio::test]
async fn relays_status_reason_and_repeated_headers_unchanged() {
    let origin = Origin::start(|_| {
        Reply::status(299)
            .reason("Quite Unusual")
            .header("Set-Cookie", "a=1")
            .header("Set-Cookie", "b=2")
            .header("X-Origin", "yes")
            .body("body!")
    })
    .await;
    let gw = gripway_to(&origin, &[]);
    let mut c = RawClient::connect(gw.addr).await;
    c.get("/", &[]).await;
    let head = c.read_head().await;
    assert!(head.starts_with("HTTP/1.1 299 Quite Unusual\r\n"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(
        lower.contains("set-cookie: a=1\r\n") && lower.contains("set-cookie: b=2\r\n"),
        "{head}"
    );
    assert!(lower.contains("x-origin: yes\r\n"));
    assert!(lower.contains("content-length: 5\r\n"));
    c.read_until(b"body!", WAIT).await;
}

#[tokio::test]
async fn relays_large_chunked_and_close_delimited_bodies() {
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let parts: Vec<Vec<u8>> = big.chunks(100_000).map(<[u8]>::to_vec).collect();
    let body_for_close = big.clone();
    let origin = Origin::start(move |r| match r.path.as_str() {
        "/chunked" => Reply::ok().chunked(parts.clone()),
        _ => Reply::ok().body(body_for_close.clone()).close_delimited(),
    })
    .await;
    let gw = gripway_to(&origin, &[]);

    // HTTP/1.1 client: chunked from the origin stays chunked
    let mut c = RawClient::connect(gw.addr).await;
    c.send(b"GET /chunked HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    let all = c.read_to_end(Duration::from_secs(20)).await;
    let (head, body) = split_response(&all);
    assert!(
        head.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    assert_eq!(dechunk(body), big);

    // close-delimited origin body to an HTTP/1.1 client: re-framed as chunked
    let mut c = RawClient::connect(gw.addr).await;
    c.send(b"GET /close HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    let all = c.read_to_end(Duration::from_secs(20)).await;
    let (head, body) = split_response(&all);
    assert!(
        head.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    assert_eq!(dechunk(body), big);

    // HTTP/1.0 client: no chunking, the body ends with the connection
    let mut c = RawClient::connect(gw.addr).await;
    c.send(b"GET /chunked HTTP/1.0\r\nHost: x\r\n\r\n").await;
    let all = c.read_to_end(Duration::from_secs(20)).await;
    let (head, body) = split_response(&all);
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding"),
        "{head}"
    );
    assert_eq!(body, &big[..]);
}

#[tokio::test]
async fn keeps_client_connections_alive() {
    let origin = Origin::start(|r| Reply::ok().body(r.path.clone())).await;
    let gw = gripway_to(&origin, &[]);
    let mut c = RawClient::connect(gw.addr).await;
    for i in 0..3 {
        c.get(&format!("/n{i}"), &[]).await;
        c.read_head().await;
        c.read_until(format!("/n{i}").as_bytes(), WAIT).await;
    }
    // pipelined requests are answered in order
    c.send(b"GET /p1 HTTP/1.1\r\nHost: x\r\n\r\nGET /p2 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    c.read_until(b"/p1", WAIT).await;
    c.read_until(b"/p2", WAIT).await;
}

#[tokio::test]
async fn dead_origin_fails_over_then_gives_502() {
    // a port that is bound but not listening: connections to it are refused, and no other
    // socket (the gateway's own listener, say) can take it while the test runs
    let dead = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    dead.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    let dead_addr = dead.local_addr().unwrap().as_socket().unwrap();
    let origin = Origin::start(|_| Reply::ok().body("from the second target")).await;
    let route = format!("* {dead_addr} {}", origin.target());
    let gw = gripway(&["--route", &route]);
    let mut c = RawClient::connect(gw.addr).await;
    c.get("/", &[]).await;
    c.read_until(b"from the second target", WAIT).await;

    let only_dead = format!("* {dead_addr}");
    let gw = gripway(&["--route", &only_dead]);
    let mut c = RawClient::connect(gw.addr).await;
    c.get("/", &[]).await;
    let head = c.read_head().await;
    assert!(head.starts_with("HTTP/1.1 502 "), "{head}");
    c.read_until(b"Error while proxying to origin.", WAIT).await;
    assert!(
        gw.metric("gripway_origin_errors_total{route=\"line-1\",error=\"connect\"}")
            .await
            >= Some(1.0)
    );
}

#[tokio::test]
async fn no_matching_route_is_502() {
    let origin = Origin::start(|_| Reply::ok()).await;
    let route = format!("*,path_beg=/api {}", origin.target());
    let gw = gripway(&["--route", &route]);
    let mut c = RawClient::connect(gw.addr).await;
    c.get("/elsewhere", &[]).await;
    let all = c.read_to_end(WAIT).await;
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 502 "), "{text}");
    assert!(text.ends_with("Route not found\n"), "{text}");
}

#[tokio::test]
async fn route_options_rewrite_path_host_and_headers() {
    let origin = Origin::start(|_| Reply::ok()).await;
    let route = format!(
        "*,path_beg=/api/,replace_beg=/v2/,header=X-Env:test {},host=backend.internal",
        origin.target()
    );
    let gw = gripway(&["--route", &route]);
    let mut c = RawClient::connect(gw.addr).await;
    c.get("/api/items?q=1", &[]).await;
    c.read_head().await;
    let req = origin.last_request();
    assert_eq!(req.path, "/v2/items?q=1");
    assert_eq!(req.header("host"), Some("backend.internal"));
    assert_eq!(req.header("x-env"), Some("test"));
}

#[tokio::test]
async fn malformed_and_oversized_requests_get_clear_errors() {
    let origin = Origin::start(|_| Reply::ok()).await;
    let gw = gripway_to(&origin, &["--log-level", "info"]);
    let mut c = RawClient::connect(gw.addr).await;
    c.send(b"GARBAGE\r\n\r\n").await;
    let text = String::from_utf8_lossy(&c.read_to_end(WAIT).await).into_owned();
    assert!(text.starts_with("HTTP/1.1 400 "), "{text}");

    let mut c = RawClient::connect(gw.addr).await;
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(40_000)
    );
    c.send(huge.as_bytes()).await;
    let text = String::from_utf8_lossy(&c.read_to_end(WAIT).await).into_owned();
    assert!(text.starts_with("HTTP/1.1 431 "), "{text}");

    let mut c = RawClient::connect(gw.addr).await;
    c.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n")
        .await;
    let text = String::from_utf8_lossy(&c.read_to_end(WAIT).await).into_owned();
    assert!(text.starts_with("HTTP/1.1 413 "), "{text}");

    let mut c = RawClient::connect(gw.addr).await;
    c.send(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .await;
    let text = String::from_utf8_lossy(&c.read_to_end(WAIT).await).into_owned();
    assert!(
        text.starts_with("HTTP/1.1 400 "),
        "request smuggling shape refused: {text}"
    );
    assert!(
        origin.requests().is_empty(),
        "nothing bad reached the origin"
    );
    assert!(
        gw.metric("gripway_errors_total{source=\"client\",reason=\"bad-request-head\"}")
            .await
            >= Some(2.0)
    );
}

fn split_response(all: &[u8]) -> (String, &[u8]) {
    let i = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response head");
    (
        String::from_utf8_lossy(&all[..i]).into_owned(),
        &all[i + 4..],
    )
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size =
            usize::from_str_radix(std::str::from_utf8(&body[..line_end]).unwrap(), 16).unwrap();
        body = &body[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&body[..size]);
        assert_eq!(&body[size..size + 2], b"\r\n");
        body = &body[size + 2..];
    }
}

#[tokio::test]
async fn aco_routes_add_cross_origin_headers_to_relayed_and_held_responses() {
    let origin = Origin::start(|r| {
        if r.path == "/held" {
            Reply::ok()
                .header("Grip-Hold", "stream")
                .header("Grip-Channel", "cors")
                .header("X-Mine", "1")
        } else {
            Reply::ok().header("X-Mine", "1").body("plain")
        }
    })
    .await;
    let route = format!("*,aco {}", origin.target());
    let gw = gripway(&["--route", &route]);
    for path in ["/plain", "/held"] {
        let mut c = RawClient::connect(gw.addr).await;
        c.get(path, &["Origin: https://app.example"]).await;
        let head = c.read_head().await.to_ascii_lowercase();
        assert!(
            head.contains("access-control-allow-origin: https://app.example\r\n"),
            "{path}: {head}"
        );
        assert!(
            head.contains("access-control-allow-credentials: true\r\n"),
            "{path}: {head}"
        );
        assert!(
            head.contains("access-control-expose-headers: x-mine\r\n"),
            "{path}: {head}"
        );
    }
}

#[tokio::test]
async fn tls_targets_verify_certificates_unless_insecure() {
    let origin = Origin::start_tls(|_| Reply::ok().body("over tls")).await;
    let port = origin.addr.port();
    let insecure = format!("* localhost:{port},ssl,insecure");
    let gw = gripway(&["--route", &insecure]);
    let mut c = RawClient::connect(gw.addr).await;
    c.get("/", &[]).await;
    c.read_until(b"over tls", WAIT).await;

    // a self-signed certificate fails verification: the route fails clearly
    let verified = format!("* localhost:{port},ssl");
    let gw = gripway(&["--route", &verified]);
    let mut c = RawClient::connect(gw.addr).await;
    c.get("/", &[]).await;
    let head = c.read_head().await;
    assert!(head.starts_with("HTTP/1.1 502 "), "{head}");
    assert!(
        gw.metric("gripway_origin_errors_total{route=\"line-1\",error=\"tls\"}")
            .await
            >= Some(1.0)
    );
}

#[tokio::test]
async fn http10_request_without_host_gets_one_for_the_origin() {
    let origin = Origin::start(|_| Reply::ok().body("ok")).await;
    let gw = gripway_to(&origin, &[]);
    let mut c = RawClient::connect(gw.addr).await;
    c.send(b"GET /old HTTP/1.0\r\n\r\n").await;
    let all = String::from_utf8_lossy(&c.read_to_end(WAIT).await).into_owned();
    assert!(all.starts_with("HTTP/1.0 200 OK\r\n"), "{all}");
    assert_eq!(
        origin.last_request().header("host"),
        Some(origin.target().as_str())
    );
}

#[tokio::test]
async fn an_origin_that_stalls_its_instructions_is_given_up_on() {
    let origin = Origin::start(|_| {
        Reply::ok()
            .header("Grip-Hold", "stream")
            .header("Grip-Channel", "stalled")
            .body("partial")
            .stalled()
    })
    .await;
    let dir = TempDir::new("stall");
    let conf = dir.write("gripway.toml", "[proxy]\nresponse_timeout_ms = 500\n");
    let route = format!("*,debug {}", origin.target());
    let gw = gripway(&["--config", conf.to_str().unwrap(), "--route", &route]);
    let started = std::time::Instant::now();
    let mut c = RawClient::connect(gw.addr).await;
    c.get("/", &[]).await;
    let text = String::from_utf8_lossy(&c.read_to_end(WAIT).await).into_owned();
    assert!(text.starts_with("HTTP/1.1 502 "), "{text}");
    assert!(text.contains("not complete within"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(5));
}
