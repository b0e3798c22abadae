//! `gripway publish`: sends one item to a publish API, with the flags of `pushpin-publish`.
//!
//! The item carries an `http-response`, an `http-stream` and a `ws-message` format built from
//! the content (HTTP payloads get a trailing newline unless `--no-eol`), or the `hint` /
//! `close` action instead. The target is `--spec`, else `$GRIP_URL`, else
//! `http://localhost:5561`; a GRIP URL's `key` (with `iss`: a signed JWT) becomes the
//! credential, as GRIP client libraries do.

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::Args;
use gripway_proto::sig::{GripSigner, SigningKey};
use gripway_server::origin::{ConnectTarget, OriginClient, OriginRequest, OriginTimeouts};
use http::{HeaderMap, HeaderValue, Method};
use serde_json::{json, Map, Value};

#[derive(Args, Debug)]
pub(crate) struct PublishArgs {
    /// Channel to publish to.
    channel: String,
    /// Content for HTTP bodies and WebSocket messages ("@file" reads a file, "-" stdin).
    content: Option<String>,
    /// Item id.
    #[arg(long)]
    id: Option<String>,
    /// Id of the previous item on the channel.
    #[arg(long = "prev-id")]
    prev_id: Option<String>,
    /// Sender meta value (for the skip-self filter).
    #[arg(long)]
    sender: Option<String>,
    /// HTTP status code for long-poll responses.
    #[arg(long, default_value_t = 200)]
    code: u16,
    /// Add an HTTP response header, "Name: value"; repeatable.
    #[arg(short = 'H', long = "header", value_name = "K: V")]
    headers: Vec<String>,
    /// Add a meta variable, "name=value"; repeatable.
    #[arg(short = 'M', long = "meta", value_name = "K=V")]
    meta: Vec<String>,
    /// Send a hint instead of content (subscribers fetch from the origin).
    #[arg(long, conflicts_with_all = ["close", "patch"])]
    hint: bool,
    /// Close streams and WebSockets.
    #[arg(long, conflicts_with = "patch")]
    close: bool,
    /// The content is a JSON Patch for long-poll responses.
    #[arg(long)]
    patch: bool,
    /// Bypass ordering by prev-id.
    #[arg(long = "no-seq")]
    no_seq: bool,
    /// Don't add a newline to HTTP payloads.
    #[arg(long = "no-eol")]
    no_eol: bool,
    /// Publish API or GRIP URL (default $GRIP_URL or http://localhost:5561).
    #[arg(long)]
    spec: Option<String>,
    /// Basic credentials, "user:pass".
    #[arg(short = 'u', long = "user")]
    user: Option<String>,
    /// Bearer token.
    #[arg(short = 'B', long = "bearer")]
    bearer: Option<String>,
}

pub(crate) fn main(args: PublishArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("gripway publish: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(publish(args)) {
        Ok(answer) => {
            print!("{answer}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gripway publish: {e}");
            ExitCode::from(1)
        }
    }
}

async fn publish(args: PublishArgs) -> Result<String, String> {
    let body =
        serde_json::to_vec(&json!({ "items": [item(&args)?] })).map_err(|e| e.to_string())?;
    let spec = args
        .spec
        .clone()
        .or_else(|| std::env::var("GRIP_URL").ok())
        .unwrap_or_else(|| "http://localhost:5561".into());
    let grip = GripUrl::parse(&spec)?;
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    let host = HeaderValue::from_str(&grip.authority).map_err(|_| "bad host in spec")?;
    headers.insert("host", host);
    if let Some(auth) = grip.authorization(&args)? {
        headers.insert(
            "authorization",
            HeaderValue::from_str(&auth).map_err(|_| "credentials contain invalid characters")?,
        );
    }
    let client = OriginClient::new(OriginTimeouts {
        connect: Duration::from_secs(10),
        response: Duration::from_secs(30),
    });
    let request = OriginRequest {
        method: Method::POST,
        path_and_query: format!("{}/publish/", grip.path.trim_end_matches('/')),
        headers,
        body: Bytes::from(body),
    };
    let mut response = client
        .send(&grip.target, &request)
        .await
        .map_err(|e| format!("{spec}: {e}"))?;
    let text = response
        .body
        .read_to_end(1 << 20, Duration::from_secs(30))
        .await
        .map_err(|e| e.to_string())?
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    if response.status.is_success() {
        Ok(text)
    } else {
        Err(format!("{}: {}", response.status, text.trim_end()))
    }
}

