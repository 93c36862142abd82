//! `edge ctl`: every control-socket endpoint as a subcommand, printing
//! readable tables (or the API's `result` with `--json`).

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use http::Method;
use serde_json::{Map, Value, json};

use super::client::Client;

#[derive(Args)]
pub struct Ctl {
    /// The running edge's control socket.
    #[arg(long, global = true, default_value = "./edge-demo/control.sock")]
    socket: PathBuf,
    /// Print the API's `result` as JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(Subcommand)]
enum CtlCommand {
    /// Zones (`/zones`); ZONE is an id or a name everywhere.
    #[command(subcommand)]
    Zones(ZonesCommand),
    /// DNS records of a zone.
    #[command(subcommand)]
    Dns(DnsCommand),
    /// Custom hostnames of a SaaS provider zone.
    #[command(subcommand)]
    Hostnames(HostnamesCommand),
    /// The fallback origin of a SaaS provider zone.
    #[command(subcommand)]
    Fallback(FallbackCommand),
    /// A zone's entrypoint ruleset per phase.
    #[command(subcommand)]
    Rulesets(RulesetsCommand),
    /// What the edge would do with a request: chain, every phase and rule.
    Trace {
        account: String,
        url: String,
        #[arg(long, short = 'X', default_value = "GET")]
        method: String,
        /// `name: value`, repeatable.
        #[arg(long = "header", short = 'H')]
        headers: Vec<String>,
    },
    /// The whole state as one JSON document (stdout, or --output).
    Export {
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Replaces the whole state with a document from `export` (`-`: stdin);
    /// validated whole, nothing changes if any part is refused.
    Import {
        file: PathBuf,
        /// Confirms an import that keeps none of the current accounts and
        /// zones (it deletes them all); refused without it.
        #[arg(long)]
        replace_all: bool,
    },
    /// The XDP classifier (`/xdp`): its status unless told otherwise.
    Xdp {
        #[command(subcommand)]
        command: Option<XdpCommand>,
    },
    /// The edge's metrics (`/metrics`): the Prometheus text format, or with
    /// `--json` one object per series.
    Metrics,
}

#[derive(Subcommand)]
enum XdpCommand {
    /// Attachment, map sizes, counters per chain.
    Status,
    /// The SNI hash -> chain entries as the kernel holds them.
    Routes,
    /// Loads the program, fills its maps and attaches it to INTERFACE.
    Attach {
        interface: String,
        /// Only this mode [default: native, falling back to generic].
        #[arg(long, value_parser = ["native", "generic"])]
        mode: Option<String>,
        /// The unknown-SNI policy to load it with.
        #[arg(long, value_parser = ["pass", "drop"])]
        unknown_sni: Option<String>,
    },
    /// Detaches and unloads the program (its counters go with it).
    Detach,
    /// What XDP does with an SNI that has no route: `pass` (the proxy
    /// decides) or `drop`.
    Policy {
        #[arg(value_parser = ["pass", "drop"])]
        unknown_sni: String,
    },
}

#[derive(Subcommand)]
enum ZonesCommand {
    List {
        #[arg(long)]
        name: Option<String>,
    },
    Get {
        zone: String,
    },
    /// An unknown account is created with the zone.
    Create {
        name: String,
        #[arg(long)]
        account: String,
    },
    /// Deletes the zone with its records, hostnames and rulesets.
    Delete {
        zone: String,
    },
}

#[derive(Subcommand)]
enum DnsCommand {
    List {
        zone: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long = "type")]
        record_type: Option<String>,
    },
    Get {
        zone: String,
        id: String,
    },
    Create {
        zone: String,
        /// A, AAAA or CNAME.
        #[arg(long = "type")]
        record_type: String,
        /// Full name, relative name, or `@` for the apex.
        #[arg(long)]
        name: String,
        #[arg(long)]
        content: String,
        /// Orange cloud: the zone's settings and rules apply.
        #[arg(long)]
        proxied: bool,
        #[arg(long)]
        ttl: Option<u32>,
    },
    Patch {
        zone: String,
        id: String,
        #[arg(long = "type")]
        record_type: Option<String>,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        content: Option<String>,
        #[arg(long)]
        proxied: Option<bool>,
        #[arg(long)]
        ttl: Option<u32>,
    },
    Delete {
        zone: String,
        id: String,
    },
}

