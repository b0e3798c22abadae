//! Prometheus metrics: counters the data plane bumps as it works (connections, origin
//! requests, refusals, TLS certificate reloads and handshakes without a certificate) and figures read from the broker at scrape time (subscriptions,
//! channels, messages received and sent, drops), all encoded by `/metrics` on the admin
//! listener. Every metric is prefixed `gripway_`.
//!
//! Hot-path updates are single atomic increments; label sets are small and fixed (transport,
//! route, reason), so no family grows without bound except by route count.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use gripway_broker::{Broker, Transport};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Connection kinds for the connections gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnKind {
    /// Accepted, reading a request or relaying a response.
    Http,
    /// Held open as a stream.
    Stream,
    /// Held as a long-poll.
    LongPoll,
    /// A WebSocket.
    WebSocket,
    /// An MQTT connection.
    Mqtt,
}

impl ConnKind {
    fn label(self) -> &'static str {
        match self {
            ConnKind::Http => "http",
            ConnKind::Stream => "http-stream",
            ConnKind::LongPoll => "http-response",
            ConnKind::WebSocket => "ws",
            ConnKind::Mqtt => "mqtt",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct KindLabel {
    transport: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteLabel {
    route: Arc<str>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteErrorLabel {
    route: Arc<str>,
    error: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ErrorLabel {
    source: &'static str,
    reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StatusLabel {
    status: u16,
}

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    /// Cluster mode's figures, once the node has joined.
    cluster: Arc<std::sync::OnceLock<crate::cluster::Figures>>,
    connections: Family<KindLabel, Gauge>,
    origin_requests: Family<RouteLabel, Counter>,
    origin_errors: Family<RouteErrorLabel, Counter>,
    origin_latency: Family<RouteLabel, Histogram>,
    errors: Family<ErrorLabel, Counter>,
    publish_requests: Family<StatusLabel, Counter>,
    dropped: Family<ReasonLabel, Counter>,
    retries: Family<ReasonLabel, Counter>,
    paused: Family<ReasonLabel, Counter>,
    recoveries: Family<ResultLabel, Counter>,
    recovered_items: Counter,
    tls: TlsMetrics,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

impl Metrics {
    /// Metrics reading the broker's figures at scrape time.
    pub fn new(broker: Broker) -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("gripway");
        let connections = Family::<KindLabel, Gauge>::default();
        registry.register(
            "connections",
            "Client connections open now, by transport",
            connections.clone(),
        );
        let origin_requests = Family::<RouteLabel, Counter>::default();
        registry.register(
            "origin_requests",
            "Requests sent to origins, by route",
            origin_requests.clone(),
        );
        let origin_errors = Family::<RouteErrorLabel, Counter>::default();
        registry.register(
            "origin_errors",
            "Origin requests that failed, by route and error",
            origin_errors.clone(),
        );
        let origin_latency = Family::<RouteLabel, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.0005, 2.0, 16))) as fn() -> Histogram,
        );
        registry.register(
            "origin_response_seconds",
            "Time from sending a request to an origin to its response head, by route",
            origin_latency.clone(),
        );
        let errors = Family::<ErrorLabel, Counter>::default();
        registry.register(
            "errors",
            "Refusals and failures, by whose fault (client, origin, publisher, internal) and reason",
            errors.clone(),
        );
        let publish_requests = Family::<StatusLabel, Counter>::default();
        registry.register(
            "publish_requests",
            "Publish API requests, by response status",
            publish_requests.clone(),
        );
        let dropped = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "connection_drops",
            "Connections the server closed, by reason",
            dropped.clone(),
        );
        let retries = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "retries",
            "Requests sent to an origin again by a retry loop (a failure, an answer that accepted nothing, a stale prev-id), by reason",
            retries.clone(),
        );
        let paused = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "input_paused",
            "Times reading a client was paused because what it sent could not be passed on yet, by reason",
            paused.clone(),
        );
        let recoveries = Family::<ResultLabel, Counter>::default();
        registry.register(
            "history_recoveries",
            "Reads of history for a reconnecting client (Last-Event-ID, prev-id), by how far history reached: after (the id was kept), complete (the client is older than the store), gap (something was dropped: recovery missed), unavailable (the store failed)",
            recoveries.clone(),
        );
        let recovered_items = Counter::default();
        registry.register(
            "history_recovered_items",
            "Items sent to clients from history",
            recovered_items.clone(),
        );
        let tls = TlsMetrics::default();
        for result in ["ok", "error"] {
            // both results show from the first scrape, at 0
            let _ = tls.reloads.get_or_create(&ResultLabel { result });
        }
        registry.register(
            "tls_cert_reloads",
            "Reloads of the TLS certificate directory, by result (ok, or error: the old certificates stay)",
            tls.reloads.clone(),
        );
        registry.register(
            "tls_handshake_no_cert",
            "TLS handshakes refused because no certificate matches the name the client asked for, and there is no default",
            tls.no_cert.clone(),
        );
        registry.register_collector(Box::new(BrokerCollector(broker)));
        let cluster = Arc::new(std::sync::OnceLock::new());
        registry.register_collector(Box::new(ClusterCollector(cluster.clone())));
        Arc::new(Metrics {
            cluster,
            registry,
            connections,
            origin_requests,
            origin_errors,
            origin_latency,
            errors,
            publish_requests,
            dropped,
            retries,
            paused,
            recoveries,
            recovered_items,
            tls,
        })
    }

    /// The TLS counters, for the certificate resolver to bump.
    pub fn tls(&self) -> TlsMetrics {
        self.tls.clone()
    }

    /// Counts a connection of `kind` until the guard is dropped.
    pub fn connection(self: &Arc<Self>, kind: ConnKind) -> ConnGuard {
        self.connections
            .get_or_create(&KindLabel {
                transport: kind.label(),
            })
            .inc();
        ConnGuard {
            metrics: self.clone(),
            kind,
        }
    }

    /// Records an origin response head received after `latency`.
    pub fn origin_ok(&self, route: &Arc<str>, latency: Duration) {
        let label = RouteLabel {
            route: route.clone(),
        };
        self.origin_requests.get_or_create(&label).inc();
        self.origin_latency
            .get_or_create(&label)
            .observe(latency.as_secs_f64());
    }

    /// Records a failed origin request.
    pub fn origin_error(&self, route: &Arc<str>, error: &'static str) {
        self.origin_requests
            .get_or_create(&RouteLabel {
                route: route.clone(),
            })
            .inc();
        self.origin_errors
            .get_or_create(&RouteErrorLabel {
                route: route.clone(),
                error,
            })
            .inc();
    }

    /// Counts a refusal or failure under its source and reason.
    pub(crate) fn error(&self, refusal: &crate::error::Refusal) {
        self.count_error(refusal.source, refusal.reason);
    }

    /// Counts an error by source and reason (for failures that answer nothing).
    pub(crate) fn count_error(&self, source: crate::error::Source, reason: &'static str) {
        self.errors
            .get_or_create(&ErrorLabel {
                source: source.label(),
                reason,
            })
            .inc();
    }

    /// Counts `n` errors by source and reason.
    pub(crate) fn count_errors(&self, source: crate::error::Source, reason: &'static str, n: u64) {
        self.errors
            .get_or_create(&ErrorLabel {
                source: source.label(),
                reason,
            })
            .inc_by(n);
    }

    /// Records a publish API answer.
    pub fn publish_answer(&self, status: u16) {
        self.publish_requests
            .get_or_create(&StatusLabel { status })
            .inc();
    }

    /// Records a connection the server closed for `reason` (slow, timeout, ...).
    pub fn dropped(&self, reason: &'static str) {
        self.dropped.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// Counts a request sent to an origin again for `reason`.
    pub(crate) fn retry(&self, reason: &'static str) {
        self.retries.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// Counts `n` requests sent to origins again for `reason`.
    pub(crate) fn retries(&self, reason: &'static str, n: u64) {
        self.retries
            .get_or_create(&ReasonLabel { reason })
            .inc_by(n);
    }

    /// Counts a client whose input was paused (TCP backpressure) for `reason`.
    pub(crate) fn input_paused(&self, reason: &'static str) {
        self.paused.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// Counts one read of history for a client, by how far it reached.
    pub(crate) fn recovery(&self, result: &'static str) {
        self.recoveries.get_or_create(&ResultLabel { result }).inc();
    }

    /// Counts items sent to clients from history.
    pub(crate) fn recovered(&self, items: usize) {
        self.recovered_items.inc_by(items as u64);
    }

    /// The Prometheus text exposition of every metric.
    /// Cluster mode's figures are read from `figures` from now on.
    pub(crate) fn set_cluster(&self, figures: crate::cluster::Figures) {
        let _ = self.cluster.set(figures);
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            tracing::error!("metrics encoding failed");
        }
        out
    }
}

/// TLS counters: handles onto the registered metrics (clones count into the same ones). A
/// default value counts into metrics no registry encodes (for tests).
#[derive(Debug, Clone, Default)]
pub struct TlsMetrics {
    reloads: Family<ResultLabel, Counter>,
    no_cert: Counter,
}

impl TlsMetrics {
    /// Counts a reload of the certificate directory that succeeded (`ok`) or kept the old set.
    pub fn cert_reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.reloads.get_or_create(&ResultLabel { result }).inc();
    }

    /// Counts a handshake that found no certificate for its name.
    pub fn handshake_no_cert(&self) {
        self.no_cert.inc();
    }

    /// Reloads counted so far that succeeded (`ok`) or failed.
    pub fn cert_reloads(&self, ok: bool) -> u64 {
        let result = if ok { "ok" } else { "error" };
        self.reloads.get_or_create(&ResultLabel { result }).get()
    }

    /// Handshakes counted so far that found no certificate.
    pub fn handshakes_without_cert(&self) -> u64 {
        self.no_cert.get()
    }
}

