//! Precomputes every hostname's outcome from the state, following the
//! reference's ownership rules: an exact custom hostname beats an exact
//! record; records (exact or wildcard) beat a wildcard custom hostname unless
//! they CNAME into that hostname's provider zone; a chain has at most two
//! stages, customer first, and is O2O only for a proxied CNAME straight from
//! a zone of another account to the provider.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::error::{EdgeError, ErrorKind};
use super::model::{Chain, ChainHostname, HostHeader, Origin, OriginSni, OriginTls, Stage};
use super::snapshot::{Outcome, Snapshot};
use crate::admission::{self, ChainAdmission};
use crate::state::hostname::{is_wildcard, parent};
use crate::state::{
    Admission, CustomHostname, DnsRecord, FallbackOriginStatus, HostnameStatus,
    REQUEST_HOST_HEADER, RecordType, State, ZoneState,
};

/// Builds the snapshot of `state`; chains equal to one of `previous` keep its
/// id, so the XDP route map only changes where routing did.
pub(super) fn build(state: &State, previous: Option<&Snapshot>) -> Snapshot {
    let context = Arc::new(Context::new(state));
    let mut b = Builder::new(state, &context, Ids::new(previous), Some(Maps::new(state)));
    let mut exact: Vec<(String, Outcome)> = Vec::new();
    let mut wildcard: Vec<(String, Outcome)> = Vec::new();
    for (z, zs) in state.zones().iter().enumerate() {
        for record in &zs.dns_records {
            let name = record.name.to_ascii_lowercase();
            if b.zone_of(&name) != Some(z) {
                // A more specific zone on this edge answers for the name.
                continue;
            }
            match name.strip_prefix("*.") {
                Some(suffix) => {
                    let outcome = b.record_outcome(&name, z, record, suffix);
                    wildcard.push((name, outcome));
                }
                None if b.ch_exact(&name).is_some() => {}
                None => {
                    let suffix = parent(&name).unwrap_or_default();
                    let outcome = b.record_outcome(&name, z, record, suffix);
                    exact.push((name, outcome));
                }
            }
        }
    }
    let wildcard_records: std::collections::HashSet<String> =
        wildcard.iter().map(|(n, _)| n.clone()).collect();
    for (z, zs) in state.zones().iter().enumerate() {
        for ch in &zs.custom_hostnames {
            let name = ch.hostname.to_ascii_lowercase();
            if is_wildcard(&name) {
                if !wildcard_records.contains(&name) {
                    let outcome = b.hostname_outcome(&name, z, ch);
                    wildcard.push((name, outcome));
                }
            } else {
                let outcome = b.hostname_outcome(&name, z, ch);
                exact.push((name, outcome));
            }
        }
    }
    let zones = state
        .zones()
        .iter()
        .zip(&context.stages)
        .map(|(zs, stage)| (stage.zone_id.clone(), Arc::new(zs.zone.clone())))
        .collect();
    let mut chains = vec![None; b.chains.iter().map(|c| c.id as usize).max().unwrap_or(0)];
    for chain in b.chains {
        let slot = chain.id as usize - 1;
        chains[slot] = Some(chain);
    }
    Snapshot::from_parts(exact, wildcard, chains, zones, context)
}

/// The snapshot of `state` derived from `previous`, recomputing only the
/// exact lower-case `names` (see [`Snapshot::update`]). The state's zones are
/// those `previous` was built from, so their order and names still hold;
/// lookups the full build answers from maps of the whole state go to the
/// state's own index instead, which costs far less than building the maps.
pub(super) fn update(
    previous: &Snapshot,
    state: &State,
    names: &[String],
    zones: &[&str],
) -> Snapshot {
    let context = previous.context.clone();
    let maps = (names.len() > INDEXED_NAMES).then(|| Maps::new(state));
    let mut b = Builder::new(state, &context, Ids::derived(previous), maps);
    let changed = names
        .iter()
        .map(|name| (name.clone(), b.exact_outcome(name)))
        .collect();
    let zones = if zones.is_empty() {
        previous.zones().clone()
    } else {
        let mut map = (**previous.zones()).clone();
        for id in zones {
            if let Some(zs) = state.zone(id) {
                map.insert(Arc::from(*id), Arc::new(zs.zone.clone()));
            }
        }
        Arc::new(map)
    };
    let (free, max) = (b.ids.holes, b.ids.next - 1);
    previous.derive(changed, zones, free, max)
}

