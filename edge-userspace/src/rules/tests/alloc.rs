//! The common path allocates nothing: comparisons, sets, regexes, wildcards
//! and `any` over headers evaluate against borrowed request data.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use super::{client, parts};
use crate::rules::context::{Ctx, RawRequest};
use crate::rules::expression::Expression;
use crate::rules::scheme::ExprKind;

struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn common_filters_do_not_allocate() {
    let req = parts(
        "GET",
        "/products/item-42?color=red",
        &[
            ("host", "shop.example.com"),
            ("user-agent", "Mozilla/5.0"),
            ("x-debug", "no"),
            ("cookie", "session=abc"),
        ],
    );
    let c = client("192.0.2.77");
    let raw = RawRequest::capture(&req, false);
    let ctx = Ctx::new(&req, &raw, &c, None);
    let sources = [
        r#"http.host eq "shop.example.com" and http.request.method ne "POST""#,
        r#"http.user_agent contains "bot" or http.request.uri.query contains "x=""#,
        r##"http.request.uri.path matches r"^/products/item-\d+$""##,
        r#"http.request.uri.path.extension in {"php" "asp" "cgi"}"#,
        r#"ip.src in {192.0.2.0/24 198.51.100.0/24 2001:db8::/32} and not ip.src eq 192.0.2.1"#,
        r#"http.request.uri.path wildcard "/PRODUCTS/*" xor ssl"#,
        r#"any(http.request.headers["x-debug"][*] eq "yes") or all(http.request.headers.names[*] ne "x-evil")"#,
        r#"starts_with(http.request.uri.path, "/products/") and len(http.host) lt 100"#,
        r#"lower(http.host) eq "shop.example.com" and http.request.cookies["session"][0] eq "abc""#,
        r#"lookup_json_string(cf.hostname.metadata, "tier") eq "" and http.request.full_uri ne """#,
    ];
    let exprs: Vec<Expression> = sources
        .iter()
        .map(|s| Expression::compile(s, ExprKind::REQUEST_FILTER).expect(s))
        .collect();
    // The first run warms the regex engine's per-thread cache.
    let warm: Vec<bool> = exprs.iter().map(|e| e.matches(&ctx)).collect();
    let before = ALLOCS.with(Cell::get);
    for _ in 0..100 {
        for (e, want) in exprs.iter().zip(&warm) {
            assert_eq!(e.matches(&ctx), *want);
        }
    }
    let allocated = ALLOCS.with(Cell::get) - before;
    // `http.request.full_uri` is built on demand: one allocation per evaluation.
    assert_eq!(allocated, 100, "only the full_uri concatenation allocates");
    assert_eq!(
        warm,
        [
            true, false, true, false, true, false, true, true, true, true
        ]
    );
}
