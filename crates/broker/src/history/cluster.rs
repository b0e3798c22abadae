//! History in cluster mode: the items live in NATS JetStream, and each node keeps an
//! in-memory image of the channels it has subscribers on.
//!
//! In a cluster, an item is stored by the JetStream publish before anyone acknowledges it,
//! and reaches every interested node's shards from the stream, in the stream's order. The
//! shard appends it here as it would to the in-memory store, so the image ([`MemoryHistory`],
//! with the same bounds as the stream) holds what this node has delivered since it became
//! interested in the channel. Appends never wait.
//!
//! A read is answered from the image when the image knows the asked id ([`Reach::After`]).
//! Otherwise — a client that was connected to another node, or one that asks about items
//! from before this node's interest — the stream is asked ([`RemoteHistory`], implemented
//! by the cluster crate over JetStream): it holds every kept item of the channel, whichever
//! node published it. What the stream says wins; when neither knows the id, the answer is a
//! [`Reach::Gap`] with what the stream keeps (an id the stream never held may have been
//! published before the stream's oldest kept item), never a [`Reach::Complete`]: a fresh
//! image says nothing about what the cluster dropped.
//!
//! The stream is read through a trait object with a boxed future: that path runs once per
//! recovering client, not per publish.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use super::{After, HistoryError, Kept, MemoryHistory, Reach, Recovery};
use crate::message::Message;

/// What the stream holds after an id, as [`RemoteHistory::read_after_id`] answers.
#[derive(Debug, Default)]
pub struct RemoteRead {
    /// True when the stream holds the asked id (the items are exactly what followed it).
    pub found: bool,
    /// The kept items after the id (every kept item when it was not found), oldest
    /// first, each with its stream sequence.
    pub items: Vec<(u64, Arc<Message>)>,
    /// True when more items followed than were asked for.
    pub more: bool,
}

/// The boxed future [`RemoteHistory`] returns.
pub type RemoteFuture<'a> =
    Pin<Box<dyn Future<Output = Result<RemoteRead, HistoryError>> + Send + 'a>>;

/// Reads a channel's kept items from the cluster's shared store.
pub trait RemoteHistory: Send + Sync + 'static {
    /// The items of `channel` after the one with `id`, at most `limit` of them.
    fn read_after_id<'a>(&'a self, channel: &'a str, id: &'a str, limit: usize)
        -> RemoteFuture<'a>;
}

/// The node's image of the cluster's history, and the way to the rest of it.
pub struct ClusterHistory {
    image: MemoryHistory,
    remote: Arc<dyn RemoteHistory>,
}

impl ClusterHistory {
    /// An image with `image`'s bounds (the stream's), reading misses from `remote`.
    pub fn new(image: MemoryHistory, remote: Arc<dyn RemoteHistory>) -> ClusterHistory {
        ClusterHistory { image, remote }
    }

    /// The image (appends, synchronous reads, expiry, stats).
    pub fn image(&self) -> &MemoryHistory {
        &self.image
    }

    /// What followed `after` on `channel`: from the image when it knows the id, else from
    /// the stream (see the module doc).
    pub async fn read_after(
        &self,
        channel: &str,
        after: After<'_>,
        limit: usize,
        now: Instant,
    ) -> Result<Recovery, HistoryError> {
        let local = self.image.read_after_now(channel, after, limit, now);
        let After::Id(id) = after else {
            return Ok(local);
        };
        if local.reach == Reach::After {
            return Ok(local);
        }
        let remote = self.remote.read_after_id(channel, id, limit).await?;
        Ok(Recovery {
            reach: if remote.found {
                Reach::After
            } else {
                Reach::Gap
            },
            epoch: local.epoch,
            items: remote
                .items
                .into_iter()
                .map(|(seq, msg)| Kept { seq, msg })
                .collect(),
            more: remote.more,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::HistoryConfig;
    use gripway_proto::publish::parse_publish_body;

    /// A stream holding fixed items of one channel (the real one is JetStream, tested in
    /// the cluster crate; this checks only how the answers combine).
    struct Fixed(Vec<(u64, Arc<Message>)>);

    impl RemoteHistory for Fixed {
        fn read_after_id<'a>(&'a self, _: &'a str, id: &'a str, limit: usize) -> RemoteFuture<'a> {
            let at = self.0.iter().position(|(_, m)| m.id() == Some(id));
            let items: Vec<_> = self.0[at.map_or(0, |i| i + 1)..].to_vec();
            let more = items.len() > limit;
            Box::pin(std::future::ready(Ok(RemoteRead {
                found: at.is_some(),
                items: items.into_iter().take(limit).collect(),
                more,
            })))
        }
    }

    fn msg(id: &str) -> Arc<Message> {
        let body = format!(
            r#"{{"items":[{{"channel":"c","id":"{id}","formats":{{"http-stream":{{"content":"x"}}}}}}]}}"#
        );
        let item = parse_publish_body(body.as_bytes(), &Default::default())
            .expect("valid")
            .remove(0);
        Message::new(item)
    }

    fn ids(r: &Recovery) -> Vec<String> {
        r.items
            .iter()
            .map(|k| k.msg.id().unwrap_or("").to_owned())
            .collect()
    }

    #[tokio::test]
    async fn the_image_answers_what_it_knows_and_the_stream_the_rest() {
        let now = Instant::now();
        let stream: Vec<_> = (1..=4).map(|i| (i * 10, msg(&format!("e{i}")))).collect();
        let image = MemoryHistory::new(HistoryConfig::default(), 1);
        let h = ClusterHistory::new(image, Arc::new(Fixed(stream.clone())));
        // this node became interested after e2: its image holds e3 and e4
        let c = stream[2].1.channel.clone();
        h.image()
            .append_now(&c, &[stream[2].1.clone(), stream[3].1.clone()], now);

        let r = h.read_after("c", After::Id("e3"), 10, now).await.unwrap();
        assert_eq!((r.reach, ids(&r)), (Reach::After, vec!["e4".to_owned()]));

        // e1 is only in the stream
        let r = h.read_after("c", After::Id("e1"), 10, now).await.unwrap();
        assert_eq!(r.reach, Reach::After);
        assert_eq!(ids(&r), ["e2", "e3", "e4"]);
        assert_eq!(r.items[0].seq, 20, "the stream's sequence numbers");

        // the stream's limit and `more`
        let r = h.read_after("c", After::Id("e1"), 2, now).await.unwrap();
        assert_eq!(
            (ids(&r), r.more),
            (vec!["e2".to_owned(), "e3".to_owned()], true)
        );

        // nobody knows e0: a gap, with everything the stream keeps
        let r = h.read_after("c", After::Id("e0"), 10, now).await.unwrap();
        assert_eq!(r.reach, Reach::Gap);
        assert_eq!(ids(&r), ["e1", "e2", "e3", "e4"]);
    }
}
