//! Custom hostname activation: `pending` until the customer proves control,
//! `active` while it does, `moved` once its DNS stops pointing at the
//! provider, `blocked` until an operator lifts it. Checks arrive as
//! [`Observation`]s so that the real-time check answered from this edge's own
//! zones and the external DNS / TXT / HTTP checks drive the same machine.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::State;
use super::hostname;
use super::model::{CustomHostname, HostnameStatus, RecordType};

/// The result of one validation check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "check", rename_all = "snake_case", deny_unknown_fields)]
pub enum Observation {
    /// The real-time CNAME check (own zones or DNS).
    Cname { result: CnameCheck },
    /// TXT pre-validation: the value found at `_cf-custom-hostname.<hostname>`, if any.
    Txt { found: Option<String> },
    /// HTTP pre-validation: the body served at
    /// `/.well-known/cf-custom-hostname-challenge/<id>`, if any.
    Http { found: Option<String> },
    /// An operator blocks the hostname.
    Block { reason: String },
    /// An operator lifts a block; the hostname must validate again.
    Unblock,
    /// A check that reached no verdict (SERVFAIL, a timeout, its deadline):
    /// not evidence, so the status stays, but the reason replaces the
    /// hostname's `verification_errors` so the customer sees it.
    Unanswered { reason: String },
}

/// Where the hostname's CNAME chain ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "ends", rename_all = "snake_case", deny_unknown_fields)]
pub enum CnameCheck {
    /// At the provider's CNAME target or at a name inside the provider zone.
    Provider,
    /// Somewhere else: the last name or address of the chain.
    Elsewhere { at: String },
    /// The zone answering for the hostname has no record for it.
    NoRecord,
}

/// A hostname's status, `verification_errors` and whether its CNAME has
/// been seen pointing here, after an observation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub status: HostnameStatus,
    pub verification_errors: Vec<String>,
    pub cname_observed: bool,
}

impl Transition {
    /// Whether applying the transition to `ch` changes it (then it is a write).
    pub fn changes(&self, ch: &CustomHostname) -> bool {
        self.status != ch.status
            || self.verification_errors != ch.verification_errors
            || self.cname_observed != ch.cname_observed
    }
}

/// The activation state machine. Only the CNAME check can move an active
/// hostname: a TXT or HTTP token proves control, not that traffic still
/// arrives here (users complain that "active" proves nothing about DNS).
pub fn transition(ch: &CustomHostname, observation: &Observation) -> Transition {
    let next = status_and_errors(ch, observation);
    // Seen pointing here once the CNAME check activates it; forgotten when
    // it must validate from the start again.
    let cname_observed = match (next.0, observation) {
        (
            HostnameStatus::Active,
            Observation::Cname {
                result: CnameCheck::Provider,
            },
        ) => true,
        (HostnameStatus::Pending | HostnameStatus::Blocked, _) => false,
        _ => ch.cname_observed,
    };
    Transition {
        status: next.0,
        verification_errors: next.1,
        cname_observed,
    }
}

fn status_and_errors(
    ch: &CustomHostname,
    observation: &Observation,
) -> (HostnameStatus, Vec<String>) {
    let keep = || (ch.status, ch.verification_errors.clone());
    let to = |status, errors: Vec<String>| (status, errors);
    let token = ch.ownership_verification.as_ref().map(|v| v.value.as_str());
    use HostnameStatus::*;
    match (ch.status, observation) {
        (PendingDeletion, _) => keep(),
        (_, Observation::Block { reason }) => to(Blocked, vec![reason.clone()]),
        (Blocked, Observation::Unblock) => to(Pending, Vec::new()),
        (Blocked, _) | (_, Observation::Unblock) => keep(),
        (_, Observation::Unanswered { reason }) => to(ch.status, vec![reason.clone()]),
        (_, Observation::Cname { result }) => match (ch.status, result) {
            (_, CnameCheck::Provider) => to(Active, Vec::new()),
            (Active | Moved, other) => to(Moved, vec![cname_error(&ch.hostname, other)]),
            (_, other) => to(Pending, vec![cname_error(&ch.hostname, other)]),
        },
        (Active, Observation::Txt { .. } | Observation::Http { .. }) => keep(),
        (_, Observation::Txt { found }) => match token_matches(token, found) {
            true => to(Active, Vec::new()),
            false => to(
                ch.status,
                vec![format!(
                    "TXT record _cf-custom-hostname.{} {}",
                    ch.hostname,
                    found_text(found)
                )],
            ),
        },
        (_, Observation::Http { found }) => match token_matches(token, found) {
            true => to(Active, Vec::new()),
            false => to(
                ch.status,
                vec![format!(
                    "http://{}/.well-known/cf-custom-hostname-challenge/{} {}",
                    ch.hostname,
                    ch.id,
                    found_text(found)
                )],
            ),
        },
    }
}

