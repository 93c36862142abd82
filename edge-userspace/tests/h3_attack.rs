//! HTTP/3 under attack, against the `edge` binary: frame-level attack clients on quinn beside a
//! legitimate HTTP/3 client that must keep succeeding (≥ 99 %), and the edge's resident memory
//! (`VmRSS`) bounded during each attack and given back after it. Each attack runs against
//! short limits from the test's config, at ten times the bound, bounded in count and time.
//! The tests take turns ([`ONE_AT_A_TIME`]): each measures the edge's memory and CPU alone.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use http::{Request, StatusCode};
use quinn::crypto::rustls::QuicClientConfig;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};
use support::{Edge, Scratch, free_port};
use tokio::net::UdpSocket;

const HOST: &str = "mystore.example.com";
/// The header limit (`Limits::max_header_bytes`, 32 KiB) the edge runs with.
const HEADER_LIMIT: u64 = 32 * 1024;
/// Every client step is bounded by this.
const STEP: Duration = Duration::from_secs(10);
/// H3_EXCESSIVE_LOAD.
const EXCESSIVE_LOAD: u32 = 0x107;

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `edge serve` with the demo's zones, its origin being the test's [`Origin`] on `origin`, and
/// `http3` as the config's section.
struct Running {
    edge: Edge,
    addr: SocketAddr,
    ca_pem: Vec<u8>,
    _dir: Scratch,
}

impl Running {
    async fn start(name: &str, http3: Value, origin: u16) -> Running {
        let dir = Scratch::new(name);
        let port = free_port();
        let demo = include_str!("../src/serve/demo.json")
            .replace("\"port\": 8081", &format!("\"port\": {origin}"));
        let mut config: Value = serde_json::from_str(&demo).unwrap();
        config["listen"] = json!({"https": format!("127.0.0.1:{port}")});
        config["echo_origin"] = Value::Null;
        config["state_dir"] = json!(dir.0.join("state"));
        config["http3"] = http3;
        let path = dir.0.join("edge.json");
        std::fs::write(&path, config.to_string()).unwrap();
        let edge = Edge(
            support::edge()
                .args(["serve", "--workers", "2", "--config"])
                .arg(&path)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "edge serve did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let ca_pem = std::fs::read(dir.0.join("state").join("ca.pem")).unwrap();
        let running = Running {
            edge,
            addr,
            ca_pem,
            _dir: dir,
        };
        // Ready once HTTP/3 answers too.
        while !matches!(running.get("/ready").await, Ok(StatusCode::OK)) {
            assert!(
                Instant::now() < deadline,
                "edge serve did not answer over HTTP/3"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        running
    }

    /// The edge's resident memory in KiB.
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.edge.0.id())).unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }

    /// A QUIC client endpoint trusting the edge's CA (ALPN h3), on a port of its own.
    fn endpoint(&self) -> quinn::Endpoint {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&self.ca_pem) {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"h3".to_vec()];
        let mut config =
            quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls).unwrap()));
        let mut transport = quinn::TransportConfig::default();
        transport.max_idle_timeout(Some(Duration::from_secs(5).try_into().unwrap()));
        config.transport_config(Arc::new(transport));
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        endpoint.set_default_client_config(config);
        endpoint
    }

    async fn connect(&self, endpoint: &quinn::Endpoint) -> anyhow::Result<quinn::Connection> {
        Ok(tokio::time::timeout(STEP, endpoint.connect(self.addr, HOST)?).await??)
    }

    /// One legitimate request on a connection of its own: a fresh handshake every time.
    async fn get(&self, path: &str) -> anyhow::Result<StatusCode> {
        let endpoint = self.endpoint();
        let conn = self.connect(&endpoint).await?;
        let (mut driver, mut send) =
            h3::client::new(h3_quinn::Connection::new(conn.clone())).await?;
        let drive = tokio::spawn(async move {
            let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
        });
        let status = tokio::time::timeout(STEP, async {
            let req = Request::get(format!("https://{HOST}{path}")).body(())?;
            let mut stream = send.send_request(req).await?;
            stream.finish().await?;
            let status = stream.recv_response().await?.status();
            while let Some(mut chunk) = stream.recv_data().await? {
                chunk.advance(chunk.remaining());
            }
            anyhow::Ok(status)
        })
        .await;
        conn.close(0u32.into(), b"");
        drive.abort();
        endpoint.wait_idle().await;
        status?
    }
}

