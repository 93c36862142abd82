//! One phase of one zone. Rules see the request as it was when the phase
//! started: changes are collected while the phase borrows the request and
//! applied when it ends, in rule order, so later rules overwrite earlier ones.

use bytes::Bytes;
use http::header::LOCATION;
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderName, HeaderValue, Uri, request, response};
use smallvec::SmallVec;

use super::trace::{PhaseTrace, RuleResult, RuleTrace};
use super::{RouteOverride, TerminalResponse};
use crate::rules::context::path_and_query;
use crate::rules::model::HeaderOperation;
use crate::rules::{
    CannedResponse, ClientInfo, CompiledAction, CompiledRule, Ctx, HeaderValueSource, Phase,
    PhaseRules, RawRequest, ValueSource,
};

/// State of one zone stage across its phases.
#[derive(Debug, Default)]
pub(crate) struct StageState {
    /// Phases a `skip` rule named, as bits of their position in `Phase::REQUEST`.
    skipped: u8,
    pub(crate) route: RouteOverride,
}

fn phase_bit(p: Phase) -> u8 {
    Phase::REQUEST
        .iter()
        .position(|q| *q == p)
        .map_or(0, |i| 1 << i)
}

impl StageState {
    pub(crate) fn is_skipped(&self, p: Phase) -> bool {
        self.skipped & phase_bit(p) != 0
    }
}

/// Header changes a phase typically makes fit inline: a phase's changes are
/// collected on every request that matches a transform rule, and a heap
/// vector would be allocated and freed each time.
const INLINE_HEADER_CHANGES: usize = 4;

type HeaderChanges =
    SmallVec<[(HeaderName, HeaderOperation, Option<HeaderValue>); INLINE_HEADER_CHANGES]>;

#[derive(Default)]
struct Changes {
    path: Option<Vec<u8>>,
    query: Option<Vec<u8>>,
    headers: HeaderChanges,
}

/// What a matched rule did, for the trace.
enum Effect {
    Continue(Option<String>),
    StopPhase(String),
    Terminate(TerminalResponse, String),
}

fn value_of<'a, 'c: 'a>(v: &'a ValueSource, ctx: &Ctx<'c>) -> std::borrow::Cow<'a, [u8]> {
    match v {
        ValueSource::Static(b) => std::borrow::Cow::Borrowed(b.as_ref()),
        ValueSource::Dynamic(e) => e.value(ctx),
    }
}

fn canned(c: &CannedResponse) -> TerminalResponse {
    TerminalResponse {
        status: c.status,
        headers: c.headers(),
        body: c.body.clone(),
    }
}

