//! TLS termination: protocol versions, key exchange, ALPN, tickets and per-name minimum version.
//!
//! The ClientHello is read before a configuration is chosen (rustls' `Acceptor`): a hostname
//! whose minimum is TLS 1.3 gets a configuration that only speaks 1.3, so a 1.2-only client is
//! refused inside the handshake with a `protocol_version` alert instead of being accepted and
//! then dropped. This is also the point where a [`ClassifyConnection`] (the XDP flow map, or
//! the SNI in userspace) gives a connection its chain before the handshake finishes.
//!
//! Certificates and policies can be replaced at run time ([`TlsAcceptor::reload`], for SIGHUP):
//! handshakes already running keep the configuration they started with, later ones get the new.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Result;
use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::crypto::aws_lc_rs::{self, kx_group};
use rustls::server::{ServerSessionMemoryCache, StoresServerSessions};
use rustls::{ProtocolVersion, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::server::TlsStream;

use super::certs::{CertStore, MinTls, SniResolver};
use crate::chain::Chain;

/// Number of TLS 1.2 sessions remembered for ID-based resumption (tickets need no storage).
const SESSION_CACHE_SIZE: usize = 4096;

/// Server-side TLS; clones share the configuration (and see reloads).
#[derive(Clone, Debug)]
pub struct TlsAcceptor {
    current: Arc<ArcSwap<Configs>>,
    provider: Arc<CryptoProvider>,
    ticketer: Arc<dyn rustls::server::ProducesTickets>,
    sessions: Arc<dyn StoresServerSessions>,
    classifier: Option<Arc<dyn ClassifyConnection>>,
}

/// Gives a connection its chain once its ClientHello has been read, before the handshake
/// finishes (implemented by [`crate::xdp::XdpRuntime`]: the XDP flow map when the program is
/// attached, the SNI in userspace otherwise).
pub trait ClassifyConnection: std::fmt::Debug + Send + Sync + 'static {
    /// Called once per connection, on the accept path: at most one map lookup, never per request.
    fn classify(&self, peer: SocketAddr, local: SocketAddr, sni: Option<&str>) -> Classified;
}

/// What a connection's ClientHello decided.
#[derive(Debug)]
pub enum Classified {
    /// Requests on the connection start from this chain (of the snapshot live at accept).
    Chain(Arc<Chain>),
    /// No chain for the SNI: every request resolves its own host.
    Unrouted,
    /// The hostname is blocked: the handshake is refused.
    Blocked,
}

/// One configuration per minimum version, sharing certificates, tickets and session cache.
#[derive(Debug)]
struct Configs {
    certs: Arc<CertStore>,
    any_version: Arc<ServerConfig>,
    tls13_only: Arc<ServerConfig>,
}

/// What the handshake established, for logs and for the request pipeline.
#[derive(Clone, Debug)]
pub struct TlsInfo {
    pub sni: Option<String>,
    pub version: Option<ProtocolVersion>,
    pub alpn: Option<Vec<u8>>,
    /// The chain the connection was classified into, if a [`ClassifyConnection`] is set and
    /// the SNI has one.
    pub chain: Option<Arc<Chain>>,
}

impl TlsAcceptor {
    /// Builds the configurations around `certs`.
    pub fn new(certs: Arc<CertStore>) -> Result<Self> {
        let provider = Arc::new(provider());
        let ticketer = aws_lc_rs::Ticketer::new()?;
        let sessions: Arc<dyn StoresServerSessions> =
            ServerSessionMemoryCache::new(SESSION_CACHE_SIZE);
        let configs = build(&provider, &ticketer, &sessions, certs)?;
        Ok(Self {
            current: Arc::new(ArcSwap::from_pointee(configs)),
            provider,
            ticketer,
            sessions,
            classifier: None,
        })
    }

    /// Classifies every connection with `classifier` before its handshake finishes.
    pub fn with_classifier(mut self, classifier: Arc<dyn ClassifyConnection>) -> Self {
        self.classifier = Some(classifier);
        self
    }

