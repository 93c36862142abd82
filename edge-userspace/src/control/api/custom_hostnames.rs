//! `/zones/{zone}/custom_hostnames` (create, list with a `hostname` filter,
//! get, patch, delete) and its `fallback_origin` (get, put, delete).

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Planned, merge_patch, to_value, zone};
use crate::control::ids::new_id;
use crate::control::router::Call;
use crate::control::{ApiError, Control};
use crate::state::{
    Admission, Change, CustomHostname, CustomHostnameSsl, FallbackOrigin, FallbackOriginStatus,
    HostnameStatus, Observation, OwnershipVerification, State, VerificationType, ZoneState,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Create {
    hostname: String,
    #[serde(default)]
    custom_origin_server: Option<String>,
    #[serde(default)]
    custom_origin_sni: Option<String>,
    #[serde(default)]
    custom_metadata: Option<Map<String, Value>>,
    #[serde(default)]
    ssl: CustomHostnameSsl,
    #[serde(default)]
    admission: Admission,
}

const PATCHABLE: &[&str] = &[
    "custom_origin_server",
    "custom_origin_sni",
    "custom_metadata",
    "ssl",
    "admission",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FallbackPut {
    origin: String,
}

/// The stored hostname plus what Cloudflare's API always shows: the
/// (possibly empty) `verification_errors` and the HTTP pre-validation URL
/// and body next to the TXT record.
fn view(zs: &ZoneState, ch: &CustomHostname) -> Value {
    let mut value = to_value(ch);
    value["zone_id"] = json!(zs.zone.id);
    value["verification_errors"] = json!(ch.verification_errors);
    if let Some(ov) = &ch.ownership_verification {
        value["ownership_verification_http"] = json!({
            "http_url": format!(
                "http://{}/.well-known/cf-custom-hostname-challenge/{}",
                ch.hostname, ch.id
            ),
            "http_body": ov.value,
        });
    }
    value
}

fn hostname<'z>(zs: &'z ZoneState, id: &str) -> Result<&'z CustomHostname, ApiError> {
    zs.custom_hostnames.get(id).ok_or_else(|| {
        ApiError::not_found(format!(
            "no custom hostname `{id}` in zone `{}`",
            zs.zone.name
        ))
    })
}

pub(super) fn list(control: &Control, call: &Call) -> Result<Value, ApiError> {
    let state = control.state();
    let zs = zone(&state, call.param("zone"))?;
    let filter = call.query("hostname");
    let hostnames: Vec<Value> = zs
        .custom_hostnames
        .iter()
        .filter(|h| filter.is_none_or(|f| h.hostname.eq_ignore_ascii_case(f)))
        .map(|h| view(zs, h))
        .collect();
    Ok(Value::Array(hostnames))
}

pub(super) fn get(control: &Control, call: &Call) -> Result<Value, ApiError> {
    let state = control.state();
    let zs = zone(&state, call.param("zone"))?;
    Ok(view(zs, hostname(zs, call.param("id"))?))
}

/// A new hostname is `pending` with a fresh TXT token; the write itself
/// activates it when this edge holds its DNS and the CNAME points here.
pub(super) fn create(control: &Control, call: &Call) -> Result<Value, ApiError> {
    let (zone_id, id) = control.write(plan_create(call)?)?;
    current(control, &zone_id, &id)
}

/// The body of a create, parsed, as the write's plan (which answers the
/// zone's and the new hostname's ids); [`crate::control::dry_run`] runs it too.
pub(in crate::control) fn plan_create(
    call: &Call,
) -> Result<impl FnOnce(&State) -> Planned<(String, String)>, ApiError> {
    let body: Create = call.json()?;
    let id = new_id()?;
    let token = new_id()?;
    let zone_key = call.param("zone").to_owned();
    Ok(move |state: &State| {
        let zs = zone(state, &zone_key)?;
        let custom_hostname = CustomHostname {
            id: id.clone(),
            ownership_verification: Some(OwnershipVerification {
                verification_type: VerificationType::Txt,
                name: format!("_cf-custom-hostname.{}", body.hostname),
                value: token,
            }),
            hostname: body.hostname,
            custom_origin_server: body.custom_origin_server,
            custom_origin_sni: body.custom_origin_sni,
            custom_metadata: body.custom_metadata,
            ssl: body.ssl,
            status: HostnameStatus::Pending,
            verification_errors: Vec::new(),
            cname_observed: false,
            admission: body.admission,
        };
        let zone_id = zs.zone.id.clone();
        Ok((
            vec![Change::PutCustomHostname {
                zone_id: zone_id.clone(),
                custom_hostname,
            }],
            (zone_id, id),
        ))
    })
}

