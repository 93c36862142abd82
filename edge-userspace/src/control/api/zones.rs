//! `/zones`: create (with `name` and `account.id`), list, get, delete.

use serde::Deserialize;
use serde_json::{Value, json};

use super::{to_value, zone};
use crate::control::ids::new_id;
use crate::control::router::Call;
use crate::control::{ApiError, Control};
use crate::state::{Account, AccountRef, Change, State, Zone, ZoneSettings, ZoneState};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Create {
    name: String,
    account: AccountRef,
    #[serde(default)]
    settings: ZoneSettings,
}

/// A zone as the API shows it: its own fields and account, not its children.
pub(super) fn view(state: &State, zs: &ZoneState) -> Value {
    let zone = &zs.zone;
    let account_name = state
        .accounts()
        .iter()
        .find(|a| a.id == zone.account.id)
        .map(|a| a.name.as_str());
    json!({
        "id": zone.id,
        "name": zone.name,
        "status": "active",
        "account": {"id": zone.account.id, "name": account_name},
        "settings": to_value(&zone.settings),
    })
}

pub(super) fn list(control: &Control, call: &Call) -> Result<Value, ApiError> {
    let state = control.state();
    let name = call.query("name");
    let zones: Vec<Value> = state
        .zones()
        .iter()
        .filter(|z| name.is_none_or(|n| z.zone.name.eq_ignore_ascii_case(n)))
        .map(|z| view(&state, z))
        .collect();
    Ok(Value::Array(zones))
}

pub(super) fn get(control: &Control, call: &Call) -> Result<Value, ApiError> {
    let state = control.state();
    Ok(view(&state, zone(&state, call.param("zone"))?))
}

/// An account named by `account.id` that does not exist yet is created with
/// it: accounts have no endpoint of their own here.
pub(super) fn create(control: &Control, call: &Call) -> Result<Value, ApiError> {
    let body: Create = call.json()?;
    let id = new_id()?;
    control.write(|state| {
        let mut changes = Vec::new();
        if !state.accounts().iter().any(|a| a.id == body.account.id) {
            changes.push(Change::PutAccount {
                account: Account {
                    id: body.account.id.clone(),
                    name: body.account.id.clone(),
                },
            });
        }
        changes.push(Change::PutZone {
            zone: Zone {
                id: id.clone(),
                name: body.name,
                account: body.account,
                settings: body.settings,
                rulesets: Default::default(),
            },
        });
        Ok((changes, ()))
    })?;
    let state = control.state();
    Ok(view(&state, zone(&state, &id)?))
}

pub(super) fn delete(control: &Control, call: &Call) -> Result<Value, ApiError> {
    let id = control.write(|state| {
        let id = zone(state, call.param("zone"))?.zone.id.clone();
        Ok((vec![Change::DeleteZone { id: id.clone() }], id))
    })?;
    Ok(json!({"id": id}))
}
