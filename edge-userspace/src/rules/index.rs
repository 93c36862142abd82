//! Per-phase index of rules by the literal they require: a rule whose filter
//! is, or has a top-level conjunct, `field eq "x"` or `field in {"x" "y"}` on
//! a request field read without copying (host, method, path, …) or on the
//! first value of a request header (`http.request.headers["x"][0]`) can only
//! match requests whose value is one of those literals; likewise
//! `http.response.code eq 404` in response phases. A conjunct
//! `starts_with(field, "/x/")` or `field matches "^/x/..."` requires a literal
//! prefix instead, and `field wildcard "/x/*"` (or `lower(field) wildcard
//! ...`) one in any ASCII case: such rules are listed under the first bytes
//! every prefix of their table has (lower-cased in the second kind).
//! `any(http.request.headers["x"][*] ...)` needs the header to be present.
//! And `field contains "x"` needs its substring: one multi-substring search
//! per request over the field (a user agent against a phase's bot names)
//! tells whether any of a table's rules can match. Redirect, origin, header-routing, URI-rewrite,
//! response-header and many firewall rules look like this, so one hash lookup
//! per indexed field replaces evaluating every such rule; rules without a
//! guard are evaluated as before. Candidates come out in rule order, so
//! first-match, skip and terminate semantics do not change.

use std::borrow::Cow;
use std::collections::HashMap;

use aho_corasick::AhoCorasick;
use foldhash::fast::RandomState;

use super::ast::{IndexKey, Node, Ord, Rhs};
use super::compiled::CompiledRule;
use super::context::{Ctx, HeaderKey, HeaderSource, Val};
use super::prefilter::anchored_prefix;
use super::scheme::{Field, Func};
use super::wildcard;

/// Fields a guard may test: their value is borrowed straight from the request
/// (`Ctx::borrowed_bytes`), so the lookup costs no allocation.
pub(crate) const INDEXABLE: [Field; 7] = [
    Field::Host,
    Field::Method,
    Field::Uri,
    Field::UriPath,
    Field::UriQuery,
    Field::UserAgent,
    Field::Referer,
];

/// Below this many guarded rules on a field, evaluating them (a length
/// comparison each, mostly) is cheaper than hashing the field value.
const MIN_GUARDED: usize = 3;

/// At most this many indexed fields per phase (the ones guarding the most
/// rules), so the per-request merge stays on the stack.
const MAX_TABLES: usize = 4;

/// Shorter prefixes guard nothing: every path starts with `/`, and one short
/// prefix would shorten the key of its whole table.
const MIN_PREFIX: usize = 2;

/// Case-folded prefix keys are at most this long, so a request's key is
/// lower-cased on the stack.
const MAX_FOLDED_PREFIX: usize = 32;

/// What a guard tests: a borrowed request field (its whole value, or its
/// first bytes), the first value of a request header (`""` when absent, as
/// `headers["x"][0]` evaluates), or the response code (its literals keyed by
/// their big-endian bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
enum GuardKey {
    Field(Field),
    Prefix(Field),
    /// A prefix in any ASCII case (the `wildcard` operator's default).
    FoldedPrefix(Field),
    Header(HeaderKey),
    /// The substrings a borrowed request field must contain.
    Substring(Field),
    /// Whether a request header is present: `any(headers["x"][*] ...)`
    /// holds for no element of an empty array. Its one literal is `PRESENT`.
    HeaderPresent(HeaderKey),
    ResponseCode,
}

impl GuardKey {
    /// The request's value, looked up in the table by `find`.
    fn with_value<R>(&self, ctx: &Ctx<'_>, find: impl FnOnce(&[u8]) -> R) -> R {
        match self {
            GuardKey::Field(f)
            | GuardKey::Prefix(f)
            | GuardKey::FoldedPrefix(f)
            | GuardKey::Substring(f) => find(ctx.borrowed_bytes(*f).unwrap_or_default()),
            GuardKey::Header(name) => find(
                ctx.header_first(HeaderSource::Request, name)
                    .0
                    .map_or(b"", |v| v.as_bytes()),
            ),
            GuardKey::HeaderPresent(name) => {
                let present = ctx.header_first(HeaderSource::Request, name).0.is_some();
                find(if present { PRESENT } else { b"" })
            }
            GuardKey::ResponseCode => match ctx.field(Field::ResponseCode) {
                Val::Int(code) => find(&code.to_be_bytes()),
                _ => find(b""),
            },
        }
    }
}

