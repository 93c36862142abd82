//! Accounts, zones, DNS records, custom hostnames and fallback origins: what
//! operators declare, validated as a whole. Changes go through
//! [`State::apply`], which returns a new valid state or an error naming the
//! field, so a bad change never leaves a half-applied state behind.

pub mod activation;
pub mod hostname;
mod index;
pub mod model;
mod table;
#[cfg(test)]
mod tests;
mod validate;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::rules::model::{Phase, Ruleset};

pub use activation::{CnameCheck, Observation, Transition};
use index::{Index, Place};
pub use model::*;
pub use table::{Diff, Keyed, Table};
pub use validate::{MAX_METADATA_BYTES, ValidationError};

/// Everything the edge serves. Each object keeps Cloudflare's JSON shape; the
/// nesting (children under their zone) is this edge's config-file layout.
///
/// The fields are private so that every change goes through [`State::apply`],
/// which keeps the index of names and ids in step with the objects.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(from = "Document")]
pub struct State {
    accounts: Table<Account>,
    zones: Table<ZoneState>,
    #[serde(skip)]
    index: Index,
}

/// The JSON document a state is read from (config file, store, import).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    #[serde(default)]
    accounts: Table<Account>,
    #[serde(default)]
    zones: Table<ZoneState>,
}

impl From<Document> for State {
    fn from(document: Document) -> State {
        State::new(document.accounts, document.zones)
    }
}

impl PartialEq for State {
    fn eq(&self, other: &Self) -> bool {
        self.accounts == other.accounts && self.zones == other.zones
    }
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("State")
            .field("accounts", &self.accounts)
            .field("zones", &self.zones)
            .finish()
    }
}

/// A zone with the objects that live in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneState {
    pub zone: Zone,
    #[serde(default, skip_serializing_if = "Table::is_empty")]
    pub dns_records: Table<DnsRecord>,
    #[serde(default, skip_serializing_if = "Table::is_empty")]
    pub custom_hostnames: Table<CustomHostname>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_origin: Option<FallbackOrigin>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_hostname_settings: Option<CustomHostnameSettings>,
}

impl Keyed for Account {
    fn key(&self) -> &str {
        &self.id
    }
}

impl Keyed for ZoneState {
    fn key(&self) -> &str {
        &self.zone.id
    }
}

impl Keyed for DnsRecord {
    fn key(&self) -> &str {
        &self.id
    }
}

impl Keyed for CustomHostname {
    fn key(&self) -> &str {
        &self.id
    }
}

impl ZoneState {
    pub fn new(zone: Zone) -> Self {
        ZoneState {
            zone,
            dns_records: Table::default(),
            custom_hostnames: Table::default(),
            fallback_origin: None,
            custom_hostname_settings: None,
        }
    }

    /// The record answering `name` in this zone: the exact one, else the
    /// wildcard one label above it (DNS wildcard semantics, one level deep).
    pub fn record_for(&self, name: &str) -> Option<&DnsRecord> {
        self.record_named(name).or_else(|| {
            let parent = hostname::parent(name)?;
            self.dns_records.iter().find(|r| {
                hostname::is_wildcard(&r.name) && r.name[2..].eq_ignore_ascii_case(parent)
            })
        })
    }

    /// The record named exactly `name` (in any case).
    pub fn record_named(&self, name: &str) -> Option<&DnsRecord> {
        self.dns_records
            .iter()
            .find(|r| r.name.eq_ignore_ascii_case(name))
    }
}

/// One write to the state, as the control socket and the config loader send it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Change {
    PutAccount {
        account: Account,
    },
    DeleteAccount {
        id: String,
    },
    /// Creates a zone or replaces its own fields; its records and hostnames stay.
    PutZone {
        zone: Zone,
    },
    /// Deletes the zone with everything in it.
    DeleteZone {
        id: String,
    },
    PutDnsRecord {
        zone_id: String,
        record: DnsRecord,
    },
    DeleteDnsRecord {
        zone_id: String,
        id: String,
    },
    PutCustomHostname {
        zone_id: String,
        custom_hostname: CustomHostname,
    },
    DeleteCustomHostname {
        zone_id: String,
        id: String,
    },
    /// `None` removes it.
    PutFallbackOrigin {
        zone_id: String,
        fallback_origin: Option<FallbackOrigin>,
    },
    /// `None` removes them.
    PutCustomHostnameSettings {
        zone_id: String,
        settings: Option<CustomHostnameSettings>,
    },
    /// `None` removes the phase's entrypoint ruleset.
    PutRuleset {
        zone_id: String,
        phase: Phase,
        ruleset: Option<Ruleset>,
    },
    /// Feeds one validation check's result to the hostname's activation state machine.
    Observe {
        zone_id: String,
        custom_hostname_id: String,
        observation: Observation,
    },
}

