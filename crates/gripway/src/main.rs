//! The `gripway` binary: command-line flags and the config file in, a running GRIP proxy out.
//! Flags follow Pushpin's runner (`--config`, `--port`, `--route`, `--loglevel`) so existing
//! scripts keep working; `gripway publish` does what `pushpin-publish` does.
//!
//! Exit codes: 0 after a shutdown (SIGTERM or SIGINT: drained, or cut off at the drain
//! deadline), 1 when the server cannot start (a port in use) or a second signal cut the drain
//! short, 2 for a bad command line, config file or routes line (the message names file and
//! line).

mod publish;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use gripway_server::config::{file, parse_listen_addr, Config, ConfigError, RoutesSource};
use gripway_server::{Shutdown, Stopped};
use tracing_subscriber::EnvFilter;

#[derive(Parser, Debug)]
#[command(
    name = "gripway",
    version,
    about = "A GRIP proxy and pub/sub broker: a drop-in replacement for Pushpin",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Publish a message to a channel (the flags of pushpin-publish).
    Publish(publish::PublishArgs),
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Config file (TOML); without one, Pushpin's defaults and the built-in demo origin.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Client listener, [addr:]port; repeatable; replaces the config file's ports.
    #[arg(long = "port", value_name = "[ADDR:]PORT")]
    ports: Vec<String>,
    /// TLS client listener, [addr:]port; repeatable; replaces the config file's tls_port.
    /// Certificates come from [tls] certs_dir (or --tls-certs-dir); without one, a
    /// self-signed certificate for localhost is made at start.
    #[arg(long = "tls-port", value_name = "[ADDR:]PORT")]
    tls_ports: Vec<String>,
    /// MQTT listener, [addr:]port; repeatable; "off" turns MQTT off; replaces the config
    /// file's mqtt_port (default: off, or 1883 for the built-in demo).
    #[arg(long = "mqtt-port", value_name = "[ADDR:]PORT")]
    mqtt_ports: Vec<String>,
    /// MQTT-over-TLS listener, [addr:]port; repeatable; "off" turns it off; replaces the
    /// config file's mqtt_tls_port (default: none). Certificates as for --tls-port.
    #[arg(long = "mqtt-tls-port", value_name = "[ADDR:]PORT")]
    mqtt_tls_ports: Vec<String>,
    /// Directory of TLS certificates (<host>.crt + <host>.key, _.example.com wildcards,
    /// default.crt); replaces [tls] certs_dir.
    #[arg(long, value_name = "DIR")]
    tls_certs_dir: Option<PathBuf>,
    /// A route in routes-file syntax; repeatable; replaces the config file's routes.
    #[arg(long = "route", value_name = "LINE")]
    routes: Vec<String>,
    /// Publish API listener, [addr:]port (default 127.0.0.1:5561).
    #[arg(long, value_name = "[ADDR:]PORT")]
    publish_port: Option<String>,
    /// Admin listener for /metrics and /health, [addr:]port (default 127.0.0.1:5564); "off" disables.
    #[arg(long, value_name = "[ADDR:]PORT")]
    admin_port: Option<String>,
    /// Log level: error, warn, info, debug, trace, or Pushpin's 0-4; RUST_LOG-style filters too.
    #[arg(long = "log-level", alias = "loglevel", value_name = "LEVEL")]
    log_level: Option<String>,
    /// Same as --log-level debug.
    #[arg(long)]
    verbose: bool,
    /// Runtime worker threads (default: one per core).
    #[arg(long)]
    workers: Option<usize>,
    /// Longest drain at SIGTERM/SIGINT, in ms, before open connections are cut off (default 10000).
    #[arg(long, value_name = "MS")]
    drain_timeout_ms: Option<u64>,
    /// Keep history on disk in this directory (survives restarts; see [history] dir).
    #[arg(long, value_name = "DIR")]
    history_dir: Option<std::path::PathBuf>,
    /// Join a cluster: NATS server URLs, comma-separated (nats://host:4222,...); the other
    /// settings come from [cluster] in the config file, or their defaults.
    #[arg(long, value_name = "URL[,URL...]")]
    cluster: Option<String>,
}

/// jemalloc: less CPU per delivery than glibc's malloc where items are made on one thread and
/// freed on another, at the same memory per connection (BENCHMARKS.md).
#[cfg(all(feature = "jemalloc", target_os = "linux", target_env = "gnu"))]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // clap prints help/version with exit 0 and usage errors with exit 2
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match cli.command {
        Some(Command::Publish(args)) => publish::main(args),
        None => serve(cli.run),
    }
}