/// The value a `HeaderPresent` guard reads when the header is there.
const PRESENT: &[u8] = b"present";

/// A request header's name as the evaluator reads `headers["Name"]`:
/// lower-cased; an invalid name reads an empty array, which no guard needs
/// to cover.
fn header_key(name: &str) -> Option<HeaderKey> {
    http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
        .ok()
        .map(HeaderKey::new)
}

/// `any(http.request.headers["x"][*] <op> ...)`: only a request that has
/// the header can satisfy it.
fn presence_guard(node: &Node) -> Option<(GuardKey, Vec<Cow<'_, [u8]>>)> {
    let Node::Call(Func::Any, args) = node else {
        return None;
    };
    let Node::Compare(lhs, _) = &args.first()?.node else {
        return None;
    };
    let Node::Expand(array) = lhs.as_ref() else {
        return None;
    };
    let Node::Index(map, IndexKey::Key(name)) = array.as_ref() else {
        return None;
    };
    if !matches!(map.as_ref(), Node::Field(Field::Headers)) {
        return None;
    }
    let key = GuardKey::HeaderPresent(header_key(name)?);
    Some((key, vec![Cow::Borrowed(PRESENT)]))
}

/// `field contains "x"` on a borrowed request field.
fn substring_guard(node: &Node) -> Option<(GuardKey, Vec<Cow<'_, [u8]>>)> {
    match node {
        Node::Compare(lhs, Rhs::Contains(needle)) => match lhs.as_ref() {
            Node::Field(f) if INDEXABLE.contains(f) => Some((
                GuardKey::Substring(*f),
                vec![Cow::Borrowed(needle.as_slice())],
            )),
            _ => None,
        },
        _ => None,
    }
}

/// The key of a comparison's left side, if it is one a guard may test.
fn guard_key(lhs: &Node) -> Option<GuardKey> {
    match lhs {
        Node::Field(f) if INDEXABLE.contains(f) => Some(GuardKey::Field(*f)),
        Node::Index(map, IndexKey::Pos(0)) => match map.as_ref() {
            Node::Index(field, IndexKey::Key(name))
                if matches!(field.as_ref(), Node::Field(Field::Headers)) =>
            {
                header_key(name).map(GuardKey::Header)
            }
            _ => None,
        },
        Node::Field(Field::ResponseCode) => Some(GuardKey::ResponseCode),
        _ => None,
    }
}

/// The literal prefix a conjunct requires of a borrowed request field:
/// `starts_with(field, "lit")`, a regex anchored on a literal (the same
/// prefix `prefilter::Pattern` checks before the regex runs), or the text
/// before a wildcard's first `*` (in any ASCII case unless the wildcard is
/// strict and reads the field as it is; `lower` only folds ASCII too).
fn prefix_guard(node: &Node) -> Option<(GuardKey, Vec<Cow<'_, [u8]>>)> {
    let (key, prefix) = match node {
        Node::Call(Func::StartsWith, args) => match (&args.first()?.node, &args.get(1)?.node) {
            (Node::Field(f), Node::Bytes(lit)) => {
                (GuardKey::Prefix(*f), Cow::Borrowed(lit.as_slice()))
            }
            _ => return None,
        },
        Node::Compare(lhs, Rhs::Matches(re)) => match lhs.as_ref() {
            Node::Field(f) => (
                GuardKey::Prefix(*f),
                Cow::Owned(anchored_prefix(re).into_vec()),
            ),
            _ => return None,
        },
        Node::Compare(lhs, Rhs::Wildcard { pattern, strict }) => {
            let (field, lowered) = match lhs.as_ref() {
                Node::Field(f) => (*f, false),
                Node::Call(Func::Lower, args) => match &args.first()?.node {
                    Node::Field(f) => (*f, true),
                    _ => return None,
                },
                _ => return None,
            };
            let mut head = wildcard::segments(pattern).swap_remove(0);
            if *strict && !lowered {
                (GuardKey::Prefix(field), Cow::Owned(head))
            } else {
                head.truncate(MAX_FOLDED_PREFIX);
                head.make_ascii_lowercase();
                (GuardKey::FoldedPrefix(field), Cow::Owned(head))
            }
        }
        _ => return None,
    };
    let (GuardKey::Prefix(field) | GuardKey::FoldedPrefix(field)) = key else {
        return None;
    };
    (INDEXABLE.contains(&field) && prefix.len() >= MIN_PREFIX).then(|| (key, vec![prefix]))
}

