//! Recovery from history: what a reconnecting client missed, read from the broker's history
//! store for the channels its hold subscribes to.
//!
//! A hold asks with an item id per channel: the origin's `prev-id` for that channel, or the
//! client's `Last-Event-ID` (header, or the `lastEventId` query parameter) for an SSE stream
//! whose origin gave none. The hand-over from history to live delivery has no gap and no
//! duplicate: the hold holds back the fan-out ([`super::sink::Sink::hold_back`]), subscribes,
//! reads history, then sends what it recovered followed by what was held back, less the items
//! that were in both ([`without_duplicates`]). The broker keeps an item before fanning it out,
//! so every item is either in the answer or reaches the subscription.
//!
//! How far history reaches decides what the client gets ([`Reach`]):
//!
//! * `After`: the id is kept: exactly the items that followed it;
//! * `Complete`: the id was never kept here and nothing of the channel was dropped since the
//!   store started (the client is older than this process): everything kept;
//! * `Gap`: something between the id and the oldest kept item was dropped. A stream with an
//!   origin fallback asks the origin; an SSE stream without one gets what is kept after a
//!   [`gap_event`] a page can listen for. Nothing is skipped silently: every read is counted
//!   in `gripway_history_recoveries_total{result}`.
//!
//! A `Last-Event-ID` names an item of one channel. On a hold with several channels, the
//! channels that kept that id recover after it; the others recover nothing (their items are
//! not ordered against it), unless none kept it, in which case each answers for itself.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use gripway_broker::history::{After, Reach};
use gripway_broker::Message;

use crate::Shared;

/// What a stream asks history for.
pub(crate) struct Wants {
    /// (channel with prefix, id to read after).
    pub(crate) ids: Vec<(String, String)>,
    /// The ids are the client's `Last-Event-ID` (see [`for_last_event_id`]).
    pub(crate) last_event_id: bool,
}

/// True when a stream hold asks history for something: the origin gave a `prev-id`, or
/// the client of an SSE stream a `Last-Event-ID`, and history is on.
pub(crate) fn stream_recovers(shared: &Shared, plan: &super::HoldPlan) -> bool {
    shared.broker.history().is_on()
        && (!plan.prev_ids.is_empty() || (plan.sse && plan.last_event_id.is_some()))
}

/// What a stream hold recovers: after the origin's `prev-id`s when it gave any, else, for
/// SSE, after the client's `Last-Event-ID` on every channel.
pub(crate) fn stream_wants(plan: &super::HoldPlan) -> Wants {
    if !plan.prev_ids.is_empty() {
        return Wants {
            ids: plan.prev_ids.clone(),
            last_event_id: false,
        };
    }
    let id = plan.last_event_id.as_deref().unwrap_or_default();
    Wants {
        ids: plan
            .channels
            .iter()
            .map(|(c, _)| (c.clone(), id.to_string()))
            .collect(),
        last_event_id: true,
    }
}

/// What one channel's history gave.
pub(crate) struct Found {
    /// The channel (route prefix included).
    pub(crate) channel: String,
    /// The id asked after.
    pub(crate) after: String,
    /// How far history reached.
    pub(crate) reach: Reach,
    /// The items to send, oldest first.
    pub(crate) items: Vec<Arc<Message>>,
    /// The answer was cut at `history.max_recover` items: later ones were not sent.
    pub(crate) cut: bool,
}

pub(crate) fn result_label(reach: Reach) -> &'static str {
    match reach {
        Reach::After => "after",
        Reach::Complete => "complete",
        Reach::Gap => "gap",
    }
}

