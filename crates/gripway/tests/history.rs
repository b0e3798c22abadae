//! History and recovery against the binary: SSE clients reconnecting with `Last-Event-ID`
//! (header or query parameter) get what they missed, in order, then live items, with no gap
//! and no duplicate; a `prev-id` from the origin does the same for any stream, and a
//! long-poll gets the next item at once; a client history cannot serve is told so.

mod common;

use std::time::Duration;

use common::*;

fn sse_reply(channels: &[&str]) -> Reply {
    let mut r = Reply::ok()
        .header("Content-Type", "text/event-stream")
        .header("Grip-Hold", "stream");
    for c in channels {
        r = r.header("Grip-Channel", c);
    }
    r.body("event: open\ndata: hi\n\n")
}

/// One SSE event with id `id` published to `channel`.
fn event_item(channel: &str, id: &str) -> serde_json::Value {
    serde_json::json!({
        "channel": channel,
        "id": id,
        "formats": {"http-stream": {"content": format!("id: {id}\ndata: {id}\n\n")}}
    })
}

async fn publish_events(gw: &Gripway, channel: &str, ids: &[String]) {
    let items: Vec<_> = ids.iter().map(|id| event_item(channel, id)).collect();
    let body = serde_json::json!({ "items": items }).to_string();
    assert_eq!(publish(&gw.publish_url(), &body).await.0, 200);
}

/// Waits until history holds `n` items (a publish is acknowledged once queued, before the
/// broker keeps it).
async fn settled(gw: &Gripway, n: usize) {
    for _ in 0..200 {
        if gw.metric("gripway_history_items").await == Some(n as f64) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("history never held {n} items");
}

fn ids(range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|n| format!("e{n}")).collect()
}

/// The `data:` values of the events in `bytes`, in order.
fn data_lines(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter_map(|l| l.strip_prefix("data: ").map(str::to_string))
        .collect()
}

/// Publishes e0..e9 with nobody listening, so history is all there is.
async fn channel_with_history() -> (Origin, Gripway) {
    let origin = Origin::start(|_| sse_reply(&["news"])).await;
    let gw = gripway_to(&origin, &[]);
    publish_events(&gw, "news", &ids(0..10)).await;
    settled(&gw, 10).await;
    (origin, gw)
}

#[tokio::test]
async fn last_event_id_header_recovers_what_followed_it_then_live_items() {
    let (_origin, gw) = channel_with_history().await;
    let mut c = RawClient::connect(gw.addr).await;
    c.get("/events", &["Last-Event-ID: e6"]).await;
    let mut got = c.read_until(b"data: e9\n\n", WAIT).await;
    publish_events(&gw, "news", &ids(10..12)).await;
    got.extend(c.read_until(b"data: e11\n\n", WAIT).await);
    assert_eq!(
        data_lines(&got),
        ["hi", "e7", "e8", "e9", "e10", "e11"],
        "recovered items after the initial body, then live, each once"
    );
    assert_eq!(
        gw.metric("gripway_history_recoveries_total{result=\"after\"}")
            .await,
        Some(1.0)
    );
    assert_eq!(
        gw.metric("gripway_history_recovered_items_total").await,
        Some(3.0)
    );
}

#[tokio::test]
async fn last_event_id_query_parameter_works_like_the_header() {
    let (_origin, gw) = channel_with_history().await;
    let mut c = RawClient::connect(gw.addr).await;
    c.get("/events?x=1&lastEventId=e8", &[]).await;
    let got = c.read_until(b"data: e9\n\n", WAIT).await;
    assert_eq!(data_lines(&got), ["hi", "e9"]);
}

#[tokio::test]
async fn the_origin_is_asked_as_usual_and_decides_the_channels() {
    let origin = Origin::start(|req| {
        if req.path.starts_with("/sports") {
            sse_reply(&["sports"])
        } else {
            sse_reply(&["news"])
        }
    })
    .await;
    let gw = gripway_to(&origin, &[]);
    publish_events(&gw, "news", &ids(0..3)).await;
    publish_events(&gw, "sports", &["s0".into(), "s1".into()]).await;
    settled(&gw, 5).await;
    let mut c = RawClient::connect(gw.addr).await;
    c.get("/sports", &["Last-Event-ID: s0"]).await;
    let got = c.read_for(Duration::from_millis(300)).await;
    assert_eq!(data_lines(&got), ["hi", "s1"]);
    let req = origin.last_request();
    assert_eq!(
        req.header("last-event-id"),
        Some("s0"),
        "origin sees it too"
    );
}

