//! One tenant's flood kept from another, measured: tenant B's TLS handshakes per second and
//! their latency (p50, p99) while tenant A is flooded with valid-hostname handshakes, in one
//! run of the real `edge` binary, in three phases per round:
//!
//! 1. `baseline`: tenant B alone;
//! 2. `flood`: tenant B beside A's flood, A without a budget;
//! 3. `flood+budget`: the same, with A's custom hostname at `new_connections_per_second =
//!    BUDGET` (set through the control socket, so the edge and its caches are the same).
//!
//! Tenant B is `mystore.example.com` (the O2O chain), A `shop.othercustomer.net` (its own
//! chain). B runs `B_CONNECTIONS` loops of connect + full tokio-rustls handshake + close from
//! 127.0.0.1, on a runtime of its own. The flood runs `FLOOD_CONNECTIONS` loops against A
//! from 127.0.0.2 (its own address, so the per-address cap is not what stops it) on another
//! runtime: connect, send one real rustls ClientHello for A (made once and replayed, as a
//! flood does: the attacker spends no key exchange of its own), read the edge's first flight
//! (the edge has then signed: a completed handshake, as far as the edge's cost goes) or its
//! close (refused), reset. Every phase lasts `PHASE_SECS` and the run
//! `ROUNDS` rounds (phases interleaved, so all three see the same machine), so the whole
//! bench is bounded: 3 × ROUNDS × PHASE_SECS plus start-up (about 70 s with the defaults).
//! Run it with `cargo xtask bench-tenants`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use edge_tests::binary::EdgeProcess;
use edge_tests::chain::o2o_state;
use edge_tests::control::Control;
use edge_tests::hello::client_hello;
use edge_tests::proxy::spawn_echo;
use http::Method;
use rustls::ClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio_rustls::TlsConnector;

const TENANT_A: &str = "shop.othercustomer.net";
const TENANT_B: &str = "mystore.example.com";
const LEGIT: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
/// No handshake may take longer than this (a stuck one counts as failed).
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(5);

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Baseline,
    Flood,
    FloodBudget,
}

impl Phase {
    const ALL: [Phase; 3] = [Phase::Baseline, Phase::Flood, Phase::FloodBudget];

    fn name(self) -> &'static str {
        match self {
            Phase::Baseline => "baseline (B alone)",
            Phase::Flood => "A flooded, no budget",
            Phase::FloodBudget => "A flooded, budget on A",
        }
    }
}

#[derive(Default)]
struct Tally {
    /// Tenant B's handshake latencies.
    latencies: Vec<Duration>,
    b_failed: u64,
    a_completed: u64,
    a_refused: u64,
    secs: f64,
}

