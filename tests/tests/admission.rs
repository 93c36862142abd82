//! Per-chain admission against the real `edge` binary: one tenant over its budget of new
//! connections is refused before the TLS handshake while another tenant beside it keeps its
//! handshakes; a chain's concurrent requests are capped and freed; bad budgets are refused
//! whole. Tenant A is `shop.othercustomer.net` (its own custom hostname's chain), tenant B
//! `mystore.example.com` (the O2O chain). Every flood is bounded in count.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use edge_tests::binary::EdgeProcess;
use edge_tests::chain::o2o_state;
use edge_tests::control::Control;
use edge_tests::handshake::{Handshake, client, handshake};
use edge_tests::proxy::spawn_echo;
use http::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

const TENANT_A: &str = "shop.othercustomer.net";
const TENANT_B: &str = "mystore.example.com";
const PROVIDER: usize = 1;
/// Growth of the edge's RSS the floods here may cause.
const RSS_GROWTH_KIB: u64 = 48 * 1024;

/// The demo's state with tenant A's custom hostname carrying `admission`.
fn state(origin: SocketAddr, admission: Value) -> Value {
    let mut state = o2o_state(origin);
    let hostnames = state["zones"][PROVIDER]["custom_hostnames"]
        .as_array_mut()
        .unwrap();
    let a = hostnames
        .iter_mut()
        .find(|h| h["hostname"] == TENANT_A)
        .unwrap();
    a["admission"] = admission;
    state
}

async fn start(state: Value) -> EdgeProcess {
    tokio::task::spawn_blocking(move || EdgeProcess::start(state, json!({}), json!({})).unwrap())
        .await
        .unwrap()
}

fn ca(edge: &EdgeProcess) -> rustls::pki_types::CertificateDer<'static> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(&edge.ca_pem).unwrap()
}

