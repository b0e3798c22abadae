//! Gripway's server: everything that touches a socket.
//!
//! [`run`] takes a validated [`Config`](config::Config) and bound listeners and serves until
//! a shutdown is requested, then drains ([`drain`]: what was acknowledged is delivered, holds
//! are ended so clients reconnect) within `drain_timeout_ms`. Client connections ([`conn`]) are proxied to origins
//! ([`proxy`], [`origin`]); responses with GRIP instructions become held connections
//! ([`hold`]) subscribed in the broker; the publish API ([`publish_api`]) feeds the broker;
//! the admin listener ([`admin`]) serves metrics ([`metrics`]).
//!
//! Threads: client connections, origins, the admin API and the drain run on the caller's
//! (multi-threaded) runtime; the publish API and the broker's shard tasks run on the broker
//! thread ([`broker_thread`]), so a publish is taken, ordered and fanned out without being
//! handed between threads.

pub mod config;
pub mod metrics;
pub mod origin;
pub mod routing;

mod admin;
mod broker_thread;
mod budget;
mod cluster;
mod conn;
mod drain;
pub(crate) mod error;
mod fds;
mod hold;
mod http2;
mod mqtt;
mod proxy;
mod publish_api;
mod publish_history;
mod publish_listener;
mod relay;
pub(crate) mod tls;
mod transport;
mod ws;

use std::net::SocketAddr;
use std::sync::Arc;

use gripway_broker::{Broker, BrokerConfig};
use gripway_proto::sig::VerifyingKey;
use tokio::net::TcpListener;

use crate::config::{Config, ConfigError, RoutesSource};
use crate::metrics::Metrics;
use crate::origin::{OriginClient, OriginTimeouts};
use crate::routing::{RouteDefaults, RoutesHandle};

pub use crate::drain::{Shutdown, Stopped};

/// Seconds since the Unix epoch (for token expiry).
pub(crate) fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What every connection shares.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) routes: RoutesHandle,
    pub(crate) origin: OriginClient,
    pub(crate) broker: Broker,
    /// Cluster mode's bus (None: a single node).
    pub(crate) cluster: Option<cluster::Cluster>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) upstream_key: Option<VerifyingKey>,
    /// Bounds the origin requests that outlive their client (a WebSocket's last CLOSE or
    /// DISCONNECT), so a mass disconnect cannot flood the origin.
    pub(crate) farewells: Arc<tokio::sync::Semaphore>,
    /// Bounds the MQTT notices (unsubscribe, disconnect) waiting for a farewell permit.
    pub(crate) waiting_notices: Arc<tokio::sync::Semaphore>,
    /// Bounds the next-link fetches running at once (`grip.max_next_link_fetches`).
    pub(crate) next_links: tokio::sync::Semaphore,
    /// Shutdown state: whether draining, the roster of holds, the tasks still running.
    pub(crate) drain: drain::Drain,
    /// MQTT sessions kept for devices that are away.
    pub(crate) mqtt_sessions: mqtt::Sessions,
    /// MQTT shared subscriptions' groups.
    pub(crate) mqtt_groups: mqtt::Groups,
}

impl Shared {
    /// Shared state for in-process tests: `config`'s routes, a fresh broker, no upstream key.
    #[cfg(test)]
    pub(crate) fn for_tests(config: Config) -> Arc<Shared> {
        let broker = Broker::start(BrokerConfig::default());
        Arc::new(Shared {
            routes: RoutesHandle::new(routing::load(&config).expect("test routes load")),
            origin: OriginClient::new(OriginTimeouts {
                connect: config.proxy.connect_timeout,
                response: config.proxy.response_timeout,
            }),
            metrics: Metrics::new(broker.clone()),
            broker,
            cluster: None,
            upstream_key: None,
            farewells: Arc::new(tokio::sync::Semaphore::new(1)),
            waiting_notices: Arc::new(tokio::sync::Semaphore::new(MAX_WAITING_NOTICES)),
            next_links: tokio::sync::Semaphore::new(config.grip.max_next_link_fetches),
            drain: drain::Drain::new(),
            mqtt_sessions: mqtt::Sessions::new(config.mqtt.max_sessions),
            mqtt_groups: mqtt::Groups::default(),
            config,
        })
    }
}

