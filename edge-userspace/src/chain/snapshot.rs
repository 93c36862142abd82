//! The read side: an immutable index from hostname to precomputed outcome,
//! swapped whole by its owner. A lookup lower-cases into a stack buffer, probes
//! one hash table (two for a wildcard hit) and clones an `Arc`: no allocation,
//! no lock.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};
use foldhash::fast::RandomState;
use hashbrown::HashTable;

use super::error::{EdgeError, ErrorKind};
use super::model::Chain;
use crate::state::hostname::{MAX_HOSTNAME_LEN, is_ip_literal};
use crate::state::{State, Zone};

/// What a hostname resolves to.
pub(super) type Outcome = Result<Arc<Chain>, EdgeError>;

pub struct Snapshot {
    exact: Index,
    /// Keyed by the name below `*.`; a wildcard covers exactly one label.
    wildcard: Index,
    /// By `id - 1`.
    chains: Vec<Arc<Chain>>,
    zones: HashMap<Arc<str>, Arc<Zone>>,
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
        super::build::build(state)
    }

    pub(super) fn from_parts(
        exact: Vec<(Arc<str>, Outcome)>,
        wildcard: Vec<(Arc<str>, Outcome)>,
        chains: Vec<Arc<Chain>>,
        zones: HashMap<Arc<str>, Arc<Zone>>,
    ) -> Snapshot {
        let hasher = RandomState::default();
        Snapshot {
            exact: Index::new(exact, 0, hasher.clone()),
            wildcard: Index::new(wildcard, 2, hasher),
            chains,
            zones,
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
        if let Some(outcome) = self.exact.get(key) {
            return outcome.clone();
        }
        if let Some(dot) = key.iter().position(|&b| b == b'.')
            && dot > 0
            && let Some(outcome) = self.wildcard.get(&key[dot + 1..])
        {
            return outcome.clone();
        }
        if host.is_empty() || is_ip_literal(host) {
            return Err(self.direct_ip.clone());
        }
        Err(self.miss.clone())
    }

    /// Every hostname with a chain, and every blocked custom hostname.
    pub fn routes(&self) -> impl Iterator<Item = Route<'_>> + '_ {
        self.exact
            .entries
            .iter()
            .chain(self.wildcard.entries.iter())
            .filter_map(|(name, outcome)| match outcome {
                Ok(chain) => Some(Route {
                    hostname: name,
                    chain_id: chain.id,
                    blocked: false,
                }),
                Err(e) if e.kind() == ErrorKind::HostnameBlocked => Some(Route {
                    hostname: name,
                    chain_id: 0,
                    blocked: true,
                }),
                Err(_) => None,
            })
    }

    pub fn chain(&self, id: u32) -> Option<&Arc<Chain>> {
        self.chains.get(id.checked_sub(1)? as usize)
    }

    /// The zone's settings and rulesets as of this snapshot.
    pub fn zone(&self, id: &str) -> Option<&Arc<Zone>> {
        self.zones.get(id)
    }

    /// Hostnames (exact and wildcard) with an outcome.
    pub fn len(&self) -> usize {
        self.exact.entries.len() + self.wildcard.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A hash table of positions into `entries`: 4 bytes a slot, the names
/// themselves shared with the chains that carry them.
struct Index {
    table: HashTable<u32>,
    entries: Vec<(Arc<str>, Outcome)>,
    /// Bytes of each name that are not part of the key (`*.` for wildcards).
    skip: usize,
    hasher: RandomState,
}

impl Index {
    fn new(mut entries: Vec<(Arc<str>, Outcome)>, skip: usize, hasher: RandomState) -> Index {
        entries.shrink_to_fit();
        let mut table = HashTable::with_capacity(entries.len());
        for (i, (name, _)) in entries.iter().enumerate() {
            let hash = hasher.hash_one(&name.as_bytes()[skip..]);
            let i = u32::try_from(i).expect("fewer than 2^32 hostnames");
            table.insert_unique(hash, i, |&j| {
                hasher.hash_one(&entries[j as usize].0.as_bytes()[skip..])
            });
        }
        Index {
            table,
            entries,
            skip,
            hasher,
        }
    }

    fn get(&self, key: &[u8]) -> Option<&Outcome> {
        let hash = self.hasher.hash_one(key);
        let i = self.table.find(hash, |&i| {
            &self.entries[i as usize].0.as_bytes()[self.skip..] == key
        })?;
        Some(&self.entries[*i as usize].1)
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
