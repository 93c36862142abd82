//! The `edge` binary.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

use edge_userspace::downstream::shutdown_signal;
use edge_userspace::serve::{self, Source};

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
    /// Serve the zones of a config file (SIGHUP reloads it, SIGTERM drains).
    Serve {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Serve the embedded demo: an O2O chain, a non-O2O hostname, an echo origin.
    Demo {
        /// TLS listener [default: 127.0.0.1:8443].
        #[arg(long)]
        https: Option<SocketAddr>,
        /// Plain HTTP listener [default: 127.0.0.1:8080].
        #[arg(long)]
        http: Option<SocketAddr>,
        /// The built-in echo origin [default: 127.0.0.1:8081].
        #[arg(long)]
        echo: Option<SocketAddr>,
        /// State directory with the demo CA (ca.pem) [default: ./edge-demo].
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    tokio::runtime::Runtime::new()?.block_on(async {
        // Installed before anything binds, so an early SIGTERM is not lost.
        let shutdown = shutdown_signal()?;
        match cli.command {
            Command::Serve { config } => {
                let ready = |bound: &serve::Bound| {
                    tracing::info!(https = %bound.https, http = ?bound.http, "serving");
                };
                serve::run(Source::File(config), ready, shutdown).await
            }
            Command::Demo {
                https,
                http,
                echo,
                dir,
            } => {
                let config = serve::demo::config(https, http, echo, dir)?;
                let ready = |bound: &serve::Bound| println!("{}", serve::demo::instructions(bound));
                serve::run(Source::Inline(Box::new(config)), ready, shutdown).await
            }
        }
    })
}
