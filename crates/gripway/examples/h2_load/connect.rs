//! Connections of the HTTP/2 load tool: TCP, then TLS with ALPN `h2` (a CA file, or any
//! certificate with `--insecure`) or h2c with prior knowledge, the HTTP/2 handshake, and the
//! connection's streams.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use bytes::Bytes;
use h2::client::SendRequest;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;

use crate::stream::{stream, Ctx};
use crate::{Args, OPEN_TIMEOUT};

/// Flow-control windows the client offers: per stream (the protocol's default) and per
/// connection (large, so streams of one connection do not wait on each other's reads).
const STREAM_WINDOW: u32 = 65_535;
const CONN_WINDOW: u32 = 1 << 20;

/// Where and how to connect.
pub(crate) struct Target {
    pub(crate) addr: SocketAddr,
    pub(crate) tls: Option<(TlsConnector, ServerName<'static>)>,
    pub(crate) streams: usize,
}

pub(crate) fn target(a: &Args) -> Result<Target, String> {
    let uri: http::Uri = a.url.parse().map_err(|e| format!("--url: {e}"))?;
    let host = uri.host().ok_or("--url needs a host")?.to_string();
    let (tls, port) = match uri.scheme_str() {
        Some("https") => (true, uri.port_u16().unwrap_or(443)),
        Some("http") => (false, uri.port_u16().unwrap_or(80)),
        _ => return Err("--url must be https:// or http://".into()),
    };
    // resolved once, IPv4 first (`localhost` is often ::1 first, and servers listen on 127.0.0.1)
    let host_port = format!("{}:{port}", host.trim_matches(|c| c == '[' || c == ']'));
    let mut addrs: Vec<SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(&host_port)
        .map_err(|e| format!("resolving {host_port}: {e}"))?
        .collect();
    addrs.sort_by_key(|a| !a.is_ipv4());
    let addr = *addrs.first().ok_or(format!("{host_port} has no address"))?;
    let tls = if tls {
        let name = ServerName::try_from(host).map_err(|e| format!("server name: {e}"))?;
        Some((TlsConnector::from(Arc::new(tls_config(a)?)), name))
    } else {
        None
    };
    Ok(Target {
        addr,
        tls,
        streams: a.streams_per_conn,
    })
}

pub(crate) fn tls_config(a: &Args) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let mut config = match (&a.ca, a.insecure) {
        (_, true) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
            .with_no_client_auth(),
        (Some(file), false) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(file).map_err(|e| format!("{file}: {e}"))? {
                roots
                    .add(cert.map_err(|e| format!("{file}: {e}"))?)
                    .map_err(|e| format!("{file}: {e}"))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        (None, false) => return Err("https:// needs --ca FILE or --insecure".into()),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// `--insecure`: any server certificate is accepted (signatures are still checked).
#[derive(Debug)]
pub(crate) struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        msg: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(msg, cert, dss, algs)
    }

    fn verify_tls13_signature(
        &self,
        msg: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(msg, cert, dss, algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Opens connection `n` and its streams; returns once each stream is ready or failed.
pub(crate) async fn connection(ctx: Arc<Ctx>, t: Arc<Target>, n: usize) {
    let opened = timeout(OPEN_TIMEOUT, async {
        let tcp = TcpStream::connect(t.addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        match &t.tls {
            None => Ok(h2_start(&ctx, tcp).await?),
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| format!("TLS: {e}"))?;
                if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
                    return Err("the server did not choose h2 by ALPN".to_string());
                }
                Ok(h2_start(&ctx, tls).await?)
            }
        }
    })
    .await;
    let client = match opened {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return fail_all(&ctx, &t, e),
        Err(_) => return fail_all(&ctx, &t, "connection open timed out".into()),
    };
    let mut waits = Vec::with_capacity(t.streams);
    for s in 0..t.streams {
        let chan = ((n * t.streams + s) as u64 % ctx.channels) as u32;
        let (tx, rx) = oneshot::channel();
        tokio::spawn(stream(ctx.clone(), client.clone(), chan, tx));
        waits.push(rx);
    }
    drop(client);
    for w in waits {
        let _ = w.await;
    }
}

pub(crate) fn fail_all(ctx: &Ctx, t: &Target, e: String) {
    ctx.error(e);
    ctx.failed.fetch_add(t.streams as u64, Relaxed);
}

/// The HTTP/2 handshake; the connection is driven by a task of its own, which keeps a
/// handle so the connection stays open while its streams do.
pub(crate) async fn h2_start<T>(ctx: &Arc<Ctx>, io: T) -> Result<SendRequest<Bytes>, String>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (client, conn) = h2::client::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONN_WINDOW)
        .handshake::<_, Bytes>(io)
        .await
        .map_err(|e| format!("h2 handshake: {e}"))?;
    let keep = client.clone();
    let ctx = ctx.clone();
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            ctx.error(format!("connection: {e}"));
        }
        drop(keep);
    });
    Ok(client)
}