/// Up to this many changed names are looked up in the state's index (some
/// microseconds each); more build the full build's maps once, which costs
/// about a microsecond per hostname of the state. Tests lower it so that
/// their small states take both paths.
const INDEXED_NAMES: usize = if cfg!(test) { 8 } else { 100_000 };

/// What the state's zones give every build: their stages and their names.
/// Kept by the snapshot, so that a derived snapshot need not recompute it.
pub(super) struct Context {
    stages: Vec<Stage>,
    zone_by_name: HashMap<String, usize>,
}

impl Context {
    fn new(state: &State) -> Context {
        let zones = state.zones();
        Context {
            stages: zones
                .iter()
                .map(|zs| Stage {
                    zone_id: zs.zone.id.as_str().into(),
                    zone_name: zs.zone.name.to_ascii_lowercase().into(),
                    account_id: zs.zone.account.id.as_str().into(),
                })
                .collect(),
            zone_by_name: zones
                .iter()
                .enumerate()
                .map(|(z, zs)| (zs.zone.name.to_ascii_lowercase(), z))
                .collect(),
        }
    }
}

/// Name lookups over the whole state, for a full build.
struct Maps<'s> {
    /// Per zone: records by lower-case name (wildcards as `*.suffix`).
    records: Vec<HashMap<String, &'s DnsRecord>>,
    /// Lower-case hostname -> (provider zone, custom hostname).
    ch_exact: HashMap<String, (usize, &'s CustomHostname)>,
    /// Lower-case name below `*.` -> (provider zone, wildcard custom hostname).
    ch_wildcard: HashMap<String, (usize, &'s CustomHostname)>,
}

impl<'s> Maps<'s> {
    fn new(state: &'s State) -> Self {
        let zones: Vec<&ZoneState> = state.zones().iter().collect();
        let mut ch_exact = HashMap::new();
        let mut ch_wildcard = HashMap::new();
        for (z, zs) in zones.iter().enumerate() {
            for ch in &zs.custom_hostnames {
                let name = ch.hostname.to_ascii_lowercase();
                match name.strip_prefix("*.") {
                    Some(suffix) => ch_wildcard.insert(suffix.to_string(), (z, ch)),
                    None => ch_exact.insert(name, (z, ch)),
                };
            }
        }
        Maps {
            records: zones
                .iter()
                .map(|zs| {
                    zs.dns_records
                        .iter()
                        .map(|r| (r.name.to_ascii_lowercase(), r))
                        .collect()
                })
                .collect(),
            ch_exact,
            ch_wildcard,
        }
    }
}

/// Chain id allocation across snapshots: an unchanged chain keeps its id;
/// new chains take ids free in the previous snapshot, lowest first.
struct Ids<'p> {
    previous: Option<&'p Snapshot>,
    claimed: HashSet<u32>,
    /// Ids unused by the previous snapshot, highest first.
    holes: Vec<u32>,
    next: u32,
}

impl<'p> Ids<'p> {
    /// Ids for a snapshot derived from `previous`: its free ids, then new ones.
    fn derived(previous: &'p Snapshot) -> Self {
        let (holes, max) = previous.free_ids();
        Ids {
            previous: Some(previous),
            claimed: HashSet::new(),
            holes,
            next: max + 1,
        }
    }

    fn new(previous: Option<&'p Snapshot>) -> Self {
        let (holes, next) = match previous {
            None => (Vec::new(), 1),
            Some(p) => {
                let max = p.max_chain_id();
                let holes = (1..=max)
                    .rev()
                    .filter(|&id| p.chain(id).is_none())
                    .collect();
                (holes, max + 1)
            }
        };
        Ids {
            previous,
            claimed: HashSet::new(),
            holes,
            next,
        }
    }

    /// The id for `draft`, first reached through the lower-case `name`.
    fn assign(&mut self, name: &str, draft: &Chain) -> u32 {
        if let Some(old) = self.previous.and_then(|p| p.chain_by_name(name))
            && old.same_route(draft)
            && self.claimed.insert(old.id)
        {
            return old.id;
        }
        self.holes.pop().unwrap_or_else(|| {
            self.next += 1;
            self.next - 1
        })
    }
}

