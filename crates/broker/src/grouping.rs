//! Grouping a shard's batch by channel: each channel's messages together, channels in the
//! order they first appear, each channel's messages in their order, so the fan-out makes
//! one registry lookup and each subscriber one write per channel per batch. The in-place
//! form reuses its buffers from batch to batch (no allocation per batch once grown).

use std::sync::Arc;

use foldhash::HashMap;

use crate::message::{ChannelName, Message};

/// `ready`'s messages grouped by channel, groups in order of first appearance; empties it.
pub(crate) fn group_by_channel(ready: &mut Vec<Arc<Message>>) -> Vec<Vec<Arc<Message>>> {
    let mut index: HashMap<ChannelName, usize> = HashMap::default();
    let mut groups: Vec<Vec<Arc<Message>>> = Vec::new();
    for msg in ready.drain(..) {
        let g = *index.entry(msg.channel.clone()).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push(msg);
    }
    groups
}

/// The buffers [`group_in_place`] reuses from batch to batch.
#[derive(Default)]
pub(crate) struct Scratch {
    /// Channel → group number, by first appearance.
    index: HashMap<ChannelName, u32>,
    /// (group, position in the batch) of each message.
    keys: Vec<(u32, u32)>,
    /// The messages in group order.
    sorted: Vec<Arc<Message>>,
}

/// Reorders `ready` so that each channel's messages are together, channels in order of
/// first appearance, each channel's messages in their order; allocates nothing once
/// `scratch` has grown to the batch size (it is left empty, its capacity kept; a table that
/// grew past [`SCRATCH_KEEP`] entries is given back).
pub(crate) fn group_in_place(ready: &mut Vec<Arc<Message>>, scratch: &mut Scratch) {
    let Scratch {
        index,
        keys,
        sorted,
    } = scratch;
    for (pos, msg) in ready.iter().enumerate() {
        let next = index.len() as u32;
        let group = *index.entry(msg.channel.clone()).or_insert(next);
        keys.push((group, pos as u32));
    }
    keys.sort_unstable();
    sorted.extend(keys.iter().map(|&(_, pos)| ready[pos as usize].clone()));
    ready.clear();
    ready.append(sorted);
    keys.clear();
    if index.capacity() > SCRATCH_KEEP {
        *index = HashMap::default();
        *keys = Vec::new();
        *sorted = Vec::new();
    } else {
        index.clear();
    }
}

/// Most entries [`Scratch`] keeps room for between batches.
const SCRATCH_KEEP: usize = 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use gripway_proto::publish::{Formats, Item};

    fn msg(channel: &str, id: &str) -> Arc<Message> {
        Message::new(Item {
            channel: channel.into(),
            id: Some(id.into()),
            prev_id: None,
            meta: vec![],
            no_seq: false,
            formats: Formats::default(),
        })
    }

    fn order(ready: &[Arc<Message>]) -> Vec<String> {
        ready
            .iter()
            .map(|m| format!("{}{}", m.channel, m.id().unwrap_or("")))
            .collect()
    }

    #[test]
    fn grouping_keeps_first_appearance_and_per_channel_order() {
        let mut scratch = Scratch::default();
        let mut ready: Vec<_> = [("b", "1"), ("a", "1"), ("b", "2"), ("c", "1"), ("a", "2")]
            .iter()
            .map(|(c, i)| msg(c, i))
            .collect();
        group_in_place(&mut ready, &mut scratch);
        assert_eq!(order(&ready), ["b1", "b2", "a1", "a2", "c1"]);
        assert!(scratch.index.is_empty() && scratch.keys.is_empty() && scratch.sorted.is_empty());
        // reused: the same again
        let mut again: Vec<_> = [("x", "1"), ("y", "1"), ("x", "2")]
            .iter()
            .map(|(c, i)| msg(c, i))
            .collect();
        group_in_place(&mut again, &mut scratch);
        assert_eq!(order(&again), ["x1", "x2", "y1"]);
    }
}
