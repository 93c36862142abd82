//! HTTP/3 vs HTTP/2 through the same O2O chain, in one run: requests per second and latency
//! percentiles of a small, bounded load generator of our own (quinn + h3, hyper + h2 over
//! tokio-rustls), alternating rounds so that both protocols see the same machine load.
//!
//! The edge (`serve::run` with the demo's O2O chain, in-process echo origin) runs on its own
//! runtime with `EDGE_WORKERS` threads; the load generator on another with `LOAD_WORKERS`.
//! Run it with `cargo xtask bench-h3` (knobs: REQUESTS, CONNECTIONS, STREAMS, ROUNDS, BODY).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::{Buf, Bytes};
use edge_tests::chain::{RunningEdge, o2o_state};
use edge_tests::h3::H3Client;
use edge_tests::proxy::spawn_echo;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

const HOST: &str = "mystore.example.com";
/// No round may run longer than this, whatever the knobs say.
const ROUND_LIMIT: Duration = Duration::from_secs(120);

#[derive(Clone, Copy)]
struct Knobs {
    requests: u64,
    connections: usize,
    streams: usize,
    rounds: usize,
    /// Response body bytes (`/bytes/N` from the echo origin); 0: the echo's JSON (~1 KB).
    body: u64,
}

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Proto {
    H2,
    H3,
}

struct Round {
    rps: f64,
    p50: Duration,
    p99: Duration,
}

fn main() -> Result<()> {
    let knobs = Knobs {
        requests: knob("REQUESTS", 20_000),
        connections: knob("CONNECTIONS", 4) as usize,
        streams: knob("STREAMS", 16) as usize,
        rounds: knob("ROUNDS", 3) as usize,
        body: knob("BODY", 0),
    };
    // Everything else in the harness's argv (e.g. `--bench`) is not ours.
    let edge_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(knob("EDGE_WORKERS", 1) as usize)
        .thread_name("edge")
        .enable_all()
        .build()?;
    let load_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(knob("LOAD_WORKERS", 1) as usize)
        .thread_name("load")
        .enable_all()
        .build()?;
    let edge = edge_rt.block_on(async {
        let echo = spawn_echo().await?;
        RunningEdge::start(o2o_state(echo)).await
    })?;
    let h3 = edge.h3.context("the edge serves HTTP/3")?;
    let path = if knobs.body == 0 {
        "/bench".to_owned()
    } else {
        format!("/bytes/{}", knobs.body)
    };
    let mut results: Vec<(Proto, Round)> = Vec::new();
    load_rt.block_on(async {
        // Warm-up: connections, TLS session caches, the origin pool.
        for proto in [Proto::H2, Proto::H3] {
            let warm = Knobs {
                requests: 500,
                ..knobs
            };
            round(proto, &edge, h3, &path, warm).await?;
        }
        for _ in 0..knobs.rounds {
            for proto in [Proto::H2, Proto::H3] {
                let r = round(proto, &edge, h3, &path, knobs).await?;
                eprintln!(
                    "{proto:?}: {:.0} req/s, p50 {:?}, p99 {:?}",
                    r.rps, r.p50, r.p99
                );
                results.push((proto, r));
            }
        }
        anyhow::Ok(())
    })?;
    print_table(&results, knobs);
    edge_rt.block_on(edge.stop())?;
    Ok(())
}

