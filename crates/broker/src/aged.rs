//! A map bounded in bytes whose entries leave oldest first: the building block for every
//! per-channel and per-id table the broker keeps (dedup, last ids, ordering state, and
//! per-channel history next).
//!
//! Entries are kept in a hash map and, in order of their last insert or touch, in a queue of
//! (sequence number, time, key). Re-inserting or touching an entry pushes a new queue slot and
//! leaves the old one behind as a tombstone (its sequence number no longer matches the map's),
//! skipped when it reaches the front. Tombstones are swept when they outnumber the live
//! entries, so every operation is amortised O(1) and the queue is never more than about
//! twice the map. [`AgedMap::expire_before`] takes the queue to be in time order too, as it is
//! for a table fed by one task with `Instant::now()` (dedup, the sequencer); the last ids,
//! set from several threads, never expire by time.
//!
//! Memory is counted as what an entry really costs: the heap bytes the caller says its key
//! and value own, plus the map slot (with the hash table's spare capacity) and the queue
//! slot. [`AgedMap::bytes`] is that sum; [`AgedMap::evict_over_bound`] pops the oldest
//! entries until it is within the bound.

use std::borrow::Borrow;
use std::collections::hash_map::Entry;
use std::collections::VecDeque;
use std::hash::Hash;
use std::time::Instant;

use foldhash::HashMap;

struct Slot<V> {
    value: V,
    seq: u64,
    /// Caller-declared heap bytes of key and value.
    heap: usize,
}

/// A byte-bounded map with oldest-first eviction.
pub struct AgedMap<K, V> {
    map: HashMap<K, Slot<V>>,
    order: VecDeque<(u64, Instant, K)>,
    next_seq: u64,
    heap: usize,
    max_bytes: usize,
}

impl<K: Hash + Eq + Clone, V> AgedMap<K, V> {
    /// Fixed cost of one entry beside its heap bytes: its map slot (hash tables keep up to
    /// 1/8 spare and one control byte per slot) and its queue slot.
    pub const ENTRY_OVERHEAD: usize =
        std::mem::size_of::<(K, Slot<V>)>() * 8 / 7 + 1 + std::mem::size_of::<(u64, Instant, K)>();

    /// An empty map that holds at most `max_bytes` (see [`AgedMap::bytes`]).
    pub fn new(max_bytes: usize) -> Self {
        AgedMap {
            map: HashMap::default(),
            order: VecDeque::new(),
            next_seq: 0,
            heap: 0,
            max_bytes,
        }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// What the entries cost now: their heap bytes plus [`Self::ENTRY_OVERHEAD`] each.
    pub fn bytes(&self) -> usize {
        self.heap + self.map.len() * Self::ENTRY_OVERHEAD
    }

    /// The bound given at construction.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// True when [`AgedMap::bytes`] exceeds the bound.
    pub fn over_bound(&self) -> bool {
        self.bytes() > self.max_bytes
    }

    /// Inserts or replaces `key` (which becomes the newest entry); `heap` is the heap bytes
    /// key and value own. Returns the value replaced. Does not evict: call
    /// [`AgedMap::evict_over_bound`] (or pop) afterwards.
    pub fn insert(&mut self, key: K, value: V, heap: usize, now: Instant) -> Option<V> {
        let seq = self.bump();
        self.order.push_back((seq, now, key.clone()));
        self.heap += heap;
        let old = self.map.insert(key, Slot { value, seq, heap });
        let old = old.map(|s| {
            self.heap -= s.heap;
            s.value
        });
        self.sweep_if_needed();
        old
    }

    /// Inserts `key` unless it is held (then nothing changes): true if it was inserted. One
    /// hash lookup, where `contains_key` then `insert` take two.
    pub fn insert_new(&mut self, key: K, value: V, heap: usize, now: Instant) -> bool {
        let seq = self.next_seq;
        match self.map.entry(key) {
            Entry::Occupied(_) => return false,
            Entry::Vacant(slot) => {
                self.order.push_back((seq, now, slot.key().clone()));
                slot.insert(Slot { value, seq, heap });
            }
        }
        self.next_seq += 1;
        self.heap += heap;
        self.sweep_if_needed();
        true
    }

    /// Makes `key` the newest entry (as of `now`) if held, in one hash lookup (the caller
    /// gives the queue its own copy of the key); false if it is not held.
    pub fn touch_owned(&mut self, key: K, now: Instant) -> bool {
        let Some(slot) = self.map.get_mut(&key) else {
            return false;
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        slot.seq = seq;
        self.order.push_back((seq, now, key));
        self.sweep_if_needed();
        true
    }

    /// The value of `key`.
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.get(key).map(|s| &s.value)
    }

    /// The value of `key`, to change; say what it costs now with [`AgedMap::set_heap`].
    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.get_mut(key).map(|s| &mut s.value)
    }

