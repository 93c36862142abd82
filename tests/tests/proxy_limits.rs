//! Listener limits: oversized request heads get 431, HTTP/2 stream limits and the rapid-reset
//! guard hold, slow clients and stalled handshakes are cut off, the connection cap queues.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use edge_tests::h2raw::{frame, get_block, preface};
use edge_tests::proxy::{Edge, EdgeSetup, plain_origin, spawn_echo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HOST: &str = "limits.example.com";

async fn edge(tweak: impl FnOnce(&mut EdgeSetup)) -> Edge {
    let echo = spawn_echo().await.unwrap();
    let mut setup = EdgeSetup::new(vec![(HOST.into(), plain_origin(echo))]);
    tweak(&mut setup);
    Edge::start(setup).await.unwrap()
}

async fn h2_connection(
    edge: &Edge,
) -> (
    h2::client::SendRequest<Bytes>,
    h2::client::Connection<tokio_rustls::client::TlsStream<TcpStream>, Bytes>,
) {
    let tls = tokio_rustls::TlsConnector::from(Arc::new(edge.rustls_client(&[b"h2"])));
    let tcp = TcpStream::connect(edge.tls_addr).await.unwrap();
    let stream = tls.connect(HOST.try_into().unwrap(), tcp).await.unwrap();
    h2::client::handshake(stream).await.unwrap()
}

#[tokio::test]
async fn oversized_request_heads_get_431() {
    let edge = edge(|_| {}).await;
    let url = format!("https://{HOST}:{}/", edge.tls_addr.port());
    let big = "x".repeat(40 * 1024);
    for http2 in [false, true] {
        let client = edge.client(&[HOST], http2);
        let response = client.get(&url).header("x-big", &big).send().await.unwrap();
        assert_eq!(response.status(), 431, "http2={http2}");
        let ok = client
            .get(&url)
            .header("x-small", "y")
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200, "http2={http2}");
    }
    let mut many = edge.client(&[HOST], false).get(&url);
    for i in 0..150 {
        many = many.header(format!("x-h{i}"), "1");
    }
    assert_eq!(many.send().await.unwrap().status(), 431);
}

#[tokio::test]
async fn h2_stream_limit_is_advertised() {
    let edge = edge(|setup| {
        setup.limits.h2_max_concurrent_streams = 4;
    })
    .await;

    let (client, connection) = h2_connection(&edge).await;
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let request = http::Request::get(format!("https://{HOST}/"))
        .body(())
        .unwrap();
    let (response, _) = client.send_request(request, true).unwrap();
    assert_eq!(response.await.unwrap().status(), 200);
    assert_eq!(client.current_max_send_streams(), 4);
}

/// One raw HTTP/2 frame: well-behaved clients (the h2 crate) refuse to send an attack burst.
#[tokio::test]
async fn h2_rapid_reset_flood_gets_goaway() {
    let edge = edge(|setup| setup.limits.h2_max_pending_accept_reset_streams = 10).await;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(edge.rustls_client(&[b"h2"])));
    let tcp = TcpStream::connect(edge.tls_addr).await.unwrap();
    let mut stream = tls.connect(HOST.try_into().unwrap(), tcp).await.unwrap();

    let block = get_block(HOST);
    let mut burst = preface();
    for i in 0..100u32 {
        let id = 2 * i + 1;
        burst.extend(frame(0x1, 0x4 | 0x1, id, &block));
        burst.extend(frame(0x3, 0, id, &0x8u32.to_be_bytes()));
    }
    stream.write_all(&burst).await.unwrap();

    // Read frames until GOAWAY and check its error code.
    let goaway = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            while buf.len() >= 9 {
                let len = u32::from_be_bytes([0, buf[0], buf[1], buf[2]]) as usize;
                if buf.len() < 9 + len {
                    break;
                }
                let frame: Vec<u8> = buf.drain(..9 + len).collect();
                if frame[3] == 0x7 {
                    return Some(u32::from_be_bytes(frame[13..17].try_into().unwrap()));
                }
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .expect("the edge reacts to the flood in time");
    assert_eq!(goaway, Some(u32::from(h2::Reason::ENHANCE_YOUR_CALM)));
}

