//! The nesting limit: an expression at [`MAX_DEPTH`] parses, compiles,
//! evaluates and drops on a small stack; one level more, and ten times the
//! limit (the shapes that once overflowed the stack), are refused with an
//! error naming the limit.

use super::{check, client, parts, value};
use crate::rules::parser::{MAX_DEPTH, parse, parse_characteristic};
use crate::rules::scheme::ExprKind;

/// `depth` levels of parentheses, `not`, `lower(` and a mix of all three.
fn shapes(depth: usize) -> [(ExprKind, String); 4] {
    let filter = ExprKind::REQUEST_FILTER;
    let value = ExprKind::REQUEST_VALUE;
    [
        (
            filter,
            format!("{}ssl{}", "(".repeat(depth), ")".repeat(depth)),
        ),
        (filter, format!("{}ssl", "not ".repeat(depth))),
        (
            value,
            format!("{}http.host{}", "lower(".repeat(depth), ")".repeat(depth)),
        ),
        // `len(` is the last level.
        (
            filter,
            format!(
                "{}{}len(http.host) gt 0{}",
                "not (".repeat((depth - 1) / 2),
                "!".repeat((depth - 1) % 2),
                ")".repeat((depth - 1) / 2)
            ),
        ),
    ]
}

#[test]
fn at_the_limit_every_walk_fits_a_small_stack() {
    // 256 KiB: an eighth of a Tokio worker's stack.
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(|| {
            let req = parts("GET", "https://Shop.example.com/", &[]);
            let client = client("192.0.2.1");
            let [parens, nots, lowers, mixed] = shapes(MAX_DEPTH);
            assert!(check(&parens.1, &req, &client));
            assert!(check(&nots.1, &req, &client));
            assert_eq!(value(&lowers.1, &req, &client), "shop.example.com");
            let nots = (MAX_DEPTH - 1) / 2 + (MAX_DEPTH - 1) % 2;
            assert_eq!(check(&mixed.1, &req, &client), nots.is_multiple_of(2));
        })
        .unwrap()
        .join()
        .expect("no stack overflow at the limit");
}

#[test]
fn one_level_over_and_ten_times_the_limit_are_refused_naming_it() {
    for depth in [MAX_DEPTH + 1, 10 * MAX_DEPTH, 6000] {
        for (kind, src) in shapes(depth) {
            let error = parse(&src, kind).expect_err("over the limit");
            assert!(
                error
                    .message
                    .contains(&format!("nests deeper than {MAX_DEPTH} levels")),
                "{depth}: {error}"
            );
        }
    }
    // The inputs, byte for byte in shape: ~700 parentheses, `not ` ×
    // 6000, `lower(` × 1000 (unclosed: refused at the limit, not at the end).
    for (kind, src) in [
        (ExprKind::REQUEST_FILTER, format!("{}ssl", "(".repeat(700))),
        (ExprKind::REQUEST_FILTER, "not ".repeat(6000)),
        (ExprKind::REQUEST_VALUE, "lower(".repeat(1000)),
    ] {
        let error = parse(&src, kind).expect_err("over the limit");
        assert!(error.message.contains("the limit"), "{error}");
    }
    let characteristic = format!("{}http.host{}", "lower(".repeat(640), ")".repeat(640));
    let error = parse_characteristic(&characteristic).expect_err("over the limit");
    assert!(error.message.contains("the limit"), "{error}");
}

#[test]
fn long_flat_expressions_are_not_deep() {
    // A thousand `and`s or `or`s are one level: chains are lists, not nesting.
    let chain = vec!["ssl"; 1000].join(" and ");
    assert!(parse(&chain, ExprKind::REQUEST_FILTER).is_ok());
    let siblings = vec!["(ssl)"; 1000].join(" or ");
    assert!(parse(&siblings, ExprKind::REQUEST_FILTER).is_ok());
}

/// Token soup, deep and shallow: whatever the parser makes of it, it answers
/// (a tree or an error) and a tree it accepts compiles and evaluates.
mod soup {
    use proptest::prelude::*;

    use super::super::{client, parts};
    use crate::rules::context::{Ctx, RawRequest};
    use crate::rules::expression::Expression;
    use crate::rules::scheme::ExprKind;

    const TOKENS: &[&str] = &[
        "(",
        ")",
        "not ",
        "!",
        "lower(",
        "len(",
        "concat(",
        "any(",
        "http.host",
        "ssl",
        "http.request.headers[\"x\"]",
        "[*]",
        "[0]",
        " and ",
        " or ",
        " xor ",
        " eq ",
        " in ",
        "{",
        "}",
        ",",
        "\"x\"",
        "1",
        " contains ",
        "true",
    ];

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]
        #[test]
        fn any_token_soup_is_answered(
            tokens in prop::collection::vec(prop::sample::select(TOKENS.to_vec()), 0..1500),
            value in any::<bool>(),
        ) {
            let src = tokens.concat();
            let kind = if value { ExprKind::REQUEST_VALUE } else { ExprKind::REQUEST_FILTER };
            if let Ok(expression) = Expression::compile(&src, kind) {
                let req = parts("GET", "https://a.example/", &[("x", "y")]);
                let client = client("192.0.2.1");
                let raw = RawRequest::capture(&req, true);
                let ctx = Ctx::new(&req, &raw, &client, None);
                if value {
                    let _ = expression.value(&ctx);
                } else {
                    let _ = expression.matches(&ctx);
                }
            }
        }
    }
}