fn apply_rule(
    rule: &CompiledRule,
    ctx: &Ctx<'_>,
    state: &mut StageState,
    changes: &mut Changes,
    tracing: bool,
) -> Effect {
    // Trace notes are only built when tracing: no formatting on the hot path.
    let note = |f: &dyn Fn() -> String| if tracing { Some(f()) } else { None };
    match &rule.action {
        CompiledAction::Redirect {
            target,
            status,
            preserve_query_string,
        } => {
            let mut location = value_of(target, ctx).into_owned();
            if *preserve_query_string && let Some(q) = ctx.req.uri.query().filter(|q| !q.is_empty())
            {
                location.push(if location.contains(&b'?') { b'&' } else { b'?' });
                location.extend_from_slice(q.as_bytes());
            }
            match HeaderValue::from_bytes(&location) {
                Ok(v) if crate::rules::compiled::is_redirect_target(&location) => {
                    let mut headers = HeaderMap::with_capacity(1);
                    headers.insert(LOCATION, v);
                    let what = format!(
                        "redirect {} to {}",
                        status.as_u16(),
                        String::from_utf8_lossy(&location)
                    );
                    Effect::Terminate(
                        TerminalResponse {
                            status: *status,
                            headers,
                            body: Bytes::new(),
                        },
                        what,
                    )
                }
                _ => {
                    tracing::warn!(
                        rule = rule.index,
                        "redirect target is not a valid Location; rule ignored"
                    );
                    Effect::Continue(note(&|| "redirect target invalid, ignored".into()))
                }
            }
        }
        CompiledAction::RewriteUri { path, query } => {
            let mut what = Vec::new();
            if let Some(p) = path {
                let v = value_of(p, ctx);
                if v.starts_with(b"/") && !v.contains(&b'?') && !v.contains(&b'#') {
                    if tracing {
                        what.push(format!("path={}", String::from_utf8_lossy(&v)));
                    }
                    changes.path = Some(v.into_owned());
                } else {
                    if tracing {
                        what.push("path value invalid, ignored".into());
                    }
                }
            }
            if let Some(q) = query {
                let v = value_of(q, ctx);
                if !v.contains(&b'#') {
                    if tracing {
                        what.push(format!("query={}", String::from_utf8_lossy(&v)));
                    }
                    changes.query = Some(v.into_owned());
                } else {
                    if tracing {
                        what.push("query value invalid, ignored".into());
                    }
                }
            }
            Effect::Continue(note(&|| format!("rewrite {}", what.join(" "))))
        }
        CompiledAction::Headers(list) => {
            let mut what = Vec::new();
            for change in list {
                let value = match &change.value {
                    None => None,
                    Some(v) => match match v {
                        // Shares the configured bytes instead of copying them.
                        HeaderValueSource::Static(v) => Ok(v.clone()),
                        HeaderValueSource::Dynamic(e) => HeaderValue::from_bytes(&e.value(ctx)),
                    } {
                        Ok(v) => Some(v),
                        Err(_) => {
                            if tracing {
                                what.push(format!("{}: invalid value, ignored", change.name));
                            }
                            continue;
                        }
                    },
                };
                if tracing {
                    let op = match change.operation {
                        HeaderOperation::Set => "set",
                        HeaderOperation::Add => "add",
                        HeaderOperation::Remove => "remove",
                    };
                    let shown = value
                        .as_ref()
                        .map(|v| format!("={}", String::from_utf8_lossy(v.as_bytes())))
                        .unwrap_or_default();
                    what.push(format!("{op} {}{shown}", change.name));
                }
                changes
                    .headers
                    .push((change.name.clone(), change.operation, value));
            }
            Effect::Continue(note(&|| format!("headers: {}", what.join(", "))))
        }
        CompiledAction::Route {
            host_header,
            origin_host,
            origin_port,
            sni,
        } => {
            let r = &mut state.route;
            if host_header.is_some() {
                r.host_header.clone_from(host_header);
            }
            if origin_host.is_some() {
                r.origin_host.clone_from(origin_host);
            }
            if origin_port.is_some() {
                r.origin_port = *origin_port;
            }
            if sni.is_some() {
                r.sni.clone_from(sni);
            }
            Effect::Continue(note(&|| format!("route {r:?}")))
        }
        CompiledAction::Block(c) => {
            Effect::Terminate(canned(c), format!("block {}", c.status.as_u16()))
        }
        CompiledAction::Skip {
            rest_of_ruleset,
            phases,
        } => {
            for p in phases {
                state.skipped |= phase_bit(*p);
            }
            let names: Vec<_> = phases.iter().map(|p| p.as_str()).collect();
            let what = format!(
                "skip{}{}",
                if *rest_of_ruleset {
                    " rest of ruleset"
                } else {
                    ""
                },
                if names.is_empty() {
                    String::new()
                } else {
                    format!(" phases {}", names.join(", "))
                }
            );
            if *rest_of_ruleset {
                Effect::StopPhase(what)
            } else {
                Effect::Continue(tracing.then_some(what))
            }
        }
        CompiledAction::Log => {
            tracing::info!(rule = rule.index, id = rule.id.as_deref().unwrap_or(""), uri = %ctx.req.uri, "rule matched (log)");
            Effect::Continue(note(&|| "log".into()))
        }
        CompiledAction::RateLimit { limiter, response } => {
            let d = limiter.hit(ctx);
            if d.exceeded {
                Effect::Terminate(
                    canned(response),
                    format!(
                        "rate limited ({} requests in window) -> {}",
                        d.count,
                        response.status.as_u16()
                    ),
                )
            } else {
                Effect::Continue(note(&|| {
                    format!("counted ({} requests in window)", d.count)
                }))
            }
        }
    }
}

/// Runs the rules of one phase against `ctx`, collecting changes. Untraced,
/// only the index's candidates are evaluated; traced, every rule is (the
/// trace shows each rule's field values), which is the unindexed reference
/// the index is tested against.
fn evaluate(
    phase: &PhaseRules,
    ctx: &Ctx<'_>,
    state: &mut StageState,
    changes: &mut Changes,
    trace: Option<&mut PhaseTrace>,
) -> Option<TerminalResponse> {
    let rules = phase.rules();
    match trace {
        Some(t) => evaluate_rules(rules.iter(), ctx, state, changes, Some(t)),
        None => {
            // Borrowed, not moved: the candidate lists are a few cache lines.
            let mut candidates = phase.index().candidates(ctx).map(|pos| &rules[pos]);
            evaluate_rules(&mut candidates, ctx, state, changes, None)
        }
    }
}