#[derive(Subcommand)]
enum HostnamesCommand {
    List {
        zone: String,
        #[arg(long)]
        hostname: Option<String>,
    },
    Get {
        zone: String,
        id: String,
    },
    Create {
        zone: String,
        hostname: String,
        #[command(flatten)]
        fields: HostnameFields,
    },
    Patch {
        zone: String,
        id: String,
        #[command(flatten)]
        fields: HostnameFields,
    },
    Delete {
        zone: String,
        id: String,
    },
    /// Stops the hostname carrying traffic until `unblock`.
    Block {
        zone: String,
        id: String,
    },
    /// Lifts a block; the hostname validates again (`pending`, or `active` at once
    /// when this edge holds its DNS and it points here).
    Unblock {
        zone: String,
        id: String,
    },
    /// Validate the hostname again now instead of when its back-off says
    /// (an empty PATCH, as with Cloudflare).
    Refresh {
        zone: String,
        id: String,
    },
}

#[derive(Args)]
struct HostnameFields {
    /// A proxied record of the provider zone.
    #[arg(long)]
    origin_server: Option<String>,
    /// SNI towards the origin server (`:request_host_header:` for the request's host).
    #[arg(long)]
    origin_sni: Option<String>,
    /// A JSON object (at most 4 KB), read by rules as `cf.hostname.metadata`.
    #[arg(long)]
    metadata: Option<String>,
    /// 1.0, 1.1, 1.2 or 1.3.
    #[arg(long)]
    min_tls: Option<String>,
}

impl HostnameFields {
    fn into_json(self, mut body: Map<String, Value>) -> Result<Value> {
        if let Some(server) = self.origin_server {
            body.insert("custom_origin_server".into(), json!(server));
        }
        if let Some(sni) = self.origin_sni {
            body.insert("custom_origin_sni".into(), json!(sni));
        }
        if let Some(metadata) = self.metadata {
            let metadata: Value =
                serde_json::from_str(&metadata).context("--metadata is not JSON")?;
            body.insert("custom_metadata".into(), metadata);
        }
        if let Some(version) = self.min_tls {
            body.insert(
                "ssl".into(),
                json!({"settings": {"min_tls_version": version}}),
            );
        }
        Ok(Value::Object(body))
    }
}

#[derive(Subcommand)]
enum FallbackCommand {
    Get {
        zone: String,
    },
    /// ORIGIN is a proxied record of the zone.
    Set {
        zone: String,
        origin: String,
    },
    Delete {
        zone: String,
    },
}

#[derive(Subcommand)]
enum RulesetsCommand {
    Get {
        zone: String,
        phase: String,
    },
    /// Replaces the phase's ruleset with FILE (`{"rules": [...]}`; `-`: stdin).
    Put {
        zone: String,
        phase: String,
        file: PathBuf,
    },
}

pub fn run(ctl: Ctl) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run_async(ctl))
}

