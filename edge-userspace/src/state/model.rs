//! The objects operators manage, in the JSON shapes of Cloudflare's API v4 so
//! that the config file, the control API and people who already run Cloudflare
//! for SaaS all read the same field names.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::rules::model::{Phase, Ruleset};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    pub id: String,
    pub name: String,
}

/// How a zone names its owner (`"account": {"id": ...}` in the API).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountRef {
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Zone {
    pub id: String,
    /// The apex, e.g. `example.com`.
    pub name: String,
    pub account: AccountRef,
    #[serde(default)]
    pub settings: ZoneSettings,
    /// Entrypoint ruleset per phase; compiled and checked by the rules engine.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rulesets: BTreeMap<Phase, Ruleset>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneSettings {
    #[serde(default)]
    pub ssl: SslMode,
    /// Largest request body in MB (Cloudflare's `max_upload`); none: unlimited.
    /// In an O2O chain the smaller of the two zones' limits applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_upload: Option<std::num::NonZeroU32>,
    /// Cloudflare's `http3` setting: whether the zone's hostnames advertise HTTP/3 with
    /// `Alt-Svc`. In an O2O chain either zone turning it off turns it off.
    #[serde(default, skip_serializing_if = "OnOff::is_on")]
    pub http3: OnOff,
    /// How request URLs are normalised before any rule runs (README, "URL normalisation").
    #[serde(default, skip_serializing_if = "UrlNormalization::is_default")]
    pub url_normalization: UrlNormalization,
    /// Budgets of every chain the zone is a stage of (README, "Per-tenant admission").
    #[serde(default, skip_serializing_if = "Admission::is_unset")]
    pub admission: Admission,
}

/// What one chain (one tenant's hostnames) may take of the edge: new TLS connections per
/// second, refused before their handshake, and requests at once. Unset: no budget. A chain's
/// budget is the strictest of those of its zones and its custom hostname.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admission {
    /// Sustained rate of new TLS connections, with a burst of one second's worth.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "budget"
    )]
    pub new_connections_per_second: Option<u32>,
    /// Requests of the chain in flight at once (until their response body ends).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "budget"
    )]
    pub max_concurrent_requests: Option<u32>,
}

/// A budget as the JSON gives it. serde's own message for `-1` or `"fast"` does not say
/// what was expected of which setting; this one does (the bounds are checked in validation).
fn budget<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    if value.is_null() {
        return Ok(None);
    }
    value
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .map(Some)
        .ok_or_else(|| {
            serde::de::Error::custom(format_args!(
                "an admission budget must be a whole number from 1 to {}, not {value}",
                Admission::MAX_CONCURRENT_REQUESTS.max(Admission::MAX_NEW_CONNECTIONS_PER_SECOND)
            ))
        })
}

impl Admission {
    /// Highest `new_connections_per_second` accepted.
    pub const MAX_NEW_CONNECTIONS_PER_SECOND: u32 = 1_000_000;
    /// Highest `max_concurrent_requests` accepted.
    pub const MAX_CONCURRENT_REQUESTS: u32 = 1_000_000;

    pub fn is_unset(&self) -> bool {
        *self == Admission::default()
    }
}

/// A zone's URL normalisation: paths are always normalised before rules run (RFC 3986
/// dot segments, unreserved percent-decoding, upper-case hex); these say what else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UrlNormalization {
    /// `//admin` is `/admin`. On unless set: most origins treat them alike.
    #[serde(default = "on")]
    pub merge_slashes: bool,
    /// What the origin receives.
    #[serde(default)]
    pub origin: OriginUrl,
}

fn on() -> bool {
    true
}

impl Default for UrlNormalization {
    fn default() -> Self {
        UrlNormalization {
            merge_slashes: true,
            origin: OriginUrl::Normalized,
        }
    }
}

impl UrlNormalization {
    pub fn is_default(&self) -> bool {
        *self == UrlNormalization::default()
    }
}

/// The URL the origin receives when no rule rewrote it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OriginUrl {
    /// The normalised URL the rules saw (the default: the origin serves what was checked).
    #[default]
    Normalized,
    /// The URL as the client sent it.
    AsSent,
}

/// A Cloudflare zone setting that is `"on"` or `"off"`; on unless set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnOff {
    #[default]
    On,
    Off,
}

impl OnOff {
    pub fn is_on(&self) -> bool {
        *self == OnOff::On
    }
}