/// Origin requests that outlive their client, at most this many at once.
pub(crate) const MAX_FAREWELLS: usize = 256;

/// MQTT notices to the origin waiting for one of the [`MAX_FAREWELLS`], at most this many
/// node-wide (past it a notice is skipped and counted).
pub(crate) const MAX_WAITING_NOTICES: usize = 16_384;

/// How long an MQTT notice waits for a farewell permit before it is skipped (and counted).
pub(crate) const NOTICE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The sockets Gripway serves on, bound by the caller (tests bind port 0).
pub struct Listeners {
    /// Client listeners.
    pub http: Vec<TcpListener>,
    /// Client listeners that speak TLS.
    pub tls: Vec<TcpListener>,
    /// MQTT listeners.
    pub mqtt: Vec<TcpListener>,
    /// MQTT-over-TLS listeners.
    pub mqtt_tls: Vec<TcpListener>,
    /// The publish API.
    pub publish: TcpListener,
    /// The admin listener, if enabled.
    pub admin: Option<TcpListener>,
}

/// Connections the kernel completes for a listener before Gripway accepts them (the listen
/// backlog; the kernel caps it at `net.core.somaxconn`). tokio's default, 1,024, overflowed
/// when thousands of clients connected at once (a reconnect storm, the hostile battery's
/// 10,000 slow clients): the kernel then drops handshakes, and a client that believes it is
/// connected is reset or answered late.
pub(crate) const LISTEN_BACKLOG: u32 = 4096;

/// A listener on `addr` with [`LISTEN_BACKLOG`] (address reuse on, as tokio's `bind` does).
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Binds the listeners the config names.
pub async fn bind(config: &Config) -> Result<Listeners, ConfigError> {
    let bind_one = |addr: SocketAddr, what: &'static str| async move {
        listen(addr).map_err(|e| ConfigError::new(format!("cannot listen on {addr} ({what}): {e}")))
    };
    let mut http = Vec::new();
    for addr in &config.http_addrs {
        http.push(bind_one(*addr, "clients").await?);
    }
    let mut tls = Vec::new();
    for addr in &config.tls.addrs {
        tls.push(bind_one(*addr, "TLS clients").await?);
    }
    let mut mqtt = Vec::new();
    let demo = matches!(config.routes, RoutesSource::Demo);
    let (mqtt_addrs, best_effort) = config.mqtt.listeners(demo);
    for addr in mqtt_addrs {
        match bind_one(addr, "MQTT").await {
            Ok(l) => mqtt.push(l),
            // the demo's default port may be taken (by a broker already there): go on without
            Err(e) if best_effort => tracing::warn!("{e}; MQTT is off"),
            Err(e) => return Err(e),
        }
    }
    let mut mqtt_tls = Vec::new();
    for addr in &config.mqtt.tls_addrs {
        mqtt_tls.push(bind_one(*addr, "MQTT over TLS").await?);
    }
    let publish = bind_one(config.publish_addr, "publish API").await?;
    let admin = match config.admin_addr {
        Some(addr) => Some(bind_one(addr, "admin").await?),
        None => None,
    };
    Ok(Listeners {
        http,
        tls,
        mqtt,
        mqtt_tls,
        publish,
        admin,
    })
}

/// Checks what can be checked before binding: routes, keys, and that an open publish API is
/// only reachable from this machine.
pub fn validate(config: &Config) -> Result<(), ConfigError> {
    routing::load(config)?;
    routing::load_upstream_key(config)?;
    if config.cluster.is_some() && config.history.dir.is_some() {
        return Err(ConfigError::new(
            "[history] dir and [cluster] cannot be used together: in a cluster, history is kept in JetStream".to_string(),
        ));
    }
    if !config.publish_addr.ip().is_loopback() && config.publish.auth.is_open() {
        return Err(ConfigError::new(format!(
            "the publish API listens on {} (not loopback) without authentication: set [publish.auth] keys, basic or jwt_keys",
            config.publish_addr
        )));
    }
    Ok(())
}

