//! The XDP classifier in the real kernel under BPF_PROG_TEST_RUN, on frames
//! around real rustls ClientHellos and hand-made edge cases. Every test checks
//! the verdict, the flow map entry and the counters.

use std::sync::Arc;

use edge_common::maps::{ChainCounters, GlobalCounters};
use edge_common::sni;
use edge_tests::frames::{
    self, ETH_P_8021AD, ETH_P_8021Q, IPV6_DEST_OPTS, IPV6_HOP_BY_HOP, IPV6_ROUTING, Tcp,
};
use edge_tests::hello::{self, EXT_KEY_SHARE, EXT_PRE_SHARED_KEY, EXT_SERVER_NAME, GREASE, Hello};
use edge_tests::tls::{TestPki, Versions};
use edge_tests::xdp::{XDP_DROP, XDP_PASS, classifier, run};
use edge_userspace::xdp::{
    Classifier, FlowInfo, LoadOptions, RouteAction, RouteTarget, UnknownSni, Verdict,
};
use rustls::ClientConfig;

const ROUTED: &str = "shop.example.com";
const ROUTED_CHAIN: u32 = 7;
const ROUTED_QUEUE: u16 = 3;
const BLOCKED: &str = "blocked.example.com";
const BLOCKED_CHAIN: u32 = 9;
const WILDCARD: &str = "*.tenant.example.net";
const WILDCARD_CHAIN: u32 = 11;

fn routed_classifier() -> Classifier {
    let mut c = classifier();
    let routes = &mut c.maps.routes;
    routes
        .insert(
            ROUTED,
            RouteTarget {
                chain_id: ROUTED_CHAIN,
                queue: ROUTED_QUEUE,
                action: RouteAction::Pass,
            },
        )
        .unwrap();
    routes
        .insert(
            BLOCKED,
            RouteTarget {
                chain_id: BLOCKED_CHAIN,
                queue: 0,
                action: RouteAction::Drop,
            },
        )
        .unwrap();
    routes
        .insert(
            WILDCARD,
            RouteTarget {
                chain_id: WILDCARD_CHAIN,
                queue: 1,
                action: RouteAction::Pass,
            },
        )
        .unwrap();
    c
}

fn pki() -> TestPki {
    TestPki::new(&[ROUTED, BLOCKED, "a.tenant.example.net"])
}

fn tls13_pq() -> Arc<ClientConfig> {
    pki().client(Versions::Tls13, true)
}

fn segment(port: u16) -> Tcp {
    Tcp::new(&format!("198.18.0.2:{port}"), "198.18.0.1:443")
}

fn flow(c: &Classifier, tcp: &Tcp) -> Option<FlowInfo> {
    c.maps.flows.lookup(tcp.client, tcp.server).unwrap()
}

fn global(c: &Classifier) -> GlobalCounters {
    c.maps.counters.global().unwrap()
}

fn chain(c: &Classifier, id: u32) -> ChainCounters {
    c.maps
        .counters
        .chain(id)
        .unwrap()
        .expect("every chain id below the routes map size has counters")
}

/// The common assertion: a hello for ROUTED, passed, recorded, counted once.
fn assert_routed(c: &Classifier, tcp: &Tcp, frame: &[u8]) {
    assert_eq!(run(c, frame), XDP_PASS);
    let info = flow(c, tcp).expect("flow recorded");
    assert_eq!(
        info.verdict,
        Verdict::Routed {
            chain_id: ROUTED_CHAIN,
            queue: ROUTED_QUEUE
        }
    );
    assert_eq!(info.sni_hash, sni::hash(ROUTED.as_bytes()));
    assert!(!info.via_wildcard && !info.from_later_segment);
    assert_eq!(
        global(c),
        GlobalCounters {
            client_hellos: 1,
            ..Default::default()
        }
    );
    assert_eq!(
        chain(c, ROUTED_CHAIN),
        ChainCounters {
            packets: 1,
            bytes: frame.len() as u64,
            drops: 0
        }
    );
}

