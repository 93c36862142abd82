//! `edge serve` with the XDP classifier attached to a veth, clients in the
//! peer namespace: the kernel's flow map cross-checks each connection's chain,
//! blocked hostnames never finish a handshake, a hash collision in the routes map cannot move
//! a connection to another name's chain, a control-socket write
//! reaches the kernel's routes map, and the runtime's counters say which
//! path each connection took.
//!
//! The first test runs in steps, each step's counts building on the last;
//! the second drives the same runtime through the control socket only
//! (`/xdp`, `/xdp/routes`, `/metrics`), HTTP/3 included.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use edge_common::sni;
use edge_tests::chain::o2o_state;
use edge_tests::control::Control;
use edge_tests::h3::{H3Client, client_config as h3_client_config};
use edge_tests::handshake::{Handshake, client, handshake};
use edge_tests::netns::VethPair;
use edge_tests::proxy::{echoed_header, spawn_echo};
use edge_userspace::control::client::Client;
use edge_userspace::serve::{self, Bound, Source};
use edge_userspace::xdp::status::{AcceptCounts, ChainOverflow, HelloCounters, XdpStatus};
use edge_userspace::xdp::{AttachMode, Maps, RouteAction, UnknownSni, XdpError, XdpRuntime};
use http::Method;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const O2O: &str = "mystore.example.com";
const NOT_O2O: &str = "shop.othercustomer.net";
const BLOCKED: &str = "blocked.othercustomer.net";
const UNKNOWN: &str = "unknown.example.org";
const ADDED: &str = "added.example.com";
const WILDCARD: &str = "*.wild.net";
const UNDER_WILDCARD: &str = "shop.wild.net";
/// Pending below an active wildcard: userspace answers 1016.
const PENDING: &str = "pending.wild.net";
const PROVIDER: usize = 1;
/// Long enough for a handshake over a veth, short enough to keep the test quick.
const TIMEOUT: Duration = Duration::from_secs(2);

