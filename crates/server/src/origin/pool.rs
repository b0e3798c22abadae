//! The origin client: HTTP/1.1 connections to origin targets, kept alive and reused.
//!
//! A connection is lent out for one exchange and comes back to the pool only when its
//! response body has been read to the end (so it is never handed to a second request while a
//! first one still streams). A reused connection the origin closed while idle fails at once;
//! such a request is sent again once on a fresh connection. Idle connections are dropped
//! after [`IDLE_TIMEOUT`], and at most [`MAX_IDLE_PER_TARGET`] are kept per target.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::net::TcpStream;

use super::tls::{OriginStream, TlsConfigs};
use super::{
    OriginBody, OriginError, OriginErrorKind, OriginRequest, OriginResponse, OriginTimeouts,
};

/// Idle connections older than this are not reused.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle connections kept per target.
pub(crate) const MAX_IDLE_PER_TARGET: usize = 64;
/// Largest response head accepted from an origin.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// Where and how to connect.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConnectTarget {
    /// Host name or IP address to connect to.
    pub host: String,
    /// Port.
    pub port: u16,
    /// TLS; with the name to verify and send as SNI.
    pub tls: Option<String>,
    /// Skip certificate verification.
    pub insecure: bool,
}

type Pool = Mutex<HashMap<ConnectTarget, Vec<(SendRequest<Full<Bytes>>, Instant)>>>;

/// Sends requests to origins; cheap to clone.
#[derive(Clone)]
pub struct OriginClient {
    pool: Arc<Pool>,
    tls: TlsConfigs,
    timeouts: OriginTimeouts,
}

/// A connection on loan for one exchange; `release` returns it to the pool.
#[derive(Debug)]
pub struct PooledConn {
    pool: std::sync::Weak<Pool>,
    target: ConnectTarget,
    sender: SendRequest<Full<Bytes>>,
}

impl PooledConn {
    /// Gives the connection back for reuse (call once its response body is fully read).
    pub fn release(self) {
        let Some(pool) = self.pool.upgrade() else {
            return;
        };
        if self.sender.is_closed() {
            return;
        }
        let mut pool = pool.lock();
        let idle = pool.entry(self.target).or_default();
        if idle.len() < MAX_IDLE_PER_TARGET {
            idle.push((self.sender, Instant::now()));
        }
    }
}

impl OriginClient {
    /// A client with these timeouts.
    pub fn new(timeouts: OriginTimeouts) -> Self {
        OriginClient {
            pool: Arc::new(Mutex::new(HashMap::new())),
            tls: TlsConfigs::new(),
            timeouts,
        }
    }

    /// Sends `req` to `target` and returns the response head; the body streams from the
    /// connection.
    pub async fn send(
        &self,
        target: &ConnectTarget,
        req: &OriginRequest,
    ) -> Result<OriginResponse, OriginError> {
        if let Some(sender) = self.take_idle(target) {
            match self.exchange(target, sender, req).await {
                Ok(resp) => return Ok(resp),
                // closed by the origin while idle: the request did not get through
                Err((e, true)) => tracing::debug!("pooled origin connection was stale: {e}"),
                Err((e, false)) => return Err(e),
            }
        }
        let sender = self.connect(target).await?;
        self.exchange(target, sender, req).await.map_err(|(e, _)| e)
    }

