//! The O2O chain end to end: real TLS clients (HTTP/1.1 and HTTP/2) against an
//! in-process `edge serve`, the echo origin reporting what arrived.

use edge_tests::chain::{RunningEdge, add_rules, o2o_state};
use edge_tests::proxy::{echoed_header, spawn_echo};
use serde_json::{Value, json};

const O2O: &str = "mystore.example.com";
const NOT_O2O: &str = "shop.othercustomer.net";
const CUSTOMER: usize = 0;
const PROVIDER: usize = 1;

/// What the origin saw: the echo origin's JSON.
async fn origin_saw(response: reqwest::Response) -> Value {
    assert_eq!(response.status(), 200, "the request reached the origin");
    response.json().await.unwrap()
}

#[tokio::test]
async fn o2o_header_reaches_the_origin_exactly_for_o2o_chains_and_cannot_be_forged() {
    let echo = spawn_echo().await.unwrap();
    let edge = RunningEdge::start(o2o_state(echo)).await.unwrap();
    for http2 in [false, true] {
        let client = edge.client(&[O2O, NOT_O2O], http2);
        for (host, expected) in [(O2O, vec!["1"]), (NOT_O2O, vec![])] {
            let forged = client
                .get(format!("https://{host}:{}/x", edge.https.port()))
                .header("cf-connecting-o2o", "1")
                .send()
                .await
                .unwrap();
            let seen = origin_saw(forged).await;
            assert_eq!(
                echoed_header(&seen, "cf-connecting-o2o"),
                expected,
                "{host} http2={http2}"
            );
            assert_eq!(echoed_header(&seen, "host"), vec![host]);
            assert_eq!(echoed_header(&seen, "cf-connecting-ip"), vec!["127.0.0.1"]);
        }
    }
    edge.stop().await.unwrap();
}

