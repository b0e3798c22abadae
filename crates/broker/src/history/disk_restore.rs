//! Opening the on-disk history: reads the meta keys (or writes them for a new store; a
//! version 3 store is marked version 4), every channel row and every chunk (in key order,
//! which is write order, so each channel's items come in sequence order; a version 3 entry
//! is a chunk of one item), and rebuilds the in-memory image (`memory_restore.rs`) as of
//! now — items keep their stored append times, so what aged out while the process was down
//! is dropped (and its channel marked truncated) at once, and every bound is applied again:
//! the items of a chunk evicted in part before the restart are dropped again here. Chunks
//! none of whose items the image keeps are deleted on disk here with the rows of the
//! channels that lost items. It also rebuilds the writer's map of each kept chunk's key.
//! Chunks that cannot be read back, or that belong to no channel row, are deleted and
//! counted in a warning; their channel is then truncated, never silently complete.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::disk::{touched_rows, wall_now, ChannelKeys, ChunkKey, KeyMap, Store};
use super::disk_codec as codec;
use super::memory::MemoryCore;
use super::{HistoryConfig, HistoryError};
use crate::message::ChannelName;

/// The (channel, id) pairs read back at open — every kept item's and every channel's last
/// id — as 64-bit hashes with a per-process random seed (16 bytes or so each, no copy of
/// the ids): "maybe stored before the restart" in O(1), where a hit is then checked
/// against the channel's items. Built once, never added to (new ids are the dedup table's), and
/// freed once the dedup window after the open has passed.
pub(super) struct RestoredIds {
    hasher: foldhash::quality::RandomState,
    set: foldhash::HashSet<u64>,
}

impl RestoredIds {
    fn new() -> RestoredIds {
        RestoredIds {
            hasher: foldhash::quality::RandomState::default(),
            set: foldhash::HashSet::default(),
        }
    }

    fn hash(&self, channel: &str, id: &str) -> u64 {
        self.hasher.hash_one((channel, id))
    }

    fn insert(&mut self, channel: &str, id: &str) {
        let h = self.hash(channel, id);
        self.set.insert(h);
    }

    /// True if no id was read back (or they were forgotten).
    pub(super) fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// Forgets every hash (and gives their memory back).
    pub(super) fn clear(&mut self) {
        self.set = foldhash::HashSet::default();
    }

    /// False if `id` was surely not kept on `channel` at open.
    pub(super) fn maybe(&self, channel: &str, id: &str) -> bool {
        !self.set.is_empty() && self.set.contains(&self.hash(channel, id))
    }
}

fn fail(dir: &Path, what: &str, e: impl std::fmt::Display) -> HistoryError {
    HistoryError::Unavailable(format!("history store {}: {what}: {e}", dir.display()))
}

fn meta_u64(store: &Store, dir: &Path, key: &str) -> Result<Option<u64>, HistoryError> {
    let v = store
        .meta
        .get(key)
        .map_err(|e| fail(dir, "cannot read", e))?;
    match v {
        None => Ok(None),
        Some(v) => match <[u8; 8]>::try_from(&v[..]) {
            Ok(b) => Ok(Some(u64::from_be_bytes(b))),
            Err(_) => Err(fail(dir, "corrupt meta key", key)),
        },
    }
}

/// What [`restore`] read back.
pub(super) struct Restored {
    /// The image of what the store keeps.
    pub(super) core: MemoryCore,
    /// Wall-clock milliseconds at the image's base instant.
    pub(super) wall_base: u64,
    /// The ids it holds.
    pub(super) ids: RestoredIds,
    /// The key of each kept item.
    pub(super) keys: KeyMap,
    /// The key the next item written gets (after every key stored).
    pub(super) next_key: u64,
}

