//! Protocol upgrades: an HTTP/1.1 `Upgrade` (WebSocket) is tunnelled to the origin byte for
//! byte; `CONNECT` tunnels are refused with a clear status.

use std::sync::Arc;

use edge_tests::proxy::{Edge, EdgeSetup, plain_origin, spawn_echo};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HOST: &str = "ws.example.com";

async fn edge() -> Edge {
    let echo = spawn_echo().await.unwrap();
    Edge::start(EdgeSetup::new(vec![(HOST.into(), plain_origin(echo))]))
        .await
        .unwrap()
}

async fn tls_stream(edge: &Edge) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tls = tokio_rustls::TlsConnector::from(Arc::new(edge.rustls_client(&[b"http/1.1"])));
    let tcp = tokio::net::TcpStream::connect(edge.tls_addr).await.unwrap();
    tls.connect(HOST.try_into().unwrap(), tcp).await.unwrap()
}

#[tokio::test]
async fn websocket_upgrade_is_tunnelled_to_the_origin() {
    let edge = edge().await;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(tls_stream(&edge).await))
            .await
            .unwrap();
    tokio::spawn(conn.with_upgrades());
    let request = http::Request::get("/chat")
        .header("host", HOST)
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let mut response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 101);
    assert_eq!(response.headers()["upgrade"], "websocket");
    assert!(response.headers().contains_key("cf-ray"));
    let upgraded = hyper::upgrade::on(&mut response).await.unwrap();
    let mut upgraded = TokioIo::new(upgraded);
    for message in [&b"ping"[..], &[0u8, 1, 2, 255][..], &vec![7u8; 100_000][..]] {
        upgraded.write_all(message).await.unwrap();
        let mut echoed = vec![0u8; message.len()];
        upgraded.read_exact(&mut echoed).await.unwrap();
        assert_eq!(echoed, message);
    }
}

#[tokio::test]
async fn connect_tunnels_are_refused() {
    let edge = edge().await;
    let mut stream = tls_stream(&edge).await;
    stream
        .write_all(b"CONNECT internal.example.org:443 HTTP/1.1\r\nhost: internal.example.org:443\r\naccept: application/json\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 405");
}
