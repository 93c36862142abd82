//! TLS termination: certificate choice by SNI (zone before custom hostname), per-hostname
//! minimum version, post-quantum key exchange, ALPN, session resumption, a reusable local CA.

use std::sync::{Arc, Mutex};

use edge_tests::proxy::{Edge, EdgeSetup, plain_origin, spawn_echo};
use edge_userspace::downstream::{LocalCa, MinTls, Tier};
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, HandshakeKind, ProtocolVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

type Connected = TlsStream<tokio::net::TcpStream>;

async fn handshake(
    edge: &Edge,
    config: Arc<ClientConfig>,
    sni: &str,
) -> std::io::Result<Connected> {
    let tcp = tokio::net::TcpStream::connect(edge.tls_addr).await?;
    TlsConnector::from(config)
        .connect(sni.to_owned().try_into().unwrap(), tcp)
        .await
}

fn leaf(stream: &Connected) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

fn tls12_only(edge: &Edge) -> ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(edge.ca_der.clone().into()).unwrap();
    ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS12])
        .with_root_certificates(roots)
        .with_no_client_auth()
}

#[tokio::test]
async fn zone_certificate_beats_custom_hostname_certificate() {
    let echo = spawn_echo().await.unwrap();
    let chosen = Arc::new(Mutex::new(Vec::new()));
    let record = chosen.clone();
    let mut setup = EdgeSetup::new(vec![
        ("shop.example.com".into(), plain_origin(echo)),
        ("shop.othercustomer.net".into(), plain_origin(echo)),
    ]);
    setup.certs = Box::new(move |ca, store| {
        let zone = ca.mint(&["*.example.com".into()]).unwrap();
        let custom = ca
            .mint(&["shop.example.com".into(), "shop.othercustomer.net".into()])
            .unwrap();
        // Inserted custom first: precedence must not depend on insertion order.
        store.insert(
            Tier::CustomHostname,
            &["shop.example.com".into(), "shop.othercustomer.net".into()],
            custom.clone(),
        );
        store.insert(Tier::Zone, &["*.example.com".into()], zone.clone());
        record
            .lock()
            .unwrap()
            .extend([zone.cert[0].clone(), custom.cert[0].clone()]);
    });
    let edge = Edge::start(setup).await.unwrap();
    let (zone, custom) = {
        let chosen = chosen.lock().unwrap();
        (chosen[0].clone(), chosen[1].clone())
    };
    let config = Arc::new(edge.rustls_client(&[b"http/1.1"]));

    let stream = handshake(&edge, config.clone(), "shop.example.com")
        .await
        .unwrap();
    assert_eq!(
        leaf(&stream),
        zone,
        "the zone's wildcard wins over the custom hostname's exact cert"
    );
    let stream = handshake(&edge, config.clone(), "shop.othercustomer.net")
        .await
        .unwrap();
    assert_eq!(leaf(&stream), custom);
    let stream = handshake(&edge, config.clone(), "other.example.com")
        .await
        .unwrap();
    assert_eq!(leaf(&stream), zone);
    assert!(
        handshake(&edge, config, "unknown.example.net")
            .await
            .is_err()
    );
}

#[tokio::test]
async fn minimum_tls_version_is_enforced_per_hostname() {
    let echo = spawn_echo().await.unwrap();
    let mut setup = EdgeSetup::new(vec![
        ("modern.example.com".into(), plain_origin(echo)),
        ("legacy.example.com".into(), plain_origin(echo)),
    ]);
    setup.certs = Box::new(|_, store| store.set_min_tls("modern.example.com", MinTls::Tls13));
    let edge = Edge::start(setup).await.unwrap();

    let old = Arc::new(tls12_only(&edge));
    let refused = handshake(&edge, old.clone(), "modern.example.com")
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("ProtocolVersion"),
        "refused inside the handshake with protocol_version: {refused}"
    );
    let legacy = handshake(&edge, old, "legacy.example.com").await.unwrap();
    assert_eq!(
        legacy.get_ref().1.protocol_version(),
        Some(ProtocolVersion::TLSv1_2)
    );

    let new = Arc::new(edge.rustls_client(&[]));
    let modern = handshake(&edge, new, "modern.example.com").await.unwrap();
    assert_eq!(
        modern.get_ref().1.protocol_version(),
        Some(ProtocolVersion::TLSv1_3)
    );
}

