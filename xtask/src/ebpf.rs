//! Building and checking the XDP program with the pinned nightly and bpf-linker.

use std::process::Command;

use anyhow::Result;

use crate::run::{self, pinned_toolchain, status};
use crate::setup;

/// `cargo` of the eBPF nightly inside `edge-ebpf/` (its own workspace, whose
/// `.cargo/config.toml` sets the bpfel target and `build-std`).
fn ebpf_cargo() -> Result<Command> {
    let mut cmd = run::cargo_of(&pinned_toolchain(setup::EBPF_DIR)?);
    cmd.current_dir(run::root().join(setup::EBPF_DIR));
    Ok(cmd)
}

/// Builds `edge-ebpf` in release mode; `edge-userspace`'s build script embeds
/// the resulting object, so a built `edge` needs no files beside it.
pub fn build() -> Result<()> {
    setup::ebpf()?;
    status(ebpf_cargo()?.args(["build", "--release"]))
}

/// `cargo fmt --check` and clippy (`-D warnings`, for the bpfel target) on the
/// XDP program, the same hygiene as the host workspace.
pub fn check() -> Result<()> {
    setup::ebpf()?;
    status(ebpf_cargo()?.args(["fmt", "--check"]))?;
    status(ebpf_cargo()?.args(["clippy", "--release", "--", "-D", "warnings"]))
}
