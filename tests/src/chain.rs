//! An in-process `edge serve` on loopback, built from a config like an
//! operator's (zones, records, custom hostnames, rulesets), with the echo
//! origin behind it: what the O2O tests drive with real clients.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use edge_userspace::config::Config;
use edge_userspace::metrics::Metrics;
use edge_userspace::serve::{self, Source};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The demo's shape: customer zone `example.com` (account A) with a proxied
/// CNAME `mystore` to the provider's target; provider zone `saasprovider.com`
/// (account B) with custom hostnames `mystore.example.com` and
/// `shop.othercustomer.net`, routing to the echo origin at `echo`.
pub fn o2o_state(echo: SocketAddr) -> Value {
    json!({
        "accounts": [
            {"id": "acct-customer", "name": "Customer"},
            {"id": "acct-provider", "name": "Provider"}
        ],
        "zones": [
            {
                "zone": {"id": "zone-customer", "name": "example.com", "account": {"id": "acct-customer"}},
                "dns_records": [
                    {"id": "r1", "type": "CNAME", "name": "mystore.example.com", "content": "customers.saasprovider.com", "proxied": true}
                ]
            },
            {
                "zone": {
                    "id": "zone-provider", "name": "saasprovider.com", "account": {"id": "acct-provider"},
                    "settings": {"ssl": "off"},
                    "rulesets": {
                        "http_request_origin": {"rules": [
                            {"expression": "true", "action": "route", "action_parameters": {"origin": {"port": echo.port()}}}
                        ]}
                    }
                },
                "dns_records": [
                    {"id": "r2", "type": "CNAME", "name": "customers.saasprovider.com", "content": "origin.saasprovider.com", "proxied": true},
                    {"id": "r3", "type": "A", "name": "origin.saasprovider.com", "content": echo.ip().to_string(), "proxied": true}
                ],
                "custom_hostname_settings": {"cname_target": "customers.saasprovider.com"},
                "fallback_origin": {"origin": "origin.saasprovider.com", "status": "active"},
                "custom_hostnames": [
                    {"id": "ch1", "hostname": "mystore.example.com", "status": "active"},
                    {"id": "ch2", "hostname": "shop.othercustomer.net", "status": "active"}
                ]
            }
        ]
    })
}

/// Appends `rules` to zone `zone_index`'s entrypoint ruleset of `phase`.
pub fn add_rules(state: &mut Value, zone_index: usize, phase: &str, rules: Value) {
    let rulesets = &mut state["zones"][zone_index]["zone"]["rulesets"];
    if rulesets.is_null() {
        *rulesets = json!({});
    }
    let entry = &mut rulesets[phase];
    if entry.is_null() {
        *entry = json!({"rules": []});
    }
    let list = entry["rules"].as_array_mut().expect("rules is an array");
    list.extend(
        rules
            .as_array()
            .expect("rules to add are an array")
            .iter()
            .cloned(),
    );
}

/// A reqwest client builder trusting only `ca_pem`, resolving `hosts` to `https`, speaking
/// HTTP/2 or HTTP/1.1 only.
pub fn client_builder(
    ca_pem: &[u8],
    https: SocketAddr,
    hosts: &[&str],
    http2: bool,
) -> reqwest::ClientBuilder {
    let mut builder = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem).unwrap()])
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20));
    for host in hosts {
        builder = builder.resolve(host, https);
    }
    if http2 {
        builder.http2_prior_knowledge()
    } else {
        builder.http1_only()
    }
}

pub struct RunningEdge {
    pub https: SocketAddr,
    pub http: SocketAddr,
    /// HTTP/3 over QUIC (UDP, same address as `https`), unless switched off.
    pub h3: Option<SocketAddr>,
    pub ca_pem: Vec<u8>,
    pub metrics: Arc<Metrics>,
    /// The control socket.
    pub control: std::path::PathBuf,
    _dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<()>>>,
}

impl RunningEdge {
    /// Starts `edge serve` on ephemeral loopback ports with `state`.
    pub async fn start(state: Value) -> Result<RunningEdge> {
        Self::start_with(state, json!({})).await
    }

    /// Like [`RunningEdge::start`], with the config's `http3` section.
    pub async fn start_with(state: Value, http3: Value) -> Result<RunningEdge> {
        let dir = tempfile::tempdir()?;
        let config = json!({
            "listen": {"https": "127.0.0.1:0", "http": "127.0.0.1:0"},
            "state_dir": dir.path(),
            "http3": http3,
            "state": state,
        });
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
            _ => {
                // The task ended before it was ready: report its error.
                let error = task.await.context("edge task panicked")?.err();
                anyhow::bail!("edge did not start: {error:?}");
            }
        };
        Ok(RunningEdge {
            https: bound.https,
            http: bound.http.context("plain listener bound")?,
            h3: bound.h3,
            ca_pem: std::fs::read(&bound.ca_pem)?,
            metrics: bound.metrics,
            control: bound.control.clone(),
            _dir: dir,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// A reqwest client trusting only the edge's CA, resolving `hosts` to it.
    pub fn client(&self, hosts: &[&str], http2: bool) -> reqwest::Client {
        client_builder(&self.ca_pem, self.https, hosts, http2)
            .build()
            .unwrap()
    }

    /// Drains and waits for the edge to stop.
    pub async fn stop(mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await.context("edge task panicked")?,
            None => Ok(()),
        }
    }
}

impl Drop for RunningEdge {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
