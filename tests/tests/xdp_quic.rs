//! The XDP program's QUIC accounting under `BPF_PROG_TEST_RUN`: datagrams count to the chain
//! their destination connection ID was recorded for, and the edge's QUIC server records the
//! ID a real connection got once its handshake named the host.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use edge_common::maps::ChainCounters;
use edge_common::quic::{CID_LEN, QuicCounters, SERVER_ID_LEN};
use edge_tests::frames;
use edge_tests::h3::H3Client;
use edge_tests::proxy::{TableRouter, plain_origin, spawn_echo};
use edge_tests::xdp::{XDP_PASS, classifier, run};
use edge_userspace::downstream::h3::cid::QuicLbGenerator;
use edge_userspace::downstream::h3::{Listener, Settings};
use edge_userspace::downstream::{CertStore, Limits, LocalCa, Tier, TlsAcceptor};
use edge_userspace::pipeline::{PipelineConfig, Proxy, Route};
use edge_userspace::upstream::{self, ClientConfig};
use edge_userspace::xdp::quic::{QuicChains, QuicMaps};
use edge_userspace::xdp::{Classifier, RouteAction, RouteTarget};
use http::HeaderValue;
use quinn::ConnectionIdGenerator;

const HOST: &str = "mystore.example.com";
const CHAIN: u32 = 7;

/// A classifier with a TCP route to chain `CHAIN`, as the edge has for every
/// chain a QUIC handshake can name (the route also lists the chain's counters).
fn counted_classifier() -> (Classifier, QuicMaps) {
    let mut c = classifier();
    c.maps
        .routes
        .insert(
            HOST,
            RouteTarget {
                chain_id: CHAIN,
                queue: 0,
                action: RouteAction::Pass,
            },
        )
        .unwrap();
    let quic = QuicMaps::take(&mut c).expect("the QUIC maps are in the object");
    (c, quic)
}

fn short_header(cid: &[u8]) -> Vec<u8> {
    let mut payload = vec![0x41];
    payload.extend(cid);
    payload.extend([0x5a; 60]);
    frames::udp("198.18.0.2:40100", "198.18.0.1:443", &payload)
}

fn long_header(dcid: &[u8]) -> Vec<u8> {
    let mut payload = vec![0xc3, 0, 0, 0, 1, dcid.len() as u8];
    payload.extend(dcid);
    payload.extend([8, 1, 2, 3, 4, 5, 6, 7, 8]);
    payload.extend([0; 1100]);
    frames::udp("198.18.0.2:40101", "198.18.0.1:443", &payload)
}

fn chain(c: &Classifier) -> ChainCounters {
    c.maps
        .counters
        .chain(CHAIN)
        .unwrap()
        .expect("CHAIN is below the counters' size")
}

#[test]
fn datagrams_count_to_the_chain_of_their_connection_id() {
    let (c, mut quic) = counted_classifier();
    let mut generator = QuicLbGenerator::new(0, 0x0102);
    let cid = generator.generate_cid();
    quic.insert(&cid, CHAIN).unwrap();
    assert_eq!(quic.get(&cid).unwrap(), Some(CHAIN));

    let short = short_header(&cid);
    assert_eq!(run(&c, &short), XDP_PASS);
    let long = long_header(&cid);
    assert_eq!(run(&c, &long), XDP_PASS);
    assert_eq!(
        chain(&c),
        ChainCounters {
            packets: 2,
            bytes: (short.len() + long.len()) as u64,
            drops: 0
        }
    );

    // Our layout but never recorded; the client's own 8-byte Initial DCID; the reserved
    // config rotation bits; a datagram to another port.
    let unknown = generator.generate_cid();
    assert_eq!(run(&c, &short_header(&unknown)), XDP_PASS);
    assert_eq!(run(&c, &long_header(&[9; 8])), XDP_PASS);
    let mut reserved = cid.to_vec();
    reserved[0] |= 0xc0;
    assert_eq!(run(&c, &short_header(&reserved)), XDP_PASS);
    let mut elsewhere = short_header(&cid);
    elsewhere[14 + 20 + 2..14 + 20 + 4].copy_from_slice(&8443u16.to_be_bytes());
    assert_eq!(run(&c, &elsewhere), XDP_PASS);
    assert_eq!(
        chain(&c).packets,
        2,
        "only recorded CIDs count to the chain"
    );
    assert_eq!(
        quic.counters().unwrap(),
        QuicCounters {
            long_header: 2,
            short_header: 3,
            routed: 2,
            unknown_cid: 1,
            foreign_cid: 2,
        }
    );

    // Forgotten when the connection closes.
    assert!(quic.remove(&cid).unwrap());
    assert!(!quic.remove(&cid).unwrap());
    assert_eq!(run(&c, &short), XDP_PASS);
    assert_eq!(chain(&c).packets, 2);
    assert_eq!(quic.counters().unwrap().unknown_cid, 2);
    assert!(
        quic.insert(&cid[..8], CHAIN).is_err(),
        "wrong length refused"
    );
}

