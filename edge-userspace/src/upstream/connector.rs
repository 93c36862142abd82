//! Opens origin connections: the origin's name resolved (this edge's own records first, then
//! the system resolver), TCP to the first address that answers, then TLS with the configured
//! SNI and verification.
//!
//! The ALPN result tells the pool whether the connection is HTTP/2 (multiplexed, shared by all
//! requests to the origin) or HTTP/1.1 (one request at a time).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::LocalNames;

/// TLS parameters of the connections one pool opens.
#[derive(Clone)]
pub(super) struct TlsParams {
    pub connector: TlsConnector,
    pub sni: ServerName<'static>,
}

/// Opens connections to one origin.
pub(super) struct Dialer {
    pub host: String,
    pub port: u16,
    pub tls: Option<TlsParams>,
    /// Bounds resolving, each TCP connect and the TLS handshake.
    pub connect_timeout: Duration,
    pub names: Option<Arc<dyn LocalNames>>,
}

impl Dialer {
    pub async fn dial(&self) -> io::Result<OriginIo> {
        let tcp = self.tcp().await?;
        let Some(tls) = &self.tls else {
            return Ok(OriginIo::Plain(TokioIo::new(tcp)));
        };
        let handshake = tls.connector.connect(tls.sni.clone(), tcp);
        let stream = tokio::time::timeout(self.connect_timeout, handshake)
            .await
            .map_err(|_| {
                io::Error::new(io::ErrorKind::TimedOut, "origin TLS handshake timed out")
            })??;
        Ok(OriginIo::Tls(Box::new(TokioIo::new(stream))))
    }

    /// Tries the origin's addresses in order; the last error is the one reported.
    async fn tcp(&self) -> io::Result<TcpStream> {
        let mut last = io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} has no address", self.host),
        );
        for addr in self.addresses().await? {
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(tcp)) => {
                    tcp.set_nodelay(true)?;
                    return Ok(tcp);
                }
                Ok(Err(error)) => last = error,
                Err(_) => {
                    last = io::Error::new(io::ErrorKind::TimedOut, format!("connecting to {addr}"))
                }
            }
        }
        Err(last)
    }

    /// An IP address as is; a name from this edge's own records when it has them (an origin
    /// on this edge must not depend on public DNS agreeing), else from the system resolver.
    async fn addresses(&self) -> io::Result<Vec<SocketAddr>> {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, self.port)]);
        }
        if let Some(ips) = self.names.as_ref().and_then(|names| names.lookup(host))
            && !ips.is_empty()
        {
            return Ok(ips
                .into_iter()
                .map(|ip| SocketAddr::new(ip, self.port))
                .collect());
        }
        let lookup = tokio::net::lookup_host((host, self.port));
        match tokio::time::timeout(self.connect_timeout, lookup).await {
            Ok(addrs) => Ok(addrs?.collect()),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("resolving {host}"),
            )),
        }
    }
}

/// An origin connection, plain or TLS.
pub(super) enum OriginIo {
    Plain(TokioIo<TcpStream>),
    Tls(Box<TokioIo<TlsStream<TcpStream>>>),
}

impl OriginIo {
    /// `true` when ALPN chose HTTP/2; plain connections speak HTTP/1.1.
    pub fn is_h2(&self) -> bool {
        match self {
            OriginIo::Plain(_) => false,
            OriginIo::Tls(stream) => stream.inner().get_ref().1.alpn_protocol() == Some(b"h2"),
        }
    }
}

impl Read for OriginIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            OriginIo::Plain(io) => Pin::new(io).poll_read(cx, buf),
            OriginIo::Tls(io) => Pin::new(io.as_mut()).poll_read(cx, buf),
        }
    }
}

impl Write for OriginIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            OriginIo::Plain(io) => Pin::new(io).poll_write(cx, buf),
            OriginIo::Tls(io) => Pin::new(io.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            OriginIo::Plain(io) => Pin::new(io).poll_flush(cx),
            OriginIo::Tls(io) => Pin::new(io.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            OriginIo::Plain(io) => Pin::new(io).poll_shutdown(cx),
            OriginIo::Tls(io) => Pin::new(io.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            OriginIo::Plain(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            OriginIo::Tls(io) => Pin::new(io.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            OriginIo::Plain(io) => io.is_write_vectored(),
            OriginIo::Tls(io) => io.is_write_vectored(),
        }
    }
}

/// Accepts any origin certificate while still checking that the handshake is signed by its key:
/// Cloudflare's `full` SSL mode (self-signed and expired origin certificates are allowed).
#[derive(Debug)]
pub(super) struct AnyOriginCert(pub Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyOriginCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