#[tokio::test]
async fn customer_rules_run_first_and_a_customer_block_never_reaches_the_provider() {
    let echo = spawn_echo().await.unwrap();
    let mut state = o2o_state(echo);
    add_rules(
        &mut state,
        CUSTOMER,
        "http_request_firewall_custom",
        json!([
            {"expression": "starts_with(http.request.uri.path, \"/admin\")", "action": "block"}
        ]),
    );
    // Were the provider to run first, /admin would answer 451 instead of 403.
    add_rules(
        &mut state,
        PROVIDER,
        "http_request_firewall_custom",
        json!([
            {"expression": "starts_with(http.request.uri.path, \"/admin\")", "action": "block",
             "action_parameters": {"response": {"status_code": 451, "content_type": "text/plain", "content": "provider"}}}
        ]),
    );
    // Both stages write the same request header and add to another: the
    // provider's write is the later one.
    for (zone, name) in [(CUSTOMER, "customer"), (PROVIDER, "provider")] {
        add_rules(
            &mut state,
            zone,
            "http_request_late_transform",
            json!([
                {"expression": "true", "action": "rewrite", "action_parameters": {"headers": {
                    "x-last-stage": {"operation": "set", "value": name},
                    "x-stages": {"operation": "add", "value": name}
                }}}
            ]),
        );
        add_rules(
            &mut state,
            zone,
            "http_response_headers_transform",
            json!([
                {"expression": "true", "action": "rewrite", "action_parameters": {"headers": {
                    "x-response-last": {"operation": "set", "value": name},
                    "x-response-stages": {"operation": "add", "value": name}
                }}}
            ]),
        );
    }
    let edge = RunningEdge::start(state).await.unwrap();
    let client = edge.client(&[O2O, NOT_O2O], true);
    let port = edge.https.port();

    let blocked = client
        .get(format!("https://{O2O}:{port}/admin"))
        .send()
        .await
        .unwrap();
    assert_eq!(blocked.status(), 403, "the customer's block wins");
    let provider_block = client
        .get(format!("https://{NOT_O2O}:{port}/admin"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        provider_block.status(),
        451,
        "without O2O only the provider's rules run"
    );
    assert_eq!(provider_block.text().await.unwrap(), "provider");

    let response = client
        .get(format!("https://{O2O}:{port}/shop"))
        .send()
        .await
        .unwrap();
    let response_stages: Vec<_> = response
        .headers()
        .get_all("x-response-stages")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        response_stages,
        ["provider", "customer"],
        "response phases run in reverse"
    );
    assert_eq!(response.headers()["x-response-last"], "customer");
    let seen = origin_saw(response).await;
    assert_eq!(echoed_header(&seen, "x-stages"), ["customer", "provider"]);
    assert_eq!(echoed_header(&seen, "x-last-stage"), ["provider"]);

    let single = origin_saw(
        client
            .get(format!("https://{NOT_O2O}:{port}/shop"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        echoed_header(&single, "x-stages"),
        ["provider"],
        "no customer stage without O2O"
    );
    edge.stop().await.unwrap();
}

#[tokio::test]
async fn customer_redirects_and_rewrites_apply_before_the_provider() {
    let echo = spawn_echo().await.unwrap();
    let mut state = o2o_state(echo);
    add_rules(
        &mut state,
        CUSTOMER,
        "http_request_dynamic_redirect",
        json!([
            {"expression": "http.request.uri.path eq \"/old\"", "action": "redirect", "action_parameters": {
                "from_value": {"target_url": {"value": "https://mystore.example.com/new"}, "status_code": 301, "preserve_query_string": true}}}
        ]),
    );
    add_rules(
        &mut state,
        CUSTOMER,
        "http_request_transform",
        json!([
            {"expression": "starts_with(http.request.uri.path, \"/v1/\")", "action": "rewrite", "action_parameters": {
                "uri": {"path": {"expression": "regex_replace(http.request.uri.path, \"^/v1/\", \"/v2/\")"}}}}
        ]),
    );
    // The provider sees the customer's rewritten path.
    add_rules(
        &mut state,
        PROVIDER,
        "http_request_late_transform",
        json!([
            {"expression": "starts_with(http.request.uri.path, \"/v2/\")", "action": "rewrite", "action_parameters": {"headers": {
                "x-provider-saw-v2": {"operation": "set", "value": "yes"}}}}
        ]),
    );
    let edge = RunningEdge::start(state).await.unwrap();
    let client = edge.client(&[O2O], false);
    let port = edge.https.port();

    let redirect = client
        .get(format!("https://{O2O}:{port}/old?a=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(redirect.status(), 301);
    assert_eq!(
        redirect.headers()["location"],
        "https://mystore.example.com/new?a=1"
    );

    let seen = origin_saw(
        client
            .get(format!("https://{O2O}:{port}/v1/items"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(seen["path"], "/v2/items");
    assert_eq!(echoed_header(&seen, "x-provider-saw-v2"), ["yes"]);
    edge.stop().await.unwrap();
}

#[tokio::test]
async fn chain_errors_answer_with_cloudflare_codes() {
    let echo = spawn_echo().await.unwrap();
    let mut state = o2o_state(echo);
    // A cross-account proxied CNAME into the provider without a custom hostname.
    state["zones"][CUSTOMER]["dns_records"].as_array_mut().unwrap().push(json!(
        {"id": "r9", "type": "CNAME", "name": "sneaky.example.com", "content": "customers.saasprovider.com", "proxied": true}
    ));
    // A custom hostname that is still pending validation.
    state["zones"][PROVIDER]["custom_hostnames"]
        .as_array_mut()
        .unwrap()
        .push(json!(
            {"id": "ch9", "hostname": "pending.shop.net", "status": "pending"}
        ));
    let edge = RunningEdge::start(state).await.unwrap();
    let plain = reqwest::Client::builder().no_proxy().build().unwrap();
    let cases = [
        ("nothing.example.org", 530, 1001),
        ("sneaky.example.com", 403, 1014),
        ("pending.shop.net", 530, 1016),
    ];
    for (host, status, code) in cases {
        let response = plain
            .get(format!("http://{}/", edge.http))
            .header("host", host)
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "{host}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["errors"][0]["code"], code, "{host}: {body}");
    }
    let html = plain
        .get(format!("http://{}/", edge.http))
        .header("host", "sneaky.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(html.status(), 403);
    let page = html.text().await.unwrap();
    assert!(page.contains("1014"), "{page}");
    edge.stop().await.unwrap();
}

#[tokio::test]
async fn sni_and_host_of_different_chains_get_421() {
    let echo = spawn_echo().await.unwrap();
    let edge = RunningEdge::start(o2o_state(echo)).await.unwrap();
    for http2 in [false, true] {
        let client = edge.client(&[O2O], http2);
        let fronted = client
            .get(format!("https://{O2O}:{}/", edge.https.port()))
            .header("host", NOT_O2O)
            .send()
            .await
            .unwrap();
        // Over HTTP/2 the `host` header names another host than `:authority`: that request
        // is malformed (RFC 9113 §8.3.1) before any chain is looked at.
        let expected = if http2 { 400 } else { 421 };
        assert_eq!(fronted.status(), expected, "http2={http2}");
    }
    edge.stop().await.unwrap();
}

#[tokio::test]
async fn the_strictest_zone_body_limit_of_the_chain_applies() {
    let echo = spawn_echo().await.unwrap();
    let mut state = o2o_state(echo);
    state["zones"][CUSTOMER]["zone"]["settings"] = json!({"max_upload": 1});
    let edge = RunningEdge::start(state).await.unwrap();
    let client = edge.client(&[O2O, NOT_O2O], true);
    let port = edge.https.port();
    let two_mb = vec![b'x'; 2 << 20];

    let limited = client
        .post(format!("https://{O2O}:{port}/upload"))
        .body(two_mb.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), 413, "the customer zone allows 1 MB");
    let unlimited = client
        .post(format!("https://{NOT_O2O}:{port}/upload"))
        .body(two_mb)
        .send()
        .await
        .unwrap();
    let seen = origin_saw(unlimited).await;
    assert_eq!(
        seen["body"]["length"],
        2 << 20,
        "the provider zone has no limit"
    );
    edge.stop().await.unwrap();
}

#[tokio::test]
async fn response_rules_see_the_request_as_the_request_stages_left_it() {
    let echo = spawn_echo().await.unwrap();
    let mut state = o2o_state(echo);
    add_rules(
        &mut state,
        CUSTOMER,
        "http_request_transform",
        json!([
            {"expression": "starts_with(http.request.uri.path, \"/v1/\")", "action": "rewrite", "action_parameters": {
                "uri": {"path": {"expression": "regex_replace(http.request.uri.path, \"^/v1/\", \"/v2/\")"}}}}
        ]),
    );
    add_rules(
        &mut state,
        PROVIDER,
        "http_request_late_transform",
        json!([
            {"expression": "true", "action": "rewrite", "action_parameters": {"headers": {
                "x-flag": {"operation": "set", "value": "on"}}}}
        ]),
    );
    // The customer's response rules read the request (as rewritten, and as sent); the
    // provider's read only the response.
    add_rules(
        &mut state,
        CUSTOMER,
        "http_response_headers_transform",
        json!([
            {"expression": "http.request.uri.path eq \"/v2/items\" and any(http.request.headers[\"x-flag\"][*] eq \"on\")",
             "action": "rewrite", "action_parameters": {"headers": {"x-saw-request": {"operation": "set", "value": "yes"}}}},
            {"expression": "raw.http.request.uri.path eq \"/v1/items\"",
             "action": "rewrite", "action_parameters": {"headers": {"x-saw-raw": {"operation": "set", "value": "yes"}}}}
        ]),
    );
    add_rules(
        &mut state,
        PROVIDER,
        "http_response_headers_transform",
        json!([
            {"expression": "http.response.code eq 200", "action": "rewrite", "action_parameters": {"headers": {
                "x-provider-saw": {"operation": "set", "value": "200"}}}}
        ]),
    );
    let edge = RunningEdge::start(state).await.unwrap();
    let port = edge.https.port();
    for http2 in [false, true] {
        let client = edge.client(&[O2O, NOT_O2O], http2);
        let get =
            |host: &str, path: &str| client.get(format!("https://{host}:{port}{path}")).send();
        let header = |response: &reqwest::Response, name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let rewritten = get(O2O, "/v1/items").await.unwrap();
        assert_eq!(
            header(&rewritten, "x-saw-request").as_deref(),
            Some("yes"),
            "http2={http2}"
        );
        assert_eq!(
            header(&rewritten, "x-saw-raw").as_deref(),
            Some("yes"),
            "http2={http2}"
        );
        assert_eq!(
            header(&rewritten, "x-provider-saw").as_deref(),
            Some("200"),
            "http2={http2}"
        );
        assert_eq!(origin_saw(rewritten).await["path"], "/v2/items");

        let other = get(O2O, "/v3/items").await.unwrap();
        assert_eq!(header(&other, "x-saw-request"), None, "http2={http2}");
        assert_eq!(header(&other, "x-saw-raw"), None, "http2={http2}");
        assert_eq!(
            header(&other, "x-provider-saw").as_deref(),
            Some("200"),
            "http2={http2}"
        );

        // Only the provider's (response-only) rules run without O2O.
        let single = get(NOT_O2O, "/v1/items").await.unwrap();
        assert_eq!(header(&single, "x-saw-request"), None, "http2={http2}");
        assert_eq!(
            header(&single, "x-provider-saw").as_deref(),
            Some("200"),
            "http2={http2}"
        );
        let missing = get(NOT_O2O, "/missing").await.unwrap();
        assert_eq!(
            header(&missing, "x-provider-saw").as_deref(),
            Some("200"),
            "the echo answers 200 for any path"
        );
    }
    edge.stop().await.unwrap();
}

#[tokio::test]
async fn a_host_a_rule_sets_is_the_host_the_origin_receives() {
    const OWN: &str = "origin.saasprovider.com";
    let echo = spawn_echo().await.unwrap();
    let mut state = o2o_state(echo);
    add_rules(
        &mut state,
        PROVIDER,
        "http_request_late_transform",
        json!([
            {"expression": "http.request.uri.path eq \"/rename\"", "action": "rewrite", "action_parameters": {"headers": {
                "host": {"operation": "set", "value": "renamed.example"}}}}
        ]),
    );
    let edge = RunningEdge::start(state).await.unwrap();
    let port = edge.https.port();
    for http2 in [false, true] {
        let client = edge.client(&[OWN, O2O], http2);
        for (host, path, expected) in [
            (OWN, "/rename", "renamed.example"),
            (OWN, "/keep", OWN),
            // A custom hostname's origin always gets the custom hostname.
            (O2O, "/rename", O2O),
        ] {
            let seen = origin_saw(
                client
                    .get(format!("https://{host}:{port}{path}"))
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            assert_eq!(
                echoed_header(&seen, "host"),
                [expected],
                "{host}{path} http2={http2}"
            );
        }
    }
    edge.stop().await.unwrap();
}
