//! The probe table behind [`super::Snapshot`]: hostname to stored outcome.
//!
//! At a million hostnames every lookup is a cache miss, so the layout is
//! chosen by what a hit reads: one byte per slot in a control array (1 MiB,
//! small enough to stay in the last-level cache and to be scanned without
//! touching a record) and then exactly one 64-byte record, aligned to its
//! cache line, holding the name to verify and the outcome side by side. A
//! probe that meets another name with another tag never reads its record.
//! The records sit on transparent huge pages where the kernel allows it, so
//! that the record's miss is not also a page walk.

use std::hash::BuildHasher;
use std::sync::Arc;

use foldhash::fast::RandomState;

use super::model::Chain;

/// What a record holds: errors live once in the snapshot's error list so
/// that the outcome takes 16 bytes.
#[derive(Clone)]
pub(super) enum Stored {
    Vacant,
    Chain(Arc<Chain>),
    Error(u32),
}

/// Names up to this many bytes live inside their record (the rest of the
/// line); longer ones in [`Index::long_names`], a second read that only
/// names longer than nearly every hostname in use pay.
const INLINE: usize = 47;

#[derive(Clone)]
#[repr(C, align(64))]
struct Record {
    outcome: Stored,
    len: u8,
    /// The name, or for longer names its offset in [`Index::long_names`].
    name: [u8; INLINE],
}

const _: () = assert!(std::mem::size_of::<Record>() == 64);

const VACANT: Record = Record {
    outcome: Stored::Vacant,
    len: 0,
    name: [0; INLINE],
};

/// Control byte of a vacant slot; a used slot holds its name's tag.
const EMPTY: u8 = 0;

/// Control bytes a probe tests at once, as one `u64`.
const GROUP: usize = 8;
const LSB: u64 = 0x0101_0101_0101_0101;
const MSB: u64 = 0x8080_8080_8080_8080;

/// The high bit of every byte of `x` that is zero. Exact up to the lowest
/// zero byte; a byte above it that is 1 may be flagged too (the borrow).
fn zero_bytes(x: u64) -> u64 {
    x.wrapping_sub(LSB) & !x & MSB
}

/// A name's tag: the low byte of its hash, never [`EMPTY`]. The slot comes
/// from the high bits (see [`Index::home`]), so the two are independent.
fn tag(hash: u64) -> u8 {
    (hash as u8).max(1)
}

/// Open addressing with linear probing, at most seven eighths full: with
/// the tags in their own array the load costs a few more control bytes per
/// probe (eight per step, on one line), not more records read.
pub(super) struct Index<S = RandomState> {
    /// One per record, then the first [`GROUP`] again, so that a probe near
    /// the end reads a whole group without wrapping.
    ctrl: Box<[u8]>,
    records: Box<[Record]>,
    long_names: String,
    /// Bytes of each name that are not part of the key (`*.` for wildcards).
    skip: usize,
    hasher: S,
}

impl<S: BuildHasher> Index<S> {
    pub(super) fn new(entries: Vec<(String, Stored)>, skip: usize, hasher: S) -> Index<S> {
        let slots = (entries.len() * 8 / 7 + 1).max(GROUP);
        let mut index = Index {
            ctrl: huge_page_table(slots + GROUP, EMPTY),
            records: huge_page_table(slots, VACANT),
            long_names: String::new(),
            skip,
            hasher,
        };
        for (name, outcome) in entries {
            let hash = index.hasher.hash_one(&name.as_bytes()[skip..]);
            let mut record = Record {
                outcome,
                len: u8::try_from(name.len()).expect("hostnames are at most 255 bytes"),
                name: [0; INLINE],
            };
            if name.len() <= INLINE {
                record.name[..name.len()].copy_from_slice(name.as_bytes());
            } else {
                let offset = u32::try_from(index.long_names.len()).expect("under 4 GiB of names");
                record.name[..4].copy_from_slice(&offset.to_le_bytes());
                index.long_names.push_str(&name);
            }
            let mut i = index.home(hash);
            while index.ctrl[i] != EMPTY {
                i = index.next(i);
            }
            index.ctrl[i] = tag(hash);
            if i < GROUP {
                index.ctrl[slots + i] = tag(hash);
            }
            index.records[i] = record;
        }
        index.long_names.shrink_to_fit();
        index
    }

    /// Multiply-shift: maps the hash onto any table size, not just powers of two.
    fn home(&self, hash: u64) -> usize {
        ((u128::from(hash) * self.records.len() as u128) >> 64) as usize
    }