    /// Switches every listener using this acceptor to `certs`. Tickets issued before stay
    /// valid, so clients resume across reloads. On error nothing changes.
    pub fn reload(&self, certs: Arc<CertStore>) -> Result<()> {
        let configs = build(&self.provider, &self.ticketer, &self.sessions, certs)?;
        self.current.store(Arc::new(configs));
        Ok(())
    }

    /// The certificates in use now; a reload switches them for every listener, QUIC included.
    pub fn certs(&self) -> Arc<CertStore> {
        self.current.load().certs.clone()
    }

    /// The crypto provider and ticket keys, shared with the QUIC listener so that a session
    /// resumes whichever transport the client picks.
    pub(crate) fn crypto(
        &self,
    ) -> (
        Arc<CryptoProvider>,
        Arc<dyn rustls::server::ProducesTickets>,
    ) {
        (self.provider.clone(), self.ticketer.clone())
    }

    /// Runs the handshake on `io`, the connection from `peer` to `local`, applying the
    /// hostname's minimum TLS version; a blocked hostname's handshake is refused, and so is
    /// one whose chain is over its budget of new connections (`crate::admission`).
    pub async fn accept<IO>(
        &self,
        io: IO,
        peer: SocketAddr,
        local: SocketAddr,
    ) -> std::io::Result<(TlsStream<IO>, TlsInfo)>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io).await?;
        let (chain, config) = {
            let hello = start.client_hello();
            let sni = hello.server_name();
            let chain = match self
                .classifier
                .as_ref()
                .map(|c| c.classify(peer, local, sni))
            {
                // Refused before anything is signed: a chain over its budget of new
                // connections costs the edge the hello's parse and one atomic, no handshake.
                Some(Classified::Chain(chain)) if !chain.admission.admit_connection() => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionRefused,
                        "the hostname's chain is over its budget of new connections",
                    ));
                }
                Some(Classified::Chain(chain)) => Some(chain),
                Some(Classified::Unrouted) | None => None,
                Some(Classified::Blocked) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::PermissionDenied,
                        "the hostname is blocked",
                    ));
                }
            };
            let configs = self.current.load();
            let min = sni
                .map(|sni| configs.certs.min_tls(sni))
                .unwrap_or_default();
            let config = match min {
                MinTls::Tls12 => configs.any_version.clone(),
                MinTls::Tls13 => configs.tls13_only.clone(),
            };
            (chain, config)
        };
        let stream = start.into_stream(config).await?;
        let conn = stream.get_ref().1;
        let info = TlsInfo {
            sni: conn.server_name().map(str::to_owned),
            version: conn.protocol_version(),
            alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
            chain,
        };
        Ok((stream, info))
    }
}

fn build(
    provider: &Arc<CryptoProvider>,
    ticketer: &Arc<dyn rustls::server::ProducesTickets>,
    sessions: &Arc<dyn StoresServerSessions>,
    certs: Arc<CertStore>,
) -> Result<Configs> {
    let config = |versions: &[&'static rustls::SupportedProtocolVersion]| -> Result<_> {
        let mut config = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(SniResolver(certs.clone())));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config.ticketer = ticketer.clone();
        config.session_storage = sessions.clone();
        Ok(Arc::new(config))
    };
    Ok(Configs {
        any_version: config(&[&rustls::version::TLS13, &rustls::version::TLS12])?,
        tls13_only: config(&[&rustls::version::TLS13])?,
        certs,
    })
}

/// aws-lc-rs with the hybrid post-quantum group offered first, whatever the crate's feature
/// defaults are, so that PQ-capable clients never pay a HelloRetryRequest.
fn provider() -> CryptoProvider {
    let mut provider = aws_lc_rs::default_provider();
    provider
        .kx_groups
        .retain(|group| group.name() != kx_group::X25519MLKEM768.name());
    provider.kx_groups.insert(0, kx_group::X25519MLKEM768);
    provider
}
