//! Whole-state validation: each object's fields, then the references between
//! objects (records inside their zone, origins that are proxied records, ...).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::hostname::{self, Wildcard};
use super::model::*;
use super::{State, Touched, ZoneState, index};

/// The whole state is checked on every write, a million hostnames at the
/// largest: keys are hashed with foldhash (seeded per process) rather than
/// SipHash, and names already in lower case are borrowed, not copied.
type Hasher = foldhash::fast::RandomState;

fn lower(name: &str) -> Cow<'_, str> {
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    }
}

/// Cloudflare's limit on `custom_metadata`, serialised.
pub const MAX_METADATA_BYTES: usize = 4096;

/// What is wrong, on which object, in which field (Cloudflare's field names,
/// dotted for nested ones: `ssl.settings.min_tls_version`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    pub object: String,
    pub field: String,
    pub message: String,
}

impl ValidationError {
    pub fn new(
        object: impl Into<String>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ValidationError {
            object: object.into(),
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: `{}` {}", self.object, self.field, self.message)
    }
}

impl std::error::Error for ValidationError {}

pub(super) fn state(state: &State) -> Result<(), ValidationError> {
    for account in state.accounts() {
        self::account(account)?;
    }

    let zones = state.zones().len();
    let records_total = state.zones().iter().map(|z| z.dns_records.len()).sum();
    let hostnames_total = state.zones().iter().map(|z| z.custom_hostnames.len()).sum();
    let mut zone_names = HashMap::with_capacity_and_hasher(zones, Hasher::default());
    let mut record_ids = HashSet::with_capacity_and_hasher(records_total, Hasher::default());
    let mut hostname_ids = HashSet::with_capacity_and_hasher(hostnames_total, Hasher::default());
    let mut hostnames: HashMap<Cow<str>, &str, Hasher> =
        HashMap::with_capacity_and_hasher(hostnames_total, Hasher::default());
    for zs in state.zones() {
        zone(zs, state)?;
        if let Some(other) = zone_names.insert(lower(&zs.zone.name), zs.zone.id.as_str()) {
            return Err(zone_name_taken(zs, other));
        }
        let mut by_name: RecordsByName =
            HashMap::with_capacity_and_hasher(zs.dns_records.len(), Hasher::default());
        for record in &zs.dns_records {
            self::record(&zs.zone, record)?;
            if !record_ids.insert(record.id.as_str()) {
                return Err(record_id_taken(&zs.zone, record));
            }
            // One record per name: an origin is one address, and CNAME excludes others anyway.
            if by_name.insert(lower(&record.name), record).is_some() {
                return Err(record_name_taken(&zs.zone, record));
            }
        }
        for ch in &zs.custom_hostnames {
            custom_hostname(zs, &by_name, ch)?;
            if !hostname_ids.insert(ch.id.as_str()) {
                return Err(hostname_id_taken(&zs.zone, ch));
            }
            if let Some(other) = hostnames.insert(lower(&ch.hostname), &ch.id) {
                return Err(hostname_taken(&zs.zone, ch, other));
            }
        }
        provider_settings(zs, &by_name)?;
    }
    Ok(())
}

/// The checks of [`state`] that a batch of changes can have made fail:
/// those of the objects it touched, and of what pointed at what it removed.
/// Uniqueness is read from the index; a count above one sends the check to
/// find the other object, to name it (or to find a mere hash collision).
pub(super) fn touched(state: &State, touched: &Touched) -> Result<(), ValidationError> {
    for id in &touched.accounts {
        if let Some(account) = state.accounts().get(id) {
            self::account(account)?;
        }
    }
    for id in &touched.deleted_accounts {
        if state.accounts().get(id).is_none()
            && let Some(zs) = state.zones().iter().find(|z| &z.zone.account.id == id)
        {
            zone(zs, state)?;
        }
    }
    for id in touched.zones.iter().chain(&touched.renamed_zones) {
        let Some(zs) = state.zone(id) else { continue };
        zone(zs, state)?;
        let ids = state.index.zone_names.get(lower(&zs.zone.name).as_ref());
        if let Some(other) = ids.into_iter().flatten().find(|other| *other != id) {
            return Err(zone_name_taken(zs, other));
        }
        provider_settings(zs, zs)?;
    }
    for id in &touched.renamed_zones {
        let Some(zs) = state.zone(id) else { continue };
        let by_name: RecordsByName = zs.dns_records.iter().map(|r| (lower(&r.name), r)).collect();
        for record in &zs.dns_records {
            self::record(&zs.zone, record)?;
        }
        for ch in &zs.custom_hostnames {
            custom_hostname(zs, &by_name, ch)?;
        }
    }
    for (zone_id, id) in &touched.records {
        let Some(zs) = state.zone(zone_id) else {
            continue;
        };
        let Some(record) = zs.dns_records.get(id) else {
            continue;
        };
        self::record(&zs.zone, record)?;
        let same_id = || {
            state
                .zones()
                .iter()
                .flat_map(|z| &z.dns_records)
                .filter(|other| other.id == record.id)
                .count()
        };
        if state.index.record_ids.get(index::id_key(id)) > 1 && same_id() > 1 {
            return Err(record_id_taken(&zs.zone, record));
        }
        let same_name = zs
            .dns_records
            .iter()
            .filter(|other| other.name.eq_ignore_ascii_case(&record.name))
            .count();
        if same_name > 1 {
            return Err(record_name_taken(&zs.zone, record));
        }
    }
    for (zone_id, name) in &touched.record_names {
        let Some(zs) = state.zone(zone_id) else {
            continue;
        };
        provider_settings(zs, zs)?;
        if state.is_custom_origin(zone_id, name) && proxied_record(zs, zs, name).is_err() {
            let users = zs.custom_hostnames.iter().filter(|ch| {
                ch.custom_origin_server
                    .as_deref()
                    .is_some_and(|server| server.eq_ignore_ascii_case(name))
            });
            for ch in users {
                custom_hostname(zs, zs, ch)?;
            }
        }
    }
    for (zone_id, id) in &touched.hostnames {
        let Some(zs) = state.zone(zone_id) else {
            continue;
        };
        let Some(ch) = zs.custom_hostnames.get(id) else {
            continue;
        };
        custom_hostname(zs, zs, ch)?;
        let all = || state.zones().iter().flat_map(|z| &z.custom_hostnames);
        if state.index.hostname_ids.get(index::id_key(id)) > 1
            && all().filter(|other| other.id == ch.id).count() > 1
        {
            return Err(hostname_id_taken(&zs.zone, ch));
        }
        let holders = state.index.hostnames.get(&index::key("", &ch.hostname));
        if holders.is_some_and(|places| places.as_slice().len() > 1)
            && let Some(other) = all().find(|other| {
                other.id != ch.id && other.hostname.eq_ignore_ascii_case(&ch.hostname)
            })
        {
            return Err(hostname_taken(&zs.zone, ch, &other.id));
        }
    }
    Ok(())
}

fn account(account: &Account) -> Result<(), ValidationError> {
    let object = || format!("account `{}`", account.id);
    if account.id.is_empty() {
        return Err(ValidationError::new(object(), "id", "must not be empty"));
    }
    if account.name.trim().is_empty() {
        return Err(ValidationError::new(object(), "name", "must not be empty"));
    }
    Ok(())
}

/// A zone's own fields and its account.
fn zone(zs: &ZoneState, state: &State) -> Result<(), ValidationError> {
    let zone = &zs.zone;
    let object = || format!("zone `{}`", zone.id);
    if zone.id.is_empty() {
        return Err(ValidationError::new(object(), "id", "must not be empty"));
    }
    hostname::check(&zone.name, Wildcard::Refused)
        .map_err(|m| ValidationError::new(object(), "name", m))?;
    if state.accounts().get(&zone.account.id).is_none() {
        return Err(ValidationError::new(
            object(),
            "account.id",
            format!("no account `{}`", zone.account.id),
        ));
    }
    admission(&zone.settings.admission)
        .map_err(|(field, m)| ValidationError::new(object(), format!("settings.{field}"), m))
}

/// Each budget is at least 1 (no budget is written by leaving it out) and at most its bound.
fn admission(admission: &Admission) -> Result<(), (&'static str, String)> {
    for (field, value, max) in [
        (
            "admission.new_connections_per_second",
            admission.new_connections_per_second,
            Admission::MAX_NEW_CONNECTIONS_PER_SECOND,
        ),
        (
            "admission.max_concurrent_requests",
            admission.max_concurrent_requests,
            Admission::MAX_CONCURRENT_REQUESTS,
        ),
    ] {
        match value {
            Some(0) => {
                return Err((
                    field,
                    "must be at least 1 (leave it out for no budget)".into(),
                ));
            }
            Some(value) if value > max => {
                return Err((field, format!("is {value}, at most {max} is allowed")));
            }
            _ => {}
        }
    }
    Ok(())
}

fn zone_name_taken(zs: &ZoneState, other: &str) -> ValidationError {
    ValidationError::new(
        format!("zone `{}`", zs.zone.id),
        "name",
        format!("`{}` is already zone `{other}`", zs.zone.name),
    )
}

fn record_object(zone: &Zone, record: &DnsRecord) -> String {
    format!("DNS record `{}` in zone `{}`", record.id, zone.id)
}

fn record_id_taken(zone: &Zone, record: &DnsRecord) -> ValidationError {
    ValidationError::new(
        record_object(zone, record),
        "id",
        "is used by another DNS record",
    )
}

fn record_name_taken(zone: &Zone, record: &DnsRecord) -> ValidationError {
    ValidationError::new(
        record_object(zone, record),
        "name",
        format!("another record of the zone is named `{}`", record.name),
    )
}

fn hostname_object(zone: &Zone, ch: &CustomHostname) -> String {
    format!("custom hostname `{}` in zone `{}`", ch.id, zone.id)
}

fn hostname_id_taken(zone: &Zone, ch: &CustomHostname) -> ValidationError {
    ValidationError::new(
        hostname_object(zone, ch),
        "id",
        "is used by another custom hostname",
    )
}

fn hostname_taken(zone: &Zone, ch: &CustomHostname, other: &str) -> ValidationError {
    ValidationError::new(
        hostname_object(zone, ch),
        "hostname",
        format!("`{}` is already custom hostname `{other}`", ch.hostname),
    )
}

/// How checks find a zone's record by name: a map built once when every
/// object is checked, a scan of the zone when a write checks a few.
trait Records {
    fn named(&self, name: &str) -> Option<&DnsRecord>;
}

/// Records by lower-cased name.
type RecordsByName<'a> = HashMap<Cow<'a, str>, &'a DnsRecord, Hasher>;

impl Records for RecordsByName<'_> {
    fn named(&self, name: &str) -> Option<&DnsRecord> {
        self.get(lower(name).as_ref()).copied()
    }
}