#[test]
fn tls13_post_quantum_hello_is_routed() {
    let c = routed_classifier();
    let hello = hello::client_hello(tls13_pq(), ROUTED);
    assert!(
        hello.bytes().len() > 1200,
        "X25519MLKEM768 makes the hello large"
    );
    let tcp = segment(40001);
    assert_routed(&c, &tcp, &tcp.frame(hello.bytes()));
}

#[test]
fn tls13_classic_hello_is_routed() {
    let c = routed_classifier();
    let hello = hello::client_hello(pki().client(Versions::Tls13, false), ROUTED);
    assert!(
        hello.bytes().len() < 600,
        "without ML-KEM the hello is small"
    );
    let tcp = segment(40002);
    assert_routed(&c, &tcp, &tcp.frame(hello.bytes()));
}

#[test]
fn tls12_only_hello_is_routed() {
    let c = routed_classifier();
    let hello = hello::client_hello(pki().client(Versions::Tls12Only, false), ROUTED);
    assert_eq!(
        hello.extension_at(EXT_KEY_SHARE),
        None,
        "TLS 1.2 sends no key share"
    );
    let tcp = segment(40003);
    assert_routed(&c, &tcp, &tcp.frame(hello.bytes()));
}

#[test]
fn resumption_hello_is_routed() {
    let pki = pki();
    let hello = hello::resumption_hello(&pki, pki.client(Versions::Tls13, true), ROUTED);
    assert!(
        hello.extension_at(EXT_PRE_SHARED_KEY).is_some(),
        "second hello offers a PSK"
    );
    let c = routed_classifier();
    let tcp = segment(40004);
    assert_routed(&c, &tcp, &tcp.frame(hello.bytes()));
}

#[test]
fn grease_hello_is_routed() {
    let mut hello = hello::client_hello(pki().client(Versions::Tls13, false), ROUTED);
    hello.grease();
    assert_eq!(hello.extensions()[0].0, GREASE);
    let c = routed_classifier();
    let tcp = segment(40005);
    assert_routed(&c, &tcp, &tcp.frame(hello.bytes()));
}

#[test]
fn padded_hello_is_routed() {
    let mut hello = hello::client_hello(pki().client(Versions::Tls13, false), ROUTED);
    hello.pad(200);
    // Put the SNI behind the padding, so the walk must skip it.
    let at = hello.extension_at(EXT_SERVER_NAME).unwrap();
    let len = u16::from_be_bytes([hello.0[at + 2], hello.0[at + 3]]) as usize;
    let sni: Vec<u8> = hello.0.drain(at..at + 4 + len).collect();
    let end = hello.0.len();
    hello.0.splice(end..end, sni);
    assert_eq!(hello.extensions().last().unwrap().0, EXT_SERVER_NAME);
    let c = routed_classifier();
    let tcp = segment(40006);
    assert_routed(&c, &tcp, &tcp.frame(hello.bytes()));
}

#[test]
fn upper_case_sni_is_routed() {
    let mut hello = hello::client_hello(tls13_pq(), ROUTED);
    let at = hello
        .0
        .windows(ROUTED.len())
        .position(|w| w == ROUTED.as_bytes())
        .unwrap();
    hello.0[at..at + ROUTED.len()].make_ascii_uppercase();
    let c = routed_classifier();
    let tcp = segment(40007);
    assert_routed(&c, &tcp, &tcp.frame(hello.bytes()));
}

#[test]
fn longest_sni_is_routed() {
    let name = format!(
        "{}.{}.{}.{}",
        "a".repeat(63),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(61)
    );
    assert_eq!(name.len(), 253);
    let mut c = classifier();
    c.maps
        .routes
        .insert(
            &name,
            RouteTarget {
                chain_id: 5,
                queue: 0,
                action: RouteAction::Pass,
            },
        )
        .unwrap();
    let hello = hello::client_hello(pki().client(Versions::Tls13, false), &name);
    let tcp = segment(40008);
    let frame = tcp.frame(hello.bytes());
    assert_eq!(run(&c, &frame), XDP_PASS);
    assert_eq!(
        flow(&c, &tcp).unwrap().verdict,
        Verdict::Routed {
            chain_id: 5,
            queue: 0
        }
    );
    assert_eq!(
        global(&c),
        GlobalCounters {
            client_hellos: 1,
            ..Default::default()
        }
    );
    assert_eq!(chain(&c, 5).packets, 1);
}

