//! Hostname validation beyond this edge: the checks against a real
//! authoritative DNS server and a real HTTP server on loopback, and the
//! verifier task feeding the activation state machine through a sink that
//! applies its changes the way the control plane does.

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use edge_tests::dns::{ChallengeServer, DnsServer, Failure, FlakyResolver};
use edge_userspace::state::activation::transition;
use edge_userspace::state::{
    Change, CnameCheck, CustomHostname, HostnameStatus, Observation, State,
};
use edge_userspace::verify::{
    Checker, Dns, Provider, REFLECTED_BODY, StatusChange, StatusSink, Verifier, VerifyConfig,
    VerifyError,
};
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio::time::timeout;

const TARGET: &str = "customers.saasprovider.com";
const ZONE: &str = "zp";
const ELSEWHERE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);

fn provider() -> Provider {
    Provider {
        zone: "saasprovider.com".into(),
        cname_target: Some(TARGET.into()),
    }
}

/// The provider zone on this edge; the customer zone `example.com` is not.
fn state(hostnames: &[(&str, &str)]) -> State {
    let hostnames: Vec<_> = hostnames
        .iter()
        .map(|(id, hostname)| {
            json!({
                "id": id,
                "hostname": hostname,
                "ownership_verification": {
                    "type": "txt",
                    "name": format!("_cf-custom-hostname.{hostname}"),
                    "value": token(id),
                }
            })
        })
        .collect();
    let state: State = serde_json::from_value(json!({
        "accounts": [{"id": "b", "name": "Provider"}],
        "zones": [{
            "zone": {"id": ZONE, "name": "saasprovider.com", "account": {"id": "b"}},
            "dns_records": [
                {"id": "r1", "type": "A", "name": TARGET, "content": "192.0.2.1", "proxied": true}
            ],
            "custom_hostname_settings": {"cname_target": TARGET},
            "fallback_origin": {"origin": TARGET, "status": "active"},
            "custom_hostnames": hostnames,
        }]
    }))
    .expect("test state parses");
    state.validate().expect("test state is valid");
    state
}

fn token(id: &str) -> String {
    format!("token-{id}")
}

fn hostname(state: &State, id: &str) -> CustomHostname {
    state
        .zone(ZONE)
        .unwrap()
        .custom_hostnames
        .get(id)
        .unwrap()
        .clone()
}

async fn dns_server() -> Result<DnsServer> {
    let dns = DnsServer::start(&["example.com", "saasprovider.com", "other.net"]).await?;
    dns.a(TARGET, Ipv4Addr::LOCALHOST).await?;
    Ok(dns)
}

fn config(dns: &DnsServer) -> VerifyConfig {
    VerifyConfig {
        timeout_ms: 2_000,
        active_recheck_ms: 200,
        error_retry_ms: 200,
        ..VerifyConfig::new(dns.addr)
    }
}

fn config_with_challenge(dns: &DnsServer, challenge: &ChallengeServer) -> VerifyConfig {
    VerifyConfig {
        http_port: challenge.addr.port(),
        http_private_addresses: true,
        ..config(dns)
    }
}

fn resolver(dns: &DnsServer) -> Dns {
    Dns::new(dns.addr, Duration::from_secs(2)).unwrap()
}

#[tokio::test]
async fn cname_direct_and_through_a_chain_reach_the_provider() -> Result<()> {
    let dns = dns_server().await?;
    let resolver = resolver(&dns);
    dns.cname("direct.example.com", TARGET).await?;
    // Through names of other zones, and ending at a name inside the provider
    // zone that is not the CNAME target.
    dns.cname("chain.example.com", "hop1.other.net").await?;
    dns.cname("hop1.other.net", "hop2.example.com").await?;
    dns.cname("hop2.example.com", TARGET).await?;
    dns.cname("inzone.example.com", "hop3.other.net").await?;
    dns.cname("hop3.other.net", "eu.saasprovider.com").await?;
    for name in [
        "direct.example.com",
        "chain.example.com",
        "inzone.example.com",
    ] {
        assert_eq!(
            resolver.cname_check(name, &provider()).await?,
            CnameCheck::Provider,
            "{name}"
        );
    }
    // Names compare case-insensitively, as DNS does.
    assert_eq!(
        resolver
            .cname_check("Direct.EXAMPLE.com", &provider())
            .await?,
        CnameCheck::Provider
    );
    Ok(())
}