async fn run_async(ctl: Ctl) -> Result<()> {
    let client = Client::new(&ctl.socket);
    let (method, path, body, show): (Method, String, Option<Value>, Show) = match ctl.command {
        CtlCommand::Zones(command) => match command {
            ZonesCommand::List { name } => (
                Method::GET,
                with_query("/zones", &[("name", name)]),
                None,
                Show::Zones,
            ),
            ZonesCommand::Get { zone } => {
                (Method::GET, format!("/zones/{zone}"), None, Show::Zones)
            }
            ZonesCommand::Create { name, account } => (
                Method::POST,
                "/zones".into(),
                Some(json!({"name": name, "account": {"id": account}})),
                Show::Zones,
            ),
            ZonesCommand::Delete { zone } => (
                Method::DELETE,
                format!("/zones/{zone}"),
                None,
                Show::Deleted,
            ),
        },
        CtlCommand::Dns(command) => match command {
            DnsCommand::List {
                zone,
                name,
                record_type,
            } => (
                Method::GET,
                with_query(
                    &format!("/zones/{zone}/dns_records"),
                    &[("name", name), ("type", record_type)],
                ),
                None,
                Show::Records,
            ),
            DnsCommand::Get { zone, id } => (
                Method::GET,
                format!("/zones/{zone}/dns_records/{id}"),
                None,
                Show::Records,
            ),
            DnsCommand::Create {
                zone,
                record_type,
                name,
                content,
                proxied,
                ttl,
            } => {
                let mut body = json!({"type": record_type, "name": name, "content": content, "proxied": proxied});
                if let Some(ttl) = ttl {
                    body["ttl"] = json!(ttl);
                }
                (
                    Method::POST,
                    format!("/zones/{zone}/dns_records"),
                    Some(body),
                    Show::Records,
                )
            }
            DnsCommand::Patch {
                zone,
                id,
                record_type,
                name,
                content,
                proxied,
                ttl,
            } => {
                let mut body = Map::new();
                let fields = [
                    ("type", record_type.map(Value::from)),
                    ("name", name.map(Value::from)),
                    ("content", content.map(Value::from)),
                    ("proxied", proxied.map(Value::from)),
                    ("ttl", ttl.map(Value::from)),
                ];
                for (field, value) in fields {
                    if let Some(value) = value {
                        body.insert(field.into(), value);
                    }
                }
                (
                    Method::PATCH,
                    format!("/zones/{zone}/dns_records/{id}"),
                    Some(Value::Object(body)),
                    Show::Records,
                )
            }
            DnsCommand::Delete { zone, id } => (
                Method::DELETE,
                format!("/zones/{zone}/dns_records/{id}"),
                None,
                Show::Deleted,
            ),
        },
        CtlCommand::Hostnames(command) => match command {
            HostnamesCommand::List { zone, hostname } => (
                Method::GET,
                with_query(
                    &format!("/zones/{zone}/custom_hostnames"),
                    &[("hostname", hostname)],
                ),
                None,
                Show::Hostnames,
            ),
            HostnamesCommand::Get { zone, id } => (
                Method::GET,
                format!("/zones/{zone}/custom_hostnames/{id}"),
                None,
                Show::Hostname,
            ),
            HostnamesCommand::Create {
                zone,
                hostname,
                fields,
            } => {
                let mut body = Map::new();
                body.insert("hostname".into(), json!(hostname));
                (
                    Method::POST,
                    format!("/zones/{zone}/custom_hostnames"),
                    Some(fields.into_json(body)?),
                    Show::Hostname,
                )
            }
            HostnamesCommand::Patch { zone, id, fields } => (
                Method::PATCH,
                format!("/zones/{zone}/custom_hostnames/{id}"),
                Some(fields.into_json(Map::new())?),
                Show::Hostname,
            ),
            HostnamesCommand::Delete { zone, id } => (
                Method::DELETE,
                format!("/zones/{zone}/custom_hostnames/{id}"),
                None,
                Show::Deleted,
            ),
            HostnamesCommand::Block { zone, id } => (
                Method::PATCH,
                format!("/zones/{zone}/custom_hostnames/{id}"),
                Some(json!({"status": "blocked"})),
                Show::Hostname,
            ),
            HostnamesCommand::Unblock { zone, id } => (
                Method::PATCH,
                format!("/zones/{zone}/custom_hostnames/{id}"),
                Some(json!({"status": "pending"})),
                Show::Hostname,
            ),
            HostnamesCommand::Refresh { zone, id } => (
                Method::PATCH,
                format!("/zones/{zone}/custom_hostnames/{id}"),
                None,
                Show::Hostname,
            ),
        },
        CtlCommand::Fallback(command) => {
            let (method, zone, body) = match command {
                FallbackCommand::Get { zone } => (Method::GET, zone, None),
                FallbackCommand::Set { zone, origin } => {
                    (Method::PUT, zone, Some(json!({"origin": origin})))
                }
                FallbackCommand::Delete { zone } => (Method::DELETE, zone, None),
            };
            (
                method,
                format!("/zones/{zone}/custom_hostnames/fallback_origin"),
                body,
                Show::Fallback,
            )
        }
        CtlCommand::Rulesets(command) => match command {
            RulesetsCommand::Get { zone, phase } => (
                Method::GET,
                format!("/zones/{zone}/rulesets/phases/{phase}/entrypoint"),
                None,
                Show::Ruleset,
            ),
            RulesetsCommand::Put { zone, phase, file } => (
                Method::PUT,
                format!("/zones/{zone}/rulesets/phases/{phase}/entrypoint"),
                Some(read_json(&file)?),
                Show::Ruleset,
            ),
        },
        CtlCommand::Trace {
            account,
            url,
            method,
            headers,
        } => {
            let mut map = Map::new();
            for header in headers {
                let (name, value) = header
                    .split_once(':')
                    .with_context(|| format!("-H `{header}`: expected `name: value`"))?;
                map.insert(name.trim().to_owned(), json!(value.trim()));
            }
            (
                Method::POST,
                format!("/accounts/{account}/request-tracer/trace"),
                Some(json!({"url": url, "method": method, "headers": map})),
                Show::Trace,
            )
        }
        CtlCommand::Export { output } => {
            let state = client.result(Method::GET, "/state", None).await?;
            let text = serde_json::to_string_pretty(&state)? + "\n";
            return match output {
                Some(path) => std::fs::write(&path, text)
                    .with_context(|| format!("writing {}", path.display())),
                None => {
                    print!("{text}");
                    Ok(())
                }
            };
        }
        CtlCommand::Import { file, replace_all } => (
            Method::PUT,
            if replace_all {
                format!("/state?{}=true", super::api::REPLACE_ALL)
            } else {
                "/state".into()
            },
            Some(read_json(&file)?),
            Show::Imported,
        ),
        CtlCommand::Xdp { command } => {
            let put = |body| (Method::PUT, "/xdp".to_owned(), Some(body), Show::Xdp);
            match command.unwrap_or(XdpCommand::Status) {
                XdpCommand::Status => (Method::GET, "/xdp".into(), None, Show::Xdp),
                XdpCommand::Routes => (Method::GET, "/xdp/routes".into(), None, Show::XdpRoutes),
                XdpCommand::Attach {
                    interface,
                    mode,
                    unknown_sni,
                } => {
                    let mut body = json!({"interface": interface, "mode": mode});
                    if let Some(policy) = unknown_sni {
                        body["unknown_sni"] = json!(policy);
                    }
                    put(body)
                }
                XdpCommand::Detach => put(json!({"attached": false})),
                XdpCommand::Policy { unknown_sni } => put(json!({"unknown_sni": unknown_sni})),
            }
        }
        CtlCommand::Metrics => {
            let answer = client.call(Method::GET, "/metrics", None).await?;
            if !answer.status.is_success() {
                answer.result()?;
            }
            let text = String::from_utf8_lossy(&answer.body);
            if ctl.json {
                println!("{}", serde_json::to_string_pretty(&metrics_json(&text)?)?);
            } else {
                print!("{text}");
            }
            return Ok(());
        }
    };
    let result = client.result(method, &path, body.as_ref()).await?;
    if ctl.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        print!("{}", show.render(&result));
    }
    Ok(())
}