#[test]
fn serve_takes_chains_from_the_flow_map_and_keeps_the_kernel_routes_in_sync() {
    let pair = VethPair::new("serve", 42);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let echo = runtime.block_on(spawn_echo()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bpffs = BpfFs::mount();
    let pin_dir = bpffs.dir.path().join("edge");
    let config_path = dir.path().join("edge.json");
    let mut state = o2o_state(echo);
    hostnames(&mut state).extend([
        json!({"id": "ch-blocked", "hostname": BLOCKED, "status": "blocked"}),
        json!({"id": "ch-wild", "hostname": WILDCARD, "status": "active"}),
        json!({"id": "ch-pending", "hostname": PENDING, "status": "pending"}),
    ]);
    let config = json!({
        "listen": {"https": SocketAddr::from((pair.host_addr, 0))},
        "state_dir": dir.path().join("state"),
        "xdp": {"interface": pair.host, "pin_dir": pin_dir},
        "state": state,
    });
    std::fs::write(&config_path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();

    let (bound_tx, bound_rx) = std::sync::mpsc::channel::<Bound>();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let edge = runtime.spawn(serve::run(
        Source::File(config_path.clone()),
        move |bound| bound_tx.send(bound.clone()).unwrap(),
        async {
            let _ = stopped.await;
        },
    ));
    let Ok(bound) = bound_rx.recv_timeout(Duration::from_secs(30)) else {
        let ended = runtime.block_on(async { tokio::time::timeout(TIMEOUT, edge).await });
        panic!("the edge did not start with XDP attached to the veth: {ended:?}");
    };
    let xdp = bound.xdp.clone();
    let server = bound.https;
    let ca = CertificateDer::from_pem_file(&bound.ca_pem).unwrap();
    // Classic key shares: every ClientHello fits one segment, so XDP reads
    // each SNI from its first packet and drops blocked hellos.
    let classic = client(&ca, false);
    let post_quantum = client(&ca, true);
    let counts = |xdp: &XdpRuntime| xdp.status().unwrap().connections;
    // What the runtime should have counted so far, step by step.
    let mut expect = AcceptCounts::default();

    // Attached at start, with the TLS port and every route of the state.
    let status = xdp.status().unwrap();
    let attached = status.attached.as_ref().expect("attached at start");
    assert_eq!(attached.interface, pair.host);
    assert!(xdp_on_link(&pair.host));
    assert!(attached.program_id > 0);
    assert_eq!(attached.pin_dir.as_deref(), Some(pin_dir.as_path()));
    assert_eq!(
        (status.tls_port, status.quic_port),
        (server.port(), server.port())
    );
    assert_eq!(status.unknown_sni, UnknownSni::Pass);
    let routes = xdp.routes().unwrap();
    assert_eq!(attached.maps.routes.entries, Some(routes.len()));
    assert!(routes.iter().all(|r| r.hostname.is_some()), "{routes:?}");
    let route = |name: &str| {
        xdp.routes()
            .unwrap()
            .into_iter()
            .find(|r| r.sni_hash == sni::hash(name.as_bytes()))
    };
    let o2o_route = route(O2O).expect("the O2O hostname is routed in the kernel");
    assert_eq!(o2o_route.hostname.as_deref(), Some(O2O));
    assert_eq!(o2o_route.action, RouteAction::Pass);
    let not_o2o_route = route(NOT_O2O).unwrap();
    assert_ne!(o2o_route.chain_id, not_o2o_route.chain_id);
    assert_eq!(
        route(BLOCKED).map(|r| (r.chain_id, r.action)),
        Some((0, RouteAction::Drop))
    );
    assert!(route(WILDCARD).is_some_and(|r| r.chain_id > 0));
    // The pending name would otherwise match its wildcard in the kernel.
    assert_eq!(
        route(PENDING).map(|r| (r.chain_id, r.action)),
        Some((0, RouteAction::Pass))
    );
    assert!(route(UNKNOWN).is_none());
    assert!(route(ADDED).is_none());
    assert_eq!(counts(&xdp), expect);

    // Routed hostnames: the flow map names the chain, the request passes the
    // O2O chain (two requests on one connection share its chain).
    let seen = in_peer(&pair, fetch(classic.clone(), server, O2O, 2)).unwrap();
    for echo in &seen {
        assert_eq!(echoed_header(echo, "cf-connecting-o2o"), vec!["1"]);
        assert_eq!(echoed_header(echo, "host"), vec![O2O]);
    }
    let seen = in_peer(&pair, fetch(classic.clone(), server, NOT_O2O, 1)).unwrap();
    assert!(echoed_header(&seen[0], "cf-connecting-o2o").is_empty());
    let seen = in_peer(&pair, fetch(classic.clone(), server, UNDER_WILDCARD, 1)).unwrap();
    assert_eq!(echoed_header(&seen[0], "host"), vec![UNDER_WILDCARD]);
    expect.kernel += 3;
    assert_eq!(counts(&xdp), expect);

    // A hash collision as XDP would see it: the routes map sends NOT_O2O's hash to the O2O
    // chain. The connection keeps its own name's chain (no O2O header) and the disagreement
    // is counted.
    let mut pinned = Maps::open_pinned(&pin_dir).expect("the maps are pinned while attached");
    let own = pinned.routes.get(NOT_O2O).unwrap().expect("routed");
    let other = pinned.routes.get(O2O).unwrap().expect("routed");
    assert_ne!(own.chain_id, other.chain_id);
    pinned.routes.insert(NOT_O2O, other).unwrap();
    let seen = in_peer(&pair, fetch(classic.clone(), server, NOT_O2O, 1));
    pinned.routes.insert(NOT_O2O, own).unwrap();
    drop(pinned);
    let seen = seen.unwrap();
    assert!(
        echoed_header(&seen[0], "cf-connecting-o2o").is_empty(),
        "the name's own chain, not the colliding hash's: {}",
        seen[0]
    );
    assert_eq!(echoed_header(&seen[0], "host"), vec![NOT_O2O]);
    expect.disagreed += 1;
    assert_eq!(counts(&xdp), expect);

    // A name the kernel leaves to userspace: its own error, not the
    // wildcard's chain (the wildcard's certificate covers it).
    let answer = in_peer(&pair, request(classic.clone(), server, PENDING)).unwrap();
    assert_eq!(answer.0, 530);
    assert!(answer.1.contains("1016"), "{}", answer.1);
    expect.userspace += 1;
    assert_eq!(counts(&xdp), expect);

    // Unknown SNI, default policy: XDP passes it, userspace classifies it
    // (no chain, no certificate: the edge answers with an alert).
    let end = in_peer(&pair, handshake(classic.clone(), server, UNKNOWN));
    assert!(matches!(end, Handshake::Failed(_)), "{end:?}");
    expect.userspace += 1;
    assert_eq!(counts(&xdp), expect);

    // Blocked, one-segment hello: XDP drops it, the edge never sees it.
    let end = in_peer(&pair, handshake(classic.clone(), server, BLOCKED));
    assert_eq!(end, Handshake::TimedOut);
    assert_eq!(counts(&xdp), expect);
    // Blocked, post-quantum hello over two segments. With the name in the
    // first segment XDP drops it as above; with the name after the cut XDP
    // passes it (the first segment already reached TCP), and the edge
    // refuses it from the flow map (or from the SNI when XDP could not read
    // the name across the cut). rustls shuffles extensions: try until the
    // second case comes up.
    let mut attempts = 0;
    let refused = loop {
        attempts += 1;
        assert!(
            attempts <= 16,
            "no post-quantum hello put its SNI after the cut"
        );
        match in_peer(&pair, handshake(post_quantum.clone(), server, BLOCKED)) {
            Handshake::TimedOut => assert_eq!(counts(&xdp), expect),
            Handshake::Failed(error) => break error,
            Handshake::Completed => panic!("a blocked hostname's handshake completed"),
        }
    };
    let after = counts(&xdp);
    assert_eq!(
        (after.kernel + after.userspace, after.unseen, after.blocked),
        (expect.kernel + expect.userspace + 1, 0, 1),
        "{after:?}, {refused}"
    );
    expect = after;

    // The same address from our own namespace goes over loopback, where no
    // XDP runs: classified in userspace, served through the same chain.
    let seen = runtime
        .block_on(fetch(classic.clone(), server, O2O, 1))
        .unwrap();
    assert_eq!(echoed_header(&seen[0], "cf-connecting-o2o"), vec!["1"]);
    expect.userspace += 1;
    expect.unseen += 1;
    assert_eq!(counts(&xdp), expect);

    // What XDP counted so far.
    let status = xdp.status().unwrap();
    let attached = status.attached.as_ref().unwrap();
    let chain = |id: u32| {
        attached
            .chains
            .iter()
            .find(|c| c.chain_id == id)
            .copied()
            .unwrap_or_else(|| panic!("chain {id} has counters: {status:?}"))
    };
    let o2o_traffic = chain(o2o_route.chain_id);
    assert!(
        o2o_traffic.packets >= 2 && o2o_traffic.drops == 0,
        "{o2o_traffic:?}"
    );
    assert!(
        chain(0).drops >= 1,
        "the blocked hello was dropped: {status:?}"
    );
    assert!(attached.counters.unknown_sni >= 1, "{status:?}");
    assert!(attached.counters.multi_segment >= attempts, "{status:?}");
    assert_eq!(
        (attached.counters.malformed, attached.counters.non_tls),
        (0, 0)
    );
    // Every chain id of the state is within the counters.
    assert_eq!(attached.chain_overflow, ChainOverflow::default());
    assert_eq!(
        attached.maps.chain_counters.entries,
        Some(attached.chains.len())
    );
    // `edge xdp stats` reads the same counters from the pins.
    let pinned = Maps::open_pinned(&pin_dir).expect("the maps are pinned while attached");
    assert_eq!(
        HelloCounters::from(pinned.counters.global().unwrap()),
        attached.counters
    );
    let pinned_chains = pinned.counters.chains().unwrap();
    assert_eq!(pinned_chains.len(), attached.chains.len());
    assert!(
        pinned_chains
            .iter()
            .zip(&attached.chains)
            .all(|((id, _), listed)| *id == listed.chain_id),
        "the pins list the chains /xdp lists"
    );
    drop(pinned);

    // A control-socket write adds a hostname (a customer's proxied CNAME to
    // the provider, then the custom hostname, active at once: O2O): the
    // write answers once its hash is in the kernel, and it is served with
    // its chain from the flow map.
    let control = Control::new(&bound.control);
    runtime.block_on(control.ok(
        Method::POST,
        "/zones/example.com/dns_records",
        Some(json!({"type": "CNAME", "name": ADDED, "content": "customers.saasprovider.com", "proxied": true})),
    ));
    assert!(
        route(ADDED).is_none(),
        "a CNAME without its custom hostname is 1014"
    );
    let hostname = runtime.block_on(control.ok(
        Method::POST,
        "/zones/saasprovider.com/custom_hostnames",
        Some(json!({"hostname": ADDED})),
    ));
    assert_eq!(hostname["status"], "active", "{hostname}");
    let added = route(ADDED).expect("the write reached the kernel's routes map");
    assert_eq!(added.hostname.as_deref(), Some(ADDED));
    assert_eq!(added.action, RouteAction::Pass);
    assert!(added.chain_id > 0 && added.chain_id != not_o2o_route.chain_id);
    assert_eq!(route(O2O), Some(o2o_route.clone()), "unchanged routes stay");
    let seen = in_peer(&pair, fetch(classic.clone(), server, ADDED, 1)).unwrap();
    assert_eq!(echoed_header(&seen[0], "host"), vec![ADDED]);
    assert_eq!(echoed_header(&seen[0], "cf-connecting-o2o"), vec!["1"]);
    expect.kernel += 1;
    assert_eq!(counts(&xdp), expect);

    // Strict mode: unknown SNIs are dropped in XDP and never reach the edge.
    xdp.set_unknown_sni(UnknownSni::Drop).unwrap();
    assert_eq!(xdp.status().unwrap().unknown_sni, UnknownSni::Drop);
    let end = in_peer(&pair, handshake(classic.clone(), server, UNKNOWN));
    assert_eq!(end, Handshake::TimedOut);
    assert_eq!(counts(&xdp), expect);
    let status = xdp.status().unwrap();
    assert!(status.attached.unwrap().counters.policy_drops >= 1);
    xdp.set_unknown_sni(UnknownSni::Pass).unwrap();

    // Control calls: a second attach is refused, detach falls back to
    // userspace for every connection, attach (generic mode) syncs from the
    // live state, the written hostname included.
    let refused = xdp.attach(&pair.host, None);
    assert!(matches!(refused, Err(XdpError::Refused(_))), "{refused:?}");
    assert!(xdp.detach().unwrap());
    assert!(!xdp.detach().unwrap());
    assert_detached(&xdp.status().unwrap(), &pair.host);
    assert!(!pin_dir.exists(), "detach removes the pins");
    assert!(xdp.routes().unwrap().is_empty());
    let seen = in_peer(&pair, fetch(classic.clone(), server, O2O, 1)).unwrap();
    assert_eq!(echoed_header(&seen[0], "cf-connecting-o2o"), vec!["1"]);
    expect.userspace += 1;
    assert_eq!(counts(&xdp), expect, "detached is not unseen");
    let unknown = xdp.attach("edge-nope0", None);
    assert!(matches!(unknown, Err(XdpError::Refused(_))), "{unknown:?}");
    assert!(xdp.status().unwrap().attached.is_none());
    assert_eq!(
        xdp.attach(&pair.host, Some(AttachMode::Generic)).unwrap(),
        AttachMode::Generic
    );
    let status = xdp.status().unwrap();
    assert_eq!(status.attached.unwrap().mode, AttachMode::Generic);
    assert_eq!(route(ADDED).map(|r| r.chain_id), Some(added.chain_id));
    in_peer(&pair, fetch(classic.clone(), server, ADDED, 1)).unwrap();
    expect.kernel += 1;
    assert_eq!(counts(&xdp), expect);

    // Shutdown detaches: the interface carries no XDP program afterwards.
    stop.send(()).unwrap();
    runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(30), edge).await })
        .expect("the edge drains")
        .expect("edge task")
        .expect("edge exits cleanly");
    assert_detached(&xdp.status().unwrap(), &pair.host);
    assert!(!pin_dir.exists(), "shutdown removes the pins");
}

