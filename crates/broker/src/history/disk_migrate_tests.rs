//! Tests of the migration from layouts 1 and 2: stores written as those versions wrote them
//! (items keyed by channel and sequence) are read back whole and in order after the
//! migration, what was dropped before it is still a gap, and appends continue; an
//! interrupted migration resumes; an unknown version is refused with the directory named.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fjall::PersistMode;
use gripway_proto::publish::{encode_items, Formats, HttpStreamAction, HttpStreamFormat, Item};

use super::super::disk::tests::{on_disk, raw, simple};
use super::super::disk::{DiskHistory, FsyncPolicy};
use super::super::disk_codec as codec;
use super::super::memory::restore::ChannelState;
use super::super::{After, HistoryConfig, HistoryStore, Reach, Recovery};
use super::CHUNK;
use crate::message::Message;

const EPOCH: u64 = 12_345;

fn tmp(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "gripway-migrate-{tag}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn config(max_items: usize) -> HistoryConfig {
    HistoryConfig {
        max_items,
        max_age: Duration::from_secs(120),
        max_bytes: usize::MAX,
    }
}

/// An item with meta (stored as a publish body in every version).
fn with_meta(channel: &str, id: &str) -> Arc<Message> {
    Message::new(Item {
        channel: channel.into(),
        id: Some(id.into()),
        prev_id: None,
        meta: vec![("user".into(), "u1".into())],
        no_seq: false,
        formats: Formats {
            http_stream: Some(HttpStreamFormat {
                action: HttpStreamAction::Send(Bytes::from_static(b"m")),
                content_filters: vec![],
            }),
            ..Formats::default()
        },
    })
}

fn row(gen: u32, next_seq: u64, truncated: bool, last_id: &str) -> ChannelState {
    ChannelState {
        gen,
        first_seq: next_seq,
        next_seq,
        truncated,
        last_id: Some(Arc::from(last_id)),
        emptied_at: 0,
    }
}

/// An item's value as layout `version` wrote it: its time, then the item (version 1:
/// always a publish body; version 2: as version 3 writes it after its head).
fn old_value(version: u64, wall: u64, msg: &Message) -> Vec<u8> {
    let mut v = wall.to_be_bytes().to_vec();
    if version == 1 {
        v.extend_from_slice(&encode_items(&[msg.to_item()]));
    } else {
        let mut new = Vec::new();
        codec::encode_item_into(&mut new, wall, 0, msg);
        let (_, body) = codec::decode_head(&new).unwrap_or_else(|e| panic!("{e}"));
        v.extend_from_slice(body);
    }
    v
}

/// Writes a store as layout `version` wrote it.
fn write_old(
    dir: &Path,
    version: u64,
    rows: &[(&str, ChannelState)],
    items: &[(u64, Arc<Message>)],
) {
    let (db, ks_items, channels, meta) = raw(dir);
    let wall = super::super::disk::wall_now();
    let mut batch = db.batch();
    for (name, state) in rows {
        batch.insert(
            &channels,
            name.as_bytes(),
            codec::encode_channel(state, wall),
        );
    }
    for (seq, msg) in items {
        let key = codec::old_item_key(&msg.channel, *seq);
        batch.insert(&ks_items, key, old_value(version, wall, msg));
    }
    batch.insert(&meta, codec::META_FORMAT, version.to_be_bytes());
    batch.insert(&meta, codec::META_EPOCH, EPOCH.to_be_bytes());
    batch.insert(
        &meta,
        codec::META_NEXT_GEN,
        (rows.len() as u64).to_be_bytes(),
    );
    batch.commit().unwrap_or_else(|e| panic!("{e}"));
    db.persist(PersistMode::SyncAll)
        .unwrap_or_else(|e| panic!("{e}"));
}

fn ids(r: &Recovery) -> Vec<String> {
    r.items
        .iter()
        .map(|k| k.msg.id().unwrap_or("-").to_string())
        .collect()
}

fn seqs(r: &Recovery) -> Vec<u64> {
    r.items.iter().map(|k| k.seq).collect()
}

