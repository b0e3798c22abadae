//! Reloading the certificate directory when it changes: a tokio task asks the resolver every
//! [`POLL_INTERVAL`] to [`CertResolver::reload_if_changed`], which compares the directory's
//! [`DirStamp`] with the one taken when its last load began and, if they differ, reloads
//! (swapping the set in whole, or keeping the old one and logging why). The reading happens
//! on tokio's blocking pool, not on the workers that serve connections.
//!
//! Polling rather than inotify (the `notify` crate): one `read_dir` and a `stat` per file
//! every 2 s costs nothing beside TLS handshakes, needs no new dependency, and works the same
//! on every file system, over NFS and on Kubernetes secret volumes (whose files are symbolic
//! links swapped through a `..data` link, which inotify on the files themselves misses); it is
//! also how the routes file is watched. A certificate renewed by writing the `.crt` and then
//! the `.key` may be seen half-written: that reload fails (the key does not match), the old
//! set stays, and the next poll after the `.key` lands loads the pair.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::certs::CertResolver;

/// How often the directory is looked at.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// What a change to the certificates changes: the name, modification time and size of each
/// `.crt` and `.key` file (following symbolic links, so a swapped link target counts).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DirStamp {
    files: Vec<(PathBuf, Option<(SystemTime, u64)>)>,
}

impl DirStamp {
    /// The stamp of `dir` now; an unreadable directory has an empty stamp (a reload then
    /// reports why).
    pub(crate) fn read(dir: &Path) -> DirStamp {
        let modified = |m: &std::fs::Metadata| m.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.ends_with(".crt") || name.ends_with(".key")
            })
            // bounded like the loader: past its limit a reload fails anyway
            .take(2 * super::certs::MAX_CERTS + 1)
            .map(|e| {
                let path = e.path();
                let meta = std::fs::metadata(&path)
                    .ok()
                    .map(|m| (modified(&m), m.len()));
                (path, meta)
            })
            .collect();
        files.sort();
        DirStamp { files }
    }
}

/// The running reload task; dropping it stops the task.
#[derive(Debug)]
pub(crate) struct Reloader {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Reloader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts polling `resolver`'s directory every `interval` ([`POLL_INTERVAL`] in service);
/// None for a resolver with no directory (the self-signed demo).
pub(crate) fn spawn_reloader(resolver: Arc<CertResolver>, interval: Duration) -> Option<Reloader> {
    resolver.dir()?;
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let resolver = resolver.clone();
            // file reads and key parsing are blocking work: off the runtime's workers; the
            // outcome is logged and counted by reload()
            if let Err(e) = tokio::task::spawn_blocking(move || resolver.reload_if_changed()).await
            {
                tracing::warn!("TLS certificate reload task failed: {e}");
            }
        }
    });
    Some(Reloader { task })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::TlsMetrics;
    use crate::tls::test_certs::TestCa;

    #[test]
    fn stamp_changes_with_names_and_contents_only() {
        let ca = TestCa::new();
        let dir = ca.dir(&["default", "a.example.com"]);
        let before = DirStamp::read(dir.path());
        assert_eq!(before, DirStamp::read(dir.path()), "nothing changed");
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        assert_eq!(
            before,
            DirStamp::read(dir.path()),
            "other files are not part of the stamp"
        );
        ca.write_pair(dir.path(), "b.example.com");
        assert_ne!(before, DirStamp::read(dir.path()), "a new pair changes it");
    }

    #[tokio::test]
    async fn the_task_picks_up_a_new_host_and_survives_a_broken_one() {
        let ca = TestCa::new();
        let dir = ca.dir(&["a.example.com"]);
        let metrics = TlsMetrics::default();
        let resolver = CertResolver::load(dir.path(), metrics.clone()).unwrap();
        let _reloader = spawn_reloader(resolver.clone(), Duration::from_millis(20)).unwrap();
        assert!(resolver.current().lookup(Some("b.example.com")).is_none());

        ca.write_pair(dir.path(), "b.example.com");
        wait_for(|| resolver.current().lookup(Some("b.example.com")).is_some()).await;
        assert_eq!(metrics.cert_reloads(true), 1);

        // a certificate without its key: the reload fails, the old set stays
        std::fs::write(
            dir.path().join("c.example.com.crt"),
            ca.issue("c.example.com").0,
        )
        .unwrap();
        wait_for(|| metrics.cert_reloads(false) >= 1).await;
        assert!(resolver.current().lookup(Some("b.example.com")).is_some());
        assert!(resolver.current().lookup(Some("c.example.com")).is_none());
    }

    #[tokio::test]
    async fn a_fixed_resolver_has_no_reloader() {
        let key = crate::tls::self_signed(&["localhost"]).unwrap().key;
        let resolver = CertResolver::fixed(key, TlsMetrics::default());
        assert!(spawn_reloader(resolver, POLL_INTERVAL).is_none());
    }

    async fn wait_for(mut ok: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !ok() {
            assert!(tokio::time::Instant::now() < deadline, "timed out");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