/// `/metrics` as JSON: `{metric, labels, value}` per series, a histogram's
/// value being its cumulative buckets. Values JSON numbers cannot hold are
/// strings as in the text format (`"+Inf"` for the last bucket's `le`).
fn metrics_json(text: &str) -> Result<Value> {
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|line| Ok(line.to_owned())))
        .context("/metrics is not in the Prometheus text format")?;
    let number = |v: f64| match v {
        _ if v.is_finite() => json!(v),
        f64::INFINITY => json!("+Inf"),
        f64::NEG_INFINITY => json!("-Inf"),
        _ => json!("NaN"),
    };
    let series = scrape.samples.iter().map(|sample| {
        use prometheus_parse::Value as V;
        let value = match &sample.value {
            V::Counter(v) | V::Gauge(v) | V::Untyped(v) => number(*v),
            V::Histogram(buckets) => buckets
                .iter()
                .map(|b| json!({"le": number(b.less_than), "count": b.count}))
                .collect(),
            V::Summary(quantiles) => quantiles
                .iter()
                .map(|q| json!({"quantile": q.quantile, "value": number(q.count)}))
                .collect(),
        };
        let labels: Map<String, Value> = sample
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        json!({"metric": sample.metric, "labels": labels, "value": value})
    });
    Ok(Value::Array(series.collect()))
}