fn token_matches(token: Option<&str>, found: &Option<String>) -> bool {
    matches!((token, found), (Some(t), Some(f)) if t == f.trim())
}

fn found_text(found: &Option<String>) -> String {
    match found {
        Some(f) => format!("holds `{f}`, not the ownership_verification token"),
        None => "was not found".into(),
    }
}

fn cname_error(hostname: &str, result: &CnameCheck) -> String {
    match result {
        CnameCheck::Provider => String::new(),
        CnameCheck::Elsewhere { at } => {
            format!("{hostname} resolves to {at}, not to the provider's CNAME target")
        }
        CnameCheck::NoRecord => format!("{hostname} has no DNS record"),
    }
}

/// Follows `hostname`'s CNAME chain through this edge's zones.
pub(super) fn cname_check(
    state: &State,
    hostname: &str,
    provider_zone_id: &str,
) -> Option<CnameCheck> {
    /// Longer chains are treated as loops.
    const MAX_HOPS: usize = 16;
    let provider = state.zone(provider_zone_id)?;
    let target = provider
        .custom_hostname_settings
        .as_ref()
        .map(|s| s.cname_target.as_str());
    let mut name = hostname.to_string();
    for _ in 0..MAX_HOPS {
        if target.is_some_and(|t| t.eq_ignore_ascii_case(&name))
            || hostname::is_within(&name, &provider.zone.name)
        {
            return Some(CnameCheck::Provider);
        }
        let zone = state.zone_of(&name)?;
        let Some(record) = zone.record_for(&name) else {
            return Some(CnameCheck::NoRecord);
        };
        match record.record_type {
            RecordType::A | RecordType::Aaaa => {
                return Some(CnameCheck::Elsewhere {
                    at: record.content.clone(),
                });
            }
            RecordType::Cname => name = record.content.clone(),
        }
    }
    Some(CnameCheck::Elsewhere {
        at: format!("a CNAME chain longer than {MAX_HOPS} hops at {name}"),
    })
}

/// Cloudflare retries validation 75 times over 7 days, starting at 60 s.
pub const VALIDATION_TRIES: u32 = 75;
pub const VALIDATION_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);
pub const FIRST_TRY: Duration = Duration::from_secs(60);

/// When try `n` (1-based) is due, counted from the hostname's creation;
/// `None` once all tries are used. The gaps grow geometrically so that try 1
/// is at [`FIRST_TRY`] and try [`VALIDATION_TRIES`] at [`VALIDATION_WINDOW`].
pub fn validation_try_at(n: u32) -> Option<Duration> {
    if n == 0 || n > VALIDATION_TRIES {
        return None;
    }
    if n == VALIDATION_TRIES {
        return Some(VALIDATION_WINDOW);
    }
    let ratio = growth_ratio();
    let first = FIRST_TRY.as_secs_f64();
    let at = first * (ratio.powi(n as i32) - 1.0) / (ratio - 1.0);
    Some(Duration::from_secs(at.round() as u64))
}