/// Decrements the connections gauge when dropped.
pub struct ConnGuard {
    metrics: Arc<Metrics>,
    kind: ConnKind,
}

impl ConnGuard {
    /// Moves the connection to another kind (e.g. from `http` to a held stream).
    pub fn become_kind(&mut self, kind: ConnKind) {
        if kind == self.kind {
            return;
        }
        self.metrics
            .connections
            .get_or_create(&KindLabel {
                transport: self.kind.label(),
            })
            .dec();
        self.metrics
            .connections
            .get_or_create(&KindLabel {
                transport: kind.label(),
            })
            .inc();
        self.kind = kind;
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.metrics
            .connections
            .get_or_create(&KindLabel {
                transport: self.kind.label(),
            })
            .dec();
    }
}

/// Reads cluster mode's figures at scrape time (nothing on a single node).
struct ClusterCollector(Arc<std::sync::OnceLock<crate::cluster::Figures>>);

impl std::fmt::Debug for ClusterCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterCollector")
    }
}

impl Collector for ClusterCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(figures) = self.0.get() else {
            return Ok(());
        };
        for (name, help, counter, v) in figures.read() {
            if counter {
                let c = ConstCounter::new(v);
                c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)?;
            } else {
                let g = ConstGauge::new(v as i64);
                g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
            }
        }
        Ok(())
    }
}