#[test]
fn wildcard_route_matches_one_label_and_exact_wins() {
    let mut c = routed_classifier();
    let pki = TestPki::new(&["a.tenant.example.net", "exact.tenant.example.net"]);
    let config = pki.client(Versions::Tls13, true);
    let tcp = segment(40009);
    let frame = tcp.frame(hello::client_hello(config.clone(), "a.tenant.example.net").bytes());
    assert_eq!(run(&c, &frame), XDP_PASS);
    let info = flow(&c, &tcp).unwrap();
    assert_eq!(
        info.verdict,
        Verdict::Routed {
            chain_id: WILDCARD_CHAIN,
            queue: 1
        }
    );
    assert!(info.via_wildcard);
    assert_eq!(info.sni_hash, sni::hash(b"a.tenant.example.net"));
    assert_eq!(chain(&c, WILDCARD_CHAIN).packets, 1);

    c.maps
        .routes
        .insert(
            "exact.tenant.example.net",
            RouteTarget {
                chain_id: 12,
                queue: 0,
                action: RouteAction::Pass,
            },
        )
        .unwrap();
    let tcp = segment(40010);
    let frame = tcp.frame(hello::client_hello(config.clone(), "exact.tenant.example.net").bytes());
    assert_eq!(run(&c, &frame), XDP_PASS);
    let info = flow(&c, &tcp).unwrap();
    assert_eq!(
        info.verdict,
        Verdict::Routed {
            chain_id: 12,
            queue: 0
        }
    );
    assert!(!info.via_wildcard);

    // Two labels below the wildcard: not covered.
    let tcp = segment(40011);
    let frame = tcp.frame(hello::client_hello(config, "x.a.tenant.example.net").bytes());
    assert_eq!(run(&c, &frame), XDP_PASS);
    assert_eq!(flow(&c, &tcp).unwrap().verdict, Verdict::Unknown);
    assert_eq!(
        global(&c),
        GlobalCounters {
            client_hellos: 3,
            unknown_sni: 1,
            ..Default::default()
        }
    );
}

#[test]
fn blocked_sni_is_dropped() {
    let c = routed_classifier();
    let tcp = segment(40012);
    let frame = tcp.frame(hello::client_hello(tls13_pq(), BLOCKED).bytes());
    assert_eq!(run(&c, &frame), XDP_DROP);
    assert_eq!(
        flow(&c, &tcp).unwrap().verdict,
        Verdict::Blocked {
            chain_id: BLOCKED_CHAIN
        }
    );
    let counted = || {
        assert_eq!(
            global(&c),
            GlobalCounters {
                client_hellos: 1,
                policy_drops: 1,
                ..Default::default()
            }
        );
        assert_eq!(
            chain(&c, BLOCKED_CHAIN),
            ChainCounters {
                packets: 1,
                bytes: frame.len() as u64,
                drops: 1
            }
        );
    };
    counted();
    // Ten retransmissions of the unanswered hello: dropped, counted once per flow.
    for _ in 0..10 {
        assert_eq!(run(&c, &frame), XDP_DROP);
    }
    counted();
    // Unblocking takes effect on the retransmission.
    let mut c = c;
    assert!(c.maps.routes.remove(BLOCKED).unwrap());
    assert_eq!(run(&c, &frame), XDP_PASS);
    assert_eq!(flow(&c, &tcp).unwrap().verdict, Verdict::Unknown);
}

#[test]
fn unknown_sni_passes_by_default_and_drops_when_strict() {
    let mut c = routed_classifier();
    let config = tls13_pq();
    let tcp = segment(40013);
    let frame = tcp.frame(hello::client_hello(config.clone(), "other.example.org").bytes());
    assert_eq!(run(&c, &frame), XDP_PASS);
    let info = flow(&c, &tcp).unwrap();
    assert_eq!(info.verdict, Verdict::Unknown);
    assert_eq!(info.sni_hash, sni::hash(b"other.example.org"));

    c.maps.settings.set_unknown_sni(UnknownSni::Drop).unwrap();
    let tcp = segment(40014);
    let frame = tcp.frame(hello::client_hello(config.clone(), "other.example.org").bytes());
    for _ in 0..10 {
        // The first and its retransmissions: one flow, one policy drop.
        assert_eq!(run(&c, &frame), XDP_DROP);
    }
    assert_eq!(flow(&c, &tcp).unwrap().verdict, Verdict::UnknownDropped);
    // Strict mode leaves routed names alone.
    let tcp = segment(40015);
    assert_eq!(
        run(&c, &tcp.frame(hello::client_hello(config, ROUTED).bytes())),
        XDP_PASS
    );
    assert_eq!(
        global(&c),
        GlobalCounters {
            client_hellos: 3,
            unknown_sni: 2,
            policy_drops: 1,
            ..Default::default()
        }
    );
}

