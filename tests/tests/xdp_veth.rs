//! End to end: the classifier attached to a veth, real rustls clients in a
//! peer network namespace, a rustls server in ours. The blocked host name's
//! handshake must not complete, the routed and unknown ones must, and the
//! maps must say what happened.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_tests::netns::VethPair;
use edge_tests::tls::{TestPki, Versions};
use edge_tests::xdp::classifier;
use edge_userspace::xdp::{RouteAction, RouteTarget, Verdict};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection};

const ROUTED: &str = "shop.example.com";
const UNKNOWN: &str = "unknown.example.org";
const BLOCKED: &str = "blocked.example.com";
const PORT: u16 = 8443;
/// Long enough for a handshake over a veth, short enough to keep the test quick.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

#[test]
fn veth_handshakes_are_classified_and_blocked_ones_never_complete() {
    let pair = VethPair::new("e2e", 40);
    let pki = TestPki::new(&[ROUTED, UNKNOWN, BLOCKED]);
    let mut xdp = classifier();
    xdp.maps.settings.set_tls_port(PORT, true).unwrap();
    xdp.maps
        .routes
        .insert(
            ROUTED,
            RouteTarget {
                chain_id: 21,
                queue: 2,
                action: RouteAction::Pass,
            },
        )
        .unwrap();
    xdp.maps
        .routes
        .insert(
            BLOCKED,
            RouteTarget {
                chain_id: 22,
                queue: 0,
                action: RouteAction::Drop,
            },
        )
        .unwrap();
    let mode = xdp.attach(&pair.host).expect("attach to the veth");
    println!("attached in {mode} mode");

    let server_addr = SocketAddr::from((pair.host_addr, PORT));
    let listener = TcpListener::bind(server_addr).expect("bind the test server");
    let server = {
        let config = pki.server.clone();
        std::thread::spawn(move || serve(listener, config, 3))
    };
    // Classic key shares keep each hello in one segment, so the blocked one is
    // dropped; multi-segment hellos (never dropped) have their own tests.
    let client_config = pki.client(Versions::Tls13, false);
    let results = pair.in_peer(|| {
        [ROUTED, UNKNOWN, BLOCKED].map(|name| handshake(&client_config, server_addr, name))
    });
    let served = server.join().expect("server thread");

    let [routed, unknown, blocked] = results.map(|r| r.expect("TCP connect over the veth"));
    let routed = (routed.0, routed.1.expect("routed handshake completes"));
    let unknown = (
        unknown.0,
        unknown
            .1
            .expect("unknown-SNI handshake completes (policy: pass)"),
    );
    let error = blocked.1.expect_err("blocked handshake must not complete");
    assert!(
        matches!(
            error.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ),
        "blocked handshake should time out, got {error}"
    );
    let (routed, unknown, blocked) = (routed.0, unknown.0, blocked.0);
    assert_eq!(served, 2, "the server completes exactly two handshakes");

    let flows = &xdp.maps.flows;
    assert_eq!(
        flows
            .lookup(routed, server_addr)
            .unwrap()
            .map(|f| f.verdict),
        Some(Verdict::Routed {
            chain_id: 21,
            queue: 2
        })
    );
    assert_eq!(
        flows
            .lookup(unknown, server_addr)
            .unwrap()
            .map(|f| f.verdict),
        Some(Verdict::Unknown)
    );
    assert_eq!(
        flows
            .lookup(blocked, server_addr)
            .unwrap()
            .map(|f| f.verdict),
        Some(Verdict::Blocked { chain_id: 22 })
    );
    let routed_chain = xdp.maps.counters.chain(21).unwrap().unwrap();
    // The hello and the client's later segments (Finished, ACKs) of the flow.
    assert!(routed_chain.packets >= 2, "{routed_chain:?}");
    assert_eq!(routed_chain.drops, 0);
    let blocked_chain = xdp.maps.counters.chain(22).unwrap().unwrap();
    // The hello and its retransmissions, all dropped and counted once (one
    // flow); the client's FIN may follow them (counted, passed).
    assert_eq!(blocked_chain.drops, 1, "{blocked_chain:?}");
    assert!(
        blocked_chain.packets - blocked_chain.drops <= 1,
        "{blocked_chain:?}"
    );
    let global = xdp.maps.counters.global().unwrap();
    assert_eq!(global.client_hellos, 2 + blocked_chain.drops);
    assert_eq!(global.unknown_sni, 1);
    assert_eq!(
        (global.malformed, global.truncated, global.non_tls),
        (0, 0, 0)
    );
    xdp.detach().unwrap();
}