#[tokio::test]
async fn post_quantum_key_exchange_and_alpn_are_negotiated() {
    let echo = spawn_echo().await.unwrap();
    let edge = Edge::start(EdgeSetup::new(vec![(
        "pq.example.com".into(),
        plain_origin(echo),
    )]))
    .await
    .unwrap();
    for (alpn, expected) in [(&b"h2"[..], "h2"), (b"http/1.1", "http/1.1")] {
        let config = Arc::new(edge.rustls_client(&[alpn]));
        let stream = handshake(&edge, config, "pq.example.com").await.unwrap();
        let conn = stream.get_ref().1;
        assert_eq!(conn.alpn_protocol(), Some(expected.as_bytes()));
        let group = conn.negotiated_key_exchange_group().unwrap().name();
        assert_eq!(group, rustls::NamedGroup::X25519MLKEM768);
    }
    // TLS 1.2 cannot carry the hybrid group; the handshake still succeeds with a classic one.
    let stream = handshake(&edge, Arc::new(tls12_only(&edge)), "pq.example.com")
        .await
        .unwrap();
    assert_eq!(
        stream
            .get_ref()
            .1
            .negotiated_key_exchange_group()
            .unwrap()
            .name(),
        rustls::NamedGroup::X25519
    );
}

/// One HTTP/1.1 request on `stream`, so that TLS 1.3 tickets sent after the handshake arrive.
async fn request(mut stream: Connected) {
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: resume.example.com\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    assert!(
        response.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&response)
    );
}

#[tokio::test]
async fn sessions_resume_with_tls13_and_tls12() {
    let echo = spawn_echo().await.unwrap();
    let edge = Edge::start(EdgeSetup::new(vec![(
        "resume.example.com".into(),
        plain_origin(echo),
    )]))
    .await
    .unwrap();
    for config in [
        Arc::new(edge.rustls_client(&[b"http/1.1"])),
        Arc::new(tls12_only(&edge)),
    ] {
        let first = handshake(&edge, config.clone(), "resume.example.com")
            .await
            .unwrap();
        assert_eq!(
            first.get_ref().1.handshake_kind(),
            Some(HandshakeKind::Full)
        );
        request(first).await;
        let second = handshake(&edge, config, "resume.example.com")
            .await
            .unwrap();
        assert_eq!(
            second.get_ref().1.handshake_kind(),
            Some(HandshakeKind::Resumed)
        );
        request(second).await;
    }
}

#[test]
fn local_ca_is_reused_and_never_half_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let first = LocalCa::load_or_create(dir.path()).unwrap();
    let again = LocalCa::load_or_create(dir.path()).unwrap();
    assert_eq!(first.cert_der(), again.cert_der());
    assert_eq!(
        std::fs::read(first.cert_path()).unwrap(),
        std::fs::read(again.cert_path()).unwrap()
    );
    // Certificates minted after a restart still chain to the CA clients already trust.
    let leaf = again.mint(&["a.example.com".into()]).unwrap();
    assert_eq!(&leaf.cert[1], first.cert_der());

    std::fs::remove_file(dir.path().join("ca-key.pem")).unwrap();
    let error = LocalCa::load_or_create(dir.path()).err().unwrap();
    assert!(error.to_string().contains("only one of"), "{error}");
    assert!(
        dir.path().join("ca.pem").exists(),
        "the certificate is left alone"
    );
}

#[tokio::test]
async fn reload_switches_certificates_and_policy_without_dropping_connections() {
    use edge_userspace::downstream::CertStore;
    use http_body_util::Empty;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let echo = spawn_echo().await.unwrap();
    let edge = Edge::start(EdgeSetup::new(vec![(
        "reload.example.com".into(),
        plain_origin(echo),
    )]))
    .await
    .unwrap();
    let stream = handshake(
        &edge,
        Arc::new(edge.rustls_client(&[b"h2"])),
        "reload.example.com",
    )
    .await
    .unwrap();
    let before = leaf(&stream);
    let (mut open, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let get = || {
        http::Request::get("https://reload.example.com/")
            .body(Empty::<bytes::Bytes>::new())
            .unwrap()
    };
    assert_eq!(open.send_request(get()).await.unwrap().status(), 200);

    let ca = LocalCa::load_or_create(edge.state_dir.path()).unwrap();
    let mut store = CertStore::default();
    store.ensure(Tier::Zone, "reload.example.com", &ca).unwrap();
    store.set_min_tls("reload.example.com", MinTls::Tls13);
    edge.tls.reload(Arc::new(store)).unwrap();

    // The connection opened before the reload keeps working.
    assert_eq!(open.send_request(get()).await.unwrap().status(), 200);
    // New handshakes see the new certificate and the new minimum version.
    let after = handshake(
        &edge,
        Arc::new(edge.rustls_client(&[])),
        "reload.example.com",
    )
    .await
    .unwrap();
    assert_ne!(leaf(&after), before);
    assert!(
        handshake(&edge, Arc::new(tls12_only(&edge)), "reload.example.com")
            .await
            .is_err()
    );
}