#[tokio::test]
async fn an_id_older_than_the_process_gets_everything_kept() {
    // nothing was evicted since start: the client is older than the process
    let (_origin, gw) = channel_with_history().await;
    let mut c = RawClient::connect(gw.addr).await;
    c.get("/events", &["Last-Event-ID: from-before-a-restart"])
        .await;
    let got = c.read_until(b"data: e9\n\n", WAIT).await;
    let want: Vec<String> = std::iter::once("hi".to_string())
        .chain(ids(0..10))
        .collect();
    assert_eq!(data_lines(&got), want);
    assert_eq!(
        gw.metric("gripway_history_recoveries_total{result=\"complete\"}")
            .await,
        Some(1.0)
    );
}

#[tokio::test]
async fn history_that_does_not_reach_back_sends_a_gap_event() {
    let origin = Origin::start(|_| sse_reply(&["news"])).await;
    let dir = TempDir::new("history-gap");
    let config = dir.write("gripway.toml", "[history]\nmax_items = 3\n");
    let gw = gripway_to(&origin, &["--config", config.to_str().unwrap()]);
    publish_events(&gw, "news", &ids(0..10)).await;
    settled(&gw, 3).await;
    let mut c = RawClient::connect(gw.addr).await;
    c.get("/events", &["Last-Event-ID: e2"]).await;
    let got = c.read_until(b"data: e9\n\n", WAIT).await;
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.contains(
            "event: history-gap\ndata: {\"channel\":\"news\",\"last-event-id\":\"e2\"}\n\n"
        ),
        "{text}"
    );
    let data = data_lines(&got);
    assert_eq!(data[2..], ["e7", "e8", "e9"], "then what is kept: {data:?}");
    assert_eq!(
        gw.metric("gripway_history_recoveries_total{result=\"gap\"}")
            .await,
        Some(1.0)
    );
    let evicted = gw
        .metric("gripway_history_evictions_total{reason=\"count\"}")
        .await;
    assert_eq!(evicted, Some(7.0));
}