fn with_query(path: &str, pairs: &[(&str, Option<String>)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        if let Some(value) = value {
            query.append_pair(name, value);
        }
    }
    let query = query.finish();
    if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{query}")
    }
}

fn read_json(file: &PathBuf) -> Result<Value> {
    let mut text = String::new();
    if file.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut text)?;
    } else {
        text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    }
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))
}

/// How a result is printed without `--json`.
enum Show {
    Zones,
    Records,
    Hostnames,
    Hostname,
    Fallback,
    Ruleset,
    Trace,
    Deleted,
    Imported,
    Xdp,
    XdpRoutes,
}

impl Show {
    fn render(&self, result: &Value) -> String {
        let items = |result: &Value| match result {
            Value::Array(items) => items.clone(),
            other => vec![other.clone()],
        };
        match self {
            Show::Zones => table(
                &["ID", "NAME", "ACCOUNT"],
                items(result)
                    .iter()
                    .map(|z| vec![text(&z["id"]), text(&z["name"]), text(&z["account"]["id"])])
                    .collect(),
            ),
            Show::Records => table(
                &["ID", "TYPE", "NAME", "CONTENT", "PROXIED", "TTL"],
                items(result)
                    .iter()
                    .map(|r| {
                        vec![
                            text(&r["id"]),
                            text(&r["type"]),
                            text(&r["name"]),
                            text(&r["content"]),
                            text(&r["proxied"]),
                            match r["ttl"].as_u64() {
                                Some(1) => "auto".into(),
                                _ => text(&r["ttl"]),
                            },
                        ]
                    })
                    .collect(),
            ),
            Show::Hostnames => hostname_table(&items(result)),
            Show::Hostname => {
                let mut out = hostname_table(std::slice::from_ref(result));
                if let Some(txt) = result.get("ownership_verification") {
                    out += &format!(
                        "\npre-validation: TXT {} = {}\n            or: {} answering {}\n",
                        text(&txt["name"]),
                        text(&txt["value"]),
                        text(&result["ownership_verification_http"]["http_url"]),
                        text(&result["ownership_verification_http"]["http_body"]),
                    );
                }
                out
            }
            Show::Fallback => table(
                &["ORIGIN", "STATUS"],
                vec![vec![text(&result["origin"]), text(&result["status"])]],
            ),
            Show::Ruleset => {
                let mut out = format!(
                    "{} ruleset {} of zone {}\n",
                    text(&result["phase"]),
                    text(&result["id"]),
                    text(&result["zone_id"])
                );
                let rules = result["rules"].as_array().cloned().unwrap_or_default();
                out += &table(
                    &["#", "ID", "ACTION", "ENABLED", "EXPRESSION", "DESCRIPTION"],
                    rules
                        .iter()
                        .enumerate()
                        .map(|(i, r)| {
                            vec![
                                i.to_string(),
                                text(&r["id"]),
                                text(&r["action"]),
                                text(&r["enabled"]),
                                text(&r["expression"]),
                                text(&r["description"]),
                            ]
                        })
                        .collect(),
                );
                out
            }
            Show::Trace => trace(result),
            Show::Xdp => xdp_status(result),
            Show::XdpRoutes => table(
                &["SNI HASH", "HOSTNAME", "CHAIN", "QUEUE", "ACTION"],
                items(result)
                    .iter()
                    .map(|r| {
                        vec![
                            text(&r["sni_hash"]),
                            text(&r["hostname"]),
                            text(&r["chain_id"]),
                            text(&r["queue"]),
                            text(&r["action"]),
                        ]
                    })
                    .collect(),
            ),
            Show::Deleted => format!("deleted {}\n", text(&result["id"])),
            Show::Imported => format!(
                "imported {} accounts, {} zones, {} DNS records, {} custom hostnames\n",
                result["accounts"],
                result["zones"],
                result["dns_records"],
                result["custom_hostnames"]
            ),
        }
    }
}

