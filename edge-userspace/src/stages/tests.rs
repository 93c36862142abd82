//! Chain runner tests: phase order, O2O header rules, customer-then-provider
//! order, reversed response order, skip, every action through the runner.

use std::collections::BTreeMap;
use std::sync::Arc;

use http::StatusCode;
use serde_json::json;

use super::*;
use crate::rules::model::Ruleset;
use crate::rules::{ManualClock, Phase};

fn zone(spec: serde_json::Value) -> ZoneRules {
    let map: BTreeMap<Phase, Ruleset> =
        serde_json::from_value(spec).expect("ruleset JSON matches the model");
    ZoneRules::compile_with_clock(&map, Arc::new(ManualClock::new(0)))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn request(uri: &str, headers: &[(&str, &str)]) -> request::Parts {
    let mut b = http::Request::builder()
        .uri(uri)
        .header("host", "mystore.example.com");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).expect("request").into_parts().0
}

fn client() -> ClientInfo<'static> {
    ClientInfo {
        ip: "192.0.2.10".parse().expect("ip"),
        tls: true,
        metadata: None,
    }
}

fn run(
    stages: &[Stage<'_>],
    o2o: bool,
    req: &mut request::Parts,
    trace: Option<&mut Trace>,
) -> RequestOutcome {
    let raw = capture_raw(stages, req);
    run_request(stages, o2o, req, &client(), &raw, trace)
}

/// A late-transform rule recording, in header `x-<name>-saw-o2o`, whether the
/// stage saw `cf-connecting-o2o`.
fn o2o_witness(name: &str) -> ZoneRules {
    zone(json!({
        "http_request_late_transform": {"rules": [
            {"expression": "any(http.request.headers.names[*] eq \"cf-connecting-o2o\")", "action": "rewrite",
             "action_parameters": {"headers": {format!("x-{name}-saw-o2o"): {"operation": "set", "expression": "http.request.headers[\"cf-connecting-o2o\"][0]"}}}}
        ]}
    }))
}

fn header<'a>(req: &'a request::Parts, name: &str) -> Vec<&'a str> {
    req.headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().expect("ascii"))
        .collect()
}

#[test]
fn o2o_header_only_in_provider_stage_and_never_forgeable() {
    let (customer, provider) = (o2o_witness("customer"), o2o_witness("provider"));
    let stages = [("example.com", &customer), ("saasprovider.com", &provider)];
    let mut req = request(
        "/",
        &[("cf-connecting-o2o", "1"), ("cf-connecting-o2o", "forged")],
    );
    let mut trace = Trace::default();
    assert_eq!(
        run(&stages, true, &mut req, Some(&mut trace)),
        RequestOutcome::Continue(RouteOverride::default())
    );
    assert!(
        header(&req, "x-customer-saw-o2o").is_empty(),
        "client's copy is stripped before the customer stage"
    );
    assert_eq!(header(&req, "x-provider-saw-o2o"), ["1"]);
    assert_eq!(
        header(&req, "cf-connecting-o2o"),
        ["1"],
        "the provider's origin sees exactly one edge-set header"
    );
    assert_eq!(
        trace
            .stages
            .iter()
            .map(|s| (s.zone.as_str(), s.o2o_header))
            .collect::<Vec<_>>(),
        [("example.com", false), ("saasprovider.com", true)]
    );
}

#[test]
fn non_o2o_chains_strip_the_header() {
    let (customer, provider) = (o2o_witness("customer"), o2o_witness("provider"));
    for (stages, o2o) in [
        (
            vec![("example.com", &customer), ("saasprovider.com", &provider)],
            false,
        ),
        (vec![("saasprovider.com", &provider)], false),
        (vec![("saasprovider.com", &provider)], true),
    ] {
        let mut req = request("/", &[("cf-connecting-o2o", "1")]);
        run(&stages, o2o, &mut req, None);
        assert!(
            header(&req, "cf-connecting-o2o").is_empty(),
            "{o2o} {}",
            stages.len()
        );
        assert!(header(&req, "x-provider-saw-o2o").is_empty());
        assert!(header(&req, "x-customer-saw-o2o").is_empty());
    }
}

