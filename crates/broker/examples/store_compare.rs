//! Chooses the durable history store by measurement: appends publish batches of 100 items
//! (~150-byte values: a ~100-byte payload, its id and framing) keyed by (channel, sequence),
//! one transaction and one fsync per batch, with each channel held at 100 items (older ones
//! deleted in the same transaction), on 1 channel and spread over 1,000 channels; prints
//! items/s for redb, fjall and SQLite (rusqlite, bundled, WAL, synchronous=FULL), beside the
//! in-memory store.
//!
//! `cargo run --release -p gripway-broker --example store_compare -- [batches] [dir]`

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use gripway_broker::history::{HistoryConfig, MemoryHistory};
use gripway_broker::{ChannelName, Message};
use gripway_proto::publish::parse_publish_body;

const BATCH: usize = 100;
const KEEP: u64 = 100;

type Res = Result<(), Box<dyn std::error::Error>>;

fn value(seq: u64) -> Vec<u8> {
    let mut v = format!("{{\"id\":\"id-{seq:012}\",\"payload\":\"").into_bytes();
    v.resize(140, b'x');
    v.extend_from_slice(b"\"}");
    v
}

/// The (channel, seq) pairs of batch `b`, and the key to delete per item (seq - KEEP).
fn batch(b: usize, channels: usize, next: &mut [u64]) -> Vec<(String, u64)> {
    (0..BATCH)
        .map(|i| {
            let c = (b * BATCH + i) % channels;
            next[c] += 1;
            (format!("channel-{c}"), next[c])
        })
        .collect()
}

