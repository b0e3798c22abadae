//! Origin-assisted recovery against the real binary: `Grip-Link; rel=gone` told when the
//! client leaves, `POST /recover` re-requesting a long-poll with `Grip-Last` (and asking for
//! the publish API's credentials), a pager followed to its end, and the floor on the
//! next-link interval that keeps `timeout=0` from spinning.

mod common;

use std::time::Duration;

use common::*;

fn count(origin: &Origin, method: &str, path: &str) -> usize {
    origin
        .requests()
        .iter()
        .filter(|r| r.method == method && r.path == path)
        .count()
}

async fn wait_for(mut f: impl FnMut() -> bool, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

#[tokio::test]
async fn gone_link_is_posted_when_the_client_leaves() {
    let origin = Origin::start(|req| {
        if req.path == "/gone" {
            return Reply::ok();
        }
        Reply::ok()
            .header("Content-Type", "text/plain")
            .header("Grip-Hold", "stream")
            .header("Grip-Channel", "g")
            .header("Grip-Link", "</gone>; rel=gone")
            .body("open\n")
    })
    .await;
    let gw = gripway_to(&origin, &[]);
    let mut c = RawClient::connect(gw.addr).await;
    c.get("/s", &[]).await;
    c.read_until(b"open\n", WAIT).await;
    assert_eq!(
        count(&origin, "POST", "/gone"),
        0,
        "not while the client is there"
    );
    drop(c);
    assert!(
        wait_for(|| count(&origin, "POST", "/gone") == 1, WAIT).await,
        "gone link posted once: {:?}",
        origin.requests()
    );
    let gone = origin
        .requests()
        .into_iter()
        .find(|r| r.path == "/gone")
        .unwrap();
    assert!(gone.body.is_empty());
    assert!(
        gone.header("grip-sig").is_some(),
        "signed like any origin request"
    );
}

#[tokio::test]
async fn recover_re_requests_a_long_poll_with_grip_last() {
    let origin = Origin::start(|req| {
        if req.header("grip-last").is_some() {
            return Reply::ok().body("recovered\n");
        }
        Reply::ok()
            .header("Grip-Hold", "response")
            .header("Grip-Channel", "r; prev-id=5")
            .body("timeout\n")
    })
    .await;
    let gw = gripway_to(&origin, &[]);
    let mut c = RawClient::connect(gw.addr).await;
    c.get("/poll", &[]).await;
    assert!(wait_for(|| origin.requests().len() == 1, WAIT).await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let url = gw.publish_url().replace("/publish/", "/recover");
    let (status, body) = publish(&url, "").await;
    assert_eq!((status, body.as_str()), (200, "Updated\n"));
    c.read_until(b"recovered\n", WAIT).await;
    assert_eq!(
        origin.last_request().header("grip-last"),
        Some("r; last-id=5")
    );
}

#[tokio::test]
async fn recover_needs_the_publish_credentials() {
    let origin = Origin::start(|_| Reply::ok()).await;
    let dir = TempDir::new("recover-auth");
    let config = dir.write("gripway.toml", "[publish.auth]\nkeys = [\"sekrit\"]\n");
    let gw = gripway_to(&origin, &["--config", config.to_str().unwrap()]);
    let url = gw.publish_url().replace("/publish/", "/recover");
    assert_eq!(publish(&url, "").await.0, 401);
    let (status, body) = publish_with(&url, "", &[("Authorization", "Bearer sekrit")]).await;
    assert_eq!((status, body.as_str()), (200, "Updated\n"));
}

#[tokio::test]
async fn pager_is_followed_to_its_end() {
    let origin = Origin::start(|req| {
        let page: u32 = req.path.trim_start_matches("/p/").parse().unwrap_or(0);
        let mut reply = Reply::ok()
            .header("Content-Type", "text/plain")
            .body(format!("page {page}\n"));
        if page < 3 {
            reply = reply.header("Grip-Link", &format!("</p/{}>; rel=next", page + 1));
        }
        reply
    })
    .await;
    let gw = gripway_to(&origin, &[]);
    let mut c = RawClient::connect(gw.addr).await;
    c.get("/p/0", &[]).await;
    let all = c.read_until(b"0\r\n\r\n", WAIT).await;
    let text = String::from_utf8_lossy(&all);
    assert!(
        text.contains("transfer-encoding: chunked") || text.contains("Transfer-Encoding: chunked"),
        "{text}"
    );
    for page in 0..4 {
        assert!(text.contains(&format!("page {page}\n")), "{text}");
    }
    let pages: Vec<String> = origin.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(pages, ["/p/0", "/p/1", "/p/2", "/p/3"]);
}

#[tokio::test]
async fn next_link_timeout_zero_is_raised_to_the_floor() {
    let origin = Origin::start(|_| {
        Reply::ok()
            .header("Content-Type", "text/plain")
            .header("Grip-Hold", "stream")
            .header("Grip-Channel", "z")
            .header("Grip-Link", "</next>; rel=next; timeout=0")
            .body("x\n")
    })
    .await;
    let gw = gripway_to(&origin, &[]);
    let mut c = RawClient::connect(gw.addr).await;
    c.get("/start", &[]).await;
    c.read_until(b"x\n", WAIT).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let fetches = count(&origin, "GET", "/next");
    assert!(
        (1..=3).contains(&fetches),
        "about one fetch a second, not a loop: {fetches}"
    );
    assert_eq!(
        gw.metric("gripway_retries_total{reason=\"next-link-timeout\"}")
            .await,
        Some(fetches as f64)
    );
}
