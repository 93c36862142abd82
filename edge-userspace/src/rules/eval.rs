//! Compiled expressions: the typed tree lowered once into a form whose
//! evaluation does no parsing, no regex compilation and no set building, and
//! allocates only where a function must build a new string.

use std::borrow::Cow;
use std::collections::HashSet;

use http::HeaderName;
use memchr::memmem;
use regex::bytes::Regex;

use super::ast::{Arg, IndexKey, Node, Ord, Rhs};
use super::context::{CookieKey, Ctx, HeaderKey, HeaderSource, Val, cookie_values};
use super::prefilter::{Pattern, has_prefix};
use super::scheme::{Field, Func};
use super::sets::{IntSet, IpSet};
use super::wildcard::{self, Wildcard};

/// An array the expression reads; arrays are iterated, never collected.
#[derive(Debug, Clone)]
pub(crate) enum ArraySrc {
    Names(HeaderSource),
    Values(HeaderSource),
    /// `None`: the key is not a valid header name, so the array is empty.
    Header(HeaderSource, Option<HeaderKey>),
    Cookie(CookieKey),
}

impl ArraySrc {
    /// Calls `f` on each element until it returns `true`; says whether it did.
    fn find<'a, 'c: 'a>(&'a self, ctx: &Ctx<'c>, mut f: impl FnMut(Val<'a>) -> bool) -> bool {
        let b = |s: &'a [u8]| Val::Bytes(Cow::Borrowed(s));
        match self {
            ArraySrc::Names(src) => ctx
                .headers(*src)
                .iter()
                .any(|(n, _)| f(b(n.as_str().as_bytes()))),
            ArraySrc::Values(src) => ctx.headers(*src).iter().any(|(_, v)| f(b(v.as_bytes()))),
            ArraySrc::Header(src, Some(name)) => match ctx.header_first(*src, name) {
                (first, false) => first.is_some_and(|v| f(b(v.as_bytes()))),
                (_, true) => ctx
                    .headers(*src)
                    .get_all(&name.name)
                    .iter()
                    .any(|v| f(b(v.as_bytes()))),
            },
            ArraySrc::Header(_, None) => false,
            ArraySrc::Cookie(name) => cookie_values(&ctx.req.headers, &name.name).any(|v| f(b(v))),
        }
    }

    fn nth<'a, 'c: 'a>(&'a self, ctx: &Ctx<'c>, n: usize) -> Option<Val<'a>> {
        // `headers["x"][0]` and `cookies["x"][0]`, the usual forms, straight
        // from the phase's memo.
        match (self, n) {
            (ArraySrc::Header(src, Some(name)), 0) => {
                let first = ctx.header_first(*src, name).0?;
                return Some(Val::Bytes(Cow::Borrowed(first.as_bytes())));
            }
            (ArraySrc::Cookie(name), 0) => {
                return ctx.cookie_first(name).map(|v| Val::Bytes(Cow::Borrowed(v)));
            }
            _ => {}
        }
        let mut i = 0;
        let mut out = None;
        self.find(ctx, |v| {
            if i == n {
                out = Some(v);
                return true;
            }
            i += 1;
            false
        });
        out
    }

    fn len(&self, ctx: &Ctx<'_>) -> usize {
        let mut n = 0;
        self.find(ctx, |_| {
            n += 1;
            false
        });
        n
    }
}

#[derive(Debug, Clone)]
pub(crate) enum JsonKey {
    Key(String),
    Index(usize),
}

#[derive(Debug, Clone)]
pub(crate) enum Matcher {
    /// Equality separately: comparing lengths first settles most misses.
    BytesEq(Box<[u8]>),
    BytesNe(Box<[u8]>),
    BytesOrd(Ord, Box<[u8]>),
    Contains(memmem::Finder<'static>),
    Regex(Pattern),
    Wildcard(Wildcard),
    /// Small sets are scanned (length first); large ones hashed.
    BytesInSmall(Box<[Box<[u8]>]>),
    BytesIn(HashSet<Box<[u8]>>),
    IntOrd(Ord, i64),
    IntIn(IntSet),
    IpOrd(Ord, std::net::IpAddr),
    IpIn(IpSet),
    BoolOrd(Ord, bool),
}

impl Matcher {
    #[inline]
    fn test_bytes(&self, b: &[u8]) -> bool {
        match self {
            Matcher::BytesEq(lit) => b == lit.as_ref(),
            Matcher::BytesNe(lit) => b != lit.as_ref(),
            Matcher::BytesInSmall(set) => set.iter().any(|s| s.as_ref() == b),
            Matcher::BytesOrd(op, lit) => op.holds(b.cmp(lit.as_ref())),
            Matcher::Contains(f) => f.find(b).is_some(),
            Matcher::Regex(p) => p.is_match(b),
            Matcher::Wildcard(w) => w.matches(b),
            Matcher::BytesIn(set) => set.contains(b),
            _ => false,
        }
    }

