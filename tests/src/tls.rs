//! rustls configurations for the tests: a server with a self-signed
//! certificate for the test names, and clients that trust it.

use std::sync::Arc;

use rustls::crypto::aws_lc_rs;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig, SupportedProtocolVersion};

/// A self-signed certificate for `names` and the server config serving it.
pub struct TestPki {
    pub cert: CertificateDer<'static>,
    pub server: Arc<ServerConfig>,
}

impl TestPki {
    pub fn new(names: &[&str]) -> Self {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let certified = rcgen::generate_simple_self_signed(names).expect("rcgen certificate");
        let cert = certified.cert.der().clone();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            certified.signing_key.serialize_der(),
        ));
        let server = ServerConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("server protocol versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .expect("server certificate");
        Self {
            cert,
            server: Arc::new(server),
        }
    }

    /// A client trusting this PKI. `post_quantum` keeps rustls' default
    /// X25519MLKEM768 key share (a ~1.3 KB ClientHello); without it the
    /// classic groups only.
    pub fn client(&self, versions: Versions, post_quantum: bool) -> Arc<ClientConfig> {
        let mut provider = aws_lc_rs::default_provider();
        if !post_quantum {
            provider
                .kx_groups
                .retain(|group| group.name() != rustls::NamedGroup::X25519MLKEM768);
        }
        assert_eq!(
            provider
                .kx_groups
                .iter()
                .any(|g| g.name() == rustls::NamedGroup::X25519MLKEM768),
            post_quantum,
            "rustls' aws-lc-rs provider must offer X25519MLKEM768 by default"
        );
        let mut roots = RootCertStore::empty();
        roots.add(self.cert.clone()).expect("test root");
        let config = ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(versions.list())
            .expect("client protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }
}

static TLS12_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS12];

#[derive(Clone, Copy, Debug)]
pub enum Versions {
    Tls12Only,
    /// TLS 1.3 and 1.2, as rustls offers by default.
    Tls13,
}

impl Versions {
    fn list(self) -> &'static [&'static SupportedProtocolVersion] {
        match self {
            Self::Tls12Only => TLS12_ONLY,
            Self::Tls13 => rustls::DEFAULT_VERSIONS,
        }
    }
}