#[test]
fn customer_block_ends_the_request_before_the_provider() {
    let customer = zone(json!({"http_request_firewall_custom": {"rules": [
        {"expression": "http.request.uri.path eq \"/admin\"", "action": "block"}
    ]}}));
    let provider = o2o_witness("provider");
    let stages = [("example.com", &customer), ("saasprovider.com", &provider)];
    let mut req = request("/admin", &[]);
    let mut trace = Trace::default();
    let RequestOutcome::Respond { stage, response } =
        run(&stages, true, &mut req, Some(&mut trace))
    else {
        panic!("blocked");
    };
    assert_eq!(stage, 0);
    assert_eq!(response.status, StatusCode::FORBIDDEN);
    assert!(
        std::str::from_utf8(&response.body)
            .expect("utf-8")
            .contains("blocked")
    );
    assert_eq!(response.headers["content-type"], "text/html; charset=utf-8");
    assert!(header(&req, "x-provider-saw-o2o").is_empty());
    assert!(
        header(&req, "cf-connecting-o2o").is_empty(),
        "the provider stage never started"
    );
    assert_eq!(trace.stages.len(), 1, "provider not traced: it never ran");
}

#[test]
fn provider_rules_run_after_customer_rules_and_see_their_changes() {
    let customer = zone(json!({"http_request_transform": {"rules": [
        {"expression": "http.request.uri.path eq \"/shop\"", "action": "rewrite", "action_parameters": {"uri": {"path": {"value": "/store"}}}}
    ]}}));
    let provider = zone(json!({"http_request_firewall_custom": {"rules": [
        {"expression": "http.request.uri.path eq \"/store\" and raw.http.request.uri.path eq \"/shop\"", "action": "block",
         "action_parameters": {"response": {"status_code": 451, "content_type": "text/plain", "content": "provider saw the rewrite"}}}
    ]}}));
    let stages = [("example.com", &customer), ("saasprovider.com", &provider)];
    let mut req = request("/shop?x=1", &[]);
    let RequestOutcome::Respond { stage, response } = run(&stages, true, &mut req, None) else {
        panic!("provider blocks");
    };
    assert_eq!(
        (stage, response.status.as_u16(), &response.body[..]),
        (1, 451, &b"provider saw the rewrite"[..])
    );
    assert_eq!(req.uri.to_string(), "/store?x=1");
}

#[test]
fn response_phases_run_provider_first_then_customer() {
    let rule = |name: &str| {
        zone(json!({"http_response_headers_transform": {"rules": [
            {"expression": "http.response.code eq 200", "action": "rewrite", "action_parameters": {"headers": {
                "x-order": {"operation": "add", "value": name},
                format!("x-{name}-saw"): {"operation": "set", "expression": "concat(\"[\", http.response.headers[\"x-order\"][0], \"]\")"}
            }}}
        ]}}))
    };
    let (customer, provider) = (rule("customer"), rule("provider"));
    let stages = [("example.com", &customer), ("saasprovider.com", &provider)];
    let req = request("/", &[]);
    let raw = capture_raw(&stages, &req);
    let (mut resp, ()) = http::Response::builder()
        .status(200)
        .body(())
        .expect("response")
        .into_parts();
    let mut trace = Trace::default();
    run_response(&stages, &req, &client(), &raw, &mut resp, Some(&mut trace));
    let got: Vec<_> = resp
        .headers
        .get_all("x-order")
        .iter()
        .map(|v| v.to_str().expect("ascii"))
        .collect();
    assert_eq!(got, ["provider", "customer"]);
    assert_eq!(resp.headers["x-provider-saw"], "[]");
    assert_eq!(resp.headers["x-customer-saw"], "[provider]");
    assert_eq!(
        trace
            .stages
            .iter()
            .map(|s| (s.zone.as_str(), s.direction))
            .collect::<Vec<_>>(),
        [
            ("saasprovider.com", Direction::Response),
            ("example.com", Direction::Response)
        ]
    );
}

