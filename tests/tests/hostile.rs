//! The hostile-traffic suite: attacks against the real `edge` binary, each run beside a
//! legitimate client that must keep at least 99 % success, with the edge's memory (VmRSS)
//! bounded. Attackers connect from loopback addresses of their own (127.0.0.2 and up), since
//! the caps are per client address; the legitimate client from 127.0.0.1. Timeouts are short
//! in the test's config (a second) so that every attack ends in seconds; each attack is bounded
//! in count and time.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use edge_tests::binary::EdgeProcess;
use edge_tests::chain::o2o_state;
use edge_tests::h2raw::{frame, get_block, preface};
use edge_tests::proxy::spawn_echo;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;

const HOST: &str = "mystore.example.com";
const LEGIT: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Growth of the edge's RSS any attack here may cause (the unbounded cases grew by 74 to
/// 222 MB).
const RSS_GROWTH_KIB: u64 = 48 * 1024;

fn attacker(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

/// Short timeouts and small caps, so that each attack ends within seconds.
fn limits() -> Value {
    json!({
        "max_connections": 300,
        "max_connections_per_address": 50,
        "idle_timeout_ms": 1000,
        "write_timeout_ms": 1000,
        "header_read_timeout_ms": 1000,
        "tls_handshake_timeout_ms": 1000,
        "h2_max_control_frames": 100,
        "drain_timeout_ms": 1000
    })
}

fn origin_limits() -> Value {
    json!({
        "max_in_flight_per_origin": 32,
        "max_in_flight_per_client": 8,
        "header_timeout_ms": 5000,
        "idle_body_timeout_ms": 5000
    })
}

async fn start(origin: SocketAddr) -> EdgeProcess {
    tokio::task::spawn_blocking(move || {
        EdgeProcess::start(o2o_state(origin), limits(), origin_limits()).unwrap()
    })
    .await
    .unwrap()
}

/// A TCP connection from `local`.
async fn connect_from(local: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(local, 0))?;
    socket.connect(to).await
}

/// A TLS connection from `local` to the edge, with `alpn`.
async fn tls_from(
    edge: &EdgeProcess,
    local: IpAddr,
    alpn: &[&[u8]],
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in ca_certs(&edge.ca_pem) {
        roots.add(cert).unwrap();
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = connect_from(local, edge.https).await?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(HOST.try_into().unwrap(), tcp)
        .await
}

fn ca_certs(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .map(Result::unwrap)
        .collect()
}

/// The legitimate client: GETs, alternately over plain HTTP/1.1 and TLS HTTP/2, from
/// 127.0.0.1, until stopped (at least 50, at most 2,000).
struct Legit {
    stop: Arc<AtomicBool>,
    task: JoinHandle<(usize, usize, Vec<String>)>,
}

impl Legit {
    fn start(edge: &EdgeProcess, path: &'static str) -> Legit {
        let stop = Arc::new(AtomicBool::new(false));
        let h2 = edge.client(LEGIT, &[HOST], true);
        let plain = reqwest::Client::builder()
            .no_proxy()
            .local_address(LEGIT)
            .resolve(HOST, edge.http)
            .http1_only()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let urls = [
            (plain, format!("http://{HOST}:{}{path}", edge.http.port())),
            (h2, format!("https://{HOST}:{}{path}", edge.https.port())),
        ];
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let (mut ok, mut total, mut failures) = (0, 0, Vec::new());
            // At least 50 requests, whether the attack is over sooner or not.
            while (total < 50 || !stopped.load(Ordering::Relaxed)) && total < 2000 {
                let (client, url) = &urls[total % 2];
                let answer = client.get(url).send().await;
                let answer = match answer {
                    Ok(response) => {
                        let status = response.status();
                        response.bytes().await.map(|_| status)
                    }
                    Err(error) => Err(error),
                };
                match answer {
                    Ok(status) if status == 200 => ok += 1,
                    other => failures.push(format!("{url}: {other:?}")),
                }
                total += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (ok, total, failures)
        });
        Legit { stop, task }
    }

    /// Stops it and asserts it kept 99 % success over a meaningful number of requests.
    async fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        let (ok, total, failures) = self.task.await.unwrap();
        assert!(
            total >= 20,
            "the legitimate client sent only {total} requests"
        );
        assert!(
            ok * 100 >= total * 99,
            "legitimate client: {ok}/{total} succeeded: {failures:?}"
        );
    }
}

