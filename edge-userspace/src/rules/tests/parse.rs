use crate::rules::ast::{Node, Ord, Rhs};
use crate::rules::parser::parse;
use crate::rules::scheme::{ExprKind, Field};

fn err(src: &str) -> String {
    match parse(src, ExprKind::REQUEST_FILTER) {
        Ok(n) => panic!("`{src}` parsed as {n}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn precedence_not_and_xor_or() {
    let n = parse(
        r#"not ssl and ssl xor ssl or ssl"#,
        ExprKind::REQUEST_FILTER,
    )
    .expect("parses");
    let ssl = || Node::Field(Field::Ssl);
    let expected = Node::Or(vec![
        Node::Xor(vec![
            Node::And(vec![Node::Not(Box::new(ssl())), ssl()]),
            ssl(),
        ]),
        ssl(),
    ]);
    assert_eq!(n, expected);
    let symbolic =
        parse(r#"! ssl && ssl ^^ ssl || ssl"#, ExprKind::REQUEST_FILTER).expect("parses");
    assert_eq!(symbolic, expected);
}

#[test]
fn parentheses_override_precedence() {
    let n = parse("ssl and (ssl or ssl)", ExprKind::REQUEST_FILTER).expect("parses");
    let ssl = || Node::Field(Field::Ssl);
    assert_eq!(n, Node::And(vec![ssl(), Node::Or(vec![ssl(), ssl()])]));
}

#[test]
fn symbolic_and_english_operators_are_the_same() {
    let pairs = [
        (r#"http.host == "a""#, r#"http.host eq "a""#),
        (r#"http.host != "a""#, r#"http.host ne "a""#),
        (r#"http.response.code < 3"#, r#"http.response.code lt 3"#),
        (r#"http.host ~ "a""#, r#"http.host matches "a""#),
    ];
    let kind = ExprKind {
        response: true,
        value: false,
    };
    for (a, b) in pairs {
        assert_eq!(
            parse(a, kind).expect(a),
            parse(b, kind).expect(b),
            "{a} vs {b}"
        );
    }
}

#[test]
fn raw_strings_keep_backslashes() {
    let n = parse(
        r####"http.request.uri.path matches r#"^/a\d+"b"#"####,
        ExprKind::REQUEST_FILTER,
    )
    .expect("parses");
    assert_eq!(
        n,
        Node::Compare(
            Box::new(Node::Field(Field::UriPath)),
            Rhs::Matches(r#"^/a\d+"b"#.to_owned())
        )
    );
    let n = parse(r#"http.host eq r"a\b""#, ExprKind::REQUEST_FILTER).expect("parses");
    assert_eq!(
        n,
        Node::Compare(
            Box::new(Node::Field(Field::Host)),
            Rhs::Bytes(Ord::Eq, b"a\\b".to_vec())
        )
    );
}

#[test]
fn escapes_in_quoted_strings() {
    let n = parse(r#"http.host eq "a\"b\\c\x41""#, ExprKind::REQUEST_FILTER).expect("parses");
    assert_eq!(
        n,
        Node::Compare(
            Box::new(Node::Field(Field::Host)),
            Rhs::Bytes(Ord::Eq, b"a\"b\\cA".to_vec())
        )
    );
}

#[test]
fn unknown_field_points_at_it() {
    assert_eq!(
        err(r#"http.host eq "a" and http.hots eq "b""#),
        "unknown field `http.hots` at line 1, column 22\nhttp.host eq \"a\" and http.hots eq \"b\"\n                     ^"
    );
}

#[test]
fn error_on_second_line_has_caret_under_the_token() {
    assert_eq!(
        err("ssl and\n  ip.src eq \"x\""),
        "expected an IP address, CIDR or range at line 2, column 13\n  ip.src eq \"x\"\n            ^"
    );
}

#[test]
fn type_errors_are_clear() {
    let cases = [
        (
            r#"http.host eq 3"#,
            "expected a string literal at line 1, column 14",
        ),
        (
            r#"http.request.uri.path contains 1"#,
            "expected a string literal",
        ),
        (
            r#"http.response.code eq 200"#,
            "field `http.response.code` is only available in response phases",
        ),
        (
            r#"ip.src contains "a""#,
            "operator `contains` is not defined for IP address",
        ),
        (
            r#"ip.src eq 10.0.0.0/8"#,
            "expected a single IP address (use `in {...}` for CIDRs)",
        ),
        (r#"http.host"#, "expression has type Bytes, expected Bool"),
        (
            r#"http.host and ssl"#,
            "`and` needs Bool operands, found Bytes",
        ),
        (r#"not http.host"#, "`not` needs Bool operands, found Bytes"),
        (
            r#"lower(1) eq "a""#,
            "argument 1 of lower() must be Bytes, found Int",
        ),
        (r#"len() eq 1"#, "len() takes 1 arguments, got 0"),
        (r#"nope(http.host)"#, "unknown function `nope`"),
        (
            r#"http.request.headers.names[*] eq "a""#,
            "[*] is only allowed inside any() or all()",
        ),
        (
            r#"any(http.host eq "a")"#,
            "any() needs exactly one `[*]` in its argument",
        ),
        (r#"http.host matches "(""#, "invalid regular expression"),
        (r#"http.host eq "a"#, "unterminated string"),
        (
            r#"http.host eq "a" )"#,
            "unexpected token, expected `and`, `or`, `xor` or the end",
        ),
        (
            r#"http.host[0] eq "a""#,
            "cannot index a value of type Bytes",
        ),
        (
            r#"http.request.headers[0][0] eq "a""#,
            "expected a string key",
        ),
        (
            r#"http.request.uri.query in {1 2}"#,
            "expected a string literal",
        ),
        (
            r#"http.request.method in {"GET""#,
            "unterminated set, expected `}`",
        ),
        (
            r#"ip.src in {10.0.0.0/33}"#,
            "invalid prefix length in `10.0.0.0/33`",
        ),
        (
            r#"regex_replace(http.host, "a", "b") eq "c""#,
            "only allowed in rewrite and redirect values",
        ),
        (r#"http.host eq "a" # x"#, "unexpected character `#`"),
        (r#""#, "empty expression"),
        (r#"ssl eq maybe"#, "expected `true` or `false`"),
        (
            r#"lookup_json_string(http.host, http.host) eq "a""#,
            "must be a string key or an array index",
        ),
        (
            r#"url_decode(http.host, "x") eq "a""#,
            "options may only contain `r`",
        ),
    ];
    for (src, want) in cases {
        let got = err(src);
        assert!(got.contains(want), "`{src}`: got `{got}`, want `{want}`");
    }
}

#[test]
fn value_expressions_must_be_bytes() {
    assert!(
        parse(
            r#"concat("/a", http.request.uri.path)"#,
            ExprKind::REQUEST_VALUE
        )
        .is_ok()
    );
    assert!(
        parse(
            r#"regex_replace(http.request.uri.path, "^/x/(.*)", "/y/${1}")"#,
            ExprKind::REQUEST_VALUE
        )
        .is_ok()
    );
    let e = parse(r#"ssl"#, ExprKind::REQUEST_VALUE).expect_err("bool is not a value");
    assert!(e.message.contains("expected Bytes"), "{e}");
}

#[test]
fn display_round_trips() {
    let srcs = [
        r#"(http.host eq "a" or not ssl) and ip.src in {10.0.0.0/8 2001:db8::/32 192.0.2.1..192.0.2.9}"#,
        r#"any(lower(http.request.headers.names[*]) wildcard "x-*") xor http.request.uri.query strict wildcard "a*""#,
        r#"http.request.headers["x-a"][0] contains "\x01\"" and len(http.request.headers["x-a"]) in {1..3 7}"#,
        r#"lookup_json_string(cf.hostname.metadata, "a", 0) eq "b" or starts_with(http.host, "w")"#,
    ];
    for src in srcs {
        let n = parse(src, ExprKind::REQUEST_FILTER).expect(src);
        let again =
            parse(&n.to_string(), ExprKind::REQUEST_FILTER).unwrap_or_else(|e| panic!("{n}: {e}"));
        assert_eq!(n, again, "{src}");
    }
}
