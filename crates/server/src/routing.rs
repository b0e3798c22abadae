//! The live routes: the parsed route table plus what each route needs at run time (its
//! Grip-Sig signer, its metrics label), swapped atomically when the routes file changes.
//!
//! A request takes one snapshot ([`RoutesHandle::current`]) and uses it to the end, so a
//! reload never changes routing under a request in flight, and held connections, which
//! keep only what they took from their route, are never dropped by a reload. A routes file
//! that fails to parse on reload is logged and the old routes stay. A route that signs with
//! the default key `changeme` and sends to an origin off this machine is warned about at
//! every load (anyone can forge that Grip-Sig).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use gripway_proto::routes::{
    parse_route_line, parse_routes, Route, RouteProto, RouteTable, TargetKind,
};
use gripway_proto::sig::{parse_signing_key, parse_verifying_key, GripSigner, VerifyingKey};

use crate::config::{Config, ConfigError, RoutesSource};

/// One route and what serving it needs.
pub struct RouteEntry {
    /// The parsed route.
    pub route: Route,
    /// Signs the Grip-Sig sent to this route's origin (None: the key is empty).
    pub signer: Option<Arc<GripSigner>>,
    /// The route's name in metrics and logs: its `id`, or `line-N`.
    pub label: Arc<str>,
    /// Debug mode (verbose error bodies) for this route.
    pub debug: bool,
}

/// A complete, validated set of routes.
pub struct Routes {
    table: RouteTable,
    entries: Vec<Arc<RouteEntry>>,
}

impl Routes {
    /// The route for a request, if any.
    pub fn find(
        &self,
        host: &str,
        path: &str,
        proto: RouteProto,
        ssl: bool,
    ) -> Option<&Arc<RouteEntry>> {
        let found = self.table.find(host, path, proto, ssl)?;
        self.entry_of(found)
    }

    fn entry_of(&self, route: &Route) -> Option<&Arc<RouteEntry>> {
        // `find` returns a reference into `table.routes()`; its index maps to our entries
        let base = self.table.routes().as_ptr() as usize;
        let size = std::mem::size_of::<Route>().max(1);
        let index = (route as *const Route as usize).checked_sub(base)? / size;
        self.entries.get(index)
    }

    /// Every route, in table order.
    pub fn entries(&self) -> &[Arc<RouteEntry>] {
        &self.entries
    }
}

/// Shared, atomically replaceable routes.
#[derive(Clone)]
pub struct RoutesHandle(Arc<ArcSwap<Routes>>);

impl RoutesHandle {
    /// Wraps an initial set.
    pub fn new(routes: Routes) -> Self {
        RoutesHandle(Arc::new(ArcSwap::from_pointee(routes)))
    }

    /// The routes in force now.
    pub fn current(&self) -> Arc<Routes> {
        self.0.load_full()
    }

    fn replace(&self, routes: Routes) {
        self.0.store(Arc::new(routes));
    }
}

/// Global settings a route falls back to.
#[derive(Clone)]
pub struct RouteDefaults {
    sig_iss: String,
    sig_key: String,
    debug: bool,
    base_dir: PathBuf,
}

impl RouteDefaults {
    /// Takes the route-related defaults from the config.
    pub fn from_config(config: &Config) -> Self {
        RouteDefaults {
            sig_iss: config.proxy.sig_iss.clone(),
            sig_key: config.proxy.sig_key.clone(),
            debug: config.proxy.debug,
            base_dir: config.base_dir.clone(),
        }
    }
}

/// Loads the routes the config names. Errors name the file (or `--route`) and the line.
pub fn load(config: &Config) -> Result<Routes, ConfigError> {
    let defaults = RouteDefaults::from_config(config);
    match &config.routes {
        RoutesSource::Demo => build(
            vec![parse_route_line("* test", 1)
                .ok()
                .flatten()
                .ok_or_else(|| ConfigError::new("built-in demo route failed to parse"))?],
            &defaults,
            None,
        ),
        RoutesSource::Inline(lines) => {
            let mut routes = Vec::new();
            for (i, line) in lines.iter().enumerate() {
                match parse_route_line(line, i + 1) {
                    Ok(Some(r)) => routes.push(r),
                    Ok(None) => {}
                    Err(e) => {
                        return Err(ConfigError::new(format!(
                            "route {} ('{}'): {}",
                            i + 1,
                            line,
                            e.message
                        )))
                    }
                }
            }
            build(routes, &defaults, None)
        }
        RoutesSource::File(path) => load_file(path, &defaults),
    }
}

