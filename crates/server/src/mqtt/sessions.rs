//! Persistent MQTT sessions: what a device that asked for a session outliving its connection
//! (MQTT 3.1.1 `clean_session = 0`, MQTT 5 a session expiry) left behind when it went away,
//! kept until it reconnects with the same client id or the session expires.
//!
//! A stored session is small: its subscriptions, and for each the id of the last item the
//! device was sent on its channel, plus the QoS 1 messages it had not acknowledged. What was
//! published while it was away is not copied here: it is read from history when the device
//! comes back (items after that id), so a session costs the same whatever it missed. Items
//! history no longer keeps (past `[history] max_items` or `max_age`) cannot be recovered.
//!
//! A device that connects with a client id already live on this node takes the session over:
//! the older connection is told DISCONNECT 0x8E (MQTT 5) and closed, without its will, and its
//! subscriptions and unacknowledged messages move to the new one (unless it asked for a clean
//! start).
//!
//! The table is per node and bounded by count (`[mqtt] max_sessions`): past it, the session
//! closest to expiry goes first. Expired sessions are dropped when the table is next touched.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use gripway_broker::Message;
use parking_lot::Mutex;

use super::subscriber::{Entry, MqttSub};

/// A session whose device is away.
pub(crate) struct Stored {
    pub(crate) subs: Vec<Entry>,
    /// QoS 1 messages sent and not acknowledged, oldest first: sent again on resume.
    pub(crate) inflight: Vec<Arc<Message>>,
    expires: Instant,
}

impl Stored {
    /// Whether there is nothing to resume.
    pub(crate) fn is_empty(&self) -> bool {
        self.subs.is_empty() && self.inflight.is_empty()
    }

    pub(crate) fn new(subs: Vec<Entry>, inflight: Vec<Arc<Message>>, expiry: Duration) -> Self {
        Stored {
            subs,
            inflight,
            expires: Instant::now() + expiry,
        }
    }
}

type Key = (Arc<str>, Arc<str>);

/// Stored sessions by (route, client id), and the connections live now under each id (a
/// second CONNECT with the same id takes the session over).
pub(crate) struct Sessions {
    map: Mutex<HashMap<Key, Stored>>,
    live: Mutex<HashMap<Key, Weak<MqttSub>>>,
    /// Wills waiting for their delay (MQTT 5), by the token their timer holds: a connection
    /// with the client id removes its entry, and the timer then sends nothing.
    wills: Mutex<HashMap<Key, u64>>,
    next_will: std::sync::atomic::AtomicU64,
    max: usize,
}

impl Sessions {
    pub(crate) fn new(max: usize) -> Self {
        Sessions {
            map: Mutex::new(HashMap::new()),
            live: Mutex::new(HashMap::new()),
            wills: Mutex::new(HashMap::new()),
            next_will: std::sync::atomic::AtomicU64::new(0),
            max,
        }
    }

    /// Records a will of `client` on `route` waiting for its delay; its token, or None when
    /// `max` wills wait already (it is then sent at once).
    pub(crate) fn delay_will(&self, route: &str, client: &str) -> Option<u64> {
        let mut wills = self.wills.lock();
        if wills.len() >= self.max {
            return None;
        }
        let token = self
            .next_will
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        wills.insert((Arc::from(route), Arc::from(client)), token);
        Some(token)
    }

    /// At the end of a will's delay: true (and forgotten) if it is still due, false if a
    /// connection with the client id came meanwhile.
    pub(crate) fn will_due(&self, route: &str, client: &str, token: u64) -> bool {
        let mut wills = self.wills.lock();
        let key = (Arc::from(route), Arc::from(client));
        if wills.get(&key) == Some(&token) {
            wills.remove(&key);
            true
        } else {
            false
        }
    }

    /// Takes the stored session of `client` on `route`, if one has not expired.
    pub(crate) fn take(&self, route: &str, client: &str) -> Option<Stored> {
        let mut map = self.map.lock();
        let stored = map.remove(&(Arc::from(route), Arc::from(client)))?;
        (stored.expires > Instant::now()).then_some(stored)
    }

    /// Keeps `stored` for `client` on `route`; the session nearest its expiry makes room when
    /// the table is full.
    pub(crate) fn put(&self, route: &str, client: &str, stored: Stored) {
        let mut map = self.map.lock();
        let now = Instant::now();
        if map.len() >= self.max {
            map.retain(|_, s| s.expires > now);
        }
        if map.len() >= self.max {
            if let Some(k) = map
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
            {
                map.remove(&k);
            }
        }
        if self.max > 0 {
            map.insert((Arc::from(route), Arc::from(client)), stored);
        }
    }

    /// Records `sub` as the live connection of `client` on `route`; the one it replaces, if
    /// it is still open.
    pub(crate) fn go_live(
        &self,
        route: &str,
        client: &str,
        sub: &Arc<MqttSub>,
    ) -> Option<Arc<MqttSub>> {
        // a connection with the id cancels the will its last one left waiting
        self.wills
            .lock()
            .remove(&(Arc::from(route), Arc::from(client)));
        let mut live = self.live.lock();
        if live.len() > 1024 && live.len().is_power_of_two() {
            live.retain(|_, w| w.strong_count() > 0);
        }
        live.insert((Arc::from(route), Arc::from(client)), Arc::downgrade(sub))
            .and_then(|w| w.upgrade())
    }

    /// Forgets `sub` as the live connection of `client` (unless another took its place).
    pub(crate) fn leave(&self, route: &str, client: &str, sub: &Arc<MqttSub>) {
        let mut live = self.live.lock();
        let key = (Arc::from(route), Arc::from(client));
        if live
            .get(&key)
            .is_some_and(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(sub)))
        {
            live.remove(&key);
        }
    }

    /// Sessions stored now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_sessions_are_taken_once_expire_and_are_bounded() {
        let s = Sessions::new(2);
        s.put(
            "r",
            "a",
            Stored::new(vec![], vec![], Duration::from_secs(60)),
        );
        assert!(s.take("r", "a").is_some());
        assert!(s.take("r", "a").is_none(), "taken once");
        s.put("r", "gone", Stored::new(vec![], vec![], Duration::ZERO));
        assert!(s.take("r", "gone").is_none(), "expired");
        s.put(
            "r",
            "x",
            Stored::new(vec![], vec![], Duration::from_secs(10)),
        );
        s.put(
            "r",
            "y",
            Stored::new(vec![], vec![], Duration::from_secs(60)),
        );
        s.put(
            "r",
            "z",
            Stored::new(vec![], vec![], Duration::from_secs(60)),
        );
        assert_eq!(s.len(), 2);
        assert!(
            s.take("r", "x").is_none(),
            "the one nearest expiry made room"
        );
        assert!(
            s.take("other-route", "y").is_none(),
            "sessions are per route"
        );
    }
}
