//! `GET /history/{channel}` on the publish listener: a channel's kept items, for an origin or
//! a tool that wants to read history (same credentials as publishing).
//!
//! Query parameters: `after` (an item id; the answer holds what followed it; without it,
//! everything kept) and `limit` (most items, default and maximum [`MAX_LIMIT`]). The answer
//! is JSON:
//!
//! ```json
//! {"channel": "news", "reach": "after", "epoch": 1733300000, "more": false,
//!  "items": [{"seq": 8, "channel": "news", "id": "e7", "prev-id": "e6",
//!             "formats": {"http-stream": {"content": "data: e7\n\n"}}}]}
//! ```
//!
//! `reach` says how far history went back toward `after`: `after` (it is kept: exactly what
//! followed it), `complete` (never kept, and nothing of the channel was dropped since the
//! store started: everything kept), or `gap` (something was dropped: the items are what is
//! left). Items are in publish order, each in the publish API's own item form, so a tool can
//! publish them again as they are. `more` is true when `limit` cut the answer: ask again
//! with `after` set to the last id.

use std::time::Instant;

use bytes::Bytes;
use gripway_broker::history::{After, Reach};
use gripway_proto::publish::FormatsJson;
use http::HeaderMap;
use serde_json::{json, Map, Value};

use crate::error::Refusal;
use crate::publish_listener::Answer;
use crate::Shared;

/// Most items one answer holds (and the default `limit`).
pub(crate) const MAX_LIMIT: usize = 1000;

/// Answers `GET /history/{channel}`; `name` is the path after `/history/`, still escaped.
pub(crate) async fn get(
    shared: &Shared,
    headers: &HeaderMap,
    name: &str,
    query: &str,
) -> Result<Answer, Refusal> {
    crate::publish_api::check_auth(shared, headers)?;
    let bad = |m: String| Refusal::publisher(400, "bad-history-request", m);
    let channel = percent_encoding::percent_decode_str(name)
        .decode_utf8()
        .map_err(|_| bad("Channel name is not valid UTF-8.".into()))?;
    if channel.is_empty() || channel.len() > shared.config.publish.limits.max_channel_bytes {
        return Err(bad("Channel name is empty or too long.".into()));
    }
    let mut after = None;
    let mut limit = MAX_LIMIT;
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "after" => after = Some(v.into_owned()),
            "limit" => {
                limit = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| bad(format!("'limit' must be 1 to {MAX_LIMIT}.")))?
            }
            _ => {}
        }
    }
    let from = match after.as_deref() {
        Some(id) => After::Id(id),
        None => After::Start,
    };
    let recovery = shared
        .broker
        .history()
        .read_after(&channel, from, limit, Instant::now())
        .await
        .map_err(|e| Refusal::internal(503, "history-unavailable", e.to_string()))?;
    let items: Vec<Value> = recovery
        .items
        .iter()
        .map(|k| {
            let item_src = k.msg.to_item();
            let mut item = Map::new();
            item.insert("seq".into(), k.seq.into());
            item.insert("channel".into(), item_src.channel.into());
            if let Some(id) = item_src.id {
                item.insert("id".into(), id.into());
            }
            if let Some(prev) = item_src.prev_id {
                item.insert("prev-id".into(), prev.into());
            }
            if !item_src.meta.is_empty() {
                let meta: Map<String, Value> = item_src
                    .meta
                    .into_iter()
                    .map(|(k, v)| (k, v.into()))
                    .collect();
                item.insert("meta".into(), meta.into());
            }
            let formats =
                serde_json::to_value(FormatsJson(&item_src.formats)).unwrap_or(Value::Null);
            item.insert("formats".into(), formats);
            Value::Object(item)
        })
        .collect();
    let reach = match recovery.reach {
        Reach::After => "after",
        Reach::Complete => "complete",
        Reach::Gap => "gap",
    };
    let body = json!({
        "channel": channel,
        "reach": reach,
        "epoch": recovery.epoch,
        "more": recovery.more,
        "items": items,
    });
    Ok(Answer::ok(
        "application/json",
        Bytes::from(format!("{body}\n")),
    ))
}