/// Connects to `server` and runs a rustls handshake for `name`: the client's
/// address, and how the handshake ended (a timeout when XDP dropped the hello).
fn handshake(
    config: &Arc<ClientConfig>,
    server: SocketAddr,
    name: &str,
) -> io::Result<(SocketAddr, io::Result<()>)> {
    let mut sock = TcpStream::connect_timeout(&server, HANDSHAKE_TIMEOUT)?;
    sock.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
    sock.set_write_timeout(Some(HANDSHAKE_TIMEOUT))?;
    let local = sock.local_addr()?;
    let name = ServerName::try_from(name.to_string()).expect("host name");
    let mut tls = ClientConnection::new(config.clone(), name).map_err(io::Error::other)?;
    let outcome = (|| {
        for _ in 0..10 {
            if !tls.is_handshaking() {
                return Ok(());
            }
            tls.complete_io(&mut sock)?;
        }
        Err(io::Error::other("handshake did not finish in 10 rounds"))
    })();
    Ok((local, outcome))
}

/// Accepts `expected` connections (or stops at a deadline) and counts the
/// handshakes that complete.
fn serve(listener: TcpListener, config: Arc<ServerConfig>, expected: usize) -> usize {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT * 5;
    let mut handlers = Vec::new();
    while handlers.len() < expected && Instant::now() < deadline {
        match listener.accept() {
            Ok((mut sock, _)) => {
                let config = config.clone();
                handlers.push(std::thread::spawn(move || {
                    sock.set_nonblocking(false)?;
                    sock.set_read_timeout(Some(HANDSHAKE_TIMEOUT * 2))?;
                    let mut tls = ServerConnection::new(config).map_err(io::Error::other)?;
                    for _ in 0..10 {
                        if !tls.is_handshaking() {
                            // Flush the server's last flight.
                            while tls.wants_write() {
                                tls.write_tls(&mut sock)?;
                            }
                            return Ok(());
                        }
                        tls.complete_io(&mut sock)?;
                    }
                    Err(io::Error::other("handshake did not finish"))
                }));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
    handlers
        .into_iter()
        .map(|h| h.join().expect("handler thread"))
        .filter(|r: &io::Result<()>| r.is_ok())
        .count()
}

/// Post-quantum hellos (~1.5 KB) cross the veth as two TCP segments. Over
/// real connections XDP must classify each one, from the first segment when
/// rustls put `server_name` before the cut and from the second otherwise, and
/// never stall a handshake.
#[test]
fn veth_post_quantum_hellos_are_classified_across_segments() {
    const CONNECTIONS: usize = 48;
    const PQ_PORT: u16 = 8444;
    let pair = VethPair::new("pq", 41);
    let pki = TestPki::new(&[ROUTED]);
    let mut xdp = classifier();
    xdp.maps.settings.set_tls_port(PQ_PORT, true).unwrap();
    xdp.maps
        .routes
        .insert(
            ROUTED,
            RouteTarget {
                chain_id: 31,
                queue: 4,
                action: RouteAction::Pass,
            },
        )
        .unwrap();
    xdp.attach(&pair.host).expect("attach to the veth");

    let server_addr = SocketAddr::from((pair.host_addr, PQ_PORT));
    let listener = TcpListener::bind(server_addr).expect("bind the test server");
    let server = {
        let config = pki.server.clone();
        std::thread::spawn(move || serve(listener, config, CONNECTIONS))
    };
    let client_config = pki.client(Versions::Tls13, true);
    let clients = pair.in_peer(|| {
        (0..CONNECTIONS)
            .map(|_| {
                let (addr, outcome) =
                    handshake(&client_config, server_addr, ROUTED).expect("TCP connect");
                outcome.expect("post-quantum handshake completes");
                addr
            })
            .collect::<Vec<_>>()
    });
    assert_eq!(server.join().expect("server thread"), CONNECTIONS);

    let global = xdp.maps.counters.global().unwrap();
    assert_eq!(global.multi_segment, CONNECTIONS as u64, "{global:?}");
    let mut later = 0;
    let mut unparsed = 0;
    for client in &clients {
        let info = xdp
            .maps
            .flows
            .lookup(*client, server_addr)
            .unwrap()
            .expect("flow");
        match info.verdict {
            Verdict::Routed {
                chain_id: 31,
                queue: 4,
            } => later += u64::from(info.from_later_segment),
            // The server_name header cut by the segment boundary: passed as is.
            Verdict::Unparsed => unparsed += 1,
            other => panic!("{client}: {other:?}"),
        }
    }
    assert_eq!(global.later_segment, later);
    assert_eq!(global.truncated, unparsed);
    assert_eq!(global.client_hellos, CONNECTIONS as u64 - unparsed);
    assert_eq!(global.non_tls, 0, "{global:?}");
    // rustls shuffles extensions, so some hellos put the SNI after the cut;
    // 48 connections without one would mean the resume path is never taken.
    assert!(
        later > 0,
        "no hello was classified from its second segment: {global:?}"
    );
    // A cut inside the 5-byte server_name header is not resumed (rare).
    assert!(
        unparsed <= CONNECTIONS as u64 / 6,
        "{unparsed} of {CONNECTIONS} unparsed: {global:?}"
    );
}