struct Builder<'s, 'p> {
    state: &'s State,
    /// By position, which chain ids and stage lists refer to.
    zones: Vec<&'s ZoneState>,
    /// Each zone's sequence number in the state's table, ascending with
    /// position.
    zone_seqs: Vec<u64>,
    ids: Ids<'p>,
    stages: &'p [Stage],
    zone_by_name: &'p HashMap<String, usize>,
    /// `None`: look names up in the state's index (a derived snapshot).
    maps: Option<Maps<'s>>,
    chains: Vec<Arc<Chain>>,
    stage_lists: HashMap<(Option<usize>, usize), Arc<[Stage]>>,
    origins: HashMap<Origin, Arc<Origin>>,
    /// Record chains are shared by every name with the same zone and origin.
    record_chains: HashMap<(usize, Arc<Origin>), Arc<Chain>>,
    /// A wildcard custom hostname's chain is shared by the names it covers
    /// through the same customer zone.
    hostname_chains: HashMap<(String, Option<usize>), Arc<Chain>>,
}

impl<'s, 'p> Builder<'s, 'p> {
    fn new(state: &'s State, context: &'p Context, ids: Ids<'p>, maps: Option<Maps<'s>>) -> Self {
        Builder {
            state,
            zones: state.zones().iter().collect(),
            zone_seqs: state.zones().iter_seq().map(|(seq, _)| seq).collect(),
            ids,
            stages: &context.stages,
            zone_by_name: &context.zone_by_name,
            maps,
            chains: Vec::new(),
            stage_lists: HashMap::new(),
            origins: HashMap::new(),
            record_chains: HashMap::new(),
            hostname_chains: HashMap::new(),
        }
    }

    /// The outcome of a lower-case exact name, as the full build gives it:
    /// its custom hostname, else the record of that name in the zone it
    /// falls in, else none.
    fn exact_outcome(&mut self, name: &str) -> Option<Outcome> {
        if let Some((p, ch)) = self.ch_exact(name) {
            return Some(self.hostname_outcome(name, p, ch));
        }
        let z = self.zone_of(name)?;
        let record = self.zones[z]
            .dns_records
            .iter()
            .find(|r| r.name.eq_ignore_ascii_case(name))?;
        let suffix = parent(name).unwrap_or_default();
        Some(self.record_outcome(name, z, record, suffix))
    }

