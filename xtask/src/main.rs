//! Developer commands: `cargo xtask <command>`.
//!
//! Every command installs what it needs first (see `setup`), so each works on a
//! fresh machine of the kind this project targets.

mod bench_h3;
mod bench_proxy;
mod bench_xdp;
mod check_setup;
mod ebpf;
mod fuzz;
mod run;
mod setup;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Developer commands for edge")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install the pinned toolchains, llvm-22-dev, bpf-linker and the test tools.
    Setup,
    /// Build the XDP program (release) that the `edge` binary embeds.
    BuildEbpf,
    /// The README's set-up as a new machine runs it: a copy of the work tree and an
    /// empty rustup home (a temporary RUSTUP_HOME, self-update off), then
    /// `rustup toolchain install && cargo xtask build-ebpf` there. Leaves the
    /// machine's own toolchains and rustup binary alone; CI runs it every time.
    CheckSetup,
    /// Build everything and run the demo on its embedded default config.
    Demo {
        /// Extra arguments for `edge demo` (ports, directory).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// fmt and clippy checks, then the whole test suite (BPF tests included; needs root),
    /// then `fuzz`.
    Test,
    /// Build the fuzz targets (edge-userspace/fuzz) and run each for FUZZ_SECONDS
    /// (default 30); fails on a crash, naming the input to keep in regressions/.
    Fuzz,
    /// ns per packet of the XDP classifier vs a trivial XDP program (needs root).
    BenchXdp,
    /// h2load over TLS + HTTP/2: the edge's O2O chain vs nginx, haproxy, h2o, caddy
    /// (runs ../shared/bench/peers.sh; its env knobs DURATION, ROUNDS, PEERS... pass through).
    BenchProxy {
        /// Then run peers.sh again with the crates' floor (examples/proxy_floor.rs) as the
        /// edge row.
        #[arg(long)]
        floor: bool,
    },
    /// Control-socket writes/s (durable) and write-to-served latency at several state
    /// sizes (EDGE_BENCH_HOSTNAMES=0,10000 by default).
    BenchControl,
    /// Route-map updates/s and incremental route syncs with 1,000,000 hostnames
    /// loaded, on the real XDP program's map (needs root; EDGE_BENCH_ROUTES=n).
    BenchRoutes,
    /// requests/s and p99 over HTTP/3 vs HTTP/2 on the same O2O chain, in one run
    /// (knobs REQUESTS, CONNECTIONS, STREAMS, ROUNDS, BODY in the environment).
    BenchH3,
    /// Tenant B's handshakes/s and p99 alone, beside a handshake flood on tenant A without a
    /// budget, and with a budget on A, in one run of the real binary (about 70 s; knobs
    /// PHASE_SECS, ROUNDS, B_CONNECTIONS, FLOOD_CONNECTIONS, BUDGET in the environment).
    BenchTenants,
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Setup => setup::all(),
        Command::BuildEbpf => ebpf::build(),
        Command::CheckSetup => check_setup::run(),
        Command::Demo { args } => {
            ebpf::build()?;
            let mut cmd = run::cargo()?;
            cmd.args([
                "run",
                "--release",
                "--package",
                "edge-userspace",
                "--bin",
                "edge",
                "--",
                "demo",
            ]);
            run::status(cmd.args(args))
        }
        Command::BenchXdp => bench_xdp::run(),
        Command::BenchProxy { floor } => bench_proxy::run(floor),
        Command::BenchControl => {
            ebpf::build()?;
            run::status(run::cargo()?.args(["bench", "-p", "edge-userspace", "--bench", "control"]))
        }
        Command::BenchRoutes => {
            ebpf::build()?;
            run::status(run::cargo()?.args(["bench", "-p", "edge-userspace", "--bench", "routes"]))
        }
        Command::BenchH3 => bench_h3::run(),
        Command::BenchTenants => {
            ebpf::build()?;
            run::status(run::cargo()?.args([
                "bench",
                "--package",
                "edge-tests",
                "--bench",
                "tenants",
            ]))
        }
        Command::Fuzz => fuzz::run(),
        Command::Test => {
            setup::all()?;
            ebpf::build()?;
            ebpf::check()?;
            run::status(run::cargo()?.args(["fmt", "--all", "--check"]))?;
            run::status(run::cargo()?.args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--all-features",
                "--",
                "-D",
                "warnings",
            ]))?;
            // `kernel`: the tests that load the XDP program (root).
            run::status(run::cargo()?.args([
                "test",
                "--workspace",
                "--release",
                "--features",
                "edge-tests/kernel",
            ]))?;
            fuzz::run()
        }
    }
}
