//! A bare TLS handshake against the edge, for tests that must tell a hello
//! the kernel dropped (nothing comes back) from one the edge refused.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use rustls::crypto::aws_lc_rs;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// How long a dropped hello is waited for before it counts as dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
/// Connecting has its own, longer bound: on a loaded machine a SYN over a
/// veth may take a while, and that is not what these tests measure.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A rustls client trusting the edge's CA, for HTTP/1.1; `post_quantum` keeps
/// the X25519MLKEM768 key share, which makes the hello span two segments.
pub fn client(ca: &CertificateDer<'static>, post_quantum: bool) -> Arc<ClientConfig> {
    let mut provider = aws_lc_rs::default_provider();
    if !post_quantum {
        provider
            .kx_groups
            .retain(|group| group.name() != rustls::NamedGroup::X25519MLKEM768);
    }
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

#[derive(Debug, PartialEq, Eq)]
pub enum Handshake {
    Completed,
    /// The edge answered, with an alert or by closing.
    Failed(String),
    /// Nothing came back: the hello was dropped.
    TimedOut,
}

pub async fn handshake(config: Arc<ClientConfig>, server: SocketAddr, host: &str) -> Handshake {
    let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(server)).await {
        Ok(Ok(tcp)) => tcp,
        other => panic!("TCP connect to {server} for {host}: {other:?}"),
    };
    // Closed with a reset, not a FIN: an orphaned socket would retransmit a
    // dropped hello long after the test moved on (and the policy changed).
    socket2::SockRef::from(&tcp)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    let name = ServerName::try_from(host.to_owned()).unwrap();
    match tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        TlsConnector::from(config).connect(name, tcp),
    )
    .await
    {
        Ok(Ok(_)) => Handshake::Completed,
        Ok(Err(error)) => Handshake::Failed(error.to_string()),
        Err(_) => Handshake::TimedOut,
    }
}