#[tokio::test]
async fn cname_elsewhere_fails_with_the_chain_in_the_error() -> Result<()> {
    let dns = dns_server().await?;
    let resolver = resolver(&dns);
    dns.cname("shop.example.com", "mid.other.net").await?;
    dns.cname("mid.other.net", "end.other.net").await?;
    dns.a("end.other.net", ELSEWHERE).await?;
    dns.a("apex-style.example.com", ELSEWHERE).await?;
    dns.cname("dangling.example.com", "gone.other.net").await?;
    dns.cname("loop1.example.com", "loop2.other.net").await?;
    dns.cname("loop2.other.net", "loop1.example.com").await?;
    let cases = [
        (
            "shop.example.com",
            "shop.example.com resolves to mid.other.net → end.other.net (192.0.2.7), not to the provider's CNAME target",
        ),
        (
            "apex-style.example.com",
            "apex-style.example.com resolves to 192.0.2.7, not to the provider's CNAME target",
        ),
        (
            "dangling.example.com",
            "dangling.example.com resolves to gone.other.net, which does not exist, not to the provider's CNAME target",
        ),
        (
            "loop1.example.com",
            "loop1.example.com resolves to a CNAME chain longer than 16 hops",
        ),
    ];
    let state = state(&[("ch1", "shop.example.com")]);
    let mut pending = hostname(&state, "ch1");
    for (name, message) in cases {
        let result = resolver.cname_check(name, &provider()).await?;
        assert!(
            matches!(result, CnameCheck::Elsewhere { .. }),
            "{name}: {result:?}"
        );
        pending.hostname = name.into();
        let next = transition(&pending, &Observation::Cname { result });
        assert_eq!(next.status, HostnameStatus::Pending);
        assert_eq!(next.verification_errors.len(), 1);
        assert!(
            next.verification_errors[0].starts_with(message),
            "{name}: {:?}",
            next.verification_errors
        );
    }
    Ok(())
}

#[tokio::test]
async fn nxdomain_is_no_record() -> Result<()> {
    let dns = dns_server().await?;
    let result = resolver(&dns)
        .cname_check("missing.example.com", &provider())
        .await?;
    assert_eq!(result, CnameCheck::NoRecord);
    let state = state(&[("ch1", "missing.example.com")]);
    let next = transition(&hostname(&state, "ch1"), &Observation::Cname { result });
    assert_eq!(
        next.verification_errors,
        ["missing.example.com has no DNS record"]
    );
    Ok(())
}

#[tokio::test]
async fn own_zones_answer_before_dns() -> Result<()> {
    // The DNS server knows nothing of `own.example.com`; the edge's own
    // customer zone does.
    let dns = dns_server().await?;
    let checker = Checker::new(&config(&dns))?;
    let state = state(&[("own", "own.example.com")]).apply_all([
        serde_json::from_value(json!({"op": "put_account", "account": {"id": "a", "name": "Customer"}}))?,
        serde_json::from_value(json!({"op": "put_zone", "zone": {"id": "zc", "name": "example.com", "account": {"id": "a"}}}))?,
        serde_json::from_value(json!({"op": "put_dns_record", "zone_id": "zc", "record": {
            "id": "r2", "type": "CNAME", "name": "own.example.com", "content": TARGET, "proxied": true
        }}))?,
    ])?;
    assert_eq!(
        checker.cname(&state, ZONE, "own.example.com").await?,
        CnameCheck::Provider
    );
    assert_eq!(
        resolver(&dns)
            .cname_check("own.example.com", &provider())
            .await?,
        CnameCheck::NoRecord
    );
    Ok(())
}