/// The control socket attaches, re-configures and detaches XDP on a running
/// edge, reads its routes and counters, and scrapes them as metrics; an
/// HTTP/3 connection's datagrams count to its chain by connection ID.
#[test]
fn the_control_socket_drives_xdp_and_scrapes_its_counters() {
    let pair = VethPair::new("ctl", 43);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let echo = runtime.block_on(spawn_echo()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // No `xdp` section: detached until the API attaches it.
    let config = json!({
        "listen": {"https": SocketAddr::from((pair.host_addr, 0))},
        "state_dir": dir.path().join("state"),
        "state": o2o_state(echo),
    });
    let (bound_tx, bound_rx) = std::sync::mpsc::channel::<Bound>();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let edge = runtime.spawn(serve::run(
        Source::Inline(Box::new(serde_json::from_value(config).unwrap())),
        move |bound| bound_tx.send(bound.clone()).unwrap(),
        async {
            let _ = stopped.await;
        },
    ));
    let Ok(bound) = bound_rx.recv_timeout(Duration::from_secs(30)) else {
        let ended = runtime.block_on(async { tokio::time::timeout(TIMEOUT, edge).await });
        panic!("the edge did not start: {ended:?}");
    };
    let server = bound.https;
    let h3 = bound.h3.expect("HTTP/3 is on by default");
    let ca_pem = std::fs::read(&bound.ca_pem).unwrap();
    let ca = CertificateDer::from_pem_slice(&ca_pem).unwrap();
    let classic = client(&ca, false);
    let control = Control::new(&bound.control);
    let call = |method: Method, path: &str, body: Option<Value>| {
        runtime.block_on(control.ok(method, path, body))
    };
    let scrape = || {
        let answer = runtime
            .block_on(Client::new(&bound.control).call(Method::GET, "/metrics", None))
            .unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(
            answer.content_type.as_deref(),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        String::from_utf8(answer.body.to_vec()).unwrap()
    };

    // Detached at start; nothing XDP in the scrape.
    let status = call(Method::GET, "/xdp", None);
    assert_eq!(status["attached"], Value::Null, "{status}");
    assert_eq!(status["unknown_sni"], "pass");
    assert_eq!(call(Method::GET, "/xdp/routes", None), json!([]));
    assert!(!scrape().contains("edge_xdp_"));

    // Bad bodies are refused whole: nothing attaches, the policy stays.
    let bad = [
        json!({}),
        json!({"interface": pair.host, "colour": "red"}),
        json!({"interface": pair.host, "mode": "fast"}),
        json!({"attached": false, "interface": pair.host}),
        json!({"attached": true}),
        json!({"mode": "native"}),
        json!({"interface": "a/b", "unknown_sni": "drop"}),
        json!({"interface": "edge-nope0", "unknown_sni": "drop"}),
        json!({"unknown_sni": "sometimes"}),
    ];
    for body in bad {
        let (got, envelope) =
            runtime.block_on(control.call(Method::PUT, "/xdp", Some(body.clone())));
        assert_eq!(got, 400, "{body} -> {envelope}");
        assert_eq!(envelope["success"], false, "{envelope}");
        assert!(envelope["errors"][0]["message"].as_str().is_some());
    }
    let (got, _) = runtime.block_on(control.send(Method::PUT, "/xdp", "{not json"));
    assert_eq!(got, 400);
    assert_eq!(call(Method::GET, "/xdp", None), status, "nothing changed");
    assert!(!xdp_on_link(&pair.host));

    // Attach through the API, in generic mode.
    let status = call(
        Method::PUT,
        "/xdp",
        Some(json!({"interface": pair.host, "mode": "generic"})),
    );
    let attached = &status["attached"];
    assert_eq!(attached["interface"], pair.host.as_str(), "{status}");
    assert_eq!(attached["mode"], "generic");
    assert!(attached["program_id"].as_u64().unwrap() > 0);
    assert!(xdp_on_link(&pair.host));
    let again = runtime.block_on(control.call(
        Method::PUT,
        "/xdp",
        Some(json!({"interface": pair.host, "unknown_sni": "drop"})),
    ));
    assert_eq!(again.0, 400, "{}", again.1);
    assert_eq!(call(Method::GET, "/xdp", None)["unknown_sni"], "pass");

    // The routes as the kernel holds them, by SNI hash.
    let hash = |name: &str| format!("{:016x}", sni::hash(name.as_bytes()));
    let route = |name: &str| {
        call(Method::GET, "/xdp/routes", None)
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["sni_hash"] == hash(name).as_str())
            .cloned()
    };
    let o2o = route(O2O).expect("the O2O hostname is routed");
    assert_eq!(o2o["hostname"], O2O);
    let o2o_chain = o2o["chain_id"].as_u64().unwrap();
    assert!(o2o_chain > 0);
    let chain_packets = |status: &Value, chain: u64| {
        status["attached"]["chains"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["chain_id"] == chain)
            .map_or(0, |c| c["packets"].as_u64().unwrap())
    };
    let counter =
        |status: &Value, name: &str| status["attached"]["counters"][name].as_u64().unwrap();

    // A TLS connection moves the counters.
    let before = call(Method::GET, "/xdp", None);
    let seen = in_peer(&pair, fetch(classic.clone(), server, O2O, 2)).unwrap();
    assert_eq!(echoed_header(&seen[0], "cf-connecting-o2o"), vec!["1"]);
    let after = call(Method::GET, "/xdp", None);
    assert!(counter(&after, "client_hellos") > counter(&before, "client_hellos"));
    assert!(chain_packets(&after, o2o_chain) > chain_packets(&before, o2o_chain));
    assert!(
        after["connections"]["kernel"].as_u64().unwrap() >= 1,
        "{after}"
    );

    // A hostname added through the API appears in the kernel's routes.
    assert!(route(ADDED).is_none());
    call(
        Method::POST,
        "/zones/example.com/dns_records",
        Some(
            json!({"type": "CNAME", "name": ADDED, "content": "customers.saasprovider.com", "proxied": true}),
        ),
    );
    let hostname = call(
        Method::POST,
        "/zones/saasprovider.com/custom_hostnames",
        Some(json!({"hostname": ADDED})),
    );
    assert_eq!(hostname["status"], "active", "{hostname}");
    let added = route(ADDED).expect("the write reached the kernel's routes map");
    assert_eq!(added["hostname"], ADDED);
    assert_eq!(added["action"], "pass");

    // Strict mode through the API: an unknown SNI's handshake never gets an
    // answer; back to pass, the edge answers it again (with an alert).
    let status = call(Method::PUT, "/xdp", Some(json!({"unknown_sni": "drop"})));
    assert_eq!(status["unknown_sni"], "drop");
    let drops = counter(&status, "policy_drops");
    let end = in_peer(&pair, handshake(classic.clone(), server, UNKNOWN));
    assert_eq!(end, Handshake::TimedOut);
    assert!(counter(&call(Method::GET, "/xdp", None), "policy_drops") > drops);
    let status = call(Method::PUT, "/xdp", Some(json!({"unknown_sni": "pass"})));
    assert_eq!(status["unknown_sni"], "pass");
    let end = in_peer(&pair, handshake(classic.clone(), server, UNKNOWN));
    assert!(matches!(end, Handshake::Failed(_)), "{end:?}");

    // HTTP/3 over the veth: once the handshake names the host, XDP counts
    // the connection's datagrams to its chain by connection ID (TCP is
    // idle meanwhile, so only QUIC moves the chain's count).
    let before = call(Method::GET, "/xdp", None);
    let requests = 4;
    let answers = in_peer(&pair, h3_gets(&ca_pem, h3, O2O, requests)).unwrap();
    assert!(answers.iter().all(|status| *status == 200), "{answers:?}");
    let after = call(Method::GET, "/xdp", None);
    assert!(
        counter(&after, "quic") > counter(&before, "quic"),
        "{after}"
    );
    let counted = chain_packets(&after, o2o_chain) - chain_packets(&before, o2o_chain);
    assert!(
        counted >= requests as u64,
        "{counted} QUIC packets counted to chain {o2o_chain}: {after}"
    );

    // The scrape: requests per chain and the XDP counters from the maps.
    let text = scrape();
    let requests_line = text
        .lines()
        .find(|l| {
            l.starts_with("edge_requests_total{")
                && l.contains(&format!("hostname=\"{O2O}\""))
                && l.contains("class=\"2xx\"")
        })
        .unwrap_or_else(|| panic!("no 2xx requests of {O2O}:\n{text}"));
    let served: u64 = requests_line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(served >= 2 + requests as u64, "{requests_line}");
    let sample = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
    };
    assert!(sample("edge_xdp_client_hellos_total ") >= 3);
    assert!(sample("edge_xdp_quic_total ") > 0);
    assert!(sample("edge_xdp_policy_drops_total ") > 0);
    assert_eq!(sample("edge_xdp_chain_overflow_packets_total "), 0);
    assert!(
        sample(&format!(
            "edge_xdp_chain_packets_total{{chain_id=\"{o2o_chain}\"}} "
        )) >= chain_packets(&after, o2o_chain)
    );

    // Detach through the API: off the link, no routes, no XDP series.
    let status = call(Method::PUT, "/xdp", Some(json!({"attached": false})));
    assert_eq!(status["attached"], Value::Null);
    assert!(!xdp_on_link(&pair.host));
    assert_eq!(call(Method::GET, "/xdp/routes", None), json!([]));
    assert!(!scrape().contains("edge_xdp_"));
    // Again: detaching a detached edge changes nothing.
    let status = call(Method::PUT, "/xdp", Some(json!({"attached": false})));
    assert_eq!(status["attached"], Value::Null);
    let seen = in_peer(&pair, fetch(classic.clone(), server, ADDED, 1)).unwrap();
    assert_eq!(echoed_header(&seen[0], "host"), vec![ADDED]);

    // Re-attached with a policy: the routes come back from the live state,
    // QUIC connections count in the new program.
    let status = call(
        Method::PUT,
        "/xdp",
        Some(json!({"interface": pair.host, "mode": null, "unknown_sni": "drop"})),
    );
    assert_eq!(status["attached"]["interface"], pair.host.as_str());
    assert_eq!(status["unknown_sni"], "drop");
    assert_eq!(
        route(ADDED).map(|r| r["chain_id"].clone()),
        Some(added["chain_id"].clone())
    );
    let answers = in_peer(&pair, h3_gets(&ca_pem, h3, O2O, requests)).unwrap();
    assert!(answers.iter().all(|status| *status == 200), "{answers:?}");
    let status = call(Method::GET, "/xdp", None);
    assert!(
        chain_packets(&status, o2o_chain) >= requests as u64,
        "{status}"
    );

    stop.send(()).unwrap();
    runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(30), edge).await })
        .expect("the edge drains")
        .expect("edge task")
        .expect("edge exits cleanly");
    assert!(!xdp_on_link(&pair.host), "shutdown detaches");
}