fn main() -> Result<()> {
    let phase_secs = knob("PHASE_SECS", 8).clamp(1, 60);
    let rounds = knob("ROUNDS", 3).clamp(1, 5);
    let b_connections = knob("B_CONNECTIONS", 4).clamp(1, 64) as usize;
    let flood_connections = knob("FLOOD_CONNECTIONS", 64).clamp(1, 200) as usize;
    let budget = knob("BUDGET", 100).clamp(1, 1_000_000);
    // Tenant B's client and the flood on runtimes of their own: the flood's tasks must not
    // queue in front of B's on the client side, only compete where a real flood does.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let flood_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let flood_handle = flood_runtime.handle().clone();
    runtime.block_on(async move {
        let echo = spawn_echo().await?;
        // Loose connection caps: the bench measures the budget, not the listener's caps.
        let limits = json!({"max_connections": 100_000, "max_connections_per_address": 100_000});
        let edge = tokio::task::spawn_blocking(move || {
            EdgeProcess::start(o2o_state(echo), limits, json!({}))
        })
        .await??;
        let control = Control::new(&edge.control);
        let ca = CertificateDer::from_pem_slice(&edge.ca_pem)?;
        let config = client_config(&ca);
        let hello = Arc::new(client_hello(config.clone(), TENANT_A).0);
        let mut tallies: Vec<Tally> = Phase::ALL.iter().map(|_| Tally::default()).collect();
        for round in 0..rounds {
            for (i, phase) in Phase::ALL.into_iter().enumerate() {
                let admission = match phase {
                    Phase::FloodBudget => json!({"new_connections_per_second": budget}),
                    _ => json!(null),
                };
                control
                    .ok(
                        Method::PATCH,
                        "/zones/zone-provider/custom_hostnames/ch2",
                        Some(json!({"admission": admission})),
                    )
                    .await;
                let flood = phase != Phase::Baseline;
                let tally = run_phase(
                    &config,
                    &hello,
                    &flood_handle,
                    edge.https,
                    Duration::from_secs(phase_secs),
                    b_connections,
                    if flood { flood_connections } else { 0 },
                )
                .await;
                eprintln!(
                    "round {round} {:<24} B {:>7.0} handshakes/s p99 {:>6.2} ms, A {:>7.0} completed/s {:>7.0} refused/s",
                    phase.name(),
                    tally.latencies.len() as f64 / tally.secs,
                    percentile(&tally.latencies, 0.99).as_secs_f64() * 1e3,
                    tally.a_completed as f64 / tally.secs,
                    tally.a_refused as f64 / tally.secs,
                );
                let total = &mut tallies[i];
                total.latencies.extend(tally.latencies);
                total.b_failed += tally.b_failed;
                total.a_completed += tally.a_completed;
                total.a_refused += tally.a_refused;
                total.secs += tally.secs;
            }
        }
        let refused = edge
            .metric(
                "edge_admission_refused_total",
                &format!(r#"hostname="{TENANT_A}",reason="new_connections""#),
            )
            .await;
        let table = report(&tallies, budget, phase_secs, rounds, b_connections, flood_connections);
        println!("{table}");
        println!("edge_admission_refused_total for A at the end: {refused}");
        let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-tenants");
        std::fs::create_dir_all(&out)?;
        std::fs::write(out.join("results.md"), &table)?;
        ensure!(
            tallies.iter().all(|t| !t.latencies.is_empty()),
            "tenant B completed no handshake in some phase"
        );
        Ok(())
    })
}

fn client_config(ca: &CertificateDer<'static>) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let mut config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // A new session every time: each handshake is a full one (what a flood costs).
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

/// One full handshake from `local` to `server` for `host`: `Some(latency)` when it completed.
async fn handshake(
    config: &Arc<ClientConfig>,
    local: IpAddr,
    server: SocketAddr,
    host: &'static str,
) -> Option<Duration> {
    let started = Instant::now();
    let attempt = async {
        let socket = TcpSocket::new_v4().ok()?;
        socket.bind(SocketAddr::new(local, 0)).ok()?;
        let tcp = socket.connect(server).await.ok()?;
        // Closed with a reset: no TIME_WAIT left on either side by the bench's thousands.
        socket2::SockRef::from(&tcp)
            .set_linger(Some(Duration::ZERO))
            .ok()?;
        let name = ServerName::try_from(host).ok()?;
        TlsConnector::from(config.clone())
            .connect(name, tcp)
            .await
            .ok()
    };
    tokio::time::timeout(HANDSHAKE_LIMIT, attempt)
        .await
        .ok()
        .flatten()
        .map(|_| started.elapsed())
}

/// One replayed hello from `local`: `true` when the edge answered it with its first flight
/// (it ran the handshake), `false` when it closed the connection (refused).
async fn replay(hello: &[u8], local: IpAddr, server: SocketAddr) -> bool {
    let attempt = async {
        let socket = TcpSocket::new_v4().ok()?;
        socket.bind(SocketAddr::new(local, 0)).ok()?;
        let mut tcp = socket.connect(server).await.ok()?;
        socket2::SockRef::from(&tcp)
            .set_linger(Some(Duration::ZERO))
            .ok()?;
        tcp.write_all(hello).await.ok()?;
        let mut first = [0u8; 1024];
        Some(tcp.read(&mut first).await.unwrap_or(0) > 0)
    };
    tokio::time::timeout(HANDSHAKE_LIMIT, attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

#[allow(clippy::too_many_arguments)]
async fn run_phase(
    config: &Arc<ClientConfig>,
    hello: &Arc<Vec<u8>>,
    flood_runtime: &tokio::runtime::Handle,
    server: SocketAddr,
    length: Duration,
    b_connections: usize,
    flood_connections: usize,
) -> Tally {
    let stop = Arc::new(AtomicBool::new(false));
    let a_completed = Arc::new(AtomicU64::new(0));
    let a_refused = Arc::new(AtomicU64::new(0));
    let mut flood = Vec::new();
    for _ in 0..flood_connections {
        let (hello, stop) = (hello.clone(), stop.clone());
        let (completed, refused) = (a_completed.clone(), a_refused.clone());
        flood.push(flood_runtime.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match replay(&hello, ATTACKER, server).await {
                    true => completed.fetch_add(1, Ordering::Relaxed),
                    false => refused.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    let started = Instant::now();
    let mut legit = Vec::new();
    for _ in 0..b_connections {
        let (config, stop) = (config.clone(), stop.clone());
        legit.push(tokio::spawn(async move {
            let (mut latencies, mut failed) = (Vec::new(), 0);
            while !stop.load(Ordering::Relaxed) {
                match handshake(&config, LEGIT, server, TENANT_B).await {
                    Some(latency) => latencies.push(latency),
                    None => failed += 1,
                }
            }
            (latencies, failed)
        }));
    }
    tokio::time::sleep(length).await;
    stop.store(true, Ordering::Relaxed);
    let mut tally = Tally::default();
    for task in legit {
        let (latencies, failed) = task.await.unwrap();
        tally.latencies.extend(latencies);
        tally.b_failed += failed;
    }
    tally.secs = started.elapsed().as_secs_f64();
    for task in flood {
        task.await.unwrap();
    }
    tally.a_completed = a_completed.load(Ordering::Relaxed);
    tally.a_refused = a_refused.load(Ordering::Relaxed);
    tally
}

fn percentile(latencies: &[Duration], p: f64) -> Duration {
    let mut sorted = latencies.to_vec();
    sorted.sort_unstable();
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

fn report(
    tallies: &[Tally],
    budget: u64,
    phase_secs: u64,
    rounds: u64,
    b_connections: usize,
    flood_connections: usize,
) -> String {
    let base = &tallies[0];
    let base_rate = base.latencies.len() as f64 / base.secs;
    let base_p99 = percentile(&base.latencies, 0.99).as_secs_f64();
    let mut table = format!(
        "{rounds} rounds × {phase_secs} s per phase; B: {b_connections} handshake loops; \
         flood: {flood_connections} handshake loops on A; budget {budget}/s\n\n\
         | phase | B handshakes/s | B p50 ms | B p99 ms | B rate / baseline | B p99 / baseline | B failed | A completed/s | A refused/s |\n\
         |---|---|---|---|---|---|---|---|---|\n"
    );
    for (phase, tally) in Phase::ALL.iter().zip(tallies) {
        let rate = tally.latencies.len() as f64 / tally.secs;
        let p99 = percentile(&tally.latencies, 0.99).as_secs_f64();
        table.push_str(&format!(
            "| {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {:.0} | {:.0} |\n",
            phase.name(),
            rate,
            percentile(&tally.latencies, 0.5).as_secs_f64() * 1e3,
            p99 * 1e3,
            rate / base_rate,
            p99 / base_p99,
            tally.b_failed,
            tally.a_completed as f64 / tally.secs,
            tally.a_refused as f64 / tally.secs,
        ));
    }
    table
}