/// Reads until EOF; `None` when the peer kept the connection open for `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut seen = Vec::new();
    tokio::time::timeout(limit, async {
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .ok()
    .map(|()| seen)
}

#[tokio::test]
async fn slow_clients_are_cut_off() {
    let edge = edge(|setup| {
        setup.limits.header_read_timeout = Duration::from_millis(300);
        setup.limits.tls_handshake_timeout = Duration::from_millis(300);
    })
    .await;
    // Slowloris on the plain listener: half a request head, then silence.
    let mut slow = TcpStream::connect(edge.plain_addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nhost: limits.example.com\r\nx-a: ")
        .await
        .unwrap();
    assert!(
        closed_within(&mut slow, Duration::from_secs(5))
            .await
            .is_some()
    );
    // A TCP client that never starts the TLS handshake.
    let mut silent = TcpStream::connect(edge.tls_addr).await.unwrap();
    assert_eq!(
        closed_within(&mut silent, Duration::from_secs(5)).await,
        Some(Vec::new())
    );
}

async fn answered(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 16];
    matches!(
        tokio::time::timeout(limit, stream.read_exact(&mut buf)).await,
        Ok(Ok(_)) if buf.starts_with(b"HTTP/1.1 200")
    )
}

#[tokio::test]
async fn connection_cap_queues_further_clients_behind_busy_connections() {
    let edge = edge(|setup| setup.limits.max_connections = 2).await;
    let request = b"GET / HTTP/1.1\r\nhost: limits.example.com\r\n\r\n";
    // Two connections busy with an upload that has not ended: nothing to shed.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(edge.plain_addr).await.unwrap();
        stream
            .write_all(
                b"POST / HTTP/1.1\r\nhost: limits.example.com\r\ncontent-length: 10\r\n\r\nabc",
            )
            .await
            .unwrap();
        held.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut third = TcpStream::connect(edge.plain_addr).await.unwrap();
    third.write_all(request).await.unwrap();
    assert!(
        !answered(&mut third, Duration::from_millis(500)).await,
        "served beyond the cap"
    );
    drop(held.pop());
    assert!(
        answered(&mut third, Duration::from_secs(5)).await,
        "served once a slot frees"
    );
}

#[tokio::test]
async fn a_full_listener_sheds_the_connection_idle_longest() {
    let edge = edge(|setup| setup.limits.max_connections = 2).await;
    let request = b"GET / HTTP/1.1\r\nhost: limits.example.com\r\n\r\n";
    // Two keep-alive connections, idle after their answer.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(edge.plain_addr).await.unwrap();
        stream.write_all(request).await.unwrap();
        assert!(answered(&mut stream, Duration::from_secs(5)).await);
        held.push(stream);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut third = TcpStream::connect(edge.plain_addr).await.unwrap();
    third.write_all(request).await.unwrap();
    assert!(
        answered(&mut third, Duration::from_secs(5)).await,
        "a new client waited behind idle connections"
    );
    assert!(
        closed_within(&mut held[0], Duration::from_secs(5))
            .await
            .is_some(),
        "the connection idle longest was closed"
    );
}

#[tokio::test]
async fn silent_and_idle_connections_are_closed() {
    let edge = edge(|setup| setup.limits.idle_timeout = Duration::from_millis(300)).await;
    // Plain TCP that never sends a byte; TLS that completes its handshake, then says nothing.
    let mut silent = TcpStream::connect(edge.plain_addr).await.unwrap();
    assert_eq!(
        closed_within(&mut silent, Duration::from_secs(5)).await,
        Some(Vec::new())
    );
    let tls = tokio_rustls::TlsConnector::from(Arc::new(edge.rustls_client(&[b"h2"])));
    let tcp = TcpStream::connect(edge.tls_addr).await.unwrap();
    let mut quiet = tls.connect(HOST.try_into().unwrap(), tcp).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buf = [0u8; 1024];
        while let Ok(1..) = quiet.read(&mut buf).await {}
    })
    .await;
    assert!(closed.is_ok(), "a silent TLS connection stayed open");
    // A keep-alive connection between requests.
    let mut kept = TcpStream::connect(edge.plain_addr).await.unwrap();
    kept.write_all(b"GET / HTTP/1.1\r\nhost: limits.example.com\r\n\r\n")
        .await
        .unwrap();
    assert!(
        closed_within(&mut kept, Duration::from_secs(5))
            .await
            .is_some()
    );
}

#[tokio::test]
async fn invalid_limits_are_refused_before_serving() {
    use edge_tests::proxy::TableRouter;
    use edge_userspace::downstream::{Limits, serve};
    use edge_userspace::pipeline::{PipelineConfig, Proxy};
    use edge_userspace::upstream::{Client, ClientConfig};

    let proxy = Proxy::new(
        TableRouter(Default::default()),
        Client::new(ClientConfig::default()).unwrap(),
        PipelineConfig::default(),
    );
    for (limits, complaint) in [
        (
            Limits {
                max_connections: 0,
                ..Limits::default()
            },
            "max_connections",
        ),
        (
            Limits {
                max_header_bytes: 100,
                ..Limits::default()
            },
            "max_header_bytes",
        ),
        (
            Limits {
                header_read_timeout: Duration::ZERO,
                ..Limits::default()
            },
            "header_read_timeout",
        ),
    ] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let served = tokio::time::timeout(
            Duration::from_secs(5),
            serve(
                listener,
                None,
                proxy.clone(),
                limits,
                std::future::pending(),
            ),
        )
        .await
        .expect("refused at once");
        let error = served.unwrap_err().to_string();
        assert!(error.contains(complaint), "{error}");
    }
}
