//! Blocking through the control socket reaches XDP: `edge serve` attached to
//! a veth, clients in the peer namespace. A custom hostname patched to
//! `blocked` gets a drop route in the kernel and its ClientHellos never reach
//! the edge; lifting the block takes the drop away again. A write that would
//! need more routes than the configured `routes_max` is refused whole.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use edge_common::sni;
use edge_tests::chain::o2o_state;
use edge_tests::control::Control;
use edge_tests::handshake::{Handshake, client, handshake};
use edge_tests::netns::VethPair;
use edge_tests::proxy::spawn_echo;
use edge_userspace::chain::Snapshot;
use edge_userspace::serve::{self, Bound, Source};
use edge_userspace::state::State;
use edge_userspace::xdp::status::KernelRoute;
use edge_userspace::xdp::{RouteAction, XdpRuntime, wanted};
use http::{Method, StatusCode};
use rustls::ClientConfig;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};

/// Active in the seed state: its handshakes must keep completing.
const ACTIVE: &str = "mystore.example.com";
const BLOCKED: &str = "blockme.example.com";
const CNAME_TARGET: &str = "customers.saasprovider.com";
/// Long enough for a handshake over a veth, short enough to keep the test quick.
const TIMEOUT: Duration = Duration::from_secs(2);
/// `cargo test` runs the tests of one file in parallel: one subnet each.
const BLOCK_SUBNET: u8 = 43;
const FULL_SUBNET: u8 = 44;

#[test]
fn a_blocked_hostname_is_dropped_by_xdp_until_the_block_is_lifted() {
    let edge = Edge::start("blk", BLOCK_SUBNET, None);
    let (ca, server) = (edge.ca(), edge.bound.https);
    let client = client(&ca, false);
    let route = |name: &str| route(&edge.bound.xdp, name);

    // Created through the socket: a proxied CNAME on this edge to the
    // provider, so the custom hostname is active at once and handshakes.
    let hostname = edge.add_hostname(BLOCKED);
    assert_eq!(hostname["status"], "active", "{hostname}");
    let id = hostname["id"].as_str().unwrap().to_owned();
    let path = format!("/zones/saasprovider.com/custom_hostnames/{id}");
    assert_eq!(route(BLOCKED).map(|r| r.action), Some(RouteAction::Pass));
    let end = edge.handshake(client.clone(), server, BLOCKED);
    assert_eq!(end, Handshake::Completed);

    // Blocked: a drop route in the kernel, the hello never answered, while
    // an active hostname on the same listener still handshakes.
    let patched = edge.block_on(edge.control.ok(
        Method::PATCH,
        &path,
        Some(json!({"status": "blocked"})),
    ));
    assert_eq!(patched["status"], "blocked", "{patched}");
    assert_eq!(
        route(BLOCKED).map(|r| (r.chain_id, r.action)),
        Some((0, RouteAction::Drop))
    );
    let dropped_before = drops(&edge.bound.xdp);
    let end = edge.handshake(client.clone(), server, BLOCKED);
    assert_eq!(end, Handshake::TimedOut);
    assert!(
        drops(&edge.bound.xdp) > dropped_before,
        "XDP counted no drop for the blocked hello"
    );
    let end = edge.handshake(client.clone(), server, ACTIVE);
    assert_eq!(end, Handshake::Completed);

    // Lifted: back to pending, and the CNAME on this edge validates it again
    // at once, so it is routed and handshakes as before.
    let patched = edge.block_on(edge.control.ok(
        Method::PATCH,
        &path,
        Some(json!({"status": "pending"})),
    ));
    assert_eq!(patched["status"], "active", "{patched}");
    assert_eq!(route(BLOCKED).map(|r| r.action), Some(RouteAction::Pass));
    let end = edge.handshake(client.clone(), server, BLOCKED);
    assert_eq!(end, Handshake::Completed);
    edge.stop();
}

#[test]
fn a_write_beyond_routes_max_is_refused_and_changes_nothing() {
    // Room for exactly one more route than the seed state needs.
    let seed = state_routes(&o2o_state(SocketAddr::from(([127, 0, 0, 1], 1))));
    let max = u32::try_from(seed + 1).unwrap();
    let edge = Edge::start("full", FULL_SUBNET, Some(max));
    let xdp = &edge.bound.xdp;
    let attached = xdp.status().unwrap().attached.expect("attached at start");
    assert_eq!(attached.maps.routes.max_entries, max);
    assert_eq!(xdp.routes().unwrap().len(), seed);

    // The last free entry is taken; blocking it changes its action, not the count.
    let first = edge.add_hostname("first.example.com");
    assert_eq!(first["status"], "active", "{first}");
    assert_eq!(xdp.routes().unwrap().len(), seed + 1);
    let path = format!(
        "/zones/saasprovider.com/custom_hostnames/{}",
        first["id"].as_str().unwrap()
    );
    edge.block_on(
        edge.control
            .ok(Method::PATCH, &path, Some(json!({"status": "blocked"}))),
    );
    assert_eq!(
        route(xdp, "first.example.com").map(|r| r.action),
        Some(RouteAction::Drop)
    );

    // One more route does not fit: refused with the limit named, and
    // neither the state nor the kernel map changed.
    let kernel_before = xdp.routes().unwrap();
    let second = "second.example.com";
    edge.block_on(edge.control.ok(
        Method::POST,
        "/zones/example.com/dns_records",
        Some(json!({"type": "CNAME", "name": second, "content": CNAME_TARGET, "proxied": true})),
    ));
    let message = edge.block_on(edge.control.refused(
        Method::POST,
        "/zones/saasprovider.com/custom_hostnames",
        Some(json!({"hostname": second})),
        StatusCode::BAD_REQUEST,
        1004,
        "routes_max",
    ));
    assert!(message.contains(&format!("({max},")), "{message}");
    let listed = edge.block_on(edge.control.ok(
        Method::GET,
        &format!("/zones/saasprovider.com/custom_hostnames?hostname={second}"),
        None,
    ));
    assert_eq!(listed, json!([]));
    assert_eq!(xdp.routes().unwrap(), kernel_before);
    assert!(route(xdp, second).is_none());
    edge.stop();
}

