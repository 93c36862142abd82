//! Control-socket writes end to end, on an in-process edge whose state
//! directory is on the workspace's disk (fsync must reach a real device):
//!
//! - writes/s: sequential `POST /zones/{zone}/dns_records`, each answered
//!   only after validation, compilation, the durable redb commit and the
//!   switch of routing and certificates;
//! - write to served: a proxied record created through the socket, then the
//!   first plain-HTTP request for its name through the edge to the origin.
//!
//! Both at several state sizes (extra pending custom hostnames in the
//! provider zone), since every write rebuilds the routing from the whole state.
//!
//! Run: `cargo xtask bench-control` (or `cargo bench -p edge-userspace --bench
//! control`); `EDGE_BENCH_HOSTNAMES=0,10000,100000` picks the sizes.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edge_userspace::config::Config;
use edge_userspace::control::client::Client;
use edge_userspace::serve::{self, Source};
use http::Method;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

const WRITES: usize = 200;
const SERVED: usize = 50;

fn state(echo_port: u16, extra_hostnames: usize) -> Value {
    let mut state: Value = serde_json::from_str(edge_userspace::config::DEMO).unwrap();
    let mut state = state["state"].take();
    state["zones"][1]["zone"]["rulesets"]["http_request_origin"]["rules"][0]["action_parameters"]
        ["origin"]["port"] = json!(echo_port);
    let hostnames = state["zones"][1]["custom_hostnames"]
        .as_array_mut()
        .unwrap();
    for i in 0..extra_hostnames {
        hostnames.push(json!({
            "id": format!("{i:032x}"),
            "hostname": format!("shop{i}.customer{}.test", i / 10),
            "status": "pending",
        }));
    }
    state
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn summary(mut samples: Vec<Duration>) -> String {
    samples.sort();
    format!(
        "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&samples, 0.5).as_secs_f64() * 1e3,
        percentile(&samples, 0.99).as_secs_f64() * 1e3,
        samples.last().unwrap().as_secs_f64() * 1e3
    )
}

/// One plain HTTP/1.1 request with `host` to the edge; its status.
async fn get(edge: SocketAddr, host: &str) -> u16 {
    let stream = TcpStream::connect(edge).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let request = http::Request::get("/")
        .header(http::header::HOST, host)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    response.into_body().collect().await.unwrap();
    status
}

async fn run(dir: &Path, extra_hostnames: usize) {
    let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo_port = echo.local_addr().unwrap().port();
    tokio::spawn(edge_userspace::echo::serve(echo));
    let config = json!({
        "listen": {"https": "127.0.0.1:0", "http": "127.0.0.1:0"},
        "state_dir": dir,
        "state": state(echo_port, extra_hostnames),
    });
    let config = Config::parse(&config.to_string()).unwrap();
    let (bound_tx, bound_rx) = oneshot::channel();
    let (stop, stopped) = oneshot::channel::<()>();
    let started = Instant::now();
    let edge = tokio::spawn(serve::run(
        Source::Inline(Box::new(config)),
        move |bound| {
            let _ = bound_tx.send(bound.clone());
        },
        async {
            let _ = stopped.await;
        },
    ));
    let bound = bound_rx.await.expect("the edge started");
    let start_time = started.elapsed();
    let client = Client::new(&bound.control);
    let http = bound.http.unwrap();

    let mut latencies = Vec::with_capacity(WRITES);
    let began = Instant::now();
    for i in 0..WRITES {
        let t = Instant::now();
        client
            .result(
                Method::POST,
                "/zones/example.com/dns_records",
                Some(&json!({"type": "A", "name": format!("w{i}"), "content": "192.0.2.1", "proxied": true})),
            )
            .await
            .unwrap();
        latencies.push(t.elapsed());
    }
    let writes_per_s = WRITES as f64 / began.elapsed().as_secs_f64();

    let mut served = Vec::with_capacity(SERVED);
    for i in 0..SERVED {
        let host = format!("live{i}.saasprovider.com");
        assert_eq!(
            get(http, &host).await,
            530,
            "{host} is unknown before the write"
        );
        let t = Instant::now();
        client
            .result(
                Method::POST,
                "/zones/saasprovider.com/dns_records",
                Some(&json!({"type": "A", "name": host, "content": "127.0.0.1", "proxied": true})),
            )
            .await
            .unwrap();
        assert_eq!(
            get(http, &host).await,
            200,
            "{host} is served right after the write"
        );
        served.push(t.elapsed());
    }

    println!(
        "{:>7} custom hostnames (start {:.1} s): {writes_per_s:.0} writes/s acknowledged durable ({}); write to first request served: {}",
        extra_hostnames + 2,
        start_time.as_secs_f64(),
        summary(latencies),
        summary(served)
    );
    let _ = stop.send(());
    edge.await.unwrap().unwrap();
}

fn main() {
    let sizes: Vec<usize> = std::env::var("EDGE_BENCH_HOSTNAMES")
        .unwrap_or_else(|_| "0,10000".into())
        .split(',')
        .map(|n| {
            n.trim()
                .parse()
                .expect("EDGE_BENCH_HOSTNAMES: numbers, comma-separated")
        })
        .collect();
    // On the workspace's disk, not a tmpfs, so that fsync costs what it costs.
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-control");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for size in sizes {
        let dir = base.join(format!("state-{size}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        runtime.block_on(run(&dir, size));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