impl State {
    /// The state holding these objects (not validated: see [`State::validate`]).
    pub fn new(accounts: Table<Account>, zones: Table<ZoneState>) -> State {
        let mut state = State {
            accounts,
            zones,
            index: Index::default(),
        };
        state.index = Index::build(&state);
        state
    }

    pub fn accounts(&self) -> &Table<Account> {
        &self.accounts
    }

    pub fn zones(&self) -> &Table<ZoneState> {
        &self.zones
    }

    /// Checks every object and every reference between objects.
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate::state(self)
    }

    /// The state after `change`, validated; `self` is never modified.
    pub fn apply(&self, change: Change) -> Result<State, ValidationError> {
        self.apply_all([change])
    }

    /// The state after all `changes`: all or nothing. What the changes touch
    /// is validated once at the end, against the index of the rest, so the
    /// result is as valid as [`State::validate`] would find it while a write
    /// costs what it touches, not the size of the state.
    pub fn apply_all(
        &self,
        changes: impl IntoIterator<Item = Change>,
    ) -> Result<State, ValidationError> {
        let mut next = self.clone();
        let mut touched = Touched::default();
        for change in changes {
            next.mutate(change, &mut touched)?;
        }
        validate::touched(&next, &touched)?;
        Ok(next)
    }

    pub fn zone(&self, id: &str) -> Option<&ZoneState> {
        self.zones.get(id)
    }

    /// The zone on this edge that `name` falls in: the longest apex it lies within.
    pub fn zone_of(&self, name: &str) -> Option<&ZoneState> {
        let name = name.to_ascii_lowercase();
        let mut rest = name.as_str();
        loop {
            if let Some(id) = self.index.zone_names.get(rest).and_then(|ids| ids.first()) {
                return self.zones.get(id);
            }
            rest = hostname::parent(rest)?;
        }
    }

    /// The real-time CNAME check of a custom hostname of `provider_zone_id`,
    /// answered from this edge's own zones; `None` when the hostname's DNS
    /// lives elsewhere and the external checks must decide.
    pub fn cname_check(&self, hostname: &str, provider_zone_id: &str) -> Option<CnameCheck> {
        activation::cname_check(self, hostname, provider_zone_id)
    }

    /// The custom hostname named `name` (in any case), with its zone.
    pub fn custom_hostname(&self, name: &str) -> Option<(&ZoneState, &CustomHostname)> {
        let places = self.index.hostnames.get(&index::key("", name))?;
        places.as_slice().iter().find_map(|place| {
            let zone = self.zones.get_seq(place.zone)?;
            let hostname = zone.custom_hostnames.get_seq(place.hostname)?;
            hostname
                .hostname
                .eq_ignore_ascii_case(name)
                .then_some((zone, hostname))
        })
    }

    /// Whether some CNAME record on this edge points at `name`.
    pub fn is_cname_target(&self, name: &str) -> bool {
        self.index.cname_targets.get(index::key("", name)) > 0
            && self
                .zones
                .iter()
                .flat_map(|zone| &zone.dns_records)
                .any(|r| r.record_type == RecordType::Cname && r.content.eq_ignore_ascii_case(name))
    }

    /// Whether some custom hostname of zone `zone_id` has `name` as its
    /// `custom_origin_server`.
    pub fn is_custom_origin(&self, zone_id: &str, name: &str) -> bool {
        self.index.origins.get(index::key(zone_id, name)) > 0
            && self.zone(zone_id).is_some_and(|zone| {
                zone.custom_hostnames.iter().any(|h| {
                    h.custom_origin_server
                        .as_deref()
                        .is_some_and(|server| server.eq_ignore_ascii_case(name))
                })
            })
    }

    fn mutate(&mut self, change: Change, touched: &mut Touched) -> Result<(), ValidationError> {
        let State {
            accounts,
            zones,
            index,
        } = self;
        match change {
            Change::PutAccount { account } => {
                touched.accounts.push(account.id.clone());
                accounts.put(account);
            }
            Change::DeleteAccount { id } => {
                accounts
                    .remove(&id)
                    .ok_or_else(|| missing("id", "account", &id))?;
                touched.deleted_accounts.push(id);
            }
            Change::PutZone { zone } => {
                touched.zones.push(zone.id.clone());
                match zones.get_mut(&zone.id) {
                    Some(existing) => {
                        if !existing.zone.name.eq_ignore_ascii_case(&zone.name) {
                            index.remove_zone_name(&existing.zone.name, &zone.id);
                            index.add_zone_name(&zone.name, &zone.id);
                            touched.renamed_zones.push(zone.id.clone());
                        }
                        existing.zone = zone;
                    }
                    None => {
                        index.add_zone_name(&zone.name, &zone.id);
                        zones.put(ZoneState::new(zone));
                    }
                }
            }
            Change::DeleteZone { id } => {
                let seq = zones.seq_of(&id);
                let zone = zones
                    .remove(&id)
                    .ok_or_else(|| missing("id", "zone", &id))?;
                index.remove_zone(seq.unwrap_or_default(), &zone);
            }
            Change::PutDnsRecord { zone_id, record } => {
                let zone = zone_mut(zones, &zone_id)?;
                touched.records.push((zone_id.clone(), record.id.clone()));
                index.add_record(&record);
                if let Some(old) = zone.dns_records.put(record) {
                    index.remove_record(&old);
                    touched.record_names.push((zone_id, old.name));
                }
            }
            Change::DeleteDnsRecord { zone_id, id } => {
                let zone = zone_mut(zones, &zone_id)?;
                let old = zone
                    .dns_records
                    .remove(&id)
                    .ok_or_else(|| missing("id", "DNS record", &id))?;
                index.remove_record(&old);
                touched.record_names.push((zone_id, old.name));
            }
            Change::PutCustomHostname {
                zone_id,
                custom_hostname,
            } => {
                let zone_seq = zones.seq_of(&zone_id).unwrap_or_default();
                let zone = zone_mut(zones, &zone_id)?;
                let id = custom_hostname.id.clone();
                let new = custom_hostname.clone();
                let old = zone.custom_hostnames.put(custom_hostname);
                let place = Place {
                    zone: zone_seq,
                    hostname: zone.custom_hostnames.seq_of(&id).unwrap_or_default(),
                };
                if let Some(old) = old {
                    index.remove_hostname(&zone_id, place, &old);
                }
                index.add_hostname(&zone_id, place, &new);
                touched.hostnames.push((zone_id, id));
            }
            Change::DeleteCustomHostname { zone_id, id } => {
                let zone_seq = zones.seq_of(&zone_id).unwrap_or_default();
                let zone = zone_mut(zones, &zone_id)?;
                let place = Place {
                    zone: zone_seq,
                    hostname: zone.custom_hostnames.seq_of(&id).unwrap_or_default(),
                };
                let old = zone
                    .custom_hostnames
                    .remove(&id)
                    .ok_or_else(|| missing("id", "custom hostname", &id))?;
                index.remove_hostname(&zone_id, place, &old);
            }
            Change::PutFallbackOrigin {
                zone_id,
                fallback_origin,
            } => {
                zone_mut(zones, &zone_id)?.fallback_origin = fallback_origin;
                touched.zones.push(zone_id);
            }
            Change::PutCustomHostnameSettings { zone_id, settings } => {
                zone_mut(zones, &zone_id)?.custom_hostname_settings = settings;
                touched.zones.push(zone_id);
            }
            Change::PutRuleset {
                zone_id,
                phase,
                ruleset,
            } => {
                let rulesets = &mut zone_mut(zones, &zone_id)?.zone.rulesets;
                match ruleset {
                    Some(ruleset) => {
                        rulesets.insert(phase, ruleset);
                    }
                    None => {
                        rulesets.remove(&phase);
                    }
                }
            }
            Change::Observe {
                zone_id,
                custom_hostname_id,
                observation,
            } => {
                let hostname = zone_mut(zones, &zone_id)?
                    .custom_hostnames
                    .get_mut(&custom_hostname_id)
                    .ok_or_else(|| {
                        missing("custom_hostname_id", "custom hostname", &custom_hostname_id)
                    })?;
                let Transition {
                    status,
                    verification_errors,
                    cname_observed,
                } = activation::transition(hostname, &observation);
                hostname.status = status;
                hostname.verification_errors = verification_errors;
                hostname.cname_observed = cname_observed;
            }
        }
        Ok(())
    }
}

/// What a batch of changes touched, for the checks at its end (objects
/// named here may have been removed again later in the batch).
#[derive(Default)]
struct Touched {
    accounts: Vec<String>,
    deleted_accounts: Vec<String>,
    /// Zones whose own fields, fallback origin or hostname settings changed.
    zones: Vec<String>,
    /// Zones whose apex changed: all their records and hostnames are checked.
    renamed_zones: Vec<String>,
    /// (zone id, record id) of records put.
    records: Vec<(String, String)>,
    /// (zone id, name) of names a record no longer holds as it did: what
    /// pointed at them must still find a proxied record.
    record_names: Vec<(String, String)>,
    /// (zone id, custom hostname id) of hostnames put.
    hostnames: Vec<(String, String)>,
}

fn zone_mut<'a>(
    zones: &'a mut Table<ZoneState>,
    id: &str,
) -> Result<&'a mut ZoneState, ValidationError> {
    zones
        .get_mut(id)
        .ok_or_else(|| ValidationError::new("change", "zone_id", format!("no zone `{id}`")))
}

fn missing(field: &str, what: &str, id: &str) -> ValidationError {
    ValidationError::new("change", field, format!("no {what} `{id}`"))
}
