//! Edge-owned headers through the real TLS listener: nothing a client sends can pass for the
//! edge's own values, identity headers reach the origin, request ids appear on both sides,
//! loops are refused and errors render as HTML or JSON.

use edge_tests::proxy::{
    Edge, EdgeSetup, RESPONSE_PHASE_HEADER, echoed_header, plain_origin, spawn_echo,
};
use serde_json::Value;

const HOST: &str = "mystore.example.com";

async fn edge() -> Edge {
    let echo = spawn_echo().await.unwrap();
    Edge::start(EdgeSetup::new(vec![(HOST.into(), plain_origin(echo))]))
        .await
        .unwrap()
}

#[tokio::test]
async fn forged_edge_headers_never_reach_the_origin() {
    let edge = edge().await;
    for http2 in [false, true] {
        let client = edge.client(&[HOST], http2);
        let response = client
            .get(format!("https://{HOST}:{}/path?q=1", edge.tls_addr.port()))
            .header("cf-connecting-o2o", "1")
            .header("cf-connecting-ip", "203.0.113.9")
            .header("cf-ray", "forged-ray")
            .header("cf-ipcountry", "XX")
            .header("cf-visitor", r#"{"scheme":"http"}"#)
            .header("x-forwarded-proto", "http")
            .header("x-forwarded-for", "198.51.100.1")
            .header("x-custom", "kept")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let expected_version = if http2 {
            reqwest::Version::HTTP_2
        } else {
            reqwest::Version::HTTP_11
        };
        assert_eq!(response.version(), expected_version);
        let ray = response.headers()["cf-ray"].to_str().unwrap().to_owned();
        assert_eq!(response.headers()[RESPONSE_PHASE_HEADER], HOST);
        let echo: Value = response.json().await.unwrap();

        assert_eq!(echo["path"], "/path");
        assert_eq!(echo["query"], "q=1");
        assert!(
            echoed_header(&echo, "cf-connecting-o2o").is_empty(),
            "{echo}"
        );
        assert_eq!(echoed_header(&echo, "cf-connecting-ip"), ["127.0.0.1"]);
        assert!(echoed_header(&echo, "cf-ipcountry").is_empty());
        assert_eq!(
            echoed_header(&echo, "cf-visitor"),
            [r#"{"scheme":"https"}"#]
        );
        assert_eq!(echoed_header(&echo, "x-forwarded-proto"), ["https"]);
        assert_eq!(
            echoed_header(&echo, "x-forwarded-for"),
            ["198.51.100.1, 127.0.0.1"]
        );
        assert_eq!(echoed_header(&echo, "x-custom"), ["kept"]);
        assert_eq!(echoed_header(&echo, "host"), [HOST]);
        assert_eq!(echoed_header(&echo, "cdn-loop"), ["edge"]);
        // The origin sees the same request id as the client, never the forged one.
        assert_eq!(echoed_header(&echo, "cf-ray"), [ray.as_str()]);
        assert_ne!(ray, "forged-ray");
        assert!(ray.ends_with("-EDGE"), "{ray}");
    }
}

#[tokio::test]
async fn every_request_gets_its_own_id() {
    let edge = edge().await;
    let client = edge.client(&[HOST], true);
    let url = format!("https://{HOST}:{}/", edge.tls_addr.port());
    let a = client.get(&url).send().await.unwrap();
    let b = client.get(&url).send().await.unwrap();
    assert_ne!(a.headers()["cf-ray"], b.headers()["cf-ray"]);
}

#[tokio::test]
async fn plain_listener_reports_http() {
    let edge = edge().await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .resolve(HOST, edge.plain_addr)
        .build()
        .unwrap();
    let echo: Value = client
        .get(format!("http://{HOST}:{}/", edge.plain_addr.port()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echoed_header(&echo, "x-forwarded-proto"), ["http"]);
    assert_eq!(echoed_header(&echo, "cf-visitor"), [r#"{"scheme":"http"}"#]);
}

#[tokio::test]
async fn looping_requests_are_refused_with_508() {
    let edge = edge().await;
    let client = edge.client(&[HOST], false);
    let url = format!("https://{HOST}:{}/", edge.tls_addr.port());
    // Two earlier passes plus this one stay under the default limit of three.
    let ok = client
        .get(&url)
        .header("cdn-loop", "edge, other-cdn")
        .header("cdn-loop", "edge; v=2")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let echo: Value = ok.json().await.unwrap();
    assert_eq!(
        echoed_header(&echo, "cdn-loop"),
        ["edge, other-cdn", "edge; v=2", "edge"]
    );

    let looped = client
        .get(&url)
        .header("cdn-loop", "edge, edge, edge")
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(looped.status(), 508);
    let ray = looped.headers()["cf-ray"].to_str().unwrap().to_owned();
    let body: Value = looped.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], 1019);
    assert_eq!(body["ray_id"], ray.as_str());
}

#[tokio::test]
async fn errors_render_as_html_or_json_by_accept() {
    let edge = edge().await;
    let unknown = "unknown.example.net";
    let client = edge.client(&[HOST], false);
    let url = format!("https://{HOST}:{}/", edge.tls_addr.port());

    // The TLS name is served but the Host header names nothing: the router's 1001.
    let html = client
        .get(&url)
        .header("host", unknown)
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await
        .unwrap();
    assert_eq!(html.status(), 530);
    assert!(
        html.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let ray = html.headers()["cf-ray"].to_str().unwrap().to_owned();
    let page = html.text().await.unwrap();
    assert!(page.contains("Error 1001"), "{page}");
    assert!(page.contains("DNS resolution error"), "{page}");
    assert!(page.contains(&ray), "{page}");

    let json = client
        .get(&url)
        .header("host", unknown)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), 530);
    assert_eq!(json.headers()["content-type"], "application/json");
    let body: Value = json.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], 1001);
    assert_eq!(body["errors"][0]["message"], "DNS resolution error");
    assert_eq!(body["success"], false);
}