/// Reads history after `after` on each channel (in order), counting each read.
pub(crate) async fn read(shared: &Shared, wants: &[(String, String)]) -> Vec<Found> {
    let history = shared.broker.history();
    let limit = shared.config.history.max_recover.max(1);
    let mut found = Vec::with_capacity(wants.len());
    for (channel, after) in wants {
        let answer = history
            .read_after(channel, After::Id(after), limit, Instant::now())
            .await;
        let f = match answer {
            Ok(r) => {
                shared.metrics.recovery(result_label(r.reach));
                Found {
                    channel: channel.clone(),
                    after: after.clone(),
                    reach: r.reach,
                    items: r.items.into_iter().map(|k| k.msg).collect(),
                    cut: r.more,
                }
            }
            Err(e) => {
                crate::warn_limited!("history-read", "history read failed: {e}");
                shared.metrics.recovery("unavailable");
                Found {
                    channel: channel.clone(),
                    after: after.clone(),
                    reach: Reach::Gap,
                    items: Vec::new(),
                    cut: false,
                }
            }
        };
        found.push(f);
    }
    found
}

/// Applies the `Last-Event-ID` rule for several channels (see the module doc): when some
/// channel kept the id, the others recover nothing.
pub(crate) fn for_last_event_id(found: &mut [Found]) {
    if found.iter().any(|f| f.reach == Reach::After) {
        for f in found.iter_mut().filter(|f| f.reach != Reach::After) {
            f.reach = Reach::After;
            f.items.clear();
            f.cut = false;
        }
    }
}

/// Counts the items about to be sent from history.
pub(crate) fn count_sent(shared: &Shared, items: usize) {
    if items > 0 {
        shared.metrics.recovered(items);
    }
}

/// The (channel, id) pairs of everything recovered: the sink drops late live copies of them
/// ([`super::sink::Sink::release`]).
pub(crate) fn recovered_ids(found: &[Found]) -> foldhash::HashSet<(Arc<str>, Arc<str>)> {
    let mut ids = foldhash::HashSet::default();
    for f in found.iter().filter(|f| !f.items.is_empty()) {
        let channel: Arc<str> = Arc::from(f.channel.as_str());
        ids.extend(
            f.items
                .iter()
                .filter_map(|m| Some((channel.clone(), Arc::from(m.id()?)))),
        );
    }
    ids
}

/// Joins what history gave with what the fan-out handed over while it was read (`held`, in
/// fan-out order), and returns the live part to send after the recovered items:
///
/// * an id history did not know may be among the held messages (its publish was
///   acknowledged but not yet kept when history was read): then the client has everything
///   up to it, the recovered items of that channel are older and dropped, and so is every
///   held message of the channel up to and including it;
/// * a held message that is also among the recovered items of its channel (the same
///   message, or the same id: a store that rebuilds messages on read hands out copies) is
///   sent once, as recovered.
pub(crate) fn reconcile(found: &mut [Found], held: Vec<Arc<Message>>) -> Vec<Arc<Message>> {
    let mut skip_until: Vec<(usize, String)> = Vec::new();
    for f in found.iter_mut().filter(|f| f.reach != Reach::After) {
        let seen = held
            .iter()
            .rposition(|m| *m.channel == *f.channel && m.id_is(&f.after));
        if let Some(p) = seen {
            f.reach = Reach::After;
            f.items.clear();
            f.cut = false;
            skip_until.push((p, f.channel.clone()));
        }
    }
    if held.is_empty() || (skip_until.is_empty() && found.iter().all(|f| f.items.is_empty())) {
        return held;
    }
    // every kept item has an id, so (channel, id) names a recovered one; a set keeps this
    // linear when a busy channel held back many messages during a long recovery
    let recovered: foldhash::HashSet<(&str, &str)> = found
        .iter()
        .flat_map(|f| f.items.iter().filter_map(|r| Some((&*f.channel, r.id()?))))
        .collect();
    held.into_iter()
        .enumerate()
        .filter(|(i, m)| {
            let seen = skip_until.iter().any(|(p, c)| i <= p && **c == *m.channel);
            let again = m
                .id()
                .is_some_and(|id| recovered.contains(&(&*m.channel, id)));
            !seen && !again
        })
        .map(|(_, m)| m)
        .collect()
}