/// The history store `[history]` asks for: none, in memory, on disk (opened now, so a
/// directory that cannot be used stops start-up with its name and why), or, in a cluster,
/// the stream with this node's image of it.
fn open_history(
    config: &Config,
    bus: Option<&gripway_cluster::Bus>,
    registry: &Arc<gripway_broker::Registry>,
) -> Result<gripway_broker::history::History, ConfigError> {
    use gripway_broker::history::{
        ClusterHistory, DiskHistory, FsyncPolicy, History, HistoryConfig, MemoryHistory,
    };
    let h = &config.history;
    let bounds = HistoryConfig {
        max_items: h.max_items,
        max_age: h.max_age,
        max_bytes: h.max_bytes,
    };
    if h.max_items == 0 {
        return Ok(History::Off);
    }
    let shards = std::thread::available_parallelism().map_or(2, |n| n.get());
    if let Some(bus) = bus {
        let reader = Arc::new(cluster::StreamHistory {
            bus: bus.clone(),
            registry: registry.clone(),
        });
        let image = MemoryHistory::new(bounds, shards);
        return Ok(History::Cluster(ClusterHistory::new(image, reader)));
    }
    let Some(dir) = &h.dir else {
        return Ok(History::Memory(MemoryHistory::new(bounds, shards)));
    };
    let policy = match h.fsync_ms {
        0 => FsyncPolicy::EveryBatch,
        n => FsyncPolicy::EveryMs(n),
    };
    let store = DiskHistory::open(dir, bounds, policy)
        .map_err(|e| ConfigError::new(format!("[history] dir: {e}")))?;
    tracing::info!(dir = %dir.display(), "history kept on disk");
    Ok(History::Disk(store))
}

