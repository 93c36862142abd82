//! `/metrics` content: requests driven through the real edge show up in the encoded text,
//! per chain and status class, with their latency, origin failures and open connections.

use edge_tests::chain::{RunningEdge, add_rules, o2o_state};
use edge_tests::proxy::{refusing_origin, spawn_echo};
use serde_json::json;

const O2O: &str = "mystore.example.com";
const CUSTOMER: usize = 0;
const PROVIDER: usize = 1;

/// The value of the one series named `name` whose labels contain every one of `labels`.
fn series(text: &str, name: &str, labels: &[&str]) -> f64 {
    let found: Vec<f64> = text
        .lines()
        .filter(|line| {
            line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} "))
        })
        .filter(|line| labels.iter().all(|label| line.contains(label)))
        .map(|line| line.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(found.len(), 1, "{name} {labels:?} in\n{text}");
    found[0]
}

#[tokio::test]
async fn requests_through_the_edge_are_counted_per_chain() {
    let echo = spawn_echo().await.unwrap();
    let refused = refusing_origin().await.unwrap();
    let mut state = o2o_state(echo);
    add_rules(
        &mut state,
        CUSTOMER,
        "http_request_firewall_custom",
        json!([{"expression": "starts_with(http.request.uri.path, \"/admin\")", "action": "block"}]),
    );
    // Later origin rules of a zone win: /down goes to a port nothing listens on.
    add_rules(
        &mut state,
        PROVIDER,
        "http_request_origin",
        json!([{"expression": "http.request.uri.path eq \"/down\"", "action": "route",
                "action_parameters": {"origin": {"port": refused.port()}}}]),
    );
    let edge = RunningEdge::start(state).await.unwrap();
    let client = edge.client(&[O2O], true);
    let url = |path: &str| format!("https://{O2O}:{}{path}", edge.https.port());
    for (path, status, times) in [("/", 200, 3), ("/admin", 403, 2), ("/down", 502, 1)] {
        for _ in 0..times {
            let response = client.get(url(path)).send().await.unwrap();
            assert_eq!(response.status(), status, "{path}");
            response.bytes().await.unwrap();
        }
    }
    // A host no chain serves, over the plain listener.
    let unknown = reqwest::Client::builder().no_proxy().build().unwrap();
    let response = unknown
        .get(format!("http://{}/", edge.http))
        .header("host", "nowhere.invalid")
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 530, "no chain serves the host");
    let page: serde_json::Value = response.json().await.unwrap();
    assert_eq!(page["errors"][0]["code"], 1001, "{page}");

    let text = edge.metrics.encode();
    let chain = [
        r#"zones="example.com>saasprovider.com""#,
        r#"hostname="mystore.example.com""#,
    ];
    let with = |extra: &'static str| {
        let mut labels = chain.to_vec();
        labels.push(extra);
        labels
    };
    assert_eq!(
        series(&text, "edge_requests_total", &with(r#"class="2xx""#)),
        3.0
    );
    assert_eq!(
        series(&text, "edge_requests_total", &with(r#"class="4xx""#)),
        2.0
    );
    assert_eq!(
        series(&text, "edge_requests_total", &with(r#"class="5xx""#)),
        1.0
    );
    assert_eq!(series(&text, "edge_upstream_errors_total", &chain), 1.0);
    assert_eq!(
        series(&text, "edge_request_duration_seconds_count", &chain),
        6.0
    );
    assert_eq!(
        series(
            &text,
            "edge_request_duration_seconds_bucket",
            &with(r#"le="+Inf""#)
        ),
        6.0
    );
    assert_eq!(series(&text, "edge_requests_in_flight", &chain), 0.0);
    // The 530 for the unknown host, under no chain.
    for (class, count) in [
        ("1xx", 0.0),
        ("2xx", 0.0),
        ("3xx", 0.0),
        ("4xx", 0.0),
        ("5xx", 1.0),
    ] {
        let class = format!(r#"class="{class}""#);
        let unrouted = series(&text, "edge_requests_total", &[r#"chain="none""#, &class]);
        assert_eq!(unrouted, count, "{class} {text}");
    }
    // The HTTP/2 client keeps its connection open.
    assert!(
        series(&text, "edge_client_connections", &[]) >= 1.0,
        "{text}"
    );
    assert!(text.contains("# TYPE edge_request_duration_seconds histogram"));
    edge.stop().await.unwrap();
}
