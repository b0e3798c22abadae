//! Batch direct get on the wire (nats-server 2.11 and newer, stream `allow_direct`): one
//! request to `$JS.API.DIRECT.GET.<stream>` with `{"seq", "batch", "next_by_subj"}` answers
//! with up to `batch` stored messages of the subject from `seq` on, oldest first, each as its
//! own reply, then an empty `204 EOB` status message whose `Nats-Num-Pending` says how many
//! more match. `404` means none. So a channel's catch-up is one round trip instead of one per
//! item. Whether what came back is complete is [`crate::interest`]'s concern: any replica of
//! the stream may answer, and one that lags the leader returns a shorter suffix.
//!
//! Verified against nats-server 2.15.1: a reply carries `Nats-Sequence`, `Nats-Subject` and
//! the publisher's headers (`Nats-Msg-Id`); at most 1000 messages come back to one request
//! whatever `batch` asks (the EOB then says how many are pending).

use std::time::Duration;

use futures_util::StreamExt;

use crate::bus::Stored;
use crate::error::BusError;

/// The most items one request asks for (the server's own cap).
pub(crate) const MAX_BATCH: usize = 1000;

/// What one request returned.
#[derive(Debug, Default)]
pub(crate) struct Read {
    /// Items, oldest first.
    pub(crate) items: Vec<Stored>,
    /// Items of the subject after the last one returned (0 when none, or unknown).
    pub(crate) pending: u64,
}

/// Up to `max` (at most [`MAX_BATCH`]) stored items of `subject` from sequence `from` on;
/// each reply is waited for at most `wait`. `token` strips the channel's prefix from ids.
pub(crate) async fn read(
    client: &async_nats::Client,
    stream: &str,
    subject: &str,
    token: &str,
    from: u64,
    max: usize,
    wait: Duration,
) -> Result<Read, BusError> {
    let unavailable = |e: &dyn std::fmt::Display| BusError::Unavailable(e.to_string());
    let inbox = client.new_inbox();
    let mut replies = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| unavailable(&e))?;
    let body = serde_json::json!({
        "seq": from.max(1),
        "batch": max.clamp(1, MAX_BATCH),
        "next_by_subj": subject,
    });
    client
        .publish_with_reply(
            format!("$JS.API.DIRECT.GET.{stream}"),
            inbox,
            body.to_string().into(),
        )
        .await
        .map_err(|e| unavailable(&e))?;
    let mut out = Read::default();
    // the server's cap bounds this loop; a misbehaving peer is cut off at MAX_BATCH + 1
    for _ in 0..=MAX_BATCH {
        let m = match tokio::time::timeout(wait, replies.next()).await {
            Ok(Some(m)) => m,
            Ok(None) => return Err(unavailable(&"the reply subscription closed")),
            Err(_) => return Err(unavailable(&format!("no batch read reply within {wait:?}"))),
        };
        match m.status.map(|s| s.as_u16()) {
            None | Some(200) => {}
            // end of batch
            Some(204) => {
                out.pending = m
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("Nats-Num-Pending"))
                    .and_then(|v| v.as_str().parse().ok())
                    .unwrap_or(0);
                return Ok(out);
            }
            Some(404) => return Ok(out),
            Some(s) => {
                return Err(unavailable(&format!(
                    "batch read answered {s}: {}",
                    m.description.as_deref().unwrap_or("")
                )))
            }
        }
        let Some(h) = m.headers.as_ref() else {
            return Err(unavailable(&"batch read reply without headers"));
        };
        let Some(seq) = h
            .get(async_nats::header::NATS_SEQUENCE)
            .and_then(|v| v.as_str().parse::<u64>().ok())
        else {
            return Err(unavailable(&"batch read reply without a sequence"));
        };
        let id = h
            .get(async_nats::header::NATS_MESSAGE_ID)
            .and_then(|v| crate::interest::id_of(token, v.as_str()));
        out.items.push(Stored {
            seq,
            id,
            payload: m.payload,
        });
    }
    Err(unavailable(&"a batch read returned more than asked"))
}