/// The literals a rule's filter requires of one field, if it has such a conjunct.
fn guard(node: &Node) -> Option<(GuardKey, Vec<Cow<'_, [u8]>>)> {
    if let Some(g) = prefix_guard(node)
        .or_else(|| presence_guard(node))
        .or_else(|| substring_guard(node))
    {
        return Some(g);
    }
    match node {
        Node::Compare(lhs, rhs) => {
            let code = |i: i64| Cow::Owned(i.to_be_bytes().to_vec());
            let lits = match rhs {
                Rhs::Bytes(Ord::Eq, lit) => vec![Cow::Borrowed(lit.as_slice())],
                Rhs::BytesIn(set) => set.iter().map(|l| Cow::Borrowed(l.as_slice())).collect(),
                Rhs::Int(Ord::Eq, i) => vec![code(*i)],
                // Single numbers only: a range would list every number in it.
                Rhs::IntIn(ranges) if ranges.iter().all(|(a, b)| a == b) => {
                    ranges.iter().map(|(a, _)| code(*a)).collect()
                }
                _ => return None,
            };
            let key = guard_key(lhs)?;
            // Bytes literals guard bytes fields, numbers the response code.
            let numeric = matches!(rhs, Rhs::Int(..) | Rhs::IntIn(_));
            (numeric == (key == GuardKey::ResponseCode)).then_some((key, lits))
        }
        Node::And(items) => items.iter().find_map(guard),
        _ => None,
    }
}

#[derive(Debug)]
struct FieldTable {
    key: GuardKey,
    /// Bit `n` is set when some literal is `n` bytes long (bit 63: 63 or
    /// more): most requests match no literal, and most of those are told
    /// so by their length without hashing.
    lengths: u64,
    /// Prefix tables: the length of their keys, the shortest prefix of the
    /// table (each prefix is listed under its first `prefix_len` bytes).
    prefix_len: Option<usize>,
    /// Keys are lower-cased, and so is the request's before the lookup.
    folded: bool,
    /// Literal (or its first `prefix_len` bytes) -> positions (ascending) of
    /// the rules guarded by it.
    by_value: HashMap<Box<[u8]>, Box<[u32]>, RandomState>,
    /// Substring tables: a search for all of the table's substrings at once,
    /// and the positions (ascending) of all its rules. Most values contain
    /// none of them; when one does, its rules are evaluated as usual.
    substrings: Option<(AhoCorasick, Box<[u32]>)>,
}

impl FieldTable {
    /// The rules this value can satisfy the guard of.
    #[inline]
    fn lookup(&self, value: &[u8]) -> Option<&[u32]> {
        if let Some((finder, rules)) = &self.substrings {
            return finder.is_match(value).then_some(&rules[..]);
        }
        let key = match self.prefix_len {
            // A value shorter than every prefix starts with none of them.
            Some(n) => value.get(..n)?,
            None if self.lengths & length_bit(value.len()) == 0 => return None,
            None => value,
        };
        if self.folded {
            let mut buf = [0; MAX_FOLDED_PREFIX];
            let folded = buf.get_mut(..key.len())?;
            folded.copy_from_slice(key);
            folded.make_ascii_lowercase();
            return self.by_value.get(&*folded).map(|l| &l[..]);
        }
        self.by_value.get(key).map(|l| &l[..])
    }
}

fn length_bit(len: usize) -> u64 {
    1 << len.min(63)
}

/// The index of one phase's rules.
#[derive(Debug, Default)]
pub struct RuleIndex {
    /// Positions (ascending) of enabled rules evaluated on every request.
    always: Box<[u32]>,
    tables: Box<[FieldTable]>,
}

