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
//!
//! A lookup takes the name as the client sent it, in any case: the hash and
//! the compare fold ASCII case eight bytes at a time in registers. Copying
//! the name into a lower-case buffer first cost more instructions than the
//! rest of the lookup, and with fewer instructions the CPU reaches the next
//! lookup's record while this one's miss is still outstanding.

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

/// The high bit of every byte of `x` that is zero, exactly: no carry
/// crosses a byte, so no neighbour of a zero byte is flagged with it.
fn zero_bytes_exact(x: u64) -> u64 {
    !(((x & !MSB) + !MSB) | x) & MSB
}

/// A name's tag: the low byte of its hash, never [`EMPTY`]. The slot comes
/// from the high bits (see [`Index::home`]), so the two are independent.
fn tag(hash: u64) -> u8 {
    (hash as u8).max(1)
}

/// How an index hashes names: [`FoldedCase`]; tests swap in one that collides.
pub(super) trait NameHash {
    /// Equal for names that differ only in ASCII case.
    fn hash(&self, name: &[u8]) -> u64;
}

/// A seeded hash of the name with ASCII case folded, built like foldhash's
/// (one 128-bit folded multiply per 16 bytes) but on eight-byte words
/// folded in registers, so that no lower-case copy of the name is made
/// first.
#[derive(Clone)]
pub(super) struct FoldedCase {
    seeds: [u64; 2],
}

impl FoldedCase {
    /// Seeds drawn from foldhash's per-process random state: names a client
    /// picks cannot be aimed at one probe sequence.
    pub(super) fn new() -> FoldedCase {
        let state = RandomState::default();
        FoldedCase {
            seeds: [state.hash_one(0u64), state.hash_one(1u64)],
        }
    }
}

impl NameHash for FoldedCase {
    #[inline(always)]
    fn hash(&self, name: &[u8]) -> u64 {
        let [s0, s1] = self.seeds;
        let len = name.len();
        // The length goes in first: the last pair overlaps the one before,
        // so names of different lengths could otherwise read alike.
        let mut h = s0.rotate_right(len as u32) ^ len as u64;
        if len < 8 {
            return folded_multiply(h ^ fold(short(name)), s1);
        }
        pairs(len, |a, b| {
            h = folded_multiply(h ^ fold(word(name, a)), s1 ^ fold(word(name, b)));
        });
        h
    }
}

/// Sets the 0x20 bit of every byte: ASCII upper case becomes lower case,
/// and the rest of a hostname's alphabet (lower case, digits, `-`, `.`)
/// has it already. One instruction per eight bytes, where an exact
/// lower-casing takes a dozen; the bytes it merges besides (`_` with DEL,
/// `@` with `` ` ``, ...) only make hashes collide, and the compare tells
/// such names apart.
#[inline(always)]
fn fold(w: u64) -> u64 {
    const CASE: u64 = LSB * 0x20;
    w | CASE
}

#[inline(always)]
fn folded_multiply(x: u64, y: u64) -> u64 {
    let full = u128::from(x) * u128::from(y);
    (full as u64) ^ (full >> 64) as u64
}

/// The eight bytes of `name` from `at`, little-endian.
#[inline(always)]
fn word(name: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(name[at..at + 8].try_into().expect("eight bytes"))
}

/// A name under eight bytes as one word, zero-padded (as a record's inline
/// name is).
fn short(name: &[u8]) -> u64 {
    let mut bytes = [0; 8];
    bytes[..name.len()].copy_from_slice(name);
    u64::from_le_bytes(bytes)
}

/// The eight-byte words a name of `len` >= 8 bytes is read as, in pairs
/// `(a, b)` of offsets: 16 bytes at a time from the front, the last pair
/// ending where the name ends (overlapping the one before); a name under
/// 16 bytes is its first and last eight.
#[inline(always)]
fn pairs(len: usize, mut f: impl FnMut(usize, usize)) {
    if len < 16 {
        f(0, len - 8);
        return;
    }
    let mut at = 0;
    while at + 16 < len {
        f(at, at + 8);
        at += 16;
    }
    f(len - 16, len - 8);
}

