//! `cargo xtask bench-proxy`: h2load over TLS + HTTP/2 against the edge running
//! an O2O chain with 10 rules per zone, next to the origin alone and nginx,
//! haproxy, h2o and caddy, all in one run of `../shared/bench/peers.sh`.
//!
//! peers.sh picks the origin port and writes the certificate only when it
//! starts the edge, so the config is written here as a template and
//! `EDGE_CMD` fills in `$BENCH_ORIGIN`, `$BENCH_CERT`, `$BENCH_KEY` and
//! `$EDGE_PORT` with sed before it `exec`s the binary: the edge stays the
//! process-group leader whose CPU and RSS peers.sh measures.
//!
//! Knobs of peers.sh (DURATION, ROUNDS, PEERS, SKIP_INSTALL, ...) pass through
//! the environment unchanged.
//!
//! With `--floor`, peers.sh runs a second time with `proxy_floor` (an example of
//! edge-userspace: the edge's crates without the edge's logic) in the edge's row,
//! named `floor`, its table in `target/bench-proxy/results-floor.md`. peers.sh
//! takes one such row per run, so the floor gets its own run with its own peer
//! rows: compare the floor with the peers of its run, and the edge with the floor
//! through their ratios to the same peer.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::ebpf;
use crate::run::{self, root};

/// peers.sh's port block starts at 18000 (BASE_PORT) and uses up to +446.
const EDGE_PORT: &str = "18500";

pub fn run(floor: bool) -> Result<()> {
    let peers = root().join("../shared/bench/peers.sh");
    if !peers.is_file() {
        bail!(
            "{} is missing: bench-proxy runs the shared peers benchmark from there",
            peers.display()
        );
    }
    ebpf::build()?;
    let mut build = run::cargo()?;
    build.args([
        "build",
        "--release",
        "--package",
        "edge-userspace",
        "--bin",
        "edge",
    ]);
    if floor {
        build.args(["--example", "proxy_floor"]);
    }
    run::status(&mut build)?;
    let edge = root().join("target/release/edge").canonicalize()?;

    let scratch = root().join("target/bench-proxy");
    std::fs::create_dir_all(&scratch)?;
    let scratch = scratch.canonicalize()?;
    let template = scratch.join("edge.json.in");
    std::fs::write(&template, config_template(&scratch.join("state")))
        .with_context(|| format!("writing {}", template.display()))?;

    let edge_cmd = format!(
        concat!(
            "set -e; cfg={scratch}/edge-$EDGE_PORT.json; ",
            "sed -e \"s|@ORIGIN_PORT@|${{BENCH_ORIGIN##*:}}|\" -e \"s|@EDGE_PORT@|$EDGE_PORT|\" ",
            "-e \"s|@CERT@|$BENCH_CERT|\" -e \"s|@KEY@|$BENCH_KEY|\" {template} > \"$cfg\"; ",
            "RUST_LOG=warn exec {edge} serve --workers \"$BENCH_WORKERS\" --config \"$cfg\""
        ),
        scratch = scratch.display(),
        template = template.display(),
        edge = edge.display(),
    );
    let out = std::env::var("OUT_MD")
        .unwrap_or_else(|_| scratch.join("results-peers.md").display().to_string());
    run::status(&mut peers_run(&peers, &edge_cmd, &out))?;
    if floor {
        let floor = root()
            .join("target/release/examples/proxy_floor")
            .canonicalize()?;
        let floor_cmd = format!(
            "exec {} \"127.0.0.1:$EDGE_PORT\" \"$BENCH_ORIGIN\" \"$BENCH_HOST\" \"$BENCH_CERT\" \"$BENCH_KEY\"",
            floor.display()
        );
        let out = scratch.join("results-floor.md").display().to_string();
        // One runtime thread: no two-worker row.
        run::status(
            peers_run(&peers, &floor_cmd, &out)
                .env("EDGE_NAME", "floor")
                .env("EDGE_2W", "0"),
        )?;
    }
    Ok(())
}

/// peers.sh with `edge_cmd` as its edge row, its table written to `out`.
fn peers_run(peers: &Path, edge_cmd: &str, out: &str) -> Command {
    let mut cmd = Command::new("bash");
    cmd.arg(peers)
        .current_dir(root())
        .env("EDGE_CMD", edge_cmd)
        .env(
            "EDGE_PORT",
            std::env::var("EDGE_PORT").unwrap_or_else(|_| EDGE_PORT.into()),
        )
        .env("OUT_MD", out);
    cmd
}