impl Records for ZoneState {
    fn named(&self, name: &str) -> Option<&DnsRecord> {
        self.record_named(name)
    }
}

/// A record's own fields, inside its zone.
fn record(zone: &Zone, record: &DnsRecord) -> Result<(), ValidationError> {
    let object = || record_object(zone, record);
    if record.id.is_empty() {
        return Err(ValidationError::new(object(), "id", "must not be empty"));
    }
    hostname::check(&record.name, Wildcard::Allowed)
        .map_err(|m| ValidationError::new(object(), "name", m))?;
    if !hostname::is_within(&record.name, &zone.name) {
        return Err(ValidationError::new(
            object(),
            "name",
            format!("`{}` is not inside the zone `{}`", record.name, zone.name),
        ));
    }
    let content_ok = match record.record_type {
        RecordType::A => record.content.parse::<Ipv4Addr>().is_ok(),
        RecordType::Aaaa => record.content.parse::<Ipv6Addr>().is_ok(),
        RecordType::Cname => {
            hostname::check(&record.content, Wildcard::Refused)
                .map_err(|m| ValidationError::new(object(), "content", m))?;
            if record.content.eq_ignore_ascii_case(&record.name) {
                return Err(ValidationError::new(
                    object(),
                    "content",
                    "points at itself",
                ));
            }
            true
        }
    };
    if !content_ok {
        return Err(ValidationError::new(
            object(),
            "content",
            format!(
                "`{}` is not an {} address",
                record.content,
                if record.record_type == RecordType::A {
                    "IPv4"
                } else {
                    "IPv6"
                }
            ),
        ));
    }
    if record.ttl != 1 && !(30..=86_400).contains(&record.ttl) {
        return Err(ValidationError::new(
            object(),
            "ttl",
            "must be 1 (automatic) or between 30 and 86400 seconds",
        ));
    }
    Ok(())
}