    fn take_idle(&self, target: &ConnectTarget) -> Option<SendRequest<Full<Bytes>>> {
        let mut pool = self.pool.lock();
        let idle = pool.get_mut(target)?;
        while let Some((sender, since)) = idle.pop() {
            // a connection just released may not be ready yet (its response is still being
            // wound up): `exchange` waits for that; only closed or stale ones are dropped
            if since.elapsed() < IDLE_TIMEOUT && !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    /// Opens a TCP (or TLS) connection to `target`, bounded by the connect timeout.
    pub async fn connect_stream(
        &self,
        target: &ConnectTarget,
    ) -> Result<OriginStream, OriginError> {
        let connect = async {
            let tcp = TcpStream::connect((target.host.as_str(), target.port))
                .await
                .map_err(|e| {
                    OriginError::new(
                        OriginErrorKind::Connect,
                        format!("connect to {}:{}: {e}", target.host, target.port),
                    )
                })?;
            let _ = tcp.set_nodelay(true);
            Ok(match &target.tls {
                None => OriginStream::Plain(tcp),
                Some(name) => OriginStream::Tls(Box::new(
                    self.tls
                        .connect(tcp, name, target.insecure)
                        .await
                        .map_err(|e| {
                            OriginError::new(
                                OriginErrorKind::Tls,
                                format!("TLS with {}:{}: {e}", target.host, target.port),
                            )
                        })?,
                )),
            })
        };
        match tokio::time::timeout(self.timeouts.connect, connect).await {
            Ok(r) => r,
            Err(_) => Err(OriginError::new(
                OriginErrorKind::Connect,
                format!(
                    "connect to {}:{} timed out after {:?}",
                    target.host, target.port, self.timeouts.connect
                ),
            )),
        }
    }

    async fn connect(
        &self,
        target: &ConnectTarget,
    ) -> Result<SendRequest<Full<Bytes>>, OriginError> {
        let stream = self.connect_stream(target).await?;
        let (sender, conn) = hyper::client::conn::http1::Builder::new()
            .title_case_headers(true)
            .max_buf_size(MAX_RESPONSE_HEAD.max(8192) * 2)
            .handshake::<_, Full<Bytes>>(TokioIo::new(stream))
            .await
            .map_err(|e| OriginError::new(OriginErrorKind::Connect, format!("handshake: {e}")))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("origin connection ended: {e}");
            }
        });
        Ok(sender)
    }

    /// One exchange on `sender`. On error, the flag says whether the request surely never
    /// reached the origin (a stale pooled connection), so sending it again is safe.
    async fn exchange(
        &self,
        target: &ConnectTarget,
        mut sender: SendRequest<Full<Bytes>>,
        req: &OriginRequest,
    ) -> Result<OriginResponse, (OriginError, bool)> {
        let mut request = Request::builder()
            .method(req.method.clone())
            .uri(req.path_and_query.as_str())
            .body(Full::new(req.body.clone()))
            .map_err(|e| {
                (
                    OriginError::new(OriginErrorKind::Broken, format!("request: {e}")),
                    false,
                )
            })?;
        *request.headers_mut() = req.headers.clone();
        if sender.ready().await.is_err() {
            return Err((
                OriginError::new(OriginErrorKind::Connect, "origin connection closed"),
                true,
            ));
        }
        let response = match tokio::time::timeout(
            self.timeouts.response,
            sender.send_request(request),
        )
        .await
        {
            Err(_) => {
                return Err((
                    OriginError::new(
                        OriginErrorKind::Timeout,
                        format!("no response within {:?}", self.timeouts.response),
                    ),
                    false,
                ))
            }
            Ok(Err(e)) => {
                let stale = e.is_canceled() || e.is_incomplete_message();
                return Err((
                    OriginError::new(OriginErrorKind::Broken, format!("origin: {e}")),
                    stale,
                ));
            }
            Ok(Ok(r)) => r,
        };
        let (parts, body) = response.into_parts();
        let reason = parts
            .extensions
            .get::<hyper::ext::ReasonPhrase>()
            .and_then(|r| std::str::from_utf8(r.as_bytes()).ok())
            .map(str::to_string);
        let status = if parts.status == StatusCode::SWITCHING_PROTOCOLS {
            // a plain HTTP exchange cannot be upgraded here
            StatusCode::BAD_GATEWAY
        } else {
            parts.status
        };
        Ok(OriginResponse {
            status,
            reason,
            headers: parts.headers,
            body: OriginBody::Stream {
                body,
                conn: Some(PooledConn {
                    pool: Arc::downgrade(&self.pool),
                    target: target.clone(),
                    sender,
                }),
            },
        })
    }
}
