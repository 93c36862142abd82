//! HTTP/3 through the same O2O pipeline as HTTP/1.1 and HTTP/2: a quinn + h3 client against an
//! in-process `edge serve`, the echo origin reporting what arrived.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use edge_tests::chain::{RunningEdge, add_rules, o2o_state};
use edge_tests::h3::{H3Client, read_response};
use edge_tests::proxy::{echoed_header, spawn_echo};
use edge_userspace::echo::download_sha256;
use http::{Method, Request, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::net::UdpSocket;
use tokio::time::Instant;

const O2O: &str = "mystore.example.com";
const NOT_O2O: &str = "shop.othercustomer.net";
const CUSTOMER: usize = 0;
const PROVIDER: usize = 1;

async fn connect(edge: &RunningEdge, sni: &str) -> H3Client {
    let addr = edge.h3.expect("HTTP/3 is on by default");
    H3Client::connect(addr, sni, &edge.ca_pem).await.unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn o2o_header_reaches_the_origin_exactly_for_o2o_chains_and_cannot_be_forged() {
    let echo = spawn_echo().await.unwrap();
    let edge = RunningEdge::start(o2o_state(echo)).await.unwrap();
    assert_eq!(
        edge.h3.unwrap(),
        edge.https,
        "QUIC listens on the HTTPS address"
    );
    for (host, expected) in [(O2O, vec!["1"]), (NOT_O2O, vec![])] {
        let mut client = connect(&edge, host).await;
        let req = Request::get(format!("https://{host}/x"))
            .header("cf-connecting-o2o", "1")
            .header("early-data", "1")
            .body(())
            .unwrap();
        let response = client.send(req, []).await.unwrap();
        assert_eq!(response.status, 200, "{host}");
        assert!(response.headers.contains_key("cf-ray"));
        assert!(!response.headers.contains_key("alt-svc"), "not on HTTP/3");
        let seen = response.json();
        assert_eq!(
            echoed_header(&seen, "cf-connecting-o2o"),
            expected,
            "{host}"
        );
        assert_eq!(echoed_header(&seen, "host"), vec![host]);
        assert_eq!(echoed_header(&seen, "cf-connecting-ip"), vec!["127.0.0.1"]);
        assert_eq!(echoed_header(&seen, "x-forwarded-proto"), vec!["https"]);
        assert_eq!(
            echoed_header(&seen, "early-data"),
            Vec::<&str>::new(),
            "a client cannot claim early data"
        );
        assert_eq!(seen["path"], "/x");
    }
    edge.stop().await.unwrap();
}

#[tokio::test]
async fn block_redirect_and_rewrite_of_both_stages_apply_over_http3() {
    let echo = spawn_echo().await.unwrap();
    let mut state = o2o_state(echo);
    add_rules(
        &mut state,
        CUSTOMER,
        "http_request_firewall_custom",
        json!([{"expression": "http.request.uri.path eq \"/customer-block\"", "action": "block"}]),
    );
    add_rules(
        &mut state,
        PROVIDER,
        "http_request_firewall_custom",
        json!([{"expression": "http.request.uri.path eq \"/provider-block\"", "action": "block",
                "action_parameters": {"response": {"status_code": 451, "content_type": "text/plain", "content": "provider"}}}]),
    );
    for (zone, name) in [(CUSTOMER, "customer"), (PROVIDER, "provider")] {
        add_rules(
            &mut state,
            zone,
            "http_request_dynamic_redirect",
            json!([{"expression": format!("http.request.uri.path eq \"/{name}-old\""), "action": "redirect",
                    "action_parameters": {"from_value": {"status_code": 301, "target_url": {"value": format!("https://{name}.example/new")}}}}]),
        );
        add_rules(
            &mut state,
            zone,
            "http_request_transform",
            json!([{"expression": format!("http.request.uri.path eq \"/{name}-rewrite\""), "action": "rewrite",
                    "action_parameters": {"uri": {"path": {"value": format!("/rewritten-by-{name}")}}}}]),
        );
        add_rules(
            &mut state,
            zone,
            "http_request_late_transform",
            json!([{"expression": "true", "action": "rewrite", "action_parameters": {"headers": {
                "x-stages": {"operation": "add", "value": name}}}}]),
        );
        add_rules(
            &mut state,
            zone,
            "http_response_headers_transform",
            json!([{"expression": "true", "action": "rewrite", "action_parameters": {"headers": {
                "x-response-stages": {"operation": "add", "value": name}}}}]),
        );
    }
    let edge = RunningEdge::start(state).await.unwrap();

    let mut o2o = connect(&edge, O2O).await;
    let blocked = o2o.get(O2O, "/customer-block").await.unwrap();
    assert_eq!(blocked.status, 403, "the customer's block wins");
    let blocked = o2o.get(O2O, "/provider-block").await.unwrap();
    assert_eq!(blocked.status, 451);
    assert_eq!(blocked.body, b"provider");
    for name in ["customer", "provider"] {
        let redirect = o2o.get(O2O, &format!("/{name}-old")).await.unwrap();
        assert_eq!(redirect.status, 301, "{name}");
        assert_eq!(
            redirect.headers["location"],
            format!("https://{name}.example/new")
        );
        let rewritten = o2o.get(O2O, &format!("/{name}-rewrite")).await.unwrap();
        assert_eq!(rewritten.status, 200);
        let seen = rewritten.json();
        assert_eq!(seen["path"], format!("/rewritten-by-{name}"));
        assert_eq!(
            echoed_header(&seen, "x-stages"),
            vec!["customer", "provider"]
        );
        let stages: Vec<_> = rewritten
            .headers
            .get_all("x-response-stages")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(
            stages,
            ["provider", "customer"],
            "response phases in reverse"
        );
    }

    // Without the customer zone only the provider's rules run.
    let mut single = connect(&edge, NOT_O2O).await;
    let passed = single.get(NOT_O2O, "/customer-block").await.unwrap();
    assert_eq!(passed.status, 200);
    assert_eq!(echoed_header(&passed.json(), "x-stages"), vec!["provider"]);
    let redirect = single.get(NOT_O2O, "/customer-old").await.unwrap();
    assert_eq!(
        redirect.status, 200,
        "the customer's redirect is not in this chain"
    );
    let redirect = single.get(NOT_O2O, "/provider-old").await.unwrap();
    assert_eq!(redirect.status, 301);
    let blocked = single.get(NOT_O2O, "/provider-block").await.unwrap();
    assert_eq!(blocked.status, 451);
    edge.stop().await.unwrap();
}

#[tokio::test]
async fn large_bodies_stream_both_ways_intact() {
    const SIZE: usize = 24 * 1024 * 1024;
    const CHUNK: usize = 256 * 1024;
    let echo = spawn_echo().await.unwrap();
    let edge = RunningEdge::start(o2o_state(echo)).await.unwrap();
    let mut client = connect(&edge, O2O).await;

    let chunk = |i: usize| Bytes::from(vec![(i * 7 + 3) as u8; CHUNK]);
    let mut hash = Sha256::new();
    for i in 0..SIZE / CHUNK {
        hash.update(chunk(i));
    }
    let req = Request::post(format!("https://{O2O}/upload"))
        .body(())
        .unwrap();
    let response = client
        .send(req, (0..SIZE / CHUNK).map(chunk))
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    let seen = response.json();
    assert_eq!(seen["body"]["length"], SIZE as u64);
    assert_eq!(seen["body"]["sha256"], hex(&hash.finalize()));

    let download = client.get(O2O, &format!("/bytes/{SIZE}")).await.unwrap();
    assert_eq!(download.status, 200);
    assert_eq!(download.length, SIZE as u64);
    assert_eq!(download.sha256, download_sha256(SIZE as u64));
    edge.stop().await.unwrap();
}

#[tokio::test]
async fn sni_and_authority_of_different_chains_get_421() {
    let echo = spawn_echo().await.unwrap();
    let edge = RunningEdge::start(o2o_state(echo)).await.unwrap();
    let mut client = connect(&edge, O2O).await;
    let fronted = client.get(NOT_O2O, "/").await.unwrap();
    assert_eq!(fronted.status, 421);
    let same = client.get("MYSTORE.example.com", "/").await.unwrap();
    assert_eq!(same.status, 200, "host names compare case-insensitively");
    edge.stop().await.unwrap();
}

#[tokio::test]
async fn edge_errors_keep_their_codes() {
    let echo = spawn_echo().await.unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut state = o2o_state(echo);
    add_rules(
        &mut state,
        PROVIDER,
        "http_request_origin",
        json!([{"expression": "http.request.uri.path eq \"/down\"", "action": "route",
                "action_parameters": {"origin": {"port": closed_port}}}]),
    );
    state["zones"][PROVIDER]["zone"]["settings"]["max_upload"] = json!(1);
    let edge = RunningEdge::start(state).await.unwrap();
    let mut client = connect(&edge, O2O).await;

    let req = Request::get(format!("https://{O2O}/down"))
        .header("accept", "application/json")
        .body(())
        .unwrap();
    let refused = client.send(req, []).await.unwrap();
    assert_eq!(refused.status, 502);
    let page: Value = refused.json();
    assert_eq!(page["errors"][0]["code"], 502, "{page}");

    let req = Request::post(format!("https://{O2O}/up")).body(()).unwrap();
    let chunks = (0..3).map(|_| Bytes::from(vec![0u8; 512 * 1024]));
    let too_large = client.send(req, chunks).await.unwrap();
    assert_eq!(
        too_large.status, 413,
        "1 MB zone limit, 1.5 MB without a length"
    );

    // A name under the customer zone's wildcard certificate with no record: 1001.
    let mut unknown = connect(&edge, "nothing.example.com").await;
    let req = Request::get("https://nothing.example.com/")
        .header("accept", "application/json")
        .body(())
        .unwrap();
    let missing = unknown.send(req, []).await.unwrap();
    assert_eq!(missing.status.as_u16(), 530);
    assert_eq!(missing.json()["errors"][0]["code"], 1001);

    let req = Request::builder()
        .method(Method::CONNECT)
        .uri(format!("https://{O2O}/"))
        .body(())
        .unwrap();
    let connect = client.send(req, []).await;
    // h3 refuses a CONNECT without :protocol before the edge sees it, or the edge answers 405.
    if let Ok(response) = connect {
        assert_eq!(response.status, StatusCode::METHOD_NOT_ALLOWED);
    }
    edge.stop().await.unwrap();
}

#[tokio::test]
async fn shutdown_drains_streams_in_flight_and_refuses_new_connections() {
    const SIZE: u64 = 32 * 1024 * 1024;
    let echo = spawn_echo().await.unwrap();
    let edge = RunningEdge::start(o2o_state(echo)).await.unwrap();
    let addr = edge.h3.unwrap();
    let ca = edge.ca_pem.clone();
    let mut client = connect(&edge, O2O).await;
    let req = Request::get(format!("https://{O2O}/bytes/{SIZE}"))
        .body(())
        .unwrap();
    let mut stream = client.start(req, []).await.unwrap();
    // The head has arrived: the edge is serving this stream when shutdown begins.
    let head = stream.recv_response().await.unwrap();
    assert_eq!(head.status(), 200);
    // The client reads one chunk, then holds the rest back (QUIC flow control
    // stalls the edge) until the drain has begun: the download is certainly
    // in flight during the shutdown, however fast the machine is.
    let (go, drain_began) = tokio::sync::oneshot::channel::<()>();
    let reader = tokio::spawn(async move {
        let mut length = 0u64;
        let mut hash = Sha256::new();
        let mut drain_began = Some(drain_began);
        while let Some(mut chunk) = stream.recv_data().await.unwrap() {
            use bytes::Buf;
            let chunk = chunk.copy_to_bytes(chunk.remaining());
            length += chunk.len() as u64;
            hash.update(&chunk);
            if let Some(began) = drain_began.take() {
                began.await.expect("the test signals the drain");
            }
        }
        (length, hex(&hash.finalize()))
    });
    let stopping = tokio::spawn(edge.stop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let refused =
        tokio::time::timeout(Duration::from_secs(3), H3Client::connect(addr, O2O, &ca)).await;
    assert!(
        !matches!(refused, Ok(Ok(_))),
        "a new connection during the drain must not be served"
    );
    assert!(
        !reader.is_finished(),
        "the download outlived the shutdown signal"
    );
    go.send(()).unwrap();
    let (length, sha) = reader.await.unwrap();
    assert_eq!(length, SIZE, "the stream in flight finished");
    assert_eq!(sha, download_sha256(SIZE));
    tokio::time::timeout(Duration::from_secs(20), stopping)
        .await
        .expect("the edge stops once drained")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_client_that_changes_its_address_keeps_its_connection() {
    const SIZE: u64 = 16 * 1024 * 1024;
    let echo = spawn_echo().await.unwrap();
    let edge = RunningEdge::start(o2o_state(echo)).await.unwrap();
    let mut client = connect(&edge, O2O).await;
    let first = client.get(O2O, "/before").await.unwrap();
    assert_eq!(first.status, 200);
    let before = client.endpoint.local_addr().unwrap();

    // A download is in flight while the client moves.
    let req = Request::get(format!("https://{O2O}/bytes/{SIZE}"))
        .body(())
        .unwrap();
    let mut stream = client.start(req, []).await.unwrap();
    let moved_to = client.rebind().unwrap();
    assert_ne!(before, moved_to);
    let download = read_response(&mut stream).await.unwrap();
    assert_eq!(download.status, 200);
    assert_eq!(download.length, SIZE);
    assert_eq!(download.sha256, download_sha256(SIZE));

    let after = client.get(O2O, "/after").await.unwrap();
    assert_eq!(
        after.status, 200,
        "the same connection serves after the move"
    );
    assert_eq!(
        echoed_header(&after.json(), "cf-connecting-o2o"),
        vec!["1"],
        "still the O2O chain"
    );
    assert_eq!(client.conn.close_reason(), None);
    edge.stop().await.unwrap();
}

async fn alt_svc(edge: &RunningEdge, host: &str) -> Option<String> {
    let response = edge
        .client(&[O2O, NOT_O2O], true)
        .get(format!("https://{host}:{}/", edge.https.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response
        .headers()
        .get("alt-svc")
        .map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn alt_svc_is_advertised_on_tcp_unless_a_zone_of_the_chain_turns_http3_off() {
    let echo = spawn_echo().await.unwrap();
    let edge = RunningEdge::start(o2o_state(echo)).await.unwrap();
    let expected = format!("h3=\":{}\"; ma=86400", edge.h3.unwrap().port());
    for host in [O2O, NOT_O2O] {
        assert_eq!(alt_svc(&edge, host).await.as_deref(), Some(&*expected));
    }
    edge.stop().await.unwrap();

    // The customer turns it off: only its hostname (the O2O chain) stops advertising.
    let mut state = o2o_state(echo);
    state["zones"][CUSTOMER]["zone"]["settings"] = json!({"http3": "off"});
    let edge = RunningEdge::start(state).await.unwrap();
    assert_eq!(alt_svc(&edge, O2O).await, None);
    assert!(alt_svc(&edge, NOT_O2O).await.is_some());
    edge.stop().await.unwrap();

    // The provider turns it off: both chains contain its zone.
    let mut state = o2o_state(echo);
    state["zones"][PROVIDER]["zone"]["settings"]["http3"] = json!("off");
    let edge = RunningEdge::start(state).await.unwrap();
    assert_eq!(alt_svc(&edge, O2O).await, None);
    assert_eq!(alt_svc(&edge, NOT_O2O).await, None);
    edge.stop().await.unwrap();

    // HTTP/3 switched off for the edge: no UDP listener, nothing advertised.
    let edge = RunningEdge::start_with(o2o_state(echo), json!({"enabled": false}))
        .await
        .unwrap();
    assert_eq!(edge.h3, None);
    assert_eq!(alt_svc(&edge, O2O).await, None);
    edge.stop().await.unwrap();
}

/// Whether the edge answered with a Retry packet (long header, type 3).
fn sent_retry(relay: &Relay) -> bool {
    relay
        .from_edge
        .lock()
        .unwrap()
        .iter()
        .any(|first| first & 0xb0 == 0xb0)
}

#[tokio::test]
async fn handshakes_past_the_rate_threshold_must_validate_their_address_first() {
    let echo = spawn_echo().await.unwrap();
    for (threshold, retried) in [(1000, false), (0, true)] {
        let edge = RunningEdge::start_with(
            o2o_state(echo),
            json!({"retry_above_handshakes_per_second": threshold}),
        )
        .await
        .unwrap();
        let relay = relay(edge.h3.unwrap(), None).await;
        let mut client = H3Client::connect(relay.addr, O2O, &edge.ca_pem)
            .await
            .unwrap();
        assert_eq!(client.get(O2O, "/").await.unwrap().status, 200);
        assert_eq!(sent_retry(&relay), retried, "threshold {threshold}");
        drop(client);
        edge.stop().await.unwrap();
    }
}

#[tokio::test]
async fn a_client_waits_for_stream_credit_past_max_concurrent_streams() {
    // Larger than a stream's flow-control window: unread, the streams stay open.
    const BIG: u64 = 16 * 1024 * 1024;
    let echo = spawn_echo().await.unwrap();
    let edge = RunningEdge::start_with(o2o_state(echo), json!({"max_concurrent_streams": 2}))
        .await
        .unwrap();
    let mut client = connect(&edge, O2O).await;
    // Three requests at once on a two-stream limit: the third waits for credit, all finish.
    let mut streams = Vec::new();
    for _ in 0..2 {
        let req = Request::get(format!("https://{O2O}/bytes/{BIG}"))
            .body(())
            .unwrap();
        streams.push(client.start(req, []).await.unwrap());
    }
    let mut third = client.send.clone();
    let waiting = tokio::spawn(async move {
        let req = Request::get(format!("https://{O2O}/third"))
            .body(())
            .unwrap();
        let mut stream = third.send_request(req).await.unwrap();
        stream.finish().await.unwrap();
        read_response(&mut stream).await.unwrap()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "a third stream must wait for the limit"
    );
    for mut stream in streams {
        let response = read_response(&mut stream).await.unwrap();
        assert_eq!(response.length, BIG);
    }
    let third = tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(third.status, 200);
    edge.stop().await.unwrap();
}

/// An edge whose `http3` section is `http3`, and a client endpoint that trusts it and holds
/// a session ticket from a first connection (which itself could not offer 0-RTT).
async fn edge_and_ticket(http3: Value) -> (RunningEdge, quinn::Endpoint) {
    let echo = spawn_echo().await.unwrap();
    let edge = RunningEdge::start_with(o2o_state(echo), http3)
        .await
        .unwrap();
    let addr = edge.h3.unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(edge_tests::h3::client_config(&edge.ca_pem).unwrap());
    let (mut first, early) = H3Client::resume(endpoint.clone(), addr, O2O).await.unwrap();
    assert!(early.is_none(), "no ticket yet");
    assert_eq!(first.get(O2O, "/first").await.unwrap().status, 200);
    first.conn.close(0u32.into(), b"");
    drop(first);
    (edge, endpoint)
}

/// A POST and a GET on `client`, both answered 200 by the origin and neither marked early.
async fn served_unmarked(client: &mut H3Client) {
    let post = Request::post(format!("https://{O2O}/state-change"))
        .body(())
        .unwrap();
    let post = client.send(post, [Bytes::from_static(b"x")]).await.unwrap();
    assert_eq!(post.status, StatusCode::OK);
    assert_eq!(
        echoed_header(&post.json(), "early-data"),
        Vec::<&str>::new()
    );
    let get = client.get(O2O, "/read").await.unwrap();
    assert_eq!(get.status, StatusCode::OK);
    assert_eq!(echoed_header(&get.json(), "early-data"), Vec::<&str>::new());
}

/// Without `zero_rtt` in the config a resumed connection is offered no 0-RTT, so every
/// request waits for the handshake: the POST is served, nothing is marked early.
#[tokio::test]
async fn zero_rtt_is_off_by_default() {
    let (edge, endpoint) = edge_and_ticket(json!({})).await;
    let (mut resumed, early) = H3Client::resume(endpoint, edge.h3.unwrap(), O2O)
        .await
        .unwrap();
    assert!(early.is_none(), "0-RTT offered though not switched on");
    served_unmarked(&mut resumed).await;
    edge.stop().await.unwrap();
}

/// With `zero_rtt` on, a resumed connection is offered 0-RTT; requests sent once the
/// handshake has completed (the client's Finished precedes them) are not early: a POST is
/// served and nothing is marked. The 425 for a POST in early data is
/// `in_early_data_only_safe_methods_are_served_and_marked`.
#[tokio::test]
async fn zero_rtt_on_serves_requests_after_the_handshake_unmarked() {
    let (edge, endpoint) = edge_and_ticket(json!({"zero_rtt": true})).await;
    let (mut resumed, early) = H3Client::resume(endpoint, edge.h3.unwrap(), O2O)
        .await
        .unwrap();
    let accepted = early.expect("0-RTT offered when switched on");
    assert!(accepted.await, "the server accepted the early data");
    served_unmarked(&mut resumed).await;
    edge.stop().await.unwrap();
}

/// A UDP relay in front of the edge. With `hold`, every client datagram that carries a
/// Handshake or a 1-RTT packet is held back that long: the client's first flight (Initial,
/// 0-RTT) arrives at once, its Finished late, so requests sent in 0-RTT reach the edge while
/// the handshake is still open, deterministically. Records the first byte of every datagram
/// the edge sent. Ends with the test's runtime.
struct Relay {
    addr: SocketAddr,
    from_edge: Arc<std::sync::Mutex<Vec<u8>>>,
}

async fn relay(edge: SocketAddr, hold: Option<Duration>) -> Relay {
    let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    back.connect(edge).await.unwrap();
    let addr = front.local_addr().unwrap();
    let client = Arc::new(std::sync::Mutex::new(None));
    let from_edge = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (held_tx, mut held_rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    {
        let (front, back, client) = (front.clone(), back.clone(), client.clone());
        tokio::spawn(async move {
            let mut buf = vec![0; 65536];
            while let Ok((n, from)) = front.recv_from(&mut buf).await {
                *client.lock().unwrap() = Some(from);
                let datagram = buf[..n].to_vec();
                match hold {
                    Some(hold) if finishes_handshake(&datagram) => {
                        let _ = held_tx.send((Instant::now() + hold, datagram));
                    }
                    _ => {
                        let _ = back.send(&datagram).await;
                    }
                }
            }
        });
    }
    {
        let back = back.clone();
        tokio::spawn(async move {
            while let Some((due, datagram)) = held_rx.recv().await {
                tokio::time::sleep_until(due).await;
                let _ = back.send(&datagram).await;
            }
        });
    }
    let seen = from_edge.clone();
    tokio::spawn(async move {
        let mut buf = vec![0; 65536];
        while let Ok(n) = back.recv(&mut buf).await {
            seen.lock().unwrap().push(buf[0]);
            let to = *client.lock().unwrap();
            if let Some(to) = to {
                let _ = front.send_to(&buf[..n], to).await;
            }
        }
    });
    Relay { addr, from_edge }
}

/// Whether a client datagram holds a Handshake packet (type 2) or a short-header packet,
/// walking coalesced long-header packets (RFC 9000 §17.2).
fn finishes_handshake(mut datagram: &[u8]) -> bool {
    fn varint(bytes: &[u8]) -> Option<(u64, usize)> {
        let len = 1usize << (bytes.first()? >> 6);
        let mut value = u64::from(bytes[0] & 0x3f);
        for byte in bytes.get(1..len)? {
            value = (value << 8) | u64::from(*byte);
        }
        Some((value, len))
    }
    while let Some(&first) = datagram.first() {
        if first & 0x80 == 0 {
            return true;
        }
        let kind = (first >> 4) & 0x3;
        if kind == 2 {
            return true;
        }
        let walk = || -> Option<usize> {
            let mut at = 5;
            let dcid = usize::from(*datagram.get(at)?);
            at += 1 + dcid;
            let scid = usize::from(*datagram.get(at)?);
            at += 1 + scid;
            if kind == 0 {
                let (token, n) = varint(datagram.get(at..)?)?;
                at += n + token as usize;
            }
            let (length, n) = varint(datagram.get(at..)?)?;
            Some(at + n + length as usize)
        };
        match walk() {
            Some(end) if end <= datagram.len() => datagram = &datagram[end..],
            _ => return false,
        }
    }
    false
}

#[tokio::test]
async fn in_early_data_only_safe_methods_are_served_and_marked() {
    let echo = spawn_echo().await.unwrap();
    let edge = RunningEdge::start_with(o2o_state(echo), json!({"zero_rtt": true}))
        .await
        .unwrap();
    let relay = relay(edge.h3.unwrap(), Some(Duration::from_millis(500)))
        .await
        .addr;
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(edge_tests::h3::client_config(&edge.ca_pem).unwrap());
    let (mut first, _) = H3Client::resume(endpoint.clone(), relay, O2O)
        .await
        .unwrap();
    assert_eq!(first.get(O2O, "/ticket").await.unwrap().status, 200);
    first.conn.close(0u32.into(), b"");
    drop(first);

    let (mut client, early) = H3Client::resume(endpoint, relay, O2O).await.unwrap();
    let accepted = early.expect("the ticket allows 0-RTT");
    // Both requests leave in the client's first flight, before its Finished.
    let post = Request::post(format!("https://{O2O}/buy"))
        .body(())
        .unwrap();
    let mut post = client
        .start(post, [Bytes::from_static(b"x")])
        .await
        .unwrap();
    let get = Request::get(format!("https://{O2O}/read"))
        .body(())
        .unwrap();
    let mut get = client.start(get, []).await.unwrap();
    let post = read_response(&mut post).await.unwrap();
    assert_eq!(
        post.status,
        StatusCode::TOO_EARLY,
        "a replayable POST is refused"
    );
    let get = read_response(&mut get).await.unwrap();
    assert_eq!(get.status, 200);
    assert_eq!(echoed_header(&get.json(), "early-data"), vec!["1"]);
    assert!(accepted.await, "the handshake completes");
    // After the handshake the same POST is served, unmarked.
    let post = Request::post(format!("https://{O2O}/buy"))
        .body(())
        .unwrap();
    let post = client.send(post, [Bytes::from_static(b"x")]).await.unwrap();
    assert_eq!(post.status, 200);
    assert_eq!(
        echoed_header(&post.json(), "early-data"),
        Vec::<&str>::new()
    );
    // The 425 was answered by the HTTP/3 server itself, before any chain: counted unrouted.
    let metrics = edge.metrics.encode();
    let too_early = metrics.lines().find(|line| {
        line.starts_with(r#"edge_requests_total{chain="none""#) && line.contains(r#"class="4xx""#)
    });
    assert_eq!(
        too_early.and_then(|l| l.rsplit(' ').next()),
        Some("1"),
        "{metrics}"
    );
    edge.stop().await.unwrap();
}

/// The value of `edge_client_connections` in the edge's metrics.
fn client_connections(edge: &RunningEdge) -> u64 {
    let metrics = edge.metrics.encode();
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("edge_client_connections "))
        .unwrap_or_else(|| panic!("no edge_client_connections: {metrics}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn open_http3_connections_are_counted_while_they_last() {
    const OPEN: usize = 50;
    let echo = spawn_echo().await.unwrap();
    let edge = RunningEdge::start(o2o_state(echo)).await.unwrap();
    let mut clients = Vec::new();
    for _ in 0..OPEN {
        let mut client = connect(&edge, O2O).await;
        assert_eq!(client.get(O2O, "/").await.unwrap().status, 200);
        clients.push(client);
    }
    assert_eq!(client_connections(&edge), OPEN as u64);
    for client in &clients {
        client.conn.close(0u32.into(), b"");
    }
    drop(clients);
    let deadline = Instant::now() + Duration::from_secs(10);
    while client_connections(&edge) != 0 {
        assert!(
            Instant::now() < deadline,
            "closed connections still counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    edge.stop().await.unwrap();
}
