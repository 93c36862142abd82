//! Runs a chain's zone rules on a request head, in place: the customer stage,
//! then the provider stage, then (for responses) the other way round. The
//! edge-owned `cf-connecting-o2o` header is stripped before the first stage
//! and set only right before the provider stage of an O2O chain, so neither
//! the client nor the customer zone can forge it.

mod phase;
pub mod trace;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, request, response};

use crate::rules::{ClientInfo, Phase, RawRequest, ZoneRules};
use phase::{StageState, run_request_phase, run_response_phase};
pub use trace::{Direction, PhaseTrace, RuleResult, RuleTrace, StageTrace, Trace};

/// Looked up by reference on every request: a static, not a copy of the constant per use.
pub static CF_CONNECTING_O2O: HeaderName = crate::vouched::CF_CONNECTING_O2O;

/// One stage of a chain: the zone's name (for traces) and its compiled rules.
pub type Stage<'z> = (&'z str, &'z ZoneRules);

/// Origin overrides from `route` rules. Within a zone later rules overwrite
/// earlier ones; across a chain the customer's choice wins over the
/// provider's where both set the same thing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteOverride {
    pub host_header: Option<HeaderValue>,
    pub origin_host: Option<String>,
    pub origin_port: Option<u16>,
    pub sni: Option<String>,
}

impl RouteOverride {
    /// Takes from `later` only what is still unset.
    fn fill_from(&mut self, later: RouteOverride) {
        self.host_header = self.host_header.take().or(later.host_header);
        self.origin_host = self.origin_host.take().or(later.origin_host);
        self.origin_port = self.origin_port.or(later.origin_port);
        self.sni = self.sni.take().or(later.sni);
    }

    pub fn is_empty(&self) -> bool {
        *self == RouteOverride::default()
    }
}

/// A response the rules produced instead of going to the origin.
#[derive(Debug, Clone, PartialEq)]
pub struct TerminalResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl TerminalResponse {
    pub fn into_response(self) -> Response<Bytes> {
        let mut resp = Response::new(self.body);
        *resp.status_mut() = self.status;
        *resp.headers_mut() = self.headers;
        resp
    }
}

/// The result of one zone's request phases.
#[derive(Debug, Clone, PartialEq)]
pub enum StageOutcome {
    Continue(RouteOverride),
    Respond(TerminalResponse),
}

#[derive(Debug, Clone, PartialEq)]
pub enum RequestOutcome {
    /// Go on to the origin, with these overrides.
    Continue(RouteOverride),
    /// Answer with this response; `stage` is the index of the stage that ended the request.
    Respond {
        stage: usize,
        response: TerminalResponse,
    },
}

/// The client's original request for `raw.*` fields: one reference-counted
/// URI clone, plus the headers only if some stage's rules read raw headers.
pub fn capture_raw(stages: &[Stage<'_>], req: &request::Parts) -> RawRequest {
    RawRequest::capture(req, stages.iter().any(|(_, z)| z.needs_raw_headers()))
}

/// Runs all request phases of one zone on `req`.
pub fn run_stage_request(
    zone: &str,
    rules: &ZoneRules,
    req: &mut request::Parts,
    client: &ClientInfo<'_>,
    raw: &RawRequest,
    trace: Option<&mut Trace>,
) -> StageOutcome {
    let mut stage_trace = trace.is_some().then(|| StageTrace {
        zone: zone.to_owned(),
        direction: Direction::Request,
        o2o_header: req
            .headers
            .get(&CF_CONNECTING_O2O)
            .is_some_and(|v| v == "1"),
        phases: Vec::new(),
    });
    let mut state = StageState::default();
    let mut terminal_response = None;
    for phase in Phase::REQUEST {
        let Some(rules) = rules.phase(phase) else {
            continue;
        };
        let mut phase_trace = stage_trace.is_some().then(|| PhaseTrace {
            phase,
            skipped: None,
            rules: Vec::new(),
        });
        if state.is_skipped(phase) {
            if let (Some(st), Some(mut pt)) = (stage_trace.as_mut(), phase_trace) {
                pt.skipped = Some("skipped by a skip rule".to_owned());
                st.phases.push(pt);
            }
            continue;
        }
        let terminal = run_request_phase(rules, req, client, raw, &mut state, phase_trace.as_mut());
        if let (Some(st), Some(pt)) = (stage_trace.as_mut(), phase_trace) {
            st.phases.push(pt);
        }
        if let Some(resp) = terminal {
            terminal_response = Some(resp);
            break;
        }
    }
    if let (Some(t), Some(st)) = (trace, stage_trace) {
        t.stages.push(st);
    }
    match terminal_response {
        Some(response) => StageOutcome::Respond(response),
        None => StageOutcome::Continue(state.route),
    }
}

/// Runs the request phases of a chain (customer stage first, provider last).
/// `o2o` marks the chain as Orange-to-Orange: only then, and only right before
/// the last (provider) stage of a two-stage chain, `cf-connecting-o2o: 1` is set.
pub fn run_request(
    stages: &[Stage<'_>],
    o2o: bool,
    req: &mut request::Parts,
    client: &ClientInfo<'_>,
    raw: &RawRequest,
    mut trace: Option<&mut Trace>,
) -> RequestOutcome {
    let mut route = RouteOverride::default();
    let provider = stages.len().checked_sub(1);
    // Stripped once: rules cannot set or remove edge-owned headers
    // (`crate::vouched`, refused when compiling), so no stage can bring
    // it back, and each lookup hashes the 17-byte custom name.
    req.headers.remove(&CF_CONNECTING_O2O);
    for (i, (zone, rules)) in stages.iter().enumerate() {
        if o2o && stages.len() > 1 && Some(i) == provider {
            req.headers
                .insert(CF_CONNECTING_O2O.clone(), HeaderValue::from_static("1"));
        }
        match run_stage_request(zone, rules, req, client, raw, trace.as_deref_mut()) {
            StageOutcome::Continue(r) => route.fill_from(r),
            StageOutcome::Respond(response) => {
                return RequestOutcome::Respond { stage: i, response };
            }
        }
    }
    RequestOutcome::Continue(route)
}

/// Runs the response phases of a chain in reverse (provider first, then customer).
pub fn run_response(
    stages: &[Stage<'_>],
    req: &request::Parts,
    client: &ClientInfo<'_>,
    raw: &RawRequest,
    resp: &mut response::Parts,
    mut trace: Option<&mut Trace>,
) {
    let provider = stages.len().checked_sub(1);
    for (i, (zone, rules)) in stages.iter().enumerate().rev() {
        // Only the provider stage of an O2O chain ran with the header set.
        // Looked up for traces only: hashing the 17-byte name is not free.
        let o2o_header = trace.is_some()
            && Some(i) == provider
            && stages.len() > 1
            && req
                .headers
                .get(&CF_CONNECTING_O2O)
                .is_some_and(|v| v == "1");
        for phase in Phase::RESPONSE {
            let Some(rules) = rules.phase(phase) else {
                continue;
            };
            let mut phase_trace = trace.is_some().then(|| PhaseTrace {
                phase,
                skipped: None,
                rules: Vec::new(),
            });
            run_response_phase(rules, req, client, raw, resp, phase_trace.as_mut());
            if let (Some(t), Some(pt)) = (trace.as_deref_mut(), phase_trace) {
                t.stages.push(StageTrace {
                    zone: (*zone).to_owned(),
                    direction: Direction::Response,
                    o2o_header,
                    phases: vec![pt],
                });
            }
        }
    }
}

#[cfg(test)]
mod tests;