    fn test(&self, v: &Val<'_>) -> bool {
        match (self, v) {
            (_, Val::Bytes(b)) => self.test_bytes(b),
            (Matcher::IntOrd(op, lit), Val::Int(i)) => op.holds(i.cmp(lit)),
            (Matcher::IntIn(set), Val::Int(i)) => set.contains(*i),
            (Matcher::IpOrd(op, lit), Val::Ip(ip)) => {
                op.holds(ip.to_canonical().cmp(&lit.to_canonical()))
            }
            (Matcher::IpIn(set), Val::Ip(ip)) => set.contains(*ip),
            (Matcher::BoolOrd(op, lit), Val::Bool(b)) => op.holds(b.cmp(lit)),
            _ => false,
        }
    }

    fn new(rhs: &Rhs) -> Matcher {
        match rhs {
            Rhs::Bytes(Ord::Eq, b) => Matcher::BytesEq(b.clone().into_boxed_slice()),
            Rhs::Bytes(Ord::Ne, b) => Matcher::BytesNe(b.clone().into_boxed_slice()),
            Rhs::Bytes(op, b) => Matcher::BytesOrd(*op, b.clone().into_boxed_slice()),
            Rhs::BytesIn(set) if set.len() <= SMALL_SET => {
                Matcher::BytesInSmall(set.iter().map(|b| b.clone().into_boxed_slice()).collect())
            }
            Rhs::Contains(b) => Matcher::Contains(memmem::Finder::new(b).into_owned()),
            Rhs::Matches(re) => Matcher::Regex(Pattern::new(compile_regex(re))),
            Rhs::Wildcard { pattern, strict } => Matcher::Wildcard(Wildcard::new(pattern, *strict)),
            Rhs::BytesIn(set) => {
                Matcher::BytesIn(set.iter().map(|b| b.clone().into_boxed_slice()).collect())
            }
            Rhs::Int(op, i) => Matcher::IntOrd(*op, *i),
            Rhs::IntIn(items) => Matcher::IntIn(IntSet::new(items.clone())),
            Rhs::Ip(op, ip) => Matcher::IpOrd(*op, *ip),
            Rhs::IpIn(items) => Matcher::IpIn(IpSet::new(items)),
            Rhs::Bool(op, b) => Matcher::BoolOrd(*op, *b),
        }
    }
}

/// `concat` with up to this many arguments (nearly all) sizes its result up front.
const CONCAT_PARTS: usize = 4;

/// Up to this many strings a scan beats hashing.
const SMALL_SET: usize = 8;

/// The parser validated the pattern already.
fn compile_regex(re: &str) -> Regex {
    Regex::new(re)
        .unwrap_or_else(|_| Regex::new("[^\\x00-\\x{10FFFF}]").expect("never-matching regex"))
}

#[derive(Debug, Clone)]
pub(crate) enum CExpr {
    Field(Field),
    Lit(Box<[u8]>),
    Int(i64),
    /// The current element of the enclosing `any`/`all`.
    Elem,
    Nth(ArraySrc, usize),
    Lower(Box<CExpr>),
    Upper(Box<CExpr>),
    LenBytes(Box<CExpr>),
    LenArray(ArraySrc),
    StartsWith(Box<CExpr>, Box<CExpr>),
    EndsWith(Box<CExpr>, Box<CExpr>),
    Concat(Box<[CExpr]>),
    Any(ArraySrc, Box<CExpr>),
    All(ArraySrc, Box<CExpr>),
    LookupJson(Box<CExpr>, Box<[JsonKey]>),
    /// `lookup_json_string(cf.hostname.metadata, ...)` walks the parsed metadata directly.
    LookupMetadata(Box<[JsonKey]>),
    UrlDecode(Box<CExpr>, bool),
    ToString(Box<CExpr>),
    RegexReplace(Box<CExpr>, Regex, Box<str>),
    WildcardReplace(Box<CExpr>, Regex, Box<str>),
    Compare(Box<CExpr>, Box<Matcher>),
    /// A comparison whose left side is a field borrowed from the request.
    CompareField(Field, Box<Matcher>),
    /// `ip.src in {...}`, the usual IP filter, without building a value.
    IpSrcIn(Box<IpSet>),
    Not(Box<CExpr>),
    And(Box<[CExpr]>),
    Xor(Box<[CExpr]>),
    Or(Box<[CExpr]>),
}

fn array_src(node: &Node) -> ArraySrc {
    let map_src = |f: Field| match f {
        Field::RawHeaders | Field::RawHeaderNames | Field::RawHeaderValues => HeaderSource::Raw,
        Field::ResponseHeaders | Field::ResponseHeaderNames | Field::ResponseHeaderValues => {
            HeaderSource::Response
        }
        _ => HeaderSource::Request,
    };
    match node {
        Node::Field(
            f @ (Field::HeaderNames | Field::RawHeaderNames | Field::ResponseHeaderNames),
        ) => ArraySrc::Names(map_src(*f)),
        Node::Field(f) => ArraySrc::Values(map_src(*f)),
        Node::Index(map, IndexKey::Key(k)) => match map.as_ref() {
            Node::Field(Field::Cookies) => ArraySrc::Cookie(CookieKey::new(k.as_bytes())),
            Node::Field(f) => ArraySrc::Header(
                map_src(*f),
                HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes())
                    .ok()
                    .map(HeaderKey::new),
            ),
            _ => ArraySrc::Header(HeaderSource::Request, None),
        },
        _ => ArraySrc::Header(HeaderSource::Request, None),
    }
}

