//! Origin side: failures map to 502 / 504 without hurting other requests, TLS to origins in
//! `strict` and `full` modes, HTTP/2 to origins that negotiate it, and pooled connections.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use edge_tests::proxy::{
    BadOrigin, Edge, EdgeSetup, plain_origin, refusing_origin, spawn_bad_origin,
    spawn_counted_bad_origin, spawn_echo, spawn_tls_echo,
};
use edge_userspace::downstream::LocalCa;
use edge_userspace::upstream::{Origin, OriginTls};
use futures_util::StreamExt;
use serde_json::Value;

const ECHO: &str = "echo.example.com";

async fn edge_with(routes: Vec<(String, Origin)>, tweak: impl FnOnce(&mut EdgeSetup)) -> Edge {
    let echo = spawn_echo().await.unwrap();
    let mut all = vec![(ECHO.to_owned(), plain_origin(echo))];
    all.extend(routes);
    let mut setup = EdgeSetup::new(all);
    tweak(&mut setup);
    Edge::start(setup).await.unwrap()
}

fn url(edge: &Edge, host: &str, path: &str) -> String {
    format!("https://{host}:{}{path}", edge.tls_addr.port())
}

#[tokio::test]
async fn refused_and_reset_origins_answer_502() {
    let refused = refusing_origin().await.unwrap();
    let reset = spawn_bad_origin(BadOrigin::ResetBeforeHead).await.unwrap();
    let edge = edge_with(
        vec![
            ("refused.example.com".into(), plain_origin(refused)),
            ("reset.example.com".into(), plain_origin(reset)),
        ],
        |_| {},
    )
    .await;
    let client = edge.client(&["refused.example.com", "reset.example.com", ECHO], true);
    for host in ["refused.example.com", "reset.example.com"] {
        let response = client
            .get(url(&edge, host, "/"))
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 502, "{host}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["errors"][0]["code"], 502, "{host}");
    }
    // The same connection keeps serving healthy origins.
    let ok = client.get(url(&edge, ECHO, "/")).send().await.unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn reset_mid_body_aborts_only_that_response() {
    let reset = spawn_bad_origin(BadOrigin::ResetMidBody).await.unwrap();
    let edge = edge_with(
        vec![("reset.example.com".into(), plain_origin(reset))],
        |_| {},
    )
    .await;
    for http2 in [false, true] {
        let client = edge.client(&["reset.example.com", ECHO], http2);
        let response = client
            .get(url(&edge, "reset.example.com", "/"))
            .send()
            .await
            .unwrap();
        // The head was already forwarded; the client must see the body fail, not end cleanly.
        assert_eq!(response.status(), 200);
        assert_eq!(response.content_length(), Some(1_000_000));
        assert!(response.bytes().await.is_err(), "http2={http2}");
        let ok = client.get(url(&edge, ECHO, "/")).send().await.unwrap();
        assert_eq!(ok.status(), 200, "http2={http2}");
    }
}

#[tokio::test]
async fn silent_origin_answers_504_while_others_proceed() {
    let silent = spawn_bad_origin(BadOrigin::Silent).await.unwrap();
    let edge = edge_with(
        vec![("slow.example.com".into(), plain_origin(silent))],
        |setup| {
            setup.client.header_timeout = Duration::from_millis(1500);
        },
    )
    .await;
    let client = edge.client(&["slow.example.com", ECHO], true);
    let slow = tokio::spawn({
        let (client, url) = (client.clone(), url(&edge, "slow.example.com", "/"));
        async move { client.get(url).send().await.unwrap() }
    });
    // While the slow request hangs on the same HTTP/2 connection, others are answered.
    for _ in 0..5 {
        let ok = client.get(url(&edge, ECHO, "/")).send().await.unwrap();
        assert_eq!(ok.status(), 200);
    }
    assert!(!slow.is_finished());
    let slow = slow.await.unwrap();
    assert_eq!(slow.status(), 504);
    let page = slow.text().await.unwrap();
    assert!(page.contains("Error 504"), "{page}");
}

/// A TLS origin whose certificate (for `origin.internal`) comes from its own CA.
async fn tls_origin(
    alpn: &[&[u8]],
) -> (
    LocalCa,
    std::net::SocketAddr,
    Arc<std::sync::atomic::AtomicUsize>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let ca = LocalCa::load_or_create(dir.path()).unwrap();
    let cert = ca.mint(&["origin.internal".into()]).unwrap();
    let (addr, connections) = spawn_tls_echo(cert, alpn).await.unwrap();
    (ca, addr, connections, dir)
}

fn tls(addr: std::net::SocketAddr, sni: &str, verify: bool) -> Origin {
    Origin {
        host: addr.ip().to_string(),
        port: addr.port(),
        tls: Some(OriginTls {
            sni: sni.into(),
            verify,
        }),
    }
}

#[tokio::test]
async fn strict_mode_verifies_the_origin_and_full_mode_does_not() {
    let (origin_ca, addr, _, _dir) = tls_origin(&[b"http/1.1"]).await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(origin_ca.cert_der().clone()).unwrap();
    let edge = edge_with(
        vec![
            (
                "strict.example.com".into(),
                tls(addr, "origin.internal", true),
            ),
            (
                "strict-wrong-sni.example.com".into(),
                tls(addr, "other.internal", true),
            ),
            (
                "full.example.com".into(),
                tls(addr, "other.internal", false),
            ),
        ],
        |setup| setup.client.roots = Arc::new(roots),
    )
    .await;
    let hosts = [
        "strict.example.com",
        "strict-wrong-sni.example.com",
        "full.example.com",
    ];
    let client = edge.client(&hosts, false);
    for (host, status) in [(hosts[0], 200), (hosts[1], 502), (hosts[2], 200)] {
        let response = client.get(url(&edge, host, "/")).send().await.unwrap();
        assert_eq!(response.status(), status, "{host}");
    }
}

#[tokio::test]
async fn origin_connections_are_pooled_and_h2_is_multiplexed() {
    let (_ca, h2_addr, h2_conns, _dir1) = tls_origin(&[b"h2", b"http/1.1"]).await;
    let (_ca2, h1_addr, h1_conns, _dir2) = tls_origin(&[b"http/1.1"]).await;
    let edge = edge_with(
        vec![
            (
                "h2.example.com".into(),
                tls(h2_addr, "origin.internal", false),
            ),
            (
                "h1.example.com".into(),
                tls(h1_addr, "origin.internal", false),
            ),
        ],
        |_| {},
    )
    .await;
    let client = edge.client(&["h2.example.com", "h1.example.com"], true);
    for _ in 0..5 {
        let echo: Value = client
            .get(url(&edge, "h1.example.com", "/"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(echo["version"], "HTTP/1.1");
    }
    assert_eq!(
        h1_conns.load(Ordering::SeqCst),
        1,
        "sequential HTTP/1.1 requests reuse one connection"
    );

    let warm: Value = client
        .get(url(&edge, "h2.example.com", "/"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(warm["version"], "HTTP/2.0");
    // The virtual host travels as `:authority`, not the origin's address.
    assert_eq!(warm["authority"], "h2.example.com", "{warm}");
    let requests = (0..20).map(|_| client.get(url(&edge, "h2.example.com", "/")).send());
    for response in futures_util::future::join_all(requests).await {
        assert_eq!(response.unwrap().status(), 200);
    }
    assert_eq!(
        h2_conns.load(Ordering::SeqCst),
        1,
        "HTTP/2 multiplexes on one connection"
    );
}

#[tokio::test]
async fn slow_uploads_do_not_count_against_the_header_timeout() {
    let edge = edge_with(vec![], |setup| {
        setup.client.header_timeout = Duration::from_millis(500);
    })
    .await;
    // Ten chunks 150 ms apart: the upload takes three header timeouts, yet never stalls.
    let chunks = || {
        futures_util::stream::iter(0..10).then(|_| async {
            tokio::time::sleep(Duration::from_millis(150)).await;
            Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"0123456789"))
        })
    };
    for http2 in [false, true] {
        let response = edge
            .client(&[ECHO], http2)
            .post(url(&edge, ECHO, "/"))
            .body(reqwest::Body::wrap_stream(chunks()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "http2={http2}");
        let echo: Value = response.json().await.unwrap();
        assert_eq!(echo["body"]["length"], 100);
    }
}

#[tokio::test]
async fn a_hanging_origin_holds_at_most_its_in_flight_cap() {
    let (silent, connections) = spawn_counted_bad_origin(BadOrigin::Silent).await.unwrap();
    let edge = edge_with(
        vec![("slow.example.com".into(), plain_origin(silent))],
        |setup| {
            setup.client.header_timeout = Duration::from_secs(3);
            setup.client.max_in_flight_per_origin = 2;
        },
    )
    .await;
    let client = edge.client(&["slow.example.com", ECHO], true);
    let requests: Vec<_> = (0..6)
        .map(|_| {
            let (client, url) = (client.clone(), url(&edge, "slow.example.com", "/"));
            tokio::spawn(async move { client.get(url).send().await })
        })
        .collect();
    // Well inside the header timeout: two requests hold connections, four wait for a slot.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(connections.load(Ordering::SeqCst), 2);
    // Other origins are not limited by it.
    let ok = client.get(url(&edge, ECHO, "/")).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    // Waiting for a slot spends the same header timeout: all six end with 504.
    for request in requests {
        assert_eq!(request.await.unwrap().unwrap().status(), 504);
    }
}

#[test]
fn invalid_client_settings_are_refused() {
    use edge_userspace::upstream::{Client, ClientConfig};
    let error = Client::new(ClientConfig {
        max_in_flight_per_origin: 0,
        ..ClientConfig::default()
    })
    .err()
    .unwrap();
    assert!(
        error.to_string().contains("max_in_flight_per_origin"),
        "{error}"
    );
    let error = Client::new(ClientConfig {
        header_timeout: Duration::ZERO,
        ..ClientConfig::default()
    })
    .err()
    .unwrap();
    assert!(error.to_string().contains("header_timeout"), "{error}");
}

/// A plain HTTP/1.1 origin that answers `GET /wait/{ms}` after that many milliseconds, counting
/// the connections it accepted.
async fn waiting_origin() -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    use http_body_util::Full;
    use hyper::service::service_fn;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = connections.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let service = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                let ms: u64 = req.uri().path()["/wait/".len()..].parse().unwrap();
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                    bytes::Bytes::from_static(b"ok"),
                )))
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), service),
            );
        }
    });
    (addr, connections)
}