/// Cloudflare's SSL/TLS encryption mode: how the edge talks to the origin.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SslMode {
    Off,
    Flexible,
    /// Cloudflare's default for new zones.
    #[default]
    Full,
    Strict,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsRecord {
    pub id: String,
    #[serde(rename = "type")]
    pub record_type: RecordType,
    pub name: String,
    pub content: String,
    #[serde(default)]
    pub proxied: bool,
    /// Seconds; 1 means "automatic" as in Cloudflare's API.
    #[serde(default = "ttl_automatic")]
    pub ttl: u32,
}

fn ttl_automatic() -> u32 {
    1
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RecordType {
    A,
    #[serde(rename = "AAAA")]
    Aaaa,
    #[serde(rename = "CNAME")]
    Cname,
}

impl RecordType {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordType::A => "A",
            RecordType::Aaaa => "AAAA",
            RecordType::Cname => "CNAME",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomHostname {
    pub id: String,
    /// Exact (`shop.example.com`) or wildcard (`*.example.com`, one label deep).
    pub hostname: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_origin_server: Option<String>,
    /// A hostname, or [`REQUEST_HOST_HEADER`] for "the request's host".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_origin_sni: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_metadata: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    pub ssl: CustomHostnameSsl,
    #[serde(default)]
    pub status: HostnameStatus,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verification_errors: Vec<String>,
    /// Whether a CNAME check has seen the hostname point at the provider
    /// since it last had to validate. Only then is an active hostname whose
    /// CNAME leads elsewhere `moved` (one activated by a TXT or HTTP token
    /// before its DNS was switched has not arrived yet). Stored, so that a
    /// hostname whose CNAME moved away while the edge was down goes `moved`
    /// after a restart.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cname_observed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ownership_verification: Option<OwnershipVerification>,
    /// The hostname's own budgets (see [`Admission`]), set by the provider.
    #[serde(default, skip_serializing_if = "Admission::is_unset")]
    pub admission: Admission,
}

/// The `custom_origin_sni` value that means "send the request's host as SNI".
pub const REQUEST_HOST_HEADER: &str = ":request_host_header:";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomHostnameSsl {
    #[serde(default)]
    pub settings: SslSettings,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SslSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_tls_version: Option<MinTlsVersion>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum MinTlsVersion {
    #[serde(rename = "1.0")]
    Tls10,
    #[serde(rename = "1.1")]
    Tls11,
    #[serde(rename = "1.2")]
    Tls12,
    #[serde(rename = "1.3")]
    Tls13,
}

/// The hostname's `status` (not `ssl.status`, which is about the certificate).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostnameStatus {
    #[default]
    Pending,
    Active,
    Moved,
    Blocked,
    PendingDeletion,
}

impl HostnameStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HostnameStatus::Pending => "pending",
            HostnameStatus::Active => "active",
            HostnameStatus::Moved => "moved",
            HostnameStatus::Blocked => "blocked",
            HostnameStatus::PendingDeletion => "pending_deletion",
        }
    }
}

/// The TXT pre-validation record the API hands out when the hostname is created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnershipVerification {
    #[serde(rename = "type")]
    pub verification_type: VerificationType,
    /// `_cf-custom-hostname.<hostname>`.
    pub name: String,
    /// The token.
    pub value: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerificationType {
    Txt,
}

/// Where custom-hostname traffic goes when the hostname sets no `custom_origin_server`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FallbackOrigin {
    /// A proxied record of the provider zone.
    pub origin: String,
    #[serde(default)]
    pub status: FallbackOriginStatus,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FallbackOriginStatus {
    Initializing,
    #[default]
    PendingDeployment,
    Active,
    PendingDeletion,
    DeploymentTimedOut,
    DeletionTimedOut,
}

impl FallbackOriginStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FallbackOriginStatus::Initializing => "initializing",
            FallbackOriginStatus::PendingDeployment => "pending_deployment",
            FallbackOriginStatus::Active => "active",
            FallbackOriginStatus::PendingDeletion => "pending_deletion",
            FallbackOriginStatus::DeploymentTimedOut => "deployment_timed_out",
            FallbackOriginStatus::DeletionTimedOut => "deletion_timed_out",
        }
    }
}

/// A SaaS provider zone's custom-hostname settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomHostnameSettings {
    /// The proxied record of this zone that customers CNAME to, e.g.
    /// `customers.saasprovider.com`.
    pub cname_target: String,
}