/// Finds the `[*]` array of an `any`/`all` argument and replaces it by `Elem`.
fn take_expand(node: &Node, src: &mut Option<ArraySrc>) -> CExpr {
    match node {
        Node::Expand(arr) => {
            *src = Some(array_src(arr));
            CExpr::Elem
        }
        other => lower_with(other, src),
    }
}

pub(crate) fn compile(node: &Node) -> CExpr {
    lower_with(node, &mut None)
}

fn lower_with(node: &Node, star: &mut Option<ArraySrc>) -> CExpr {
    let mut sub = |n: &Node| Box::new(take_expand(n, star));
    match node {
        Node::Field(f) => CExpr::Field(*f),
        Node::Bytes(b) => CExpr::Lit(b.clone().into_boxed_slice()),
        Node::Int(i) => CExpr::Int(*i),
        Node::Index(arr, IndexKey::Pos(i)) => CExpr::Nth(array_src(arr), *i),
        // A map indexed but not then indexed again is an array: only valid
        // under `[*]` or `len`, handled by their parents.
        Node::Index(_, IndexKey::Key(_)) | Node::Expand(_) => CExpr::Elem,
        Node::Compare(lhs, rhs) => match (lhs.as_ref(), rhs) {
            (Node::Field(Field::IpSrc), Rhs::IpIn(items)) => {
                CExpr::IpSrcIn(Box::new(IpSet::new(items)))
            }
            (Node::Field(f), _)
                if !matches!(f, Field::IpSrc | Field::Ssl | Field::ResponseCode) =>
            {
                CExpr::CompareField(*f, Box::new(Matcher::new(rhs)))
            }
            _ => CExpr::Compare(sub(lhs), Box::new(Matcher::new(rhs))),
        },
        Node::Not(n) => CExpr::Not(sub(n)),
        Node::And(v) => CExpr::And(v.iter().map(|n| take_expand(n, star)).collect()),
        Node::Xor(v) => CExpr::Xor(v.iter().map(|n| take_expand(n, star)).collect()),
        Node::Or(v) => CExpr::Or(v.iter().map(|n| take_expand(n, star)).collect()),
        Node::Call(func, args) => lower_call(*func, args, star),
    }
}

fn lit(arg: &Arg) -> &[u8] {
    match &arg.node {
        Node::Bytes(b) => b,
        _ => b"",
    }
}

