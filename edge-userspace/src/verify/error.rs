use thiserror::Error;

/// Why a check or a verifier call produced no verdict. None of these is
/// evidence about the hostname, so none of them ever changes its status: a
/// resolver outage must not move every active hostname.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum VerifyError {
    #[error("verify config: {0}")]
    Config(String),
    #[error("DNS lookup of {name} failed: {reason}")]
    Dns { name: String, reason: String },
    #[error("no custom hostname `{id}` awaiting validation in zone `{zone_id}`")]
    UnknownHostname { zone_id: String, id: String },
    #[error("the check of {hostname} did not finish within its {ms} ms deadline")]
    Deadline { hostname: String, ms: u128 },
    #[error("no zone `{0}`")]
    UnknownZone(String),
    #[error("the hostname verifier has stopped")]
    Stopped,
}
