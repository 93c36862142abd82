//! Opens origin connections: TCP, then TLS with the configured SNI and verification.
//!
//! The ALPN result tells the pool whether the connection is HTTP/2 (multiplexed, shared by all
//! requests to the origin) or HTTP/1.1 (one request at a time).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tower_service::Service;

use crate::downstream::BoxError;

/// TLS parameters of the connections one pool opens.
#[derive(Clone)]
pub(super) struct TlsParams {
    pub connector: TlsConnector,
    pub sni: ServerName<'static>,
    pub handshake_timeout: Duration,
}

/// Connector for one origin: always dials `address`, whatever authority the request URI
/// carries (that is the virtual host the origin should see, not where it lives); plain when
/// `tls` is `None`.
#[derive(Clone)]
pub(super) struct OriginConnector {
    pub tcp: HttpConnector,
    pub address: Uri,
    pub tls: Option<TlsParams>,
}

impl Service<Uri> for OriginConnector {
    type Response = OriginIo;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<OriginIo, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.tcp.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, _virtual_host: Uri) -> Self::Future {
        let tcp = self.tcp.call(self.address.clone());
        let tls = self.tls.clone();
        Box::pin(async move {
            let tcp = tcp.await?.into_inner();
            let Some(tls) = tls else {
                return Ok(OriginIo::Plain(TokioIo::new(tcp)));
            };
            let handshake = tls.connector.connect(tls.sni, tcp);
            let stream = tokio::time::timeout(tls.handshake_timeout, handshake)
                .await
                .map_err(|_| {
                    io::Error::new(io::ErrorKind::TimedOut, "origin TLS handshake timed out")
                })??;
            Ok(OriginIo::Tls(Box::new(TokioIo::new(stream))))
        })
    }
}

/// An origin connection, plain or TLS.
pub(super) enum OriginIo {
    Plain(TokioIo<TcpStream>),
    Tls(Box<TokioIo<TlsStream<TcpStream>>>),
}

impl Connection for OriginIo {
    fn connected(&self) -> Connected {
        match self {
            OriginIo::Plain(_) => Connected::new(),
            OriginIo::Tls(stream) => {
                let connected = Connected::new();
                if stream.inner().get_ref().1.alpn_protocol() == Some(b"h2") {
                    connected.negotiated_h2()
                } else {
                    connected
                }
            }
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
