//! The typed syntax tree the parser produces. It is checked against the
//! scheme already, so the compiler never meets an ill-typed node.

use std::fmt;
use std::net::IpAddr;

use super::scheme::{Field, Func, Type};

#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Field(Field),
    /// Literal arguments of functions.
    Bytes(Vec<u8>),
    Int(i64),
    /// `array[i]` or `map["key"]`.
    Index(Box<Node>, IndexKey),
    /// `array[*]`: stands for each element inside the enclosing `any`/`all`.
    Expand(Box<Node>),
    Call(Func, Vec<Arg>),
    Compare(Box<Node>, Rhs),
    Not(Box<Node>),
    And(Vec<Node>),
    Xor(Vec<Node>),
    Or(Vec<Node>),
}

/// A function argument with its checked type (some functions accept several).
#[derive(Debug, Clone, PartialEq)]
pub struct Arg {
    pub node: Node,
    pub ty: Type,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexKey {
    Pos(usize),
    Key(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ord {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Ord {
    pub fn holds(self, o: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        match self {
            Ord::Eq => o == Equal,
            Ord::Ne => o != Equal,
            Ord::Lt => o == Less,
            Ord::Le => o != Greater,
            Ord::Gt => o == Greater,
            Ord::Ge => o != Less,
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            Ord::Eq => "eq",
            Ord::Ne => "ne",
            Ord::Lt => "lt",
            Ord::Le => "le",
            Ord::Gt => "gt",
            Ord::Ge => "ge",
        }
    }
}

/// An item of an IP set: a single address is a full-length CIDR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpItem {
    Cidr(IpAddr, u8),
    Range(IpAddr, IpAddr),
}

/// The right-hand side of a comparison, already typed by the left-hand side.
#[derive(Debug, Clone, PartialEq)]
pub enum Rhs {
    Bytes(Ord, Vec<u8>),
    Contains(Vec<u8>),
    Matches(String),
    Wildcard {
        pattern: Vec<u8>,
        strict: bool,
    },
    BytesIn(Vec<Vec<u8>>),
    Int(Ord, i64),
    /// Inclusive ranges; a single number is `n..n`.
    IntIn(Vec<(i64, i64)>),
    Ip(Ord, IpAddr),
    IpIn(Vec<IpItem>),
    Bool(Ord, bool),
}

fn write_bytes(f: &mut fmt::Formatter<'_>, b: &[u8]) -> fmt::Result {
    f.write_str("\"")?;
    for &c in b {
        match c {
            b'"' => f.write_str("\\\"")?,
            b'\\' => f.write_str("\\\\")?,
            0x20..=0x7e => write!(f, "{}", c as char)?,
            _ => write!(f, "\\x{c:02x}")?,
        }
    }
    f.write_str("\"")
}

fn write_ip_item(f: &mut fmt::Formatter<'_>, item: &IpItem) -> fmt::Result {
    match item {
        IpItem::Cidr(ip, len) => write!(f, "{ip}/{len}"),
        IpItem::Range(a, b) => write!(f, "{a}..{b}"),
    }
}

/// Prints the expression back in the language (fully parenthesised), so
/// traces can show it and tests can round-trip generated trees.
impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |f: &mut fmt::Formatter<'_>, items: &[Node], op: &str| -> fmt::Result {
            f.write_str("(")?;
            for (i, n) in items.iter().enumerate() {
                if i > 0 {
                    write!(f, " {op} ")?;
                }
                write!(f, "{n}")?;
            }
            f.write_str(")")
        };
        match self {
            Node::And(items) if items.is_empty() => f.write_str("true"),
            Node::Or(items) if items.is_empty() => f.write_str("false"),
            Node::Field(field) => f.write_str(field.name()),
            Node::Bytes(b) => write_bytes(f, b),
            Node::Int(i) => write!(f, "{i}"),
            Node::Index(n, IndexKey::Pos(i)) => write!(f, "{n}[{i}]"),
            Node::Index(n, IndexKey::Key(k)) => {
                write!(f, "{n}[")?;
                write_bytes(f, k.as_bytes())?;
                f.write_str("]")
            }
            Node::Expand(n) => write!(f, "{n}[*]"),
            Node::Call(func, args) => {
                write!(f, "{}(", func.name())?;
                for (i, a) in args.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{}", a.node)?;
                }
                f.write_str(")")
            }
            Node::Compare(lhs, rhs) => {
                write!(f, "{lhs} ")?;
                match rhs {
                    Rhs::Bytes(op, b) => {
                        write!(f, "{} ", op.symbol())?;
                        write_bytes(f, b)
                    }
                    Rhs::Contains(b) => {
                        f.write_str("contains ")?;
                        write_bytes(f, b)
                    }
                    Rhs::Matches(re) => write!(f, "matches r###\"{re}\"###"),
                    Rhs::Wildcard { pattern, strict } => {
                        f.write_str(if *strict {
                            "strict wildcard "
                        } else {
                            "wildcard "
                        })?;
                        write_bytes(f, pattern)
                    }
                    Rhs::BytesIn(set) => {
                        f.write_str("in {")?;
                        for b in set {
                            f.write_str(" ")?;
                            write_bytes(f, b)?;
                        }
                        f.write_str(" }")
                    }
                    Rhs::Int(op, i) => write!(f, "{} {i}", op.symbol()),
                    Rhs::IntIn(set) => {
                        f.write_str("in {")?;
                        for (a, b) in set {
                            if a == b {
                                write!(f, " {a}")?;
                            } else {
                                write!(f, " {a}..{b}")?;
                            }
                        }
                        f.write_str(" }")
                    }
                    Rhs::Ip(op, ip) => write!(f, "{} {ip}", op.symbol()),
                    Rhs::IpIn(set) => {
                        f.write_str("in {")?;
                        for item in set {
                            f.write_str(" ")?;
                            write_ip_item(f, item)?;
                        }
                        f.write_str(" }")
                    }
                    Rhs::Bool(op, b) => write!(f, "{} {b}", op.symbol()),
                }
            }
            Node::Not(n) => write!(f, "not ({n})"),
            Node::And(items) => join(f, items, "and"),
            Node::Xor(items) => join(f, items, "xor"),
            Node::Or(items) => join(f, items, "or"),
        }
    }
}

impl Node {
    /// The fields (with their index, e.g. `http.request.headers["x"]`) the
    /// expression reads, for traces; in first-use order, without repeats.
    pub fn referenced(&self, out: &mut Vec<(Field, Option<IndexKey>)>) {
        let mut push = |item: (Field, Option<IndexKey>)| {
            if !out.contains(&item) {
                out.push(item);
            }
        };
        match self {
            Node::Field(field) => push((*field, None)),
            Node::Index(inner, key) => match inner.as_ref() {
                Node::Field(field) => push((*field, Some(key.clone()))),
                other => other.referenced(out),
            },
            Node::Expand(n) | Node::Not(n) | Node::Compare(n, _) => n.referenced(out),
            Node::Call(_, args) => args.iter().for_each(|a| a.node.referenced(out)),
            Node::And(v) | Node::Xor(v) | Node::Or(v) => v.iter().for_each(|n| n.referenced(out)),
            Node::Bytes(_) | Node::Int(_) => {}
        }
    }
}