/// The SSE event that tells a page its history did not reach back to what it asked for:
/// `event: history-gap` with a JSON `data` line naming the channel (as the origin named it)
/// and the id asked after. Documented in the README ("Recovery").
pub(crate) fn gap_event(channel: &str, after: &str) -> Bytes {
    let data = serde_json::json!({ "channel": channel, "last-event-id": after });
    Bytes::from(format!("event: history-gap\ndata: {data}\n\n"))
}

/// The client's `Last-Event-ID`: the header, else the `lastEventId` query parameter
/// (EventSource polyfills and pages that cannot set headers use it). Bounded by the head
/// limit; an empty value is no id.
pub(crate) fn last_event_id(head: &gripway_proto::http1::RequestHead) -> Option<String> {
    if let Some(v) = head.headers.get("last-event-id") {
        let v = v.to_str().ok()?.trim();
        return (!v.is_empty()).then(|| v.to_string());
    }
    let (_, query) = head.target.split_once('?')?;
    let query = query.split('#').next().unwrap_or("");
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "lastEventId")
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_event_id_from_header_or_query() {
        let head = |req: &str| {
            gripway_proto::http1::parse_request_head(req.as_bytes())
                .unwrap()
                .unwrap()
                .0
        };
        let h = head("GET /e?a=1&lastEventId=a%20b+c HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(last_event_id(&h).as_deref(), Some("a b c"));
        let h = head("GET /e?lastEventId=q HTTP/1.1\r\nHost: x\r\nLast-Event-ID: h\r\n\r\n");
        assert_eq!(last_event_id(&h).as_deref(), Some("h"), "the header wins");
        let h = head("GET /e?lastEventId= HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(last_event_id(&h), None, "empty is no id");
    }

    fn msgs(channel: &str, ids: &[&str]) -> Vec<Arc<Message>> {
        ids.iter()
            .map(|id| {
                let body = serde_json::json!({"items": [{"channel": channel, "id": id,
                    "formats": {"http-stream": {"content": "x"}}}]});
                let item = gripway_proto::publish::parse_publish_body(
                    body.to_string().as_bytes(),
                    &gripway_proto::publish::PublishLimits::default(),
                )
                .unwrap()
                .remove(0);
                Message::new(item)
            })
            .collect()
    }

    fn found(channel: &str, after: &str, reach: Reach, items: Vec<Arc<Message>>) -> Found {
        Found {
            channel: channel.into(),
            after: after.into(),
            reach,
            items,
            cut: false,
        }
    }

    fn ids(m: &[Arc<Message>]) -> Vec<&str> {
        m.iter().map(|m| m.id().unwrap()).collect()
    }

    #[test]
    fn held_messages_also_recovered_are_sent_once() {
        let kept = msgs("c", &["a", "b", "c"]);
        let mut f = vec![found("c", "x", Reach::After, kept[1..].to_vec())];
        // b, c were fanned out after subscribing but kept before the read; d came later
        let mut held = kept[1..].to_vec();
        held.extend(msgs("c", &["d"]));
        held.extend(msgs("other", &["b"]));
        let live = reconcile(&mut f, held);
        assert_eq!(ids(&live), ["d", "b"], "other channel's b is not c's b");
    }

    #[test]
    fn an_id_acknowledged_but_not_yet_kept_is_found_among_the_held() {
        // history had not kept e2 yet when read: it answered Complete with e0, e1
        let early = msgs("c", &["e0", "e1"]);
        let mut f = vec![found("c", "e2", Reach::Complete, early.clone())];
        let mut held = early;
        held.extend(msgs("c", &["e2", "e3"]));
        let live = reconcile(&mut f, held);
        assert_eq!(f[0].reach, Reach::After);
        assert!(f[0].items.is_empty(), "the client has everything up to e2");
        assert_eq!(ids(&live), ["e3"]);
    }

    #[test]
    fn gap_event_is_one_sse_event() {
        let e = gap_event("news", "a\"b");
        assert_eq!(
            &e[..],
            b"event: history-gap\ndata: {\"channel\":\"news\",\"last-event-id\":\"a\\\"b\"}\n\n"
        );
    }
}
