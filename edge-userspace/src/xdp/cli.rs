//! `edge xdp …`: attach the classifier by hand and read its counters.

use std::path::PathBuf;

use anyhow::{Context, Result};
use edge_common::maps::GlobalCounters;

use super::status::ProgramStats;
use super::{
    Classifier, DEFAULT_PIN_ROOT, LoadOptions, Maps, RouteAction, RouteTarget, UnknownSni,
    routes_max,
};

#[derive(Debug, clap::Subcommand)]
pub enum XdpCommand {
    /// Attach the SNI classifier to an interface until Ctrl-C.
    Attach(AttachArgs),
    /// Print the counters of the classifier attached to an interface.
    Stats {
        #[arg(long)]
        iface: String,
        /// Where `attach` pinned the maps (one directory per interface below it).
        #[arg(long, default_value = DEFAULT_PIN_ROOT)]
        pin_root: PathBuf,
        /// Print JSON (the counters in the shapes of the control API's `/xdp`).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct AttachArgs {
    #[arg(long)]
    iface: String,
    /// A route `HOST=CHAIN[:QUEUE][:drop]`; HOST may be `*.example.com`. Repeatable.
    #[arg(long = "route", value_parser = parse_route)]
    routes: Vec<(String, RouteTarget)>,
    /// Another TCP port carrying TLS (443 is always watched). Repeatable.
    #[arg(long = "tls-port")]
    tls_ports: Vec<u16>,
    /// Another UDP port carrying QUIC (443 is always watched). Repeatable.
    #[arg(long = "quic-port")]
    quic_ports: Vec<u16>,
    /// What XDP does with an SNI that has no route.
    #[arg(long, value_enum, default_value_t)]
    unknown_sni: UnknownSni,
    /// The maps are pinned under PIN_ROOT/IFACE while attached.
    #[arg(long, default_value = DEFAULT_PIN_ROOT)]
    pin_root: PathBuf,
}

pub fn run(command: XdpCommand) -> Result<()> {
    match command {
        XdpCommand::Attach(args) => attach(args),
        XdpCommand::Stats {
            iface,
            pin_root,
            json,
        } => {
            let maps = Maps::open_pinned(&pin_root.join(&iface))?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&ProgramStats::read(&maps)?)?
                );
            } else {
                print!("{}", render_stats(&maps)?);
            }
            Ok(())
        }
    }
}

fn attach(args: AttachArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut classifier = Classifier::load(LoadOptions {
            pin_dir: Some(args.pin_root.join(&args.iface)),
            unknown_sni: args.unknown_sni,
            routes_max: Some(routes_max(None, args.routes.len())),
        })?;
        for port in &args.tls_ports {
            classifier.maps.settings.set_tls_port(*port, true)?;
        }
        for port in &args.quic_ports {
            classifier.maps.settings.set_quic_port(*port, true)?;
        }
        for (host, target) in &args.routes {
            classifier.maps.routes.insert(host, *target)?;
        }
        classifier.forward_logs()?;
        let mode = classifier.attach(&args.iface)?;
        println!(
            "XDP SNI classifier attached to {} in {mode} mode, {} routes; Ctrl-C detaches",
            args.iface,
            args.routes.len()
        );
        tokio::signal::ctrl_c().await?;
        classifier.detach()?;
        println!("detached from {}", args.iface);
        Ok(())
    })
}

/// `HOST=CHAIN[:QUEUE][:drop]`.
fn parse_route(text: &str) -> Result<(String, RouteTarget)> {
    let (host, target) = text
        .split_once('=')
        .context("a route is HOST=CHAIN[:QUEUE][:drop]")?;
    let mut parts = target.split(':');
    let chain_id = parts
        .next()
        .unwrap_or_default()
        .parse()
        .with_context(|| format!("bad chain id in route {text:?}"))?;
    let mut route = RouteTarget {
        chain_id,
        queue: 0,
        action: RouteAction::Pass,
    };
    for part in parts {
        match part {
            "drop" => route.action = RouteAction::Drop,
            queue => {
                route.queue = queue
                    .parse()
                    .with_context(|| format!("bad queue {queue:?} in route {text:?}"))?
            }
        }
    }
    super::route_key(host)?;
    Ok((host.to_ascii_lowercase(), route))
}

fn render_stats(maps: &Maps) -> Result<String> {
    use std::fmt::Write;
    let GlobalCounters {
        client_hellos,
        no_sni,
        unknown_sni,
        policy_drops,
        malformed,
        truncated,
        multi_segment,
        later_segment,
        non_tls,
        quic,
    } = maps.counters.global()?;
    let mut out = String::new();
    for (name, value) in [
        ("client_hellos", client_hellos),
        ("no_sni", no_sni),
        ("unknown_sni", unknown_sni),
        ("policy_drops", policy_drops),
        ("malformed", malformed),
        ("truncated", truncated),
        ("multi_segment", multi_segment),
        ("later_segment", later_segment),
        ("non_tls", non_tls),
        ("quic", quic),
    ] {
        writeln!(out, "{name:<16}{value:>14}")?;
    }
    writeln!(
        out,
        "unknown SNI policy: {:?}",
        maps.settings.unknown_sni()?
    )?;
    writeln!(
        out,
        "\n{:>10}{:>14}{:>16}{:>12}",
        "chain", "packets", "bytes", "drops"
    )?;
    for (chain, c) in maps.counters.chains()? {
        writeln!(
            out,
            "{chain:>10}{:>14}{:>16}{:>12}",
            c.packets, c.bytes, c.drops
        )?;
    }
    let overflow = maps.counters.overflow()?;
    if overflow != Default::default() {
        writeln!(
            out,
            "{:>10}{:>14}{:>16}{:>12}\n\
             (chain ids {} and above have no counters: a route reached the kernel \
             without the size check)",
            "beyond",
            overflow.packets,
            overflow.bytes,
            overflow.drops,
            maps.routes.max_chains()
        )?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse_and_bad_ones_say_why() {
        let (host, route) = parse_route("*.Example.com=7:3:drop").unwrap();
        assert_eq!(host, "*.example.com");
        assert_eq!(
            route,
            RouteTarget {
                chain_id: 7,
                queue: 3,
                action: RouteAction::Drop
            }
        );
        assert_eq!(parse_route("a.com=2").unwrap().1.queue, 0);
        for bad in ["a.com", "a.com=x", "a.com=1:q", "a..com=1"] {
            assert!(parse_route(bad).is_err(), "{bad} accepted");
        }
    }
}
