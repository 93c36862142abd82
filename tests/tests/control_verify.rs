//! Hostname validation beyond this edge, end to end: an in-process `edge
//! serve` with a `verify` section asking the test's own authoritative DNS
//! server, custom hostnames created and refreshed through the real control
//! socket (CNAME, TXT and HTTP pre-validation, PATCH refresh, `moved`, restart),
//! and real TLS clients showing when a hostname carries traffic.
//! The customers' zone `customer.test` lives only in that DNS server.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use edge_tests::control::Control;
use edge_tests::dns::{ChallengeServer, DnsServer};
use edge_tests::proxy::spawn_echo;
use edge_userspace::config::Config;
use edge_userspace::serve::{self, Source};
use http::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep};

const PROVIDER: &str = "saasprovider.com";
const TARGET: &str = "customers.saasprovider.com";
const ELSEWHERE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);
/// Far below the first back-off step (60 s): a hostname that activates
/// within it after a refresh was checked because of the refresh.
const WAIT: Duration = Duration::from_secs(10);

/// The provider zone only, routing every hostname to the echo origin.
fn provider_state(echo: SocketAddr) -> Value {
    json!({
        "accounts": [{"id": "acct-provider", "name": "Provider"}],
        "zones": [{
            "zone": {
                "id": "zone-provider", "name": PROVIDER, "account": {"id": "acct-provider"},
                "settings": {"ssl": "off"},
                "rulesets": {"http_request_origin": {"rules": [
                    {"expression": "true", "action": "route", "action_parameters": {"origin": {"port": echo.port()}}}
                ]}}
            },
            "dns_records": [
                {"id": "r1", "type": "CNAME", "name": TARGET, "content": "origin.saasprovider.com", "proxied": true},
                {"id": "r2", "type": "A", "name": "origin.saasprovider.com", "content": echo.ip().to_string(), "proxied": true}
            ],
            "custom_hostname_settings": {"cname_target": TARGET},
            "fallback_origin": {"origin": "origin.saasprovider.com", "status": "active"}
        }]
    })
}

fn verify_section(dns: &DnsServer) -> Value {
    json!({
        "resolver": dns.addr,
        "timeout_ms": 2000,
        "active_recheck_ms": 200,
        "error_retry_ms": 200,
    })
}

async fn dns_server() -> Result<DnsServer> {
    let dns = DnsServer::start(&["customer.test", PROVIDER]).await?;
    dns.a(TARGET, Ipv4Addr::LOCALHOST).await?;
    Ok(dns)
}

/// `edge serve` on `state_dir`, which outlives it so that a restart finds
/// the stored state.
struct Edge {
    https: SocketAddr,
    http: SocketAddr,
    ca_pem: Vec<u8>,
    control: Control,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<()>>,
}

