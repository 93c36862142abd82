//! Origin pools are bounded and go when unused: a client that invents a new origin per
//! request (a TLS origin's SNI is the request's host under a wildcard hostname) cannot make the
//! edge keep a pool and a sweep task per name for ever. Driven through the real origin client
//! against the echo origin on loopback, ten times the bound.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_tests::proxy::spawn_echo;
use edge_userspace::upstream::{Client, ClientConfig, LocalNames, Origin, RequestBody};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};

const MAX_POOLS: usize = 4;
const IDLE: Duration = Duration::from_millis(300);
/// The client address every request comes from (its per-client cap is not what is tested).
const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// Every `*.test` name is loopback.
struct Loopback;

impl LocalNames for Loopback {
    fn lookup(&self, name: &str) -> Option<Vec<IpAddr>> {
        name.ends_with(".test")
            .then(|| vec![IpAddr::from([127, 0, 0, 1])])
    }
}

fn request(host: &str) -> Request<RequestBody> {
    let body = Empty::new().map_err(|never| match never {}).boxed_unsync();
    Request::get("/pool")
        .header("host", host)
        .body(body)
        .unwrap()
}

fn origin(i: usize, port: u16) -> Origin {
    Origin {
        host: format!("o{i}.test"),
        port,
        tls: None,
    }
}

#[tokio::test]
async fn origin_pools_are_bounded_and_evicted_when_unused() {
    let echo = spawn_echo().await.unwrap();
    let client = Client::new(ClientConfig {
        max_origin_pools: MAX_POOLS,
        pool_idle_timeout: IDLE,
        connect_timeout: Duration::from_secs(2),
        header_timeout: Duration::from_secs(10),
        ..ClientConfig::default()
    })
    .unwrap()
    .with_local_names(Arc::new(Loopback));

    // Ten times the bound, one new origin per request, each answered in full.
    for i in 0..10 * MAX_POOLS {
        let response = client
            .send(&origin(i, echo.port()), CLIENT, request("pool.test"))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.into_body().collect().await.unwrap();
        assert!(client.origin_pools() <= MAX_POOLS, "after origin {i}");
    }
    assert_eq!(client.origin_pools(), MAX_POOLS);

    // Pools nobody uses go by themselves, with their sweep tasks.
    let deadline = Instant::now() + Duration::from_secs(20);
    while client.origin_pools() > 0 {
        assert!(Instant::now() < deadline, "unused pools were never evicted");
        tokio::time::sleep(IDLE / 2).await;
    }

    // Every pool carrying a request: a further origin is refused, not added.
    let mut held = Vec::new();
    for i in 0..MAX_POOLS {
        let response = client
            .send(&origin(100 + i, echo.port()), CLIENT, request("pool.test"))
            .await
            .unwrap();
        held.push(response);
    }
    let Err(refused) = client
        .send(&origin(200, echo.port()), CLIENT, request("pool.test"))
        .await
    else {
        panic!("a new origin while every pool carries a request got a pool");
    };
    assert_eq!(refused.status(), StatusCode::BAD_GATEWAY, "{refused}");
    assert_eq!(client.origin_pools(), MAX_POOLS);
    // Once their responses are read, the next origin takes a free place.
    for response in held {
        response.into_body().collect().await.unwrap();
    }
    let response = client
        .send(&origin(200, echo.port()), CLIENT, request("pool.test"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(client.origin_pools() <= MAX_POOLS);
}