#[tokio::test]
async fn the_header_timeout_restarts_for_each_request_on_a_pooled_connection() {
    let (origin, connections) = waiting_origin().await;
    let edge = edge_with(
        vec![("wait.example.com".into(), plain_origin(origin))],
        |setup| {
            setup.client.header_timeout = Duration::from_millis(800);
        },
    )
    .await;
    let client = edge.client(&["wait.example.com"], false);
    let get = |ms: u64| {
        let request = client.get(url(&edge, "wait.example.com", &format!("/wait/{ms}")));
        async move {
            let started = std::time::Instant::now();
            let status = request.send().await.unwrap().status();
            (status, started.elapsed())
        }
    };
    assert_eq!(get(0).await.0, 200);
    // Idle past the first request's deadline: the connection's timer fired meanwhile.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        get(500).await.0,
        200,
        "a fresh deadline after an idle spell"
    );
    // Within the previous deadline: the timer is moved later, not left where it was.
    assert_eq!(
        get(500).await.0,
        200,
        "a fresh deadline right after a request"
    );
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "the requests above shared one origin connection"
    );
    let (status, waited) = get(5000).await;
    assert_eq!(status, 504);
    assert!(
        (Duration::from_millis(700)..Duration::from_millis(3000)).contains(&waited),
        "{waited:?}"
    );
}
