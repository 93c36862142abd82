//! Idempotent installation of everything the build and the tests need.
//!
//! A fresh machine has only the image's stable Rust; CI runs there. Each step
//! checks first and says what it installs and why, so a second run is quiet.

use std::process::Command;

use anyhow::Result;

use crate::run::{self, pinned_toolchain, status, succeeds};

/// The folder whose `rust-toolchain.toml` pins the nightly whose LLVM (22)
/// matches bpf-linker built with `llvm-22`.
pub const EBPF_DIR: &str = "edge-ebpf";

/// Debian packages: the LLVM that bpf-linker links against, and the tools the
/// end-to-end tests drive (curl, h2load, ip).
const APT_PACKAGES: &[(&str, &str)] = &[
    (
        "llvm-22-dev",
        "bpf-linker is built against Debian's LLVM 22",
    ),
    (
        "nghttp2-client",
        "h2load drives the HTTP/2 smoke tests and benchmarks",
    ),
    ("curl", "end-to-end tests use curl as a real client"),
    (
        "iproute2",
        "BPF tests create network namespaces and veth pairs with ip",
    ),
];

pub fn all() -> Result<()> {
    ebpf_toolchain()?;
    apt(APT_PACKAGES)?;
    bpf_linker()?;
    cargo_fuzz()
}

/// What `cargo xtask build-ebpf` needs: the nightly with rust-src, LLVM 22, bpf-linker.
pub fn ebpf() -> Result<()> {
    ebpf_toolchain()?;
    apt(&APT_PACKAGES[..1])?;
    bpf_linker()
}

/// Components of the eBPF toolchain that `edge-ebpf/rust-toolchain.toml` lists.
const EBPF_COMPONENTS: &[&str] = &["rust-src", "clippy", "rustfmt"];

fn ebpf_toolchain() -> Result<()> {
    let nightly = pinned_toolchain(EBPF_DIR)?;
    let installed = run::rustup()
        .args(["component", "list", "--installed", "--toolchain", &nightly])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let has = |component: &str| installed.lines().any(|l| l.starts_with(component));
    if EBPF_COMPONENTS.iter().all(|c| has(c)) {
        return Ok(());
    }
    println!(
        "setup: installing {nightly} with {} (the XDP program builds core for bpfel-unknown-none; fmt and clippy check it)",
        EBPF_COMPONENTS.join(", ")
    );
    // Inside edge-ebpf, with the proxy's RUSTUP_TOOLCHAIN cleared, rustup reads
    // that folder's rust-toolchain.toml (channel, components, profile).
    let mut install = run::rustup();
    install
        .args(["toolchain", "install"])
        .current_dir(run::root().join(EBPF_DIR));
    status(&mut install)
}

fn apt(packages: &[(&str, &str)]) -> Result<()> {
    let missing: Vec<_> = packages
        .iter()
        .filter(|(name, _)| !installed(name))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    for (name, why) in &missing {
        println!("setup: apt-get install {name} ({why})");
    }
    status(Command::new("apt-get").args(["update", "-qq"]))?;
    status(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(missing.iter().map(|(name, _)| *name))
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

fn bpf_linker() -> Result<()> {
    if succeeds(Command::new("bpf-linker").arg("--version")) {
        return Ok(());
    }
    println!("setup: cargo install bpf-linker 0.13 against LLVM 22 (links the XDP program)");
    status(
        run::cargo()?
            .args([
                "install",
                "bpf-linker",
                "--version",
                "0.13.0",
                "--no-default-features",
                "--features",
                "llvm-22",
            ])
            .env("LLVM_PREFIX", "/usr/lib/llvm-22"),
    )
}

/// cargo-fuzz builds and runs the fuzz targets (`cargo xtask fuzz`).
pub fn cargo_fuzz() -> Result<()> {
    if succeeds(run::cargo()?.args(["fuzz", "--version"])) {
        return Ok(());
    }
    println!("setup: cargo install cargo-fuzz 0.13 (builds and runs the fuzz targets)");
    status(run::cargo()?.args(["install", "cargo-fuzz", "--version", "0.13.2", "--locked"]))
}
