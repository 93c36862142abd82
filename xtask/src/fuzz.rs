//! `cargo xtask fuzz`: builds the fuzz targets of `edge-userspace/fuzz` and
//! runs each for `FUZZ_SECONDS` (default 30), failing on the first crash.
//!
//! The workspace's stable toolchain builds them: `--sanitizer none` needs no
//! nightly `-Z` flag, and the code under test is safe Rust, whose bugs are
//! panics, hangs and runaway memory that libFuzzer catches without ASan
//! (which would also have to instrument aws-lc, a slow build on CI's 2 cores).
//! Without `-O`, cargo-fuzz builds optimised with debug assertions and overflow
//! checks on, so an arithmetic overflow on hostile lengths is a crash too.
//! The committed corpus only seeds a run: what a run discovers goes into a
//! scratch folder under the fuzz crate's `target/`, so CI never dirties the tree.

use std::path::Path;
use std::time::SystemTime;

use anyhow::{Context, Result, bail};

use crate::run::{self, pinned_toolchain};
use crate::setup;

/// The fuzz crate, its own workspace (see its Cargo.toml).
const FUZZ_DIR: &str = "edge-userspace/fuzz";

/// The targets, each `fuzz_targets/<name>.rs` driving
/// `edge_userspace::fuzzing::<name>`.
const TARGETS: &[&str] = &["rules", "control_body", "config", "client_hello"];

/// Seconds per target unless `FUZZ_SECONDS` says otherwise.
const DEFAULT_SECONDS: u64 = 30;

/// One input taking longer than this is a failure (a hang), not slowness:
/// every input the edge parses is bounded in time.
const INPUT_TIMEOUT_SECONDS: u64 = 10;

/// Memory a target may use before libFuzzer calls it a leak or a bomb.
const RSS_LIMIT_MB: u64 = 2048;

pub fn run() -> Result<()> {
    setup::cargo_fuzz()?;
    let seconds = match std::env::var("FUZZ_SECONDS") {
        Ok(value) => value
            .parse::<u64>()
            .with_context(|| format!("FUZZ_SECONDS={value} is not a number of seconds"))?,
        Err(_) => DEFAULT_SECONDS,
    };
    let dir = run::root().join(FUZZ_DIR);
    let toolchain = pinned_toolchain(".")?;
    let fuzz = |args: &[&str]| {
        let mut cmd = run::cargo_of(&toolchain);
        cmd.current_dir(&dir)
            .args(["fuzz"])
            .args(args)
            .args(["--sanitizer", "none"]);
        cmd
    };
    run::status(&mut fuzz(&["build"]))?;
    for target in TARGETS {
        println!("fuzz: {target} for {seconds} s");
        let scratch = dir.join("target").join("corpus").join(target);
        std::fs::create_dir_all(&scratch)
            .with_context(|| format!("cannot create {}", scratch.display()))?;
        let started = SystemTime::now();
        // The first folder receives what the run discovers; the committed
        // corpus and the kept crashes only seed it.
        let mut cmd = fuzz(&["run", target]);
        cmd.arg(&scratch)
            .arg(dir.join("corpus").join(target))
            .arg(dir.join("regressions").join(target))
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .arg(format!("-timeout={INPUT_TIMEOUT_SECONDS}"))
            .arg(format!("-rss_limit_mb={RSS_LIMIT_MB}"));
        if let Err(error) = run::status(&mut cmd) {
            let artifacts = dir.join("artifacts").join(target);
            bail!(
                "fuzz target {target} failed ({error}); the input that did it: {}. Fix the \
                 bug, then move the input into {FUZZ_DIR}/regressions/{target}/, whose \
                 inputs the test suite replays (edge_userspace::fuzzing::tests)",
                new_files(&artifacts, started).join(", ")
            );
        }
    }
    Ok(())
}

/// The files in `dir` written since `since` (the run's crash, timeout or
/// out-of-memory input), or the folder itself when none can be listed.
fn new_files(dir: &Path, since: SystemTime) -> Vec<String> {
    let found: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|modified| modified >= since)
        })
        .map(|entry| entry.path().display().to_string())
        .collect();
    if found.is_empty() {
        vec![format!(
            "see libFuzzer's output above, under {}",
            dir.display()
        )]
    } else {
        found
    }
}
