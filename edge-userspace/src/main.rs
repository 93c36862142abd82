//! The `edge` binary.

use anyhow::Result;
use clap::{Parser, Subcommand};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "edge",
    version,
    about = "Multi-tenant edge proxy with O2O chains"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The XDP SNI classifier: attach it by hand, read its counters.
    #[command(subcommand)]
    Xdp(edge_userspace::xdp::cli::XdpCommand),
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match Cli::parse().command {
        Command::Xdp(command) => edge_userspace::xdp::cli::run(command),
    }
}