/// Whether the inline, lower-case `stored` name starts with `key` up to
/// ASCII case; the name is as long as the key. A key sent in lower case
/// (as SNI and `Host` nearly always are) is compared a word at a time,
/// with no call and no loop over bytes; any other goes on to [`eq_folded`].
#[inline(always)]
fn inline_eq(stored: &[u8], key: &[u8]) -> bool {
    let len = key.len();
    let diff = if len < 8 {
        // The inline name is zero-padded, as `short` pads the key.
        word(stored, 0) ^ short(key)
    } else {
        let stored = &stored[..len];
        let mut diff = 0;
        pairs(len, |a, b| {
            diff |= (word(stored, a) ^ word(key, a)) | (word(stored, b) ^ word(key, b));
        });
        diff
    };
    diff == 0 || eq_folded(&stored[..len], key)
}

/// The compare for a key with upper case in it, or for another name that
/// met the key's tag and length.
#[cold]
#[inline(never)]
fn eq_folded(stored: &[u8], key: &[u8]) -> bool {
    stored.eq_ignore_ascii_case(key)
}

/// Open addressing with linear probing, at most seven eighths full: with
/// the tags in their own array the load costs a few more control bytes per
/// probe (eight per step, on one line), not more records read.
pub(super) struct Index<S = FoldedCase> {
    /// One per record, then the first [`GROUP`] again, so that a probe near
    /// the end reads a whole group without wrapping.
    ctrl: Box<[u8]>,
    records: Box<[Record]>,
    long_names: String,
    /// Bytes of each name that are not part of the key (`*.` for wildcards).
    skip: usize,
    hasher: S,
}

impl<S: NameHash> Index<S> {
    /// `entries`' names are lower-case, as lookups compare them.
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
            debug_assert!(!name.bytes().any(|b| b.is_ascii_uppercase()), "{name}");
            let hash = index.hasher.hash(&name.as_bytes()[skip..]);
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