#[tokio::test]
async fn reconnects_during_a_publish_storm_get_every_item_once_in_order() {
    let origin = Origin::start(|_| sse_reply(&["storm"])).await;
    // history holds all 200 items: what is checked is the hand-over on every reconnect, not
    // the bound (a client on a loaded machine may fall far behind)
    let dir = TempDir::new("history-storm");
    let config = dir.write("gripway.toml", "[history]\nmax_items = 1000\n");
    let gw = gripway_to(&origin, &["--config", config.to_str().unwrap()]);
    let publisher = {
        let url = gw.publish_url();
        tokio::spawn(async move {
            for n in 0..200u32 {
                let body = serde_json::json!({"items": [event_item("storm", &format!("e{n}"))]})
                    .to_string();
                assert_eq!(publish(&url, &body).await.0, 200);
                if n % 20 == 0 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        })
    };
    // a client that keeps reconnecting with the last id it saw
    let mut seen: Vec<String> = Vec::new();
    let mut rounds = 0;
    while seen.last().map(String::as_str) != Some("e199") {
        rounds += 1;
        assert!(rounds < 500, "never caught up: {:?}", seen.last());
        let mut c = RawClient::connect(gw.addr).await;
        match seen.last() {
            Some(id) => c.get("/", &[&format!("Last-Event-ID: {id}")]).await,
            None => c.get("/", &[]).await,
        }
        let got = c.read_for(Duration::from_millis(15)).await;
        seen.extend(data_lines(&got).into_iter().filter(|d| d != "hi"));
    }
    publisher.await.unwrap();
    // the first connection may start after a few items: it missed nothing it was owed
    let first: u32 = seen[0][1..].parse().unwrap();
    let want: Vec<String> = ids(first..200);
    assert_eq!(seen, want, "no gap, no duplicate, in order");
}

#[tokio::test]
async fn no_recover_route_option_leaves_last_event_id_to_the_origin() {
    let origin = Origin::start(|_| sse_reply(&["news"])).await;
    let route = format!("*,no_recover {}", origin.target());
    let gw = gripway(&["--route", &route]);
    publish_events(&gw, "news", &ids(0..3)).await;
    settled(&gw, 3).await;
    let mut c = RawClient::connect(gw.addr).await;
    c.get("/", &["Last-Event-ID: e0"]).await;
    let got = c.read_for(Duration::from_millis(300)).await;
    assert_eq!(data_lines(&got), ["hi"]);
}

fn response_item(channel: &str, id: &str, prev: Option<&str>) -> serde_json::Value {
    let mut item = serde_json::json!({
        "channel": channel,
        "id": id,
        "formats": {"http-response": {"body": format!("{id}\n")}}
    });
    if let Some(p) = prev {
        item["prev-id"] = p.into();
    }
    item
}

#[tokio::test]
async fn a_long_poll_whose_prev_id_history_kept_gets_the_next_item_at_once() {
    let origin = Origin::start(|_| {
        Reply::ok()
            .header("Grip-Hold", "response")
            .header("Grip-Channel", "lp; prev-id=r3")
            .body("timeout\n")
    })
    .await;
    let gw = gripway_to(&origin, &[]);
    let items: Vec<_> = (0..6)
        .map(|n| {
            let prev = (n > 0).then(|| format!("r{}", n - 1));
            response_item("lp", &format!("r{n}"), prev.as_deref())
        })
        .collect();
    let body = serde_json::json!({ "items": items }).to_string();
    assert_eq!(publish(&gw.publish_url(), &body).await.0, 200);
    settled(&gw, 6).await;
    let started = std::time::Instant::now();
    let mut c = RawClient::connect(gw.addr).await;
    c.get("/poll", &[]).await;
    let got = c.read_until(b"r4\n", WAIT).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered at once"
    );
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
    assert_eq!(origin.requests().len(), 1, "the origin was not asked again");
}

#[tokio::test]
async fn a_stream_whose_prev_id_history_kept_gets_every_missed_item_then_live_ones() {
    let origin = Origin::start(|_| {
        Reply::ok()
            .header("Content-Type", "text/plain")
            .header("Grip-Hold", "stream")
            .header("Grip-Channel", "st; prev-id=e3")
            .body("start\n")
    })
    .await;
    let gw = gripway_to(&origin, &[]);
    let items: Vec<_> = (0..6)
        .map(|n| {
            serde_json::json!({"channel": "st", "id": format!("e{n}"),
                "formats": {"http-stream": {"content": format!("e{n};")}}})
        })
        .collect();
    let body = serde_json::json!({ "items": items }).to_string();
    assert_eq!(publish(&gw.publish_url(), &body).await.0, 200);
    settled(&gw, 6).await;
    let mut c = RawClient::connect(gw.addr).await;
    c.get("/s", &[]).await;
    let mut got = c.read_until(b"e5;", WAIT).await;
    let body = serde_json::json!({"items": [{"channel": "st", "id": "e6",
        "formats": {"http-stream": {"content": "e6;"}}}]})
    .to_string();
    assert_eq!(publish(&gw.publish_url(), &body).await.0, 200);
    got.extend(c.read_until(b"e6;", WAIT).await);
    let text = String::from_utf8_lossy(&got);
    let order: Vec<&str> = ["start", "e4;", "e5;", "e6;"]
        .iter()
        .map(|n| {
            assert_eq!(text.matches(n).count(), 1, "{n} once in {text}");
            *n
        })
        .collect();
    let pos: Vec<usize> = order.iter().map(|n| text.find(n).unwrap()).collect();
    assert!(pos.windows(2).all(|w| w[0] < w[1]), "in order: {text}");
    assert!(
        !text.contains("e3;"),
        "nothing the origin already sent: {text}"
    );
}

