//! What a hostile client or a hostile tenant can make the edge believe, tried against an
//! in-process `edge serve` with real TLS clients (HTTP/1.1 and HTTP/2 through hyper's client
//! connections, which send heads exactly as written, HTTP/3 through quinn + h3) and the echo
//! origin reporting what arrived.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use edge_tests::chain::{RunningEdge, add_rules, o2o_state};
use edge_tests::control::Control;
use edge_tests::h3::H3Client;
use edge_tests::proxy::{echoed_header, spawn_echo};
use edge_userspace::vouched::{ClientCopy, VOUCHED};
use http::{HeaderMap, Method, Request, StatusCode, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};

const O2O: &str = "mystore.example.com";
const NOT_O2O: &str = "shop.othercustomer.net";
const PENDING: &str = "pending.othercustomer.net";
const CUSTOMER: usize = 0;
const PROVIDER: usize = 1;
const TIMEOUT: Duration = Duration::from_secs(20);

type Body = BoxBody<Bytes, Infallible>;

fn empty() -> Body {
    Empty::new().boxed()
}

/// `data`, then `trailers`.
fn with_trailers(data: &'static [u8], trailers: HeaderMap) -> Body {
    let frames = futures_util::stream::iter([
        Ok::<_, Infallible>(Frame::data(Bytes::from_static(data))),
        Ok(Frame::trailers(trailers)),
    ]);
    StreamBody::new(frames).boxed()
}

/// What one request got back.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    /// What the origin saw: the echo origin's JSON.
    fn origin_saw(&self) -> Value {
        assert_eq!(self.status, 200, "{}", String::from_utf8_lossy(&self.body));
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A TLS connection to the edge presenting `sni` and offering `alpn`.
async fn tls(
    edge: &RunningEdge,
    sni: &str,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&edge.ca_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(edge.https).await.unwrap();
    connector
        .connect(sni.to_owned().try_into().unwrap(), tcp)
        .await
        .unwrap()
}

/// Sends `req` over a new connection presenting `sni`, HTTP/2 when `req` says so, else
/// HTTP/1.1 with the head exactly as built (no `Host` added, the target as written).
async fn send(edge: &RunningEdge, sni: &str, req: Request<Body>) -> Answer {
    let exchange = async {
        let response = if req.version() == Version::HTTP_2 {
            let io = TokioIo::new(tls(edge, sni, b"h2").await);
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .unwrap();
            tokio::spawn(conn);
            sender.send_request(req).await.unwrap()
        } else {
            let io = TokioIo::new(tls(edge, sni, b"http/1.1").await);
            let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(conn);
            sender.send_request(req).await.unwrap()
        };
        let (parts, body) = response.into_parts();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes(),
        }
    };
    tokio::time::timeout(TIMEOUT, exchange)
        .await
        .expect("the edge answered")
}

/// Sends `req` over HTTP/1.1 to the plain listener.
async fn send_plain(edge: &RunningEdge, req: Request<Body>) -> Answer {
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(edge.http).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn);
        let (parts, body) = sender.send_request(req).await.unwrap().into_parts();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes(),
        }
    };
    tokio::time::timeout(TIMEOUT, exchange)
        .await
        .expect("the edge answered")
}

/// A request for `path` on `host` over HTTP/1.1 (origin-form, `Host`) or HTTP/2.
fn request(version: Version, host: &str, path: &str) -> http::request::Builder {
    if version == Version::HTTP_2 {
        Request::get(format!("https://{host}{path}")).version(Version::HTTP_2)
    } else {
        Request::get(path).header("host", host)
    }
}

async fn h3(edge: &RunningEdge, sni: &str) -> H3Client {
    H3Client::connect(edge.h3.expect("HTTP/3 is served"), sni, &edge.ca_pem)
        .await
        .unwrap()
}

/// The demo's O2O state with a customer rule blocking `/admin` and a customer transform
/// adding a header, so that both the edge's and a rule's headers can be attacked.
fn state(echo: std::net::SocketAddr) -> Value {
    let mut state = o2o_state(echo);
    add_rules(
        &mut state,
        CUSTOMER,
        "http_request_firewall_custom",
        json!([{"expression": "starts_with(http.request.uri.path, \"/admin\")", "action": "block"}]),
    );
    add_rules(
        &mut state,
        CUSTOMER,
        "http_request_late_transform",
        json!([{"expression": "true", "action": "rewrite", "action_parameters": {"headers": {
            "x-customer-added": {"operation": "set", "value": "yes"}
        }}}]),
    );
    state["zones"][PROVIDER]["custom_hostnames"]
        .as_array_mut()
        .unwrap()
        .push(json!({"id": "ch-pending", "hostname": PENDING, "status": "pending"}));
    state
}