fn lower_call(func: Func, args: &[Arg], star: &mut Option<ArraySrc>) -> CExpr {
    let mut sub = |i: usize| Box::new(take_expand(&args[i].node, star));
    match func {
        Func::Lower => CExpr::Lower(sub(0)),
        Func::Upper => CExpr::Upper(sub(0)),
        Func::Len => match args[0].ty {
            super::scheme::Type::Array(_) => CExpr::LenArray(array_src(&args[0].node)),
            _ => CExpr::LenBytes(sub(0)),
        },
        Func::StartsWith => CExpr::StartsWith(sub(0), sub(1)),
        Func::EndsWith => CExpr::EndsWith(sub(0), sub(1)),
        Func::Concat => CExpr::Concat(args.iter().map(|a| take_expand(&a.node, star)).collect()),
        Func::Any | Func::All => {
            let mut inner = None;
            let pred = Box::new(take_expand(&args[0].node, &mut inner));
            let src = inner.unwrap_or(ArraySrc::Header(HeaderSource::Request, None));
            if func == Func::Any {
                CExpr::Any(src, pred)
            } else {
                CExpr::All(src, pred)
            }
        }
        Func::LookupJsonString => {
            let keys = args[1..]
                .iter()
                .map(|a| match &a.node {
                    Node::Int(i) => JsonKey::Index(usize::try_from(*i).unwrap_or(usize::MAX)),
                    n => JsonKey::Key(
                        String::from_utf8_lossy(match n {
                            Node::Bytes(b) => b,
                            _ => b"",
                        })
                        .into_owned(),
                    ),
                })
                .collect();
            match args[0].node {
                Node::Field(Field::HostnameMetadata) => CExpr::LookupMetadata(keys),
                _ => CExpr::LookupJson(sub(0), keys),
            }
        }
        Func::UrlDecode => {
            CExpr::UrlDecode(sub(0), args.len() == 2 && lit(&args[1]).contains(&b'r'))
        }
        Func::ToString => CExpr::ToString(sub(0)),
        Func::RegexReplace => CExpr::RegexReplace(
            sub(0),
            compile_regex(&String::from_utf8_lossy(lit(&args[1]))),
            String::from_utf8_lossy(lit(&args[2])).into(),
        ),
        Func::WildcardReplace => {
            let strict = args.len() == 4 && lit(&args[3]).contains(&b's');
            CExpr::WildcardReplace(
                sub(0),
                compile_regex(&wildcard::to_regex(lit(&args[1]), strict)),
                String::from_utf8_lossy(lit(&args[2])).into(),
            )
        }
    }
}

fn owned<'a>(v: Vec<u8>) -> Val<'a> {
    Val::Bytes(Cow::Owned(v))
}

fn json_walk<'j>(mut v: &'j serde_json::Value, keys: &[JsonKey]) -> Option<&'j str> {
    for k in keys {
        v = match k {
            JsonKey::Key(k) => v.get(k.as_str())?,
            JsonKey::Index(i) => v.get(*i)?,
        };
    }
    v.as_str()
}

