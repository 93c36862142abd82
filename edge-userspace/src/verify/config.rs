use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::VerifyError;

/// The config file's `verify` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyConfig {
    /// The DNS server asked, over UDP and TCP on the same port. A recursive
    /// resolver in production; tests point it at their own authoritative server.
    pub resolver: SocketAddr,
    /// Port of the HTTP pre-validation fetch; 80 except in tests, which cannot
    /// bind it.
    #[serde(default = "default_http_port")]
    pub http_port: u16,
    /// Whether the HTTP challenge may be fetched from loopback, private,
    /// link-local or unique-local addresses. Off by default: a customer's DNS
    /// must not aim the edge at its own network. Tests on loopback turn it on.
    #[serde(default)]
    pub http_private_addresses: bool,
    /// Bound on each DNS query and on each HTTP fetch.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// How often an active hostname's CNAME is checked again, to catch it moving away.
    #[serde(default = "default_active_recheck_ms")]
    pub active_recheck_ms: u64,
    /// When checks whose result the control plane refused to apply run again.
    #[serde(default = "default_error_retry_ms")]
    pub error_retry_ms: u64,
    /// Hostnames checked at the same time.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
}

fn default_http_port() -> u16 {
    80
}

fn default_timeout_ms() -> u64 {
    5_000
}

fn default_active_recheck_ms() -> u64 {
    300_000
}

fn default_error_retry_ms() -> u64 {
    10_000
}

fn default_concurrency() -> usize {
    16
}

impl VerifyConfig {
    /// The defaults, asking `resolver`.
    pub fn new(resolver: SocketAddr) -> VerifyConfig {
        VerifyConfig {
            resolver,
            http_port: default_http_port(),
            http_private_addresses: false,
            timeout_ms: default_timeout_ms(),
            active_recheck_ms: default_active_recheck_ms(),
            error_retry_ms: default_error_retry_ms(),
            concurrency: default_concurrency(),
        }
    }

    pub fn validate(&self) -> Result<(), VerifyError> {
        let refuse = |what: &str| Err(VerifyError::Config(what.to_string()));
        if self.resolver.port() == 0 {
            return refuse("`resolver` needs a port other than 0");
        }
        if self.resolver.ip().is_unspecified() {
            return refuse("`resolver` must not be an unspecified address (0.0.0.0 or ::)");
        }
        if self.http_port == 0 {
            return refuse("`http_port` must not be 0");
        }
        if self.timeout_ms == 0 || self.active_recheck_ms == 0 || self.error_retry_ms == 0 {
            return refuse(
                "`timeout_ms`, `active_recheck_ms` and `error_retry_ms` must be above 0",
            );
        }
        if self.concurrency == 0 {
            return refuse("`concurrency` must be at least 1");
        }
        Ok(())
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    pub fn active_recheck(&self) -> Duration {
        Duration::from_millis(self.active_recheck_ms)
    }

    pub fn error_retry(&self) -> Duration {
        Duration::from_millis(self.error_retry_ms)
    }

    /// Each hostname's whole check (CNAME chain, TXT, HTTP challenge) ends
    /// within this, whatever its DNS does: three steps of [`Self::timeout`]
    /// each.
    pub fn check_deadline(&self) -> Duration {
        self.timeout() * 3
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_refusals() {
        let config: VerifyConfig =
            serde_json::from_str(r#"{"resolver": "127.0.0.1:5353"}"#).unwrap();
        assert_eq!(config, VerifyConfig::new("127.0.0.1:5353".parse().unwrap()));
        assert_eq!(config.validate(), Ok(()));
        let error =
            serde_json::from_str::<VerifyConfig>(r#"{"resolver": "127.0.0.1:53", "resolvr": 1}"#)
                .unwrap_err()
                .to_string();
        assert!(error.contains("resolvr"), "{error}");
        let bad = [
            VerifyConfig::new("127.0.0.1:0".parse().unwrap()),
            VerifyConfig::new("0.0.0.0:53".parse().unwrap()),
            VerifyConfig {
                concurrency: 0,
                ..config.clone()
            },
            VerifyConfig {
                timeout_ms: 0,
                ..config.clone()
            },
            VerifyConfig {
                http_port: 0,
                ..config.clone()
            },
        ];
        for config in bad {
            assert!(
                matches!(config.validate(), Err(VerifyError::Config(_))),
                "{config:?}"
            );
        }
    }
}