/// A legitimate client beside an attack: one request after another on fresh connections, and
/// the edge's peak memory sampled between them, until `stop`.
struct Beside {
    ok: Arc<AtomicUsize>,
    tried: Arc<AtomicUsize>,
    peak_kib: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Beside {
    fn start(edge: &Arc<Running>) -> Beside {
        let (ok, tried, peak_kib, stop) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let task = {
            let (edge, ok, tried, peak_kib, stop) = (
                edge.clone(),
                ok.clone(),
                tried.clone(),
                peak_kib.clone(),
                stop.clone(),
            );
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    peak_kib.fetch_max(edge.rss_kib(), Ordering::Relaxed);
                    tried.fetch_add(1, Ordering::Relaxed);
                    match edge.get("/legit").await {
                        Ok(StatusCode::OK) => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        other => eprintln!("legitimate request failed: {other:?}"),
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        Beside {
            ok,
            tried,
            peak_kib,
            stop,
            task,
        }
    }

    /// Stops the client; asserts ≥ 99 % of at least `min` requests succeeded and returns the
    /// edge's peak RSS seen meanwhile.
    async fn finish(self, min: usize) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        let (ok, tried) = (
            self.ok.load(Ordering::Relaxed),
            self.tried.load(Ordering::Relaxed),
        );
        eprintln!("legitimate client: {ok}/{tried}");
        assert!(tried >= min, "only {tried} legitimate requests ran");
        assert!(
            ok * 100 >= tried * 99,
            "legitimate client: {ok} of {tried} succeeded"
        );
        self.peak_kib.load(Ordering::Relaxed)
    }
}

/// Waits (bounded) until the edge's RSS is back within `slack_kib` of `baseline_kib`.
async fn memory_given_back(edge: &Running, baseline_kib: u64, slack_kib: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rss = edge.rss_kib();
        if rss <= baseline_kib + slack_kib {
            eprintln!("RSS back to {rss} KiB (baseline {baseline_kib} KiB)");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "RSS stays at {rss} KiB after the attack (baseline {baseline_kib} KiB)"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The origin: answers 200, after `delay` for paths under `/slow`, and counts the requests
/// whose path starts with `/attack`.
struct Origin {
    port: u16,
    attack_hits: Arc<AtomicUsize>,
}

async fn origin(delay: Duration) -> Origin {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let attack_hits = Arc::new(AtomicUsize::new(0));
    let hits = attack_hits.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let hits = hits.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let hits = hits.clone();
                        async move {
                            let path = req.uri().path();
                            if path.starts_with("/attack") || path.starts_with("/slow/attack") {
                                hits.fetch_add(1, Ordering::Relaxed);
                            }
                            if path.starts_with("/slow") {
                                tokio::time::sleep(delay).await;
                            }
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                http_body_util::Full::new(Bytes::from_static(b"ok")),
                            ))
                        }
                    });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    Origin { port, attack_hits }
}

/// A QUIC variable-length integer in its 8-byte form.
fn varint8(value: u64) -> [u8; 8] {
    (value | 0xc000_0000_0000_0000).to_be_bytes()
}