#[tokio::test]
async fn txt_pre_validation() -> Result<()> {
    let dns = dns_server().await?;
    let checker = Checker::new(&config(&dns))?;
    let state = state(&[
        ("ok", "ok.example.com"),
        ("wrong", "wrong.example.com"),
        ("none", "none.example.com"),
        ("big", "big.example.com"),
    ]);
    dns.txt(
        "_cf-custom-hostname.ok.example.com",
        &["unrelated", "token-ok"],
    )
    .await?;
    dns.txt(
        "_cf-custom-hostname.wrong.example.com",
        &["token-someone-else"],
    )
    .await?;
    // More than a UDP answer holds (1232 bytes of EDNS payload): the resolver
    // has to ask again over TCP.
    let fillers: Vec<String> = (0..12)
        .map(|i| format!("{i:02}{}", "f".repeat(200)))
        .collect();
    let mut big: Vec<&str> = fillers.iter().map(String::as_str).collect();
    big.push("token-big");
    dns.txt("_cf-custom-hostname.big.example.com", &big).await?;
    let cases = [
        ("ok", Some("token-ok"), HostnameStatus::Active),
        ("wrong", Some("token-someone-else"), HostnameStatus::Pending),
        ("none", None, HostnameStatus::Pending),
        ("big", Some("token-big"), HostnameStatus::Active),
    ];
    for (id, found, status) in cases {
        let ch = hostname(&state, id);
        let observation = checker.txt(&ch).await?;
        assert_eq!(
            observation,
            Observation::Txt {
                found: found.map(String::from)
            },
            "{id}"
        );
        assert_eq!(transition(&ch, &observation).status, status, "{id}");
    }
    let wrong = transition(
        &hostname(&state, "wrong"),
        &checker.txt(&hostname(&state, "wrong")).await?,
    );
    assert_eq!(
        wrong.verification_errors,
        [
            "TXT record _cf-custom-hostname.wrong.example.com holds `token-someone-else`, not the ownership_verification token"
        ]
    );
    Ok(())
}

#[tokio::test]
async fn http_pre_validation() -> Result<()> {
    let dns = dns_server().await?;
    let challenge = ChallengeServer::start().await?;
    let checker = Checker::new(&config_with_challenge(&dns, &challenge))?;
    let state = state(&[
        ("ok", "ok.example.com"),
        ("wrong", "wrong.example.com"),
        ("page", "page.example.com"),
        ("absent", "absent.example.com"),
        ("noaddress", "noaddress.example.com"),
    ]);
    for name in [
        "ok.example.com",
        "wrong.example.com",
        "page.example.com",
        "absent.example.com",
    ] {
        dns.a(name, Ipv4Addr::LOCALHOST).await?;
    }
    challenge.serve("/.well-known/cf-custom-hostname-challenge/ok", "token-ok\n");
    challenge.serve(
        "/.well-known/cf-custom-hostname-challenge/wrong",
        "token-stale",
    );
    // Whatever page answers instead is shown only in part.
    let page = "p".repeat(1000);
    challenge.serve("/.well-known/cf-custom-hostname-challenge/page", &page);
    let page_start = &page[..REFLECTED_BODY];
    let cases = [
        ("ok", Some("token-ok\n"), HostnameStatus::Active),
        ("wrong", Some("token-stale"), HostnameStatus::Pending),
        ("page", Some(page_start), HostnameStatus::Pending),
        // 404.
        ("absent", None, HostnameStatus::Pending),
        // The name does not resolve: nothing to fetch from.
        ("noaddress", None, HostnameStatus::Pending),
    ];
    for (id, found, status) in cases {
        let ch = hostname(&state, id);
        let observation = checker.http(&ch).await?;
        assert_eq!(
            observation,
            Observation::Http {
                found: found.map(String::from)
            },
            "{id}"
        );
        assert_eq!(transition(&ch, &observation).status, status, "{id}");
    }
    // By default the challenge is never fetched from a private address (here
    // loopback): a customer's DNS must not aim the edge at its own network.
    let public_only = Checker::new(&VerifyConfig {
        http_private_addresses: false,
        ..config_with_challenge(&dns, &challenge)
    })?;
    assert_eq!(
        public_only.http(&hostname(&state, "ok")).await?,
        Observation::Http { found: None }
    );
    let absent = transition(
        &hostname(&state, "absent"),
        &Observation::Http { found: None },
    );
    assert_eq!(
        absent.verification_errors,
        ["http://absent.example.com/.well-known/cf-custom-hostname-challenge/absent was not found"]
    );
    Ok(())
}

