//! The real-time CNAME check this edge answers from its own zones, run inside
//! the write that could change its answer: a custom hostname whose customer
//! zone is on this edge goes `active` in the very write that makes its CNAME
//! point at the provider (and `moved` in the one that stops it). Hostnames
//! whose DNS lives elsewhere are left to the external checks.

use std::collections::BTreeSet;

use crate::state::activation::transition;
use crate::state::hostname::is_within;
use crate::state::{Change, CustomHostname, Observation, State};

/// `Observe` changes for the hostnames `changes` may have moved.
pub(super) fn local_checks(current: &State, next: &State, changes: &[Change]) -> Vec<Change> {
    let mut apexes = BTreeSet::new();
    let mut providers = BTreeSet::new();
    let mut hostnames = BTreeSet::new();
    let name_of = |id: &str| {
        next.zone(id)
            .or_else(|| current.zone(id))
            .map(|z| z.zone.name.to_ascii_lowercase())
    };
    for change in changes {
        match change {
            Change::PutCustomHostname {
                zone_id,
                custom_hostname,
            } => {
                hostnames.insert((zone_id.as_str(), custom_hostname.id.as_str()));
            }
            Change::PutDnsRecord { zone_id, .. } | Change::DeleteDnsRecord { zone_id, .. } => {
                apexes.extend(name_of(zone_id));
            }
            Change::PutZone { zone } => {
                apexes.insert(zone.name.to_ascii_lowercase());
                apexes.extend(
                    current
                        .zone(&zone.id)
                        .map(|z| z.zone.name.to_ascii_lowercase()),
                );
            }
            Change::DeleteZone { id } => apexes.extend(name_of(id)),
            Change::PutCustomHostnameSettings { zone_id, .. } => {
                providers.insert(zone_id.as_str());
            }
            _ => {}
        }
    }
    // A write of custom hostnames alone can move only those; records,
    // zones and CNAME targets can move any hostname below them.
    let candidates: Vec<(&str, &CustomHostname)> = if apexes.is_empty() && providers.is_empty() {
        hostnames
            .iter()
            .filter_map(|&(zone_id, id)| {
                let zone = next.zone(zone_id)?;
                Some((zone.zone.id.as_str(), zone.custom_hostnames.get(id)?))
            })
            .collect()
    } else {
        next.zones()
            .iter()
            .flat_map(|zone| {
                let provider = providers.contains(zone.zone.id.as_str());
                let (apexes, hostnames) = (&apexes, &hostnames);
                zone.custom_hostnames
                    .iter()
                    .filter(move |hostname| {
                        provider
                            || hostnames.contains(&(zone.zone.id.as_str(), hostname.id.as_str()))
                            || apexes
                                .iter()
                                .any(|apex| is_within(&hostname.hostname, apex))
                    })
                    .map(move |hostname| (zone.zone.id.as_str(), hostname))
            })
            .collect()
    };
    let mut observed = Vec::new();
    for (zone_id, hostname) in candidates {
        let Some(result) = next.cname_check(&hostname.hostname, zone_id) else {
            continue;
        };
        let observation = Observation::Cname { result };
        // Status and errors only: this edge's own zones answer every write
        // that could move the hostname, so recording that its CNAME points
        // here (which the verifier needs) is no reason for a write of its own.
        let after = transition(hostname, &observation);
        if after.status != hostname.status
            || after.verification_errors != hostname.verification_errors
        {
            observed.push(Change::Observe {
                zone_id: zone_id.to_owned(),
                custom_hostname_id: hostname.id.clone(),
                observation,
            });
        }
    }
    observed
}