/// The bench's O2O chain: customer zone `example.com` with a proxied CNAME
/// `mystore` to the provider's CNAME target, provider zone `saasprovider.com`
/// with `mystore.example.com` active. Ten rules per zone across the request
/// and response phases; on the bench path (`GET /`) each one is evaluated and
/// none ends the request, so the measured cost is the whole chain. h2load loads the
/// edge from one address (640 requests in flight), so the per-client cap on one origin
/// is raised above that: the bench measures the request path, not a cap that a real
/// client population never meets from a single address.
fn config_template(state_dir: &Path) -> String {
    // The first rule differs: the customer redirects an old path, the
    // provider routes to the bench's origin port.
    let rules = |zone: &str, first: &str| {
        format!(
            r#"{{
            {first},
            "http_request_transform": {{ "rules": [
              {{ "expression": "starts_with(http.request.uri.path, \"/v1/\")", "action": "rewrite",
                 "action_parameters": {{ "uri": {{ "path": {{ "expression": "regex_replace(http.request.uri.path, \"^/v1/\", \"/v2/\")" }} }} }} }},
              {{ "expression": "http.request.uri.path eq \"/{zone}/old\"", "action": "rewrite",
                 "action_parameters": {{ "uri": {{ "path": {{ "value": "/{zone}/new" }} }} }} }}
            ] }},
            "http_request_firewall_custom": {{ "rules": [
              {{ "expression": "starts_with(http.request.uri.path, \"/admin\")", "action": "block" }},
              {{ "expression": "http.user_agent contains \"BadBot\"", "action": "block" }},
              {{ "expression": "http.request.method in {{\"TRACE\" \"TRACK\"}}", "action": "block" }},
              {{ "expression": "ip.src in {{192.0.2.0/24 198.51.100.0/24}}", "action": "block" }},
              {{ "expression": "http.request.uri.path.extension eq \"php\"", "action": "block" }}
            ] }},
            "http_request_late_transform": {{ "rules": [
              {{ "expression": "true", "action": "rewrite",
                 "action_parameters": {{ "headers": {{ "x-{zone}-stage": {{ "operation": "set", "value": "1" }} }} }} }}
            ] }},
            "http_response_headers_transform": {{ "rules": [
              {{ "expression": "true", "action": "rewrite",
                 "action_parameters": {{ "headers": {{ "x-served-by-{zone}": {{ "operation": "set", "value": "1" }} }} }} }}
            ] }}
          }}"#
        )
    };
    let redirect = r#""http_request_dynamic_redirect": { "rules": [
              { "expression": "http.request.uri.path eq \"/old-shop\"", "action": "redirect",
                "action_parameters": { "from_value": { "target_url": { "value": "https://mystore.example.com/shop" }, "status_code": 301 } } }
            ] }"#;
    let route = r#""http_request_origin": { "rules": [
              { "expression": "true", "action": "route", "action_parameters": { "origin": { "port": @ORIGIN_PORT@ } } }
            ] }"#;
    format!(
        r#"{{
  "listen": {{ "https": "127.0.0.1:@EDGE_PORT@" }},
  "state_dir": "{state}",
  "origin": {{ "max_in_flight_per_client": 1024 }},
  "certificates": [
    {{ "hostnames": ["mystore.example.com"], "certificate": "@CERT@", "key": "@KEY@", "tier": "custom_hostname" }}
  ],
  "state": {{
    "accounts": [ {{ "id": "acct-customer", "name": "Customer" }}, {{ "id": "acct-provider", "name": "Provider" }} ],
    "zones": [
      {{
        "zone": {{ "id": "zone-example", "name": "example.com", "account": {{ "id": "acct-customer" }},
                  "rulesets": {customer} }},
        "dns_records": [
          {{ "id": "rec-mystore", "type": "CNAME", "name": "mystore.example.com", "content": "customers.saasprovider.com", "proxied": true }}
        ]
      }},
      {{
        "zone": {{ "id": "zone-saasprovider", "name": "saasprovider.com", "account": {{ "id": "acct-provider" }},
                  "settings": {{ "ssl": "off" }}, "rulesets": {provider} }},
        "dns_records": [
          {{ "id": "rec-customers", "type": "CNAME", "name": "customers.saasprovider.com", "content": "origin.saasprovider.com", "proxied": true }},
          {{ "id": "rec-origin", "type": "A", "name": "origin.saasprovider.com", "content": "127.0.0.1", "proxied": true }}
        ],
        "custom_hostname_settings": {{ "cname_target": "customers.saasprovider.com" }},
        "fallback_origin": {{ "origin": "origin.saasprovider.com", "status": "active" }},
        "custom_hostnames": [ {{ "id": "ch-mystore", "hostname": "mystore.example.com", "status": "active" }} ]
      }}
    ]
  }}
}}
"#,
        state = state_dir.display(),
        customer = rules("customer", redirect),
        provider = rules("provider", route),
    )
}
