//! Rulesets compiled for execution: every rule validated whole (action allowed
//! in its phase, parameters complete, expressions compiled) so that a bad
//! rule is refused at configuration time and never half-applied.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{HeaderMap, StatusCode};

use super::error::RulesError;
use super::expression::Expression;
use super::index::RuleIndex;
use super::model::{
    Action, ActionParameters, CustomResponse, HeaderOperation, Phase, Rule, Ruleset,
    ValueOrExpression,
};
use super::ratelimit::{Clock, RateLimiter, SystemClock};
use super::scheme::{ExprKind, Field};
use crate::hop_by_hop::HOP_BY_HOP;
use crate::vouched;

/// Why rules may not set, add or remove `name`, if they may not: a header the edge vouches
/// for (forging or erasing it would fool another account's origin) or one that belongs to a
/// single hop (framing and connection handling are the edge's, not a tenant's).
fn untouchable(name: &HeaderName) -> Option<&'static str> {
    if vouched::lookup(name).is_some() {
        Some("is vouched for by the edge and cannot be changed by rules")
    } else if HOP_BY_HOP.contains(name) {
        Some("is hop-by-hop and cannot be changed by rules")
    } else {
        None
    }
}

/// `true` for an `http://` or `https://` URL with a host, or a path (`/x`, not `//host`):
/// a redirect never sends a visitor to `javascript:`, `data:` or another scheme.
pub fn is_redirect_target(target: &[u8]) -> bool {
    let lower = target.to_ascii_lowercase();
    let after_scheme = lower
        .strip_prefix(b"https://")
        .or_else(|| lower.strip_prefix(b"http://"));
    match after_scheme {
        Some(rest) => rest.first().is_some_and(|b| !b"/\\?#".contains(b)),
        None => target.starts_with(b"/") && !matches!(target.get(1), Some(b'/' | b'\\')),
    }
}

/// A static value, or an expression computed from the request.
#[derive(Debug)]
pub enum ValueSource {
    Static(Bytes),
    Dynamic(Box<Expression>),
}

/// A header value to set or add: a static one is validated and built once,
/// so applying it clones a shared buffer instead of checking its bytes again.
#[derive(Debug)]
pub enum HeaderValueSource {
    Static(HeaderValue),
    Dynamic(Box<Expression>),
}

#[derive(Debug)]
pub struct HeaderChange {
    pub name: HeaderName,
    pub operation: HeaderOperation,
    /// `None` for `remove`.
    pub value: Option<HeaderValueSource>,
}

/// A canned response for block and rate-limit actions, built once.
#[derive(Debug, Clone)]
pub struct CannedResponse {
    pub status: StatusCode,
    pub content_type: HeaderValue,
    pub body: Bytes,
}

#[derive(Debug)]
pub enum CompiledAction {
    Redirect {
        target: ValueSource,
        status: StatusCode,
        preserve_query_string: bool,
    },
    RewriteUri {
        path: Option<ValueSource>,
        query: Option<ValueSource>,
    },
    Headers(Vec<HeaderChange>),
    Route {
        host_header: Option<HeaderValue>,
        origin_host: Option<String>,
        origin_port: Option<u16>,
        sni: Option<String>,
    },
    Block(CannedResponse),
    Skip {
        rest_of_ruleset: bool,
        phases: Vec<Phase>,
    },
    Log,
    RateLimit {
        limiter: RateLimiter,
        response: CannedResponse,
    },
}

impl CompiledAction {
    pub fn name(&self) -> &'static str {
        match self {
            CompiledAction::Redirect { .. } => "redirect",
            CompiledAction::RewriteUri { .. } | CompiledAction::Headers(_) => "rewrite",
            CompiledAction::Route { .. } => "route",
            CompiledAction::Block(_) => "block",
            CompiledAction::Skip { .. } => "skip",
            CompiledAction::Log => "log",
            CompiledAction::RateLimit { .. } => "block (rate limit)",
        }
    }
}

