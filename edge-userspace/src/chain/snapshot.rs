//! The read side: an immutable index from hostname to precomputed outcome,
//! swapped whole by its owner. A lookup probes one table with the name as
//! sent, in any case (two tables for a wildcard hit); it hands out a borrow of the
//! chain, not a clone of its `Arc`: no allocation, no lock, and no write to
//! the chain's reference count, which would be a second cache miss per
//! lookup at a million hostnames (the first is the record: see `index.rs`).
//! Callers hold the snapshot (or the routing around it) for the request.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::build::Context;
use super::error::{EdgeError, ErrorKind};
use super::index::{FoldedCase, Index, Stored};
use super::model::Chain;
use crate::state::hostname::{MAX_HOSTNAME_LEN, is_ip_literal};
use crate::state::{State, Zone};

/// What a hostname resolves to.
pub(super) type Outcome = Result<Arc<Chain>, EdgeError>;

/// Source of [`Snapshot::generation`]: unique per snapshot in the process.
static GENERATION: AtomicU64 = AtomicU64::new(1);

/// Every hostname's outcome, precomputed from one [`State`]; never changes,
/// so readers need no lock and a new state means a new snapshot.
///
/// A write that changes a few exact names derives the next snapshot from this
/// one ([`Snapshot::update`]): the indexes are shared (`base`) and the changed
/// names go into a small `overlay` that lookups check first, until it grows
/// past a bound and is folded into new indexes.
pub struct Snapshot {
    base: Arc<Base>,
    /// Exact names changed since `base` was built; `None` marks one removed.
    /// Keyed by the lower-case name's bytes, as lookups hold it.
    overlay: HashMap<Box<[u8]>, Option<Outcome>>,
    chains: Chains,
    zones: Arc<HashMap<Arc<str>, Arc<Zone>>>,
    /// What deriving the next snapshot reuses of the state's shape.
    pub(super) context: Arc<Context>,
    len: usize,
    generation: u64,
    /// The generation this snapshot was derived from, and the exact names
    /// whose outcome may differ from it.
    delta: Option<(u64, Vec<Box<str>>)>,
}

/// The indexes built whole from one state.
struct Base {
    exact: Index,
    /// Keyed by the name below `*.`; a wildcard covers exactly one label.
    wildcard: Index,
    /// Precomputed errors, shared by the records of both indexes.
    errors: Vec<EdgeError>,
    miss: EdgeError,
    direct_ip: EdgeError,
}

/// Chains by id (`id - 1`), with how many names use each: ids freed since
/// the previous snapshot are holes, and a chain no name uses any more is
/// gone (a connection classified into it resolves again).
#[derive(Clone)]
struct Chains {
    base: Arc<[Option<Arc<Chain>>]>,
    /// Names per chain in `base`, by `id - 1`.
    base_refs: Arc<[u32]>,
    /// Chains added or removed (`None`) since `base`.
    overlay: HashMap<u32, Option<Arc<Chain>>>,
    /// Changes to `base_refs` since `base`.
    refs: HashMap<u32, i64>,
    /// The highest id in use or once used since `base`.
    max: u32,
    /// Ids below `max` that no chain has, highest first.
    free: Vec<u32>,
}

impl Chains {
    fn new(list: Vec<Option<Arc<Chain>>>, refs: Vec<u32>) -> Chains {
        let free = (1..=list.len() as u32)
            .rev()
            .filter(|&id| list[id as usize - 1].is_none())
            .collect();
        Chains {
            max: u32::try_from(list.len()).expect("chain ids are u32"),
            base: list.into(),
            base_refs: refs.into(),
            overlay: HashMap::new(),
            refs: HashMap::new(),
            free,
        }
    }

    fn get(&self, id: u32) -> Option<&Arc<Chain>> {
        if !self.overlay.is_empty()
            && let Some(chain) = self.overlay.get(&id)
        {
            return chain.as_ref();
        }
        self.base.get(id.checked_sub(1)? as usize)?.as_ref()
    }

