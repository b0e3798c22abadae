//! A device's will, at the end of its connection: published at once, or, for an MQTT 5 will
//! delay while the session outlives the connection, by a timer task after the delay (at most
//! the session's expiry) unless a connection with the same client id comes first (MQTT 5
//! §3.1.3.2.2). The waiting wills are recorded in `mqtt::sessions`, whose `go_live` cancels
//! them; the timer publishes only if its token is still there.

use std::sync::Arc;
use std::time::Duration;

use gripway_proto::mqtt::InPublish;
use gripway_proto::publish::Item;

use super::device_item;
use super::session::Session;
use crate::Shared;

impl Session {
    /// Sends the will, if the device left one: now, or after its delay. True if it was
    /// published now.
    pub(super) async fn send_will(&mut self, client_id: Option<&Arc<str>>) -> bool {
        let Some((will, channel)) = self.extra.as_deref_mut().and_then(|e| e.will.take()) else {
            return false;
        };
        // MQTT 5 will delay: only while the session outlives the connection, and at most as
        // long as it does
        let delay = will.delay.min(self.expiry());
        let p = InPublish {
            topic: will.topic,
            payload: will.payload,
            qos: will.qos,
            pid: None,
            retain: will.retain,
            dup: false,
            properties: will.properties,
        };
        let Some(item) = self
            .channel_ok(&channel)
            .then(|| device_item(channel, None, &p, client_id.map(|c| &**c)).ok())
            .flatten()
        else {
            return false;
        };
        let waits = match (&self.route, client_id) {
            (Some(route), Some(client)) if delay > 0 => self
                .shared
                .mqtt_sessions
                .delay_will(&route.label, client)
                .map(|token| (route.label.clone(), client.clone(), token)),
            _ => None,
        };
        let Some((route, client, token)) = waits else {
            return publish(&self.shared, item).await;
        };
        let shared = self.shared.clone();
        let delay = Duration::from_secs(u64::from(delay));
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if shared.mqtt_sessions.will_due(&route, &client, token) {
                publish(&shared, item).await;
            }
        });
        false
    }
}

/// Publishes a will now; false (counted and logged) if the broker refused it.
async fn publish(shared: &Shared, item: Item) -> bool {
    match crate::publish_api::publish_items(shared, vec![item]).await {
        Ok(()) => true,
        Err(refusal) => {
            shared.metrics.error(&refusal);
            refusal.log("MQTT will: ");
            false
        }
    }
}