/// One bounded round: `requests` GETs of `path` over `connections` × `streams` workers.
async fn round(
    proto: Proto,
    edge: &RunningEdge,
    h3: SocketAddr,
    path: &str,
    knobs: Knobs,
) -> Result<Round> {
    let issued = Arc::new(AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    let started = Instant::now();
    for _ in 0..knobs.connections {
        let url = format!("https://{HOST}{path}");
        match proto {
            Proto::H2 => {
                let send = h2_connect(edge.https, &edge.ca_pem).await?;
                for _ in 0..knobs.streams {
                    let (mut send, url, issued) = (send.clone(), url.clone(), issued.clone());
                    workers.spawn(async move {
                        let mut latencies = Vec::new();
                        while issued.fetch_add(1, Ordering::Relaxed) < knobs.requests {
                            let req = Request::get(&url).body(Empty::<Bytes>::new())?;
                            let start = Instant::now();
                            send.ready().await?;
                            let response = send.send_request(req).await?;
                            anyhow::ensure!(response.status() == 200, "{}", response.status());
                            let mut body = response.into_body();
                            while let Some(frame) = body.frame().await {
                                frame?;
                            }
                            latencies.push(start.elapsed());
                        }
                        anyhow::Ok(latencies)
                    });
                }
            }
            Proto::H3 => {
                let client = H3Client::connect(h3, HOST, &edge.ca_pem).await?;
                let client = Arc::new(client);
                for _ in 0..knobs.streams {
                    let (client, url, issued) = (client.clone(), url.clone(), issued.clone());
                    workers.spawn(async move {
                        let mut send = client.send.clone();
                        let mut latencies = Vec::new();
                        while issued.fetch_add(1, Ordering::Relaxed) < knobs.requests {
                            let req = Request::get(&url).body(())?;
                            let start = Instant::now();
                            let mut stream = send.send_request(req).await?;
                            stream.finish().await?;
                            let response = stream.recv_response().await?;
                            anyhow::ensure!(response.status() == 200, "{}", response.status());
                            while let Some(mut chunk) = stream.recv_data().await? {
                                chunk.advance(chunk.remaining());
                            }
                            latencies.push(start.elapsed());
                        }
                        anyhow::Ok(latencies)
                    });
                }
            }
        }
    }
    let mut latencies = Vec::with_capacity(knobs.requests as usize);
    let joined = tokio::time::timeout(ROUND_LIMIT, async {
        while let Some(worker) = workers.join_next().await {
            latencies.extend(worker??);
        }
        anyhow::Ok(())
    })
    .await;
    joined.context("a round ran past its time limit")??;
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Ok(Round {
        rps: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
    })
}

type H2Send = hyper::client::conn::http2::SendRequest<Empty<Bytes>>;

async fn h2_connect(addr: SocketAddr, ca_pem: &[u8]) -> Result<H2Send> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert?)?;
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])?
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(ServerName::try_from(HOST)?, tcp)
        .await?;
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(send)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn print_table(results: &[(Proto, Round)], knobs: Knobs) {
    let of = |proto: Proto, pick: fn(&Round) -> f64| {
        median(
            results
                .iter()
                .filter(|(p, _)| *p == proto)
                .map(|(_, r)| pick(r))
                .collect(),
        )
    };
    let rows = [
        (
            "requests/s",
            of(Proto::H2, |r| r.rps),
            of(Proto::H3, |r| r.rps),
        ),
        (
            "p50 latency (ms)",
            of(Proto::H2, |r| r.p50.as_secs_f64() * 1e3),
            of(Proto::H3, |r| r.p50.as_secs_f64() * 1e3),
        ),
        (
            "p99 latency (ms)",
            of(Proto::H2, |r| r.p99.as_secs_f64() * 1e3),
            of(Proto::H3, |r| r.p99.as_secs_f64() * 1e3),
        ),
    ];
    println!(
        "\n{} requests per round, {} connections x {} streams, body {}, median of {} rounds\n",
        knobs.requests,
        knobs.connections,
        knobs.streams,
        if knobs.body == 0 {
            "echo JSON".to_owned()
        } else {
            format!("{} bytes", knobs.body)
        },
        knobs.rounds
    );
    println!("| measure | HTTP/2 (TCP) | HTTP/3 (QUIC) | HTTP/3 / HTTP/2 |");
    println!("|---|---|---|---|");
    for (name, h2, h3) in rows {
        println!("| {name} | {h2:.2} | {h3:.2} | {:.2} |", h3 / h2);
    }
}