/// Item 1: a client's hop-by-hop list applies to what it sent, on arrival.
#[tokio::test]
async fn a_clients_connection_header_never_removes_what_the_edge_or_a_rule_adds() {
    let echo = spawn_echo().await.unwrap();
    let edge = RunningEdge::start(state(echo)).await.unwrap();
    let req = request(Version::HTTP_11, O2O, "/x")
        .header(
            "connection",
            "keep-alive, cf-connecting-ip, cf-connecting-o2o, x-forwarded-for, cf-ray, \
             cf-visitor, x-forwarded-proto, cdn-loop, x-customer-added, x-client-hop",
        )
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-client-hop", "1")
        .body(empty())
        .unwrap();
    let seen = send(&edge, O2O, req).await.origin_saw();
    assert_eq!(echoed_header(&seen, "cf-connecting-o2o"), ["1"], "{seen}");
    assert_eq!(echoed_header(&seen, "cf-connecting-ip"), ["127.0.0.1"]);
    assert_eq!(
        echoed_header(&seen, "x-forwarded-for"),
        ["127.0.0.1"],
        "the client's own copy was hop-by-hop; the edge's entry stays"
    );
    assert_eq!(echoed_header(&seen, "x-forwarded-proto"), ["https"]);
    assert_eq!(
        echoed_header(&seen, "cf-visitor"),
        [r#"{"scheme":"https"}"#]
    );
    assert_eq!(echoed_header(&seen, "cdn-loop"), ["edge"]);
    assert_eq!(echoed_header(&seen, "cf-ray").len(), 1);
    assert_eq!(echoed_header(&seen, "x-customer-added"), ["yes"]);
    assert!(
        echoed_header(&seen, "x-client-hop").is_empty(),
        "what the client named is still removed"
    );
    assert!(echoed_header(&seen, "connection").is_empty());
    edge.stop().await.unwrap();
}

/// Item 2: every name on the one list is the edge's alone, in headers and in trailers, over
/// every protocol.
#[tokio::test]
async fn client_copies_of_vouched_headers_never_reach_the_origin() {
    let echo = spawn_echo().await.unwrap();
    let edge = RunningEdge::start(state(echo)).await.unwrap();
    let forge = |mut builder: http::request::Builder| {
        for vouched in &VOUCHED {
            builder = builder.header(&vouched.name, "6.6.6.6");
        }
        builder
    };
    let check = |seen: &Value, how: &str| {
        for vouched in &VOUCHED {
            let values = echoed_header(seen, vouched.name.as_str());
            match vouched.client_copy {
                ClientCopy::Dropped => assert!(
                    !values.contains(&"6.6.6.6"),
                    "{how}: {} forged: {seen}",
                    vouched.name
                ),
                // Appended to: the edge's own entry comes last.
                ClientCopy::Appended => {
                    let joined = values.join(", ");
                    assert!(
                        joined.starts_with("6.6.6.6") && !joined.ends_with("6.6.6.6"),
                        "{how}: {}: {values:?}",
                        vouched.name
                    );
                }
            }
        }
        assert_eq!(echoed_header(seen, "cf-connecting-o2o"), ["1"], "{how}");
        assert_eq!(
            echoed_header(seen, "cf-connecting-ip"),
            ["127.0.0.1"],
            "{how}"
        );
        assert_eq!(echoed_header(seen, "true-client-ip"), Vec::<&str>::new());
    };
    for version in [Version::HTTP_11, Version::HTTP_2] {
        let how = format!("{version:?}");
        let mut trailers = HeaderMap::new();
        for vouched in &VOUCHED {
            trailers.insert(&vouched.name, "6.6.6.6".parse().unwrap());
        }
        trailers.insert("x-checksum", "abc".parse().unwrap());
        let declared: Vec<&str> = VOUCHED.iter().map(|v| v.name.as_str()).collect();
        let req = forge(request(version, O2O, "/trailers"))
            .method(Method::POST)
            .header("te", "trailers")
            .header("trailer", format!("{}, x-checksum", declared.join(", ")))
            .body(with_trailers(b"hello", trailers))
            .unwrap();
        let seen = send(&edge, O2O, req).await.origin_saw();
        check(&seen, &how);
        assert_eq!(seen["body"]["length"], 5, "{how}: {seen}");
        let trailers = seen["trailers"].as_object().expect("trailers arrived");
        let names: Vec<&String> = trailers.keys().collect();
        assert_eq!(
            names,
            ["x-checksum"],
            "{how}: only the client's own trailer"
        );
    }
    let mut client = h3(&edge, O2O).await;
    let req = forge(Request::get(format!("https://{O2O}/h3")))
        .body(())
        .unwrap();
    let answer = client.send(req, []).await.unwrap();
    assert_eq!(answer.status, 200);
    check(&answer.json(), "HTTP/3");
    edge.stop().await.unwrap();
}

/// Item 2, the tenant's side: rule compilation refuses every name on the list (and the
/// hop-by-hop ones), naming the rule and the header; the refused write changes nothing.
#[tokio::test]
async fn rules_cannot_touch_vouched_or_hop_by_hop_headers() {
    let echo = spawn_echo().await.unwrap();
    let edge = RunningEdge::start(state(echo)).await.unwrap();
    let control = Control::new(&edge.control);
    let path = "/zones/example.com/rulesets/phases/http_request_late_transform/entrypoint";
    let before = control.ok(Method::GET, path, None).await;
    let names = VOUCHED.iter().map(|v| v.name.as_str()).chain([
        "connection",
        "transfer-encoding",
        "te",
        "upgrade",
        "keep-alive",
    ]);
    for name in names {
        for operation in [
            json!({"operation": "set", "value": "x"}),
            json!({"operation": "remove"}),
        ] {
            let body = json!({"rules": [
                {"expression": "true", "action": "rewrite", "action_parameters": {"headers": {"x-fine": {"operation": "set", "value": "1"}}}},
                {"expression": "true", "action": "rewrite", "action_parameters": {"headers": {name: operation}}}
            ]});
            let message = control
                .refused(
                    Method::PUT,
                    path,
                    Some(body),
                    StatusCode::BAD_REQUEST,
                    1004,
                    &format!("action_parameters.headers.{name}"),
                )
                .await;
            assert!(
                message.contains("rule 1") || message.contains("rules[1]"),
                "the rule is named: {message}"
            );
        }
    }
    assert_eq!(control.ok(Method::GET, path, None).await, before);
    edge.stop().await.unwrap();
}

/// Item 3: paths are normalised before any rule runs, over every protocol.
#[tokio::test]
async fn path_tricks_do_not_get_past_path_rules() {
    let echo = spawn_echo().await.unwrap();
    let edge = RunningEdge::start(state(echo)).await.unwrap();
    let tricks = [
        "/admin",
        "/x/../admin",
        "//admin",
        "/./admin",
        "/%61dmin",
        "/%2e%2E/admin",
    ];
    for version in [Version::HTTP_11, Version::HTTP_2] {
        for path in tricks {
            let req = request(version, O2O, path).body(empty()).unwrap();
            let answer = send(&edge, O2O, req).await;
            assert_eq!(answer.status, 403, "{version:?} {path}");
        }
        let req = request(version, O2O, "/x/..//%7Euser/./a%2fb?q=/../x")
            .body(empty())
            .unwrap();
        let seen = send(&edge, O2O, req).await.origin_saw();
        assert_eq!(
            seen["path"], "/~user/a%2Fb",
            "{version:?}: the origin gets it normalised"
        );
        assert_eq!(
            seen["query"], "q=/../x",
            "{version:?}: the query as sent: {seen}"
        );
    }
    let mut client = h3(&edge, O2O).await;
    for path in tricks {
        let answer = client.get(O2O, path).await.unwrap();
        assert_eq!(answer.status, 403, "HTTP/3 {path}");
    }
    edge.stop().await.unwrap();
}

/// Item 3's settings: slashes kept and the URL as sent to the origin, when both zones of the
/// chain ask for it; dot segments are still resolved for the rules.
#[tokio::test]
async fn url_normalisation_settings_decide_what_the_origin_receives() {
    let echo = spawn_echo().await.unwrap();
    let mut state = state(echo);
    for zone in [CUSTOMER, PROVIDER] {
        let settings = &mut state["zones"][zone]["zone"]["settings"];
        if settings.is_null() {
            *settings = json!({});
        }
        settings["url_normalization"] = json!({"merge_slashes": false, "origin": "as_sent"});
    }
    let edge = RunningEdge::start(state).await.unwrap();
    for version in [Version::HTTP_11, Version::HTTP_2] {
        for path in ["/x/../admin", "/%61dmin"] {
            let req = request(version, O2O, path).body(empty()).unwrap();
            assert_eq!(
                send(&edge, O2O, req).await.status,
                403,
                "{version:?} {path}"
            );
        }
        for path in ["/x/../hello", "//admin"] {
            let req = request(version, O2O, path).body(empty()).unwrap();
            let seen = send(&edge, O2O, req).await.origin_saw();
            assert_eq!(seen["path"], path, "{version:?}: as sent");
        }
    }
    edge.stop().await.unwrap();
}

/// Item 5: one host per request, the one the RFCs name.
#[tokio::test]
async fn ambiguous_hosts_are_refused_and_absolute_form_routes_by_its_authority() {
    let echo = spawn_echo().await.unwrap();
    let edge = RunningEdge::start(state(echo)).await.unwrap();
    // HTTP/1.1: two Host lines.
    let req = Request::get("/")
        .header("host", NOT_O2O)
        .header("host", O2O)
        .body(empty())
        .unwrap();
    let answer = send(&edge, NOT_O2O, req).await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.headers["connection"], "close");
    // HTTP/1.1 without Host.
    let answer = send(&edge, NOT_O2O, Request::get("/").body(empty()).unwrap()).await;
    assert_eq!(answer.status, 400);
    // HTTP/1.1 absolute-form: the authority wins over Host (which alone would be fronting).
    let req = Request::get(format!("https://{NOT_O2O}/abs"))
        .header("host", O2O)
        .body(empty())
        .unwrap();
    let seen = send(&edge, NOT_O2O, req).await.origin_saw();
    assert_eq!(echoed_header(&seen, "host"), [NOT_O2O]);
    assert!(echoed_header(&seen, "cf-connecting-o2o").is_empty());
    // HTTP/2: `host` naming another host than `:authority`.
    let req = Request::get(format!("https://{NOT_O2O}/"))
        .version(Version::HTTP_2)
        .header("host", O2O)
        .body(empty())
        .unwrap();
    assert_eq!(send(&edge, NOT_O2O, req).await.status, 400);
    let req = Request::get(format!("https://{NOT_O2O}/same"))
        .version(Version::HTTP_2)
        .header("host", NOT_O2O)
        .body(empty())
        .unwrap();
    assert_eq!(send(&edge, NOT_O2O, req).await.status, 200);
    // HTTP/3 takes the same path (`pipeline::authority`'s unit tests), but the h3 client
    // refuses to build a request whose `host` differs from `:authority`.
    edge.stop().await.unwrap();
}