/// Opens a stream and sends a HEADERS frame declaring 1 GiB (thirty thousand times the limit),
/// then its "payload" until the edge stops the stream, 64 MiB or [`STEP`]: what was sent and how
/// the stream ended.
async fn headers_flood(conn: quinn::Connection) -> (usize, Option<quinn::WriteError>) {
    /// What each attack stream tries to send: without the bound, h3 buffers all of it.
    const ATTEMPT: usize = 64 << 20;
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    let mut head = vec![];
    head.extend_from_slice(&varint8(0x1));
    head.extend_from_slice(&varint8(1 << 30));
    let chunk = Bytes::from(vec![0u8; 16 * 1024]);
    let mut sent = 0;
    let started = Instant::now();
    let mut ended = send.write_all(&head).await.err();
    while ended.is_none() && sent < ATTEMPT && started.elapsed() < STEP {
        match tokio::time::timeout(STEP, send.write_all(&chunk)).await {
            Ok(Ok(())) => sent += chunk.len(),
            Ok(Err(error)) => ended = Some(error),
            Err(_) => break,
        }
    }
    (sent, ended)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_headers_frame_declaring_a_gigabyte_is_refused_before_it_is_buffered() {
    const CONNECTIONS: usize = 16;
    const STREAMS: usize = 2;
    let _turn = ONE_AT_A_TIME.lock().await;
    let origin = origin(Duration::ZERO).await;
    let edge = Arc::new(Running::start("h3-headers", json!({}), origin.port).await);
    let baseline = edge.rss_kib();
    let beside = Beside::start(&edge);

    // Rounds of fresh connections for three seconds, so the legitimate client runs beside.
    let endpoint = edge.endpoint();
    let started = Instant::now();
    let mut streams = 0;
    while started.elapsed() < Duration::from_secs(3) {
        let mut attacks = tokio::task::JoinSet::new();
        let mut conns = Vec::new();
        for _ in 0..CONNECTIONS {
            let conn = edge.connect(&endpoint).await.unwrap();
            for _ in 0..STREAMS {
                attacks.spawn(headers_flood(conn.clone()));
            }
            conns.push(conn);
        }
        for (sent, ended) in attacks.join_all().await {
            streams += 1;
            assert_eq!(
                ended,
                Some(quinn::WriteError::Stopped(EXCESSIVE_LOAD.into())),
                "the stream is stopped for its declared length ({sent} bytes sent)"
            );
            // The stream's receive window (1 MiB), never the declared gigabyte.
            assert!(
                sent <= 2 << 20,
                "{sent} bytes went in before the stream was stopped"
            );
        }
        for conn in conns {
            conn.close(0u32.into(), b"");
        }
    }
    eprintln!("{streams} HEADERS frames of 1 GiB refused");
    endpoint.close(0u32.into(), b"");
    let peak = beside.finish(10).await;
    eprintln!("RSS: baseline {baseline} KiB, peak {peak} KiB");
    assert!(
        peak <= baseline + 64 * 1024,
        "RSS rose from {baseline} to {peak} KiB"
    );
    memory_given_back(&edge, baseline, 16 * 1024).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_headers_time_out_and_cancelled_requests_close_the_connection() {
    const HEADER_TIMEOUT: u64 = 2;
    const BUDGET: usize = 20;
    const STREAMS: usize = 10;
    let _turn = ONE_AT_A_TIME.lock().await;
    let origin = origin(Duration::from_millis(300)).await;
    let http3 = json!({
        "header_timeout_secs": HEADER_TIMEOUT,
        "max_cancelled_requests": BUDGET,
        "max_concurrent_streams": STREAMS,
    });
    let edge = Arc::new(Running::start("h3-slow", http3, origin.port).await);
    let baseline = edge.rss_kib();
    let beside = Beside::start(&edge);

    // Slowloris: 20 connections, each stream holding half a HEADERS frame.
    let endpoint = edge.endpoint();
    let started = Instant::now();
    let mut held = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let conn = edge.connect(&endpoint).await.unwrap();
        for _ in 0..STREAMS {
            let conn = conn.clone();
            held.spawn(async move {
                let (mut send, mut recv) = conn.open_bi().await.unwrap();
                let mut partial = vec![0x01];
                partial.extend_from_slice(&varint8(HEADER_LIMIT / 2));
                partial.extend(vec![0u8; 1000]);
                send.write_all(&partial).await.unwrap();
                // Ten times the timeout: the edge must end the stream long before.
                let ended = tokio::time::timeout(
                    Duration::from_secs(10 * HEADER_TIMEOUT),
                    recv.read_to_end(1 << 16),
                )
                .await;
                (send, ended.is_ok())
            });
        }
    }
    while let Some(stream) = held.join_next().await {
        let (_send, ended) = stream.unwrap();
        assert!(ended, "a stream with a partial HEADERS frame stays open");
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(10 * HEADER_TIMEOUT),
        "partial headers held for {took:?}"
    );
    endpoint.close(0u32.into(), b"");

    // Rapid reset: ten times the budget of requests, each cancelled 2 ms after it was sent,
    // to an origin that takes 300 ms.
    let endpoint = edge.endpoint();
    let conn = edge.connect(&endpoint).await.unwrap();
    let (mut driver, mut send) = h3::client::new(h3_quinn::Connection::new(conn.clone()))
        .await
        .unwrap();
    let drive = tokio::spawn(async move {
        let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
    });
    let mut sent = 0;
    let attack = tokio::time::timeout(Duration::from_secs(30), async {
        while sent < 10 * BUDGET {
            let req = Request::get(format!("https://{HOST}/slow/attack/{sent}"))
                .body(())
                .unwrap();
            let Ok(mut stream) = send.send_request(req).await else {
                break;
            };
            sent += 1;
            if stream.finish().await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
            stream.stop_stream(h3::error::Code::H3_REQUEST_CANCELLED);
            stream.stop_sending(h3::error::Code::H3_REQUEST_CANCELLED);
        }
    });
    attack.await.expect("the attack ends");
    let closed = tokio::time::timeout(STEP, conn.closed()).await;
    assert_eq!(
        closed.ok(),
        Some(quinn::ConnectionError::ApplicationClosed(
            quinn::ApplicationClose {
                error_code: EXCESSIVE_LOAD.into(),
                reason: Bytes::from_static(b"too many cancelled requests"),
            }
        )),
        "the edge closes a connection past its budget of cancelled requests"
    );
    drive.abort();
    let hits = origin.attack_hits.load(Ordering::Relaxed);
    eprintln!("rapid reset: {sent} requests sent, {hits} reached the origin");
    assert!(
        sent < 10 * BUDGET,
        "all {sent} cancelled requests were taken"
    );
    assert!(
        hits <= BUDGET + 2 * STREAMS,
        "{hits} cancelled requests reached the origin"
    );

    let peak = beside.finish(10).await;
    eprintln!("RSS: baseline {baseline} KiB, peak {peak} KiB");
    assert!(
        peak <= baseline + 64 * 1024,
        "RSS rose from {baseline} to {peak} KiB"
    );
    memory_given_back(&edge, baseline, 16 * 1024).await;
}

/// A relay that forwards client datagrams to the edge and drops every answer, as the edge's
/// answers to a spoofed source go nowhere; it counts what the edge sent back.
struct BlackHole {
    addr: SocketAddr,
    initials: Arc<AtomicUsize>,
    retries: Arc<AtomicUsize>,
    /// Source connection IDs of the edge's handshake packets: one per handshake it started.
    handshakes: Arc<std::sync::Mutex<std::collections::HashSet<Vec<u8>>>>,
}

async fn black_hole(edge: SocketAddr) -> BlackHole {
    let front = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    back.connect(edge).await.unwrap();
    let hole = BlackHole {
        addr: front.local_addr().unwrap(),
        initials: Arc::default(),
        retries: Arc::default(),
        handshakes: Arc::default(),
    };
    {
        let (back, initials) = (back.clone(), hole.initials.clone());
        tokio::spawn(async move {
            let mut buf = vec![0; 65536];
            while let Ok((n, _)) = front.recv_from(&mut buf).await {
                // Long header, type Initial.
                if buf[0] & 0xf0 == 0xc0 {
                    initials.fetch_add(1, Ordering::Relaxed);
                }
                let _ = back.send(&buf[..n]).await;
            }
        });
    }
    let (retries, handshakes) = (hole.retries.clone(), hole.handshakes.clone());
    tokio::spawn(async move {
        let mut buf = vec![0; 65536];
        while let Ok(n) = back.recv(&mut buf).await {
            let packet = &buf[..n];
            if packet[0] & 0xf0 == 0xf0 {
                retries.fetch_add(1, Ordering::Relaxed);
            } else if packet[0] & 0x80 != 0 && n > 7 {
                // Long header: version (4), DCID length and DCID, SCID length and SCID.
                let dcid = usize::from(packet[5]);
                if let Some(&scid) = packet.get(6 + dcid) {
                    let at = 7 + dcid;
                    if let Some(scid) = packet.get(at..at + usize::from(scid)) {
                        handshakes.lock().unwrap().insert(scid.to_vec());
                    }
                }
            }
        }
    });
    hole
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_initials_below_the_retry_rate_costs_one_packet_each_and_locks_no_one_out() {
    const IN_PROGRESS: usize = 20;
    const HANDSHAKE_TIMEOUT: u64 = 2;
    /// Ten times what may be in progress, every second, for three seconds.
    const RATE: usize = 10 * IN_PROGRESS;
    const SECONDS: usize = 3;
    let _turn = ONE_AT_A_TIME.lock().await;
    let origin = origin(Duration::ZERO).await;
    let http3 = json!({
        // Never reached: the flood stays below the rate threshold.
        "retry_above_handshakes_per_second": 1_000_000,
        "retry_above_handshakes_in_progress": IN_PROGRESS,
        "handshake_timeout_secs": HANDSHAKE_TIMEOUT,
    });
    let edge = Arc::new(Running::start("h3-initials", http3, origin.port).await);
    let baseline = edge.rss_kib();
    let beside = Beside::start(&edge);

    let hole = black_hole(edge.addr).await;
    let attacker = edge.endpoint();
    let started = Instant::now();
    let mut pending = Vec::new();
    for i in 0..RATE * SECONDS {
        let due = started + Duration::from_secs_f64(i as f64 / RATE as f64);
        tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await;
        // Each Connecting retransmits its Initial until the test drops it.
        pending.push(attacker.connect(hole.addr, HOST).unwrap());
    }
    let flood = started.elapsed();
    let (initials, retries) = (
        hole.initials.load(Ordering::Relaxed),
        hole.retries.load(Ordering::Relaxed),
    );
    let started_handshakes = hole.handshakes.lock().unwrap().len();
    eprintln!(
        "{} connections in {flood:?}: {initials} Initials, {retries} Retries, {started_handshakes} handshakes started",
        RATE * SECONDS
    );
    // At most IN_PROGRESS at once, each held until its deadline at most.
    let bound = IN_PROGRESS * (flood.as_secs() as usize / HANDSHAKE_TIMEOUT as usize + 2);
    assert!(
        started_handshakes <= bound,
        "{started_handshakes} handshakes started from unproven addresses (bound {bound})"
    );
    // At most one packet each: a Retry per Initial the edge did not take, never more (a
    // client's retransmissions of an Initial that arrive together are answered once); and no
    // client is dropped unanswered: each got a Retry or a handshake. (How many Initials a
    // client retransmits before its deadline depends on the machine's load, so the Retries
    // are bounded by the clients, not by a share of the Initials.)
    assert!(
        retries <= initials && retries + started_handshakes >= RATE * SECONDS,
        "{initials} Initials, {retries} Retries, {started_handshakes} handshakes started"
    );

    // The handshakes the flood held end at their deadline (the idle timeout is 30 s), while
    // their clients still retransmit: a new unproven client then starts a handshake again
    // instead of getting a Retry.
    tokio::time::sleep(Duration::from_secs(2 * HANDSHAKE_TIMEOUT)).await;
    let before = hole.handshakes.lock().unwrap().len();
    let late = edge.endpoint();
    let probe = late.connect(hole.addr, HOST).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        hole.handshakes.lock().unwrap().len(),
        before + 1,
        "the flood's handshakes still hold their places"
    );
    drop((probe, pending));
    late.close(0u32.into(), b"");
    attacker.close(0u32.into(), b"");

    let peak = beside.finish(10).await;
    eprintln!("RSS: baseline {baseline} KiB, peak {peak} KiB");
    assert!(
        peak <= baseline + 64 * 1024,
        "RSS rose from {baseline} to {peak} KiB"
    );
    memory_given_back(&edge, baseline, 16 * 1024).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_taken_by_two_thousand_idle_connections_is_given_back() {
    const IDLE: usize = 2000;
    const AT_ONCE: usize = 50;
    let _turn = ONE_AT_A_TIME.lock().await;
    let origin = origin(Duration::ZERO).await;
    let edge = Arc::new(Running::start("h3-idle", json!({}), origin.port).await);
    let baseline = edge.rss_kib();
    let beside = Beside::start(&edge);
    let endpoint = edge.endpoint();
    let mut idle = Vec::new();
    while idle.len() < IDLE {
        let mut batch = tokio::task::JoinSet::new();
        for _ in 0..AT_ONCE {
            let (edge, endpoint) = (edge.clone(), endpoint.clone());
            batch.spawn(async move {
                let conn = edge.connect(&endpoint).await.unwrap();
                // h3 on both sides: control and QPACK streams, SETTINGS.
                let (driver, send) = h3::client::new(h3_quinn::Connection::new(conn.clone()))
                    .await
                    .unwrap();
                (conn, driver, send)
            });
        }
        idle.extend(batch.join_all().await);
    }
    let held = edge.rss_kib();
    eprintln!("{IDLE} idle connections: RSS {baseline} → {held} KiB");
    for (conn, _, _) in &idle {
        conn.close(0u32.into(), b"");
    }
    drop(idle);
    let peak = beside.finish(10).await.max(held);
    assert!(
        peak <= baseline + 256 * 1024,
        "RSS rose from {baseline} to {peak} KiB"
    );
    // Without the trim it stays 45 MiB and more above the baseline.
    memory_given_back(&edge, baseline, 24 * 1024).await;
}