#[test]
fn response_trace_marks_only_the_provider_stage_as_o2o() {
    let rule = zone(json!({"http_response_headers_transform": {"rules": [
        {"expression": "ssl", "action": "rewrite", "action_parameters": {"headers": {"x-a": {"operation": "set", "value": "1"}}}}
    ]}}));
    let stages = [("example.com", &rule), ("saasprovider.com", &rule)];
    let mut req = request("/", &[]);
    let raw = capture_raw(&stages, &req);
    assert!(matches!(
        run_request(&stages, true, &mut req, &client(), &raw, None),
        RequestOutcome::Continue(_)
    ));
    let (mut resp, ()) = http::Response::builder()
        .status(200)
        .body(())
        .expect("response")
        .into_parts();
    let mut trace = Trace::default();
    run_response(&stages, &req, &client(), &raw, &mut resp, Some(&mut trace));
    let got: Vec<_> = trace
        .stages
        .iter()
        .map(|s| (s.zone.as_str(), s.o2o_header))
        .collect();
    assert_eq!(got, [("saasprovider.com", true), ("example.com", false)]);
}

#[test]
fn field_values_are_fixed_within_a_phase_and_change_between_phases() {
    let z = zone(json!({
        "http_request_transform": {"rules": [
            {"expression": "http.request.uri.path eq \"/a\"", "action": "rewrite", "action_parameters": {"uri": {"path": {"value": "/b"}}}},
            {"expression": "http.request.uri.path eq \"/b\"", "action": "rewrite", "action_parameters": {"uri": {"query": {"value": "same-phase=1"}}}}
        ]},
        "http_request_late_transform": {"rules": [
            {"expression": "http.request.uri.path eq \"/b\"", "action": "rewrite", "action_parameters": {"headers": {"x-next-phase": {"operation": "set", "value": "saw /b"}}}}
        ]}
    }));
    let mut req = request("/a", &[]);
    run(&[("z", &z)], false, &mut req, None);
    assert_eq!(
        req.uri.to_string(),
        "/b",
        "rule 1 saw /a, not rule 0's change"
    );
    assert_eq!(header(&req, "x-next-phase"), ["saw /b"]);
}

#[test]
fn later_transform_rules_overwrite_earlier_ones() {
    let z = zone(json!({
        "http_request_transform": {"rules": [
            {"expression": "ssl", "action": "rewrite", "action_parameters": {"uri": {"path": {"value": "/first"}, "query": {"value": "q=1"}}}},
            {"expression": "ssl", "action": "rewrite", "action_parameters": {"uri": {"path": {"expression": "concat(\"/second\", http.request.uri.path)"}}}}
        ]},
        "http_request_late_transform": {"rules": [
            {"expression": "ssl", "action": "rewrite", "action_parameters": {"headers": {"x-a": {"operation": "set", "value": "1"}, "x-gone": {"operation": "remove"}}}},
            {"expression": "ssl", "action": "rewrite", "action_parameters": {"headers": {"x-a": {"operation": "set", "value": "2"}, "x-b": {"operation": "add", "value": "b2"}}}}
        ]}
    }));
    let mut req = request("/orig?old=1", &[("x-gone", "x"), ("x-b", "b1")]);
    run(&[("z", &z)], false, &mut req, None);
    assert_eq!(req.uri.to_string(), "/second/orig?q=1");
    assert_eq!(header(&req, "x-a"), ["2"]);
    assert_eq!(header(&req, "x-b"), ["b1", "b2"]);
    assert!(header(&req, "x-gone").is_empty());
}

#[test]
fn empty_query_rewrite_removes_the_query() {
    let z = zone(json!({"http_request_transform": {"rules": [
        {"expression": "ssl", "action": "rewrite", "action_parameters": {"uri": {"query": {"value": ""}}}}
    ]}}));
    let mut req = request("/p?a=1", &[]);
    run(&[("z", &z)], false, &mut req, None);
    assert_eq!(req.uri.to_string(), "/p");
}

#[test]
fn redirects_static_dynamic_and_query_preservation() {
    let z = zone(json!({"http_request_dynamic_redirect": {"rules": [
        {"expression": "http.request.uri.path eq \"/old\"", "action": "redirect",
         "action_parameters": {"from_value": {"target_url": {"value": "https://example.com/new"}, "status_code": 308, "preserve_query_string": true}}},
        {"expression": "starts_with(http.request.uri.path, \"/blog/\")", "action": "redirect",
         "action_parameters": {"from_value": {"target_url": {"expression": "wildcard_replace(http.request.full_uri, \"https://*/blog/*\", \"https://blog.${1}/${2}\")"}, "status_code": 302}}},
        {"expression": "ssl", "action": "redirect",
         "action_parameters": {"from_value": {"target_url": {"value": "https://example.com/?x=1"}, "preserve_query_string": true}}}
    ]}}));
    let cases = [
        ("/old?a=1", 308, "https://example.com/new?a=1"),
        (
            "/blog/post?z",
            302,
            "https://blog.mystore.example.com/post?z",
        ),
        ("/other?b=2", 301, "https://example.com/?x=1&b=2"),
    ];
    for (uri, status, location) in cases {
        let mut req = request(uri, &[]);
        let RequestOutcome::Respond { response, .. } = run(&[("z", &z)], false, &mut req, None)
        else {
            panic!("{uri} redirects");
        };
        assert_eq!(response.status.as_u16(), status, "{uri}");
        assert_eq!(response.headers["location"], location, "{uri}");
        assert!(response.body.is_empty());
    }
}