impl Edge {
    async fn start(state_dir: &Path, state: &Value, verify: Option<Value>) -> Result<Edge> {
        let mut config = json!({
            "listen": {"https": "127.0.0.1:0", "http": "127.0.0.1:0"},
            "state_dir": state_dir,
            "state": state,
        });
        if let Some(verify) = verify {
            config["verify"] = verify;
        }
        let config = Config::parse(&config.to_string())?;
        let (bound_tx, bound_rx) = oneshot::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve::run(
            Source::Inline(Box::new(config)),
            move |bound| {
                let _ = bound_tx.send(bound.clone());
            },
            async {
                let _ = stopped.await;
            },
        ));
        let bound = match tokio::time::timeout(Duration::from_secs(20), bound_rx).await {
            Ok(Ok(bound)) => bound,
            _ => anyhow::bail!("edge did not start: {:?}", task.await?.err()),
        };
        Ok(Edge {
            https: bound.https,
            http: bound.http.context("plain listener bound")?,
            ca_pem: std::fs::read(&bound.ca_pem)?,
            control: Control::new(&bound.control),
            stop,
            task,
        })
    }

    async fn stop(self) -> Result<()> {
        let _ = self.stop.send(());
        self.task.await?
    }

    fn path(id: &str) -> String {
        format!("/zones/{PROVIDER}/custom_hostnames/{id}")
    }

    async fn create(&self, hostname: &str) -> Value {
        self.control
            .ok(
                Method::POST,
                &format!("/zones/{PROVIDER}/custom_hostnames"),
                Some(json!({"hostname": hostname})),
            )
            .await
    }

    async fn get(&self, id: &str) -> Value {
        self.control.ok(Method::GET, &Edge::path(id), None).await
    }

    /// Polls the API until the hostname satisfies `done`, at most [`WAIT`].
    async fn wait_for(&self, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let hostname = self.get(id).await;
            if done(&hostname) {
                return hostname;
            }
            assert!(
                Instant::now() < deadline,
                "{id} not {what} within {WAIT:?}: {hostname}"
            );
            sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_status(&self, id: &str, status: &str) -> Value {
        self.wait_for(id, status, |h| h["status"] == status).await
    }

    /// `GET https://<hostname>/` with a rustls client trusting only the
    /// edge's CA: the status, or the TLS or connection error.
    async fn get_tls(&self, hostname: &str) -> Result<StatusCode, reqwest::Error> {
        let client = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&self.ca_pem).unwrap()])
            .no_proxy()
            .resolve(hostname, self.https)
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let url = format!("https://{hostname}:{}/", self.https.port());
        Ok(client.get(url).send().await?.status())
    }

    /// `GET http://<hostname>/` on the plain listener: status and body.
    async fn get_plain(&self, hostname: &str) -> (StatusCode, String) {
        let client = reqwest::Client::builder()
            .no_proxy()
            .resolve(hostname, self.http)
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let url = format!("http://{hostname}:{}/", self.http.port());
        let response = client.get(url).send().await.unwrap();
        (response.status(), response.text().await.unwrap())
    }
}

fn id(hostname: &Value) -> String {
    hostname["id"].as_str().unwrap().to_owned()
}

fn errors(hostname: &Value) -> Vec<String> {
    serde_json::from_value(hostname["verification_errors"].clone()).unwrap()
}