/// Solves `first * (r^N - 1) / (r - 1) = window` for `r` by bisection; the
/// left side grows with `r`, so 64 halvings pin it to f64 precision.
fn growth_ratio() -> f64 {
    let first = FIRST_TRY.as_secs_f64();
    let window = VALIDATION_WINDOW.as_secs_f64();
    let sum = |r: f64| first * (r.powi(VALIDATION_TRIES as i32) - 1.0) / (r - 1.0);
    let (mut lo, mut hi) = (1.000_001, 2.0);
    for _ in 0..64 {
        let mid = (lo + hi) / 2.0;
        if sum(mid) < window {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    (lo + hi) / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::model::{CustomHostnameSsl, OwnershipVerification, VerificationType};

    fn ch(status: HostnameStatus) -> CustomHostname {
        CustomHostname {
            id: "ch1".into(),
            hostname: "shop.example.com".into(),
            custom_origin_server: None,
            custom_origin_sni: None,
            custom_metadata: None,
            ssl: CustomHostnameSsl::default(),
            status,
            verification_errors: vec!["old".into()],
            cname_observed: false,
            admission: Default::default(),
            ownership_verification: Some(OwnershipVerification {
                verification_type: VerificationType::Txt,
                name: "_cf-custom-hostname.shop.example.com".into(),
                value: "tok".into(),
            }),
        }
    }

    #[test]
    fn state_machine() {
        use HostnameStatus::*;
        let provider = Observation::Cname {
            result: CnameCheck::Provider,
        };
        let elsewhere = Observation::Cname {
            result: CnameCheck::Elsewhere {
                at: "192.0.2.1".into(),
            },
        };
        let none = Observation::Cname {
            result: CnameCheck::NoRecord,
        };
        let txt_ok = Observation::Txt {
            found: Some("tok".into()),
        };
        let txt_bad = Observation::Txt {
            found: Some("nope".into()),
        };
        let txt_missing = Observation::Txt { found: None };
        let http_ok = Observation::Http {
            found: Some("tok\n".into()),
        };
        let http_bad = Observation::Http { found: None };
        let block = Observation::Block {
            reason: "abuse".into(),
        };
        let unblock = Observation::Unblock;
        let unanswered = Observation::Unanswered {
            reason: "DNS lookup of shop.example.com failed: SERVFAIL".into(),
        };
        #[rustfmt::skip]
        let table: &[(HostnameStatus, &Observation, HostnameStatus, Option<&str>)] = &[
            (Pending, &provider, Active, None),
            (Pending, &txt_ok, Active, None),
            (Pending, &http_ok, Active, None),
            (Pending, &elsewhere, Pending, Some("resolves to 192.0.2.1")),
            (Pending, &none, Pending, Some("has no DNS record")),
            (Pending, &txt_bad, Pending, Some("holds `nope`")),
            (Pending, &txt_missing, Pending, Some("was not found")),
            (Pending, &http_bad, Pending, Some("cf-custom-hostname-challenge/ch1 was not found")),
            (Pending, &unblock, Pending, Some("old")),
            (Active, &provider, Active, None),
            (Active, &elsewhere, Moved, Some("resolves to 192.0.2.1")),
            (Active, &none, Moved, Some("has no DNS record")),
            (Active, &txt_bad, Active, Some("old")),
            (Active, &http_ok, Active, Some("old")),
            (Moved, &provider, Active, None),
            (Moved, &txt_ok, Active, None),
            (Moved, &elsewhere, Moved, Some("resolves to")),
            (Pending, &block, Blocked, Some("abuse")),
            (Active, &block, Blocked, Some("abuse")),
            (Moved, &block, Blocked, Some("abuse")),
            (Blocked, &provider, Blocked, Some("old")),
            (Blocked, &txt_ok, Blocked, Some("old")),
            (Blocked, &unblock, Pending, None),
            (PendingDeletion, &provider, PendingDeletion, Some("old")),
            (PendingDeletion, &block, PendingDeletion, Some("old")),
            (Pending, &unanswered, Pending, Some("SERVFAIL")),
            (Active, &unanswered, Active, Some("SERVFAIL")),
            (Moved, &unanswered, Moved, Some("SERVFAIL")),
            (Blocked, &unanswered, Blocked, Some("old")),
        ];
        for (from, obs, to, error) in table {
            let t = transition(&ch(*from), obs);
            assert_eq!(t.status, *to, "{from:?} + {obs:?}");
            match error {
                None => assert!(
                    t.verification_errors.is_empty(),
                    "{from:?} + {obs:?}: {t:?}"
                ),
                Some(e) => assert!(
                    t.verification_errors.len() == 1 && t.verification_errors[0].contains(e),
                    "{from:?} + {obs:?}: {t:?}"
                ),
            }
        }
    }

    #[test]
    fn no_token_never_activates() {
        let mut hostname = ch(HostnameStatus::Pending);
        hostname.ownership_verification = None;
        let t = transition(
            &hostname,
            &Observation::Txt {
                found: Some(String::new()),
            },
        );
        assert_eq!(t.status, HostnameStatus::Pending);
    }

    #[test]
    fn back_off_schedule() {
        assert_eq!(validation_try_at(0), None);
        assert_eq!(validation_try_at(1), Some(FIRST_TRY));
        assert_eq!(validation_try_at(VALIDATION_TRIES), Some(VALIDATION_WINDOW));
        assert_eq!(validation_try_at(VALIDATION_TRIES + 1), None);
        let times: Vec<Duration> = (1..=VALIDATION_TRIES)
            .map(|n| validation_try_at(n).unwrap())
            .collect();
        let gaps: Vec<Duration> = std::iter::once(times[0])
            .chain(times.windows(2).map(|w| w[1] - w[0]))
            .collect();
        assert_eq!(gaps.len(), 75);
        for pair in gaps.windows(2) {
            assert!(pair[1] >= pair[0], "gaps must grow: {gaps:?}");
        }
        // The formula's own 75th try lands on the window, so forcing it exact
        // does not distort the last gap.
        let ratio = growth_ratio();
        let last_gap = 60.0 * ratio.powi(74);
        assert!((gaps[74].as_secs_f64() - last_gap).abs() < 2.0, "{gaps:?}");
        assert!(times[1] - times[0] > FIRST_TRY);
    }
}
