//! File descriptors and the client connections they allow: the open-file limit is raised at
//! start, part of it is kept in reserve for the publish API, the admin API and origin
//! connections, and the client listeners admit new connections only while that reserve is
//! untouched and (optionally) while the client's address holds fewer than its share.
//!
//! The publish and admin listeners, which draw on that reserve, each hold at most a fixed
//! number of connections at once ([`ListenerCap`]).
//!
//! Accept loops never spin or flood the log when accepting fails (out of descriptors, most
//! often): [`AcceptBackoff`] waits longer after each failure in a row, up to a second, and
//! logs at most one line a second per listener.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::config::Config;

/// A count of a listener's open connections, bounded: [`ListenerCap::take`] fails once `max`
/// are open, and each place is given back when its [`CapSlot`] drops.
#[derive(Clone)]
pub(crate) struct ListenerCap {
    open: Arc<AtomicUsize>,
    max: usize,
}

/// One connection's place under a [`ListenerCap`].
pub(crate) struct CapSlot(Arc<AtomicUsize>);

impl Drop for CapSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ListenerCap {
    pub(crate) fn new(max: usize) -> ListenerCap {
        ListenerCap {
            open: Arc::new(AtomicUsize::new(0)),
            max,
        }
    }

    /// A place for one more connection, or None when `max` are open (one accept loop takes
    /// places, so the check and the count need not be one step).
    pub(crate) fn take(&self) -> Option<CapSlot> {
        if self.open.load(Ordering::Relaxed) >= self.max {
            return None;
        }
        self.open.fetch_add(1, Ordering::Relaxed);
        Some(CapSlot(self.open.clone()))
    }
}

/// Descriptors kept back when the config does not say: a tenth of the limit, but at least
/// 1,024 where half the limit allows it.
pub(crate) fn default_reserve(nofile: u64) -> u64 {
    (nofile / 10).max(1024.min(nofile / 2))
}

/// The client connections allowed at once: the configured maximum, or fewer where the
/// descriptors left after the reserve would not allow it (each client takes one).
pub(crate) fn client_limit(
    max_connections: usize,
    nofile: Option<u64>,
    reserve: Option<u64>,
) -> usize {
    let Some(nofile) = nofile else {
        return max_connections;
    };
    let reserve = reserve.unwrap_or_else(|| default_reserve(nofile));
    let allowed = usize::try_from(nofile.saturating_sub(reserve)).unwrap_or(usize::MAX);
    max_connections.min(allowed)
}

/// Raises the soft open-file limit to the hard one; returns the limit now in force (None:
/// unlimited or unknown).
pub(crate) fn raise_nofile() -> Option<u64> {
    #[cfg(unix)]
    {
        use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
        let before = getrlimit(Resource::Nofile);
        // an unlimited hard limit is not a value setrlimit takes for NOFILE on Linux
        let target = before.maximum.unwrap_or(1 << 20);
        if before.current.is_some_and(|c| c < target) {
            let raised = Rlimit {
                current: Some(target),
                maximum: before.maximum,
            };
            if let Err(e) = setrlimit(Resource::Nofile, raised) {
                tracing::warn!("cannot raise the open-file limit to {target}: {e}");
            }
        }
        getrlimit(Resource::Nofile).current
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Decides whether a newly accepted client may stay: the descriptor-bounded maximum of
/// client connections, and an optional limit per client address.
pub(crate) struct ClientGate {
    /// Client connections open now (held, idle or being served).
    open: AtomicUsize,
    max: usize,
    per_address: Option<(usize, Mutex<HashMap<IpAddr, usize>>)>,
}

/// Why a client was turned away at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Turned {
    /// The connection limit (or the descriptor reserve) is reached.
    Full,
    /// This address holds its limit of connections.
    AddressFull,
}

/// One admitted client; gives its place back when dropped.
pub(crate) struct Admitted {
    gate: Arc<ClientGate>,
    addr: IpAddr,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.gate.open.fetch_sub(1, Ordering::Relaxed);
        if let Some((_, counts)) = &self.gate.per_address {
            let mut counts = counts.lock();
            if let Some(n) = counts.get_mut(&self.addr) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(&self.addr);
                }
            }
        }
    }
}

impl ClientGate {
    /// Raises the open-file limit and logs what it allows.
    pub(crate) fn from_config(config: &Config) -> Arc<ClientGate> {
        let nofile = raise_nofile();
        let reserve = config.grip.fd_reserve.map(|r| r as u64);
        let max = client_limit(config.grip.max_connections, nofile, reserve);
        match nofile {
            Some(n) => tracing::info!(
                "open-file limit {n}; at most {max} client connections (max_connections {}, {} descriptors in reserve)",
                config.grip.max_connections,
                reserve.unwrap_or_else(|| default_reserve(n)),
            ),
            None => tracing::info!("open-file limit unknown; at most {max} client connections"),
        }
        Arc::new(ClientGate::new(
            max,
            config.grip.max_connections_per_address,
        ))
    }

