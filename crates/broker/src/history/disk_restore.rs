//! Opening the on-disk history: reads the meta keys (or writes them for a new store), every
//! channel row and every item, and rebuilds the in-memory image (`memory_restore.rs`) as of
//! now — items keep their stored append times, so what aged out while the process was down
//! is dropped (and its channel marked truncated) at once. Items that cannot be read back,
//! or that belong to no channel row, are deleted and counted in a warning; their channel is
//! then truncated, never silently complete.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::disk::{wall_now, Store};
use super::disk_codec as codec;
use super::memory::MemoryCore;
use super::{HistoryConfig, HistoryError};
use crate::message::ChannelName;

/// The (channel, id) pairs read back at open — every kept item's and every channel's last
/// id — as 64-bit hashes with a per-process random seed (16 bytes or so each, no copy of
/// the ids): "maybe stored before the restart" in O(1), where a hit is then checked
/// against the channel's items. Built once, never changed (new ids are the dedup table's).
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

/// The image of what `store` keeps, the wall-clock milliseconds at its base instant, and
/// the ids it holds.
pub(super) fn restore(
    dir: &Path,
    store: &Store,
    config: HistoryConfig,
) -> Result<(MemoryCore, u64, RestoredIds), HistoryError> {
    match meta_u64(store, dir, codec::META_FORMAT)? {
        Some(codec::FORMAT) => {}
        Some(codec::FORMAT_V1) => {
            // read as it is; what is written from now on may be version 2
            store
                .meta
                .insert(codec::META_FORMAT, codec::FORMAT.to_be_bytes())
                .map_err(|e| fail(dir, "cannot write", e))?
        }
        Some(v) => {
            return Err(fail(
                dir,
                "unsupported layout",
                format!("version {v}, this build reads {}", codec::FORMAT),
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
    let mut rows: HashMap<ChannelName, (u32, u64)> = HashMap::new();
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
        rows.insert(name, (slot, state.next_seq));
    }
    let mut orphans: Vec<Vec<u8>> = Vec::new();
    let mut unreadable = 0usize;
    for kv in store.items.iter() {
        let (k, v) = kv.into_inner().map_err(|e| fail(dir, "cannot read", e))?;
        let Some((name, seq)) = codec::split_item_key(&k) else {
            orphans.push(k.to_vec());
            continue;
        };
        let Some(&(slot, _)) = rows.get(name) else {
            orphans.push(k.to_vec());
            continue;
        };
        match codec::decode_item(name, &v) {
            Ok((at_wall, msg)) => {
                if let Some(id) = msg.id() {
                    ids.insert(name, id);
                }
                core.restore_item(slot, seq, msg, at_wall.saturating_sub(wall_base));
            }
            Err(e) => {
                unreadable += 1;
                tracing::warn!("history store {}: item {seq} of {name}: {e}", dir.display());
                orphans.push(k.to_vec());
                core.drop_restored(slot);
            }
        }
    }
    for (slot, next_seq) in rows.values() {
        core.check_restored(*slot, *next_seq);
    }
    if !bad.is_empty() {
        // the items of an unreadable row are gone: no unknown channel is complete now
        core.set_marks(next_gen, true);
    }
    core.finish_restore(now);
    if !bad.is_empty() || !orphans.is_empty() {
        tracing::warn!(
            "history store {}: dropped {} unreadable channel rows, {} unreadable items, {} items of no channel",
            dir.display(),
            bad.len(),
            unreadable,
            orphans.len() - unreadable
        );
        let mut batch = store.db.batch();
        for k in bad {
            batch.remove(&store.channels, k);
        }
        for k in orphans {
            batch.remove(&store.items, k);
        }
        batch.commit().map_err(|e| fail(dir, "cannot write", e))?;
    }
    Ok((core, wall_base, ids))
}