#[tokio::test]
async fn a_silent_resolver_is_an_error_not_a_verdict() -> Result<()> {
    // A bound socket that never answers.
    let silent = tokio::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let checker = Checker::new(&VerifyConfig {
        timeout_ms: 300,
        ..VerifyConfig::new(silent.local_addr()?)
    })?;
    let state = state(&[("ch1", "shop.example.com")]);
    let error = checker
        .observe(&state, ZONE, &hostname(&state, "ch1"))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, VerifyError::Dns { name, .. } if name.starts_with("shop.example.com")),
        "{error}"
    );
    Ok(())
}

/// Applies the verifier's changes as the control plane does: one
/// `apply_all`, then the new state on the watch channel.
struct Sink {
    states: watch::Sender<Arc<State>>,
    reports: mpsc::UnboundedSender<StatusChange>,
    refuse_next: Mutex<bool>,
}

impl StatusSink for Sink {
    async fn apply(&self, changes: Vec<StatusChange>) -> Result<()> {
        if std::mem::take(&mut *self.refuse_next.lock().unwrap()) {
            anyhow::bail!("refused for the test");
        }
        let next = self
            .states
            .borrow()
            .apply_all(changes.iter().map(StatusChange::to_change))?;
        self.states.send_replace(Arc::new(next));
        for change in changes {
            self.reports.send(change)?;
        }
        Ok(())
    }
}

struct Running {
    verifier: Verifier,
    states: watch::Sender<Arc<State>>,
    sink: Arc<Sink>,
    reports: mpsc::UnboundedReceiver<StatusChange>,
}

impl Running {
    fn start(config: &VerifyConfig, state: State) -> Result<Running> {
        let (states, receiver) = watch::channel(Arc::new(state));
        let (reports, receiver_reports) = mpsc::unbounded_channel();
        let sink = Arc::new(Sink {
            states: states.clone(),
            reports,
            refuse_next: Mutex::new(false),
        });
        let verifier = Verifier::spawn(config, receiver, sink.clone())?;
        Ok(Running {
            verifier,
            states,
            sink,
            reports: receiver_reports,
        })
    }

    /// The next reported change, within a bound.
    async fn next(&mut self) -> StatusChange {
        timeout(Duration::from_secs(10), self.reports.recv())
            .await
            .expect("a status change within 10 s")
            .expect("the sink is alive")
    }

    /// The next `n` changes, by hostname id.
    async fn next_n(&mut self, n: usize) -> Vec<StatusChange> {
        let mut changes = Vec::new();
        for _ in 0..n {
            changes.push(self.next().await);
        }
        changes.sort_by(|a, b| a.custom_hostname_id.cmp(&b.custom_hostname_id));
        changes
    }

    /// Asserts nothing is reported for `period`.
    async fn quiet_for(&mut self, period: Duration) {
        if let Ok(change) = timeout(period, self.reports.recv()).await {
            panic!("unexpected status change: {change:?}");
        }
    }

    fn status(&self, id: &str) -> HostnameStatus {
        hostname(&self.states.borrow(), id).status
    }
}

