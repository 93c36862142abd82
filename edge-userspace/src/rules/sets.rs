//! Sets for `in {...}`: hashed byte strings, sorted integer ranges, and IP
//! sets as per-prefix-length hash tables (longest-prefix lookup in at most
//! one probe per distinct prefix length) plus address ranges.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use super::ast::IpItem;

/// Inclusive integer ranges, sorted and merged, searched by bisection.
#[derive(Debug, Clone)]
pub struct IntSet(Box<[(i64, i64)]>);

impl IntSet {
    pub fn new(mut items: Vec<(i64, i64)>) -> Self {
        items.sort_unstable();
        let mut merged: Vec<(i64, i64)> = Vec::with_capacity(items.len());
        for (a, b) in items {
            match merged.last_mut() {
                Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        IntSet(merged.into_boxed_slice())
    }

    pub fn contains(&self, v: i64) -> bool {
        let i = self.0.partition_point(|&(a, _)| a <= v);
        i > 0 && v <= self.0[i - 1].1
    }
}

fn bits(ip: IpAddr) -> (bool, u128) {
    match ip.to_canonical() {
        IpAddr::V4(v4) => (true, u128::from(u32::from(v4))),
        IpAddr::V6(v6) => (false, u128::from(v6)),
    }
}

fn mask(v: u128, len: u8, width: u8) -> u128 {
    if len == 0 {
        0
    } else {
        v & (u128::MAX << (width - len)) & (u128::MAX >> (128 - u32::from(width)))
    }
}

#[derive(Debug, Clone, Default)]
struct Family {
    /// (prefix length, sorted masked prefixes), longest first. Sets are
    /// small and configured by operators, so bisection beats hashing here.
    prefixes: Vec<(u8, Box<[u128]>)>,
    ranges: Vec<(u128, u128)>,
}

#[derive(Debug, Clone, Default)]
pub struct IpSet {
    v4: Family,
    v6: Family,
}

impl IpSet {
    pub fn new(items: &[IpItem]) -> Self {
        let mut by_len: [HashMap<u8, HashSet<u128>>; 2] = Default::default();
        let mut set = IpSet::default();
        for item in items {
            match *item {
                IpItem::Cidr(ip, len) => {
                    let (v4, b) = bits(ip);
                    let width = if v4 { 32 } else { 128 };
                    // A v4-mapped v6 CIDR is canonicalised to v4.
                    let len = if v4 && !ip.is_ipv4() {
                        len.saturating_sub(96)
                    } else {
                        len
                    };
                    by_len[usize::from(v4)]
                        .entry(len)
                        .or_default()
                        .insert(mask(b, len, width));
                }
                IpItem::Range(a, b) => {
                    let ((v4, a), (_, b)) = (bits(a), bits(b));
                    if v4 { &mut set.v4 } else { &mut set.v6 }
                        .ranges
                        .push((a, b));
                }
            }
        }
        let [v6, v4] = by_len;
        for (fam, map) in [(&mut set.v6, v6), (&mut set.v4, v4)] {
            fam.prefixes = map
                .into_iter()
                .map(|(len, set)| {
                    let mut v: Vec<u128> = set.into_iter().collect();
                    v.sort_unstable();
                    (len, v.into_boxed_slice())
                })
                .collect();
            fam.prefixes
                .sort_unstable_by_key(|p| std::cmp::Reverse(p.0));
        }
        set
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let (v4, b) = bits(ip);
        let (fam, width) = if v4 { (&self.v4, 32) } else { (&self.v6, 128) };
        fam.prefixes
            .iter()
            .any(|(len, set)| set.binary_search(&mask(b, *len, width)).is_ok())
            || fam.ranges.iter().any(|&(lo, hi)| lo <= b && b <= hi)
    }
}
