//! SIGTERM stops the listener. Alone in its test binary: the signal goes to this process.

use std::time::Duration;

use edge_tests::proxy::{TableRouter, plain_origin, spawn_echo};
use edge_userspace::downstream::{Limits, serve, shutdown_signal};
use edge_userspace::pipeline::{PipelineConfig, Proxy, Route};
use edge_userspace::upstream::{Client, ClientConfig};

#[tokio::test]
async fn sigterm_drains_and_stops_the_listener() {
    let echo = spawn_echo().await.unwrap();
    let route = Route {
        origin: plain_origin(echo),
        host_header: "signal.example.com".parse().unwrap(),
        max_request_body: None,
        admitted: None,
    };
    let proxy = Proxy::new(
        TableRouter([("signal.example.com".to_owned(), route)].into()),
        Client::new(ClientConfig::default()).unwrap(),
        PipelineConfig::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let signal = shutdown_signal().unwrap();
    let server = tokio::spawn(serve(listener, None, proxy, Limits::default(), signal));

    let client = reqwest::Client::builder()
        .no_proxy()
        .resolve("signal.example.com", addr)
        .build()
        .unwrap();
    let url = format!("http://signal.example.com:{}/", addr.port());
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);

    let killed = std::process::Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the server stops on SIGTERM")
        .unwrap()
        .unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