/// An edge serving the O2O seed state on a veth of its own, XDP attached.
/// Fields drop in order after [`Drop::drop`] detached XDP: the runtime (and
/// the edge in it) first, the veth pair last.
struct Edge {
    runtime: tokio::runtime::Runtime,
    bound: Bound,
    control: Control,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
    pair: VethPair,
}

impl Edge {
    fn start(tag: &str, subnet: u8, routes_max: Option<u32>) -> Edge {
        let pair = VethPair::new(tag, subnet);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let echo = runtime.block_on(spawn_echo()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("edge.json");
        let mut xdp = json!({"interface": pair.host});
        if let Some(max) = routes_max {
            xdp["routes_max"] = json!(max);
        }
        let config = json!({
            "listen": {"https": SocketAddr::from((pair.host_addr, 0))},
            "state_dir": dir.path().join("state"),
            "xdp": xdp,
            "state": o2o_state(echo),
        });
        std::fs::write(&config_path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        let (bound_tx, bound_rx) = std::sync::mpsc::channel::<Bound>();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = runtime.spawn(serve::run(
            Source::File(config_path),
            move |bound| bound_tx.send(bound.clone()).unwrap(),
            async {
                let _ = stopped.await;
            },
        ));
        let Ok(bound) = bound_rx.recv_timeout(Duration::from_secs(30)) else {
            let ended = runtime.block_on(async { tokio::time::timeout(TIMEOUT, task).await });
            panic!("the edge did not start with XDP attached to the veth: {ended:?}");
        };
        Edge {
            control: Control::new(&bound.control),
            runtime,
            bound,
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
            pair,
        }
    }

    fn block_on<T>(&self, future: impl Future<Output = T>) -> T {
        self.runtime.block_on(future)
    }

    fn ca(&self) -> CertificateDer<'static> {
        CertificateDer::from_pem_file(&self.bound.ca_pem).unwrap()
    }

    /// A proxied CNAME to the provider in the customer's zone, then the
    /// custom hostname (active at once: its DNS is on this edge).
    fn add_hostname(&self, name: &str) -> Value {
        self.block_on(self.control.ok(
            Method::POST,
            "/zones/example.com/dns_records",
            Some(json!({"type": "CNAME", "name": name, "content": CNAME_TARGET, "proxied": true})),
        ));
        self.block_on(self.control.ok(
            Method::POST,
            "/zones/saasprovider.com/custom_hostnames",
            Some(json!({"hostname": name})),
        ))
    }

    /// A TLS handshake for `host` from the peer namespace (its packets cross
    /// the veth, where XDP runs).
    fn handshake(&self, config: Arc<ClientConfig>, server: SocketAddr, host: &str) -> Handshake {
        self.pair.in_peer(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(handshake(config, server, host))
        })
    }

    /// Shuts the edge down and checks that it exits cleanly.
    fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        let task = self.task.take().unwrap();
        self.runtime
            .block_on(async { tokio::time::timeout(Duration::from_secs(30), task).await })
            .expect("the edge drains")
            .expect("edge task")
            .expect("edge exits cleanly");
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        // A failed test still detaches before the veth goes away.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Err(e) = self.bound.xdp.detach() {
            eprintln!("XDP detach on cleanup failed: {e:#}");
        }
    }
}

/// How many routes the kernel map needs for `state`.
fn state_routes(state: &Value) -> usize {
    let state: State = serde_json::from_value(state.clone()).unwrap();
    wanted(&Snapshot::build(&state)).len()
}

fn route(xdp: &XdpRuntime, name: &str) -> Option<KernelRoute> {
    xdp.routes()
        .unwrap()
        .into_iter()
        .find(|r| r.sni_hash == sni::hash(name.as_bytes()))
}

/// ClientHellos XDP dropped for blocked routes (the blocked chain, id 0).
fn drops(xdp: &XdpRuntime) -> u64 {
    let status = xdp.status().unwrap();
    let attached = status.attached.expect("attached");
    attached
        .chains
        .iter()
        .find(|c| c.chain_id == 0)
        .map_or(0, |c| c.drops)
}
