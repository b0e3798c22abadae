//! Tests of the chunked layout (version 4): a channel's run of items in one write is stored
//! as chunks of at most [`codec::CHUNK_ITEMS`] items; a chunk evicted in part stays on disk
//! and only its kept items come back at open, with their sequence numbers; a chunk evicted
//! whole is deleted (the store's entry count goes down); a version 3 store (one item per
//! key) is read as it is and written on in chunks; a failed write acknowledges nothing and
//! leaves nothing behind.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fjall::PersistMode;

use super::super::disk_codec as codec;
use super::tests::{on_disk, raw, simple};
use super::{DiskHistory, FsyncPolicy};
use crate::history::{After, HistoryConfig, HistoryStore, Reach, Recovery};
use crate::message::{ChannelName, Message};

fn tmp(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "gripway-chunks-{tag}-{}-{:?}",
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

fn open(dir: &Path, max_items: usize) -> DiskHistory {
    DiskHistory::open(dir, config(max_items), FsyncPolicy::EveryBatch)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Items `from..to` of channel `ch`, ids `ch<n>`.
fn run(ch: &str, from: u64, to: u64) -> Vec<Arc<Message>> {
    (from..to)
        .map(|n| simple(ch, &format!("{ch}{n}")))
        .collect()
}

async fn append(h: &DiskHistory, ch: &str, msgs: &[Arc<Message>]) -> Option<u64> {
    let name: ChannelName = Arc::from(ch);
    let out = h.append(&name, msgs, Instant::now()).await;
    out.unwrap_or_else(|e| panic!("append: {e}")).last_seq
}

async fn read(h: &DiskHistory, ch: &str) -> Recovery {
    h.read_after(ch, After::Start, 1000, Instant::now())
        .await
        .unwrap_or_else(|e| panic!("read: {e}"))
}

fn seqs(r: &Recovery) -> Vec<u64> {
    r.items.iter().map(|k| k.seq).collect()
}

/// The ids of the items read, each checked to be `ch<its sequence number>`.
fn check_ids(r: &Recovery, ch: &str) {
    for k in &r.items {
        assert_eq!(k.msg.id(), Some(format!("{ch}{}", k.seq).as_str()));
    }
}

/// Entries (chunks) in the items keyspace, and each one's item count, in key order.
fn chunk_sizes(dir: &Path) -> Vec<usize> {
    let mut sizes: Vec<(Vec<u8>, usize)> = Vec::new();
    for (k, ..) in on_disk(dir) {
        match sizes.last_mut() {
            Some((last, n)) if *last == k => *n += 1,
            _ => sizes.push((k, 1)),
        }
    }
    sizes.into_iter().map(|(_, n)| n).collect()
}

#[tokio::test]
async fn a_long_run_is_stored_in_chunks_and_comes_back_whole() {
    let dir = tmp("long");
    {
        let h = open(&dir, 200);
        assert_eq!(append(&h, "c", &run("c", 1, 71)).await, Some(70));
        // a write of two channels: each its own chunks
        let groups = vec![run("c", 71, 111), run("d", 1, 34)];
        assert!(h.append_groups(&groups, Instant::now()).await.is_ok());
    }
    // 70 = 32 + 32 + 6, then 40 = 32 + 8 and 33 = 32 + 1
    assert_eq!(chunk_sizes(&dir), [32, 32, 6, 32, 8, 32, 1]);
    let h = open(&dir, 200);
    let r = read(&h, "c").await;
    assert_eq!(seqs(&r), (1..111).collect::<Vec<_>>());
    check_ids(&r, "c");
    assert_eq!(r.reach, Reach::Complete);
    assert_eq!(seqs(&read(&h, "d").await), (1..34).collect::<Vec<_>>());
    assert_eq!(append(&h, "c", &run("c", 111, 112)).await, Some(111));
    drop(h);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_chunk_evicted_in_part_brings_back_only_its_kept_items_and_goes_when_all_are() {
    let dir = tmp("partial");
    {
        let h = open(&dir, 40);
        append(&h, "c", &run("c", 1, 71)).await;
        let r = read(&h, "c").await;
        assert_eq!(seqs(&r), (31..71).collect::<Vec<_>>());
    }
    // items 1..=30 are evicted, but their chunk holds 31 and 32: it stays
    assert_eq!(chunk_sizes(&dir), [32, 32, 6]);
    {
        let h = open(&dir, 40);
        let r = read(&h, "c").await;
        assert_eq!((r.reach, seqs(&r)), (Reach::Gap, (31..71).collect()));
        check_ids(&r, "c");
        // 71..=80 evict up to 40: the first chunk (1..=32) goes whole, the second stays
        assert_eq!(append(&h, "c", &run("c", 71, 81)).await, Some(80));
    }
    assert_eq!(chunk_sizes(&dir), [32, 6, 10], "one chunk fewer on disk");
    let stored: Vec<u64> = on_disk(&dir)
        .into_iter()
        .map(|(_, _, seq, _)| seq)
        .collect();
    assert_eq!(stored, (33..81).collect::<Vec<_>>());
    let h = open(&dir, 40);
    let r = read(&h, "c").await;
    assert_eq!(seqs(&r), (41..81).collect::<Vec<_>>());
    check_ids(&r, "c");
    assert_eq!(append(&h, "c", &run("c", 81, 82)).await, Some(81));
    // every item evicted (by age): every chunk goes
    h.expire(Instant::now() + Duration::from_secs(121)).await;
    drop(h);
    assert_eq!(chunk_sizes(&dir), Vec::<usize>::new());
    let h = open(&dir, 40);
    let r = read(&h, "c").await;
    assert_eq!(r.items.len(), 0);
    assert_eq!(append(&h, "c", &run("c", 82, 83)).await, Some(82));
    drop(h);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Writes a store as layout version 3 wrote it: one item per key (a store-wide counter).
fn write_v3(dir: &Path, ch: &str, items: &[Arc<Message>], next_seq: u64) {
    let (db, ks_items, channels, meta) = raw(dir);
    let wall = super::wall_now();
    let mut batch = db.batch();
    let first = next_seq - items.len() as u64;
    let state = super::super::memory::restore::ChannelState {
        gen: 0,
        first_seq: first,
        next_seq: first,
        truncated: first > 1,
        last_id: None,
        emptied_at: 0,
    };
    batch.insert(
        &channels,
        ch.as_bytes(),
        codec::encode_channel(&state, wall),
    );
    for (i, msg) in items.iter().enumerate() {
        let mut v = Vec::new();
        codec::encode_item_into(&mut v, wall, first + i as u64, msg);
        batch.insert(&ks_items, codec::item_key(100 + i as u64).to_vec(), v);
    }
    batch.insert(&meta, codec::META_FORMAT, codec::FORMAT_V3.to_be_bytes());
    batch.insert(&meta, codec::META_EPOCH, 7u64.to_be_bytes());
    batch.insert(&meta, codec::META_NEXT_GEN, 1u64.to_be_bytes());
    batch.commit().unwrap_or_else(|e| panic!("{e}"));
    db.persist(PersistMode::SyncAll)
        .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn a_version_3_store_is_read_as_it_is_and_written_on_in_chunks() {
    let dir = tmp("v3");
    write_v3(&dir, "c", &run("c", 11, 16), 16);
    {
        let h = open(&dir, 10);
        let r = read(&h, "c").await;
        assert_eq!((r.reach, seqs(&r)), (Reach::Gap, (11..16).collect()));
        check_ids(&r, "c");
        // 16..=23 evict 11..=13: three one-item entries go
        assert_eq!(append(&h, "c", &run("c", 16, 24)).await, Some(23));
    }
    {
        let (_db, _, _, meta) = raw(&dir);
        let format = meta
            .get(codec::META_FORMAT)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(format.as_deref(), Some(&codec::FORMAT.to_be_bytes()[..]));
    }
    assert_eq!(
        chunk_sizes(&dir),
        [1, 1, 8],
        "two old entries kept, then a chunk"
    );
    let h = open(&dir, 10);
    let r = read(&h, "c").await;
    assert_eq!(seqs(&r), (14..24).collect::<Vec<_>>());
    check_ids(&r, "c");
    drop(h);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_failed_write_acknowledges_nothing_and_leaves_nothing() {
    let dir = tmp("fail");
    {
        let h = open(&dir, 100);
        assert_eq!(append(&h, "c", &run("c", 1, 41)).await, Some(40));
        h.shared.fail_writes.store(1, Ordering::Relaxed);
        let name: ChannelName = Arc::from("c");
        let failed = h.append(&name, &run("c", 41, 81), Instant::now()).await;
        assert!(failed.is_err(), "{failed:?}");
        assert_eq!(h.disk_stats().failures, 1);
        // nothing of it is readable, and the sequence goes on from the last stored item
        assert_eq!(seqs(&read(&h, "c").await), (1..41).collect::<Vec<_>>());
        assert_eq!(append(&h, "c", &run("c", 41, 46)).await, Some(45));
    }
    assert_eq!(chunk_sizes(&dir), [32, 8, 5]);
    let h = open(&dir, 100);
    let r = read(&h, "c").await;
    assert_eq!(seqs(&r), (1..46).collect::<Vec<_>>());
    check_ids(&r, "c");
    drop(h);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn chunks_round_trip_and_damaged_ones_are_errors() {
    let msgs = run("ch", 1, 4);
    let mut v = Vec::new();
    codec::start_chunk(&mut v, 42, 9, "ch");
    for m in &msgs {
        codec::push_chunk_item(&mut v, m);
    }
    let c = codec::decode_chunk(&v).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (c.wall, c.first_seq, c.channel, c.bodies.len()),
        (42, 9, "ch", 3)
    );
    for (body, m) in c.bodies.iter().zip(&msgs) {
        let back = codec::decode_body_of("ch", body).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back.to_item(), m.to_item());
    }
    // cut anywhere inside an item: an error, never a panic or a shorter chunk
    let whole = v.len();
    for cut in 0..whole {
        let r = codec::decode_chunk(&v[..cut]);
        if let Ok(c) = &r {
            // a cut between items reads as fewer items; their bodies still decode
            assert!(c.bodies.len() < 3 && !c.bodies.is_empty(), "cut at {cut}");
        }
    }
    // an empty chunk, an unknown first byte
    let mut empty = Vec::new();
    codec::start_chunk(&mut empty, 1, 1, "ch");
    assert!(codec::decode_chunk(&empty).is_err());
    assert!(codec::decode_chunk(&[9, 0, 0]).is_err());
    // a large item's length takes more than one byte
    let big = Message::new({
        let mut item = simple("ch", "big").to_item();
        item.id = Some("x".repeat(300));
        item
    });
    codec::start_chunk(&mut v, 1, 1, "ch");
    codec::push_chunk_item(&mut v, &big);
    let c = codec::decode_chunk(&v).unwrap_or_else(|e| panic!("{e}"));
    let back = codec::decode_body_of("ch", c.bodies[0]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back.to_item(), big.to_item());
}

#[test]
fn a_chunk_key_holds_its_key_and_item_count_in_8_bytes() {
    use super::ChunkKey;
    assert_eq!(std::mem::size_of::<ChunkKey>(), 8);
    for (key, items) in [
        (0, 1),
        (5, 32),
        (ChunkKey::KEY_LIMIT - 1, 256),
        (1 << 40, 7),
    ] {
        let c = ChunkKey::new(key, items);
        assert_eq!((c.key(), c.items()), (key, items as u64));
    }
}
