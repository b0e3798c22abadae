//! One JetStream atomic batch on the wire (ADR-50, nats-server 2.12 and newer, stream
//! `allow_atomic`): the items go out as plain messages carrying `Nats-Batch-Id` and
//! `Nats-Batch-Sequence`, the last one also `Nats-Batch-Commit: 1` as a request, and the
//! server answers that request once, after storing every item of the batch, or none of them.
//! The stored items take consecutive stream sequences in batch order. What the answer means
//! for the caller is an [`Outcome`]; retrying, falling back and deadlines are
//! [`crate::bus`]'s.
//!
//! Verified against nats-server 2.15.1 (crates/cluster/tests/batch.rs):
//! * `Nats-Msg-Id` is allowed in a batch; two items with the same id in one batch, or one
//!   whose id is already stored within the duplicate window, fail the WHOLE batch with
//!   err_code 10201 (nothing stored), rather than storing the others.
//! * at most 1000 items a batch (10199 beyond); a batch id of at most 64 characters.
//! * stored items are republished like single publishes, each chained by
//!   `Nats-Last-Sequence`.
//! * on a file-backed stream a 100-item batch costs a few milliseconds at the server whatever
//!   the item count (a commit is a write of its own), so it beats 100 single publishes
//!   waited for one by one, but batches of one stream do not overlap there.

use std::time::Duration;

use async_nats::{HeaderMap, Request};
use bytes::Bytes;
use serde::Deserialize;

/// The most items the server takes in one batch.
pub(crate) const MAX_ITEMS: usize = 1000;

/// One item ready to go: its subject, its `Nats-Msg-Id` and its payload.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    pub(crate) subject: String,
    pub(crate) msg_id: String,
    pub(crate) payload: Bytes,
}

/// What the server made of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// All stored; the last item under `last_seq`, the others just before it in order.
    Stored { last_seq: u64 },
    /// Nothing stored: an item's id is already stored (or repeated in the batch).
    Duplicate,
    /// Nothing stored, and batches are not the way now (the stream does not allow them, or
    /// too many are in flight on the server): publish the items one by one.
    NotNow(String),
    /// Nothing known to be stored (no responders, no answer, an abandoned batch, a server
    /// error): the same batch may be sent again (the ids make that safe).
    Retry(String),
    /// Refused for good (too large, a malformed message).
    Rejected(String),
}

#[derive(Deserialize)]
struct ApiError {
    #[serde(default)]
    code: u16,
    #[serde(default)]
    err_code: u64,
    #[serde(default)]
    description: String,
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    error: Option<ApiError>,
    #[serde(default)]
    seq: u64,
    #[serde(default)]
    count: usize,
    #[serde(default)]
    batch: String,
}

/// Sends `items` (1 to [`MAX_ITEMS`]) as one atomic batch and waits up to `wait` for the
/// server's answer.
pub(crate) async fn publish(
    client: &async_nats::Client,
    items: &[Prepared],
    wait: Duration,
) -> Outcome {
    debug_assert!(!items.is_empty() && items.len() <= MAX_ITEMS);
    let Some((last, rest)) = items.split_last() else {
        return Outcome::Rejected("empty batch".into());
    };
    // refuse before sending anything: a batch cut short stays open at the server for 10 s
    let max_payload = client.server_info().max_payload;
    if max_payload > 0 && items.iter().any(|i| i.payload.len() > max_payload) {
        return Outcome::Rejected(format!(
            "an item is larger than the server's max_payload ({max_payload} bytes)"
        ));
    }
    let batch_id = uuid::Uuid::new_v4().simple().to_string();
    let headers = |seq: usize, msg_id: &str| {
        let mut h = HeaderMap::new();
        h.insert(async_nats::header::NATS_BATCH_ID, batch_id.as_str());
        h.insert(
            async_nats::header::NATS_BATCH_SEQUENCE,
            seq.to_string().as_str(),
        );
        h.insert(async_nats::header::NATS_MESSAGE_ID, msg_id);
        h
    };
    for (i, item) in rest.iter().enumerate() {
        if let Err(e) = client
            .publish_with_headers(
                item.subject.clone(),
                headers(i + 1, &item.msg_id),
                item.payload.clone(),
            )
            .await
        {
            return match e.kind() {
                async_nats::client::PublishErrorKind::MaxPayloadExceeded => {
                    Outcome::Rejected(e.to_string())
                }
                _ => Outcome::Retry(e.to_string()),
            };
        }
    }
    let mut h = headers(items.len(), &last.msg_id);
    h.insert(
        async_nats::header::NATS_BATCH_COMMIT,
        async_nats::header::NATS_BATCH_COMMIT_FINAL,
    );
    let request = Request::new()
        .headers(h)
        .payload(last.payload.clone())
        .timeout(Some(wait));
    let answer = match client.send_request(last.subject.clone(), request).await {
        Ok(m) => m,
        Err(e) => {
            return match e.kind() {
                async_nats::RequestErrorKind::MaxPayloadExceeded
                | async_nats::RequestErrorKind::InvalidSubject => Outcome::Rejected(e.to_string()),
                _ => Outcome::Retry(e.to_string()),
            }
        }
    };
    judge(&answer.payload, &batch_id, items.len())
}