    fn next(&self, i: usize) -> usize {
        if i + 1 == self.records.len() {
            0
        } else {
            i + 1
        }
    }

    fn name<'a>(&'a self, record: &'a Record) -> &'a [u8] {
        let len = usize::from(record.len);
        if len <= INLINE {
            &record.name[..len]
        } else {
            let offset = u32::from_le_bytes(record.name[..4].try_into().expect("4 bytes")) as usize;
            &self.long_names.as_bytes()[offset..offset + len]
        }
    }

    pub(super) fn get(&self, key: &[u8]) -> Option<&Stored> {
        let hash = self.hasher.hash_one(key);
        let tag = tag(hash);
        let slots = self.records.len();
        let mut pos = self.home(hash);
        prefetch(&self.records[pos]);
        // At most seven eighths full, so an empty slot ends every probe.
        loop {
            let group = &self.ctrl[pos..pos + GROUP];
            let group = u64::from_le_bytes(group.try_into().expect("a whole group"));
            let empty = zero_bytes(group);
            // The slots before the first empty one: the probe ends there.
            let before = match empty {
                0 => u64::MAX,
                _ => (empty.isolate_lowest_one() >> 7) - 1,
            };
            let mut matches = zero_bytes(group ^ (LSB * u64::from(tag))) & before;
            while matches != 0 {
                let mut i = pos + matches.trailing_zeros() as usize / 8;
                matches &= matches - 1;
                if i >= slots {
                    i -= slots;
                }
                // The control byte again: `zero_bytes` may flag a neighbour.
                if self.ctrl[i] == tag {
                    let record = &self.records[i];
                    if usize::from(record.len) == key.len() + self.skip
                        && &self.name(record)[self.skip..] == key
                    {
                        return Some(&record.outcome);
                    }
                }
            }
            if empty != 0 {
                return None;
            }
            pos += GROUP;
            if pos >= slots {
                pos -= slots;
            }
        }
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&str, &Stored)> + '_ {
        self.ctrl
            .iter()
            .zip(self.records.iter())
            .filter(|&(&ctrl, _)| ctrl != EMPTY)
            .map(|(_, r)| {
                let name = std::str::from_utf8(self.name(r)).expect("names are stored from str");
                (name, &r.outcome)
            })
    }
}

/// Starts loading the home slot's record while the control bytes are read:
/// for a name in its home slot, the two reads overlap.
#[inline(always)]
fn prefetch(record: &Record) {
    // SAFETY: SSE is part of x86-64, and a prefetch only hints the cache:
    // it never faults and changes no memory.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
            std::ptr::from_ref(record).cast(),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = record;
}

/// Size of a transparent huge page on x86-64 and aarch64 (4 KiB base pages).
const HUGE_PAGE: usize = 2 << 20;

/// `len` copies of `fill` in one allocation whose interior the kernel is
/// asked to back with transparent huge pages (`MADV_HUGEPAGE`; the machine's
/// policy is usually `madvise`, so without the call there are none). The
/// advice is given before the first write, while no page is mapped yet, so
/// the pages are huge from the first fault on instead of waiting for
/// khugepaged. Tables below one huge page are left alone.
fn huge_page_table<T: Clone>(len: usize, fill: T) -> Box<[T]> {
    let mut table: Vec<T> = Vec::with_capacity(len);
    let bytes = len * std::mem::size_of::<T>();
    if bytes >= 2 * HUGE_PAGE {
        let start = table.as_ptr() as usize;
        let first = start.next_multiple_of(HUGE_PAGE);
        let end = (start + bytes) / HUGE_PAGE * HUGE_PAGE;
        if end > first {
            // SAFETY: [first, end) lies inside the allocation `table` owns
            // and is page-aligned; MADV_HUGEPAGE changes how the kernel backs
            // the range, never its contents or its validity. A refusal
            // (THP disabled, old kernel) leaves ordinary pages, which is fine.
            unsafe {
                libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE);
            }
        }
    }
    table.resize(len, fill);
    table.into_boxed_slice()
}

#[cfg(test)]
mod tests {
    use std::hash::{BuildHasherDefault, Hasher};

    use super::*;

    /// Every name has the same home slot and one of two tags that differ
    /// in their last bit (by the name's length), so each lookup walks the
    /// whole cluster, meets the neighbours `zero_bytes` flags by mistake,
    /// and tells names apart by their bytes.
    #[derive(Default)]
    struct Colliding(usize);

    impl Hasher for Colliding {
        fn finish(&self) -> u64 {
            0xdead_beef_dead_be02 | (self.0 as u64 & 1)
        }