/// `requests` HTTP/3 GETs for `host` on one QUIC connection from an
/// address of the peer namespace: their statuses.
async fn h3_gets(
    ca_pem: &[u8],
    server: SocketAddr,
    host: &str,
    requests: usize,
) -> anyhow::Result<Vec<u16>> {
    let mut endpoint = quinn::Endpoint::client(SocketAddr::from(([0, 0, 0, 0], 0)))?;
    endpoint.set_default_client_config(h3_client_config(ca_pem)?);
    let conn = tokio::time::timeout(TIMEOUT * 5, endpoint.connect(server, host)?).await??;
    let mut client = H3Client::over(endpoint, conn).await?;
    let mut statuses = Vec::new();
    for i in 0..requests {
        let answer = client.get(host, &format!("/quic/{i}")).await?;
        statuses.push(answer.status.as_u16());
    }
    client.conn.close(0u32.into(), b"done");
    let _ = tokio::time::timeout(TIMEOUT, client.endpoint.wait_idle()).await;
    Ok(statuses)
}

fn assert_detached(status: &XdpStatus, interface: &str) {
    assert!(status.attached.is_none(), "{status:?}");
    assert!(
        !xdp_on_link(interface),
        "{interface} still carries an XDP program"
    );
}

/// `ip link` names an attached program's mode on the link's first line
/// (`xdp`, `xdpgeneric`, …).
fn xdp_on_link(interface: &str) -> bool {
    let out = std::process::Command::new("ip")
        .args(["link", "show", "dev", interface])
        .output()
        .unwrap();
    assert!(out.status.success(), "ip link show dev {interface}");
    let out = String::from_utf8_lossy(&out.stdout);
    let first = out.lines().next().unwrap_or_default();
    first
        .split_whitespace()
        .any(|token| token.starts_with("xdp"))
}