    fn refs(&self, id: u32) -> i64 {
        let base = self
            .base_refs
            .get(id as usize - 1)
            .map_or(0, |&n| i64::from(n));
        base + self.refs.get(&id).copied().unwrap_or(0)
    }

    /// One more name uses `chain`, which is new when its id is unused;
    /// returns the chain kept under the id.
    fn hold(&mut self, chain: Arc<Chain>) -> Arc<Chain> {
        *self.refs.entry(chain.id).or_default() += 1;
        if let Some(kept) = self.get(chain.id) {
            return kept.clone();
        }
        self.overlay.insert(chain.id, Some(chain.clone()));
        chain
    }

    /// One name fewer uses chain `id`; the last one frees it. Returns
    /// whether it did.
    fn release(&mut self, id: u32) -> bool {
        *self.refs.entry(id).or_default() -= 1;
        if self.refs(id) > 0 {
            return false;
        }
        self.overlay.insert(id, None);
        true
    }

    fn all(&self) -> Vec<Option<Arc<Chain>>> {
        (1..=self.max).map(|id| self.get(id).cloned()).collect()
    }
}

/// A name's outcome as the snapshot holds it.
#[derive(Clone, Copy)]
enum View<'a> {
    Chain(&'a Arc<Chain>),
    Error(&'a EdgeError),
}

impl<'a> View<'a> {
    fn outcome(self) -> Outcome {
        self.resolved().map(Arc::clone)
    }

    fn resolved(self) -> Result<&'a Arc<Chain>, EdgeError> {
        match self {
            View::Chain(chain) => Ok(chain),
            View::Error(error) => Err(error.clone()),
        }
    }

    /// Has an entry in the kernel's route map of its own: a chain, or a drop.
    fn routed(self) -> bool {
        match self {
            View::Chain(_) => true,
            View::Error(error) => error.kind() == ErrorKind::HostnameBlocked,
        }
    }

    fn route(self, hostname: &str) -> Option<Route<'_>> {
        match self {
            View::Chain(chain) => Some(Route {
                hostname,
                chain_id: chain.id,
                blocked: false,
            }),
            View::Error(error) => (error.kind() == ErrorKind::HostnameBlocked).then_some(Route {
                hostname,
                chain_id: 0,
                blocked: true,
            }),
        }
    }
}

fn view(outcome: &Outcome) -> View<'_> {
    match outcome {
        Ok(chain) => View::Chain(chain),
        Err(error) => View::Error(error),
    }
}