/// Percent-decoding as Cloudflare's `url_decode` does it (`+` is a space).
pub(crate) fn url_decode(input: &[u8]) -> Vec<u8> {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'%' if i + 2 < input.len() => match (hex(input[i + 1]), hex(input[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    out
}

impl CExpr {
    /// Evaluates a Bool expression.
    pub(crate) fn test<'a, 'c: 'a>(&'a self, ctx: &Ctx<'c>, elem: Option<&Val<'a>>) -> bool {
        match self {
            CExpr::Compare(lhs, m) => m.test(&lhs.eval(ctx, elem)),
            CExpr::CompareField(f, m) => match ctx.borrowed_bytes(*f) {
                Some(b) => m.test_bytes(b),
                None => m.test(&ctx.field(*f)),
            },
            // Canonical, as the field reads (`Ctx::field`).
            CExpr::IpSrcIn(set) => set.contains(ctx.client.ip.to_canonical()),
            CExpr::Not(n) => !n.test(ctx, elem),
            CExpr::And(v) => v.iter().all(|n| n.test(ctx, elem)),
            CExpr::Or(v) => v.iter().any(|n| n.test(ctx, elem)),
            CExpr::Xor(v) => v.iter().fold(false, |acc, n| acc ^ n.test(ctx, elem)),
            CExpr::Any(src, pred) => src.find(ctx, |e| pred.test(ctx, Some(&e))),
            CExpr::All(src, pred) => !src.find(ctx, |e| !pred.test(ctx, Some(&e))),
            CExpr::StartsWith(a, b) => match (a.borrowed(ctx), b.as_ref()) {
                (Some(v), CExpr::Lit(l)) => has_prefix(v, l),
                _ => a
                    .eval(ctx, elem)
                    .bytes()
                    .starts_with(b.eval(ctx, elem).bytes()),
            },
            CExpr::EndsWith(a, b) => match (a.borrowed(ctx), b.as_ref()) {
                (Some(v), CExpr::Lit(l)) => v.ends_with(l),
                _ => a
                    .eval(ctx, elem)
                    .bytes()
                    .ends_with(b.eval(ctx, elem).bytes()),
            },
            other => matches!(other.eval(ctx, elem), Val::Bool(true)),
        }
    }

    /// A field read straight from the request, without building a `Val`:
    /// `starts_with(http.request.uri.path, "/x/")` is a common filter.
    #[inline]
    fn borrowed<'c>(&self, ctx: &Ctx<'c>) -> Option<&'c [u8]> {
        match self {
            CExpr::Field(f) => ctx.borrowed_bytes(*f),
            _ => None,
        }
    }

    pub(crate) fn eval<'a, 'c: 'a>(&'a self, ctx: &Ctx<'c>, elem: Option<&Val<'a>>) -> Val<'a> {
        let bytes = |e: &'a CExpr| e.eval(ctx, elem).into_bytes();
        match self {
            CExpr::Field(f) => ctx.field(*f),
            CExpr::Lit(b) => Val::Bytes(Cow::Borrowed(b)),
            CExpr::Int(i) => Val::Int(*i),
            CExpr::Elem => elem.cloned().unwrap_or(Val::Bytes(Cow::Borrowed(b""))),
            CExpr::Nth(src, n) => src.nth(ctx, *n).unwrap_or(Val::Bytes(Cow::Borrowed(b""))),
            CExpr::Lower(e) => {
                let b = bytes(e);
                if b.iter().any(u8::is_ascii_uppercase) {
                    owned(b.to_ascii_lowercase())
                } else {
                    Val::Bytes(b)
                }
            }
            CExpr::Upper(e) => {
                let b = bytes(e);
                if b.iter().any(u8::is_ascii_lowercase) {
                    owned(b.to_ascii_uppercase())
                } else {
                    Val::Bytes(b)
                }
            }
            CExpr::LenBytes(e) => Val::Int(bytes(e).len() as i64),
            CExpr::LenArray(src) => Val::Int(src.len(ctx) as i64),
            CExpr::Concat(parts) if parts.len() <= CONCAT_PARTS => {
                // Values first, so the result is allocated once at its size.
                let mut vals: [Cow<'a, [u8]>; CONCAT_PARTS] = Default::default();
                for (v, p) in vals.iter_mut().zip(parts.iter()) {
                    *v = bytes(p);
                }
                let mut out = Vec::with_capacity(vals.iter().map(|v| v.len()).sum());
                for v in &vals {
                    out.extend_from_slice(v);
                }
                owned(out)
            }
            CExpr::Concat(parts) => {
                let mut out = Vec::new();
                for p in parts.iter() {
                    out.extend_from_slice(&bytes(p));
                }
                owned(out)
            }
            CExpr::LookupJson(e, keys) => {
                let v: Option<serde_json::Value> = serde_json::from_slice(&bytes(e)).ok();
                owned(
                    v.as_ref()
                        .and_then(|v| json_walk(v, keys))
                        .unwrap_or("")
                        .as_bytes()
                        .to_vec(),
                )
            }
            CExpr::LookupMetadata(keys) => {
                let s = ctx
                    .client
                    .metadata
                    .and_then(|m| json_walk(m, keys))
                    .unwrap_or("");
                Val::Bytes(Cow::Borrowed(s.as_bytes()))
            }
            CExpr::UrlDecode(e, recursive) => {
                let mut out = url_decode(&bytes(e));
                // Bounded: each round that changes the value makes it shorter.
                while *recursive && out.contains(&b'%') {
                    let next = url_decode(&out);
                    if next == out {
                        break;
                    }
                    out = next;
                }
                owned(out)
            }
            CExpr::ToString(e) => Val::Bytes(e.eval(ctx, elem).into_bytes()),
            CExpr::RegexReplace(e, re, rep) => {
                let b = bytes(e);
                owned(re.replace(&b, rep.as_bytes()).into_owned())
            }
            CExpr::WildcardReplace(e, re, rep) => {
                let b = bytes(e);
                match re.captures(&b) {
                    Some(caps) => {
                        let mut out = Vec::new();
                        caps.expand(rep.as_bytes(), &mut out);
                        owned(out)
                    }
                    None => Val::Bytes(b),
                }
            }
            CExpr::Compare(..)
            | CExpr::CompareField(..)
            | CExpr::Not(_)
            | CExpr::And(_)
            | CExpr::Or(_)
            | CExpr::Xor(_)
            | CExpr::Any(..)
            | CExpr::All(..)
            | CExpr::StartsWith(..)
            | CExpr::EndsWith(..)
            | CExpr::IpSrcIn(_) => Val::Bool(self.test(ctx, elem)),
        }
    }
}
