//! Recursive-descent parser that type-checks against the scheme as it goes,
//! so every error points at the token that caused it.
//!
//! Precedence, highest first: `not`, `and`, `xor`, `or`; comparisons bind
//! tighter than all of them.
//!
//! Nesting is bounded by [`MAX_DEPTH`]: the parser, the compiler, the
//! evaluator and the drop of a tree all recurse once per level, so a tenant's
//! expression must not choose how deep the stack goes.

use std::net::IpAddr;
use std::str::FromStr;

use super::ast::{Arg, IndexKey, IpItem, Node, Ord, Rhs};
use super::error::ExprError;
use super::lexer::{Spanned, Tok, lex};
use super::scheme::{ExprKind, Field, Func, Type};

/// How deeply an expression may nest: each `(`, `not`/`!` and function call
/// opens a level. Far above what a rule needs (Cloudflare's dashboard writes
/// at most a few levels) and far below what overflows a thread's stack in any
/// of the walks over the tree.
pub const MAX_DEPTH: usize = 64;

/// Parses and type-checks `src`. Filters must be Bool, value expressions Bytes.
pub fn parse(src: &str, kind: ExprKind) -> Result<Node, ExprError> {
    let toks = lex(src)?;
    let mut p = Parser {
        src,
        toks,
        pos: 0,
        kind,
        expand_frames: vec![Vec::new()],
        depth: 0,
    };
    if p.toks.is_empty() {
        return Err(ExprError::at(src, 0, "empty expression"));
    }
    let (node, ty) = p.parse_or()?;
    if let Some(t) = p.toks.get(p.pos) {
        return Err(p.err_at(
            t.at,
            "unexpected token, expected `and`, `or`, `xor` or the end",
        ));
    }
    if let Some(&at) = p.expand_frames[0].first() {
        return Err(p.err_at(at, "[*] is only allowed inside any() or all()"));
    }
    let want = if kind.value { Type::Bytes } else { Type::Bool };
    if ty != want {
        return Err(p.err_at(0, format!("expression has type {ty}, expected {want}")));
    }
    Ok(node)
}

/// Parses a value expression of any type (rate-limit characteristics).
pub fn parse_characteristic(src: &str) -> Result<(Node, Type), ExprError> {
    let toks = lex(src)?;
    let mut p = Parser {
        src,
        toks,
        pos: 0,
        kind: ExprKind::REQUEST_FILTER,
        expand_frames: vec![Vec::new()],
        depth: 0,
    };
    let (node, ty) = p.parse_value()?;
    if let Some(t) = p.toks.get(p.pos) {
        return Err(p.err_at(t.at, "unexpected token after the characteristic"));
    }
    if let Some(&at) = p.expand_frames[0].first() {
        return Err(p.err_at(at, "[*] is not allowed in a characteristic"));
    }
    if !matches!(ty, Type::Bytes | Type::Int | Type::Ip | Type::Bool) {
        return Err(p.err_at(
            0,
            format!("a characteristic must be a single value, not {ty}"),
        ));
    }
    Ok((node, ty))
}

struct Parser<'s> {
    src: &'s str,
    toks: Vec<Spanned>,
    pos: usize,
    kind: ExprKind,
    /// Positions of `[*]` seen, one frame per enclosing `any`/`all`.
    expand_frames: Vec<Vec<usize>>,
    /// Levels open at the current token (see [`MAX_DEPTH`]).
    depth: usize,
}

type Typed = (Node, Type);