/// Reads the broker's counters at scrape time.
struct BrokerCollector(Broker);

impl std::fmt::Debug for BrokerCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BrokerCollector")
    }
}

impl Collector for BrokerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.0.stats();
        let registry = self.0.registry();
        let gauge = |encoder: &mut DescriptorEncoder, name: &str, help: &str, v: i64| {
            let g = ConstGauge::new(v);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
        };
        gauge(
            &mut encoder,
            "subscriptions",
            "Channel subscriptions held now, over all connections",
            registry.subscription_count() as i64,
        )?;
        gauge(
            &mut encoder,
            "channels",
            "Channels with at least one subscriber now",
            registry.channel_count() as i64,
        )?;
        let (last_ids, last_ids_bytes) = self.0.last_ids_size();
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as i64;
        for (name, help, v) in [
            (
                "broker_dedup_entries",
                "(channel, id) pairs remembered for dedup",
                load(&stats.dedup_entries),
            ),
            (
                "broker_dedup_bytes",
                "Bytes the dedup tables hold (bounded by publish.dedup_max_bytes)",
                load(&stats.dedup_bytes),
            ),
            (
                "broker_order_channels",
                "Channels with prev-id ordering state",
                load(&stats.order_channels),
            ),
            (
                "broker_order_waiting",
                "Items waiting for the item named by their prev-id",
                load(&stats.order_waiting),
            ),
            (
                "broker_order_bytes",
                "Bytes the ordering state holds (bounded by publish.order_max_bytes)",
                load(&stats.order_bytes),
            ),
            (
                "broker_last_ids_entries",
                "Channels whose last published id is remembered",
                last_ids as i64,
            ),
            (
                "broker_last_ids_bytes",
                "Bytes the last-id table holds (bounded by publish.last_ids_max_bytes)",
                last_ids_bytes as i64,
            ),
        ] {
            gauge(&mut encoder, name, help, v)?;
        }
        let counter = |encoder: &mut DescriptorEncoder, name: &str, help: &str, v: u64| {
            let c = ConstCounter::new(v);
            c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)
        };
        let h = self.0.history().stats();
        for (name, help, v) in [
            (
                "history_channels",
                "Channels with kept history (items, or a last id after they aged out)",
                h.channels,
            ),
            ("history_items", "Items kept in history now", h.items),
            (
                "history_bytes",
                "Bytes the kept items cost (bounded by history.max_bytes)",
                h.bytes,
            ),
        ] {
            gauge(&mut encoder, name, help, v as i64)?;
        }
        if let Some(d) = self.0.history().disk_stats() {
            for (name, help, v) in [
                (
                    "history_disk_writes",
                    "Write batches of the on-disk history store (each one journal write)",
                    d.writes,
                ),
                (
                    "history_disk_fsyncs",
                    "fsyncs of the on-disk history store",
                    d.fsyncs,
                ),
                (
                    "history_disk_failures",
                    "Failed writes of the on-disk history store (their publishes answered 503)",
                    d.failures,
                ),
            ] {
                counter(&mut encoder, name, help, v)?;
            }
        }
        {
            let c = ConstCounter::new(0u64);
            let mut family = encoder.encode_descriptor(
                "history_evictions",
                "Items dropped from history, by bound (count: max_items, age: max_age_secs, bytes: max_bytes)",
                None,
                c.metric_type(),
            )?;
            for (reason, v) in [
                ("count", h.evicted_count),
                ("age", h.evicted_age),
                ("bytes", h.evicted_bytes),
            ] {
                ConstCounter::new(v).encode(family.encode_family(&ReasonLabel { reason })?)?;
            }
        }
        counter(
            &mut encoder,
            "messages_received",
            "Items accepted by the publish API",
            stats.received.load(Ordering::Relaxed),
        )?;
        counter(
            &mut encoder,
            "messages_duplicate",
            "Items not delivered because their id was seen within the dedup window",
            stats.duplicates.load(Ordering::Relaxed),
        )?;
        counter(
            &mut encoder,
            "messages_reordered",
            "Items that waited for the item named by their prev-id",
            stats.waited.load(Ordering::Relaxed),
        )?;
        counter(
            &mut encoder,
            "fanout_split_batches",
            "Batches of a hot channel written by several worker threads at once",
            stats.split_fan_outs.load(Ordering::Relaxed),
        )?;
        counter(
            &mut encoder,
            "messages_unheard",
            "Items published to channels with no subscribers on this node",
            stats.unheard.load(Ordering::Relaxed),
        )?;
        {
            let c = ConstCounter::new(0u64);
            let mut family = encoder.encode_descriptor(
                "messages_sent",
                "Messages written or queued to subscribers, by transport",
                None,
                c.metric_type(),
            )?;
            for t in Transport::ALL {
                let v = stats.sent[t.index()].load(Ordering::Relaxed);
                ConstCounter::new(v).encode(family.encode_family(&KindLabel {
                    transport: t.as_str(),
                })?)?;
            }
        }
        {
            let c = ConstCounter::new(0u64);
            let mut family = encoder.encode_descriptor(
                "messages_dropped",
                "Messages not delivered to a subscriber, by reason",
                None,
                c.metric_type(),
            )?;
            for (reason, v) in [
                (
                    "slow-subscriber",
                    stats.dropped_slow.load(Ordering::Relaxed),
                ),
                ("closing", stats.dropped_closed.load(Ordering::Relaxed)),
            ] {
                ConstCounter::new(v).encode(family.encode_family(&ReasonLabel { reason })?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tls_counters_are_encoded_under_their_documented_names() {
        let metrics = Metrics::new(Broker::start(gripway_broker::BrokerConfig::default()));
        let text = metrics.encode();
        assert!(
            text.contains("gripway_tls_cert_reloads_total{result=\"error\"} 0"),
            "{text}"
        );
        let tls = metrics.tls();
        tls.cert_reload(true);
        tls.cert_reload(false);
        tls.cert_reload(false);
        tls.handshake_no_cert();
        let text = metrics.encode();
        assert!(
            text.contains("gripway_tls_cert_reloads_total{result=\"ok\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("gripway_tls_cert_reloads_total{result=\"error\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("gripway_tls_handshake_no_cert_total 1"),
            "{text}"
        );
    }
}