/// Item 8: a redirect goes to an http(s) URL or a path, nowhere else.
#[tokio::test]
async fn redirect_targets_are_http_urls_or_paths() {
    let echo = spawn_echo().await.unwrap();
    let edge = RunningEdge::start(state(echo)).await.unwrap();
    let control = Control::new(&edge.control);
    let path = "/zones/example.com/rulesets/phases/http_request_dynamic_redirect/entrypoint";
    let rule = |target: &str| {
        json!({"rules": [{"expression": "true", "action": "redirect", "action_parameters": {
            "from_value": {"target_url": {"value": target}, "status_code": 302}}}]})
    };
    for target in [
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        "data:text/html,x",
        "//evil.test/",
        "/\\evil.test",
        "https:///nohost",
        "ftp://files.test/",
    ] {
        control
            .refused(
                Method::PUT,
                path,
                Some(rule(target)),
                StatusCode::BAD_REQUEST,
                1004,
                "target_url",
            )
            .await;
    }
    for target in [
        "https://www.example.com/x",
        "HTTP://www.example.com",
        "/moved",
    ] {
        control.ok(Method::PUT, path, Some(rule(target))).await;
    }
    let req = request(Version::HTTP_2, O2O, "/old").body(empty()).unwrap();
    let answer = send(&edge, O2O, req).await;
    assert_eq!(answer.status, 302);
    assert_eq!(answer.headers["location"], "/moved");
    edge.stop().await.unwrap();
}