/// A rule ready to run.
#[derive(Debug)]
pub struct CompiledRule {
    /// Position in the phase's ruleset.
    pub index: usize,
    pub id: Option<String>,
    pub description: Option<String>,
    pub enabled: bool,
    pub filter: Expression,
    pub action: CompiledAction,
}

impl CompiledRule {
    /// The filter and every dynamic value expression of the action.
    pub fn expressions(&self) -> impl Iterator<Item = &Expression> {
        fn dynamic(v: &Option<ValueSource>) -> Option<&Expression> {
            match v {
                Some(ValueSource::Dynamic(e)) => Some(e),
                _ => None,
            }
        }
        let mut out = vec![&self.filter];
        match &self.action {
            CompiledAction::Redirect {
                target: ValueSource::Dynamic(e),
                ..
            } => out.push(e),
            CompiledAction::RewriteUri { path, query } => {
                out.extend(dynamic(path).into_iter().chain(dynamic(query)))
            }
            CompiledAction::Headers(changes) => {
                out.extend(changes.iter().filter_map(|c| match &c.value {
                    Some(HeaderValueSource::Dynamic(e)) => Some(&**e),
                    _ => None,
                }))
            }
            _ => {}
        }
        out.into_iter()
    }
}

/// One phase's rules, in order, and their index.
#[derive(Debug, Default)]
pub struct PhaseRules {
    rules: Vec<CompiledRule>,
    index: RuleIndex,
}

impl PhaseRules {
    pub fn rules(&self) -> &[CompiledRule] {
        &self.rules
    }

    pub fn index(&self) -> &RuleIndex {
        &self.index
    }
}

const PHASES: usize = Phase::REQUEST.len() + Phase::RESPONSE.len();
// Every phase runs and the last declared one indexes the last slot.
const _: () = assert!(Phase::HttpResponseHeadersTransform as usize + 1 == PHASES);

/// One zone's rules, every phase compiled.
#[derive(Debug, Default)]
pub struct ZoneRules {
    /// By `Phase as usize`: every stage looks up each of its phases per
    /// request, and an array index is cheaper than a tree walk.
    phases: [PhaseRules; PHASES],
    needs_raw_headers: bool,
}

impl ZoneRules {
    pub fn compile(rulesets: &BTreeMap<Phase, Ruleset>) -> Result<ZoneRules, RulesError> {
        Self::compile_with_clock(rulesets, Arc::new(SystemClock))
    }

    /// As `compile`, with the clock rate limits count windows by.
    pub fn compile_with_clock(
        rulesets: &BTreeMap<Phase, Ruleset>,
        clock: Arc<dyn Clock>,
    ) -> Result<ZoneRules, RulesError> {
        let mut phases: [PhaseRules; PHASES] = Default::default();
        let mut needs_raw_headers = false;
        for (&phase, ruleset) in rulesets {
            let mut rules = Vec::with_capacity(ruleset.rules.len());
            for (index, rule) in ruleset.rules.iter().enumerate() {
                let c = RuleCompiler {
                    phase,
                    index,
                    clock: &clock,
                };
                let compiled = c.rule(rule)?;
                needs_raw_headers |= compiled.expressions().any(|e| {
                    Field::ALL
                        .iter()
                        .any(|f| f.needs_raw_headers() && e.reads(*f))
                });
                rules.push(compiled);
            }
            let index = RuleIndex::new(&rules);
            phases[phase as usize] = PhaseRules { rules, index };
        }
        Ok(ZoneRules {
            phases,
            needs_raw_headers,
        })
    }

    pub fn rules(&self, phase: Phase) -> &[CompiledRule] {
        self.phases[phase as usize].rules()
    }

    /// A phase's rules with their index; `None` when the zone has none.
    pub fn phase(&self, phase: Phase) -> Option<&PhaseRules> {
        Some(&self.phases[phase as usize]).filter(|p| !p.rules.is_empty())
    }

