//! Origins written in the test: an HTTP/1.1 server on port 0 that records every request and
//! answers with whatever the test's handler returns, written byte for byte as asked (any
//! reason phrase, repeated headers, sized, chunked or close-delimited bodies, delays).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

/// A request as the origin received it.
#[derive(Debug, Clone)]
pub struct OriginRequest {
    /// Method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl OriginRequest {
    /// The first value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// How the body of a [`Reply`] is framed on the wire.
#[derive(Debug, Clone)]
pub enum Framing {
    /// `Content-Length`.
    Sized,
    /// `Transfer-Encoding: chunked`, one chunk per part.
    Chunked(Vec<Vec<u8>>),
    /// No length: the body ends when the origin closes the connection.
    Close,
    /// Announces a longer body than it sends, then stalls (a hung origin).
    Stalled,
}

/// What the origin answers.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Reason phrase.
    pub reason: String,
    /// Headers in order.
    pub headers: Vec<(String, String)>,
    /// Body (for `Sized` and `Close`).
    pub body: Vec<u8>,
    /// Framing.
    pub framing: Framing,
    /// Wait this long before answering.
    pub delay: Duration,
}

impl Reply {
    /// A reply with `status` and an empty sized body.
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            reason: match status {
                200 => "OK",
                404 => "Not Found",
                500 => "Internal Server Error",
                _ => "Status",
            }
            .into(),
            headers: Vec::new(),
            body: Vec::new(),
            framing: Framing::Sized,
            delay: Duration::ZERO,
        }
    }

    /// 200 OK.
    pub fn ok() -> Reply {
        Reply::status(200)
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Reply {
        self.body = body.into();
        self
    }

    /// Sets the reason phrase.
    pub fn reason(mut self, reason: &str) -> Reply {
        self.reason = reason.into();
        self
    }

    /// Sends the body chunked, in these parts.
    pub fn chunked(mut self, parts: Vec<Vec<u8>>) -> Reply {
        self.framing = Framing::Chunked(parts);
        self
    }

    /// Sends the body without a length and closes.
    pub fn close_delimited(mut self) -> Reply {
        self.framing = Framing::Close;
        self
    }

    /// Sends part of the body and then nothing more, keeping the connection open.
    pub fn stalled(mut self) -> Reply {
        self.framing = Framing::Stalled;
        self
    }

    /// Waits before answering.
    pub fn delay(mut self, d: Duration) -> Reply {
        self.delay = d;
        self
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!("HTTP/1.1 {} {}\r\n", self.status, self.reason).into_bytes();
        for (k, v) in &self.headers {
            out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
        match &self.framing {
            Framing::Sized => {
                out.extend_from_slice(
                    format!("Content-Length: {}\r\n\r\n", self.body.len()).as_bytes(),
                );
                out.extend_from_slice(&self.body);
            }
            Framing::Chunked(parts) => {
                out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                for p in parts {
                    out.extend_from_slice(format!("{:x}\r\n", p.len()).as_bytes());
                    out.extend_from_slice(p);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n\r\n");
            }
            Framing::Close => {
                out.extend_from_slice(b"Connection: close\r\n\r\n");
                out.extend_from_slice(&self.body);
            }
            Framing::Stalled => {
                let announced = self.body.len() + 1000;
                out.extend_from_slice(format!("Content-Length: {announced}\r\n\r\n").as_bytes());
                out.extend_from_slice(&self.body);
            }
        }
        out
    }
}

type Handler = dyn Fn(&OriginRequest) -> Reply + Send + Sync;

/// A running test origin.
pub struct Origin {
    /// Where it listens.
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<OriginRequest>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Origin {
    /// Starts an origin answering with `handler` (must run inside a tokio runtime).
    pub async fn start(
        handler: impl Fn(&OriginRequest) -> Reply + Send + Sync + 'static,
    ) -> Origin {
        Self::start_with(handler, None).await
    }

    /// Starts an HTTPS origin with a self-signed certificate for `localhost` and 127.0.0.1.
    pub async fn start_tls(
        handler: impl Fn(&OriginRequest) -> Reply + Send + Sync + 'static,
    ) -> Origin {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("self-signed certificate");
        let key = rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der())
            .expect("private key");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .expect("TLS server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        Self::start_with(handler, Some(acceptor)).await
    }

    async fn start_with(
        handler: impl Fn(&OriginRequest) -> Reply + Send + Sync + 'static,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
        let addr = listener.local_addr().expect("origin addr");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let recorded = requests.clone();
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let (handler, recorded) = (handler.clone(), recorded.clone());
                match &tls {
                    None => {
                        tokio::spawn(serve(sock, handler, recorded));
                    }
                    Some(acceptor) => {
                        let acceptor = acceptor.clone();
                        tokio::spawn(async move {
                            if let Ok(stream) = acceptor.accept(sock).await {
                                serve(stream, handler, recorded).await;
                            }
                        });
                    }
                }
            }
        });
        Origin {
            addr,
            requests,
            task,
        }
    }

    /// `host:port` for a routes line.
    pub fn target(&self) -> String {
        self.addr.to_string()
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<OriginRequest> {
        self.requests.lock().expect("requests lock").clone()
    }

    /// The last request received (panics if none).
    pub fn last_request(&self) -> OriginRequest {
        self.requests()
            .pop()
            .expect("the origin received a request")
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut sock: S,
    handler: Arc<Handler>,
    requests: Arc<Mutex<Vec<OriginRequest>>>,
) {
    let mut buf = Vec::new();
    loop {
        let Some(req) = read_request(&mut sock, &mut buf).await else {
            return;
        };
        requests.lock().expect("requests lock").push(req.clone());
        let reply = handler(&req);
        if !reply.delay.is_zero() {
            tokio::time::sleep(reply.delay).await;
        }
        if sock.write_all(&reply.to_bytes()).await.is_err() {
            return;
        }
        match reply.framing {
            Framing::Close => return,
            Framing::Stalled => {
                tokio::time::sleep(Duration::from_secs(60)).await;
                return;
            }
            _ => {}
        }
    }
}

async fn read_request<S: AsyncRead + Unpin>(
    sock: &mut S,
    buf: &mut Vec<u8>,
) -> Option<OriginRequest> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        if let Ok(httparse::Status::Complete(n)) = req.parse(buf) {
            let method = req.method?.to_string();
            let path = req.path?.to_string();
            let headers: Vec<(String, String)> = req
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_string(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            let len: usize = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse().ok())
                .unwrap_or(0);
            buf.drain(..n);
            while buf.len() < len {
                let mut chunk = [0u8; 8192];
                let got = sock.read(&mut chunk).await.ok()?;
                if got == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..got]);
            }
            let body: Vec<u8> = buf.drain(..len).collect();
            return Some(OriginRequest {
                method,
                path,
                headers,
                body,
            });
        }
        let mut chunk = [0u8; 8192];
        let got = sock.read(&mut chunk).await.ok()?;
        if got == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..got]);
    }
}