fn serve(args: RunArgs) -> ExitCode {
    init_logging(args.log_level.as_deref(), args.verbose);
    let config = match build_config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gripway: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = gripway_server::validate(&config) {
        eprintln!("gripway: {e}");
        return ExitCode::from(2);
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if config.workers > 0 {
        builder.worker_threads(config.workers);
    }
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("gripway: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(async move {
        let shutdown = match Shutdown::on_signals() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("gripway: cannot listen for signals: {e}");
                return ExitCode::from(1);
            }
        };
        let listeners = match gripway_server::bind(&config).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("gripway: {e}");
                return ExitCode::from(1);
            }
        };
        match gripway_server::run(config, listeners, shutdown).await {
            Ok(Stopped::Drained | Stopped::DeadlinePassed(_)) => ExitCode::SUCCESS,
            Ok(Stopped::Forced) => ExitCode::from(1),
            Err(e) => {
                eprintln!("gripway: {e}");
                ExitCode::from(2)
            }
        }
    });
    // what is still open (past the drain's deadline) is dropped, not waited for
    runtime.shutdown_timeout(Duration::from_millis(100));
    code
}

/// The config file (if any), then the flags on top.
fn build_config(args: &RunArgs) -> Result<Config, ConfigError> {
    let mut config = match &args.config {
        Some(path) => file::load(path)?,
        None => Config::default(),
    };
    if !args.ports.is_empty() {
        config.http_addrs = args
            .ports
            .iter()
            .map(|p| parse_listen_addr(p).map_err(|m| ConfigError::new(format!("--port: {m}"))))
            .collect::<Result<_, _>>()?;
    }
    if !args.tls_ports.is_empty() {
        config.tls.addrs = args
            .tls_ports
            .iter()
            .map(|p| parse_listen_addr(p).map_err(|m| ConfigError::new(format!("--tls-port: {m}"))))
            .collect::<Result<_, _>>()?;
    }
    if !args.mqtt_ports.is_empty() {
        config.mqtt.addrs = Some(if args.mqtt_ports.iter().any(|p| p == "off") {
            Vec::new()
        } else {
            args.mqtt_ports
                .iter()
                .map(|p| {
                    parse_listen_addr(p).map_err(|m| ConfigError::new(format!("--mqtt-port: {m}")))
                })
                .collect::<Result<_, _>>()?
        });
    }
    if !args.mqtt_tls_ports.is_empty() {
        config.mqtt.tls_addrs =
            gripway_server::config::mqtt::flag_listeners("--mqtt-tls-port", &args.mqtt_tls_ports)?;
    }
    if let Some(dir) = &args.tls_certs_dir {
        config.tls.certs_dir = Some(dir.clone());
    }
    if !args.routes.is_empty() {
        config.routes = RoutesSource::Inline(args.routes.clone());
    }
    if let Some(p) = &args.publish_port {
        config.publish_addr =
            parse_listen_addr(p).map_err(|m| ConfigError::new(format!("--publish-port: {m}")))?;
    }
    if let Some(p) = &args.admin_port {
        config.admin_addr = if p == "off" {
            None
        } else {
            Some(parse_listen_addr(p).map_err(|m| ConfigError::new(format!("--admin-port: {m}")))?)
        };
    }
    if let Some(w) = args.workers {
        config.workers = w;
    }
    if let Some(ms) = args.drain_timeout_ms {
        config.drain_timeout = Duration::from_millis(ms);
    }
    if let Some(dir) = &args.history_dir {
        config.history.dir = Some(dir.clone());
    }
    if let Some(urls) = &args.cluster {
        config.cluster = Some(
            gripway_server::config::cluster::from_flag(urls, config.cluster.take())
                .map_err(|m| ConfigError::new(format!("--cluster: {m}")))?,
        );
    }
    config.tls.validate()?;
    Ok(config)
}

