//! Starts the real `gripway` binary with every listener on port 0 and learns the ports it got
//! from its start-up log lines. The process is killed when the handle drops; its log is kept
//! and printed if the test panics, so a failure shows what the server said.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running gripway process.
pub struct Gripway {
    child: Child,
    /// Client listener.
    pub addr: SocketAddr,
    /// Publish API listener.
    pub publish_addr: SocketAddr,
    /// Admin listener.
    pub admin_addr: SocketAddr,
    /// The first TLS client listener (`--tls-port`), if one was asked for: learned from its
    /// `clients (TLS) on ADDR` line, which the server logs before the plain listeners' lines.
    pub tls_addr: Option<SocketAddr>,
    /// The first MQTT listener: learned from its `MQTT on ADDR` line (logged before the
    /// client listeners'). Every start asks for one on port 0 unless the arguments name
    /// `--mqtt-port` themselves.
    pub mqtt_addr: Option<SocketAddr>,
    /// The first MQTT-over-TLS listener (`--mqtt-tls-port`), if one was asked for: learned
    /// from its `MQTT (TLS) on ADDR` line (logged before the client listeners').
    pub mqtt_tls_addr: Option<SocketAddr>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Gripway {
    /// Starts `binary` with `args` (plus the three port-0 listeners).
    pub fn start(binary: &str, args: &[&str]) -> Gripway {
        Self::start_in(binary, args, None)
    }

    /// Starts `binary` in directory `dir`.
    pub fn start_in(binary: &str, args: &[&str], dir: Option<&Path>) -> Gripway {
        Self::start_at(binary, args, dir, ["127.0.0.1:0"; 3].map(String::from), &[])
    }

    /// Starts `binary` with these environment variables set for it (`TMPDIR`, say).
    pub fn start_with_env(binary: &str, args: &[&str], env: &[(&str, &OsStr)]) -> Gripway {
        Self::start_at(
            binary,
            args,
            None,
            ["127.0.0.1:0"; 3].map(String::from),
            env,
        )
    }

    /// Starts `binary` on client, publish and admin ports below the kernel's ephemeral range,
    /// so that [`Gripway::restart_like`] can bind them again: a port-0 port could be taken by
    /// an outgoing connection while the server is down.
    pub fn start_restartable(binary: &str, args: &[&str]) -> Gripway {
        let addrs = [0; 3].map(|_| format!("127.0.0.1:{}", crate::ports::free_port()));
        Self::start_at(binary, args, None, addrs, &[])
    }

    /// Starts `binary` again on the listeners of `previous` (a restart on the same ports;
    /// start the first with [`Gripway::start_restartable`]).
    pub fn restart_like(binary: &str, args: &[&str], previous: &Gripway) -> Gripway {
        let addrs = [previous.addr, previous.publish_addr, previous.admin_addr];
        Self::start_at(binary, args, None, addrs.map(|a| a.to_string()), &[])
    }

    fn start_at(
        binary: &str,
        args: &[&str],
        dir: Option<&Path>,
        addrs: [String; 3],
        env: &[(&str, &OsStr)],
    ) -> Gripway {
        Self::start_full(binary, args, dir, addrs, env, true)
    }

    /// Starts `binary` with only the client, publish and admin listeners on port 0: MQTT is
    /// as the arguments and defaults say (the demo's 1883 included).
    pub fn start_with_default_mqtt(binary: &str, args: &[&str]) -> Gripway {
        Self::start_full(
            binary,
            args,
            None,
            ["127.0.0.1:0"; 3].map(String::from),
            &[],
            false,
        )
    }

    fn start_full(
        binary: &str,
        args: &[&str],
        dir: Option<&Path>,
        addrs: [String; 3],
        env: &[(&str, &OsStr)],
        own_mqtt: bool,
    ) -> Gripway {
        let [client, publish, admin] = addrs;
        let mut cmd = Command::new(binary);
        cmd.args([
            "--port",
            &client,
            "--publish-port",
            &publish,
            "--admin-port",
            &admin,
        ])
        .args(args)
        .args(
            if args.iter().any(|a| a.starts_with("--mqtt-port")) || !own_mqtt {
                &[][..]
            } else {
                &["--mqtt-port", "127.0.0.1:0"][..]
            },
        )
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        if !args.iter().any(|a| a.starts_with("--log-level")) {
            cmd.args(["--log-level", "info"]);
        }
        if let Some(d) = dir {
            cmd.current_dir(d);
        }
        let mut child = cmd.spawn().expect("gripway binary starts");
        let stderr = child.stderr.take().expect("stderr piped");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let _ = tx.send(line.clone());
                    log.lock().expect("log lock").push(line);
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        let (mut addr, mut publish_addr, mut admin_addr) = (None, None, None);
        let mut tls_addr = None;
        let mut mqtt_addr = None;
        let mut mqtt_tls_addr = None;
        while addr.is_none() || publish_addr.is_none() || admin_addr.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(l) => l,
                Err(_) => {
                    let status = child.try_wait().ok().flatten();
                    let _ = child.kill();
                    panic!(
                        "gripway did not report its listeners (exit: {status:?}); log:\n{}",
                        log.lock().expect("log lock").join("\n")
                    );
                }
            };
            let after = |marker: &str| {
                line.find(marker).and_then(|i| {
                    line[i + marker.len()..]
                        .split(|c: char| c.is_whitespace() || c == '/')
                        .next()
                        .and_then(|a| a.parse::<SocketAddr>().ok())
                })
            };
            // "clients (TLS) on ADDR" does not hold "clients on ", so the plain listener's
            // marker never takes a TLS line
            tls_addr = tls_addr.or_else(|| after("clients (TLS) on "));
            // likewise "MQTT (TLS) on ADDR" does not hold "MQTT on "
            mqtt_addr = mqtt_addr.or_else(|| after("MQTT on "));
            mqtt_tls_addr = mqtt_tls_addr.or_else(|| after("MQTT (TLS) on "));
            addr = addr.or_else(|| after("clients on "));
            publish_addr = publish_addr.or_else(|| after("publish API on "));
            admin_addr = admin_addr.or_else(|| after("metrics on http://"));
        }
        Gripway {
            child,
            addr: addr.expect("client address"),
            publish_addr: publish_addr.expect("publish address"),
            admin_addr: admin_addr.expect("admin address"),
            tls_addr,
            mqtt_addr,
            mqtt_tls_addr,
            log,
        }
    }

    /// `http://127.0.0.1:PORT` of the client listener.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// `https://127.0.0.1:PORT` of the (first) TLS client listener: a client that follows it
    /// connects by IP and sends no SNI, so it gets the `default` certificate (which
    /// [`crate::tls::CertsDir`] makes for `127.0.0.1` too). Panics without a TLS listener.
    pub fn https_url(&self, path: &str) -> String {
        let addr = self.tls_addr.expect("gripway was started with --tls-port");
        format!("https://{addr}{path}")
    }

    /// The publish endpoint (Pushpin's form).
    pub fn publish_url(&self) -> String {
        format!("http://{}/publish/", self.publish_addr)
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("log lock").join("\n")
    }

    /// Waits until the log contains `needle` (bounded by `within`).
    pub fn wait_for_log(&self, needle: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// The value of a Prometheus sample (`name{labels}` exactly as exposed), if present.
    pub async fn metric(&self, sample: &str) -> Option<f64> {
        let text = http_get(self.admin_addr, "/metrics").await;
        text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == sample).then(|| value.parse().ok()).flatten()
        })
    }

    /// The process's resident memory in bytes (Linux: `VmRSS` in `/proc/<pid>/status`);
    /// None elsewhere.
    pub fn rss_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }

    /// Each thread's name and CPU time so far in clock ticks (user + system, Linux
    /// `/proc/<pid>/task/*/stat`); empty elsewhere.
    pub fn threads(&self) -> Vec<(String, u64)> {
        let dir = format!("/proc/{}/task", self.child.id());
        let Ok(tasks) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        tasks
            .flatten()
            .filter_map(|t| {
                let stat = std::fs::read_to_string(t.path().join("stat")).ok()?;
                // "tid (name) state ..." : the name may hold spaces, so split at the last ')'
                let (head, rest) = stat.rsplit_once(')')?;
                let name = head.split_once('(')?.1.to_string();
                let f: Vec<&str> = rest.split_whitespace().collect();
                // fields 14 and 15 of stat (utime, stime) are the 12th and 13th after ')'
                let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
                Some((name, ticks))
            })
            .collect()
    }

    /// The process's resident memory in KiB (Linux `/proc`), if it can be read.
    pub fn rss_kib(&self) -> Option<u64> {
        self.rss_bytes().map(|b| b / 1024)
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGTERM (as a supervisor stopping the service does).
    pub fn terminate(&self) {
        self.signal(rustix::process::Signal::TERM);
    }

    /// Sends SIGKILL and waits for the process to be gone (a crash: nothing is drained).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGINT (Ctrl-C).
    pub fn interrupt(&self) {
        self.signal(rustix::process::Signal::INT);
    }

    fn signal(&self, sig: rustix::process::Signal) {
        let pid = i32::try_from(self.child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
            .expect("a valid pid");
        rustix::process::kill_process(pid, sig).expect("signal delivered");
    }

    /// Waits (bounded by `within`) for the process to exit; its exit code, or None if it is
    /// still running (or was ended by a signal).
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Gripway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- gripway log ---\n{}\n---", self.log());
        }
    }
}

/// A GET over a fresh connection, returning the body (admin endpoints are tiny).
async fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut c = crate::RawClient::connect(addr).await;
    c.send(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await;
    let all = c.read_to_end(crate::WAIT).await;
    let text = String::from_utf8_lossy(&all).into_owned();
    text.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}