async fn read(h: &DiskHistory, channel: &str, after: After<'_>) -> Recovery {
    h.read_after(channel, after, 100, Instant::now())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

fn format_and_mark(dir: &Path) -> (Option<Vec<u8>>, bool) {
    let (_db, _, _, meta) = raw(dir);
    let get = |k| meta.get(k).unwrap_or_else(|e| panic!("{e}"));
    (
        get(codec::META_FORMAT).map(|v| v.to_vec()),
        get(codec::META_MIGRATING).is_some(),
    )
}

#[tokio::test]
async fn version_1_and_2_stores_are_migrated_at_open() {
    for version in [1, 2] {
        let dir = tmp(&format!("v{version}"));
        let big = CHUNK as u64 + 100; // more than one migration write
        let mut items = vec![
            (1, simple("a", "a1")),
            (2, with_meta("a", "a2")),
            (3, simple("a", "a3")),
            (2, simple("b", "b2")), // b1 was dropped before
        ];
        items.extend((1..=big).map(|i| (i, simple("big", &format!("big{i}")))));
        let rows = [
            ("a", row(0, 4, false, "a3")),
            ("b", row(1, 3, true, "b2")),
            ("big", row(2, big + 1, false, &format!("big{big}"))),
        ];
        write_old(&dir, version, &rows, &items);
        {
            let h = DiskHistory::open(&dir, config(10), FsyncPolicy::EveryBatch)
                .unwrap_or_else(|e| panic!("{e}"));
            let r = read(&h, "a", After::Id("older")).await;
            assert_eq!(r.reach, Reach::Complete, "v{version}");
            assert_eq!(
                (ids(&r), seqs(&r)),
                (vec!["a1".into(), "a2".into(), "a3".into()], vec![1, 2, 3])
            );
            assert_eq!(r.epoch >> 32, EPOCH, "the epoch is kept");
            assert_eq!(r.items[1].msg.meta_value("user"), Some("u1"));
            assert_eq!(r.items[2].msg.stream_content(), Some(&b"hello"[..]));
            let r = read(&h, "b", After::Id("b1")).await;
            assert_eq!((r.reach, ids(&r)), (Reach::Gap, vec!["b2".to_string()]));
            let r = read(&h, "big", After::Start).await;
            assert_eq!(seqs(&r), (big - 9..=big).collect::<Vec<_>>());
            assert!(h.contains_id("a", "a2") && h.contains_id("b", "b2"));
            assert_eq!(
                h.append(&Arc::from("a"), &[simple("a", "a4")], Instant::now())
                    .await
                    .ok()
                    .and_then(|a| a.last_seq),
                Some(4)
            );
        }
        assert_eq!(
            format_and_mark(&dir),
            (Some(codec::FORMAT.to_be_bytes().to_vec()), false),
            "v{version}: marked version 3, the migration finished"
        );
        let stored = on_disk(&dir);
        assert!(stored.iter().all(|(k, ..)| k.len() == 8), "no old key left");
        assert_eq!(
            stored.len(),
            3 + 1 + 10 + 1,
            "what the bound dropped is gone"
        );
        let a: Vec<_> = stored
            .iter()
            .filter(|(_, c, ..)| c == "a")
            .map(|(_, _, seq, id)| (*seq, id.clone()))
            .collect();
        assert_eq!(
            a,
            [(1, "a1"), (2, "a2"), (3, "a3"), (4, "a4")].map(|(s, i)| (s, i.to_string()))
        );
        let h = DiskHistory::open(&dir, config(10), FsyncPolicy::EveryBatch)
            .unwrap_or_else(|e| panic!("{e}"));
        let r = read(&h, "a", After::Id("a2")).await;
        assert_eq!(
            (r.reach, ids(&r)),
            (Reach::After, vec!["a3".into(), "a4".into()])
        );
        drop(h);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[tokio::test]
async fn an_interrupted_migration_resumes() {
    // cut short by this build, or by a version 3 build (which marked the store version 3)
    for version in [codec::FORMAT, codec::FORMAT_V3] {
        interrupted_migration_resumes(version).await;
    }
}

async fn interrupted_migration_resumes(version: u64) {
    let dir = tmp(&format!("resume-{version}"));
    let items = [
        (1, simple("a", "a1")),
        (2, simple("a", "a2")),
        (1, simple("b", "b1")),
        (3, simple("a", "a3")),
    ];
    let rows = [("a", row(0, 4, false, "a3")), ("b", row(1, 2, false, "b1"))];
    write_old(&dir, 2, &rows, &items);
    // as a migration cut short after its first write: a1 and a2 moved, the rest not
    {
        let (db, ks_items, _, meta) = raw(&dir);
        let mut batch = db.batch();
        for (n, seq) in [1u64, 2].into_iter().enumerate() {
            let old = codec::old_item_key("a", seq);
            let v = ks_items
                .get(&old)
                .unwrap_or_else(|e| panic!("{e}"))
                .unwrap_or_else(|| panic!("no a{seq}"));
            let mut new = Vec::new();
            assert!(codec::value_from_old(&mut new, "a", seq, &v).is_some());
            batch.insert(&ks_items, codec::item_key(n as u64 + 7).to_vec(), new);
            batch.remove(&ks_items, old);
        }
        batch.insert(&meta, codec::META_FORMAT, version.to_be_bytes());
        batch.insert(&meta, codec::META_MIGRATING, 1u64.to_be_bytes());
        batch.commit().unwrap_or_else(|e| panic!("{e}"));
        db.persist(PersistMode::SyncAll)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    {
        let h = DiskHistory::open(&dir, config(10), FsyncPolicy::EveryBatch)
            .unwrap_or_else(|e| panic!("{e}"));
        let r = read(&h, "a", After::Start).await;
        assert_eq!(
            (ids(&r), seqs(&r)),
            (vec!["a1".into(), "a2".into(), "a3".into()], vec![1, 2, 3])
        );
        assert_eq!(ids(&read(&h, "b", After::Start).await), ["b1"]);
    }
    assert_eq!(
        format_and_mark(&dir),
        (Some(codec::FORMAT.to_be_bytes().to_vec()), false),
        "the mark is gone"
    );
    let keys: Vec<_> = on_disk(&dir)
        .into_iter()
        .map(|(k, _, _, id)| (codec::split_item_key(&k[..]), id))
        .collect();
    assert_eq!(
        keys,
        [(7, "a1"), (8, "a2"), (9, "a3"), (10, "b1")].map(|(k, i)| (Some(k), i.to_string())),
        "the counter continues after the keys already moved"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unknown_version_is_refused_with_the_directory_named() {
    let dir = tmp("v9");
    write_old(&dir, 9, &[], &[]);
    let e = DiskHistory::open(&dir, config(10), FsyncPolicy::EveryBatch)
        .err()
        .map(|e| e.to_string());
    assert!(
        e.as_deref()
            .is_some_and(|e| e.contains("gripway-migrate-v9")
                && e.contains("version 9")
                && e.contains("move the directory away")),
        "{e:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