#[test]
fn hello_without_sni_passes_and_is_recorded() {
    let pki = pki();
    let mut config = (*pki.client(Versions::Tls13, true)).clone();
    config.enable_sni = false;
    let hello = hello::client_hello(Arc::new(config), ROUTED);
    assert_eq!(hello.extension_at(EXT_SERVER_NAME), None);
    let c = routed_classifier();
    let tcp = segment(40016);
    assert_eq!(run(&c, &tcp.frame(hello.bytes())), XDP_PASS);
    assert_eq!(flow(&c, &tcp).unwrap().verdict, Verdict::NoSni);
    assert_eq!(
        global(&c),
        GlobalCounters {
            client_hellos: 1,
            no_sni: 1,
            ..Default::default()
        }
    );
}

#[test]
fn header_variants_are_parsed() {
    let hello = hello::client_hello(tls13_pq(), ROUTED);
    let mut cases = Vec::new();
    let mut tcp = segment(40017);
    tcp.ipv4_options = vec![0x94, 4, 0, 0, 1, 1, 1, 0]; // router alert, NOPs, EOL
    cases.push(tcp);
    let mut tcp = segment(40018);
    tcp.vlan_tags = vec![ETH_P_8021AD, ETH_P_8021Q];
    cases.push(tcp);
    let mut tcp = segment(40019);
    // MSS, SACK permitted, timestamps, window scale: a real SYN's options.
    tcp.tcp_options = vec![
        2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
    ];
    cases.push(tcp);
    let mut tcp = Tcp::new("[2001:db8::2]:40020", "[2001:db8::1]:443");
    tcp.ipv6_extensions = vec![IPV6_HOP_BY_HOP, IPV6_ROUTING, IPV6_DEST_OPTS];
    tcp.vlan_tags = vec![ETH_P_8021Q];
    cases.push(tcp);
    let c = routed_classifier();
    let mut bytes = 0;
    for (i, tcp) in cases.iter().enumerate() {
        let frame = tcp.frame(hello.bytes());
        bytes += frame.len() as u64;
        assert_eq!(run(&c, &frame), XDP_PASS);
        assert_eq!(
            flow(&c, tcp).map(|f| f.verdict),
            Some(Verdict::Routed {
                chain_id: ROUTED_CHAIN,
                queue: ROUTED_QUEUE
            }),
            "case {i}: {tcp:?}"
        );
    }
    assert_eq!(
        global(&c),
        GlobalCounters {
            client_hellos: 4,
            ..Default::default()
        }
    );
    assert_eq!(
        chain(&c, ROUTED_CHAIN),
        ChainCounters {
            packets: 4,
            bytes,
            drops: 0
        }
    );
}

#[test]
fn second_record_in_the_segment_is_not_read_as_the_hello() {
    let hello = hello::client_hello(pki().client(Versions::Tls13, false), ROUTED);
    let mut payload = hello.0.clone();
    // A change_cipher_spec record right behind the hello.
    payload.extend([20, 3, 3, 0, 1, 1]);
    let c = routed_classifier();
    let tcp = segment(40021);
    assert_routed(&c, &tcp, &tcp.frame(&payload));
}