/// Item 9: public error pages say what Cloudflare's say, nothing about the tenants.
#[tokio::test]
async fn error_pages_tell_visitors_nothing_about_tenants() {
    let echo = spawn_echo().await.unwrap();
    let edge = RunningEdge::start(state(echo)).await.unwrap();
    let control = Control::new(&edge.control);
    // A pending hostname gets no certificate, so its visitors meet the page over plain HTTP.
    for accept in ["text/html", "application/json"] {
        let req = request(Version::HTTP_11, PENDING, "/")
            .header("accept", accept)
            .body(empty())
            .unwrap();
        let answer = send_plain(&edge, req).await;
        let page = String::from_utf8_lossy(&answer.body);
        assert_eq!(answer.status.as_u16(), 530, "{page}");
        assert!(page.contains("1016"), "{page}");
        let ray = answer.headers["cf-ray"].to_str().unwrap();
        assert!(page.contains(ray), "the Ray ID is on the page: {page}");
        for secret in [
            "zone-provider",
            "acct-provider",
            "saasprovider",
            "ch-pending",
            "pending",
        ] {
            assert!(!page.contains(secret), "`{secret}` leaked: {page}");
        }
    }
    // The owner still gets the detail through its trace.
    let trace = control
        .ok(
            Method::POST,
            "/accounts/acct-provider/request-tracer/trace",
            Some(json!({"url": format!("https://{PENDING}/"), "method": "GET"})),
        )
        .await;
    assert!(trace.to_string().contains("pending"), "{trace}");
    edge.stop().await.unwrap();
}