impl Parser<'_> {
    fn err_at(&self, at: usize, msg: impl Into<String>) -> ExprError {
        ExprError::at(self.src, at, msg)
    }

    /// Offset of the current token (or the end of input).
    fn here(&self) -> usize {
        self.toks.get(self.pos).map_or(self.src.len(), |t| t.at)
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.tok)
    }

    fn peek_word(&self) -> Option<&str> {
        match self.peek() {
            Some(Tok::Word(w)) => Some(w),
            _ => None,
        }
    }

    fn bump(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|t| t.tok.clone());
        self.pos += 1;
        t
    }

    fn expect(&mut self, tok: Tok, what: &str) -> Result<(), ExprError> {
        if self.peek() == Some(&tok) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err_at(self.here(), format!("expected {what}")))
        }
    }

    /// Runs `inner` one nesting level deeper, refusing to go past [`MAX_DEPTH`]
    /// before it recurses (`at` is where the new level opens).
    fn nested<T>(
        &mut self,
        at: usize,
        inner: impl FnOnce(&mut Self) -> Result<T, ExprError>,
    ) -> Result<T, ExprError> {
        if self.depth >= MAX_DEPTH {
            return Err(self.err_at(
                at,
                format!(
                    "expression nests deeper than {MAX_DEPTH} levels (the limit; \
                     each `(`, `not` and function call is a level)"
                ),
            ));
        }
        self.depth += 1;
        let out = inner(self);
        self.depth -= 1;
        out
    }

    fn logical(
        &mut self,
        next: fn(&mut Self) -> Result<Typed, ExprError>,
        is_op: fn(&Tok) -> bool,
        name: &str,
        build: fn(Vec<Node>) -> Node,
    ) -> Result<Typed, ExprError> {
        let start = self.here();
        let (first, ty) = next(self)?;
        if !self.peek().is_some_and(is_op) {
            return Ok((first, ty));
        }
        self.need_bool(&ty, start, name)?;
        let mut items = vec![first];
        while self.peek().is_some_and(is_op) {
            self.pos += 1;
            let at = self.here();
            let (n, ty) = next(self)?;
            self.need_bool(&ty, at, name)?;
            items.push(n);
        }
        Ok((build(items), Type::Bool))
    }

    fn need_bool(&self, ty: &Type, at: usize, op: &str) -> Result<(), ExprError> {
        if *ty == Type::Bool {
            Ok(())
        } else {
            Err(self.err_at(at, format!("`{op}` needs Bool operands, found {ty}")))
        }
    }

    fn parse_or(&mut self) -> Result<Typed, ExprError> {
        self.logical(
            Self::parse_xor,
            |t| matches!(t, Tok::OrOr) || matches!(t, Tok::Word(w) if w == "or"),
            "or",
            Node::Or,
        )
    }

    fn parse_xor(&mut self) -> Result<Typed, ExprError> {
        self.logical(
            Self::parse_and,
            |t| matches!(t, Tok::XorXor) || matches!(t, Tok::Word(w) if w == "xor"),
            "xor",
            Node::Xor,
        )
    }

    fn parse_and(&mut self) -> Result<Typed, ExprError> {
        self.logical(
            Self::parse_not,
            |t| matches!(t, Tok::AndAnd) || matches!(t, Tok::Word(w) if w == "and"),
            "and",
            Node::And,
        )
    }

    fn parse_not(&mut self) -> Result<Typed, ExprError> {
        if matches!(self.peek(), Some(Tok::Bang)) || self.peek_word() == Some("not") {
            let not_at = self.here();
            self.pos += 1;
            let at = self.here();
            let (n, ty) = self.nested(not_at, Self::parse_not)?;
            self.need_bool(&ty, at, "not")?;
            return Ok((Node::Not(Box::new(n)), Type::Bool));
        }
        self.parse_compare()
    }

    fn parse_compare(&mut self) -> Result<Typed, ExprError> {
        let (lhs, ty) = self.parse_value()?;
        let op_at = self.here();
        let op = match self.peek() {
            Some(Tok::Eq) => Some("eq"),
            Some(Tok::Ne) => Some("ne"),
            Some(Tok::Lt) => Some("lt"),
            Some(Tok::Le) => Some("le"),
            Some(Tok::Gt) => Some("gt"),
            Some(Tok::Ge) => Some("ge"),
            Some(Tok::Tilde) => Some("matches"),
            Some(Tok::Word(w)) => match w.as_str() {
                "eq" | "ne" | "lt" | "le" | "gt" | "ge" | "contains" | "matches" | "wildcard"
                | "strict" | "in" => Some(w.as_str()),
                _ => None,
            },
            _ => None,
        };
        let Some(op) = op.map(str::to_owned) else {
            return Ok((lhs, ty));
        };
        self.pos += 1;
        let rhs = self.parse_rhs(&op, &ty, op_at)?;
        Ok((Node::Compare(Box::new(lhs), rhs), Type::Bool))
    }

    fn parse_rhs(&mut self, op: &str, ty: &Type, op_at: usize) -> Result<Rhs, ExprError> {
        let ord = match op {
            "eq" => Some(Ord::Eq),
            "ne" => Some(Ord::Ne),
            "lt" => Some(Ord::Lt),
            "le" => Some(Ord::Le),
            "gt" => Some(Ord::Gt),
            "ge" => Some(Ord::Ge),
            _ => None,
        };
        let unsupported =
            |p: &Self| p.err_at(op_at, format!("operator `{op}` is not defined for {ty}"));
        match (ty, op) {
            (_, "in") => {
                self.expect(Tok::LBrace, "`{` to start the set")?;
                let rhs = match ty {
                    Type::Bytes => Rhs::BytesIn(self.set_items(Self::string_lit)?),
                    Type::Int => Rhs::IntIn(self.set_items(Self::int_item)?),
                    Type::Ip => Rhs::IpIn(self.set_items(Self::ip_item)?),
                    _ => return Err(unsupported(self)),
                };
                Ok(rhs)
            }
            (Type::Bytes, _) if ord.is_some() => {
                Ok(Rhs::Bytes(ord.unwrap_or(Ord::Eq), self.string_lit()?))
            }
            (Type::Bytes, "contains") => Ok(Rhs::Contains(self.string_lit()?)),
            (Type::Bytes, "matches") => {
                let at = self.here();
                let re = String::from_utf8(self.string_lit()?)
                    .map_err(|_| self.err_at(at, "regular expression is not valid UTF-8"))?;
                regex::bytes::Regex::new(&re)
                    .map_err(|e| self.err_at(at, format!("invalid regular expression: {e}")))?;
                Ok(Rhs::Matches(re))
            }
            (Type::Bytes, "wildcard") => Ok(Rhs::Wildcard {
                pattern: self.string_lit()?,
                strict: false,
            }),
            (Type::Bytes, "strict") => {
                if self.peek_word() != Some("wildcard") {
                    return Err(self.err_at(self.here(), "expected `wildcard` after `strict`"));
                }
                self.pos += 1;
                Ok(Rhs::Wildcard {
                    pattern: self.string_lit()?,
                    strict: true,
                })
            }
            (Type::Int, _) if ord.is_some() => {
                Ok(Rhs::Int(ord.unwrap_or(Ord::Eq), self.int_lit()?))
            }
            (Type::Ip, "eq" | "ne") => {
                let at = self.here();
                match self.ip_item()? {
                    IpItem::Cidr(ip, len) if len == full_len(ip) => {
                        Ok(Rhs::Ip(ord.unwrap_or(Ord::Eq), ip))
                    }
                    _ => Err(self.err_at(
                        at,
                        "expected a single IP address (use `in {...}` for CIDRs)",
                    )),
                }
            }
            (Type::Bool, "eq" | "ne") => {
                let at = self.here();
                let b = match self.bump() {
                    Some(Tok::Word(w)) if w == "true" => true,
                    Some(Tok::Word(w)) if w == "false" => false,
                    _ => return Err(self.err_at(at, "expected `true` or `false`")),
                };
                Ok(Rhs::Bool(ord.unwrap_or(Ord::Eq), b))
            }
            _ => Err(unsupported(self)),
        }
    }

    fn set_items<T>(
        &mut self,
        item: fn(&mut Self) -> Result<T, ExprError>,
    ) -> Result<Vec<T>, ExprError> {
        let mut out = Vec::new();
        loop {
            match self.peek() {
                Some(Tok::RBrace) => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(Tok::Comma) => self.pos += 1,
                None => return Err(self.err_at(self.here(), "unterminated set, expected `}`")),
                _ => out.push(item(self)?),
            }
        }
    }

    fn string_lit(&mut self) -> Result<Vec<u8>, ExprError> {
        let at = self.here();
        match self.bump() {
            Some(Tok::Str(s)) => Ok(s),
            _ => Err(self.err_at(at, "expected a string literal")),
        }
    }

    fn word(&mut self, what: &str) -> Result<(String, usize), ExprError> {
        let at = self.here();
        match self.bump() {
            Some(Tok::Word(w)) => Ok((w, at)),
            _ => Err(self.err_at(at, format!("expected {what}"))),
        }
    }

    fn int_lit(&mut self) -> Result<i64, ExprError> {
        let (w, at) = self.word("an integer")?;
        w.parse()
            .map_err(|_| self.err_at(at, format!("`{w}` is not an integer")))
    }

    fn int_item(&mut self) -> Result<(i64, i64), ExprError> {
        let (w, at) = self.word("an integer or a range a..b")?;
        let parse = |s: &str| {
            s.parse::<i64>()
                .map_err(|_| self.err_at(at, format!("`{s}` is not an integer")))
        };
        match w.split_once("..") {
            Some((a, b)) => {
                let (a, b) = (parse(a)?, parse(b)?);
                if a > b {
                    return Err(self.err_at(at, format!("empty range {a}..{b}")));
                }
                Ok((a, b))
            }
            None => parse(&w).map(|n| (n, n)),
        }
    }

    fn ip_item(&mut self) -> Result<IpItem, ExprError> {
        let (w, at) = self.word("an IP address, CIDR or range")?;
        let ip = |s: &str| {
            IpAddr::from_str(s).map_err(|_| self.err_at(at, format!("`{s}` is not an IP address")))
        };
        if let Some((a, b)) = w.split_once("..") {
            let (a, b) = (ip(a)?, ip(b)?);
            if a.is_ipv4() != b.is_ipv4() || a > b {
                return Err(self.err_at(at, format!("invalid IP range {w}")));
            }
            return Ok(IpItem::Range(a, b));
        }
        if let Some((a, len)) = w.split_once('/') {
            let a = ip(a)?;
            let len: u8 = len
                .parse()
                .ok()
                .filter(|&l| l <= full_len(a))
                .ok_or_else(|| self.err_at(at, format!("invalid prefix length in `{w}`")))?;
            return Ok(IpItem::Cidr(a, len));
        }
        let a = ip(&w)?;
        Ok(IpItem::Cidr(a, full_len(a)))
    }

    fn parse_value(&mut self) -> Result<Typed, ExprError> {
        let (mut node, mut ty) = self.parse_primary()?;
        while self.peek() == Some(&Tok::LBracket) {
            let at = self.here();
            self.pos += 1;
            match (&ty, self.peek().cloned()) {
                (Type::Array(elem), Some(Tok::Star)) => {
                    self.pos += 1;
                    let elem = (**elem).clone();
                    if let Some(frame) = self.expand_frames.last_mut() {
                        frame.push(at);
                    }
                    node = Node::Expand(Box::new(node));
                    ty = elem;
                }
                (Type::Array(elem), Some(Tok::Word(w))) => {
                    let i: usize = w
                        .parse()
                        .map_err(|_| self.err_at(self.here(), "expected an array index or `*`"))?;
                    self.pos += 1;
                    let elem = (**elem).clone();
                    node = Node::Index(Box::new(node), IndexKey::Pos(i));
                    ty = elem;
                }
                (Type::Map(value), Some(Tok::Str(k))) => {
                    let key = String::from_utf8(k)
                        .map_err(|_| self.err_at(self.here(), "map key must be UTF-8"))?;
                    self.pos += 1;
                    let value = (**value).clone();
                    node = Node::Index(Box::new(node), IndexKey::Key(key));
                    ty = value;
                }
                (Type::Array(_), _) => {
                    return Err(self.err_at(self.here(), "expected an array index or `*`"));
                }
                (Type::Map(_), _) => return Err(self.err_at(self.here(), "expected a string key")),
                _ => return Err(self.err_at(at, format!("cannot index a value of type {ty}"))),
            }
            self.expect(Tok::RBracket, "`]`")?;
        }
        Ok((node, ty))
    }

    fn parse_primary(&mut self) -> Result<Typed, ExprError> {
        let at = self.here();
        match self.bump() {
            Some(Tok::LParen) => self.nested(at, |p| {
                let inner = p.parse_or()?;
                p.expect(Tok::RParen, "`)`")?;
                Ok(inner)
            }),
            Some(Tok::Str(s)) => Ok((Node::Bytes(s), Type::Bytes)),
            Some(Tok::Word(w)) => {
                if self.peek() == Some(&Tok::LParen) {
                    self.pos += 1;
                    return self.nested(at, |p| p.parse_call(&w, at));
                }
                if let Ok(i) = w.parse::<i64>() {
                    return Ok((Node::Int(i), Type::Int));
                }
                // `true` is what Cloudflare's dashboard writes for "all incoming
                // requests"; the empty conjunction and disjunction are the two
                // constants, so evaluation needs no case of its own.
                match w.as_str() {
                    "true" => return Ok((Node::And(Vec::new()), Type::Bool)),
                    "false" => return Ok((Node::Or(Vec::new()), Type::Bool)),
                    _ => {}
                }
                let field = Field::from_name(&w)
                    .ok_or_else(|| self.err_at(at, format!("unknown field `{w}`")))?;
                if field.is_response() && !self.kind.response {
                    return Err(self.err_at(
                        at,
                        format!("field `{w}` is only available in response phases"),
                    ));
                }
                Ok((Node::Field(field), field.ty()))
            }
            None => Err(self.err_at(at, "unexpected end of expression, expected a field")),
            Some(_) => Err(self.err_at(at, "expected a field, function or `(`")),
        }
    }

    fn parse_call(&mut self, name: &str, at: usize) -> Result<Typed, ExprError> {
        let func = Func::from_name(name)
            .ok_or_else(|| self.err_at(at, format!("unknown function `{name}`")))?;
        if func.value_only() && !self.kind.value {
            return Err(self.err_at(
                at,
                format!("function `{name}` is only allowed in rewrite and redirect values"),
            ));
        }
        let star_scope = matches!(func, Func::Any | Func::All);
        if star_scope {
            self.expand_frames.push(Vec::new());
        }
        let mut args: Vec<(Arg, usize)> = Vec::new();
        if self.peek() == Some(&Tok::RParen) {
            self.pos += 1;
        } else {
            loop {
                let arg_at = self.here();
                let (node, ty) = self.parse_or()?;
                args.push((Arg { node, ty }, arg_at));
                match self.bump() {
                    Some(Tok::Comma) => continue,
                    Some(Tok::RParen) => break,
                    _ => {
                        return Err(
                            self.err_at(self.here().min(self.src.len()), "expected `,` or `)`")
                        );
                    }
                }
            }
        }
        if star_scope {
            let stars = self.expand_frames.pop().unwrap_or_default();
            if stars.len() != 1 {
                return Err(self.err_at(
                    at,
                    format!("{name}() needs exactly one `[*]` in its argument"),
                ));
            }
        }
        let ty = self.check_call(func, &args, at)?;
        Ok((
            Node::Call(func, args.into_iter().map(|(a, _)| a).collect()),
            ty,
        ))
    }

    fn check_call(&self, func: Func, args: &[(Arg, usize)], at: usize) -> Result<Type, ExprError> {
        let name = func.name();
        let arity = |min: usize, max: usize| {
            if args.len() < min || args.len() > max {
                let want = if min == max {
                    format!("{min}")
                } else if max == usize::MAX {
                    format!("at least {min}")
                } else {
                    format!("{min} to {max}")
                };
                Err(self.err_at(
                    at,
                    format!("{name}() takes {want} arguments, got {}", args.len()),
                ))
            } else {
                Ok(())
            }
        };
        let want = |i: usize, ok: &dyn Fn(&Type) -> bool, what: &str| {
            let (a, a_at) = &args[i];
            if ok(&a.ty) {
                Ok(())
            } else {
                Err(self.err_at(
                    *a_at,
                    format!(
                        "argument {} of {name}() must be {what}, found {}",
                        i + 1,
                        a.ty
                    ),
                ))
            }
        };
        let literal = |i: usize| {
            let (a, a_at) = &args[i];
            match a.node {
                Node::Bytes(_) => Ok(()),
                _ => Err(self.err_at(
                    *a_at,
                    format!("argument {} of {name}() must be a string literal", i + 1),
                )),
            }
        };
        let bytes = |t: &Type| *t == Type::Bytes;
        match func {
            Func::Lower | Func::Upper => {
                arity(1, 1)?;
                want(0, &bytes, "Bytes")?;
                Ok(Type::Bytes)
            }
            Func::Len => {
                arity(1, 1)?;
                want(
                    0,
                    &|t| matches!(t, Type::Bytes | Type::Array(_)),
                    "Bytes or an array",
                )?;
                Ok(Type::Int)
            }
            Func::StartsWith | Func::EndsWith => {
                arity(2, 2)?;
                want(0, &bytes, "Bytes")?;
                want(1, &bytes, "Bytes")?;
                Ok(Type::Bool)
            }
            Func::Concat => {
                arity(1, usize::MAX)?;
                (0..args.len()).try_for_each(|i| want(i, &bytes, "Bytes"))?;
                Ok(Type::Bytes)
            }
            Func::Any | Func::All => {
                arity(1, 1)?;
                want(0, &|t| *t == Type::Bool, "Bool")?;
                Ok(Type::Bool)
            }
            Func::LookupJsonString => {
                arity(2, usize::MAX)?;
                want(0, &bytes, "Bytes")?;
                for (i, (a, a_at)) in args.iter().enumerate().skip(1) {
                    match a.node {
                        Node::Bytes(_) => {}
                        Node::Int(n) if n >= 0 => {}
                        _ => return Err(self.err_at(
                            *a_at,
                            format!(
                                "argument {} of {name}() must be a string key or an array index",
                                i + 1
                            ),
                        )),
                    }
                }
                Ok(Type::Bytes)
            }
            Func::UrlDecode => {
                arity(1, 2)?;
                want(0, &bytes, "Bytes")?;
                if args.len() == 2 {
                    literal(1)?;
                    if let (
                        Arg {
                            node: Node::Bytes(opts),
                            ..
                        },
                        a_at,
                    ) = &args[1]
                        && opts.iter().any(|c| *c != b'r')
                    {
                        return Err(self.err_at(
                            *a_at,
                            "url_decode() options may only contain `r` (recursive)",
                        ));
                    }
                }
                Ok(Type::Bytes)
            }
            Func::ToString => {
                arity(1, 1)?;
                want(
                    0,
                    &|t| matches!(t, Type::Int | Type::Bool | Type::Ip | Type::Bytes),
                    "Int, Bool, IP or Bytes",
                )?;
                Ok(Type::Bytes)
            }
            Func::RegexReplace => {
                arity(3, 3)?;
                want(0, &bytes, "Bytes")?;
                literal(1)?;
                literal(2)?;
                if let (
                    Arg {
                        node: Node::Bytes(re),
                        ..
                    },
                    a_at,
                ) = &args[1]
                {
                    let re = std::str::from_utf8(re)
                        .map_err(|_| self.err_at(*a_at, "regular expression is not valid UTF-8"))?;
                    regex::bytes::Regex::new(re).map_err(|e| {
                        self.err_at(*a_at, format!("invalid regular expression: {e}"))
                    })?;
                }
                Ok(Type::Bytes)
            }
            Func::WildcardReplace => {
                arity(3, 4)?;
                want(0, &bytes, "Bytes")?;
                literal(1)?;
                literal(2)?;
                if args.len() == 4 {
                    literal(3)?;
                    if let (
                        Arg {
                            node: Node::Bytes(flags),
                            ..
                        },
                        a_at,
                    ) = &args[3]
                        && flags.iter().any(|c| *c != b's')
                    {
                        return Err(self.err_at(
                            *a_at,
                            "wildcard_replace() flags may only contain `s` (case-sensitive)",
                        ));
                    }
                }
                Ok(Type::Bytes)
            }
        }
    }
}

pub(crate) fn full_len(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}