/// The outcome the server's answer `body` says, for batch `batch_id` of `count` items.
fn judge(body: &[u8], batch_id: &str, count: usize) -> Outcome {
    let answer: Answer = match serde_json::from_slice(body) {
        Ok(a) => a,
        Err(e) => return Outcome::Retry(format!("unreadable batch answer: {e}")),
    };
    if let Some(e) = answer.error {
        let what = format!("{} (err_code {})", e.description, e.err_code);
        return match e.err_code {
            10201 => Outcome::Duplicate,
            // not allowed on this stream; too many batches in flight on the server
            10174 | 10210 => Outcome::NotNow(what),
            // abandoned (a gap: a message lost on the way), unknown, or the server's own
            10176 | 10175 => Outcome::Retry(what),
            _ if e.code >= 500 => Outcome::Retry(what),
            _ => Outcome::Rejected(what),
        };
    }
    if answer.batch != batch_id || answer.count != count || answer.seq < count as u64 {
        // an older server that ignores the batch headers answers the last item alone
        return Outcome::NotNow(format!(
            "not an answer to this batch (batch {:?}, count {}, seq {})",
            answer.batch, answer.count, answer.seq
        ));
    }
    Outcome::Stored {
        last_seq: answer.seq,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_judged() {
        assert_eq!(
            judge(br#"{"stream":"S","seq":12,"batch":"b","count":3}"#, "b", 3),
            Outcome::Stored { last_seq: 12 }
        );
        assert_eq!(
            judge(br#"{"error":{"code":400,"err_code":10201,"description":"dup"},"stream":"S","seq":0}"#, "b", 3),
            Outcome::Duplicate
        );
        assert!(matches!(
            judge(
                br#"{"error":{"code":400,"err_code":10174,"description":"off"}}"#,
                "b",
                3
            ),
            Outcome::NotNow(_)
        ));
        assert!(matches!(
            judge(
                br#"{"error":{"code":400,"err_code":10176,"description":"gap"}}"#,
                "b",
                3
            ),
            Outcome::Retry(_)
        ));
        assert!(matches!(
            judge(
                br#"{"error":{"code":503,"err_code":10077,"description":"x"}}"#,
                "b",
                3
            ),
            Outcome::Retry(_)
        ));
        assert!(matches!(
            judge(
                br#"{"error":{"code":400,"err_code":10199,"description":"too large"}}"#,
                "b",
                3
            ),
            Outcome::Rejected(_)
        ));
        // a server without batches acknowledges the last message alone
        assert!(matches!(
            judge(br#"{"stream":"S","seq":12}"#, "b", 3),
            Outcome::NotNow(_)
        ));
        assert!(matches!(judge(b"garbage", "b", 3), Outcome::Retry(_)));
    }
}
