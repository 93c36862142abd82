use serde_json::json;

use super::{check, client, parts, value};
use crate::rules::context::{ClientInfo, Ctx, RawRequest};
use crate::rules::expression::Expression;
use crate::rules::scheme::ExprKind;

fn sample() -> http::request::Parts {
    parts(
        "POST",
        "https://shop.example.com/Images/Cat.PNG?a=1&b=two%20words",
        &[
            ("host", "shop.example.com"),
            ("user-agent", "Mozilla/5.0 (X11) curl-ish"),
            ("referer", "https://ref.example/"),
            ("cookie", "session=abc; theme=dark"),
            ("cookie", "lang=en"),
            ("x-forwarded-for", "198.51.100.7"),
            ("x-multi", "one"),
            ("x-multi", "two"),
        ],
    )
}

#[test]
fn every_operator_on_bytes_ints_ips_bools() {
    let r = sample();
    let c = client("203.0.113.9");
    let table: &[(&str, bool)] = &[
        ("true", true),
        ("false", false),
        ("not false and true", true),
        (r#"false or http.host eq "shop.example.com""#, true),
        (r#"http.host eq "shop.example.com""#, true),
        (r#"http.host == "SHOP.example.com""#, false),
        (r#"http.host ne "x""#, true),
        (r#"http.request.method lt "Q""#, true),
        (r#"http.request.method le "POST""#, true),
        (r#"http.request.method gt "POST""#, false),
        (r#"http.request.method ge "POST""#, true),
        (r#"http.user_agent contains "curl""#, true),
        (r#"http.user_agent contains "Curl""#, false),
        (r#"http.user_agent matches r"^Mozilla/\d""#, true),
        (r#"http.user_agent matches "^Mozilla/\\d""#, true),
        (r#"http.user_agent ~ "Chrome""#, false),
        (r#"http.request.uri.path wildcard "/images/*.png""#, true),
        (
            r#"http.request.uri.path strict wildcard "/images/*.png""#,
            false,
        ),
        (
            r#"http.request.uri.path strict wildcard "/Images/*.PNG""#,
            true,
        ),
        (r#"http.request.uri.path wildcard "/images""#, false),
        (r#"http.request.uri.path wildcard "*""#, true),
        (r#"http.request.uri.path wildcard r"/images/\*""#, false),
        (r#"http.request.uri.path wildcard "/images/\\*""#, false),
        (r#"http.user_agent wildcard "mozilla/5.0 (x11) *""#, true),
        (r#"http.user_agent wildcard "*(x11)*curl*""#, true),
        (r#"http.user_agent wildcard "*(x11)*curl""#, false),
        (r#"http.request.method in {"GET" "POST"}"#, true),
        (r#"http.request.method in {"GET", "PUT"}"#, false),
        (r#"len(http.host) eq 16"#, true),
        (r#"len(http.host) ne 16"#, false),
        (
            r#"len(http.host) lt 17 and len(http.host) le 16 and len(http.host) gt 15 and len(http.host) ge 16"#,
            true,
        ),
        (r#"len(http.host) in {1..10 15..20}"#, true),
        (r#"len(http.host) in {1..10 17}"#, false),
        (r#"ip.src eq 203.0.113.9"#, true),
        (r#"ip.src ne 203.0.113.9"#, false),
        (r#"ip.src in {203.0.113.0/24}"#, true),
        (r#"ip.src in {10.0.0.0/8 2001:db8::/32}"#, false),
        (r#"ip.src in {203.0.113.1..203.0.113.10}"#, true),
        (r#"ip.src in {203.0.113.10..203.0.113.20}"#, false),
        (r#"ip.src in {::ffff:203.0.113.0/120}"#, true),
        (r#"ssl"#, true),
        (r#"ssl eq false"#, false),
        (r#"not ssl"#, false),
        (r#"ssl and not ssl"#, false),
        (r#"ssl or not ssl"#, true),
        (r#"ssl xor ssl"#, false),
        (r#"ssl xor not ssl"#, true),
        (r#"ssl ^^ ssl ^^ ssl"#, true),
    ];
    for (src, want) in table {
        assert_eq!(check(src, &r, &c), *want, "{src}");
    }
}

#[test]
fn ipv6_client() {
    let r = sample();
    let c = client("2001:db8::5");
    assert!(check(r#"ip.src in {2001:db8::/32}"#, &r, &c));
    assert!(check(r#"ip.src eq 2001:db8::5"#, &r, &c));
    assert!(!check(r#"ip.src in {0.0.0.0/0}"#, &r, &c));
    assert!(check(r#"ip.src in {::/0}"#, &r, &c));
}

#[test]
fn request_fields() {
    let r = sample();
    let c = client("203.0.113.9");
    let table: &[(&str, &str)] = &[
        ("http.host", "shop.example.com"),
        ("http.request.method", "POST"),
        ("http.request.uri", "/Images/Cat.PNG?a=1&b=two%20words"),
        ("http.request.uri.path", "/Images/Cat.PNG"),
        ("http.request.uri.path.extension", "png"),
        ("http.request.uri.query", "a=1&b=two%20words"),
        (
            "http.request.full_uri",
            "https://shop.example.com/Images/Cat.PNG?a=1&b=two%20words",
        ),
        ("http.request.version", "HTTP/1.1"),
        ("http.cookie", "session=abc; theme=dark; lang=en"),
        ("http.user_agent", "Mozilla/5.0 (X11) curl-ish"),
        ("http.referer", "https://ref.example/"),
        ("http.x_forwarded_for", "198.51.100.7"),
        ("to_string(ip.src)", "203.0.113.9"),
        ("to_string(ssl)", "true"),
        ("to_string(len(http.host))", "16"),
        ("http.request.headers[\"X-Multi\"][1]", "two"),
        ("http.request.headers[\"x-multi\"][2]", ""),
        ("http.request.cookies[\"theme\"][0]", "dark"),
        ("http.request.cookies[\"lang\"][0]", "en"),
        ("raw.http.request.uri.path", "/Images/Cat.PNG"),
        ("raw.http.request.headers[\"x-multi\"][0]", "one"),
        ("cf.hostname.metadata", ""),
    ];
    for (src, want) in table {
        assert_eq!(value(src, &r, &c), *want, "{src}");
    }
}

#[test]
fn functions() {
    let r = sample();
    let c = client("203.0.113.9");
    let table: &[(&str, &str)] = &[
        ("lower(http.request.uri.path)", "/images/cat.png"),
        ("upper(http.request.method)", "POST"),
        ("upper(http.host)", "SHOP.EXAMPLE.COM"),
        ("to_string(len(http.request.headers[\"x-multi\"]))", "2"),
        ("to_string(len(http.request.headers.names))", "8"),
        ("concat(\"a\", http.request.method, \"z\")", "aPOSTz"),
        ("url_decode(\"two%20words+x%2\")", "two words x%2"),
        ("url_decode(\"%2520\")", "%20"),
        ("url_decode(\"%2520\", \"r\")", " "),
        (
            "lookup_json_string(\"{\\\"a\\\":{\\\"b\\\":[\\\"x\\\",\\\"y\\\"]}}\", \"a\", \"b\", 1)",
            "y",
        ),
        ("lookup_json_string(\"{\\\"a\\\":1}\", \"a\")", ""),
        ("lookup_json_string(\"not json\", \"a\")", ""),
        (
            "regex_replace(http.request.uri.path, \"^/Images/(.*)$\", \"/img/${1}\")",
            "/img/Cat.PNG",
        ),
        (
            "regex_replace(http.request.uri.path, \"^/nomatch\", \"/x\")",
            "/Images/Cat.PNG",
        ),
        (
            "wildcard_replace(http.request.uri.path, \"/images/*.*\", \"/i/${1}-${2}\")",
            "/i/Cat-PNG",
        ),
        (
            "wildcard_replace(http.request.uri.path, \"/images/*\", \"/x/${1}\", \"s\")",
            "/Images/Cat.PNG",
        ),
        (
            "wildcard_replace(http.host, \"*.example.com\", \"https://example.com/${1}\")",
            "https://example.com/shop",
        ),
    ];
    for (src, want) in table {
        assert_eq!(value(src, &r, &c), *want, "{src}");
    }
    let bools: &[(&str, bool)] = &[
        (r#"starts_with(http.request.uri.path, "/Images")"#, true),
        (r#"ends_with(http.request.uri.path, ".PNG")"#, true),
        (r#"ends_with(http.request.uri.path, ".png")"#, false),
        (r#"any(http.request.headers["x-multi"][*] eq "two")"#, true),
        (r#"all(http.request.headers["x-multi"][*] eq "two")"#, false),
        (r#"all(len(http.request.headers["x-multi"][*]) eq 3)"#, true),
        (r#"all(http.request.headers["absent"][*] eq "x")"#, true),
        (r#"any(http.request.headers["absent"][*] eq "x")"#, false),
        (
            r#"any(starts_with(http.request.headers.names[*], "x-f"))"#,
            true,
        ),
        (
            r#"any(http.request.headers.values[*] contains "abc")"#,
            true,
        ),
        (r#"any(http.request.cookies["session"][*] eq "abc")"#, true),
        (
            r#"any(lower(http.request.headers.names[*]) in {"cookie"}) and any(http.request.headers.values[*] eq "lang=en")"#,
            true,
        ),
        (
            r#"any(any(http.request.headers["x-multi"][*] eq "one") and http.request.headers.names[*] eq "host")"#,
            true,
        ),
    ];
    for (src, want) in bools {
        assert_eq!(check(src, &r, &c), *want, "{src}");
    }
}

#[test]
fn hostname_metadata() {
    let r = sample();
    let meta = json!({"tier": "gold", "flags": ["a", "b"]});
    let c = ClientInfo {
        metadata: Some(&meta),
        ..client("203.0.113.9")
    };
    assert!(check(
        r#"lookup_json_string(cf.hostname.metadata, "tier") eq "gold""#,
        &r,
        &c
    ));
    assert!(check(
        r#"lookup_json_string(cf.hostname.metadata, "flags", 1) eq "b""#,
        &r,
        &c
    ));
    assert!(check(
        r#"lookup_json_string(cf.hostname.metadata, "nope") eq """#,
        &r,
        &c
    ));
    assert!(check(
        r#"cf.hostname.metadata contains "\"tier\":\"gold\"""#,
        &r,
        &c
    ));
}

#[test]
fn raw_fields_keep_the_original_after_changes() {
    let mut r = sample();
    let raw = RawRequest::capture(&r, true);
    r.uri = "/changed?q=1".parse().expect("uri");
    r.headers
        .insert("x-multi", http::HeaderValue::from_static("new"));
    let c = client("203.0.113.9");
    let ctx = Ctx::new(&r, &raw, &c, None);
    let v = |src: &str| {
        let e = Expression::compile(src, ExprKind::REQUEST_VALUE).expect(src);
        String::from_utf8(e.value(&ctx).into_owned()).expect("utf-8")
    };
    assert_eq!(v("http.request.uri"), "/changed?q=1");
    assert_eq!(
        v("raw.http.request.uri"),
        "/Images/Cat.PNG?a=1&b=two%20words"
    );
    assert_eq!(v("raw.http.request.uri.query"), "a=1&b=two%20words");
    assert_eq!(v("raw.http.request.uri.path.extension"), "png");
    assert_eq!(
        v("raw.http.request.full_uri"),
        "https://shop.example.com/Images/Cat.PNG?a=1&b=two%20words"
    );
    assert_eq!(v("http.request.headers[\"x-multi\"][0]"), "new");
    assert_eq!(v("raw.http.request.headers[\"x-multi\"][1]"), "two");
    assert_eq!(v("to_string(len(raw.http.request.headers.values))"), "8");
    assert_eq!(v("raw.http.request.headers.names[0]"), "host");
}

#[test]
fn response_fields() {
    let r = sample();
    let c = client("203.0.113.9");
    let raw = RawRequest::capture(&r, false);
    let (resp, ()) = http::Response::builder()
        .status(404)
        .header("content-type", "text/html")
        .header("set-cookie", "a=1")
        .body(())
        .expect("response")
        .into_parts();
    let ctx = Ctx::new(&r, &raw, &c, Some(&resp));
    let kind = ExprKind {
        response: true,
        value: false,
    };
    let t = |src: &str| Expression::compile(src, kind).expect(src).matches(&ctx);
    assert!(t("http.response.code eq 404"));
    assert!(t("http.response.code in {400..499}"));
    assert!(t(
        r#"http.response.headers["content-type"][0] eq "text/html""#
    ));
    assert!(t(r#"any(http.response.headers.names[*] eq "set-cookie")"#));
    assert!(t(r#"http.response.headers.values[1] eq "a=1""#));
    assert!(t(r#"http.host eq "shop.example.com""#));
}

#[test]
fn version_and_host_fallback() {
    let mut r = parts("GET", "https://authority.example/x", &[]);
    r.version = http::Version::HTTP_2;
    let c = client("192.0.2.1");
    assert_eq!(value("http.request.version", &r, &c), "HTTP/2");
    assert_eq!(value("http.host", &r, &c), "authority.example");
    assert_eq!(value("http.request.uri.path.extension", &r, &c), "");
}

/// A context memoises header lookups for its phase: answers through a shared
/// context (more names than the memo holds, repeated names, multi-valued and
/// absent headers, raw and current maps) equal those of fresh contexts.
#[test]
fn header_lookups_through_one_context_equal_fresh_contexts() {
    let req = parts(
        "GET",
        "/",
        &[
            ("x-a", "1"),
            ("x-b", "2"),
            ("x-b", "3"),
            ("x-c", "4"),
            ("x-d", "5"),
            ("x-e", "6"),
        ],
    );
    let c = client("192.0.2.1");
    let raw = RawRequest::capture(&req, true);
    let mut sources = Vec::new();
    for round in 0..3 {
        for name in ["x-a", "x-b", "x-c", "x-d", "x-e", "x-f", "X-B"] {
            for v in ["1", "2", "3", "6", ""] {
                sources.push(format!(
                    r#"http.request.headers["{name}"][{round}] eq "{v}""#
                ));
                sources.push(format!(
                    r#"any(raw.http.request.headers["{name}"][*] eq "{v}")"#
                ));
            }
        }
    }
    let exprs: Vec<Expression> = sources
        .iter()
        .map(|s| Expression::compile(s, ExprKind::REQUEST_FILTER).expect(s))
        .collect();
    let shared = Ctx::new(&req, &raw, &c, None);
    let mut matched = 0;
    for e in &exprs {
        let fresh = Ctx::new(&req, &raw, &c, None);
        assert_eq!(e.matches(&shared), e.matches(&fresh), "{}", e.source());
        matched += usize::from(e.matches(&fresh));
    }
    // `[*]`: x-a=1, x-b=2 and 3 (as x-b and X-B), x-e=6, in each round (18).
    // `[i]`: round 0 x-a, x-b, X-B, x-e and absent x-f (""); rounds 1 and 2
    // every name (a missing position reads as "", x-b[1] is 3).
    assert_eq!(matched, 18 + 5 + 7 + 7);
}

/// One context (one phase) answering many lookups: more names than the
/// memo holds, repeated in changing order, names too long to memoise, and
/// absent ones, all agree with a fresh context per expression.
#[test]
fn memoised_header_and_cookie_lookups_agree_with_fresh_ones() {
    let long = "x-a-header-name-longer-than-thirty-one-bytes";
    let req = parts(
        "GET",
        "/",
        &[
            ("cookie", "a=1; b=2; c=3"),
            ("cookie", "d=4; a=5; e=6"),
            ("x-1", "one"),
            ("x-2", "two"),
            ("x-2", "deux"),
            ("x-3", "three"),
            ("x-4", "four"),
            ("x-5", "five"),
            (long, "long"),
        ],
    );
    let c = client("192.0.2.1");
    let raw = RawRequest::capture(&req, true);
    let mut sources = Vec::new();
    for name in [
        "a",
        "b",
        "c",
        "d",
        "e",
        "f",
        "a-cookie-name-longer-than-thirty-one-bytes",
    ] {
        for want in ["1", "5", ""] {
            sources.push(format!(r#"http.request.cookies["{name}"][0] eq "{want}""#));
        }
        sources.push(format!(r#"http.request.cookies["{name}"][1] eq "5""#));
    }
    for name in ["x-1", "x-2", "X-3", "x-4", "x-5", "x-6", long] {
        for want in ["one", "two", "deux", "long", ""] {
            sources.push(format!(r#"http.request.headers["{name}"][0] eq "{want}""#));
            sources.push(format!(
                r#"raw.http.request.headers["{name}"][0] eq "{want}""#
            ));
        }
        sources.push(format!(r#"len(http.request.headers["{name}"]) eq 2"#));
    }
    let exprs: Vec<Expression> = sources
        .iter()
        .map(|s| Expression::compile(s, ExprKind::REQUEST_FILTER).expect(s))
        .collect();
    let fresh: Vec<bool> = exprs
        .iter()
        .map(|e| e.matches(&Ctx::new(&req, &raw, &c, None)))
        .collect();
    assert!(fresh.iter().filter(|m| **m).count() >= 10, "{fresh:?}");
    let shared = Ctx::new(&req, &raw, &c, None);
    for round in 0..3 {
        // Forwards, backwards, then interleaved, so entries are evicted and refilled.
        let order: Vec<usize> = match round {
            0 => (0..exprs.len()).collect(),
            1 => (0..exprs.len()).rev().collect(),
            _ => (0..exprs.len())
                .step_by(2)
                .chain((1..exprs.len()).step_by(2))
                .collect(),
        };
        for i in order {
            assert_eq!(
                exprs[i].matches(&shared),
                fresh[i],
                "round {round}: {}",
                sources[i]
            );
        }
    }
}