    /// True if `key` is held.
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.contains_key(key)
    }

    /// Sets the heap bytes `key`'s entry owns (after its value changed).
    pub fn set_heap<Q>(&mut self, key: &Q, heap: usize)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Some(slot) = self.map.get_mut(key) {
            self.heap = self.heap - slot.heap + heap;
            slot.heap = heap;
        }
    }

    /// Removes `key`.
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let slot = self.map.remove(key)?;
        self.heap -= slot.heap;
        self.sweep_if_needed();
        Some(slot.value)
    }

    /// When the oldest entry was inserted or last touched.
    pub fn oldest_time(&mut self) -> Option<Instant> {
        self.skip_tombstones();
        self.order.front().map(|(_, t, _)| *t)
    }

    /// The oldest entry's key and value, without removing it.
    pub fn peek_oldest(&mut self) -> Option<(&K, &V, Instant)> {
        self.skip_tombstones();
        let (_, t, k) = self.order.front()?;
        let slot = self.map.get(k)?;
        Some((k, &slot.value, *t))
    }

    /// Removes and returns the oldest entry.
    pub fn pop_oldest(&mut self) -> Option<(K, V)> {
        self.skip_tombstones();
        let (_, _, key) = self.order.pop_front()?;
        let slot = self.map.remove(&key)?;
        self.heap -= slot.heap;
        Some((key, slot.value))
    }

    /// Pops oldest entries until within the bound, handing each to `evicted`; returns how
    /// many were popped.
    pub fn evict_over_bound(&mut self, mut evicted: impl FnMut(K, V)) -> usize {
        let mut n = 0;
        while self.over_bound() {
            let Some((k, v)) = self.pop_oldest() else {
                break;
            };
            evicted(k, v);
            n += 1;
        }
        n
    }

    /// Removes every entry older than `cutoff` for which `expired` says so, stopping at the
    /// first that is not; returns how many were removed.
    pub fn expire_before(
        &mut self,
        cutoff: Instant,
        mut expired: impl FnMut(&K, &V) -> bool,
        mut removed: impl FnMut(K, V),
    ) -> usize {
        // the queue is in time order (see the module's note): when its front, live or not,
        // is young, so is everything, and no lookup is made
        if self.order.front().is_none_or(|(_, t, _)| *t >= cutoff) {
            return 0;
        }
        let mut n = 0;
        while let Some((k, v, t)) = self.peek_oldest() {
            if t >= cutoff || !expired(k, v) {
                break;
            }
            if let Some((k, v)) = self.pop_oldest() {
                removed(k, v);
                n += 1;
            }
        }
        n
    }

    fn bump(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    fn is_live(map: &HashMap<K, Slot<V>>, seq: u64, key: &K) -> bool {
        map.get(key).is_some_and(|s| s.seq == seq)
    }

    fn skip_tombstones(&mut self) {
        while let Some((seq, _, k)) = self.order.front() {
            if Self::is_live(&self.map, *seq, k) {
                break;
            }
            self.order.pop_front();
        }
    }

    /// Drops tombstones once they outnumber live entries (amortised O(1) per operation),
    /// and gives back storage the map and queue no longer need.
    fn sweep_if_needed(&mut self) {
        if self.order.len() <= 2 * self.map.len() + 64 {
            return;
        }
        let map = &self.map;
        self.order.retain(|(seq, _, k)| Self::is_live(map, *seq, k));
        if self.order.capacity() > 4 * self.order.len() + 64 {
            self.order.shrink_to_fit();
        }
        if self.map.capacity() > 4 * self.map.len() + 64 {
            self.map.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn oldest_first_within_bytes() {
        let per = AgedMap::<u32, u32>::ENTRY_OVERHEAD + 10;
        let mut m = AgedMap::<u32, u32>::new(per * 3);
        let t = Instant::now();
        for i in 0..5 {
            m.insert(i, i, 10, t);
            m.evict_over_bound(|_, _| {});
        }
        assert_eq!(m.len(), 3);
        assert!(m.bytes() <= m.max_bytes());
        assert!(m.get(&1).is_none() && m.get(&2).is_some());
        // touching 2 makes 3 the oldest
        m.touch_owned(2, t);
        assert_eq!(m.pop_oldest(), Some((3, 3)));
        assert_eq!(m.pop_oldest(), Some((4, 4)));
        assert_eq!(m.pop_oldest(), Some((2, 2)));
        assert_eq!(m.pop_oldest(), None);
        assert_eq!(m.bytes(), 0);
    }

    #[test]
    fn replace_remove_and_recharge_keep_the_count() {
        let mut m = AgedMap::<u32, u32>::new(usize::MAX);
        let t = Instant::now();
        m.insert(1, 1, 100, t);
        assert_eq!(m.insert(1, 2, 50, t), Some(1));
        assert_eq!(m.bytes(), 50 + AgedMap::<u32, u32>::ENTRY_OVERHEAD);
        m.set_heap(&1, 70);
        assert_eq!(m.bytes(), 70 + AgedMap::<u32, u32>::ENTRY_OVERHEAD);
        assert_eq!(m.remove(&1), Some(2));
        assert_eq!(m.bytes(), 0);
        assert!(m.is_empty());
    }

    #[test]
    fn tombstones_stay_bounded() {
        let mut m = AgedMap::<u32, ()>::new(usize::MAX);
        let t = Instant::now();
        for i in 0..10 {
            m.insert(i, (), 0, t);
        }
        for _ in 0..100_000 {
            m.touch_owned(3, t);
            m.insert(4, (), 0, t);
        }
        assert!(m.order.len() <= 2 * m.len() + 65, "{}", m.order.len());
        assert_eq!(m.pop_oldest().map(|e| e.0), Some(0));
    }

    #[test]
    fn insert_new_and_touch_owned_keep_the_order() {
        let mut m = AgedMap::<u32, u32>::new(usize::MAX);
        let t = Instant::now();
        assert!(m.insert_new(1, 10, 5, t));
        assert!(m.insert_new(2, 20, 5, t));
        assert!(!m.insert_new(1, 11, 5, t), "held: unchanged");
        assert_eq!(m.get(&1), Some(&10));
        assert_eq!(m.bytes(), 2 * (5 + AgedMap::<u32, u32>::ENTRY_OVERHEAD));
        assert!(m.touch_owned(1, t));
        assert!(!m.touch_owned(3, t), "not held");
        assert_eq!(m.pop_oldest(), Some((2, 20)));
        assert_eq!(m.pop_oldest(), Some((1, 10)));
        assert!(m.is_empty());
    }

    #[test]
    fn expiry_stops_at_the_first_young_or_kept_entry() {
        let mut m = AgedMap::<u32, bool>::new(usize::MAX);
        let t = Instant::now();
        m.insert(1, true, 0, t);
        m.insert(2, false, 0, t);
        m.insert(3, true, 0, t + Duration::from_secs(10));
        let mut gone = vec![];
        m.expire_before(t + Duration::from_secs(5), |_, v| *v, |k, _| gone.push(k));
        assert_eq!(gone, [1]);
        m.remove(&2);
        m.expire_before(t + Duration::from_secs(5), |_, v| *v, |k, _| gone.push(k));
        assert_eq!(gone, [1], "3 is young");
        assert_eq!(m.oldest_time(), Some(t + Duration::from_secs(10)));
    }
}