fn key(ch: &str, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(ch.len() + 9);
    k.extend_from_slice(ch.as_bytes());
    k.push(0xff);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn redb_run(dir: &Path, batches: usize, channels: usize) -> Res {
    use redb::{Database, TableDefinition};
    const T: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("items");
    let db = Database::create(dir.join("redb"))?;
    let mut next = vec![0u64; channels];
    for b in 0..batches {
        let txn = db.begin_write()?;
        {
            let mut t = txn.open_table(T)?;
            for (ch, seq) in batch(b, channels, &mut next) {
                t.insert((ch.as_str(), seq), value(seq).as_slice())?;
                if seq > KEEP {
                    t.remove((ch.as_str(), seq - KEEP))?;
                }
            }
        }
        txn.commit()?;
    }
    Ok(())
}

fn fjall_run(dir: &Path, batches: usize, channels: usize) -> Res {
    use fjall::{Database, KeyspaceCreateOptions, PersistMode};
    let db = Database::builder(dir.join("fjall")).open()?;
    let items = db.keyspace("items", KeyspaceCreateOptions::default)?;
    let mut next = vec![0u64; channels];
    for b in 0..batches {
        let mut wb = db.batch().durability(Some(PersistMode::SyncAll));
        for (ch, seq) in batch(b, channels, &mut next) {
            wb.insert(&items, key(&ch, seq), value(seq));
            if seq > KEEP {
                wb.remove(&items, key(&ch, seq - KEEP));
            }
        }
        wb.commit()?;
    }
    Ok(())
}

fn sqlite_run(dir: &Path, batches: usize, channels: usize) -> Res {
    let mut db = rusqlite::Connection::open(dir.join("sqlite"))?;
    db.pragma_update(None, "journal_mode", "WAL")?;
    db.pragma_update(None, "synchronous", "FULL")?;
    db.execute(
        "CREATE TABLE items (ch TEXT, seq INTEGER, v BLOB, PRIMARY KEY (ch, seq)) WITHOUT ROWID",
        [],
    )?;
    let mut next = vec![0u64; channels];
    for b in 0..batches {
        let txn = db.transaction()?;
        {
            let mut ins = txn.prepare_cached("INSERT INTO items VALUES (?1, ?2, ?3)")?;
            let mut del = txn.prepare_cached("DELETE FROM items WHERE ch = ?1 AND seq = ?2")?;
            for (ch, seq) in batch(b, channels, &mut next) {
                ins.execute(rusqlite::params![ch, seq as i64, value(seq)])?;
                if seq > KEEP {
                    del.execute(rusqlite::params![ch, (seq - KEEP) as i64])?;
                }
            }
        }
        txn.commit()?;
    }
    Ok(())
}

fn message(channel: &str, id: u64) -> Arc<Message> {
    let body = format!(
        r#"{{"items":[{{"channel":"{channel}","id":"id-{id:012}","formats":{{"http-stream":{{"content":"{}"}}}}}}]}}"#,
        "x".repeat(100)
    );
    parse_publish_body(body.as_bytes(), &Default::default())
        .unwrap_or_default()
        .into_iter()
        .map(Message::new)
        .next()
        .unwrap_or_else(|| std::process::abort())
}

/// The memory store's batches, built before the clock starts: one append per run of items
/// on one channel, as the shard would make them.
type MemoryBatches = Vec<Vec<(ChannelName, Vec<Arc<Message>>)>>;

fn memory_prepare(batches: usize, channels: usize) -> MemoryBatches {
    let names: Vec<ChannelName> = (0..channels)
        .map(|c| Arc::from(format!("channel-{c}")))
        .collect();
    let mut next = vec![0u64; channels];
    (0..batches)
        .map(|b| {
            let mut out: Vec<(ChannelName, Vec<Arc<Message>>)> = Vec::new();
            for (i, (ch, seq)) in batch(b, channels, &mut next).into_iter().enumerate() {
                let c = (b * BATCH + i) % channels;
                match out.last_mut() {
                    Some((n, msgs)) if **n == *ch => msgs.push(message(&ch, seq)),
                    _ => out.push((names[c].clone(), vec![message(&ch, seq)])),
                }
            }
            out
        })
        .collect()
}

fn memory_run(prepared: &MemoryBatches) -> Res {
    let store = MemoryHistory::new(HistoryConfig::default(), 1);
    let now = Instant::now();
    for b in prepared {
        for (ch, msgs) in b {
            store.append_now(ch, msgs, now);
        }
    }
    Ok(())
}

fn main() -> Res {
    let mut args = std::env::args().skip(1);
    let batches: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2000);
    let base: PathBuf = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    println!("{batches} batches of {BATCH} items, one fsync per batch");
    for channels in [1usize, 1000] {
        for store in ["memory", "redb", "fjall", "sqlite"] {
            let dir = base.join(format!(
                "store-compare-{}-{store}-{channels}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir)?;
            let prepared = if store == "memory" {
                memory_prepare(batches, channels)
            } else {
                Vec::new()
            };
            let t = Instant::now();
            let cpu0 = cpu_secs();
            match store {
                "memory" => memory_run(&prepared)?,
                "redb" => redb_run(&dir, batches, channels)?,
                "fjall" => fjall_run(&dir, batches, channels)?,
                _ => sqlite_run(&dir, batches, channels)?,
            }
            let secs = t.elapsed().as_secs_f64();
            let cpu = cpu_secs() - cpu0;
            let disk: u64 = walk(&dir);
            println!(
                "{store:>7} {channels:>5} ch: {:>10.0} items/s  {:>7.1} µs/batch  cpu {:>6.1} µs/batch  disk {:.1} MiB",
                (batches * BATCH) as f64 / secs,
                secs * 1e6 / batches as f64,
                cpu * 1e6 / batches as f64,
                disk as f64 / (1 << 20) as f64
            );
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    Ok(())
}

/// User plus system CPU seconds of this process so far (Linux; 0 elsewhere), which
/// background compaction threads count toward, unlike the batch's own thread alone.
fn cpu_secs() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let Some(rest) = stat.rsplit(')').next() else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11..13).map_or(0.0, |t| {
        t.iter().filter_map(|x| x.parse::<f64>().ok()).sum()
    });
    ticks / 100.0
}

fn walk(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => walk(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
