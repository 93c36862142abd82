//! Which hostnames a write can change the outcome of, from the write itself,
//! so that a write touching one custom hostname of a million recomputes one
//! name ([`Snapshot::update`](super::Snapshot::update)) instead of the whole
//! snapshot.
//!
//! Narrow changes: an exact custom hostname (its old and new name), an exact
//! DNS record that is no custom hostname's origin (its old and new name), a
//! zone's rulesets (no name; the zone's compiled rules), accounts (no name:
//! chains carry only the account id of a zone). Everything else may change
//! many names at once and rebuilds the snapshot whole: zones created, changed
//! or deleted, fallback origins, custom-hostname settings (the CNAME target
//! decides O2O for every customer), wildcards (they cover names and shadow
//! others in the kernel's map), records that are a custom hostname's origin,
//! and custom hostnames that an origin CNAMEs to.

use crate::state::hostname::is_wildcard;
use crate::state::{Change, State};

/// What a narrow write changes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Affected {
    /// Lower-case exact names whose outcome may differ, each once.
    pub names: Vec<String>,
    /// Ids of zones whose rulesets changed.
    pub rulesets: Vec<String>,
    /// A DNS record changed (the edge's own addresses for origins).
    pub records: bool,
}

/// What `changes`, which took `previous` to `next`, can affect; `None` when
/// the whole snapshot must be rebuilt.
pub fn affected(previous: &State, next: &State, changes: &[Change]) -> Option<Affected> {
    let mut affected = Affected::default();
    for change in changes {
        match change {
            Change::PutAccount { .. } | Change::DeleteAccount { .. } => {}
            Change::PutRuleset { zone_id, .. } => affected.rulesets.push(zone_id.clone()),
            Change::PutZone { .. }
            | Change::DeleteZone { .. }
            | Change::PutFallbackOrigin { .. }
            | Change::PutCustomHostnameSettings { .. } => return None,
            Change::PutDnsRecord { zone_id, record } => {
                affected.records = true;
                let old = record_name(previous, zone_id, &record.id);
                for name in old.into_iter().chain([record.name.as_str()]) {
                    record_name_affects(previous, next, zone_id, name, &mut affected)?;
                }
            }
            Change::DeleteDnsRecord { zone_id, id } => {
                affected.records = true;
                let name = record_name(previous, zone_id, id)?;
                record_name_affects(previous, next, zone_id, name, &mut affected)?;
            }
            Change::PutCustomHostname {
                zone_id,
                custom_hostname,
            } => {
                let old = hostname_name(previous, zone_id, &custom_hostname.id);
                for name in old.into_iter().chain([custom_hostname.hostname.as_str()]) {
                    hostname_affects(next, name, &mut affected)?;
                }
            }
            Change::DeleteCustomHostname { zone_id, id }
            | Change::Observe {
                zone_id,
                custom_hostname_id: id,
                ..
            } => {
                let name = hostname_name(previous, zone_id, id)?;
                hostname_affects(next, name, &mut affected)?;
            }
        }
    }
    affected.names.sort_unstable();
    affected.names.dedup();
    Some(affected)
}

fn record_name<'s>(state: &'s State, zone_id: &str, id: &str) -> Option<&'s str> {
    Some(&state.zone(zone_id)?.dns_records.get(id)?.name)
}

fn hostname_name<'s>(state: &'s State, zone_id: &str, id: &str) -> Option<&'s str> {
    Some(&state.zone(zone_id)?.custom_hostnames.get(id)?.hostname)
}

/// A record named `name` in zone `zone_id` decides that name's outcome, and
/// every custom hostname's whose origin it is.
fn record_name_affects(
    previous: &State,
    next: &State,
    zone_id: &str,
    name: &str,
    affected: &mut Affected,
) -> Option<()> {
    if is_wildcard(name) {
        return None;
    }
    let is_origin = |state: &State| {
        state.zone(zone_id).is_some_and(|zone| {
            zone.fallback_origin
                .as_ref()
                .is_some_and(|f| f.origin.eq_ignore_ascii_case(name))
        }) || state.is_custom_origin(zone_id, name)
    };
    if is_origin(previous) || is_origin(next) {
        return None;
    }
    affected.names.push(name.to_ascii_lowercase());
    Some(())
}

/// An exact custom hostname decides its own name's outcome, and that of
/// every custom hostname whose origin CNAMEs to it (a chain must not continue
/// into it).
fn hostname_affects(next: &State, name: &str, affected: &mut Affected) -> Option<()> {
    if is_wildcard(name) {
        return None;
    }
    let cname_target = next.is_cname_target(name);
    if cname_target {
        return None;
    }
    affected.names.push(name.to_ascii_lowercase());
    Some(())
}