/// Reads back what `store` keeps (a store of this layout: `disk_migrate.rs` runs first).
pub(super) fn restore(
    dir: &Path,
    store: &Store,
    config: HistoryConfig,
) -> Result<Restored, HistoryError> {
    match meta_u64(store, dir, codec::META_FORMAT)? {
        Some(codec::FORMAT) => {}
        // one item per key: read as chunks of one item, as they are; marked version 4 before
        // the first chunk is written (an older build then refuses the store)
        Some(codec::FORMAT_V3) => store
            .meta
            .insert(codec::META_FORMAT, codec::FORMAT.to_be_bytes())
            .map_err(|e| fail(dir, "cannot write", e))?,
        Some(v) => {
            return Err(fail(
                dir,
                "unsupported layout",
                format!(
                    "version {v}, this build reads {} (and 3; migrates 1 and 2); \
                     open it with the build that wrote it, or move the directory away to start empty",
                    codec::FORMAT
                ),
            ))
        }
        None => store
            .meta
            .insert(codec::META_FORMAT, codec::FORMAT.to_be_bytes())
            .map_err(|e| fail(dir, "cannot write", e))?,
    }
    let epoch = match meta_u64(store, dir, codec::META_EPOCH)? {
        Some(e) => e as u32,
        None => {
            let e = (wall_now() / 1000) as u32;
            store
                .meta
                .insert(codec::META_EPOCH, u64::from(e).to_be_bytes())
                .map_err(|e| fail(dir, "cannot write", e))?;
            e
        }
    };
    let next_gen = meta_u64(store, dir, codec::META_NEXT_GEN)?.unwrap_or(0) as u32;
    let forgot = meta_u64(store, dir, codec::META_FORGOT)?.unwrap_or(0) != 0;

    // The core's clock starts far enough back that every stored time still kept (items up
    // to max_age old, emptied channels up to twice that) has a place on it.
    let now = Instant::now();
    let wall = wall_now();
    let span = config
        .max_age
        .saturating_mul(2)
        .saturating_add(Duration::from_secs(1))
        .min(Duration::from_secs(7 * 24 * 3600));
    let base = now.checked_sub(span).unwrap_or(now);
    let wall_base = wall.saturating_sub(now.duration_since(base).as_millis() as u64);
    let mut core = MemoryCore::new(config, epoch, base);
    core.log_evictions();
    core.set_marks(next_gen, forgot);

    let mut ids = RestoredIds::new();
    let mut bad: Vec<Vec<u8>> = Vec::new();
    // per channel: its slot, and its row's next sequence and truncated flag
    let mut rows: HashMap<ChannelName, (u32, u64, bool)> = HashMap::new();
    for kv in store.channels.iter() {
        let (k, v) = kv.into_inner().map_err(|e| fail(dir, "cannot read", e))?;
        let (Ok(name), Some(mut state)) = (std::str::from_utf8(&k), codec::decode_channel(&v))
        else {
            bad.push(k.to_vec());
            continue;
        };
        state.emptied_at = state.emptied_at.saturating_sub(wall_base);
        if let Some(id) = &state.last_id {
            ids.insert(name, id);
        }
        let name: ChannelName = Arc::from(name);
        let slot = core.ensure_channel(&name, &state);
        rows.insert(name, (slot, state.next_seq, state.truncated));
    }
    let mut orphans: Vec<Vec<u8>> = Vec::new();
    let mut unreadable = 0usize;
    let mut next_key = 0u64;
    // per channel slot, the (first sequence, chunk) of each chunk given to the image, in order
    let mut placed: HashMap<u32, Vec<(u64, ChunkKey)>> = HashMap::new();
    let mut lost_unknown = false;
    let mut msgs = Vec::with_capacity(codec::CHUNK_ITEMS);
    for kv in store.items.iter() {
        let (k, v) = kv.into_inner().map_err(|e| fail(dir, "cannot read", e))?;
        let key = codec::split_item_key(&k).filter(|&n| n < ChunkKey::KEY_LIMIT);
        let Some(key) = key else {
            orphans.push(k.to_vec());
            continue;
        };
        next_key = next_key.max(key.saturating_add(1));
        let chunk = match codec::decode_chunk(&v) {
            Ok(c) => c,
            Err(e) => {
                // its channel is unknown: no channel not kept now can claim to be complete
                unreadable += 1;
                tracing::warn!("history store {}: item key {key}: {e}", dir.display());
                orphans.push(k.to_vec());
                lost_unknown = true;
                continue;
            }
        };
        let (name, first_seq) = (chunk.channel, chunk.first_seq);
        let Some(&(slot, ..)) = rows.get(name) else {
            orphans.push(k.to_vec());
            continue;
        };
        msgs.clear();
        let read: Result<(), String> = chunk.bodies.iter().try_for_each(|body| {
            msgs.push(codec::decode_body_of(name, body)?);
            Ok(())
        });
        if let Err(e) = read {
            unreadable += 1;
            tracing::warn!(
                "history store {}: chunk of {name} from item {first_seq}: {e}",
                dir.display()
            );
            orphans.push(k.to_vec());
            core.drop_restored(slot);
            continue;
        }
        let at = chunk.wall.saturating_sub(wall_base);
        for (seq, msg) in (first_seq..).zip(msgs.drain(..)) {
            if let Some(id) = msg.id() {
                ids.insert(name, id);
            }
            core.restore_item(slot, seq, msg, at);
        }
        let items = chunk.bodies.len();
        placed
            .entry(slot)
            .or_default()
            .push((first_seq, ChunkKey::new(key, items)));
    }
    for (slot, next_seq, _) in rows.values() {
        core.check_restored(*slot, *next_seq);
    }
    if !bad.is_empty() || lost_unknown {
        // the items of an unreadable row are gone: no unknown channel is complete now
        core.set_marks(next_gen, true);
    }
    core.finish_restore(now);
    // what the image kept of each channel is the tail of what it was given: a chunk none of
    // whose items it kept goes, the others are the writer's to delete later
    let mut keys = KeyMap::default();
    let mut dropped: Vec<u64> = Vec::new();
    for (name, &(slot, ..)) in &rows {
        let Some(mut chunks) = placed.remove(&slot) else {
            continue;
        };
        let kept_from = core
            .channel_state(name)
            .filter(|s| s.next_seq > s.first_seq)
            .map(|s| s.first_seq);
        let cut = match kept_from {
            None => chunks.len(),
            Some(from) => chunks
                .iter()
                .take_while(|(first, c)| first + c.items() <= from)
                .count(),
        };
        dropped.extend(chunks.drain(..cut).map(|(_, c)| c.key()));
        if let (Some(&(first_seq, _)), Some(from)) = (chunks.first(), kept_from) {
            if first_seq > from {
                tracing::error!(
                    "history store {}: {name}: restore out of step",
                    dir.display()
                );
            }
            keys.insert(
                name.clone(),
                ChannelKeys {
                    first_seq,
                    chunks: chunks.into_iter().map(|(_, c)| c).collect(),
                    // made true below where it is not
                    row_truncated: core.channel_state(name).is_some_and(|s| s.truncated),
                },
            );
        }
    }
    // the rows of the channels that lost items now (their truncated flag, or gone)
    let evicted = core.take_evicted();
    let mut touched = touched_rows(&core, &evicted);
    // and those whose truncated flag changed without an eviction (an unreadable item): from
    // here on every row says what the image says (the writer relies on it)
    let named: std::collections::HashSet<ChannelName> =
        touched.iter().map(|(n, _)| n.clone()).collect();
    for (name, &(_, _, stored)) in &rows {
        if let Some(state) = core.channel_state(name) {
            if state.truncated != stored && !named.contains(name) {
                touched.push((name.clone(), Some(state)));
            }
        }
    }
    let forgot = evicted.iter().any(|(_, s)| MemoryCore::is_forget_mark(*s));
    if !bad.is_empty() || !orphans.is_empty() {
        tracing::warn!(
            "history store {}: dropped {} unreadable channel rows, {} unreadable items, {} items of no channel",
            dir.display(),
            bad.len(),
            unreadable,
            orphans.len() - unreadable
        );
    }
    if !bad.is_empty() || !orphans.is_empty() || !dropped.is_empty() || !touched.is_empty() {
        let mut batch = store.db.batch();
        for k in bad {
            batch.remove(&store.channels, k);
        }
        for k in orphans {
            batch.remove(&store.items, k);
        }
        for k in dropped {
            batch.remove_weak(&store.items, codec::item_key(k).to_vec());
        }
        for (name, state) in &touched {
            match state {
                Some(state) => batch.insert(
                    &store.channels,
                    name.as_bytes(),
                    codec::encode_channel(state, wall_base + state.emptied_at),
                ),
                None => batch.remove(&store.channels, name.as_bytes()),
            }
        }
        if forgot || lost_unknown {
            batch.insert(&store.meta, codec::META_FORGOT, 1u64.to_be_bytes());
        }
        batch.commit().map_err(|e| fail(dir, "cannot write", e))?;
    }
    Ok(Restored {
        core,
        wall_base,
        ids,
        keys,
        next_key,
    })
}
