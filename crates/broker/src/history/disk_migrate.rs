//! Migrating an on-disk history of an older layout to this one when it is opened, before
//! it is read back (`disk_restore.rs`).
//!
//! Versions 1 and 2 keyed an item by its channel and sequence number; versions 3 and 4 key
//! an entry by a store-wide counter in write order (`disk_codec.rs`). The migration reads
//! the old items in key order (channel by channel, each in sequence order), gives each the
//! next counter and a version 3 value (the old value's time and item, unchanged, behind the
//! channel and sequence; version 4 reads it as a chunk of one item), and deletes the old
//! key, [`CHUNK`] items per write, each write fsynced. Its first write marks the store
//! version 4 and "migrating", its last removes the mark (one left by a version 3 build is
//! resumed alike): an older build refuses the store from the first write on (it would
//! misread new keys), and an interrupted migration resumes at the next open — an old key
//! (9 bytes or more) is never mistaken for a new one (8), and the counter continues after
//! every new key, so each channel's items stay in sequence order. Channel rows and the meta
//! keys are the same in every version.

use std::ops::Bound;
use std::path::Path;

use super::disk::Store;
use super::disk_codec as codec;
use super::HistoryError;
use fjall::PersistMode;

/// Most items one migration write moves.
pub(super) const CHUNK: usize = 4096;

fn fail(dir: &Path, what: &str, e: impl std::fmt::Display) -> HistoryError {
    HistoryError::Unavailable(format!(
        "history store {}: migrating to layout version {}: {what}: {e}",
        dir.display(),
        codec::FORMAT
    ))
}

/// Migrates `store` to this layout if it holds an older one (or an interrupted
/// migration); returns how many items it moved.
pub(super) fn migrate_if_old(dir: &Path, store: &Store) -> Result<usize, HistoryError> {
    let read = |key: &str| store.meta.get(key).map_err(|e| fail(dir, "cannot read", e));
    let format = read(codec::META_FORMAT)?.and_then(|v| <[u8; 8]>::try_from(&v[..]).ok());
    let format = format.map(u64::from_be_bytes);
    let migrating = read(codec::META_MIGRATING)?.is_some();
    let old = matches!(format, Some(codec::FORMAT_V1 | codec::FORMAT_V2));
    let resumed = migrating && matches!(format, Some(codec::FORMAT | codec::FORMAT_V3));
    if !(old || resumed) {
        return Ok(0); // new, current, or a version the restore refuses
    }
    // an interrupted migration already wrote some: count on after them
    let mut next = 0u64;
    for kv in store.items.iter() {
        let k = kv.key().map_err(|e| fail(dir, "cannot read", e))?;
        if let Some(n) = codec::split_item_key(&k) {
            next = next.max(n.saturating_add(1));
        }
    }
    let mut moved = 0;
    let mut value = Vec::with_capacity(1024);
    let mut after: Option<Vec<u8>> = None;
    let mut first = true;
    loop {
        let mut batch = store.db.batch();
        let mut n = 0;
        let mut last = None;
        let iter = match &after {
            None => store.items.iter(),
            Some(k) => store
                .items
                .range::<Vec<u8>, _>((Bound::Excluded(k.clone()), Bound::Unbounded)),
        };
        for kv in iter {
            let (k, v) = kv.into_inner().map_err(|e| fail(dir, "cannot read", e))?;
            if codec::split_item_key(&k).is_some() {
                continue; // moved already
            }
            // an old key that cannot be read is left to the restore, which deletes it
            if let Some((name, seq)) = codec::split_old_key(&k) {
                if codec::value_from_old(&mut value, name, seq, &v).is_some() {
                    batch.insert(
                        &store.items,
                        fjall::Slice::new(&codec::item_key(next)),
                        fjall::Slice::new(&value),
                    );
                    batch.remove(&store.items, k.clone());
                    next += 1;
                    n += 1;
                }
            }
            last = Some(k.to_vec());
            if n == CHUNK {
                break;
            }
        }
        let done = n < CHUNK;
        if first || done {
            batch.insert(&store.meta, codec::META_FORMAT, codec::FORMAT.to_be_bytes());
        }
        match (first, done) {
            (true, false) => batch.insert(&store.meta, codec::META_MIGRATING, 1u64.to_be_bytes()),
            (_, true) if migrating || !first => batch.remove(&store.meta, codec::META_MIGRATING),
            _ => {}
        }
        batch
            .durability(Some(PersistMode::SyncAll))
            .commit()
            .map_err(|e| fail(dir, "cannot write", e))?;
        moved += n;
        if done {
            break;
        }
        after = last;
        first = false;
    }
    if moved > 0 {
        tracing::info!(
            "history store {}: {moved} items moved to layout version {}",
            dir.display(),
            codec::FORMAT
        );
    }
    Ok(moved)
}

#[cfg(test)]
#[path = "disk_migrate_tests.rs"]
mod tests;