        fn write(&mut self, bytes: &[u8]) {
            self.0 += bytes.len();
        }
    }

    fn chain_id(stored: Option<&Stored>) -> Option<u32> {
        match stored? {
            Stored::Error(i) => Some(*i),
            Stored::Vacant | Stored::Chain(_) => None,
        }
    }

    fn names() -> Vec<String> {
        let mut names: Vec<String> = (0..200).map(|i| format!("h{i}.example.com")).collect();
        // Both sides of the inline limit, and the longest hostname there is.
        names.push("a".repeat(INLINE));
        names.push("b".repeat(INLINE + 1));
        names.push(format!("{}.example.com", "c".repeat(60)));
        names.push(format!("{}.example.com", "d".repeat(60)));
        names.push("e".repeat(253));
        names
    }

    fn check<S: BuildHasher>(index: &Index<S>, names: &[String]) {
        for (i, name) in names.iter().enumerate() {
            assert_eq!(
                chain_id(index.get(name.as_bytes())),
                Some(i as u32),
                "{name}"
            );
        }
        // Same length, one byte off; a prefix; a longer name: all absent.
        for name in names {
            let mut near = name.clone().into_bytes();
            near[0] = b'z';
            assert!(index.get(&near).is_none(), "{name}");
            assert!(index.get(&name.as_bytes()[1..]).is_none(), "{name}");
            assert!(index.get(format!("{name}x").as_bytes()).is_none(), "{name}");
        }
        let mut listed: Vec<&str> = index.iter().map(|(name, _)| name).collect();
        listed.sort_unstable();
        let mut want: Vec<&str> = names.iter().map(String::as_str).collect();
        want.sort_unstable();
        assert_eq!(listed, want);
    }

    fn entries(names: &[String]) -> Vec<(String, Stored)> {
        names
            .iter()
            .enumerate()
            .map(|(i, name)| (name.clone(), Stored::Error(i as u32)))
            .collect()
    }

    #[test]
    fn every_name_found_and_near_misses_absent() {
        let names = names();
        check(
            &Index::new(entries(&names), 0, RandomState::default()),
            &names,
        );
    }

    #[test]
    fn names_sharing_slot_and_tag_are_told_apart_by_their_bytes() {
        let names = names();
        let index = Index::new(
            entries(&names),
            0,
            BuildHasherDefault::<Colliding>::default(),
        );
        // One cluster from the shared home slot, wrapping past the table's end.
        let home = index.home(Colliding::default().finish());
        assert!(
            home + names.len() > index.records.len(),
            "the cluster wraps"
        );
        check(&index, &names);
    }

    #[test]
    fn wildcard_keys_skip_the_star_label() {
        let names = vec![
            "*.shops.example.com".to_owned(),
            format!("*.{}.example.com", "w".repeat(60)),
        ];
        let index = Index::new(entries(&names), 2, RandomState::default());
        assert_eq!(chain_id(index.get(b"shops.example.com")), Some(0));
        let long = format!("{}.example.com", "w".repeat(60));
        assert_eq!(chain_id(index.get(long.as_bytes())), Some(1));
        assert!(index.get(b"*.shops.example.com").is_none());
    }

    /// The `VmFlags` of the mapping that holds `addr`, from `/proc/self/smaps`.
    fn vm_flags(addr: usize) -> String {
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("procfs is mounted");
        let mut inside = false;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ')
                && let Some((from, to)) = range.split_once('-')
                && let (Ok(from), Ok(to)) = (
                    usize::from_str_radix(from, 16),
                    usize::from_str_radix(to, 16),
                )
            {
                inside = (from..to).contains(&addr);
            } else if inside && let Some(flags) = line.strip_prefix("VmFlags:") {
                return flags.trim().to_owned();
            }
        }
        panic!("no mapping holds {addr:#x}");
    }

    #[test]
    fn large_tables_are_line_aligned_on_advised_huge_pages() {
        let names: Vec<String> = (0..70_000).map(|i| format!("n{i}.example.com")).collect();
        let index = Index::new(entries(&names), 0, RandomState::default());
        let start = index.records.as_ptr() as usize;
        assert_eq!(start % 64, 0);
        let inner = start.next_multiple_of(HUGE_PAGE);
        assert!(inner + HUGE_PAGE <= start + index.records.len() * 64);
        let flags = vm_flags(inner);
        assert!(flags.split(' ').any(|f| f == "hg"), "VmFlags: {flags}");
        check(&index, &names);
    }
}