fn init_logging(level: Option<&str>, verbose: bool) {
    let directive = match (level, verbose) {
        (Some(l), _) => match l.trim() {
            "0" => "error".to_string(),
            "1" => "warn".to_string(),
            "2" => "info".to_string(),
            "3" => "debug".to_string(),
            "4" | "5" => "trace".to_string(),
            other => other.to_string(),
        },
        (None, true) => "debug".to_string(),
        (None, false) => std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_string()),
    };
    let filter = EnvFilter::try_new(&directive).unwrap_or_else(|e| {
        eprintln!("gripway: log level '{directive}' not understood ({e}); using info");
        EnvFilter::new("info")
    });
    use std::io::IsTerminal as _;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use gripway_test_support::tls::CertsDir;
    use std::net::SocketAddr;

    fn config_of(args: &[&str]) -> Result<Config, ConfigError> {
        let cli = Cli::try_parse_from(std::iter::once("gripway").chain(args.iter().copied()))
            .map_err(|e| ConfigError::new(e.to_string()))?;
        build_config(&cli.run)
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("gripway-main-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn tls_port_is_repeatable_and_parsed_like_port() {
        let c = config_of(&[]).unwrap();
        assert!(c.tls.addrs.is_empty(), "no TLS listener by default");
        let c = config_of(&["--tls-port", "8443", "--tls-port", "[::1]:9443"]).unwrap();
        assert_eq!(
            c.tls.addrs,
            vec![
                SocketAddr::from(([0, 0, 0, 0], 8443)),
                "[::1]:9443".parse().unwrap()
            ]
        );
        // the same default bind address as --port
        let p = config_of(&["--port", "8443"]).unwrap();
        assert_eq!(p.http_addrs[0].ip(), c.tls.addrs[0].ip());
        let e = config_of(&["--tls-port", "nowhere"]).unwrap_err();
        assert!(e.to_string().starts_with("--tls-port: "), "{e}");
    }

    #[test]
    fn mqtt_port_is_off_by_default_repeatable_and_can_be_turned_off() {
        let c = config_of(&[]).unwrap();
        assert_eq!(c.mqtt.addrs, None, "the default: off, or 1883 for the demo");
        let c = config_of(&["--mqtt-port", "1884", "--mqtt-port", "127.0.0.1:1885"]).unwrap();
        assert_eq!(
            c.mqtt.addrs,
            Some(vec![
                SocketAddr::from(([0, 0, 0, 0], 1884)),
                "127.0.0.1:1885".parse().unwrap()
            ])
        );
        let c = config_of(&["--mqtt-port", "off"]).unwrap();
        assert_eq!(c.mqtt.addrs, Some(vec![]));
        let e = config_of(&["--mqtt-port", "nowhere"]).unwrap_err();
        assert!(e.to_string().starts_with("--mqtt-port: "), "{e}");
    }

    #[test]
    fn mqtt_tls_port_is_off_by_default_repeatable_and_replaces_the_files() {
        assert!(config_of(&[]).unwrap().mqtt.tls_addrs.is_empty());
        let c = config_of(&[
            "--mqtt-tls-port",
            "8883",
            "--mqtt-tls-port",
            "127.0.0.1:8884",
        ])
        .unwrap();
        assert_eq!(
            c.mqtt.tls_addrs,
            vec![
                SocketAddr::from(([0, 0, 0, 0], 8883)),
                "127.0.0.1:8884".parse().unwrap()
            ]
        );
        let dir = temp_dir("mqtttls");
        let file = dir.join("gripway.toml");
        std::fs::write(&file, "[server]\nmqtt_tls_port = \"127.0.0.1:9883\"\n").unwrap();
        let c = config_of(&["--config", file.to_str().unwrap()]).unwrap();
        assert_eq!(c.mqtt.tls_addrs, vec!["127.0.0.1:9883".parse().unwrap()]);
        let c = config_of(&["--config", file.to_str().unwrap(), "--mqtt-tls-port", "off"]).unwrap();
        assert!(c.mqtt.tls_addrs.is_empty());
        let e = config_of(&["--mqtt-tls-port", "nowhere"]).unwrap_err();
        assert!(e.to_string().starts_with("--mqtt-tls-port: "), "{e}");
    }

    #[test]
    fn tls_flags_replace_the_config_files_settings() {
        let certs = CertsDir::new(&["localhost"]);
        let other = CertsDir::new(&["default"]);
        // the file sits beside the certificate directory and names it relatively
        let file = certs.path().parent().unwrap().join("gripway.toml");
        std::fs::write(
            &file,
            "[server]\ntls_port = [\"127.0.0.1:8443\"]\n[tls]\ncerts_dir = \"certs\"\n",
        )
        .unwrap();
        let f = file.to_str().unwrap();
        let c = config_of(&["--config", f]).unwrap();
        assert_eq!(c.tls.addrs, vec!["127.0.0.1:8443".parse().unwrap()]);
        assert_eq!(c.tls.certs_dir, Some(certs.path()));
        let c = config_of(&[
            "--config",
            f,
            "--tls-port",
            "9443",
            "--tls-certs-dir",
            other.path().to_str().unwrap(),
        ])
        .unwrap();
        assert_eq!(c.tls.addrs, vec![SocketAddr::from(([0, 0, 0, 0], 9443))]);
        assert_eq!(c.tls.certs_dir, Some(other.path()));
    }

    #[test]
    fn a_certificate_that_does_not_load_is_refused_by_name() {
        let certs = CertsDir::new(&["localhost"]);
        let crt = certs.path().join("localhost.crt");
        std::fs::remove_file(certs.path().join("localhost.key")).unwrap();
        let e = config_of(&["--tls-certs-dir", certs.path().to_str().unwrap()]).unwrap_err();
        assert!(e.to_string().starts_with(&crt.display().to_string()), "{e}");
        assert!(e.to_string().contains("no key file"), "{e}");
    }

    #[test]
    fn a_certs_dir_that_is_not_a_directory_is_refused_by_name() {
        let dir = temp_dir("tlsnotdir");
        let not_dir = dir.join("certs.pem");
        std::fs::write(&not_dir, "x").unwrap();
        let e = config_of(&[
            "--tls-port",
            "8443",
            "--tls-certs-dir",
            not_dir.to_str().unwrap(),
        ])
        .unwrap_err();
        assert!(
            e.to_string().starts_with(&not_dir.display().to_string()),
            "{e}"
        );
        assert!(e.to_string().contains("not a directory"), "{e}");
        let missing = dir.join("missing");
        let e = config_of(&["--tls-certs-dir", missing.to_str().unwrap()]).unwrap_err();
        assert!(e.to_string().contains("cannot be read"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
