//! `/zones/{zone}/rulesets/phases/{phase}/entrypoint`: get, put. A put
//! replaces the phase's ruleset whole and is compiled before it is accepted.

use serde_json::{Value, json};

use super::{Planned, to_value, zone};
use crate::control::ids::new_id;
use crate::control::router::Call;
use crate::control::{ApiError, Control};
use crate::rules::Phase;
use crate::rules::model::Ruleset;
use crate::state::{Change, State};

fn phase(call: &Call) -> Result<Phase, ApiError> {
    let name = call.param("phase");
    name.parse().map_err(|_| {
        let known: Vec<&str> = Phase::REQUEST
            .iter()
            .chain(&Phase::RESPONSE)
            .map(|p| p.as_str())
            .collect();
        ApiError::not_found(format!("no phase `{name}`; phases: {}", known.join(", ")))
    })
}

fn view(zone_id: &str, phase: Phase, ruleset: &Ruleset) -> Value {
    let mut value = to_value(ruleset);
    value["kind"] = json!("zone");
    value["phase"] = json!(phase.as_str());
    value["zone_id"] = json!(zone_id);
    value
}

pub(super) fn get(control: &Control, call: &Call) -> Result<Value, ApiError> {
    let phase = phase(call)?;
    let state = control.state();
    let zs = zone(&state, call.param("zone"))?;
    let ruleset = zs.zone.rulesets.get(&phase).ok_or_else(|| {
        ApiError::not_found(format!(
            "zone `{}` has no entrypoint ruleset for {phase}",
            zs.zone.name
        ))
    })?;
    Ok(view(&zs.zone.id, phase, ruleset))
}

/// Rules and the ruleset without an `id` get one, so that traces and later
/// reads can name them.
pub(super) fn put(control: &Control, call: &Call) -> Result<Value, ApiError> {
    let phase = phase(call)?;
    let (zone_id, ruleset) = control.write(plan_put(call, phase)?)?;
    Ok(view(&zone_id, phase, &ruleset))
}

/// The body of a put, parsed and given its ids, as the write's plan (which
/// answers the zone's id and the ruleset); [`crate::control::dry_run`] runs
/// it too.
pub(in crate::control) fn plan_put(
    call: &Call,
    phase: Phase,
) -> Result<impl FnOnce(&State) -> Planned<(String, Ruleset)>, ApiError> {
    let mut ruleset: Ruleset = call.json()?;
    if ruleset.id.is_none() {
        ruleset.id = Some(new_id()?);
    }
    for rule in &mut ruleset.rules {
        if rule.id.is_none() {
            rule.id = Some(new_id()?);
        }
    }
    let zone_key = call.param("zone").to_owned();
    Ok(move |state: &State| {
        let zone_id = zone(state, &zone_key)?.zone.id.clone();
        Ok((
            vec![Change::PutRuleset {
                zone_id: zone_id.clone(),
                phase,
                ruleset: Some(ruleset.clone()),
            }],
            (zone_id, ruleset),
        ))
    })
}
