use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;

use super::{client, parts};
use crate::rules::context::{Ctx, RawRequest};
use crate::rules::model::{Phase, Ruleset};
use crate::rules::ratelimit::ManualClock;
use crate::rules::{CompiledAction, ZoneRules};

pub(crate) fn zone(spec: serde_json::Value) -> Result<ZoneRules, crate::rules::RulesError> {
    let map: BTreeMap<Phase, Ruleset> =
        serde_json::from_value(spec).expect("ruleset JSON matches the model");
    ZoneRules::compile(&map)
}

fn compile_err(phase: &str, rule: serde_json::Value) -> String {
    match zone(
        json!({ phase: { "rules": [ {"expression": "true_placeholder", "action": "log"}, rule ] } }),
    ) {
        Ok(_) => panic!("compiled"),
        Err(e) => e.to_string(),
    }
}

/// The first rule is valid in every phase where it is used; errors name rule 1.
fn err_at(phase: &str, rule: serde_json::Value) -> String {
    let valid = match phase {
        "http_request_firewall_custom" => json!({"expression": "ssl", "action": "log"}),
        _ => {
            json!({"expression": "ssl", "action": "rewrite", "action_parameters": {"headers": {"x-ok": {"operation": "remove"}}}})
        }
    };
    let spec = if phase == "http_request_firewall_custom"
        || phase.ends_with("late_transform")
        || phase.starts_with("http_response")
    {
        json!({ phase: { "rules": [ valid, rule ] } })
    } else {
        json!({ phase: { "rules": [ rule.clone(), rule ] } })
    };
    match zone(spec) {
        Ok(_) => panic!("compiled: {rule}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn invalid_rules_name_phase_rule_and_field() {
    let fw = "http_request_firewall_custom";
    let cases: Vec<(&str, serde_json::Value, &str)> = vec![
        (
            fw,
            json!({"expression": "http.host eq", "action": "block"}),
            "phase http_request_firewall_custom, rule 1, field `expression`: expected a string literal at line 1, column 13",
        ),
        (
            fw,
            json!({"expression": "ssl", "action": "redirect"}),
            "field `action`: action `redirect` is not allowed in this phase (allowed: block, skip, log)",
        ),
        (
            fw,
            json!({"expression": "ssl", "action": "block", "action_parameters": {"response": {"status_code": 200}}}),
            "field `action_parameters.response.status_code`: 200 is not between 400 and 499",
        ),
        (
            fw,
            json!({"expression": "ssl", "action": "block", "action_parameters": {"uri": {"path": {"value": "/"}}}}),
            "field `action_parameters.uri`: not allowed for action `block`",
        ),
        (
            fw,
            json!({"expression": "ssl", "action": "skip"}),
            "field `action_parameters`: skip needs",
        ),
        (
            fw,
            json!({"expression": "ssl", "action": "skip", "action_parameters": {"phases": ["http_request_transform"]}}),
            "cannot skip `http_request_transform`",
        ),
        (
            fw,
            json!({"expression": "ssl", "action": "skip", "action_parameters": {"ruleset": "other"}}),
            "only `current` is supported",
        ),
        (
            fw,
            json!({"expression": "ssl", "action": "log", "ratelimit": {"characteristics": ["ip.src"], "period": 10, "requests_per_period": 1}}),
            "field `ratelimit`: only allowed in phase http_ratelimit",
        ),
        (
            "http_request_late_transform",
            json!({"expression": "ssl", "action": "rewrite", "action_parameters": {"headers": {"cf-connecting-o2o": {"operation": "set", "value": "1"}}}}),
            "header `cf-connecting-o2o` is vouched for by the edge",
        ),
        (
            "http_request_late_transform",
            json!({"expression": "ssl", "action": "rewrite", "action_parameters": {"headers": {"X-Forwarded-For": {"operation": "remove"}}}}),
            "header `x-forwarded-for` is vouched for by the edge",
        ),
        (
            "http_response_headers_transform",
            json!({"expression": "ssl", "action": "rewrite", "action_parameters": {"headers": {"cf-ray": {"operation": "set", "value": "x"}}}}),
            "header `cf-ray` is vouched for by the edge",
        ),
        (
            "http_request_late_transform",
            json!({"expression": "ssl", "action": "rewrite", "action_parameters": {"headers": {"x-a": {"operation": "set"}}}}),
            "field `action_parameters.headers.x-a`: exactly one of `value` and `expression` is required",
        ),
        (
            "http_request_late_transform",
            json!({"expression": "ssl", "action": "rewrite", "action_parameters": {"headers": {"x-a": {"operation": "set", "value": "a", "expression": "http.host"}}}}),
            "exactly one of `value` and `expression`",
        ),
        (
            "http_request_late_transform",
            json!({"expression": "ssl", "action": "rewrite", "action_parameters": {"headers": {"x-a": {"operation": "remove", "value": "a"}}}}),
            "remove takes neither",
        ),
        (
            "http_request_late_transform",
            json!({"expression": "ssl", "action": "rewrite", "action_parameters": {"headers": {"bad header": {"operation": "remove"}}}}),
            "not a valid header name",
        ),
        (
            "http_request_late_transform",
            json!({"expression": "ssl", "action": "rewrite", "action_parameters": {"headers": {"x-a": {"operation": "set", "value": "a\nb"}}}}),
            "field `action_parameters.headers.x-a.value`: not a valid header value",
        ),
        (
            "http_request_late_transform",
            json!({"expression": "ssl", "action": "rewrite", "action_parameters": {"headers": {"x-a": {"operation": "set", "expression": "ssl"}}}}),
            "field `action_parameters.headers.x-a.expression`: expression has type Bool, expected Bytes",
        ),
        (
            "http_request_late_transform",
            json!({"expression": "ssl", "action": "rewrite", "action_parameters": {"uri": {"path": {"value": "/"}}}}),
            "field `action_parameters.uri`: not allowed for action `rewrite`",
        ),
        (
            "http_request_transform",
            json!({"expression": "ssl", "action": "rewrite", "action_parameters": {"uri": {"path": {"value": "no-slash"}}}}),
            "field `action_parameters.uri.path.value`: must be a path starting with `/`",
        ),
        (
            "http_request_transform",
            json!({"expression": "ssl", "action": "rewrite", "action_parameters": {"uri": {"query": {"value": "?a=1"}}}}),
            "must be a query string without the leading `?`",
        ),
        (
            "http_request_transform",
            json!({"expression": "ssl", "action": "rewrite", "action_parameters": {}}),
            "rewrite needs `uri.path` or `uri.query`",
        ),
        (
            "http_request_transform",
            json!({"expression": "ssl", "action": "rewrite", "action_parameters": {"uri": {"path": {"expression": "regex_replace(http.host, \"(\", \"\")"}}}}),
            "field `action_parameters.uri.path.expression`: invalid regular expression",
        ),
        (
            "http_request_dynamic_redirect",
            json!({"expression": "ssl", "action": "redirect"}),
            "field `action_parameters.from_value`: required for redirect",
        ),
        (
            "http_request_dynamic_redirect",
            json!({"expression": "ssl", "action": "redirect", "action_parameters": {"from_value": {"target_url": {"value": "https://a/"}, "status_code": 200}}}),
            "field `action_parameters.from_value.status_code`: 200 is not a redirect status",
        ),
        (
            "http_request_dynamic_redirect",
            json!({"expression": "ssl", "action": "redirect", "action_parameters": {"from_value": {"target_url": {}}}}),
            "field `action_parameters.from_value.target_url`: exactly one of",
        ),
        (
            "http_request_origin",
            json!({"expression": "ssl", "action": "route", "action_parameters": {}}),
            "route needs `host_header`, `origin` or `sni`",
        ),
        (
            "http_request_origin",
            json!({"expression": "ssl", "action": "route", "action_parameters": {"origin": {"port": 0}}}),
            "field `action_parameters.origin.port`: port 0",
        ),
        (
            "http_request_origin",
            json!({"expression": "ssl", "action": "route", "action_parameters": {"host_header": "a b"}}),
            "field `action_parameters.host_header`",
        ),
        (
            "http_request_origin",
            json!({"expression": "ssl", "action": "route", "action_parameters": {"sni": {"value": ""}}}),
            "field `action_parameters.sni.value`",
        ),
        (
            "http_ratelimit",
            json!({"expression": "ssl", "action": "block"}),
            "field `ratelimit`: required in phase http_ratelimit",
        ),
        (
            "http_ratelimit",
            json!({"expression": "ssl", "action": "block", "ratelimit": {"characteristics": [], "period": 10, "requests_per_period": 1}}),
            "field `ratelimit.characteristics`: at least one",
        ),
        (
            "http_ratelimit",
            json!({"expression": "ssl", "action": "block", "ratelimit": {"characteristics": ["ip.srcx"], "period": 10, "requests_per_period": 1}}),
            "field `ratelimit.characteristics[0]`: unknown field `ip.srcx`",
        ),
        (
            "http_ratelimit",
            json!({"expression": "ssl", "action": "block", "ratelimit": {"characteristics": ["ip.src"], "period": 0, "requests_per_period": 1}}),
            "field `ratelimit.period`",
        ),
        (
            "http_response_headers_transform",
            json!({"expression": "http.response.code eq", "action": "rewrite", "action_parameters": {"headers": {"x-a": {"operation": "remove"}}}}),
            "field `expression`: expected an integer",
        ),
    ];
    for (phase, rule, want) in cases {
        let got = err_at(phase, rule.clone());
        assert!(
            got.contains(want),
            "{phase} {rule}:\n got  {got}\n want {want}"
        );
    }
}

#[test]
fn errors_name_the_rule_index() {
    let e = compile_err(
        "http_request_firewall_custom",
        json!({"expression": "ssl", "action": "block"}),
    );
    assert!(e.starts_with("phase http_request_firewall_custom, rule 0, field `expression`: unknown field `true_placeholder`"), "{e}");
}

#[test]
fn valid_zone_compiles_every_action() {
    let z = zone(json!({
        "http_request_dynamic_redirect": {"rules": [
            {"expression": "http.request.uri.path eq \"/old\"", "action": "redirect",
             "action_parameters": {"from_value": {"target_url": {"value": "https://example.com/new"}, "status_code": 308, "preserve_query_string": true}}},
            {"expression": "starts_with(http.request.uri.path, \"/blog/\")", "action": "redirect",
             "action_parameters": {"from_value": {"target_url": {"expression": "wildcard_replace(http.request.full_uri, \"https://*/blog/*\", \"https://blog.${1}/${2}\")"}}}}
        ]},
        "http_request_transform": {"rules": [
            {"expression": "ssl", "action": "rewrite", "action_parameters": {"uri": {"path": {"value": "/x"}, "query": {"expression": "concat(\"a=\", http.host)"}}}}
        ]},
        "http_request_origin": {"rules": [
            {"expression": "ssl", "action": "route", "action_parameters": {"host_header": "origin.example", "origin": {"host": "o.example", "port": 8443}, "sni": {"value": "sni.example"}}}
        ]},
        "http_request_firewall_custom": {"rules": [
            {"expression": "ssl", "action": "skip", "action_parameters": {"ruleset": "current", "phases": ["http_ratelimit"]}},
            {"expression": "ssl", "action": "log"},
            {"expression": "ssl", "action": "block", "action_parameters": {"response": {"status_code": 418, "content_type": "application/json", "content": "{}"}}}
        ]},
        "http_ratelimit": {"rules": [
            {"expression": "ssl", "action": "block", "ratelimit": {"characteristics": ["ip.src", "cf.colo.id", "http.request.headers[\"x-key\"][0]"], "period": 60, "requests_per_period": 100, "mitigation_timeout": 600}}
        ]},
        "http_request_late_transform": {"rules": [
            {"expression": "ssl", "action": "rewrite", "action_parameters": {"headers": {"x-a": {"operation": "set", "value": "1"}, "x-b": {"operation": "add", "expression": "raw.http.request.headers[\"x\"][0]"}, "x-c": {"operation": "remove"}}}}
        ]},
        "http_response_headers_transform": {"rules": [
            {"expression": "http.response.code ge 500", "action": "rewrite", "action_parameters": {"headers": {"x-err": {"operation": "set", "expression": "to_string(http.response.code)"}}}}
        ]}
    }))
    .expect("valid zone");
    assert!(z.needs_raw_headers());
    let names: Vec<&str> = Phase::REQUEST
        .iter()
        .chain(Phase::RESPONSE.iter())
        .flat_map(|p| z.rules(*p).iter().map(|r| r.action.name()))
        .collect();
    assert_eq!(
        names,
        [
            "redirect",
            "redirect",
            "rewrite",
            "route",
            "skip",
            "log",
            "block",
            "block (rate limit)",
            "rewrite",
            "rewrite"
        ]
    );
}

#[test]
fn rate_limit_counts_per_characteristic_and_window() {
    let clock = Arc::new(ManualClock::new(1_000));
    let map: BTreeMap<Phase, Ruleset> = serde_json::from_value(json!({
        "http_ratelimit": {"rules": [
            {"expression": "http.request.uri.path eq \"/login\"", "action": "block",
             "ratelimit": {"characteristics": ["ip.src"], "period": 10, "requests_per_period": 3, "mitigation_timeout": 0}}
        ]}
    }))
    .expect("model");
    let z = ZoneRules::compile_with_clock(&map, clock.clone()).expect("compiles");
    let CompiledAction::RateLimit { limiter, .. } = &z.rules(Phase::HttpRatelimit)[0].action else {
        panic!("rate limit rule");
    };
    let r = parts("POST", "/login", &[]);
    let raw = RawRequest::capture(&r, false);
    let (a, b) = (client("192.0.2.1"), client("192.0.2.2"));
    let hit = |c| limiter.hit(&Ctx::new(&r, &raw, c, None));
    // 1000 / 10: window 100; three allowed, the fourth exceeds.
    assert_eq!(
        (1..=4).map(|_| hit(&a).exceeded).collect::<Vec<_>>(),
        [false, false, false, true]
    );
    assert!(!hit(&b).exceeded, "another client has its own counter");
    clock.advance(10);
    let d = hit(&a);
    assert!(!d.exceeded);
    assert_eq!(d.count, 1, "new window starts from one");
}

#[test]
fn rate_limit_mitigation_timeout_blocks_past_the_window() {
    let clock = Arc::new(ManualClock::new(0));
    let map: BTreeMap<Phase, Ruleset> = serde_json::from_value(json!({
        "http_ratelimit": {"rules": [
            {"expression": "ssl", "action": "block",
             "ratelimit": {"characteristics": ["ip.src"], "period": 10, "requests_per_period": 1, "mitigation_timeout": 30}}
        ]}
    }))
    .expect("model");
    let z = ZoneRules::compile_with_clock(&map, clock.clone()).expect("compiles");
    let CompiledAction::RateLimit { limiter, .. } = &z.rules(Phase::HttpRatelimit)[0].action else {
        panic!("rate limit rule");
    };
    let r = parts("GET", "/", &[]);
    let raw = RawRequest::capture(&r, false);
    let c = client("192.0.2.1");
    let ctx = Ctx::new(&r, &raw, &c, None);
    assert!(!limiter.hit(&ctx).exceeded);
    assert!(limiter.hit(&ctx).exceeded);
    clock.advance(15);
    assert!(
        limiter.hit(&ctx).exceeded,
        "still inside the 30 s mitigation"
    );
    clock.advance(20);
    assert!(!limiter.hit(&ctx).exceeded, "mitigation over, new window");
}

#[test]
fn compiled_rules_can_be_shared_across_threads() {
    fn shared<T: Send + Sync + 'static>() {}
    shared::<ZoneRules>();
    shared::<crate::rules::Expression>();
}