fn evaluate_rules<'r>(
    rules: impl Iterator<Item = &'r CompiledRule>,
    ctx: &Ctx<'_>,
    state: &mut StageState,
    changes: &mut Changes,
    mut trace: Option<&mut PhaseTrace>,
) -> Option<TerminalResponse> {
    // Trace entries are built only when tracing, so the untraced loop moves
    // nothing bigger than a bool per rule.
    let entry = |rule: &CompiledRule, result: RuleResult, action: Option<String>| RuleTrace {
        index: rule.index,
        id: rule.id.clone(),
        description: rule.description.clone(),
        expression: rule.filter.source().to_owned(),
        result,
        fields: Vec::new(),
        action,
    };
    let mut stop: Option<String> = None;
    let mut terminal = None;
    for rule in rules {
        if stop.is_some() || !rule.enabled {
            if let Some(t) = trace.as_deref_mut() {
                let reason = stop.clone().unwrap_or_else(|| "disabled".to_owned());
                t.rules.push(entry(rule, RuleResult::Skipped(reason), None));
            }
            continue;
        }
        let matched = rule.filter.matches(ctx);
        let mut action = None;
        if matched {
            action = match apply_rule(rule, ctx, state, changes, trace.is_some()) {
                Effect::Continue(what) => what,
                Effect::StopPhase(what) => {
                    stop = Some(format!(
                        "rule {} skipped the rest of the ruleset",
                        rule.index
                    ));
                    Some(what)
                }
                Effect::Terminate(resp, what) => {
                    stop = Some(format!("rule {} ended the request", rule.index));
                    terminal = Some(resp);
                    Some(what)
                }
            };
        }
        match trace.as_deref_mut() {
            Some(t) => {
                let result = if matched {
                    RuleResult::Matched
                } else {
                    RuleResult::NotMatched
                };
                let mut e = entry(rule, result, action);
                e.fields = rule.filter.field_values(ctx);
                t.rules.push(e);
            }
            None if stop.is_some() => break,
            None => {}
        }
    }
    terminal
}

/// Drained in place: moving the inline buffer into an iterator would copy
/// all of it.
fn apply_headers(headers: &mut HeaderMap, changes: &mut HeaderChanges) {
    if changes.is_empty() {
        return;
    }
    // One growth of the map instead of one per new header.
    headers.reserve(changes.len());
    for (name, op, value) in changes.drain(..) {
        match (op, value) {
            (HeaderOperation::Set, Some(v)) => {
                headers.insert(name, v);
            }
            (HeaderOperation::Add, Some(v)) => {
                headers.append(name, v);
            }
            (HeaderOperation::Remove, _) => {
                headers.remove(name);
            }
            (_, None) => {}
        }
    }
}

fn apply_uri(req: &mut request::Parts, path: Option<Vec<u8>>, query: Option<Vec<u8>>) {
    if path.is_none() && query.is_none() {
        return;
    }
    let current = path_and_query(&req.uri);
    let (cur_path, cur_query) = current.split_once('?').unwrap_or((current, ""));
    let path = path.as_deref().unwrap_or(cur_path.as_bytes());
    let q = query.as_deref().unwrap_or(cur_query.as_bytes());
    // Built once at its final size.
    let mut pq = Vec::with_capacity(path.len() + 1 + q.len());
    pq.extend_from_slice(path);
    if !q.is_empty() {
        pq.push(b'?');
        pq.extend_from_slice(q);
    }
    let Ok(pq) = PathAndQuery::try_from(pq) else {
        tracing::warn!("rewritten URI is invalid; rewrite dropped");
        return;
    };
    if req.uri.scheme().is_none() && req.uri.authority().is_none() {
        // Origin form (HTTP/1.1): the path and query are the whole URI, so
        // nothing of the old one needs cloning.
        req.uri = Uri::from(pq);
        return;
    }
    let mut parts = req.uri.clone().into_parts();
    parts.path_and_query = Some(pq);
    if let Ok(uri) = Uri::from_parts(parts) {
        req.uri = uri;
    }
}

/// Runs a request phase on `req`; returns the response if a rule ended the request.
pub(crate) fn run_request_phase(
    rules: &PhaseRules,
    req: &mut request::Parts,
    client: &ClientInfo<'_>,
    raw: &RawRequest,
    state: &mut StageState,
    trace: Option<&mut PhaseTrace>,
) -> Option<TerminalResponse> {
    let mut changes = Changes::default();
    let ctx = Ctx::new(&*req, raw, client, None);
    let terminal = evaluate(rules, &ctx, state, &mut changes, trace);
    if terminal.is_some() {
        return terminal;
    }
    apply_uri(req, changes.path, changes.query);
    apply_headers(&mut req.headers, &mut changes.headers);
    None
}

/// Runs a response phase on `resp`.
pub(crate) fn run_response_phase(
    rules: &PhaseRules,
    req: &request::Parts,
    client: &ClientInfo<'_>,
    raw: &RawRequest,
    resp: &mut response::Parts,
    trace: Option<&mut PhaseTrace>,
) {
    let mut changes = Changes::default();
    let mut state = StageState::default();
    let ctx = Ctx::new(req, raw, client, Some(&*resp));
    evaluate(rules, &ctx, &mut state, &mut changes, trace);
    apply_headers(&mut resp.headers, &mut changes.headers);
}
