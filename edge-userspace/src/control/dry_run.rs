//! A write without its commit: what the control socket does with a body,
//! from parsing it (the JSON nesting limit included) through the handler's
//! plan, the validation of the next state and the compilation of its rules,
//! against a state that stays as it is. The `control_body` fuzz target
//! (`edge-userspace/fuzz`) drives it, so it must run the handlers' own code.
//! Minting certificates for new names is left out: it reads no body.

use bytes::Bytes;

use super::router::Call;
use super::{ApiError, api, prepare};
use crate::apply::ApplyError;
use crate::routing::Routing;
use crate::rules::Phase;
use crate::state::State;

/// The endpoints whose bodies a hostile tenant or operator writes.
#[derive(Debug, Clone, Copy)]
pub enum Body {
    /// `POST /zones/{zone}/custom_hostnames`
    CreateCustomHostname,
    /// `PUT /zones/{zone}/rulesets/phases/{phase}/entrypoint`
    PutRuleset(Phase),
    /// `PUT /state` (import)
    ImportState,
}

/// `body` sent to the endpoint for `zone` (an id or a name) against
/// `state`: what the write would answer, short of committing anything.
pub fn dry_run(state: &State, zone: &str, endpoint: Body, body: Bytes) -> Result<(), ApiError> {
    let call = Call::new(vec![("zone", zone.to_owned())], None, body);
    let next = match endpoint {
        Body::CreateCustomHostname => prepare(state, api::plan_create(&call)?)?.0,
        Body::PutRuleset(phase) => prepare(state, api::plan_put(&call, phase)?)?.0,
        Body::ImportState => {
            let next: State = call.json()?;
            next.validate()?;
            next
        }
    };
    Routing::build(&next, None).map_err(ApplyError::Invalid)?;
    Ok(())
}
