//! The read side: an immutable index from hostname to precomputed outcome,
//! swapped whole by its owner. A lookup lower-cases into a stack buffer, probes
//! one table (two for a wildcard hit) and clones an `Arc`: no allocation, no
//! lock. The table is hand-rolled rather than a general hash map because at a
//! million hostnames the cost is cache misses: the record (name and outcome
//! side by side, no separate slot array) and the chain, nothing else.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};
use foldhash::fast::RandomState;

use super::error::{EdgeError, ErrorKind};
use super::model::Chain;
use crate::state::hostname::{MAX_HOSTNAME_LEN, is_ip_literal};
use crate::state::{State, Zone};

/// What a hostname resolves to.
pub(super) type Outcome = Result<Arc<Chain>, EdgeError>;

/// Every hostname's outcome, precomputed from one [`State`]; never changes,
/// so readers need no lock and a new state means a new snapshot.
pub struct Snapshot {
    exact: Index,
    /// Keyed by the name below `*.`; a wildcard covers exactly one label.
    wildcard: Index,
    /// By `id - 1`; ids freed since the previous snapshot are holes.
    chains: Vec<Option<Arc<Chain>>>,
    zones: HashMap<Arc<str>, Arc<Zone>>,
    /// Precomputed errors, shared by the records of both indexes.
    errors: Vec<EdgeError>,
    miss: EdgeError,
    direct_ip: EdgeError,
}

/// One routable hostname, for the XDP route map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route<'a> {
    /// Lower-case; `*.example.com` for a wildcard entry.
    pub hostname: &'a str,
    /// 0 for blocked hostnames, which have no chain.
    pub chain_id: u32,
    /// Blocked custom hostname: drop in the kernel.
    pub blocked: bool,
}

impl Snapshot {
    pub fn build(state: &State) -> Snapshot {
        super::build::build(state, None)
    }

    /// The snapshot of `state`, where every chain equal to one of `self` keeps
    /// its id.
    pub fn rebuild(&self, state: &State) -> Snapshot {
        super::build::build(state, Some(self))
    }

    pub(super) fn from_parts(
        exact: Vec<(String, Outcome)>,
        wildcard: Vec<(String, Outcome)>,
        chains: Vec<Option<Arc<Chain>>>,
        zones: HashMap<Arc<str>, Arc<Zone>>,
    ) -> Snapshot {
        let hasher = RandomState::default();
        let mut errors = Vec::new();
        let exact = Index::new(exact, 0, hasher.clone(), &mut errors);
        let wildcard = Index::new(wildcard, 2, hasher, &mut errors);
        errors.shrink_to_fit();
        Snapshot {
            exact,
            wildcard,
            chains,
            zones,
            errors,
            miss: EdgeError::new(
                ErrorKind::NoRoute,
                "no proxied DNS record and no custom hostname on this edge matches this hostname",
            ),
            direct_ip: EdgeError::new(
                ErrorKind::DirectIp,
                "the request carries an IP address or no host instead of a hostname served by this edge",
            ),
        }
    }

    /// The chain for `hostname` (any case, optional trailing dot): exact
    /// entries first, then the wildcard one label up.
    pub fn resolve(&self, hostname: &str) -> Result<Arc<Chain>, EdgeError> {
        let host = hostname.strip_suffix('.').unwrap_or(hostname);
        let mut buf = [0u8; MAX_HOSTNAME_LEN];
        let Some(key) = buf.get_mut(..host.len()) else {
            return Err(self.miss.clone());
        };
        key.copy_from_slice(host.as_bytes());
        key.make_ascii_lowercase();
        if key.first() == Some(&b'*') {
            // A wildcard is a pattern, never a name a client may ask for.
            return Err(self.miss.clone());
        }
        if let Some(stored) = self.exact.get(key) {
            return self.outcome(stored);
        }
        // A wildcard stands for one DNS label, not for any bytes a client sends.
        if let Some(dot) = key.iter().position(|&b| b == b'.')
            && dot > 0
            && key[..dot]
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && let Some(stored) = self.wildcard.get(&key[dot + 1..])
        {
            return self.outcome(stored);
        }
        if host.is_empty() || is_ip_literal(host) {
            return Err(self.direct_ip.clone());
        }
        Err(self.miss.clone())
    }

