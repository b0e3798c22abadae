//! Shared subscriptions (`$share/<group>/<filter>`, MQTT 5, accepted from 3.1.1 devices too):
//! the devices of a group split a channel's messages between them, each message going to one
//! of them, in turn.
//!
//! A group is one subscriber in the broker's registry per (route, group, channel) on this
//! node ([`Group`]); devices join and leave it ([`Membership`], dropped when the subscription
//! ends). Its fan-out hands each message to the next member, skipping members that are
//! closing or too slow; the member writes it as for its own subscriptions. Groups are per
//! node: in a cluster, each node's group gets every message once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use gripway_broker::{Delivery, Message, Registry, Subscriber, Subscription, Transport};
use parking_lot::Mutex;

use super::subscriber::MqttSub;

type Key = (Arc<str>, Arc<str>, Arc<str>);

/// The groups of this node, by (route, group, channel).
#[derive(Default)]
pub(crate) struct Groups {
    map: Mutex<HashMap<Key, Weak<Group>>>,
}

/// One group's subscription to one channel.
pub(crate) struct Group {
    members: Mutex<Vec<Arc<MqttSub>>>,
    next: AtomicUsize,
    /// Taken (unsubscribing) when the last member leaves.
    subscription: Mutex<Option<Subscription>>,
}

/// A device's place in a group; leaving when dropped.
pub(crate) struct Membership {
    group: Arc<Group>,
    member: Arc<MqttSub>,
}

impl Groups {
    /// Adds `member` to the group, subscribing the group to `channel` if it is new.
    pub(crate) fn join(
        &self,
        registry: &Arc<Registry>,
        route: &str,
        group: &str,
        channel: &str,
        member: Arc<MqttSub>,
    ) -> Membership {
        let key: Key = (Arc::from(route), Arc::from(group), Arc::from(channel));
        let mut map = self.map.lock();
        map.retain(|_, g| g.strong_count() > 0);
        let live = map.get(&key).and_then(Weak::upgrade).filter(|g| {
            // a group whose last member just left is unsubscribed: start a new one
            g.subscription.lock().is_some()
        });
        let group = match live {
            Some(g) => g,
            None => {
                let g = Arc::new(Group {
                    members: Mutex::new(Vec::new()),
                    next: AtomicUsize::new(0),
                    subscription: Mutex::new(None),
                });
                let s = registry.subscribe(channel, g.clone() as Arc<dyn Subscriber>);
                *g.subscription.lock() = Some(s);
                map.insert(key, Arc::downgrade(&g));
                g
            }
        };
        drop(map);
        group.members.lock().push(member.clone());
        Membership { group, member }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        let mut members = self.group.members.lock();
        if let Some(at) = members.iter().position(|m| Arc::ptr_eq(m, &self.member)) {
            members.swap_remove(at);
        }
        if members.is_empty() {
            drop(members);
            // unsubscribes the group (outside the members lock: the fan-out takes it)
            let s = self.group.subscription.lock().take();
            drop(s);
        }
    }
}

impl Subscriber for Group {
    fn transport(&self) -> Transport {
        Transport::Mqtt
    }

    fn deliver(&self, channel: &str, messages: &[Arc<Message>]) -> Delivery {
        let members = self.members.lock();
        if members.is_empty() {
            return Delivery::Closed(messages.len() as u32);
        }
        let mut sent = 0;
        for msg in messages {
            for _ in 0..members.len() {
                let at = self.next.fetch_add(1, Ordering::Relaxed) % members.len();
                if let Delivery::Sent(_) = members[at].deliver(channel, std::slice::from_ref(msg)) {
                    sent += 1;
                    break;
                }
            }
        }
        if sent == 0 {
            Delivery::Skipped
        } else {
            Delivery::Sent(sent)
        }
    }
}
