//! Rules engine benchmark: a full O2O chain run (customer zone then provider
//! zone, 100 rules each across all phases, request and response phases) per
//! request, and the filter evaluation alone against wirefilter-engine 0.6.1
//! (Cloudflare's published engine) on the expressions both languages share.
//!
//! Run: `cargo bench -p edge-userspace --bench rules`

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::IpAddr;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use edge_userspace::rules::model::{Phase, Ruleset};
use edge_userspace::rules::{ClientInfo, Ctx, ExprKind, Expression, RawRequest, ZoneRules};
use edge_userspace::stages::{Stage, capture_raw, run_request, run_response};
use serde_json::{Value, json};

/// The allocator of the `edge` binary, so the numbers are the production ones.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Typical filters, in the subset wirefilter 0.6.1 also understands.
fn shared_filters(tag: &str) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..8 {
        out.push(format!(
            r#"ip.src in {{198.51.100.0/24 203.0.113.{i} 2001:db8:{i}::/48}}"#
        ));
        out.push(format!(r#"http.user_agent contains "badbot-{tag}{i}""#));
        out.push(format!(
            r#"http.request.uri.path matches "^/wp-(admin|login)-{i}""#
        ));
        out.push(format!(r#"http.request.method in {{"TRACE" "TRACK"}} and http.request.uri.query contains "x{i}""#));
        out.push(format!(
            r#"http.host eq "{tag}{i}.example.com" and not ssl"#
        ));
    }
    out
}

/// Filters using functions, maps and wildcards (this engine only).
fn extended_filters(tag: &str) -> Vec<String> {
    (0..5)
        .flat_map(|i| {
            [
                format!(r#"any(http.request.headers["x-debug"][*] eq "{tag}{i}")"#),
                format!(r#"lower(http.request.uri.path) wildcard "/admin{i}/*""#),
                format!(r#"http.request.cookies["session"][0] eq "revoked-{i}" or len(http.request.uri.query) gt {}"#, 1000 + i),
            ]
        })
        .collect()
}

fn rule(expression: &str, action: &str, params: Value) -> Value {
    let mut r = json!({"expression": expression, "action": action});
    if !params.is_null() {
        r["action_parameters"] = params;
    }
    r
}

/// 100 rules across all phases: a few match the benchmark request (a path
/// rewrite, two header sets, a rate-limit count, a response header), the rest
/// are evaluated and do not match, as on a real zone.
fn zone_spec(tag: &str) -> Value {
    let redirects: Vec<Value> = (0..10)
        .map(|i| {
            rule(
                &format!(r#"http.request.uri.path eq "/old-{tag}-{i}""#),
                "redirect",
                json!({"from_value": {"target_url": {"value": format!("https://{tag}.example.com/new/{i}")}, "status_code": 301, "preserve_query_string": true}}),
            )
        })
        .collect();
    let mut transforms: Vec<Value> = (0..9)
        .map(|i| {
            rule(
                &format!(r#"starts_with(http.request.uri.path, "/legacy{i}/")"#),
                "rewrite",
                json!({"uri": {"path": {"expression": format!(r#"regex_replace(http.request.uri.path, "^/legacy{i}/", "/")"#)}}}),
            )
        })
        .collect();
    transforms.push(rule(
        r#"starts_with(http.request.uri.path, "/products/")"#,
        "rewrite",
        json!({"uri": {"query": {"expression": r#"concat(http.request.uri.query, "&via=edge")"#}}}),
    ));
    let origins: Vec<Value> = (0..10)
        .map(|i| {
            rule(
                &format!(r#"http.host eq "api{i}.{tag}.example.com""#),
                "route",
                json!({"host_header": format!("origin{i}.{tag}.example.com"), "origin": {"port": 8443}}),
            )
        })
        .collect();
    let firewall: Vec<Value> = shared_filters(tag)
        .iter()
        .take(28)
        .chain(extended_filters(tag).iter().take(12))
        .map(|e| rule(e, "block", Value::Null))
        .chain(std::iter::once(rule(
            r#"http.request.uri.path eq "/health""#,
            "skip",
            json!({"ruleset": "current"}),
        )))
        .collect();
    let ratelimits: Vec<Value> = (0..5)
        .map(|i| {
            let expr = if i == 0 { r#"http.request.method eq "GET""#.to_owned() } else { format!(r#"http.request.uri.path eq "/login{i}""#) };
            json!({"expression": expr, "action": "block",
                   "ratelimit": {"characteristics": ["ip.src"], "period": 60, "requests_per_period": 1_000_000_000u32}})
        })
        .collect();
    let late: Vec<Value> = (0..14)
        .map(|i| {
            let expr = if i < 2 {
                r#"http.request.method eq "GET""#.to_owned()
            } else {
                format!(r#"http.request.headers["x-variant"][0] eq "{i}""#)
            };
            rule(
                &expr,
                "rewrite",
                json!({"headers": {format!("x-{tag}-{i}"): {"operation": "set", "value": "1"}}}),
            )
        })
        .collect();
    let responses: Vec<Value> = (0..10)
        .map(|i| {
            let expr = if i == 0 { "http.response.code eq 200".to_owned() } else { format!("http.response.code eq {}", 500 + i) };
            rule(&expr, "rewrite", json!({"headers": {format!("x-{tag}-resp-{i}"): {"operation": "set", "value": "1"}}}))
        })
        .collect();
    let count = redirects.len()
        + transforms.len()
        + origins.len()
        + firewall.len()
        + ratelimits.len()
        + late.len()
        + responses.len();
    assert_eq!(count, 100, "benchmark zone has 100 rules");
    json!({
        "http_request_dynamic_redirect": {"rules": redirects},
        "http_request_transform": {"rules": transforms},
        "http_request_origin": {"rules": origins},
        "http_request_firewall_custom": {"rules": firewall},
        "http_ratelimit": {"rules": ratelimits},
        "http_request_late_transform": {"rules": late},
        "http_response_headers_transform": {"rules": responses},
    })
}

fn compile(tag: &str) -> ZoneRules {
    let map: BTreeMap<Phase, Ruleset> = serde_json::from_value(zone_spec(tag)).expect("model");
    ZoneRules::compile(&map).expect("benchmark zone compiles")
}

fn request() -> http::request::Parts {
    http::Request::builder()
        .method("GET")
        .uri("/products/item-42?color=red&size=m")
        .header("host", "mystore.example.com")
        .header("user-agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36")
        .header("accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
        .header("accept-encoding", "gzip, deflate, br, zstd")
        .header("accept-language", "en-US,en;q=0.9")
        .header("cookie", "session=abc123; theme=dark; cart=17")
        .header("referer", "https://mystore.example.com/")
        .header("sec-fetch-mode", "navigate")
        .header("cf-connecting-o2o", "1")
        .body(())
        .expect("request")
        .into_parts()
        .0
}

fn client() -> ClientInfo<'static> {
    ClientInfo {
        ip: "192.0.2.77".parse().expect("ip"),
        tls: true,
        metadata: None,
    }
}

fn chain(c: &mut Criterion) {
    let (customer, provider) = (compile("customer"), compile("provider"));
    let stages: [Stage<'_>; 2] = [("example.com", &customer), ("saasprovider.com", &provider)];
    let client = client();
    let (resp_template, ()) = http::Response::builder()
        .status(200)
        .header("content-type", "text/html")
        .body(())
        .expect("response")
        .into_parts();
    let run = |(req, resp): &mut (http::request::Parts, http::response::Parts)| {
        let raw = capture_raw(&stages, req);
        let out = run_request(&stages, true, req, &client, &raw, None);
        run_response(&stages, req, &client, &raw, resp, None);
        black_box(out)
    };
    c.bench_function("o2o_chain_full_run_2x100_rules", |b| {
        b.iter_batched_ref(
            || (request(), resp_template.clone()),
            run,
            BatchSize::SmallInput,
        )
    });
    // The same run as a server sees it: the request head was parsed just
    // before (hot in cache) and the memory of finished requests is reused.
    // Above, criterion builds up to iterations/10 requests (thousands) before
    // timing them, so each run first touches a cold request and the one
    // header-map growth per request takes fresh pages, which the allocator
    // returned to the kernel after the previous batch (about a tenth of the
    // time is page faults there). Batches of 16 keep both as in a server;
    // the timer is read once per batch.
    c.bench_function("o2o_chain_full_run_2x100_rules/hot_request", |b| {
        b.iter_batched_ref(
            || (request(), resp_template.clone()),
            run,
            BatchSize::NumIterations(16),
        )
    });
}

fn filters_vs_wirefilter(c: &mut Criterion) {
    let sources: Vec<String> = shared_filters("customer")
        .into_iter()
        .chain(shared_filters("provider"))
        .collect();
    let req = request();
    let client = client();
    let raw = RawRequest::capture(&req, false);

    let ours: Vec<Expression> = sources
        .iter()
        .map(|s| Expression::compile(s, ExprKind::REQUEST_FILTER).expect(s))
        .collect();
    c.bench_function("filters_80_shared/edge", |b| {
        b.iter(|| {
            let ctx = Ctx::new(&req, &raw, &client, None);
            black_box(ours.iter().filter(|e| e.matches(&ctx)).count())
        })
    });

    let scheme = wirefilter::Scheme::try_from_iter(
        [
            ("http.host", wirefilter::Type::Bytes),
            ("http.request.method", wirefilter::Type::Bytes),
            ("http.request.uri.path", wirefilter::Type::Bytes),
            ("http.request.uri.query", wirefilter::Type::Bytes),
            ("http.user_agent", wirefilter::Type::Bytes),
            ("ip.src", wirefilter::Type::Ip),
            ("ssl", wirefilter::Type::Bool),
        ]
        .iter()
        .map(|&(k, t)| (k.to_owned(), t)),
    )
    .expect("scheme");
    let theirs: Vec<_> = sources
        .iter()
        .map(|s| scheme.parse(s).expect(s).compile())
        .collect();
    let ip: IpAddr = client.ip;
    c.bench_function("filters_80_shared/wirefilter_0.6.1", |b| {
        b.iter(|| {
            // wirefilter needs every field set up front; the values borrow from the request.
            let mut ctx = wirefilter::ExecutionContext::new(&scheme);
            let host = req.headers.get("host").map_or(&b""[..], |v| v.as_bytes());
            let ua = req
                .headers
                .get("user-agent")
                .map_or(&b""[..], |v| v.as_bytes());
            ctx.set_field_value("http.host", host).expect("type");
            ctx.set_field_value("http.request.method", req.method.as_str())
                .expect("type");
            ctx.set_field_value("http.request.uri.path", req.uri.path())
                .expect("type");
            ctx.set_field_value("http.request.uri.query", req.uri.query().unwrap_or(""))
                .expect("type");
            ctx.set_field_value("http.user_agent", ua).expect("type");
            ctx.set_field_value("ip.src", ip).expect("type");
            ctx.set_field_value("ssl", client.tls).expect("type");
            black_box(
                theirs
                    .iter()
                    .filter(|f| f.execute(&ctx).expect("same scheme"))
                    .count(),
            )
        })
    });
}

criterion_group!(benches, chain, filters_vs_wirefilter);
criterion_main!(benches);