    /// The record of lower-case `name` in zone `z` (the last one, as a map
    /// built from the records keeps it).
    fn record(&self, z: usize, name: &str) -> Option<&'s DnsRecord> {
        match &self.maps {
            Some(maps) => maps.records[z].get(name).copied(),
            None => self.zones[z]
                .dns_records
                .iter()
                .rfind(|r| r.name.len() == name.len() && r.name.eq_ignore_ascii_case(name)),
        }
    }

    /// The exact custom hostname of lower-case `name`.
    fn ch_exact(&self, name: &str) -> Option<(usize, &'s CustomHostname)> {
        match &self.maps {
            Some(maps) => maps.ch_exact.get(name).copied(),
            None => self.indexed_hostname(name),
        }
    }

    /// The custom hostname whose lower-case hostname is `name`, from the
    /// state's index, with its zone's position.
    fn indexed_hostname(&self, name: &str) -> Option<(usize, &'s CustomHostname)> {
        let (zone, hostname) = self.state.custom_hostname(name)?;
        let seq = self.state.zones().seq_of(&zone.zone.id)?;
        let z = self.zone_seqs.binary_search(&seq).ok()?;
        Some((z, hostname))
    }

    /// The zone a lower-case name falls in: the longest apex it lies within.
    fn zone_of(&self, name: &str) -> Option<usize> {
        let mut candidate = Some(name);
        while let Some(n) = candidate {
            if let Some(&z) = self.zone_by_name.get(n) {
                return Some(z);
            }
            candidate = parent(n);
        }
        None
    }

    /// The record answering a lower-case name in zone `z`: exact, else the
    /// wildcard one label up.
    fn record_for(&self, z: usize, name: &str) -> Option<&'s DnsRecord> {
        self.record(z, name).or_else(|| {
            let parent = parent(name)?;
            self.record(z, &format!("*.{parent}"))
        })
    }

    /// The wildcard custom hostname `*.{suffix}`.
    fn wildcard_hostname(&self, suffix: &str) -> Option<(usize, &'s CustomHostname)> {
        match &self.maps {
            Some(maps) => maps.ch_wildcard.get(suffix).copied(),
            None => self.indexed_hostname(&format!("*.{suffix}")),
        }
    }

    fn zone_label(&self, z: usize) -> String {
        let zone = &self.zones[z].zone;
        format!(
            "zone {} ({}, account {})",
            zone.name, zone.id, zone.account.id
        )
    }

    /// A DNS record's outcome for `name` (the record's own name); `suffix` is
    /// the name one label up, where a wildcard custom hostname would sit.
    fn record_outcome(
        &mut self,
        name: &str,
        z: usize,
        record: &DnsRecord,
        suffix: &str,
    ) -> Outcome {
        let wildcard_ch = self.wildcard_hostname(suffix);
        if !record.proxied {
            if let Some((p, ch)) = wildcard_ch {
                return self.hostname_outcome(name, p, ch);
            }
            return Err(EdgeError::new(
                ErrorKind::NoRoute,
                format!(
                    "DNS record {name} of {} is DNS-only (not proxied), so no zone of this edge serves it",
                    self.zone_label(z)
                ),
            ));
        }
        if record.record_type == RecordType::Cname {
            let target = record.content.to_ascii_lowercase();
            if let Some(q) = self.zone_of(&target)
                && q != z
                && self.zones[q].zone.account.id != self.zones[z].zone.account.id
            {
                if let Some((p, ch)) = wildcard_ch
                    && p == q
                {
                    return self.hostname_outcome(name, p, ch);
                }
                return Err(EdgeError::new(
                    ErrorKind::CnameCrossUser,
                    format!(
                        "{} has a proxied CNAME {name} -> {target}, which crosses into {}, \
                         and that zone has no custom hostname for {name}",
                        self.zone_label(z),
                        self.zone_label(q)
                    ),
                ));
            }
        }
        let origin = self.intern_origin(Origin {
            host: record.content.to_ascii_lowercase().into(),
            port: None,
            tls: OriginTls::from(self.zones[z].zone.settings.ssl),
            sni: OriginSni::RequestHost,
            host_header: HostHeader::Request,
        });
        if let Some(chain) = self.record_chains.get(&(z, origin.clone())) {
            return Ok(chain.clone());
        }
        let chain = self.push_chain(name, None, z, origin.clone(), None, None);
        self.record_chains.insert((z, origin), chain.clone());
        Ok(chain)
    }

    /// The outcome of custom hostname `ch` of provider zone `p`, reached by the
    /// lower-case `name` (the hostname itself, or a record name it covers).
    fn hostname_outcome(&mut self, name: &str, p: usize, ch: &CustomHostname) -> Outcome {
        let provider: &'s ZoneState = self.zones[p];
        let what = || {
            format!(
                "custom hostname {} ({}) of {}",
                ch.hostname,
                ch.id,
                self.zone_label(p)
            )
        };
        let errors = || {
            if ch.verification_errors.is_empty() {
                String::new()
            } else {
                format!(" ({})", ch.verification_errors.join("; "))
            }
        };
        match ch.status {
            HostnameStatus::Active => {}
            HostnameStatus::Blocked => {
                return Err(EdgeError::new(
                    ErrorKind::HostnameBlocked,
                    format!("{} is blocked{}", what(), errors()),
                ));
            }
            status => {
                return Err(EdgeError::new(
                    ErrorKind::OriginUnresolvable,
                    format!(
                        "{} is {}, and only active custom hostnames carry traffic{}",
                        what(),
                        status.as_str(),
                        errors()
                    ),
                ));
            }
        }
        let (origin_name, sni) = match &ch.custom_origin_server {
            Some(server) => {
                let sni = match ch.custom_origin_sni.as_deref() {
                    Some(REQUEST_HOST_HEADER) => OriginSni::RequestHost,
                    Some(sni) => OriginSni::Name(sni.to_ascii_lowercase().into()),
                    None => OriginSni::Name(server.to_ascii_lowercase().into()),
                };
                (server.to_ascii_lowercase(), sni)
            }
            None => match &provider.fallback_origin {
                None => {
                    return Err(EdgeError::new(
                        ErrorKind::OriginUnresolvable,
                        format!(
                            "{} sets no custom_origin_server and the zone has no fallback origin",
                            what()
                        ),
                    ));
                }
                Some(f) if f.status != FallbackOriginStatus::Active => {
                    return Err(EdgeError::new(
                        ErrorKind::OriginUnresolvable,
                        format!(
                            "{} sets no custom_origin_server and the zone's fallback origin {} is {}, not active",
                            what(),
                            f.origin,
                            f.status.as_str()
                        ),
                    ));
                }
                Some(f) => (f.origin.to_ascii_lowercase(), OriginSni::RequestHost),
            },
        };
        let Some(record) = self.record(p, &origin_name) else {
            return Err(EdgeError::new(
                ErrorKind::OriginUnresolvable,
                format!(
                    "{}: origin {origin_name} is not a DNS record of the zone",
                    what()
                ),
            ));
        };
        if record.record_type == RecordType::Cname {
            let target = record.content.to_ascii_lowercase();
            let next_zone = self.zone_of(&target).filter(|&q| q != p);
            let next_hostname = self
                .ch_exact(&target)
                .or_else(|| parent(&target).and_then(|s| self.wildcard_hostname(s)))
                .filter(|&(q, _)| q != p);
            let other_account =
                next_zone.filter(|&q| self.zones[q].zone.account.id != provider.zone.account.id);
            if let Some(q) = next_hostname.map(|(q, _)| q).or(other_account) {
                return Err(EdgeError::new(
                    ErrorKind::CnameCrossUser,
                    format!(
                        "{}: its origin {origin_name} is a CNAME to {target} in {}; a custom-hostname \
                         zone is never chained into another zone",
                        what(),
                        self.zone_label(q)
                    ),
                ));
            }
        }
        let origin = self.intern_origin(Origin {
            host: record.content.to_ascii_lowercase().into(),
            port: None,
            tls: OriginTls::from(provider.zone.settings.ssl),
            sni,
            host_header: HostHeader::CustomHostname,
        });
        let customer = self.zone_of(name).filter(|&c| c != p);
        let o2o_customer = customer.filter(|&c| {
            self.zones[c].zone.account.id != provider.zone.account.id
                && self
                    .record_for(c, name)
                    .is_some_and(|r| self.points_at_provider(r, p))
        });
        let shared = (ch.id.clone(), o2o_customer);
        if let Some(chain) = self.hostname_chains.get(&shared) {
            return Ok(chain.clone());
        }
        let metadata = ch
            .custom_metadata
            .as_ref()
            .map(|m| Arc::new(serde_json::Value::Object(m.clone())));
        let hostname = ChainHostname::new(
            &ch.id,
            &ch.hostname,
            metadata,
            ch.ssl.settings.min_tls_version,
        );
        let chain = self.push_chain(
            name,
            o2o_customer,
            p,
            origin,
            Some(hostname),
            Some(&ch.admission),
        );
        self.hostname_chains.insert(shared, chain.clone());
        Ok(chain)
    }

    /// O2O needs a proxied CNAME straight to the provider: its CNAME target or
    /// a name inside its zone, not through another record of the customer.
    fn points_at_provider(&self, record: &DnsRecord, p: usize) -> bool {
        if record.record_type != RecordType::Cname || !record.proxied {
            return false;
        }
        let target = record.content.to_ascii_lowercase();
        let cname_target = self.zones[p]
            .custom_hostname_settings
            .as_ref()
            .map(|s| s.cname_target.as_str());
        cname_target.is_some_and(|t| t.eq_ignore_ascii_case(&target))
            || self.zone_of(&target) == Some(p)
    }

    fn intern_origin(&mut self, origin: Origin) -> Arc<Origin> {
        self.origins
            .entry(origin)
            .or_insert_with_key(|o| Arc::new(o.clone()))
            .clone()
    }

    fn push_chain(
        &mut self,
        name: &str,
        customer: Option<usize>,
        provider: usize,
        origin: Arc<Origin>,
        custom_hostname: Option<ChainHostname>,
        hostname_admission: Option<&Admission>,
    ) -> Arc<Chain> {
        let stages = self
            .stage_lists
            .entry((customer, provider))
            .or_insert_with(|| {
                customer
                    .iter()
                    .chain(std::iter::once(&provider))
                    .map(|&z| self.stages[z].clone())
                    .collect()
            })
            .clone();
        let zones = customer.iter().chain(std::iter::once(&provider));
        let budget = admission::strictest(
            zones
                .map(|&z| &self.zones[z].zone.settings.admission)
                .chain(hostname_admission),
        );
        let mut chain = Chain {
            id: 0,
            stages,
            // A customer stage is there only for O2O.
            o2o: customer.is_some(),
            origin,
            custom_hostname,
            admission: ChainAdmission::new(budget),
        };
        chain.id = self.ids.assign(name, &chain);
        // The same chain as before keeps counting where it was.
        if let Some(old) = self.ids.previous.and_then(|p| p.chain(chain.id))
            && old.same_route(&chain)
        {
            chain.admission.keep_meter_of(&old.admission);
        }
        let chain = Arc::new(chain);
        self.chains.push(chain.clone());
        chain
    }
}