    fn outcome(&self, stored: &Stored) -> Result<Arc<Chain>, EdgeError> {
        match stored {
            Stored::Chain(chain) => Ok(chain.clone()),
            Stored::Error(i) => Err(self.errors[*i as usize].clone()),
            Stored::Vacant => Err(self.miss.clone()),
        }
    }

    /// Every hostname with a chain, and every blocked custom hostname.
    pub fn routes(&self) -> impl Iterator<Item = Route<'_>> + '_ {
        self.exact.iter().chain(self.wildcard.iter()).filter_map(
            |(hostname, stored)| match stored {
                Stored::Chain(chain) => Some(Route {
                    hostname,
                    chain_id: chain.id,
                    blocked: false,
                }),
                Stored::Error(i) => (self.errors[*i as usize].kind() == ErrorKind::HostnameBlocked)
                    .then_some(Route {
                        hostname,
                        chain_id: 0,
                        blocked: true,
                    }),
                Stored::Vacant => None,
            },
        )
    }

    /// Exact hostnames that answer an edge error (pending, 1014, …) below a
    /// wildcard that has a route. The XDP route map holds no errors, so
    /// without an entry of their own the kernel would classify them into the
    /// wildcard's chain, which [`Snapshot::resolve`] never does.
    pub fn shadowed(&self) -> impl Iterator<Item = &str> + '_ {
        let routed = |stored: &Stored| match stored {
            Stored::Chain(_) => true,
            Stored::Error(i) => self.errors[*i as usize].kind() == ErrorKind::HostnameBlocked,
            Stored::Vacant => false,
        };
        self.exact.iter().filter_map(move |(hostname, stored)| {
            if routed(stored) || matches!(stored, Stored::Vacant) {
                return None;
            }
            let (_, parent) = hostname.split_once('.')?;
            self.wildcard
                .get(parent.as_bytes())
                .is_some_and(routed)
                .then_some(hostname)
        })
    }

    pub fn chain(&self, id: u32) -> Option<&Arc<Chain>> {
        self.chains.get(id.checked_sub(1)? as usize)?.as_ref()
    }

    /// The highest chain id in use (0 when there are none), for sizing BPF maps.
    pub fn max_chain_id(&self) -> u32 {
        u32::try_from(self.chains.len()).expect("chain ids are u32")
    }

    /// The chain stored under a lower-case name as the index keeps it
    /// (`*.example.com` for wildcards).
    pub(super) fn chain_by_name(&self, name: &str) -> Option<&Arc<Chain>> {
        let stored = match name.strip_prefix("*.") {
            Some(suffix) => self.wildcard.get(suffix.as_bytes()),
            None => self.exact.get(name.as_bytes()),
        };
        match stored? {
            Stored::Chain(chain) => Some(chain),
            Stored::Error(_) | Stored::Vacant => None,
        }
    }

    /// The zone's settings and rulesets as of this snapshot.
    pub fn zone(&self, id: &str) -> Option<&Arc<Zone>> {
        self.zones.get(id)
    }

    /// Hostnames (exact and wildcard) with an outcome.
    pub fn len(&self) -> usize {
        self.exact.len() + self.wildcard.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a record holds: errors live once in [`Snapshot::errors`] so that the
/// outcome takes 16 bytes.
#[derive(Clone)]
enum Stored {
    Vacant,
    Chain(Arc<Chain>),
    Error(u32),
}

/// Names up to this many bytes live inside their record, so that one read
/// brings the key to compare and the outcome together.
const INLINE: usize = 30;

#[derive(Clone)]
struct Record {
    outcome: Stored,
    /// Low byte of the name's hash: most mismatches end here.
    tag: u8,
    len: u8,
    /// The name, or for longer names its offset in [`Index::long_names`].
    name: [u8; INLINE],
}

const _: () = assert!(std::mem::size_of::<Record>() == 48);

const VACANT: Record = Record {
    outcome: Stored::Vacant,
    tag: 0,
    len: 0,
    name: [0; INLINE],
};

/// Open addressing with linear probing over the records themselves, at most
/// three quarters full: a hit reads one record (and the next ones, which the
/// prefetcher brings along) and the chain's reference count.
struct Index {
    table: Box<[Record]>,
    len: usize,
    long_names: String,
    /// Bytes of each name that are not part of the key (`*.` for wildcards).
    skip: usize,
    hasher: RandomState,
}

impl Index {
    fn new(
        entries: Vec<(String, Outcome)>,
        skip: usize,
        hasher: RandomState,
        errors: &mut Vec<EdgeError>,
    ) -> Index {
        let capacity = entries.len() * 4 / 3 + 1;
        let mut index = Index {
            table: vec![VACANT; capacity].into_boxed_slice(),
            len: entries.len(),
            long_names: String::new(),
            skip,
            hasher,
        };
        for (name, outcome) in entries {
            let hash = index.hasher.hash_one(&name.as_bytes()[skip..]);
            let mut record = Record {
                outcome: match outcome {
                    Ok(chain) => Stored::Chain(chain),
                    Err(e) => {
                        errors.push(e);
                        Stored::Error(u32::try_from(errors.len() - 1).expect("under 2^32 errors"))
                    }
                },
                tag: hash as u8,
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
            while !matches!(index.table[i].outcome, Stored::Vacant) {
                i = index.next(i);
            }
            index.table[i] = record;
        }
        index.long_names.shrink_to_fit();
        index
    }

    /// Multiply-shift: maps the hash onto any table size, not just powers of two.
    fn home(&self, hash: u64) -> usize {
        ((u128::from(hash) * self.table.len() as u128) >> 64) as usize
    }

    fn next(&self, i: usize) -> usize {
        if i + 1 == self.table.len() { 0 } else { i + 1 }
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

    fn get(&self, key: &[u8]) -> Option<&Stored> {
        let hash = self.hasher.hash_one(key);
        let mut i = self.home(hash);
        // At most three quarters full, so a vacant record ends every probe.
        loop {
            let record = &self.table[i];
            if let Stored::Vacant = record.outcome {
                return None;
            }
            if record.tag == hash as u8
                && usize::from(record.len) == key.len() + self.skip
                && &self.name(record)[self.skip..] == key
            {
                return Some(&record.outcome);
            }
            i = self.next(i);
        }
    }

    fn iter(&self) -> impl Iterator<Item = (&str, &Stored)> + '_ {
        self.table
            .iter()
            .filter(|r| !matches!(r.outcome, Stored::Vacant))
            .map(|r| {
                let name = std::str::from_utf8(self.name(r)).expect("names are stored from str");
                (name, &r.outcome)
            })
    }

    fn len(&self) -> usize {
        self.len
    }
}

/// The current snapshot, replaced atomically; readers never wait for writers.
pub struct Live(ArcSwap<Snapshot>);

impl Live {
    pub fn new(snapshot: Snapshot) -> Live {
        Live(ArcSwap::from_pointee(snapshot))
    }

    /// Cheap, lock-free; hold it for one request, not across awaits of long tasks.
    pub fn load(&self) -> Guard<Arc<Snapshot>> {
        self.0.load()
    }

    pub fn load_full(&self) -> Arc<Snapshot> {
        self.0.load_full()
    }

    pub fn store(&self, snapshot: Snapshot) {
        self.0.store(Arc::new(snapshot));
    }
}