/// Lying lengths, each passed untouched and counted as malformed.
#[test]
fn lying_length_fields_are_malformed() {
    let good = hello::client_hello(pki().client(Versions::Tls13, false), ROUTED);
    let sni_at = good.extension_at(EXT_SERVER_NAME).unwrap();
    let mut cases: Vec<(&str, Hello)> = Vec::new();
    let mut h = good.clone();
    h.set_be16(3, (good.0.len() - 5 - 10) as u16);
    cases.push(("record shorter than the message", h));
    let mut h = good.clone();
    h.set_be16(sni_at + 2, 0x4000);
    cases.push(("extension longer than the extensions", h));
    let mut h = good.clone();
    let name_len_at = sni_at + 7;
    h.set_be16(name_len_at, (ROUTED.len() + 40) as u16);
    cases.push(("name longer than its list", h));
    let mut h = good.clone();
    h.0[43] = 33;
    cases.push(("session id longer than 32", h));
    let c = routed_classifier();
    for (i, (what, h)) in cases.iter().enumerate() {
        let tcp = segment(40030 + i as u16);
        assert_eq!(run(&c, &tcp.frame(h.bytes())), XDP_PASS, "{what}");
        assert_eq!(flow(&c, &tcp), None, "{what}");
    }
    assert_eq!(
        global(&c),
        GlobalCounters {
            malformed: 4,
            ..Default::default()
        }
    );
    assert_eq!(chain(&c, ROUTED_CHAIN).packets, 0);
}

#[test]
fn truncated_hello_passes() {
    let hello = hello::client_hello(tls13_pq(), ROUTED);
    let c = routed_classifier();
    let tcp = segment(40040);
    // Cut inside the cipher suites: the walk cannot resume from there.
    assert_eq!(run(&c, &tcp.frame(&hello.bytes()[..60])), XDP_PASS);
    // Recorded, so its later segments are known to belong to a hello.
    assert_eq!(flow(&c, &tcp).unwrap().verdict, Verdict::Unparsed);
    assert_eq!(
        global(&c),
        GlobalCounters {
            truncated: 1,
            multi_segment: 1,
            ..Default::default()
        }
    );
}

#[test]
fn non_tls_and_other_traffic_pass_untouched() {
    let c = routed_classifier();
    let tcp = segment(40041);
    assert_eq!(
        run(
            &c,
            &tcp.frame(b"GET / HTTP/1.1\r\nHost: shop.example.com\r\n\r\n")
        ),
        XDP_PASS
    );
    assert_eq!(flow(&c, &tcp), None);
    // A hello to a port nobody listens on is not looked at.
    let other = Tcp::new("198.18.0.2:40042", "198.18.0.1:8443");
    let hello = hello::client_hello(tls13_pq(), BLOCKED);
    assert_eq!(run(&c, &other.frame(hello.bytes())), XDP_PASS);
    assert_eq!(flow(&c, &other), None);
    assert_eq!(run(&c, &frames::arp()), XDP_PASS);
    assert_eq!(
        run(
            &c,
            &frames::udp("198.18.0.2:40043", "198.18.0.1:443", &[0xc3; 1200])
        ),
        XDP_PASS
    );
    assert_eq!(
        global(&c),
        GlobalCounters {
            non_tls: 1,
            quic: 1,
            ..Default::default()
        }
    );
}

#[test]
fn listener_ports_are_configurable() {
    let mut c = routed_classifier();
    c.maps.settings.set_tls_port(8443, true).unwrap();
    c.maps.settings.set_tls_port(443, false).unwrap();
    let hello = hello::client_hello(tls13_pq(), BLOCKED);
    let on = Tcp::new("198.18.0.2:40044", "198.18.0.1:8443");
    assert_eq!(run(&c, &on.frame(hello.bytes())), XDP_DROP);
    let off = segment(40045);
    assert_eq!(run(&c, &off.frame(hello.bytes())), XDP_PASS);
    assert_eq!(flow(&c, &off), None);
}

/// A post-quantum hello whose SNI extension comes after the key share,
/// split inside the key share as a 1448-byte MSS would split it.
fn hello_with_sni_after_key_share() -> (Hello, usize) {
    let config = tls13_pq();
    // rustls shuffles extension order per hello; a bounded number of draws
    // finds the order where the SNI is in the second segment.
    for _ in 0..200 {
        let hello = hello::client_hello(config.clone(), ROUTED);
        let key_share = hello.extension_at(EXT_KEY_SHARE).unwrap();
        let sni = hello.extension_at(EXT_SERVER_NAME).unwrap();
        if sni > key_share {
            return (hello, key_share + 200);
        }
    }
    panic!("rustls never put server_name after key_share in 200 hellos");
}

