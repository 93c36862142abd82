//! `/state`: the whole state as one JSON document (export), and replacing it
//! whole (import), validated and compiled like any other write. The document
//! is the config file's `state`: accounts, and per zone its records, custom
//! hostnames, fallback origin and rulesets, in the API's shapes.

use serde_json::{Value, json};

use super::to_value;
use crate::control::router::Call;
use crate::control::{ApiError, Control};
use crate::state::State;

pub(super) fn export(control: &Control, _: &Call) -> Result<Value, ApiError> {
    Ok(to_value(&*control.state()))
}

/// The query parameter (`=true`) that confirms an import deleting every
/// current account and zone (see [`Control::replace`]).
pub const REPLACE_ALL: &str = "replace_all";

pub(super) fn import(control: &Control, call: &Call) -> Result<Value, ApiError> {
    let replace_all = match call.query(REPLACE_ALL) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::malformed(format!(
                "`{REPLACE_ALL}` must be `true` or `false`, not `{other}`"
            )));
        }
    };
    let state: State = call.json()?;
    control.replace(state, replace_all)?;
    let state = control.state();
    Ok(json!({
        "accounts": state.accounts().len(),
        "zones": state.zones().len(),
        "dns_records": state.zones().iter().map(|z| z.dns_records.len()).sum::<usize>(),
        "custom_hostnames": state.zones().iter().map(|z| z.custom_hostnames.len()).sum::<usize>(),
    }))
}
