//! The other nodes: who is there, and how many subscribers a channel has over the whole
//! cluster. Plain core NATS, nothing stored.
//!
//! * **Presence.** Every node announces itself every [`HEARTBEAT`] on
//!   `gripway.ctl.<stream>.hello` with its id, its subscriber and channel totals; a node is
//!   alive while it was heard within [`PEER_TIMEOUT`]. The sums over the live nodes are the
//!   cluster's totals ([`Peers::totals`], for metrics).
//! * **Counts.** [`Peers::count`] asks `gripway.ctl.<stream>.count` with the channel's name;
//!   every node answers with its own number of subscribers of the channel, and the asker
//!   collects the answers until every live node (itself included) answered or
//!   [`COUNT_WAIT`] passed. The answer says how many nodes answered, so a short count is
//!   visible as such.
//!
//! Each node answers with a function the server gives ([`Peers::start`]), so this crate still
//! knows nothing of the registry.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use parking_lot::Mutex;
use tokio::task::AbortHandle;

use crate::error::BusError;

/// How often a node announces itself.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// A node not heard for this long is taken as gone.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(7);
/// Longest wait for the nodes' answers to a count.
pub const COUNT_WAIT: Duration = Duration::from_millis(500);

/// A node's own figures, as it announces and answers them.
pub trait LocalCounts: Send + Sync + 'static {
    /// Subscribers of `channel` on this node.
    fn subscribers_of(&self, channel: &str) -> usize;
    /// (subscriptions, channels) on this node.
    fn totals(&self) -> (u64, u64);
}

/// One channel's subscribers over the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterCount {
    /// Subscribers summed over the nodes that answered.
    pub subscribers: u64,
    /// Nodes that answered.
    pub answered: usize,
    /// Nodes alive as far as this node knows (it included).
    pub alive: usize,
}

/// The cluster's totals, from the live nodes' last announcements.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClusterTotals {
    /// Live nodes (this one included).
    pub nodes: u64,
    /// Subscriptions over them.
    pub subscriptions: u64,
    /// Channels with subscribers, summed per node (a channel on two nodes counts twice).
    pub channels: u64,
}

struct Peer {
    seen: Instant,
    subscriptions: u64,
    channels: u64,
}

/// This node's view of the others.
pub struct Peers {
    client: async_nats::Client,
    id: String,
    prefix: String,
    peers: Arc<Mutex<HashMap<String, Peer>>>,
    tasks: Vec<AbortHandle>,
}

impl std::fmt::Debug for Peers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peers").field("id", &self.id).finish()
    }
}

impl Drop for Peers {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Peers {
    /// Starts announcing this node and answering counts with `local`.
    pub(crate) async fn start(
        client: async_nats::Client,
        stream: &str,
        name: &str,
        local: Arc<dyn LocalCounts>,
    ) -> Result<Peers, BusError> {
        let id = format!("{name}-{}", uuid::Uuid::new_v4().simple());
        let prefix = format!("gripway.ctl.{stream}");
        let unavailable = |e: async_nats::SubscribeError| BusError::Unavailable(e.to_string());
        let mut hellos = client
            .subscribe(format!("{prefix}.hello"))
            .await
            .map_err(unavailable)?;
        let mut asks = client
            .subscribe(format!("{prefix}.count"))
            .await
            .map_err(unavailable)?;
        let peers = Arc::new(Mutex::new(HashMap::new()));
        let listen = {
            let peers = peers.clone();
            tokio::spawn(async move {
                while let Some(m) = hellos.next().await {
                    if let Some((id, subscriptions, channels)) = parse_hello(&m.payload) {
                        peers.lock().insert(
                            id,
                            Peer {
                                seen: Instant::now(),
                                subscriptions,
                                channels,
                            },
                        );
                    }
                }
            })
            .abort_handle()
        };
        let answer = {
            let (client, local, id) = (client.clone(), local.clone(), id.clone());
            tokio::spawn(async move {
                while let Some(m) = asks.next().await {
                    let (Some(reply), Ok(channel)) = (m.reply, std::str::from_utf8(&m.payload))
                    else {
                        continue;
                    };
                    let n = local.subscribers_of(channel);
                    let _ = client
                        .publish(reply, Bytes::from(format!("{id} {n}")))
                        .await;
                }
            })
            .abort_handle()
        };
        let announce = {
            let (client, subject, id) = (client.clone(), format!("{prefix}.hello"), id.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(HEARTBEAT);
                loop {
                    tick.tick().await;
                    let (subs, chans) = local.totals();
                    let _ = client
                        .publish(subject.clone(), Bytes::from(format!("{id} {subs} {chans}")))
                        .await;
                }
            })
            .abort_handle()
        };
        Ok(Peers {
            client,
            id,
            prefix,
            peers,
            tasks: vec![listen, answer, announce],
        })
    }