#[test]
fn multi_segment_hello_is_classified_from_the_later_segment() {
    let c = routed_classifier();
    let (hello, split) = hello_with_sni_after_key_share();
    let mut tcp = segment(40050);
    let first = tcp.frame(&hello.bytes()[..split]);
    tcp.seq += split as u32;
    let second = tcp.frame(&hello.bytes()[split..]);

    assert_eq!(run(&c, &first), XDP_PASS);
    assert_eq!(flow(&c, &tcp).unwrap().verdict, Verdict::Pending);
    assert_eq!(
        global(&c),
        GlobalCounters {
            multi_segment: 1,
            ..Default::default()
        }
    );

    assert_eq!(run(&c, &second), XDP_PASS);
    let info = flow(&c, &tcp).unwrap();
    assert_eq!(
        info.verdict,
        Verdict::Routed {
            chain_id: ROUTED_CHAIN,
            queue: ROUTED_QUEUE
        }
    );
    assert!(info.from_later_segment);
    assert_eq!(info.sni_hash, sni::hash(ROUTED.as_bytes()));
    assert_eq!(
        global(&c),
        GlobalCounters {
            client_hellos: 1,
            multi_segment: 1,
            later_segment: 1,
            ..Default::default()
        }
    );
    assert_eq!(
        chain(&c, ROUTED_CHAIN),
        ChainCounters {
            packets: 1,
            bytes: second.len() as u64,
            drops: 0
        }
    );
}

#[test]
fn multi_segment_blocked_hello_is_never_dropped() {
    let c = routed_classifier();
    let config = tls13_pq();
    let (hello, split) = (0..200)
        .map(|_| hello::client_hello(config.clone(), BLOCKED))
        .find_map(|h| {
            let key_share = h.extension_at(EXT_KEY_SHARE).unwrap();
            (h.extension_at(EXT_SERVER_NAME).unwrap() > key_share).then_some((h, key_share + 200))
        })
        .expect("a hello with server_name after key_share");
    let mut tcp = segment(40051);
    let first = tcp.frame(&hello.bytes()[..split]);
    tcp.seq = tcp.seq.wrapping_add(split as u32);
    let second = tcp.frame(&hello.bytes()[split..]);
    assert_eq!(run(&c, &first), XDP_PASS);
    // A retransmission of the first segment changes nothing.
    assert_eq!(run(&c, &first), XDP_PASS);
    assert_eq!(run(&c, &second), XDP_PASS);
    let info = flow(&c, &tcp).unwrap();
    assert_eq!(
        info.verdict,
        Verdict::Blocked {
            chain_id: BLOCKED_CHAIN
        }
    );
    assert!(info.from_later_segment);
    assert_eq!(chain(&c, BLOCKED_CHAIN).drops, 0);
    assert_eq!(
        global(&c),
        GlobalCounters {
            client_hellos: 1,
            multi_segment: 2,
            later_segment: 1,
            ..Default::default()
        }
    );
}

#[test]
fn multi_segment_hello_with_sni_up_front_is_classified_at_once() {
    let config = tls13_pq();
    let (hello, key_share) = (0..200)
        .map(|_| hello::client_hello(config.clone(), ROUTED))
        .find_map(|h| {
            let key_share = h.extension_at(EXT_KEY_SHARE).unwrap();
            (h.extension_at(EXT_SERVER_NAME).unwrap() < key_share).then_some((h, key_share))
        })
        .expect("a hello with server_name before key_share");
    let c = routed_classifier();
    let tcp = segment(40052);
    let first = tcp.frame(&hello.bytes()[..key_share + 200]);
    assert_eq!(run(&c, &first), XDP_PASS);
    let info = flow(&c, &tcp).unwrap();
    assert_eq!(
        info.verdict,
        Verdict::Routed {
            chain_id: ROUTED_CHAIN,
            queue: ROUTED_QUEUE
        }
    );
    assert!(!info.from_later_segment);
    assert_eq!(
        global(&c),
        GlobalCounters {
            client_hellos: 1,
            multi_segment: 1,
            ..Default::default()
        }
    );
}

