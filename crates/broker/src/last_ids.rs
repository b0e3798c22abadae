//! The last published id per channel, as far as this node has seen it, for holds that say
//! which id their origin's response already reflected (`Grip-Channel: c; prev-id=...`): when
//! the two differ, the hold is stale and the proxy asks the origin again at once.
//!
//! An id is set by each delivered item that has one and forgotten by an item without one.
//! It stays known for [`LINGER`] after it was set even if the channel has no subscribers
//! left — long-pollers leave and come back between messages — and the table is bounded:
//! past [`MAX_ENTRIES`] the lingering entries are dropped.

use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::{Duration, Instant};

use foldhash::fast::FixedState;
use foldhash::HashMap;
use parking_lot::Mutex;

use crate::message::ChannelName;

/// How long a channel's last id is remembered after it was set.
pub const LINGER: Duration = Duration::from_secs(60);
/// Most channels remembered.
pub const MAX_ENTRIES: usize = 1_000_000;

const SHARDS: usize = 16;

/// One lock's worth of the table: channel → (last id, when it was set).
type Shard = Mutex<HashMap<ChannelName, (Arc<str>, Instant)>>;

/// Last ids by channel.
pub struct LastIds {
    shards: Box<[Shard]>,
    hasher: FixedState,
}

impl Default for LastIds {
    fn default() -> Self {
        LastIds {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(HashMap::default()))
                .collect(),
            hasher: FixedState::with_seed(0x6c61_7374),
        }
    }
}

impl LastIds {
    fn shard(&self, channel: &str) -> &Shard {
        &self.shards[(self.hasher.hash_one(channel) as usize) % SHARDS]
    }

    /// Records that `id` (or no id) was the last item delivered on `channel`.
    pub fn set(&self, channel: &ChannelName, id: Option<&Arc<str>>, now: Instant) {
        let mut shard = self.shard(channel).lock();
        match id {
            Some(id) => {
                if shard.len() >= MAX_ENTRIES / SHARDS {
                    shard.retain(|_, (_, at)| now.duration_since(*at) < LINGER);
                }
                shard.insert(channel.clone(), (id.clone(), now));
            }
            None => {
                shard.remove(channel);
            }
        }
    }

    /// The last id on `channel`, if known and set within [`LINGER`] (or the channel is
    /// still subscribed, which the caller says with `subscribed`).
    pub fn get(&self, channel: &str, subscribed: bool, now: Instant) -> Option<Arc<str>> {
        let shard = self.shard(channel).lock();
        let (id, at) = shard.get(channel)?;
        (subscribed || now.duration_since(*at) < LINGER).then(|| id.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_forget_and_linger() {
        let ids = LastIds::default();
        let c: ChannelName = Arc::from("c");
        let t0 = Instant::now();
        assert_eq!(ids.get("c", true, t0), None);
        ids.set(&c, Some(&Arc::from("7")), t0);
        assert_eq!(ids.get("c", false, t0).as_deref(), Some("7"));
        let later = t0 + LINGER + Duration::from_secs(1);
        assert_eq!(ids.get("c", false, later), None, "lingered out");
        assert_eq!(
            ids.get("c", true, later).as_deref(),
            Some("7"),
            "still subscribed"
        );
        ids.set(&c, None, later);
        assert_eq!(
            ids.get("c", true, later),
            None,
            "an item without id forgets"
        );
    }
}