    pub(crate) fn new(max: usize, per_address: usize) -> ClientGate {
        ClientGate {
            open: AtomicUsize::new(0),
            max,
            per_address: (per_address > 0).then(|| (per_address, Mutex::new(HashMap::new()))),
        }
    }

    /// Admits a client from `addr`, or says why not.
    pub(crate) fn admit(self: &Arc<Self>, addr: IpAddr) -> Result<Admitted, Turned> {
        if self.open.fetch_add(1, Ordering::Relaxed) >= self.max {
            self.open.fetch_sub(1, Ordering::Relaxed);
            return Err(Turned::Full);
        }
        if let Some((limit, counts)) = &self.per_address {
            let mut counts = counts.lock();
            let n = counts.entry(addr).or_insert(0);
            if *n >= *limit {
                drop(counts);
                self.open.fetch_sub(1, Ordering::Relaxed);
                return Err(Turned::AddressFull);
            }
            *n += 1;
        }
        Ok(Admitted {
            gate: self.clone(),
            addr,
        })
    }

    /// Client connections open now.
    #[cfg(test)]
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

/// Backs off after failed accepts so that a listener out of descriptors neither spins nor
/// floods the log.
#[derive(Debug, Default)]
pub(crate) struct AcceptBackoff {
    delay: Duration,
}

impl AcceptBackoff {
    const FIRST: Duration = Duration::from_millis(10);
    const MAX: Duration = Duration::from_secs(1);

    /// Logs the failure (at most once a second for `key`) and waits, longer each time in a
    /// row.
    pub(crate) async fn failed(&mut self, key: &'static str, e: &std::io::Error) {
        let delay = self.next_delay();
        crate::warn_limited!(key, "{key}: accept failed: {e}; retrying in {delay:?}");
        tokio::time::sleep(delay).await;
    }

    fn next_delay(&mut self) -> Duration {
        self.delay = (self.delay * 2).clamp(Self::FIRST, Self::MAX);
        self.delay
    }

    /// An accept succeeded: the next failure starts the backoff anew.
    pub(crate) fn succeeded(&mut self) {
        self.delay = Duration::ZERO;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_keeps_descriptors_back() {
        assert_eq!(default_reserve(1024), 512);
        assert_eq!(default_reserve(20_000), 2_000);
        assert_eq!(default_reserve(1 << 20), (1 << 20) / 10);
        assert_eq!(default_reserve(64), 32);
        // the case: 20,000 descriptors no longer all go to clients
        assert_eq!(client_limit(100_000, Some(20_000), None), 18_000);
        assert_eq!(client_limit(1_000, Some(20_000), None), 1_000);
        assert_eq!(client_limit(100_000, Some(20_000), Some(500)), 19_500);
        assert_eq!(client_limit(100_000, Some(100), Some(500)), 0);
        assert_eq!(client_limit(100_000, None, None), 100_000);
    }

    #[test]
    fn raising_never_lowers_the_limit() {
        let Some(now) = raise_nofile() else { return };
        assert!(raise_nofile() >= Some(now));
    }

    #[test]
    fn gate_counts_clients_and_addresses() {
        let gate = Arc::new(ClientGate::new(3, 2));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let a1 = gate.admit(a).unwrap();
        let _a2 = gate.admit(a).unwrap();
        assert_eq!(gate.admit(a).err(), Some(Turned::AddressFull));
        let _b1 = gate.admit(b).unwrap();
        assert_eq!(gate.admit(b).err(), Some(Turned::Full));
        assert_eq!(gate.open(), 3);
        drop(a1);
        assert_eq!(gate.open(), 2);
        let _a3 = gate.admit(a).unwrap();
        let unlimited = Arc::new(ClientGate::new(10, 0));
        let all: Vec<_> = (0..10).map(|_| unlimited.admit(a).unwrap()).collect();
        assert_eq!(unlimited.admit(a).err(), Some(Turned::Full));
        drop(all);
        assert_eq!(unlimited.open(), 0);
    }

    #[test]
    fn backoff_grows_to_a_second_and_resets() {
        let mut b = AcceptBackoff::default();
        let waits: Vec<u64> = (0..10).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
        b.succeeded();
        assert_eq!(b.next_delay(), AcceptBackoff::FIRST);
    }
}