fn state_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cname_activates_and_serves_then_moves_and_the_status_is_durable() -> Result<()> {
    const HOST: &str = "shop.customer.test";
    let (dns, echo, dir) = (dns_server().await?, spawn_echo().await?, state_dir());
    let state = provider_state(echo);
    dns.cname(HOST, TARGET).await?;
    let edge = Edge::start(dir.path(), &state, Some(verify_section(&dns))).await?;

    let created = edge.create(HOST).await;
    let id = id(&created);
    let active = edge.wait_status(&id, "active").await;
    assert_eq!(errors(&active), Vec::<String>::new());
    assert_eq!(edge.get_tls(HOST).await?, StatusCode::OK);
    let listed = edge
        .control
        .ok(
            Method::GET,
            &format!("/zones/{PROVIDER}/custom_hostnames?hostname={HOST}"),
            None,
        )
        .await;
    assert_eq!(listed[0]["status"], "active", "{listed}");

    // The customer points elsewhere: the next recheck finds it.
    dns.a(HOST, ELSEWHERE).await?;
    let moved = edge.wait_status(&id, "moved").await;
    assert_eq!(
        errors(&moved),
        [format!(
            "{HOST} resolves to {ELSEWHERE}, not to the provider's CNAME target"
        )]
    );
    assert!(
        edge.get_tls(HOST).await.is_err(),
        "a moved hostname has no certificate"
    );
    let (status, body) = edge.get_plain(HOST).await;
    assert_eq!(status.as_u16(), 530, "{body}");
    assert!(body.contains("1016"), "{body}");
    edge.stop().await?;

    // Without a verify section nothing can re-derive the status: what the
    // restarted edge shows is what was stored.
    let edge = Edge::start(dir.path(), &state, None).await?;
    assert_eq!(edge.get(&id).await, moved);
    assert!(edge.get_tls(HOST).await.is_err());
    // Behaviour as without validation: a refresh has no verifier to ask.
    dns.cname(HOST, TARGET).await?;
    let (status, envelope) = edge
        .control
        .send(Method::PATCH, &Edge::path(&id), Vec::new())
        .await;
    assert_eq!(status, StatusCode::OK, "{envelope}");
    sleep(Duration::from_millis(500)).await;
    assert_eq!(edge.get(&id).await["status"], "moved");
    edge.stop().await?;

    // With it again, the DNS pointing back here activates it.
    let edge = Edge::start(dir.path(), &state, Some(verify_section(&dns))).await?;
    edge.wait_status(&id, "active").await;
    assert_eq!(edge.get_tls(HOST).await?, StatusCode::OK);
    edge.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txt_pre_validation_and_patch_refresh_activate_at_once() -> Result<()> {
    const TXT_HOST: &str = "txt.customer.test";
    const LATE_HOST: &str = "late.customer.test";
    let (dns, echo, dir) = (dns_server().await?, spawn_echo().await?, state_dir());
    let state = provider_state(echo);
    let edge = Edge::start(dir.path(), &state, Some(verify_section(&dns))).await?;

    // Neither has DNS yet: the first check (at once) says what is missing.
    let txt = edge.create(TXT_HOST).await;
    let late = edge.create(LATE_HOST).await;
    let (txt_id, late_id) = (id(&txt), id(&late));
    for (id, host) in [(&txt_id, TXT_HOST), (&late_id, LATE_HOST)] {
        let checked = edge
            .wait_for(id, "checked", |h| !errors(h).is_empty())
            .await;
        assert_eq!(checked["status"], "pending");
        assert_eq!(errors(&checked), [format!("{host} has no DNS record")]);
        // Not served while pending: no certificate is chosen for it.
        assert!(edge.get_tls(host).await.is_err(), "{checked}");
    }

    // TXT pre-validation with the token the API returned, then an empty
    // PATCH (Cloudflare's refresh): active although DNS does not point here.
    let token = txt["ownership_verification"]["value"].as_str().unwrap();
    assert_eq!(
        txt["ownership_verification"]["name"],
        format!("_cf-custom-hostname.{TXT_HOST}")
    );
    dns.txt(&format!("_cf-custom-hostname.{TXT_HOST}"), &[token])
        .await?;
    let (status, envelope) = edge
        .control
        .send(Method::PATCH, &Edge::path(&txt_id), Vec::new())
        .await;
    assert_eq!(status, StatusCode::OK, "{envelope}");
    edge.wait_status(&txt_id, "active").await;
    assert_eq!(edge.get_tls(TXT_HOST).await?, StatusCode::OK);

    // The CNAME appears; the back-off alone would wait a minute...
    dns.cname(LATE_HOST, TARGET).await?;
    sleep(Duration::from_millis(500)).await;
    assert_eq!(edge.get(&late_id).await["status"], "pending");
    // ...a PATCH of its ssl settings checks it now.
    edge.control
        .ok(
            Method::PATCH,
            &Edge::path(&late_id),
            Some(json!({"ssl": {"settings": {"min_tls_version": "1.2"}}})),
        )
        .await;
    let active = edge.wait_status(&late_id, "active").await;
    assert_eq!(active["ssl"]["settings"]["min_tls_version"], "1.2");
    assert_eq!(errors(&active), Vec::<String>::new());
    assert_eq!(edge.get_tls(LATE_HOST).await?, StatusCode::OK);

    // Still active by TXT although its DNS never pointed here: it has not
    // moved, it has not arrived yet.
    sleep(Duration::from_millis(500)).await;
    assert_eq!(edge.get(&txt_id).await["status"], "active");
    edge.stop().await?;

    let edge = Edge::start(dir.path(), &state, None).await?;
    for (id, host) in [(&txt_id, TXT_HOST), (&late_id, LATE_HOST)] {
        assert_eq!(edge.get(id).await["status"], "active", "{host}");
        assert_eq!(edge.get_tls(host).await?, StatusCode::OK, "{host}");
    }
    edge.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_pre_validation_activates_on_refresh() -> Result<()> {
    const HOST: &str = "http.customer.test";
    let (dns, echo, dir) = (dns_server().await?, spawn_echo().await?, state_dir());
    let challenge = ChallengeServer::start().await?;
    // The customer's site, on loopback (allowed for this test only).
    dns.a(HOST, Ipv4Addr::LOCALHOST).await?;
    let mut verify = verify_section(&dns);
    verify["http_port"] = json!(challenge.addr.port());
    verify["http_private_addresses"] = json!(true);
    let edge = Edge::start(dir.path(), &provider_state(echo), Some(verify)).await?;

    let created = edge.create(HOST).await;
    let id = id(&created);
    let checked = edge
        .wait_for(&id, "checked", |h| !errors(h).is_empty())
        .await;
    assert_eq!(checked["status"], "pending", "{checked}");
    let http = &created["ownership_verification_http"];
    let url = format!("http://{HOST}/.well-known/cf-custom-hostname-challenge/{id}");
    assert_eq!(http["http_url"], url.as_str());
    let body = http["http_body"].as_str().unwrap();
    assert_eq!(body, created["ownership_verification"]["value"]);

    challenge.serve(url.trim_start_matches(&format!("http://{HOST}")), body);
    let (status, envelope) = edge
        .control
        .send(Method::PATCH, &Edge::path(&id), Vec::new())
        .await;
    assert_eq!(status, StatusCode::OK, "{envelope}");
    let active = edge.wait_status(&id, "active").await;
    assert_eq!(errors(&active), Vec::<String>::new());
    assert_eq!(edge.get_tls(HOST).await?, StatusCode::OK);
    edge.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_hostname_is_validated_too() -> Result<()> {
    const HOST: &str = "imported.customer.test";
    let (dns, echo, dir) = (dns_server().await?, spawn_echo().await?, state_dir());
    dns.cname(HOST, TARGET).await?;
    let edge = Edge::start(
        dir.path(),
        &provider_state(echo),
        Some(verify_section(&dns)),
    )
    .await?;
    let mut state = edge.control.ok(Method::GET, "/state", None).await;
    state["zones"][0]["custom_hostnames"] = json!([
        {"id": "ch-imported", "hostname": HOST, "status": "pending"}
    ]);
    edge.control.ok(Method::PUT, "/state", Some(state)).await;
    edge.wait_status("ch-imported", "active").await;
    assert_eq!(edge.get_tls(HOST).await?, StatusCode::OK);
    edge.stop().await
}

#[tokio::test]
async fn a_bad_verify_section_is_refused_at_load() {
    let echo: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let config = |verify: Value| {
        json!({
            "listen": {"https": "127.0.0.1:0"},
            "state_dir": PathBuf::from("unused"),
            "state": provider_state(echo),
            "verify": verify,
        })
        .to_string()
    };
    for (verify, needle) in [
        (json!({"resolver": "127.0.0.1:0"}), "`resolver`"),
        (json!({"resolver": "0.0.0.0:53"}), "`resolver`"),
        (
            json!({"resolver": "127.0.0.1:53", "concurrency": 0}),
            "`concurrency`",
        ),
        (
            json!({"resolver": "127.0.0.1:53", "resolvr": 1}),
            "unknown field `resolvr`",
        ),
    ] {
        let error = format!("{:#}", Config::parse(&config(verify.clone())).unwrap_err());
        assert!(error.contains(needle), "{verify}: {error}");
    }
    Config::parse(&config(json!({"resolver": "127.0.0.1:53"}))).unwrap();
}
