//! `cargo xtask bench-h3`: requests/s and latency percentiles over HTTP/3 vs HTTP/2 through
//! the same O2O chain of an in-process edge, in one run (`tests/benches/h3_vs_h2.rs`, a
//! bounded load generator on quinn + h3 and hyper + h2). The table it prints gives the
//! HTTP/3 figures as ratios of the HTTP/2 ones from the same run.
//!
//! Knobs (environment): REQUESTS per round, CONNECTIONS, STREAMS per connection, ROUNDS,
//! BODY (response bytes; 0 = the echo origin's JSON), EDGE_WORKERS, LOAD_WORKERS.

use anyhow::Result;

use crate::{ebpf, run};

pub fn run() -> Result<()> {
    ebpf::build()?;
    run::status(run::cargo()?.args(["bench", "--package", "edge-tests", "--bench", "h3_vs_h2"]))
}