    /// Whether some rule reads `raw.http.request.headers*`, so the runner must
    /// keep a copy of the client's headers.
    pub fn needs_raw_headers(&self) -> bool {
        self.needs_raw_headers
    }

    pub fn is_empty(&self) -> bool {
        self.phases.iter().all(|p| p.rules.is_empty())
    }
}

struct RuleCompiler<'c> {
    phase: Phase,
    index: usize,
    clock: &'c Arc<dyn Clock>,
}

fn allowed_actions(phase: Phase) -> &'static [Action] {
    match phase {
        Phase::HttpRequestDynamicRedirect => &[Action::Redirect],
        Phase::HttpRequestTransform
        | Phase::HttpRequestLateTransform
        | Phase::HttpResponseHeadersTransform => &[Action::Rewrite],
        Phase::HttpRequestOrigin => &[Action::Route],
        Phase::HttpRequestFirewallCustom => &[Action::Block, Action::Skip, Action::Log],
        Phase::HttpRatelimit => &[Action::Block, Action::Log],
    }
}

fn action_name(a: Action) -> &'static str {
    match a {
        Action::Block => "block",
        Action::Redirect => "redirect",
        Action::Rewrite => "rewrite",
        Action::Route => "route",
        Action::Skip => "skip",
        Action::Log => "log",
    }
}

/// The names of the `action_parameters` fields that are set.
fn present(p: &ActionParameters) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut add = |set: bool, name| {
        if set {
            out.push(name)
        }
    };
    add(p.from_value.is_some(), "from_value");
    add(p.uri.is_some(), "uri");
    add(p.headers.is_some(), "headers");
    add(p.host_header.is_some(), "host_header");
    add(p.origin.is_some(), "origin");
    add(p.sni.is_some(), "sni");
    add(p.response.is_some(), "response");
    add(p.ruleset.is_some(), "ruleset");
    add(p.phases.is_some(), "phases");
    out
}