/// QUIC connection IDs are recorded without the route map's checks: a chain id
/// beyond the counters (or `u32::MAX`, which wraps onto the overflow slot) is
/// counted in the overflow slot, never in another chain's.
#[test]
fn datagrams_of_a_chain_beyond_the_counters_count_as_overflow() {
    let (c, mut quic) = counted_classifier();
    let beyond = c.maps.routes.max_chains();
    let mut generator = QuicLbGenerator::new(0, 0x0102);
    let first = generator.generate_cid();
    let second = generator.generate_cid();
    quic.insert(&first, beyond).unwrap();
    quic.insert(&second, u32::MAX).unwrap();
    let (a, b) = (short_header(&first), short_header(&second));
    assert_eq!(run(&c, &a), XDP_PASS);
    assert_eq!(run(&c, &b), XDP_PASS);
    assert_eq!(
        c.maps.counters.overflow().unwrap(),
        ChainCounters {
            packets: 2,
            bytes: (a.len() + b.len()) as u64,
            drops: 0
        }
    );
    assert_eq!(c.maps.counters.chain(beyond).unwrap(), None);
    assert_eq!(chain(&c), ChainCounters::default());
    let listed = c.maps.counters.chains().unwrap();
    assert_eq!(listed.len() as u32, CHAIN + 1, "ids up to the routed one");
    assert!(
        listed
            .iter()
            .all(|(_, counters)| *counters == ChainCounters::default())
    );
}

#[tokio::test]
async fn the_quic_server_records_a_connection_id_per_named_handshake() {
    let (c, quic) = counted_classifier();
    let chains = Arc::new(QuicChains::new(quic, |sni: &str| {
        (sni == HOST).then_some(CHAIN)
    }));

    let echo = spawn_echo().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = LocalCa::load_or_create(dir.path()).unwrap();
    let mut store = CertStore::default();
    store.ensure(Tier::CustomHostname, HOST, &ca).unwrap();
    let tls = TlsAcceptor::new(Arc::new(store)).unwrap();
    let route = Route {
        origin: plain_origin(echo),
        host_header: HeaderValue::from_static(HOST),
        max_request_body: None,
        admitted: None,
    };
    let proxy = Proxy::new(
        TableRouter(HashMap::from([(HOST.to_owned(), route)])),
        upstream::Client::new(ClientConfig::default()).unwrap(),
        PipelineConfig::default(),
    );
    let settings = Settings {
        server_id: 0x0a0b,
        ..Settings::default()
    };
    let listener = Listener::bind(&settings, "127.0.0.1:0".parse().unwrap())
        .unwrap()
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let ids: Arc<dyn edge_userspace::downstream::h3::ConnectionIds> = chains.clone();
    let server = tokio::spawn(async move {
        let limits = Limits {
            drain_timeout: Duration::from_secs(5),
            ..Limits::default()
        };
        listener
            .serve(proxy, &tls, &limits, Some(ids), async {
                let _ = stopped.await;
            })
            .await
    });

    let ca_pem = std::fs::read(ca.cert_path()).unwrap();
    let mut client = H3Client::connect(addr, HOST, &ca_pem).await.unwrap();
    assert_eq!(client.get(HOST, "/").await.unwrap().status, 200);
    let recorded = chains.with_maps(|maps| maps.cids()).unwrap();
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    let (cid, chain_id) = recorded[0];
    assert_eq!(chain_id, CHAIN);
    assert_eq!(
        cid[0],
        (CID_LEN - 1) as u8,
        "config 0, length self-described"
    );
    assert_eq!(cid[1..=SERVER_ID_LEN], [0x0a, 0x0b], "the server id");

    // The connection's datagrams now count to its chain.
    let before = chain(&c).packets;
    assert_eq!(run(&c, &short_header(&cid)), XDP_PASS);
    assert_eq!(chain(&c).packets, before + 1);

    client.conn.close(0u32.into(), b"done");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !chains.with_maps(|maps| maps.cids()).unwrap().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the CID stays recorded after the connection closed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(client);
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
