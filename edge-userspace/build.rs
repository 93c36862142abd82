//! Embeds the XDP object built by `cargo xtask build-ebpf`, so that the `edge`
//! binary is one self-contained file on the edge hosts.
//!
//! Like aya's template, a missing object does not stop the build: `cargo check`,
//! clippy and rust-analyzer work on a fresh clone before any eBPF build. The
//! crate then embeds an empty stub and `xdp::Classifier::load` refuses, when
//! XDP is actually asked for, saying how to build the program. `cargo xtask`
//! (demo, test, benches) always builds the real object first.

use std::path::{Path, PathBuf};

fn main() {
    let object = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../edge-ebpf/target/bpfel-unknown-none/release/edge-ebpf");
    let embedded = if object.exists() {
        println!("cargo:rerun-if-changed={}", object.display());
        object
    } else {
        // Cargo reruns a script whose watched file is missing on every build;
        // watching the nearest folder that exists reruns it only once the
        // object (or anything beside it) appears.
        println!(
            "cargo:rerun-if-changed={}",
            nearest_existing(&object).display()
        );
        println!(
            "cargo:warning=the XDP object {} is missing: this edge is built without the XDP program (run `cargo xtask build-ebpf` to embed it)",
            object.display()
        );
        let stub = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"))
            .join("edge-ebpf.stub");
        std::fs::write(&stub, b"").expect("OUT_DIR is writable");
        stub
    };
    println!("cargo:rustc-env=EDGE_EBPF_OBJECT={}", embedded.display());
}

fn nearest_existing(path: &Path) -> &Path {
    path.ancestors()
        .find(|dir| dir.exists())
        .unwrap_or(Path::new("."))
}
