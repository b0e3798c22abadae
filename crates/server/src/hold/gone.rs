//! `Grip-Link; rel=gone` (reference §1.7): when a hold that had one ends, for any reason,
//! the origin is told with `POST <gone>` and an empty body. Best effort: never retried, at
//! most [`MAX_FAREWELLS`](crate::MAX_FAREWELLS) at once node-wide (shared with WebSocket
//! farewells; past it the notice is dropped and counted in
//! `gripway_dropped_total{reason="gone-link-busy"}`), each bounded by the origin response
//! timeout (`proxy.response_timeout_ms`).

use std::sync::Arc;

use http::Method;

use super::next_link::{send_link, LinkBase};
use super::HoldLinks;
use crate::Shared;

/// A gone link to notify.
pub(crate) struct Gone {
    base: LinkBase,
    uri: String,
}

/// Takes the gone link out of a hold's links, if it has one.
pub(crate) fn take(links: &mut HoldLinks) -> Option<Gone> {
    let uri = links.gone.take()?;
    Some(Gone {
        base: links.base.clone(),
        uri,
    })
}

/// Sends the notice in the background.
pub(crate) fn notify(shared: &Arc<Shared>, gone: Gone) {
    let Ok(permit) = shared.farewells.clone().try_acquire_owned() else {
        shared.metrics.dropped("gone-link-busy");
        return;
    };
    let shared = shared.clone();
    tokio::spawn(async move {
        let within = shared.config.proxy.response_timeout;
        let send = send_link(&shared, &gone.base, Method::POST, &gone.uri, &[]);
        match tokio::time::timeout(within, send).await {
            Ok(Ok(mut response)) => {
                // an empty answer is expected; read what there is so the connection is reused
                let _ = response.body.read_to_end(64 * 1024, within).await;
            }
            Ok(Err(e)) => tracing::debug!("gone link {} failed: {e}", gone.uri),
            Err(_) => tracing::debug!("gone link {} timed out", gone.uri),
        }
        drop(permit);
    });
}
