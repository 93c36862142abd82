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

/// The last address of network `net`/`len` in a `width`-bit family.
fn last_address(net: u128, len: u8, width: u8) -> u128 {
    let host_bits = u32::from(width.saturating_sub(len));
    net | u128::MAX.checked_shr(128 - host_bits).unwrap_or(0)
}

#[derive(Debug, Clone)]
struct Family {
    /// (prefix length, sorted masked prefixes), longest first. Sets are
    /// small and configured by operators, so bisection beats hashing here.
    prefixes: Vec<(u8, Box<[u128]>)>,
    ranges: Vec<(u128, u128)>,
    /// Lowest and highest address any item covers: sets usually name a few
    /// networks and most clients are far from all of them, which one pair
    /// of comparisons tells (empty family: `lo > hi`).
    lo: u128,
    hi: u128,
}

impl Default for Family {
    fn default() -> Self {
        Family {
            prefixes: Vec::new(),
            ranges: Vec::new(),
            lo: u128::MAX,
            hi: 0,
        }
    }
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
        for (fam, map, width) in [(&mut set.v6, v6, 128), (&mut set.v4, v4, 32)] {
            for (&len, nets) in &map {
                for &net in nets {
                    fam.lo = fam.lo.min(net);
                    fam.hi = fam.hi.max(last_address(net, len, width));
                }
            }
            for &(a, b) in &fam.ranges {
                fam.lo = fam.lo.min(a);
                fam.hi = fam.hi.max(b);
            }
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
        if b < fam.lo || b > fam.hi {
            return false;
        }
        fam.prefixes
            .iter()
            .any(|(len, set)| set.binary_search(&mask(b, *len, width)).is_ok())
            || fam.ranges.iter().any(|&(lo, hi)| lo <= b && b <= hi)
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use proptest::prelude::*;

    use super::*;

    fn naive(ip: IpAddr, items: &[IpItem]) -> bool {
        let v = |ip: IpAddr| match ip.to_canonical() {
            IpAddr::V4(a) => (true, u128::from(u32::from(a))),
            IpAddr::V6(a) => (false, u128::from(a)),
        };
        let (v4, x) = v(ip);
        items.iter().any(|item| match *item {
            IpItem::Cidr(net, len) => {
                let (nv4, n) = v(net);
                let (width, len) = match (nv4, net.is_ipv4()) {
                    (true, true) => (32, len),
                    (true, false) => (32, len.saturating_sub(96)),
                    _ => (128, len),
                };
                nv4 == v4
                    && (0..len)
                        .all(|bit| (x >> (width - 1 - bit)) & 1 == (n >> (width - 1 - bit)) & 1)
            }
            IpItem::Range(a, b) => {
                let ((av4, a), (_, b)) = (v(a), v(b));
                av4 == v4 && a <= x && x <= b
            }
        })
    }

    /// Addresses near a few bases, so that items and probes meet.
    fn addr() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            (0u8..3, any::<u8>()).prop_map(|(c, d)| IpAddr::V4(Ipv4Addr::new(10, 0, c, d))),
            (0u16..3, any::<u16>())
                .prop_map(|(a, b)| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, a, 0, 0, 0, 0, b))),
            any::<u8>().prop_map(|d| IpAddr::V6(Ipv4Addr::new(10, 0, 1, d).to_ipv6_mapped())),
            Just(IpAddr::V4(Ipv4Addr::new(255, 255, 255, 255))),
            Just(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
        ]
    }

    fn item() -> impl Strategy<Value = IpItem> {
        prop_oneof![
            (addr(), 0u8..=128).prop_map(|(ip, len)| {
                let max = if ip.is_ipv4() { 32 } else { 128 };
                IpItem::Cidr(ip, len.min(max))
            }),
            (addr(), addr()).prop_map(|(a, b)| IpItem::Range(a, b)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// The bounds check and the per-length tables answer as a linear
        /// scan of the items does.
        #[test]
        fn contains_matches_a_scan(
            items in prop::collection::vec(item(), 0..5),
            probes in prop::collection::vec(addr(), 1..10),
        ) {
            let set = IpSet::new(&items);
            for ip in probes {
                prop_assert_eq!(set.contains(ip), naive(ip, &items), "{} in {:?}", ip, items);
            }
        }
    }
}
