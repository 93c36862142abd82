//! Idempotent installation of everything the build and the tests need.
//!
//! A fresh machine has only the image's stable Rust; CI runs there. Each step
//! checks first and says what it installs and why, so a second run is quiet.

use std::process::Command;

use anyhow::Result;

use crate::run::{root, status, succeeds};

/// The nightly whose LLVM (22) matches bpf-linker built with `llvm-22`.
pub const NIGHTLY: &str = "nightly-2026-07-15";

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
    bpf_linker()
}

/// What `cargo xtask build-ebpf` needs: the nightly with rust-src, LLVM 22, bpf-linker.
pub fn ebpf() -> Result<()> {
    ebpf_toolchain()?;
    apt(&APT_PACKAGES[..1])?;
    bpf_linker()
}

fn ebpf_toolchain() -> Result<()> {
    let has_src = Command::new("rustup")
        .args(["component", "list", "--installed", "--toolchain", NIGHTLY])
        .output()
        .map(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("rust-src"))
        .unwrap_or(false);
    if has_src {
        return Ok(());
    }
    println!(
        "setup: installing {NIGHTLY} with rust-src (the XDP program builds core for bpfel-unknown-none)"
    );
    // `rustup toolchain install` inside edge-ebpf reads its rust-toolchain.toml.
    status(
        Command::new("rustup")
            .args(["toolchain", "install"])
            .current_dir(root().join("edge-ebpf")),
    )
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
        Command::new("cargo")
            .args([
                "install",
                "bpf-linker",
                "--version",
                "0.13.0",
                "--no-default-features",
                "--features",
                "llvm-22",
            ])
            .env("LLVM_PREFIX", "/usr/lib/llvm-22")
            .current_dir(root()),
    )
}
