//! `/zones/{zone}/dns_records`: create, list, get, patch, delete.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{merge_patch, to_value, zone};
use crate::control::ids::new_id;
use crate::control::router::Call;
use crate::control::{ApiError, Control};
use crate::state::hostname::is_within;
use crate::state::{Change, DnsRecord, RecordType, ZoneState};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Create {
    #[serde(rename = "type")]
    record_type: RecordType,
    name: String,
    content: String,
    #[serde(default)]
    proxied: bool,
    #[serde(default)]
    ttl: Option<u32>,
}

const PATCHABLE: &[&str] = &["type", "name", "content", "proxied", "ttl"];

fn view(zs: &ZoneState, record: &DnsRecord) -> Value {
    let mut value = to_value(record);
    value["zone_id"] = json!(zs.zone.id);
    value["zone_name"] = json!(zs.zone.name);
    value
}

/// As in Cloudflare's API: `@` is the apex, and a name outside the zone is
/// taken as relative to it (`www` -> `www.example.com`).
fn full_name(zs: &ZoneState, name: &str) -> String {
    let apex = &zs.zone.name;
    if name == "@" {
        apex.clone()
    } else if is_within(name, apex) {
        name.to_owned()
    } else {
        format!("{name}.{apex}")
    }
}

fn record<'z>(zs: &'z ZoneState, id: &str) -> Result<&'z DnsRecord, ApiError> {
    zs.dns_records.get(id).ok_or_else(|| {
        ApiError::not_found(format!("no DNS record `{id}` in zone `{}`", zs.zone.name))
    })
}

pub(super) fn list(control: &Control, call: &Call) -> Result<Value, ApiError> {
    let state = control.state();
    let zs = zone(&state, call.param("zone"))?;
    let name = call.query("name").map(|n| full_name(zs, n));
    let kind = call.query("type");
    let records: Vec<Value> = zs
        .dns_records
        .iter()
        .filter(|r| {
            name.as_deref()
                .is_none_or(|n| r.name.eq_ignore_ascii_case(n))
        })
        .filter(|r| kind.is_none_or(|k| r.record_type.as_str().eq_ignore_ascii_case(k)))
        .map(|r| view(zs, r))
        .collect();
    Ok(Value::Array(records))
}

pub(super) fn get(control: &Control, call: &Call) -> Result<Value, ApiError> {
    let state = control.state();
    let zs = zone(&state, call.param("zone"))?;
    Ok(view(zs, record(zs, call.param("id"))?))
}

pub(super) fn create(control: &Control, call: &Call) -> Result<Value, ApiError> {
    let body: Create = call.json()?;
    let id = new_id()?;
    let zone_id = control.write(|state| {
        let zs = zone(state, call.param("zone"))?;
        let record = DnsRecord {
            id: id.clone(),
            record_type: body.record_type,
            name: full_name(zs, &body.name),
            content: body.content,
            proxied: body.proxied,
            ttl: body.ttl.unwrap_or(1),
        };
        let zone_id = zs.zone.id.clone();
        Ok((
            vec![Change::PutDnsRecord {
                zone_id: zone_id.clone(),
                record,
            }],
            zone_id,
        ))
    })?;
    current(control, &zone_id, &id)
}

pub(super) fn patch(control: &Control, call: &Call) -> Result<Value, ApiError> {
    let patch: Map<String, Value> = call.json()?;
    let id = call.param("id");
    let zone_id = control.write(|state| {
        let zs = zone(state, call.param("zone"))?;
        let mut record = merge_patch(record(zs, id)?, patch, PATCHABLE)?;
        record.name = full_name(zs, &record.name);
        let zone_id = zs.zone.id.clone();
        Ok((
            vec![Change::PutDnsRecord {
                zone_id: zone_id.clone(),
                record,
            }],
            zone_id,
        ))
    })?;
    current(control, &zone_id, id)
}

pub(super) fn delete(control: &Control, call: &Call) -> Result<Value, ApiError> {
    let id = call.param("id");
    control.write(|state| {
        let zs = zone(state, call.param("zone"))?;
        record(zs, id)?;
        Ok((
            vec![Change::DeleteDnsRecord {
                zone_id: zs.zone.id.clone(),
                id: id.to_owned(),
            }],
            (),
        ))
    })?;
    Ok(json!({"id": id}))
}

/// The record as committed.
fn current(control: &Control, zone_id: &str, id: &str) -> Result<Value, ApiError> {
    let state = control.state();
    let zs = zone(&state, zone_id)?;
    Ok(view(zs, record(zs, id)?))
}