/// Besides the fields Cloudflare lets customers patch, an operator may set
/// `status` to `blocked` (the hostname stops carrying traffic) or, on a
/// blocked one, back to `pending` (it must validate again); both go through
/// the activation state machine, like every other status change. Like
/// Cloudflare, a PATCH (even an empty one) also validates the hostname again
/// now.
pub(super) fn patch(control: &Control, call: &Call) -> Result<Value, ApiError> {
    let mut patch: Map<String, Value> = match call.has_body() {
        true => call.json()?,
        false => Map::new(),
    };
    let observation = match patch.remove("status") {
        None => None,
        Some(Value::String(status)) if status == "blocked" => Some(Observation::Block {
            reason: "blocked by the operator".into(),
        }),
        Some(Value::String(status)) if status == "pending" => Some(Observation::Unblock),
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "`status` {other} cannot be set: only `blocked`, or `pending` to lift a block"
            )));
        }
    };
    let id = call.param("id");
    let zone_id = control.write(|state| {
        let zs = zone(state, call.param("zone"))?;
        let existing = hostname(zs, id)?;
        if observation == Some(Observation::Unblock) && existing.status != HostnameStatus::Blocked {
            return Err(ApiError::invalid(format!(
                "`status`: `{}` is {}, not blocked",
                existing.hostname,
                existing.status.as_str()
            )));
        }
        let custom_hostname = merge_patch(existing, patch, PATCHABLE)?;
        let zone_id = zs.zone.id.clone();
        let mut changes = vec![Change::PutCustomHostname {
            zone_id: zone_id.clone(),
            custom_hostname,
        }];
        changes.extend(observation.map(|observation| Change::Observe {
            zone_id: zone_id.clone(),
            custom_hostname_id: id.to_owned(),
            observation,
        }));
        Ok((changes, zone_id))
    })?;
    control.refresh(&zone_id, id);
    current(control, &zone_id, id)
}

pub(super) fn delete(control: &Control, call: &Call) -> Result<Value, ApiError> {
    let id = call.param("id");
    control.write(|state| {
        let zs = zone(state, call.param("zone"))?;
        hostname(zs, id)?;
        Ok((
            vec![Change::DeleteCustomHostname {
                zone_id: zs.zone.id.clone(),
                id: id.to_owned(),
            }],
            (),
        ))
    })?;
    Ok(json!({"id": id}))
}

fn current(control: &Control, zone_id: &str, id: &str) -> Result<Value, ApiError> {
    let state = control.state();
    let zs = zone(&state, zone_id)?;
    Ok(view(zs, hostname(zs, id)?))
}

pub(super) fn fallback_get(control: &Control, call: &Call) -> Result<Value, ApiError> {
    let state = control.state();
    let zs = zone(&state, call.param("zone"))?;
    let fallback = zs.fallback_origin.as_ref().ok_or_else(|| {
        ApiError::not_found(format!("zone `{}` has no fallback origin", zs.zone.name))
    })?;
    Ok(to_value(fallback))
}

/// Validated against the zone's records in the write, so it is deployed
/// (`active`) as soon as the write is acknowledged.
pub(super) fn fallback_put(control: &Control, call: &Call) -> Result<Value, ApiError> {
    let body: FallbackPut = call.json()?;
    let fallback = FallbackOrigin {
        origin: body.origin,
        status: FallbackOriginStatus::Active,
    };
    control.write(|state| {
        let zs = zone(state, call.param("zone"))?;
        Ok((
            vec![Change::PutFallbackOrigin {
                zone_id: zs.zone.id.clone(),
                fallback_origin: Some(fallback.clone()),
            }],
            (),
        ))
    })?;
    Ok(to_value(&fallback))
}

pub(super) fn fallback_delete(control: &Control, call: &Call) -> Result<Value, ApiError> {
    let removed = control.write(|state| {
        let zs = zone(state, call.param("zone"))?;
        let removed = zs.fallback_origin.clone().ok_or_else(|| {
            ApiError::not_found(format!("zone `{}` has no fallback origin", zs.zone.name))
        })?;
        Ok((
            vec![Change::PutFallbackOrigin {
                zone_id: zs.zone.id.clone(),
                fallback_origin: None,
            }],
            removed,
        ))
    })?;
    Ok(to_value(&removed))
}