impl RuleIndex {
    pub(crate) fn new(rules: &[CompiledRule]) -> Self {
        let guards: Vec<_> = rules
            .iter()
            .map(|r| guard(r.filter.ast()).filter(|_| r.enabled))
            .collect();
        // Keys in first-use order with their rule counts; the busiest are indexed.
        let mut keys: Vec<(&GuardKey, usize)> = Vec::new();
        for (key, _) in guards.iter().flatten() {
            match keys.iter_mut().find(|(k, _)| *k == key) {
                Some((_, n)) => *n += 1,
                None => keys.push((key, 1)),
            }
        }
        keys.retain(|(_, n)| *n >= MIN_GUARDED);
        keys.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        keys.truncate(MAX_TABLES);
        let mut tables = Vec::new();
        for (key, _) in keys {
            let folded = matches!(key, GuardKey::FoldedPrefix(_));
            let prefix_len = (folded || matches!(key, GuardKey::Prefix(_))).then(|| {
                guards
                    .iter()
                    .flatten()
                    .filter(|(k, _)| k == key)
                    .flat_map(|(_, lits)| lits.iter().map(|l| l.len()))
                    .min()
                    .unwrap_or(0)
            });
            let mut by_value: HashMap<Box<[u8]>, Vec<u32>, RandomState> = HashMap::default();
            for (pos, g) in guards.iter().enumerate() {
                let Some((k, lits)) = g else { continue };
                if k != key {
                    continue;
                }
                for lit in lits {
                    let lit = &lit[..prefix_len.unwrap_or(lit.len())];
                    let list = by_value.entry(Box::from(lit)).or_default();
                    // `in {"a" "a"}` names a literal twice; list the rule once.
                    if list.last() != Some(&(pos as u32)) {
                        list.push(pos as u32);
                    }
                }
            }
            let substrings = if matches!(key, GuardKey::Substring(_)) {
                // Too many substrings for the searcher: the rules stay unindexed.
                let Ok(finder) = AhoCorasick::new(by_value.keys()) else {
                    continue;
                };
                let mut rules: Vec<u32> = by_value.drain().flat_map(|(_, v)| v).collect();
                rules.sort_unstable();
                rules.dedup();
                Some((finder, rules.into_boxed_slice()))
            } else {
                None
            };
            tables.push(FieldTable {
                key: key.clone(),
                lengths: by_value.keys().fold(0, |m, k| m | length_bit(k.len())),
                prefix_len,
                folded,
                by_value: by_value
                    .into_iter()
                    .map(|(k, v)| (k, v.into_boxed_slice()))
                    .collect(),
                substrings,
            });
        }
        let indexed = |g: &Option<(GuardKey, Vec<Cow<'_, [u8]>>)>| {
            g.as_ref()
                .is_some_and(|(k, _)| tables.iter().any(|t| t.key == *k))
        };
        let always = rules
            .iter()
            .zip(&guards)
            .enumerate()
            .filter(|(_, (r, g))| r.enabled && !indexed(g))
            .map(|(pos, _)| pos as u32)
            .collect();
        RuleIndex {
            always,
            tables: tables.into_boxed_slice(),
        }
    }

    /// Positions of the rules that can match this request, in rule order:
    /// every enabled rule except those whose guard literal differs from the
    /// request's field value.
    pub fn candidates<'i>(&'i self, ctx: &Ctx<'_>) -> Candidates<'i> {
        let mut lists = [&[][..]; MAX_TABLES + 1];
        lists[0] = &self.always;
        let mut n = 1;
        for t in self.tables.iter() {
            let found = t.key.with_value(ctx, |value| t.lookup(value));
            if let Some(list) = found {
                lists[n] = list;
                n += 1;
            }
        }
        Candidates { lists, n }
    }
}

/// A merge of ascending position lists; each rule is in at most one of them.
pub struct Candidates<'i> {
    lists: [&'i [u32]; MAX_TABLES + 1],
    n: usize,
}

impl Iterator for Candidates<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.n == 1 {
            // The common case: no guard matched, only unguarded rules remain.
            let (head, rest) = self.lists[0].split_first()?;
            self.lists[0] = rest;
            return Some(*head as usize);
        }
        let lists = &mut self.lists[..self.n];
        let (best, _) = lists
            .iter()
            .enumerate()
            .filter_map(|(i, l)| l.first().map(|p| (i, *p)))
            .min_by_key(|(_, p)| *p)?;
        let (head, rest) = lists[best].split_first()?;
        lists[best] = rest;
        Some(*head as usize)
    }
}
