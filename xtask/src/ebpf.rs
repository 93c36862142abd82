//! Building the XDP program with the pinned nightly and bpf-linker.

use std::process::Command;

use anyhow::Result;

use crate::run::{root, status};
use crate::setup;

/// Builds `edge-ebpf` in release mode; `edge-userspace`'s build script embeds
/// the resulting object, so a built `edge` needs no files beside it.
pub fn build() -> Result<()> {
    setup::ebpf()?;
    let mut cmd = Command::new("rustup");
    cmd.args(["run", setup::NIGHTLY, "cargo", "build", "--release"])
        .current_dir(root().join("edge-ebpf"));
    // The outer cargo (stable) exports these; the nightly cargo must pick its own.
    for var in [
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTUP_TOOLCHAIN",
        "CARGO",
    ] {
        cmd.env_remove(var);
    }
    status(&mut cmd)
}