/// A bpffs of the test's own on a temporary directory (pins need one),
/// unmounted on drop.
struct BpfFs {
    dir: tempfile::TempDir,
}

impl BpfFs {
    fn mount() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "bpf", "bpf"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(
            mounted.success(),
            "mount -t bpf on {}",
            dir.path().display()
        );
        Self { dir }
    }
}

impl Drop for BpfFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

fn hostnames(state: &mut Value) -> &mut Vec<Value> {
    state["zones"][PROVIDER]["custom_hostnames"]
        .as_array_mut()
        .expect("the provider zone has custom hostnames")
}

/// Runs `future` on a thread inside the peer namespace: its sockets live there.
fn in_peer<T: Send>(pair: &VethPair, future: impl Future<Output = T> + Send) -> T {
    pair.in_peer(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(future)
    })
}

/// `requests` GETs for `host` over one TLS connection (HTTP/1.1, hyper):
/// what the echo origin saw for each.
async fn fetch(
    config: Arc<ClientConfig>,
    server: SocketAddr,
    host: &str,
    requests: usize,
) -> anyhow::Result<Vec<Value>> {
    let mut sender = connect(config, server, host).await?;
    let mut seen = Vec::new();
    for i in 0..requests {
        let (status, body) = get(&mut sender, host, &format!("/request/{i}")).await?;
        anyhow::ensure!(status == 200, "{host}: {status} {body}");
        seen.push(serde_json::from_str(&body)?);
    }
    Ok(seen)
}

/// One GET for `host` on a connection of its own: status and body.
async fn request(
    config: Arc<ClientConfig>,
    server: SocketAddr,
    host: &str,
) -> anyhow::Result<(u16, String)> {
    let mut sender = connect(config, server, host).await?;
    get(&mut sender, host, "/").await
}

async fn connect(
    config: Arc<ClientConfig>,
    server: SocketAddr,
    host: &str,
) -> anyhow::Result<SendRequest<Empty<Bytes>>> {
    let tcp = tokio::time::timeout(TIMEOUT, TcpStream::connect(server)).await??;
    let name = ServerName::try_from(host.to_owned())?;
    let tls =
        tokio::time::timeout(TIMEOUT, TlsConnector::from(config).connect(name, tcp)).await??;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

async fn get(
    sender: &mut SendRequest<Empty<Bytes>>,
    host: &str,
    path: &str,
) -> anyhow::Result<(u16, String)> {
    let request = http::Request::get(path)
        .header(http::header::HOST, host)
        .body(Empty::<Bytes>::new())?;
    let response = tokio::time::timeout(TIMEOUT * 5, sender.send_request(request)).await??;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8(body.to_vec())?))
}