#[tokio::test]
async fn verifier_activates_and_detects_moved() -> Result<()> {
    let dns = dns_server().await?;
    let challenge = ChallengeServer::start().await?;
    let config = config_with_challenge(&dns, &challenge);
    dns.cname("live.example.com", TARGET).await?;
    // Pre-validated by TXT while the DNS still points at the old host.
    dns.a("pre.example.com", ELSEWHERE).await?;
    dns.txt("_cf-custom-hostname.pre.example.com", &["token-pre"])
        .await?;
    // Pre-validated over HTTP.
    dns.a("web.example.com", Ipv4Addr::LOCALHOST).await?;
    challenge.serve("/.well-known/cf-custom-hostname-challenge/web", "token-web");
    let mut run = Running::start(
        &config,
        state(&[
            ("live", "live.example.com"),
            ("pre", "pre.example.com"),
            ("web", "web.example.com"),
        ]),
    )?;
    let changes = run.next_n(3).await;
    let seen: Vec<_> = changes
        .iter()
        .map(|c| (c.custom_hostname_id.as_str(), c.from, c.to, &c.observation))
        .collect();
    use HostnameStatus::*;
    assert_eq!(
        seen,
        [
            (
                "live",
                Pending,
                Active,
                &Observation::Cname {
                    result: CnameCheck::Provider
                }
            ),
            (
                "pre",
                Pending,
                Active,
                &Observation::Txt {
                    found: Some("token-pre".into())
                }
            ),
            (
                "web",
                Pending,
                Active,
                &Observation::Http {
                    found: Some("token-web".into())
                }
            ),
        ]
    );
    assert_eq!(run.status("live"), Active);

    // Active hostnames are re-checked every 200 ms; several rounds pass
    // without a change: `pre` and `web` never pointed here, so they have not moved.
    run.quiet_for(Duration::from_secs(1)).await;

    // The customer points `live` away. The control plane refuses the first
    // report (say, its disk is full); the verifier reports it again.
    *run.sink.refuse_next.lock().unwrap() = true;
    dns.a("new-host.other.net", ELSEWHERE).await?;
    dns.cname("live.example.com", "new-host.other.net").await?;
    let moved = run.next().await;
    assert!(
        !*run.sink.refuse_next.lock().unwrap(),
        "the refusal was exercised"
    );
    assert_eq!(
        (moved.custom_hostname_id.as_str(), moved.from, moved.to),
        ("live", Active, Moved)
    );
    assert_eq!(
        moved.verification_errors,
        [
            "live.example.com resolves to new-host.other.net (192.0.2.7), not to the provider's CNAME target"
        ]
    );
    assert_eq!(run.status("live"), Moved);
    // The TXT record left behind does not undo `moved`.
    dns.txt("_cf-custom-hostname.live.example.com", &["token-live"])
        .await?;
    run.verifier.refresh(ZONE, "live").await?;
    run.quiet_for(Duration::from_secs(1)).await;
    assert_eq!(run.status("live"), Moved);

    // It comes back: the next try is a minute away, a refresh checks now.
    dns.cname("live.example.com", TARGET).await?;
    run.verifier.refresh(ZONE, "live").await?;
    let back = run.next().await;
    assert_eq!(
        (back.custom_hostname_id.as_str(), back.from, back.to),
        ("live", Moved, Active)
    );
    assert_eq!(run.status("live"), Active);
    Ok(())
}

#[tokio::test]
async fn refresh_retries_now_and_new_hostnames_are_checked_at_once() -> Result<()> {
    let dns = dns_server().await?;
    dns.a("slow.example.com", ELSEWHERE).await?;
    let mut run = Running::start(&config(&dns), state(&[("slow", "slow.example.com")]))?;
    // The first check runs at once and records why it failed.
    let failed = run.next().await;
    assert_eq!(
        (failed.from, failed.to),
        (HostnameStatus::Pending, HostnameStatus::Pending)
    );
    assert_eq!(
        failed.verification_errors,
        ["slow.example.com resolves to 192.0.2.7, not to the provider's CNAME target"]
    );
    assert_eq!(
        hostname(&run.states.borrow(), "slow").verification_errors,
        failed.verification_errors
    );

    // The customer fixes DNS; the back-off's next try is 60 s away.
    dns.cname("slow.example.com", TARGET).await?;
    run.quiet_for(Duration::from_secs(1)).await;
    assert_eq!(run.status("slow"), HostnameStatus::Pending);
    run.verifier.refresh(ZONE, "slow").await?;
    let active = run.next().await;
    assert_eq!(
        (active.custom_hostname_id.as_str(), active.to),
        ("slow", HostnameStatus::Active)
    );
    assert!(active.verification_errors.is_empty());
    assert_eq!(run.status("slow"), HostnameStatus::Active);

    // Unknown and blocked hostnames cannot be refreshed.
    assert_eq!(
        run.verifier.refresh(ZONE, "nope").await,
        Err(VerifyError::UnknownHostname {
            zone_id: ZONE.into(),
            id: "nope".into()
        })
    );

    // A hostname the control plane adds is checked at once, not after 60 s.
    dns.cname("fresh.example.com", TARGET).await?;
    let next = run
        .states
        .borrow()
        .apply(Change::PutCustomHostname {
            zone_id: ZONE.into(),
            custom_hostname: hostname(&state(&[("fresh", "fresh.example.com")]), "fresh"),
        })
        .unwrap();
    run.states.send_replace(Arc::new(next));
    let fresh = run.next().await;
    assert_eq!(
        (fresh.custom_hostname_id.as_str(), fresh.to),
        ("fresh", HostnameStatus::Active)
    );
    Ok(())
}

