//! Rulesets as operators write them: the JSON shapes of Cloudflare's Rulesets
//! API v4, shared by the config file, the control API and the compiler.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The phases this edge runs, in Cloudflare's execution order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    HttpRequestDynamicRedirect,
    HttpRequestTransform,
    HttpRequestOrigin,
    HttpRequestFirewallCustom,
    HttpRatelimit,
    HttpRequestLateTransform,
    HttpResponseHeadersTransform,
}

impl Phase {
    /// Request phases in execution order.
    pub const REQUEST: [Phase; 6] = [
        Phase::HttpRequestDynamicRedirect,
        Phase::HttpRequestTransform,
        Phase::HttpRequestOrigin,
        Phase::HttpRequestFirewallCustom,
        Phase::HttpRatelimit,
        Phase::HttpRequestLateTransform,
    ];
    /// Response phases in execution order.
    pub const RESPONSE: [Phase; 1] = [Phase::HttpResponseHeadersTransform];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::HttpRequestDynamicRedirect => "http_request_dynamic_redirect",
            Phase::HttpRequestTransform => "http_request_transform",
            Phase::HttpRequestOrigin => "http_request_origin",
            Phase::HttpRequestFirewallCustom => "http_request_firewall_custom",
            Phase::HttpRatelimit => "http_ratelimit",
            Phase::HttpRequestLateTransform => "http_request_late_transform",
            Phase::HttpResponseHeadersTransform => "http_response_headers_transform",
        }
    }

    pub fn is_response(self) -> bool {
        self == Phase::HttpResponseHeadersTransform
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Phase {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Phase::REQUEST
            .iter()
            .chain(Phase::RESPONSE.iter())
            .copied()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("unknown phase `{s}`"))
    }
}

/// A zone's entrypoint ruleset for one phase.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ruleset {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub expression: String,
    pub action: Action,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_parameters: Option<ActionParameters>,
    #[serde(default = "enabled_default")]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Rate limiting (phase `http_ratelimit`), as in Cloudflare's rule-level `ratelimit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratelimit: Option<RateLimit>,
}

fn enabled_default() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Block,
    Redirect,
    Rewrite,
    Route,
    Skip,
    Log,
}

/// Every action's parameters in one shape, as Cloudflare's API has them; which
/// fields an action may use is checked when the ruleset is compiled.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionParameters {
    // redirect
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_value: Option<FromValue>,
    // rewrite
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<UriRewrite>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, HeaderRewrite>>,
    // route
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<RouteOrigin>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<StaticValue>,
    // block
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<CustomResponse>,
    // skip
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ruleset: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phases: Option<Vec<Phase>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FromValue {
    pub target_url: ValueOrExpression,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    #[serde(default)]
    pub preserve_query_string: bool,
}

/// A static `value` or a dynamic `expression` (exactly one of them).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValueOrExpression {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expression: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UriRewrite {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<ValueOrExpression>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<ValueOrExpression>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderRewrite {
    pub operation: HeaderOperation,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expression: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeaderOperation {
    Set,
    Add,
    Remove,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteOrigin {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticValue {
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// e.g. `["ip.src"]`; Cloudflare also lists `cf.colo.id`, which is implied here.
    pub characteristics: Vec<String>,
    /// Seconds.
    pub period: u32,
    pub requests_per_period: u32,
    /// Seconds the block lasts once the rate is passed (0: only while over the rate).
    #[serde(default)]
    pub mitigation_timeout: u32,
}