fn custom_hostname(
    zs: &ZoneState,
    records: &dyn Records,
    ch: &CustomHostname,
) -> Result<(), ValidationError> {
    let zone = &zs.zone;
    let err = |field: &str, message: String| {
        ValidationError::new(hostname_object(zone, ch), field, message)
    };
    if ch.id.is_empty() {
        return Err(err("id", "must not be empty".into()));
    }
    hostname::check(&ch.hostname, Wildcard::Allowed).map_err(|m| err("hostname", m))?;
    if ch.hostname.eq_ignore_ascii_case(&zone.name) {
        return Err(err(
            "hostname",
            format!("`{}` is the zone's own apex", ch.hostname),
        ));
    }
    let wildcard = hostname::is_wildcard(&ch.hostname);
    if let Some(server) = &ch.custom_origin_server {
        hostname::check(server, Wildcard::Refused).map_err(|m| err("custom_origin_server", m))?;
        proxied_record(zs, records, server).map_err(|m| err("custom_origin_server", m))?;
    }
    if let Some(sni) = &ch.custom_origin_sni {
        if ch.custom_origin_server.is_none() {
            return Err(err(
                "custom_origin_sni",
                "needs a `custom_origin_server`".into(),
            ));
        }
        if sni != REQUEST_HOST_HEADER {
            hostname::check(sni, Wildcard::Refused).map_err(|m| {
                err(
                    "custom_origin_sni",
                    format!("{m} (or use `{REQUEST_HOST_HEADER}`)"),
                )
            })?;
        }
    }
    if let Some(metadata) = &ch.custom_metadata {
        if wildcard {
            return Err(err(
                "custom_metadata",
                "is not allowed on wildcard custom hostnames".into(),
            ));
        }
        let len = serde_json::to_string(metadata)
            .map_err(|e| err("custom_metadata", e.to_string()))?
            .len();
        if len > MAX_METADATA_BYTES {
            return Err(err(
                "custom_metadata",
                format!("is {len} bytes as JSON, at most {MAX_METADATA_BYTES} are allowed"),
            ));
        }
    }
    admission(&ch.admission).map_err(|(field, m)| err(field, m))?;
    if let Some(ov) = &ch.ownership_verification {
        const PREFIX: &str = "_cf-custom-hostname.";
        let (name, prefix) = (ov.name.as_bytes(), PREFIX.as_bytes());
        let matches = name.len() == prefix.len() + ch.hostname.len()
            && name[..prefix.len()].eq_ignore_ascii_case(prefix)
            && name[prefix.len()..].eq_ignore_ascii_case(ch.hostname.as_bytes());
        if !matches {
            return Err(err(
                "ownership_verification.name",
                format!("must be `{PREFIX}{}`", ch.hostname),
            ));
        }
        if ov.value.is_empty() {
            return Err(err(
                "ownership_verification.value",
                "must not be empty".into(),
            ));
        }
    }
    Ok(())
}