/// A hello cut inside an extension header (after 1, 2 or 3 of its 4 bytes):
/// the first bytes travel in the flow and the header is completed from the
/// next segment.
#[test]
fn hello_cut_inside_an_extension_header_is_resumed() {
    let (hello, _) = hello_with_sni_after_key_share();
    let key_share = hello.extension_at(EXT_KEY_SHARE).unwrap();
    let (_, after) = *hello
        .extensions()
        .iter()
        .find(|(_, at)| *at > key_share)
        .unwrap();
    let c = routed_classifier();
    for part in 1..=3u16 {
        let split = after + part as usize;
        let mut tcp = segment(40060 + part);
        let first = tcp.frame(&hello.bytes()[..split]);
        tcp.seq = tcp.seq.wrapping_add(split as u32);
        let second = tcp.frame(&hello.bytes()[split..]);
        assert_eq!(run(&c, &first), XDP_PASS);
        assert_eq!(flow(&c, &tcp).unwrap().verdict, Verdict::Pending);
        assert_eq!(run(&c, &second), XDP_PASS);
        let info = flow(&c, &tcp).unwrap();
        assert_eq!(
            info.verdict,
            Verdict::Routed {
                chain_id: ROUTED_CHAIN,
                queue: ROUTED_QUEUE
            },
            "header cut after {part} bytes"
        );
        assert!(info.from_later_segment);
    }
    assert_eq!(
        global(&c),
        GlobalCounters {
            client_hellos: 3,
            multi_segment: 3,
            later_segment: 3,
            ..Default::default()
        }
    );
}

/// The verifier's work stays far below its 1M-instruction limit, so kernels
/// with a less precise verifier than this one still accept the program.
#[test]
fn verifier_budget_has_headroom() {
    let c = classifier();
    let verified = c
        .program()
        .info()
        .unwrap()
        .verified_instruction_count()
        .expect("kernel >= 5.16 reports the verified instruction count");
    println!("verified instructions: {verified}");
    assert!(verified < 500_000, "{verified} verified instructions");
}

/// The segment boundary falls inside the host name: the first part is hashed
/// in the first segment, the rest in the second, and the route is found.
#[test]
fn host_name_cut_by_the_segment_boundary_is_classified() {
    let c = routed_classifier();
    let (hello, _) = hello_with_sni_after_key_share();
    let name_at = hello
        .0
        .windows(ROUTED.len())
        .position(|w| w == ROUTED.as_bytes())
        .unwrap();
    // "shop.ex" | "ample.com": the dot (and the wildcard key's start) first.
    let split = name_at + 7;
    let mut tcp = segment(40054);
    let first = tcp.frame(&hello.bytes()[..split]);
    tcp.seq = tcp.seq.wrapping_add(split as u32);
    let second = tcp.frame(&hello.bytes()[split..]);
    assert_eq!(run(&c, &first), XDP_PASS);
    assert_eq!(flow(&c, &tcp).unwrap().verdict, Verdict::Pending);
    assert_eq!(run(&c, &second), XDP_PASS);
    let info = flow(&c, &tcp).unwrap();
    assert_eq!(
        info.verdict,
        Verdict::Routed {
            chain_id: ROUTED_CHAIN,
            queue: ROUTED_QUEUE
        }
    );
    assert!(info.from_later_segment);
    assert_eq!(info.sni_hash, sni::hash(ROUTED.as_bytes()));

    // The same cut before the dot, under a wildcard route.
    let pki = TestPki::new(&["a.tenant.example.net"]);
    let (hello, _) = (0..200)
        .map(|_| hello::client_hello(pki.client(Versions::Tls13, true), "a.tenant.example.net"))
        .find_map(|h| {
            let key_share = h.extension_at(EXT_KEY_SHARE).unwrap();
            (h.extension_at(EXT_SERVER_NAME).unwrap() > key_share).then_some((h, ()))
        })
        .unwrap();
    let name_at = hello
        .0
        .windows(20)
        .position(|w| w == b"a.tenant.example.net")
        .unwrap();
    let mut tcp = segment(40055);
    let first = tcp.frame(&hello.bytes()[..name_at + 1]);
    tcp.seq = tcp.seq.wrapping_add(name_at as u32 + 1);
    let second = tcp.frame(&hello.bytes()[name_at + 1..]);
    assert_eq!(run(&c, &first), XDP_PASS);
    assert_eq!(run(&c, &second), XDP_PASS);
    let info = flow(&c, &tcp).unwrap();
    assert_eq!(
        info.verdict,
        Verdict::Routed {
            chain_id: WILDCARD_CHAIN,
            queue: 1
        }
    );
    assert!(info.via_wildcard && info.from_later_segment);
    assert_eq!(
        global(&c),
        GlobalCounters {
            client_hellos: 2,
            multi_segment: 2,
            later_segment: 2,
            ..Default::default()
        }
    );
}

