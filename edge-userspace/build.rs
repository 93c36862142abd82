//! Embeds the XDP object built by `cargo xtask build-ebpf`, so that the `edge`
//! binary is one self-contained file on the edge hosts.

use std::path::PathBuf;

fn main() {
    let object = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../edge-ebpf/target/bpfel-unknown-none/release/edge-ebpf");
    println!("cargo:rerun-if-changed={}", object.display());
    assert!(
        object.exists(),
        "the XDP object {} is missing: run `cargo xtask build-ebpf` first",
        object.display()
    );
    println!("cargo:rustc-env=EDGE_EBPF_OBJECT={}", object.display());
}