fn provider_settings(zs: &ZoneState, records: &dyn Records) -> Result<(), ValidationError> {
    let object = || format!("zone `{}`", zs.zone.id);
    if let Some(fallback) = &zs.fallback_origin {
        hostname::check(&fallback.origin, Wildcard::Refused)
            .and_then(|()| proxied_record(zs, records, &fallback.origin))
            .map_err(|m| ValidationError::new(object(), "fallback_origin.origin", m))?;
    }
    if let Some(settings) = &zs.custom_hostname_settings {
        hostname::check(&settings.cname_target, Wildcard::Refused)
            .and_then(|()| proxied_record(zs, records, &settings.cname_target))
            .map_err(|m| {
                ValidationError::new(object(), "custom_hostname_settings.cname_target", m)
            })?;
    }
    Ok(())
}

/// Origins and CNAME targets must be proxied records of the provider zone, so
/// that the provider's settings apply to them.
fn proxied_record(zs: &ZoneState, records: &dyn Records, name: &str) -> Result<(), String> {
    let zone = &zs.zone.name;
    match records.named(name) {
        None => Err(format!("`{name}` is not a DNS record of zone `{zone}`")),
        Some(r) if !r.proxied => Err(format!(
            "`{name}` is a DNS-only record of zone `{zone}`; it must be proxied"
        )),
        Some(_) => Ok(()),
    }
}
