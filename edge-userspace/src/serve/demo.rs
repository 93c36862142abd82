//! `edge demo`: the embedded default config, and what to try against it.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::config::{Config, DEMO};
use crate::rules::model::{Action, Phase};
use crate::serve::Bound;
use crate::state::Change;

/// The embedded config with the command line's addresses and directory.
///
/// The provider zone routes to the echo origin's port through an origin rule
/// (DNS records carry no ports), so moving the echo origin moves that rule too.
pub fn config(
    https: Option<SocketAddr>,
    http: Option<SocketAddr>,
    echo: Option<SocketAddr>,
    dir: Option<PathBuf>,
) -> Result<Config> {
    let mut config = Config::parse(DEMO).context("the embedded demo config")?;
    config.listen.https = https.unwrap_or(config.listen.https);
    config.listen.http = http.or(config.listen.http);
    config.state_dir = dir.unwrap_or(config.state_dir);
    if let Some(echo) = echo {
        config.echo_origin = Some(echo);
        let changes: Vec<Change> = config
            .state
            .zones()
            .iter()
            .filter_map(|zone| {
                let phase = Phase::HttpRequestOrigin;
                let mut ruleset = zone.zone.rulesets.get(&phase)?.clone();
                let origins = ruleset
                    .rules
                    .iter_mut()
                    .filter(|rule| rule.action == Action::Route)
                    .filter_map(|rule| rule.action_parameters.as_mut()?.origin.as_mut());
                for origin in origins {
                    origin.port = Some(echo.port());
                }
                Some(Change::PutRuleset {
                    zone_id: zone.zone.id.clone(),
                    phase,
                    ruleset: Some(ruleset),
                })
            })
            .collect();
        config.state = config
            .state
            .apply_all(changes)
            .context("pointing the demo's route rules at the echo origin")?;
    }
    Ok(config)
}

/// The commands printed once the demo listens, so that a first-time user sees
/// O2O (and its absence) arrive at the origin within a minute.
pub fn instructions(bound: &Bound) -> String {
    let port = bound.https.port();
    let ip = bound.https.ip();
    let ca = bound.ca_pem.display();
    let curl = |host: &str, path: &str| {
        format!("curl --cacert {ca} --resolve {host}:{port}:{ip} https://{host}:{port}{path}")
    };
    let mut text = format!(
        "edge demo is listening on https://{}{}\n\n",
        bound.https,
        bound
            .http
            .map(|a| format!(" and http://{a}"))
            .unwrap_or_default()
    );
    text += "O2O: example.com's rules run, then saasprovider.com's; the origin sees cf-connecting-o2o: 1\n";
    text += &format!("  {}\n", curl("mystore.example.com", "/hello"));
    text += "Not O2O (no customer zone): only the provider's rules; no cf-connecting-o2o\n";
    text += &format!("  {}\n", curl("shop.othercustomer.net", "/hello"));
    text += "The customer zone's firewall rule blocks /admin (403) before the provider sees it\n";
    text += &format!("  {}\n", curl("mystore.example.com", "/admin"));
    if let Some(h3) = bound.h3 {
        // No runnable line: Debian's curl is built without HTTP/3.
        text += &format!(
            "HTTP/3 listens on udp/{h3} and TCP responses advertise it (Alt-Svc); Debian's curl has no \
             HTTP/3, a curl built with it can add --http3-only to the lines above\n"
        );
    }
    if let Some(http) = bound.http {
        text += "An unknown hostname gets error 1001 (as JSON when asked for)\n";
        text += &format!(
            "  curl -H 'accept: application/json' -H 'host: unknown.example.org' http://{http}/\n"
        );
    }
    text += "Change zones, hostnames and rules while it runs (the control socket; see README)\n";
    text += &format!(
        "  edge ctl --socket {} hostnames list saasprovider.com\n",
        bound.control.display()
    );
    text
}
