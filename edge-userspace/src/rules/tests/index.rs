//! The per-phase rule index: it never drops a rule that matches, keeps rule
//! order, leaves out disabled rules, and does leave out rules whose guard
//! literal (or literal prefix) differs from the request (otherwise it would
//! index nothing).

use proptest::prelude::*;
use serde_json::json;

use super::client;
use super::ruleset::zone;
use crate::rules::context::{Ctx, RawRequest};
use crate::rules::model::Phase;

/// 63 and more bytes share one length bit; these two differ only after that.
const LONG_A: &str =
    "/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const LONG_B: &str =
    "/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab";

/// Guarded (leading or later conjunct, `eq` and `in`, duplicates, the empty
/// literal of an absent header, a long literal, first header values,
/// `starts_with`, anchored regex and wildcard prefixes of several lengths,
/// case-sensitive or not, `any` over a header's values, substrings
/// including the empty one) and unguarded
/// filters (prefixes too short to index, case-insensitive and unanchored
/// regexes, a leading `*`, `not any`, `any` in a disjunction).
fn filters() -> Vec<String> {
    [
        r#"http.host eq "a.com""#,
        r#"http.host eq "b.com""#,
        r#"http.host in {"a.com" "c.com"}"#,
        r#"http.request.method in {"POST" "PUT"}"#,
        r#"http.request.method eq "GET" and http.request.uri.query contains "x""#,
        r#"http.request.uri.path eq "/a" and http.request.uri.query contains "x""#,
        r#"ssl and http.request.uri.path eq "/b""#,
        r#"http.request.uri.path in {"/a" "/a" "/c"}"#,
        &format!(r#"http.request.uri.path eq "{LONG_A}""#),
        r#"http.user_agent eq "ua""#,
        r#"http.referer eq """#,
        r#"http.referer eq "r""#,
        r#"http.host eq "a.com" or http.request.uri.path eq "/a""#,
        r#"not http.host eq "a.com""#,
        r#"http.request.uri.path contains "a""#,
        r#"(http.host eq "b.com" and ssl) and http.request.uri.path eq "/c""#,
        r#"http.request.headers["x-v"][0] eq "1""#,
        r#"http.request.headers["X-V"][0] in {"1" "2"}"#,
        r#"http.request.headers["x-v"][0] eq """#,
        r#"ssl and http.request.headers["x-v"][0] eq "2""#,
        r#"http.request.headers["x-v"][1] eq "2""#,
        r#"http.request.headers["x-w"][0] eq "1""#,
        r#"starts_with(http.request.uri.path, "/a/")"#,
        r#"starts_with(http.request.uri.path, "/ab")"#,
        r#"ssl and starts_with(http.request.uri.path, "/a/b")"#,
        r#"http.request.uri.path matches "^/a/b""#,
        r#"http.request.uri.path matches "^/wp-(admin|login)""#,
        r#"http.request.uri.path matches "(?i)^/A/""#,
        r#"http.request.uri.path matches "/a/""#,
        r#"starts_with(http.request.uri.path, "/")"#,
        r#"starts_with(http.host, "a.")"#,
        r#"starts_with(http.request.uri.path, "/a/") or http.host eq "b.com""#,
        r#"http.request.uri matches "^/a/b[?]x""#,
        r#"lower(http.request.uri.path) wildcard "/a/*""#,
        r#"http.request.uri.path wildcard "/AB*""#,
        r#"http.request.uri.path strict wildcard "/a/b*""#,
        r#"lower(http.request.uri.path) strict wildcard "/A/*""#,
        r#"http.request.uri.path wildcard "/a/b""#,
        r#"http.request.uri.path wildcard "*/b""#,
        r#"any(http.request.headers["x-v"][*] eq "2")"#,
        r#"any(http.request.headers["X-V"][*] in {"1" ""})"#,
        r#"ssl and any(http.request.headers["x-w"][*] contains "1")"#,
        r#"not any(http.request.headers["x-v"][*] eq "1")"#,
        r#"any(http.request.headers["x-v"][*] eq "1") or ssl"#,
        r#"any(http.request.headers["x-v"][*] eq "1" or ssl)"#,
        r#"http.user_agent contains "bot""#,
        r#"http.user_agent contains "ua""#,
        r#"ssl and http.user_agent contains "th""#,
        r#"http.user_agent contains """#,
        r#"http.user_agent contains "bot" or ssl"#,
        r#"http.request.uri.path contains "/a""#,
        r#"http.request.uri.path wildcard "/a\\*b*""#,
    ]
    .map(str::to_owned)
    .to_vec()
}

fn request_strategy() -> impl Strategy<Value = http::request::Parts> {
    (
        prop::sample::select(vec!["a.com", "b.com", "c.com", "A.com"]),
        prop::sample::select(vec!["GET", "POST", "PUT"]),
        prop::sample::select(vec![
            "/a",
            "/b",
            "/c",
            "/",
            LONG_A,
            LONG_B,
            "/a/",
            "/a/b",
            "/A/b",
            "/ab",
            "/abc",
            "/wp-admin",
            "/wp-login",
            "/wp-x",
            "/A/B",
            "/AB",
            "/Ab/x",
            "/a*b",
        ]),
        any::<bool>(),
        prop::option::of(prop::sample::select(vec!["ua", "other", "badbot/1", "Bot"])),
        prop::option::of(prop::sample::select(vec!["", "r"])),
        prop::collection::vec(prop::sample::select(vec!["1", "2", ""]), 0..3),
    )
        .prop_map(|(host, method, path, query, ua, referer, variants)| {
            let uri = if query {
                format!("{path}?x=1")
            } else {
                path.to_owned()
            };
            let mut b = http::Request::builder()
                .method(method)
                .uri(uri)
                .header("host", host);
            if let Some(ua) = ua {
                b = b.header("user-agent", ua);
            }
            if let Some(r) = referer {
                b = b.header("referer", r);
            }
            for v in variants {
                b = b.header("x-v", v);
            }
            b.body(()).expect("request").into_parts().0
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn candidates_are_every_enabled_rule_that_can_match_in_order(
        rules in prop::collection::vec((0..filters().len(), prop::bool::weighted(0.9)), 0..40),
        req in request_strategy(),
    ) {
        let filters = filters();
        let spec: Vec<_> = rules
            .iter()
            .map(|(f, enabled)| json!({"expression": filters[*f], "action": "log", "enabled": enabled}))
            .collect();
        let z = zone(json!({"http_request_firewall_custom": {"rules": spec}})).expect("compiles");
        let Some(phase) = z.phase(Phase::HttpRequestFirewallCustom) else {
            prop_assert!(rules.is_empty());
            return Ok(());
        };
        let c = client("192.0.2.1");
        let raw = RawRequest::capture(&req, false);
        let ctx = Ctx::new(&req, &raw, &c, None);
        let candidates: Vec<usize> = phase.index().candidates(&ctx).collect();
        prop_assert!(candidates.windows(2).all(|w| w[0] < w[1]), "in rule order: {candidates:?}");
        for (pos, rule) in phase.rules().iter().enumerate() {
            let listed = candidates.contains(&pos);
            if !rule.enabled {
                prop_assert!(!listed, "disabled rule {pos} listed");
            } else if rule.filter.matches(&ctx) {
                prop_assert!(listed, "matching rule {pos} `{}` left out", rule.filter.source());
            }
        }
    }
}

#[test]
fn rules_whose_literal_differs_are_not_candidates() {
    let paths: Vec<_> = (0..5)
        .map(|i| json!({"expression": format!(r#"http.request.uri.path eq "/old-{i}""#), "action": "log"}))
        .chain([json!({"expression": "ssl", "action": "log"})])
        .chain([
            json!({"expression": r#"http.request.uri.path in {"/old-2" "/new"}"#, "action": "log"}),
        ])
        .collect();
    let z = zone(json!({"http_request_firewall_custom": {"rules": paths}})).expect("compiles");
    let phase = z
        .phase(Phase::HttpRequestFirewallCustom)
        .expect("phase has rules");
    let c = client("192.0.2.1");
    let candidates = |path: &str| -> Vec<usize> {
        let req = super::parts("GET", path, &[("host", "a.com")]);
        let raw = RawRequest::capture(&req, false);
        let ctx = Ctx::new(&req, &raw, &c, None);
        phase.index().candidates(&ctx).collect()
    };
    assert_eq!(candidates("/old-2"), [2, 5, 6]);
    assert_eq!(candidates("/new"), [5, 6]);
    assert_eq!(candidates("/other"), [5]);
    assert_eq!(candidates("/old-9"), [5], "same length, different literal");
}

#[test]
fn rules_whose_prefix_differs_are_not_candidates() {
    let rules: Vec<_> = (0..3)
        .map(|i| json!({"expression": format!(r#"starts_with(http.request.uri.path, "/legacy{i}/")"#), "action": "log"}))
        .chain([json!({"expression": r#"starts_with(http.request.uri.path, "/products/")"#, "action": "log"})])
        .chain([json!({"expression": "ssl", "action": "log"})])
        .collect();
    let z =
        zone(json!({"http_request_firewall_custom": {"rules": rules.clone()}})).expect("compiles");
    let phase = z
        .phase(Phase::HttpRequestFirewallCustom)
        .expect("phase has rules");
    let c = client("192.0.2.1");
    let candidates = |phase: &crate::rules::PhaseRules, path: &str| -> Vec<usize> {
        let req = super::parts("GET", path, &[("host", "a.com")]);
        let raw = RawRequest::capture(&req, false);
        let ctx = Ctx::new(&req, &raw, &c, None);
        phase.index().candidates(&ctx).collect()
    };
    // Keyed by the first 9 bytes, the shortest prefix.
    assert_eq!(candidates(phase, "/products/item-42"), [3, 4]);
    assert_eq!(candidates(phase, "/legacy1/x"), [1, 4]);
    assert_eq!(
        candidates(phase, "/legacy1"),
        [4],
        "shorter than every prefix"
    );
    assert_eq!(candidates(phase, "/legacy9/x"), [4]);

    // An anchored regex joins the table and shortens its keys to 4 bytes.
    let with_regex: Vec<_> = rules
        .into_iter()
        .chain([json!({"expression": r#"http.request.uri.path matches "^/leg(acy)?[0-9]""#, "action": "log"})])
        .collect();
    let z = zone(json!({"http_request_firewall_custom": {"rules": with_regex}})).expect("compiles");
    let phase = z
        .phase(Phase::HttpRequestFirewallCustom)
        .expect("phase has rules");
    assert_eq!(candidates(phase, "/legacy9/x"), [0, 1, 2, 4, 5]);
    assert_eq!(candidates(phase, "/products/"), [3, 4]);
    assert_eq!(candidates(phase, "/x"), [4]);
}

#[test]
fn wildcard_prefixes_are_indexed_in_any_case() {
    let rules: Vec<_> = (0..3)
        .map(|i| json!({"expression": format!(r#"lower(http.request.uri.path) wildcard "/admin{i}/*""#), "action": "log"}))
        .chain([json!({"expression": r#"http.request.uri.path wildcard "/Shop/*""#, "action": "log"})])
        .chain([json!({"expression": "ssl", "action": "log"})])
        .collect();
    let z = zone(json!({"http_request_firewall_custom": {"rules": rules}})).expect("compiles");
    let phase = z
        .phase(Phase::HttpRequestFirewallCustom)
        .expect("phase has rules");
    let c = client("192.0.2.1");
    let candidates = |path: &str| -> Vec<usize> {
        let req = super::parts("GET", path, &[("host", "a.com")]);
        let raw = RawRequest::capture(&req, false);
        let ctx = Ctx::new(&req, &raw, &c, None);
        phase.index().candidates(&ctx).collect()
    };
    // Keyed by the first 6 bytes, the shortest prefix, lower-cased.
    assert_eq!(candidates("/ADMIN1/x"), [0, 1, 2, 4]);
    assert_eq!(candidates("/shop/x"), [3, 4]);
    assert_eq!(candidates("/SHOP"), [4], "shorter than every prefix");
    assert_eq!(candidates("/products/item-42"), [4]);
}

#[test]
fn any_over_an_absent_header_is_not_a_candidate() {
    let rules: Vec<_> = (0..3)
        .map(|i| json!({"expression": format!(r#"any(http.request.headers["x-debug"][*] eq "{i}")"#), "action": "log"}))
        .chain([json!({"expression": "ssl", "action": "log"})])
        .collect();
    let z = zone(json!({"http_request_firewall_custom": {"rules": rules}})).expect("compiles");
    let phase = z
        .phase(Phase::HttpRequestFirewallCustom)
        .expect("phase has rules");
    let c = client("192.0.2.1");
    let candidates = |headers: &[(&str, &str)]| -> Vec<usize> {
        let req = super::parts("GET", "/", headers);
        let raw = RawRequest::capture(&req, false);
        let ctx = Ctx::new(&req, &raw, &c, None);
        phase.index().candidates(&ctx).collect()
    };
    assert_eq!(candidates(&[]), [3]);
    assert_eq!(candidates(&[("x-other", "1")]), [3]);
    assert_eq!(candidates(&[("x-debug", "9")]), [0, 1, 2, 3]);
}

#[test]
fn substring_rules_are_candidates_only_when_one_substring_occurs() {
    let rules: Vec<_> = (0..3)
        .map(|i| json!({"expression": format!(r#"http.user_agent contains "badbot-{i}""#), "action": "log"}))
        .chain([json!({"expression": "ssl", "action": "log"})])
        .collect();
    let z = zone(json!({"http_request_firewall_custom": {"rules": rules}})).expect("compiles");
    let phase = z
        .phase(Phase::HttpRequestFirewallCustom)
        .expect("phase has rules");
    let c = client("192.0.2.1");
    let candidates = |ua: &str| -> Vec<usize> {
        let req = super::parts("GET", "/", &[("user-agent", ua)]);
        let raw = RawRequest::capture(&req, false);
        let ctx = Ctx::new(&req, &raw, &c, None);
        phase.index().candidates(&ctx).collect()
    };
    assert_eq!(candidates("Mozilla/5.0 (X11; Linux x86_64)"), [3]);
    assert_eq!(candidates("BadBot-1"), [3], "case-sensitive, as `contains`");
    // One occurs: the table's rules are evaluated as usual.
    assert_eq!(candidates("x badbot-1 y"), [0, 1, 2, 3]);
}

#[test]
fn rules_on_another_header_value_are_not_candidates() {
    let rules: Vec<_> = (0..4)
        .map(|i| json!({"expression": format!(r#"http.request.headers["x-variant"][0] eq "{i}""#), "action": "log"}))
        .chain([json!({"expression": r#"http.request.headers["x-variant"][0] eq """#, "action": "log"})])
        .chain([json!({"expression": "ssl", "action": "log"})])
        .collect();
    let z = zone(json!({"http_request_firewall_custom": {"rules": rules}})).expect("compiles");
    let phase = z
        .phase(Phase::HttpRequestFirewallCustom)
        .expect("phase has rules");
    let c = client("192.0.2.1");
    let candidates = |variants: &[&str]| -> Vec<usize> {
        let headers: Vec<_> = variants.iter().map(|v| ("x-variant", *v)).collect();
        let req = super::parts("GET", "/", &headers);
        let raw = RawRequest::capture(&req, false);
        let ctx = Ctx::new(&req, &raw, &c, None);
        phase.index().candidates(&ctx).collect()
    };
    assert_eq!(candidates(&["2"]), [2, 5]);
    assert_eq!(candidates(&["3", "1"]), [3, 5], "the first value decides");
    assert_eq!(candidates(&[]), [4, 5], "an absent header reads as empty");
    assert_eq!(candidates(&["9"]), [5]);
}

const RESPONSE_FILTERS: [&str; 6] = [
    "http.response.code eq 200",
    "http.response.code eq 404",
    "http.response.code in {404 500}",
    "http.response.code in {500..599}",
    "http.response.code ne 200",
    r#"http.response.code eq 503 and http.request.uri.path eq "/a""#,
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn response_code_candidates_are_every_rule_that_can_match(
        rules in prop::collection::vec(0..RESPONSE_FILTERS.len(), 0..30),
        code in prop::sample::select(vec![200u16, 404, 500, 503, 599]),
        path in prop::sample::select(vec!["/a", "/b"]),
    ) {
        let spec: Vec<_> = rules
            .iter()
            .enumerate()
            .map(|(i, f)| json!({"expression": RESPONSE_FILTERS[*f], "action": "rewrite",
                "action_parameters": {"headers": {format!("x-{i}"): {"operation": "set", "value": "1"}}}}))
            .collect();
        let z = zone(json!({"http_response_headers_transform": {"rules": spec}})).expect("compiles");
        let Some(phase) = z.phase(Phase::HttpResponseHeadersTransform) else {
            prop_assert!(rules.is_empty());
            return Ok(());
        };
        let req = super::parts("GET", path, &[]);
        let (resp, ()) = http::Response::builder().status(code).body(()).expect("response").into_parts();
        let c = client("192.0.2.1");
        let raw = RawRequest::capture(&req, false);
        let ctx = Ctx::new(&req, &raw, &c, Some(&resp));
        let candidates: Vec<usize> = phase.index().candidates(&ctx).collect();
        prop_assert!(candidates.windows(2).all(|w| w[0] < w[1]), "in rule order: {candidates:?}");
        for (pos, rule) in phase.rules().iter().enumerate() {
            if rule.filter.matches(&ctx) {
                prop_assert!(candidates.contains(&pos), "matching rule {pos} `{}` left out", rule.filter.source());
            }
        }
        let guarded = rules.iter().filter(|f| **f < 3).count();
        if guarded >= 3 && code == 599 {
            prop_assert!(candidates.len() < rules.len(), "codes no literal names are not candidates");
        }
    }
}