impl RuleCompiler<'_> {
    fn err(&self, field: &str, msg: impl Into<String>) -> RulesError {
        RulesError::new(self.phase, self.index, field, msg)
    }

    fn kind(&self, value: bool) -> ExprKind {
        ExprKind {
            response: self.phase.is_response(),
            value,
        }
    }

    fn rule(&self, rule: &Rule) -> Result<CompiledRule, RulesError> {
        let filter = Expression::compile(&rule.expression, self.kind(false))
            .map_err(|e| self.err("expression", e.to_string()))?;
        if !allowed_actions(self.phase).contains(&rule.action) {
            let allowed: Vec<_> = allowed_actions(self.phase)
                .iter()
                .map(|a| action_name(*a))
                .collect();
            return Err(self.err(
                "action",
                format!(
                    "action `{}` is not allowed in this phase (allowed: {})",
                    action_name(rule.action),
                    allowed.join(", ")
                ),
            ));
        }
        let empty = ActionParameters::default();
        let params = rule.action_parameters.as_ref().unwrap_or(&empty);
        let allowed: &[&str] = match (rule.action, self.phase) {
            (Action::Redirect, _) => &["from_value"],
            (Action::Rewrite, Phase::HttpRequestTransform) => &["uri"],
            (Action::Rewrite, _) => &["headers"],
            (Action::Route, _) => &["host_header", "origin", "sni"],
            (Action::Block, _) => &["response"],
            (Action::Skip, _) => &["ruleset", "phases"],
            (Action::Log, _) => &[],
        };
        if let Some(extra) = present(params).into_iter().find(|p| !allowed.contains(p)) {
            return Err(self.err(
                &format!("action_parameters.{extra}"),
                format!(
                    "not allowed for action `{}` in this phase",
                    action_name(rule.action)
                ),
            ));
        }
        if rule.ratelimit.is_some() != (self.phase == Phase::HttpRatelimit) {
            return Err(if rule.ratelimit.is_some() {
                self.err("ratelimit", "only allowed in phase http_ratelimit")
            } else {
                self.err("ratelimit", "required in phase http_ratelimit")
            });
        }
        Ok(CompiledRule {
            index: self.index,
            id: rule.id.clone(),
            description: rule.description.clone(),
            enabled: rule.enabled,
            filter,
            action: self.action(rule, params)?,
        })
    }

    fn action(&self, rule: &Rule, p: &ActionParameters) -> Result<CompiledAction, RulesError> {
        match rule.action {
            Action::Redirect => {
                let fv = p.from_value.as_ref().ok_or_else(|| {
                    self.err("action_parameters.from_value", "required for redirect")
                })?;
                let status = fv.status_code.unwrap_or(301);
                if ![301, 302, 303, 307, 308].contains(&status) {
                    return Err(self.err(
                        "action_parameters.from_value.status_code",
                        format!("{status} is not a redirect status (301, 302, 303, 307, 308)"),
                    ));
                }
                let field = "action_parameters.from_value.target_url";
                let target = self.value_source(&fv.target_url, field)?;
                if let ValueSource::Static(v) = &target {
                    HeaderValue::from_maybe_shared(v.clone())
                        .ok()
                        .filter(|_| !v.is_empty())
                        .ok_or_else(|| self.err(field, "not a valid Location value"))?;
                    if !is_redirect_target(v) {
                        return Err(self.err(
                            field,
                            "must be an http(s) URL or a path starting with a single `/`",
                        ));
                    }
                }
                Ok(CompiledAction::Redirect {
                    target,
                    status: StatusCode::from_u16(status).unwrap_or(StatusCode::MOVED_PERMANENTLY),
                    preserve_query_string: fv.preserve_query_string,
                })
            }
            Action::Rewrite if self.phase == Phase::HttpRequestTransform => {
                let uri = p
                    .uri
                    .as_ref()
                    .filter(|u| u.path.is_some() || u.query.is_some())
                    .ok_or_else(|| {
                        self.err(
                            "action_parameters.uri",
                            "rewrite needs `uri.path` or `uri.query`",
                        )
                    })?;
                let path = uri
                    .path
                    .as_ref()
                    .map(|v| self.value_source(v, "action_parameters.uri.path"))
                    .transpose()?;
                let query = uri
                    .query
                    .as_ref()
                    .map(|v| self.value_source(v, "action_parameters.uri.query"))
                    .transpose()?;
                if let Some(ValueSource::Static(v)) = &path
                    && (!v.starts_with(b"/")
                        || v.contains(&b'?')
                        || PathAndQuery::from_maybe_shared(v.clone()).is_err())
                {
                    return Err(self.err(
                        "action_parameters.uri.path.value",
                        "must be a path starting with `/`, without `?`",
                    ));
                }
                if let Some(ValueSource::Static(v)) = &query {
                    let mut pq = b"/?".to_vec();
                    pq.extend_from_slice(v);
                    if v.starts_with(b"?")
                        || v.contains(&b'#')
                        || PathAndQuery::try_from(pq).is_err()
                    {
                        return Err(self.err(
                            "action_parameters.uri.query.value",
                            "must be a query string without the leading `?`",
                        ));
                    }
                }
                Ok(CompiledAction::RewriteUri { path, query })
            }
            Action::Rewrite => {
                let headers = p
                    .headers
                    .as_ref()
                    .filter(|h| !h.is_empty())
                    .ok_or_else(|| {
                        self.err(
                            "action_parameters.headers",
                            "rewrite needs at least one header",
                        )
                    })?;
                let mut changes = Vec::with_capacity(headers.len());
                for (name, change) in headers {
                    let field = format!("action_parameters.headers.{name}");
                    let hname = HeaderName::from_bytes(name.as_bytes())
                        .map_err(|_| self.err(&field, "not a valid header name"))?;
                    if let Some(reason) = untouchable(&hname) {
                        return Err(self.err(&field, format!("header `{hname}` {reason}")));
                    }
                    let value = match change.operation {
                        HeaderOperation::Remove => {
                            if change.value.is_some() || change.expression.is_some() {
                                return Err(self
                                    .err(&field, "remove takes neither `value` nor `expression`"));
                            }
                            None
                        }
                        HeaderOperation::Set | HeaderOperation::Add => {
                            let v = ValueOrExpression {
                                value: change.value.clone(),
                                expression: change.expression.clone(),
                            };
                            Some(match self.value_source(&v, &field)? {
                                ValueSource::Static(b) => HeaderValueSource::Static(
                                    HeaderValue::from_maybe_shared(b).map_err(|_| {
                                        self.err(
                                            &format!("{field}.value"),
                                            "not a valid header value",
                                        )
                                    })?,
                                ),
                                ValueSource::Dynamic(e) => HeaderValueSource::Dynamic(e),
                            })
                        }
                    };
                    changes.push(HeaderChange {
                        name: hname,
                        operation: change.operation,
                        value,
                    });
                }
                Ok(CompiledAction::Headers(changes))
            }
            Action::Route => {
                if p.host_header.is_none() && p.origin.is_none() && p.sni.is_none() {
                    return Err(self.err(
                        "action_parameters",
                        "route needs `host_header`, `origin` or `sni`",
                    ));
                }
                let host_header = p
                    .host_header
                    .as_ref()
                    .map(|h| {
                        HeaderValue::from_str(h)
                            .ok()
                            .filter(|_| valid_host(h))
                            .ok_or_else(|| {
                                self.err(
                                    "action_parameters.host_header",
                                    format!("`{h}` is not a valid host"),
                                )
                            })
                    })
                    .transpose()?;
                let (origin_host, origin_port) = match &p.origin {
                    Some(o) => {
                        if o.host.is_none() && o.port.is_none() {
                            return Err(
                                self.err("action_parameters.origin", "needs `host` or `port`")
                            );
                        }
                        if let Some(h) = &o.host
                            && !valid_host(h)
                        {
                            return Err(self.err(
                                "action_parameters.origin.host",
                                format!("`{h}` is not a valid host"),
                            ));
                        }
                        if o.port == Some(0) {
                            return Err(
                                self.err("action_parameters.origin.port", "port 0 is not allowed")
                            );
                        }
                        (o.host.clone(), o.port)
                    }
                    None => (None, None),
                };
                let sni = match &p.sni {
                    Some(s) if !valid_host(&s.value) => {
                        return Err(self.err(
                            "action_parameters.sni.value",
                            format!("`{}` is not a valid server name", s.value),
                        ));
                    }
                    s => s.as_ref().map(|s| s.value.clone()),
                };
                Ok(CompiledAction::Route {
                    host_header,
                    origin_host,
                    origin_port,
                    sni,
                })
            }
            Action::Block => {
                let default = if self.phase == Phase::HttpRatelimit {
                    StatusCode::TOO_MANY_REQUESTS
                } else {
                    StatusCode::FORBIDDEN
                };
                let response = self.canned(p.response.as_ref(), default)?;
                match &rule.ratelimit {
                    Some(rl) => Ok(CompiledAction::RateLimit {
                        limiter: self.limiter(rl)?,
                        response,
                    }),
                    None => Ok(CompiledAction::Block(response)),
                }
            }
            Action::Skip => {
                let rest_of_ruleset = match p.ruleset.as_deref() {
                    Some("current") => true,
                    Some(other) => {
                        return Err(self.err(
                            "action_parameters.ruleset",
                            format!("only `current` is supported, got `{other}`"),
                        ));
                    }
                    None => false,
                };
                let phases = p.phases.clone().unwrap_or_default();
                if !rest_of_ruleset && phases.is_empty() {
                    return Err(self.err(
                        "action_parameters",
                        "skip needs `ruleset: \"current\"` or `phases`",
                    ));
                }
                if let Some(bad) = phases
                    .iter()
                    .find(|ph| **ph <= self.phase || ph.is_response())
                {
                    return Err(self.err(
                        "action_parameters.phases",
                        format!("cannot skip `{bad}`: only later request phases can be skipped"),
                    ));
                }
                Ok(CompiledAction::Skip {
                    rest_of_ruleset,
                    phases,
                })
            }
            Action::Log => Ok(CompiledAction::Log),
        }
    }

    fn limiter(&self, rl: &super::model::RateLimit) -> Result<RateLimiter, RulesError> {
        if rl.characteristics.is_empty() {
            return Err(self.err(
                "ratelimit.characteristics",
                "at least one characteristic is required",
            ));
        }
        let mut exprs = Vec::new();
        for (i, c) in rl.characteristics.iter().enumerate() {
            // One edge location: the colo is the same for every request.
            if c == "cf.colo.id" {
                continue;
            }
            exprs.push(Expression::compile_characteristic(c).map_err(|e| {
                self.err(&format!("ratelimit.characteristics[{i}]"), e.to_string())
            })?);
        }
        if rl.period == 0 {
            return Err(self.err("ratelimit.period", "must be at least 1 second"));
        }
        if rl.requests_per_period == 0 {
            return Err(self.err("ratelimit.requests_per_period", "must be at least 1"));
        }
        Ok(RateLimiter::new(
            exprs,
            rl.period,
            rl.requests_per_period,
            rl.mitigation_timeout,
            self.clock.clone(),
        ))
    }

    fn canned(
        &self,
        custom: Option<&CustomResponse>,
        default: StatusCode,
    ) -> Result<CannedResponse, RulesError> {
        let Some(c) = custom else {
            return Ok(CannedResponse::default_page(default));
        };
        let status = match c.status_code {
            Some(s) if (400..=499).contains(&s) => StatusCode::from_u16(s).unwrap_or(default),
            Some(s) => {
                return Err(self.err(
                    "action_parameters.response.status_code",
                    format!("{s} is not between 400 and 499"),
                ));
            }
            None => default,
        };
        let content_type = c.content_type.as_deref().unwrap_or("text/plain");
        let content_type = HeaderValue::from_str(content_type)
            .ok()
            .filter(|_| content_type.contains('/'))
            .ok_or_else(|| {
                self.err(
                    "action_parameters.response.content_type",
                    format!("`{content_type}` is not a media type"),
                )
            })?;
        Ok(CannedResponse {
            status,
            content_type,
            body: Bytes::from(c.content.clone().unwrap_or_default()),
        })
    }

    fn value_source(&self, v: &ValueOrExpression, field: &str) -> Result<ValueSource, RulesError> {
        match (&v.value, &v.expression) {
            (Some(s), None) => Ok(ValueSource::Static(Bytes::from(s.clone()))),
            (None, Some(e)) => Expression::compile(e, self.kind(true))
                .map(|e| ValueSource::Dynamic(Box::new(e)))
                .map_err(|err| self.err(&format!("{field}.expression"), err.to_string())),
            _ => Err(self.err(field, "exactly one of `value` and `expression` is required")),
        }
    }
}

fn valid_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 255
        && h.bytes().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b':' | b'[' | b']' | b'_')
        })
}

impl CannedResponse {
    fn default_page(status: StatusCode) -> Self {
        let body: &'static [u8] = if status == StatusCode::TOO_MANY_REQUESTS {
            b"<!DOCTYPE html><title>429 Too Many Requests</title><h1>Too many requests</h1><p>You have been rate limited by this website's rules.</p>\n"
        } else {
            b"<!DOCTYPE html><title>403 Forbidden</title><h1>Access denied</h1><p>This request was blocked by this website's security rules.</p>\n"
        };
        CannedResponse {
            status,
            content_type: HeaderValue::from_static("text/html; charset=utf-8"),
            body: Bytes::from_static(body),
        }
    }

    pub fn headers(&self) -> HeaderMap {
        let mut h = HeaderMap::with_capacity(1);
        h.insert(CONTENT_TYPE, self.content_type.clone());
        h
    }
}
