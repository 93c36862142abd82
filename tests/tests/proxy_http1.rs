//! HTTP/1.1 framing on the TLS listener, spoken byte by byte: pipelined requests are answered
//! in order on one connection, chunked uploads are re-framed for the origin, and a request
//! trying to smuggle a second one through conflicting lengths is refused (the whole table of
//! shapes: `h1_conformance.rs`).

use std::sync::Arc;
use std::time::Duration;

use edge_tests::proxy::{Edge, EdgeSetup, plain_origin, spawn_echo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HOST: &str = "h1.example.com";

async fn connect() -> (Edge, tokio_rustls::client::TlsStream<tokio::net::TcpStream>) {
    let echo = spawn_echo().await.unwrap();
    let edge = Edge::start(EdgeSetup::new(vec![(HOST.into(), plain_origin(echo))]))
        .await
        .unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(edge.rustls_client(&[b"http/1.1"])));
    let tcp = tokio::net::TcpStream::connect(edge.tls_addr).await.unwrap();
    let stream = tls.connect(HOST.try_into().unwrap(), tcp).await.unwrap();
    (edge, stream)
}

/// Everything the edge sends until it closes the connection.
async fn read_all(stream: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out))
        .await
        .expect("the edge closes after `connection: close`")
        .ok();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let (_edge, mut stream) = connect().await;
    stream
        .write_all(
            b"GET /first HTTP/1.1\r\nhost: h1.example.com\r\n\r\n\
              POST /second HTTP/1.1\r\nhost: h1.example.com\r\ntransfer-encoding: chunked\r\n\r\n\
              5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n\
              GET /third HTTP/1.1\r\nhost: h1.example.com\r\nconnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    let all = read_all(&mut stream).await;
    assert_eq!(all.matches("HTTP/1.1 200 OK").count(), 3, "{all}");
    let first = all.find(r#""path":"/first""#).expect(&all);
    let second = all.find(r#""path":"/second""#).expect(&all);
    let third = all.find(r#""path":"/third""#).expect(&all);
    assert!(first < second && second < third, "{all}");
    assert!(
        all.contains(r#""length":11"#),
        "the chunked body arrived whole: {all}"
    );
}

#[tokio::test]
async fn conflicting_lengths_cannot_smuggle_a_request() {
    let (_edge, mut stream) = connect().await;
    stream
        .write_all(
            b"POST / HTTP/1.1\r\nhost: h1.example.com\r\ncontent-length: 4\r\n\
              transfer-encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nhost: h1.example.com\r\n\r\n",
        )
        .await
        .unwrap();
    // RFC 9112 §6.1: a server may refuse the pair, and an edge in front of many origins does:
    // 400, the connection closed, nothing after the head read as a request.
    let all = read_all(&mut stream).await;
    assert_eq!(all.matches("HTTP/1.1 ").count(), 1, "{all}");
    assert!(all.starts_with("HTTP/1.1 400 "), "{all}");
    assert!(all.contains("connection: close"), "{all}");
    assert!(!all.contains("/smuggled"), "{all}");
}