#[test]
fn skip_rest_of_ruleset_and_named_phases() {
    let z = zone(json!({
        "http_request_firewall_custom": {"rules": [
            {"expression": "http.request.headers[\"x-trusted\"][0] eq \"yes\"", "action": "skip", "action_parameters": {"ruleset": "current", "phases": ["http_ratelimit"]}},
            {"expression": "ssl", "action": "block"}
        ]},
        "http_ratelimit": {"rules": [
            {"expression": "ssl", "action": "block", "ratelimit": {"characteristics": ["ip.src"], "period": 60, "requests_per_period": 1}}
        ]},
        "http_request_late_transform": {"rules": [
            {"expression": "ssl", "action": "rewrite", "action_parameters": {"headers": {"x-late": {"operation": "set", "value": "ran"}}}}
        ]}
    }));
    for _ in 0..3 {
        let mut req = request("/", &[("x-trusted", "yes")]);
        let mut trace = Trace::default();
        assert!(matches!(
            run(&[("z", &z)], false, &mut req, Some(&mut trace)),
            RequestOutcome::Continue(_)
        ));
        assert_eq!(header(&req, "x-late"), ["ran"]);
        let phases = &trace.stages[0].phases;
        assert_eq!(
            phases[0].rules[1].result,
            RuleResult::Skipped("rule 0 skipped the rest of the ruleset".into())
        );
        assert_eq!(phases[1].phase, Phase::HttpRatelimit);
        assert_eq!(phases[1].skipped.as_deref(), Some("skipped by a skip rule"));
    }
    let mut req = request("/", &[]);
    let RequestOutcome::Respond { response, .. } = run(&[("z", &z)], false, &mut req, None) else {
        panic!("untrusted is blocked");
    };
    assert_eq!(response.status, StatusCode::FORBIDDEN);
}

#[test]
fn rate_limit_through_the_runner_answers_429() {
    let z = zone(json!({"http_ratelimit": {"rules": [
        {"expression": "http.request.uri.path eq \"/login\"", "action": "block", "ratelimit": {"characteristics": ["ip.src"], "period": 60, "requests_per_period": 2}}
    ]}}));
    let statuses: Vec<Option<u16>> = (0..4)
        .map(
            |_| match run(&[("z", &z)], false, &mut request("/login", &[]), None) {
                RequestOutcome::Continue(_) => None,
                RequestOutcome::Respond { response, .. } => Some(response.status.as_u16()),
            },
        )
        .collect();
    assert_eq!(statuses, [None, None, Some(429), Some(429)]);
    assert!(matches!(
        run(&[("z", &z)], false, &mut request("/other", &[]), None),
        RequestOutcome::Continue(_)
    ));
}

#[test]
fn route_overrides_customer_wins_over_provider() {
    let customer = zone(json!({"http_request_origin": {"rules": [
        {"expression": "ssl", "action": "route", "action_parameters": {"host_header": "first.customer"}},
        {"expression": "ssl", "action": "route", "action_parameters": {"host_header": "customer.example", "sni": {"value": "sni.customer"}}}
    ]}}));
    let provider = zone(json!({"http_request_origin": {"rules": [
        {"expression": "ssl", "action": "route", "action_parameters": {"host_header": "provider.example", "origin": {"host": "origin.provider", "port": 8443}}}
    ]}}));
    let stages = [("example.com", &customer), ("saasprovider.com", &provider)];
    let RequestOutcome::Continue(route) = run(&stages, true, &mut request("/", &[]), None) else {
        panic!("continues");
    };
    assert_eq!(
        route,
        RouteOverride {
            host_header: Some(HeaderValue::from_static("customer.example")),
            origin_host: Some("origin.provider".into()),
            origin_port: Some(8443),
            sni: Some("sni.customer".into()),
        }
    );
}