/// A reqwest client that opens a new connection (a new handshake) for every request.
fn fresh_connections(edge: &EdgeProcess, host: &str) -> reqwest::Client {
    edge_tests::chain::client_builder(&edge.ca_pem, edge.https, &[host], false)
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_over_its_connection_budget_is_refused_while_another_keeps_its_handshakes() {
    const BUDGET: u32 = 5;
    /// Ten times the budget's one-second burst, and more.
    const FLOOD: usize = 20 * BUDGET as usize;
    let echo = spawn_echo().await.unwrap();
    let mut edge = start(state(echo, json!({"new_connections_per_second": BUDGET}))).await;
    let config = client(&ca(&edge), false);
    // Warm, and the RSS before.
    let b = fresh_connections(&edge, TENANT_B);
    let url_b = format!("https://{TENANT_B}:{}/legit", edge.https.port());
    for _ in 0..10 {
        assert_eq!(b.get(&url_b).send().await.unwrap().status(), 200);
    }
    let rss_before = edge.rss_kib();

    // Tenant B: one new connection per request, throughout the flood.
    let flooding = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let legit = {
        let flooding = flooding.clone();
        tokio::spawn(async move {
            let (mut ok, mut total, mut failures) = (0, 0, Vec::new());
            while (total < 50 || flooding.load(Ordering::Relaxed)) && total < 1000 {
                match b.get(&url_b).send().await {
                    Ok(answer) if answer.status() == 200 => ok += 1,
                    other => failures.push(format!("{other:?}")),
                }
                total += 1;
            }
            (ok, total, failures)
        })
    };

    // Tenant A: FLOOD handshakes, 10 at a time.
    let started = Instant::now();
    let mut completed = 0;
    let mut refused = 0;
    let mut flood = JoinSet::new();
    for i in 0..FLOOD {
        if i >= 10 {
            match flood.join_next().await.unwrap().unwrap() {
                Handshake::Completed => completed += 1,
                _ => refused += 1,
            }
        }
        flood.spawn(handshake(config.clone(), edge.https, TENANT_A));
    }
    while let Some(outcome) = flood.join_next().await {
        match outcome.unwrap() {
            Handshake::Completed => completed += 1,
            _ => refused += 1,
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let rss_during = edge.rss_kib();
    flooding.store(false, Ordering::Relaxed);
    let (ok, total, failures) = legit.await.unwrap();
    edge.assert_running();

    eprintln!(
        "tenant A: {completed} completed, {refused} refused in {elapsed:.2} s; tenant B: {ok}/{total}"
    );
    assert!(
        ok * 100 >= total * 99,
        "tenant B: {ok}/{total} succeeded: {failures:?}"
    );
    // One second's burst, then the rate, for as long as the flood lasted.
    let allowed = f64::from(BUDGET) * (1.0 + elapsed.ceil()) + 1.0;
    assert!(
        (completed as f64) <= allowed && completed >= 1,
        "tenant A: {completed} handshakes completed, the budget allows {allowed} in {elapsed:.2} s"
    );
    assert_eq!(completed + refused, FLOOD);
    let counted = edge
        .metric(
            "edge_admission_refused_total",
            &format!(r#"hostname="{TENANT_A}",reason="new_connections""#),
        )
        .await;
    assert_eq!(counted, refused as f64, "{}", edge.metrics().await);
    assert_eq!(
        edge.metric(
            "edge_admission_refused_total",
            &format!(r#"hostname="{TENANT_B}""#)
        )
        .await,
        0.0,
        "tenant B has no budget, so no series"
    );

    // The budget refills: a second later, tenant A is served again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let a = fresh_connections(&edge, TENANT_A);
    let url_a = format!("https://{TENANT_A}:{}/again", edge.https.port());
    assert_eq!(a.get(&url_a).send().await.unwrap().status(), 200);

    let rss_after = edge.rss_kib();
    eprintln!("edge RSS: {rss_before} KiB before, {rss_during} during, {rss_after} after");
    assert!(rss_during <= rss_before + RSS_GROWTH_KIB);
    assert!(rss_after <= rss_before + RSS_GROWTH_KIB);
}

/// An origin answering `GET /hold` only once the test adds a permit to `release`, anything
/// else at once; `held` counts the `/hold` requests waiting.
async fn holding_origin(release: Arc<Semaphore>, held: Arc<AtomicUsize>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (release, held) = (release.clone(), held.clone());
            tokio::spawn(serve_holding(tcp, release, held));
        }
    });
    addr
}

async fn serve_holding(mut tcp: TcpStream, release: Arc<Semaphore>, held: Arc<AtomicUsize>) {
    loop {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if tcp.read(&mut byte).await.unwrap_or(0) == 0 {
                return;
            }
            head.push(byte[0]);
        }
        if head.starts_with(b"GET /hold ") {
            held.fetch_add(1, Ordering::SeqCst);
            release.acquire().await.unwrap().forget();
            held.fetch_sub(1, Ordering::SeqCst);
        }
        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        if tcp.write_all(answer).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chains_concurrent_requests_are_capped_and_freed() {
    const CAP: u32 = 2;
    let release = Arc::new(Semaphore::new(0));
    let held = Arc::new(AtomicUsize::new(0));
    let origin = holding_origin(release.clone(), held.clone()).await;
    let edge = start(state(origin, json!({"max_concurrent_requests": CAP}))).await;
    let rss_before = edge.rss_kib();
    let a = edge.client("127.0.0.1".parse().unwrap(), &[TENANT_A], true);
    let b = edge.client("127.0.0.1".parse().unwrap(), &[TENANT_B], true);
    let url = |host: &str, path: &str| format!("https://{host}:{}{path}", edge.https.port());

    // Ten times the cap at once: the cap's worth reach the origin and wait there, the rest
    // are answered 429 at once.
    let mut requests = JoinSet::new();
    for _ in 0..10 * CAP {
        let (a, url) = (a.clone(), url(TENANT_A, "/hold"));
        requests.spawn(async move {
            let answer = a.get(&url).send().await.unwrap();
            let status = answer.status();
            (status, answer.text().await.unwrap())
        });
    }
    let bounded = Duration::from_secs(30);
    for _ in 0..9 * CAP {
        let (status, body) = tokio::time::timeout(bounded, requests.join_next())
            .await
            .expect("the requests over the cap are answered without waiting")
            .unwrap()
            .unwrap();
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
        assert!(body.contains("1015"), "the edge's error page: {body}");
    }
    // The admitted ones reach the origin (bounded wait: they are on their way).
    for _ in 0..3000 {
        if held.load(Ordering::SeqCst) == CAP as usize {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(held.load(Ordering::SeqCst), CAP as usize);

    // Tenant B beside it is not held back, nor is A's refusal counted against B.
    for _ in 0..100 {
        let answer = b.get(url(TENANT_B, "/b")).send().await.unwrap();
        assert_eq!(answer.status(), 200);
    }
    // A stays refused while its cap is taken.
    let answer = a.get(url(TENANT_A, "/more")).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::TOO_MANY_REQUESTS);

    // Released: the held ones complete, and the chain's places are free again.
    release.add_permits(CAP as usize);
    while let Some(done) = tokio::time::timeout(bounded, requests.join_next())
        .await
        .expect("the held requests complete once released")
    {
        assert_eq!(done.unwrap().0, StatusCode::OK);
    }
    // A place is freed when the edge drops the response body, a moment after the client has
    // read its end: the first request after may still meet the cap (bounded retries).
    let mut raced = 0;
    while a
        .get(url(TENANT_A, "/after"))
        .send()
        .await
        .unwrap()
        .status()
        != 200
    {
        raced += 1;
        assert!(raced < 100, "tenant A's places were never freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..10 {
        let answer = a.get(url(TENANT_A, "/after")).send().await.unwrap();
        assert_eq!(answer.status(), 200);
    }
    let counted = edge
        .metric(
            "edge_admission_refused_total",
            &format!(r#"hostname="{TENANT_A}",reason="concurrent_requests""#),
        )
        .await;
    assert_eq!(counted, f64::from(9 * CAP + 1 + raced));
    let rss_after = edge.rss_kib();
    assert!(
        rss_after <= rss_before + RSS_GROWTH_KIB,
        "{rss_before} -> {rss_after} KiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_budgets_are_refused_whole() {
    const VALIDATION: u64 = 1004;
    const MALFORMED: u64 = 6007;
    let echo = spawn_echo().await.unwrap();
    let edge = start(state(echo, json!({"new_connections_per_second": 50}))).await;
    let control = Control::new(&edge.control);
    let before = control.ok(Method::GET, "/state", None).await;
    let hostnames = "/zones/zone-provider/custom_hostnames";
    // 10x the bound, zero, negative, a fraction, the wrong type, an unknown field.
    let bad: [(Value, StatusCode, u64, &str); 7] = [
        (
            json!({"new_connections_per_second": 10_000_000}),
            StatusCode::BAD_REQUEST,
            VALIDATION,
            "admission.new_connections_per_second` is 10000000, at most 1000000",
        ),
        (
            json!({"max_concurrent_requests": 10_000_000}),
            StatusCode::BAD_REQUEST,
            VALIDATION,
            "admission.max_concurrent_requests` is 10000000, at most 1000000",
        ),
        (
            json!({"max_concurrent_requests": 0}),
            StatusCode::BAD_REQUEST,
            VALIDATION,
            "must be at least 1",
        ),
        (
            json!({"new_connections_per_second": -1}),
            StatusCode::BAD_REQUEST,
            MALFORMED,
            "an admission budget must be a whole number from 1 to 1000000, not -1",
        ),
        (
            json!({"new_connections_per_second": 2.5}),
            StatusCode::BAD_REQUEST,
            MALFORMED,
            "not 2.5",
        ),
        (
            json!({"max_concurrent_requests": "many"}),
            StatusCode::BAD_REQUEST,
            MALFORMED,
            "not \"many\"",
        ),
        (
            json!({"connections": 5}),
            StatusCode::BAD_REQUEST,
            MALFORMED,
            "unknown field `connections`",
        ),
    ];
    for (admission, status, code, needle) in bad {
        // A new custom hostname with it.
        let body = json!({"hostname": "new.example.org", "admission": admission});
        control
            .refused(Method::POST, hostnames, Some(body), status, code, needle)
            .await;
        // A patch of tenant A's.
        control
            .refused(
                Method::PATCH,
                &format!("{hostnames}/ch2"),
                Some(json!({"admission": admission})),
                status,
                code,
                needle,
            )
            .await;
        // A new zone's settings.
        let body = json!({"name": "new.test", "account": {"id": "acct-customer"},
                          "settings": {"admission": admission}});
        control
            .refused(Method::POST, "/zones", Some(body), status, code, needle)
            .await;
        // The whole state, with one zone's setting bad.
        let mut state = before.clone();
        state["zones"][0]["zone"]["settings"] = json!({"admission": admission});
        control
            .refused(Method::PUT, "/state", Some(state), status, code, needle)
            .await;
    }
    assert_eq!(
        control.ok(Method::GET, "/state", None).await,
        before,
        "nothing changed"
    );

    // A good one is stored, shown and exported.
    let patched = control
        .ok(
            Method::PATCH,
            &format!("{hostnames}/ch2"),
            Some(json!({"admission": {"new_connections_per_second": 1_000_000, "max_concurrent_requests": 7}})),
        )
        .await;
    assert_eq!(patched["admission"]["max_concurrent_requests"], 7);
    let zone = control
        .ok(
            Method::POST,
            "/zones",
            Some(
                json!({"name": "new.test", "account": {"id": "acct-customer"},
                        "settings": {"admission": {"max_concurrent_requests": 3}}}),
            ),
        )
        .await;
    assert_eq!(zone["settings"]["admission"]["max_concurrent_requests"], 3);
    let exported = control.ok(Method::GET, "/state", None).await.to_string();
    assert!(
        exported.contains(r#""admission":{"max_concurrent_requests":3}"#),
        "{exported}"
    );
    assert!(
        exported.contains(
            r#""admission":{"new_connections_per_second":1000000,"max_concurrent_requests":7}"#
        ) || exported.contains(
            r#""admission":{"max_concurrent_requests":7,"new_connections_per_second":1000000}"#
        ),
        "{exported}"
    );
}