/// The item as JSON.
fn item(args: &PublishArgs) -> Result<Value, String> {
    let mut formats = Map::new();
    if args.hint {
        formats.insert("http-response".into(), json!({"action": "hint"}));
        formats.insert("http-stream".into(), json!({"action": "hint"}));
    } else if args.close {
        formats.insert("http-stream".into(), json!({"action": "close"}));
        formats.insert("ws-message".into(), json!({"action": "close"}));
    } else {
        if args.code > 999 {
            return Err("--code must be between 0 and 999".into());
        }
        let content = read_content(args.content.as_deref())?;
        let eol = if args.no_eol { "" } else { "\n" };
        let mut response = Map::new();
        response.insert("code".into(), json!(args.code));
        if !args.headers.is_empty() {
            let mut h = Map::new();
            for line in &args.headers {
                let (name, value) = line.split_once(':').ok_or_else(|| {
                    format!("header '{line}' must be in the form \"Name: value\"")
                })?;
                h.insert(name.trim().into(), json!(value.trim()));
            }
            response.insert("headers".into(), Value::Object(h));
        }
        if args.patch {
            let patch: Value =
                serde_json::from_str(&content).map_err(|e| format!("--patch content: {e}"))?;
            if !patch.is_array() {
                return Err("--patch content must be a JSON array".into());
            }
            response.insert("body-patch".into(), patch);
        } else {
            response.insert("body".into(), json!(format!("{content}{eol}")));
        }
        formats.insert("http-response".into(), Value::Object(response));
        formats.insert(
            "http-stream".into(),
            json!({"content": format!("{content}{eol}")}),
        );
        formats.insert("ws-message".into(), json!({"content": content}));
    }
    let mut item = Map::new();
    item.insert("channel".into(), json!(args.channel));
    if let Some(id) = &args.id {
        item.insert("id".into(), json!(id));
    }
    if let Some(prev) = &args.prev_id {
        item.insert("prev-id".into(), json!(prev));
    }
    let mut meta = Map::new();
    if let Some(sender) = &args.sender {
        meta.insert("sender".into(), json!(sender));
    }
    for m in &args.meta {
        let (k, v) = m
            .split_once('=')
            .ok_or_else(|| format!("meta '{m}' must be in the form \"name=value\""))?;
        meta.insert(k.trim().into(), json!(v.trim()));
    }
    if !meta.is_empty() {
        item.insert("meta".into(), Value::Object(meta));
    }
    if args.no_seq {
        item.insert("no-seq".into(), json!(true));
    }
    item.insert("formats".into(), Value::Object(formats));
    Ok(Value::Object(item))
}

fn read_content(content: Option<&str>) -> Result<String, String> {
    match content {
        None => Err("content is required (or use --hint or --close)".into()),
        Some("-") => {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                .map_err(|e| e.to_string())?;
            Ok(s)
        }
        Some(c) => match c.strip_prefix('@') {
            Some(path) => std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}")),
            None => Ok(c.to_string()),
        },
    }
}

/// A publish endpoint: `http[s]://host[:port][/path][?iss=...&key=...]`.
struct GripUrl {
    target: ConnectTarget,
    authority: String,
    path: String,
    iss: Option<String>,
    key: Option<String>,
}