/// After the hello, the flow's data segments count to its chain; pure ACKs
/// are not looked up at all.
#[test]
fn later_data_segments_count_to_the_chain_and_acks_do_not() {
    let c = routed_classifier();
    let hello = hello::client_hello(pki().client(Versions::Tls13, false), ROUTED);
    let mut tcp = segment(40056);
    let first = tcp.frame(hello.bytes());
    assert_eq!(run(&c, &first), XDP_PASS);
    tcp.seq = tcp.seq.wrapping_add(hello.bytes().len() as u32);
    let ack = tcp.frame(&[]);
    let data = tcp.frame(&[23, 3, 3, 0, 3, 1, 2, 3]);
    assert_eq!(run(&c, &ack), XDP_PASS);
    assert_eq!(run(&c, &data), XDP_PASS);
    assert_eq!(
        chain(&c, ROUTED_CHAIN),
        ChainCounters {
            packets: 2,
            bytes: (first.len() + data.len()) as u64,
            drops: 0
        }
    );
    assert_eq!(
        global(&c),
        GlobalCounters {
            client_hellos: 1,
            ..Default::default()
        }
    );
}

/// The chain counters are an array sized with the routes map: every chain id
/// below its size has a slot of its own (listed from 0 to the highest id
/// routed), and a route to an id beyond it is refused before it is written.
#[test]
fn chain_counters_follow_the_routes_map_size() {
    let mut c = Classifier::load(LoadOptions {
        routes_max: Some(1 << 15),
        ..LoadOptions::default()
    })
    .unwrap_or_else(|e| panic!("the XDP program must load (root, kernel >= 5.18): {e:?}"));
    let max = c.maps.routes.max_chains();
    assert_eq!(max, 1 << 15, "as many chain ids as routes");
    let target = |chain_id| RouteTarget {
        chain_id,
        queue: 0,
        action: RouteAction::Pass,
    };
    let error = c.maps.routes.insert(ROUTED, target(max)).unwrap_err();
    assert!(error.to_string().contains("out of range"), "{error:#}");
    assert_eq!(c.maps.routes.get(ROUTED).unwrap(), None, "nothing written");
    assert!(
        c.maps.counters.chains().unwrap().is_empty(),
        "nothing routed"
    );

    c.maps.routes.insert(ROUTED, target(max - 1)).unwrap();
    let tcp = segment(40090);
    let frame = tcp.frame(hello::client_hello(tls13_pq(), ROUTED).bytes());
    assert_eq!(run(&c, &frame), XDP_PASS);
    let counted = ChainCounters {
        packets: 1,
        bytes: frame.len() as u64,
        drops: 0,
    };
    assert_eq!(chain(&c, max - 1), counted);
    assert_eq!(chain(&c, max - 2), ChainCounters::default());
    assert_eq!(c.maps.counters.chain(max).unwrap(), None);
    assert_eq!(
        c.maps.counters.overflow().unwrap(),
        ChainCounters::default()
    );
    let listed = c.maps.counters.chains().unwrap();
    assert_eq!(listed.len() as u32, max);
    assert_eq!(listed.last(), Some(&(max - 1, counted)));
    assert!(
        listed[..listed.len() - 1]
            .iter()
            .enumerate()
            .all(|(i, (id, counters))| *id == i as u32 && *counters == ChainCounters::default())
    );
}
