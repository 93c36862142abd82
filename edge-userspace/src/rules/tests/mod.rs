//! Tests of the rules language and compiled rulesets.

mod alloc;
mod depth;
mod eval;
mod index;
mod naive;
mod parse;
mod ruleset;

use std::net::IpAddr;

use http::{Request, request};

use super::context::{ClientInfo, Ctx, RawRequest};
use super::expression::Expression;
use super::scheme::ExprKind;

pub(crate) fn parts(method: &str, uri: &str, headers: &[(&str, &str)]) -> request::Parts {
    let mut b = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).expect("valid test request").into_parts().0
}

pub(crate) fn client(ip: &str) -> ClientInfo<'static> {
    ClientInfo {
        ip: ip.parse::<IpAddr>().expect("test IP"),
        tls: true,
        metadata: None,
    }
}

/// Evaluates filter `src` against a request.
pub(crate) fn check(src: &str, req: &request::Parts, client: &ClientInfo<'_>) -> bool {
    let e = Expression::compile(src, ExprKind::REQUEST_FILTER)
        .unwrap_or_else(|err| panic!("{src}: {err}"));
    let raw = RawRequest::capture(req, true);
    let ctx = Ctx::new(req, &raw, client, None);
    e.matches(&ctx)
}

pub(crate) fn value(src: &str, req: &request::Parts, client: &ClientInfo<'_>) -> String {
    let e = Expression::compile(src, ExprKind::REQUEST_VALUE)
        .unwrap_or_else(|err| panic!("{src}: {err}"));
    let raw = RawRequest::capture(req, true);
    let ctx = Ctx::new(req, &raw, client, None);
    String::from_utf8(e.value(&ctx).into_owned()).expect("utf-8")
}