/// Serves until `shutdown` is requested, then drains (see [`drain`]) and returns how that
/// went. Must run inside a tokio runtime.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: Shutdown,
) -> Result<Stopped, ConfigError> {
    validate(&config)?;
    let routes = RoutesHandle::new(routing::load(&config)?);
    if let RoutesSource::File(path) = &config.routes {
        routing::spawn_reloader(
            path.clone(),
            RouteDefaults::from_config(&config),
            routes.clone(),
        );
    }
    let upstream_key = routing::load_upstream_key(&config)?;
    // the publish API and the shard tasks run on the broker thread (see broker_thread)
    let broker_thread = broker_thread::BrokerThread::start()
        .map_err(|e| ConfigError::new(format!("cannot start the broker thread: {e}")))?;
    let bus = match &config.cluster {
        None => None,
        Some(c) => {
            Some(cluster::connect(config::cluster::with_history(c.clone(), &config.history)).await?)
        }
    };
    let registry = gripway_broker::Registry::new();
    let history = open_history(&config, bus.as_ref().map(|(b, _)| b), &registry)?;
    // started there: the shard tasks are spawned, the listener registered, on that runtime
    // wide fan-outs run on the workers (the broker's lanes), off the broker thread
    let workers = tokio::runtime::Handle::current();
    let (broker, publish_listener) = {
        let _on_broker_thread = broker_thread.handle().enter();
        let broker = Broker::start_with(
            BrokerConfig {
                dedup_window: config.publish.dedup_window,
                order_wait: config.publish.order_wait,
                dedup_max_bytes: config.publish.dedup_max_bytes,
                order_max_bytes: config.publish.order_max_bytes,
                last_ids_max_bytes: config.publish.last_ids_max_bytes,
                shards: std::thread::available_parallelism().map_or(2, |n| n.get()),
                // one worker is always left to the connections' own work (reads, new
                // subscriptions, flushing what a socket did not take), so one channel's burst
                // never stalls every other connection (ARCHITECTURE.md, "One hot channel")
                lane_parts: workers.metrics().num_workers().saturating_sub(1).max(1),
                lanes: Some(workers),
                ..BrokerConfig::default()
            },
            history,
            registry,
        );
        let publish_listener = listeners
            .publish
            .into_std()
            .and_then(TcpListener::from_std)
            .map_err(|e| ConfigError::new(format!("publish API listener: {e}")))?;
        (broker, publish_listener)
    };
    let metrics = Metrics::new(broker.clone());
    let origin = OriginClient::new(OriginTimeouts {
        connect: config.proxy.connect_timeout,
        response: config.proxy.response_timeout,
    });
    let (cluster, deliveries) = match bus {
        Some((bus, deliveries)) => {
            let registry = broker.registry().clone();
            let c = cluster::Cluster::new(bus, registry, config.history.max_age).await?;
            metrics.set_cluster(c.figures());
            (Some(c), Some(deliveries))
        }
        None => (None, None),
    };
    let mqtt_sessions = mqtt::Sessions::new(config.mqtt.max_sessions);
    let shared = Arc::new(Shared {
        next_links: tokio::sync::Semaphore::new(config.grip.max_next_link_fetches),
        config,
        routes,
        origin,
        broker,
        cluster,
        metrics: metrics.clone(),
        upstream_key,
        farewells: Arc::new(tokio::sync::Semaphore::new(MAX_FAREWELLS)),
        waiting_notices: Arc::new(tokio::sync::Semaphore::new(MAX_WAITING_NOTICES)),
        drain: drain::Drain::new(),
        mqtt_sessions,
        mqtt_groups: mqtt::Groups::default(),
    });
    hold::first_subscription::start(&shared);
    if let Some(deliveries) = deliveries {
        cluster::start(&shared, deliveries, broker_thread.handle());
    }
    let gate = fds::ClientGate::from_config(&shared.config);
    // one certificate set, reloaded alike, for HTTPS and MQTT over TLS
    let tls = if listeners.tls.is_empty() && listeners.mqtt_tls.is_empty() {
        None
    } else {
        Some(tls::start(&shared.config.tls, metrics.tls())?)
    };
    for listener in listeners.tls {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!("clients (TLS) on {addr}");
        }
        let config = tls.as_ref().map(|t| t.config.clone());
        tokio::spawn(conn::accept_loop(
            shared.clone(),
            gate.clone(),
            listener,
            config,
            conn::Protocol::Http,
        ));
    }
    for listener in listeners.mqtt {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!("MQTT on {addr}");
        }
        tokio::spawn(conn::accept_loop(
            shared.clone(),
            gate.clone(),
            listener,
            None,
            conn::Protocol::Mqtt,
        ));
    }
    for listener in listeners.mqtt_tls {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!("MQTT (TLS) on {addr}");
        }
        let config = tls.as_ref().map(|t| t.mqtt_config.clone());
        tokio::spawn(conn::accept_loop(
            shared.clone(),
            gate.clone(),
            listener,
            config,
            conn::Protocol::Mqtt,
        ));
    }
    for listener in listeners.http {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!("clients on {addr}");
        }
        tokio::spawn(conn::accept_loop(
            shared.clone(),
            gate.clone(),
            listener,
            None,
            conn::Protocol::Http,
        ));
    }
    if let Ok(addr) = publish_listener.local_addr() {
        tracing::info!("publish API on {addr}");
    }
    broker_thread
        .handle()
        .spawn(publish_listener::serve(shared.clone(), publish_listener));
    if let Some(admin) = listeners.admin {
        if let Ok(addr) = admin.local_addr() {
            tracing::info!("metrics on http://{addr}/metrics");
        }
        tokio::spawn(admin::serve(shared.clone(), admin));
    }
    let stopped = drain::run(&shared, shutdown).await;
    drop(tls);
    drop(broker_thread); // the shards have ended; the publish API's connections go with it
    Ok(stopped)
}
