//! Channel names shared between messages: a shard's [`Names`] gives each arriving message the
//! channel name that earlier messages of the channel already hold, so that the hundred items
//! history keeps of one channel (and the store's and the registry's entries for it) hold one
//! name, not a hundred copies.
//!
//! The table belongs to one shard task (no lock) and sees a message while the shard still
//! owns it alone, before it is released to history and the fan-out; a message someone else
//! already holds keeps its own name. Sharing is an optimisation, never a condition for
//! correctness: names compare by content everywhere.
//!
//! Bound: a name stays in the table while anything else holds it; names nothing else holds
//! any more are swept when the table has doubled since the last sweep, so it holds at most
//! twice the names in use (and [`MIN_SWEEP`]), at amortised O(1) per message.

use std::sync::Arc;

use foldhash::HashSet;

use crate::message::{ChannelName, Message};

/// The table is never swept below this many names.
pub const MIN_SWEEP: usize = 1024;

/// One shard's channel names.
#[derive(Debug)]
pub struct Names {
    names: HashSet<ChannelName>,
    /// Sweep when the table reaches this size.
    sweep_at: usize,
}

impl Default for Names {
    fn default() -> Self {
        Names {
            names: HashSet::default(),
            sweep_at: MIN_SWEEP,
        }
    }
}

impl Names {
    /// Gives `msg` the shared name of its channel, when nobody else holds `msg` yet.
    pub fn share(&mut self, msg: &mut Arc<Message>) {
        let Some(m) = Arc::get_mut(msg) else {
            return;
        };
        if let Some(known) = self.names.get(&*m.channel) {
            m.channel = known.clone();
            return;
        }
        self.names.insert(m.channel.clone());
        if self.names.len() >= self.sweep_at {
            self.names.retain(|n| Arc::strong_count(n) > 1);
            self.sweep_at = (2 * self.names.len()).max(MIN_SWEEP);
        }
    }

    /// Names in the table now.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when the table is empty.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use gripway_proto::publish::{Formats, HttpStreamAction, HttpStreamFormat, Item};

    fn msg(channel: &str) -> Arc<Message> {
        Message::new(Item {
            channel: channel.into(),
            id: None,
            prev_id: None,
            meta: vec![],
            no_seq: false,
            formats: Formats {
                http_stream: Some(HttpStreamFormat {
                    action: HttpStreamAction::Send(Bytes::from_static(b"x")),
                    content_filters: vec![],
                }),
                ..Formats::default()
            },
        })
    }

    #[test]
    fn messages_of_one_channel_share_its_name() {
        let mut names = Names::default();
        let (mut a, mut b, mut c) = (msg("news"), msg("news"), msg("other"));
        names.share(&mut a);
        names.share(&mut b);
        names.share(&mut c);
        assert!(Arc::ptr_eq(&a.channel, &b.channel));
        assert_eq!((&*b.channel, &*c.channel), ("news", "other"));
    }

    #[test]
    fn a_message_already_shared_keeps_its_name() {
        let mut names = Names::default();
        let mut first = msg("news");
        names.share(&mut first);
        let mut held = msg("news");
        let other = held.clone();
        names.share(&mut held);
        assert!(!Arc::ptr_eq(&first.channel, &held.channel));
        drop(other);
    }

    #[test]
    fn names_nobody_holds_are_swept() {
        let mut names = Names::default();
        let mut keep = Vec::new();
        for i in 0..10 * MIN_SWEEP {
            let mut m = msg(&format!("ch-{i}"));
            names.share(&mut m);
            if i % 10 == 0 {
                keep.push(m);
            }
        }
        assert!(
            names.len() <= 2 * keep.len().max(MIN_SWEEP),
            "{}",
            names.len()
        );
        // the kept ones are still shared
        let mut again = msg("ch-0");
        names.share(&mut again);
        assert!(Arc::ptr_eq(&again.channel, &keep[0].channel));
    }
}