impl GripUrl {
    fn parse(spec: &str) -> Result<GripUrl, String> {
        let (tls, rest) = if let Some(r) = spec.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = spec.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(format!("'{spec}' is not an http:// or https:// URL"));
        };
        let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, path) = match before_query.find('/') {
            Some(i) => (&before_query[..i], &before_query[i..]),
            None => (before_query, ""),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
                match p.parse::<u16>() {
                    Ok(p) => (h, p),
                    Err(_) => (authority, if tls { 443 } else { 80 }),
                }
            }
            _ => (authority, if tls { 443 } else { 80 }),
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if host.is_empty() {
            return Err(format!("'{spec}' has no host"));
        }
        let mut iss = None;
        let mut key = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "iss" => iss = Some(v.to_string()),
                "key" => key = Some(v.to_string()),
                _ => {}
            }
        }
        Ok(GripUrl {
            target: ConnectTarget {
                host: host.clone(),
                port,
                tls: tls.then(|| host.clone()),
                insecure: false,
            },
            authority: authority.to_string(),
            path: path.to_string(),
            iss,
            key,
        })
    }

    /// The `Authorization` value: flags first, then the URL's key.
    fn authorization(&self, args: &PublishArgs) -> Result<Option<String>, String> {
        use base64::Engine as _;
        if let Some(user) = &args.user {
            return Ok(Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(user)
            )));
        }
        if let Some(token) = &args.bearer {
            return Ok(Some(format!("Bearer {token}")));
        }
        let Some(key) = &self.key else {
            return Ok(None);
        };
        let Some(iss) = &self.iss else {
            return Ok(Some(format!("Bearer {key}")));
        };
        let secret = match key.strip_prefix("base64:") {
            Some(b64) => base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| format!("GRIP URL key: {e}"))?,
            None => key.as_bytes().to_vec(),
        };
        let signing = SigningKey::hmac(&secret).ok_or("GRIP URL key is empty")?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let token = GripSigner::new(iss.clone(), signing).token(now);
        Ok(Some(format!("Bearer {token}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        args: PublishArgs,
    }

    fn parse(argv: &[&str]) -> PublishArgs {
        Wrap::parse_from(std::iter::once("x").chain(argv.iter().copied())).args
    }

    #[test]
    fn builds_items_like_pushpin_publish() {
        let v = item(&parse(&[
            "ch",
            "hello",
            "--id",
            "2",
            "--prev-id",
            "1",
            "--sender",
            "me",
            "-H",
            "X-A: b",
            "-M",
            "k=v",
            "--code",
            "201",
        ]))
        .unwrap();
        assert_eq!(v["channel"], "ch");
        assert_eq!(v["id"], "2");
        assert_eq!(v["prev-id"], "1");
        assert_eq!(v["meta"]["sender"], "me");
        assert_eq!(v["meta"]["k"], "v");
        assert_eq!(v["formats"]["http-response"]["code"], 201);
        assert_eq!(v["formats"]["http-response"]["headers"]["X-A"], "b");
        assert_eq!(v["formats"]["http-response"]["body"], "hello\n");
        assert_eq!(v["formats"]["http-stream"]["content"], "hello\n");
        assert_eq!(v["formats"]["ws-message"]["content"], "hello");
        let v = item(&parse(&["ch", "--close"])).unwrap();
        assert_eq!(v["formats"]["http-stream"]["action"], "close");
        let v = item(&parse(&["ch", "--hint"])).unwrap();
        assert_eq!(v["formats"]["http-response"]["action"], "hint");
        let v = item(&parse(&["ch", "x", "--no-eol", "--no-seq"])).unwrap();
        assert_eq!(v["formats"]["http-stream"]["content"], "x");
        assert_eq!(v["no-seq"], true);
        assert!(item(&parse(&["ch"])).is_err());
        assert!(item(&parse(&["ch", "[1", "--patch"])).is_err());
    }

    #[test]
    fn grip_urls() {
        let g = GripUrl::parse("https://api.example.com/realm/x?iss=r&key=k").unwrap();
        assert_eq!(
            (g.target.host.as_str(), g.target.port),
            ("api.example.com", 443)
        );
        assert_eq!(g.path, "/realm/x");
        assert_eq!((g.iss.as_deref(), g.key.as_deref()), (Some("r"), Some("k")));
        let g = GripUrl::parse("http://localhost:5561").unwrap();
        assert_eq!((g.target.port, g.path.as_str()), (5561, ""));
        assert!(g.target.tls.is_none());
        assert!(GripUrl::parse("ftp://x").is_err());
    }
}