fn hostname_table(items: &[Value]) -> String {
    table(
        &["ID", "HOSTNAME", "STATUS", "ORIGIN", "VERIFICATION ERRORS"],
        items
            .iter()
            .map(|h| {
                let errors: Vec<String> = h["verification_errors"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(text)
                    .collect();
                vec![
                    text(&h["id"]),
                    text(&h["hostname"]),
                    text(&h["status"]),
                    match &h["custom_origin_server"] {
                        Value::Null => "(fallback)".into(),
                        server => text(server),
                    },
                    errors.join("; "),
                ]
            })
            .collect(),
    )
}

fn trace(result: &Value) -> String {
    let mut out = String::new();
    if !result["error"].is_null() {
        let e = &result["error"];
        return format!(
            "{}: error {} ({}, HTTP {}): {}\n",
            text(&result["host"]),
            e["code"],
            text(&e["title"]),
            e["status"],
            text(&e["detail"])
        );
    }
    let chain = &result["chain"];
    let zones: Vec<String> = chain["zones"]
        .as_array()
        .into_iter()
        .flatten()
        .map(text)
        .collect();
    out += &format!(
        "{}: chain {} [{}]{}\n",
        text(&result["host"]),
        chain["id"],
        zones.join(" -> "),
        if chain["o2o"] == json!(true) {
            " (O2O)"
        } else {
            ""
        }
    );
    let mut rows = Vec::new();
    for stage in result["trace"].as_array().into_iter().flatten() {
        for phase in stage["phases"].as_array().into_iter().flatten() {
            let prefix = vec![
                text(&stage["zone"]),
                text(&stage["direction"]),
                text(&phase["phase"]),
            ];
            if let Some(skipped) = phase["skipped"].as_str() {
                rows.push(
                    [
                        prefix.clone(),
                        vec!["-".into(), skipped.into(), String::new(), String::new()],
                    ]
                    .concat(),
                );
            }
            for rule in phase["rules"].as_array().into_iter().flatten() {
                let result = match &rule["reason"] {
                    Value::Null => text(&rule["result"]),
                    reason => format!("{} ({})", text(&rule["result"]), text(reason)),
                };
                rows.push(
                    [
                        prefix.clone(),
                        vec![
                            text(&rule["index"]),
                            result,
                            text(&rule["action"]),
                            text(&rule["expression"]),
                        ],
                    ]
                    .concat(),
                );
            }
        }
    }
    out += &table(
        &[
            "ZONE",
            "DIRECTION",
            "PHASE",
            "#",
            "RESULT",
            "ACTION",
            "EXPRESSION",
        ],
        rows,
    );
    let outcome = &result["outcome"];
    out += &match outcome["action"].as_str() {
        Some("respond") => format!(
            "=> answered {} by zone {}\n",
            outcome["status"],
            text(&outcome["zone"])
        ),
        _ => format!(
            "=> origin {}:{}\n",
            text(&outcome["origin"]["host"]),
            outcome["origin"]["port"]
        ),
    };
    out
}

fn xdp_status(status: &Value) -> String {
    let c = &status["connections"];
    // A hello XDP drops never reaches userspace: its blocks are XDP's policy drops (one per
    // flow: blocked hostnames and strict mode), while attached.
    let dropped = status["attached"]["counters"]["policy_drops"]
        .as_u64()
        .unwrap_or(0);
    let mut out = format!(
        "unknown SNI: {}; TLS port {}, QUIC port {}\n\
         TLS connections classified by name: {} agreed with XDP, {} without an XDP verdict ({} unseen by XDP), \
         {} where XDP disagreed, {} blocked; hellos dropped by XDP: {dropped}\n",
        text(&status["unknown_sni"]),
        status["tls_port"],
        status["quic_port"],
        c["kernel"],
        c["userspace"],
        c["unseen"],
        c["disagreed"],
        c["blocked"],
    );
    let attached = &status["attached"];
    if attached.is_null() {
        return out + "XDP: not attached\n";
    }
    out += &format!(
        "XDP: attached to {} ({}), program id {}{}\n\n",
        text(&attached["interface"]),
        text(&attached["mode"]),
        attached["program_id"],
        match &attached["pin_dir"] {
            Value::Null => String::new(),
            dir => format!(", maps pinned in {}", text(dir)),
        },
    );
    let maps = attached["maps"].as_object().cloned().unwrap_or_default();
    out += &table(
        &["MAP", "ENTRIES", "MAX ENTRIES"],
        maps.iter()
            .map(|(name, size)| {
                vec![
                    name.clone(),
                    match &size["entries"] {
                        Value::Null => "-".into(),
                        n => text(n),
                    },
                    text(&size["max_entries"]),
                ]
            })
            .collect(),
    );
    let counters = attached["counters"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    out += "\n";
    out += &table(
        &["COUNTER", "VALUE"],
        counters
            .iter()
            .map(|(name, value)| vec![name.clone(), text(value)])
            .collect(),
    );
    out += "\n";
    out += &table(
        &["CHAIN", "PACKETS", "BYTES", "DROPS"],
        attached["chains"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                vec![
                    text(&t["chain_id"]),
                    text(&t["packets"]),
                    text(&t["bytes"]),
                    text(&t["drops"]),
                ]
            })
            .collect(),
    );
    out
}

/// A value as a table cell: strings bare, null empty.
fn text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Left-aligned columns, two spaces apart.
fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut line = String::new();
        for (i, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                line += cell;
            } else {
                line += &format!("{cell:<width$}  ");
            }
        }
        line.trim_end().to_owned() + "\n"
    };
    let mut out = line(headers.iter().map(|h| h.to_string()).collect());
    for row in rows {
        out += &line(row);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `Metrics::encode` writes for a histogram and a counter
    /// (OpenMetrics: counters carry `_total`, the text ends with `# EOF`).
    #[test]
    fn metrics_json_keeps_labels_and_histogram_buckets() {
        let text = r#"# HELP edge_requests Requests answered.
# TYPE edge_requests counter
edge_requests_total{chain="3",class="2xx"} 7
# TYPE edge_request_duration_seconds histogram
edge_request_duration_seconds_sum{chain="3"} 0.5
edge_request_duration_seconds_count{chain="3"} 7
edge_request_duration_seconds_bucket{le="0.025",chain="3"} 6
edge_request_duration_seconds_bucket{le="+Inf",chain="3"} 7
# EOF
"#;
        let series = metrics_json(text).unwrap();
        let series = series.as_array().unwrap();
        let find = |metric: &str| {
            series
                .iter()
                .find(|s| s["metric"] == metric)
                .unwrap_or_else(|| panic!("{metric} in {series:?}"))
        };
        assert_eq!(
            find("edge_requests_total"),
            &json!({"metric": "edge_requests_total", "labels": {"chain": "3", "class": "2xx"}, "value": 7.0})
        );
        assert_eq!(
            find("edge_request_duration_seconds"),
            &json!({"metric": "edge_request_duration_seconds", "labels": {"chain": "3"},
                    "value": [{"le": 0.025, "count": 6.0}, {"le": "+Inf", "count": 7.0}]})
        );
        assert_eq!(find("edge_request_duration_seconds_count")["value"], 7.0);
    }
}