    /// The outcome stored under `key`, in any ASCII case.
    #[inline]
    pub(super) fn get(&self, key: &[u8]) -> Option<&Stored> {
        let hash = self.hasher.hash(key);
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
            let mut matches = zero_bytes_exact(group ^ (LSB * u64::from(tag))) & before;
            while matches != 0 {
                let mut i = pos + matches.trailing_zeros() as usize / 8;
                matches &= matches - 1;
                if i >= slots {
                    i -= slots;
                }
                let record = &self.records[i];
                if usize::from(record.len) == key.len() + self.skip && self.holds(record, key) {
                    return Some(&record.outcome);
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

    /// The record's name (past `skip`) is `key` up to ASCII case; the
    /// lengths are equal.
    #[inline(always)]
    fn holds(&self, record: &Record, key: &[u8]) -> bool {
        if usize::from(record.len) > INLINE {
            return self.holds_long(record, key);
        }
        inline_eq(&record.name[self.skip..], key)
    }

    #[cold]
    #[inline(never)]
    fn holds_long(&self, record: &Record, key: &[u8]) -> bool {
        self.name(record)[self.skip..].eq_ignore_ascii_case(key)
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
    use proptest::prelude::*;

    use super::*;

    /// Every name has the same home slot and one of two tags that differ
    /// in their last bit (by the name's length), so each lookup walks the
    /// whole cluster, passes the other tag (the one a borrowing zero-byte
    /// test would flag by mistake), and tells names apart by their bytes.
    struct Colliding;

    impl NameHash for Colliding {
        fn hash(&self, name: &[u8]) -> u64 {
            0xdead_beef_dead_be02 | (name.len() as u64 & 1)
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

    fn check<S: NameHash>(index: &Index<S>, names: &[String]) {
        for (i, name) in names.iter().enumerate() {
            assert_eq!(
                chain_id(index.get(name.as_bytes())),
                Some(i as u32),
                "{name}"
            );
            // Any case finds the lower-case name.
            let upper = name.to_ascii_uppercase();
            assert_eq!(
                chain_id(index.get(upper.as_bytes())),
                Some(i as u32),
                "{upper}"
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
        check(&Index::new(entries(&names), 0, FoldedCase::new()), &names);
    }

    #[test]
    fn names_sharing_slot_and_tag_are_told_apart_by_their_bytes() {
        let names = names();
        let index = Index::new(entries(&names), 0, Colliding);
        // One cluster from the shared home slot, wrapping past the table's end.
        let home = index.home(Colliding.hash(b""));
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
        let index = Index::new(entries(&names), 2, FoldedCase::new());
        assert_eq!(chain_id(index.get(b"shops.example.com")), Some(0));
        assert_eq!(chain_id(index.get(b"Shops.EXAMPLE.com")), Some(0));
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
        let index = Index::new(entries(&names), 0, FoldedCase::new());
        let start = index.records.as_ptr() as usize;
        assert_eq!(start % 64, 0);
        let inner = start.next_multiple_of(HUGE_PAGE);
        assert!(inner + HUGE_PAGE <= start + index.records.len() * 64);
        let flags = vm_flags(inner);
        assert!(flags.split(' ').any(|f| f == "hg"), "VmFlags: {flags}");
        check(&index, &names);
    }

    /// Any bytes, biased towards the ones that matter here: both cases of
    /// letters, the bytes next to them, bytes with the high bit set, and
    /// bytes that differ from another in the 0x20 bit only.
    fn name_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
        let byte = prop_oneof![
            b'a'..=b'z',
            b'A'..=b'Z',
            prop::sample::select(&b"@[`{.-_\x7f0129\x80\xc1\xda\xff"[..]),
            any::<u8>(),
        ];
        proptest::collection::vec(byte, 0..=max)
    }

    proptest! {
        #[test]
        fn zero_bytes_exact_flags_zero_bytes_only(bytes in proptest::array::uniform8(
            prop_oneof![Just(0u8), Just(1u8), Just(0x80u8), any::<u8>()],
        )) {
            let want = bytes.map(|b| if b == 0 { 0x80 } else { 0 });
            prop_assert_eq!(zero_bytes_exact(u64::from_le_bytes(bytes)), u64::from_le_bytes(want));
        }

        #[test]
        fn hash_folds_ascii_case(name in name_bytes(80), other in name_bytes(80)) {
            let hasher = FoldedCase::new();
            prop_assert_eq!(hasher.hash(&name), hasher.hash(&name.to_ascii_lowercase()));
            prop_assert_eq!(hasher.hash(&name), hasher.hash(&name.to_ascii_uppercase()));
            // Names that differ in more than the 0x20 bit of a byte hash apart.
            let folded = |n: &[u8]| n.iter().map(|b| b | 0x20).collect::<Vec<u8>>();
            if folded(&name) != folded(&other) {
                prop_assert_ne!(hasher.hash(&name), hasher.hash(&other));
            }
        }

        /// The word-wise compare agrees with `eq_ignore_ascii_case` on names
        /// of the same length, up to the inline limit.
        #[test]
        fn inline_eq_is_eq_ignore_ascii_case(
            stored in name_bytes(INLINE),
            flips in proptest::collection::vec(any::<(bool, u8)>(), INLINE),
            skip in 0..=2usize,
        ) {
            let stored = stored.to_ascii_lowercase();
            prop_assume!(stored.len() + skip <= INLINE);
            // The key: the stored name with some letters upper-cased and
            // some bytes changed.
            let key: Vec<u8> = stored
                .iter()
                .zip(&flips)
                .map(|(&b, &(upper, change))| match (upper, change % 8) {
                    (_, 0) => change,
                    (true, _) => b.to_ascii_uppercase(),
                    (false, _) => b,
                })
                .collect();
            let mut record = [0; INLINE];
            record[skip..skip + stored.len()].copy_from_slice(&stored);
            prop_assert_eq!(
                inline_eq(&record[skip..], &key),
                stored.eq_ignore_ascii_case(&key)
            );
        }
    }
}
