//! Tests of the on-disk history: the in-memory store's semantics, run against both stores
//! through the trait; a restart keeps items, sequence numbers, epochs and the truncated
//! knowledge; ages count across a restart; group commit under concurrent appends; the
//! `EveryMs` policy; open errors that name the directory; keys in write order, evictions
//! (by count, by age, by a smaller bound at open, forgotten channels) deleted on disk, and
//! the keys still found after a reopen. The migration from older layouts is tested in
//! `disk_migrate_tests.rs`, the `kill -9` test is in `tests/history_kill.rs`.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use gripway_proto::publish::{Formats, HttpStreamAction, HttpStreamFormat, Item};

use super::super::disk_codec as codec;
use super::*;
use crate::history::{MemoryHistory, Reach};

fn msg(channel: &str, id: Option<&str>, payload: usize) -> Arc<Message> {
    Message::new(Item {
        channel: channel.into(),
        id: id.map(Into::into),
        prev_id: Some("p".into()),
        meta: vec![("user".into(), "u1".into())],
        no_seq: false,
        formats: Formats {
            http_stream: Some(HttpStreamFormat {
                action: HttpStreamAction::Send(Bytes::from(vec![b'x'; payload])),
                content_filters: vec![],
            }),
            ..Formats::default()
        },
    })
}

fn name(s: &str) -> ChannelName {
    Arc::from(s)
}

fn config(max_items: usize, max_age_secs: u64) -> HistoryConfig {
    HistoryConfig {
        max_items,
        max_age: Duration::from_secs(max_age_secs),
        max_bytes: usize::MAX,
    }
}

fn ids(r: &Recovery) -> Vec<String> {
    r.items
        .iter()
        .map(|k| k.msg.id().unwrap_or("-").to_string())
        .collect()
}

