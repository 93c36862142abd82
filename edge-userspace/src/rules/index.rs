//! Per-phase index of rules by the literal they require: a rule whose filter
//! is, or has a top-level conjunct, `field eq "x"` or `field in {"x" "y"}` on
//! a request field read without copying (host, method, path, …) can only
//! match requests whose field is one of those literals. Redirect, origin and
//! many firewall rules look like this, so one hash lookup per indexed field
//! replaces evaluating every such rule; rules without a guard are evaluated
//! as before. Candidates come out in rule order, so first-match, skip and
//! terminate semantics do not change.

use std::collections::HashMap;

use foldhash::fast::RandomState;

use super::ast::{Node, Ord, Rhs};
use super::compiled::CompiledRule;
use super::context::Ctx;
use super::scheme::Field;

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

/// The literals a rule's filter requires of one field, if it has such a conjunct.
fn guard(node: &Node) -> Option<(Field, Vec<&[u8]>)> {
    match node {
        Node::Compare(lhs, rhs) => match (lhs.as_ref(), rhs) {
            (Node::Field(f), Rhs::Bytes(Ord::Eq, lit)) if INDEXABLE.contains(f) => {
                Some((*f, vec![lit.as_slice()]))
            }
            (Node::Field(f), Rhs::BytesIn(set)) if INDEXABLE.contains(f) => {
                Some((*f, set.iter().map(Vec::as_slice).collect()))
            }
            _ => None,
        },
        Node::And(items) => items.iter().find_map(guard),
        _ => None,
    }
}

#[derive(Debug)]
struct FieldTable {
    field: Field,
    /// Bit `n` is set when some literal is `n` bytes long (bit 63: 63 or
    /// more): most requests match no literal, and most of those are told
    /// so by their length without hashing.
    lengths: u64,
    /// Literal -> positions (ascending) of the rules guarded by it.
    by_value: HashMap<Box<[u8]>, Box<[u32]>, RandomState>,
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
        let mut tables = Vec::new();
        for field in INDEXABLE {
            let guarded = guards.iter().flatten().filter(|(f, _)| *f == field);
            if guarded.count() < MIN_GUARDED {
                continue;
            }
            let mut by_value: HashMap<Box<[u8]>, Vec<u32>, RandomState> = HashMap::default();
            for (pos, g) in guards.iter().enumerate() {
                let Some((f, lits)) = g else { continue };
                if *f != field {
                    continue;
                }
                for lit in lits {
                    let list = by_value.entry(Box::from(*lit)).or_default();
                    // `in {"a" "a"}` names a literal twice; list the rule once.
                    if list.last() != Some(&(pos as u32)) {
                        list.push(pos as u32);
                    }
                }
            }
            tables.push(FieldTable {
                field,
                lengths: by_value.keys().fold(0, |m, k| m | length_bit(k.len())),
                by_value: by_value
                    .into_iter()
                    .map(|(k, v)| (k, v.into_boxed_slice()))
                    .collect(),
            });
        }
        let indexed = |g: &Option<(Field, Vec<&[u8]>)>| {
            g.as_ref()
                .is_some_and(|(f, _)| tables.iter().any(|t| t.field == *f))
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
        let mut lists = [&[][..]; INDEXABLE.len() + 1];
        lists[0] = &self.always;
        let mut n = 1;
        for t in self.tables.iter() {
            let value = ctx.borrowed_bytes(t.field).unwrap_or_default();
            if t.lengths & length_bit(value.len()) == 0 {
                continue;
            }
            if let Some(list) = t.by_value.get(value) {
                lists[n] = list;
                n += 1;
            }
        }
        Candidates { lists, n }
    }
}

/// A merge of ascending position lists; each rule is in at most one of them.
pub struct Candidates<'i> {
    lists: [&'i [u32]; INDEXABLE.len() + 1],
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
