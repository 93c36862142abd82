//! The `edge` binary.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

use edge_userspace::downstream::shutdown_signal;
use edge_userspace::serve::{self, Source};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's defaults for this binary, set before the first allocation.
///
/// On Linux mimalloc commits each arena up front (`arena_eager_commit` = 2: "when the OS
/// overcommits"); off, the proxy bench's peak RSS fell from about 71 to 54 MiB at the same
/// CPU. The option is read when the first arena is reserved, on the first allocation, which
/// can precede `main`, so the default is set from an ELF constructor, which runs before any
/// Rust code. The environment (`MIMALLOC_ARENA_EAGER_COMMIT`) still overrides it.
#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static MIMALLOC_DEFAULTS: extern "C" fn() = {
    extern "C" fn set_defaults() {
        /// `mi_option_arena_eager_commit` in `mi_option_e` (mimalloc.h, v2 and v3).
        const ARENA_EAGER_COMMIT: std::ffi::c_int = 4;
        unsafe extern "C" {
            fn mi_option_set_default(option: std::ffi::c_int, value: std::ffi::c_long);
        }
        // SAFETY: only writes the option's default while it is still unread; valid at any
        // time, including before mimalloc initialises.
        unsafe { mi_option_set_default(ARENA_EAGER_COMMIT, 0) };
    }
    set_defaults
};

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
        /// Runtime worker threads, to size the edge to the cores it is given
        /// [default: one per CPU].
        #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024))]
        workers: Option<usize>,
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
    /// The XDP SNI classifier: attach it by hand, read its counters.
    #[command(subcommand)]
    Xdp(edge_userspace::xdp::cli::XdpCommand),
    /// Change zones, records, hostnames and rules on a running edge (control socket).
    Ctl(edge_userspace::control::cli::Ctl),
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            // h2 warns once per connection it refuses (rapid reset, 10,000 lines in 20 s under
            // attack); those connections are counted in `edge_client_connections_closed_total`.
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,h2=error".into()),
        )
        .init();
    match Cli::parse().command {
        Command::Xdp(command) => edge_userspace::xdp::cli::run(command),
        Command::Ctl(ctl) => edge_userspace::control::cli::run(ctl),
        Command::Serve { config, workers } => {
            serve_until_signalled(Source::File(config), workers, |bound| {
                tracing::info!(https = %bound.https, http = ?bound.http, "serving");
            })
        }
        Command::Demo {
            https,
            http,
            echo,
            dir,
        } => {
            let config = serve::demo::config(https, http, echo, dir)?;
            serve_until_signalled(Source::Inline(Box::new(config)), None, |bound| {
                // A closed stdout (`edge demo | head`) must not take the edge down.
                let _ = writeln!(std::io::stdout(), "{}", serve::demo::instructions(bound));
            })
        }
    }
}

fn serve_until_signalled(
    source: Source,
    workers: Option<usize>,
    ready: impl FnOnce(&serve::Bound),
) -> Result<()> {
    // One worker: a current-thread runtime, no work-stealing queues or cross-thread wake-ups
    // (cheaper per request, and the accept loop shares the one core instead of a second thread).
    let mut runtime = match workers {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(workers) => {
            let mut runtime = tokio::runtime::Builder::new_multi_thread();
            runtime.worker_threads(workers);
            runtime
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    edge_userspace::memory::set_trim(|| {
        unsafe extern "C" {
            fn mi_collect(force: bool);
        }
        // SAFETY: collects the calling thread's heap; callable at any time from any thread.
        unsafe { mi_collect(true) }
    });
    runtime
        .on_thread_park(edge_userspace::memory::trim_if_requested)
        .on_thread_unpark(edge_userspace::memory::trim_if_requested);
    runtime.enable_all().build()?.block_on(async {
        // Installed before anything binds, so an early SIGTERM is not lost.
        let shutdown = shutdown_signal()?;
        serve::run(source, ready, shutdown).await
    })
}
