//! One validation round for one hostname: the evidence the activation state
//! machine needs, gathered from this edge's own zones, DNS and HTTP.

use std::net::IpAddr;
use std::time::Duration;

use super::{Dns, VerifyConfig, VerifyError, http};
use crate::state::hostname;
use crate::state::{CnameCheck, CustomHostname, HostnameStatus, Observation, State};

/// Where a provider's customers must point: its CNAME target or any name in its zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    /// The provider zone's apex.
    pub zone: String,
    pub cname_target: Option<String>,
}

impl Provider {
    /// The provider zone `zone_id` of `state`.
    pub fn of(state: &State, zone_id: &str) -> Option<Provider> {
        let zone = state.zone(zone_id)?;
        Some(Provider {
            zone: zone.zone.name.clone(),
            cname_target: zone
                .custom_hostname_settings
                .as_ref()
                .map(|s| s.cname_target.clone()),
        })
    }

    pub fn contains(&self, name: &str) -> bool {
        self.cname_target
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case(name))
            || hostname::is_within(name, &self.zone)
    }
}

/// Runs the checks; shared by every hostname's round.
pub struct Checker {
    dns: Dns,
    http_port: u16,
    http_private_addresses: bool,
    timeout: Duration,
}

impl Checker {
    pub fn new(config: &VerifyConfig) -> Result<Checker, VerifyError> {
        config.validate()?;
        Ok(Checker {
            dns: Dns::new(config.resolver, config.timeout())?,
            http_port: config.http_port,
            http_private_addresses: config.http_private_addresses,
            timeout: config.timeout(),
        })
    }

    /// The one observation that decides `ch`'s round. An active or moved
    /// hostname is asked only the real-time CNAME question: a token proves
    /// control, not that traffic still arrives here, and a TXT record left
    /// behind must not undo `moved`. A pending one: the first check that
    /// activates wins; when none does, the method the customer evidently
    /// tried (a TXT record or a challenge body holding the wrong token) gives
    /// the error, else the CNAME check does, so `verification_errors` names
    /// what to fix.
    pub async fn observe(
        &self,
        state: &State,
        zone_id: &str,
        ch: &CustomHostname,
    ) -> Result<Observation, VerifyError> {
        let cname = self.cname(state, zone_id, &ch.hostname).await;
        if ch.status != HostnameStatus::Pending || matches!(cname, Ok(CnameCheck::Provider)) {
            return cname.map(|result| Observation::Cname { result });
        }
        // Without a token neither pre-validation can succeed.
        if ch.ownership_verification.is_none() {
            return cname.map(|result| Observation::Cname { result });
        }
        let txt = self.txt(ch).await;
        if let Ok(Observation::Txt { found: Some(_) }) = &txt {
            return txt;
        }
        let http = self.http(ch).await;
        if let Ok(Observation::Http { found: Some(_) }) = &http {
            return http;
        }
        match cname {
            Ok(result) => Ok(Observation::Cname { result }),
            Err(e) => txt.or(http).map_err(|_| e),
        }
    }

    /// The real-time CNAME check, answered by this edge's own zones when the
    /// hostname's DNS lives here, else by DNS.
    pub async fn cname(
        &self,
        state: &State,
        zone_id: &str,
        name: &str,
    ) -> Result<CnameCheck, VerifyError> {
        if let Some(local) = state.cname_check(name, zone_id) {
            return Ok(local);
        }
        let provider = Provider::of(state, zone_id)
            .ok_or_else(|| VerifyError::UnknownZone(zone_id.to_string()))?;
        self.dns.cname_check(name, &provider).await
    }

    /// TXT pre-validation at the name the API handed out with the token:
    /// finds the value equal to the token among all TXT values there, else
    /// the first one (for the error), else none.
    pub async fn txt(&self, ch: &CustomHostname) -> Result<Observation, VerifyError> {
        let (name, token) = match &ch.ownership_verification {
            Some(v) => (v.name.clone(), Some(v.value.as_str())),
            None => (format!("_cf-custom-hostname.{}", ch.hostname), None),
        };
        let values = self.dns.txt(&name).await?;
        let found = values
            .iter()
            .find(|v| Some(v.trim()) == token)
            .or(values.first())
            .cloned();
        Ok(Observation::Txt { found })
    }

    /// HTTP pre-validation; a wildcard hostname has no host to fetch from,
    /// and an unreachable host or a status other than 200 holds no token. A
    /// body that is not the token is cut to [`REFLECTED_BODY`] characters:
    /// it lands in `verification_errors`, and the edge must not become a way
    /// to read other people's pages.
    pub async fn http(&self, ch: &CustomHostname) -> Result<Observation, VerifyError> {
        if hostname::is_wildcard(&ch.hostname) {
            return Ok(Observation::Http { found: None });
        }
        let mut addresses = self.dns.addresses(&ch.hostname).await?;
        if !self.http_private_addresses {
            addresses.retain(|ip| is_public(*ip));
        }
        let path = http::challenge_path(&ch.id);
        let found = match http::fetch(
            &addresses,
            self.http_port,
            &ch.hostname,
            &path,
            self.timeout,
        )
        .await
        {
            Ok(found) => found,
            Err(reason) => {
                tracing::debug!(hostname = %ch.hostname, %reason, "HTTP pre-validation fetch failed");
                None
            }
        };
        let token = ch.ownership_verification.as_ref().map(|v| v.value.trim());
        let found = found.map(|body| match Some(body.trim()) == token {
            true => body,
            false => body.chars().take(REFLECTED_BODY).collect(),
        });
        Ok(Observation::Http { found })
    }
}

/// How much of a wrong challenge body `verification_errors` shows.
pub const REFLECTED_BODY: usize = 64;

/// Not an address of a private, local or special-purpose network.
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                // 100.64.0.0/10, carrier-grade NAT.
                || (v4.octets()[0] == 100 && v4.octets()[1] & 0xc0 == 64))
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public(IpAddr::V4(v4)),
            None => {
                !(v6.is_loopback()
                    || v6.is_unspecified()
                    || v6.is_multicast()
                    || v6.is_unique_local()
                    || v6.is_unicast_link_local())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_addresses_are_not_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in [
            "192.0.2.7",
            "100.128.0.1",
            "8.8.8.8",
            "2001:db8::1",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }
}