/// Overlay entries beyond which [`Snapshot::update`] builds new indexes:
/// lookups stay one probe plus a small map, and the fold's cost (one pass
/// over every name) is spread over this many changed names.
fn overlay_bound(len: usize) -> usize {
    (len / 256).max(1024)
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

    /// The snapshot of `state` derived from `self` in the time of the
    /// changed names: `state` differs from `self`'s in the outcome of no
    /// name but the exact, lower-case `names` (see [`super::affected`]), and
    /// in no zone but `zones` (rulesets only). Unchanged chains keep their
    /// ids; [`Snapshot::changed_since`] then tells the XDP sync what to look at.
    pub fn update(&self, state: &State, names: &[String], zones: &[&str]) -> Snapshot {
        super::build::update(self, state, names, zones)
    }

    pub(super) fn from_parts(
        exact: Vec<(String, Outcome)>,
        wildcard: Vec<(String, Outcome)>,
        chains: Vec<Option<Arc<Chain>>>,
        zones: HashMap<Arc<str>, Arc<Zone>>,
        context: Arc<Context>,
    ) -> Snapshot {
        let refs = refs(&chains, exact.iter().chain(&wildcard).map(|(_, o)| o));
        let len = exact.len() + wildcard.len();
        let hasher = FoldedCase::new();
        let mut errors = Vec::new();
        let exact = Index::new(stored(exact, &mut errors), 0, hasher.clone());
        let wildcard = Index::new(stored(wildcard, &mut errors), 2, hasher);
        errors.shrink_to_fit();
        Snapshot {
            base: Arc::new(Base {
                exact,
                wildcard,
                errors,
                miss: EdgeError::new(
                    ErrorKind::NoRoute,
                    "no proxied DNS record and no custom hostname on this edge matches this hostname",
                ),
                direct_ip: EdgeError::new(
                    ErrorKind::DirectIp,
                    "the request carries an IP address or no host instead of a hostname served by this edge",
                ),
            }),
            overlay: HashMap::new(),
            chains: Chains::new(chains, refs),
            zones: Arc::new(zones),
            context,
            len,
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
            delta: None,
        }
    }

    /// `self` with the outcomes of `changed` (lower-case exact names; `None`:
    /// no outcome any more), chains held and released as they go, `zones` as
    /// the zones' settings and rulesets, and the ids the builder left free
    /// (`free`, highest first, and everything above `max`). A new outcome's
    /// chain with an id of `self` is the same route (the builder reuses an id
    /// only for that), so the chain `self` has under it stays.
    pub(super) fn derive(
        &self,
        changed: Vec<(String, Option<Outcome>)>,
        zones: Arc<HashMap<Arc<str>, Arc<Zone>>>,
        free: Vec<u32>,
        max: u32,
    ) -> Snapshot {
        let mut overlay = self.overlay.clone();
        let mut chains = self.chains.clone();
        chains.free = free;
        chains.max = max;
        let mut len = self.len;
        let mut released = Vec::new();
        let mut names = Vec::with_capacity(changed.len());
        for (name, outcome) in changed {
            let old = self.exact(name.as_bytes());
            if let Some(View::Chain(old)) = old {
                released.push(old.id);
            }
            let outcome = outcome.map(|outcome| outcome.map(|chain| chains.hold(chain)));
            len = len + usize::from(outcome.is_some()) - usize::from(old.is_some());
            overlay.insert(name.as_bytes().into(), outcome);
            names.push(name.into_boxed_str());
        }
        // Releasing after holding keeps a chain that stays in use from being
        // dropped in between. Ids freed now become free for the next
        // snapshot, not this one: a flow classified with an old id never
        // meets a new chain under it.
        let mut freed: Vec<u32> = released
            .into_iter()
            .filter(|&id| chains.release(id))
            .collect();
        freed.dedup();
        chains.free.extend(freed);
        chains.free.sort_unstable_by(|a, b| b.cmp(a));
        let mut next = Snapshot {
            base: self.base.clone(),
            overlay,
            chains,
            zones,
            context: self.context.clone(),
            len,
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
            delta: Some((self.generation, names)),
        };
        if next.overlay.len() > overlay_bound(next.len) {
            next.fold();
        }
        next
    }

    /// Builds new indexes from the base and the overlay (same outcomes, same ids).
    fn fold(&mut self) {
        let exact: Vec<(String, Outcome)> = self
            .exact_entries()
            .map(|(name, view)| (name.to_owned(), view.outcome()))
            .collect();
        let wildcard: Vec<(String, Outcome)> = self
            .base
            .wildcard
            .iter()
            .map(|(name, stored)| (name.to_owned(), self.base.view(stored).outcome()))
            .collect();
        let chains = self.chains.all();
        let mut folded = Snapshot::from_parts(
            exact,
            wildcard,
            chains,
            (*self.zones).clone(),
            self.context.clone(),
        );
        // The same snapshot, re-indexed: what derived from `self` still does.
        folded.generation = self.generation;
        folded.delta = self.delta.take();
        // Freed ids stay free in order.
        folded.chains.free = std::mem::take(&mut self.chains.free);
        *self = folded;
    }

    /// The exact names changed since the snapshot of generation `base`, when
    /// this one was derived from it; `None` when anything may have changed.
    pub fn changed_since(&self, base: u64) -> Option<&[Box<str>]> {
        match &self.delta {
            Some((from, names)) if *from == base => Some(names),
            _ => None,
        }
    }

    /// Unique per snapshot in this process.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The chain for `hostname` (any case, optional trailing dot): exact
    /// entries first, then the wildcard one label up.
    ///
    /// Borrowed from the snapshot: a request holds the snapshot (one `Arc`
    /// every request shares, so always cached) and reads its chain through
    /// it. Clone the `Arc` only to keep a chain past the snapshot.
    pub fn resolve(&self, hostname: &str) -> Result<&Arc<Chain>, EdgeError> {
        let host = hostname.strip_suffix('.').unwrap_or(hostname);
        let name = host.as_bytes();
        // A wildcard is a pattern, never a name a client may ask for.
        if name.len() > MAX_HOSTNAME_LEN || name.first() == Some(&b'*') {
            return Err(self.base.miss.clone());
        }
        let exact = if self.overlay.is_empty() {
            self.base
                .exact
                .get(name)
                .map(|stored| self.base.view(stored))
        } else {
            self.exact_any_case(name)
        };
        match exact {
            Some(view) => view.resolved(),
            None => self.resolve_inexact(host),
        }
    }

    /// [`Snapshot::exact`] for a name in any case: the indexes take it as it
    /// is, the overlay (a map) lower-case. Out of line, like the rest of
    /// what a hit in the base index does not run, so that `resolve` stays
    /// small.
    #[inline(never)]
    fn exact_any_case(&self, name: &[u8]) -> Option<View<'_>> {
        let mut buf = [0u8; MAX_HOSTNAME_LEN];
        let key = &mut buf[..name.len()];
        key.copy_from_slice(name);
        key.make_ascii_lowercase();
        self.exact(key)
    }

    /// What `resolve` answers for a name with no exact entry: the wildcard
    /// one label up, or an error.
    #[inline(never)]
    fn resolve_inexact(&self, host: &str) -> Result<&Arc<Chain>, EdgeError> {
        let name = host.as_bytes();
        // A wildcard stands for one DNS label, not for any bytes a client sends.
        if let Some(dot) = name.iter().position(|&b| b == b'.')
            && dot > 0
            && name[..dot]
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && let Some(stored) = self.base.wildcard.get(&name[dot + 1..])
        {
            return self.base.view(stored).resolved();
        }
        if host.is_empty() || is_ip_literal(host) {
            return Err(self.base.direct_ip.clone());
        }
        Err(self.base.miss.clone())
    }

    /// The exact entry of a lower-case name: the overlay first (skipped
    /// while empty), then the base index.
    fn exact(&self, key: &[u8]) -> Option<View<'_>> {
        if !self.overlay.is_empty()
            && let Some(entry) = self.overlay.get(key)
        {
            return entry.as_ref().map(view);
        }
        self.base
            .exact
            .get(key)
            .map(|stored| self.base.view(stored))
    }

    fn wildcard(&self, suffix: &[u8]) -> Option<View<'_>> {
        self.base
            .wildcard
            .get(suffix)
            .map(|stored| self.base.view(stored))
    }

    fn exact_entries(&self) -> impl Iterator<Item = (&str, View<'_>)> + '_ {
        let base = self
            .base
            .exact
            .iter()
            .filter(|(name, _)| {
                self.overlay.is_empty() || !self.overlay.contains_key(name.as_bytes())
            })
            .map(|(name, stored)| (name, self.base.view(stored)));
        let overlay = self.overlay.iter().filter_map(|(name, outcome)| {
            let name = std::str::from_utf8(name).expect("names are stored from str");
            Some((name, view(outcome.as_ref()?)))
        });
        base.chain(overlay)
    }

    /// Every hostname with a chain, and every blocked custom hostname.
    pub fn routes(&self) -> impl Iterator<Item = Route<'_>> + '_ {
        let wildcard = self
            .base
            .wildcard
            .iter()
            .map(|(name, stored)| (name, self.base.view(stored)));
        self.exact_entries()
            .chain(wildcard)
            .filter_map(|(hostname, view)| view.route(hostname))
    }

    /// The route of one lower-case name as [`Snapshot::routes`] lists it
    /// (`*.example.com` for a wildcard).
    pub fn route<'a>(&self, name: &'a str) -> Option<Route<'a>> {
        let view = match name.strip_prefix("*.") {
            Some(suffix) => self.wildcard(suffix.as_bytes()),
            None => self.exact(name.as_bytes()),
        };
        view?.route(name)
    }

    /// Exact hostnames that answer an edge error (pending, 1014, …) below a
    /// wildcard that has a route. The XDP route map holds no errors, so
    /// without an entry of their own the kernel would classify them into the
    /// wildcard's chain, which [`Snapshot::resolve`] never does.
    pub fn shadowed(&self) -> impl Iterator<Item = &str> + '_ {
        self.exact_entries()
            .filter(|(_, view)| !view.routed())
            .filter_map(|(hostname, _)| self.below_routed_wildcard(hostname).then_some(hostname))
    }

    /// Whether [`Snapshot::shadowed`] lists the lower-case exact `name`.
    pub fn is_shadowed(&self, name: &str) -> bool {
        self.exact(name.as_bytes())
            .is_some_and(|view| !view.routed())
            && self.below_routed_wildcard(name)
    }

    fn below_routed_wildcard(&self, name: &str) -> bool {
        name.split_once('.')
            .is_some_and(|(_, parent)| self.wildcard(parent.as_bytes()).is_some_and(View::routed))
    }

    pub fn chain(&self, id: u32) -> Option<&Arc<Chain>> {
        self.chains.get(id)
    }

    /// The highest chain id in use (0 when there are none), for sizing BPF maps.
    pub fn max_chain_id(&self) -> u32 {
        self.chains.max
    }

    /// Ids no chain of this snapshot has (highest first) and the highest id
    /// given out: where a derived snapshot takes ids for new chains.
    pub(super) fn free_ids(&self) -> (Vec<u32>, u32) {
        (self.chains.free.clone(), self.chains.max)
    }

    /// The chain stored under a lower-case name as the index keeps it
    /// (`*.example.com` for wildcards).
    pub(super) fn chain_by_name(&self, name: &str) -> Option<&Arc<Chain>> {
        let view = match name.strip_prefix("*.") {
            Some(suffix) => self.wildcard(suffix.as_bytes()),
            None => self.exact(name.as_bytes()),
        };
        match view? {
            View::Chain(chain) => Some(chain),
            View::Error(_) => None,
        }
    }

    /// The lower-case exact name's outcome, for checking a derived snapshot
    /// against a rebuilt one.
    #[cfg(test)]
    pub(super) fn outcome_of(&self, name: &str) -> Option<Outcome> {
        self.exact(name.as_bytes()).map(View::outcome)
    }

    /// The zone's settings and rulesets as of this snapshot.
    pub fn zone(&self, id: &str) -> Option<&Arc<Zone>> {
        self.zones.get(id)
    }

    pub(super) fn zones(&self) -> &Arc<HashMap<Arc<str>, Arc<Zone>>> {
        &self.zones
    }

    /// Hostnames (exact and wildcard) with an outcome.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The outcomes as records hold them, errors moved to `errors`.
fn stored(entries: Vec<(String, Outcome)>, errors: &mut Vec<EdgeError>) -> Vec<(String, Stored)> {
    entries
        .into_iter()
        .map(|(name, outcome)| {
            let stored = match outcome {
                Ok(chain) => Stored::Chain(chain),
                Err(error) => {
                    errors.push(error);
                    Stored::Error(u32::try_from(errors.len() - 1).expect("under 2^32 errors"))
                }
            };
            (name, stored)
        })
        .collect()
}

/// How many names use each chain, by `id - 1`.
fn refs<'a>(
    chains: &[Option<Arc<Chain>>],
    outcomes: impl Iterator<Item = &'a Outcome>,
) -> Vec<u32> {
    let mut refs = vec![0; chains.len()];
    for chain in outcomes.flatten() {
        refs[chain.id as usize - 1] += 1;
    }
    refs
}

impl Base {
    #[inline]
    fn view<'a>(&'a self, stored: &'a Stored) -> View<'a> {
        match stored {
            Stored::Chain(chain) => View::Chain(chain),
            Stored::Error(i) => View::Error(&self.errors[*i as usize]),
            Stored::Vacant => unreachable!("indexes never hand out vacant records"),
        }
    }
}
