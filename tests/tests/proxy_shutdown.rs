//! Graceful shutdown: the listener stops accepting, in-flight requests finish, and the drain
//! deadline bounds how long a stuck request can hold the process.

use std::time::{Duration, Instant};

use edge_tests::proxy::{BadOrigin, Edge, EdgeSetup, plain_origin, spawn_bad_origin};
use tokio::net::TcpStream;

const HOST: &str = "drain.example.com";

async fn edge(delay: Duration, drain: Duration) -> Edge {
    let origin = spawn_bad_origin(BadOrigin::Delayed(delay)).await.unwrap();
    let mut setup = EdgeSetup::new(vec![(HOST.into(), plain_origin(origin))]);
    setup.limits.drain_timeout = drain;
    Edge::start(setup).await.unwrap()
}

/// Polls until connecting fails, for at most five seconds.
async fn refuses_connections(edge: &Edge) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if TcpStream::connect(edge.tls_addr).await.is_err() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn in_flight_requests_finish_after_shutdown() {
    let mut edge = edge(Duration::from_millis(1500), Duration::from_secs(10)).await;
    let mut in_flight = Vec::new();
    for http2 in [false, true] {
        let client = edge.client(&[HOST], http2);
        let url = format!("https://{HOST}:{}/", edge.tls_addr.port());
        in_flight.push(tokio::spawn(async move {
            let response = client.get(url).send().await?;
            Ok::<_, reqwest::Error>((response.status(), response.text().await?))
        }));
    }
    // Let both requests reach the origin, then signal shutdown while they wait on it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    edge.begin_shutdown();
    assert!(
        refuses_connections(&edge).await,
        "the listener closes at once"
    );
    for request in in_flight {
        let (status, body) = request.await.unwrap().unwrap();
        assert_eq!((status.as_u16(), body.as_str()), (200, "ok"));
    }
    tokio::time::timeout(Duration::from_secs(5), edge.drained())
        .await
        .expect("drained once the requests finished")
        .unwrap();
}

#[tokio::test]
async fn drain_deadline_closes_stuck_requests() {
    let mut edge = edge(Duration::from_secs(30), Duration::from_millis(300)).await;
    let client = edge.client(&[HOST], false);
    let url = format!("https://{HOST}:{}/", edge.tls_addr.port());
    let stuck = tokio::spawn(async move { client.get(url).send().await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    edge.begin_shutdown();
    tokio::time::timeout(Duration::from_secs(5), edge.drained())
        .await
        .expect("the deadline ends the drain")
        .unwrap();
    let result = tokio::time::timeout(Duration::from_secs(5), stuck)
        .await
        .expect("the stuck client is disconnected")
        .unwrap();
    assert!(
        result.is_err(),
        "a request cut by the deadline is not answered: {result:?}"
    );
}
