//! Property tests: the parser never panics, and compiled evaluation agrees
//! with a naive interpreter of the typed tree on random requests and random
//! expressions. The interpreter computes every field itself from the
//! generated request description, searches sets linearly, and builds
//! regexes on the fly, so it shares no evaluation code with the engine.

use std::net::{IpAddr, Ipv4Addr};

use proptest::prelude::*;

use crate::rules::ast::{Arg, IndexKey, IpItem, Node, Ord, Rhs};
use crate::rules::context::{ClientInfo, Ctx, RawRequest};
use crate::rules::expression::Expression;
use crate::rules::parser::parse;
use crate::rules::scheme::{ExprKind, Field, Func, Type};

#[derive(Debug, Clone)]
struct NaiveReq {
    method: String,
    path: String,
    query: Option<String>,
    /// (lower-case name, value) in arrival order.
    headers: Vec<(String, String)>,
    ip: Ipv4Addr,
    tls: bool,
}

const NAMES: [&str; 4] = ["host", "x-a", "cookie", "user-agent"];

fn lit() -> impl Strategy<Value = String> {
    "[ab/.A]{0,3}"
}

fn req_strategy() -> impl Strategy<Value = NaiveReq> {
    (
        prop::sample::select(vec!["GET", "POST", "PUT"]),
        "(/[ab.A]{0,3}){1,3}",
        prop::option::of("[ab=&]{1,4}"),
        prop::collection::vec(
            (prop::sample::select(NAMES.to_vec()), "[ab/.A=; ]{0,5}"),
            0..6,
        ),
        (0u8..4, any::<bool>()),
    )
        .prop_map(|(m, path, query, headers, (ip, tls))| NaiveReq {
            method: m.to_owned(),
            path,
            query,
            headers: headers
                .into_iter()
                .map(|(n, v)| (n.to_owned(), v.trim().to_owned()))
                .collect(),
            ip: Ipv4Addr::new(10, 0, 0, ip),
            tls,
        })
}

impl NaiveReq {
    fn parts(&self) -> http::request::Parts {
        let uri = match &self.query {
            Some(q) => format!("{}?{q}", self.path),
            None => self.path.clone(),
        };
        let mut b = http::Request::builder()
            .method(self.method.as_str())
            .uri(uri);
        for (n, v) in &self.headers {
            b = b.header(n.as_str(), v.as_str());
        }
        b.body(())
            .expect("generated request is valid")
            .into_parts()
            .0
    }

    /// Header lines grouped by name in order of first appearance (how the
    /// `http` crate's map iterates).
    fn grouped(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        let mut order: Vec<&str> = Vec::new();
        for (n, _) in &self.headers {
            if !order.contains(&n.as_str()) {
                order.push(n);
            }
        }
        for name in order {
            out.extend(self.headers.iter().filter(|(n, _)| n == name).cloned());
        }
        out
    }