fn assert_rss_bounded(edge: &EdgeProcess, before_kib: u64) {
    let after = edge.rss_kib();
    eprintln!("edge RSS: {before_kib} KiB before the attack, {after} KiB after");
    assert!(
        after <= before_kib + RSS_GROWTH_KIB,
        "the edge's RSS grew from {before_kib} KiB to {after} KiB"
    );
}

/// Reads until the peer closes; `true` when it did within `limit`.
async fn closed_within(stream: &mut (impl AsyncRead + Unpin), limit: Duration) -> bool {
    tokio::time::timeout(limit, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// Warms the edge up (so the first RSS reading is not of a cold process) and returns its RSS.
async fn warm(edge: &EdgeProcess) -> u64 {
    let client = edge.client(LEGIT, &[HOST], true);
    for _ in 0..20 {
        let url = format!("https://{HOST}:{}/warm", edge.https.port());
        assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    }
    edge.rss_kib()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_idle_connections_are_closed_and_shed_first() {
    let echo = spawn_echo().await.unwrap();
    let mut edge = start(echo).await;
    let rss = warm(&edge).await;
    let legit = Legit::start(&edge, "/legit");

    // 360 silent TCP connections from six addresses, more than the listener's 300: the
    // listener is full, and every new connection sheds the one idle longest.
    let mut silent = Vec::new();
    for n in 10..16 {
        for _ in 0..60 {
            if let Ok(tcp) = connect_from(attacker(n), edge.http).await {
                silent.push(tcp);
            }
        }
    }
    // TLS connections that finish their handshake, then say nothing.
    let mut quiet_tls = Vec::new();
    for _ in 0..20 {
        quiet_tls.push(tls_from(&edge, attacker(3), &[b"h2"]).await.unwrap());
    }
    // An HTTP/2 connection that answers and sends PINGs, but makes no request.
    let tcp = connect_from(attacker(4), edge.http).await.unwrap();
    let (_send, mut connection) = h2::client::handshake(tcp).await.unwrap();
    let mut pings = connection.ping_pong().unwrap();
    let pinging = tokio::spawn(async move {
        let pinger = tokio::spawn(async move {
            for _ in 0..100 {
                if pings.ping(h2::Ping::opaque()).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let ended = tokio::time::timeout(Duration::from_secs(10), connection).await;
        pinger.abort();
        ended.is_ok()
    });

    for tcp in &mut silent {
        assert!(
            closed_within(tcp, Duration::from_secs(10)).await,
            "a silent connection stayed open"
        );
    }
    for tls in &mut quiet_tls {
        assert!(
            closed_within(tls, Duration::from_secs(10)).await,
            "a silent TLS connection stayed open"
        );
    }
    assert!(
        pinging.await.unwrap(),
        "an HTTP/2 connection that only PINGs stayed open"
    );
    legit.finish().await;
    assert_rss_bounded(&edge, rss);
    edge.assert_running();
    assert!(
        edge.metric("edge_client_connections_closed", "reason=\"idle\"")
            .await
            >= 20.0
    );
    assert!(
        edge.metric("edge_client_connections_closed", "reason=\"shed\"")
            .await
            >= 1.0
    );
    assert!(
        edge.metric("edge_client_connections_closed", "reason=\"address_cap\"")
            .await
            >= 60.0,
        "six addresses opened 60 connections each, 10 over their cap"
    );
}

/// The size of `/large`.
const LARGE: usize = 4 << 20;
/// `/large` responses [`serve_large`] is writing now, and the most at once.
static LARGE_NOW: AtomicUsize = AtomicUsize::new(0);
static LARGE_MOST: AtomicUsize = AtomicUsize::new(0);

/// Answers `/large` with [`LARGE`] bytes and anything else with `ok`, on keep-alive
/// connections.
async fn serve_large(mut tcp: TcpStream) {
    let large = vec![b'x'; LARGE];
    while let Some(head) = read_head(&mut tcp).await {
        let body: &[u8] = if head.starts_with(b"GET /large ") {
            &large
        } else {
            b"ok"
        };
        let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
        let counted = body.len() == LARGE;
        if counted {
            let now = LARGE_NOW.fetch_add(1, Ordering::SeqCst) + 1;
            LARGE_MOST.fetch_max(now, Ordering::SeqCst);
        }
        let written =
            tcp.write_all(head.as_bytes()).await.is_ok() && tcp.write_all(body).await.is_ok();
        if counted {
            LARGE_NOW.fetch_sub(1, Ordering::SeqCst);
        }
        if !written {
            return;
        }
    }
}

/// One request head, or `None` at the end of the stream.
async fn read_head(tcp: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if tcp.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    Some(head)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_never_read_lose_their_streams_and_origin_slots() {
    let origin = spawn_origin(serve_large).await;
    let mut edge = start(origin).await;
    let rss = warm(&edge).await;
    let legit = Legit::start(&edge, "/legit");

    // Three HTTP/2 connections with a zero receive window, 16 streams each: more than the
    // per-client cap (8) and than the origin's slots (32) together. Over the cap they wait
    // for the address's own (without an origin slot), then get 429.
    let mut streams = Vec::new();
    let mut connections = Vec::new();
    for _ in 0..3 {
        let tls = tls_from(&edge, attacker(5), &[b"h2"]).await.unwrap();
        let (mut send, connection) = h2::client::Builder::new()
            .initial_window_size(0)
            .handshake::<_, Bytes>(tls)
            .await
            .unwrap();
        connections.push(tokio::spawn(connection));
        for _ in 0..16 {
            send = send.ready().await.unwrap();
            let request = http::Request::get(format!("https://{HOST}/large"))
                .body(())
                .unwrap();
            let (response, _) = send.send_request(request, true).unwrap();
            streams.push(response);
        }
    }
    // HTTP/1.1 clients that send a request and never read, from two more addresses.
    let mut stuck = Vec::new();
    for n in [6, 7] {
        for _ in 0..20 {
            // A small receive buffer: the edge's writes stall after a few KB.
            let socket = TcpSocket::new_v4().unwrap();
            socket.set_recv_buffer_size(4096).unwrap();
            socket.bind(SocketAddr::new(attacker(n), 0)).unwrap();
            let mut tcp = socket.connect(edge.http).await.unwrap();
            tcp.write_all(format!("GET /large HTTP/1.1\r\nhost: {HOST}\r\n\r\n").as_bytes())
                .await
                .unwrap();
            stuck.push(tcp);
        }
    }

    // Every stalled HTTP/2 stream is refused (429: over the per-client cap for the whole
    // header timeout) or loses its body (reset once the write timeout passes).
    let (mut refused, mut reset) = (0, 0);
    for response in streams {
        let response = tokio::time::timeout(Duration::from_secs(10), response)
            .await
            .expect("every stream got an answer")
            .unwrap();
        if response.status() == 429 {
            refused += 1;
            continue;
        }
        assert_eq!(response.status(), 200);
        let mut body = response.into_body();
        let ended = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match body.data().await {
                    Some(Ok(_)) => {}
                    Some(Err(error)) => return error.reason(),
                    None => return None,
                }
            }
        })
        .await;
        // Reset by itself (CANCEL), not lost with its connection (which the client would see
        // as GOAWAY or an I/O error, without a stream reason).
        assert_eq!(
            ended.ok().flatten(),
            Some(h2::Reason::CANCEL),
            "a stalled stream was reset in time"
        );
        reset += 1;
    }
    assert!(reset >= 8, "refused {refused}, reset {reset}");
    // The three attacking addresses never held more than their 8 origin slots each.
    let most = LARGE_MOST.load(Ordering::SeqCst);
    assert!(most <= 24, "{most} large responses at once");
    // The HTTP/1.1 clients that never read lose their connections.
    for tcp in &mut stuck {
        assert!(closed_within(tcp, Duration::from_secs(10)).await);
    }
    // Every origin slot is free again: 32 concurrent requests (4 addresses, 8 each) pass.
    let mut burst = Vec::new();
    for n in 20..24 {
        let client = edge.client(attacker(n), &[HOST], true);
        for _ in 0..8 {
            let (client, url) = (
                client.clone(),
                format!("https://{HOST}:{}/after", edge.https.port()),
            );
            burst.push(tokio::spawn(async move {
                let response = client.get(url).send().await.unwrap();
                let status = response.status();
                response.bytes().await.unwrap();
                status
            }));
        }
    }
    for request in burst {
        assert_eq!(request.await.unwrap(), 200);
    }
    legit.finish().await;
    for connection in connections {
        connection.abort();
    }
    assert_rss_bounded(&edge, rss);
    edge.assert_running();
}

/// Writes `chunks` until the edge closes the connection; `true` when it did within `limit`
/// (the reads drain whatever it answers meanwhile).
async fn cut_while_sending(
    stream: impl AsyncRead + AsyncWrite + Unpin + Send + 'static,
    chunks: impl Iterator<Item = Vec<u8>>,
    limit: Duration,
) -> bool {
    let (mut read, mut write) = tokio::io::split(stream);
    let reader = tokio::spawn(async move { closed_within(&mut read, limit).await });
    for chunk in chunks {
        if write.write_all(&chunk).await.is_err() {
            break;
        }
    }
    reader.await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_floods_are_cut_and_counted_not_logged() {
    let echo = spawn_echo().await.unwrap();
    let mut edge = start(echo).await;
    let rss = warm(&edge).await;
    let legit = Legit::start(&edge, "/legit");

    // SETTINGS and PING floods: ten times the limit (100 in 10 s) in one burst, repeated up
    // to 100 times; the edge closes the connection.
    for kind in [0x4u8, 0x6] {
        for n in [8, 9] {
            let tls = tls_from(&edge, attacker(n), &[b"h2"]).await.unwrap();
            let payload: &[u8] = if kind == 0x6 { &[0; 8] } else { &[] };
            let burst: Vec<u8> = (0..1000).flat_map(|_| frame(kind, 0, 0, payload)).collect();
            let chunks = std::iter::once(preface()).chain(std::iter::repeat_n(burst, 100));
            assert!(
                cut_while_sending(tls, chunks, Duration::from_secs(10)).await,
                "a flood of frame type {kind} was answered for ever"
            );
        }
    }
    // Cut as floods (connections ending with an error), not merely closed later as idle.
    assert!(
        edge.metric(
            "edge_client_connections_closed",
            "reason=\"protocol_error\""
        )
        .await
            >= 4.0
    );
    // Rapid reset (CVE-2023-44487) from 40 connections: each gets GOAWAY and is counted, and
    // h2's one warning per connection does not reach the log.
    for i in 0..40u8 {
        let tls = tls_from(&edge, attacker(30 + i % 4), &[b"h2"])
            .await
            .unwrap();
        let mut burst = preface();
        for s in 0..200u32 {
            let id = 2 * s + 1;
            burst.extend(frame(0x1, 0x4 | 0x1, id, &get_block(HOST)));
            burst.extend(frame(0x3, 0, id, &0x8u32.to_be_bytes()));
        }
        assert!(
            cut_while_sending(tls, std::iter::once(burst), Duration::from_secs(10)).await,
            "a rapid-reset connection was kept"
        );
    }
    // CONTINUATION flood: a header block that never ends.
    let tls = tls_from(&edge, attacker(40), &[b"h2"]).await.unwrap();
    let mut start = preface();
    start.extend(frame(0x1, 0x1, 1, &get_block(HOST)));
    let chunks = std::iter::once(start).chain(
        std::iter::repeat_with(|| frame(0x9, 0, 1, &[0x40, 0x01, b'a', 0x7f, 0x00])).take(100_000),
    );
    assert!(
        cut_while_sending(tls, chunks, Duration::from_secs(10)).await,
        "a CONTINUATION flood was kept"
    );
    // HPACK bomb: one 3 KB header put in the dynamic table, then referenced 1,000 times in
    // one request (3 MB of headers decoded from 4 KB): refused, not decoded whole.
    let tls = tls_from(&edge, attacker(41), &[b"h2"]).await.unwrap();
    let mut bomb = get_block(HOST);
    bomb.extend([0x40, 0x01, b'x', 0x7f]);
    // Length 3000 as an HPACK integer with a 7-bit prefix: 127, then the rest in 7-bit groups.
    let mut rest = 3000 - 127;
    while rest >= 128 {
        bomb.push((rest % 128 + 128) as u8);
        rest /= 128;
    }
    bomb.push(rest as u8);
    bomb.extend(std::iter::repeat_n(b'y', 3000));
    // Index 62: the entry just added.
    bomb.extend(std::iter::repeat_n(0xbe, 1000));
    let mut request = preface();
    request.extend(frame(0x1, 0x4 | 0x1, 1, &bomb));
    let (mut read, mut write) = tokio::io::split(tls);
    write.write_all(&request).await.unwrap();
    // Whatever the edge answers within two seconds (or until it closes).
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = read.read(&mut buf).await {
            answer.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    assert!(
        !answer.windows(6).any(|w| w == b"yyyyyy"),
        "the bomb reached the origin"
    );
    // GOAWAY, RST_STREAM, or an error response's HEADERS (431).
    assert!(
        [0x7, 0x3, 0x1].iter().any(|&kind| has_frame(&answer, kind)),
        "the bomb got no answer"
    );

    legit.finish().await;
    assert_rss_bounded(&edge, rss);
    edge.assert_running();
    let counted = edge
        .metric(
            "edge_client_connections_closed",
            "reason=\"protocol_error\"",
        )
        .await;
    assert!(
        counted >= 44.0,
        "{counted} connections counted as protocol errors"
    );
    let warnings = edge
        .log_text()
        .lines()
        .filter(|l| l.contains("WARN"))
        .count();
    assert!(
        warnings < 5,
        "the attack was logged line by line:\n{}",
        edge.log_text()
    );
}

/// Whether `bytes` (server frames after its SETTINGS) holds a frame of type `kind`.
fn has_frame(bytes: &[u8], kind: u8) -> bool {
    let mut at = 0;
    while at + 9 <= bytes.len() {
        let len = usize::from(bytes[at]) << 16
            | usize::from(bytes[at + 1]) << 8
            | usize::from(bytes[at + 2]);
        if bytes[at + 3] == kind {
            return true;
        }
        at += 9 + len;
    }
    false
}

/// Sends `request` raw on a new plain connection from `local`; the answer's head and what
/// follows (written and read at once: the edge may answer before it has read everything).
async fn raw_answer(edge: &EdgeProcess, local: IpAddr, request: &[u8]) -> Vec<u8> {
    let tcp = connect_from(local, edge.http).await.unwrap();
    let (mut read, mut write) = tcp.into_split();
    let request = request.to_vec();
    let writer = tokio::spawn(async move {
        let _ = write.write_all(&request).await;
        write
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(n @ 1..) = read.read(&mut buf).await {
            answer.extend_from_slice(&buf[..n]);
            if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                // The head, and a moment for the body.
                tokio::time::sleep(Duration::from_millis(50)).await;
                if let Ok(n) = read.try_read(&mut buf) {
                    answer.extend_from_slice(&buf[..n]);
                }
                return;
            }
        }
    })
    .await;
    writer.abort();
    answer
}

fn status(answer: &[u8]) -> Option<u16> {
    std::str::from_utf8(answer.get(9..12)?).ok()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_heads_and_smuggling_shapes_are_refused() {
    let echo = spawn_echo().await.unwrap();
    let mut edge = start(echo).await;
    let rss = warm(&edge).await;
    let legit = Legit::start(&edge, "/legit");
    let big = "x".repeat(320 * 1024);
    let many: String = (0..1000).map(|i| format!("x-h{i}: 1\r\n")).collect();
    let cases: [(String, &[u16]); 7] = [
        // Ten times the 32 KB head limit, ten times the 100 headers.
        (
            format!("GET / HTTP/1.1\r\nhost: {HOST}\r\nx-big: {big}\r\n\r\n"),
            &[431],
        ),
        (
            format!("GET / HTTP/1.1\r\nhost: {HOST}\r\n{many}\r\n"),
            &[431],
        ),
        // Content-Length and Transfer-Encoding together (refused: the classic smuggling
        // pair); two lengths; an obfuscated coding; a request line that is not HTTP/1.1.
        (
            format!(
                "POST / HTTP/1.1\r\nhost: {HOST}\r\ncontent-length: 40\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n"
            ),
            &[400],
        ),
        (
            format!("GET / HTTP/1.1 HTTP/1.1\r\nhost: {HOST}\r\n\r\n"),
            &[400],
        ),
        (
            format!(
                "POST / HTTP/1.1\r\nhost: {HOST}\r\ncontent-length: 4\r\ncontent-length: 5\r\n\r\nabcde"
            ),
            &[400],
        ),
        (
            format!(
                "POST / HTTP/1.1\r\nhost: {HOST}\r\ntransfer-encoding: xchunked\r\n\r\n0\r\n\r\n"
            ),
            &[400, 501],
        ),
        // A malformed chunked body: the client's fault, 400, not an origin failure (502).
        (
            format!(
                "POST / HTTP/1.1\r\nhost: {HOST}\r\ntransfer-encoding: chunked\r\n\r\n4\r\nabcd\r\nzz\r\n"
            ),
            &[400],
        ),
    ];
    for _ in 0..10 {
        for (i, (request, expected)) in cases.iter().enumerate() {
            let local = attacker(50 + u8::try_from(i).unwrap());
            let answer = raw_answer(&edge, local, request.as_bytes()).await;
            let got = status(&answer);
            assert!(
                got.is_some_and(|s| expected.contains(&s)),
                "case {i}: {got:?}, expected one of {expected:?}: {}",
                String::from_utf8_lossy(&answer)
            );
            assert!(
                !String::from_utf8_lossy(&answer).contains("\"40\""),
                "case {i}: the origin saw the smuggled length"
            );
        }
    }
    legit.finish().await;
    assert_rss_bounded(&edge, rss);
    edge.assert_running();
    assert_eq!(
        edge.metric("edge_upstream_errors", "").await,
        0.0,
        "a client's malformed body counted as an origin failure"
    );
}

/// An origin on loopback serving each connection with `serve`.
async fn spawn_origin<F: Future<Output = ()> + Send + 'static>(
    serve: fn(TcpStream) -> F,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(serve(tcp));
        }
    });
    addr
}

/// Answers the first request of a connection, then reads the second and closes the connection
/// without answering: what an origin closing idle keep-alive connections does to a request
/// that crosses its close.
async fn close_on_second_request(mut tcp: TcpStream) {
    if read_head(&mut tcp).await.is_some() {
        let _ = tcp
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .await;
        let _ = read_head(&mut tcp).await;
    }
}

/// Answers a request with `101 Switching Protocols`, asked for or not.
async fn switch_protocols(mut tcp: TcpStream) {
    if read_head(&mut tcp).await.is_some() {
        let _ = tcp
            .write_all(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\nraw bytes")
            .await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_closing_keep_alive_connections_costs_no_idempotent_request() {
    let origin = spawn_origin(close_on_second_request).await;
    let edge = start(origin).await;
    let client = edge.client(LEGIT, &[HOST], true);
    let url = format!("https://{HOST}:{}/", edge.https.port());
    for i in 0..100 {
        let response = client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200, "GET {i}");
    }
    // A POST is not sent twice: written to a reused connection that the origin closes, it
    // fails (502), once the GET before it has left its connection in the pool.
    let mut failed = 0;
    for _ in 0..5 {
        assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
        if client
            .post(&url)
            .body("once")
            .send()
            .await
            .unwrap()
            .status()
            == 502
        {
            failed += 1;
        }
    }
    assert!(failed > 0, "a POST was retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unrequested_switch_of_protocols_is_a_502() {
    let origin = spawn_origin(switch_protocols).await;
    let edge = start(origin).await;
    for http2 in [false, true] {
        let client = edge.client(LEGIT, &[HOST], http2);
        let url = format!("https://{HOST}:{}/", edge.https.port());
        let response = client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 502, "http2={http2}");
        let body = response.text().await.unwrap();
        assert!(!body.contains("raw bytes"), "{body}");
    }
}
