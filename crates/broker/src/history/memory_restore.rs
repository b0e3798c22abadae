//! What a durable store needs from a [`MemoryCore`] to use it as its in-memory image: the
//! on-disk store (`disk.rs`) keeps every kept item both on disk and in a core, answers every
//! read from the core (so reads never wait for the disk and cost what they cost in memory),
//! and rebuilds the core from disk when it opens.
//!
//! * **Planning an append.** The disk writer assigns the sequence numbers before the write
//!   ([`MemoryCore::channel_state`], [`MemoryCore::reserve_gen`]) and applies the items to
//!   the core only once they are stored, so a reader never sees an item that is not yet
//!   durable; [`MemoryCore::ensure_channel`] recreates a channel that was forgotten between
//!   the plan and the apply with the planned generation and sequence.
//! * **Eviction log.** With [`MemoryCore::log_evictions`] on, every dropped item and every
//!   forgotten channel is recorded, and the writer deletes them on disk with its next write
//!   ([`MemoryCore::take_evicted`]); a crash before that only brings back items the bounds
//!   drop again on the next open.
//! * **Restore.** Channels, then their items in sequence order, then
//!   [`MemoryCore::finish_restore`] rebuilds the partition-wide order queue (sorted by append
//!   time) and applies every bound as of now.

use super::*;

/// What a durable store keeps about one channel beside its items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelState {
    /// The channel's generation: its epoch is the core's epoch and this.
    pub gen: u32,
    /// Sequence number of the oldest kept item (of the next item when none is kept).
    pub first_seq: u64,
    /// Sequence number the next item gets.
    pub next_seq: u64,
    /// Something of the channel may have been dropped: an unknown id is a gap.
    pub truncated: bool,
    /// The id of the newest item appended.
    pub last_id: Option<Arc<str>>,
    /// When the channel lost its last item (core milliseconds; meaningful when empty).
    pub emptied_at: u64,
}

impl MemoryCore {
    /// Starts recording evictions for [`MemoryCore::take_evicted`].
    pub fn log_evictions(&mut self) {
        self.evicted.get_or_insert_with(Vec::new);
    }