#[tokio::test]
async fn with_history_off_a_stream_prev_id_needs_a_next_link_as_in_pushpin() {
    let origin = Origin::start(|_| {
        Reply::ok()
            .header("Grip-Hold", "stream")
            .header("Grip-Channel", "st; prev-id=e3")
            .body("start\n")
    })
    .await;
    let dir = TempDir::new("history-off");
    let config = dir.write("gripway.toml", "[history]\nmax_items = 0\n");
    let gw = gripway_to(&origin, &["--config", config.to_str().unwrap()]);
    let mut c = RawClient::connect(gw.addr).await;
    c.get("/s", &["Last-Event-ID: e1"]).await;
    let head = c.read_head().await;
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    assert_eq!(gw.metric("gripway_history_items").await, Some(0.0));
}

/// `GET` on the publish listener: (status, body).
async fn get_history(gw: &Gripway, path: &str, headers: &[&str]) -> (u16, String) {
    let mut c = RawClient::connect(gw.publish_addr).await;
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    c.send(req.as_bytes()).await;
    let all = String::from_utf8_lossy(&c.read_to_end(WAIT).await).into_owned();
    let status = all.split(' ').nth(1).unwrap().parse().unwrap();
    let body = all.split_once("\r\n\r\n").unwrap().1.to_string();
    (status, body)
}

#[tokio::test]
async fn the_publish_api_answers_what_followed_an_id_as_publish_items() {
    let (_origin, gw) = channel_with_history().await;
    let (status, body) = get_history(&gw, "/history/news?after=e6", &[]).await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["reach"], "after");
    assert_eq!(v["more"], false);
    let items = v["items"].as_array().unwrap();
    let got: Vec<&str> = items.iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(got, ["e7", "e8", "e9"]);
    assert_eq!(
        items[0]["formats"]["http-stream"]["content"],
        "id: e7\ndata: e7\n\n"
    );
    assert!(items[0]["seq"].as_u64().unwrap() < items[1]["seq"].as_u64().unwrap());
    // paging
    let (_, body) = get_history(&gw, "/history/news?limit=4", &[]).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["more"], true);
    assert_eq!(v["items"].as_array().unwrap().len(), 4);
    // the items can be published again as they are
    let republish = serde_json::json!({ "items": v["items"] }).to_string();
    assert_eq!(publish(&gw.publish_url(), &republish).await.0, 200);
    // bad input is the publisher's fault
    let (status, _) = get_history(&gw, "/history/news?limit=0", &[]).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn reading_history_needs_the_publish_credentials() {
    let dir = TempDir::new("history-auth");
    let config = dir.write("gripway.toml", "[publish.auth]\nkeys = [\"k1\"]\n");
    let gw = gripway(&["--config", config.to_str().unwrap()]);
    let (status, _) = get_history(&gw, "/history/news", &[]).await;
    assert_eq!(status, 401);
    let (status, body) = get_history(&gw, "/history/news", &["Authorization: Bearer k1"]).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn sse_id_route_option_writes_the_id_line_so_last_event_id_works() {
    let origin = Origin::start(|_| sse_reply(&["plain"])).await;
    let route = format!("*,sse_id {}", origin.target());
    let gw = gripway(&["--route", &route]);
    let mut c = RawClient::connect(gw.addr).await;
    c.get("/", &[]).await;
    c.read_until(b"data: hi\n\n", WAIT).await;
    // content without an id line gets one; content with its own is left alone
    let body = serde_json::json!({"items": [
        {"channel": "plain", "id": "p1", "formats": {"http-stream": {"content": "data: one\n\n"}}},
        {"channel": "plain", "id": "p2", "formats": {"http-stream": {"content": "id: own\ndata: two\n\n"}}},
        {"channel": "plain", "formats": {"http-stream": {"content": "data: three\n\n"}}}
    ]})
    .to_string();
    assert_eq!(publish(&gw.publish_url(), &body).await.0, 200);
    let got = c.read_until(b"data: three\n\n", WAIT).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.contains("id: p1\ndata: one\n\n"), "{text}");
    assert!(text.contains("id: own\ndata: two\n\n"), "{text}");
    assert!(!text.contains("id: p2"), "{text}");
    // and a client reconnecting with that id resumes after it
    let mut c = RawClient::connect(gw.addr).await;
    c.get("/", &["Last-Event-ID: p1"]).await;
    let got = c.read_for(Duration::from_millis(300)).await;
    assert_eq!(data_lines(&got), ["hi", "two"]);
}
