//! What resolution hands to the proxy: the zones a request passes through and
//! where it goes afterwards.

use std::sync::Arc;

use crate::admission::ChainAdmission;
use crate::state::{MinTlsVersion, SslMode};

/// One zone the request passes through; its rules run in this stage.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Stage {
    pub zone_id: Arc<str>,
    pub zone_name: Arc<str>,
    pub account_id: Arc<str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// Small (from 1), unique per distinct chain within a snapshot and kept
    /// by an unchanged chain across [`Snapshot::rebuild`](super::Snapshot::rebuild):
    /// the value the XDP route map stores per hostname.
    pub id: u32,
    /// One or two stages, customer first; shared between chains.
    pub stages: Arc<[Stage]>,
    /// Customer and provider are different accounts: the provider stage and its
    /// origin see `cf-connecting-o2o: 1`.
    pub o2o: bool,
    pub origin: Arc<Origin>,
    /// The custom hostname that made the provider zone the owner.
    pub custom_hostname: Option<ChainHostname>,
    /// The chain's budget (the strictest of its zones' and custom hostname's) and its meter.
    pub admission: ChainAdmission,
}

impl Chain {
    /// The last stage: the zone whose origin the request goes to.
    pub fn provider(&self) -> &Stage {
        &self.stages[self.stages.len() - 1]
    }

    /// Everything but the id is equal: the same stages, origin, hostname and budget (a
    /// changed budget is a new chain, so that a narrow update does not keep the old one).
    pub fn same_route(&self, other: &Chain) -> bool {
        *self.stages == *other.stages
            && self.o2o == other.o2o
            && self.origin == other.origin
            && self.custom_hostname == other.custom_hostname
            && self.admission == other.admission
    }

    /// The customer's stage of an O2O chain.
    pub fn customer(&self) -> Option<&Stage> {
        (self.stages.len() == 2).then(|| &self.stages[0])
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHostname {
    /// The id followed by the hostname: one allocation for both, since there
    /// is one of these per custom hostname.
    names: Arc<str>,
    id_len: u16,
    /// `custom_metadata`: the value of `cf.hostname.metadata`, parsed once
    /// here so that rules read it without parsing per request.
    pub metadata: Option<Arc<serde_json::Value>>,
    pub min_tls_version: Option<MinTlsVersion>,
}

impl ChainHostname {
    pub fn new(
        id: &str,
        hostname: &str,
        metadata: Option<Arc<serde_json::Value>>,
        min_tls_version: Option<MinTlsVersion>,
    ) -> Self {
        ChainHostname {
            names: format!("{id}{}", hostname.to_ascii_lowercase()).into(),
            id_len: u16::try_from(id.len()).expect("ids are short"),
            metadata,
            min_tls_version,
        }
    }

    pub fn id(&self) -> &str {
        &self.names[..usize::from(self.id_len)]
    }

    /// As configured, lower-case; `*.example.com` for a wildcard.
    pub fn hostname(&self) -> &str {
        &self.names[usize::from(self.id_len)..]
    }
}

/// Where the request goes after its last stage, before origin rules
/// (`route`) override any of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    /// Name or IP address to connect to: the content of the origin's DNS record.
    pub host: Arc<str>,
    /// `None`: 443 with TLS, 80 without.
    pub port: Option<u16>,
    pub tls: OriginTls,
    pub sni: OriginSni,
    pub host_header: HostHeader,
}

impl Origin {
    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(match self.tls {
            OriginTls::Plain => 80,
            OriginTls::Unverified | OriginTls::Verified => 443,
        })
    }
}

/// The zone's SSL mode, as the connection to the origin sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OriginTls {
    /// `off` and `flexible`.
    Plain,
    /// `full`: TLS, any certificate.
    Unverified,
    /// `strict`: TLS, certificate verified against the SNI name.
    Verified,
}

impl From<SslMode> for OriginTls {
    fn from(mode: SslMode) -> Self {
        match mode {
            SslMode::Off | SslMode::Flexible => OriginTls::Plain,
            SslMode::Full => OriginTls::Unverified,
            SslMode::Strict => OriginTls::Verified,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum OriginSni {
    /// The request's host (`:request_host_header:`, fallback origins, records).
    RequestHost,
    Name(Arc<str>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HostHeader {
    /// The `Host` the request carries when it leaves the last stage.
    Request,
    /// The hostname the visitor asked for, which matched the custom hostname:
    /// what the SaaS origin routes its tenants by.
    CustomHostname,
}