fn load_file(path: &Path, defaults: &RouteDefaults) -> Result<Routes, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::at(path, None, format!("cannot read routes file: {e}")))?;
    let routes =
        parse_routes(&text).map_err(|e| ConfigError::at(path, Some(e.line), e.message.clone()))?;
    let dir = path.parent().map(Path::to_path_buf);
    build(routes, defaults, dir.as_deref().map(|d| (path, d)))
}

/// Builds run-time entries; `file` is (routes file, its directory) for errors and key paths.
fn build(
    routes: Vec<Route>,
    defaults: &RouteDefaults,
    file: Option<(&Path, &Path)>,
) -> Result<Routes, ConfigError> {
    if routes.is_empty() {
        let msg = "no routes: every request would fail";
        return Err(match file {
            Some((p, _)) => ConfigError::at(p, None, msg),
            None => ConfigError::new(msg),
        });
    }
    let key_dir = file.map(|(_, d)| d).unwrap_or(&defaults.base_dir);
    let (table, warnings) = RouteTable::new(routes);
    for w in warnings {
        tracing::warn!(routes = %file.map(|(p, _)| p.display().to_string()).unwrap_or_else(|| "--route".into()), "{w}");
    }
    let mut entries = Vec::with_capacity(table.routes().len());
    for route in table.routes() {
        let at = |message: String| match file {
            Some((p, _)) => ConfigError::at(p, Some(route.line), message),
            None => ConfigError::new(format!("route {}: {message}", route.line)),
        };
        let key_spec = route.sig_key.as_deref().unwrap_or(&defaults.sig_key);
        let signer = parse_signing_key(key_spec, key_dir)
            .map_err(|e| at(format!("sig_key: {e}")))?
            .map(|key| {
                let iss = route
                    .sig_iss
                    .clone()
                    .unwrap_or_else(|| defaults.sig_iss.clone());
                Arc::new(GripSigner::new(iss, key))
            });
        if key_spec == DEFAULT_SIG_KEY {
            if let Some(host) = route.targets.iter().find_map(non_loopback_host) {
                tracing::warn!(
                    line = route.line,
                    origin = host,
                    "INSECURE: this route signs Grip-Sig with the default key \"changeme\" and \
                     sends to a non-loopback origin; anyone can forge Grip-Sig for it. Set \
                     sig_key (config [proxy] or the route's sig_key=) to a secret"
                );
            }
        }
        if !route.ignored.is_empty() {
            tracing::warn!(line = route.line, options = ?route.ignored, "route options accepted but not implemented");
        }
        let label: Arc<str> = match &route.id {
            Some(id) => Arc::from(id.as_str()),
            None => Arc::from(format!("line-{}", route.line)),
        };
        entries.push(Arc::new(RouteEntry {
            debug: route.debug || defaults.debug,
            route: route.clone(),
            signer,
            label,
        }));
    }
    Ok(Routes { table, entries })
}

/// Pushpin's default Grip-Sig key, which every Pushpin user knows.
const DEFAULT_SIG_KEY: &str = "changeme";

/// The host of a target that is not on this machine (not `localhost`, not a loopback IP).
fn non_loopback_host(target: &gripway_proto::routes::Target) -> Option<&str> {
    let TargetKind::Addr { host, .. } = &target.kind else {
        return None;
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    (!loopback).then_some(host.as_str())
}

/// Loads the upstream key (trusted upstream proxies), if configured.
pub fn load_upstream_key(config: &Config) -> Result<Option<VerifyingKey>, ConfigError> {
    parse_verifying_key(&config.proxy.upstream_key, &config.base_dir)
        .map_err(|e| ConfigError::new(format!("upstream_key: {e}")))
}

/// Watches a routes file and swaps in new routes when its contents change. Polls once a
/// second (cheap: one metadata call) so that it works the same on every file system and
/// with editors that replace files instead of writing them.
pub fn spawn_reloader(path: PathBuf, defaults: RouteDefaults, handle: RoutesHandle) {
    tokio::spawn(async move {
        let stamp = |p: &Path| {
            std::fs::metadata(p)
                .ok()
                .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()))
        };
        let mut last = stamp(&path);
        let mut last_text = std::fs::read_to_string(&path).ok();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let now = stamp(&path);
            if now == last {
                continue;
            }
            last = now;
            let text = std::fs::read_to_string(&path).ok();
            if text.is_none() || text == last_text {
                continue;
            }
            last_text = text;
            match load_file(&path, &defaults) {
                Ok(routes) => {
                    tracing::info!(file = %path.display(), routes = routes.entries.len(), "routes reloaded");
                    handle.replace(routes);
                }
                Err(e) => tracing::error!("routes not reloaded, keeping the old ones: {e}"),
            }
        }
    });
}