fn s(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

fn tmp(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "gripway-history-{tag}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

async fn push<S: HistoryStore>(s: &S, channel: &str, id: &str, t: Instant) -> Appended {
    s.append(&name(channel), &[msg(channel, Some(id), 10)], t)
        .await
        .unwrap_or_else(|e| panic!("append: {e}"))
}

async fn read<S: HistoryStore>(s: &S, channel: &str, after: After<'_>, t: Instant) -> Recovery {
    s.read_after(channel, after, 100, t)
        .await
        .unwrap_or_else(|e| panic!("read: {e}"))
}

/// The in-memory store's semantics, through the trait, for any store with max_items 3.
async fn semantics<S: HistoryStore>(h: &S) {
    let t = Instant::now();
    for (i, id) in ["a", "b", "c", "d", "e"].into_iter().enumerate() {
        assert_eq!(push(h, "ch", id, t).await.last_seq, Some(i as u64 + 1));
    }
    let all = read(h, "ch", After::Start, t).await;
    assert_eq!((all.reach, ids(&all)), (Reach::Gap, s(&["c", "d", "e"])));
    let seqs: Vec<u64> = all.items.iter().map(|k| k.seq).collect();
    assert_eq!(seqs, [3, 4, 5]);
    let r = read(h, "ch", After::Id("a"), t).await;
    assert_eq!(r.reach, Reach::Gap);
    let r = read(h, "ch", After::Id("c"), t).await;
    assert_eq!((r.reach, ids(&r)), (Reach::After, s(&["d", "e"])));
    let r = read(
        h,
        "ch",
        After::Seq {
            epoch: all.epoch,
            seq: 3,
        },
        t,
    )
    .await;
    assert_eq!((r.reach, ids(&r)), (Reach::After, s(&["d", "e"])));
    let r = read(h, "ch", After::Id("e"), t).await;
    assert_eq!((r.reach, ids(&r)), (Reach::After, Vec::<String>::new()));
    // a complete channel: an id never kept gets everything
    push(h, "other", "x", t).await;
    let r = read(h, "other", After::Id("from-before"), t).await;
    assert_eq!((r.reach, ids(&r)), (Reach::Complete, s(&["x"])));
    let r = read(h, "never", After::Id("y"), t).await;
    assert_eq!((r.reach, r.items.len()), (Reach::Complete, 0));
    // items without an id are not kept and do not break the chain
    let c = name("noid");
    let out = h
        .append(
            &c,
            &[
                msg("noid", Some("a"), 1),
                msg("noid", None, 1),
                msg("noid", Some("b"), 1),
            ],
            t,
        )
        .await
        .ok();
    assert_eq!(
        out,
        Some(Appended {
            kept: 2,
            last_seq: Some(2)
        })
    );
    let none = h.append(&c, &[msg("noid", None, 1)], t).await.ok();
    assert_eq!(none, Some(Appended::default()));
    let last = h.last("noid", t).await.ok().flatten().map(|k| k.seq);
    assert_eq!(last, Some(2));
    let s = h.stats();
    assert_eq!((s.channels, s.items, s.evicted_count), (3, 6, 2));
}

#[tokio::test]
async fn both_stores_answer_alike() {
    let m = MemoryHistory::new(config(3, 120), 2);
    semantics(&m).await;
    assert!(m.contains_id("ch", "e") && m.contains_id("ch", "c") && !m.contains_id("ch", "a"));
    let dir = tmp("semantics");
    {
        let h = DiskHistory::open(&dir, config(3, 120), FsyncPolicy::EveryBatch)
            .unwrap_or_else(|e| panic!("{e}"));
        semantics(&h).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_restart_keeps_items_sequences_epochs_and_truncation() {
    let dir = tmp("restart");
    let t = Instant::now();
    let (epoch, before) = {
        let h = DiskHistory::open(&dir, config(3, 120), FsyncPolicy::EveryBatch)
            .unwrap_or_else(|e| panic!("{e}"));
        for id in ["a", "b", "c", "d"] {
            push(&h, "cut", id, t).await;
        }
        for id in ["x", "y"] {
            push(&h, "whole", id, t).await;
        }
        let r = read(&h, "cut", After::Start, t).await;
        (r.epoch, ids(&r))
    };
    let h = DiskHistory::open(&dir, config(3, 120), FsyncPolicy::EveryBatch)
        .unwrap_or_else(|e| panic!("{e}"));
    let t = Instant::now();
    let r = read(&h, "cut", After::Id("b"), t).await;
    assert_eq!((r.reach, ids(&r)), (Reach::After, s(&["c", "d"])));
    assert_eq!(r.epoch, epoch, "the epoch survives");
    let all = read(&h, "cut", After::Start, t).await;
    assert_eq!(ids(&all), before);
    assert_eq!(
        all.items.iter().map(|k| k.seq).collect::<Vec<_>>(),
        [2, 3, 4]
    );
    let r = read(&h, "cut", After::Seq { epoch, seq: 3 }, t).await;
    assert_eq!((r.reach, ids(&r)), (Reach::After, s(&["d"])));
    // "a" was dropped before the restart: still a gap, never complete
    let r = read(&h, "cut", After::Id("a"), t).await;
    assert_eq!(r.reach, Reach::Gap);
    let r = read(&h, "whole", After::Id("unknown"), t).await;
    assert_eq!((r.reach, ids(&r)), (Reach::Complete, s(&["x", "y"])));
    // the message comes back whole
    let m = &r.items[0].msg;
    assert_eq!(
        (
            m.prev_id().map(|p| &**p),
            m.meta_value("user"),
            m.stream_content().map(|b| b.len())
        ),
        (Some("p"), Some("u1"), Some(10))
    );
    assert!(h.contains_id("whole", "y") && h.contains_id("cut", "d"));
    assert!(!h.contains_id("cut", "a") && !h.contains_id("nope", "x"));
    // once the dedup window after the open has passed, the restored ids are freed
    h.forget_restored_ids();
    assert!(!h.contains_id("whole", "y") && !h.contains_id("cut", "d"));
    // new appends continue the sequence
    assert_eq!(push(&h, "cut", "e", t).await.last_seq, Some(5));
    assert_eq!(push(&h, "new", "n", t).await.last_seq, Some(1));
    drop(h);
    let h = DiskHistory::open(&dir, config(3, 120), FsyncPolicy::EveryBatch)
        .unwrap_or_else(|e| panic!("{e}"));
    let r = read(&h, "cut", After::Id("c"), Instant::now()).await;
    assert_eq!((r.reach, ids(&r)), (Reach::After, s(&["d", "e"])));
    drop(h);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn ages_count_across_a_restart() {
    let dir = tmp("age");
    {
        let h = DiskHistory::open(&dir, config(100, 1), FsyncPolicy::EveryBatch)
            .unwrap_or_else(|e| panic!("{e}"));
        push(&h, "old", "a", Instant::now()).await;
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let h = DiskHistory::open(&dir, config(100, 1), FsyncPolicy::EveryBatch)
        .unwrap_or_else(|e| panic!("{e}"));
    let t = Instant::now();
    // aged out while the process was down; its last id is still known
    let r = read(&h, "old", After::Id("a"), t).await;
    assert_eq!((r.reach, r.items.len()), (Reach::After, 0));
    let r = read(&h, "old", After::Id("zz"), t).await;
    assert_eq!(r.reach, Reach::Gap);
    assert_eq!(h.stats().evicted_age, 1);
    drop(h);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_share_writes_and_stay_dense() {
    let dir = tmp("concurrent");
    let h = Arc::new(
        DiskHistory::open(&dir, config(1000, 120), FsyncPolicy::EveryBatch)
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let mut tasks = Vec::new();
    for task in 0..8 {
        let h = h.clone();
        tasks.push(tokio::spawn(async move {
            let ch = name(&format!("c{}", task % 4));
            for i in 0..50 {
                let batch: Vec<_> = (0..10)
                    .map(|j| msg(&ch, Some(&format!("{task}-{i}-{j}")), 20))
                    .collect();
                let out = h.append(&ch, &batch, Instant::now()).await;
                assert_eq!(out.ok().map(|a| a.kept), Some(10));
            }
        }));
    }
    for t in tasks {
        assert!(t.await.is_ok());
    }
    for c in 0..4 {
        let r = h
            .read_after(&format!("c{c}"), After::Start, usize::MAX, Instant::now())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let seqs: Vec<u64> = r.items.iter().map(|k| k.seq).collect();
        assert_eq!(seqs, (1..=1000).collect::<Vec<_>>());
    }
    let d = h.disk_stats();
    eprintln!("{d:?}");
    assert_eq!((d.appends, d.failures), (400, 0));
    assert_eq!(d.fsyncs, d.writes, "one fsync per write");
    assert!(
        d.writes < d.appends,
        "concurrent appends share writes: {d:?}"
    );
    drop(h);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn every_ms_acknowledges_after_the_write_and_syncs_on_request() {
    let dir = tmp("every-ms");
    {
        let h = DiskHistory::open(&dir, config(100, 120), FsyncPolicy::EveryMs(50))
            .unwrap_or_else(|e| panic!("{e}"));
        for i in 0..20 {
            push(&h, "ch", &format!("i{i}"), Instant::now()).await;
        }
        assert!(h.sync().await.is_ok());
    }
    let h = DiskHistory::open(&dir, config(100, 120), FsyncPolicy::EveryMs(50))
        .unwrap_or_else(|e| panic!("{e}"));
    let r = read(&h, "ch", After::Start, Instant::now()).await;
    assert_eq!((r.reach, r.items.len()), (Reach::Complete, 20));
    drop(h);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn evictions_are_deleted_on_disk_too() {
    let dir = tmp("evict");
    {
        let h = DiskHistory::open(&dir, config(2, 120), FsyncPolicy::EveryBatch)
            .unwrap_or_else(|e| panic!("{e}"));
        for i in 0..50 {
            push(&h, "ch", &format!("i{i}"), Instant::now()).await;
        }
    }
    // a larger bound at the next open brings back only what was kept
    let h = DiskHistory::open(&dir, config(100, 120), FsyncPolicy::EveryBatch)
        .unwrap_or_else(|e| panic!("{e}"));
    let r = read(&h, "ch", After::Start, Instant::now()).await;
    assert_eq!((r.reach, ids(&r)), (Reach::Gap, s(&["i48", "i49"])));
    drop(h);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn open_errors_name_the_directory() {
    let dir = tmp("errors");
    let _ = std::fs::create_dir_all(&dir);
    let file = dir.join("a-file");
    let _ = std::fs::write(&file, b"x");
    let e = DiskHistory::open(&file, HistoryConfig::default(), FsyncPolicy::EveryBatch)
        .err()
        .map(|e| e.to_string());
    assert!(e.as_deref().is_some_and(|e| e.contains("a-file")), "{e:?}");
    let store = dir.join("store");
    let first = DiskHistory::open(&store, HistoryConfig::default(), FsyncPolicy::EveryBatch);
    assert!(first.is_ok());
    let e = DiskHistory::open(&store, HistoryConfig::default(), FsyncPolicy::EveryBatch)
        .err()
        .map(|e| e.to_string());
    assert!(
        e.as_deref()
            .is_some_and(|e| e.contains("in use by another process") && e.contains("store")),
        "{e:?}"
    );
    drop(first);
    assert!(DiskHistory::open(&store, HistoryConfig::default(), FsyncPolicy::EveryBatch).is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Disk and memory per kept item in a steady state: 1,000 channels at their count bound
/// of 100, 100-byte payloads, after 120 rounds of 100-item appends per channel (printed;
/// the memory is the in-memory store's, the disk is what the directory holds).
#[tokio::test]
async fn cost_per_kept_item() {
    let dir = tmp("cost");
    let cfg = HistoryConfig {
        max_bytes: usize::MAX,
        ..HistoryConfig::default()
    };
    let h = DiskHistory::open(&dir, cfg, FsyncPolicy::EveryBatch).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<ChannelName> = (0..1000).map(|i| name(&format!("channel-{i}"))).collect();
    for round in 0..12 {
        for c in &names {
            let batch: Vec<_> = (0..10)
                .map(|i| msg(c, Some(&format!("id-{round:04}-{i}")), 100))
                .collect();
            assert!(h.append(c, &batch, Instant::now()).await.is_ok());
        }
    }
    let s = h.stats();
    drop(h);
    let disk = du(&dir);
    eprintln!(
        "disk history: {} items kept, {:.0} bytes charged per item, {:.0} bytes on disk per item",
        s.items,
        s.bytes as f64 / s.items as f64,
        disk as f64 / s.items as f64
    );
    assert_eq!(s.items, 100_000);
    let _ = std::fs::remove_dir_all(&dir);
}

fn du(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => du(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

#[tokio::test]
async fn groups_of_many_channels_are_one_write() {
    let dir = tmp("groups");
    let h = DiskHistory::open(&dir, config(10, 120), FsyncPolicy::EveryBatch)
        .unwrap_or_else(|e| panic!("{e}"));
    let t = Instant::now();
    push(&h, "b", "b0", t).await;
    let groups: Vec<Vec<Arc<Message>>> = vec![
        vec![
            msg("a", Some("a1"), 5),
            msg("a", None, 5),
            msg("a", Some("a2"), 5),
        ],
        vec![msg("b", Some("b1"), 5)],
        vec![msg("c", None, 5)],
    ];
    let out = h.append_groups(&groups, t).await;
    assert_eq!(
        out.ok(),
        Some(Appended {
            kept: 3,
            last_seq: Some(2)
        })
    );
    let d = h.disk_stats();
    assert_eq!(
        (d.writes, d.appends),
        (2, 2),
        "one write for the three channels"
    );
    drop(h);
    let h = DiskHistory::open(&dir, config(10, 120), FsyncPolicy::EveryBatch)
        .unwrap_or_else(|e| panic!("{e}"));
    let r = read(&h, "a", After::Start, t).await;
    assert_eq!(
        (ids(&r), r.items.iter().map(|k| k.seq).collect::<Vec<_>>()),
        (s(&["a1", "a2"]), vec![1, 2])
    );
    assert_eq!(ids(&read(&h, "b", After::Start, t).await), s(&["b0", "b1"]));
    assert_eq!(read(&h, "c", After::Start, t).await.items.len(), 0);
    // ids read back are known; a hash hit is checked against the channel
    assert!(h.contains_id("a", "a2") && h.contains_id("b", "b0"));
    assert!(!h.contains_id("a", "b0") && !h.contains_id("c", "a1"));
    push(&h, "a", "a3", t).await;
    assert!(
        !h.contains_id("a", "a3"),
        "ids appended since the open are the dedup table's"
    );
    drop(h);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The store's keyspaces, opened directly (the store must be closed).
pub(in crate::history) fn raw(dir: &Path) -> (Database, Keyspace, Keyspace, Keyspace) {
    let db = Database::builder(dir)
        .open()
        .unwrap_or_else(|e| panic!("{e}"));
    let ks = |n: &str| {
        db.keyspace(n, KeyspaceCreateOptions::default)
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let (items, channels, meta) = (ks("items"), ks("channels"), ks("meta"));
    (db, items, channels, meta)
}

/// Every item on disk: (key, channel, sequence, id), in key order (the items of one chunk
/// share its key).
pub(in crate::history) fn on_disk(dir: &Path) -> Vec<(Vec<u8>, String, u64, String)> {
    let (_db, items, _, _) = raw(dir);
    let mut out = Vec::new();
    for kv in items.iter() {
        let (k, v) = kv.into_inner().unwrap_or_else(|e| panic!("{e}"));
        let chunk = codec::decode_chunk(&v).unwrap_or_else(|e| panic!("{e}"));
        for (seq, body) in (chunk.first_seq..).zip(&chunk.bodies) {
            let msg = codec::decode_body_of(chunk.channel, body).unwrap_or_else(|e| panic!("{e}"));
            let id = msg.id().unwrap_or("-").to_string();
            out.push((k.to_vec(), chunk.channel.to_string(), seq, id));
        }
    }
    out
}

#[tokio::test]
async fn keys_are_in_write_order_and_evictions_delete_them() {
    let dir = tmp("order");
    let t = Instant::now();
    {
        let h = DiskHistory::open(&dir, config(2, 120), FsyncPolicy::EveryBatch)
            .unwrap_or_else(|e| panic!("{e}"));
        // interleaved channels, each appended past its bound
        for i in 0..5 {
            let groups: Vec<Vec<Arc<Message>>> = ["b", "a", "c"]
                .iter()
                .map(|c| vec![simple(c, &format!("{c}{i}"))])
                .collect();
            assert!(h.append_groups(&groups, t).await.is_ok());
        }
    }
    let items = on_disk(&dir);
    let keys: Vec<_> = items.iter().map(|(k, ..)| k.clone()).collect();
    assert!(keys.iter().all(|k| k.len() == 8) && keys.windows(2).all(|w| w[0] < w[1]));
    let kept: Vec<_> = items
        .iter()
        .map(|(_, c, seq, id)| format!("{c}{seq}:{id}"))
        .collect();
    assert_eq!(
        kept,
        ["b4:b3", "a4:a3", "c4:c3", "b5:b4", "a5:a4", "c5:c4"],
        "the evicted items are gone from disk, the kept ones are in write order"
    );
    // reopen after evictions: the sequence continues, and the writer still finds the keys
    {
        let h = DiskHistory::open(&dir, config(2, 120), FsyncPolicy::EveryBatch)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(push(&h, "a", "a5", t).await.last_seq, Some(6));
        push(&h, "a", "a6", t).await;
        let r = read(&h, "a", After::Id("a4"), t).await;
        assert_eq!((r.reach, ids(&r)), (Reach::After, s(&["a5", "a6"])));
    }
    let kept: Vec<_> = on_disk(&dir).into_iter().map(|(.., id)| id).collect();
    assert_eq!(kept, ["b3", "c3", "b4", "c4", "a5", "a6"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_smaller_bound_at_open_deletes_on_disk_what_it_drops() {
    let dir = tmp("shrink");
    let t = Instant::now();
    {
        let h = DiskHistory::open(&dir, config(100, 120), FsyncPolicy::EveryBatch)
            .unwrap_or_else(|e| panic!("{e}"));
        for i in 0..20 {
            for c in ["x", "y"] {
                push(&h, c, &format!("{c}{i}"), t).await;
            }
        }
    }
    {
        let h = DiskHistory::open(&dir, config(3, 120), FsyncPolicy::EveryBatch)
            .unwrap_or_else(|e| panic!("{e}"));
        let r = read(&h, "x", After::Start, t).await;
        assert_eq!(ids(&r), s(&["x17", "x18", "x19"]));
        // the writer knows the kept keys: a new item evicts the oldest on disk too
        push(&h, "x", "x20", t).await;
    }
    let kept: Vec<_> = on_disk(&dir).into_iter().map(|(.., id)| id).collect();
    assert_eq!(kept, ["y17", "x18", "y18", "x19", "y19", "x20"]);
    let h = DiskHistory::open(&dir, config(100, 120), FsyncPolicy::EveryBatch)
        .unwrap_or_else(|e| panic!("{e}"));
    let r = read(&h, "x", After::Id("x18"), t).await;
    assert_eq!((r.reach, ids(&r)), (Reach::After, s(&["x19", "x20"])));
    let r = read(&h, "y", After::Id("y1"), t).await;
    assert_eq!(
        r.reach,
        Reach::Gap,
        "truncated at the smaller bound, and it stays so"
    );
    drop(h);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn forgotten_channels_leave_nothing_on_disk() {
    let dir = tmp("forget");
    let t = Instant::now();
    {
        let h = DiskHistory::open(&dir, config(10, 120), FsyncPolicy::EveryBatch)
            .unwrap_or_else(|e| panic!("{e}"));
        for c in ["p", "q"] {
            push(&h, c, "1", t).await;
            push(&h, c, "2", t).await;
        }
        // aged out, then (another max_age later) forgotten
        h.expire(t + Duration::from_secs(121)).await;
        h.expire(t + Duration::from_secs(243)).await;
        assert_eq!(h.stats().forgotten_channels, 2);
        // a channel forgotten and used again starts anew beside the deletions
        push(&h, "p", "3", t + Duration::from_secs(243)).await;
    }
    let kept: Vec<_> = on_disk(&dir)
        .into_iter()
        .map(|(_, c, seq, id)| format!("{c}{seq}:{id}"))
        .collect();
    assert_eq!(kept, ["p1:3"]);
    {
        let (_db, _, channels, meta) = raw(&dir);
        let rows: Vec<_> = channels
            .iter()
            .map(|kv| kv.key().map(|k| k.to_vec()).unwrap_or_default())
            .collect();
        assert_eq!(rows, [b"p".to_vec()]);
        let forgot = meta
            .get(codec::META_FORGOT)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(forgot.as_deref(), Some(&1u64.to_be_bytes()[..]));
    }
    let h = DiskHistory::open(&dir, config(10, 120), FsyncPolicy::EveryBatch)
        .unwrap_or_else(|e| panic!("{e}"));
    let t = Instant::now();
    let r = read(&h, "q", After::Id("2"), t).await;
    assert_eq!((r.reach, r.items.len()), (Reach::Gap, 0));
    drop(h);
    let _ = std::fs::remove_dir_all(&dir);
}

/// An item of the common shape (stored as its wire bytes).
pub(in crate::history) fn simple(channel: &str, id: &str) -> Arc<Message> {
    Message::new(Item {
        channel: channel.into(),
        id: Some(id.into()),
        prev_id: None,
        meta: vec![],
        no_seq: false,
        formats: Formats {
            http_stream: Some(HttpStreamFormat {
                action: HttpStreamAction::Send(Bytes::from_static(b"hello")),
                content_filters: vec![],
            }),
            ..Formats::default()
        },
    })
}

#[tokio::test]
async fn a_channel_emptied_while_running_keeps_its_sequence_and_last_id_across_a_restart() {
    let dir = tmp("emptied");
    let t = Instant::now();
    {
        let h = DiskHistory::open(&dir, config(2, 120), FsyncPolicy::EveryBatch)
            .unwrap_or_else(|e| panic!("{e}"));
        for id in ["a", "b", "c"] {
            push(&h, "ch", id, t).await;
        }
        // "a" went by count; the next write rewrites the row (truncated)
        push(&h, "other", "x", t).await;
        // then the rest by age: only the row says where the channel stands now, and since
        // when it is empty (it is forgotten another max_age later)
        h.expire(t + Duration::from_secs(121)).await;
        assert_eq!(h.stats().items, 0);
    }
    assert!(on_disk(&dir).is_empty());
    let h = DiskHistory::open(&dir, config(2, 120), FsyncPolicy::EveryBatch)
        .unwrap_or_else(|e| panic!("{e}"));
    let t = Instant::now();
    let r = read(&h, "ch", After::Id("c"), t).await;
    assert_eq!(
        (r.reach, r.items.len()),
        (Reach::After, 0),
        "its last id is known"
    );
    assert_eq!(read(&h, "ch", After::Id("zz"), t).await.reach, Reach::Gap);
    assert_eq!(push(&h, "ch", "d", t).await.last_seq, Some(4));
    drop(h);
    let _ = std::fs::remove_dir_all(&dir);
}
