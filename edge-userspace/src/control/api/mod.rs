//! The endpoints, in Cloudflare API v4 paths and shapes. Each handler reads
//! the committed state or plans a write for [`Control::write`].

mod custom_hostnames;
mod dns_records;
mod metrics;
mod rulesets;
mod state;
mod trace;
mod xdp;
mod zones;

use http::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::ApiError;
use super::router::{MAX_STATE_BODY, Route, raw_route, route};
use crate::state::{State, ZoneState};

pub(in crate::control) use custom_hostnames::plan_create;
/// What a write's plan answers: the changes, and what to answer once they
/// are committed.
pub(in crate::control) type Planned<R> = Result<(Vec<crate::state::Change>, R), ApiError>;
pub(in crate::control) use rulesets::plan_put;
pub use state::REPLACE_ALL;

pub static ROUTES: &[Route] = &[
    route(Method::GET, "/zones", zones::list),
    route(Method::POST, "/zones", zones::create),
    route(Method::GET, "/zones/{zone}", zones::get),
    route(Method::DELETE, "/zones/{zone}", zones::delete),
    route(Method::GET, "/zones/{zone}/dns_records", dns_records::list),
    route(
        Method::POST,
        "/zones/{zone}/dns_records",
        dns_records::create,
    ),
    route(
        Method::GET,
        "/zones/{zone}/dns_records/{id}",
        dns_records::get,
    ),
    route(
        Method::PATCH,
        "/zones/{zone}/dns_records/{id}",
        dns_records::patch,
    ),
    route(
        Method::DELETE,
        "/zones/{zone}/dns_records/{id}",
        dns_records::delete,
    ),
    route(
        Method::GET,
        "/zones/{zone}/custom_hostnames/fallback_origin",
        custom_hostnames::fallback_get,
    ),
    route(
        Method::PUT,
        "/zones/{zone}/custom_hostnames/fallback_origin",
        custom_hostnames::fallback_put,
    ),
    route(
        Method::DELETE,
        "/zones/{zone}/custom_hostnames/fallback_origin",
        custom_hostnames::fallback_delete,
    ),
    route(
        Method::GET,
        "/zones/{zone}/custom_hostnames",
        custom_hostnames::list,
    ),
    route(
        Method::POST,
        "/zones/{zone}/custom_hostnames",
        custom_hostnames::create,
    ),
    route(
        Method::GET,
        "/zones/{zone}/custom_hostnames/{id}",
        custom_hostnames::get,
    ),
    route(
        Method::PATCH,
        "/zones/{zone}/custom_hostnames/{id}",
        custom_hostnames::patch,
    ),
    route(
        Method::DELETE,
        "/zones/{zone}/custom_hostnames/{id}",
        custom_hostnames::delete,
    ),
    route(
        Method::GET,
        "/zones/{zone}/rulesets/phases/{phase}/entrypoint",
        rulesets::get,
    ),
    route(
        Method::PUT,
        "/zones/{zone}/rulesets/phases/{phase}/entrypoint",
        rulesets::put,
    ),
    route(
        Method::POST,
        "/accounts/{account}/request-tracer/trace",
        trace::trace,
    ),
    route(Method::GET, "/state", state::export),
    route(Method::PUT, "/state", state::import).max_body(MAX_STATE_BODY),
    route(Method::GET, "/xdp", xdp::get),
    route(Method::PUT, "/xdp", xdp::put),
    route(Method::GET, "/xdp/routes", xdp::routes),
    raw_route(Method::GET, "/metrics", metrics::get),
];

pub use xdp::no_xdp;

/// A zone by id, else by name (`example.com`), as operators think of it.
fn zone<'s>(state: &'s State, key: &str) -> Result<&'s ZoneState, ApiError> {
    state
        .zone(key)
        .or_else(|| {
            state
                .zones()
                .iter()
                .find(|z| z.zone.name.eq_ignore_ascii_case(key))
        })
        .ok_or_else(|| ApiError::not_found(format!("no zone `{key}` (by id or name)")))
}

/// JSON merge patch (RFC 7386) of `call`'s body onto `current`, limited to
/// the `patchable` top-level fields; `null` removes an optional field.
fn merge_patch<T: Serialize + DeserializeOwned>(
    current: &T,
    patch: Map<String, Value>,
    patchable: &[&str],
) -> Result<T, ApiError> {
    let mut value = serde_json::to_value(current).expect("state objects serialise");
    let object = value
        .as_object_mut()
        .expect("state objects are JSON objects");
    for (field, new) in patch {
        if !patchable.contains(&field.as_str()) {
            return Err(ApiError::malformed(format!(
                "`{field}` cannot be patched; patchable fields: {}",
                patchable.join(", ")
            )));
        }
        if new.is_null() {
            object.remove(&field);
        } else {
            object.insert(field, new);
        }
    }
    serde_json::from_value(value)
        .map_err(|error| ApiError::malformed(format!("request body: {error}")))
}

fn to_value(value: &impl Serialize) -> Value {
    serde_json::to_value(value).expect("state objects serialise")
}
