//! Accounts, zones, DNS records, custom hostnames and fallback origins: what
//! operators declare, validated as a whole. Changes go through
//! [`State::apply`], which returns a new valid state or an error naming the
//! field, so a bad change never leaves a half-applied state behind.

pub mod activation;
pub mod hostname;
pub mod model;
#[cfg(test)]
mod tests;
mod validate;

use serde::{Deserialize, Serialize};

use crate::rules::model::{Phase, Ruleset};

pub use activation::{CnameCheck, Observation, Transition};
pub use model::*;
pub use validate::{MAX_METADATA_BYTES, ValidationError};

/// Everything the edge serves. Each object keeps Cloudflare's JSON shape; the
/// nesting (children under their zone) is this edge's config-file layout.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    #[serde(default)]
    pub accounts: Vec<Account>,
    #[serde(default)]
    pub zones: Vec<ZoneState>,
}

/// A zone with the objects that live in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneState {
    pub zone: Zone,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_records: Vec<DnsRecord>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub custom_hostnames: Vec<CustomHostname>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_origin: Option<FallbackOrigin>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_hostname_settings: Option<CustomHostnameSettings>,
}

impl ZoneState {
    pub fn new(zone: Zone) -> Self {
        ZoneState {
            zone,
            dns_records: Vec::new(),
            custom_hostnames: Vec::new(),
            fallback_origin: None,
            custom_hostname_settings: None,
        }
    }

    /// The record answering `name` in this zone: the exact one, else the
    /// wildcard one label above it (DNS wildcard semantics, one level deep).
    pub fn record_for(&self, name: &str) -> Option<&DnsRecord> {
        let exact = self
            .dns_records
            .iter()
            .find(|r| r.name.eq_ignore_ascii_case(name));
        exact.or_else(|| {
            let parent = hostname::parent(name)?;
            self.dns_records.iter().find(|r| {
                hostname::is_wildcard(&r.name) && r.name[2..].eq_ignore_ascii_case(parent)
            })
        })
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
    /// Checks every object and every reference between objects.
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate::state(self)
    }

    /// The state after `change`, validated whole; `self` is never modified.
    pub fn apply(&self, change: Change) -> Result<State, ValidationError> {
        self.apply_all([change])
    }

    /// The state after all `changes`, validated once at the end (a clone and a
    /// validation per change would dominate bulk loads): all or nothing.
    pub fn apply_all(
        &self,
        changes: impl IntoIterator<Item = Change>,
    ) -> Result<State, ValidationError> {
        let mut next = self.clone();
        for change in changes {
            next.mutate(change)?;
        }
        next.validate()?;
        Ok(next)
    }

    pub fn zone(&self, id: &str) -> Option<&ZoneState> {
        self.zones.iter().find(|z| z.zone.id == id)
    }

    /// The zone on this edge that `name` falls in: the longest apex it lies within.
    pub fn zone_of(&self, name: &str) -> Option<&ZoneState> {
        self.zones
            .iter()
            .filter(|z| hostname::is_within(name, &z.zone.name))
            .max_by_key(|z| z.zone.name.len())
    }

    /// The real-time CNAME check of a custom hostname of `provider_zone_id`,
    /// answered from this edge's own zones; `None` when the hostname's DNS
    /// lives elsewhere and the external checks must decide.
    pub fn cname_check(&self, hostname: &str, provider_zone_id: &str) -> Option<CnameCheck> {
        activation::cname_check(self, hostname, provider_zone_id)
    }

    fn zone_mut(&mut self, id: &str) -> Result<&mut ZoneState, ValidationError> {
        self.zones
            .iter_mut()
            .find(|z| z.zone.id == id)
            .ok_or_else(|| ValidationError::new("change", "zone_id", format!("no zone `{id}`")))
    }

    fn mutate(&mut self, change: Change) -> Result<(), ValidationError> {
        match change {
            Change::PutAccount { account } => {
                match self.accounts.iter_mut().find(|a| a.id == account.id) {
                    Some(existing) => *existing = account,
                    None => self.accounts.push(account),
                }
            }
            Change::DeleteAccount { id } => {
                let before = self.accounts.len();
                self.accounts.retain(|a| a.id != id);
                if self.accounts.len() == before {
                    return Err(missing("id", "account", &id));
                }
            }
            Change::PutZone { zone } => {
                match self.zones.iter_mut().find(|z| z.zone.id == zone.id) {
                    Some(existing) => existing.zone = zone,
                    None => self.zones.push(ZoneState::new(zone)),
                }
            }
            Change::DeleteZone { id } => {
                let before = self.zones.len();
                self.zones.retain(|z| z.zone.id != id);
                if self.zones.len() == before {
                    return Err(missing("id", "zone", &id));
                }
            }
            Change::PutDnsRecord { zone_id, record } => {
                let records = &mut self.zone_mut(&zone_id)?.dns_records;
                match records.iter_mut().find(|r| r.id == record.id) {
                    Some(existing) => *existing = record,
                    None => records.push(record),
                }
            }
            Change::DeleteDnsRecord { zone_id, id } => {
                let records = &mut self.zone_mut(&zone_id)?.dns_records;
                let before = records.len();
                records.retain(|r| r.id != id);
                if records.len() == before {
                    return Err(missing("id", "DNS record", &id));
                }
            }
            Change::PutCustomHostname {
                zone_id,
                custom_hostname,
            } => {
                let hostnames = &mut self.zone_mut(&zone_id)?.custom_hostnames;
                match hostnames.iter_mut().find(|h| h.id == custom_hostname.id) {
                    Some(existing) => *existing = custom_hostname,
                    None => hostnames.push(custom_hostname),
                }
            }
            Change::DeleteCustomHostname { zone_id, id } => {
                let hostnames = &mut self.zone_mut(&zone_id)?.custom_hostnames;
                let before = hostnames.len();
                hostnames.retain(|h| h.id != id);
                if hostnames.len() == before {
                    return Err(missing("id", "custom hostname", &id));
                }
            }
            Change::PutFallbackOrigin {
                zone_id,
                fallback_origin,
            } => self.zone_mut(&zone_id)?.fallback_origin = fallback_origin,
            Change::PutCustomHostnameSettings { zone_id, settings } => {
                self.zone_mut(&zone_id)?.custom_hostname_settings = settings
            }
            Change::PutRuleset {
                zone_id,
                phase,
                ruleset,
            } => {
                let rulesets = &mut self.zone_mut(&zone_id)?.zone.rulesets;
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
                let hostname = self
                    .zone_mut(&zone_id)?
                    .custom_hostnames
                    .iter_mut()
                    .find(|h| h.id == custom_hostname_id)
                    .ok_or_else(|| {
                        missing("custom_hostname_id", "custom hostname", &custom_hostname_id)
                    })?;
                let Transition {
                    status,
                    verification_errors,
                } = activation::transition(hostname, &observation);
                hostname.status = status;
                hostname.verification_errors = verification_errors;
            }
        }
        Ok(())
    }
}

fn missing(field: &str, what: &str, id: &str) -> ValidationError {
    ValidationError::new("change", field, format!("no {what} `{id}`"))
}
