//! Bodies stream through the edge in both directions: large uploads and downloads arrive with
//! the same SHA-256 on the far side, over HTTP/1.1 and HTTP/2, and request trailers pass.

use std::sync::Arc;

use bytes::Bytes;
use edge_tests::proxy::{Edge, EdgeSetup, plain_origin, spawn_echo};
use futures_util::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use sha2::{Digest, Sha256};

const HOST: &str = "mystore.example.com";
const UPLOAD: usize = 48 * 1024 * 1024;
const DOWNLOAD: usize = 48 * 1024 * 1024;

async fn edge() -> Edge {
    let echo = spawn_echo().await.unwrap();
    Edge::start(EdgeSetup::new(vec![(HOST.into(), plain_origin(echo))]))
        .await
        .unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `UPLOAD` bytes in 256 KiB chunks of varying content, and their SHA-256.
fn upload() -> (reqwest::Body, String) {
    let chunk = |i: usize| Bytes::from(vec![(i * 7 + 3) as u8; 256 * 1024]);
    let mut hash = Sha256::new();
    for i in 0..UPLOAD / (256 * 1024) {
        hash.update(chunk(i));
    }
    let stream = futures_util::stream::iter(0..UPLOAD / (256 * 1024))
        .map(move |i| Ok::<_, std::io::Error>(chunk(i)));
    (reqwest::Body::wrap_stream(stream), hex(&hash.finalize()))
}

#[tokio::test]
async fn large_upload_streams_to_the_origin_intact() {
    let edge = edge().await;
    for http2 in [false, true] {
        let (body, sha) = upload();
        let response = edge
            .client(&[HOST], http2)
            .post(format!("https://{HOST}:{}/upload", edge.tls_addr.port()))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let echo: Value = response.json().await.unwrap();
        assert_eq!(echo["method"], "POST");
        assert_eq!(echo["body"]["length"], UPLOAD as u64, "http2={http2}");
        assert_eq!(echo["body"]["sha256"], sha.as_str(), "http2={http2}");
    }
}

#[tokio::test]
async fn large_download_streams_to_the_client_intact() {
    let edge = edge().await;
    let expected = edge_userspace::echo::download_sha256(DOWNLOAD as u64);
    for http2 in [false, true] {
        let mut response = edge
            .client(&[HOST], http2)
            .get(format!(
                "https://{HOST}:{}/bytes/{DOWNLOAD}",
                edge.tls_addr.port()
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let (mut hash, mut length) = (Sha256::new(), 0usize);
        while let Some(chunk) = response.chunk().await.unwrap() {
            length += chunk.len();
            hash.update(&chunk);
        }
        assert_eq!(length, DOWNLOAD, "http2={http2}");
        assert_eq!(hex(&hash.finalize()), expected, "http2={http2}");
    }
}

#[tokio::test]
async fn request_trailers_reach_the_origin() {
    let edge = edge().await;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(edge.rustls_client(&[b"h2"])));
    let tcp = tokio::net::TcpStream::connect(edge.tls_addr).await.unwrap();
    let stream = tls.connect(HOST.try_into().unwrap(), tcp).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);

    let mut trailers = http::HeaderMap::new();
    trailers.insert("x-checksum", "abc123".parse().unwrap());
    let frames = futures_util::stream::iter([
        Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from_static(b"hello "))),
        Ok(Frame::data(Bytes::from_static(b"world"))),
        Ok(Frame::trailers(trailers)),
    ]);
    let request = http::Request::post(format!("https://{HOST}/trailers"))
        .header("trailer", "x-checksum")
        .header("te", "trailers")
        .body(StreamBody::new(frames))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let echo: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(echo["body"]["length"], 11);
    assert_eq!(echo["trailers"]["x-checksum"][0], "abc123", "{echo}");
}

#[tokio::test]
async fn request_body_limit_answers_413() {
    let echo = spawn_echo().await.unwrap();
    let mut setup = EdgeSetup::new(vec![(HOST.into(), plain_origin(echo))]);
    setup.max_request_body = Some(1024 * 1024);
    let edge = Edge::start(setup).await.unwrap();
    let url = format!("https://{HOST}:{}/upload", edge.tls_addr.port());
    let chunks = |n: usize| {
        let stream = futures_util::stream::iter(0..n)
            .map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![1u8; 64 * 1024])));
        reqwest::Body::wrap_stream(stream)
    };
    for http2 in [false, true] {
        let client = edge.client(&[HOST], http2);
        // Declared too large: refused before a byte of body is read.
        let declared = client
            .post(&url)
            .body(vec![0u8; 2 * 1024 * 1024])
            .send()
            .await
            .unwrap();
        assert_eq!(declared.status(), 413, "http2={http2}");
        // Streamed without a length: cut off when it crosses the limit.
        let streamed = client.post(&url).body(chunks(32)).send().await.unwrap();
        assert_eq!(streamed.status(), 413, "http2={http2}");
        // Within the limit: forwarded.
        let ok = client.post(&url).body(chunks(8)).send().await.unwrap();
        assert_eq!(ok.status(), 200, "http2={http2}");
        let echo: Value = ok.json().await.unwrap();
        assert_eq!(echo["body"]["length"], 8 * 64 * 1024);
    }
}
