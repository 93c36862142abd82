//! Running child commands with their failures turned into errors.
//!
//! `cargo xtask` runs under rustup's cargo proxy, which exports the workspace's
//! toolchain (`RUSTUP_TOOLCHAIN`) and its own binaries (`CARGO`, `RUSTC`) to
//! every child. A child that must use another toolchain (the eBPF nightly) or
//! read a `rust-toolchain.toml` of its own would silently inherit them, so every
//! rustup and cargo call goes through [`rustup`] or [`cargo`], which clear them
//! and name the toolchain.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The workspace root, so that commands work from any directory.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// What the cargo proxy exports to its children; cleared so that a child picks
/// the toolchain it is told to, never the one xtask happened to run under.
const PROXY_VARS: &[&str] = &[
    "RUSTUP_TOOLCHAIN",
    "CARGO",
    "RUSTC",
    "RUSTDOC",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_MAKEFLAGS",
    "CARGO_PKG_NAME",
    "CARGO_MANIFEST_DIR",
];

/// The toolchain that `<dir>/rust-toolchain.toml` pins (its `channel`): the
/// file stays the one place that names it.
pub fn pinned_toolchain(dir: &str) -> Result<String> {
    let path = root().join(dir).join("rust-toolchain.toml");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("channel"))
        .filter_map(|rest| rest.trim().strip_prefix('='))
        .map(|value| value.trim().trim_matches('"').to_string())
        .next()
        .with_context(|| format!("{} names no channel", path.display()))
}

/// `program` at the workspace root with the proxy's variables cleared.
pub fn without_proxy(program: &str) -> Command {
    let mut cmd = Command::new(program);
    for var in PROXY_VARS {
        cmd.env_remove(var);
    }
    cmd.current_dir(root());
    cmd
}

/// `rustup` with the proxy's variables cleared.
pub fn rustup() -> Command {
    without_proxy("rustup")
}

/// `cargo` of the named toolchain (`rustup run <toolchain> cargo`), independent
/// of how xtask itself was started.
pub fn cargo_of(toolchain: &str) -> Command {
    let mut cmd = rustup();
    cmd.args(["run", toolchain, "cargo"]);
    cmd
}

/// `cargo` of the workspace's pinned stable toolchain, at the workspace root.
pub fn cargo() -> Result<Command> {
    Ok(cargo_of(&pinned_toolchain(".")?))
}

pub fn status(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {shown}"))?;
    if !status.success() {
        bail!("{shown} failed: {status}");
    }
    Ok(())
}

/// Whether a probe command runs and exits 0 (used to test for installed tools).
pub fn succeeds(cmd: &mut Command) -> bool {
    cmd.output().map(|o| o.status.success()).unwrap_or(false)
}
