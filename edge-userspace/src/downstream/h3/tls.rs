//! TLS for QUIC: the same certificates (and reloads) and ticket keys as the TCP listener, TLS 1.3
//! only (QUIC has no other), ALPN `h3`.
//!
//! A hostname's minimum TLS version never refuses QUIC: 1.3 satisfies every minimum.

use std::sync::Arc;

use anyhow::Result;
use quinn::crypto::rustls::QuicServerConfig;
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;

use super::ALPN;
use crate::downstream::TlsAcceptor;

/// Sessions remembered for 0-RTT resumption (each usable once).
const ZERO_RTT_SESSIONS: usize = 4096;

/// Looks the certificate up in whatever the acceptor holds now, so SIGHUP reloads reach QUIC
/// handshakes without rebuilding the endpoint.
#[derive(Debug)]
struct LiveResolver(TlsAcceptor);

impl ResolvesServerCert for LiveResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.certs().find(hello.server_name()?).cloned()
    }
}

pub(super) fn config(acceptor: &TlsAcceptor, zero_rtt: bool) -> Result<QuicServerConfig> {
    let (provider, ticketer) = acceptor.crypto();
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(LiveResolver(acceptor.clone())));
    config.alpn_protocols = vec![ALPN.to_vec()];
    if zero_rtt {
        // rustls takes early data only on stateful resumption, and takes each session out of
        // the cache when it is used: a replayed ticket finds nothing and gets a full handshake.
        config.session_storage = ServerSessionMemoryCache::new(ZERO_RTT_SESSIONS);
        config.max_early_data_size = u32::MAX;
    } else {
        config.ticketer = ticketer;
        // QUIC allows exactly 0 (no early data) or u32::MAX here.
        config.max_early_data_size = 0;
    }
    Ok(QuicServerConfig::try_from(config)?)
}
