//! Origin connections through the real `edge serve`: origin names resolve through the edge's
//! own records before the system resolver, pooled connections the origin closed are never
//! used, and a request that reached the origin is never sent twice.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use edge_tests::chain::{RunningEdge, o2o_state};
use edge_tests::proxy::{echoed_header, spawn_echo};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const HOST: &str = "mystore.example.com";
const PROVIDER: usize = 1;

/// Routes the provider stage to `host:port` instead of its fallback origin.
fn route_to(state: &mut Value, host: &str, port: u16) {
    state["zones"][PROVIDER]["zone"]["rulesets"]["http_request_origin"] = json!({"rules": [
        {"expression": "true", "action": "route",
         "action_parameters": {"origin": {"host": host, "port": port}}}
    ]});
}

#[tokio::test]
async fn origin_names_resolve_through_the_edges_own_records_then_the_system() {
    let echo = spawn_echo().await.unwrap();
    // Names under .invalid exist nowhere but in this edge's state.
    let cases = [
        ("backend.origins.invalid", "an A record"),
        ("alias.origins.invalid", "a CNAME to an A record"),
        ("any.wild.origins.invalid", "a wildcard A record"),
        ("localhost", "the system resolver"),
    ];
    for (name, via) in cases {
        let mut state = o2o_state(echo);
        state["zones"].as_array_mut().unwrap().push(json!({
            "zone": {"id": "zone-origins", "name": "origins.invalid", "account": {"id": "acct-provider"}},
            "dns_records": [
                {"id": "o1", "type": "A", "name": "backend.origins.invalid", "content": "127.0.0.1"},
                {"id": "o2", "type": "CNAME", "name": "alias.origins.invalid", "content": "backend.origins.invalid"},
                {"id": "o3", "type": "A", "name": "*.wild.origins.invalid", "content": "127.0.0.1"}
            ]
        }));
        route_to(&mut state, name, echo.port());
        let edge = RunningEdge::start(state).await.unwrap();
        let client = edge.client(&[HOST], true);
        let response = client
            .get(format!("https://{HOST}:{}/dns", edge.https.port()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{name} via {via}");
        let seen: Value = response.json().await.unwrap();
        assert_eq!(echoed_header(&seen, "host"), vec![HOST], "{name}");
        edge.stop().await.unwrap();
    }
}

/// An origin that answers every request with keep-alive promised, then closes the connection;
/// or, with `answer` off, reads the request and closes without answering.
async fn closing_origin(answer: bool) -> (SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (connections, requests) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (c, r) = (connections.clone(), requests.clone());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve_once(tcp, answer, r.clone()));
        }
    });
    (addr, connections, requests)
}

async fn serve_once(mut tcp: TcpStream, answer: bool, requests: Arc<AtomicUsize>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 64 * 1024 {
            return;
        }
    }
    requests.fetch_add(1, Ordering::SeqCst);
    if answer {
        let _ = tcp
            .write_all(b"HTTP/1.1 200 OK\r\nconnection: keep-alive\r\ncontent-length: 2\r\n\r\nok")
            .await;
    }
    let _ = tcp.shutdown().await;
}

#[tokio::test]
async fn pooled_connections_the_origin_closed_are_not_used() {
    let (origin, connections, requests) = closing_origin(true).await;
    let mut state = o2o_state(origin);
    route_to(&mut state, "127.0.0.1", origin.port());
    let edge = RunningEdge::start(state).await.unwrap();
    let client = edge.client(&[HOST], true);
    let url = format!("https://{HOST}:{}/", edge.https.port());
    for i in 0..10 {
        let get = client.get(&url).send().await.unwrap();
        assert_eq!(get.status(), 200, "GET {i}");
        assert_eq!(get.text().await.unwrap(), "ok");
        // Not idempotent: it must never meet a closed pooled connection either.
        let post = client.post(&url).body("x").send().await.unwrap();
        assert_eq!(post.status(), 200, "POST {i}");
    }
    // One request per connection, each seen once.
    assert_eq!(requests.load(Ordering::SeqCst), 20);
    assert_eq!(connections.load(Ordering::SeqCst), 20);
    edge.stop().await.unwrap();
}

#[tokio::test]
async fn a_request_that_reached_the_origin_is_not_sent_again() {
    let (origin, connections, requests) = closing_origin(false).await;
    let mut state = o2o_state(origin);
    route_to(&mut state, "127.0.0.1", origin.port());
    let edge = RunningEdge::start(state).await.unwrap();
    let client = edge.client(&[HOST], true);
    let url = format!("https://{HOST}:{}/", edge.https.port());
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 502);
    assert_eq!(
        requests.load(Ordering::SeqCst),
        1,
        "GET reached the origin once"
    );
    let response = client.put(&url).body("x").send().await.unwrap();
    assert_eq!(response.status(), 502);
    assert_eq!(
        requests.load(Ordering::SeqCst),
        2,
        "PUT reached the origin once"
    );
    assert_eq!(connections.load(Ordering::SeqCst), 2);
    edge.stop().await.unwrap();
}