#[tokio::test]
async fn refused_changes_are_checked_again() -> Result<()> {
    let dns = dns_server().await?;
    dns.cname("shop.example.com", TARGET).await?;
    let state = state(&[("shop", "shop.example.com")]);
    let (states, receiver) = watch::channel(Arc::new(state));
    let (reports, mut received) = mpsc::unbounded_channel();
    let sink = Arc::new(Sink {
        states: states.clone(),
        reports,
        refuse_next: Mutex::new(true),
    });
    let _verifier = Verifier::spawn(&config(&dns), receiver, sink.clone())?;
    // The first apply is refused; the verifier checks again after
    // `error_retry_ms` and the second apply goes through.
    let change = timeout(Duration::from_secs(10), received.recv())
        .await?
        .unwrap();
    assert_eq!(change.to, HostnameStatus::Active);
    assert!(!*sink.refuse_next.lock().unwrap());
    assert_eq!(
        hostname(&states.borrow(), "shop").status,
        HostnameStatus::Active
    );
    Ok(())
}

#[tokio::test]
async fn bad_config_is_refused() {
    let config = VerifyConfig {
        concurrency: 0,
        ..VerifyConfig::new("127.0.0.1:53".parse().unwrap())
    };
    let (_states, receiver) = watch::channel(Arc::new(State::default()));
    let (reports, _received) = mpsc::unbounded_channel();
    let sink = Arc::new(Sink {
        states: watch::channel(Arc::new(State::default())).0,
        reports,
        refuse_next: Mutex::new(false),
    });
    let error = Verifier::spawn(&config, receiver, sink).err().unwrap();
    assert_eq!(
        error,
        VerifyError::Config("`concurrency` must be at least 1".into())
    );
}

/// Feeds `observation` to hostname `id` as the control plane would.
fn observed(state: &State, id: &str, observation: Observation) -> State {
    state
        .apply(Change::Observe {
            zone_id: ZONE.into(),
            custom_hostname_id: id.into(),
            observation,
        })
        .unwrap()
}