    /// The (channel, sequence) pairs dropped since the last call; a sequence of `1 << 63`
    /// means the channel was forgotten.
    pub fn take_evicted(&mut self) -> Vec<(ChannelName, u64)> {
        self.evicted
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Puts back pairs that could not be deleted on disk, to try again later.
    pub fn requeue_evicted(&mut self, mut pairs: Vec<(ChannelName, u64)>) {
        if let Some(log) = &mut self.evicted {
            pairs.append(log);
            *log = pairs;
        }
    }

    /// True if a pair from the log stands for a forgotten channel.
    pub fn is_forget_mark(seq: u64) -> bool {
        seq == MARK
    }

    /// The core's epoch (the high half of every channel's epoch).
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The generation the next new channel gets, and whether any channel was forgotten.
    pub fn marks(&self) -> (u32, bool) {
        (self.next_gen, self.forgot)
    }

    /// Restores [`MemoryCore::marks`].
    pub fn set_marks(&mut self, next_gen: u32, forgot: bool) {
        self.next_gen = next_gen;
        self.forgot = forgot;
    }

    /// Takes a generation for a channel about to be created.
    pub fn reserve_gen(&mut self) -> u32 {
        let gen = self.next_gen;
        self.next_gen = self.next_gen.wrapping_add(1);
        gen
    }

    /// `now` in the core's milliseconds.
    pub fn at(&self, now: Instant) -> u64 {
        self.ms(now)
    }

    /// The state of `channel`, if the core knows it.
    pub fn channel_state(&self, channel: &str) -> Option<ChannelState> {
        let ch = &self.channels[*self.index.get(channel)? as usize];
        Some(ChannelState {
            gen: ch.gen,
            first_seq: ch.first_seq,
            next_seq: ch.next_seq(),
            truncated: ch.truncated,
            last_id: ch.last_id(),
            emptied_at: ch.emptied_at,
        })
    }

    /// True if `id` is kept on `channel`, or is the id of its newest item.
    pub fn contains_id(&self, channel: &str, id: &str) -> bool {
        let Some(&key) = self.index.get(channel) else {
            return false;
        };
        let ch = &self.channels[key as usize];
        ch.last_id_is(id) || ch.items.iter().any(|m| m.id_is(id))
    }

    /// Creates `channel` with `state` (and no items) unless it exists; returns its slot.
    pub fn ensure_channel(&mut self, channel: &ChannelName, state: &ChannelState) -> u32 {
        if let Some(k) = self.index.get(channel) {
            return *k;
        }
        let key = self.channels.insert(Channel {
            name: channel.clone(),
            gen: state.gen,
            items: VecDeque::new(),
            first_seq: state.next_seq,
            truncated: state.truncated,
            last_id: state.last_id.clone(),
            evicted_id: None,
            emptied_at: state.emptied_at,
        }) as u32;
        self.index.insert(channel.clone(), key);
        self.bytes += CHANNEL_OVERHEAD + str_heap(channel);
        key
    }

    /// Restores one kept item at the end of its channel (items must come in sequence
    /// order). A sequence that does not follow the channel's last drops what was before it
    /// (and marks the channel truncated); past `max_items` the oldest is dropped.
    pub fn restore_item(&mut self, slot: u32, seq: u64, msg: Arc<Message>, at: u64) {
        let Some(ch) = self.channels.get_mut(slot as usize) else {
            return;
        };
        if ch.items.is_empty() {
            ch.first_seq = seq;
        } else if seq != ch.next_seq() {
            while let Some(old) = ch.items.pop_front() {
                if let Some(log) = &mut self.evicted {
                    log.push((ch.name.clone(), ch.first_seq));
                }
                ch.first_seq += 1;
                self.items -= 1;
                self.bytes -= old.cost() + ITEM_OVERHEAD;
            }
            ch.first_seq = seq;
            ch.truncated = true;
        }
        self.items += 1;
        self.bytes += msg.cost() + ITEM_OVERHEAD;
        if msg.has_id() {
            ch.last_id = None; // the newest item says it now
        }
        ch.items.push_back(msg);
        self.restoring.push((
            at,
            Order {
                slot,
                seq: seq31(seq),
                at: 0,
            },
        ));
        if ch.items.len() > self.config.max_items {
            if let Some(old) = ch.items.pop_front() {
                if let Some(log) = &mut self.evicted {
                    log.push((ch.name.clone(), ch.first_seq));
                }
                ch.first_seq += 1;
                ch.truncated = true;
                self.items -= 1;
                self.bytes -= old.cost() + ITEM_OVERHEAD;
                self.stats.evicted_count += 1;
            }
        }
    }

    /// Makes a restored channel's items end just before `next_seq`, as its stored state
    /// says: if they do not, they are dropped and the channel is marked truncated.
    pub fn check_restored(&mut self, slot: u32, next_seq: u64) {
        let Some(ch) = self.channels.get_mut(slot as usize) else {
            return;
        };
        if ch.items.is_empty() {
            ch.first_seq = ch.first_seq.max(next_seq);
            return;
        }
        if ch.next_seq() >= next_seq {
            return;
        }
        while self.drop_oldest(slot as usize) {}
        let ch = &mut self.channels[slot as usize];
        ch.first_seq = next_seq;
        // what followed the dropped items is missing too: their ids are no resume points
        ch.evicted_id = None;
    }

    /// Drops what a restored channel holds so far and marks it truncated (an item of it
    /// could not be read back: what follows cannot claim to follow what came before).
    pub fn drop_restored(&mut self, slot: u32) {
        while self.drop_oldest(slot as usize) {}
        if let Some(ch) = self.channels.get_mut(slot as usize) {
            // an unreadable item follows what was dropped: no resume point, and a gap
            ch.evicted_id = None;
            ch.truncated = true;
        }
    }

    /// After every channel and item is restored: rebuilds the order queue (items and the
    /// markers of emptied channels, oldest first) and applies every bound as of `now`.
    pub fn finish_restore(&mut self, now: Instant) {
        let mut entries = std::mem::take(&mut self.restoring);
        // items dropped while restoring leave no entry
        entries.retain(|(_, e)| self.is_live(*e));
        for (key, ch) in self.channels.iter() {
            if ch.items.is_empty() {
                let marker = Order {
                    slot: key as u32,
                    seq: MARK_BIT | seq31(ch.first_seq),
                    at: 0,
                };
                entries.push((ch.emptied_at, marker));
            }
        }
        entries.sort_by_key(|(at, e)| (*at, e.seq & SEQ_BITS));
        let at = self.ms(now);
        self.tick(at);
        let mut order = VecDeque::with_capacity(entries.len());
        for (ms, mut e) in entries {
            e.at = self.tick(ms);
            order.push_back(e);
        }
        self.order = order;
        self.expire(now);
        while self.bytes > self.config.max_bytes && self.evict_front(at, Cause::Bytes) {}
        self.sweep_if_needed();
    }
}