    /// This node's id in the cluster (its name and a random suffix).
    pub fn id(&self) -> &str {
        &self.id
    }

    fn alive(&self) -> usize {
        let now = Instant::now();
        let mut peers = self.peers.lock();
        peers.retain(|_, p| now.duration_since(p.seen) < PEER_TIMEOUT);
        // this node hears its own announcements, but not before the first one
        peers.len() + usize::from(!peers.contains_key(&self.id))
    }

    /// The cluster's totals from the live nodes' last announcements.
    pub fn totals(&self) -> ClusterTotals {
        let now = Instant::now();
        let peers = self.peers.lock();
        let mut t = ClusterTotals::default();
        for p in peers
            .values()
            .filter(|p| now.duration_since(p.seen) < PEER_TIMEOUT)
        {
            t.nodes += 1;
            t.subscriptions += p.subscriptions;
            t.channels += p.channels;
        }
        t
    }

    /// Subscribers of `channel` over the cluster: every live node is asked.
    pub async fn count(&self, channel: &str) -> Result<ClusterCount, BusError> {
        let alive = self.alive();
        let inbox = self.client.new_inbox();
        let mut replies = self
            .client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| BusError::Unavailable(e.to_string()))?;
        self.client
            .publish_with_reply(
                format!("{}.count", self.prefix),
                inbox,
                Bytes::copy_from_slice(channel.as_bytes()),
            )
            .await
            .map_err(|e| BusError::Unavailable(e.to_string()))?;
        let mut seen = HashMap::new();
        let deadline = tokio::time::Instant::now() + COUNT_WAIT;
        while seen.len() < alive {
            match tokio::time::timeout_at(deadline, replies.next()).await {
                Ok(Some(m)) => {
                    let text = String::from_utf8_lossy(&m.payload);
                    if let Some((id, n)) = text.split_once(' ') {
                        if let Ok(n) = n.parse::<u64>() {
                            seen.insert(id.to_string(), n);
                        }
                    }
                }
                _ => break,
            }
        }
        if seen.is_empty() {
            return Err(BusError::Unavailable("no node answered".into()));
        }
        Ok(ClusterCount {
            subscribers: seen.values().sum(),
            answered: seen.len(),
            alive: alive.max(seen.len()),
        })
    }
}

fn parse_hello(payload: &[u8]) -> Option<(String, u64, u64)> {
    let text = std::str::from_utf8(payload).ok()?;
    let mut parts = text.split(' ');
    let id = parts.next()?.to_string();
    let subs = parts.next()?.parse().ok()?;
    let chans = parts.next()?.parse().ok()?;
    Some((id, subs, chans))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hellos_parse_or_are_ignored() {
        assert_eq!(parse_hello(b"n-1 5 2"), Some(("n-1".into(), 5, 2)));
        assert_eq!(parse_hello(b"n-1 x 2"), None);
        assert_eq!(parse_hello(b"\xff"), None);
        assert_eq!(parse_hello(b"n-1"), None);
    }
}
