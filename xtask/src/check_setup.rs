//! The README's set-up run as a new machine runs it, so that a set-up bug that
//! a machine with every toolchain installed hides (issue: the eBPF nightly
//! installed under the proxy's `RUSTUP_TOOLCHAIN`) fails CI every time.
//!
//! A copy of the work tree (tracked and untracked, not ignored files) and an
//! empty rustup home in a temporary folder; `rustup set auto-self-update
//! disable` there first, so rustup never replaces the machine's own binary;
//! then exactly `rustup toolchain install && cargo xtask build-ebpf`, with a
//! contributor's `cargo check` (no XDP object yet) in between. The
//! machine's cargo home (bpf-linker, the registry cache) is shared: what is
//! checked is which toolchains the set-up installs and uses.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};

use crate::run::{self, root, status};

/// Where the XDP object lands inside a tree (what `edge-userspace/build.rs` embeds).
const OBJECT: &str = "edge-ebpf/target/bpfel-unknown-none/release/edge-ebpf";
/// ELF's machine number for BPF.
const EM_BPF: u16 = 247;

pub fn run() -> Result<()> {
    let scratch = Scratch::new()?;
    let tree = scratch.0.join("tree");
    let home = scratch.0.join("rustup");
    std::fs::create_dir_all(&home)?;
    let copied = copy_work_tree(&tree)?;
    println!(
        "check-setup: {copied} files copied to {}, RUSTUP_HOME={} (empty)",
        tree.display(),
        home.display()
    );

    let rustup_binary = which("rustup")?;
    let before = std::fs::read(&rustup_binary)?;

    // What a new user types, in a shell that xtask's own toolchain does not reach.
    let shell = |line: &str| {
        let mut sh = run::without_proxy("bash");
        sh.args(["-c", line])
            .current_dir(&tree)
            .env("RUSTUP_HOME", &home);
        sh
    };

    let start = Instant::now();
    status(&mut shell("rustup set auto-self-update disable"))?;
    let step = Instant::now();
    status(&mut shell("rustup toolchain install"))?;
    let toolchain_secs = step.elapsed().as_secs_f64();
    // A contributor's first step: checking and linting work before any eBPF build.
    let step = Instant::now();
    status(&mut shell("cargo check --workspace --all-targets --quiet"))?;
    ensure!(
        !tree.join(OBJECT).exists(),
        "cargo check built the XDP object: it must work without it"
    );
    let check_secs = step.elapsed().as_secs_f64();
    let step = Instant::now();
    status(&mut shell("cargo xtask build-ebpf"))?;
    let build_secs = step.elapsed().as_secs_f64();

    let object = std::fs::read(tree.join(OBJECT))
        .with_context(|| format!("the set-up ran but left no XDP object at {OBJECT}"))?;
    ensure!(
        object.len() > 20
            && &object[..4] == b"\x7fELF"
            && u16::from_le_bytes([object[18], object[19]]) == EM_BPF,
        "{OBJECT} is not a BPF ELF object"
    );
    let after = std::fs::read(&rustup_binary)?;
    if before != after {
        bail!(
            "the set-up replaced the machine's rustup binary {}",
            rustup_binary.display()
        );
    }
    let toolchains = folder_size(&home.join("toolchains"));
    println!(
        "check-setup: passed in {:.0} s (rustup toolchain install {toolchain_secs:.0} s, cargo check without the XDP object {check_secs:.0} s, cargo xtask build-ebpf {build_secs:.0} s); \
         installed from scratch: {} toolchains, {:.0} MiB; XDP object {} bytes; the machine's rustup untouched",
        start.elapsed().as_secs_f64(),
        std::fs::read_dir(home.join("toolchains"))?.count(),
        toolchains as f64 / (1024.0 * 1024.0),
        object.len(),
    );
    Ok(())
}

/// The temporary folder, removed however the check ends.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("edge-check-setup-{}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Copies the files git would clone plus untracked, not ignored ones (the
/// work in progress), so the check runs what is in the tree, never `target/`.
fn copy_work_tree(to: &Path) -> Result<usize> {
    let listed = Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(root())
        .output()
        .context("cannot run git ls-files")?;
    ensure!(listed.status.success(), "git ls-files failed");
    let mut copied = 0;
    for name in listed.stdout.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = std::str::from_utf8(name)?;
        let from = root().join(name);
        if !from.is_file() {
            continue; // deleted in the work tree
        }
        let dest = to.join(name);
        std::fs::create_dir_all(dest.parent().expect("a file has a parent"))?;
        std::fs::copy(&from, &dest).with_context(|| format!("cannot copy {name}"))?;
        copied += 1;
    }
    Ok(copied)
}

fn which(program: &str) -> Result<PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
        .with_context(|| format!("{program} is not on PATH"))
}

fn folder_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(t) if t.is_dir() => folder_size(&entry.path()),
            Ok(t) if t.is_file() => entry.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}