    fn header_values(&self, name: &str) -> Vec<Vec<u8>> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_bytes().to_vec())
            .collect()
    }

    fn cookies(&self, name: &str) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for v in self.header_values("cookie") {
            let s = String::from_utf8(v).expect("ascii");
            for pair in s.split(';') {
                if let Some((k, v)) = pair.trim().split_once('=')
                    && k.trim() == name
                {
                    out.push(v.trim().as_bytes().to_vec());
                }
            }
        }
        out
    }

    fn scalar(&self, f: Field) -> NVal {
        let host = self
            .header_values("host")
            .into_iter()
            .next()
            .unwrap_or_default();
        let uri = match &self.query {
            Some(q) => format!("{}?{q}", self.path),
            None => self.path.clone(),
        };
        let b = |s: &[u8]| NVal::B(s.to_vec());
        match f {
            Field::Host => NVal::B(host),
            Field::Method => b(self.method.as_bytes()),
            Field::Uri => b(uri.as_bytes()),
            Field::UriPath => b(self.path.as_bytes()),
            Field::UriQuery => b(self.query.as_deref().unwrap_or("").as_bytes()),
            Field::UriPathExtension => {
                let last = self.path.split('/').next_back().unwrap_or("");
                let ext = if last.contains('.') {
                    last.split('.').next_back().unwrap_or("")
                } else {
                    ""
                };
                b(ext.to_lowercase().as_bytes())
            }
            Field::FullUri => {
                let scheme = if self.tls { "https://" } else { "http://" };
                let mut v = scheme.as_bytes().to_vec();
                v.extend(host);
                v.extend(uri.as_bytes());
                NVal::B(v)
            }
            Field::UserAgent => NVal::B(
                self.header_values("user-agent")
                    .into_iter()
                    .next()
                    .unwrap_or_default(),
            ),
            Field::Cookie => NVal::B(self.header_values("cookie").join(&b"; "[..])),
            Field::IpSrc => NVal::Ip(IpAddr::V4(self.ip)),
            Field::Ssl => NVal::Bool(self.tls),
            other => panic!("naive interpreter does not generate {other:?}"),
        }
    }

    fn array(&self, node: &Node) -> Vec<Vec<u8>> {
        match node {
            Node::Field(Field::HeaderNames) => self
                .grouped()
                .into_iter()
                .map(|(n, _)| n.into_bytes())
                .collect(),
            Node::Field(Field::HeaderValues) => self
                .grouped()
                .into_iter()
                .map(|(_, v)| v.into_bytes())
                .collect(),
            Node::Index(m, IndexKey::Key(k)) if **m == Node::Field(Field::Headers) => {
                self.header_values(&k.to_lowercase())
            }
            Node::Index(m, IndexKey::Key(k)) if **m == Node::Field(Field::Cookies) => {
                self.cookies(k)
            }
            other => panic!("not an array: {other}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum NVal {
    B(Vec<u8>),
    I(i64),
    Bool(bool),
    Ip(IpAddr),
}

fn naive_wildcard(pattern: &[u8], value: &[u8], strict: bool) -> bool {
    let mut re = String::from(if strict { "(?s-u)^" } else { "(?is-u)^" });
    for &c in pattern {
        if c == b'*' {
            re.push_str(".*");
        } else {
            re.push_str(&regex::escape(&(c as char).to_string()));
        }
    }
    re.push('$');
    regex::bytes::Regex::new(&re)
        .expect("naive wildcard regex")
        .is_match(value)
}

fn ip_in(ip: IpAddr, item: &IpItem) -> bool {
    let v = |ip: IpAddr| match ip {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    };
    match *item {
        IpItem::Cidr(net, len) => {
            if ip.is_ipv4() != net.is_ipv4() {
                return false;
            }
            let width = if ip.is_ipv4() { 32 } else { 128 };
            (0..len)
                .all(|bit| (v(ip) >> (width - 1 - bit)) & 1 == (v(net) >> (width - 1 - bit)) & 1)
        }
        IpItem::Range(a, b) => ip.is_ipv4() == a.is_ipv4() && v(a) <= v(ip) && v(ip) <= v(b),
    }
}

fn cmp(ord: Ord, o: std::cmp::Ordering) -> bool {
    ord.holds(o)
}

fn interp(n: &Node, r: &NaiveReq, elem: Option<&[u8]>) -> NVal {
    let b = |n: &Node| match interp(n, r, elem) {
        NVal::B(v) => v,
        other => panic!("expected bytes, got {other:?}"),
    };
    match n {
        Node::Field(f) => r.scalar(*f),
        Node::Bytes(v) => NVal::B(v.clone()),
        Node::Int(i) => NVal::I(*i),
        Node::Expand(_) => NVal::B(elem.expect("element").to_vec()),
        Node::Index(arr, IndexKey::Pos(i)) => {
            NVal::B(r.array(arr).get(*i).cloned().unwrap_or_default())
        }
        Node::Index(..) => panic!("bare map index"),
        Node::Not(x) => NVal::Bool(interp(x, r, elem) != NVal::Bool(true)),
        Node::And(v) => NVal::Bool(v.iter().all(|x| interp(x, r, elem) == NVal::Bool(true))),
        Node::Or(v) => NVal::Bool(v.iter().any(|x| interp(x, r, elem) == NVal::Bool(true))),
        Node::Xor(v) => NVal::Bool(
            v.iter()
                .filter(|x| interp(x, r, elem) == NVal::Bool(true))
                .count()
                % 2
                == 1,
        ),
        Node::Call(func, args) => match func {
            Func::Lower => NVal::B(b(&args[0].node).to_ascii_lowercase()),
            Func::Upper => NVal::B(b(&args[0].node).to_ascii_uppercase()),
            Func::Len => match &args[0].ty {
                Type::Array(_) => NVal::I(r.array(&args[0].node).len() as i64),
                _ => NVal::I(b(&args[0].node).len() as i64),
            },
            Func::StartsWith => NVal::Bool(b(&args[0].node).starts_with(&b(&args[1].node))),
            Func::EndsWith => NVal::Bool(b(&args[0].node).ends_with(&b(&args[1].node))),
            Func::Concat => NVal::B(args.iter().flat_map(|a| b(&a.node)).collect()),
            Func::ToString => NVal::B(match interp(&args[0].node, r, elem) {
                NVal::B(v) => v,
                NVal::I(i) => i.to_string().into_bytes(),
                NVal::Bool(x) => x.to_string().into_bytes(),
                NVal::Ip(ip) => ip.to_string().into_bytes(),
            }),
            Func::Any | Func::All => {
                let arr = find_expand(&args[0].node).expect("any/all has [*]");
                let items = r.array(arr);
                let hit = |e: &Vec<u8>| interp(&args[0].node, r, Some(e)) == NVal::Bool(true);
                NVal::Bool(if *func == Func::Any {
                    items.iter().any(hit)
                } else {
                    items.iter().all(hit)
                })
            }
            other => panic!("naive interpreter does not generate {other:?}"),
        },
        Node::Compare(lhs, rhs) => {
            let l = interp(lhs, r, elem);
            NVal::Bool(match (rhs, l) {
                (Rhs::Bytes(o, lit), NVal::B(v)) => cmp(*o, v.cmp(lit)),
                (Rhs::Contains(lit), NVal::B(v)) => {
                    lit.is_empty() || v.windows(lit.len()).any(|w| w == lit.as_slice())
                }
                (Rhs::Matches(re), NVal::B(v)) => {
                    regex::bytes::Regex::new(re).expect("regex").is_match(&v)
                }
                (Rhs::Wildcard { pattern, strict }, NVal::B(v)) => {
                    naive_wildcard(pattern, &v, *strict)
                }
                (Rhs::BytesIn(set), NVal::B(v)) => set.contains(&v),
                (Rhs::Int(o, lit), NVal::I(v)) => cmp(*o, v.cmp(lit)),
                (Rhs::IntIn(set), NVal::I(v)) => set.iter().any(|(a, b)| *a <= v && v <= *b),
                (Rhs::Ip(o, lit), NVal::Ip(v)) => cmp(*o, v.cmp(lit)),
                (Rhs::IpIn(set), NVal::Ip(v)) => set.iter().any(|item| ip_in(v, item)),
                (Rhs::Bool(o, lit), NVal::Bool(v)) => cmp(*o, v.cmp(lit)),
                (rhs, l) => panic!("ill-typed comparison {l:?} vs {rhs:?}"),
            })
        }
    }
}

/// The array under the `[*]` of an any/all argument (not descending into nested any/all).
fn find_expand(n: &Node) -> Option<&Node> {
    match n {
        Node::Expand(a) => Some(a),
        Node::Call(Func::Any | Func::All, _) => None,
        Node::Call(_, args) => args.iter().find_map(|a| find_expand(&a.node)),
        Node::Compare(l, _) | Node::Not(l) | Node::Index(l, _) => find_expand(l),
        Node::And(v) | Node::Or(v) | Node::Xor(v) => v.iter().find_map(find_expand),
        _ => None,
    }
}

fn arg(node: Node, ty: Type) -> Arg {
    Arg { node, ty }
}

fn bytes_value() -> impl Strategy<Value = Node> {
    let leaf = prop_oneof![
        prop::sample::select(vec![
            Field::Host,
            Field::Method,
            Field::Uri,
            Field::UriPath,
            Field::UriQuery,
            Field::UriPathExtension,
            Field::FullUri,
            Field::UserAgent,
            Field::Cookie
        ])
        .prop_map(Node::Field),
        (
            prop::sample::select(vec!["x-a", "X-A", "host", "cookie"]),
            0usize..3
        )
            .prop_map(|(k, i)| Node::Index(
                Box::new(Node::Index(
                    Box::new(Node::Field(Field::Headers)),
                    IndexKey::Key(k.to_owned())
                )),
                IndexKey::Pos(i)
            )),
        (prop::sample::select(vec!["a", "b", "A"]), 0usize..2).prop_map(|(k, i)| Node::Index(
            Box::new(Node::Index(
                Box::new(Node::Field(Field::Cookies)),
                IndexKey::Key(k.to_owned())
            )),
            IndexKey::Pos(i)
        )),
        (
            prop::sample::select(vec![Field::HeaderNames, Field::HeaderValues]),
            0usize..4
        )
            .prop_map(|(f, i)| Node::Index(Box::new(Node::Field(f)), IndexKey::Pos(i))),
    ];
    leaf.prop_recursive(2, 6, 3, |inner| {
        prop_oneof![
            inner
                .clone()
                .prop_map(|n| Node::Call(Func::Lower, vec![arg(n, Type::Bytes)])),
            inner
                .clone()
                .prop_map(|n| Node::Call(Func::Upper, vec![arg(n, Type::Bytes)])),
            (inner.clone(), lit()).prop_map(|(n, l)| Node::Call(
                Func::Concat,
                vec![
                    arg(n, Type::Bytes),
                    arg(Node::Bytes(l.into_bytes()), Type::Bytes)
                ]
            )),
        ]
    })
}

fn int_value() -> impl Strategy<Value = Node> {
    prop_oneof![
        bytes_value().prop_map(|n| Node::Call(Func::Len, vec![arg(n, Type::Bytes)])),
        prop::sample::select(vec!["x-a", "cookie"]).prop_map(|k| Node::Call(
            Func::Len,
            vec![arg(
                Node::Index(
                    Box::new(Node::Field(Field::Headers)),
                    IndexKey::Key(k.to_owned())
                ),
                Type::bytes_array()
            )]
        )),
    ]
}

fn ord() -> impl Strategy<Value = Ord> {
    prop::sample::select(vec![Ord::Eq, Ord::Ne, Ord::Lt, Ord::Le, Ord::Gt, Ord::Ge])
}

fn bytes_rhs() -> impl Strategy<Value = Rhs> {
    prop_oneof![
        (ord(), lit()).prop_map(|(o, l)| Rhs::Bytes(o, l.into_bytes())),
        lit().prop_map(|l| Rhs::Contains(l.into_bytes())),
        prop::sample::select(vec!["^/a", "b$", "(?i)a.b", "^$", "[ab]{2}", "\\.a"])
            .prop_map(|r| Rhs::Matches(r.to_owned())),
        ("[ab/.A*]{0,5}", any::<bool>()).prop_map(|(p, strict)| Rhs::Wildcard {
            pattern: p.into_bytes(),
            strict
        }),
        prop::collection::vec(lit(), 0..4)
            .prop_map(|v| Rhs::BytesIn(v.into_iter().map(String::into_bytes).collect())),
    ]
}

fn int_rhs() -> impl Strategy<Value = Rhs> {
    prop_oneof![
        (ord(), 0i64..8).prop_map(|(o, i)| Rhs::Int(o, i)),
        prop::collection::vec((0i64..8, 0i64..4), 0..4)
            .prop_map(|v| Rhs::IntIn(v.into_iter().map(|(a, d)| (a, a + d)).collect())),
    ]
}

fn ip_rhs() -> impl Strategy<Value = Rhs> {
    let ip = |last: u8| IpAddr::V4(Ipv4Addr::new(10, 0, 0, last));
    prop_oneof![
        (prop::sample::select(vec![Ord::Eq, Ord::Ne]), 0u8..4)
            .prop_map(move |(o, l)| Rhs::Ip(o, ip(l))),
        prop::collection::vec(
            prop_oneof![
                (0u8..4, prop::sample::select(vec![8u8, 24, 30, 31, 32]))
                    .prop_map(move |(l, len)| IpItem::Cidr(ip(l), len)),
                (0u8..4, 0u8..3).prop_map(move |(l, d)| IpItem::Range(ip(l), ip(l + d))),
            ],
            0..3
        )
        .prop_map(Rhs::IpIn),
    ]
}

fn bool_expr() -> impl Strategy<Value = Node> {
    let star = (
        prop::sample::select(vec!["x-a", "cookie"]),
        bytes_rhs(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(k, rhs, lower, is_any)| {
            let arr = Node::Index(
                Box::new(Node::Field(Field::Headers)),
                IndexKey::Key(k.to_owned()),
            );
            let mut e = Node::Expand(Box::new(arr));
            if lower {
                e = Node::Call(Func::Lower, vec![arg(e, Type::Bytes)]);
            }
            let f = if is_any { Func::Any } else { Func::All };
            Node::Call(f, vec![arg(Node::Compare(Box::new(e), rhs), Type::Bool)])
        });
    let leaf = prop_oneof![
        (bytes_value(), bytes_rhs()).prop_map(|(l, r)| Node::Compare(Box::new(l), r)),
        (int_value(), int_rhs()).prop_map(|(l, r)| Node::Compare(Box::new(l), r)),
        ip_rhs().prop_map(|r| Node::Compare(Box::new(Node::Field(Field::IpSrc)), r)),
        Just(Node::Field(Field::Ssl)),
        (bytes_value(), lit()).prop_map(|(v, l)| Node::Call(
            Func::StartsWith,
            vec![
                arg(v, Type::Bytes),
                arg(Node::Bytes(l.into_bytes()), Type::Bytes)
            ]
        )),
        star,
    ];
    leaf.prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            inner.clone().prop_map(|n| Node::Not(Box::new(n))),
            prop::collection::vec(inner.clone(), 2..4).prop_map(Node::And),
            prop::collection::vec(inner.clone(), 2..4).prop_map(Node::Or),
            prop::collection::vec(inner, 2..4).prop_map(Node::Xor),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn parser_never_panics(src in "\\PC{0,80}") {
        let _ = parse(&src, ExprKind::REQUEST_FILTER);
        let _ = parse(&src, ExprKind::REQUEST_VALUE);
    }

    #[test]
    fn parser_never_panics_on_language_like_input(
        parts in prop::collection::vec(prop::sample::select(vec![
            "http.host", "ip.src", "ssl", "eq", "==", "in", "{", "}", "(", ")", "[", "]", "*", "\"a\"",
            "r#\"x\"#", "and", "or", "not", "xor", "any(", "lower(", ",", "1..3", "10.0.0.0/8", "0",
            "http.request.headers", "[*]", "matches", "wildcard", "strict", "\"", "r#", "!", "~",
        ]), 0..14)
    ) {
        let src = parts.join(" ");
        let _ = parse(&src, ExprKind::REQUEST_FILTER);
    }

    #[test]
    fn compiled_evaluation_matches_naive_interpreter(expr in bool_expr(), req in req_strategy()) {
        let src = expr.to_string();
        let compiled = Expression::compile(&src, ExprKind::REQUEST_FILTER)
            .map_err(|e| TestCaseError::fail(format!("{src}: {e}")))?;
        prop_assert_eq!(compiled.ast(), &expr, "round trip of {}", src);
        let parts = req.parts();
        let raw = RawRequest::capture(&parts, false);
        let client = ClientInfo { ip: IpAddr::V4(req.ip), tls: req.tls, metadata: None };
        let ctx = Ctx::new(&parts, &raw, &client, None);
        let want = interp(&expr, &req, None) == NVal::Bool(true);
        prop_assert_eq!(compiled.matches(&ctx), want, "{} on {:?}", src, req);
    }
}