#[tokio::test]
async fn a_silent_dns_stalls_no_other_check_and_servfail_and_timeouts_are_recorded() -> Result<()> {
    let dns = dns_server().await?;
    let resolver = FlakyResolver::start(dns.addr).await?;
    resolver.fail("slow.example.com", Failure::Silent);
    resolver.fail("bad.example.com", Failure::ServFail);
    dns.cname("good.example.com", TARGET).await?;
    let state = state(&[
        ("bad", "bad.example.com"),
        ("good", "good.example.com"),
        ("slow", "slow.example.com"),
    ]);
    // A message from an earlier round, which a SERVFAIL must not leave behind.
    let state = observed(
        &state,
        "bad",
        Observation::Txt {
            found: Some("stale".into()),
        },
    );
    assert!(hostname(&state, "bad").verification_errors[0].contains("stale"));
    let config = VerifyConfig {
        timeout_ms: 2_000,
        active_recheck_ms: 60_000,
        error_retry_ms: 60_000,
        ..VerifyConfig::new(resolver.addr)
    };
    let deadline = config.check_deadline();
    let mut run = Running::start(&config, state)?;
    let mut reports = std::collections::HashMap::new();
    while !reports.contains_key("good") {
        let change = run.next().await;
        reports.insert(change.custom_hostname_id.clone(), change);
    }
    assert_eq!(reports["good"].to, HostnameStatus::Active);
    // While the silent hostname's check runs, a refresh of another one is
    // answered and checked at once: the customer moved it away.
    dns.a("new-host.other.net", ELSEWHERE).await?;
    dns.cname("good.example.com", "new-host.other.net").await?;
    run.verifier.refresh(ZONE, "good").await?;
    loop {
        let change = run.next().await;
        let done = change.custom_hostname_id == "good";
        reports.insert(change.custom_hostname_id.clone(), change);
        if done {
            break;
        }
    }
    assert_eq!(reports["good"].to, HostnameStatus::Moved);
    assert!(
        hostname(&run.states.borrow(), "slow")
            .verification_errors
            .is_empty(),
        "the silent check ({deadline:?} deadline) had not ended: nothing waited for it"
    );

    // Then the silent and the failing checks end, each with its reason.
    while !(reports.contains_key("slow") && reports.contains_key("bad")) {
        let change = run.next().await;
        reports.insert(change.custom_hostname_id.clone(), change);
    }
    for (id, name) in [("slow", "slow.example.com"), ("bad", "bad.example.com")] {
        let report = &reports[id];
        assert_eq!(report.to, HostnameStatus::Pending, "{report:?}");
        assert!(
            matches!(&report.observation, Observation::Unanswered { .. }),
            "{report:?}"
        );
        let errors = &hostname(&run.states.borrow(), id).verification_errors;
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains(name), "{errors:?}");
        assert!(!errors[0].contains("stale"), "{errors:?}");
    }
    eprintln!(
        "slow: {:?}\nbad: {:?}",
        reports["slow"].verification_errors, reports["bad"].verification_errors
    );

    // Once the DNS answers again, the reason goes with the next verdict.
    resolver.heal("bad.example.com");
    dns.cname("bad.example.com", TARGET).await?;
    run.verifier.refresh(ZONE, "bad").await?;
    let healed = run.next().await;
    assert_eq!(
        (healed.custom_hostname_id.as_str(), healed.to),
        ("bad", HostnameStatus::Active)
    );
    assert!(healed.verification_errors.is_empty());
    Ok(())
}

#[tokio::test]
async fn a_cname_seen_pointing_here_is_remembered_across_a_restart() -> Result<()> {
    let dns = dns_server().await?;
    let state = state(&[("seen", "seen.example.com"), ("pre", "pre.example.com")]);
    // Before the restart: `seen` activated by its CNAME, `pre` by its TXT
    // token while its DNS still pointed at the old host.
    let state = observed(
        &state,
        "seen",
        Observation::Cname {
            result: CnameCheck::Provider,
        },
    );
    let state = observed(
        &state,
        "pre",
        Observation::Txt {
            found: Some(token("pre")),
        },
    );
    // The stored state, read back by the next process.
    let restarted: State = serde_json::from_value(serde_json::to_value(&state)?)?;
    let seen = hostname(&restarted, "seen");
    assert_eq!(seen.status, HostnameStatus::Active);
    assert!(seen.cname_observed);
    assert!(!hostname(&restarted, "pre").cname_observed);

    // While the edge was down, both point elsewhere.
    dns.a("seen.example.com", ELSEWHERE).await?;
    dns.a("pre.example.com", ELSEWHERE).await?;
    let mut run = Running::start(&config(&dns), restarted)?;
    let moved = run.next().await;
    assert_eq!(
        (moved.custom_hostname_id.as_str(), moved.from, moved.to),
        ("seen", HostnameStatus::Active, HostnameStatus::Moved)
    );
    // `pre` never pointed here: it has not moved, it has not arrived yet.
    run.quiet_for(Duration::from_secs(1)).await;
    assert_eq!(run.status("pre"), HostnameStatus::Active);
    Ok(())
}