#[test]
fn log_and_disabled_rules_do_not_act_and_trace_says_why() {
    let z = zone(json!({"http_request_firewall_custom": {"rules": [
        {"expression": "http.request.uri.path contains \"wp-\"", "action": "log", "description": "watch wordpress probes"},
        {"expression": "ssl", "action": "block", "enabled": false},
        {"expression": "ip.src in {198.51.100.0/24}", "action": "block"}
    ]}}));
    let mut req = request("/wp-login.php", &[]);
    let mut trace = Trace::default();
    assert!(matches!(
        run(&[("z", &z)], false, &mut req, Some(&mut trace)),
        RequestOutcome::Continue(_)
    ));
    let rules = &trace.stages[0].phases[0].rules;
    assert_eq!(rules[0].result, RuleResult::Matched);
    assert_eq!(rules[0].action.as_deref(), Some("log"));
    assert_eq!(rules[0].fields[0].field, "http.request.uri.path");
    assert_eq!(rules[0].fields[0].value, json!("/wp-login.php"));
    assert_eq!(rules[1].result, RuleResult::Skipped("disabled".into()));
    assert_eq!(rules[2].result, RuleResult::NotMatched);
    assert_eq!(rules[2].fields[0].value, json!("192.0.2.10"));
    let text = serde_json::to_value(&trace).expect("serializes");
    assert_eq!(
        text["stages"][0]["phases"][0]["rules"][1]["result"],
        "skipped"
    );
    assert_eq!(
        text["stages"][0]["phases"][0]["rules"][1]["reason"],
        "disabled"
    );
    let back: Trace = serde_json::from_value(text).expect("deserializes");
    assert_eq!(back, trace);
}

#[test]
fn trace_records_every_rule_after_a_terminating_one() {
    let z = zone(json!({"http_request_firewall_custom": {"rules": [
        {"expression": "ssl", "action": "block", "action_parameters": {"response": {"status_code": 429, "content_type": "application/json", "content": "{\"error\":1}"}}},
        {"expression": "http.request.headers[\"x-a\"][0] eq \"b\"", "action": "log"}
    ]}}));
    let mut trace = Trace::default();
    let RequestOutcome::Respond { response, .. } = run(
        &[("z", &z)],
        false,
        &mut request("/", &[("x-a", "b")]),
        Some(&mut trace),
    ) else {
        panic!("blocked");
    };
    assert_eq!(
        (
            response.status.as_u16(),
            response.headers["content-type"].to_str().ok()
        ),
        (429, Some("application/json"))
    );
    let rules = &trace.stages[0].phases[0].rules;
    assert_eq!(rules[0].action.as_deref(), Some("block 429"));
    assert_eq!(
        rules[1].result,
        RuleResult::Skipped("rule 0 ended the request".into())
    );
    let resp = response.into_response();
    assert_eq!(resp.body().as_ref(), b"{\"error\":1}");
}

#[test]
fn response_header_set_and_remove() {
    let z = zone(json!({"http_response_headers_transform": {"rules": [
        {"expression": "any(http.response.headers.names[*] eq \"server\")", "action": "rewrite", "action_parameters": {"headers": {
            "server": {"operation": "remove"}, "x-frame-options": {"operation": "set", "value": "DENY"}}}}
    ]}}));
    let stages = [("z", &z)];
    let req = request("/", &[]);
    let raw = capture_raw(&stages, &req);
    let (mut resp, ()) = http::Response::builder()
        .status(200)
        .header("server", "nginx")
        .body(())
        .expect("response")
        .into_parts();
    run_response(&stages, &req, &client(), &raw, &mut resp, None);
    assert!(resp.headers.get("server").is_none());
    assert_eq!(resp.headers["x-frame-options"], "DENY");
}

