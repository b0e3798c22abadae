//! `kill -9` of a process appending to the on-disk history loses nothing it acknowledged.
//!
//! The test re-runs its own binary as a child (selected by an environment variable), which
//! appends batches to two channels as fast as it can and prints each acknowledged batch's
//! last (channel, sequence, id) on stdout; the parent waits for some acknowledgements, kills
//! the child with SIGKILL in mid-run, reopens the store and checks that every acknowledged
//! item is there, in order, with dense sequence numbers — with fsync per batch, and with
//! fsync every second (acknowledged after the write to the operating system, which a killed
//! process cannot lose).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gripway_broker::history::{
    After, DiskHistory, FsyncPolicy, HistoryConfig, HistoryStore, Reach,
};
use gripway_broker::{ChannelName, Message};
use gripway_proto::publish::{Formats, HttpStreamAction, HttpStreamFormat, Item};

const CHILD_DIR: &str = "GRIPWAY_HISTORY_KILL_DIR";
const CHILD_POLICY: &str = "GRIPWAY_HISTORY_KILL_POLICY";
const CHANNELS: [&str; 2] = ["alpha", "beta"];
/// Items per append: more than one on-disk chunk holds (32), so the kill also lands
/// between the chunks of one append's write, which must be all there or none.
const BATCH: usize = 40;

fn config() -> HistoryConfig {
    HistoryConfig {
        max_items: 1_000_000,
        max_age: Duration::from_secs(3600),
        max_bytes: usize::MAX,
    }
}

fn policy(s: &str) -> FsyncPolicy {
    match s {
        "every-second" => FsyncPolicy::EveryMs(1000),
        _ => FsyncPolicy::EveryBatch,
    }
}

fn msg(channel: &str, id: String) -> Arc<Message> {
    Message::new(Item {
        channel: channel.into(),
        id: Some(id),
        prev_id: None,
        meta: vec![],
        no_seq: false,
        formats: Formats {
            http_stream: Some(HttpStreamFormat {
                action: HttpStreamAction::Send(Bytes::from(vec![b'x'; 100])),
                content_filters: vec![],
            }),
            ..Formats::default()
        },
    })
}

/// The child: appends until killed, printing `ack <channel> <seq> <id>` per batch.
fn child(dir: &Path, policy: FsyncPolicy) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    rt.block_on(async {
        let h =
            Arc::new(DiskHistory::open(dir, config(), policy).unwrap_or_else(|e| panic!("{e}")));
        let tasks: Vec<_> = CHANNELS
            .iter()
            .map(|ch| {
                let h = h.clone();
                tokio::spawn(async move {
                    let name: ChannelName = Arc::from(*ch);
                    for n in 0u64.. {
                        let batch: Vec<_> = (0..BATCH)
                            .map(|i| msg(ch, format!("{ch}-{}", n * BATCH as u64 + i as u64)))
                            .collect();
                        let out = h.append(&name, &batch, Instant::now()).await;
                        let Ok(out) = out else { return };
                        let seq = out.last_seq.unwrap_or(0);
                        let id = batch
                            .last()
                            .and_then(|m| m.id().map(Arc::<str>::from))
                            .unwrap_or_default();
                        let mut o = std::io::stdout().lock();
                        let _ = writeln!(o, "ack {ch} {seq} {id}");
                        let _ = o.flush();
                    }
                })
            })
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    });
}

fn run_and_kill(dir: &Path, policy_name: &str) -> Vec<(String, u64, String)> {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "acknowledged_items_survive_kill_9",
            "--nocapture",
        ])
        .args(["--test-threads", "1"])
        .env(CHILD_DIR, dir)
        .env(CHILD_POLICY, policy_name)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn: {e}"));
    let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    let mut lines = BufReader::new(stdout).lines();
    let mut acks = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    // SIGKILL once enough batches were acknowledged, while the child is still appending
    while acks.len() < 400 && Instant::now() < deadline {
        match lines.next() {
            Some(Ok(line)) => acks.extend(parse(&line)),
            _ => break,
        }
    }
    let _ = child.kill(); // SIGKILL on Unix
    for line in lines.map_while(Result::ok) {
        acks.extend(parse(&line));
    }
    let _ = child.wait();
    acks
}

fn parse(line: &str) -> Option<(String, u64, String)> {
    let mut f = line.strip_prefix("ack ")?.split(' ');
    let ch = f.next()?.to_string();
    let seq = f.next()?.parse().ok()?;
    Some((ch, seq, f.next()?.to_string()))
}

fn check(dir: &Path, policy_name: &str) {
    let acks = run_and_kill(dir, policy_name);
    assert!(acks.len() >= 100, "{policy_name}: only {} acks", acks.len());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    rt.block_on(async {
        let h = DiskHistory::open(dir, config(), policy(policy_name))
            .unwrap_or_else(|e| panic!("reopen after kill -9: {e}"));
        for ch in CHANNELS {
            let r = h
                .read_after(ch, After::Start, usize::MAX, Instant::now())
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(r.reach, Reach::Complete, "{ch}: nothing was dropped");
            for (i, k) in r.items.iter().enumerate() {
                assert_eq!(k.seq, i as u64 + 1, "{ch}: dense from 1");
                let want = format!("{ch}-{i}");
                assert_eq!(k.msg.id(), Some(want.as_str()), "{ch}: in order");
            }
            let acked = acks.iter().filter(|a| a.0 == ch).map(|a| a.1).max();
            let kept = r.items.len() as u64;
            assert!(
                acked.is_some_and(|a| a <= kept),
                "{policy_name} {ch}: acknowledged up to {acked:?}, kept {kept}"
            );
            for (_, seq, id) in acks.iter().filter(|a| a.0 == ch) {
                let k = &r.items[*seq as usize - 1];
                assert_eq!(k.msg.id(), Some(id.as_str()));
            }
            eprintln!("{policy_name} {ch}: acknowledged {acked:?}, kept {kept}");
        }
    });
}

fn tmp(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gripway-kill-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn acknowledged_items_survive_kill_9() {
    if let Ok(dir) = std::env::var(CHILD_DIR) {
        let p = std::env::var(CHILD_POLICY).unwrap_or_default();
        child(Path::new(&dir), policy(&p));
        return;
    }
    for policy_name in ["every-batch", "every-second"] {
        let dir = tmp(policy_name);
        check(&dir, policy_name);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
