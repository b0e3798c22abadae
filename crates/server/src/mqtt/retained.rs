//! Retained messages. MQTT keeps, per topic, the last message published with the RETAIN flag
//! and sends it to each new subscriber. Gripway keeps no second store for them: the retained
//! message of a channel is the newest item history keeps whose `mqtt-message` has `retain`
//! set (a device's retained publish, or a publisher's `"retain": true`); an empty payload
//! clears it, as in MQTT. So retained messages last as long as history keeps items
//! (`[history] max_age`, `max_items`), and only items with ids are kept at all.

use std::sync::Arc;
use std::time::Instant;

use gripway_broker::history::After;
use gripway_broker::Message;

use super::subscriber::{Flags, MqttSub};
use crate::Shared;

/// The retained message of `channel`, if history keeps one (and it was not cleared).
pub(super) fn newest(shared: &Shared, channel: &str) -> Option<Arc<Message>> {
    let history = shared.broker.history();
    if !history.is_on() {
        return None;
    }
    let limit = shared.config.history.max_items.max(1);
    let kept = history.read_after_now(channel, After::Start, limit, Instant::now())?;
    let newest = kept
        .items
        .into_iter()
        .rev()
        .map(|k| k.msg)
        .find(|m| m.mqtt().is_some_and(|v| v.retain))?;
    let cleared = newest.mqtt().is_none_or(|v| v.payload.is_empty());
    (!cleared).then_some(newest)
}

/// Sends `retained` (RETAIN set) to a subscriber held back while they were read (and its
/// SUBACK sent), then what the fan-out handed over meanwhile, each item once.
pub(super) fn send(sub: &MqttSub, retained: Vec<Arc<Message>>) {
    let sink = &sub.sink;
    let mut st = sink.lock();
    let ids: foldhash::HashSet<(Arc<str>, Arc<str>)> = retained
        .iter()
        .filter_map(|m| Some((m.channel.clone(), Arc::from(m.id()?))))
        .collect();
    let held = sink.release(&mut st, ids);
    for msg in &retained {
        sub.write(
            &mut st,
            &msg.channel,
            std::slice::from_ref(msg),
            Flags {
                retain: true,
                dup: false,
            },
        );
    }
    for msg in held {
        let again = retained
            .iter()
            .any(|r| r.channel == msg.channel && r.id().is_some() && r.id() == msg.id());
        if !again {
            sub.write(
                &mut st,
                &msg.channel,
                std::slice::from_ref(&msg),
                Flags::default(),
            );
        }
    }
}