/// A zone whose phases are mostly indexed: redirects by path, URI rewrites
/// by path prefix, origin routes by host, firewall rules by host and method
/// (one skipping the rest of the ruleset), late transforms by method and by
/// a header.
fn indexed_zone(tag: &str) -> ZoneRules {
    let by_path: Vec<_> = (0..4)
        .map(|i| json!({"expression": format!("http.request.uri.path eq \"/old-{i}\""), "action": "redirect",
                        "action_parameters": {"from_value": {"target_url": {"value": format!("https://{tag}/new/{i}")}}}}))
        .collect();
    let by_prefix: Vec<_> = (0..4)
        .map(|i| json!({"expression": format!("starts_with(http.request.uri.path, \"/x{i}\")"), "action": "rewrite",
                        "action_parameters": {"uri": {"query": {"value": format!("r={i}")}}}}))
        .chain([json!({"expression": "http.request.uri.path matches \"^/old-[0-4]\"", "action": "rewrite",
                       "action_parameters": {"uri": {"path": {"value": "/x2"}}}})])
        .collect();
    let by_host: Vec<_> = (0..4)
        .map(|i| {
            json!({"expression": format!("http.host eq \"api{i}.example.com\""), "action": "route",
                        "action_parameters": {"origin": {"port": 8000 + i}}})
        })
        .collect();
    let mut firewall: Vec<_> = (0..4)
        .map(|i| json!({"expression": format!("http.host eq \"api{i}.example.com\" and http.request.uri.path eq \"/deny\""), "action": "block"}))
        .collect();
    firewall.push(json!({"expression": "http.request.method in {\"PUT\" \"DELETE\"} and http.request.uri.path eq \"/x\"", "action": "skip", "action_parameters": {"ruleset": "current"}}));
    firewall.extend((0..3).map(|i| json!({"expression": format!("http.request.method eq \"PUT\" and http.request.uri.path eq \"/x{i}\""), "action": "block"})));
    firewall.push(json!({"expression": "http.request.uri.path eq \"/x\"", "action": "block"}));
    let late: Vec<_> = (0..4)
        .map(|i| json!({"expression": format!("http.request.headers[\"x-variant\"][0] eq \"{i}\" or http.request.method eq \"{}\"", ["GET", "PUT", "POST", "DELETE"][i]),
                        "action": "rewrite",
                        "action_parameters": {"headers": {format!("x-{tag}-{i}"): {"operation": "set", "value": "1"}}}}))
        .collect();
    zone(json!({
        "http_request_dynamic_redirect": {"rules": by_path},
        "http_request_transform": {"rules": by_prefix},
        "http_request_origin": {"rules": by_host},
        "http_request_firewall_custom": {"rules": firewall},
        "http_request_late_transform": {"rules": late},
    }))
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..Default::default() })]

    /// The untraced run evaluates only the index's candidates, the traced run
    /// every rule: both must end in the same outcome and the same request.
    #[test]
    fn indexed_and_unindexed_runs_agree(
        host in proptest::sample::select(vec!["api0.example.com", "api3.example.com", "mystore.example.com"]),
        method in proptest::sample::select(vec!["GET", "PUT", "POST", "DELETE"]),
        path in proptest::sample::select(vec!["/old-1", "/old-9", "/deny", "/x", "/x1", "/"]),
        variant in proptest::option::of(proptest::sample::select(vec!["0", "2", "7"])),
    ) {
        let (customer, provider) = (indexed_zone("customer"), indexed_zone("provider"));
        let stages: [Stage<'_>; 2] = [("customer", &customer), ("provider", &provider)];
        let mut b = http::Request::builder().method(method).uri(path).header("host", host);
        if let Some(v) = variant {
            b = b.header("x-variant", v);
        }
        let original = b.body(()).expect("request").into_parts().0;
        let (mut indexed, mut unindexed) = (original.clone(), original);
        let mut trace = Trace::default();
        let a = run(&stages, true, &mut indexed, None);
        let b = run(&stages, true, &mut unindexed, Some(&mut trace));
        proptest::prop_assert_eq!(a, b);
        proptest::prop_assert_eq!(&indexed.uri, &unindexed.uri);
        proptest::prop_assert_eq!(&indexed.headers, &unindexed.headers);
        // The trace still lists every rule of every phase it ran, in order.
        for phase in trace.stages.iter().flat_map(|s| &s.phases) {
            let indices: Vec<usize> = phase.rules.iter().map(|r| r.index).collect();
            proptest::prop_assert_eq!(indices, (0..phase.rules.len()).collect::<Vec<_>>());
        }
    }
}
